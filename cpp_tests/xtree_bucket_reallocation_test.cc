// BucketReallocationTest: XTree-shaped 2-D buckets grow child by child (published after every
// child), as in the seed's bucket reallocation strategy. Checks the number of reallocations,
// every byte after every step and after reopen, id stability (or, under the NEW_ID growth
// policy, that the old id is gone), and segment reuse under steady churn. The growth and churn
// tests run under both growth rules: Fit (the default: the smallest class that holds the new
// length) and Double (the seed's: the smallest class of at least twice the length).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <pcore/xtree_store.hpp>

#include "test_support.hpp"
#include "xtree_test_util.hpp"

namespace {

using pcore_test::Bucket;
using pcore_test::bucket_wire_bytes;
using pcore_test::kMaxFanout;
using pcore_test::ScratchDir;
using xtree::persist::NodeID;
using xtree::persist::NodeKind;
using Durability = pcore::xtree::Durability;
using pcore::GrowthRule;

constexpr GrowthRule kGrowthRules[] = {GrowthRule::Fit, GrowthRule::Double};

const char* rule_name(GrowthRule rule) { return rule == GrowthRule::Fit ? "Fit" : "Double"; }

pcore::Options rule_options(GrowthRule rule, Durability durability = Durability::BALANCED) {
  pcore::Options options;
  options.growth_rule(rule);
  options.durability(static_cast<pcore::Durability>(durability));
  return options;
}

/// The seed's bound: a bucket reallocates at most ceil(log2(final / initial)) + 1 times.
uint64_t reallocation_bound(size_t final_bytes, size_t initial_capacity) {
  if (final_bytes <= initial_capacity) {
    return 1;
  }
  const double ratio = static_cast<double>(final_bytes) / static_cast<double>(initial_capacity);
  return static_cast<uint64_t>(std::ceil(std::log2(ratio))) + 1;
}

::testing::AssertionResult bucket_equals(const xtree::persist::NodeBytes& got, const Bucket& want) {
  if (got.data == nullptr) {
    return ::testing::AssertionFailure() << "read_node gave {nullptr, 0}";
  }
  if (got.size != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size << ", expected " << want.size();
  }
  const size_t at = Bucket::mismatch(got.data, got.size, want.seed(), want.children());
  if (at != got.size) {
    return ::testing::AssertionFailure() << "first differing byte at offset " << at << " of "
                                         << got.size << " (" << want.children() << " children)";
  }
  return ::testing::AssertionSuccess();
}

struct GrowthOutcome {
  uint64_t reallocations = 0;
  size_t initial_capacity = 0;
};

// Grows one bucket from empty to 150 children through the adapter, the bucket pre-sized for
// presize_children. Publishes after every child (in place when it fits and in_place is set),
// commits every 25 children, checks every byte after every step, then reopens and checks again.
void grow_bucket_to_supernode(size_t presize_children, bool in_place, GrowthRule rule, GrowthOutcome* outcome) {
  ScratchDir dir("bucket-grow");
  const std::string path = dir.sub("store");
  const uint64_t seed = 0xB0C4E7 + presize_children;
  Bucket bucket(seed);
  NodeID id;
  {
    pcore::xtree::Store store(path, rule_options(rule));
    const auto alloc = store.allocate_node(bucket_wire_bytes(presize_children), NodeKind::Leaf);
    ASSERT_TRUE(alloc.id.valid());
    ASSERT_NE(alloc.id.raw(), 0u);
    ASSERT_NE(alloc.writable, nullptr);
    ASSERT_GE(alloc.capacity, bucket_wire_bytes(presize_children));
    id = alloc.id;
    outcome->initial_capacity = alloc.capacity;

    std::memcpy(alloc.writable, bucket.data(), bucket.size());
    store.publish_node(id, alloc.writable, bucket.size());
    ASSERT_TRUE(bucket_equals(store.read_node(id), bucket));
    const uint64_t reallocations_before = store.stats().reallocations;

    for (size_t n = 1; n <= kMaxFanout; ++n) {
      bucket.add_child();
      const size_t capacity = store.get_capacity(id);
      ASSERT_NE(capacity, 0u) << "child " << n;
      if (in_place && bucket.size() <= capacity) {
        // XTree's in-place path: write only what changed (header and the new child) through
        // the mapped address; the rest must already be the node's current bytes.
        auto* ptr = static_cast<uint8_t*>(store.get_mapped_address(id));
        ASSERT_NE(ptr, nullptr) << "child " << n;
        std::memcpy(ptr, bucket.data(), pcore_test::kBucketHeaderBytes);
        const size_t child_at = bucket.size() - pcore_test::kBucketChildBytes;
        std::memcpy(ptr + child_at, bucket.data() + child_at, pcore_test::kBucketChildBytes);
        store.publish_node_in_place(id, bucket.size());
      } else {
        store.publish_node(id, bucket.data(), bucket.size());
      }
      ASSERT_TRUE(bucket_equals(store.read_node(id), bucket)) << "after child " << n;
      ASSERT_GE(store.get_capacity(id), bucket.size());
      ASSERT_TRUE(store.is_node_present(id));
      if (n % 25 == 0) {
        store.commit(0);
        ASSERT_TRUE(bucket_equals(store.read_node(id), bucket)) << "after commit at child " << n;
        NodeKind kind = NodeKind::Invalid;
        ASSERT_TRUE(store.get_node_kind(id, kind));
        EXPECT_EQ(kind, NodeKind::Leaf);
      }
    }
    outcome->reallocations = store.stats().reallocations - reallocations_before;
    store.commit(0);
    store.close();
  }
  pcore::xtree::Store reopened(path, rule_options(rule));
  ASSERT_TRUE(bucket_equals(reopened.read_node(id), bucket)) << "after reopen";
  NodeKind kind = NodeKind::Invalid;
  ASSERT_TRUE(reopened.get_node_kind(id, kind));
  EXPECT_EQ(kind, NodeKind::Leaf);
}

void expect_logarithmic(const GrowthOutcome& outcome) {
  const size_t final_bytes = bucket_wire_bytes(kMaxFanout);
  // The seed's bound as issue 21 states it: floor(log2 n) + 1 moves while a bucket fills from
  // 0 to n children.
  EXPECT_LE(outcome.reallocations, static_cast<uint64_t>(std::floor(std::log2(kMaxFanout))) + 1);
  const uint64_t bound = reallocation_bound(final_bytes, outcome.initial_capacity);
  EXPECT_LE(outcome.reallocations, bound)
      << "initial capacity " << outcome.initial_capacity << ", final " << final_bytes << " bytes";
  if (outcome.initial_capacity < final_bytes) {
    EXPECT_GE(outcome.reallocations, 1u) << "growth past the capacity must count a reallocation";
  }
}

TEST(BucketReallocationTest, EmptyBucketGrowsToSupernodeWithStableId) {
  for (GrowthRule rule : kGrowthRules) {
    SCOPED_TRACE(rule_name(rule));
    GrowthOutcome outcome;
    grow_bucket_to_supernode(0, /*in_place=*/false, rule, &outcome);
    if (HasFatalFailure()) return;
    expect_logarithmic(outcome);
  }
}

TEST(BucketReallocationTest, LeafPresizedForFiftyChildrenGrowsToSupernode) {
  for (GrowthRule rule : kGrowthRules) {
    SCOPED_TRACE(rule_name(rule));
    GrowthOutcome outcome;
    grow_bucket_to_supernode(pcore_test::kXTreeM, /*in_place=*/false, rule, &outcome);
    if (HasFatalFailure()) return;
    expect_logarithmic(outcome);
  }
}

TEST(BucketReallocationTest, InternalPresizedForSeventyFiveChildrenGrowsToSupernode) {
  for (GrowthRule rule : kGrowthRules) {
    SCOPED_TRACE(rule_name(rule));
    GrowthOutcome outcome;
    grow_bucket_to_supernode(pcore_test::kXTreeM * 3 / 2, /*in_place=*/false, rule, &outcome);
    if (HasFatalFailure()) return;
    expect_logarithmic(outcome);
  }
}

TEST(BucketReallocationTest, InPlaceGrowthWritesOnlyTheDelta) {
  for (GrowthRule rule : kGrowthRules) {
    SCOPED_TRACE(rule_name(rule));
    GrowthOutcome outcome;
    grow_bucket_to_supernode(0, /*in_place=*/true, rule, &outcome);
    if (HasFatalFailure()) return;
    expect_logarithmic(outcome);
  }
}

// Raw C API, NEW_ID growth policy (the seed's literal behaviour): when a publish moves the
// node, a new id is returned and the old one is gone at once.
TEST(BucketReallocationTest, NewIdPolicyReturnsNewIdAndFreesOld) {
  ScratchDir dir("bucket-newid");
  const std::string path = dir.sub("store");
  PcoreStoreOptions options;
  PCORE_ASSERT_OK(pcore_store_options_init(&options));
  options.growth_policy = PCORE_GROWTH_NEW_ID;
  options.durability = PCORE_DURABILITY_BALANCED;

  Bucket bucket(0x5EED1D);
  std::vector<uint64_t> old_ids;
  uint64_t id = 0;
  size_t initial_capacity = 0;
  uint64_t moves = 0;
  {
    PcoreStore* store = nullptr;
    PCORE_ASSERT_OK(pcore_store_open(path.c_str(), &options, &store));
    PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
    PCORE_ASSERT_OK(pcore_node_allocate(store, bucket.size(), 2, &alloc));
    id = alloc.id;
    initial_capacity = alloc.capacity;
    uint64_t out_id = 0;
    PCORE_ASSERT_OK(pcore_node_publish(store, id, bucket.data(), bucket.size(), &out_id));
    ASSERT_EQ(out_id, id);
    const uint64_t reallocations_before = pcore_test::store_stats(store).reallocations;

    for (size_t n = 1; n <= kMaxFanout; ++n) {
      bucket.add_child();
      out_id = 0;
      PCORE_ASSERT_OK(pcore_node_publish(store, id, bucket.data(), bucket.size(), &out_id));
      ASSERT_NE(out_id, 0u);
      if (out_id != id) {
        ++moves;
        old_ids.push_back(id);
        PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
        PCORE_EXPECT_STATUS(PCORE_NOT_FOUND, pcore_node_info(store, id, &info));
        PcoreNodeBytes old_bytes{};
        PCORE_EXPECT_STATUS(PCORE_NOT_FOUND, pcore_node_read(store, id, &old_bytes));
        EXPECT_EQ(old_bytes.data, nullptr);
        id = out_id;
      }
      PcoreNodeBytes bytes{};
      PCORE_ASSERT_OK(pcore_node_read(store, id, &bytes));
      ASSERT_EQ(bytes.len, bucket.size()) << "child " << n;
      ASSERT_EQ(Bucket::mismatch(bytes.data, bytes.len, bucket.seed(), n), bytes.len) << "child " << n;
      if (n % 20 == 0) {
        PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
      }
    }
    const uint64_t reallocations = pcore_test::store_stats(store).reallocations - reallocations_before;
    EXPECT_EQ(reallocations, moves);
    EXPECT_GE(moves, 1u);
    EXPECT_LE(moves, reallocation_bound(bucket.size(), initial_capacity));
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
    PCORE_ASSERT_OK(pcore_store_close(store));
  }
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(path.c_str(), &options, &store));
  PcoreNodeBytes bytes{};
  PCORE_ASSERT_OK(pcore_node_read(store, id, &bytes));
  EXPECT_EQ(Bucket::mismatch(bytes.data, bytes.len, bucket.seed(), kMaxFanout), bucket.size());
  for (uint64_t old : old_ids) {
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    PCORE_EXPECT_STATUS(PCORE_NOT_FOUND, pcore_node_info(store, old, &info));
  }
  PCORE_EXPECT_OK(pcore_store_verify(store));
  PCORE_ASSERT_OK(pcore_store_close(store));
}

