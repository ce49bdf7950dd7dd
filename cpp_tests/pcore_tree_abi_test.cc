// TreeAbiErrorsTest: every kind of bad input through the B+ tree's C ABI (pcore_tree_* and
// pcore_cursor_*). Each failure must return its documented status, leave a message in
// pcore_last_error_message(), never crash, leave outputs unwritten and leave the tree as it
// was: NULL / closed / garbage / foreign handles, NULL outputs, keys over the limit, bad
// options, mismatched reopen options, NO_CREATE, stale cursors, cursors past the end, host
// comparators (a reverse order, orders that are not total) and damaged tree pages on disk.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

constexpr int32_t kBadHandle = static_cast<int32_t>(PCORE_BAD_HANDLE);
constexpr int32_t kInvalid = static_cast<int32_t>(PCORE_INVALID_ARGUMENT);
constexpr int32_t kNotFound = static_cast<int32_t>(PCORE_NOT_FOUND);
constexpr int32_t kCorrupt = static_cast<int32_t>(PCORE_CORRUPT);
constexpr int32_t kStale = static_cast<int32_t>(PCORE_STALE_CURSOR);
constexpr int32_t kDuplicate = static_cast<int32_t>(PCORE_DUPLICATE_KEY);


/// Expects one of the listed statuses (for damaged input: "works or says CORRUPT").
#define EXPECT_STATUS_IN(expr, ...)                                                           \
  do {                                                                                        \
    const int32_t in_status_ = (expr);                                                        \
    const std::vector<int32_t> in_allowed_{__VA_ARGS__};                                      \
    EXPECT_NE(std::find(in_allowed_.begin(), in_allowed_.end(), in_status_), in_allowed_.end()) \
        << #expr << " -> " << ::pcore_test::describe_status(in_status_);                      \
  } while (0)

PcoreStore* open_in_memory() {
  PcoreStoreOptions options = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(nullptr, &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
  return store;
}

PcoreStore* open_dir(const std::string& dir, uint32_t flags = 0) {
  PcoreStoreOptions options = pcore_test::strict_options(flags);
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(dir.c_str(), &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << dir << ": " << pcore_test::describe_status(status);
  return store;
}

PcoreTreeOptions tree_options(uint32_t page_bytes = 4096, uint32_t duplicates = PCORE_DUP_UNIQUE) {
  PcoreTreeOptions options;
  pcore_tree_options_init(&options);
  options.page_bytes = page_bytes;
  options.duplicates = duplicates;
  return options;
}

PcoreTree* open_tree(PcoreStore* store, const std::string& name, const PcoreTreeOptions& options) {
  PcoreTree* tree = nullptr;
  const int32_t status = pcore_tree_open(store, name.data(), name.size(), &options, &tree);
  EXPECT_EQ(status, pcore_test::kOk) << "tree " << name << ": " << pcore_test::describe_status(status);
  return tree;
}

PcoreTree* open_tree(PcoreStore* store, const std::string& name) { return open_tree(store, name, tree_options()); }

/// True when the store holds a tree called name (opened with NO_CREATE and the given options).
bool tree_exists(PcoreStore* store, const std::string& name, PcoreTreeOptions options = tree_options()) {
  options.flags = PCORE_TREE_NO_CREATE;
  PcoreTree* tree = nullptr;
  const int32_t status = pcore_tree_open(store, name.data(), name.size(), &options, &tree);
  if (status == pcore_test::kOk) {
    pcore_tree_close(tree);
    return true;
  }
  EXPECT_EQ(status, kNotFound) << pcore_test::describe_status(status);
  return false;
}

/// Closes raw handles at scope exit (stores last).
struct Handles {
  std::vector<PcoreCursor*> cursors;
  std::vector<PcoreTree*> trees;
  std::vector<PcoreStore*> stores;
  Handles() = default;
  Handles(const Handles&) = delete;
  Handles& operator=(const Handles&) = delete;
  ~Handles() {
    for (PcoreCursor* c : cursors) pcore_cursor_close(c);
    for (PcoreTree* t : trees) pcore_tree_close(t);
    for (PcoreStore* s : stores) pcore_store_close(s);
  }
  PcoreStore* keep(PcoreStore* s) {
    stores.push_back(s);
    return s;
  }
  PcoreTree* keep(PcoreTree* t) {
    trees.push_back(t);
    return t;
  }
  PcoreCursor* keep(PcoreCursor* c) {
    cursors.push_back(c);
    return c;
  }
};

std::string key_of(uint32_t i) {
  char text[32];
  std::snprintf(text, sizeof(text), "key%08u", i);
  return text;
}
std::string value_of(uint32_t i) { return "value-" + std::to_string(i); }

void insert_keys(PcoreTree* tree, uint32_t from, uint32_t to) {
  for (uint32_t i = from; i < to; ++i) {
    const std::string k = key_of(i);
    const std::string v = value_of(i);
    PCORE_ASSERT_OK(pcore_tree_insert(tree, k.data(), k.size(), v.data(), v.size()));
  }
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

/// Every entry, first to last, through a fresh cursor (fails the test on an error).
Pairs scan(PcoreTree* tree) {
  Pairs out;
  PcoreCursor* cursor = nullptr;
  const int32_t open_status = pcore_cursor_open(tree, &cursor);
  EXPECT_EQ(open_status, pcore_test::kOk) << pcore_test::describe_status(open_status);
  if (open_status != pcore_test::kOk) {
    return out;
  }
  int32_t status = pcore_cursor_first(cursor);
  while (status == pcore_test::kOk) {
    PcoreBytes k{};
    PcoreBytes v{};
    status = pcore_cursor_get(cursor, &k, &v);
    if (status != pcore_test::kOk) {
      break;
    }
    out.emplace_back(std::string(reinterpret_cast<const char*>(k.data), k.len),
                     std::string(reinterpret_cast<const char*>(v.data), v.len));
    status = pcore_cursor_next(cursor);
  }
  EXPECT_EQ(status, kNotFound) << "a scan ends past the last entry: " << pcore_test::describe_status(status);
  pcore_cursor_close(cursor);
  return out;
}

/// The tree's contents and shape, to compare before and after a failed call.
struct TreeState {
  uint64_t len = 0;
  PcoreTreeStats stats{};
  Pairs entries;
  bool operator==(const TreeState& o) const {
    return len == o.len && stats.height == o.stats.height && stats.entries == o.stats.entries &&
           stats.pages == o.stats.pages && stats.leaf_pages == o.stats.leaf_pages &&
           stats.leaf_fill == o.stats.leaf_fill && entries == o.entries;
  }
};

TreeState state_of(PcoreTree* tree) {
  TreeState s;
  PCORE_EXPECT_OK(pcore_tree_len(tree, &s.len));
  s.stats.struct_size = sizeof(s.stats);
  PCORE_EXPECT_OK(pcore_tree_stats(tree, &s.stats));
  s.entries = scan(tree);
  return s;
}

/// Calls every tree function on a tree handle that must be refused as BAD_HANDLE.
void expect_tree_handle_refused(PcoreTree* tree, const char* what) {
  SCOPED_TRACE(what);
  uint64_t len = 4242;
  size_t value_len = 4242;
  uint64_t removed = 4242;
  char buf[8] = {};
  PcoreTreeStats stats = pcore_test::sized<PcoreTreeStats>();
  PcoreCursor* cursor = reinterpret_cast<PcoreCursor*>(uintptr_t{0x99});
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_insert(tree, "k", 1, "v", 1));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_get(tree, "k", 1, buf, sizeof(buf), &value_len));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_remove(tree, "k", 1, &removed));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_remove_pair(tree, "k", 1, "v", 1, &removed));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_len(tree, &len));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_stats(tree, &stats));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_verify(tree));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_open(tree, &cursor));
  const PcoreBytes one{reinterpret_cast<const uint8_t*>("k"), 1};
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_bulk_load(tree, &one, &one, 1));
  EXPECT_EQ(len, 4242u);
  EXPECT_EQ(value_len, 4242u);
  EXPECT_EQ(removed, 4242u);
  EXPECT_EQ(cursor, reinterpret_cast<PcoreCursor*>(uintptr_t{0x99}));
  EXPECT_EQ(stats.height, 0u);
}

/// Calls every cursor function on a cursor handle that must be refused as BAD_HANDLE.
void expect_cursor_handle_refused(PcoreCursor* cursor, const char* what) {
  SCOPED_TRACE(what);
  PcoreBytes k{reinterpret_cast<const uint8_t*>("x"), 77};
  PcoreBytes v{reinterpret_cast<const uint8_t*>("y"), 88};
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_first(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_last(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_seek(cursor, "k", 1));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_prev(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_get(cursor, &k, &v));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_get(cursor, &k, &v));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_set_bounds(cursor, "a", 1, PCORE_BOUND_INCLUDED, "b", 1,
                                                         PCORE_BOUND_EXCLUDED));
  EXPECT_EQ(k.len, 77u);
  EXPECT_EQ(v.len, 88u);
  uint64_t buf[8] = {0x5A5A};
  size_t count = 33;
  size_t used = 44;
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next_batch(cursor, buf, sizeof buf, &count, &used));
  EXPECT_EQ(buf[0], 0x5A5Au);
  EXPECT_EQ(count, 33u);
  EXPECT_EQ(used, 44u);
}

