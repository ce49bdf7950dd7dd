// CrashRecoveryTest: a child process (this binary, re-executed with posix_spawn so the parent's
// threads never matter) opens a store and publishes, grows, frees and commits in a loop; after
// each commit returns it reports what is now committed through a pipe. The parent SIGKILLs it
// at random moments, then reopens the store and checks:
//   - every acknowledged commit is there, byte for byte (or exactly one newer commit, whose
//     acknowledgement the kill cut off: the store must match one of the two states entirely);
//   - nothing uncommitted is visible: ids allocated after the last durable commit are absent,
//     updates and frees after it are not visible;
//   - freed ids stay gone; the allocator agrees with the object table (pcore_store_verify);
//   - no live block is handed out again: new nodes written over their whole capacity after a
//     reopen leave every old node intact.
// The master seed is printed with every failure (rerun with PCORE_CRASH_SEED=<seed>);
// PCORE_CRASH_ROUNDS sets the number of kills per test (default 24).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <pcore.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::Rng;
using pcore_test::ScratchDir;

// ---- the report protocol ------------------------------------------------------------------

constexpr uint32_t kRecordMagic = 0x50435231;  // "PCR1"

enum RecordType : uint8_t {
  kReady = 1,       // store opened, about to work
  kPublish = 2,     // id now holds len bytes of pattern(seed), kind (not yet committed)
  kFree = 3,        // id freed (not yet committed)
  kCommit = 4,      // pcore_store_commit returned; id = the new epoch
  kChildError = 5,  // an operation failed; the child exits
};

struct Record {
  uint32_t magic;
  uint8_t type;
  uint8_t kind;
  uint16_t reserved;
  uint64_t id;
  uint64_t len;
  uint64_t seed;
};
static_assert(sizeof(Record) == 32, "one record per atomic pipe write");

// ---- the child ------------------------------------------------------------------------------

void send(const Record& record) {
  pcore_test::child_send(&record, sizeof(record));
}

void send(RecordType type, uint64_t id = 0, uint64_t len = 0, uint64_t seed = 0, uint8_t kind = 0) {
  send(Record{kRecordMagic, type, kind, 0, id, len, seed});
}

[[noreturn]] void child_fail(const char* what, int32_t status) {
  std::fprintf(stderr, "crash child: %s -> %s\n", what, pcore_test::describe_status(status).c_str());
  send(kChildError, static_cast<uint64_t>(status));
  _exit(3);
}

