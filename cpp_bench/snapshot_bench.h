// snapshot_bench: the cost of pcore's read snapshots against LMDB's read transactions
// (issue 15), run by btree_bench in the same run as the other peers' figures.
//
// Three phases, each on fresh stores, every result checked:
//   lookups  random lookups of 16-byte keys: pcore_tree_get without a snapshot, through one
//            snapshot held over the batch, and begin+get+end per lookup; LMDB in one read txn,
//            with mdb_txn_begin(RDONLY)/get/abort per lookup, and with reset/renew per lookup.
//   scans    an ordered scan through a snapshot cursor (next+get, next_get, batch) against an
//            LMDB cursor in a read txn.
//   writer   a writer committing transactions of 100 inserts while 0, 1 or 4 reader
//            *processes* (this program run again with --snapshot-reader) open the store
//            read-only and loop over snapshots (LMDB: read txns) of 1000 lookups each; and
//            (pcore) 4 readers that reopen the store every 100 ms to follow the writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace snapbench {

constexpr int kPcore = 0;
constexpr int kLmdb = 1;

// One sample for the report: row key, row label, unit, engine (kPcore or kLmdb), value.
using Record = std::function<void(const std::string& key, const std::string& label,
                                  const std::string& unit, int engine, double value)>;

struct Config {
  std::string self;        // this program, run again as the reader processes
  std::string dir;         // scratch directory (fresh stores are made under it)
  size_t lookup_keys = 0;  // entries of the lookup and scan phases
  size_t writer_keys = 0;  // entries loaded before the writer phase starts
  double writer_seconds = 0;  // how long the writer commits, per reader count
  uint64_t seed = 0;
};

// Lookups and scans on one engine, one run. Throws std::runtime_error on a failed check.
void read_run(const Config& cfg, int engine, const Record& record);

// The writer phase on one engine, one run: 0, 1 and 4 reader processes, in each durability
// mode. Throws std::runtime_error on a failed check (a reader's included).
void writer_run(const Config& cfg, int engine, const Record& record);

// The reader process: `btree_bench --snapshot-reader ENGINE DIR KEYS SEED READY_FILE
// PARENT_PID REOPEN_MS`. Loops until SIGTERM, then prints its lookups, reopens and the
// microseconds they took, and exits 0 (1 on any failed check).
int reader_main(int argc, char** argv);

}  // namespace snapbench
