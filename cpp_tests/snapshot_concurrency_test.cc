// Snapshots on threads (this binary also runs under ThreadSanitizer): reader threads begin
// snapshots, copy nodes, look up keys and scan with cursors while one writer thread commits
// round after round; every snapshot shows one whole commit, no STALE_CURSOR, no false CORRUPT.
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "snapshot_workload.hpp"
#include "test_support.hpp"

namespace {

namespace sw = snapshot_workload;

TEST(SnapshotConcurrencyTest, ReaderThreadsSeeWholeCommitsWhileAWriterCommits) {
  pcore_test::ScratchDir scratch("snap-threads");
  sw::Writer w;
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_VERIFY_CHECKSUMS);
  opts.durability = PCORE_DURABILITY_EVENTUAL;  // commits as fast as memory: the most overlap
  opts.checkpoint_log_bytes = 512 << 10;
  PCORE_ASSERT_OK(pcore_store_open(scratch.sub("store").c_str(), &opts, &w.store));
  PCORE_ASSERT_OK(sw::open_tree(w.store, &w.tree));
  ASSERT_TRUE(sw::write_round(w, 1)) << pcore_last_error_message();
  std::atomic<bool> stop{false};
  std::vector<std::string> problems(3);
  std::vector<uint64_t> checks(3, 0);
  std::vector<std::thread> readers;
  for (size_t t = 0; t < problems.size(); ++t) {
    readers.emplace_back([&, t] {
      uint64_t last = 0;
      while (problems[t].empty() && (!stop.load() || checks[t] == 0)) {
        PcoreSnapshot* snap = nullptr;
        if (pcore_snapshot_begin(w.store, &snap) != pcore_test::kOk) {
          problems[t] = pcore_last_error_message();
          break;
        }
        uint64_t round = 0;
        problems[t] = sw::check_snapshot(snap, w.tree, &round);
        if (problems[t].empty() && round < last) problems[t] = "a snapshot older than the last one";
        last = round;
        pcore_snapshot_end(snap);
        ++checks[t];
      }
    });
  }
  const uint64_t rounds = pcore_test::long_run() ? 2000 : 300;
  for (uint64_t round = 2; round <= rounds; ++round) {
    ASSERT_TRUE(sw::write_round(w, round)) << pcore_last_error_message();
  }
  stop.store(true);
  for (auto& r : readers) r.join();
  for (size_t t = 0; t < problems.size(); ++t) {
    EXPECT_EQ(problems[t], "") << "reader " << t;
    EXPECT_GT(checks[t], 0u);
  }
  PCORE_EXPECT_OK(pcore_store_verify(w.store));
  PCORE_EXPECT_OK(pcore_store_close(w.store));
}

}  // namespace

namespace {

// A writer edits a node through pcore_node_write_ptr slowly, a byte at a time, while another
// thread copies it: every copy is one whole published version (all of its bytes one value),
// never a mix of the version before and the bytes being written.
TEST(SnapshotConcurrencyTest, CopiesNeverSeeBytesWrittenThroughAWritePointer) {
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &opts, &store));
  constexpr size_t kLen = 512;
  PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
  PCORE_ASSERT_OK(pcore_node_allocate(store, kLen, 1, &a));
  std::memset(a.writable, 1, kLen);
  PCORE_ASSERT_OK(pcore_node_publish_in_place(store, a.id, kLen));
  std::atomic<bool> stop{false};
  std::string problem;
  std::atomic<uint64_t> copies{0};
  std::thread reader([&] {
    std::vector<uint8_t> copy(kLen);
    while (!stop.load() && problem.empty()) {
      size_t len = 0;
      if (pcore_node_read_copy(store, a.id, copy.data(), copy.size(), &len) != pcore_test::kOk || len != kLen) {
        problem = "read_copy failed";
        break;
      }
      for (size_t i = 1; i < kLen; ++i) {
        if (copy[i] != copy[0]) {
          problem = "a copy mixes version " + std::to_string(copy[0]) + " with " + std::to_string(copy[i]);
          break;
        }
      }
      ++copies;
    }
  });
  // At least 200 versions, and on until the reader has copied a hundred times: on a loaded
  // machine the reader thread may not run at all during the first 200.
  for (int version = 2; (version < 200 || copies.load() < 100) && problem.empty(); ++version) {
    void* ptr = nullptr;
    size_t capacity = 0;
    PCORE_ASSERT_OK(pcore_node_write_ptr(store, a.id, &ptr, &capacity));
    auto* bytes = static_cast<volatile uint8_t*>(ptr);
    for (size_t i = 0; i < kLen; ++i) {
      bytes[i] = static_cast<uint8_t>(version);
      if (i % 64 == 0) std::this_thread::yield();
    }
    PCORE_ASSERT_OK(pcore_node_publish_in_place(store, a.id, kLen));
    if (version % 50 == 0) PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(problem, "");
  EXPECT_GE(copies.load(), 100u);
  PCORE_EXPECT_OK(pcore_store_verify(store));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

}  // namespace
