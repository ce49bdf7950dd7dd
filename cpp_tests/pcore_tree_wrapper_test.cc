// TreeWrapperTest: the B+ tree wrappers in pcore.hpp (pcore::Tree, pcore::Cursor,
// pcore::TreeOptions, pcore::ByteView): RAII, move-only handles, idempotent close, exceptions
// carrying the status, std::optional for "absent".
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <pcore.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

static_assert(!std::is_copy_constructible_v<pcore::Tree>, "Tree is move-only");
static_assert(!std::is_copy_assignable_v<pcore::Tree>, "Tree is move-only");
static_assert(std::is_nothrow_move_constructible_v<pcore::Tree>);
static_assert(std::is_nothrow_move_assignable_v<pcore::Tree>);
static_assert(std::is_nothrow_destructible_v<pcore::Tree>);
static_assert(!std::is_copy_constructible_v<pcore::Cursor>, "Cursor is move-only");
static_assert(std::is_nothrow_move_constructible_v<pcore::Cursor>);
static_assert(std::is_nothrow_destructible_v<pcore::Cursor>);
static_assert(std::is_same_v<decltype(std::declval<pcore::Tree&>().get(pcore::ByteView())),
                             std::optional<std::vector<uint8_t>>>);
static_assert(std::is_same_v<decltype(std::declval<pcore::Cursor&>().get()),
                             std::optional<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>>>);

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

int32_t status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const pcore::Error& e) {
    return e.status();
  }
  return PCORE_OK;
}

TEST(TreeWrapperTest, InsertGetRemoveAndStats) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree tree = pcore::Tree::open(store, "t");
  ASSERT_TRUE(tree.is_open());
  ASSERT_NE(tree.raw(), nullptr);
  for (int i = 0; i < 1000; ++i) {
    tree.insert("k" + std::to_string(i), "v" + std::to_string(i));
  }
  EXPECT_EQ(tree.len(), 1000u);
  EXPECT_EQ(text(*tree.get("k7")), "v7");
  EXPECT_EQ(tree.get(std::string("absent")), std::nullopt);
  EXPECT_TRUE(tree.contains("k999"));
  EXPECT_FALSE(tree.contains("k1000"));
  EXPECT_FALSE(tree.try_insert("k7", "other"));
  EXPECT_EQ(status_of([&] { tree.insert("k7", "other"); }), PCORE_DUPLICATE_KEY);
  EXPECT_EQ(text(*tree.get("k7")), "v7");
  EXPECT_TRUE(tree.remove("k7"));
  EXPECT_FALSE(tree.remove("k7"));
  EXPECT_FALSE(tree.remove_pair("k8", "wrong"));
  EXPECT_TRUE(tree.remove_pair("k8", "v8"));
  EXPECT_EQ(tree.len(), 998u);
  // Values larger than get's first buffer, and the empty value / key.
  const std::string big(5000, 'b');
  tree.insert(pcore::ByteView("big", 3), big);
  EXPECT_EQ(text(*tree.get("big")), big);
  tree.insert("", "");
  ASSERT_TRUE(tree.get("").has_value());
  EXPECT_TRUE(tree.get("")->empty());
  const pcore::TreeStats stats = tree.stats();
  EXPECT_EQ(stats.entries, 1000u);  // 998 + "big" + ""
  EXPECT_EQ(stats.page_bytes, 4096u);
  EXPECT_GE(stats.height, 2u);
  EXPECT_NO_THROW(tree.verify());
  EXPECT_EQ(pcore::Tree::max_key_bytes(4096), 742u);
  EXPECT_EQ(status_of([] { (void)pcore::Tree::max_key_bytes(1000); }), PCORE_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { tree.insert(std::string(743, 'x'), "v"); }), PCORE_INVALID_ARGUMENT);
}

