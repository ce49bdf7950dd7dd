// BPlusTreeCrashTest: a child process (this binary re-executed with posix_spawn, as
// xtree_crash_recovery_test.cc does) inserts keys into a Kizuna index in batches, one store
// commit per batch, and reports each batch through a pipe once its commit has returned. The
// parent SIGKILLs it at random moments (while it writes, commits, checkpoints, or recovers
// from the previous kill), then reopens the store and checks:
//   - pcore_tree_verify passes (and pcore_store_verify);
//   - every key of every acknowledged batch is there with its value;
//   - the batch in flight at the kill is there entirely or not at all (durable but not yet
//     acknowledged is allowed), and no key of a later batch is there;
//   - the index holds exactly those keys (its size and a complete scan agree).
// The master seed is printed with every failure (rerun with PCORE_CRASH_SEED=<seed>);
// PCORE_CRASH_ROUNDS sets the number of kills per test (default 24, at least 20).
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
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kizuna_test_util.hpp"
#include "test_support.hpp"

namespace {

using kizuna_test::BPlusTree;
using kizuna_test::Key;
using pcore_test::Rng;
using pcore_test::ScratchDir;

constexpr uint32_t kBatchKeys = 64;

/// Key number n: a VARCHAR whose digits scramble n (a bijection of 32-bit numbers), so each
/// batch lands all over the tree; the length varies with n (17..25 bytes).
Key crash_key(uint64_t n) {
  const uint32_t scrambled = static_cast<uint32_t>(n) * 2654435761u;  // odd: a bijection
  char text[40];
  std::snprintf(text, sizeof(text), "k%010u%.*s", scrambled, static_cast<int>(n % 9), "xxxxxxxxx");
  return kizuna::record::encode(kizuna::Value::Varchar(text));
}
kizuna::record_id_t crash_value(uint64_t n) { return kizuna_test::rid(n); }

// ---- the report protocol ------------------------------------------------------------------

constexpr uint32_t kMagic = 0x4B5A4331;  // "KZC1"
enum RecordType : uint32_t { kReady = 1, kCommitted = 2, kChildError = 3 };
struct Report {
  uint32_t magic;
  uint32_t type;
  uint64_t batch;  // kCommitted: this batch's commit returned
};
static_assert(sizeof(Report) == 16, "one report per atomic pipe write");

void send(RecordType type, uint64_t batch) {
  const Report r{kMagic, type, batch};
  pcore_test::child_send(&r, sizeof(r));
}

// args: store dir, index id, first batch, seed (hex), durability.
int kizuna_crash_writer_main(const std::vector<std::string>& args) {
  if (args.size() != 5) {
    std::fprintf(stderr, "kizuna crash child: expected 5 arguments\n");
    return 2;
  }
  try {
    const kizuna::page_id_t index_id = static_cast<kizuna::page_id_t>(std::strtoul(args[1].c_str(), nullptr, 10));
    uint64_t batch = std::strtoull(args[2].c_str(), nullptr, 10);
    Rng rng(std::strtoull(args[3].c_str(), nullptr, 16));
    pcore::Options options;
    options.durability(static_cast<pcore::Durability>(std::strtoul(args[4].c_str(), nullptr, 10)));
    pcore::Store store = pcore::Store::open(args[0], options);
    BPlusTree index(store, index_id, true);
    send(kReady, 0);
    std::vector<uint32_t> order(kBatchKeys);
    for (;; ++batch) {
      for (uint32_t j = 0; j < kBatchKeys; ++j) {
        order[j] = j;
      }
      for (uint32_t j = kBatchKeys - 1; j > 0; --j) {
        std::swap(order[j], order[rng.next() % (j + 1)]);
      }
      for (uint32_t j : order) {
        const uint64_t n = batch * kBatchKeys + j;
        index.Insert(crash_key(n), crash_value(n));
      }
      store.commit();
      send(kCommitted, batch);
      if (batch % 16 == 15) {
        store.checkpoint();
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kizuna crash child: %s\n", e.what());
    send(kChildError, 0);
    _exit(3);
  }
}

const pcore_test::ChildRegistrar kRegisterKizunaCrashWriter("kizuna-crash-writer", kizuna_crash_writer_main);

// ---- the parent -----------------------------------------------------------------------------

struct ChildRun {
  std::vector<Report> reports;
  bool saw_ready = false;
  int wait_status = 0;
  bool killed_by_us = false;
};

ChildRun run_child_until_killed(const std::vector<std::string>& args, bool wait_for_ready, uint64_t delay_ms) {
  const auto is_ready = [](const uint8_t* report) {
    uint32_t type = 0;
    std::memcpy(&type, report + 4, 4);
    return type == kReady;
  };
  const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
      "kizuna-crash-writer", args, sizeof(Report), is_ready, wait_for_ready, delay_ms);
  return ChildRun{pcore_test::records_of<Report>(child.bytes), child.saw_ready, child.wait_status,
                  child.killed_by_us};
}

/// How many keys of batch b the index holds (0..kBatchKeys), checking their values.
uint32_t keys_present(BPlusTree& index, uint64_t batch) {
  uint32_t present = 0;
  for (uint32_t j = 0; j < kBatchKeys; ++j) {
    const uint64_t n = batch * kBatchKeys + j;
    const BPlusTree::SearchResult r = index.Search(crash_key(n));
    if (r.found) {
      EXPECT_EQ(r.value, crash_value(n)) << "key " << n;
      ++present;
    }
  }
  return present;
}

void run_kills(uint32_t durability) {
  const uint64_t master_seed = pcore_test::env_u64(
      "PCORE_CRASH_SEED", std::random_device{}() * 0x100000001ull ^ static_cast<uint64_t>(getpid()));
  const uint64_t rounds = std::max<uint64_t>(20, pcore_test::env_u64("PCORE_CRASH_ROUNDS", 24));
  SCOPED_TRACE("PCORE_CRASH_SEED=" + std::to_string(master_seed));
  ::testing::Test::RecordProperty("seed", std::to_string(master_seed));
  Rng rng(master_seed);

  ScratchDir scratch("kizuna-crash");
  const std::string dir = scratch.sub("store");
  pcore::Options options;
  options.durability(static_cast<pcore::Durability>(durability));
  kizuna::page_id_t index_id = 0;
  {
    pcore::Store store = pcore::Store::open(dir, options);
    BPlusTree index(store, 0, true);
    index_id = index.root_page_id();
    store.commit();
    index.tree().close();
    store.close();
  }

  uint64_t durable_batches = 0;  // batches 0 .. durable_batches-1 are committed
  uint64_t kills = 0;
  uint64_t acknowledged = 0;
  uint64_t unacknowledged_durable = 0;
  for (uint64_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", " + std::to_string(durable_batches) + " batches durable");
    // Most rounds let the child work; every fourth kills it while it opens and recovers.
    const bool wait_for_ready = round % 4 != 3;
    const uint64_t delay_ms = wait_for_ready ? rng.between(5, 120) : rng.between(0, 30);
    char seed_hex[32];
    std::snprintf(seed_hex, sizeof(seed_hex), "%" PRIx64, rng.next());
    const ChildRun run = run_child_until_killed(
        {dir, std::to_string(index_id), std::to_string(durable_batches), seed_hex, std::to_string(durability)},
        wait_for_ready, delay_ms);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    if (WIFEXITED(run.wait_status)) {
      FAIL() << "the child exited by itself with code " << WEXITSTATUS(run.wait_status) << " (see its stderr)";
    }
    ASSERT_TRUE(WIFSIGNALED(run.wait_status) && WTERMSIG(run.wait_status) == SIGKILL);
    ASSERT_TRUE(run.killed_by_us);
    ++kills;

    uint64_t acked_end = durable_batches;  // one past the last acknowledged batch
    for (const Report& r : run.reports) {
      ASSERT_EQ(r.magic, kMagic);
      if (r.type == kChildError) {
        FAIL() << "the child reported an error (see its stderr)";
      }
      if (r.type == kCommitted) {
        ASSERT_EQ(r.batch, acked_end) << "batches are acknowledged in order, none skipped";
        acked_end = r.batch + 1;
        ++acknowledged;
      }
    }

    pcore::Store store = pcore::Store::open(dir, options);
    BPlusTree index(store, index_id, true);
    EXPECT_NO_THROW(index.verify()) << "after kill " << kills << " (delay " << delay_ms << " ms)";
    EXPECT_NO_THROW(store.verify());
    // The batch in flight: all or nothing. Nothing after it.
    const uint32_t in_flight = keys_present(index, acked_end);
    ASSERT_TRUE(in_flight == 0 || in_flight == kBatchKeys)
        << "batch " << acked_end << " is partly there (" << in_flight << " of " << kBatchKeys << " keys)";
    EXPECT_EQ(keys_present(index, acked_end + 1), 0u) << "a batch that was never committed is there";
    const uint64_t end = in_flight == kBatchKeys ? acked_end + 1 : acked_end;
    if (end > acked_end) {
      ++unacknowledged_durable;
    }
    // Every acknowledged key, and nothing else.
    ASSERT_EQ(index.size(), end * kBatchKeys) << "acknowledged batches: " << acked_end;
    for (uint64_t b = 0; b < end; ++b) {
      ASSERT_EQ(keys_present(index, b), kBatchKeys) << "batch " << b << " lost keys (acknowledged: " << acked_end
                                                    << ")";
    }
    const std::vector<kizuna::record_id_t> all = index.ScanRange(std::nullopt, true, std::nullopt, true);
    ASSERT_EQ(all.size(), end * kBatchKeys);
    std::vector<kizuna::record_id_t> sorted = all;
    std::sort(sorted.begin(), sorted.end());
    for (uint64_t n = 0; n < sorted.size(); ++n) {
      ASSERT_EQ(sorted[n], crash_value(n)) << "the scan holds a value that was never acknowledged";
    }
    durable_batches = end;
    index.tree().close();
    store.close();
  }
  EXPECT_GE(kills, 20u);
  EXPECT_GT(acknowledged, 0u) << "no batch was ever acknowledged: the kills came too early";
  ::testing::Test::RecordProperty("acknowledged_batches", std::to_string(acknowledged));
  ::testing::Test::RecordProperty("unacknowledged_durable_batches", std::to_string(unacknowledged_durable));

  // The tree still takes writes after all that, and keeps them.
  pcore::Store store = pcore::Store::open(dir, options);
  {
    BPlusTree index(store, index_id, true);
    for (uint64_t n = durable_batches * kBatchKeys; n < (durable_batches + 4) * kBatchKeys; ++n) {
      index.Insert(crash_key(n), crash_value(n));
    }
    store.commit();
    EXPECT_NO_THROW(index.verify());
    EXPECT_EQ(index.size(), (durable_batches + 4) * kBatchKeys);
  }
}

TEST(BPlusTreeCrashTest, StrictKeepsEveryAcknowledgedBatch) {
  run_kills(static_cast<uint32_t>(PCORE_DURABILITY_STRICT));
}

// EVENTUAL skips the sync: it must still survive a process kill (not a power loss).
TEST(BPlusTreeCrashTest, EventualSurvivesProcessKills) {
  run_kills(static_cast<uint32_t>(PCORE_DURABILITY_EVENTUAL));
}

}  // namespace