// ---- the fixture: a file store with a tree, for the damaged-page cases ----------------------

constexpr uint32_t kDamageKeys = 3000;
/// pcore's page types (src/btree/page.rs): what the damage cases look for in a class file.
constexpr uint8_t kInternalPage = 3;
std::string damage_key(uint32_t i) {
  char text[32];
  std::snprintf(text, sizeof(text), "DMGKEY%08u", i);
  return text;
}

class TreeAbiErrorsTest : public ::testing::Test {
 protected:
  /// A closed file store holding tree "t" with kDamageKeys keys; finds the tree's blocks in
  /// its 4 KiB class file: the live root page (an internal page) and every block holding the
  /// marker key (the live leaf, and maybe stale copies: damaging those is harmless).
  void make_damage_store() {
    clean_ = scratch_.sub("clean");
    PcoreStore* store = open_dir(clean_);
    ASSERT_NE(store, nullptr);
    PcoreTree* tree = open_tree(store, "t");
    for (uint32_t i = 0; i < kDamageKeys; ++i) {
      const std::string k = damage_key(i);
      const std::string v = value_of(i);
      PCORE_ASSERT_OK(pcore_tree_insert(tree, k.data(), k.size(), v.data(), v.size()));
    }
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
    PCORE_ASSERT_OK(pcore_tree_close(tree));
    PCORE_ASSERT_OK(pcore_store_close(store));
    // Find the 4 KiB class file and its tree pages (page type 1 leaf, 3 internal at a block
    // start); the marker key tells which leaf holds it.
    for (const std::string& name : pcore_test::list_files(clean_)) {
      if (name.rfind("class-", 0) == 0 && name.find("-4096.seg") != std::string::npos) {
        seg_ = name;
      }
    }
    ASSERT_NE(seg_, "") << "no 4 KiB class file";
    // The live root page's bytes, through the store.
    PcoreStore* ro = open_dir(clean_, PCORE_OPEN_READ_ONLY);
    ASSERT_NE(ro, nullptr);
    const std::string anchor = "btree:t";  // pcore's named root of tree "t"
    PCORE_ASSERT_OK(pcore_root_get(ro, anchor.data(), anchor.size(), &root_id_, nullptr, 0, nullptr));
    PcoreNodeBytes root_bytes{};
    PCORE_ASSERT_OK(pcore_node_read(ro, root_id_, &root_bytes));
    ASSERT_EQ(root_bytes.len, 4096u);
    root_page_.assign(static_cast<const uint8_t*>(root_bytes.data),
                      static_cast<const uint8_t*>(root_bytes.data) + root_bytes.len);
    PCORE_ASSERT_OK(pcore_store_close(ro));
    ASSERT_EQ(root_page_[0], kInternalPage) << "3000 keys should need an internal root page";

    const std::vector<uint8_t> bytes = pcore_test::read_file(clean_ + "/" + seg_);
    const std::string marker = damage_key(kDamageKeys / 2);
    for (size_t p = 0; p + 4096 <= bytes.size(); p += 4096) {
      if (std::equal(root_page_.begin(), root_page_.end(), bytes.begin() + p)) {
        root_block_ = p;
      }
      if (bytes[p] == kInternalPage && bytes[p + 1] == 0) {
        internal_blocks_.push_back(p);
      }
      if (bytes[p] == 1 && std::search(bytes.begin() + p, bytes.begin() + p + 4096, marker.begin(), marker.end()) !=
                               bytes.begin() + p + 4096) {
        marker_blocks_.push_back(p);
      }
    }
    ASSERT_NE(root_block_, SIZE_MAX) << "the root page is not in " << seg_;
    ASSERT_FALSE(marker_blocks_.empty()) << "no leaf in " << seg_ << " holds the marker key";
  }

  /// A copy of the clean store with seg_ changed by damage.
  std::string damaged(const std::string& tag, const std::function<void(std::vector<uint8_t>&)>& damage) {
    const std::string dir = scratch_.sub(tag);
    pcore_test::copy_dir(clean_, dir);
    std::vector<uint8_t> bytes = pcore_test::read_file(dir + "/" + seg_);
    damage(bytes);
    pcore_test::write_file(dir + "/" + seg_, bytes);
    return dir;
  }

  /// Opens the damaged store and uses the tree every way: each call works or says CORRUPT
  /// (NOT_FOUND for keys the damage hid). Returns pcore_tree_verify's status (-1 if the store
  /// or the tree did not open).
  int32_t exercise(const std::string& dir) {
    PcoreStoreOptions options = pcore_test::strict_options();
    PcoreStore* store = nullptr;
    const int32_t open_status = pcore_store_open(dir.c_str(), &options, &store);
    EXPECT_STATUS_IN(open_status, pcore_test::kOk, kCorrupt);
    if (open_status != pcore_test::kOk) {
      return -1;
    }
    Handles h;
    h.keep(store);
    PcoreTreeOptions topt = tree_options();
    PcoreTree* tree = nullptr;
    const int32_t tree_status = pcore_tree_open(store, "t", 1, &topt, &tree);
    EXPECT_STATUS_IN(tree_status, pcore_test::kOk, kCorrupt);
    if (tree_status != pcore_test::kOk) {
      return -1;
    }
    h.keep(tree);
    const int32_t verify = pcore_tree_verify(tree);
    EXPECT_STATUS_IN(verify, pcore_test::kOk, kCorrupt);
    PcoreTreeStats stats = pcore_test::sized<PcoreTreeStats>();
    EXPECT_STATUS_IN(pcore_tree_stats(tree, &stats), pcore_test::kOk, kCorrupt);
    char buf[64];
    for (uint32_t i = 0; i < kDamageKeys; i += 3) {
      const std::string k = damage_key(i);
      size_t len = 0;
      EXPECT_STATUS_IN(pcore_tree_get(tree, k.data(), k.size(), buf, sizeof(buf), &len), pcore_test::kOk, kNotFound,
                       kCorrupt);
    }
    PcoreCursor* cursor = nullptr;
    PCORE_EXPECT_OK(pcore_cursor_open(tree, &cursor));
    if (cursor != nullptr) {
      h.keep(cursor);
      // Scans in both directions end: past the end (NOT_FOUND) with every key in order, or
      // with CORRUPT. (A scan may return misplaced keys before it meets the damage.)
      constexpr int kStepLimit = 100 * static_cast<int>(kDamageKeys);
      for (int direction = 0; direction < 2; ++direction) {
        SCOPED_TRACE(direction == 0 ? "forward scan" : "backward scan");
        int32_t status = direction == 0 ? pcore_cursor_first(cursor) : pcore_cursor_last(cursor);
        int steps = 0;
        bool ordered = true;
        std::string previous;
        while (status == pcore_test::kOk && steps++ < kStepLimit) {
          PcoreBytes k{};
          PcoreBytes v{};
          status = pcore_cursor_get(cursor, &k, &v);
          if (status == pcore_test::kOk) {
            std::string key(reinterpret_cast<const char*>(k.data), k.len);
            if (steps > 1 && (direction == 0 ? key <= previous : key >= previous)) {
              ordered = false;
            }
            previous = std::move(key);
            status = direction == 0 ? pcore_cursor_next(cursor) : pcore_cursor_prev(cursor);
          }
        }
        EXPECT_LT(steps, kStepLimit) << "a cursor went on for ever";
        EXPECT_STATUS_IN(status, kNotFound, kCorrupt);
        if (status == kNotFound) {
          EXPECT_TRUE(ordered) << "a scan ended normally after returning keys out of order";
        }
      }
      const std::string mid = damage_key(kDamageKeys / 2);
      EXPECT_STATUS_IN(pcore_cursor_seek(cursor, mid.data(), mid.size()), pcore_test::kOk, kCorrupt);
    }
    // Writes: work or refuse with CORRUPT; never a crash.
    for (uint32_t i = 0; i < 300; ++i) {
      const std::string k = damage_key(kDamageKeys + i);
      EXPECT_STATUS_IN(pcore_tree_insert(tree, k.data(), k.size(), "v", 1), pcore_test::kOk, kCorrupt);
      const std::string old = damage_key(i * 9);
      EXPECT_STATUS_IN(pcore_tree_remove(tree, old.data(), old.size(), nullptr), pcore_test::kOk, kCorrupt);
    }
    EXPECT_STATUS_IN(pcore_tree_verify(tree), pcore_test::kOk, kCorrupt);
    uint64_t len = 0;
    PCORE_EXPECT_OK(pcore_tree_len(tree, &len));
    return verify;
  }

