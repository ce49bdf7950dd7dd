// pcore_store_compact and the space a store gives back on its own (issue 18): through the C
// ABI, online beside a snapshot cursor and a read-only process, and across kills.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "pcore.hpp"
#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

constexpr size_t kPage = 4096;

// A store of `count` pages, every `keep_every`-th kept and the rest freed: its class file keeps
// its length with the live pages strewn through it. Returns the kept ids (seed = index).
std::vector<std::pair<uint64_t, uint64_t>> make_strewn(PcoreStore* store, uint64_t count, uint64_t keep_every) {
  std::vector<std::pair<uint64_t, uint64_t>> all;
  for (uint64_t i = 0; i < count; ++i) {
    PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
    EXPECT_EQ(pcore_node_allocate(store, kPage, 1, &a), pcore_test::kOk);
    pcore_test::fill_pattern(a.writable, kPage, i);
    EXPECT_EQ(pcore_node_publish_in_place(store, a.id, kPage), pcore_test::kOk);
    all.emplace_back(a.id, i);
  }
  EXPECT_EQ(pcore_store_commit(store, nullptr), pcore_test::kOk);
  std::vector<std::pair<uint64_t, uint64_t>> kept;
  for (const auto& [id, seed] : all) {
    if (seed % keep_every == 0) {
      kept.emplace_back(id, seed);
    } else {
      EXPECT_EQ(pcore_node_free(store, id, PCORE_REASON_UNKNOWN), pcore_test::kOk);
    }
  }
  EXPECT_EQ(pcore_store_commit(store, nullptr), pcore_test::kOk);
  return kept;
}

// Every kept node reads back its pattern; the allocator matches the table.
void expect_contents(PcoreStore* store, const std::vector<std::pair<uint64_t, uint64_t>>& kept) {
  for (const auto& [id, seed] : kept) {
    PcoreNodeBytes b{};
    ASSERT_EQ(pcore_node_read(store, id, &b), pcore_test::kOk) << "node " << id;
    ASSERT_EQ(b.len, kPage);
    ASSERT_TRUE(pcore_test::matches_pattern(b.data, kPage, seed)) << "node " << id;
  }
  PCORE_EXPECT_OK(pcore_store_verify(store));
}

using Kept = std::vector<std::pair<uint64_t, uint64_t>>;

void save_kept(const std::string& path, const Kept& kept) {
  std::vector<uint8_t> bytes(kept.size() * 16);
  for (size_t i = 0; i < kept.size(); ++i) {
    std::memcpy(&bytes[i * 16], &kept[i].first, 8);
    std::memcpy(&bytes[i * 16 + 8], &kept[i].second, 8);
  }
  pcore_test::write_file(path, bytes);
}

Kept load_kept(const std::string& path) {
  const std::vector<uint8_t> bytes = pcore_test::read_file(path);
  Kept kept(bytes.size() / 16);
  for (size_t i = 0; i < kept.size(); ++i) {
    std::memcpy(&kept[i].first, &bytes[i * 16], 8);
    std::memcpy(&kept[i].second, &bytes[i * 16 + 8], 8);
  }
  return kept;
}

