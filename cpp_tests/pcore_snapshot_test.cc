// Read snapshots through the C ABI, as a host uses them: a writer process commits round after
// round while reader processes open the store PCORE_OPEN_READ_ONLY | VERIFY_CHECKSUMS, again
// and again, and check that every snapshot shows one whole commit (every node, the tree's
// every entry, no STALE_CURSOR, no false CORRUPT); a reader SIGKILLed inside a snapshot stops
// pinning blocks once it is gone; the calls' argument checks.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "pcore.hpp"
#include "snapshot_workload.hpp"
#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;
namespace sw = snapshot_workload;

int32_t open_store(const std::string& dir, uint32_t flags, uint64_t checkpoint_log_bytes, PcoreStore** out) {
  PcoreStoreOptions opts = pcore_test::strict_options(flags);
  if (checkpoint_log_bytes != 0) opts.checkpoint_log_bytes = checkpoint_log_bytes;
  return pcore_store_open(dir.c_str(), &opts, out);
}

// Child: the writer. Commits `rounds` rounds (sending each round number once committed), with
// checkpoints every 256 KiB of log so readers' opens race them too.
int writer_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  sw::Writer w;
  if (open_store(args[0], 0, 256 << 10, &w.store) != pcore_test::kOk) return 3;
  if (sw::open_tree(w.store, &w.tree) != pcore_test::kOk) return 3;
  const uint64_t rounds = std::stoull(args[1]);
  for (uint64_t round = 1; round <= rounds; ++round) {
    if (!sw::write_round(w, round)) {
      std::fprintf(stderr, "writer: round %llu: %s\n", static_cast<unsigned long long>(round),
                   pcore_last_error_message());
      return 4;
    }
    pcore_test::child_send(&round, sizeof round);
  }
  return pcore_store_close(w.store) == pcore_test::kOk ? 0 : 5;
}
const pcore_test::ChildRegistrar kRegisterWriter("snapshot-writer", writer_main);

// Child: a reader. Until `stop_file` exists: open read-only with checksums verified, check a
// snapshot, keep the open for a few more snapshots, close. Exit 0 when every check passed.
int reader_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  uint64_t opens = 0;
  uint64_t last_round = 0;
  while (access(args[1].c_str(), F_OK) != 0 || opens == 0) {
    PcoreStore* store = nullptr;
    const int32_t st = open_store(args[0], PCORE_OPEN_READ_ONLY | PCORE_OPEN_VERIFY_CHECKSUMS, 0, &store);
    if (st != pcore_test::kOk) {
      std::fprintf(stderr, "reader: open: %s %s\n", pcore_status_name(st), pcore_last_error_message());
      return 3;
    }
    PcoreTree* tree = nullptr;
    if (sw::open_tree(store, &tree) != pcore_test::kOk) return 4;
    for (int i = 0; i < 3; ++i) {
      PcoreSnapshot* snap = nullptr;
      if (pcore_snapshot_begin(store, &snap) != pcore_test::kOk) return 5;
      uint64_t round = 0;
      const std::string problem = sw::check_snapshot(snap, tree, &round);
      if (!problem.empty()) {
        std::fprintf(stderr, "reader: %s\n", problem.c_str());
        return 6;
      }
      if (round < last_round) {
        std::fprintf(stderr, "reader: round %llu after %llu\n", static_cast<unsigned long long>(round),
                     static_cast<unsigned long long>(last_round));
        return 7;
      }
      last_round = round;
      pcore_snapshot_end(snap);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pcore_tree_close(tree);
    if (pcore_store_close(store) != pcore_test::kOk) return 8;
    ++opens;
  }
  std::fprintf(stderr, "reader: %llu opens, last round %llu\n", static_cast<unsigned long long>(opens),
               static_cast<unsigned long long>(last_round));
  return 0;
}
const pcore_test::ChildRegistrar kRegisterReader("snapshot-reader", reader_main);

