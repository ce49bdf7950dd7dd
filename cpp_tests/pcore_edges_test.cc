// EdgesTest: a store's directory at the edges of its life, through the C ABI as a host sees
// it: a meta file or checkpoint gone, the debris of a creation cut short, creations killed at
// random moments, a lock file deleted, a log cut below what was synced. Each case once lost a
// store or wedged it.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

constexpr uint8_t kKind = 7;

int32_t open_store(const std::string& dir, uint32_t flags, PcoreStore** out) {
  const PcoreStoreOptions options = pcore_test::strict_options(flags);
  return pcore_store_open(dir.c_str(), &options, out);
}

// One node of `len` pattern bytes, published; 0 on failure.
uint64_t add_node(PcoreStore* store, size_t len, uint64_t seed) {
  PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
  if (pcore_node_allocate(store, len, kKind, &alloc) != pcore_test::kOk) return 0;
  pcore_test::fill_pattern(alloc.writable, len, seed);
  if (pcore_node_publish(store, alloc.id, alloc.writable, len, nullptr) != pcore_test::kOk) return 0;
  return alloc.id;
}

::testing::AssertionResult holds(PcoreStore* store, uint64_t id, size_t len, uint64_t seed) {
  PcoreNodeBytes bytes{};
  const int32_t status = pcore_node_read(store, id, &bytes);
  if (status != pcore_test::kOk) return ::testing::AssertionFailure() << pcore_test::describe_status(status);
  if (bytes.len != len || !pcore_test::matches_pattern(bytes.data, len, seed)) {
    return ::testing::AssertionFailure() << "node " << id << " holds other bytes";
  }
  return ::testing::AssertionSuccess();
}

std::map<std::string, std::vector<uint8_t>> snapshot(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const std::string& name : pcore_test::list_files(dir)) files[name] = pcore_test::read_file(dir + "/" + name);
  return files;
}

std::string file_starting(const std::string& dir, const std::string& prefix) {
  for (const std::string& name : pcore_test::list_files(dir)) {
    if (name.rfind(prefix, 0) == 0) return name;
  }
  ADD_FAILURE() << "no " << prefix << "* file in " << dir;
  return "";
}

// Child: a store with a checkpoint (a clean close) and then commits in the log only; with
// "pause", the last commits come more than a second after the first, so the meta file has
// recorded how much of the log was synced. Exits without closing, as a crash would.
int commit_and_vanish_main(const std::vector<std::string>& args) {
  if (args.empty()) return 2;
  const bool pause = args.size() > 1 && args[1] == "pause";
  PcoreStore* store = nullptr;
  if (open_store(args[0], 0, &store) != pcore_test::kOk) return 3;
  if (add_node(store, 300, 1) == 0 || pcore_store_commit(store, nullptr) != pcore_test::kOk) return 4;
  if (pcore_store_close(store) != pcore_test::kOk) return 5;
  if (open_store(args[0], 0, &store) != pcore_test::kOk) return 6;
  for (uint64_t i = 2; i < 8; ++i) {
    if (add_node(store, 300, i) == 0 || pcore_store_commit(store, nullptr) != pcore_test::kOk) return 7;
    if (pause && i == 2) std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  }
  _exit(0);
}
const pcore_test::ChildRegistrar kRegisterCommitAndVanish("edges-commit-and-vanish", commit_and_vanish_main);

// Child: creates store after store (dir/store-<i>), each with one committed node, and sends
// i once its commit returned; each store is left open, as a crash leaves it.
int create_stores_main(const std::vector<std::string>& args) {
  if (args.size() != 1) return 2;
  for (uint64_t i = 0; i < 100000; ++i) {
    PcoreStore* store = nullptr;
    if (open_store(args[0] + "/store-" + std::to_string(i), 0, &store) != pcore_test::kOk) return 3;
    if (add_node(store, 64, i) == 0 || pcore_store_commit(store, nullptr) != pcore_test::kOk) return 4;
    pcore_test::child_send(&i, sizeof i);
  }
  return 0;
}
const pcore_test::ChildRegistrar kRegisterCreateStores("edges-create-stores", create_stores_main);