TEST(TreeWrapperTest, OptionsBuilder) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::TreeOptions defaults;
  EXPECT_EQ(defaults.page_bytes(), 4096u);
  EXPECT_EQ(defaults.duplicates(), pcore::Duplicates::Unique);

  pcore::Tree over = pcore::Tree::open(store, "over", pcore::TreeOptions().duplicates(pcore::Duplicates::Overwrite));
  over.insert("k", "1");
  over.insert("k", "2");
  EXPECT_EQ(text(*over.get("k")), "2");
  EXPECT_EQ(over.len(), 1u);

  pcore::Tree multi =
      pcore::Tree::open(store, "multi", pcore::TreeOptions().duplicates(pcore::Duplicates::Multi).page_bytes(8192));
  multi.insert("k", "1");
  multi.insert("k", "2");
  EXPECT_EQ(multi.len(), 2u);
  EXPECT_EQ(multi.stats().page_bytes, 8192u);
  EXPECT_TRUE(multi.remove_pair("k", "1"));
  EXPECT_EQ(text(*multi.get("k")), "2");

  EXPECT_EQ(status_of([&] { (void)pcore::Tree::open(store, "missing", pcore::TreeOptions().no_create()); }),
            PCORE_NOT_FOUND);
  EXPECT_EQ(status_of([&] { (void)pcore::Tree::open(store, "bad", pcore::TreeOptions().page_bytes(1000)); }),
            PCORE_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { (void)pcore::Tree::open(store, "over", pcore::TreeOptions()); }),
            PCORE_INVALID_ARGUMENT)
      << "reopened with another duplicates mode";
  pcore::Tree again = pcore::Tree::open(store, "over", pcore::TreeOptions().duplicates(pcore::Duplicates::Overwrite).no_create());
  EXPECT_EQ(text(*again.get("k")), "2");

  // A ceiling on entries per page caps pages but does not change the contents.
  pcore::Tree capped = pcore::Tree::open(store, "capped", pcore::TreeOptions().max_entries_per_page(8));
  for (int i = 0; i < 200; ++i) capped.insert("k" + std::to_string(1000 + i), "v");
  EXPECT_LE(capped.stats().keys_per_leaf_max, 8u);
  EXPECT_NO_THROW(capped.verify());
}

int32_t reverse_order(void* ctx, const uint8_t* a, size_t al, const uint8_t* b, size_t bl) {
  ++*static_cast<int*>(ctx);
  const int c = std::memcmp(a, b, std::min(al, bl));
  if (c != 0) return c < 0 ? 1 : -1;
  return al < bl ? 1 : (al > bl ? -1 : 0);
}

TEST(TreeWrapperTest, CursorWalksBothWaysWithBounds) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree tree = pcore::Tree::open(store, "t");
  for (char c = 'a'; c <= 'z'; ++c) {
    tree.insert(std::string(1, c), std::string(3, c));
  }
  pcore::Cursor cursor(tree);
  EXPECT_EQ(cursor.get(), std::nullopt) << "unpositioned";
  std::string forward;
  for (cursor.first(); auto e = cursor.get(); cursor.next()) {
    forward += text(e->first);
    EXPECT_EQ(text(e->second), std::string(3, e->first[0]));
  }
  EXPECT_EQ(forward, "abcdefghijklmnopqrstuvwxyz");
  std::string backward;
  for (cursor.last(); auto e = cursor.get(); cursor.prev()) {
    backward += text(e->first);
  }
  EXPECT_EQ(backward, "zyxwvutsrqponmlkjihgfedcba");
  cursor.set_bounds(pcore::Bound::excluded("c"), pcore::Bound::included("f"));
  std::string bounded;
  for (cursor.first(); auto e = cursor.get(); cursor.next()) {
    bounded += text(e->first);
  }
  EXPECT_EQ(bounded, "def");
  cursor.set_bounds(pcore::Bound::at("x", true), pcore::Bound::unbounded());
  bounded.clear();
  for (cursor.last(); auto e = cursor.get(); cursor.prev()) {
    bounded += text(e->first);
  }
  EXPECT_EQ(bounded, "zyx");
  cursor.set_bounds(pcore::Bound::unbounded(), pcore::Bound::unbounded());
  cursor.seek("m");
  EXPECT_EQ(text(cursor.get()->first), "m");
  const auto view = cursor.get_view();
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(std::string(view->first.begin(), view->first.end()), "m");

  // Stale after a change; usable again once positioned.
  tree.insert("mm", "x");
  EXPECT_EQ(status_of([&] { (void)cursor.get(); }), PCORE_STALE_CURSOR);
  EXPECT_EQ(status_of([&] { cursor.next(); }), PCORE_STALE_CURSOR);
  cursor.seek("m").next();
  EXPECT_EQ(text(cursor.get()->first), "mm");

  // A host comparator.
  int calls = 0;
  pcore::Tree rev = pcore::Tree::open(store, "rev", pcore::TreeOptions().comparator(reverse_order, &calls));
  for (char c = 'a'; c <= 'e'; ++c) rev.insert(std::string(1, c), "v");
  pcore::Cursor rc(rev);
  std::string order;
  for (rc.first(); auto e = rc.get(); rc.next()) order += text(e->first);
  EXPECT_EQ(order, "edcba");
  EXPECT_GT(calls, 0);
}

