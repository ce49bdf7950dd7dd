// KizunaHostTest: include/pcore/kizuna_index.hpp driven in Kizuna's shape: an index opened by
// path once per statement, from many handles and threads, while earlier handles live; Remove
// of a (key, row id) that was never indexed (rows inserted before CREATE INDEX); commit on a
// statement handle's close; DROP INDEX.
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kizuna_test_util.hpp"
#include "test_support.hpp"

namespace {

using kizuna_test::BPlusTree;
using kizuna_test::int_key;
using kizuna_test::rid;
using pcore::kizuna::StoreRegistry;
using pcore_test::ScratchDir;

TEST(KizunaHostTest, OneIndexOpensByPathFromManyHandlesAtOnce) {
  ScratchDir scratch("kizuna-host-handles");
  const std::string dir = scratch.sub("orders.idx");
  kizuna::page_id_t id = 0;
  {
    BPlusTree create(dir, 0, true);  // CREATE INDEX
    id = create.root_page_id();
    create.commit();
    EXPECT_EQ(StoreRegistry::references(dir), 1u);

    // Statements open the index again while the first handle lives, each its own handle.
    BPlusTree insert_stmt(dir, id, true);
    BPlusTree select_stmt(dir + "/.", id, true);             // another spelling of the path
    const std::string scratch_name = scratch.path().substr(scratch.path().rfind('/') + 1);
    BPlusTree named(scratch.path() + "/../" + scratch_name + "/orders.idx", id, true);
    EXPECT_EQ(StoreRegistry::references(dir), 4u) << "one store for every spelling of the directory";
    insert_stmt.Insert(int_key(1), rid(1));
    insert_stmt.Insert(int_key(2), rid(2));
    EXPECT_EQ(select_stmt.Search(int_key(1)).value, rid(1)) << "every handle sees one tree";
    EXPECT_EQ(named.ScanEqual(int_key(2)), std::vector<kizuna::record_id_t>{rid(2)});
    EXPECT_KIZUNA_STATUS(DUPLICATE_KEY, create.Insert(int_key(1), rid(9)));
    select_stmt.commit();
    // A second index in the same directory shares the store too.
    BPlusTree other(dir, 0, false);
    EXPECT_NE(other.root_page_id(), id);
    EXPECT_EQ(StoreRegistry::references(dir), 5u);
    other.commit();
  }
  EXPECT_EQ(StoreRegistry::references(dir), 0u);
  // The last handle closed the store: the directory is free for anyone.
  pcore::Store store = pcore::Store::open(dir);
  BPlusTree reopened(store, id, true);
  EXPECT_EQ(reopened.size(), 2u);
}

TEST(KizunaHostTest, ThreadsOpenTheIndexPerStatement) {
  ScratchDir scratch("kizuna-host-threads");
  const std::string dir = scratch.sub("t.idx");
  kizuna::page_id_t id = 0;
  {
    BPlusTree create(dir, 0, false);
    id = create.root_page_id();
    create.commit();
  }
  constexpr int kThreads = 4;
  constexpr int kStatements = 300;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  BPlusTree long_lived(dir, id, false);  // an earlier handle that stays alive throughout
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kStatements; ++i) {
        try {
          const int row = t * kStatements + i;
          BPlusTree stmt(dir, id, false);  // a statement's own handle
          stmt.set_commit_on_close(i % 50 == 49);
          stmt.Insert(int_key(row), rid(row));
          if (stmt.Search(int_key(row)).value != rid(row)) {
            ++failures;
          }
          if (i % 3 == 0) {
            stmt.Remove(int_key(row), rid(row));
            stmt.Insert(int_key(row), rid(row + 1));  // UPDATE: remove, then insert
          }
        } catch (const std::exception& e) {
          ADD_FAILURE() << e.what();
          ++failures;
        }
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(long_lived.size(), static_cast<uint64_t>(kThreads * kStatements));
  EXPECT_NO_THROW(long_lived.verify());
  long_lived.commit();
  long_lived.close();
  EXPECT_EQ(StoreRegistry::references(dir), 0u);
  pcore::Store store = pcore::Store::open(dir);
  BPlusTree reopened(store, id, false);
  for (int row = 0; row < kThreads * kStatements; ++row) {
    const int i = row % kStatements;
    ASSERT_EQ(reopened.Search(int_key(row)).value, rid(i % 3 == 0 ? row + 1 : row)) << row;
  }
}

TEST(KizunaHostTest, RemoveOfAPairNeverIndexedDoesNothing) {
  ScratchDir scratch("kizuna-host-remove");
  const std::string dir = scratch.sub("r.idx");
  // Rows 0..9 exist in the table before CREATE INDEX, which does not backfill; rows 10..19
  // are inserted afterwards and indexed.
  BPlusTree index(dir, 0, true);
  for (int row = 10; row < 20; ++row) {
    index.Insert(int_key(row), rid(row));
  }
  // UPDATE of an old row: remove its old key (never indexed), insert its new one.
  EXPECT_NO_THROW(index.Remove(int_key(3), rid(3)));
  index.Insert(int_key(103), rid(3));
  // DELETE of an old row, and of an indexed key with another row id.
  EXPECT_NO_THROW(index.Remove(int_key(4), rid(4)));
  EXPECT_NO_THROW(index.Remove(int_key(12), rid(99)));
  EXPECT_EQ(index.Search(int_key(12)).value, rid(12));
  EXPECT_EQ(index.size(), 11u);
  index.Remove(int_key(12), rid(12));
  EXPECT_FALSE(index.Search(int_key(12)).found);
  EXPECT_NO_THROW(index.verify());
}

TEST(KizunaHostTest, CommitOnCloseMakesAStatementDurable) {
  ScratchDir scratch("kizuna-host-commit");
  const std::string dir = scratch.sub("c.idx");
  kizuna::page_id_t id = 0;
  {
    BPlusTree create(dir, 0, true);
    id = create.root_page_id();
    create.set_commit_on_close(true);
    EXPECT_TRUE(create.commit_on_close());
    create.close();  // commits the new index
    EXPECT_FALSE(create.is_open());
    EXPECT_NO_THROW(create.close());
    EXPECT_KIZUNA_STATUS(INTERNAL_ERROR, create.Insert(int_key(1), rid(1)));
  }
  {
    BPlusTree stmt(dir, id, true);
    stmt.set_commit_on_close(true);
    stmt.Insert(int_key(1), rid(1));
  }  // the destructor commits
  {
    BPlusTree stmt(dir, id, true);
    stmt.Insert(int_key(2), rid(2));
  }  // no commit: the last handle closes the store and the insert is dropped
  {
    BPlusTree moved_from(dir, id, true);
    moved_from.set_commit_on_close(true);
    moved_from.Insert(int_key(3), rid(3));
    BPlusTree moved(std::move(moved_from));
    EXPECT_TRUE(moved.commit_on_close());
  }  // the moved-to handle commits, once
  EXPECT_EQ(StoreRegistry::references(dir), 0u);
  pcore::Store store = pcore::Store::open(dir);
  BPlusTree reopened(store, id, true);
  EXPECT_TRUE(reopened.Search(int_key(1)).found);
  EXPECT_FALSE(reopened.Search(int_key(2)).found);
  EXPECT_TRUE(reopened.Search(int_key(3)).found);
}

TEST(KizunaHostTest, RegistryClosesAStoreOnlyWithItsLastHandle) {
  ScratchDir scratch("kizuna-host-registry");
  const std::string a = scratch.sub("a.idx");
  const std::string b = scratch.sub("b.idx");
  const size_t before = StoreRegistry::open_stores();
  {
    pcore::kizuna::SharedStore sa = StoreRegistry::open(a);
    pcore::kizuna::SharedStore sa2 = StoreRegistry::open(a + "/");
    pcore::kizuna::SharedStore sb = StoreRegistry::open(b);
    EXPECT_EQ(sa.get(), sa2.get());
    EXPECT_NE(sa.get(), sb.get());
    EXPECT_EQ(StoreRegistry::open_stores(), before + 2);
    BPlusTree index(sa, 0, true);
    sa.reset();
    sa2.reset();
    EXPECT_EQ(StoreRegistry::references(a), 1u) << "the index holds the store";
    index.Insert(int_key(5), rid(5));
    index.commit();
    // While the registry holds a, nobody else can open it (one writer per directory).
    EXPECT_THROW(pcore::Store::open(a), pcore::Error);
  }
  EXPECT_EQ(StoreRegistry::open_stores(), before);
  EXPECT_NO_THROW(pcore::Store::open(a));
}

}  // namespace