// Child: opens read-only, begins a snapshot, reads it, says so, and waits to be killed.
int pinning_reader_main(const std::vector<std::string>& args) {
  if (args.size() != 1) return 2;
  PcoreStore* store = nullptr;
  if (open_store(args[0], PCORE_OPEN_READ_ONLY, 0, &store) != pcore_test::kOk) return 3;
  PcoreTree* tree = nullptr;
  if (sw::open_tree(store, &tree) != pcore_test::kOk) return 4;
  PcoreSnapshot* snap = nullptr;
  if (pcore_snapshot_begin(store, &snap) != pcore_test::kOk) return 5;
  uint64_t round = 0;
  if (!sw::check_snapshot(snap, tree, &round).empty()) return 6;
  pcore_test::child_send(&round, sizeof round);
  for (;;) pause();
}
const pcore_test::ChildRegistrar kRegisterPinningReader("snapshot-pinning-reader", pinning_reader_main);

TEST(SnapshotTest, ReaderProcessesSeeWholeCommitsBesideAWriterProcess) {
  ScratchDir scratch("snap-procs");
  const std::string dir = scratch.sub("store");
  const std::string stop = scratch.sub("stop");
  const uint64_t rounds = pcore_test::long_run() ? 3000 : 400;
  const sw::WriterChild child = sw::spawn_writer(dir, rounds);
  ASSERT_GE(child.pid, 0) << "the writer's first round";
  const pid_t writer = child.pid;
  std::vector<pid_t> readers;
  for (int i = 0; i < 2; ++i) readers.push_back(pcore_test::spawn_child("snapshot-reader", {dir, stop}, -1));
  uint64_t round = 0;
  while (read(child.fd, &round, sizeof round) == static_cast<ssize_t>(sizeof round)) {
  }
  close(child.fd);
  const int writer_status = pcore_test::wait_child(writer);
  pcore_test::write_file(stop, {1});
  EXPECT_TRUE(WIFEXITED(writer_status) && WEXITSTATUS(writer_status) == 0) << "writer status " << writer_status;
  EXPECT_EQ(round, rounds);
  for (pid_t r : readers) {
    const int status = pcore_test::wait_child(r);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "reader status " << status;
  }
  // The store the readers watched is whole.
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(open_store(dir, 0, 0, &store));
  PCORE_EXPECT_OK(pcore_store_verify(store));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

TEST(SnapshotTest, AReaderKilledInsideASnapshotStopsPinningOnceItIsGone) {
  ScratchDir scratch("snap-killed");
  const std::string dir = scratch.sub("store");
  sw::Writer w;
  PCORE_ASSERT_OK(open_store(dir, 0, 0, &w.store));
  PCORE_ASSERT_OK(sw::open_tree(w.store, &w.tree));
  ASSERT_TRUE(sw::write_round(w, 1)) << pcore_last_error_message();
  const pcore_test::KilledChild reader = pcore_test::run_child_until_killed(
      "snapshot-pinning-reader", {dir}, sizeof(uint64_t), [](const uint8_t*) { return true; },
      /*wait_for_ready=*/true, /*delay_ms=*/0);
  ASSERT_TRUE(reader.saw_ready) << "the reader read its snapshot";
  // The reader was killed only now: re-run one that stays alive while the writer commits.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pinning = pcore_test::spawn_child("snapshot-pinning-reader", {dir}, fds[1]);
  close(fds[1]);
  uint64_t seen = 0;
  ASSERT_EQ(read(fds[0], &seen, sizeof seen), static_cast<ssize_t>(sizeof seen));
  EXPECT_EQ(seen, 1u);
  for (uint64_t round = 2; round <= 6; ++round) ASSERT_TRUE(sw::write_round(w, round));
  PcoreStoreStats held = pcore_test::store_stats(w.store);
  EXPECT_EQ(held.reader_processes, 1u);
  EXPECT_GT(held.pinned_bytes, 0u) << "the reader's commit is kept";
  ASSERT_EQ(kill(pinning, SIGKILL), 0);
  pcore_test::wait_child(pinning);
  close(fds[0]);
  ASSERT_TRUE(sw::write_round(w, 7));
  PcoreStoreStats after = pcore_test::store_stats(w.store);
  EXPECT_EQ(after.reader_processes, 0u) << "a killed reader is not counted";
  EXPECT_EQ(after.pinned_bytes, 0u) << "nor does it pin anything";
  EXPECT_EQ(after.pending_free_bytes, 0u);
  PCORE_EXPECT_OK(pcore_store_verify(w.store));
  PCORE_EXPECT_OK(pcore_store_close(w.store));
}

TEST(SnapshotTest, ASnapshotKeepsItsCommitWhileTheWriterGoesOnInThisProcess) {
  sw::Writer w;
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY | PCORE_OPEN_VERIFY_CHECKSUMS);
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &opts, &w.store));
  PCORE_ASSERT_OK(sw::open_tree(w.store, &w.tree));
  ASSERT_TRUE(sw::write_round(w, 1));
  PcoreSnapshot* snap = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_begin(w.store, &snap));
  uint64_t epoch = 0;
  PCORE_ASSERT_OK(pcore_snapshot_epoch(snap, &epoch));
  // A pointer read through the snapshot stays valid and unchanged.
  uint64_t index_id = 0;
  PCORE_ASSERT_OK(pcore_snapshot_root_get(snap, sw::kRoot, 5, &index_id, nullptr, 0, nullptr));
  PcoreNodeBytes index{};
  PCORE_ASSERT_OK(pcore_snapshot_node_read(snap, index_id, &index));
  const std::vector<uint8_t> index_then(static_cast<const uint8_t*>(index.data),
                                        static_cast<const uint8_t*>(index.data) + index.len);
  PcoreCursor* cur = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_cursor_open(snap, w.tree, &cur));
  PCORE_ASSERT_OK(pcore_cursor_first(cur));
  for (uint64_t round = 2; round <= 30; ++round) {
    ASSERT_TRUE(sw::write_round(w, round));
    uint64_t seen = 0;
    ASSERT_EQ(sw::check_snapshot(snap, w.tree, &seen), "");
    EXPECT_EQ(seen, 1u);
    PCORE_EXPECT_OK(pcore_cursor_next(cur));  // never stale
    PcoreBytes k{};
    PcoreBytes v{};
    PCORE_EXPECT_OK(pcore_cursor_get(cur, &k, &v));
  }
  EXPECT_EQ(std::memcmp(index.data, index_then.data(), index_then.size()), 0);
  uint64_t now = 0;
  PCORE_EXPECT_OK(pcore_snapshot_epoch(snap, &now));
  EXPECT_EQ(now, epoch);
  PcoreStoreStats stats = pcore_test::store_stats(w.store);
  EXPECT_EQ(stats.snapshots_open, 1u);
  EXPECT_EQ(stats.oldest_snapshot_epoch, epoch);
  EXPECT_GT(stats.pinned_bytes, 0u);
  // A node made after the snapshot is not in it; the live store sees it.
  uint64_t fresh = sw::publish_new(w.store, "x", 1);
  PCORE_ASSERT_OK(pcore_store_commit(w.store, nullptr));
  PcoreNodeBytes out{};
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_node_read(snap, fresh, &out));
  EXPECT_EQ(out.data, nullptr);
  PCORE_EXPECT_OK(pcore_node_read(w.store, fresh, &out));
  // The cursor outlives the snapshot's handle and keeps its commit.
  PCORE_EXPECT_OK(pcore_snapshot_end(snap));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_end(snap));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_node_read(snap, index_id, &out));
  EXPECT_EQ(pcore_test::store_stats(w.store).snapshots_open, 1u);
  PCORE_EXPECT_OK(pcore_cursor_next(cur));
  PCORE_EXPECT_OK(pcore_cursor_close(cur));
  ASSERT_TRUE(sw::write_round(w, 31));
  stats = pcore_test::store_stats(w.store);
  EXPECT_EQ(stats.snapshots_open, 0u);
  EXPECT_EQ(stats.pinned_bytes, 0u);
  PCORE_EXPECT_OK(pcore_store_close(w.store));
}

