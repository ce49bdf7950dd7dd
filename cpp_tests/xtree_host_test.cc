// XTreeHostTest: include/pcore/xtree_store.hpp driven as XTree's index code drives its store:
// a root set under the field name and found again with the empty name after a reopen, pinned
// reads of every record, forceCheckpoint / getMemoryStats through the StoreInterface pointer,
// manifest.json read back as the index registry reads it, and an index closed (not yet
// destroyed) while a new one opens the same directory.
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <pcore/xtree_store.hpp>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;
using xtree::persist::NodeBytes;
using xtree::persist::NodeID;
using xtree::persist::NodeKind;
using xtree::persist::StoreInterface;
using Durability = pcore::xtree::Durability;

// ---- a small JSON reader: what XTree's registry does with manifest.json ----------------------

struct Json {
  enum class Type { Null, Bool, Number, String, Array, Object } type = Type::Null;
  double number = 0;
  std::string text;
  std::vector<Json> items;
  std::map<std::string, Json> fields;

  const Json& at(const std::string& key) const {
    auto it = fields.find(key);
    if (it == fields.end()) {
      throw std::runtime_error("no field " + key);
    }
    return it->second;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}

  Json parse_document() {
    Json v = value();
    skip();
    if (at_ != s_.size()) {
      fail("bytes after the document");
    }
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("JSON: " + what + " at " + std::to_string(at_));
  }
  void skip() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\t' || s_[at_] == '\r')) {
      ++at_;
    }
  }
  void expect(char c) {
    skip();
    if (at_ >= s_.size() || s_[at_] != c) {
      fail(std::string("expected ") + c);
    }
    ++at_;
  }
  bool peek(char c) {
    skip();
    return at_ < s_.size() && s_[at_] == c;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (at_ < s_.size() && s_[at_] != '"') {
      char c = s_[at_++];
      if (c == '\\') {
        if (at_ >= s_.size()) {
          fail("escape");
        }
        c = s_[at_++];
        if (c == 'u') {
          out.push_back(static_cast<char>(std::stoi(s_.substr(at_, 4), nullptr, 16)));
          at_ += 4;
          continue;
        }
      }
      out.push_back(c);
    }
    expect('"');
    return out;
  }
  Json value() {
    skip();
    Json v;
    if (peek('{')) {
      v.type = Json::Type::Object;
      expect('{');
      if (!peek('}')) {
        do {
          std::string key = string();
          expect(':');
          v.fields[key] = value();
        } while (peek(',') && (expect(','), true));
      }
      expect('}');
    } else if (peek('[')) {
      v.type = Json::Type::Array;
      expect('[');
      if (!peek(']')) {
        do {
          v.items.push_back(value());
        } while (peek(',') && (expect(','), true));
      }
      expect(']');
    } else if (peek('"')) {
      v.type = Json::Type::String;
      v.text = string();
    } else if (s_.compare(at_, 4, "null") == 0) {
      at_ += 4;
    } else {
      const char* begin = s_.c_str() + at_;
      char* end = nullptr;
      v.type = Json::Type::Number;
      v.number = std::strtod(begin, &end);
      if (end == begin) {
        fail("a value");
      }
      at_ += static_cast<size_t>(end - begin);
    }
    return v;
  }

  const std::string& s_;
  size_t at_ = 0;
};

struct ManifestRoot {
  uint64_t node_id;
  uint64_t epoch;
  std::vector<float> mbr;
};

