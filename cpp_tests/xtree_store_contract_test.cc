// StoreContractTest: the contract XTree relies on (design/HOSTS.md), through the adapter
// pcore::xtree::Store and XTree's StoreInterface.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <pcore/xtree_store.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;
using xtree::persist::NodeBytes;
using xtree::persist::NodeID;
using xtree::persist::NodeKind;
using xtree::persist::RetireReason;
using xtree::persist::StoreInterface;
using Durability = pcore::xtree::Durability;

bool is_null(const NodeBytes& bytes) { return bytes.data == nullptr && bytes.size == 0; }

std::vector<uint8_t> bytes_of(const NodeBytes& bytes) {
  const auto* p = static_cast<const uint8_t*>(bytes.data);
  return p == nullptr ? std::vector<uint8_t>() : std::vector<uint8_t>(p, p + bytes.size);
}

NodeID make_node(StoreInterface& store, size_t len, uint64_t seed, NodeKind kind = NodeKind::DataRecord) {
  const auto alloc = store.allocate_node(len, kind);
  pcore_test::fill_pattern(alloc.writable, len, seed);
  store.publish_node(alloc.id, alloc.writable, len);
  return alloc.id;
}

bool holds(const StoreInterface& store, NodeID id, size_t len, uint64_t seed) {
  const NodeBytes bytes = store.read_node(id);
  return bytes.size == len && pcore_test::matches_pattern(bytes.data, len, seed);
}

TEST(StoreContractTest, ReadsOfUnknownFreedAndStaleIdsGiveNull) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  // Unknown ids, including raw 0 ("none") and the invalid id.
  EXPECT_TRUE(is_null(store.read_node(NodeID::from_parts(123456, 7))));
  EXPECT_TRUE(is_null(store.read_node(NodeID::from_raw(0))));
  EXPECT_TRUE(is_null(store.read_node(NodeID::invalid())));

  // Freed: reserved (freed at once) and committed (the free is pending until the commit).
  const NodeID reserved = make_node(store, 100, 1);
  store.free_node_immediate(reserved, RetireReason::Evict);
  EXPECT_TRUE(is_null(store.read_node(reserved)));
  const NodeID live = make_node(store, 100, 2);
  store.commit(0);
  ASSERT_TRUE(holds(store, live, 100, 2));
  store.free_node(live);
  EXPECT_TRUE(is_null(store.read_node(live)));
  store.commit(0);
  EXPECT_TRUE(is_null(store.read_node(live)));

  // Stale: the handle is reused by a new node, the old id's tag no longer matches.
  const NodeID fresh = make_node(store, 100, 3);
  const NodeID stale = NodeID::from_parts(fresh.handle_index(), static_cast<uint16_t>(fresh.tag() + 1));
  EXPECT_TRUE(is_null(store.read_node(stale)));
  EXPECT_FALSE(store.is_node_present(stale));
  EXPECT_TRUE(is_null(store.read_node(reserved)));
  EXPECT_TRUE(holds(store, fresh, 100, 3));
}

TEST(StoreContractTest, FreedIdIsNotPresent) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  const NodeID reserved = make_node(store, 64, 1);
  const NodeID live = make_node(store, 64, 2);
  store.commit(0);
  const NodeID staged = make_node(store, 64, 3);
  ASSERT_TRUE(store.is_node_present(live));
  ASSERT_TRUE(store.is_node_present(staged));
  store.free_node_immediate(live);
  store.free_node_immediate(staged);
  EXPECT_FALSE(store.is_node_present(live));
  EXPECT_FALSE(store.is_node_present(staged));
  bool is_staged = true;
  EXPECT_FALSE(store.is_node_present(live, &is_staged));
  store.commit(0);
  EXPECT_FALSE(store.is_node_present(live));
  EXPECT_FALSE(store.is_node_present(staged));
  EXPECT_TRUE(store.is_node_present(reserved));
  EXPECT_EQ(store.get_capacity(live), 0u);
  EXPECT_EQ(store.get_mapped_address(live), nullptr);
}