// Adapter under NEW_ID: XTree's own protocol. publish_node throws std::runtime_error on
// len > capacity without touching the store; the tree then reallocates itself (seed:
// allocate 2x, write, publish, free the old id with DS_FREE_IMMEDIATE).
TEST(BucketReallocationTest, AdapterNewIdModeKeepsXTreeProtocol) {
  ScratchDir dir("bucket-adapter-newid");
  const std::string path = dir.sub("store");
  pcore::Options options;
  options.growth_policy(pcore::GrowthPolicy::NewId).durability(pcore::Durability::Balanced);

  Bucket bucket(0xC0FFEE);
  NodeID id;
  std::vector<NodeID> old_ids;
  {
    pcore::xtree::Store store(path, options);
    ASSERT_TRUE(store.new_id_growth());
    auto alloc = store.allocate_node(bucket.size(), NodeKind::Leaf);
    id = alloc.id;
    const size_t initial_capacity = alloc.capacity;
    store.publish_node(id, bucket.data(), bucket.size());
    const uint64_t reallocations_before = store.stats().reallocations;
    uint64_t tree_reallocations = 0;

    for (size_t n = 1; n <= kMaxFanout; ++n) {
      bucket.add_child();
      const size_t capacity = store.get_capacity(id);
      ASSERT_NE(capacity, 0u);
      if (bucket.size() > capacity) {
        EXPECT_THROW(store.publish_node(id, bucket.data(), bucket.size()), std::runtime_error);
        // Untouched: still the previous image, same capacity, no reallocation counted.
        const Bucket previous(bucket.seed(), n - 1);
        ASSERT_TRUE(bucket_equals(store.read_node(id), previous)) << "child " << n;
        EXPECT_EQ(store.get_capacity(id), capacity);
        EXPECT_EQ(store.stats().reallocations, reallocations_before);
        // The tree's reallocation.
        auto grown = store.allocate_node(bucket.size() * 2, NodeKind::Leaf);
        ASSERT_GE(grown.capacity, bucket.size() * 2);
        std::memcpy(grown.writable, bucket.data(), bucket.size());
        store.publish_node(grown.id, grown.writable, bucket.size());
        DS_FREE_IMMEDIATE(&store, id, Reallocation);
        EXPECT_FALSE(store.is_node_present(id));
        EXPECT_EQ(store.read_node(id).data, nullptr);
        old_ids.push_back(id);
        id = grown.id;
        ++tree_reallocations;
      } else {
        store.publish_node(id, bucket.data(), bucket.size());
      }
      ASSERT_TRUE(bucket_equals(store.read_node(id), bucket)) << "child " << n;
      if (n % 30 == 0) {
        store.commit(0);
      }
    }
    EXPECT_GE(tree_reallocations, 1u);
    EXPECT_LE(tree_reallocations, reallocation_bound(bucket.size(), initial_capacity));
    store.commit(0);
    store.close();
  }
  pcore::xtree::Store reopened(path, options);
  ASSERT_TRUE(bucket_equals(reopened.read_node(id), bucket));
  for (NodeID old : old_ids) {
    EXPECT_FALSE(reopened.is_node_present(old));
  }
}