  ScratchDir scratch_{"tree-abi"};
  std::string clean_;
  std::string seg_;
  uint64_t root_id_ = 0;
  std::vector<uint8_t> root_page_;
  size_t root_block_ = SIZE_MAX;
  std::vector<size_t> internal_blocks_;
  std::vector<size_t> marker_blocks_;
};

// ---- handles --------------------------------------------------------------------------------

TEST_F(TreeAbiErrorsTest, NullHandlesAreBadHandle) {
  expect_tree_handle_refused(nullptr, "NULL tree");
  expect_cursor_handle_refused(nullptr, "NULL cursor");
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_close(nullptr));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(nullptr));
  PcoreTree* tree = reinterpret_cast<PcoreTree*>(uintptr_t{0x55});
  const PcoreTreeOptions options = tree_options();
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_open(nullptr, "t", 1, &options, &tree));
  EXPECT_EQ(tree, reinterpret_cast<PcoreTree*>(uintptr_t{0x55}));
}

TEST_F(TreeAbiErrorsTest, ClosedHandlesAreBadHandle) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = open_tree(store, "t");
  insert_keys(tree, 0, 10);
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PCORE_ASSERT_OK(pcore_cursor_close(cursor));
  expect_cursor_handle_refused(cursor, "closed cursor");
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(cursor));

  PCORE_ASSERT_OK(pcore_tree_close(tree));
  expect_tree_handle_refused(tree, "closed tree");
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_close(tree));

  // The tree stays in the store; a new handle is a different token, the old one stays dead.
  PcoreTree* again = h.keep(open_tree(store, "t"));
  EXPECT_NE(again, tree);
  uint64_t len = 0;
  PCORE_EXPECT_OK(pcore_tree_len(again, &len));
  EXPECT_EQ(len, 10u);
  expect_tree_handle_refused(tree, "closed tree after its slot was reused");
}

TEST_F(TreeAbiErrorsTest, GarbageHandlesAreBadHandle) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  int on_stack = 0;
  const uintptr_t t = reinterpret_cast<uintptr_t>(tree);
  const uintptr_t c = reinterpret_cast<uintptr_t>(cursor);
  const std::vector<uintptr_t> garbage = {
      1, 0x1234, 0xDEADBEEF, UINTPTR_MAX, UINTPTR_MAX - 7,
      reinterpret_cast<uintptr_t>(&on_stack), reinterpret_cast<uintptr_t>(&garbage),
      t + 1, t + 4096, t ^ (uintptr_t{1} << 32), t ^ (uintptr_t{0x7F} << 32), t & ~uintptr_t{0xFFFFFFFF},
      c + 1, c ^ (uintptr_t{1} << 32)};
  for (uintptr_t g : garbage) {
    SCOPED_TRACE("handle " + std::to_string(g));
    expect_tree_handle_refused(reinterpret_cast<PcoreTree*>(g), "garbage tree");
    expect_cursor_handle_refused(reinterpret_cast<PcoreCursor*>(g), "garbage cursor");
    if (g != t) {
      EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_close(reinterpret_cast<PcoreTree*>(g)));
    }
    if (g != c) {
      EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(reinterpret_cast<PcoreCursor*>(g)));
    }
  }
  // The real handles still work.
  PCORE_EXPECT_OK(pcore_tree_insert(tree, "k", 1, "v", 1));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
}

TEST_F(TreeAbiErrorsTest, ForeignHandlesAreBadHandle) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  // A store handle as a tree or cursor handle, and every other mix.
  expect_tree_handle_refused(reinterpret_cast<PcoreTree*>(store), "store as tree");
  expect_tree_handle_refused(reinterpret_cast<PcoreTree*>(cursor), "cursor as tree");
  expect_cursor_handle_refused(reinterpret_cast<PcoreCursor*>(store), "store as cursor");
  expect_cursor_handle_refused(reinterpret_cast<PcoreCursor*>(tree), "tree as cursor");
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_close(reinterpret_cast<PcoreTree*>(store)));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(reinterpret_cast<PcoreCursor*>(tree)));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_close(reinterpret_cast<PcoreStore*>(tree)));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_commit(reinterpret_cast<PcoreStore*>(cursor), nullptr));
  PcoreTree* out = nullptr;
  const PcoreTreeOptions options = tree_options();
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_open(reinterpret_cast<PcoreStore*>(tree), "u", 1, &options, &out));
  EXPECT_EQ(out, nullptr);
  // All three still work.
  PCORE_EXPECT_OK(pcore_tree_insert(tree, "k", 1, "v", 1));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  PCORE_EXPECT_OK(pcore_store_commit(store, nullptr));
}

TEST_F(TreeAbiErrorsTest, TreeAndCursorAfterTheirStoreClosed) {
  PcoreStore* store = open_in_memory();
  PcoreTree* tree = open_tree(store, "t");
  insert_keys(tree, 0, 50);
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PCORE_ASSERT_OK(pcore_store_close(store));
  // The store is gone: its trees and cursors are refused, never a use after free.
  uint64_t len = 4242;
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_insert(tree, "k", 1, "v", 1));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_get(tree, "k", 1, nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_verify(tree));
  const int32_t len_status = pcore_tree_len(tree, &len);  // a cached count may still answer
  EXPECT_TRUE(len_status == pcore_test::kOk || len_status == kBadHandle) << pcore_test::describe_status(len_status);
  // Every call on the cursor, even a move inside the leaf it holds (an outside tester's
  // next_get and prev answered OK once more here, with an entry of the closed store).
  expect_cursor_handle_refused(cursor, "its store closed");
  // Releasing the handles still works (or says they are gone), once.
  EXPECT_STATUS_IN(pcore_cursor_close(cursor), pcore_test::kOk, kBadHandle);
  EXPECT_STATUS_IN(pcore_tree_close(tree), pcore_test::kOk, kBadHandle);
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_tree_close(tree));
}

// ---- NULL outputs and NULL inputs -----------------------------------------------------------

TEST_F(TreeAbiErrorsTest, NullOutputsAreInvalid) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  const PcoreTreeOptions options = tree_options();
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, (pcore_tree_options_init)(nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_max_key_bytes(4096, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, "t", 1, &options, nullptr));
  EXPECT_FALSE(tree_exists(store, "t")) << "a refused open created the tree";

  PcoreTree* tree = h.keep(open_tree(store, "t"));
  insert_keys(tree, 0, 20);
  const TreeState before = state_of(tree);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_len(tree, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_stats(tree, nullptr));
  // Too small (8: struct_size alone asks for nothing), or ending inside a field.
  for (const uint64_t size : {0u, 4u, 8u, 12u, 20u}) {
    SCOPED_TRACE("struct_size " + std::to_string(size));
    PcoreTreeStats small = pcore_test::sized<PcoreTreeStats>();
    small.struct_size = size;
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_stats(tree, &small));
    EXPECT_EQ(small.height, 0u);
  }
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_open(tree, nullptr));
  // NULL optional outputs are fine.
  PCORE_EXPECT_OK(pcore_tree_get(tree, key_of(3).data(), key_of(3).size(), nullptr, 0, nullptr));
  PCORE_EXPECT_OK(pcore_tree_remove(tree, "absent", 6, nullptr));
  PCORE_EXPECT_OK(pcore_tree_remove_pair(tree, "absent", 6, "v", 1, nullptr));

  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PcoreBytes k{reinterpret_cast<const uint8_t*>("x"), 77};
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_get(cursor, &k, nullptr));
  EXPECT_EQ(k.len, 77u) << "an output was written by a failed call";
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_get(cursor, nullptr, &k));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_get(cursor, nullptr, nullptr));
  EXPECT_EQ(k.len, 77u);
  EXPECT_EQ(state_of(tree), before);
}