TEST(StoreContractTest, NodeKindOnlyForCommittedIds) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  const NodeID id = make_node(store, 48, 9, NodeKind::ValueVec);
  NodeKind kind = NodeKind::Invalid;
  EXPECT_FALSE(store.get_node_kind(id, kind)) << "not committed yet";
  bool staged = false;
  EXPECT_TRUE(store.is_node_present(id, &staged));
  EXPECT_TRUE(staged);

  store.commit(0);
  EXPECT_TRUE(store.get_node_kind(id, kind));
  EXPECT_EQ(kind, NodeKind::ValueVec);
  EXPECT_TRUE(store.is_node_present(id, &staged));
  EXPECT_FALSE(staged);

  // A committed node changed again still has its committed version.
  const std::vector<uint8_t> update = pcore_test::make_pattern(48, 10);
  store.publish_node(id, update.data(), update.size());
  EXPECT_TRUE(store.get_node_kind(id, kind));
  EXPECT_TRUE(store.is_node_present(id, &staged));
  EXPECT_FALSE(staged);
  EXPECT_TRUE(holds(store, id, 48, 10)) << "the writer reads its own uncommitted bytes";

  EXPECT_FALSE(store.get_node_kind(NodeID::from_parts(99999, 1), kind));
  EXPECT_FALSE(store.get_node_kind(NodeID::from_raw(0), kind));
}

TEST(StoreContractTest, RootsByName) {
  ScratchDir dir("contract-roots");
  const std::string path = dir.sub("store");
  const float mbr[4] = {1.5f, -2.25f, 100.0f, 3.0e7f};
  NodeID spatial;
  NodeID main_root;
  {
    pcore::xtree::Store store(path, Durability::STRICT);
    EXPECT_EQ(store.get_root().raw(), 0u) << "no default root yet";
    EXPECT_EQ(store.get_root("no-such-root").raw(), 0u);
    spatial = make_node(store, 32, 1, NodeKind::Internal);
    main_root = make_node(store, 32, 2, NodeKind::Leaf);
    store.set_root(spatial, 0, mbr, 4, "spatial");
    store.set_root(main_root, 0, mbr, 2);  // the store's own (default) root
    store.commit(0);
    EXPECT_EQ(store.get_root("spatial"), spatial);
    EXPECT_EQ(store.get_root(), main_root);
    EXPECT_EQ(store.get_root("no-such-root").raw(), 0u);
    store.close();
  }
  pcore::xtree::Store store(path, Durability::STRICT);
  EXPECT_EQ(store.get_root("spatial"), spatial);
  EXPECT_EQ(store.get_root(), main_root);
  EXPECT_EQ(store.get_root("spatia").raw(), 0u);
  EXPECT_EQ(store.get_root_mbr("spatial"), std::vector<float>(mbr, mbr + 4));
  EXPECT_EQ(store.get_root_mbr(), std::vector<float>(mbr, mbr + 2));
  EXPECT_TRUE(store.get_root_mbr("no-such-root").empty());
  // A root can be moved and cleared of its MBR.
  store.set_root(main_root, 0, nullptr, 0, "spatial");
  store.commit(0);
  EXPECT_EQ(store.get_root("spatial"), main_root);
  EXPECT_TRUE(store.get_root_mbr("spatial").empty());
}

TEST(StoreContractTest, ReadOnlyStoreThrowsLogicErrorOnWrites) {
  ScratchDir dir("contract-ro");
  const std::string path = dir.sub("store");
  NodeID id;
  {
    pcore::xtree::Store store(path, Durability::STRICT);
    id = make_node(store, 100, 5);
    store.commit(0);
    store.close();
  }
  pcore::xtree::Store store(path, Durability::STRICT, /*read_only=*/true);
  ASSERT_TRUE(store.read_only());
  EXPECT_TRUE(holds(store, id, 100, 5));
  const uint8_t data[8] = {};
  const float mbr[4] = {};
  EXPECT_THROW(store.allocate_node(64, NodeKind::Leaf), std::logic_error);
  EXPECT_THROW(store.publish_node(id, data, sizeof(data)), std::logic_error);
  EXPECT_THROW(store.publish_node_in_place(id, 8), std::logic_error);
  EXPECT_THROW(store.free_node(id), std::logic_error);
  EXPECT_THROW(store.free_node_immediate(id), std::logic_error);
  EXPECT_THROW(store.retire_node(id, 1), std::logic_error);
  EXPECT_THROW(store.set_root(id, 0, mbr, 4, "r"), std::logic_error);
  EXPECT_EQ(store.get_mapped_address(id), nullptr);
  EXPECT_NO_THROW(store.commit(0)) << "nothing to commit on a read-only store";
  EXPECT_TRUE(holds(store, id, 100, 5));
  NodeKind kind = NodeKind::Invalid;
  EXPECT_TRUE(store.get_node_kind(id, kind));

  // The same through pcore::Options.
  pcore::xtree::Store via_options(path, pcore::Options().read_only());
  EXPECT_THROW(via_options.allocate_node(64, NodeKind::Leaf), std::logic_error);
}