namespace {

uint64_t live_nodes(pcore::Store& store) { return store.stats().live_nodes; }

TEST(KizunaHostTest, DropIndexFreesItsTreeAndRetiresItsId) {
  ScratchDir scratch("kizuna-host-drop");
  const std::string dir = scratch.sub("d.idx");
  BPlusTree other(dir, 0, false);
  other.Insert(int_key(1), rid(1));
  other.commit();
  const uint64_t before = live_nodes(other.store());

  BPlusTree index(dir, 0, true);  // CREATE INDEX
  const kizuna::page_id_t id = index.root_page_id();
  for (int row = 0; row < 5000; ++row) {
    index.Insert(kizuna_test::varchar32_key(static_cast<uint32_t>(row)), rid(row));
  }
  index.commit();
  EXPECT_GT(live_nodes(index.store()), before + 50);
  BPlusTree statement(dir, id, true);  // another statement's handle, still alive

  index.drop();  // DROP INDEX
  EXPECT_FALSE(index.is_open());
  EXPECT_KIZUNA_STATUS(INTERNAL_ERROR, statement.Search(int_key(1)));
  EXPECT_KIZUNA_STATUS(INDEX_NOT_FOUND, BPlusTree(dir, id, true));
  EXPECT_KIZUNA_STATUS(INDEX_NOT_FOUND, BPlusTree::drop_index(dir, id));
  other.commit();
  EXPECT_EQ(live_nodes(other.store()), before) << "every page of the dropped index freed";
  EXPECT_NO_THROW(other.store().verify());
  BPlusTree next(dir, 0, true);
  EXPECT_NE(next.root_page_id(), id) << "a dropped index's id is never reused";
  next.commit();
  const kizuna::page_id_t other_id = other.root_page_id();
  statement.close();
  next.close();
  other.close();

  pcore::Store store = pcore::Store::open(dir);
  EXPECT_KIZUNA_STATUS(INDEX_NOT_FOUND, BPlusTree(store, id, true));
  BPlusTree reopened(store, other_id, false);
  EXPECT_EQ(reopened.Search(int_key(1)).value, rid(1));
}

TEST(KizunaHostTest, DropOfANamedIndexFreesTheName) {
  ScratchDir scratch("kizuna-host-drop-named");
  const std::string dir = scratch.sub("n.idx");
  kizuna::page_id_t first = 0;
  {
    BPlusTree index(dir, std::string_view("users_by_email"), true);
    first = index.root_page_id();
    index.Insert(int_key(7), rid(7));
    index.set_commit_on_close(true);
    index.drop();  // commits, as the handle says
  }
  BPlusTree again(dir, std::string_view("users_by_email"), true);
  EXPECT_NE(again.root_page_id(), first);
  EXPECT_EQ(again.size(), 0u);
  again.commit();
  again.close();
  pcore::Store store = pcore::Store::open(dir);
  EXPECT_KIZUNA_STATUS(INDEX_NOT_FOUND, BPlusTree(store, first, true));
}

}  // namespace
