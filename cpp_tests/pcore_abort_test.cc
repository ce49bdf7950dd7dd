// AbortTest: pcore_store_abort through the C ABI and pcore.hpp: every kind of uncommitted
// change thrown away, open trees back at their committed entries, and the scoped
// WriteTransaction a SQL host uses to undo a statement that failed halfway.
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <pcore.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

uint64_t add(pcore::Store& store, size_t len, uint64_t seed) {
  const pcore::Allocation a = store.allocate(len, 3);
  const std::vector<uint8_t> bytes = pcore_test::make_pattern(len, seed);
  return store.publish(a.id, bytes.data(), bytes.size());
}

bool holds(const pcore::Store& store, uint64_t id, size_t len, uint64_t seed) {
  const std::optional<std::vector<uint8_t>> copy = store.try_read_copy(id);
  return copy && copy->size() == len && pcore_test::matches_pattern(copy->data(), len, seed);
}

TEST(AbortTest, EveryKindOfChangeIsUndone) {
  ScratchDir dir("abort");
  const std::string path = dir.sub("store");
  pcore::Store store = pcore::Store::open(path, pcore::Options().durability(pcore::Durability::Strict));
  const uint64_t kept = add(store, 100, 1);
  const uint64_t grown = add(store, 100, 2);
  const uint64_t freed = add(store, 3000, 3);
  store.set_root("main", kept);
  store.commit();

  const uint64_t fresh = add(store, 70, 9);
  const pcore::Allocation reserved = store.allocate(10, 3);
  const std::vector<uint8_t> big = pcore_test::make_pattern(9000, 8);
  store.publish(grown, big.data(), big.size());
  const pcore::WriteRegion region = store.write_ptr(kept);
  std::memset(region.data, 0xEE, 10);
  store.free(freed);
  store.set_root("main", fresh);
  store.set_root("other", fresh);

  PCORE_ASSERT_OK(pcore_store_abort(store.raw()));
  EXPECT_TRUE(holds(store, kept, 100, 1));
  EXPECT_TRUE(holds(store, grown, 100, 2));
  EXPECT_TRUE(holds(store, freed, 3000, 3));
  EXPECT_FALSE(store.contains(fresh));
  EXPECT_FALSE(store.contains(reserved.id));
  ASSERT_TRUE(store.get_root("main").has_value());
  EXPECT_EQ(store.get_root("main")->id, kept);
  EXPECT_FALSE(store.get_root("other").has_value());
  EXPECT_NO_THROW(store.verify());
  store.commit();
  store.close();

  pcore::Store again = pcore::Store::open(path);
  EXPECT_TRUE(holds(again, kept, 100, 1));
  EXPECT_TRUE(holds(again, grown, 100, 2));
  EXPECT_TRUE(holds(again, freed, 3000, 3));
  EXPECT_FALSE(again.contains(fresh));
}

TEST(AbortTest, BadHandlesAndReadOnlyStoresAreRefused) {
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_abort(nullptr));
  ScratchDir dir("abort-ro");
  const std::string path = dir.sub("store");
  { pcore::Store::open(path).close(); }
  pcore::Store ro = pcore::Store::open(path, pcore::Options().read_only());
  EXPECT_FAILS(PCORE_READ_ONLY, pcore_store_abort(ro.raw()));
}

TEST(AbortTest, OpenTreesHoldTheirCommittedEntriesAgain) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree tree = pcore::Tree::open(store, "rows", pcore::TreeOptions().page_bytes(512));
  for (int i = 0; i < 1000; ++i) tree.insert(bytes_of("k" + std::to_string(10000 + i)), bytes_of("v"));
  store.commit();
  pcore::Cursor cursor(tree);
  cursor.first();
  for (int i = 0; i < 1000; ++i) {
    if (i % 2 == 0) {
      tree.remove(bytes_of("k" + std::to_string(10000 + i)));
    } else {
      tree.insert(bytes_of("n" + std::to_string(i)), std::vector<uint8_t>(100, 1));
    }
  }
  pcore::Tree created = pcore::Tree::open(store, "new", pcore::TreeOptions());
  created.insert(bytes_of("a"), bytes_of("1"));
  store.abort();
  EXPECT_EQ(tree.len(), 1000u);
  EXPECT_TRUE(tree.contains(bytes_of("k10000")));
  EXPECT_FALSE(tree.contains(bytes_of("n1")));
  EXPECT_NO_THROW(tree.verify());
  EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_next(cursor.raw()));
  tree.insert(bytes_of("after"), bytes_of("x"));
  EXPECT_EQ(tree.len(), 1001u);
  // A tree created since the commit is gone, as if dropped (outsider11 G7): its handle
  // answers BAD_HANDLE (its length 0, as a dropped tree's) and an open makes it anew, empty.
  EXPECT_EQ(created.len(), 0u);
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_insert(created.raw(), "b", 1, "2", 1));
  std::vector<uint8_t> value(8);
  size_t value_len = 0;
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_get(created.raw(), "a", 1, value.data(), value.size(), &value_len));
  EXPECT_EQ(pcore::Tree::open(store, "new", pcore::TreeOptions()).len(), 0u);
}