TEST(StoreContractTest, PublishAfterReopenPersists) {
  ScratchDir dir("contract-reopen");
  const std::string path = dir.sub("store");
  NodeID small;
  NodeID grows;
  {
    pcore::xtree::Store store(path, Durability::STRICT);
    small = make_node(store, 40, 1);
    grows = make_node(store, 40, 2);
    store.commit(0);
    store.close();
  }
  {
    pcore::xtree::Store store(path, Durability::STRICT);
    const std::vector<uint8_t> a = pcore_test::make_pattern(40, 11);
    const std::vector<uint8_t> b = pcore_test::make_pattern(5000, 12);
    store.publish_node(small, a.data(), a.size());
    store.publish_node(grows, b.data(), b.size());  // past the capacity: moves, same id
    store.commit(0);
    store.close();
  }
  pcore::xtree::Store store(path, Durability::STRICT);
  EXPECT_TRUE(holds(store, small, 40, 11));
  EXPECT_TRUE(holds(store, grows, 5000, 12));
}

// XTree's current store overwrote live nodes after a reopen: its allocator state was not
// rebuilt. Fill many new nodes over their whole capacity after reopening, then check the old.
TEST(StoreContractTest, WritesAfterReopenNeverTouchLiveNodes) {
  ScratchDir dir("contract-overwrite");
  const std::string path = dir.sub("store");
  pcore_test::Rng rng(2024);
  struct Old {
    NodeID id;
    size_t len;
    uint64_t seed;
  };
  std::vector<Old> old;
  {
    pcore::xtree::Store store(path, Durability::BALANCED);
    for (uint64_t i = 0; i < 600; ++i) {
      const size_t len = rng.between(1, 9000);
      old.push_back(Old{make_node(store, len, 1000 + i), len, 1000 + i});
    }
    store.commit(0);
    for (size_t i = 0; i < old.size(); i += 3) {
      store.free_node_immediate(old[i].id);
    }
    store.commit(0);
    store.close();
  }
  pcore::xtree::Store store(path, Durability::BALANCED);
  for (int i = 0; i < 1200; ++i) {
    const auto alloc = store.allocate_node(rng.between(1, 9000), NodeKind::Leaf);
    std::memset(alloc.writable, 0xEE, alloc.capacity);
    if (i % 2 == 0) {
      store.publish_node(alloc.id, alloc.writable, alloc.capacity);
    } else {
      store.publish_node_in_place(alloc.id, alloc.capacity);
    }
  }
  // Modify survivors through their mapped addresses as well.
  for (size_t i = 1; i < old.size(); i += 3) {
    auto* ptr = static_cast<uint8_t*>(store.get_mapped_address(old[i].id));
    ASSERT_NE(ptr, nullptr);
    pcore_test::fill_pattern(ptr, old[i].len, old[i].seed + 1);
    store.publish_node_in_place(old[i].id, old[i].len);
    ++old[i].seed;
  }
  auto check_all = [&](const char* when) {
    for (size_t i = 0; i < old.size(); ++i) {
      if (i % 3 == 0) {
        EXPECT_FALSE(store.is_node_present(old[i].id)) << when << ": node " << i;
      } else {
        EXPECT_TRUE(holds(store, old[i].id, old[i].len, old[i].seed)) << when << ": node " << i;
      }
    }
  };
  check_all("before commit");
  store.commit(0);
  check_all("after commit");
}