TEST(SnapshotTest, EveryCallChecksItsArguments) {
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
  PcoreStore* a = nullptr;
  PcoreStore* b = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &opts, &a));
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &opts, &b));
  PcoreTree* tree_a = nullptr;
  PcoreTree* tree_b = nullptr;
  PCORE_ASSERT_OK(sw::open_tree(a, &tree_a));
  PcoreSnapshot* early = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_begin(a, &early));  // before the tree's first commit
  PCORE_ASSERT_OK(pcore_store_commit(a, nullptr));
  PCORE_ASSERT_OK(sw::open_tree(b, &tree_b));
  PcoreSnapshot* snap = nullptr;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_begin(a, nullptr));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_begin(nullptr, &snap));
  PCORE_ASSERT_OK(pcore_snapshot_begin(a, &snap));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_epoch(snap, nullptr));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_epoch(nullptr, nullptr));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_end(nullptr));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_end(reinterpret_cast<PcoreSnapshot*>(tree_a)));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_node_read(snap, 1, nullptr));
  size_t len = 0;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_node_read_copy(snap, 1, nullptr, 8, &len));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_node_read_copy(snap, 1, nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_node_read_copy(snap, 0, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_node_read_copy(snap, UINT64_MAX, nullptr, 0, &len));
  uint64_t id = 0;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_root_get(snap, "r", 1, nullptr, nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_root_get(snap, "r", 1, &id, nullptr, 0, nullptr));
  PcoreCursor* cur = nullptr;
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_cursor_open(snap, tree_b, &cur));  // another store's tree
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_tree_get(snap, tree_b, "k", 1, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_snapshot_cursor_open(snap, tree_a, nullptr));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_cursor_open(early, tree_a, &cur));  // no tree then
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_tree_get(early, tree_a, "k", 1, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_snapshot_tree_get(snap, tree_a, "k", 1, nullptr, 0, &len));
  PCORE_EXPECT_OK(pcore_snapshot_end(early));
  // A closed store: its snapshots' reads are refused, not a crash; the handle still says its
  // epoch and ends once (as documented), so a host may end its snapshots after the close.
  uint64_t epoch_before = 0, epoch_after = 0;
  PCORE_EXPECT_OK(pcore_snapshot_epoch(snap, &epoch_before));
  PCORE_EXPECT_OK(pcore_store_close(a));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_begin(a, &early));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_node_read_copy(snap, 1, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_root_get(snap, "r", 1, &id, nullptr, 0, nullptr));
  PCORE_EXPECT_OK(pcore_snapshot_epoch(snap, &epoch_after));
  EXPECT_EQ(epoch_after, epoch_before);
  PCORE_EXPECT_OK(pcore_snapshot_end(snap));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_end(snap));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_epoch(snap, &epoch_after));
  pcore_tree_close(tree_a);
  pcore_tree_close(tree_b);
  PCORE_EXPECT_OK(pcore_store_close(b));
}

