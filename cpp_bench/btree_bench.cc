// btree_bench: pcore's B+ tree (through the C ABI) against LMDB and SQLite, measured in one
// run on the same keys, as /work/shared/design/PEERS.md asks (medians of several runs, peers
// in the same run, ratios). Not a test: it never asserts a time. It does check every return
// code and the results (every key found with its value, scan counts and order, entry counts)
// and exits non-zero when any check fails.
//
//   btree_bench [--quick] [--json FILE] [--dir DIR] [--runs N] [--runs-1m N]
//               [--kizuna-runs N] [--seed S] [--no-kizuna] [--no-1m]
//               [--only pcore|lmdb|sqlite] [--sqlite-cache-mib N]
//               [--no-remove] [--only-remove] [--remove-n N] [--remove-order random|sequential|both]
//               [--no-snapshots] [--only-snapshots] [--writer-seconds S]
//               [--no-space] [--only-space]
//
//   --quick        100 k only, 3 runs (Kizuna shape too, 3 runs); default: 5 runs of everything
//   --json FILE    write every median (and the samples) to FILE
//   --dir DIR      where the fresh stores are made (default $TMPDIR or /tmp)
//   --only E       one engine only (e.g. under valgrind --tool=callgrind)
//   --no-remove    skip the removes (random and sequential, 8- and 16-byte keys, --remove-n
//                  entries: 1M, or 100k with --quick; with the loads, lookups and scans of the
//                  same keys); --only-remove runs only them
//   --no-snapshots read snapshots against LMDB read txns (snapshot_bench.h: lookups, scans,
//                  the writer with 0, 1, 4 reader processes); --only-snapshots runs only them;
//                  --writer-seconds: the writer's time per reader count (1, or 0.2 with --quick);
//                  --writer-keys: the entries loaded before it starts (100k)
//   --no-space     skip the bytes on disk per entry (random inserts in one commit, in commits of
//                  500, then half removed; and compacted copies); --only-space runs only them
//
// A full run takes ~75 s on the team's 2-vCPU machine, plus ~6 min of removes (skipped with
// --no-remove). The first run of each size also checks order both ways, pcore_tree_verify,
// and (pcore) every key again after close and reopen; those checks are not timed.
//
// Configurations (each run on a fresh store / env / db, removed afterwards):
//   pcore   store in a temp dir, EVENTUAL durability, tree with 4 KiB pages, unique keys,
//           bytewise order; sorted load with pcore_tree_bulk_load; one pcore_store_commit at
//           the end of each load (timed).
//   LMDB    one write txn, MDB_NOSYNC, default 4 KiB pages; sorted load with MDB_APPEND;
//           lookups and scan in one read txn.
//   SQLite  CREATE TABLE t(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID; journal_mode=WAL,
//           synchronous=NORMAL, page cache 256 MiB (--sqlite-cache-mib; 0 = SQLite's 2 MB
//           default), other settings default (4 KiB pages); one transaction per load,
//           prepared statements; lookups inside one read transaction.
#include <lmdb.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

extern "C" {
#include "pcore.h"
}

#include "snapshot_bench.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Failures

struct CheckFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

[[noreturn]] void fail(const std::string& what) { throw CheckFailure(what); }

#define PC(call)                                                                       \
  do {                                                                                 \
    int32_t rc_ = (call);                                                              \
    if (rc_ != PCORE_OK)                                                               \
      fail(format("pcore: %s -> %s: %s (line %d)", #call, pcore_status_name(rc_),     \
                  pcore_last_error_message(), __LINE__));                              \
  } while (0)