/// What the index registry finds in a data directory: field name -> root.
std::map<std::string, ManifestRoot> read_manifest(const std::string& dir, uint64_t* created_unix = nullptr) {
  const std::vector<uint8_t> bytes = pcore_test::read_file(dir + "/manifest.json");
  const std::string text(bytes.begin(), bytes.end());
  const Json doc = JsonParser(text).parse_document();
  EXPECT_EQ(doc.at("version").number, 1.0);
  if (created_unix != nullptr) {
    *created_unix = static_cast<uint64_t>(doc.at("created_unix").number);
  }
  std::map<std::string, ManifestRoot> out;
  for (const Json& r : doc.at("roots").items) {
    ManifestRoot root;
    root.node_id = std::stoull(r.at("node_id").text, nullptr, 16);
    root.epoch = static_cast<uint64_t>(r.at("epoch").number);
    for (const Json& f : r.at("mbr").items) {
      root.mbr.push_back(static_cast<float>(f.number));
    }
    out[r.at("name").text] = root;
  }
  return out;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

// ---- XTree's shapes ----------------------------------------------------------------------------

NodeID make_record(StoreInterface& store, size_t len, uint64_t seed) {
  const auto alloc = store.allocate_node(len, NodeKind::DataRecord);
  pcore_test::fill_pattern(alloc.writable, len, seed);
  store.publish_node(alloc.id, alloc.writable, len);
  return alloc.id;
}

/// XTree builds its store in one place, for one field (the index's name).
std::unique_ptr<StoreInterface> open_index(const std::string& dir, const std::string& field) {
  return std::make_unique<pcore::xtree::Store>(dir, field, Durability::EVENTUAL);
}

pcore::xtree::Store& pcore_of(const std::unique_ptr<StoreInterface>& store) {
  return dynamic_cast<pcore::xtree::Store&>(*store);
}

TEST(XTreeHostTest, RootSetUnderTheFieldNameIsFoundWithTheEmptyNameAfterReopen) {
  ScratchDir scratch("xtree-host-root");
  const std::string dir = scratch.sub("data");
  const float mbr[4] = {-1.5f, 2.25f, 3.0f, 4.125f};
  NodeID root;
  {
    std::unique_ptr<StoreInterface> store = open_index(dir, "location");
    root = make_record(*store, 7 + 32 * 3, 1);
    store->set_root(root, 0, mbr, 4, "location");
    // The same store answers the empty name with its own name at once.
    EXPECT_EQ(store->get_root(), root);
    store->commit(0);
    pcore_of(store).close();
  }
  std::unique_ptr<StoreInterface> store = open_index(dir, "location");
  EXPECT_EQ(store->get_root(), root) << "a reopened index asks with the empty name";
  EXPECT_EQ(store->get_root("location"), root);
  EXPECT_EQ(pcore_of(store).get_root_mbr(), std::vector<float>(mbr, mbr + 4));
  const NodeBytes bytes = store->read_node(store->get_root());
  ASSERT_NE(bytes.data, nullptr) << "XTree's reader dereferences the root";
  EXPECT_TRUE(pcore_test::matches_pattern(bytes.data, bytes.size, 1));
  // Setting the root with the empty name sets the field's root, not a separate default one.
  const NodeID next = make_record(*store, 64, 2);
  store->set_root(next, 0, mbr, 4);
  EXPECT_EQ(store->get_root("location"), next);
  // A store built without an index name keeps pcore's default root for the empty name.
  store->commit(0);
  pcore_of(store).close();
  pcore::xtree::Store unnamed(dir, Durability::EVENTUAL);
  EXPECT_EQ(unnamed.get_root().raw(), 0u);
  EXPECT_EQ(unnamed.get_root("location"), next);
}

TEST(XTreeHostTest, PinnedReadsOfEveryRecordThrowNothing) {
  ScratchDir scratch("xtree-host-pinned");
  const std::string dir = scratch.sub("data");
  constexpr size_t kRecords = 20000;
  std::vector<NodeID> ids;
  {
    pcore::xtree::Store store(dir, "points", Durability::EVENTUAL);
    for (size_t i = 0; i < kRecords; ++i) {
      ids.push_back(make_record(store, 24 + i % 200, i));
      if (i % 5000 == 4999) {
        store.commit(0);
      }
    }
    // Uncommitted records read pinned too (the writer reads its own nodes).
    ids.push_back(make_record(store, 90, kRecords));
    for (size_t i = 0; i < ids.size(); ++i) {
      StoreInterface::PinnedBytes pinned;
      ASSERT_NO_THROW(pinned = store.read_node_pinned(ids[i])) << i;
      ASSERT_TRUE(pcore_test::matches_pattern(pinned.data, pinned.size, i)) << i;
    }
    store.commit(0);
  }
  // A reopened store, as XTree loads its records.
  pcore::xtree::Store store(dir, "points", Durability::EVENTUAL);
  const StoreInterface& iface = store;
  for (size_t i = 0; i < ids.size(); ++i) {
    StoreInterface::PinnedBytes pinned;
    ASSERT_NO_THROW(pinned = iface.read_node_pinned(ids[i])) << i;
    ASSERT_NE(pinned.pin, nullptr) << i;
    ASSERT_EQ(pinned.size, i < kRecords ? 24 + i % 200 : 90u) << i;
    ASSERT_TRUE(pcore_test::matches_pattern(pinned.data, pinned.size, i)) << i;
  }
  // The pin keeps its bytes whatever happens to the node afterwards.
  StoreInterface::PinnedBytes pinned = store.read_node_pinned(ids[7]);
  const size_t len = pinned.size;
  std::vector<uint8_t> bigger(4000, 0xAB);
  store.publish_node(ids[7], bigger.data(), bigger.size());
  store.free_node(ids[8]);
  store.commit(0);
  EXPECT_TRUE(pcore_test::matches_pattern(pinned.data, len, 7));
  EXPECT_EQ(store.read_node_pinned(ids[7]).size, bigger.size());
  // Unknown and freed ids: nothing, no throw.
  for (const NodeID id : {ids[8], NodeID::from_raw(0), NodeID::invalid(), NodeID::from_parts(1u << 30, 3)}) {
    StoreInterface::PinnedBytes none;
    ASSERT_NO_THROW(none = store.read_node_pinned(id));
    EXPECT_EQ(none.data, nullptr);
    EXPECT_EQ(none.size, 0u);
  }
}

TEST(XTreeHostTest, ForceCheckpointAndMemoryStatsThroughTheStoreInterface) {
  ScratchDir scratch("xtree-host-stats");
  std::unique_ptr<StoreInterface> store =
      std::make_unique<pcore::xtree::Store>(scratch.sub("data"), "shapes", Durability::STRICT);
  std::vector<NodeID> ids;
  for (uint64_t i = 0; i < 3000; ++i) {
    ids.push_back(make_record(*store, 7 + 32 * (1 + i % 150), i));
  }
  store->commit(0);
  for (size_t i = 0; i < ids.size(); i += 2) {
    store->free_node_immediate(ids[i]);
  }
  store->commit(0);

  // getMemoryStats(): live and dead bytes, fragmentation, per class.
  const std::optional<pcore::xtree::MemoryStats> stats = pcore::xtree::memory_stats(store.get());
  ASSERT_TRUE(stats.has_value());
  EXPECT_GT(stats->live_bytes, 0u);
  EXPECT_GT(stats->dead_bytes, 0u) << "half the records were freed";
  EXPECT_NEAR(stats->fragmentation,
              static_cast<double>(stats->dead_bytes) / static_cast<double>(stats->live_bytes + stats->dead_bytes),
              1e-9);
  EXPECT_EQ(stats->live_nodes, 1500u);
  ASSERT_FALSE(stats->per_class.empty());
  size_t live = 0;
  size_t dead = 0;
  uint64_t allocations = 0;
  for (const pcore::xtree::ClassMemoryStats& c : stats->per_class) {
    EXPECT_GT(c.class_size, 0u);
    live += c.live_bytes;
    dead += c.dead_bytes;
    allocations += c.total_allocations;
  }
  EXPECT_EQ(live, stats->live_bytes);
  EXPECT_EQ(dead, stats->dead_bytes);
  EXPECT_EQ(allocations, 3000u);
  EXPECT_GT(stats->data_file_bytes, 0u);

  // forceCheckpoint(): the log restarts; the data is all there after a reopen.
  const pcore::Stats before = pcore_of(store).stats();
  EXPECT_GT(before.log_bytes, 0u);
  ASSERT_TRUE(pcore::xtree::force_checkpoint(store.get()));
  const pcore::Stats after = pcore_of(store).stats();
  EXPECT_EQ(after.checkpoint_epoch, after.epoch);
  EXPECT_LT(after.log_bytes, before.log_bytes);
  pcore_of(store).close();
  for (size_t i = 1; i < ids.size(); i += 2) {
    const NodeBytes bytes = store->read_node(ids[i]);
    ASSERT_TRUE(pcore_test::matches_pattern(bytes.data, bytes.size, i)) << i;
  }
  // Not a pcore store: the helpers say so.
  EXPECT_FALSE(pcore::xtree::force_checkpoint(nullptr));
  EXPECT_FALSE(pcore::xtree::memory_stats(nullptr).has_value());
}

TEST(XTreeHostTest, ManifestListsEveryFieldWithItsRootAndMbr) {
  ScratchDir scratch("xtree-host-manifest");
  const std::string dir = scratch.sub("data");
  const std::string manifest = dir + "/manifest.json";
  const float a_mbr[4] = {0.0f, 0.1f, 10.5f, 20.75f};
  const float b_mbr[6] = {-3.0e-7f, 1.0f / 3.0f, 5.0f, 6.0f, 1e30f, -7.25f};
  NodeID a_root;
  NodeID b_root;
  {
    std::unique_ptr<StoreInterface> a = open_index(dir, "a");
    a_root = make_record(*a, 100, 1);
    a->set_root(a_root, 0, a_mbr, 4, "a");
    EXPECT_FALSE(file_exists(manifest)) << "written at commit, not before";
    a->commit(0);
    ASSERT_TRUE(file_exists(manifest));
    uint64_t created = 0;
    const auto fields = read_manifest(dir, &created);
    ASSERT_EQ(fields.size(), 1u);
    EXPECT_EQ(fields.at("a").node_id, a_root.raw());
    EXPECT_EQ(fields.at("a").mbr, std::vector<float>(a_mbr, a_mbr + 4));
    EXPECT_GT(created, 1700000000u);

    // Commits that change no root leave the file alone.
    const ino_t inode = inode_of(manifest);
    make_record(*a, 50, 2);
    a->commit(0);
    a->set_root(a_root, 0, a_mbr, 4);  // the same root again
    a->commit(0);
    EXPECT_EQ(inode_of(manifest), inode);
    pcore_of(a).close();
  }
  {
    // A second field's index on the same directory: the manifest lists both.
    std::unique_ptr<StoreInterface> b = open_index(dir, "b");
    b_root = make_record(*b, 200, 3);
    b->set_root(b_root, 5, b_mbr, 6);
    b->commit(0);
    const auto fields = read_manifest(dir);
    ASSERT_EQ(fields.size(), 2u);
    EXPECT_EQ(fields.at("a").node_id, a_root.raw());
    EXPECT_EQ(fields.at("b").node_id, b_root.raw());
    EXPECT_EQ(fields.at("b").epoch, 5u);
    EXPECT_EQ(fields.at("b").mbr, std::vector<float>(b_mbr, b_mbr + 6));
    // A root moved by a split: rewritten.
    const NodeID moved = make_record(*b, 300, 4);
    b->set_root(moved, 5, b_mbr, 6);
    b->commit(0);
    EXPECT_EQ(read_manifest(dir).at("b").node_id, moved.raw());
    b_root = moved;
    pcore_of(b).close();
  }
  // A lost (or stale) manifest is written again when a writable store opens.
  ASSERT_EQ(::unlink(manifest.c_str()), 0);
  {
    std::unique_ptr<StoreInterface> a = open_index(dir, "a");
    const auto fields = read_manifest(dir);
    ASSERT_EQ(fields.size(), 2u);
    EXPECT_EQ(fields.at("b").node_id, b_root.raw());
  }
  EXPECT_FALSE(file_exists(manifest + ".tmp"));
  // Uncommitted roots never reach it.
  {
    std::unique_ptr<StoreInterface> a = open_index(dir, "a");
    a->set_root(make_record(*a, 10, 9), 0, a_mbr, 4);
    pcore_of(a).close();
  }
  EXPECT_EQ(read_manifest(dir).at("a").node_id, a_root.raw());
}

TEST(XTreeHostTest, ClosedIndexReleasesItsDirectoryWhileTheObjectLives) {
  ScratchDir scratch("xtree-host-close");
  const std::string dir = scratch.sub("data");
  const float mbr[4] = {1, 2, 3, 4};
  std::unique_ptr<StoreInterface> first = open_index(dir, "geo");
  const NodeID root = make_record(*first, 64, 1);
  first->set_root(root, 0, mbr, 4);
  // XTree's close: the final commit(0), then close (maybe twice); the object lives on.
  first->commit(0);
  pcore_of(first).close();
  pcore_of(first).close();
  EXPECT_FALSE(pcore_of(first).is_open());

  {
    // A new index on the same directory opens: no BUSY.
    std::unique_ptr<StoreInterface> second;
    ASSERT_NO_THROW(second = open_index(dir, "geo"));
    EXPECT_EQ(second->get_root(), root);
    const NodeID more = make_record(*second, 80, 2);
    second->set_root(more, 0, mbr, 4, "other");
    // Meanwhile the first answers "nothing" rather than crash, and throws where it must.
    EXPECT_EQ(first->read_node(root).data, nullptr);
    EXPECT_FALSE(first->is_node_present(root));
    EXPECT_THROW(first->get_root(), std::runtime_error);
    second->commit(0);
    pcore_of(second).close();
  }

  // The first object reopens on demand, and sees what the second committed.
  EXPECT_EQ(first->get_root(), root);
  EXPECT_TRUE(pcore_of(first).is_open());
  EXPECT_NE(first->get_root("other").raw(), 0u);
  const NodeBytes bytes = first->read_node(root);
  EXPECT_TRUE(pcore_test::matches_pattern(bytes.data, bytes.size, 1));
  const NodeID later = make_record(*first, 48, 3);
  first->commit(0);
  pcore_of(first).close();
  first.reset();
  std::unique_ptr<StoreInterface> third = open_index(dir, "geo");
  EXPECT_TRUE(pcore_test::matches_pattern(third->read_node(later).data, 48, 3));
  EXPECT_EQ(read_manifest(dir).size(), 2u);
}

TEST(XTreeHostTest, InMemoryAndReadOnlyStoresKeepTheirRules) {
  // An in-memory store is gone once closed: reads give nothing, writes throw.
  pcore::xtree::Store memory(pcore::xtree::in_memory, "mem");
  const float mbr[4] = {0, 0, 1, 1};
  const NodeID id = make_record(memory, 32, 1);
  memory.set_root(id, 0, mbr, 4);
  EXPECT_EQ(memory.get_root("mem"), id);
  EXPECT_EQ(memory.read_node_pinned(id).size, 32u);
  memory.close();
  EXPECT_EQ(memory.read_node(id).data, nullptr);
  EXPECT_EQ(memory.read_node_pinned(id).data, nullptr);
  EXPECT_THROW(memory.allocate_node(16, NodeKind::Leaf), std::runtime_error);

  // The adapter's own root name is refused; a read-only store writes no manifest.
  ScratchDir scratch("xtree-host-ro");
  const std::string dir = scratch.sub("data");
  {
    pcore::xtree::Store store(dir, "f", Durability::EVENTUAL);
    EXPECT_THROW(store.set_root(id, 0, mbr, 4, "pcore.xtree.roots"), std::invalid_argument);
    store.set_root(make_record(store, 16, 2), 0, mbr, 4);
    store.commit(0);
  }
  ASSERT_EQ(::unlink((dir + "/manifest.json").c_str()), 0);
  pcore::xtree::Store reader(dir, "f", Durability::EVENTUAL, true);
  EXPECT_NE(reader.get_root().raw(), 0u);
  EXPECT_TRUE(pcore_test::matches_pattern(reader.read_node_pinned(reader.get_root()).data, 16, 2));
  EXPECT_NO_THROW(reader.checkpoint());
  EXPECT_FALSE(file_exists(dir + "/manifest.json"));
}

}  // namespace