TEST(StoreContractTest, CloseTwiceIsFine) {
  ScratchDir dir("contract-close");
  pcore::xtree::Store store(dir.sub("store"), Durability::EVENTUAL);
  const NodeID id = make_node(store, 10, 1);
  store.commit(0);
  store.close();
  EXPECT_FALSE(store.is_open());
  EXPECT_NO_THROW(store.close());
  // After close the directory is free; any later call reopens it on demand.
  EXPECT_TRUE(holds(store, id, 10, 1));
  EXPECT_TRUE(store.is_open());
  store.close();
  EXPECT_TRUE(store.is_node_present(id));
  store.close();
  EXPECT_NO_THROW(store.allocate_node(10, NodeKind::Leaf));
}

TEST(StoreContractTest, ClosedInMemoryStoreGivesNothingAndRefusesWrites) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  const NodeID id = make_node(store, 10, 1);
  store.commit(0);
  store.close();
  EXPECT_NO_THROW(store.close());
  // After close: reads give nothing, writes throw, nothing crashes.
  EXPECT_TRUE(is_null(store.read_node(id)));
  EXPECT_FALSE(store.is_node_present(id));
  EXPECT_EQ(store.get_capacity(id), 0u);
  EXPECT_EQ(store.get_mapped_address(id), nullptr);
  EXPECT_THROW(store.allocate_node(10, NodeKind::Leaf), std::runtime_error);
}

TEST(StoreContractTest, PublishDataMayAliasTheNodesOwnBlock) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  const auto alloc = store.allocate_node(256, NodeKind::Leaf);
  ASSERT_GE(alloc.capacity, 256u);
  auto* block = static_cast<uint8_t*>(alloc.writable);
  pcore_test::fill_pattern(block, 256, 77);
  const std::vector<uint8_t> original(block, block + 256);

  // Reserved node, data is exactly the block.
  store.publish_node(alloc.id, block, 200);
  EXPECT_EQ(bytes_of(store.read_node(alloc.id)), std::vector<uint8_t>(original.begin(), original.begin() + 200));

  // Overlapping source: memmove semantics.
  const NodeBytes current = store.read_node(alloc.id);
  const std::vector<uint8_t> before = bytes_of(current);
  store.publish_node(alloc.id, static_cast<const uint8_t*>(current.data) + 16, 100);
  EXPECT_EQ(bytes_of(store.read_node(alloc.id)), std::vector<uint8_t>(before.begin() + 16, before.begin() + 116));

  // Committed node: the source is the committed block itself (copy-on-write underneath).
  store.commit(0);
  const NodeBytes committed = store.read_node(alloc.id);
  const std::vector<uint8_t> committed_bytes = bytes_of(committed);
  store.publish_node(alloc.id, static_cast<const uint8_t*>(committed.data) + 8, 50);
  EXPECT_EQ(bytes_of(store.read_node(alloc.id)),
            std::vector<uint8_t>(committed_bytes.begin() + 8, committed_bytes.begin() + 58));

  // The mapped (shadow) block as the source.
  const std::vector<uint8_t> now = bytes_of(store.read_node(alloc.id));
  auto* mapped = static_cast<uint8_t*>(store.get_mapped_address(alloc.id));
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(mapped, mapped + now.size()), now) << "the mapped address shows current bytes";
  store.publish_node(alloc.id, mapped + 4, 40);
  EXPECT_EQ(bytes_of(store.read_node(alloc.id)), std::vector<uint8_t>(now.begin() + 4, now.begin() + 44));
  store.commit(0);
  EXPECT_EQ(bytes_of(store.read_node(alloc.id)), std::vector<uint8_t>(now.begin() + 4, now.begin() + 44));
}