#define CHILD_CHECK(expr)                  \
  do {                                     \
    const int32_t child_status_ = (expr);  \
    if (child_status_ != pcore_test::kOk) { \
      child_fail(#expr, child_status_);    \
    }                                      \
  } while (0)

size_t pick_len(Rng& rng) {
  switch (rng.next() % 10) {
    case 0:
    case 1:
    case 2:
      return rng.between(1, 64);
    case 3:
    case 4:
      return rng.between(65, 512);
    case 5:
    case 6:
      return rng.between(513, 4096);
    case 7:
    case 8:
      return rng.between(4097, 8192);
    default:
      return rng.between(8193, 40000);  // above the default inline-payload threshold
  }
}

struct LiveNode {
  uint64_t id;
  uint64_t len;
};

// args: store dir, state file (the committed nodes: id, len pairs), seed, durability.
int crash_writer_main(const std::vector<std::string>& args) {
  if (args.size() != 4) {
    std::fprintf(stderr, "crash child: expected 4 arguments\n");
    return 2;
  }
  const std::string& dir = args[0];
  const uint64_t seed = std::strtoull(args[2].c_str(), nullptr, 16);
  PcoreStoreOptions options;
  CHILD_CHECK(pcore_store_options_init(&options));
  options.durability = static_cast<uint32_t>(std::strtoul(args[3].c_str(), nullptr, 10));
  PcoreStore* store = nullptr;
  CHILD_CHECK(pcore_store_open(dir.c_str(), &options, &store));

  std::vector<LiveNode> live;
  {
    const std::vector<uint8_t> state = pcore_test::read_file(args[1]);
    for (size_t at = 0; at + 16 <= state.size(); at += 16) {
      LiveNode node{};
      std::memcpy(&node.id, &state[at], 8);
      std::memcpy(&node.len, &state[at + 8], 8);
      live.push_back(node);
    }
  }
  send(kReady);

  Rng rng(seed);
  std::vector<uint8_t> buffer;
  uint64_t commits = 0;
  for (;;) {
    const uint64_t ops = rng.between(1, 12);
    for (uint64_t op = 0; op < ops; ++op) {
      const uint64_t choice = rng.next() % 10;
      const bool grow_population = live.size() < 40 || (choice < 4 && live.size() < 1500);
      if (grow_population) {
        const size_t len = pick_len(rng);
        const uint8_t kind = static_cast<uint8_t>(rng.between(1, 5));
        PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
        CHILD_CHECK(pcore_node_allocate(store, len, kind, &alloc));
        const uint64_t content = rng.next();
        if (rng.chance(50)) {
          pcore_test::fill_pattern(alloc.writable, len, content);
          CHILD_CHECK(pcore_node_publish(store, alloc.id, alloc.writable, len, nullptr));
        } else {
          buffer.resize(len);
          pcore_test::fill_pattern(buffer.data(), len, content);
          CHILD_CHECK(pcore_node_publish(store, alloc.id, buffer.data(), len, nullptr));
        }
        send(kPublish, alloc.id, len, content, kind);
        live.push_back(LiveNode{alloc.id, len});
      } else if (choice < 8) {
        const size_t index = rng.next() % live.size();
        LiveNode& node = live[index];
        size_t len = node.len;
        switch (rng.next() % 3) {
          case 0:
            len = std::min<size_t>(node.len * 2 + rng.between(0, 100), 100000);  // grow
            break;
          case 1:
            len = std::max<size_t>(1, node.len / 2);
            break;
          default:
            break;
        }
        const uint64_t content = rng.next();
        bool done = false;
        if (rng.chance(40)) {
          void* ptr = nullptr;
          size_t capacity = 0;
          CHILD_CHECK(pcore_node_write_ptr(store, node.id, &ptr, &capacity));
          if (len <= capacity) {
            pcore_test::fill_pattern(ptr, len, content);
            CHILD_CHECK(pcore_node_publish_in_place(store, node.id, len));
            done = true;
          }
        }
        if (!done) {
          buffer.resize(len);
          pcore_test::fill_pattern(buffer.data(), len, content);
          uint64_t out_id = 0;
          CHILD_CHECK(pcore_node_publish(store, node.id, buffer.data(), len, &out_id));
          if (out_id != node.id) {
            child_fail("publish changed the id under STABLE_ID", 0);
          }
        }
        send(kPublish, node.id, len, content, 0);
        node.len = len;
      } else {
        const size_t index = rng.next() % live.size();
        CHILD_CHECK(pcore_node_free(store, live[index].id, 0));
        send(kFree, live[index].id);
        live[index] = live.back();
        live.pop_back();
      }
    }
    uint64_t epoch = 0;
    CHILD_CHECK(pcore_store_commit(store, &epoch));
    send(kCommit, epoch);
    if (++commits % 25 == 0) {
      CHILD_CHECK(pcore_store_checkpoint(store));
    }
  }
}

const pcore_test::ChildRegistrar kRegisterCrashWriter("crash-writer", crash_writer_main);

// ---- the parent -----------------------------------------------------------------------------

struct NodeState {
  uint64_t len;
  uint64_t seed;
  uint8_t kind;
};
using Model = std::map<uint64_t, NodeState>;

struct Operation {
  RecordType type;
  uint64_t id;
  uint64_t len;
  uint64_t seed;
  uint8_t kind;
};

void apply(Model& model, const Operation& op) {
  if (op.type == kFree) {
    model.erase(op.id);
    return;
  }
  auto it = model.find(op.id);
  if (it == model.end()) {
    model[op.id] = NodeState{op.len, op.seed, op.kind};
  } else {
    it->second.len = op.len;
    it->second.seed = op.seed;  // kind is kept by updates
  }
}

// Applies one committed batch. A committed node's free is remembered for good (its id must
// never come back); a node allocated (and maybe freed) within the batch leaves no trace.
void apply_batch(Model& committed, std::set<uint64_t>& gone, const std::vector<Operation>& batch) {
  std::set<uint64_t> committed_before;
  for (const Operation& op : batch) {
    if (committed.count(op.id) != 0) {
      committed_before.insert(op.id);
    }
  }
  for (const Operation& op : batch) {
    if (op.type == kPublish && committed.count(op.id) == 0) {
      EXPECT_EQ(gone.count(op.id), 0u) << "id " << op.id << " was freed and committed, then issued again";
    }
    if (op.type == kFree && committed_before.count(op.id) != 0) {
      gone.insert(op.id);
    }
    apply(committed, op);
  }
}

struct ChildRun {
  std::vector<Record> records;
  bool saw_ready = false;
  int wait_status = 0;
  bool killed_by_us = false;
};

ChildRun run_child_until_killed(const std::string& dir, const std::string& state_file, uint64_t seed,
                                uint32_t durability, bool wait_for_ready, uint64_t delay_ms) {
  char seed_hex[32];
  std::snprintf(seed_hex, sizeof(seed_hex), "%" PRIx64, seed);
  const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
      "crash-writer", {dir, state_file, seed_hex, std::to_string(durability)}, sizeof(Record),
      [](const uint8_t* record) { return record[4] == kReady; }, wait_for_ready, delay_ms);
  return ChildRun{pcore_test::records_of<Record>(child.bytes), child.saw_ready, child.wait_status,
                  child.killed_by_us};
}

