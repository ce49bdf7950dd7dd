// TreeDropTest: pcore_tree_drop through the C ABI: every page and large value of the tree
// freed and its anchor removed at the next commit, other handles and cursors answering
// errors rather than reading freed pages, bad arguments refused with nothing changed.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

constexpr int32_t kBadHandle = static_cast<int32_t>(PCORE_BAD_HANDLE);

PcoreStore* open_store(const std::string& dir, uint32_t flags = 0) {
  PcoreStoreOptions options;
  pcore_store_options_init(&options);
  options.flags = flags;
  options.durability = PCORE_DURABILITY_STRICT;
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(dir.c_str(), &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
  return store;
}

PcoreTree* open_tree(PcoreStore* store, const char* name, uint32_t flags = 0) {
  PcoreTreeOptions options;
  pcore_tree_options_init(&options);
  options.page_bytes = 512;
  options.duplicates = PCORE_DUP_OVERWRITE;
  options.flags = flags;
  PcoreTree* tree = nullptr;
  if (pcore_tree_open(store, name, std::strlen(name), &options, &tree) != pcore_test::kOk) {
    return nullptr;
  }
  return tree;
}

uint64_t live_nodes(PcoreStore* store) {
  PcoreStoreStats stats{};
  stats.struct_size = sizeof(stats);
  EXPECT_EQ(pcore_store_stats(store, &stats), pcore_test::kOk);
  return stats.live_nodes;
}

void fill(PcoreTree* tree, int n) {
  for (int i = 0; i < n; ++i) {
    const std::string key = "key" + std::to_string(1000000 + i);
    const std::vector<uint8_t> value(i % 10 == 0 ? 600 : 8, static_cast<uint8_t>(i));
    ASSERT_EQ(pcore_tree_insert(tree, key.data(), key.size(), value.data(), value.size()), pcore_test::kOk);
  }
}

TEST(TreeDropTest, DropFreesTheTreeAndItsHandlesAnswerErrors) {
  ScratchDir scratch("tree-drop");
  const std::string dir = scratch.sub("store");
  PcoreStore* store = open_store(dir);
  ASSERT_NE(store, nullptr);
  PcoreTree* keep = open_tree(store, "keep");
  fill(keep, 40);
  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  const uint64_t before = live_nodes(store);

  PcoreTree* tree = open_tree(store, "gone");
  PcoreTree* other = open_tree(store, "gone");
  fill(tree, 3000);
  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  EXPECT_GT(live_nodes(store), before + 300);
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(other, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));

  PCORE_ASSERT_OK(pcore_tree_drop(store, "gone", 4));
  // Every handle of the tree, and its cursors, answer errors; none reads a freed page.
  uint8_t buf[16];
  size_t len = 0;
  PCORE_EXPECT_STATUS(kBadHandle, pcore_tree_get(tree, "key1000001", 10, buf, sizeof(buf), &len));
  PCORE_EXPECT_STATUS(kBadHandle, pcore_tree_insert(other, "k", 1, "v", 1));
  PCORE_EXPECT_STATUS(kBadHandle, pcore_tree_verify(other));
  EXPECT_NE(pcore_cursor_next(cursor), pcore_test::kOk);
  EXPECT_NE(pcore_cursor_first(cursor), pcore_test::kOk);
  PcoreCursor* late = nullptr;
  PCORE_EXPECT_STATUS(kBadHandle, pcore_cursor_open(tree, &late));
  EXPECT_EQ(late, nullptr);
  uint64_t n = 1;
  PCORE_EXPECT_OK(pcore_tree_len(tree, &n));
  EXPECT_EQ(n, 0u);
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_NOT_FOUND), pcore_tree_drop(store, "gone", 4));

  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  EXPECT_EQ(live_nodes(store), before) << "every page and value node freed";
  PCORE_EXPECT_OK(pcore_store_verify(store));
  PCORE_EXPECT_OK(pcore_cursor_close(cursor));
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_EXPECT_OK(pcore_tree_close(other));
  PCORE_EXPECT_OK(pcore_tree_close(keep));
  PCORE_ASSERT_OK(pcore_store_close(store));

  store = open_store(dir);
  EXPECT_EQ(open_tree(store, "gone", PCORE_TREE_NO_CREATE), nullptr) << "gone after reopen";
  keep = open_tree(store, "keep", PCORE_TREE_NO_CREATE);
  ASSERT_NE(keep, nullptr);
  PCORE_EXPECT_OK(pcore_tree_len(keep, &n));
  EXPECT_EQ(n, 40u);
  EXPECT_EQ(live_nodes(store), before);
  PCORE_EXPECT_OK(pcore_tree_close(keep));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