TEST_F(TreeAbiErrorsTest, NullInputsWithALengthAreInvalid) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* out = reinterpret_cast<PcoreTree*>(uintptr_t{0x55});
  const PcoreTreeOptions options = tree_options();
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, nullptr, 3, &options, &out));
  EXPECT_EQ(out, reinterpret_cast<PcoreTree*>(uintptr_t{0x55}));
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  insert_keys(tree, 0, 20);
  const TreeState before = state_of(tree);
  uint64_t removed = 4242;
  size_t len = 4242;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_insert(tree, nullptr, 3, "v", 1));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_insert(tree, "k", 1, nullptr, 5));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_get(tree, nullptr, 3, nullptr, 0, &len));
  const std::string k3 = key_of(3);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_get(tree, k3.data(), k3.size(), nullptr, 8, &len));
  EXPECT_EQ(len, 4242u);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_remove(tree, nullptr, 3, &removed));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_remove_pair(tree, nullptr, 3, "v", 1, &removed));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_remove_pair(tree, "k", 1, nullptr, 3, &removed));
  EXPECT_EQ(removed, 4242u);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_bulk_load(tree, nullptr, nullptr, 3));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_seek(cursor, nullptr, 2));
  // A key longer than the tree takes (742 bytes on 4 KiB pages), as get and set_bounds say.
  const std::string too_long(743, 'k');
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_seek(cursor, too_long.data(), too_long.size()));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_get(tree, too_long.data(), too_long.size(), nullptr, 0, &len));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT,
               pcore_cursor_set_bounds(cursor, nullptr, 2, PCORE_BOUND_INCLUDED, nullptr, 0, PCORE_BOUND_UNBOUNDED));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT,
               pcore_cursor_set_bounds(cursor, nullptr, 0, PCORE_BOUND_UNBOUNDED, nullptr, 2, PCORE_BOUND_EXCLUDED));
  // Bad bound kinds.
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_cursor_set_bounds(cursor, "a", 1, 3, nullptr, 0, PCORE_BOUND_UNBOUNDED));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT,
               pcore_cursor_set_bounds(cursor, nullptr, 0, PCORE_BOUND_UNBOUNDED, "a", 1, UINT32_MAX));
  // NULL with length 0 is the empty key: legal.
  PCORE_EXPECT_OK(pcore_cursor_seek(cursor, nullptr, 0));
  PCORE_EXPECT_OK(pcore_cursor_set_bounds(cursor, nullptr, 0, PCORE_BOUND_UNBOUNDED, nullptr, 0, PCORE_BOUND_UNBOUNDED));
  EXPECT_EQ(state_of(tree), before);
  PCORE_EXPECT_OK(pcore_tree_insert(tree, nullptr, 0, nullptr, 0));
  size_t vlen = 99;
  PCORE_EXPECT_OK(pcore_tree_get(tree, nullptr, 0, nullptr, 0, &vlen));
  EXPECT_EQ(vlen, 0u);
}

// ---- keys and values over the limits --------------------------------------------------------

TEST_F(TreeAbiErrorsTest, KeyOverMaxKeyBytesIsInvalidAndChangesNothing) {
  size_t max4k = 0;
  PCORE_ASSERT_OK(pcore_tree_max_key_bytes(4096, &max4k));
  EXPECT_EQ(max4k, 742u);
  for (uint32_t page_bytes : {512u, 4096u, 65536u}) {
    SCOPED_TRACE("page size " + std::to_string(page_bytes));
    size_t max = 0;
    PCORE_ASSERT_OK(pcore_tree_max_key_bytes(page_bytes, &max));
    EXPECT_GE(max, 64u);
    Handles h;
    PcoreStore* store = h.keep(open_in_memory());
    for (uint32_t dup : {static_cast<uint32_t>(PCORE_DUP_UNIQUE), static_cast<uint32_t>(PCORE_DUP_OVERWRITE),
                         static_cast<uint32_t>(PCORE_DUP_MULTI)}) {
      SCOPED_TRACE("duplicates " + std::to_string(dup));
      PcoreTree* tree = h.keep(open_tree(store, "t" + std::to_string(dup), tree_options(page_bytes, dup)));
      insert_keys(tree, 0, 300);
      const std::string longest(max, 'L');
      PCORE_ASSERT_OK(pcore_tree_insert(tree, longest.data(), longest.size(), "v", 1));
      const TreeState before = state_of(tree);
      const std::string too_long(max + 1, 'L');
      const std::string much_too_long(page_bytes * 2, 'M');
      EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_insert(tree, too_long.data(), too_long.size(), "v", 1));
      EXPECT_FAILS(PCORE_INVALID_ARGUMENT,
                   pcore_tree_insert(tree, much_too_long.data(), much_too_long.size(), "v", 1));
      size_t vlen = 4242;
      EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_get(tree, too_long.data(), too_long.size(), nullptr, 0, &vlen));
      EXPECT_EQ(vlen, 4242u);
      // Removing a key that cannot be there: refused or "not removed", never a change.
      uint64_t removed = 0;
      EXPECT_STATUS_IN(pcore_tree_remove(tree, too_long.data(), too_long.size(), &removed), pcore_test::kOk,
                       kInvalid);
      EXPECT_EQ(removed, 0u);
      EXPECT_EQ(state_of(tree), before) << "a refused key changed the tree";
      PCORE_EXPECT_OK(pcore_tree_verify(tree));
    }
  }
  size_t out = 4242;
  for (uint32_t bad : {0u, 256u, 1000u, 4095u, 131072u}) {
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_max_key_bytes(bad, &out));
  }
  EXPECT_EQ(out, 4242u);
}

// A tree is anchored by a root named "btree:" and its name: 255 - 6 = 249 bytes at most. A
// length no buffer can have is TOO_LARGE, as everywhere a length is passed.
TEST_F(TreeAbiErrorsTest, TreeNamesOver249BytesAreInvalidAndImpossibleLengthsTooLarge) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  const std::string longest(249, 'n'), over(250, 'n');
  PcoreTree* tree = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(store, longest.data(), longest.size(), nullptr, &tree));
  h.keep(tree);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, over.data(), over.size(), nullptr, &tree));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_drop(store, over.data(), over.size()));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_tree_open(store, over.data(), SIZE_MAX, nullptr, &tree));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_tree_drop(store, over.data(), SIZE_MAX));
  PCORE_EXPECT_OK(pcore_tree_drop(store, longest.data(), longest.size()));
}

TEST_F(TreeAbiErrorsTest, ValueOverTheMultiLimitIsTooLarge) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "m", tree_options(4096, PCORE_DUP_MULTI)));
  insert_keys(tree, 0, 100);
  const TreeState before = state_of(tree);
  const std::string value(4096, 'v');  // a multi tree keeps values inline: at most page / 16
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_tree_insert(tree, "k", 1, value.data(), value.size()));
  EXPECT_EQ(state_of(tree), before);
  // A unique tree moves a large value to its own node.
  PcoreTree* unique = h.keep(open_tree(store, "u"));
  const std::string big(100000, 'b');
  PCORE_EXPECT_OK(pcore_tree_insert(unique, "k", 1, big.data(), big.size()));
  size_t len = 0;
  std::string back(big.size(), '\0');
  PCORE_EXPECT_OK(pcore_tree_get(unique, "k", 1, back.data(), back.size(), &len));
  EXPECT_EQ(len, big.size());
  EXPECT_EQ(back, big);
  // A short buffer gets a prefix and the full length.
  char prefix[4] = {};
  PCORE_EXPECT_OK(pcore_tree_get(unique, "k", 1, prefix, sizeof(prefix), &len));
  EXPECT_EQ(len, big.size());
  EXPECT_EQ(std::string(prefix, 4), "bbbb");
}

// ---- stats of a deep tree -------------------------------------------------------------------

// pcore_tree_stats reports every level: pages_per_level has a slot for each level a tree may
// have (PCORE_TREE_DEPTH_MAX), not the eight it had, which dropped a deeper tree's leaves.
TEST_F(TreeAbiErrorsTest, PagesPerLevelCoversATreeDeeperThanEightLevels) {
  static_assert(sizeof(PcoreTreeStats{}.pages_per_level) == PCORE_TREE_DEPTH_MAX * sizeof(uint64_t),
                "one slot per level a tree may have");
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTreeOptions options = tree_options(512);
  options.max_entries_per_page = 4;  // the smallest ceiling: narrow pages, a deep tree soon
  PcoreTree* tree = h.keep(open_tree(store, "deep", options));
  PcoreTreeStats stats = pcore_test::sized<PcoreTreeStats>();
  // A permutation of the keys: pages split half full, so the tree deepens fastest.
  for (uint32_t i = 0; i < 400000 && stats.height <= 8; ++i) {
    const uint32_t n = i * 2654435761u;
    const uint8_t key[4] = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                            static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
    PCORE_ASSERT_OK(pcore_tree_insert(tree, key, sizeof key, nullptr, 0));
    if (i % 1000 == 999) {
      PCORE_ASSERT_OK(pcore_tree_stats(tree, &stats));
    }
  }
  ASSERT_GT(stats.height, 8u) << "the tree did not grow deeper than eight levels";
  ASSERT_LE(stats.height, static_cast<uint64_t>(PCORE_TREE_DEPTH_MAX));
  uint64_t pages = 0;
  for (uint64_t level = 0; level < PCORE_TREE_DEPTH_MAX; ++level) {
    if (level < stats.height) {
      EXPECT_GT(stats.pages_per_level[level], 0u) << "level " << level << " of " << stats.height;
    } else {
      EXPECT_EQ(stats.pages_per_level[level], 0u) << "level " << level << " past the height";
    }
    pages += stats.pages_per_level[level];
  }
  EXPECT_EQ(stats.pages_per_level[0], 1u) << "one root";
  EXPECT_EQ(stats.pages_per_level[stats.height - 1], stats.leaf_pages) << "the last level is the leaves";
  EXPECT_EQ(pages, stats.pages);
  PCORE_EXPECT_OK(pcore_tree_verify(tree));
}

// ---- options --------------------------------------------------------------------------------