TEST(TreeWrapperTest, CloseIsIdempotentAndMovesTransferOwnership) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree a = pcore::Tree::open(store, "t");
  a.insert("k", "v");
  PcoreTree* raw = a.raw();
  pcore::Tree b = std::move(a);
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.raw(), raw);
  EXPECT_EQ(status_of([&] { (void)a.len(); }), PCORE_BAD_HANDLE);
  pcore::Tree c;
  c = std::move(b);
  EXPECT_EQ(c.len(), 1u);
  pcore::Cursor cursor(c);
  cursor.first();
  pcore::Cursor moved = std::move(cursor);
  EXPECT_EQ(text(moved.get()->first), "k");
  EXPECT_EQ(status_of([&] { cursor.first(); }), PCORE_BAD_HANDLE);  // NOLINT(bugprone-use-after-move)
  moved.close();
  moved.close();
  EXPECT_FALSE(moved.is_open());
  c.close();
  c.close();
  EXPECT_FALSE(c.is_open());
  EXPECT_EQ(status_of([&] { c.insert("k", "v"); }), PCORE_BAD_HANDLE);
  EXPECT_EQ(pcore_tree_len(raw, nullptr), PCORE_BAD_HANDLE) << "the C handle was released";
  // Trees and cursors outliving their store: calls throw, destructors stay quiet.
  pcore::Tree late = pcore::Tree::open(store, "t");
  pcore::Cursor late_cursor(late);
  store.close();
  EXPECT_EQ(status_of([&] { late.insert("x", "y"); }), PCORE_BAD_HANDLE);
  EXPECT_EQ(status_of([&] { late_cursor.first(); }), PCORE_BAD_HANDLE);
}

TEST(TreeWrapperTest, ChangesAreDurableAtCommit) {
  ScratchDir dir("tree-wrapper");
  const std::string path = dir.sub("store");
  {
    pcore::Store store = pcore::Store::open(path, pcore::Options().durability(pcore::Durability::Strict));
    pcore::Tree tree = pcore::Tree::open(store, "t");
    for (int i = 0; i < 500; ++i) tree.insert("k" + std::to_string(i), "v");
    store.commit();
    tree.insert("uncommitted", "v");
  }
  pcore::Store store = pcore::Store::open(path);
  pcore::Tree tree = pcore::Tree::open(store, "t", pcore::TreeOptions().no_create());
  EXPECT_EQ(tree.len(), 500u);
  EXPECT_FALSE(tree.contains("uncommitted"));
  EXPECT_NO_THROW(tree.verify());
}

TEST(TreeWrapperTest, BulkLoad) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree tree = pcore::Tree::open(store, "t");
  std::vector<pcore::Entry> entries;
  for (int i = 0; i < 5000; ++i) {
    char key[16];
    std::snprintf(key, sizeof(key), "k%06d", i);
    entries.emplace_back(bytes(key), bytes("v"));
  }
  tree.bulk_load(entries);
  EXPECT_EQ(tree.len(), 5000u);
  EXPECT_GE(tree.stats().leaf_fill, 0.95);
  EXPECT_NO_THROW(tree.verify());
  EXPECT_EQ(status_of([&] { tree.bulk_load(entries); }), PCORE_INVALID_ARGUMENT) << "not empty";
  pcore::Tree unsorted = pcore::Tree::open(store, "u");
  std::swap(entries[10], entries[20]);
  EXPECT_EQ(status_of([&] { unsorted.bulk_load(entries); }), PCORE_INVALID_ARGUMENT);
  EXPECT_EQ(unsorted.len(), 0u);
}

}  // namespace