void write_state(const std::string& path, const Model& model) {
  std::vector<uint8_t> bytes;
  bytes.reserve(model.size() * 16);
  for (const auto& [id, node] : model) {
    uint8_t entry[16];
    std::memcpy(entry, &id, 8);
    std::memcpy(entry + 8, &node.len, 8);
    bytes.insert(bytes.end(), entry, entry + 16);
  }
  pcore_test::write_file(path, bytes);
}

// Differences between the store and the expected state; empty when they agree.
std::string compare(const pcore::Store& store, const Model& expected, const std::set<uint64_t>& absent) {
  std::ostringstream diff;
  size_t problems = 0;
  auto note = [&](const std::string& what) {
    if (++problems <= 8) {
      diff << "\n    " << what;
    }
  };
  for (const auto& [id, node] : expected) {
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    const int32_t status = pcore_node_info(store.raw(), id, &info);
    if (status != pcore_test::kOk) {
      note("id " + std::to_string(id) + " missing: " + pcore_test::describe_status(status));
      continue;
    }
    if (info.committed != 1) {
      note("id " + std::to_string(id) + " not committed after reopen");
    }
    if (info.kind != node.kind) {
      note("id " + std::to_string(id) + " kind " + std::to_string(info.kind) + ", expected " +
           std::to_string(node.kind));
    }
    PcoreNodeBytes bytes{};
    if (pcore_node_read(store.raw(), id, &bytes) != pcore_test::kOk) {
      note("id " + std::to_string(id) + " unreadable");
      continue;
    }
    if (bytes.len != node.len) {
      note("id " + std::to_string(id) + " len " + std::to_string(bytes.len) + ", expected " +
           std::to_string(node.len));
      continue;
    }
    const size_t at = pcore_test::pattern_mismatch(bytes.data, bytes.len, node.seed);
    if (at != bytes.len) {
      note("id " + std::to_string(id) + " differs at byte " + std::to_string(at) + " of " +
           std::to_string(bytes.len));
    }
  }
  for (uint64_t id : absent) {
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    if (pcore_node_info(store.raw(), id, &info) != static_cast<int32_t>(PCORE_NOT_FOUND)) {
      note("id " + std::to_string(id) + " should be absent (uncommitted or freed) but is present");
    }
  }
  if (problems > 8) {
    diff << "\n    ... " << problems - 8 << " more";
  }
  return diff.str();
}