#define MC(call)                                                                            \
  do {                                                                                      \
    int rc_ = (call);                                                                       \
    if (rc_ != MDB_SUCCESS)                                                                 \
      fail(format("lmdb: %s -> %d %s (line %d)", #call, rc_, mdb_strerror(rc_), __LINE__)); \
  } while (0)

#define SC(db, call, expect)                                                        \
  do {                                                                              \
    int rc_ = (call);                                                               \
    if (rc_ != (expect))                                                            \
      fail(format("sqlite: %s -> %d %s (line %d)", #call, rc_, sqlite3_errmsg(db), \
                  __LINE__));                                                       \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Keys: fixed-width keys in one flat buffer; values are 8-byte little-endian record ids.

// Keys are laid out in the order a phase reads them (see `permute`), so the harness reads its
// input sequentially and a phase's cache misses are the engine's own.
struct KeySet {
  size_t width = 0;
  size_t n = 0;
  std::vector<uint8_t> bytes;
  std::vector<uint64_t> vals;  // the value stored with key i
  const uint8_t* key(size_t i) const { return bytes.data() + i * width; }
  uint64_t val(size_t i) const { return vals[i]; }
  // Value of the key generated i-th: never 0, distinct, not equal to i.
  static uint64_t value(size_t i) { return (uint64_t{1} << 32) | (uint64_t{i} + 1); }
  uint64_t value_sum() const {
    uint64_t s = 0;
    for (uint64_t v : vals) s += v;
    return s;
  }
};

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// n distinct random keys of `width` bytes (a multiple of 8), deterministic in seed.
KeySet random_keys(size_t n, uint64_t seed, size_t width = 24) {
  KeySet ks;
  ks.width = width;
  ks.n = n;
  ks.bytes.resize(n * width);
  uint64_t x = seed;
  for (size_t i = 0; i < n * width / 8; ++i) {
    uint64_t r = splitmix64(x);
    memcpy(ks.bytes.data() + i * 8, &r, 8);
  }
  // Distinctness: 64 random bits collide once in ~2^32 keys... at 1M keys, about once in
  // 37 000 seeds; the checks rely on distinct keys, so a duplicate is replaced.
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  auto less = [&](uint32_t a, uint32_t b) { return memcmp(ks.key(a), ks.key(b), width) < 0; };
  std::sort(idx.begin(), idx.end(), less);
  for (size_t i = 1; i < n; ++i) {
    if (memcmp(ks.key(idx[i - 1]), ks.key(idx[i]), width) != 0) continue;
    if (width > 8) fail("duplicate random key");
    uint64_t r = splitmix64(x);
    memcpy(ks.bytes.data() + idx[i] * width, &r, 8);  // rare: check again from the start
    std::sort(idx.begin(), idx.end(), less);
    i = 0;
  }
  ks.vals.resize(n);
  for (size_t i = 0; i < n; ++i) ks.vals[i] = ks.val(i);
  return ks;
}

// Kizuna's index benchmark keys: record::encode of one VARCHAR column 'key%06d': 8 bytes of
// header, then the 9-byte payload: 17 bytes.
KeySet kizuna_keys(size_t n) {
  KeySet ks;
  ks.width = 17;
  ks.n = n;
  ks.bytes.resize(n * 17);
  static const uint8_t header[8] = {0x01, 0x00, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00};
  for (size_t i = 0; i < n; ++i) {
    uint8_t* k = ks.bytes.data() + i * 17;
    memcpy(k, header, 8);
    char payload[32];
    snprintf(payload, sizeof payload, "key%06u", static_cast<unsigned>(i % 1000000));
    memcpy(k + 8, payload, 9);
  }
  ks.vals.resize(n);
  for (size_t i = 0; i < n; ++i) ks.vals[i] = ks.val(i);
  return ks;
}

std::vector<uint32_t> identity(size_t n) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

std::vector<uint32_t> shuffled(size_t n, uint64_t seed) {
  std::vector<uint32_t> v = identity(n);
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

std::vector<uint32_t> sorted_order(const KeySet& ks) {
  std::vector<uint32_t> v = identity(ks.n);
  std::sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
    return memcmp(ks.key(a), ks.key(b), ks.width) < 0;
  });
  return v;
}

// The keys (with their values) laid out in `order`.
KeySet permute(const KeySet& ks, const std::vector<uint32_t>& order) {
  KeySet out;
  out.width = ks.width;
  out.n = order.size();
  out.bytes.resize(out.n * out.width);
  out.vals.resize(out.n);
  for (size_t p = 0; p < out.n; ++p) {
    memcpy(out.bytes.data() + p * out.width, ks.key(order[p]), ks.width);
    out.vals[p] = ks.val(order[p]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files

struct DiskUse {
  uint64_t apparent = 0;   // st_size summed
  uint64_t allocated = 0;  // st_blocks * 512 summed
};

DiskUse disk_use(const fs::path& p) {
  DiskUse d;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      d.apparent += static_cast<uint64_t>(st.st_size);
      d.allocated += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return d;
}

fs::path g_root;  // this process's scratch directory
// SQLite's page cache. "Warm" lookups need the database in it: 256 MiB holds the 1M-entry
// table (~43 MB). 0 keeps SQLite's default (2 MB), which sends most 1M lookups to read().
int g_sqlite_cache_mib = 256;
int g_dir_counter = 0;

fs::path fresh_dir(const char* tag) {
  fs::path p = g_root / format("%s-%d", tag, g_dir_counter++);
  fs::create_directories(p);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Engines. Each: open(dir) on a fresh directory; load(keys, sorted) inserts the keys in their
// order and commits; lookup(keys) looks every key up in its order and checks its value;
// scan() -> count and value sum in key order; verify_order(keys in key order) walks once more
// comparing every entry; entries(); space(); close().

struct ScanResult {
  uint64_t count = 0;
  uint64_t value_sum = 0;
};

struct Space {
  double bytes_per_entry = 0;       // the engine's own page count × page size / entries
  double file_bytes_per_entry = 0;  // files on disk (apparent size) / entries
  double alloc_bytes_per_entry = 0; // files on disk (allocated blocks) / entries
  std::string detail;
};

uint64_t load_u64(const void* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

class PcoreEngine {
 public:
  static constexpr const char* kName = "pcore";
  void open(const fs::path& dir) {
    dir_ = dir;
    PcoreStoreOptions so;
    PC(pcore_store_options_init(&so));
    so.durability = PCORE_DURABILITY_EVENTUAL;
    PC(pcore_store_open(dir.c_str(), &so, &store_));
    open_tree();
  }
  void reopen() {
    PC(pcore_tree_close(tree_));
    tree_ = nullptr;
    PC(pcore_store_close(store_));
    store_ = nullptr;
    PcoreStoreOptions so;
    PC(pcore_store_options_init(&so));
    so.durability = PCORE_DURABILITY_EVENTUAL;
    so.flags = PCORE_OPEN_NO_CREATE;
    PC(pcore_store_open(dir_.c_str(), &so, &store_));
    open_tree(PCORE_TREE_NO_CREATE);
  }
  // Inserts the keys in their order (sorted input: pcore_tree_bulk_load, pcore's counterpart
  // of MDB_APPEND), then commits; returns the seconds the commit took.
  double load(const KeySet& ks, bool sorted) {
    if (sorted) {
      std::vector<PcoreBytes> keys(ks.n), values(ks.n);
      for (uint32_t i = 0; i < ks.n; ++i) {
        keys[i] = PcoreBytes{ks.key(i), ks.width};
        values[i] = PcoreBytes{reinterpret_cast<const uint8_t*>(&ks.vals[i]), 8};
      }
      PC(pcore_tree_bulk_load(tree_, keys.data(), values.data(), ks.n));
    } else {
      for (uint32_t i = 0; i < ks.n; ++i) {
        uint64_t v = ks.val(i);
        PC(pcore_tree_insert(tree_, ks.key(i), ks.width, &v, 8));
      }
    }
    auto t0 = Clock::now();
    PC(pcore_store_commit(store_, nullptr));
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  // Removes every key in its order, then commits; returns the seconds the commit took.
  double remove(const KeySet& ks) {
    for (uint32_t i = 0; i < ks.n; ++i) {
      uint64_t removed = 0;
      PC(pcore_tree_remove(tree_, ks.key(i), ks.width, &removed));
      if (removed != 1) fail(format("pcore: key #%u was not there to remove", i));
    }
    auto t0 = Clock::now();
    PC(pcore_store_commit(store_, nullptr));
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  void lookup(const KeySet& ks) {
    for (uint32_t i = 0; i < ks.n; ++i) {
      uint64_t v = 0;
      size_t len = 0;
      int32_t rc = pcore_tree_get(tree_, ks.key(i), ks.width, &v, 8, &len);
      if (rc != PCORE_OK)
        fail(format("pcore: pcore_tree_get of key #%u -> %s: %s", i, pcore_status_name(rc),
                    pcore_last_error_message()));
      if (len != 8 || v != ks.val(i))
        fail(format("pcore: key #%u: value len %zu, value %#" PRIx64 ", expected %#" PRIx64, i,
                    len, v, ks.val(i)));
    }
  }
  ScanResult scan() {
    ScanResult r;
    PcoreCursor* c = nullptr;
    PC(pcore_cursor_open(tree_, &c));
    PC(pcore_cursor_first(c));
    for (;;) {
      PcoreBytes k, v;
      int32_t rc = pcore_cursor_get(c, &k, &v);
      if (rc == PCORE_NOT_FOUND) break;
      if (rc != PCORE_OK) {
        pcore_cursor_close(c);
        fail(format("pcore: pcore_cursor_get -> %s: %s", pcore_status_name(rc),
                    pcore_last_error_message()));
      }
      ++r.count;
      if (v.len == 8) r.value_sum += load_u64(v.data);
      rc = pcore_cursor_next(c);
      if (rc != PCORE_OK) {
        pcore_cursor_close(c);
        fail(format("pcore: pcore_cursor_next -> %s: %s", pcore_status_name(rc),
                    pcore_last_error_message()));
      }
    }
    PC(pcore_cursor_close(c));
    return r;
  }
  // The ordered scan through pcore_cursor_next_get: one call per entry, as MDB_NEXT.
  ScanResult scan_next_get() {
    ScanResult r;
    PcoreCursor* c = nullptr;
    PC(pcore_cursor_open(tree_, &c));
    PC(pcore_cursor_first(c));
    PcoreBytes k, v;
    int32_t rc = pcore_cursor_get(c, &k, &v);
    while (rc == PCORE_OK) {
      ++r.count;
      if (v.len == 8) r.value_sum += load_u64(v.data);
      rc = pcore_cursor_next_get(c, &k, &v);
    }
    pcore_cursor_close(c);
    if (rc != PCORE_NOT_FOUND) fail(format("pcore: pcore_cursor_next_get -> %s", pcore_status_name(rc)));
    return r;
  }
  // The ordered scan through pcore_cursor_next_batch, 64 KiB at a time.
  ScanResult scan_batch() {
    ScanResult r;
    PcoreCursor* c = nullptr;
    PC(pcore_cursor_open(tree_, &c));
    PC(pcore_cursor_first(c));
    static std::vector<uint64_t> buf(8192);
    int32_t rc;
    size_t count = 0, used = 0;
    while ((rc = pcore_cursor_next_batch(c, buf.data(), buf.size() * 8, &count, &used)) == PCORE_OK) {
      const uint8_t* at = reinterpret_cast<const uint8_t*>(buf.data());
      for (size_t i = 0; i < count; ++i) {
        uint32_t lens[2];
        memcpy(lens, at, 8);
        if (lens[1] == 8) r.value_sum += load_u64(at + 8 + lens[0]);
        at += (8 + lens[0] + lens[1] + 7) / 8 * 8;
      }
      r.count += count;
    }
    pcore_cursor_close(c);
    if (rc != PCORE_NOT_FOUND) fail(format("pcore: pcore_cursor_next_batch -> %s", pcore_status_name(rc)));
    return r;
  }
  void verify_order(const KeySet& ks) {
    PcoreCursor* c = nullptr;
    PC(pcore_cursor_open(tree_, &c));
    PC(pcore_cursor_first(c));
    size_t j = 0;
    std::string err;
    for (;; ++j) {
      PcoreBytes k, v;
      int32_t rc = pcore_cursor_get(c, &k, &v);
      if (rc == PCORE_NOT_FOUND) break;
      if (rc != PCORE_OK) { err = format("cursor_get -> %s", pcore_status_name(rc)); break; }
      if (j >= ks.n) { err = "more entries than keys"; break; }
      size_t i = j;
      if (k.len != ks.width || memcmp(k.data, ks.key(i), ks.width) != 0) {
        err = format("entry %zu: wrong key (len %zu)", j, k.len);
        break;
      }
      if (v.len != 8 || load_u64(v.data) != ks.val(i)) {
        err = format("entry %zu: wrong value", j);
        break;
      }
      rc = pcore_cursor_next(c);
      if (rc != PCORE_OK) { err = format("cursor_next -> %s", pcore_status_name(rc)); break; }
    }
    if (err.empty() && j != ks.n) err = format("ordered scan saw %zu entries, expected %zu", j, ks.n);
    if (err.empty()) {
      // Backwards too, from the last entry.
      int32_t rc = pcore_cursor_last(c);
      size_t back = 0;
      while (rc == PCORE_OK) {
        PcoreBytes k, v;
        rc = pcore_cursor_get(c, &k, &v);
        if (rc != PCORE_OK) break;
        size_t i = ks.n - 1 - back;
        if (k.len != ks.width || memcmp(k.data, ks.key(i), ks.width) != 0) {
          err = format("reverse entry %zu: wrong key", back);
          break;
        }
        ++back;
        rc = pcore_cursor_prev(c);
      }
      if (err.empty() && rc != PCORE_NOT_FOUND && rc != PCORE_OK)
        err = format("reverse scan -> %s", pcore_status_name(rc));
      if (err.empty() && back != ks.n)
        err = format("reverse scan saw %zu entries, expected %zu", back, ks.n);
    }
    pcore_cursor_close(c);
    if (!err.empty()) fail("pcore: " + err + ": " + pcore_last_error_message());
    PC(pcore_tree_verify(tree_));
  }
  uint64_t entries() {
    uint64_t n = 0;
    PC(pcore_tree_len(tree_, &n));
    return n;
  }
  Space space() {
    PcoreTreeStats ts;
    memset(&ts, 0, sizeof ts);
    ts.struct_size = sizeof ts;
    PC(pcore_tree_stats(tree_, &ts));
    DiskUse d = disk_use(dir_);
    PcoreStoreStats ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    PC(pcore_store_stats(store_, &ss));
    PcoreClassStats total;
    memset(&total, 0, sizeof total);
    total.struct_size = sizeof total;
    PC(pcore_store_class_stats(store_, PCORE_CLASS_TOTAL, &total));
    Space s;
    double n = ts.entries ? static_cast<double>(ts.entries) : 1.0;
    s.bytes_per_entry = ts.bytes_per_entry;
    s.file_bytes_per_entry = d.apparent / n;
    s.alloc_bytes_per_entry = d.allocated / n;
    s.detail = format("height %" PRIu64 ", %" PRIu64 " leaves, %" PRIu64 " pages, keys/leaf %.1f (min %" PRIu64
                      " max %" PRIu64 "), leaf fill %.1f %%, files %.1f MB (allocated %.1f MB): "
                      "class files %.1f MB, log %.1f MB; live %.1f MB in %" PRIu64 " nodes",
                      ts.height, ts.leaf_pages, ts.pages, ts.keys_per_leaf_avg, ts.keys_per_leaf_min,
                      ts.keys_per_leaf_max, ts.leaf_fill * 100.0, d.apparent / 1e6, d.allocated / 1e6,
                      ss.data_file_bytes / 1e6, ss.log_bytes / 1e6, total.live_bytes / 1e6, ss.live_nodes);
    return s;
  }
  // A compacted copy of the last commit in `to` (pcore_store_backup).
  void compact_copy(const fs::path& to) { PC(pcore_store_backup(store_, to.c_str(), 0)); }
  void close() {
    if (tree_) PC(pcore_tree_close(tree_));
    tree_ = nullptr;
    if (store_) PC(pcore_store_close(store_));
    store_ = nullptr;
  }
  ~PcoreEngine() {
    if (tree_) pcore_tree_close(tree_);
    if (store_) pcore_store_close(store_);
  }

 private:
  void open_tree(uint32_t flags = 0) {
    PcoreTreeOptions to;
    PC(pcore_tree_options_init(&to));
    to.page_bytes = 4096;
    to.duplicates = PCORE_DUP_UNIQUE;
    to.flags = flags;
    PC(pcore_tree_open(store_, "bench", 5, &to, &tree_));
  }
  fs::path dir_;
  PcoreStore* store_ = nullptr;
  PcoreTree* tree_ = nullptr;
};

class LmdbEngine {
 public:
  static constexpr const char* kName = "LMDB";
  void open(const fs::path& dir) {
    dir_ = dir;
    MC(mdb_env_create(&env_));
    MC(mdb_env_set_mapsize(env_, size_t{4} << 30));
    MC(mdb_env_open(env_, dir.c_str(), MDB_NOSYNC, 0644));
  }
  double load(const KeySet& ks, bool sorted) {
    MDB_txn* txn = nullptr;
    MC(mdb_txn_begin(env_, nullptr, 0, &txn));
    MC(mdb_dbi_open(txn, nullptr, 0, &dbi_));
    const unsigned flags = sorted ? MDB_APPEND : 0;
    for (uint32_t i = 0; i < ks.n; ++i) {
      uint64_t v = ks.val(i);
      MDB_val k{ks.width, const_cast<uint8_t*>(ks.key(i))};
      MDB_val d{8, &v};
      int rc = mdb_put(txn, dbi_, &k, &d, flags);
      if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        fail(format("lmdb: mdb_put of key #%u -> %s", i, mdb_strerror(rc)));
      }
    }
    auto t0 = Clock::now();
    MC(mdb_txn_commit(txn));
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  double remove(const KeySet& ks) {
    MDB_txn* txn = nullptr;
    MC(mdb_txn_begin(env_, nullptr, 0, &txn));
    for (uint32_t i = 0; i < ks.n; ++i) {
      MDB_val k{ks.width, const_cast<uint8_t*>(ks.key(i))};
      int rc = mdb_del(txn, dbi_, &k, nullptr);
      if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        fail(format("lmdb: mdb_del of key #%u -> %s", i, mdb_strerror(rc)));
      }
    }
    auto t0 = Clock::now();
    MC(mdb_txn_commit(txn));
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  void lookup(const KeySet& ks) {
    MDB_txn* txn = nullptr;
    MC(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn));
    for (uint32_t i = 0; i < ks.n; ++i) {
      MDB_val k{ks.width, const_cast<uint8_t*>(ks.key(i))};
      MDB_val d;
      int rc = mdb_get(txn, dbi_, &k, &d);
      if (rc != MDB_SUCCESS || d.mv_size != 8 || load_u64(d.mv_data) != ks.val(i)) {
        mdb_txn_abort(txn);
        fail(format("lmdb: key #%u: %s", i, rc ? mdb_strerror(rc) : "wrong value"));
      }
    }
    mdb_txn_abort(txn);
  }
  ScanResult scan() {
    ScanResult r;
    MDB_txn* txn = nullptr;
    MDB_cursor* cur = nullptr;
    MC(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn));
    MC(mdb_cursor_open(txn, dbi_, &cur));
    MDB_val k, d;
    int rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
      ++r.count;
      if (d.mv_size == 8) r.value_sum += load_u64(d.mv_data);
      rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND) fail(format("lmdb: cursor -> %s", mdb_strerror(rc)));
    return r;
  }
  void verify_order(const KeySet& ks) {
    MDB_txn* txn = nullptr;
    MDB_cursor* cur = nullptr;
    MC(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn));
    MC(mdb_cursor_open(txn, dbi_, &cur));
    MDB_val k, d;
    size_t j = 0;
    std::string err;
    int rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    for (; rc == MDB_SUCCESS; ++j, rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
      if (j >= ks.n) { err = "more entries than keys"; break; }
      size_t i = j;
      if (k.mv_size != ks.width || memcmp(k.mv_data, ks.key(i), ks.width) != 0 || d.mv_size != 8 ||
          load_u64(d.mv_data) != ks.val(i)) {
        err = format("entry %zu wrong", j);
        break;
      }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (err.empty() && rc != MDB_NOTFOUND) err = mdb_strerror(rc);
    if (err.empty() && j != ks.n) err = format("ordered scan saw %zu entries, expected %zu", j, ks.n);
    if (!err.empty()) fail("lmdb: " + err);
  }
  uint64_t entries() {
    MDB_stat st;
    MC(mdb_env_stat(env_, &st));
    return st.ms_entries;
  }
  Space space() {
    MDB_stat st;
    MC(mdb_env_stat(env_, &st));
    MDB_envinfo info;
    MC(mdb_env_info(env_, &info));
    DiskUse d = disk_use(dir_);
    uint64_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    double n = st.ms_entries ? static_cast<double>(st.ms_entries) : 1.0;
    Space s;
    s.bytes_per_entry = pages * static_cast<double>(st.ms_psize) / n;
    s.file_bytes_per_entry = d.apparent / n;
    s.alloc_bytes_per_entry = d.allocated / n;
    s.detail = format("depth %u, %zu leaves, %" PRIu64 " pages, keys/leaf %.1f, last page %zu, "
                      "files %.1f MB (allocated %.1f MB)",
                      st.ms_depth, st.ms_leaf_pages, pages,
                      st.ms_leaf_pages ? static_cast<double>(st.ms_entries) / st.ms_leaf_pages : 0.0,
                      info.me_last_pgno, d.apparent / 1e6, d.allocated / 1e6);
    return s;
  }
  // A compacted copy (mdb_env_copy2 with MDB_CP_COMPACT, as `mdb_copy -c`) in `to`.
  void compact_copy(const fs::path& to) {
    fs::create_directories(to);
    MC(mdb_env_copy2(env_, to.c_str(), MDB_CP_COMPACT));
  }
  void close() {
    if (env_) mdb_env_close(env_);
    env_ = nullptr;
  }
  ~LmdbEngine() { close(); }

 private:
  fs::path dir_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

class SqliteEngine {
 public:
  static constexpr const char* kName = "SQLite";
  void open(const fs::path& dir) {
    dir_ = dir;
    path_ = (dir / "bench.db").string();
    SC(db_, sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
       SQLITE_OK);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    if (g_sqlite_cache_mib > 0) exec(format("PRAGMA cache_size=-%d", g_sqlite_cache_mib * 1024).c_str());
    exec("CREATE TABLE t(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID");
    SC(db_, sqlite3_prepare_v2(db_, "INSERT INTO t(k, v) VALUES(?1, ?2)", -1, &ins_, nullptr), SQLITE_OK);
    SC(db_, sqlite3_prepare_v2(db_, "SELECT v FROM t WHERE k = ?1", -1, &get_, nullptr), SQLITE_OK);
    SC(db_, sqlite3_prepare_v2(db_, "SELECT k, v FROM t ORDER BY k", -1, &scan_, nullptr), SQLITE_OK);
    SC(db_, sqlite3_prepare_v2(db_, "DELETE FROM t WHERE k = ?1", -1, &del_, nullptr), SQLITE_OK);
  }
  double remove(const KeySet& ks) {
    exec("BEGIN");
    for (uint32_t i = 0; i < ks.n; ++i) {
      SC(db_, sqlite3_bind_blob(del_, 1, ks.key(i), static_cast<int>(ks.width), SQLITE_STATIC), SQLITE_OK);
      SC(db_, sqlite3_step(del_), SQLITE_DONE);
      if (sqlite3_changes(db_) != 1) fail(format("sqlite: key #%u was not there to remove", i));
      SC(db_, sqlite3_reset(del_), SQLITE_OK);
    }
    auto t0 = Clock::now();
    exec("COMMIT");
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  double load(const KeySet& ks, bool /*sorted*/) {
    exec("BEGIN");
    for (uint32_t i = 0; i < ks.n; ++i) {
      uint64_t v = ks.val(i);
      SC(db_, sqlite3_bind_blob(ins_, 1, ks.key(i), static_cast<int>(ks.width), SQLITE_STATIC), SQLITE_OK);
      SC(db_, sqlite3_bind_blob(ins_, 2, &v, 8, SQLITE_TRANSIENT), SQLITE_OK);
      SC(db_, sqlite3_step(ins_), SQLITE_DONE);
      SC(db_, sqlite3_reset(ins_), SQLITE_OK);
    }
    auto t0 = Clock::now();
    exec("COMMIT");
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  void lookup(const KeySet& ks) {
    exec("BEGIN");
    for (uint32_t i = 0; i < ks.n; ++i) {
      SC(db_, sqlite3_bind_blob(get_, 1, ks.key(i), static_cast<int>(ks.width), SQLITE_STATIC), SQLITE_OK);
      int rc = sqlite3_step(get_);
      if (rc != SQLITE_ROW) fail(format("sqlite: key #%u: step -> %d %s", i, rc, sqlite3_errmsg(db_)));
      const void* p = sqlite3_column_blob(get_, 0);
      int len = sqlite3_column_bytes(get_, 0);
      if (len != 8 || load_u64(p) != ks.val(i)) fail(format("sqlite: key #%u: wrong value", i));
      SC(db_, sqlite3_reset(get_), SQLITE_OK);
    }
    exec("COMMIT");
  }
  ScanResult scan() {
    ScanResult r;
    int rc;
    while ((rc = sqlite3_step(scan_)) == SQLITE_ROW) {
      ++r.count;
      const void* k = sqlite3_column_blob(scan_, 0);
      (void)k;
      const void* v = sqlite3_column_blob(scan_, 1);
      if (sqlite3_column_bytes(scan_, 1) == 8) r.value_sum += load_u64(v);
    }
    if (rc != SQLITE_DONE) fail(format("sqlite: scan step -> %d %s", rc, sqlite3_errmsg(db_)));
    SC(db_, sqlite3_reset(scan_), SQLITE_OK);
    return r;
  }
  void verify_order(const KeySet& ks) {
    int rc;
    size_t j = 0;
    std::string err;
    while ((rc = sqlite3_step(scan_)) == SQLITE_ROW) {
      if (j >= ks.n) { err = "more entries than keys"; break; }
      size_t i = j;
      if (static_cast<size_t>(sqlite3_column_bytes(scan_, 0)) != ks.width ||
          memcmp(sqlite3_column_blob(scan_, 0), ks.key(i), ks.width) != 0 ||
          sqlite3_column_bytes(scan_, 1) != 8 ||
          load_u64(sqlite3_column_blob(scan_, 1)) != ks.val(i)) {
        err = format("entry %zu wrong", j);
        break;
      }
      ++j;
    }
    sqlite3_reset(scan_);
    if (err.empty() && rc != SQLITE_DONE) err = sqlite3_errmsg(db_);
    if (err.empty() && j != ks.n) err = format("ordered scan saw %zu entries, expected %zu", j, ks.n);
    if (!err.empty()) fail("sqlite: " + err);
  }
  uint64_t entries() { return static_cast<uint64_t>(query_int("SELECT count(*) FROM t")); }
  Space space() {
    int64_t pages = query_int("PRAGMA page_count");
    int64_t psize = query_int("PRAGMA page_size");
    int64_t freelist = query_int("PRAGMA freelist_count");
    uint64_t n = entries();
    DiskUse d = disk_use(dir_);
    double dn = n ? static_cast<double>(n) : 1.0;
    Space s;
    s.bytes_per_entry = static_cast<double>(pages * psize) / dn;
    s.file_bytes_per_entry = d.apparent / dn;
    s.alloc_bytes_per_entry = d.allocated / dn;
    s.detail = format("%" PRId64 " pages of %" PRId64 " (freelist %" PRId64 "), files incl. WAL %.1f MB",
                      pages, psize, freelist, d.apparent / 1e6);
    return s;
  }
  // A compacted copy (VACUUM INTO) in `to`.
  void compact_copy(const fs::path& to) {
    fs::create_directories(to);
    exec(format("VACUUM INTO '%s'", (to / "bench.db").c_str()).c_str());
  }
  void close() {
    if (ins_) sqlite3_finalize(ins_);
    if (get_) sqlite3_finalize(get_);
    if (scan_) sqlite3_finalize(scan_);
    if (del_) sqlite3_finalize(del_);
    ins_ = get_ = scan_ = del_ = nullptr;
    if (db_) {
      int rc = sqlite3_close(db_);
      db_ = nullptr;
      if (rc != SQLITE_OK) fail(format("sqlite: close -> %d", rc));
    }
  }
  ~SqliteEngine() {
    if (ins_) sqlite3_finalize(ins_);
    if (get_) sqlite3_finalize(get_);
    if (scan_) sqlite3_finalize(scan_);
    if (del_) sqlite3_finalize(del_);
    if (db_) sqlite3_close(db_);
  }

 private:
  void exec(const char* sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      std::string m = msg ? msg : "";
      sqlite3_free(msg);
      fail(format("sqlite: %s -> %d %s", sql, rc, m.c_str()));
    }
  }
  int64_t query_int(const char* sql) {
    sqlite3_stmt* st = nullptr;
    SC(db_, sqlite3_prepare_v2(db_, sql, -1, &st, nullptr), SQLITE_OK);
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) fail(format("sqlite: %s -> %d", sql, rc));
    return v;
  }
  fs::path dir_;
  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* ins_ = nullptr;
  sqlite3_stmt* get_ = nullptr;
  sqlite3_stmt* scan_ = nullptr;
  sqlite3_stmt* del_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Results

constexpr int kEngines = 3;  // pcore, LMDB, SQLite
const char* const kEngineNames[kEngines] = {"pcore", "LMDB", "SQLite"};

struct Measure {
  std::string key;      // json key
  std::string label;    // table row
  std::string unit;
  std::string target;   // printed beside
  std::array<std::vector<double>, kEngines> samples;
  std::string note;
};

std::vector<Measure> g_measures;
std::map<std::string, size_t> g_measure_index;
std::vector<std::string> g_failures;
std::map<std::string, std::array<std::string, kEngines>> g_details;

Measure& measure(const std::string& key, const std::string& label, const std::string& unit,
                 const std::string& target = "") {
  auto it = g_measure_index.find(key);
  if (it != g_measure_index.end()) return g_measures[it->second];
  g_measure_index[key] = g_measures.size();
  g_measures.push_back(Measure{key, label, unit, target, {}, ""});
  return g_measures.back();
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2.0;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string size_label(size_t n) {
  if (n >= 1000000 && n % 1000000 == 0) return format("%zuM", n / 1000000);
  if (n >= 1000 && n % 1000 == 0) return format("%zuk", n / 1000);
  return format("%zu", n);
}

// ---------------------------------------------------------------------------------------------
// Phases

struct PeerData {
  size_t n;
  KeySet keys;
  KeySet lookups;  // the keys in another random order
  KeySet sorted;   // the keys in key order
  uint64_t value_sum;
};

// Times the engine's ordered scan; for pcore also the combined (next_get) and batch scans. The
// peers' one scan is their figure on every row, so each row's ratio compares against it.
template <class E>
void measure_scans(int engine, E& e, const std::string& what, const std::string& key, size_t n,
                   uint64_t value_sum) {
  const double dn = static_cast<double>(n);
  auto timed = [&](auto&& scan) {
    auto t0 = Clock::now();
    ScanResult sr = scan();
    double t = seconds_since(t0);
    if (sr.count != n || sr.value_sum != value_sum)
      fail(format("%s: scan saw %" PRIu64 " entries (value sum %s), expected %zu", E::kName, sr.count,
                  sr.value_sum == value_sum ? "right" : "wrong", n));
    return t * 1e9 / dn;
  };
  const double stepped = timed([&] { return e.scan(); });
  double combined = stepped, batch = stepped;
  if constexpr (std::is_same_v<E, PcoreEngine>) {
    combined = timed([&] { return e.scan_next_get(); });
    batch = timed([&] { return e.scan_batch(); });
  }
  measure(key, "ordered scan " + what, "ns/entry", "next+get <= 2x LMDB").samples[engine].push_back(stepped);
  measure(key + "_next_get", "ordered scan " + what + " (next_get)", "ns/entry", "<= 1.5x LMDB")
      .samples[engine].push_back(combined);
  measure(key + "_batch", "ordered scan " + what + " (batch)", "ns/entry", "<= LMDB").samples[engine].push_back(batch);
}

template <class E>
void peers_run(int engine, const PeerData& pd, int run, bool check_deep) {
  const size_t n = pd.n;
  const std::string sz = size_label(n);
  const double dn = static_cast<double>(n);
  const bool big = n >= 1000000;
  const std::string tgt_le = "<= LMDB (aim 0.8x)";

  // Random load, lookups, scan, space.
  {
    fs::path dir = fresh_dir(E::kName);
    E e;
    e.open(dir);
    auto t0 = Clock::now();
    double t_commit = e.load(pd.keys, false);
    double t_ins = seconds_since(t0);
    if (e.entries() != n) fail(format("%s: %" PRIu64 " entries after %zu inserts", E::kName, e.entries(), n));

    t0 = Clock::now();
    e.lookup(pd.lookups);
    double t_get = seconds_since(t0);

    measure_scans(engine, e, sz, "scan_" + sz, n, pd.value_sum);
    if (check_deep) e.verify_order(pd.sorted);

    measure("insert_random_" + sz, "insert random " + sz, "ns/insert", tgt_le)
        .samples[engine].push_back(t_ins * 1e9 / dn);
    measure("commit_random_" + sz, "  of which the commit", "ns/insert")
        .samples[engine].push_back(t_commit * 1e9 / dn);
    measure("lookup_random_" + sz, "lookup random " + sz + " (warm)", "ns/lookup", tgt_le)
        .samples[engine].push_back(t_get * 1e9 / dn);

    Space s = e.space();
    measure("bytes_per_entry_random_" + sz, "bytes/entry random " + sz + " (pages)", "B",
            big ? "<= 45" : "")
        .samples[engine].push_back(s.bytes_per_entry);
    measure("file_bytes_per_entry_random_" + sz, "bytes/entry random " + sz + " (files, open)", "B")
        .samples[engine].push_back(s.file_bytes_per_entry);
    if (g_details["random " + sz][engine].empty()) g_details["random " + sz][engine] = s.detail;

    if (check_deep) {
      if constexpr (std::is_same_v<E, PcoreEngine>) {
        // Untimed: the committed tree survives close + reopen, every key with its value.
        e.reopen();
        if (e.entries() != n) fail(format("pcore: %" PRIu64 " entries after reopen, expected %zu", e.entries(), n));
        e.lookup(pd.lookups);
        ScanResult r2 = e.scan();
        if (r2.count != n || r2.value_sum != pd.value_sum) fail("pcore: scan after reopen differs");
      }
    }
    e.close();
    // On disk once closed: pcore checkpoints and empties its log, SQLite checkpoints and
    // removes its WAL, LMDB is unchanged.
    measure("closed_file_bytes_per_entry_random_" + sz, "bytes/entry random " + sz + " (files, closed)", "B")
        .samples[engine].push_back(disk_use(dir).apparent / dn);
    fs::remove_all(dir);
  }

  // Sorted bulk load.
  {
    fs::path dir = fresh_dir(E::kName);
    E e;
    e.open(dir);
    auto t0 = Clock::now();
    double t_commit = e.load(pd.sorted, true);
    double t_ins = seconds_since(t0);
    if (e.entries() != n) fail(format("%s: %" PRIu64 " entries after sorted load of %zu", E::kName, e.entries(), n));
    ScanResult sr = e.scan();
    if (sr.count != n || sr.value_sum != pd.value_sum)
      fail(format("%s: scan after sorted load saw %" PRIu64 " entries, expected %zu", E::kName, sr.count, n));
    if (check_deep) {
      e.verify_order(pd.sorted);
      e.lookup(pd.lookups);
    }
    measure("insert_sorted_" + sz, "sorted load " + sz, "ns/insert", "<= LMDB MDB_APPEND")
        .samples[engine].push_back(t_ins * 1e9 / dn);
    measure("commit_sorted_" + sz, "  of which the commit", "ns/insert")
        .samples[engine].push_back(t_commit * 1e9 / dn);
    Space s = e.space();
    measure("bytes_per_entry_sorted_" + sz, "bytes/entry sorted " + sz + " (pages)", "B")
        .samples[engine].push_back(s.bytes_per_entry);
    if (g_details["sorted " + sz][engine].empty()) g_details["sorted " + sz][engine] = s.detail;
    e.close();
    fs::remove_all(dir);
  }
  (void)run;
}

template <class E>
void kizuna_run(int engine, const KeySet& ins, const KeySet& look, const KeySet& sorted, bool check_deep) {
  const KeySet& ks = ins;
  const std::string sz = size_label(ks.n);
  fs::path dir = fresh_dir(E::kName);
  E e;
  e.open(dir);
  auto t0 = Clock::now();
  e.load(ins, false);
  double t_ins = seconds_since(t0);
  if (e.entries() != ks.n) fail(format("%s: kizuna %zu: %" PRIu64 " entries", E::kName, ks.n, e.entries()));
  t0 = Clock::now();
  e.lookup(look);
  double t_get = seconds_since(t0);
  if (check_deep) e.verify_order(sorted);
  measure("kizuna_insert_s_" + sz, "Kizuna " + sz + " rows: insert total", "s",
          ks.n == 100000 ? "<= 0.1 s (old tree 0.86-2.18 s)" : "")
      .samples[engine].push_back(t_ins);
  measure("kizuna_lookup_us_" + sz, "Kizuna " + sz + " rows: mean lookup", "us",
          ks.n == 100000 ? "<= 1 us (old tree 4-16 us)" : "<= 1 us")
      .samples[engine].push_back(t_get * 1e6 / ks.n);
  if (ks.n == 100000) {
    Space s = e.space();
    if (g_details["kizuna " + sz][engine].empty()) g_details["kizuna " + sz][engine] = s.detail;
  }
  e.close();
  fs::remove_all(dir);
}

// Removes: the keys loaded (random order, or sorted with each engine's sorted load; the load
// timed as a row of its own, and after the random one the lookups and scans), then every one
// removed in `order`'s order in one transaction and committed (timed together, as inserts are);
// the tree must then be empty.
struct RemoveData {
  KeySet keys;     // random order: the random load
  KeySet sorted;   // key order: the sorted load and the sequential removes
  KeySet removes;  // another random order: the random removes
};

template <class E>
void remove_run(int engine, const RemoveData& rd, bool sequential) {
  const KeySet& load = sequential ? rd.sorted : rd.keys;
  const KeySet& gone = sequential ? rd.sorted : rd.removes;
  fs::path dir = fresh_dir(E::kName);
  E e;
  e.open(dir);
  // The load and (random) lookups of these keys are timed too: the integer-sized keys' rows
  // beside the 24-byte keys' of the peers table.
  const std::string keys = format("%zu-byte keys %s", load.width, size_label(load.n).c_str());
  const std::string tag = format("%zub_%s", load.width, size_label(load.n).c_str());
  const double dn = static_cast<double>(load.n);
  auto t_load = Clock::now();
  e.load(load, sequential);
  const double load_ns = seconds_since(t_load) * 1e9 / dn;
  if (sequential) {
    measure("insert_sorted_" + tag, "sorted load " + keys, "ns/insert", "<= LMDB MDB_APPEND")
        .samples[engine].push_back(load_ns);
  } else {
    measure("insert_random_" + tag, "insert random " + keys, "ns/insert", "<= LMDB").samples[engine].push_back(load_ns);
    auto t_get = Clock::now();
    e.lookup(rd.removes);
    measure("lookup_random_" + tag, "lookup random " + keys + " (warm)", "ns/lookup", "<= LMDB")
        .samples[engine].push_back(seconds_since(t_get) * 1e9 / dn);
    measure_scans(engine, e, keys, "scan_" + tag, load.n, load.value_sum());
  }
  auto t0 = Clock::now();
  double t_commit = e.remove(gone);
  double t_rm = seconds_since(t0);
  if (e.entries() != 0) fail(format("%s: %" PRIu64 " entries after removing all", E::kName, e.entries()));
  const std::string what = format("%s %zu-byte keys %s", sequential ? "sequential" : "random", gone.width,
                                  size_label(gone.n).c_str());
  const std::string key = format("remove_%s_%zub_%s", sequential ? "sequential" : "random", gone.width,
                                 size_label(gone.n).c_str());
  measure(key, "remove " + what, "ns/remove", "<= LMDB").samples[engine].push_back(t_rm * 1e9 / gone.n);
  measure(key + "_commit", "  of which the commit", "ns/remove").samples[engine].push_back(t_commit * 1e9 / gone.n);
  e.close();
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Footprint: bytes on disk per entry (issue 18), every engine closed (pcore checkpointed,
// SQLite's WAL checkpointed away), and of a compacted copy of the same commit.

// Keys [from, from + count) of ks.
KeySet slice(const KeySet& ks, size_t from, size_t count) {
  KeySet out;
  out.width = ks.width;
  out.n = count;
  out.bytes.assign(ks.key(from), ks.key(from) + count * ks.width);
  out.vals.assign(ks.vals.begin() + from, ks.vals.begin() + from + count);
  return out;
}

constexpr size_t kStatementRows = 500;

// One footprint row: bytes on disk of `dir` (allocated blocks) per entry.
void record_footprint(int engine, const fs::path& dir, uint64_t entries, const std::string& key,
                      const std::string& label, const std::string& target = "") {
  const double per_entry = static_cast<double>(disk_use(dir).allocated) / static_cast<double>(entries);
  measure(key, label, "B/entry", target).samples[engine].push_back(per_entry);
}

// Loads `keys` (insert) or takes them out (remove) in commits of 500, as a SQL engine's
// statements would.
template <class E>
void in_statements(E& e, const KeySet& keys, bool insert) {
  for (size_t from = 0; from < keys.n; from += kStatementRows) {
    const KeySet part = slice(keys, from, std::min(kStatementRows, keys.n - from));
    if (insert) e.load(part, false);
    else e.remove(part);
  }
}

// Random inserts in one commit; in commits of 500; then half of them removed in commits of
// 500: each measured once the engine is closed, and as a compacted copy of the same commit.
template <class E>
void footprint_run(int engine, const KeySet& keys, const KeySet& half) {
  const std::string sz = size_label(keys.n);
  const uint64_t left = keys.n - half.n;
  for (int shape = 0; shape < 3; ++shape) {
    const fs::path dir = fresh_dir(E::kName);
    const fs::path copy = fresh_dir(E::kName) / "copy";
    E e;
    e.open(dir);
    if (shape == 0) e.load(keys, false);
    else in_statements(e, keys, true);
    if (shape == 2) in_statements(e, half, false);
    const uint64_t entries = shape == 2 ? left : keys.n;
    if (e.entries() != entries) fail(format("%s: %" PRIu64 " entries, not %" PRIu64, E::kName, e.entries(), entries));
    const double live = e.space().bytes_per_entry;
    e.compact_copy(copy);
    e.close();
    const char* what[] = {"in 1 commit", "500 a commit", "500s, half removed"};
    const char* key[] = {"once", "500", "half"};
    const std::string row = format("space_%s_%s", key[shape], sz.c_str());
    const std::string shape_label = sz + " " + what[shape];
    record_footprint(engine, dir, entries, row, shape_label + ": on disk", shape == 0 ? "" : "pcore <= 1.5x live");
    record_footprint(engine, copy, entries, row + "_copy", shape_label + ": compacted",
                     shape == 2 ? "pcore <= 1.2x live" : "");
    measure(row + "_live", shape_label + ": live pages", "B/entry").samples[engine].push_back(live);
    fs::remove_all(dir);
    fs::remove_all(copy.parent_path());
  }
}

// Runs fn for engine `engine`, recording a failure instead of stopping the benchmark.
bool guarded(const std::string& what, const std::function<void()>& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception& ex) {
    std::string m = what + ": " + ex.what();
    fprintf(stderr, "CHECK FAILED: %s\n", m.c_str());
    g_failures.push_back(m);
    return false;
  }
}

int g_only = -1;  // --only: one engine

template <class F>
void for_engines_rotated(int run, F&& f) {
  for (int j = 0; j < kEngines; ++j) {
    int e = (run + j) % kEngines;
    if (g_only < 0 || g_only == e) f(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Output

std::string fmt_value(double v, const std::string& unit) {
  if (std::isnan(v)) return "-";
  if (unit == "s") return format("%.4f", v);
  if (unit == "us") return format("%.3f", v);
  if (v >= 100) return format("%.0f", v);
  if (v >= 10) return format("%.1f", v);
  return format("%.2f", v);
}

std::string fmt_ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b == 0) return "-";
  return format("%.2f", a / b);
}

// The table a measure belongs to, by its key's prefix.
enum class Table { kPeers, kKizuna, kSnapshots, kSpace };

Table table_of(const std::string& key) {
  if (key.rfind("kizuna_", 0) == 0) return Table::kKizuna;
  if (key.rfind("snap_", 0) == 0) return Table::kSnapshots;
  if (key.rfind("space_", 0) == 0) return Table::kSpace;
  return Table::kPeers;
}

void print_table(const char* title, Table table) {
  printf("\n%s\n", title);
  printf("%-40s %-9s %10s %10s %10s %10s %12s  %s\n", "measure", "unit", "pcore", "LMDB", "SQLite",
         "pcore/LMDB", "pcore/SQLite", "target");
  printf("%s\n", std::string(40 + 1 + 9 + 4 * 11 + 13 + 2 + 34, '-').c_str());
  for (const Measure& m : g_measures) {
    if (table_of(m.key) != table) continue;
    double med[kEngines];
    for (int e = 0; e < kEngines; ++e) med[e] = median(m.samples[e]);
    printf("%-40s %-9s %10s %10s %10s %10s %12s  %s\n", m.label.c_str(), m.unit.c_str(),
           fmt_value(med[0], m.unit).c_str(), fmt_value(med[1], m.unit).c_str(),
           fmt_value(med[2], m.unit).c_str(), fmt_ratio(med[0], med[1]).c_str(),
           fmt_ratio(med[0], med[2]).c_str(), m.target.c_str());
  }
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) o += format("\\u%04x", c);
    else o += c;
  }
  return o;
}

std::string json_num(double v) { return std::isnan(v) ? "null" : format("%.6g", v); }

bool write_json(const std::string& path, const std::string& config) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return false;
  fprintf(f, "{\n  \"config\": %s,\n  \"measures\": [\n", config.c_str());
  for (size_t i = 0; i < g_measures.size(); ++i) {
    const Measure& m = g_measures[i];
    fprintf(f, "    {\"key\": \"%s\", \"label\": \"%s\", \"unit\": \"%s\", \"target\": \"%s\"",
            json_escape(m.key).c_str(), json_escape(m.label).c_str(), json_escape(m.unit).c_str(),
            json_escape(m.target).c_str());
    double med[kEngines];
    for (int e = 0; e < kEngines; ++e) {
      med[e] = median(m.samples[e]);
      fprintf(f, ", \"%s\": %s", kEngineNames[e], json_num(med[e]).c_str());
    }
    fprintf(f, ", \"ratio_pcore_lmdb\": %s, \"ratio_pcore_sqlite\": %s",
            json_num(med[1] ? med[0] / med[1] : std::nan("")).c_str(),
            json_num(med[2] ? med[0] / med[2] : std::nan("")).c_str());
    fprintf(f, ", \"samples\": {");
    for (int e = 0; e < kEngines; ++e) {
      fprintf(f, "%s\"%s\": [", e ? ", " : "", kEngineNames[e]);
      for (size_t s = 0; s < m.samples[e].size(); ++s)
        fprintf(f, "%s%s", s ? ", " : "", json_num(m.samples[e][s]).c_str());
      fprintf(f, "]");
    }
    fprintf(f, "}}%s\n", i + 1 < g_measures.size() ? "," : "");
  }
  fprintf(f, "  ],\n  \"failures\": [");
  for (size_t i = 0; i < g_failures.size(); ++i)
    fprintf(f, "%s\"%s\"", i ? ", " : "", json_escape(g_failures[i]).c_str());
  fprintf(f, "]\n}\n");
  return fclose(f) == 0;
}

double loadavg1() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) < 1) return -1;
  return l[0];
}

void usage() {
  fprintf(stderr,
          "usage: btree_bench [--quick] [--json FILE] [--dir DIR] [--runs N] [--runs-1m N]\n"
          "                   [--kizuna-runs N] [--seed S] [--no-1m] [--no-kizuna]\n"
          "                   [--only pcore|lmdb|sqlite] [--sqlite-cache-mib N]\n"
          "                   [--no-remove] [--only-remove] [--remove-n N] [--remove-order random|sequential|both]\n"
          "                   [--no-snapshots] [--only-snapshots] [--writer-seconds S]\n"
          "                   [--writer-keys N] [--no-space] [--only-space]\n");
}

}  // namespace

// The read-snapshot phase (snapshot_bench.h): lookups and scans `runs` times, the writer with
// reader processes `writer_runs` times, engines in rotated order.
void snapshot_phase(const snapbench::Config& cfg, int runs, int writer_runs, Clock::time_point t_start) {
  const snapbench::Record record = [](const std::string& key, const std::string& label, const std::string& unit,
                                      int engine, double value) {
    measure(key, label, unit).samples[engine].push_back(value);
  };
  auto each_engine = [&](int run, const char* what, auto&& fn) {
    for (int j = 0; j < 2; ++j) {
      const int e = (run + j) % 2;
      if (g_only >= 0 && g_only != e) continue;
      guarded(format("%s snapshot %s run %d", kEngineNames[e], what, run), [&] { fn(e); });
    }
  };
  for (int run = 0; run < runs; ++run) {
    each_engine(run, "reads", [&](int e) { snapbench::read_run(cfg, e, record); });
    fprintf(stderr, "[%6.1f s] snapshot lookups and scans run %d/%d done\n", seconds_since(t_start), run + 1, runs);
  }
  for (int run = 0; run < writer_runs; ++run) {
    each_engine(run, "writer", [&](int e) { snapbench::writer_run(cfg, e, record); });
    fprintf(stderr, "[%6.1f s] snapshot writer run %d/%d done\n", seconds_since(t_start), run + 1, writer_runs);
  }
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--snapshot-reader") return snapbench::reader_main(argc, argv);
  bool quick = false, no_1m = false, no_kizuna = false, no_remove = false, only_remove = false;
  bool no_snapshots = false, only_snapshots = false, no_space = false, only_space = false;
  double writer_seconds = -1;
  size_t writer_keys = 100000;
  size_t remove_n = 0;
  std::string remove_order = "both";  // --remove-order random|sequential|both
  std::string only;  // run one engine only (for profiling): pcore, lmdb or sqlite
  std::string json_path, base_dir;
  int runs = -1, runs_1m = -1, kizuna_runs = -1;
  uint64_t seed = 0x5EED2024ull;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { usage(); exit(2); }
      return argv[++i];
    };
    if (a == "--quick") quick = true;
    else if (a == "--json") json_path = next();
    else if (a == "--dir") base_dir = next();
    else if (a == "--runs") runs = std::stoi(next());
    else if (a == "--runs-1m") runs_1m = std::stoi(next());
    else if (a == "--kizuna-runs") kizuna_runs = std::stoi(next());
    else if (a == "--seed") seed = std::stoull(next(), nullptr, 0);
    else if (a == "--no-1m") no_1m = true;
    else if (a == "--no-kizuna") no_kizuna = true;
    else if (a == "--no-remove") no_remove = true;
    else if (a == "--only-remove") only_remove = true;
    else if (a == "--no-snapshots") no_snapshots = true;
    else if (a == "--only-snapshots") only_snapshots = true;
    else if (a == "--no-space") no_space = true;
    else if (a == "--only-space") only_space = true;
    else if (a == "--writer-seconds") writer_seconds = std::stod(next());
    else if (a == "--writer-keys") writer_keys = std::stoull(next());
    else if (a == "--remove-n") remove_n = std::stoull(next());
    else if (a == "--remove-order") remove_order = next();
    else if (a == "--only") only = next();
    else if (a == "--sqlite-cache-mib") g_sqlite_cache_mib = std::stoi(next());
    else if (a == "-h" || a == "--help") { usage(); return 0; }
    else { usage(); return 2; }
  }
  if (runs < 0) runs = quick ? 3 : 5;
  if (remove_n == 0) remove_n = quick ? 100000 : 1000000;
  if (runs_1m < 0) runs_1m = quick ? 0 : 5;
  if (kizuna_runs < 0) kizuna_runs = quick ? 3 : 5;
  if (quick || no_1m) runs_1m = 0;
  if (writer_seconds < 0) writer_seconds = quick ? 0.2 : 1.0;
  if (only_snapshots) { no_remove = true; no_kizuna = true; only_remove = true; no_space = true; }
  if (only_space) { no_remove = true; no_kizuna = true; only_remove = true; no_snapshots = true; }
  if (runs < 1) { usage(); return 2; }
  if (!only.empty()) {
    for (int e = 0; e < kEngines; ++e) {
      std::string n = kEngineNames[e];
      std::transform(n.begin(), n.end(), n.begin(), ::tolower);
      if (n == only) g_only = e;
    }
    if (g_only < 0) { usage(); return 2; }
  }

  if (base_dir.empty()) {
    const char* t = getenv("TMPDIR");
    base_dir = t && *t ? t : "/tmp";
  }
  std::string tmpl = (fs::path(base_dir) / "btree_bench.XXXXXX").string();
  std::vector<char> tbuf(tmpl.begin(), tmpl.end());
  tbuf.push_back('\0');
  if (!mkdtemp(tbuf.data())) {
    fprintf(stderr, "btree_bench: cannot make a directory under %s\n", base_dir.c_str());
    return 2;
  }
  g_root = tbuf.data();

  const uint32_t abi = pcore_abi_version();
  if ((abi >> 16) != (PCORE_ABI_VERSION >> 16)) {
    fprintf(stderr, "btree_bench: libpcore ABI %u.%u, header %u.x\n", abi >> 16, abi & 0xFFFF,
            PCORE_ABI_VERSION >> 16);
    return 2;
  }

  const auto t_start = Clock::now();
  const double load_start = loadavg1();
  printf("btree_bench: pcore ABI %u.%u, LMDB %s, SQLite %s; scratch %s\n", abi >> 16, abi & 0xFFFF,
         MDB_VERSION_STRING, sqlite3_libversion(), g_root.c_str());
  printf("keys: random 24-byte keys, 8-byte values, seed %#" PRIx64 "; runs: %d (100k), %d (1M), %d (Kizuna)%s\n",
         seed, runs, runs_1m, kizuna_runs, quick ? " [--quick]" : "");
  if (g_sqlite_cache_mib > 0)
    printf("SQLite page cache: %d MiB (PRAGMA cache_size; --sqlite-cache-mib 0 for SQLite's 2 MB default)\n",
           g_sqlite_cache_mib);
  else
    printf("SQLite page cache: SQLite's default (2 MB)\n");
  if (g_only >= 0) printf("only: %s\n", kEngineNames[g_only]);
  fflush(stdout);

  // --- Peers comparison.
  std::vector<std::pair<size_t, int>> sizes = {{100000, runs}};
  if (runs_1m > 0) sizes.push_back({1000000, runs_1m});
  if (only_remove) sizes.clear();
  for (auto [n, nruns] : sizes) {
    PeerData pd;
    pd.n = n;
    pd.keys = random_keys(n, seed ^ n);
    pd.lookups = permute(pd.keys, shuffled(n, seed + 1));
    pd.sorted = permute(pd.keys, sorted_order(pd.keys));
    pd.value_sum = pd.keys.value_sum();
    for (int run = 0; run < nruns; ++run) {
      auto t0 = Clock::now();
      for_engines_rotated(run, [&](int e) {
        const bool deep = run == 0;
        std::string what = format("%s %s run %d", kEngineNames[e], size_label(n).c_str(), run);
        if (e == 0) guarded(what, [&] { peers_run<PcoreEngine>(0, pd, run, deep); });
        if (e == 1) guarded(what, [&] { peers_run<LmdbEngine>(1, pd, run, deep); });
        if (e == 2) guarded(what, [&] { peers_run<SqliteEngine>(2, pd, run, deep); });
      });
      const std::string sz = size_label(n);
      auto last = [&](const std::string& key, int e) {
        auto& v = g_measures[g_measure_index.at(key)].samples[e];
        return v.empty() ? std::nan("") : v.back();
      };
      fprintf(stderr,
              "[%6.1f s] %s run %d/%d (%.1f s): insert ns pcore %.0f LMDB %.0f SQLite %.0f | lookup %.0f %.0f %.0f"
              " | sorted %.0f %.0f %.0f\n",
              seconds_since(t_start), sz.c_str(), run + 1, nruns, seconds_since(t0),
              last("insert_random_" + sz, 0), last("insert_random_" + sz, 1), last("insert_random_" + sz, 2),
              last("lookup_random_" + sz, 0), last("lookup_random_" + sz, 1), last("lookup_random_" + sz, 2),
              last("insert_sorted_" + sz, 0), last("insert_sorted_" + sz, 1), last("insert_sorted_" + sz, 2));
    }
  }

  // --- Removes: random and sequential, 8- and 16-byte keys.
  if (!no_remove) {
    // Three runs: each loads 1M entries per engine, key size and order (~2 min a run).
    const int nruns = 3;
    for (size_t width : {size_t{8}, size_t{16}}) {
      RemoveData rd;
      rd.keys = random_keys(remove_n, seed ^ (width << 40), width);
      rd.sorted = permute(rd.keys, sorted_order(rd.keys));
      rd.removes = permute(rd.keys, shuffled(remove_n, seed + 4));
      for (int run = 0; run < nruns; ++run) {
        for (bool sequential : {false, true}) {
          if (remove_order != "both" && (remove_order == "sequential") != sequential) continue;
          for_engines_rotated(run, [&](int e) {
            std::string what = format("%s remove %zu-byte run %d", kEngineNames[e], width, run);
            if (e == 0) guarded(what, [&] { remove_run<PcoreEngine>(0, rd, sequential); });
            if (e == 1) guarded(what, [&] { remove_run<LmdbEngine>(1, rd, sequential); });
            if (e == 2) guarded(what, [&] { remove_run<SqliteEngine>(2, rd, sequential); });
          });
        }
        fprintf(stderr, "[%6.1f s] removes %zu-byte keys run %d/%d done\n", seconds_since(t_start), width,
                run + 1, nruns);
      }
    }
  }

  // --- Kizuna's index benchmark shape.
  if (!no_kizuna && !only_remove && kizuna_runs > 0) {
    for (size_t n : {size_t{1000}, size_t{10000}, size_t{50000}, size_t{100000}}) {
      const KeySet ks = kizuna_keys(n);
      const KeySet ins = permute(ks, shuffled(n, seed + 2));
      const KeySet look = permute(ks, shuffled(n, seed + 3));
      const KeySet sorted = permute(ks, sorted_order(ks));
      for (int run = 0; run < kizuna_runs; ++run) {
        for_engines_rotated(run, [&](int e) {
          const bool deep = run == 0;
          std::string what = format("%s kizuna %zu run %d", kEngineNames[e], n, run);
          if (e == 0) guarded(what, [&] { kizuna_run<PcoreEngine>(0, ins, look, sorted, deep); });
          if (e == 1) guarded(what, [&] { kizuna_run<LmdbEngine>(1, ins, look, sorted, deep); });
          if (e == 2) guarded(what, [&] { kizuna_run<SqliteEngine>(2, ins, look, sorted, deep); });
        });
      }
      fprintf(stderr, "[%6.1f s] Kizuna %zu rows done\n", seconds_since(t_start), n);
    }
  }

  // --- Bytes on disk per entry (issue 18): one run, a byte count is not noisy.
  if (!no_space) {
    const size_t n = quick ? 100000 : 1000000;
    const KeySet keys = random_keys(n, seed ^ 0x5EACE);
    const KeySet half = permute(keys, [&] {
      std::vector<uint32_t> order = shuffled(n, seed + 5);
      order.resize(n / 2);
      return order;
    }());
    for_engines_rotated(0, [&](int e) {
      std::string what = format("%s footprint %zu", kEngineNames[e], n);
      if (e == 0) guarded(what, [&] { footprint_run<PcoreEngine>(0, keys, half); });
      if (e == 1) guarded(what, [&] { footprint_run<LmdbEngine>(1, keys, half); });
      if (e == 2) guarded(what, [&] { footprint_run<SqliteEngine>(2, keys, half); });
    });
    fprintf(stderr, "[%6.1f s] footprint done\n", seconds_since(t_start));
  }

  // --- Read snapshots against LMDB's read transactions (issue 15).
  snapbench::Config snap_cfg;
  if (!no_snapshots) {
    std::error_code ec;
    snap_cfg.self = fs::read_symlink("/proc/self/exe", ec).string();
    if (ec) snap_cfg.self = argv[0];
    snap_cfg.dir = g_root.string();
    snap_cfg.lookup_keys = quick ? 100000 : 1000000;
    snap_cfg.writer_keys = writer_keys;
    snap_cfg.writer_seconds = writer_seconds;
    snap_cfg.seed = seed;
    snapshot_phase(snap_cfg, runs, quick ? 1 : 3, t_start);
  }

  // --- Tables.
  printf("\nmedians; ratio = pcore / peer (< 1: pcore is faster or smaller). Insert times include the\n"
         "one commit at the end of the load; lookups are warm, in another random order.\n");
  if (runs_1m > 0 && runs_1m < runs)
    printf("NOTE: the 1M cases are medians of %d runs only (time budget).\n", runs_1m);
  print_table("== B+ tree against its peers (random 24-byte keys, 8-byte values, 4 KiB pages)", Table::kPeers);
  printf("\npeers targets: insert and lookup <= LMDB at 100k and 1M (aim 0.8x); sorted load <= LMDB\n"
         "with MDB_APPEND; <= 45 bytes per entry after random inserts (1M). 'pages' = the engine's\n"
         "pages x page size / entries (pcore: pcore_tree_stats bytes_per_entry; LMDB: mdb_env_stat;\n"
         "SQLite: page_count x page_size); 'files' = apparent size of the store's files / entries,\n"
         "right after the commit ('open': pcore's log and SQLite's WAL still hold copies of the pages)\n"
         "and after close ('closed': checkpointed).\n");
  if (!no_kizuna && kizuna_runs > 0) {
    print_table("== Kizuna index benchmark shape (17-byte keys: 8-byte header + 'key%06d', 8-byte values,\n"
                "   random insert order, one commit at the end; mean lookup over all rows)", Table::kKizuna);
    printf("\nKizuna targets (its issue): 100k index inserts <= 0.1 s, lookups <= 1 us;\n"
           "Kizuna's old tree on this hardware: 0.86-2.18 s for 100k inserts, 4-16 us per lookup.\n");
  }
  if (!no_snapshots) {
    print_table("== read snapshots against LMDB read transactions (random 16-byte keys, 8-byte values)", Table::kSnapshots);
    printf("\nsnapshot rows: lookups in random order on %zu entries; LMDB's peer of 'no snapshot' and 'one\n"
           "snapshot' is one read txn for all, of 'snapshot per lookup' mdb_txn_begin(RDONLY)/get/abort,\n"
           "then reset/renew; scans through a snapshot cursor against one LMDB cursor (MDB_NEXT) on every\n"
           "row ('no snapshot': pcore's plain cursor). Writer (STRICT against LMDB's default sync, EVENTUAL\n"
           "against MDB_NOSYNC): %.1f s of commits of 100 new keys on %zu entries while 0, 1 or 4 reader\n"
           "processes (this program again; a read-only open, pcore_snapshot_begin / 1000 lookups / end in a loop;\n"
           "LMDB: renew / 1000 gets / reset) run flat out: on a 2-core machine they also take the writer's\n"
           "CPU. A pcore read-only open reads the commit it opened at, so its reader pins that commit's\n"
           "blocks for its whole life: 'pinned_bytes / data file'.\n",
           snap_cfg.lookup_keys, snap_cfg.writer_seconds, snap_cfg.writer_keys);
  }
  if (!no_space) {
    print_table("== bytes on disk per entry (random 24-byte keys, 8-byte values; allocated blocks of every file)",
                Table::kSpace);
    printf("\nfootprint rows: each engine closed (pcore checkpointed, SQLite's WAL checkpointed away), its\n"
           "durability as above; 'live pages' = the engine's own pages x page size / entries; 'compacted\n"
           "copy' = pcore_store_backup, mdb_env_copy2(MDB_CP_COMPACT) (mdb_copy -c), VACUUM INTO, taken\n"
           "while open. Removes take a random half, 500 per commit.\n");
  }
  printf("\nshape after the first run of each load:\n");
  for (auto& [k, d] : g_details)
    for (int e = 0; e < kEngines; ++e)
      if (!d[e].empty()) printf("  %-14s %-7s %s\n", k.c_str(), kEngineNames[e], d[e].c_str());

  const double elapsed = seconds_since(t_start);
  printf("\ntotal %.1f s; load average %.2f at start, %.2f at end (2 cores: > ~0.5 means someone else "
         "was running)\n", elapsed, load_start, loadavg1());

  if (!json_path.empty()) {
    std::string config = format(
        "{\"seed\": %" PRIu64 ", \"runs\": %d, \"runs_1m\": %d, \"kizuna_runs\": %d, \"quick\": %s, "
        "\"pcore_abi\": \"%u.%u\", \"lmdb\": \"%s\", \"sqlite\": \"%s\", \"sqlite_cache_mib\": %d, "
        "\"seconds\": %.1f}",
        seed, runs, runs_1m, kizuna_runs, quick ? "true" : "false", abi >> 16, abi & 0xFFFF,
        MDB_VERSION_STRING, sqlite3_libversion(), g_sqlite_cache_mib, elapsed);
    if (!write_json(json_path, config)) {
      fprintf(stderr, "btree_bench: cannot write %s\n", json_path.c_str());
      g_failures.push_back("cannot write " + json_path);
    } else {
      printf("medians written to %s\n", json_path.c_str());
    }
  }

  std::error_code ec;
  fs::remove_all(g_root, ec);

  if (!g_failures.empty()) {
    printf("\nFAILED (%zu correctness checks or output errors):\n", g_failures.size());
    for (const auto& f : g_failures) printf("  %s\n", f.c_str());
    return 1;
  }
  printf("all correctness checks passed\n");
  return 0;
}