TEST(StoreContractTest, AllocationsAreZeroFilledAndChecked) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  for (size_t len : {1u, 63u, 64u, 65u, 4096u, 100000u}) {
    const auto alloc = store.allocate_node(len, NodeKind::ChildVec);
    ASSERT_GE(alloc.capacity, len);
    const auto* p = static_cast<const uint8_t*>(alloc.writable);
    EXPECT_TRUE(std::all_of(p, p + alloc.capacity, [](uint8_t b) { return b == 0; })) << len;
    EXPECT_EQ(store.get_capacity(alloc.id), alloc.capacity);
    EXPECT_NE(alloc.id.raw(), 0u);
    EXPECT_TRUE(alloc.id.valid());
  }
  EXPECT_THROW(store.allocate_node(64, NodeKind::Invalid), std::runtime_error);
  EXPECT_THROW(store.allocate_node(262145, NodeKind::Leaf), std::runtime_error);
  try {
    store.allocate_node(262145, NodeKind::Leaf);
  } catch (const pcore::Error& e) {
    EXPECT_EQ(e.status(), static_cast<int32_t>(PCORE_TOO_LARGE));
    EXPECT_NE(std::string(e.what()).find("PCORE_TOO_LARGE"), std::string::npos) << e.what();
  }
  const uint8_t data[4] = {1, 2, 3, 4};
  EXPECT_THROW(store.publish_node(NodeID::from_parts(4242, 1), data, 4), std::runtime_error);
  EXPECT_THROW(store.free_node(NodeID::from_parts(4242, 1)), std::runtime_error);
}

TEST(StoreContractTest, InPlacePublishRespectsCapacity) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  ASSERT_TRUE(store.supports_in_place_publish());
  const auto alloc = store.allocate_node(100, NodeKind::Leaf);
  pcore_test::fill_pattern(alloc.writable, 100, 5);
  store.publish_node_in_place(alloc.id, 100);
  EXPECT_TRUE(holds(store, alloc.id, 100, 5));
  EXPECT_THROW(store.publish_node_in_place(alloc.id, alloc.capacity + 1), std::runtime_error);
  EXPECT_TRUE(holds(store, alloc.id, 100, 5)) << "a failed publish leaves the node as it was";
}

TEST(StoreContractTest, RetiredNodeIsFreedAtItsEpoch) {
  pcore::xtree::Store store(pcore::xtree::in_memory);
  const NodeID id = make_node(store, 64, 1);
  store.commit(0);
  const uint64_t target = store.stats().epoch + 2;
  DS_RETIRE(&store, id, target, SplitReplace);
  store.commit(0);
  if (store.stats().epoch < target) {
    EXPECT_TRUE(holds(store, id, 64, 1)) << "retired for a later epoch: still readable";
  }
  while (store.stats().epoch < target) {
    store.commit(0);
  }
  EXPECT_FALSE(store.is_node_present(id));
  EXPECT_TRUE(is_null(store.read_node(id)));
}

TEST(StoreContractTest, NewIdGrowthPolicyThrowsWithoutTouchingTheStore) {
  pcore::Options options;
  options.growth_policy(pcore::GrowthPolicy::NewId);
  pcore::xtree::Store store(pcore::xtree::in_memory, options);
  const NodeID id = make_node(store, 60, 3);
  const size_t capacity = store.get_capacity(id);
  const std::vector<uint8_t> big = pcore_test::make_pattern(capacity + 1, 4);
  EXPECT_THROW(store.publish_node(id, big.data(), big.size()), std::runtime_error);
  EXPECT_TRUE(holds(store, id, 60, 3));
  EXPECT_EQ(store.get_capacity(id), capacity);
  EXPECT_EQ(store.stats().reallocations, 0u);
  // Within the capacity it publishes as usual.
  store.publish_node(id, big.data(), capacity);
  EXPECT_TRUE(holds(store, id, capacity, 4));
}

// Several stores open in one process, opened from different threads.
TEST(StoreContractTest, SeveralStoresFromDifferentThreads) {
  ScratchDir dir("contract-threads");
  constexpr int kThreads = 4;
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        const std::string path = dir.sub("store" + std::to_string(t));
        std::vector<NodeID> ids;
        {
          pcore::xtree::Store store(path, Durability::EVENTUAL);
          for (uint64_t i = 0; i < 2000; ++i) {
            ids.push_back(make_node(store, 1 + (i * 13) % 3000, t * 100000 + i));
            if (i % 500 == 499) store.commit(0);
          }
          store.commit(0);
          store.close();
        }
        pcore::xtree::Store store(path, Durability::EVENTUAL);
        for (uint64_t i = 0; i < ids.size(); ++i) {
          if (!holds(store, ids[i], 1 + (i * 13) % 3000, t * 100000 + i)) {
            failures[t] = "node " + std::to_string(i) + " differs";
            return;
          }
        }
      } catch (const std::exception& e) {
        failures[t] = e.what();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], "") << "thread " << t;
  }
}

}  // namespace
