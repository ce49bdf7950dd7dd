// XTreeDurabilityStressTest: XTree's heavy-load durability run, but every node is verified.
// N nodes (env PCORE_STRESS_NODES, default 1,000,000): 64-byte data records (kind 5) plus
// buckets (kind 2) that grow child by child throughout the run, a commit every 100,000
// records, close, reopen, then every node is compared byte for byte. Contents derive from
// the record index / bucket number, so only the ids are kept.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <pcore/xtree_store.hpp>

#include "test_support.hpp"
#include "xtree_test_util.hpp"

namespace {

using pcore_test::Bucket;
using pcore_test::ScratchDir;
using xtree::persist::NodeID;
using xtree::persist::NodeKind;

constexpr size_t kRecordBytes = 64;
constexpr uint64_t kCommitEveryRecords = 100000;
constexpr uint64_t kRecordSeed = 0x5EC0'0000'0000ull;
constexpr uint64_t kBucketSeed = 0xB0C4'0000ull;

size_t bucket_target(size_t j) { return 1 + (j * 37) % pcore_test::kMaxFanout; }

TEST(XTreeDurabilityStressTest, HeavyLoadDurableMode) {
  const uint64_t total_nodes = std::max<uint64_t>(2, pcore_test::env_u64("PCORE_STRESS_NODES", 1000000));
  const size_t bucket_count = static_cast<size_t>(std::max<uint64_t>(1, total_nodes / 1000));
  const size_t record_count = static_cast<size_t>(total_nodes - bucket_count);
  RecordProperty("nodes", std::to_string(total_nodes));

  uint64_t growth_events = 0;
  for (size_t j = 0; j < bucket_count; ++j) {
    growth_events += bucket_target(j);
  }

  ScratchDir dir("stress");
  const std::string path = dir.sub("store");
  std::vector<uint64_t> record_ids(record_count);
  std::vector<NodeID> bucket_ids(bucket_count);
  std::vector<Bucket> buckets;
  buckets.reserve(bucket_count);
  {
    pcore::xtree::Store store(path, pcore::xtree::Durability::BALANCED);
    for (size_t j = 0; j < bucket_count; ++j) {
      buckets.emplace_back(kBucketSeed + j);
      const auto alloc = store.allocate_node(buckets[j].size(), NodeKind::Leaf);
      bucket_ids[j] = alloc.id;
      store.publish_node(alloc.id, buckets[j].data(), buckets[j].size());
    }

    uint64_t events_done = 0;
    size_t cursor = 0;
    uint8_t record[kRecordBytes];
    for (size_t r = 0; r < record_count; ++r) {
      const auto alloc = store.allocate_node(kRecordBytes, NodeKind::DataRecord);
      ASSERT_GE(alloc.capacity, kRecordBytes);
      record_ids[r] = alloc.id.raw();
      if (r % 2 == 0) {
        pcore_test::fill_pattern(record, kRecordBytes, kRecordSeed + r);
        store.publish_node(alloc.id, record, kRecordBytes);
      } else {
        pcore_test::fill_pattern(alloc.writable, kRecordBytes, kRecordSeed + r);
        store.publish_node_in_place(alloc.id, kRecordBytes);
      }

      // Spread the buckets' growth evenly over the run, round-robin over unfinished buckets,
      // so buckets grow across commits and move while committed.
      const uint64_t due = (static_cast<uint64_t>(r) + 1) * growth_events / record_count;
      while (events_done < due) {
        while (buckets[cursor].children() >= bucket_target(cursor)) {
          cursor = (cursor + 1) % bucket_count;
        }
        buckets[cursor].add_child();
        store.publish_node(bucket_ids[cursor], buckets[cursor].data(), buckets[cursor].size());
        cursor = (cursor + 1) % bucket_count;
        ++events_done;
      }

      if ((r + 1) % kCommitEveryRecords == 0) {
        store.commit(0);
      }
    }
    store.commit(0);
    const PcoreStoreStats stats = store.stats();
    EXPECT_EQ(stats.live_nodes, total_nodes);
    EXPECT_EQ(stats.reserved_nodes, 0u);
    store.close();
    store.close();  // XTree may close twice
  }

  // Reopen and verify every node.
  pcore::xtree::Store store(path, pcore::xtree::Durability::BALANCED);
  const PcoreStoreStats stats = store.stats();
  EXPECT_EQ(stats.live_nodes, total_nodes);
  size_t bad_records = 0;
  for (size_t r = 0; r < record_count; ++r) {
    const auto bytes = store.read_node(NodeID::from_raw(record_ids[r]));
    if (bytes.size != kRecordBytes || !pcore_test::matches_pattern(bytes.data, bytes.size, kRecordSeed + r)) {
      if (++bad_records <= 10) {
        ADD_FAILURE() << "record " << r << " (id " << record_ids[r] << "): size " << bytes.size
                      << (bytes.data == nullptr ? ", missing" : ", bytes differ");
      }
    }
  }
  EXPECT_EQ(bad_records, 0u) << "of " << record_count << " records";

  size_t bad_buckets = 0;
  for (size_t j = 0; j < bucket_count; ++j) {
    ASSERT_EQ(buckets[j].children(), bucket_target(j));
    const auto bytes = store.read_node(bucket_ids[j]);
    if (Bucket::mismatch(bytes.data, bytes.size, buckets[j].seed(), buckets[j].children()) !=
            buckets[j].size() ||
        bytes.size != buckets[j].size()) {
      if (++bad_buckets <= 10) {
        ADD_FAILURE() << "bucket " << j << ": size " << bytes.size << ", expected " << buckets[j].size();
      }
    }
    NodeKind kind = NodeKind::Invalid;
    EXPECT_TRUE(store.get_node_kind(bucket_ids[j], kind));
    EXPECT_EQ(kind, NodeKind::Leaf);
  }
  EXPECT_EQ(bad_buckets, 0u) << "of " << bucket_count << " buckets";

  NodeKind kind = NodeKind::Invalid;
  EXPECT_TRUE(store.get_node_kind(NodeID::from_raw(record_ids[0]), kind));
  EXPECT_EQ(kind, NodeKind::DataRecord);
  EXPECT_NO_THROW(store.pcore_store().verify());
}

}  // namespace
