// SegmentReuseTest and BitmapAllocatorTest: the allocator under the node store, seen through
// the raw C API and its statistics. First allocations bump; a freed block is reused by the
// next allocation of its class, at the same address; double frees are refused; per-class
// statistics add up to the totals; reopening rebuilds the free blocks from the object table.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <pcore.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

constexpr uint8_t kDataRecord = 5;

// STRICT: a block freed by a commit is reusable once that commit is durable, which under
// STRICT is when commit returns (EVENTUAL/BALANCED hold freed blocks until the next sync).
pcore::Store open_store(const std::string& dir) {
  return pcore::Store::open(dir, pcore::Options().durability(pcore::Durability::Strict));
}

/// Index of the class whose blocks are class_bytes long; fails the test when there is none.
uint32_t class_index_of(const pcore::Store& store, uint64_t class_bytes) {
  const uint32_t count = store.stats().class_count;
  for (uint32_t i = 0; i < count; ++i) {
    if (store.class_stats(i).class_bytes == class_bytes) {
      return i;
    }
  }
  ADD_FAILURE() << "no size class of " << class_bytes << " bytes";
  return 0;
}

bool all_zero(const void* p, size_t len) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  return std::all_of(bytes, bytes + len, [](uint8_t b) { return b == 0; });
}

// Both an in-memory store and one with files.
class StoreKindTest : public ::testing::TestWithParam<bool> {
 protected:
  pcore::Store open() {
    if (GetParam()) {
      return pcore::Store::in_memory();
    }
    return open_store(dir_.sub("store"));
  }
  ScratchDir dir_{"segment"};
};

class SegmentReuseTest : public StoreKindTest {};
class BitmapAllocatorTest : public StoreKindTest {};

std::string kind_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "InMemory" : "OnDisk";
}

TEST_P(SegmentReuseTest, FirstAllocationsComeFromBump) {
  pcore::Store store = open();
  const PcoreClassStats before = store.total_stats();
  EXPECT_EQ(before.total_allocations, 0u);
  EXPECT_EQ(before.allocs_from_bitmap, 0u);

  constexpr uint64_t kCount = 100;
  for (uint64_t i = 0; i < kCount; ++i) {
    const pcore::Allocation a = store.allocate(200, kDataRecord);
    ASSERT_EQ(a.capacity, 256u);
  }
  const PcoreClassStats after = store.total_stats();
  EXPECT_EQ(after.allocs_from_bump, kCount);
  EXPECT_EQ(after.allocs_from_bitmap, 0u);
  EXPECT_EQ(after.total_allocations, kCount);
  EXPECT_EQ(after.total_frees, 0u);
  EXPECT_EQ(store.stats().reserved_nodes, kCount);
  const PcoreClassStats cls = store.class_stats(class_index_of(store, 256));
  EXPECT_EQ(cls.allocs_from_bump, kCount);
  EXPECT_EQ(cls.live_bytes, kCount * 256);
  EXPECT_EQ(cls.dead_bytes, 0u);
}

TEST_P(SegmentReuseTest, FreedReservedBlockIsReusedAtSameAddress) {
  pcore::Store store = open();
  const pcore::Allocation keep = store.allocate(100, kDataRecord);  // a neighbour that stays
  const pcore::Allocation a = store.allocate(100, kDataRecord);
  ASSERT_EQ(a.capacity, 128u);
  std::memset(a.writable, 0xAB, a.capacity);

  const PcoreClassStats before = store.total_stats();
  store.free(a.id);  // reserved: freed at once
  EXPECT_FALSE(store.contains(a.id));
  const PcoreClassStats freed = store.total_stats();
  EXPECT_EQ(freed.total_frees, before.total_frees + 1);
  EXPECT_EQ(freed.dead_bytes, before.dead_bytes + a.capacity);

  const pcore::Allocation b = store.allocate(100, kDataRecord);
  EXPECT_EQ(b.writable, a.writable) << "the freed block must be reused first";
  EXPECT_EQ(b.capacity, a.capacity);
  EXPECT_NE(b.id, a.id);
  EXPECT_TRUE(all_zero(b.writable, b.capacity)) << "a reused block must come back zero-filled";
  const PcoreClassStats after = store.total_stats();
  EXPECT_EQ(after.allocs_from_bitmap, freed.allocs_from_bitmap + 1);
  EXPECT_EQ(after.allocs_from_bump, freed.allocs_from_bump);
  EXPECT_EQ(after.dead_bytes, before.dead_bytes);
  EXPECT_TRUE(store.contains(b.id));
  EXPECT_TRUE(store.contains(keep.id));
  EXPECT_FALSE(store.contains(a.id)) << "the old id must stay stale after its block is reused";
}