TEST(SnapshotTest, AClosedTreeHandleIsRefusedThoughItsViewWasMade) {
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &opts, &store));
  PcoreTree* tree = nullptr;
  PCORE_ASSERT_OK(sw::open_tree(store, &tree));
  PCORE_ASSERT_OK(pcore_tree_insert(tree, "k", 1, "v", 1));
  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  PcoreSnapshot* snap = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_begin(store, &snap));
  char value[4] = {};
  size_t len = 0;
  for (int i = 0; i < 3; ++i) {  // the second and third answers come from the kept view
    PCORE_EXPECT_OK(pcore_snapshot_tree_get(snap, tree, "k", 1, value, sizeof value, &len));
    EXPECT_EQ(len, 1u);
  }
  PCORE_ASSERT_OK(pcore_tree_close(tree));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_snapshot_tree_get(snap, tree, "k", 1, value, sizeof value, &len));
  PcoreTree* again = nullptr;
  PCORE_ASSERT_OK(sw::open_tree(store, &again));
  PCORE_EXPECT_OK(pcore_snapshot_tree_get(snap, again, "k", 1, value, sizeof value, &len));
  pcore_tree_close(again);
  PCORE_EXPECT_OK(pcore_snapshot_end(snap));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

TEST(SnapshotTest, TheCppWrapperReadsThroughASnapshot) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree tree = pcore::Tree::open(store, "t");
  tree.insert(std::string_view("a"), std::string_view("1"));
  const pcore::Allocation node = store.allocate(8, 1);
  store.publish(node.id, "one", 3);
  store.set_root("r", node.id, "m", 1);
  store.commit();
  pcore::Snapshot snap(store);
  tree.insert(std::string_view("b"), std::string_view("2"));
  store.publish(node.id, "two", 3);
  store.commit();
  EXPECT_EQ(snap.get(tree, std::string_view("a")), std::vector<uint8_t>{'1'});
  EXPECT_FALSE(snap.get(tree, std::string_view("b")));
  const std::optional<pcore::Bytes> bytes = snap.read(node.id);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(std::string(static_cast<const char*>(bytes->data), bytes->len), "one");
  ASSERT_TRUE(snap.get_root("r"));
  EXPECT_EQ(snap.get_root("r")->id, node.id);
  pcore::Cursor c = snap.cursor(tree);
  c.first();
  EXPECT_EQ(c.get()->first, std::vector<uint8_t>{'a'});
  c.next();
  EXPECT_FALSE(c.get());
  snap.end();
  EXPECT_THROW((void)snap.epoch(), pcore::Error);
}