TEST_F(TreeAbiErrorsTest, BadOptionsAreInvalid) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  auto expect_refused = [&](PcoreTreeOptions options, const std::string& what) {
    SCOPED_TRACE(what);
    PcoreTree* out = reinterpret_cast<PcoreTree*>(uintptr_t{0x55});
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, "t", 1, &options, &out));
    EXPECT_EQ(out, reinterpret_cast<PcoreTree*>(uintptr_t{0x55}));
    EXPECT_FALSE(tree_exists(store, "t")) << "a refused open created the tree";
  };
  for (uint32_t page : {0u, 1u, 256u, 511u, 1000u, 3000u, 4095u, 4097u, 131072u, UINT32_MAX}) {
    expect_refused(tree_options(page), "page size " + std::to_string(page));
  }
  for (uint32_t dup : {3u, 7u, 255u, UINT32_MAX}) {
    expect_refused(tree_options(4096, dup), "duplicates " + std::to_string(dup));
  }
  for (uint32_t flags : {2u, 0x80u, 0x80000000u}) {
    PcoreTreeOptions options = tree_options();
    options.flags = flags;
    expect_refused(options, "flags " + std::to_string(flags));
  }
  for (uint64_t size : {0u, 1u, 3u, 4u, 12u, 20u}) {
    PcoreTreeOptions options = tree_options();
    options.struct_size = size;
    expect_refused(options, "struct_size " + std::to_string(size));
  }
  // NULL options: the defaults. A short struct_size (an older header): fields past it default.
  PcoreTree* t = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(store, "defaults", 8, nullptr, &t));
  h.keep(t);
  PcoreTreeStats stats = pcore_test::sized<PcoreTreeStats>();
  PCORE_ASSERT_OK(pcore_tree_stats(t, &stats));
  EXPECT_EQ(stats.page_bytes, 4096u);
  PcoreTreeOptions old = tree_options(8192, PCORE_DUP_MULTI);
  old.struct_size = static_cast<uint32_t>(offsetof(PcoreTreeOptions, duplicates));  // only page_bytes
  PCORE_ASSERT_OK(pcore_tree_open(store, "old", 3, &old, &t));
  h.keep(t);
  PCORE_ASSERT_OK(pcore_tree_stats(t, &stats));
  EXPECT_EQ(stats.page_bytes, 8192u);
  PCORE_EXPECT_OK(pcore_tree_insert(t, "k", 1, "1", 1));
  EXPECT_FAILS(PCORE_DUPLICATE_KEY, pcore_tree_insert(t, "k", 1, "2", 1));  // duplicates defaulted to UNIQUE
}

TEST_F(TreeAbiErrorsTest, ReopenWithOtherOptionsIsInvalid) {
  ScratchDir scratch("tree-reopen");
  const std::string dir = scratch.sub("store");
  auto reverse = [](void*, const uint8_t* a, size_t al, const uint8_t* b, size_t bl) -> int32_t {
    const int c = std::memcmp(a, b, std::min(al, bl));
    return c != 0 ? -c : (al < bl ? 1 : (al > bl ? -1 : 0));
  };
  PcoreTreeOptions custom = tree_options();
  custom.compare = reverse;
  auto expect_mismatches_refused = [&](PcoreStore* store, const char* when) {
    SCOPED_TRACE(when);
    PcoreTree* out = reinterpret_cast<PcoreTree*>(uintptr_t{0x55});
    for (uint32_t page : {512u, 8192u, 65536u}) {
      const PcoreTreeOptions o = tree_options(page);
      EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, "plain", 5, &o, &out));
    }
    for (uint32_t dup : {static_cast<uint32_t>(PCORE_DUP_OVERWRITE), static_cast<uint32_t>(PCORE_DUP_MULTI)}) {
      const PcoreTreeOptions o = tree_options(4096, dup);
      EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, "plain", 5, &o, &out));
    }
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, "plain", 5, &custom, &out));
    const PcoreTreeOptions no_comparator = tree_options();
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_open(store, "custom", 6, &no_comparator, &out));
    EXPECT_EQ(out, reinterpret_cast<PcoreTree*>(uintptr_t{0x55}));
  };
  {
    Handles h;
    PcoreStore* store = h.keep(open_dir(dir));
    PcoreTree* plain = h.keep(open_tree(store, "plain"));
    PcoreTree* with_order = h.keep(open_tree(store, "custom", custom));
    insert_keys(plain, 0, 200);
    insert_keys(with_order, 0, 200);
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
    expect_mismatches_refused(store, "while open");
    PCORE_EXPECT_OK(pcore_tree_verify(plain));
    uint64_t len = 0;
    PCORE_EXPECT_OK(pcore_tree_len(plain, &len));
    EXPECT_EQ(len, 200u);
  }
  Handles h;
  PcoreStore* store = h.keep(open_dir(dir));
  expect_mismatches_refused(store, "after reopen");
  PcoreTree* plain = h.keep(open_tree(store, "plain"));
  PcoreTree* with_order = h.keep(open_tree(store, "custom", custom));
  EXPECT_EQ(scan(plain).size(), 200u);
  const Pairs reversed = scan(with_order);
  ASSERT_EQ(reversed.size(), 200u);
  EXPECT_EQ(reversed.front().first, key_of(199));
  PCORE_EXPECT_OK(pcore_tree_verify(plain));
  PCORE_EXPECT_OK(pcore_tree_verify(with_order));
}

TEST_F(TreeAbiErrorsTest, NoCreateOnAMissingTreeIsNotFound) {
  ScratchDir scratch("tree-nocreate");
  const std::string dir = scratch.sub("store");
  {
    Handles h;
    PcoreStore* store = h.keep(open_dir(dir));
    PcoreTreeOptions options = tree_options();
    options.flags = PCORE_TREE_NO_CREATE;
    PcoreTree* out = reinterpret_cast<PcoreTree*>(uintptr_t{0x55});
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_tree_open(store, "missing", 7, &options, &out));
    EXPECT_EQ(out, reinterpret_cast<PcoreTree*>(uintptr_t{0x55}));
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_tree_open(store, "", 0, &options, &out));
    // Still missing afterwards; an existing one opens.
    EXPECT_FALSE(tree_exists(store, "missing"));
    h.keep(open_tree(store, "present"));
    EXPECT_TRUE(tree_exists(store, "present"));
    // A named root that is not a tree is not one.
    PCORE_ASSERT_OK(pcore_root_set(store, "other", 5, 0, "x", 1));
    EXPECT_FALSE(tree_exists(store, "other"));
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  }
  // A read-only store opens existing trees and refuses to create one.
  Handles h;
  PcoreStore* store = h.keep(open_dir(dir, PCORE_OPEN_READ_ONLY));
  EXPECT_TRUE(tree_exists(store, "present"));
  PcoreTree* out = nullptr;
  const PcoreTreeOptions options = tree_options();
  EXPECT_FAILS(PCORE_READ_ONLY, pcore_tree_open(store, "new", 3, &options, &out));
  PcoreTree* present = h.keep(open_tree(store, "present"));
  EXPECT_FAILS(PCORE_READ_ONLY, pcore_tree_insert(present, "k", 1, "v", 1));
}

TEST_F(TreeAbiErrorsTest, UncommittedTreeIsGoneAfterCloseAndReopen) {
  ScratchDir scratch("tree-uncommitted");
  const std::string dir = scratch.sub("store");
  {
    Handles h;
    PcoreStore* store = h.keep(open_dir(dir));
    PcoreTree* kept = h.keep(open_tree(store, "kept"));
    insert_keys(kept, 0, 10);
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
    PcoreTree* dropped = h.keep(open_tree(store, "dropped"));  // created, never committed
    insert_keys(dropped, 0, 10);
    insert_keys(kept, 10, 20);  // never committed
  }
  Handles h;
  PcoreStore* store = h.keep(open_dir(dir));
  PcoreTree* kept = h.keep(open_tree(store, "kept"));
  uint64_t len = 0;
  PCORE_EXPECT_OK(pcore_tree_len(kept, &len));
  EXPECT_EQ(len, 10u);
  PCORE_EXPECT_OK(pcore_tree_verify(kept));
  // pcore_tree_open: "a created tree is durable at the store's next commit"; close drops
  // uncommitted work. The tree must be gone, not a dangling anchor.
  EXPECT_FALSE(tree_exists(store, "dropped")) << "an uncommitted tree survived the close";
  PcoreTree* dropped = h.keep(open_tree(store, "dropped"));
  if (dropped != nullptr) {
    PCORE_EXPECT_OK(pcore_tree_verify(dropped));
    PCORE_EXPECT_OK(pcore_tree_insert(dropped, "k", 1, "v", 1));
  }
}

// ---- cursors --------------------------------------------------------------------------------