TEST_P(SegmentReuseTest, FreedLiveBlockIsReusedOnlyAfterCommit) {
  pcore::Store store = open();
  const pcore::Allocation a = store.allocate(300, kDataRecord);
  const std::vector<uint8_t> bytes = pcore_test::make_pattern(300, 7);
  store.publish(a.id, bytes.data(), bytes.size());
  store.commit();

  store.free(a.id);  // live: freed at the next commit
  const pcore::Allocation before_commit = store.allocate(300, kDataRecord);
  EXPECT_NE(before_commit.writable, a.writable)
      << "a live node's block must not be handed out before the free is committed";
  store.commit();

  const uint64_t bitmap_before = store.total_stats().allocs_from_bitmap;
  const pcore::Allocation after_commit = store.allocate(300, kDataRecord);
  EXPECT_EQ(after_commit.writable, a.writable);
  EXPECT_EQ(store.total_stats().allocs_from_bitmap, bitmap_before + 1);
  EXPECT_TRUE(all_zero(after_commit.writable, after_commit.capacity));
}

// Committed frees leave holes; after a reopen (on disk: the free blocks are rebuilt from the
// object table) the holes are filled before any file grows, and no survivor is overwritten.
TEST_P(SegmentReuseTest, FreedBlocksAreReusedAfterReopen) {
  constexpr size_t kNodes = 400;
  std::vector<uint64_t> ids;
  pcore::Store store = open();
  for (size_t i = 0; i < kNodes; ++i) {
    const pcore::Allocation a = store.allocate(200, kDataRecord);
    const std::vector<uint8_t> bytes = pcore_test::make_pattern(200, i);
    store.publish(a.id, bytes.data(), bytes.size());
    ids.push_back(a.id);
  }
  store.commit();
  // Every fifth node freed: few enough holes that the close does not compact them away (it
  // does when the file holds more than a quarter above what the nodes need, a small file
  // too since files are cut inside a segment).
  for (size_t i = 0; i < kNodes; i += 5) {
    store.free(ids[i]);
  }
  store.commit();
  if (!GetParam()) {
    store.close();
    store = open();
  }
  const size_t holes = kNodes / 5;
  const PcoreStoreStats reopened = store.stats();
  EXPECT_EQ(reopened.live_nodes, kNodes - holes);
  const uint32_t cls = class_index_of(store, 256);
  EXPECT_EQ(store.class_stats(cls).dead_bytes, holes * 256) << "free blocks rebuilt from the table";
  EXPECT_EQ(store.class_stats(cls).live_bytes, (kNodes - holes) * 256);

  const PcoreClassStats before = store.class_stats(cls);
  std::vector<uint64_t> fresh;
  for (size_t i = 0; i < holes; ++i) {
    const pcore::Allocation a = store.allocate(200, kDataRecord);
    std::memset(a.writable, 0xEE, a.capacity);
    store.publish(a.id, a.writable, a.capacity);
    fresh.push_back(a.id);
  }
  const PcoreClassStats after = store.class_stats(cls);
  EXPECT_EQ(after.allocs_from_bitmap - before.allocs_from_bitmap, holes);
  EXPECT_EQ(after.allocs_from_bump, before.allocs_from_bump);
  EXPECT_EQ(after.total_segments, before.total_segments);
  EXPECT_EQ(after.dead_bytes, 0u);
  store.commit();

  for (size_t i = 0; i < kNodes; ++i) {
    if (i % 5 == 0) {
      EXPECT_FALSE(store.contains(ids[i]));
      continue;
    }
    const pcore::Bytes b = store.read(ids[i]);
    ASSERT_EQ(b.len, 200u);
    EXPECT_TRUE(pcore_test::matches_pattern(b.data, b.len, i)) << "survivor " << i << " overwritten";
  }
  for (uint64_t id : fresh) {
    EXPECT_EQ(store.read(id).len, 256u);
  }
  EXPECT_NO_THROW(store.verify());
}

TEST_P(BitmapAllocatorTest, DoubleFreeIsRefused) {
  pcore::Store store = open();
  // Reserved node: freed at once, the second free is a double free.
  const pcore::Allocation reserved = store.allocate(64, kDataRecord);
  store.free(reserved.id);
  const uint64_t frees = store.total_stats().total_frees;
  PCORE_EXPECT_STATUS(PCORE_DOUBLE_FREE, pcore_node_free(store.raw(), reserved.id, 0));
  EXPECT_EQ(store.total_stats().total_frees, frees);

  // Live node: the free is pending until the commit; a second free before it is refused.
  const pcore::Allocation live = store.allocate(64, kDataRecord);
  const uint8_t byte = 1;
  store.publish(live.id, &byte, 1);
  store.commit();
  store.free(live.id);
  PCORE_EXPECT_STATUS(PCORE_DOUBLE_FREE, pcore_node_free(store.raw(), live.id, 0));
  store.commit();
  PCORE_EXPECT_STATUS(PCORE_DOUBLE_FREE, pcore_node_free(store.raw(), live.id, 0));
  EXPECT_NO_THROW(store.verify());
}