// ---- a writer reopening under reader processes that come and go ------------------------------
// Found from outside: a writer that opened while a reader process of an older commit was
// registered held every block of the class files until that reader left, and with readers
// always overlapping the next open came first: the files grew to 1.4 GB for 20.5 MB live.

constexpr size_t kHoldNodes = 300;
constexpr size_t kHoldNodeBytes = 1000;
constexpr char kHoldRoot[] = "hold";

uint64_t hold_seed(size_t node, uint64_t round) { return round * 1000003 + node; }

// Every node rewritten for `round`, the root's metadata saying which, committed.
bool hold_round(PcoreStore* s, const std::vector<uint64_t>& ids, uint64_t index, uint64_t round) {
  std::vector<uint8_t> buf(kHoldNodeBytes);
  for (size_t i = 0; i < ids.size(); ++i) {
    pcore_test::fill_pattern(buf.data(), buf.size(), hold_seed(i, round));
    if (pcore_node_publish(s, ids[i], buf.data(), buf.size(), nullptr) != pcore_test::kOk) return false;
  }
  if (pcore_root_set(s, kHoldRoot, sizeof kHoldRoot - 1, index, &round, sizeof round) != pcore_test::kOk) {
    return false;
  }
  return pcore_store_commit(s, nullptr) == pcore_test::kOk;
}

// Reads every node of the commit the store shows; its round in `*round`.
bool hold_check(PcoreStore* s, uint64_t* round) {
  uint64_t index = 0;
  size_t meta_len = 0;
  if (pcore_root_get(s, kHoldRoot, sizeof kHoldRoot - 1, &index, round, sizeof *round, &meta_len) !=
          pcore_test::kOk ||
      meta_len != sizeof *round) {
    return false;
  }
  std::vector<uint64_t> ids(kHoldNodes);
  size_t len = 0;
  if (pcore_node_read_copy(s, index, ids.data(), ids.size() * 8, &len) != pcore_test::kOk || len != ids.size() * 8) {
    return false;
  }
  std::vector<uint8_t> buf(kHoldNodeBytes);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (pcore_node_read_copy(s, ids[i], buf.data(), buf.size(), &len) != pcore_test::kOk || len != buf.size() ||
        !pcore_test::matches_pattern(buf.data(), len, hold_seed(i, *round))) {
      return false;
    }
  }
  return true;
}