PcoreStore* open_dir(const std::string& dir, uint32_t flags = PCORE_OPEN_VERIFY_CHECKSUMS) {
  const PcoreStoreOptions options = pcore_test::strict_options(flags);
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(dir.c_str(), &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
  return store;
}

TEST(CompactTest, BringsAStrewnStoreNearItsLiveBytesAndKeepsEveryNode) {
  ScratchDir scratch("compact");
  PcoreStore* store = open_dir(scratch.sub("store"));
  const auto kept = make_strewn(store, 8 * 256, 5);
  const PcoreStoreStats before = pcore_test::store_stats(store);
  EXPECT_GT(before.footprint_ratio, 3.0);
  EXPECT_EQ(before.live_bytes, kept.size() * kPage);
  EXPECT_GT(before.free_bytes, 0u);
  PcoreCompactReport report = pcore_test::sized<PcoreCompactReport>();
  PCORE_ASSERT_OK(pcore_store_compact(store, 0, &report));
  EXPECT_GT(report.moved_nodes, 0u);
  EXPECT_EQ(report.pinned_bytes, 0u);
  EXPECT_EQ(report.live_bytes, kept.size() * kPage);
  // Issue 18 item 2: at most 1.1x, a small store too (its class file is cut inside its last
  // 1 MiB segment).
  EXPECT_LE(static_cast<double>(report.bytes_after), 1.1 * static_cast<double>(report.live_bytes));
  EXPECT_LT(report.bytes_after, report.bytes_before / 2);
  const PcoreStoreStats after = pcore_test::store_stats(store);
  EXPECT_EQ(after.directory_bytes, report.bytes_after);
  EXPECT_LE(after.footprint_ratio, 1.5);
  expect_contents(store, kept);
  PCORE_ASSERT_OK(pcore_store_close(store));
  store = open_dir(scratch.sub("store"));
  expect_contents(store, kept);
  EXPECT_LE(pcore_test::store_stats(store).footprint_ratio, 1.5);
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// Issue 18 item 1: after a workload of small nodes (XTree's records), the store's directory
// stays within 1.5x its live bytes with the store open, right after its last commit, without
// a compaction or close: the log between checkpoints would otherwise hold more than the nodes.
TEST(CompactTest, TheDirectoryStaysNearItsLiveBytesAfterTheLastCommitWithoutAHostCall) {
  ScratchDir scratch("compact-footprint");
  PcoreStore* store = open_dir(scratch.sub("store"), 0);
  constexpr size_t kRecord = 60;
  for (uint64_t i = 0; i < 200000; ++i) {
    PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
    ASSERT_EQ(pcore_node_allocate(store, kRecord, 1, &a), pcore_test::kOk);
    pcore_test::fill_pattern(a.writable, kRecord, i);
    ASSERT_EQ(pcore_node_publish_in_place(store, a.id, kRecord), pcore_test::kOk);
    if ((i + 1) % 20000 == 0) {
      PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
      const PcoreStoreStats st = pcore_test::store_stats(store);
      EXPECT_LE(static_cast<double>(st.directory_bytes), 1.5 * static_cast<double>(st.live_bytes))
          << "after " << (i + 1) << " records: " << st.directory_bytes << " bytes for " << st.live_bytes
          << " live, log " << st.log_bytes;
    }
  }
  PCORE_EXPECT_OK(pcore_store_close(store));
}

TEST(CompactTest, TheCppWrapperCompactsAStoreInMemoryToo) {
  pcore::Store store = pcore::Store::in_memory();
  const auto kept = make_strewn(store.raw(), 8 * 256, 5);
  const pcore::CompactReport report = store.compact();
  EXPECT_GT(report.moved_nodes, 0u);
  EXPECT_LT(report.bytes_after, report.bytes_before / 2);
  EXPECT_LE(store.stats().footprint_ratio, 1.5);
  expect_contents(store.raw(), kept);
  store.close();
}

TEST(CompactTest, ArgumentsAreCheckedAndAReadOnlyStoreRefuses) {
  ScratchDir scratch("compact-args");
  PcoreStore* store = open_dir(scratch.sub("store"));
  make_strewn(store, 256, 2);
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_compact(nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_compact(store, 1, nullptr));
  PcoreCompactReport bad = pcore_test::sized<PcoreCompactReport>();
  bad.struct_size = 3;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_compact(store, 0, &bad));
  PCORE_EXPECT_OK(pcore_store_compact(store, 0, nullptr));
  PCORE_ASSERT_OK(pcore_store_close(store));
  PcoreStore* reader = open_dir(scratch.sub("store"), PCORE_OPEN_READ_ONLY);
  EXPECT_FAILS(PCORE_READ_ONLY, pcore_store_compact(reader, 0, nullptr));
  PCORE_EXPECT_OK(pcore_store_close(reader));
}

TEST(CompactTest, ASnapshotCursorScansOnWhileTheStoreCompacts) {
  ScratchDir scratch("compact-cursor");
  PcoreStore* store = open_dir(scratch.sub("store"));
  PcoreTreeOptions topts = pcore_test::sized<PcoreTreeOptions>();
  PCORE_ASSERT_OK(pcore_tree_options_init(&topts));
  PcoreTree* tree = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(store, "t", 1, &topts, &tree));
  constexpr uint32_t kEntries = 20000;
  char key[16];
  for (uint32_t i = 0; i < kEntries; ++i) {
    std::snprintf(key, sizeof key, "k%08u", i);
    PCORE_ASSERT_OK(pcore_tree_insert(tree, key, 9, &i, sizeof i));
    if (i % 500 == 499) PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  }
  const auto kept = make_strewn(store, 4 * 256, 4);
  PcoreSnapshot* snap = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_begin(store, &snap));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_cursor_open(snap, tree, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  uint32_t seen = 0;
  PcoreCompactReport report = pcore_test::sized<PcoreCompactReport>();
  for (bool first = true;; first = false) {
    if (!first) PCORE_ASSERT_OK(pcore_cursor_next(cursor));
    PcoreBytes k{}, v{};
    const int32_t got = pcore_cursor_get(cursor, &k, &v);
    if (got == static_cast<int32_t>(PCORE_NOT_FOUND)) break;  // past the end
    PCORE_ASSERT_OK(got);
    std::snprintf(key, sizeof key, "k%08u", seen);
    ASSERT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), std::string(key, 9));
    uint32_t value = 0;
    ASSERT_EQ(v.len, sizeof value);
    std::memcpy(&value, v.data, sizeof value);
    ASSERT_EQ(value, seen);
    ++seen;
    if (seen == kEntries / 2) {
      // Halfway through the scan: the writer changes the tree, then compacts.
      for (uint32_t i = 0; i < kEntries; i += 3) {
        std::snprintf(key, sizeof key, "k%08u", i);
        PCORE_ASSERT_OK(pcore_tree_remove(tree, key, 9, nullptr));
      }
      PCORE_ASSERT_OK(pcore_store_compact(store, 0, &report));
    }
  }
  EXPECT_EQ(seen, kEntries) << "the snapshot's scan saw its whole commit";
  EXPECT_GT(report.moved_nodes, 0u);
  EXPECT_GT(report.pinned_bytes, 0u) << "the snapshot's blocks are reported, not given back";
  PCORE_EXPECT_OK(pcore_cursor_close(cursor));
  PCORE_EXPECT_OK(pcore_snapshot_end(snap));
  PCORE_ASSERT_OK(pcore_store_compact(store, 0, &report));
  EXPECT_EQ(report.pinned_bytes, 0u);
  expect_contents(store, kept);
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// Child: opens the store read-only and reads every kept node (args: dir, ids file, stop
// file) again and again until the stop file exists. Exit 0 when every read matched.
int compact_reader_main(const std::vector<std::string>& args) {
  if (args.size() != 3) return 2;
  const Kept kept = load_kept(args[1]);
  PcoreStore* store = open_dir(args[0], PCORE_OPEN_READ_ONLY | PCORE_OPEN_VERIFY_CHECKSUMS);
  if (store == nullptr) return 3;
  const uint8_t ready = 1;
  pcore_test::child_send(&ready, 1);
  uint64_t rounds = 0;
  while (access(args[2].c_str(), F_OK) != 0 || rounds == 0) {
    for (const auto& [id, seed] : kept) {
      PcoreNodeBytes b{};
      if (pcore_node_read(store, id, &b) != pcore_test::kOk) return 4;
      if (b.len != kPage || !pcore_test::matches_pattern(b.data, kPage, seed)) return 5;
    }
    ++rounds;
  }
  return pcore_store_close(store) == pcore_test::kOk ? 0 : 6;
}
const pcore_test::ChildRegistrar kRegisterReader("compact-reader", compact_reader_main);