// Steady churn: a population of buckets at staggered phases grows round-robin, one child per
// step, each published after every child; a bucket that reaches 150 children is freed and
// replaced by an empty one. Commits every few steps. Freed blocks must be reused (reuse rate
// >= 0.90), little space may sit dead (fragmentation < 0.10), and few publishes may move their
// node (thrash rate = reallocations / publishes < 0.20).
struct ChurnParams {
  size_t buckets;
  size_t cycles;
  size_t commit_every_steps;
};

void run_steady_churn(pcore::xtree::Store& store, const ChurnParams& params) {
  // Phases spread over [0, 150) and interleaved (37 is coprime with 150), so the buckets
  // touched between two commits are spread over all size classes.
  std::vector<Bucket> buckets;
  std::vector<NodeID> ids;
  uint64_t next_seed = 1;
  uint64_t steps_since_commit = 0;
  auto maybe_commit = [&] {
    if (++steps_since_commit >= params.commit_every_steps) {
      store.commit(0);
      steps_since_commit = 0;
    }
  };

  // Initial population, each bucket grown from empty one child at a time (as a tree does).
  for (size_t b = 0; b < params.buckets; ++b) {
    const size_t phase = (b * 37) % kMaxFanout;
    buckets.emplace_back(next_seed++);
    const auto alloc = store.allocate_node(buckets.back().size(), NodeKind::Leaf);
    ids.push_back(alloc.id);
    store.publish_node(alloc.id, buckets.back().data(), buckets.back().size());
    for (size_t n = 0; n < phase; ++n) {
      buckets.back().add_child();
      store.publish_node(ids.back(), buckets.back().data(), buckets.back().size());
      maybe_commit();
    }
  }
  store.commit(0);

  const size_t steps = params.cycles * kMaxFanout * params.buckets;
  const uint64_t reallocations_before = store.stats().reallocations;
  for (size_t step = 0; step < steps; ++step) {
    const size_t b = step % params.buckets;
    if (buckets[b].children() == kMaxFanout) {
      store.free_node_immediate(ids[b], xtree::persist::RetireReason::MergeDelete);
      buckets[b] = Bucket(next_seed++);
      const auto alloc = store.allocate_node(buckets[b].size(), NodeKind::Leaf);
      ids[b] = alloc.id;
    } else {
      buckets[b].add_child();
    }
    store.publish_node(ids[b], buckets[b].data(), buckets[b].size());
    maybe_commit();
  }
  store.commit(0);
  const double thrash_rate =
      static_cast<double>(store.stats().reallocations - reallocations_before) / static_cast<double>(steps);
  ::testing::Test::RecordProperty("thrash_rate", std::to_string(thrash_rate));
  EXPECT_LT(thrash_rate, 0.20) << "reallocations per publish";
  EXPECT_GT(thrash_rate, 0.0) << "buckets growing to 150 children must move";

  for (size_t b = 0; b < buckets.size(); ++b) {
    ASSERT_TRUE(bucket_equals(store.read_node(ids[b]), buckets[b])) << "bucket " << b;
  }

  const PcoreClassStats total = store.pcore_store().total_stats();
  ASSERT_GT(total.total_frees, 0u);
  const double reuse_rate =
      static_cast<double>(total.allocs_from_bitmap) / static_cast<double>(total.total_frees);
  const double fragmentation =
      static_cast<double>(total.dead_bytes) / static_cast<double>(total.live_bytes + total.dead_bytes);
  ::testing::Test::RecordProperty("reuse_rate", std::to_string(reuse_rate));
  ::testing::Test::RecordProperty("fragmentation", std::to_string(fragmentation));
  EXPECT_GE(reuse_rate, 0.90) << "allocs_from_bitmap " << total.allocs_from_bitmap << ", total_frees "
                              << total.total_frees;
  EXPECT_LT(fragmentation, 0.10) << "dead_bytes " << total.dead_bytes << ", live_bytes "
                                 << total.live_bytes;
  // The reported ratios are the same quantities.
  EXPECT_NEAR(total.reuse_rate, reuse_rate, 1e-9);
  EXPECT_NEAR(total.fragmentation, fragmentation, 1e-9);
}