// outsider11 G6/G7: the abort gave a tree created since the commit a new empty root, and the
// next commit, or a close that compacts, made it durable.
TEST(AbortTest, ATreeCreatedThenAbortedIsNotInTheStoreAfterACommitOrAClose) {
  ScratchDir dir("abort-created-tree");
  {
    pcore::Store store = pcore::Store::open(dir.path());
    pcore::Tree rows = pcore::Tree::open(store, "rows", pcore::TreeOptions());
    for (uint32_t i = 0; i < 20000; ++i) rows.insert(bytes_of("k" + std::to_string(100000 + i)), std::vector<uint8_t>(200, 3));
    store.commit();
    for (uint32_t i = 0; i < 19000; ++i) rows.remove(bytes_of("k" + std::to_string(100000 + i)));
    store.commit();  // most pages free: the close compacts
    pcore::Tree::open(store, "closed", pcore::TreeOptions()).insert(bytes_of("a"), bytes_of("1"));
    store.abort();
    store.set_root("host", 0, "x", 1);
    store.commit();
    pcore::Tree open = pcore::Tree::open(store, "open", pcore::TreeOptions());
    store.abort();
    pcore::Tree uncommitted = pcore::Tree::open(store, "uncommitted", pcore::TreeOptions());
    store.close();
  }
  pcore::Store store = pcore::Store::open(dir.path());
  std::vector<std::string> names;
  std::vector<char> buf(64);
  std::string after;
  size_t len = 0;
  while (pcore_tree_next(store.raw(), after.data(), after.size(), buf.data(), buf.size(), &len) == PCORE_OK) {
    after.assign(buf.data(), len);
    names.push_back(after);
  }
  EXPECT_EQ(names, std::vector<std::string>{"rows"});
  EXPECT_NO_THROW(store.verify());
}

// A statement inserts a row into two unique indexes; the second finds a duplicate and throws:
// the scope ends without a commit, and the first index's insert is undone too.
TEST(AbortTest, AWriteTransactionUndoesAStatementThatFailedHalfway) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree by_id = pcore::Tree::open(store, "by_id", pcore::TreeOptions());
  pcore::Tree by_name = pcore::Tree::open(store, "by_name", pcore::TreeOptions());
  {
    pcore::WriteTransaction txn(store);
    by_id.insert(bytes_of("1"), bytes_of("row1"));
    by_name.insert(bytes_of("ann"), bytes_of("row1"));
    txn.commit();
  }
  try {
    pcore::WriteTransaction txn(store);
    by_id.insert(bytes_of("2"), bytes_of("row2"));
    by_name.insert(bytes_of("ann"), bytes_of("row2"));  // a duplicate: throws
    txn.commit();
    FAIL() << "no duplicate key";
  } catch (const pcore::Error& e) {
    EXPECT_EQ(e.status(), PCORE_DUPLICATE_KEY);
  }
  EXPECT_FALSE(by_id.contains(bytes_of("2"))) << "the first index's insert was undone";
  EXPECT_EQ(by_id.len(), 1u);
  EXPECT_EQ(by_name.len(), 1u);
  {
    pcore::WriteTransaction txn(store);
    by_id.insert(bytes_of("3"), bytes_of("row3"));
    txn.abort();
  }
  EXPECT_FALSE(by_id.contains(bytes_of("3")));
}

}  // namespace
