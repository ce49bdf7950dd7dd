// IndexDmlTest: the capacity plan's "integration test via DML executor inserting 50 k keys with
// index", as Kizuna's executor drives its indexes: 50,000 rows, each row's keys inserted into a
// unique INTEGER index and a unique VARCHAR index (two trees in one pcore store) in batches of
// 500 rows with a store commit per batch; then close, reopen by root_page_id, every key found,
// and a duplicate rejected with DUPLICATE_KEY leaving both trees unchanged.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kizuna_test_util.hpp"
#include "test_support.hpp"

namespace {

using kizuna_test::BPlusTree;
using kizuna_test::Key;
using kizuna_test::rid;
using pcore_test::ScratchDir;

constexpr uint32_t kRows = 50000;
constexpr uint32_t kBatch = 500;

/// Row i: id column (INTEGER, a scrambled permutation of 0..kRows-1, as ids arrive from a
/// client) and email column (VARCHAR, unique).
int32_t row_id(uint32_t i) { return static_cast<int32_t>((static_cast<uint64_t>(i) * 7919u) % kRows); }
Key id_key(uint32_t i) { return kizuna_test::int_key(row_id(i)); }
Key email_key(uint32_t i) {
  char text[48];
  std::snprintf(text, sizeof(text), "user%05d@example.com", row_id(i));
  return kizuna::record::encode(kizuna::Value::Varchar(text));
}

struct TreeShape {
  uint64_t entries;
  uint64_t height;
  uint64_t pages;
  double leaf_fill;
  bool operator==(const TreeShape& o) const {
    return entries == o.entries && height == o.height && pages == o.pages && leaf_fill == o.leaf_fill;
  }
};

TreeShape shape_of(const BPlusTree& index) {
  const pcore::TreeStats s = index.stats();
  return TreeShape{s.entries, s.height, s.pages, s.leaf_fill};
}

void check_all(BPlusTree& by_id, BPlusTree& by_email) {
  for (uint32_t i = 0; i < kRows; ++i) {
    const BPlusTree::SearchResult a = by_id.Search(id_key(i));
    ASSERT_TRUE(a.found) << "row " << i << " missing from the INTEGER index";
    ASSERT_EQ(a.value, rid(i));
    const BPlusTree::SearchResult b = by_email.Search(email_key(i));
    ASSERT_TRUE(b.found) << "row " << i << " missing from the VARCHAR index";
    ASSERT_EQ(b.value, rid(i));
  }
  // Complete ordered scans: the INTEGER index in id order.
  const std::vector<kizuna::record_id_t> by_id_order = by_id.ScanRange(std::nullopt, true, std::nullopt, true);
  ASSERT_EQ(by_id_order.size(), kRows);
  std::vector<kizuna::record_id_t> expected(kRows);
  for (uint32_t i = 0; i < kRows; ++i) {
    expected[static_cast<size_t>(row_id(i))] = rid(i);
  }
  EXPECT_EQ(by_id_order, expected);
  EXPECT_EQ(by_email.ScanRange(std::nullopt, true, std::nullopt, true).size(), kRows);
}

TEST(IndexDmlTest, Insert50k) {
  ScratchDir scratch("kizuna-dml");
  const std::string dir = scratch.sub("store");
  kizuna::page_id_t id_index = 0;
  kizuna::page_id_t email_index = 0;
  uint64_t commits = 0;
  {
    pcore::Store store = pcore::Store::open(dir);
    BPlusTree by_id(store, 0, true);
    BPlusTree by_email(store, 0, true);
    id_index = by_id.root_page_id();
    email_index = by_email.root_page_id();
    ASSERT_NE(id_index, email_index);
    store.commit();  // the indexes exist before Kizuna's catalog records their ids
    for (uint32_t start = 0; start < kRows; start += kBatch) {
      for (uint32_t i = start; i < start + kBatch; ++i) {
        try {
          by_id.Insert(id_key(i), rid(i));
          by_email.Insert(email_key(i), rid(i));
        } catch (const kizuna::DBException& e) {
          FAIL() << "row " << i << ": " << e.what();
        }
      }
      store.commit();
      ++commits;
    }
    EXPECT_EQ(commits, kRows / kBatch);
    EXPECT_EQ(by_id.size(), kRows);
    EXPECT_EQ(by_email.size(), kRows);
    EXPECT_NO_THROW(by_id.verify());
    EXPECT_NO_THROW(by_email.verify());
    by_id.tree().close();
    by_email.tree().close();
    store.close();
  }

  pcore::Store store = pcore::Store::open(dir);
  BPlusTree by_id(store, id_index, true);
  BPlusTree by_email(store, email_index, true);
  EXPECT_EQ(by_id.size(), kRows);
  EXPECT_EQ(by_email.size(), kRows);
  EXPECT_NO_THROW(by_id.verify());
  EXPECT_NO_THROW(by_email.verify());
  ASSERT_NO_FATAL_FAILURE(check_all(by_id, by_email));
  for (const BPlusTree* index : {&by_id, &by_email}) {
    const pcore::TreeStats s = index->stats();
    EXPECT_LE(s.height, 3u);
    EXPECT_GE(s.leaf_fill, 0.70);
  }

  // Duplicates: the statement fails, both trees stay exactly as they were.
  const TreeShape id_before = shape_of(by_id);
  const TreeShape email_before = shape_of(by_email);
  for (uint32_t i : {0u, 1u, kRows / 2, kRows - 1}) {
    EXPECT_KIZUNA_STATUS(DUPLICATE_KEY, by_id.Insert(id_key(i), rid(kRows + i)));
    EXPECT_KIZUNA_STATUS(DUPLICATE_KEY, by_email.Insert(email_key(i), rid(kRows + i)));
    EXPECT_EQ(by_id.Search(id_key(i)).value, rid(i));
    EXPECT_EQ(by_email.Search(email_key(i)).value, rid(i));
  }
  EXPECT_EQ(shape_of(by_id), id_before);
  EXPECT_EQ(shape_of(by_email), email_before);
  EXPECT_EQ(by_id.size(), kRows);
  EXPECT_EQ(by_email.size(), kRows);
  EXPECT_NO_THROW(by_id.verify());
  EXPECT_NO_THROW(by_email.verify());
  EXPECT_NO_THROW(store.verify());

  // A new row still goes in, and is durable with the next commit.
  by_id.Insert(kizuna_test::int_key(static_cast<int32_t>(kRows)), rid(kRows));
  by_email.Insert(kizuna::record::encode(kizuna::Value::Varchar("new@example.com")), rid(kRows));
  store.commit();
  by_id.tree().close();
  by_email.tree().close();
  store.close();
  pcore::Store again = pcore::Store::open(dir);
  BPlusTree id2(again, id_index, true);
  EXPECT_EQ(id2.size(), kRows + 1);
  EXPECT_EQ(id2.Search(kizuna_test::int_key(static_cast<int32_t>(kRows))).value, rid(kRows));
}

}  // namespace