TEST(BucketReallocationTest, SteadyChurnInMemoryReusesFreedBlocks) {
  for (GrowthRule rule : kGrowthRules) {
    SCOPED_TRACE(rule_name(rule));
    pcore::xtree::Store store(pcore::xtree::in_memory, rule_options(rule));
    run_steady_churn(store, ChurnParams{300, 2, 5});
    if (HasFatalFailure()) return;
  }
}

// On disk, STRICT: a block freed by a commit is reusable as soon as that commit returns.
// Copy-on-write keeps the old block of every node touched since the last commit, so the
// population is large next to the few buckets touched per commit.
TEST(BucketReallocationTest, SteadyChurnStrictReusesFreedBlocks) {
  for (GrowthRule rule : kGrowthRules) {
    SCOPED_TRACE(rule_name(rule));
    ScratchDir dir("bucket-churn-strict");
    const std::string path = dir.sub("store");
    {
      pcore::xtree::Store store(path, rule_options(rule, Durability::STRICT));
      run_steady_churn(store, ChurnParams{300, 1, 5});
      if (HasFatalFailure()) return;
      store.close();
    }
    pcore::xtree::Store reopened(path, rule_options(rule, Durability::STRICT));
    EXPECT_NO_THROW(reopened.pcore_store().verify());
    const PcoreClassStats total = reopened.pcore_store().total_stats();
    EXPECT_LT(static_cast<double>(total.dead_bytes) / static_cast<double>(total.live_bytes + total.dead_bytes), 0.10)
        << "after reopen: dead_bytes " << total.dead_bytes << ", live_bytes " << total.live_bytes;
  }
}

}  // namespace