TEST_F(TreeAbiErrorsTest, CursorIsStaleAfterAChangeUntilRepositioned) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  PcoreTree* other = h.keep(open_tree(store, "other"));
  insert_keys(tree, 0, 500);
  insert_keys(other, 0, 10);
  PcoreCursor* cursor = nullptr;
  PcoreCursor* other_cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_open(other, &other_cursor));
  h.keep(cursor);
  h.keep(other_cursor);
  PCORE_ASSERT_OK(pcore_cursor_first(other_cursor));

  const std::string k100 = key_of(100);
  const std::string k200 = key_of(200);
  const std::vector<std::pair<std::string, std::function<void()>>> changes = {
      {"insert", [&] { PCORE_ASSERT_OK(pcore_tree_insert(tree, "new", 3, "v", 1)); }},
      {"remove", [&] { PCORE_ASSERT_OK(pcore_tree_remove(tree, "new", 3, nullptr)); }},
      {"remove_pair",
       [&] {
         const std::string v = value_of(200);
         uint64_t removed = 0;
         PCORE_ASSERT_OK(pcore_tree_remove_pair(tree, k200.data(), k200.size(), v.data(), v.size(), &removed));
         ASSERT_EQ(removed, 1u);
       }},
      {"insert causing splits", [&] { insert_keys(tree, 1000, 1400); }},
  };
  for (const auto& [what, change] : changes) {
    SCOPED_TRACE(what);
    PCORE_ASSERT_OK(pcore_cursor_seek(cursor, k100.data(), k100.size()));
    PcoreBytes k{};
    PcoreBytes v{};
    PCORE_ASSERT_OK(pcore_cursor_get(cursor, &k, &v));
    ASSERT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), k100);
    change();
    PcoreBytes k2{reinterpret_cast<const uint8_t*>("x"), 77};
    PcoreBytes v2{reinterpret_cast<const uint8_t*>("y"), 88};
    EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_get(cursor, &k2, &v2));
    EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_next(cursor));
    EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_prev(cursor));
    EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_get(cursor, &k2, &v2));  // still stale: not repositioned
    EXPECT_EQ(k2.len, 77u);
    EXPECT_EQ(v2.len, 88u);
    // A cursor on another tree is not affected.
    PCORE_EXPECT_OK(pcore_cursor_get(other_cursor, &k2, &v2));
    // Positioning again makes it usable.
    PCORE_EXPECT_OK(pcore_cursor_seek(cursor, k100.data(), k100.size()));
    PCORE_EXPECT_OK(pcore_cursor_get(cursor, &k2, &v2));
    PCORE_EXPECT_OK(pcore_cursor_next(cursor));
  }
  // first and last reposition too.
  PCORE_ASSERT_OK(pcore_tree_insert(tree, "x", 1, "v", 1));
  PcoreBytes k{};
  PcoreBytes v{};
  EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  PCORE_EXPECT_OK(pcore_cursor_get(cursor, &k, &v));
  PCORE_ASSERT_OK(pcore_tree_insert(tree, "y", 1, "v", 1));
  PCORE_EXPECT_OK(pcore_cursor_last(cursor));
  PCORE_EXPECT_OK(pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), "y");
}

TEST_F(TreeAbiErrorsTest, FailedChangesLeaveCursorsValid) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  insert_keys(tree, 0, 100);
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  const std::string k5 = key_of(5);
  PCORE_ASSERT_OK(pcore_cursor_seek(cursor, k5.data(), k5.size()));
  // A refused duplicate, a refused long key, a remove of nothing: the tree did not change.
  EXPECT_FAILS(PCORE_DUPLICATE_KEY, pcore_tree_insert(tree, k5.data(), k5.size(), "v", 1));
  const std::string too_long(1000, 'L');
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_tree_insert(tree, too_long.data(), too_long.size(), "v", 1));
  uint64_t removed = 1;
  PCORE_ASSERT_OK(pcore_tree_remove(tree, "absent", 6, &removed));
  EXPECT_EQ(removed, 0u);
  PcoreBytes k{};
  PcoreBytes v{};
  PCORE_EXPECT_OK(pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), k5);
}

TEST_F(TreeAbiErrorsTest, CursorGetPastTheEndIsNotFound) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  PcoreBytes k{reinterpret_cast<const uint8_t*>("x"), 77};
  PcoreBytes v{reinterpret_cast<const uint8_t*>("y"), 88};
  // Unpositioned, and on an empty tree.
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_last(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_next(cursor));
  PCORE_EXPECT_OK(pcore_cursor_prev(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(k.len, 77u);
  EXPECT_EQ(v.len, 88u);

  insert_keys(tree, 0, 1000);
  // Past the last entry, and further.
  PCORE_ASSERT_OK(pcore_cursor_last(cursor));
  PCORE_ASSERT_OK(pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), key_of(999));
  PCORE_EXPECT_OK(pcore_cursor_next(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_next(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  // Before the first entry.
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PCORE_EXPECT_OK(pcore_cursor_prev(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_prev(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  // A seek past every key.
  PCORE_EXPECT_OK(pcore_cursor_seek(cursor, "zzz", 3));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  // Bounds that hold no key; and leaving the bounds by moving.
  const std::string lo = key_of(10);
  const std::string hi = key_of(12);
  PCORE_ASSERT_OK(pcore_cursor_set_bounds(cursor, "a", 1, PCORE_BOUND_INCLUDED, "b", 1, PCORE_BOUND_INCLUDED));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_last(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_ASSERT_OK(pcore_cursor_set_bounds(cursor, lo.data(), lo.size(), PCORE_BOUND_EXCLUDED, hi.data(), hi.size(),
                                          PCORE_BOUND_INCLUDED));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PCORE_ASSERT_OK(pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), key_of(11));
  PCORE_ASSERT_OK(pcore_cursor_next(cursor));
  PCORE_ASSERT_OK(pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), key_of(12));
  PCORE_ASSERT_OK(pcore_cursor_next(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_ASSERT_OK(pcore_cursor_last(cursor));
  PCORE_ASSERT_OK(pcore_cursor_prev(cursor));
  PCORE_ASSERT_OK(pcore_cursor_prev(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));  // below an excluded lower bound
  // Inverted bounds: nothing.
  PCORE_ASSERT_OK(pcore_cursor_set_bounds(cursor, hi.data(), hi.size(), PCORE_BOUND_INCLUDED, lo.data(), lo.size(),
                                          PCORE_BOUND_INCLUDED));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_last(cursor));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_cursor_get(cursor, &k, &v));
}

// A cursor must not outlive the tree handle it was opened through: every call on it but its
// close answers BAD_HANDLE, repositioning too. A cursor opened through another handle of the
// same tree is only stale, and positions again.
TEST_F(TreeAbiErrorsTest, ClosingTheTreeHandleRefusesItsCursors) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = open_tree(store, "t");
  PcoreTree* other = h.keep(open_tree(store, "t"));
  insert_keys(tree, 0, 100);
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PcoreCursor* through_other = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(other, &through_other));
  h.keep(through_other);
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(through_other));
  PCORE_ASSERT_OK(pcore_tree_close(tree));
  PcoreBytes k{};
  PcoreBytes v{};
  const std::string key = key_of(5);
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_get(cursor, &k, &v));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_next(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_prev(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_first(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_last(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_seek(cursor, key.data(), key.size()));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_set_bounds(cursor, nullptr, 0, PCORE_BOUND_UNBOUNDED, nullptr, 0,
                                                         PCORE_BOUND_UNBOUNDED));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_first(cursor));  // still, after all that
  PCORE_EXPECT_OK(pcore_cursor_close(cursor));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_close(cursor));

  EXPECT_FAILS(PCORE_STALE_CURSOR, pcore_cursor_get(through_other, &k, &v));
  PCORE_EXPECT_OK(pcore_cursor_first(through_other));
  PCORE_EXPECT_OK(pcore_cursor_get(through_other, &k, &v));
  EXPECT_EQ(std::string(static_cast<const char*>(static_cast<const void*>(k.data)), k.len), key_of(0));
}

// A tree whose store is closed can no longer be read: opening a cursor on it answers
// BAD_HANDLE (the status of a closed store's handles) and writes no cursor.
TEST_F(TreeAbiErrorsTest, CursorOpenOnATreeOfAClosedStoreIsBadHandle) {
  for (const bool on_disk : {false, true}) {
    SCOPED_TRACE(on_disk ? "directory store" : "in-memory store");
    PcoreStore* store = on_disk ? open_dir(scratch_.sub("closed-store")) : open_in_memory();
    ASSERT_NE(store, nullptr);
    PcoreTree* tree = open_tree(store, "t");
    insert_keys(tree, 0, 10);
    PCORE_ASSERT_OK(pcore_store_close(store));
    PcoreCursor* cursor = reinterpret_cast<PcoreCursor*>(uintptr_t{0x99});
    EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_cursor_open(tree, &cursor));
    EXPECT_EQ(cursor, reinterpret_cast<PcoreCursor*>(uintptr_t{0x99}));
    EXPECT_STATUS_IN(pcore_tree_close(tree), pcore_test::kOk, kBadHandle);
  }
}

