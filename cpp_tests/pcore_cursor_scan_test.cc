// pcore_cursor_next_get and pcore_cursor_next_batch through the C ABI, and their C++ wrappers
// (pcore::Cursor::next_view, next_batch, pcore::Batch): the same entries as a stepped scan
// (pcore_cursor_get + pcore_cursor_next), the batch layout, the argument checks, and that a
// refused call consumes nothing.
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "pcore.hpp"
#include "test_support.hpp"

namespace {

using Entries = std::vector<std::pair<std::string, std::string>>;

std::string text(const void* data, size_t len) { return std::string(static_cast<const char*>(data), len); }

std::string key_of(uint32_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key%08u", i);
  return buf;
}

/// Values of 0 to 299 bytes: with 512-byte pages the longer ones live in their own nodes.
std::string value_of(uint32_t i) { return std::string(i % 300, static_cast<char>('a' + i % 26)); }

class CursorScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PcoreStoreOptions options = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
    PCORE_ASSERT_OK(pcore_store_open(nullptr, &options, &store_));
    PcoreTreeOptions tree_options;
    pcore_tree_options_init(&tree_options);
    tree_options.page_bytes = 512;
    PCORE_ASSERT_OK(pcore_tree_open(store_, "t", 1, &tree_options, &tree_));
    for (uint32_t i = 0; i < kEntries; ++i) {
      const std::string k = key_of(i);
      const std::string v = value_of(i);
      PCORE_ASSERT_OK(pcore_tree_insert(tree_, k.data(), k.size(), v.data(), v.size()));
      expected_.emplace_back(k, v);
    }
    PCORE_ASSERT_OK(pcore_cursor_open(tree_, &cursor_));
  }
  void TearDown() override {
    if (cursor_ != nullptr) pcore_cursor_close(cursor_);
    if (tree_ != nullptr) pcore_tree_close(tree_);
    if (store_ != nullptr) pcore_store_close(store_);
  }

  /// The key under the cursor ("" past the end).
  std::string current_key() {
    PcoreBytes k{};
    PcoreBytes v{};
    const int32_t status = pcore_cursor_get(cursor_, &k, &v);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) return "";
    EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
    return text(k.data, k.len);
  }

  /// A whole scan through pcore_cursor_next_batch with a buffer of `buf_bytes`.
  Entries batch_scan(size_t buf_bytes) {
    Entries out;
    std::vector<uint64_t> buf((buf_bytes + 7) / 8);
    PCORE_EXPECT_OK(pcore_cursor_first(cursor_));
    for (;;) {
      size_t count = 0;
      size_t used = 0;
      const int32_t status = pcore_cursor_next_batch(cursor_, buf.data(), buf_bytes, &count, &used);
      if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) break;
      EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
      if (status != pcore_test::kOk) break;
      EXPECT_GT(count, 0u);
      EXPECT_LE(used, buf_bytes);
      EXPECT_EQ(used % PCORE_BATCH_RECORD_ALIGN, 0u);
      // Walk the documented layout by hand.
      const auto* at = reinterpret_cast<const uint8_t*>(buf.data());
      size_t offset = 0;
      for (size_t i = 0; i < count; ++i) {
        uint32_t lens[2];
        std::memcpy(lens, at + offset, sizeof lens);
        const uint8_t* key = at + offset + PCORE_BATCH_HEADER_BYTES;
        out.emplace_back(text(key, lens[0]), text(key + lens[0], lens[1]));
        const size_t end = offset + PCORE_BATCH_HEADER_BYTES + lens[0] + lens[1];
        const size_t next = (end + 7) / 8 * 8;
        for (size_t pad = end; pad < next; ++pad) EXPECT_EQ(at[pad], 0) << "padding of record " << i;
        offset = next;
      }
      EXPECT_EQ(offset, used);
    }
    return out;
  }

  static constexpr uint32_t kEntries = 3000;
  PcoreStore* store_ = nullptr;
  PcoreTree* tree_ = nullptr;
  PcoreCursor* cursor_ = nullptr;
  Entries expected_;
};

TEST_F(CursorScanTest, NextGetScansLikeNextThenGet) {
  Entries got;
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  PcoreBytes k{};
  PcoreBytes v{};
  PCORE_ASSERT_OK(pcore_cursor_get(cursor_, &k, &v));
  got.emplace_back(text(k.data, k.len), text(v.data, v.len));
  int32_t status;
  while ((status = pcore_cursor_next_get(cursor_, &k, &v)) == pcore_test::kOk) {
    got.emplace_back(text(k.data, k.len), text(v.data, v.len));
  }
  EXPECT_EQ(status, static_cast<int32_t>(PCORE_NOT_FOUND)) << pcore_test::describe_status(status);
  EXPECT_EQ(got, expected_);
  // Past the end it stays NOT_FOUND, the outputs untouched.
  PcoreBytes k2{reinterpret_cast<const uint8_t*>("x"), 77};
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_next_get(cursor_, &k2, &v));
  EXPECT_EQ(k2.len, 77u);
}