class CrashRecoveryTest : public ::testing::Test {
 protected:
  void run_kills(uint32_t durability);

  uint64_t master_seed_ = 0;
};

void CrashRecoveryTest::run_kills(uint32_t durability) {
  master_seed_ = pcore_test::env_u64("PCORE_CRASH_SEED", std::random_device{}() * 0x100000001ull ^
                                                             static_cast<uint64_t>(getpid()));
  const uint64_t rounds = std::max<uint64_t>(20, pcore_test::env_u64("PCORE_CRASH_ROUNDS", 24));
  std::ostringstream seed_text;
  seed_text << "PCORE_CRASH_SEED=" << master_seed_;
  SCOPED_TRACE(seed_text.str());
  RecordProperty("seed", std::to_string(master_seed_));

  ScratchDir scratch("crash");
  const std::string dir = scratch.sub("store");
  const std::string state_file = scratch.sub("state.bin");
  pcore::Options options;
  options.durability(static_cast<pcore::Durability>(durability));

  Model committed;                // what the last durable commit holds
  // Ids whose free was committed: never present again (a reused handle gets a new tag).
  // Ids allocated but never committed are only checked absent right after that crash: the
  // id never existed durably, so a later writer may be issued the same id again.
  std::set<uint64_t> gone;
  uint64_t acked_epoch = 0;
  uint64_t kills = 0;
  uint64_t acked_commits = 0;
  uint64_t unacked_commits_found = 0;
  Rng rng(master_seed_);

  for (uint64_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    write_state(state_file, committed);
    // Most rounds wait for the child to be working; every fourth kills it while it opens
    // (recovering from the previous kill).
    const bool wait_for_ready = round % 4 != 3;
    const uint64_t delay_ms = wait_for_ready ? rng.between(2, 100) : rng.between(0, 40);
    const ChildRun run =
        run_child_until_killed(dir, state_file, rng.next(), durability, wait_for_ready, delay_ms);
    ASSERT_FALSE(HasFatalFailure());
    if (WIFEXITED(run.wait_status)) {
      FAIL() << "the child exited by itself with code " << WEXITSTATUS(run.wait_status)
             << " (see its stderr above)";
    }
    ASSERT_TRUE(WIFSIGNALED(run.wait_status) && WTERMSIG(run.wait_status) == SIGKILL);
    ASSERT_TRUE(run.killed_by_us);
    ++kills;

    // Replay the reports: operations become committed when their commit was acknowledged.
    std::vector<Operation> pending;
    for (const Record& record : run.records) {
      ASSERT_EQ(record.magic, kRecordMagic);
      switch (record.type) {
        case kReady:
          break;
        case kPublish:
        case kFree:
          pending.push_back(Operation{static_cast<RecordType>(record.type), record.id, record.len,
                                      record.seed, record.kind});
          break;
        case kCommit:
          EXPECT_GT(record.id, acked_epoch) << "epochs must increase";
          apply_batch(committed, gone, pending);
          pending.clear();
          acked_epoch = record.id;
          ++acked_commits;
          break;
        default:
          FAIL() << "the child reported an error (status " << record.id << ")";
      }
    }

    // The store must hold exactly the acknowledged state, or that state plus the one commit
    // in flight when the kill came (durable, but its acknowledgement never written).
    Model with_in_flight = committed;
    std::set<uint64_t> absent_now = gone;
    std::set<uint64_t> absent_if_in_flight = gone;
    for (const Operation& op : pending) {
      if (op.type == kPublish && committed.count(op.id) == 0) {
        absent_now.insert(op.id);  // allocated, never committed
      }
      apply(with_in_flight, op);
      if (op.type == kFree) {
        absent_if_in_flight.insert(op.id);
      }
    }
    for (const auto& entry : with_in_flight) {
      absent_if_in_flight.erase(entry.first);
    }

    pcore::Store store = pcore::Store::open(dir, options);
    const PcoreStoreStats stats = store.stats();
    EXPECT_GE(stats.epoch, acked_epoch) << "an acknowledged commit was lost";
    const std::string diff_acked = compare(store, committed, absent_now);
    if (!diff_acked.empty()) {
      const std::string diff_in_flight = compare(store, with_in_flight, absent_if_in_flight);
      if (!diff_in_flight.empty() || pending.empty()) {
        FAIL() << "after kill " << kills << " (delay " << delay_ms << " ms, " << run.records.size()
               << " reports, acknowledged epoch " << acked_epoch << ", store epoch " << stats.epoch
               << ") the store matches neither the acknowledged state:" << diff_acked
               << "\n  nor the acknowledged state plus the commit in flight:" << diff_in_flight;
      }
      apply_batch(committed, gone, pending);
      ++unacked_commits_found;
    }
    EXPECT_EQ(stats.live_nodes, committed.size());
    EXPECT_EQ(stats.reserved_nodes, 0u) << "uncommitted nodes survived the crash";
    EXPECT_NO_THROW(store.verify());
    store.close();
  }
  EXPECT_GE(kills, 20u);
  RecordProperty("acknowledged_commits", std::to_string(acked_commits));
  RecordProperty("unacknowledged_durable_commits", std::to_string(unacked_commits_found));
  EXPECT_GT(acked_commits, 0u) << "no commit was ever acknowledged: the kills came too early";

  // No live block is handed out again: fill brand-new nodes over their whole capacity, then
  // check every old node, before and after another reopen.
  {
    pcore::Store store = pcore::Store::open(dir, options);
    std::vector<std::pair<uint64_t, size_t>> fresh;
    for (int i = 0; i < 300; ++i) {
      const pcore::Allocation a = store.allocate(pick_len(rng), 5);
      ASSERT_EQ(committed.count(a.id), 0u) << "a live id was issued again";
      ASSERT_EQ(gone.count(a.id), 0u) << "a freed id was issued again with the same tag";
      std::memset(a.writable, 0x5A, a.capacity);
      store.publish(a.id, a.writable, a.capacity);
      fresh.emplace_back(a.id, a.capacity);
    }
    EXPECT_EQ(compare(store, committed, gone), "") << "before the commit of the new nodes";
    store.commit();
    EXPECT_EQ(compare(store, committed, gone), "") << "after the commit of the new nodes";
    store.close();
    store = pcore::Store::open(dir, options);
    EXPECT_EQ(compare(store, committed, gone), "") << "after reopen";
    for (const auto& [id, capacity] : fresh) {
      const std::optional<pcore::Bytes> bytes = store.try_read(id);
      ASSERT_TRUE(bytes.has_value());
      ASSERT_EQ(bytes->len, capacity);
      EXPECT_TRUE(std::all_of(bytes->begin(), bytes->end(), [](uint8_t b) { return b == 0x5A; }));
    }
    EXPECT_NO_THROW(store.verify());
  }
}

TEST_F(CrashRecoveryTest, StrictModeKeepsEveryAcknowledgedCommit) {
  run_kills(static_cast<uint32_t>(PCORE_DURABILITY_STRICT));
}

// EVENTUAL skips the sync but must still survive a process crash (not a power loss).
TEST_F(CrashRecoveryTest, EventualModeSurvivesProcessKills) {
  run_kills(static_cast<uint32_t>(PCORE_DURABILITY_EVENTUAL));
}

}  // namespace