TEST_P(BitmapAllocatorTest, EveryFreedBlockIsReusedBeforeBumping) {
  pcore::Store store = open();
  constexpr size_t kCount = 1000;
  std::vector<pcore::Allocation> allocs;
  for (size_t i = 0; i < kCount; ++i) {
    allocs.push_back(store.allocate(500, kDataRecord));
  }
  std::set<void*> freed;
  for (size_t i = 0; i < kCount; i += 2) {
    store.free(allocs[i].id);
    freed.insert(allocs[i].writable);
  }
  const PcoreClassStats before = store.total_stats();
  std::set<void*> reused;
  for (size_t i = 0; i < freed.size(); ++i) {
    const pcore::Allocation a = store.allocate(500, kDataRecord);
    EXPECT_EQ(freed.count(a.writable), 1u) << "allocation " << i << " did not reuse a freed block";
    EXPECT_TRUE(reused.insert(a.writable).second) << "block handed out twice";
  }
  const PcoreClassStats after = store.total_stats();
  EXPECT_EQ(after.allocs_from_bitmap - before.allocs_from_bitmap, freed.size());
  EXPECT_EQ(after.allocs_from_bump, before.allocs_from_bump);
  EXPECT_EQ(after.dead_bytes, 0u);

  (void)store.allocate(500, kDataRecord);
  EXPECT_EQ(store.total_stats().allocs_from_bump, before.allocs_from_bump + 1);
}

TEST_P(BitmapAllocatorTest, LiveBlocksNeverOverlap) {
  pcore::Store store = open();
  pcore_test::Rng rng(42);
  std::vector<pcore::Allocation> live;
  for (int round = 0; round < 2000; ++round) {
    if (!live.empty() && rng.chance(30)) {
      const size_t victim = rng.next() % live.size();
      store.free(live[victim].id);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
    } else {
      live.push_back(store.allocate(rng.between(1, 20000), kDataRecord));
    }
  }
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (const pcore::Allocation& a : live) {
    const auto begin = reinterpret_cast<uintptr_t>(a.writable);
    ranges.emplace_back(begin, begin + a.capacity);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    EXPECT_LE(ranges[i - 1].second, ranges[i].first) << "blocks " << i - 1 << " and " << i << " overlap";
  }
}

TEST_P(BitmapAllocatorTest, SegmentCountIsStableUnderChurn) {
  pcore::Store store = open();
  constexpr size_t kCount = 3000;
  uint64_t segments = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<uint64_t> ids;
    for (size_t i = 0; i < kCount; ++i) {
      ids.push_back(store.allocate(1000, kDataRecord).id);
    }
    const uint64_t now = store.total_stats().total_segments;
    if (round == 0) {
      segments = now;
      EXPECT_GE(segments, 1u);
    } else {
      EXPECT_EQ(now, segments) << "round " << round << " grew the files instead of reusing blocks";
    }
    for (uint64_t id : ids) {
      store.free(id);
    }
  }
}