TEST_F(CursorScanTest, NextGetStopsAtTheUpperBound) {
  const std::string lo = key_of(100);
  const std::string hi = key_of(120);
  PCORE_ASSERT_OK(pcore_cursor_set_bounds(cursor_, lo.data(), lo.size(), PCORE_BOUND_INCLUDED, hi.data(), hi.size(),
                                          PCORE_BOUND_EXCLUDED));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  EXPECT_EQ(current_key(), lo);
  size_t n = 1;
  PcoreBytes k{};
  PcoreBytes v{};
  while (pcore_cursor_next_get(cursor_, &k, &v) == pcore_test::kOk) {
    EXPECT_EQ(text(k.data, k.len), key_of(100 + static_cast<uint32_t>(n)));
    ++n;
  }
  EXPECT_EQ(n, 20u);
}

TEST_F(CursorScanTest, BatchScansSeeEveryEntryWhateverTheBufferSize) {
  // The largest record: 8 + 11-byte key + 299-byte value, padded: 320 bytes.
  for (size_t bytes : {size_t{320}, size_t{1000}, size_t{4096}, size_t{1} << 20}) {
    SCOPED_TRACE(bytes);
    EXPECT_EQ(batch_scan(bytes), expected_);
  }
}

TEST_F(CursorScanTest, BatchWithinBoundsAndAfterAChange) {
  const std::string lo = key_of(2990);
  PCORE_ASSERT_OK(pcore_cursor_set_bounds(cursor_, lo.data(), lo.size(), PCORE_BOUND_EXCLUDED, nullptr, 0,
                                          PCORE_BOUND_UNBOUNDED));
  Entries tail(expected_.begin() + 2991, expected_.end());
  EXPECT_EQ(batch_scan(4096), tail);
  // A change makes the cursor stale; positioned again, it reads on.
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  PCORE_ASSERT_OK(pcore_tree_insert(tree_, "zz", 2, "v", 1));
  std::vector<uint64_t> buf(512);
  size_t count = 0;
  size_t used = 0;
  EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_next_batch(cursor_, buf.data(), 4096, &count, &used));
  PcoreBytes k{};
  PcoreBytes v{};
  EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_next_get(cursor_, &k, &v));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  PCORE_EXPECT_OK(pcore_cursor_next_batch(cursor_, buf.data(), 4096, &count, &used));
}

// Refused calls consume nothing: the cursor stays on its entry, the outputs are not written.
TEST_F(CursorScanTest, RefusedCallsConsumeNothing) {
  std::vector<uint64_t> buf(64);
  size_t count = 123;
  size_t used = 456;
  PCORE_ASSERT_OK(pcore_cursor_seek(cursor_, key_of(299).data(), 11));  // a 299-byte value
  const std::string at = current_key();
  ASSERT_EQ(at, key_of(299));
  // Too small for the first record (8 + 11 + 299 -> 320 bytes).
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_cursor_next_batch(cursor_, buf.data(), 319, &count, &used));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_cursor_next_batch(cursor_, buf.data(), 0, &count, &used));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_cursor_next_batch(cursor_, nullptr, 0, &count, &used));
  // NULL arguments.
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_next_batch(cursor_, nullptr, 320, &count, &used));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_next_batch(cursor_, buf.data(), 320, nullptr, &used));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_next_batch(cursor_, buf.data(), 320, &count, nullptr));
  PcoreBytes k{};
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_next_get(cursor_, nullptr, &k));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_next_get(cursor_, &k, nullptr));
  EXPECT_EQ(count, 123u);
  EXPECT_EQ(used, 456u);
  EXPECT_EQ(current_key(), at) << "a refused call moved the cursor";
  // Exactly big enough: one record.
  PCORE_ASSERT_OK(pcore_cursor_next_batch(cursor_, buf.data(), 320, &count, &used));
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(used, 320u);
  EXPECT_EQ(current_key(), key_of(300));
  // Bad handles.
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_batch(nullptr, buf.data(), 320, &count, &used));
  PcoreBytes v{};
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_get(nullptr, &k, &v));
  // Unpositioned and empty: NOT_FOUND.
  PcoreCursor* fresh = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree_, &fresh));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_next_batch(fresh, buf.data(), 512, &count, &used));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_next_get(fresh, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_close(fresh));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_batch(fresh, buf.data(), 512, &count, &used));
}