TEST(CompactTest, AReadOnlyProcessReadsOnAndNothingIsCutUnderIt) {
  ScratchDir scratch("compact-reader");
  const std::string dir = scratch.sub("store");
  PcoreStore* store = open_dir(dir);
  const auto kept = make_strewn(store, 8 * 256, 5);
  save_kept(scratch.sub("ids"), kept);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string stop = scratch.sub("stop");
  const pid_t child = pcore_test::spawn_child("compact-reader", {dir, scratch.sub("ids"), stop}, fds[1]);
  close(fds[1]);
  uint8_t ready = 0;
  ASSERT_EQ(read(fds[0], &ready, 1), 1) << "the reader opened";
  const uint64_t data_before = pcore_test::store_stats(store).data_file_bytes;
  PcoreCompactReport report = pcore_test::sized<PcoreCompactReport>();
  for (int i = 0; i < 3; ++i) PCORE_ASSERT_OK(pcore_store_compact(store, 0, &report));
  EXPECT_EQ(pcore_test::store_stats(store).data_file_bytes, data_before) << "cut under a reader's mapping";
  pcore_test::write_file(stop, {});
  const int status = pcore_test::wait_child(child);
  close(fds[0]);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "reader status " << status;
  PCORE_ASSERT_OK(pcore_store_compact(store, 0, &report));
  EXPECT_LT(report.bytes_after, report.bytes_before / 2);
  expect_contents(store, kept);
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// Child: makes a strewn store (args: dir, ids file), checkpoints it, says so and waits to be
// killed: the store is left strewn (a close would compact it).
int compact_strew_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  PcoreStore* store = open_dir(args[0]);
  if (store == nullptr) return 3;
  save_kept(args[1], make_strewn(store, 16 * 256, 7));
  if (pcore_store_checkpoint(store) != pcore_test::kOk) return 4;
  const uint8_t ready = 1;
  pcore_test::child_send(&ready, 1);
  for (;;) pause();
}
const pcore_test::ChildRegistrar kRegisterStrew("compact-strew", compact_strew_main);