TEST(TreeDropTest, BadArgumentsChangeNothing) {
  ScratchDir scratch("tree-drop-args");
  const std::string dir = scratch.sub("store");
  PcoreStore* store = open_store(dir);
  PcoreTree* tree = open_tree(store, "t");
  fill(tree, 100);
  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  PCORE_EXPECT_STATUS(kBadHandle, pcore_tree_drop(nullptr, "t", 1));
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_INVALID_ARGUMENT), pcore_tree_drop(store, nullptr, 1));
  const std::string long_name(300, 'x');
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_INVALID_ARGUMENT),
                      pcore_tree_drop(store, long_name.data(), long_name.size()));
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_NOT_FOUND), pcore_tree_drop(store, "u", 1));
  // Lengths no name or key can have are refused before anything is copied (a host's mistake
  // of this size once aborted the process on the failed allocation).
  const size_t huge = size_t{1} << 40;
  PcoreTree* none = nullptr;
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_INVALID_ARGUMENT), pcore_tree_open(store, "t", huge, nullptr, &none));
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_INVALID_ARGUMENT), pcore_tree_drop(store, "t", huge));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_INVALID_ARGUMENT),
                      pcore_cursor_set_bounds(cursor, "k", huge, PCORE_BOUND_INCLUDED, nullptr, 0, PCORE_BOUND_UNBOUNDED));
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_INVALID_ARGUMENT),
                      pcore_cursor_set_bounds(cursor, nullptr, 0, PCORE_BOUND_UNBOUNDED, "k", huge, PCORE_BOUND_EXCLUDED));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  PCORE_EXPECT_OK(pcore_cursor_close(cursor));
  uint64_t n = 0;
  PCORE_EXPECT_OK(pcore_tree_len(tree, &n));
  EXPECT_EQ(n, 100u);
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_ASSERT_OK(pcore_store_close(store));

  PcoreStore* reader = open_store(dir, PCORE_OPEN_READ_ONLY);
  PCORE_EXPECT_STATUS(static_cast<int32_t>(PCORE_READ_ONLY), pcore_tree_drop(reader, "t", 1));
  PCORE_EXPECT_OK(pcore_store_close(reader));
  PCORE_EXPECT_STATUS(kBadHandle, pcore_tree_drop(reader, "t", 1));  // a closed store
}

}  // namespace

namespace {

// Lists every name a listing call gives, from the start, with a buffer of `cap` bytes.
template <typename Next>
std::vector<std::string> list_names(PcoreStore* store, size_t cap, Next next) {
  std::vector<std::string> names;
  std::vector<char> buf(cap);
  std::string after;
  bool first = true;
  for (;;) {
    size_t len = 0;
    int32_t st = next(store, first ? nullptr : after.data(), after.size(), buf.data(), buf.size(), &len);
    if (st == static_cast<int32_t>(PCORE_NOT_FOUND)) break;
    EXPECT_EQ(st, pcore_test::kOk) << pcore_last_error_message();
    if (st != pcore_test::kOk) break;
    if (len > buf.size()) {
      buf.resize(len);
      continue;  // again with room for the whole name
    }
    after.assign(buf.data(), len);
    names.push_back(after);
    first = false;
  }
  return names;
}

TEST(ListingTest, RootsAndTreesAreListedByNameIncludingUncommittedChanges) {
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &opts, &store));
  size_t len = 0;
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_root_next(store, nullptr, 0, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_next(store, nullptr, 0, nullptr, 0, nullptr));
  // NULL `after` with a length: a mistake, not "the first name".
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_next(store, nullptr, 5, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_next(store, nullptr, 5, nullptr, 0, &len));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_next(store, nullptr, 0, nullptr, 8, &len));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_next(nullptr, nullptr, 0, nullptr, 0, &len));
  PCORE_ASSERT_OK(pcore_root_set(store, "", 0, 0, nullptr, 0));
  PCORE_ASSERT_OK(pcore_root_set(store, "zeta", 4, 0, nullptr, 0));
  PCORE_ASSERT_OK(pcore_root_set(store, "alpha-is-a-long-root-name", 25, 0, nullptr, 0));
  PcoreTreeOptions topts{};
  pcore_tree_options_init(&topts);
  PcoreTree* t1 = nullptr;
  PcoreTree* t2 = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(store, "orders.id", 9, &topts, &t1));
  PCORE_ASSERT_OK(pcore_tree_open(store, "orders.customer", 15, &topts, &t2));
  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  const std::vector<std::string> trees = list_names(store, 4, pcore_tree_next);
  EXPECT_EQ(trees, (std::vector<std::string>{"orders.customer", "orders.id"}));
  const std::vector<std::string> roots = list_names(store, 8, pcore_root_next);
  EXPECT_EQ(roots, (std::vector<std::string>{"", "alpha-is-a-long-root-name", "btree:orders.customer",
                                             "btree:orders.id", "zeta"}));
  // A drop and a new root show at once, before the commit.
  PCORE_ASSERT_OK(pcore_tree_close(t2));
  PCORE_ASSERT_OK(pcore_tree_drop(store, "orders.customer", 15));
  PCORE_ASSERT_OK(pcore_root_set(store, "beta", 4, 0, nullptr, 0));
  EXPECT_EQ(list_names(store, 64, pcore_tree_next), (std::vector<std::string>{"orders.id"}));
  EXPECT_EQ(list_names(store, 64, pcore_root_next).size(), 5u);
  pcore_tree_close(t1);
  PCORE_EXPECT_OK(pcore_store_close(store));
}

}  // namespace