void run_to_exit(const std::vector<std::string>& args) {
  const pid_t pid = pcore_test::spawn_child("edges-commit-and-vanish", args, -1);
  ASSERT_GT(pid, 0);
  const int status = pcore_test::wait_child(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

TEST(EdgesTest, AStoreWithoutItsMetaIsCorruptAndNothingIsChanged) {
  ScratchDir scratch("edges-meta");
  const std::string dir = scratch.sub("store");
  run_to_exit({dir});
  const std::vector<uint8_t> meta = pcore_test::read_file(dir + "/meta");
  ASSERT_EQ(std::remove((dir + "/meta").c_str()), 0);
  const auto before = snapshot(dir);
  for (uint32_t flags : {0u, uint32_t{PCORE_OPEN_NO_CREATE}, uint32_t{PCORE_OPEN_READ_ONLY}}) {
    PcoreStore* store = nullptr;
    EXPECT_FAILS(PCORE_CORRUPT, open_store(dir, flags, &store));
    EXPECT_NE(std::string(pcore_last_error_message()).find("missing"), std::string::npos)
        << pcore_last_error_message();
    EXPECT_EQ(snapshot(dir), before) << "an open refused with flags " << flags << " changed the directory";
  }
  pcore_test::write_file(dir + "/meta", meta);
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(open_store(dir, 0, &store));
  PcoreStoreStats stats = pcore_test::store_stats(store);
  EXPECT_EQ(stats.live_nodes, 7u) << "every commit is back with the meta";
  PCORE_EXPECT_OK(pcore_store_close(store));
}

TEST(EdgesTest, TheDebrisOfAnInterruptedCreationOpensAsANewStore) {
  ScratchDir scratch("edges-debris");
  // What an older build left when killed while creating: an unwritten meta, an empty log.
  const std::string old_debris = scratch.sub("old");
  const std::string new_debris = scratch.sub("new");
  ASSERT_EQ(mkdir(old_debris.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(new_debris.c_str(), 0755), 0);
  pcore_test::write_file(old_debris + "/meta", {});
  pcore_test::write_file(old_debris + "/wal-1.log", {});
  // What this build leaves: a meta not yet renamed into place.
  pcore_test::write_file(new_debris + "/meta.creating", {1, 2, 3});
  for (const std::string& dir : {old_debris, new_debris}) {
    PcoreStore* store = nullptr;
    EXPECT_FAILS(PCORE_NOT_FOUND, open_store(dir, PCORE_OPEN_READ_ONLY, &store));
    PCORE_ASSERT_OK(open_store(dir, 0, &store));
    const uint64_t id = add_node(store, 50, 9);
    ASSERT_NE(id, 0u);
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
    PCORE_ASSERT_OK(pcore_store_close(store));
    PCORE_ASSERT_OK(open_store(dir, PCORE_OPEN_READ_ONLY, &store));
    EXPECT_TRUE(holds(store, id, 50, 9));
    PCORE_EXPECT_OK(pcore_store_close(store));
  }
}

// Kills land while stores are being created: every store the child started is whole (its
// node there once acknowledged), or absent and created anew by the next writable open.
TEST(EdgesTest, CreationsKilledAtRandomMomentsLeaveNoStoreOrAWholeOne) {
  ScratchDir scratch("edges-create-kill");
  pcore_test::Rng rng(2026);
  uint64_t cut_short = 0;
  for (int round = 0; round < 12; ++round) {
    const std::string dir = scratch.sub("round-" + std::to_string(round));
    const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
        "edges-create-stores", {dir}, sizeof(uint64_t), [](const uint8_t*) { return true; }, true,
        rng.between(0, 25));
    const auto acknowledged = pcore_test::records_of<uint64_t>(child.bytes);
    ASSERT_FALSE(acknowledged.empty());
    const uint64_t in_flight = acknowledged.back() + 1;
    for (uint64_t i = 0; i <= in_flight; ++i) {
      const std::string store_dir = dir + "/store-" + std::to_string(i);
      if (access(store_dir.c_str(), F_OK) != 0) {
        ASSERT_EQ(i, in_flight) << "an acknowledged store's directory is gone";
        continue;
      }
      const bool created = access((store_dir + "/meta").c_str(), F_OK) == 0;
      PcoreStore* store = nullptr;
      const int32_t read_only = open_store(store_dir, PCORE_OPEN_READ_ONLY, &store);
      if (read_only == pcore_test::kOk) {
        PCORE_EXPECT_OK(pcore_store_close(store));
      } else {
        EXPECT_TRUE(read_only == PCORE_NOT_FOUND && !created && i == in_flight)
            << "store " << i << ": " << pcore_test::describe_status(read_only);
        ++cut_short;
      }
      PCORE_ASSERT_OK(open_store(store_dir, 0, &store));
      const PcoreStoreStats stats = pcore_test::store_stats(store);
      if (i < in_flight) {
        EXPECT_EQ(stats.live_nodes, 1u) << "store " << i;
      } else {
        EXPECT_LE(stats.live_nodes, 1u) << "store " << i;
      }
      PCORE_EXPECT_OK(pcore_store_close(store));
    }
  }
  std::printf("[          ] %llu of 12 kills cut a creation short before its meta existed\n",
              static_cast<unsigned long long>(cut_short));
}

TEST(EdgesTest, DeletingTheLockFileLetsNoSecondWriterIn) {
  ScratchDir scratch("edges-lock");
  const std::string dir = scratch.sub("store");
  PcoreStore* first = nullptr;
  PCORE_ASSERT_OK(open_store(dir, 0, &first));
  std::remove((dir + "/LOCK").c_str());  // an older build's lock file; none is made now
  PcoreStore* second = nullptr;
  EXPECT_FAILS(PCORE_BUSY, open_store(dir, 0, &second));
  PCORE_EXPECT_OK(pcore_store_close(first));
  PCORE_ASSERT_OK(open_store(dir, 0, &second));
  PCORE_EXPECT_OK(pcore_store_close(second));
}

TEST(EdgesTest, AMissingCheckpointIsCorruptLikeAMissingLog) {
  ScratchDir scratch("edges-checkpoint");
  const std::string dir = scratch.sub("store");
  run_to_exit({dir});
  for (const std::string prefix : {"checkpoint-", "wal-"}) {
    const std::string name = file_starting(dir, prefix);
    const std::vector<uint8_t> bytes = pcore_test::read_file(dir + "/" + name);
    ASSERT_EQ(std::remove((dir + "/" + name).c_str()), 0);
    PcoreStore* store = nullptr;
    EXPECT_FAILS(PCORE_CORRUPT, open_store(dir, 0, &store));
    EXPECT_NE(std::string(pcore_last_error_message()).find(name), std::string::npos) << pcore_last_error_message();
    pcore_test::write_file(dir + "/" + name, bytes);
  }
}

// The meta records how much of the log was synced (at most once a second): a log cut below
// that lost commits, and is refused rather than recovered to the checkpoint.
TEST(EdgesTest, ALogCutBelowWhatWasSyncedIsCorrupt) {
  ScratchDir scratch("edges-log-cut");
  const std::string dir = scratch.sub("store");
  run_to_exit({dir, "pause"});
  const std::string log = dir + "/" + file_starting(dir, "wal-");
  const std::vector<uint8_t> whole = pcore_test::read_file(log);
  ASSERT_GT(whole.size(), 100u);
  // Cut inside the first commit: the two before the pause were synced and recorded.
  pcore_test::write_file(log, std::vector<uint8_t>(whole.begin(), whole.begin() + 16));
  PcoreStore* store = nullptr;
  const int32_t cut_open = open_store(dir, 0, &store);
  if (cut_open == pcore_test::kOk) pcore_store_close(store);
  EXPECT_FAILS(PCORE_CORRUPT, cut_open);
  EXPECT_NE(std::string(pcore_last_error_message()).find("synced"), std::string::npos) << pcore_last_error_message();
  pcore_test::write_file(log, whole);
  PCORE_ASSERT_OK(open_store(dir, 0, &store));
  EXPECT_EQ(pcore_test::store_stats(store).live_nodes, 7u);
  PCORE_EXPECT_OK(pcore_store_close(store));
}

}  // namespace