// Child: opens the store (args: dir), says so, compacts, says so, and waits to be killed
// without closing.
int compact_writer_main(const std::vector<std::string>& args) {
  if (args.size() != 1) return 2;
  PcoreStore* store = open_dir(args[0]);
  if (store == nullptr) return 3;
  const uint8_t ready = 1;
  pcore_test::child_send(&ready, 1);
  if (pcore_store_compact(store, 0, nullptr) != pcore_test::kOk) return 4;
  pcore_test::child_send(&ready, 1);
  for (;;) pause();
}
const pcore_test::ChildRegistrar kRegisterWriter("compact-writer", compact_writer_main);

TEST(CompactTest, AKillDuringOrAfterCompactionLeavesTheStoreWhole) {
  const uint64_t kills = pcore_test::long_run() ? 40 : 8;
  pcore_test::Rng rng(18);
  uint64_t compacted = 0;
  for (uint64_t k = 0; k < kills; ++k) {
    ScratchDir scratch("compact-kill");
    const std::string dir = scratch.sub("store");
    const pcore_test::KilledChild strew = pcore_test::run_child_until_killed(
        "compact-strew", {dir, scratch.sub("ids")}, 1, [](const uint8_t*) { return true; },
        /*wait_for_ready=*/true, 0);
    ASSERT_TRUE(strew.saw_ready);
    const Kept kept = load_kept(scratch.sub("ids"));
    ASSERT_EQ(kept.size(), (16u * 256 + 6) / 7);
    const uint64_t delay = k == kills - 1 ? 3000 : rng.between(0, 60);
    const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
        "compact-writer", {dir}, 1, [](const uint8_t*) { return true; }, /*wait_for_ready=*/true, delay);
    ASSERT_TRUE(child.saw_ready);
    PcoreStore* store = open_dir(dir);
    ASSERT_NE(store, nullptr) << "kill " << k << " after " << delay << " ms";
    expect_contents(store, kept);
    if (child.bytes.size() >= 2) {
      ++compacted;
      EXPECT_LE(pcore_test::store_stats(store).footprint_ratio, 1.5) << "compacted, then killed";
    }
    PCORE_EXPECT_OK(pcore_store_close(store));
  }
  EXPECT_GT(compacted, 0u) << "the last child had time to finish";
}

}  // namespace