// Child: opens read-only, reads its commit whole, says which, and once `stop` exists reads it
// whole again (the writer reused none of its blocks meanwhile) and leaves.
int hold_reader_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  PcoreStore* store = nullptr;
  if (open_store(args[0], PCORE_OPEN_READ_ONLY | PCORE_OPEN_VERIFY_CHECKSUMS, 0, &store) != pcore_test::kOk) return 3;
  uint64_t round = 0;
  if (!hold_check(store, &round)) return 4;
  pcore_test::child_send(&round, sizeof round);
  while (access(args[1].c_str(), F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  uint64_t again = 0;
  if (!hold_check(store, &again) || again != round) return 5;
  return pcore_store_close(store) == pcore_test::kOk ? 0 : 6;
}
const pcore_test::ChildRegistrar kRegisterHoldReader("hold-reader", hold_reader_main);

struct HoldReader {
  pid_t pid;
  std::string stop;
};

void stop_hold_reader(const HoldReader& r) {
  pcore_test::write_file(r.stop, {1});
  const int status = pcore_test::wait_child(r.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "reader status " << status;
}

// Rounds of 3 commits; each round a reader process of the last commit opens and the one of
// two rounds before leaves, so one older than the writer's open is always registered. The
// writer closes and reopens its store every round when `reopen`. Returns the largest size of
// the class files.
uint64_t churn_under_reader_processes(const ScratchDir& scratch, const std::string& name, bool reopen) {
  const std::string dir = scratch.sub(name);
  PcoreStore* s = nullptr;
  EXPECT_EQ(open_store(dir, 0, 0, &s), pcore_test::kOk);
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < kHoldNodes; ++i) {
    PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
    EXPECT_EQ(pcore_node_allocate(s, kHoldNodeBytes, 1, &a), pcore_test::kOk);
    ids.push_back(a.id);
  }
  PcoreAllocResult index = pcore_test::sized<PcoreAllocResult>();
  EXPECT_EQ(pcore_node_allocate(s, ids.size() * 8, 1, &index), pcore_test::kOk);
  EXPECT_EQ(pcore_node_publish(s, index.id, ids.data(), ids.size() * 8, nullptr), pcore_test::kOk);
  uint64_t round = 0;
  EXPECT_TRUE(hold_round(s, ids, index.id, round)) << pcore_last_error_message();
  std::vector<HoldReader> readers;
  uint64_t largest = 0;
  for (int r = 0; r < 20 && !testing::Test::HasFailure(); ++r) {
    if (reopen) {
      EXPECT_EQ(pcore_store_close(s), pcore_test::kOk);
      EXPECT_EQ(open_store(dir, 0, 0, &s), pcore_test::kOk);
    }
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const std::string stop = scratch.sub(name + "-stop-" + std::to_string(r));
    readers.push_back({pcore_test::spawn_child("hold-reader", {dir, stop}, fds[1]), stop});
    close(fds[1]);
    uint64_t seen = UINT64_MAX;
    EXPECT_EQ(read(fds[0], &seen, sizeof seen), static_cast<ssize_t>(sizeof seen));
    close(fds[0]);
    EXPECT_EQ(seen, round) << "the reader reads the last commit";
    if (readers.size() > 2) {
      stop_hold_reader(readers.front());
      readers.erase(readers.begin());
    }
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(hold_round(s, ids, index.id, ++round)) << pcore_last_error_message();
    largest = std::max(largest, pcore_test::store_stats(s).data_file_bytes);
  }
  for (const HoldReader& r : readers) stop_hold_reader(r);
  EXPECT_EQ(pcore_store_verify(s), pcore_test::kOk);
  EXPECT_EQ(pcore_store_close(s), pcore_test::kOk);
  return largest;
}

TEST(SnapshotTest, AWriterReopenedUnderReaderProcessesThatComeAndGoStaysBounded) {
  ScratchDir scratch("snap-hold");
  const uint64_t steady = churn_under_reader_processes(scratch, "steady", false);
  const uint64_t reopened = churn_under_reader_processes(scratch, "reopened", true);
  EXPECT_LE(reopened, 2 * steady) << "class files: " << reopened << " bytes with a reopen per round, " << steady
                                  << " without";
}

}  // namespace