// fork() while other threads are inside tree and cursor calls: the child gets handle tables
// no vanished thread holds, so it can open, use and close its own store, tree and cursor
// (a stuck lock would hang it: an alarm ends it then), while the parent's threads go on.
TEST_F(TreeAbiErrorsTest, ForkWhileOtherThreadsUseHandlesLeavesTheChildUsableTables) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  PcoreTree* tree = h.keep(open_tree(store, "t"));
  insert_keys(tree, 0, 2000);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      PcoreCursor* cursor = nullptr;
      if (pcore_cursor_open(tree, &cursor) != pcore_test::kOk) return;
      uint32_t i = static_cast<uint32_t>(r) * 97;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::string k = key_of(i++ % 2000);
        if (pcore_tree_get(tree, k.data(), k.size(), nullptr, 0, nullptr) == pcore_test::kOk &&
            pcore_cursor_seek(cursor, k.data(), k.size()) == pcore_test::kOk) {
          calls.fetch_add(1, std::memory_order_relaxed);
        }
        (void)pcore_cursor_next(cursor);
      }
      pcore_cursor_close(cursor);
    });
  }
  while (calls.load() < 1000) std::this_thread::yield();

  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("fork " + std::to_string(round));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(20);  // a table lock left held would hang the child: end it instead
      PcoreStoreOptions options = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
      PcoreStore* own = nullptr;
      if (pcore_store_open(nullptr, &options, &own) != pcore_test::kOk) _exit(10);
      PcoreTree* own_tree = nullptr;
      const PcoreTreeOptions topt = tree_options();
      if (pcore_tree_open(own, "t", 1, &topt, &own_tree) != pcore_test::kOk) _exit(11);
      if (pcore_tree_insert(own_tree, "k", 1, "v", 1) != pcore_test::kOk) _exit(12);
      PcoreCursor* own_cursor = nullptr;
      if (pcore_cursor_open(own_tree, &own_cursor) != pcore_test::kOk) _exit(13);
      if (pcore_cursor_first(own_cursor) != pcore_test::kOk) _exit(14);
      if (pcore_tree_get(tree, "k", 1, nullptr, 0, nullptr) != kBadHandle) _exit(15);
      if (pcore_cursor_close(own_cursor) != pcore_test::kOk) _exit(16);
      if (pcore_tree_close(own_tree) != pcore_test::kOk) _exit(17);
      if (pcore_store_close(own) != pcore_test::kOk) _exit(18);
      _exit(0);
    }
    int wait_status = 0;
    ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
    EXPECT_TRUE(WIFEXITED(wait_status)) << "the child hung or died: signal "
                                        << (WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0);
    if (WIFEXITED(wait_status)) {
      EXPECT_EQ(WEXITSTATUS(wait_status), 0);
    }
    // The parent's own calls go on, from this thread too.
    PcoreCursor* cursor = nullptr;
    PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
    PCORE_EXPECT_OK(pcore_cursor_first(cursor));
    PCORE_EXPECT_OK(pcore_cursor_close(cursor));
  }
  stop = true;
  for (std::thread& t : readers) t.join();
}

// ---- host comparators -----------------------------------------------------------------------

struct OrderCtx {
  int mode = 0;  // 0 bytewise, 1 reverse, 2 random, 3 always "less"
  uint64_t calls = 0;
  uint64_t rng = 1;
};

int32_t host_compare(void* ctx, const uint8_t* a, size_t al, const uint8_t* b, size_t bl) {
  auto* c = static_cast<OrderCtx*>(ctx);
  ++c->calls;
  int32_t bytewise = 0;
  const int m = std::memcmp(a, b, std::min(al, bl));
  bytewise = m != 0 ? (m < 0 ? -1 : 1) : (al < bl ? -1 : (al > bl ? 1 : 0));
  switch (c->mode) {
    case 1:
      return -bytewise;
    case 2:
      return static_cast<int32_t>(pcore_test::splitmix64(c->rng) % 3) - 1;
    case 3:
      return -1;
    default:
      return bytewise;
  }
}

TEST_F(TreeAbiErrorsTest, ReverseComparatorGivesReverseScans) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  OrderCtx ctx;
  ctx.mode = 1;
  PcoreTreeOptions options = tree_options(512);  // small pages: many levels
  options.compare = host_compare;
  options.compare_ctx = &ctx;
  PcoreTree* tree = h.keep(open_tree(store, "rev", options));
  pcore_test::Rng rng(7);
  std::vector<uint32_t> order(3000);
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng.next() % (i + 1)]);
  for (uint32_t i : order) {
    const std::string k = key_of(i);
    const std::string v = value_of(i);
    PCORE_ASSERT_OK(pcore_tree_insert(tree, k.data(), k.size(), v.data(), v.size()));
  }
  EXPECT_GT(ctx.calls, 0u) << "the comparator (and its ctx) was used";
  PCORE_EXPECT_OK(pcore_tree_verify(tree));
  const Pairs all = scan(tree);
  ASSERT_EQ(all.size(), 3000u);
  for (uint32_t i = 0; i < 3000; ++i) {
    ASSERT_EQ(all[i].first, key_of(2999 - i)) << "position " << i;
    ASSERT_EQ(all[i].second, value_of(2999 - i));
  }
  // Lookups, bounds and seeks follow the host's order.
  size_t len = 0;
  char buf[32];
  const std::string k7 = key_of(7);
  PCORE_EXPECT_OK(pcore_tree_get(tree, k7.data(), k7.size(), buf, sizeof(buf), &len));
  EXPECT_EQ(std::string(buf, len), value_of(7));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  h.keep(cursor);
  const std::string k20 = key_of(20);
  const std::string k10 = key_of(10);
  PCORE_ASSERT_OK(pcore_cursor_set_bounds(cursor, k20.data(), k20.size(), PCORE_BOUND_INCLUDED, k10.data(), k10.size(),
                                          PCORE_BOUND_EXCLUDED));
  std::vector<std::string> got;
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  PcoreBytes k{};
  PcoreBytes v{};
  while (pcore_cursor_get(cursor, &k, &v) == pcore_test::kOk) {
    got.emplace_back(reinterpret_cast<const char*>(k.data), k.len);
    PCORE_ASSERT_OK(pcore_cursor_next(cursor));
  }
  std::vector<std::string> expected;
  for (uint32_t i = 20; i > 10; --i) expected.push_back(key_of(i));
  EXPECT_EQ(got, expected);
  PCORE_ASSERT_OK(pcore_cursor_seek(cursor, k20.data(), k20.size()));
  PCORE_ASSERT_OK(pcore_cursor_next(cursor));
  PCORE_ASSERT_OK(pcore_cursor_get(cursor, &k, &v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(k.data), k.len), key_of(19));
  // Removing half keeps the order (merges and borrows use the comparator too).
  for (uint32_t i = 0; i < 3000; i += 2) {
    const std::string key = key_of(i);
    uint64_t removed = 0;
    PCORE_ASSERT_OK(pcore_tree_remove(tree, key.data(), key.size(), &removed));
    ASSERT_EQ(removed, 1u);
  }
  PCORE_EXPECT_OK(pcore_tree_verify(tree));
  const Pairs half = scan(tree);
  ASSERT_EQ(half.size(), 1500u);
  EXPECT_EQ(half.front().first, key_of(2999));
  EXPECT_EQ(half.back().first, key_of(1));
}

TEST_F(TreeAbiErrorsTest, ComparatorThatIsNotATotalOrderIsDetectedNeverACrash) {
  Handles h;
  PcoreStore* store = h.keep(open_in_memory());
  // 1. An order that changes under the tree (a host bug): verify names the damage.
  {
    OrderCtx ctx;
    PcoreTreeOptions options = tree_options(512);
    options.compare = host_compare;
    options.compare_ctx = &ctx;
    PcoreTree* tree = h.keep(open_tree(store, "flip", options));
    insert_keys(tree, 0, 2000);
    PCORE_EXPECT_OK(pcore_tree_verify(tree));
    ctx.mode = 1;
    EXPECT_FAILS(PCORE_CORRUPT, pcore_tree_verify(tree));
    // Operations go on without crashing; whatever they answer is a status.
    for (uint32_t i = 0; i < 200; ++i) {
      const std::string k = key_of(i * 7);
      EXPECT_STATUS_IN(pcore_tree_get(tree, k.data(), k.size(), nullptr, 0, nullptr), pcore_test::kOk, kNotFound,
                       kCorrupt);
      EXPECT_STATUS_IN(pcore_tree_insert(tree, k.data(), k.size(), "v", 1), pcore_test::kOk, kDuplicate, kCorrupt);
    }
    (void)scan(tree);
  }
  // 2. A random answer at every call, 3. "always less": no order at all.
  for (int mode : {2, 3}) {
    SCOPED_TRACE(mode == 2 ? "random comparator" : "always-less comparator");
    OrderCtx ctx;
    ctx.mode = mode;
    PcoreTreeOptions options = tree_options(512);
    options.compare = host_compare;
    options.compare_ctx = &ctx;
    const std::string name = "chaos" + std::to_string(mode);
    PcoreTree* tree = h.keep(open_tree(store, name, options));
    for (uint32_t i = 0; i < 3000; ++i) {
      const std::string k = key_of(i % 1500);
      EXPECT_STATUS_IN(pcore_tree_insert(tree, k.data(), k.size(), "v", 1), pcore_test::kOk, kDuplicate, kCorrupt);
      if (i % 5 == 0) {
        EXPECT_STATUS_IN(pcore_tree_remove(tree, k.data(), k.size(), nullptr), pcore_test::kOk, kCorrupt);
      }
      EXPECT_STATUS_IN(pcore_tree_get(tree, k.data(), k.size(), nullptr, 0, nullptr), pcore_test::kOk, kNotFound,
                       kCorrupt);
    }
    EXPECT_STATUS_IN(pcore_tree_verify(tree), pcore_test::kOk, kCorrupt);
    PcoreTreeStats stats = pcore_test::sized<PcoreTreeStats>();
    EXPECT_STATUS_IN(pcore_tree_stats(tree, &stats), pcore_test::kOk, kCorrupt);
    PcoreCursor* cursor = nullptr;
    PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
    h.keep(cursor);
    EXPECT_STATUS_IN(pcore_cursor_seek(cursor, "key", 3), pcore_test::kOk, kCorrupt);
    int steps = 0;
    int32_t status = pcore_cursor_first(cursor);
    while (status == pcore_test::kOk && steps++ < 10000) {
      PcoreBytes k{};
      PcoreBytes v{};
      status = pcore_cursor_get(cursor, &k, &v);
      if (status == pcore_test::kOk) status = pcore_cursor_next(cursor);
    }
    EXPECT_LT(steps, 10000) << "a cursor went on for ever";
    EXPECT_STATUS_IN(status, kNotFound, kCorrupt);
  }
}