TEST_P(BitmapAllocatorTest, PerClassStatsAddUpToTotal) {
  pcore::Store store = open();
  pcore_test::Rng rng(7);
  std::map<uint64_t, size_t> live;  // id -> published length
  for (int step = 0; step < 3000; ++step) {
    const uint64_t r = rng.next() % 100;
    if (r < 55 || live.empty()) {
      const size_t len = static_cast<size_t>(1) << rng.between(0, 17);
      const size_t n = rng.between(1, len);
      const pcore::Allocation a = store.allocate(n, kDataRecord);
      pcore_test::fill_pattern(a.writable, n, a.id);
      store.publish(a.id, a.writable, n);
      live[a.id] = n;
    } else if (r < 80) {
      auto it = live.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(rng.next() % live.size()));
      store.free(it->first);
      live.erase(it);
    } else if (r < 95) {
      auto it = live.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(rng.next() % live.size()));
      const size_t n = std::min<size_t>(it->second * 2 + 1, 200000);
      const std::vector<uint8_t> bytes = pcore_test::make_pattern(n, it->first + 1);
      store.publish(it->first, bytes.data(), n);  // grows past the capacity now and then
      it->second = n;
    } else {
      store.commit();
    }
  }
  store.commit();

  const PcoreStoreStats stats = store.stats();
  ASSERT_EQ(stats.class_count, 13u) << "default classes: 64 B to 256 KiB, doubling";
  PcoreClassStats sum = pcore_test::sized<PcoreClassStats>();
  uint64_t expected_class_bytes = 64;
  for (uint32_t i = 0; i < stats.class_count; ++i) {
    const PcoreClassStats c = store.class_stats(i);
    EXPECT_EQ(c.class_bytes, expected_class_bytes) << "class " << i;
    expected_class_bytes *= 2;
    sum.live_bytes += c.live_bytes;
    sum.dead_bytes += c.dead_bytes;
    sum.total_segments += c.total_segments;
    sum.active_segments += c.active_segments;
    sum.allocs_from_bump += c.allocs_from_bump;
    sum.allocs_from_bitmap += c.allocs_from_bitmap;
    sum.frees_to_bitmap += c.frees_to_bitmap;
    sum.total_allocations += c.total_allocations;
    sum.total_frees += c.total_frees;
    EXPECT_EQ(c.live_bytes % c.class_bytes, 0u) << "class " << i;
    EXPECT_EQ(c.dead_bytes % c.class_bytes, 0u) << "class " << i;
    EXPECT_EQ(c.allocs_from_bump + c.allocs_from_bitmap, c.total_allocations) << "class " << i;
    const double fragmentation = c.live_bytes + c.dead_bytes == 0
                                     ? 0.0
                                     : static_cast<double>(c.dead_bytes) /
                                           static_cast<double>(c.live_bytes + c.dead_bytes);
    const double reuse = c.total_frees == 0 ? 0.0
                                            : static_cast<double>(c.allocs_from_bitmap) /
                                                  static_cast<double>(c.total_frees);
    EXPECT_NEAR(c.fragmentation, fragmentation, 1e-9) << "class " << i;
    EXPECT_NEAR(c.reuse_rate, reuse, 1e-9) << "class " << i;
  }
  const PcoreClassStats total = store.total_stats();  // PCORE_CLASS_TOTAL
  EXPECT_EQ(total.class_bytes, 0u) << "the total is no class";
  EXPECT_EQ(sum.live_bytes, total.live_bytes);
  EXPECT_EQ(sum.dead_bytes, total.dead_bytes);
  EXPECT_EQ(sum.total_segments, total.total_segments);
  EXPECT_EQ(sum.active_segments, total.active_segments);
  EXPECT_EQ(sum.allocs_from_bump, total.allocs_from_bump);
  EXPECT_EQ(sum.allocs_from_bitmap, total.allocs_from_bitmap);
  EXPECT_EQ(sum.frees_to_bitmap, total.frees_to_bitmap);
  EXPECT_EQ(sum.total_allocations, total.total_allocations);
  EXPECT_EQ(sum.total_frees, total.total_frees);
  EXPECT_NEAR(total.fragmentation,
              total.live_bytes + total.dead_bytes == 0
                  ? 0.0
                  : static_cast<double>(total.dead_bytes) /
                        static_cast<double>(total.live_bytes + total.dead_bytes),
              1e-9);

  // After a commit with nothing staged, the live bytes are exactly the live nodes' blocks.
  EXPECT_EQ(stats.live_nodes, live.size());
  EXPECT_EQ(stats.reserved_nodes, 0u);
  uint64_t capacity_sum = 0;
  for (const auto& [id, len] : live) {
    const pcore::NodeInfo info = store.info(id);
    EXPECT_EQ(info.len, len);
    capacity_sum += info.capacity;
    const pcore::Bytes b = store.read(id);
    EXPECT_EQ(b.len, len);
  }
  // Blocks freed by a commit that is not yet durable still count as live until the sync, and
  // versions held until the next checkpoint until then.
  EXPECT_EQ(total.live_bytes, capacity_sum + stats.pending_free_bytes + stats.held_base_bytes);
  EXPECT_EQ(stats.pending_free_bytes, 0u) << "STRICT and in-memory commits are durable at once";
  // No class is out of range.
  PcoreClassStats out = pcore_test::sized<PcoreClassStats>();
  EXPECT_NE(pcore_store_class_stats(store.raw(), stats.class_count, &out), pcore_test::kOk);
  EXPECT_NO_THROW(store.verify());
}

INSTANTIATE_TEST_SUITE_P(, SegmentReuseTest, ::testing::Values(true, false), kind_name);
INSTANTIATE_TEST_SUITE_P(, BitmapAllocatorTest, ::testing::Values(true, false), kind_name);

}  // namespace