// A cursor closed mid-scan, where its calls step within its copy of a leaf without reading a
// page, is refused by every call, also once a new cursor took its slot; the new one scans.
TEST_F(CursorScanTest, ClosedCursorIsRefusedMidScanAndAfterItsSlotIsReused) {
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  PcoreBytes k{};
  PcoreBytes v{};
  for (int i = 0; i < 3; ++i) PCORE_ASSERT_OK(pcore_cursor_next_get(cursor_, &k, &v));
  EXPECT_EQ(text(k.data, k.len), key_of(3));
  PcoreCursor* old = cursor_;
  PCORE_ASSERT_OK(pcore_cursor_close(old));
  cursor_ = nullptr;
  const auto refused = [&](const char* when) {
    SCOPED_TRACE(when);
    PcoreBytes k2{nullptr, 77};
    uint64_t buf[64];
    size_t count = 33;
    size_t used = 44;
    EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_get(old, &k2, &k2));
    EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_get(old, &k2, &k2));
    EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next(old));
    EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_batch(old, buf, sizeof buf, &count, &used));
    EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(old));
    EXPECT_EQ(k2.len, 77u);
    EXPECT_EQ(count, 33u);
  };
  refused("closed");
  PCORE_ASSERT_OK(pcore_cursor_open(tree_, &cursor_));
  EXPECT_NE(cursor_, old);
  refused("closed, its slot reused");
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  size_t n = 1;
  while (pcore_cursor_next_get(cursor_, &k, &v) == pcore_test::kOk) ++n;
  EXPECT_EQ(n, kEntries);
}

// The bytes pcore_cursor_get and pcore_cursor_next_get hand out stay as they were until the
// cursor's next call, whatever the tree does meanwhile; values in their own nodes included.
TEST_F(CursorScanTest, HandedOutEntriesStayUntilTheCursorsNextCall) {
  PCORE_ASSERT_OK(pcore_cursor_first(cursor_));
  PcoreBytes k{};
  PcoreBytes v{};
  PCORE_ASSERT_OK(pcore_cursor_get(cursor_, &k, &v));
  for (uint32_t i = 1; i < kEntries; ++i) {
    const int32_t status = pcore_cursor_next_get(cursor_, &k, &v);
    ASSERT_EQ(status, pcore_test::kOk) << i << ": " << pcore_test::describe_status(status);
    if (i % 97 != 0) continue;
    // Change the entry and its leaf under the cursor: the handed-out bytes stay.
    const std::string key = key_of(i);
    PCORE_ASSERT_OK(pcore_tree_remove(tree_, key.data(), key.size(), nullptr));
    EXPECT_EQ(text(k.data, k.len), key);
    EXPECT_EQ(text(v.data, v.len), value_of(i));
    PCORE_ASSERT_OK(pcore_tree_insert(tree_, key.data(), key.size(), value_of(i).data(), value_of(i).size()));
    PCORE_ASSERT_OK(pcore_cursor_seek(cursor_, key.data(), key.size()));
    PCORE_ASSERT_OK(pcore_cursor_get(cursor_, &k, &v));
    EXPECT_EQ(text(v.data, v.len), value_of(i));
  }
  EXPECT_EQ(pcore_cursor_next_get(cursor_, &k, &v), static_cast<int32_t>(PCORE_NOT_FOUND));
}

TEST(CursorScanWrapperTest, RangesOverBatchesAndNextView) {
  pcore::Store store = pcore::Store::in_memory();
  pcore::Tree tree = pcore::Tree::open(store, "t");
  Entries expected;
  for (uint32_t i = 0; i < 2000; ++i) {
    expected.emplace_back(key_of(i), value_of(i));
    tree.insert(expected.back().first, expected.back().second);
  }
  pcore::Cursor cursor(tree);
  Entries batched;
  std::vector<uint64_t> buf(128);  // 1 KiB: many batches
  cursor.first();
  for (pcore::Batch b; !(b = cursor.next_batch(buf)).empty();) {
    for (auto [k, v] : b) batched.emplace_back(text(k.data, k.len), text(v.data, v.len));
  }
  EXPECT_EQ(batched, expected);
  Entries stepped;
  cursor.first();
  auto first = cursor.get_view();
  ASSERT_TRUE(first.has_value());
  stepped.emplace_back(text(first->first.data, first->first.len), text(first->second.data, first->second.len));
  while (auto e = cursor.next_view()) stepped.emplace_back(text(e->first.data, e->first.len), text(e->second.data, e->second.len));
  EXPECT_EQ(stepped, expected);
  // A buffer too small for the next record throws PCORE_TOO_LARGE and consumes nothing.
  cursor.seek(key_of(299));
  std::vector<uint64_t> tiny(4);
  EXPECT_THROW((void)cursor.next_batch(tiny), pcore::Error);
  EXPECT_EQ(text(cursor.get_view()->first.data, cursor.get_view()->first.len), key_of(299));
}

}  // namespace