// A struct_size that ends inside the comparator pointer must not leave half a host pointer to
// be called. Run in a child process: a crash there fails this test instead of the suite.
int partial_comparator_child_main(const std::vector<std::string>&) {
  PcoreStore* store = open_in_memory();
  PcoreTreeOptions options = tree_options();
  options.compare = host_compare;
  static OrderCtx ctx;
  options.compare_ctx = &ctx;
  options.struct_size = static_cast<uint32_t>(offsetof(PcoreTreeOptions, compare) + 4);
  PcoreTree* tree = nullptr;
  const int32_t status = pcore_tree_open(store, "t", 1, &options, &tree);
  if (status != pcore_test::kOk) {
    return status == kInvalid ? 0 : 10 + status;  // refused: fine
  }
  for (uint32_t i = 0; i < 200; ++i) {  // the half pointer would be called here
    const std::string k = key_of(i);
    if (pcore_tree_insert(tree, k.data(), k.size(), "v", 1) != pcore_test::kOk) return 2;
  }
  return pcore_tree_verify(tree) == pcore_test::kOk ? 0 : 3;
}
const pcore_test::ChildRegistrar kRegisterPartialComparator("tree-partial-comparator",
                                                            partial_comparator_child_main);

TEST_F(TreeAbiErrorsTest, StructSizeEndingInsideTheComparatorNeverCrashes) {
  const pid_t pid = pcore_test::spawn_child("tree-partial-comparator", {}, -1);
  ASSERT_GT(pid, 0);
  const int status = pcore_test::wait_child(pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "pcore_tree_open with struct_size = offsetof(compare) + 4 kept half of the "
                                       "comparator pointer and the tree called it: signal "
                                    << WTERMSIG(status);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "exit code " << WEXITSTATUS(status);
}

// ---- damaged tree pages ---------------------------------------------------------------------

TEST_F(TreeAbiErrorsTest, UndamagedCopyOfTheTreeVerifies) {
  ASSERT_NO_FATAL_FAILURE(make_damage_store());
  EXPECT_EQ(exercise(damaged("intact", [](std::vector<uint8_t>&) {})), pcore_test::kOk);
}

TEST_F(TreeAbiErrorsTest, DamagedLeafPageIsCorruptNeverACrash) {
  ASSERT_NO_FATAL_FAILURE(make_damage_store());
  using Damage = std::function<void(std::vector<uint8_t>&, size_t)>;
  const std::vector<std::pair<std::string, Damage>> cases = {
      {"garbage-page", [](std::vector<uint8_t>& b, size_t p) { std::fill(b.begin() + p, b.begin() + p + 4096, 0xA5); }},
      {"zeroed-page", [](std::vector<uint8_t>& b, size_t p) { std::fill(b.begin() + p, b.begin() + p + 4096, 0); }},
      {"unknown-type", [](std::vector<uint8_t>& b, size_t p) { b[p] = 0x77; }},
      {"internal-type", [](std::vector<uint8_t>& b, size_t p) { b[p] = 2; }},
      {"huge-count", [](std::vector<uint8_t>& b, size_t p) { b[p + 2] = 0xFF; b[p + 3] = 0xFF; }},
      {"cell-start-in-header",
       [](std::vector<uint8_t>& b, size_t p) { b[p + 4] = 3; b[p + 5] = 0; b[p + 6] = 0; b[p + 7] = 0; }},
      {"cell-start-past-end",
       [](std::vector<uint8_t>& b, size_t p) { b[p + 4] = 0xFF; b[p + 5] = 0xFF; b[p + 6] = 0; b[p + 7] = 0; }},
      {"slots-out-of-range",
       [](std::vector<uint8_t>& b, size_t p) {
         for (size_t s = p + 16; s < p + 16 + 2 * 20; s += 2) { b[s] = 0xFF; b[s + 1] = 0xFF; }
       }},
      {"slots-into-header",
       [](std::vector<uint8_t>& b, size_t p) {
         for (size_t s = p + 16; s < p + 16 + 2 * 20; s += 2) { b[s] = 2; b[s + 1] = 0; }
       }},
      {"cells-flipped",
       [](std::vector<uint8_t>& b, size_t p) {
         for (size_t i = p + 2048; i < p + 4096; i += 7) b[i] ^= 0xFF;
       }},
      {"varints-run-on",
       [](std::vector<uint8_t>& b, size_t p) {
         for (size_t i = p + 1024; i < p + 4096; ++i) b[i] |= 0x80;
       }},
  };
  for (const auto& [tag, damage] : cases) {
    SCOPED_TRACE(tag);
    const int32_t verify = exercise(damaged(tag, [&](std::vector<uint8_t>& b) {
      for (size_t block : marker_blocks_) damage(b, block);
    }));
    // Damage to the layout itself must be seen by verify (flipped cell bytes may by chance
    // still parse: then only "no crash" is required).
    if (tag != "cells-flipped" && tag != "varints-run-on") {
      EXPECT_TRUE(verify == kCorrupt || verify == -1) << "verify -> " << pcore_test::describe_status(verify);
    }
  }
}

TEST_F(TreeAbiErrorsTest, DamagedInternalPageIsCorruptNeverACrash) {
  ASSERT_NO_FATAL_FAILURE(make_damage_store());
  const size_t root = root_block_;
  const uint64_t self = root_id_;
  const std::vector<std::pair<std::string, std::function<void(std::vector<uint8_t>&)>>> cases = {
      {"child-id-unknown",
       [root](std::vector<uint8_t>& b) {
         const uint64_t id = (uint64_t{0xFFFFF} << 16) | 1;
         std::memcpy(&b[root + 8], &id, 8);
       }},
      {"child-id-zero", [root](std::vector<uint8_t>& b) { std::fill(b.begin() + root + 8, b.begin() + root + 16, 0); }},
      {"child-id-invalid",
       [root](std::vector<uint8_t>& b) { std::fill(b.begin() + root + 8, b.begin() + root + 16, 0xFF); }},
      {"child-is-the-page-itself", [root, self](std::vector<uint8_t>& b) { std::memcpy(&b[root + 8], &self, 8); }},
      {"children-garbled",
       [root](std::vector<uint8_t>& b) {
         for (size_t i = root + 8; i < root + 4096; i += 11) b[i] ^= 0x5A;
       }},
      {"huge-count", [root](std::vector<uint8_t>& b) { b[root + 2] = 0xFF; b[root + 3] = 0xFF; }},
      // An internal slot is a u16 cell offset and the separator's u64 prefix word, which
      // searches trust: a changed word may hide keys (NOT_FOUND), and verify must notice it.
      {"prefix-word-changed", [root](std::vector<uint8_t>& b) { b[root + 16 + 10 + 2] ^= 0x80; }},
      {"leaf-type-on-root", [root](std::vector<uint8_t>& b) { b[root] = 1; }},
      {"garbage-root", [root](std::vector<uint8_t>& b) { std::fill(b.begin() + root, b.begin() + root + 4096, 0xC3); }},
      {"every-internal-page-garbled",
       [this](std::vector<uint8_t>& b) {
         for (size_t page : internal_blocks_) {
           for (size_t i = page; i < page + 4096; i += 5) b[i] ^= 0x33;
         }
       }},
  };
  for (const auto& [tag, damage] : cases) {
    SCOPED_TRACE(tag);
    const int32_t verify = exercise(damaged(tag, damage));
    EXPECT_TRUE(verify == kCorrupt || verify == -1) << "verify -> " << pcore_test::describe_status(verify);
  }
}

}  // namespace
