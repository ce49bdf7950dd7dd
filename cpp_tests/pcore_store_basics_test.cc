// StoreBasicsTest: the C++ wrappers in pcore.hpp (RAII, exceptions, Options builder).
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include <pcore.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

static_assert(!std::is_copy_constructible_v<pcore::Store>, "Store is move-only");
static_assert(!std::is_copy_assignable_v<pcore::Store>, "Store is move-only");
static_assert(std::is_nothrow_move_constructible_v<pcore::Store>, "Store moves without throwing");
static_assert(std::is_base_of_v<std::runtime_error, pcore::Error>, "Error is a runtime_error");

TEST(StoreBasicsTest, OpenPublishCommitReopen) {
  ScratchDir dir("basics");
  const std::string path = dir.sub("store");
  uint64_t id = 0;
  uint64_t epoch = 0;
  {
    pcore::Store store = pcore::Store::open(path, pcore::Options().durability(pcore::Durability::Strict));
    ASSERT_TRUE(store.is_open());
    ASSERT_NE(store.raw(), nullptr);
    const pcore::Allocation a = store.allocate(100, 5);
    EXPECT_GE(a.capacity, 100u);
    id = a.id;
    const std::vector<uint8_t> bytes = pcore_test::make_pattern(100, 1);
    EXPECT_EQ(store.publish(id, bytes.data(), bytes.size()), id);
    const pcore::NodeInfo staged = store.info(id);
    EXPECT_EQ(staged.committed, 0);
    EXPECT_EQ(staged.len, 100u);
    EXPECT_EQ(staged.kind, 5);
    epoch = store.commit();
    EXPECT_EQ(store.stats().epoch, epoch);
    EXPECT_EQ(store.info(id).committed, 1);
    store.close();
    EXPECT_FALSE(store.is_open());
  }
  pcore::Store store = pcore::Store::open(path);
  const pcore::Bytes b = store.read(id);
  ASSERT_EQ(b.len, 100u);
  EXPECT_TRUE(pcore_test::matches_pattern(b.data, b.len, 1));
  EXPECT_EQ(store.stats().epoch, epoch);
  EXPECT_NO_THROW(store.verify());
}

TEST(StoreBasicsTest, ErrorsCarryStatusAndMessage) {
  pcore::Store store = pcore::Store::in_memory();
  try {
    (void)store.read((uint64_t{4242} << 16) | 1);
    FAIL() << "no exception";
  } catch (const pcore::Error& e) {
    EXPECT_EQ(e.status(), static_cast<int32_t>(PCORE_NOT_FOUND));
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("PCORE_NOT_FOUND: ", 0), 0u) << what;
    EXPECT_GT(what.size(), std::strlen("PCORE_NOT_FOUND: ")) << "the library's message follows the name";
  }
  EXPECT_THROW((void)store.allocate(10, 0), pcore::Error);
  EXPECT_THROW(pcore::check(PCORE_IO_ERROR), std::runtime_error);
  EXPECT_NO_THROW(pcore::check(PCORE_OK));
  EXPECT_FALSE(store.try_read(0).has_value());
  EXPECT_FALSE(store.try_info(0).has_value());
  EXPECT_FALSE(store.contains(UINT64_MAX));
}

TEST(StoreBasicsTest, MoveOnlyAndCloseIsIdempotent) {
  pcore::Store a = pcore::Store::in_memory();
  PcoreStore* handle = a.raw();
  pcore::Store b = std::move(a);
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.raw(), handle);
  pcore::Store c;
  EXPECT_FALSE(c.is_open());
  c = std::move(b);
  EXPECT_EQ(c.raw(), handle);
  c.close();
  EXPECT_NO_THROW(c.close());
  EXPECT_NO_THROW(a.close());
  // A closed (empty) store throws BAD_HANDLE on use.
  try {
    (void)c.allocate(10, 1);
    FAIL() << "no exception";
  } catch (const pcore::Error& e) {
    EXPECT_EQ(e.status(), static_cast<int32_t>(PCORE_BAD_HANDLE));
  }
}

TEST(StoreBasicsTest, DestructorClosesAndReleasesTheLock) {
  ScratchDir dir("basics-lock");
  const std::string path = dir.sub("store");
  {
    pcore::Store first = pcore::Store::open(path);
    try {
      pcore::Store second = pcore::Store::open(path);
      FAIL() << "a second writer opened";
    } catch (const pcore::Error& e) {
      EXPECT_EQ(e.status(), static_cast<int32_t>(PCORE_BUSY));
    }
  }
  EXPECT_NO_THROW(pcore::Store::open(path));
}

TEST(StoreBasicsTest, OptionsBuilder) {
  pcore::Options options;
  EXPECT_EQ(options.raw().struct_size, sizeof(PcoreStoreOptions));
  EXPECT_EQ(options.raw().durability, static_cast<uint32_t>(PCORE_DURABILITY_BALANCED));
  options.read_only()
      .no_create()
      .durability(pcore::Durability::Eventual)
      .balanced_interval_ms(25)
      .growth_policy(pcore::GrowthPolicy::NewId)
      .min_class_bytes(128)
      .max_class_bytes(65536)
      .inline_payload_max_bytes(1024)
      .checkpoint_log_bytes(1 << 20);
  const PcoreStoreOptions& raw = options.raw();
  EXPECT_EQ(raw.flags, static_cast<uint32_t>(PCORE_OPEN_READ_ONLY | PCORE_OPEN_NO_CREATE));
  EXPECT_TRUE(options.is_read_only());
  EXPECT_FALSE(options.is_in_memory());
  EXPECT_EQ(raw.durability, static_cast<uint32_t>(PCORE_DURABILITY_EVENTUAL));
  EXPECT_EQ(raw.balanced_interval_ms, 25u);
  EXPECT_EQ(raw.growth_policy, static_cast<uint32_t>(PCORE_GROWTH_NEW_ID));
  EXPECT_EQ(raw.min_class_bytes, 128u);
  EXPECT_EQ(raw.max_class_bytes, 65536u);
  EXPECT_EQ(raw.inline_payload_max_bytes, 1024u);
  EXPECT_EQ(raw.checkpoint_log_bytes, uint64_t{1} << 20);
  options.read_only(false);
  EXPECT_EQ(options.raw().flags, static_cast<uint32_t>(PCORE_OPEN_NO_CREATE));

  // NO_CREATE on an empty directory.
  ScratchDir dir("basics-options");
  try {
    pcore::Store store = pcore::Store::open(dir.sub("none"), pcore::Options().no_create());
    FAIL() << "opened without a store";
  } catch (const pcore::Error& e) {
    EXPECT_EQ(e.status(), static_cast<int32_t>(PCORE_NOT_FOUND));
  }
}

TEST(StoreBasicsTest, RootsWriteInPlaceAndGrowth) {
  pcore::Store store = pcore::Store::in_memory(pcore::Options().growth_policy(pcore::GrowthPolicy::NewId));
  const pcore::Allocation a = store.allocate(60, 2);
  std::memset(a.writable, 0x42, 60);
  store.publish_in_place(a.id, 60);
  const pcore::WriteRegion region = store.write_ptr(a.id);
  ASSERT_NE(region.data, nullptr);
  EXPECT_EQ(region.capacity, a.capacity);
  static_cast<uint8_t*>(region.data)[0] = 0x43;
  store.publish_in_place(a.id, 60);
  EXPECT_EQ(*store.read(a.id).begin(), 0x43);

  // NEW_ID growth: publish returns the new id, the old one is gone.
  const std::vector<uint8_t> big = pcore_test::make_pattern(a.capacity + 1, 3);
  const uint64_t moved = store.publish(a.id, big.data(), big.size());
  EXPECT_NE(moved, a.id);
  EXPECT_FALSE(store.contains(a.id));
  EXPECT_EQ(store.read(moved).len, big.size());
  EXPECT_EQ(store.stats().reallocations, 1u);

  // Roots with metadata, short and long.
  EXPECT_FALSE(store.get_root("tree").has_value());
  std::vector<uint8_t> meta(1000);
  pcore_test::fill_pattern(meta.data(), meta.size(), 9);
  store.set_root("tree", moved, meta.data(), meta.size());
  store.set_root("", moved);
  store.commit();
  const std::optional<pcore::Root> root = store.get_root("tree");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->id, moved);
  EXPECT_EQ(root->meta, meta);
  const std::optional<pcore::Root> default_root = store.get_root();
  ASSERT_TRUE(default_root.has_value());
  EXPECT_EQ(default_root->id, moved);
  EXPECT_TRUE(default_root->meta.empty());

  // Free, retire, stats.
  store.free(moved);
  EXPECT_FALSE(store.contains(moved));
  const pcore::Stats stats = store.stats();
  ASSERT_GT(stats.class_count, 0u);
  EXPECT_EQ(store.class_stats(0).class_bytes, 64u);
  EXPECT_THROW((void)store.class_stats(stats.class_count), pcore::Error);
}

TEST(StoreBasicsTest, ReadCopyCopiesUpToTheBufferAndReportsTheLength) {
  pcore::Store store = pcore::Store::in_memory();
  const pcore::Allocation a = store.allocate(1000, 4);
  const std::vector<uint8_t> bytes = pcore_test::make_pattern(1000, 11);
  store.publish(a.id, bytes.data(), bytes.size());

  std::vector<uint8_t> buf(1200, 0xEE);
  size_t len = 0;
  PCORE_ASSERT_OK(pcore_node_read_copy(store.raw(), a.id, buf.data(), 10, &len));
  EXPECT_EQ(len, 1000u) << "the full length, whatever the buffer";
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.begin() + 10, buf.begin()));
  EXPECT_EQ(buf[10], 0xEE) << "nothing past cap is written";
  PCORE_ASSERT_OK(pcore_node_read_copy(store.raw(), a.id, nullptr, 0, &len));
  EXPECT_EQ(len, 1000u) << "a NULL buffer of 0 bytes asks for the length";
  PCORE_ASSERT_OK(pcore_node_read_copy(store.raw(), a.id, buf.data(), buf.size(), &len));
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), buf.begin()));
  EXPECT_EQ(buf[1000], 0xEE);

  // The wrapper sizes its buffer to the node, also past its first guess.
  EXPECT_EQ(store.read_copy(a.id), bytes);
  store.free(a.id);
  EXPECT_FALSE(store.try_read_copy(a.id).has_value());
  EXPECT_THROW((void)store.read_copy(a.id), pcore::Error);
}

TEST(StoreBasicsTest, AbiVersionIsChecked) {
  EXPECT_NO_THROW(pcore::check_abi_version());
  EXPECT_EQ(pcore::kAbiMajor, 2u);
}

}  // namespace
