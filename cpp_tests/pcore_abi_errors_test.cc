// AbiErrorsTest: every kind of bad input through the raw C API. Each failure must return its
// documented status, leave a message in pcore_last_error_message(), never crash, leave
// outputs unwritten (pcore_node_read clears its output) and leave the store as it was.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

constexpr uint8_t kKind = 5;


/// Closes a raw handle at scope exit.
struct Handle {
  PcoreStore* store = nullptr;
  Handle() = default;
  explicit Handle(PcoreStore* s) : store(s) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (store != nullptr) {
      pcore_store_close(store);
    }
  }
  PcoreStore* get() const { return store; }
  /// Closes now; returns the status.
  int32_t close() {
    PcoreStore* s = store;
    store = nullptr;
    return pcore_store_close(s);
  }
};

PcoreStoreOptions default_options() {
  PcoreStoreOptions options;
  pcore_store_options_init(&options);
  return options;
}

PcoreStore* open_in_memory() {
  PcoreStoreOptions options = default_options();
  options.flags = PCORE_OPEN_IN_MEMORY;
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(nullptr, &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
  return store;
}

PcoreStore* open_dir(const std::string& dir, uint32_t flags = 0,
                     uint32_t durability = PCORE_DURABILITY_STRICT) {
  PcoreStoreOptions options = default_options();
  options.flags = flags;
  options.durability = durability;
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(dir.c_str(), &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << dir << ": " << pcore_test::describe_status(status);
  return store;
}

uint64_t make_node(PcoreStore* store, size_t len, uint64_t seed) {
  PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
  EXPECT_EQ(pcore_node_allocate(store, len, kKind, &alloc), pcore_test::kOk);
  std::vector<uint8_t> bytes = pcore_test::make_pattern(len, seed);
  EXPECT_EQ(pcore_node_publish(store, alloc.id, bytes.data(), len, nullptr), pcore_test::kOk);
  return alloc.id;
}

::testing::AssertionResult node_holds(PcoreStore* store, uint64_t id, size_t len, uint64_t seed) {
  PcoreNodeBytes bytes{};
  const int32_t status = pcore_node_read(store, id, &bytes);
  if (status != pcore_test::kOk) {
    return ::testing::AssertionFailure() << "read: " << pcore_test::describe_status(status);
  }
  if (bytes.len != len) {
    return ::testing::AssertionFailure() << "len " << bytes.len << ", expected " << len;
  }
  if (!pcore_test::matches_pattern(bytes.data, len, seed)) {
    return ::testing::AssertionFailure() << "bytes differ";
  }
  return ::testing::AssertionSuccess();
}

// Child: opens the store, commits 4 batches of nodes and dies without closing, leaving a log.
int commit_and_die_main(const std::vector<std::string>& args) {
  if (args.size() != 1) return 2;
  PcoreStoreOptions options = default_options();
  options.durability = PCORE_DURABILITY_STRICT;
  PcoreStore* store = nullptr;
  if (pcore_store_open(args[0].c_str(), &options, &store) != pcore_test::kOk) return 3;
  for (uint64_t batch = 0; batch < 4; ++batch) {
    for (uint64_t i = 0; i < 25; ++i) {
      PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
      if (pcore_node_allocate(store, 100, kKind, &alloc) != pcore_test::kOk) return 4;
      pcore_test::fill_pattern(alloc.writable, 100, 1000 + batch * 25 + i);
      if (pcore_node_publish(store, alloc.id, alloc.writable, 100, nullptr) != pcore_test::kOk) return 5;
    }
    if (pcore_store_commit(store, nullptr) != pcore_test::kOk) return 6;
  }
  _exit(0);  // no close: the commits live in the log only
}
const pcore_test::ChildRegistrar kRegisterCommitAndDie("commit-and-die", commit_and_die_main);

class AbiErrorsTest : public ::testing::Test {
 protected:
  // A cleanly closed store with 300 nodes and a root: meta, a checkpoint and class files.
  void make_clean_store() {
    clean_ = scratch_.sub("clean");
    PcoreStore* store = open_dir(clean_);
    ASSERT_NE(store, nullptr);
    for (uint64_t i = 0; i < 300; ++i) {
      ids_.push_back(make_node(store, 100 + (i % 7) * 300, i));
    }
    PCORE_ASSERT_OK(pcore_root_set(store, "root", 4, ids_[0], "meta", 4));
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
    PCORE_ASSERT_OK(pcore_store_close(store));
  }

  // A copy of the clean store with file `name` changed by damage().
  template <typename Damage>
  std::string damaged_copy(const std::string& from, const std::string& name, Damage damage) {
    const std::string to = scratch_.sub("damaged-" + std::to_string(++copies_));
    pcore_test::copy_dir(from, to);
    std::vector<uint8_t> bytes = pcore_test::read_file(to + "/" + name);
    damage(bytes);
    pcore_test::write_file(to + "/" + name, bytes);
    return to;
  }

  // Opening must fail with CORRUPT and a message naming the file.
  void expect_corrupt(const std::string& dir, const std::string& file) {
    PcoreStoreOptions options = default_options();
    PcoreStore* out = nullptr;
    const int32_t status = pcore_store_open(dir.c_str(), &options, &out);
    const std::string message = pcore_last_error_message();
    EXPECT_EQ(status, static_cast<int32_t>(PCORE_CORRUPT))
        << file << ": " << pcore_test::describe_status(status);
    EXPECT_NE(message.find(file), std::string::npos) << "message does not name " << file << ": " << message;
    EXPECT_NE(message.find("offset"), std::string::npos) << "message does not give the offset: " << message;
    if (out != nullptr) pcore_store_close(out);
    // Read-only opens see the same damage.
    options.flags = PCORE_OPEN_READ_ONLY;
    out = nullptr;
    EXPECT_EQ(pcore_store_open(dir.c_str(), &options, &out), static_cast<int32_t>(PCORE_CORRUPT)) << file;
    if (out != nullptr) pcore_store_close(out);
  }

  // Where the first `frames` commit frames of a log end (each: a 32-byte header whose bytes
  // 4..8 give the body's length). A reused log goes on past its frames with an earlier
  // generation's, so damage meant for the frames is placed by them, not by the file's size.
  static size_t frames_end(const std::vector<uint8_t>& log, int frames) {
    size_t at = 0;
    for (int i = 0; i < frames && at + 32 <= log.size(); ++i) {
      uint32_t body = 0;
      std::memcpy(&body, log.data() + at + 4, sizeof body);
      at += 32 + body;
    }
    return at;
  }

  std::string first_file(const std::string& dir, const std::string& prefix, const std::string& suffix) {
    std::string best;
    size_t best_size = 0;
    for (const std::string& name : pcore_test::list_files(dir)) {
      if (name.rfind(prefix, 0) == 0 && name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        const size_t size = pcore_test::read_file(dir + "/" + name).size();
        if (best.empty() || size > best_size) {
          best = name;
          best_size = size;
        }
      }
    }
    return best;
  }

  ScratchDir scratch_{"abi"};
  std::string clean_;
  std::vector<uint64_t> ids_;
  int copies_ = 0;
};

// ---- version, names, messages ---------------------------------------------------------------

TEST_F(AbiErrorsTest, AbiVersionMatchesHeader) {
  EXPECT_EQ(pcore_abi_version() >> 16, static_cast<uint32_t>(PCORE_ABI_VERSION) >> 16);
  EXPECT_GE(pcore_abi_version() & 0xFFFFu, static_cast<uint32_t>(PCORE_ABI_VERSION) & 0xFFFFu);
  EXPECT_EQ(static_cast<uint32_t>(PCORE_ABI_VERSION) >> 16, 2u) << "ABI major 2";
}

TEST_F(AbiErrorsTest, StatusNameOfEveryCode) {
  const std::map<int32_t, const char*> names = {
      {PCORE_OK, "PCORE_OK"},
      {PCORE_INVALID_ARGUMENT, "PCORE_INVALID_ARGUMENT"},
      {PCORE_NOT_FOUND, "PCORE_NOT_FOUND"},
      {PCORE_TOO_LARGE, "PCORE_TOO_LARGE"},
      {PCORE_READ_ONLY, "PCORE_READ_ONLY"},
      {PCORE_BUSY, "PCORE_BUSY"},
      {PCORE_CORRUPT, "PCORE_CORRUPT"},
      {PCORE_NO_SPACE, "PCORE_NO_SPACE"},
      {PCORE_IO_ERROR, "PCORE_IO_ERROR"},
      {PCORE_DOUBLE_FREE, "PCORE_DOUBLE_FREE"},
      {PCORE_BAD_HANDLE, "PCORE_BAD_HANDLE"},
      {PCORE_PANIC, "PCORE_PANIC"},
      {PCORE_INTERNAL, "PCORE_INTERNAL"},
      {PCORE_POISONED, "PCORE_POISONED"},
      {PCORE_VERSION_MISMATCH, "PCORE_VERSION_MISMATCH"},
      {PCORE_LIMIT, "PCORE_LIMIT"},
  };
  // The numbers are stable.
  EXPECT_EQ(names.size(), 16u);
  int32_t expected_code = 0;
  for (const auto& [code, name] : names) {
    EXPECT_EQ(code, expected_code++);
    const char* got = pcore_status_name(code);
    ASSERT_NE(got, nullptr) << code;
    EXPECT_STREQ(got, name) << code;
    EXPECT_EQ(pcore_status_name(code), got) << "a static string";
  }
  for (int32_t unknown : {16, 17, 100, 9999, -1, INT32_MIN, INT32_MAX}) {
    const char* got = pcore_status_name(unknown);
    ASSERT_NE(got, nullptr) << unknown;
    EXPECT_STRNE(got, "") << unknown;
    for (const auto& entry : names) {
      EXPECT_STRNE(got, entry.second) << unknown;
    }
  }
}

TEST_F(AbiErrorsTest, LastErrorMessageIsPerThread) {
  std::string fresh_thread_message = "unset";
  bool fresh_thread_null = true;
  std::string after_failure;
  std::thread([&] {
    const char* m = pcore_last_error_message();
    fresh_thread_null = m == nullptr;
    fresh_thread_message = m != nullptr ? m : "";
    PcoreAllocResult out = pcore_test::sized<PcoreAllocResult>();
    pcore_node_allocate(nullptr, 64, kKind, &out);
    after_failure = pcore_last_error_message();
  }).join();
  EXPECT_FALSE(fresh_thread_null);
  EXPECT_EQ(fresh_thread_message, "") << "no failure yet on this thread";
  EXPECT_NE(after_failure, "");

  // A failure on this thread gives a message; another thread's failure does not change it.
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, (pcore_store_options_init)(nullptr));
  const std::string mine = pcore_last_error_message();
  EXPECT_NE(mine, "");
  std::thread([] {
    PcoreAllocResult out = pcore_test::sized<PcoreAllocResult>();
    pcore_node_allocate(nullptr, 64, kKind, &out);
  }).join();
  EXPECT_EQ(std::string(pcore_last_error_message()), mine);
}

TEST_F(AbiErrorsTest, OptionsInitFillsDefaults) {
  PcoreStoreOptions options;
  std::memset(&options, 0xFF, sizeof(options));
  PCORE_ASSERT_OK(pcore_store_options_init(&options));
  EXPECT_EQ(options.struct_size, sizeof(PcoreStoreOptions));
  EXPECT_EQ(options.flags, 0u);
  EXPECT_EQ(options.durability, static_cast<uint32_t>(PCORE_DURABILITY_BALANCED));
  EXPECT_EQ(options.growth_policy, static_cast<uint32_t>(PCORE_GROWTH_STABLE_ID));
  EXPECT_EQ(options.growth_rule, static_cast<uint64_t>(PCORE_GROWTH_RULE_FIT));
  EXPECT_EQ(options.idle_checkpoint_ms, 1000u);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_options_init_sized(nullptr, sizeof(PcoreStoreOptions)));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, (pcore_store_options_init)(nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_options_init_sized(&options, 12));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_options_init_sized(&options, 0));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_store_options_init_sized(&options, SIZE_MAX - 7));
}

// A program built against an older header has a shorter struct: the init must not write past
// it. The unsized entry points (what such programs call) wrote the library's whole struct, 8
// bytes past a 2.2 program's PcoreStoreOptions on its stack (an outside test program crashed).
TEST_F(AbiErrorsTest, OptionsInitNeverWritesPastTheCallersStruct) {
  struct Guarded {
    uint8_t bytes[sizeof(PcoreStoreOptions) + 64];
  };
  const auto untouched_from = [](const Guarded& g, size_t from) {
    for (size_t i = from; i < sizeof(g.bytes); ++i) {
      if (g.bytes[i] != 0xA5) return false;
    }
    return true;
  };
  Guarded g;
  std::memset(g.bytes, 0xA5, sizeof(g.bytes));
  auto* options = reinterpret_cast<PcoreStoreOptions*>(g.bytes);
  PCORE_ASSERT_OK((pcore_store_options_init)(options));  // as a program built against 2.2 calls it
  EXPECT_EQ(options->struct_size, 80u);
  EXPECT_TRUE(untouched_from(g, 80));
  EXPECT_EQ(options->growth_rule, static_cast<uint64_t>(PCORE_GROWTH_RULE_FIT));
  std::memset(g.bytes, 0xA5, sizeof(g.bytes));
  PCORE_ASSERT_OK(pcore_store_options_init_sized(options, 72));  // a 2.0 header's struct
  EXPECT_EQ(options->struct_size, 72u);
  EXPECT_TRUE(untouched_from(g, 72));
  ScratchDir dir("options-init-72");
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(dir.path().c_str(), options, &store));  // the rest: defaults
  PCORE_EXPECT_OK(pcore_store_close(store));
  std::memset(g.bytes, 0xA5, sizeof(g.bytes));
  PCORE_ASSERT_OK(pcore_store_options_init_sized(options, sizeof(g.bytes)));  // a newer header's
  EXPECT_EQ(options->struct_size, sizeof(PcoreStoreOptions));
  EXPECT_TRUE(untouched_from(g, sizeof(PcoreStoreOptions)));

  uint8_t tree_bytes[sizeof(PcoreTreeOptions) + 64];
  std::memset(tree_bytes, 0xA5, sizeof(tree_bytes));
  auto* tree_options = reinterpret_cast<PcoreTreeOptions*>(tree_bytes);
  PCORE_ASSERT_OK((pcore_tree_options_init)(tree_options));
  EXPECT_EQ(tree_options->struct_size, 56u);
  EXPECT_EQ(tree_options->page_bytes, 4096u);
  for (size_t i = 56; i < sizeof(tree_bytes); ++i) ASSERT_EQ(tree_bytes[i], 0xA5) << i;
}

// A node of 64 bytes grown to 1,107 (XTree's average leaf) lands in the class the growth rule
// names: FIT the smallest holding 1,107 bytes, DOUBLE the smallest holding 2,214; a caller
// built against ABI 2.0 (whose struct ends before growth_rule) gets FIT.
TEST_F(AbiErrorsTest, GrowthRuleOptionPicksTheClass) {
  struct Case {
    uint64_t struct_size;
    uint64_t rule;
    uint64_t capacity;
  };
  const Case cases[] = {{sizeof(PcoreStoreOptions), PCORE_GROWTH_RULE_FIT, 2048},
                        {sizeof(PcoreStoreOptions), PCORE_GROWTH_RULE_DOUBLE, 4096},
                        {offsetof(PcoreStoreOptions, growth_rule), 12345, 2048}};
  std::vector<uint8_t> leaf(1107, 0x6C);
  for (const Case& c : cases) {
    SCOPED_TRACE("rule " + std::to_string(c.rule) + ", struct_size " + std::to_string(c.struct_size));
    PcoreStoreOptions options = default_options();
    options.flags = PCORE_OPEN_IN_MEMORY;
    options.struct_size = c.struct_size;
    options.growth_rule = c.rule;
    PcoreStore* out = nullptr;
    PCORE_ASSERT_OK(pcore_store_open(nullptr, &options, &out));
    Handle store(out);
    const uint64_t id = make_node(out, 64, 1);
    PCORE_ASSERT_OK(pcore_node_publish(out, id, leaf.data(), leaf.size(), nullptr));
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    PCORE_ASSERT_OK(pcore_node_info(out, id, &info));
    EXPECT_EQ(info.capacity, c.capacity);
    EXPECT_EQ(info.len, leaf.size());
  }
}

// ---- handles --------------------------------------------------------------------------------

// Calls every entry point that takes a store with this handle; each must return expected.
void expect_every_call_fails(PcoreStore* store, int32_t expected) {
  PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
  EXPECT_FAILS(expected, pcore_node_allocate(store, 64, kKind, &alloc));
  const uint8_t byte = 1;
  EXPECT_FAILS(expected, pcore_node_publish(store, 1u << 16 | 1u, &byte, 1, nullptr));
  void* ptr = nullptr;
  size_t capacity = 0;
  EXPECT_FAILS(expected, pcore_node_write_ptr(store, 1u << 16 | 1u, &ptr, &capacity));
  EXPECT_FAILS(expected, pcore_node_publish_in_place(store, 1u << 16 | 1u, 1));
  PcoreNodeBytes bytes{&byte, 1};
  EXPECT_FAILS(expected, pcore_node_read(store, 1u << 16 | 1u, &bytes));
  EXPECT_EQ(bytes.data, nullptr);
  EXPECT_EQ(bytes.len, 0u);
  uint8_t copy[4] = {7, 7, 7, 7};
  size_t copy_len = 77;
  EXPECT_FAILS(expected, pcore_node_read_copy(store, 1u << 16 | 1u, copy, sizeof copy, &copy_len));
  EXPECT_EQ(copy_len, 77u);
  EXPECT_EQ(copy[0], 7);
  PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
  EXPECT_FAILS(expected, pcore_node_info(store, 1u << 16 | 1u, &info));
  EXPECT_FAILS(expected, pcore_node_free(store, 1u << 16 | 1u, 0));
  EXPECT_FAILS(expected, pcore_node_retire(store, 1u << 16 | 1u, 5, 0));
  EXPECT_FAILS(expected, pcore_root_set(store, "r", 1, 1u << 16 | 1u, nullptr, 0));
  uint64_t root_id = 77;
  EXPECT_FAILS(expected, pcore_root_get(store, "r", 1, &root_id, nullptr, 0, nullptr));
  EXPECT_EQ(root_id, 77u);
  uint64_t epoch = 77;
  EXPECT_FAILS(expected, pcore_store_commit(store, &epoch));
  EXPECT_EQ(epoch, 77u);
  EXPECT_FAILS(expected, pcore_store_checkpoint(store));
  PcoreStoreStats stats = pcore_test::sized<PcoreStoreStats>();
  EXPECT_FAILS(expected, pcore_store_stats(store, &stats));
  PcoreClassStats class_stats = pcore_test::sized<PcoreClassStats>();
  EXPECT_FAILS(expected, pcore_store_class_stats(store, 0, &class_stats));
  EXPECT_FAILS(expected, pcore_store_verify(store));
  EXPECT_FAILS(expected, pcore_store_close(store));
}

TEST_F(AbiErrorsTest, NullStoreIsBadHandle) { expect_every_call_fails(nullptr, PCORE_BAD_HANDLE); }

TEST_F(AbiErrorsTest, ClosedHandleIsBadHandle) {
  PcoreStore* store = open_in_memory();
  ASSERT_NE(store, nullptr);
  make_node(store, 10, 1);
  PCORE_ASSERT_OK(pcore_store_close(store));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_close(store));  // close twice
  expect_every_call_fails(store, PCORE_BAD_HANDLE);           // use after close
}

TEST_F(AbiErrorsTest, ClosedDirectoryStoreIsBadHandleAndReopens) {
  ScratchDir dir("abi-closed");
  const std::string path = dir.sub("store");
  PcoreStore* store = open_dir(path);
  ASSERT_NE(store, nullptr);
  const uint64_t id = make_node(store, 100, 3);
  PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  PCORE_ASSERT_OK(pcore_store_close(store));
  expect_every_call_fails(store, PCORE_BAD_HANDLE);
  Handle again(open_dir(path));  // the lock was released
  ASSERT_NE(again.get(), nullptr);
  EXPECT_TRUE(node_holds(again.get(), id, 100, 3));
}

// Each thread remembers the store handles it used last (no lock, no reference count per
// call). A handle one thread remembers and another closes must still be refused in the first,
// and the closed store must keep no mapping of its files although the first thread still
// holds a reference to it.
TEST_F(AbiErrorsTest, AHandleClosedByAnotherThreadIsRefusedWhereItWasRemembered) {
  ScratchDir dir("abi-cross-close");
  const std::string path = dir.sub("store");
  PcoreStore* store = open_dir(path, 0, PCORE_DURABILITY_BALANCED);
  ASSERT_NE(store, nullptr);
  const uint64_t id = make_node(store, 100, 3);  // this thread now remembers the handle
  EXPECT_TRUE(node_holds(store, id, 100, 3));
  int32_t closed = -1;
  std::thread([&] { closed = pcore_store_close(store); }).join();
  PCORE_ASSERT_OK(closed);
  expect_every_call_fails(store, PCORE_BAD_HANDLE);
  std::FILE* maps = std::fopen("/proc/self/maps", "r");
  ASSERT_NE(maps, nullptr);
  char line[4096];
  std::vector<std::string> mapped;
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    if (std::strstr(line, path.c_str()) != nullptr) mapped.push_back(line);
  }
  std::fclose(maps);
  EXPECT_TRUE(mapped.empty()) << "a closed store's file is still mapped: " << mapped.front();
}

TEST_F(AbiErrorsTest, GarbageHandlesAreBadHandles) {
  Handle live(open_in_memory());  // a real store exists meanwhile
  uint64_t stack_garbage[64];
  for (size_t i = 0; i < 64; ++i) stack_garbage[i] = 0x0123456789ABCDEFull * (i + 1);
  std::vector<uint8_t> heap_zeros(4096, 0);
  PcoreStoreOptions not_a_store = default_options();
  const std::vector<PcoreStore*> garbage = {
      reinterpret_cast<PcoreStore*>(uintptr_t{1}),
      reinterpret_cast<PcoreStore*>(uintptr_t{0x1234}),
      reinterpret_cast<PcoreStore*>(uintptr_t{0xDEADBEEF}),
      reinterpret_cast<PcoreStore*>(uintptr_t{0x7FFFFFFFF000}),
      reinterpret_cast<PcoreStore*>(~uintptr_t{0} - 7),
      reinterpret_cast<PcoreStore*>(stack_garbage),
      reinterpret_cast<PcoreStore*>(heap_zeros.data()),
      reinterpret_cast<PcoreStore*>(&not_a_store),
      reinterpret_cast<PcoreStore*>(reinterpret_cast<uintptr_t>(live.get()) + 8),
  };
  for (PcoreStore* handle : garbage) {
    SCOPED_TRACE(testing::Message() << "handle " << static_cast<const void*>(handle));
    expect_every_call_fails(handle, PCORE_BAD_HANDLE);
  }
  // The real store is untouched.
  const uint64_t id = make_node(live.get(), 20, 9);
  EXPECT_TRUE(node_holds(live.get(), id, 20, 9));
}

// ---- null outputs and bad arguments ----------------------------------------------------------

TEST_F(AbiErrorsTest, NullPointersAreInvalidArguments) {
  ScratchDir dir("abi-null");
  PcoreStoreOptions options = default_options();
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("s").c_str(), &options, nullptr));
  PcoreStore* out = reinterpret_cast<PcoreStore*>(uintptr_t{0x77});
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(nullptr, &options, &out));  // no dir, not in-memory
  EXPECT_EQ(out, reinterpret_cast<PcoreStore*>(uintptr_t{0x77})) << "outputs are written only on success";
  options.flags = PCORE_OPEN_IN_MEMORY;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("s").c_str(), &options, &out));
  EXPECT_EQ(out, reinterpret_cast<PcoreStore*>(uintptr_t{0x77}));

  Handle store(open_in_memory());
  const uint64_t id = make_node(store.get(), 32, 1);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_allocate(store.get(), 64, kKind, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_publish(store.get(), id, nullptr, 10, nullptr));
  size_t capacity = 0;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_write_ptr(store.get(), id, nullptr, &capacity));
  void* ptr = nullptr;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_write_ptr(store.get(), id, &ptr, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_read(store.get(), id, nullptr));
  uint8_t copy[8] = {};
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_read_copy(store.get(), id, copy, sizeof copy, nullptr));
  size_t copy_len = 77;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_read_copy(store.get(), id, nullptr, 8, &copy_len));
  EXPECT_EQ(copy_len, 77u) << "outputs are written only on success";
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_info(store.get(), id, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_set(store.get(), nullptr, 3, id, nullptr, 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_set(store.get(), "abc", 3, id, nullptr, 4));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_get(store.get(), "abc", 3, nullptr, nullptr, 0, nullptr));
  PCORE_ASSERT_OK(pcore_root_set(store.get(), "abc", 3, id, "meta", 4));
  uint64_t root = 0;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_get(store.get(), nullptr, 3, &root, nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_get(store.get(), "abc", 3, &root, nullptr, 8, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_stats(store.get(), nullptr));
  PcoreStoreStats stats{};
  stats.struct_size = 0;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_stats(store.get(), &stats));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_class_stats(store.get(), 0, nullptr));
  PcoreClassStats class_stats = pcore_test::sized<PcoreClassStats>();
  class_stats.class_bytes = 12345;
  stats.struct_size = sizeof(stats);
  PCORE_ASSERT_OK(pcore_store_stats(store.get(), &stats));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_class_stats(store.get(), stats.class_count, &class_stats));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_class_stats(store.get(), PCORE_CLASS_TOTAL - 1, &class_stats));
  EXPECT_EQ(class_stats.class_bytes, 12345u);
  // Nothing above changed the node.
  EXPECT_TRUE(node_holds(store.get(), id, 32, 1));
}

TEST_F(AbiErrorsTest, BadOptionsAreInvalidArguments) {
  ScratchDir dir("abi-options");
  PcoreStore* out = nullptr;
  PcoreStoreOptions options = default_options();
  options.durability = 3;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("a").c_str(), &options, &out));
  options = default_options();
  options.growth_policy = 2;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("b").c_str(), &options, &out));
  options = default_options();
  options.growth_rule = 2;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("b").c_str(), &options, &out));
  options = default_options();
  options.idle_checkpoint_ms = uint64_t{1} << 32;  // neither milliseconds a u32 holds nor NEVER
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("b").c_str(), &options, &out));
  options = default_options();
  options.min_class_bytes = 8192;
  options.max_class_bytes = 4096;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("c").c_str(), &options, &out));
  // A store in memory that could never be written: refused, not a writable store in disguise.
  options = default_options();
  options.flags = PCORE_OPEN_IN_MEMORY | PCORE_OPEN_READ_ONLY;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(nullptr, &options, &out));
  EXPECT_EQ(out, nullptr);

  // A caller built against an older, shorter struct: the missing fields take defaults.
  options = default_options();
  options.struct_size = offsetof(PcoreStoreOptions, balanced_interval_ms);
  options.flags = PCORE_OPEN_IN_MEMORY;
  options.growth_policy = 12345;  // past struct_size: must be ignored
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &options, &out));
  Handle store(out);
  uint64_t id = make_node(out, 40, 1);
  EXPECT_TRUE(node_holds(out, id, 40, 1));
  // NULL options: the defaults.
  PcoreStore* defaults = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(dir.sub("d").c_str(), nullptr, &defaults));
  Handle defaults_handle(defaults);
}

// ---- ids ------------------------------------------------------------------------------------

TEST_F(AbiErrorsTest, UnknownFreedAndStaleIdsAreNotFound) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  const uint64_t live = make_node(s, 64, 1);
  const uint64_t freed = make_node(s, 64, 2);
  PCORE_ASSERT_OK(pcore_node_free(s, freed, 0));
  const uint64_t stale = (live & ~uint64_t{0xFFFF}) | (((live & 0xFFFF) % 0xFFFF) + 1);
  ASSERT_NE(stale, live);
  const uint64_t unknown = (uint64_t{987654} << 16) | 1u;
  const uint64_t before_allocs = pcore_test::total_stats(s).total_allocations;

  struct Case {
    const char* name;
    uint64_t id;
  };
  for (const Case& c : {Case{"unknown", unknown}, Case{"freed", freed}, Case{"stale", stale},
                        Case{"zero", 0}, Case{"max", UINT64_MAX}}) {
    SCOPED_TRACE(c.name);
    PcoreNodeBytes bytes{&c, 99};
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_read(s, c.id, &bytes));
    EXPECT_EQ(bytes.data, nullptr);
    EXPECT_EQ(bytes.len, 0u);
    uint8_t copy[8] = {};
    size_t copy_len = 4242;
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_read_copy(s, c.id, copy, sizeof copy, &copy_len));
    EXPECT_EQ(copy_len, 4242u);
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    info.len = 4242;
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_info(s, c.id, &info));
    EXPECT_EQ(info.len, 4242u) << "outputs are written only on success";
    const uint8_t data[4] = {1, 2, 3, 4};
    uint64_t out_id = 4242;
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_publish(s, c.id, data, 4, &out_id));
    EXPECT_EQ(out_id, 4242u);
    void* ptr = &out_id;
    size_t capacity = 4242;
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_write_ptr(s, c.id, &ptr, &capacity));
    EXPECT_EQ(ptr, &out_id);
    EXPECT_EQ(capacity, 4242u);
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_publish_in_place(s, c.id, 1));
    EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_retire(s, c.id, 1, 0));
    if (c.id == freed) {
      EXPECT_FAILS(PCORE_DOUBLE_FREE, pcore_node_free(s, c.id, 0));
    } else {
      EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_free(s, c.id, 0));
    }
  }
  EXPECT_TRUE(node_holds(s, live, 64, 1));
  EXPECT_EQ(pcore_test::total_stats(s).total_allocations, before_allocs);
  PCORE_EXPECT_OK(pcore_store_verify(s));
}

TEST_F(AbiErrorsTest, KindZeroIsInvalid) {
  Handle store(open_in_memory());
  PcoreAllocResult out = pcore_test::sized<PcoreAllocResult>();
  out.id = 4242;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_allocate(store.get(), 64, 0, &out));
  EXPECT_EQ(out.id, 4242u);
  EXPECT_EQ(pcore_test::total_stats(store.get()).total_allocations, 0u);
  // Every other kind is kept exactly.
  for (int kind : {1, 5, 0x40, 255}) {
    PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
    PCORE_ASSERT_OK(pcore_node_allocate(store.get(), 8, static_cast<uint8_t>(kind), &alloc));
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    PCORE_ASSERT_OK(pcore_node_info(store.get(), alloc.id, &info));
    EXPECT_EQ(info.kind, static_cast<uint64_t>(kind));
  }
}

// ---- lengths --------------------------------------------------------------------------------

TEST_F(AbiErrorsTest, LengthAboveTheLargestClassIsTooLarge) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  PcoreAllocResult out = pcore_test::sized<PcoreAllocResult>();
  out.id = 4242;
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_allocate(s, 262145, kKind, &out));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_allocate(s, SIZE_MAX, kKind, &out));
  EXPECT_EQ(out.id, 4242u);
  PCORE_ASSERT_OK(pcore_node_allocate(s, 262144, kKind, &out));
  EXPECT_EQ(out.capacity, 262144u);

  const uint64_t id = make_node(s, 1000, 3);
  const std::vector<uint8_t> huge(262145, 0xCD);
  uint64_t out_id = 4242;
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_publish(s, id, huge.data(), huge.size(), &out_id));
  EXPECT_EQ(out_id, 4242u);
  EXPECT_TRUE(node_holds(s, id, 1000, 3)) << "a failed publish keeps the old bytes";
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_publish(s, id, huge.data(), huge.size(), nullptr));
  EXPECT_TRUE(node_holds(s, id, 1000, 3));
  PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
  PCORE_ASSERT_OK(pcore_node_info(s, id, &info));
  EXPECT_EQ(info.dirty, 0u) << "a failed publish does not dirty the node";
}

// The header's rule for lengths no buffer can have holds for output capacities too: a slice
// of SIZE_MAX bytes may not even be formed (undefined behaviour in the library's language).
TEST_F(AbiErrorsTest, CapacitiesNoBufferCanHaveAreTooLarge) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  PcoreTree* tree = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(s, "t", 1, nullptr, &tree));
  PCORE_ASSERT_OK(pcore_tree_insert(tree, "a", 1, "bb", 2));
  const uint64_t id = make_node(s, 3, 7);
  PCORE_ASSERT_OK(pcore_root_set(s, "r", 1, id, "m", 1));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  PcoreSnapshot* snap = nullptr;
  PCORE_ASSERT_OK(pcore_snapshot_begin(s, &snap));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  alignas(8) char buf[64];
  const size_t no_buffer = static_cast<size_t>(PTRDIFF_MAX) + 1;
  for (const size_t cap : {no_buffer, SIZE_MAX}) {
    size_t len = 4242, count = 4242;
    uint64_t root = 4242;
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_tree_get(tree, "a", 1, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_snapshot_tree_get(snap, tree, "a", 1, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_read_copy(s, id, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_snapshot_node_read_copy(snap, id, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_root_get(s, "r", 1, &root, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_snapshot_root_get(snap, "r", 1, &root, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_root_next(s, nullptr, 0, buf, cap, &len));
    EXPECT_FAILS(PCORE_TOO_LARGE, pcore_cursor_next_batch(cursor, buf, cap, &count, &len));
    EXPECT_EQ(len, 4242u) << "outputs are left as they were";
    EXPECT_EQ(count, 4242u);
    EXPECT_EQ(root, 4242u);
  }
  size_t len = 0;
  PCORE_EXPECT_OK(pcore_tree_get(tree, "a", 1, buf, sizeof buf, &len));
  EXPECT_EQ(len, 2u);
  PCORE_EXPECT_OK(pcore_cursor_close(cursor));
  PCORE_EXPECT_OK(pcore_snapshot_end(snap));
  PCORE_EXPECT_OK(pcore_tree_close(tree));
}

TEST_F(AbiErrorsTest, SmallerLargestClassIsHonoured) {
  ScratchDir dir("abi-classes");
  PcoreStoreOptions options = default_options();
  options.min_class_bytes = 128;
  options.max_class_bytes = 4096;
  PcoreStore* out = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(dir.sub("s").c_str(), &options, &out));
  Handle store(out);
  PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_allocate(out, 4097, kKind, &alloc));
  PCORE_ASSERT_OK(pcore_node_allocate(out, 1, kKind, &alloc));
  EXPECT_EQ(alloc.capacity, 128u);
  const PcoreStoreStats stats = pcore_test::store_stats(out);
  EXPECT_EQ(stats.class_count, 6u);  // 128 .. 4096
}

TEST_F(AbiErrorsTest, PublishInPlaceAboveCapacityIsTooLarge) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  const uint64_t id = make_node(s, 100, 4);
  void* ptr = nullptr;
  size_t capacity = 0;
  PCORE_ASSERT_OK(pcore_node_write_ptr(s, id, &ptr, &capacity));
  ASSERT_GE(capacity, 100u);
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_publish_in_place(s, id, capacity + 1));
  EXPECT_TRUE(node_holds(s, id, 100, 4));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  PCORE_ASSERT_OK(pcore_node_write_ptr(s, id, &ptr, &capacity));
  std::memset(ptr, 0x11, capacity);  // scribble on the shadow copy, then fail the publish
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_publish_in_place(s, id, capacity + 1));
  PcoreNodeBytes bytes{};
  PCORE_ASSERT_OK(pcore_node_read(s, id, &bytes));
  EXPECT_EQ(bytes.len, 100u) << "the published length is unchanged";
}

TEST_F(AbiErrorsTest, DoubleFreeIsReported) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  const uint64_t reserved = make_node(s, 10, 1);
  PCORE_ASSERT_OK(pcore_node_free(s, reserved, PCORE_REASON_UNKNOWN));
  EXPECT_FAILS(PCORE_DOUBLE_FREE, pcore_node_free(s, reserved, PCORE_REASON_UNKNOWN));
  const uint64_t live = make_node(s, 10, 2);
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  PCORE_ASSERT_OK(pcore_node_free(s, live, PCORE_REASON_MERGE_DELETE));
  EXPECT_FAILS(PCORE_DOUBLE_FREE, pcore_node_free(s, live, PCORE_REASON_MERGE_DELETE));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  EXPECT_FAILS(PCORE_DOUBLE_FREE, pcore_node_free(s, live, PCORE_REASON_MERGE_DELETE));
  PCORE_EXPECT_OK(pcore_store_verify(s));
}

// ---- read-only and locking ------------------------------------------------------------------

std::map<std::string, std::vector<uint8_t>> snapshot(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const std::string& name : pcore_test::list_files(dir)) {
    files[name] = pcore_test::read_file(dir + "/" + name);
  }
  return files;
}

TEST_F(AbiErrorsTest, WritesOnReadOnlyStoreAreRefused) {
  ScratchDir dir("abi-ro");
  const std::string path = dir.sub("store");
  uint64_t id = 0;
  {
    Handle writer(open_dir(path));
    id = make_node(writer.get(), 200, 8);
    PCORE_ASSERT_OK(pcore_root_set(writer.get(), "r", 1, id, "m", 1));
    PCORE_ASSERT_OK(pcore_store_commit(writer.get(), nullptr));
    PCORE_ASSERT_OK(writer.close());
  }
  const auto before = snapshot(path);
  ASSERT_FALSE(before.empty());
  {
    Handle reader(open_dir(path, PCORE_OPEN_READ_ONLY));
    PcoreStore* s = reader.get();
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(node_holds(s, id, 200, 8));
    PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_node_allocate(s, 64, kKind, &alloc));
    const uint8_t data[3] = {1, 2, 3};
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_node_publish(s, id, data, 3, nullptr));
    void* ptr = nullptr;
    size_t capacity = 0;
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_node_write_ptr(s, id, &ptr, &capacity));
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_node_publish_in_place(s, id, 3));
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_node_free(s, id, 0));
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_node_retire(s, id, 1, 0));
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_root_set(s, "r", 1, id, nullptr, 0));
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_store_commit(s, nullptr));
    EXPECT_FAILS(PCORE_READ_ONLY, pcore_store_checkpoint(s));
    EXPECT_TRUE(node_holds(s, id, 200, 8));
    uint64_t root = 0;
    PCORE_EXPECT_OK(pcore_root_get(s, "r", 1, &root, nullptr, 0, nullptr));
    EXPECT_EQ(root, id);
    PCORE_EXPECT_OK(pcore_store_verify(s));
    PCORE_ASSERT_OK(reader.close());
  }
  EXPECT_TRUE(snapshot(path) == before) << "a read-only open changed a file";

  // Read-only or NO_CREATE on a directory without a store: NOT_FOUND, nothing created.
  PcoreStore* out = nullptr;
  PcoreStoreOptions options = default_options();
  options.flags = PCORE_OPEN_READ_ONLY;
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_store_open(dir.sub("none").c_str(), &options, &out));
  options.flags = PCORE_OPEN_NO_CREATE;
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_store_open(dir.sub("none").c_str(), &options, &out));
  EXPECT_EQ(out, nullptr);
}

TEST_F(AbiErrorsTest, SecondWriterIsBusy) {
  ScratchDir dir("abi-busy");
  const std::string path = dir.sub("store");
  Handle first(open_dir(path));
  ASSERT_NE(first.get(), nullptr);
  const uint64_t id = make_node(first.get(), 50, 5);
  PCORE_ASSERT_OK(pcore_store_commit(first.get(), nullptr));

  PcoreStoreOptions options = default_options();
  PcoreStore* second = reinterpret_cast<PcoreStore*>(uintptr_t{0x77});
  EXPECT_FAILS(PCORE_BUSY, pcore_store_open(path.c_str(), &options, &second));
  EXPECT_EQ(second, reinterpret_cast<PcoreStore*>(uintptr_t{0x77}));
  // The first writer is unaffected.
  EXPECT_TRUE(node_holds(first.get(), id, 50, 5));
  make_node(first.get(), 50, 6);
  PCORE_ASSERT_OK(pcore_store_commit(first.get(), nullptr));
  PCORE_ASSERT_OK(first.close());
  // Released at close.
  Handle third(open_dir(path));
  ASSERT_NE(third.get(), nullptr);
  EXPECT_TRUE(node_holds(third.get(), id, 50, 5));
}

// ---- fork -----------------------------------------------------------------------------------

/// One call a forked child made: what it answered, what it should answer, and whether its
/// message says the handle came through fork.
struct ChildCall {
  char name[64];
  int32_t status;
  int32_t expected;
  int32_t message_names_fork;
};

/// What a forked child records (no GoogleTest assertions there: they would fail the child's
/// copy of the test, which nobody reads).
class ChildCalls {
 public:
  void record(const char* name, int32_t status, int32_t expected) {
    ChildCall c{};
    std::snprintf(c.name, sizeof c.name, "%s", name);
    c.status = status;
    c.expected = expected;
    c.message_names_fork = status != pcore_test::kOk && std::strstr(pcore_last_error_message(), "fork") != nullptr;
    calls_.push_back(c);
  }
  const std::vector<ChildCall>& calls() const { return calls_; }

 private:
  std::vector<ChildCall> calls_;
};

/// Runs `body` in a child made by fork() itself (not a spawn: the point is what the child
/// inherits) and returns the calls it recorded, sent back through a pipe.
template <typename Body>
std::vector<ChildCall> calls_in_forked_child(Body body) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return {};
  }
  const pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return {};
  }
  if (pid == 0) {
    close(fds[0]);
    ChildCalls calls;
    body(calls);
    const char* p = reinterpret_cast<const char*>(calls.calls().data());
    size_t left = calls.calls().size() * sizeof(ChildCall);
    while (left > 0) {
      const ssize_t n = write(fds[1], p, left);
      if (n <= 0) _exit(3);
      p += n;
      left -= static_cast<size_t>(n);
    }
    _exit(0);  // no static destructors, no atexit handlers of the parent's copy
  }
  close(fds[1]);
  std::vector<uint8_t> bytes;
  uint8_t buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    bytes.insert(bytes.end(), buf, buf + n);
  }
  close(fds[0]);
  int wait_status = 0;
  EXPECT_EQ(waitpid(pid, &wait_status, 0), pid);
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << "child wait status " << wait_status;
  std::vector<ChildCall> calls(bytes.size() / sizeof(ChildCall));
  if (!calls.empty()) std::memcpy(calls.data(), bytes.data(), calls.size() * sizeof(ChildCall));
  return calls;
}

void expect_child_calls(const std::vector<ChildCall>& calls, size_t expected_count) {
  ASSERT_EQ(calls.size(), expected_count) << "the child did not report every call";
  for (const ChildCall& c : calls) {
    EXPECT_EQ(c.status, c.expected) << "in the child, " << c.name << " -> " << pcore_status_name(c.status)
                                    << ", expected " << pcore_status_name(c.expected);
    if (c.expected == static_cast<int32_t>(PCORE_BAD_HANDLE)) {
      EXPECT_TRUE(c.message_names_fork) << "in the child, " << c.name << ": the message does not say why (fork)";
    }
  }
}

// LMDB's rule: no handle across fork. A child's call through its parent's store, tree or
// cursor handle (a commit that would answer OK and then vanish, a close that would
// checkpoint the parent's store and release its lock) answers BAD_HANDLE, says why, and
// changes nothing of the parent's; the child's own handles work.
TEST_F(AbiErrorsTest, ForkedChildCannotUseItsParentsHandles) {
  ScratchDir dir("abi-fork");
  const std::string path = dir.sub("store");
  Handle store(open_dir(path));
  ASSERT_NE(store.get(), nullptr);
  PcoreStore* s = store.get();
  const uint64_t kept = make_node(s, 50, 1);
  PcoreTree* tree = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(s, "t", 1, nullptr, &tree));
  PCORE_ASSERT_OK(pcore_tree_insert(tree, "parent", 6, "p", 1));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  PcoreCursor* cursor = nullptr;
  PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_ASSERT_OK(pcore_cursor_first(cursor));
  const uint64_t live_before = pcore_test::store_stats(s).live_nodes;

  const int32_t bad = static_cast<int32_t>(PCORE_BAD_HANDLE);
  const int32_t ok = pcore_test::kOk;
  const std::vector<ChildCall> calls = calls_in_forked_child([&](ChildCalls& c) {
    PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
    c.record("node_allocate", pcore_node_allocate(s, 50, kKind, &alloc), bad);
    c.record("node_publish", pcore_node_publish(s, kept, "child", 5, nullptr), bad);
    c.record("root_set", pcore_root_set(s, "r", 1, kept, nullptr, 0), bad);
    c.record("store_commit", pcore_store_commit(s, nullptr), bad);
    c.record("store_checkpoint", pcore_store_checkpoint(s), bad);
    PcoreNodeBytes bytes{};
    c.record("node_read", pcore_node_read(s, kept, &bytes), bad);
    c.record("tree_insert", pcore_tree_insert(tree, "child", 5, "c", 1), bad);
    c.record("tree_get", pcore_tree_get(tree, "parent", 6, nullptr, 0, nullptr), bad);
    PcoreTree* child_tree = nullptr;
    c.record("tree_open", pcore_tree_open(s, "t", 1, nullptr, &child_tree), bad);
    PcoreCursor* child_cursor = nullptr;
    c.record("cursor_open", pcore_cursor_open(tree, &child_cursor), bad);
    c.record("cursor_next", pcore_cursor_next(cursor), bad);
    c.record("cursor_first", pcore_cursor_first(cursor), bad);
    c.record("cursor_close", pcore_cursor_close(cursor), bad);
    c.record("tree_close", pcore_tree_close(tree), bad);
    c.record("store_close", pcore_store_close(s), bad);
    c.record("store_commit after close", pcore_store_commit(s, nullptr), bad);
    // The child may open the store itself: BUSY while the parent holds it.
    PcoreStoreOptions options = default_options();
    PcoreStore* again = nullptr;
    c.record("store_open of the parent's directory", pcore_store_open(path.c_str(), &options, &again),
             static_cast<int32_t>(PCORE_BUSY));
    // Handles the child opens are its own and work.
    options.flags = PCORE_OPEN_IN_MEMORY;
    PcoreStore* own = nullptr;
    c.record("own store_open", pcore_store_open(nullptr, &options, &own), ok);
    PcoreTree* own_tree = nullptr;
    c.record("own tree_open", pcore_tree_open(own, "t", 1, nullptr, &own_tree), ok);
    c.record("own tree_insert", pcore_tree_insert(own_tree, "k", 1, "v", 1), ok);
    c.record("own store_commit", pcore_store_commit(own, nullptr), ok);
    c.record("own tree_close", pcore_tree_close(own_tree), ok);
    c.record("own store_close", pcore_store_close(own), ok);
  });
  expect_child_calls(calls, 23);

  // The parent's lock is still held: a second writer is BUSY.
  PcoreStoreOptions options = default_options();
  PcoreStore* second = nullptr;
  EXPECT_FAILS(PCORE_BUSY, pcore_store_open(path.c_str(), &options, &second));
  // The parent's handles work, and see only the parent's changes.
  PcoreBytes k{};
  PcoreBytes v{};
  PCORE_EXPECT_OK(pcore_cursor_get(cursor, &k, &v));
  PCORE_EXPECT_OK(pcore_tree_get(tree, "parent", 6, nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_tree_get(tree, "child", 5, nullptr, 0, nullptr));
  EXPECT_TRUE(node_holds(s, kept, 50, 1));
  EXPECT_EQ(pcore_test::store_stats(s).live_nodes, live_before);
  PCORE_ASSERT_OK(pcore_tree_insert(tree, "parent2", 7, "q", 1));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  PCORE_ASSERT_OK(pcore_cursor_close(cursor));
  PCORE_ASSERT_OK(pcore_tree_close(tree));
  PCORE_ASSERT_OK(store.close());

  // Reopened: exactly the parent's data.
  Handle reopened(open_dir(path));
  ASSERT_NE(reopened.get(), nullptr);
  EXPECT_TRUE(node_holds(reopened.get(), kept, 50, 1));
  PcoreTree* t = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(reopened.get(), "t", 1, nullptr, &t));
  uint64_t len = 0;
  PCORE_EXPECT_OK(pcore_tree_len(t, &len));
  EXPECT_EQ(len, 2u);
  PCORE_EXPECT_OK(pcore_tree_get(t, "parent", 6, nullptr, 0, nullptr));
  PCORE_EXPECT_OK(pcore_tree_get(t, "parent2", 7, nullptr, 0, nullptr));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_tree_get(t, "child", 5, nullptr, 0, nullptr));
  uint64_t root = 0;
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_root_get(reopened.get(), "r", 1, &root, nullptr, 0, nullptr));
  PCORE_EXPECT_OK(pcore_tree_close(t));
}

// A grandchild is refused its grandparent's handles too, and its parent's.
TEST_F(AbiErrorsTest, ForkedGrandchildCannotUseInheritedHandles) {
  Handle store(open_in_memory());
  ASSERT_NE(store.get(), nullptr);
  PcoreStore* s = store.get();
  const uint64_t kept = make_node(s, 50, 1);
  const int32_t bad = static_cast<int32_t>(PCORE_BAD_HANDLE);
  const std::vector<ChildCall> calls = calls_in_forked_child([&](ChildCalls& c) {
    PcoreStoreOptions options = default_options();
    options.flags = PCORE_OPEN_IN_MEMORY;
    PcoreStore* child_store = nullptr;
    c.record("child store_open", pcore_store_open(nullptr, &options, &child_store), pcore_test::kOk);
    int fds[2];
    if (pipe(fds) != 0) _exit(5);
    const pid_t pid = fork();
    if (pid == 0) {
      // The grandchild: one byte per refused call.
      PcoreNodeBytes bytes{};
      const uint8_t got[2] = {
          static_cast<uint8_t>(pcore_node_read(s, kept, &bytes)),
          static_cast<uint8_t>(pcore_store_commit(child_store, nullptr))};
      _exit(write(fds[1], got, 2) == 2 ? 0 : 6);
    }
    close(fds[1]);
    uint8_t got[2] = {0xFF, 0xFF};
    const bool read_both = read(fds[0], got, 2) == 2;
    int wait_status = 0;
    waitpid(pid, &wait_status, 0);
    c.record("grandchild ran", read_both && WIFEXITED(wait_status) ? 0 : -1, 0);
    // The grandchild's messages stay in its process: its statuses are recorded here.
    c.record("grandchild node_read of the grandparent's store", got[0], bad);
    c.record("grandchild commit of the child's store", got[1], bad);
    c.record("child store_close", pcore_store_close(child_store), pcore_test::kOk);
  });
  ASSERT_EQ(calls.size(), 5u);
  for (const ChildCall& c : calls) {
    EXPECT_EQ(c.status, c.expected) << c.name << " -> " << c.status;
  }
  EXPECT_TRUE(node_holds(s, kept, 50, 1));
}

// ---- damaged files --------------------------------------------------------------------------

// The brief's store layout: meta, wal-*.log, checkpoint-*.ckpt, class-*.seg.
TEST_F(AbiErrorsTest, CleanCloseLeavesMetaAndCheckpoint) {
  ASSERT_NO_FATAL_FAILURE(make_clean_store());
  const std::vector<std::string> files = pcore_test::list_files(clean_);
  EXPECT_NE(std::find(files.begin(), files.end(), "meta"), files.end());
  EXPECT_NE(first_file(clean_, "checkpoint-", ".ckpt"), "");
  EXPECT_NE(first_file(clean_, "class-", ".seg"), "");
  // And it reopens with everything.
  Handle store(open_dir(clean_));
  ASSERT_NE(store.get(), nullptr);
  for (uint64_t i = 0; i < ids_.size(); ++i) {
    ASSERT_TRUE(node_holds(store.get(), ids_[i], 100 + (i % 7) * 300, i)) << i;
  }
}

TEST_F(AbiErrorsTest, DamagedMetaIsCorrupt) {
  ASSERT_NO_FATAL_FAILURE(make_clean_store());
  expect_corrupt(damaged_copy(clean_, "meta", [](std::vector<uint8_t>& b) {
                   for (uint8_t& byte : b) byte ^= 0xFF;
                 }),
                 "meta");
  expect_corrupt(damaged_copy(clean_, "meta", [](std::vector<uint8_t>& b) { b.resize(6); }), "meta");
  expect_corrupt(damaged_copy(clean_, "meta", [](std::vector<uint8_t>& b) { b.clear(); }), "meta");

  // One slot damaged: the other (two-slot meta) may carry the store, but then with every
  // committed node; otherwise the open is CORRUPT. Never a silent loss.
  for (int half = 0; half < 2; ++half) {
    SCOPED_TRACE(half == 0 ? "first half of meta damaged" : "second half of meta damaged");
    const std::string dir = damaged_copy(clean_, "meta", [half](std::vector<uint8_t>& b) {
      const size_t from = half == 0 ? 0 : b.size() / 2;
      for (size_t i = from; i < from + b.size() / 2; ++i) b[i] ^= 0x3C;
    });
    PcoreStoreOptions options = default_options();
    PcoreStore* out = nullptr;
    const int32_t status = pcore_store_open(dir.c_str(), &options, &out);
    if (status == pcore_test::kOk) {
      Handle store(out);
      for (uint64_t i = 0; i < ids_.size(); ++i) {
        ASSERT_TRUE(node_holds(out, ids_[i], 100 + (i % 7) * 300, i)) << "node " << i;
      }
    } else {
      EXPECT_EQ(status, static_cast<int32_t>(PCORE_CORRUPT)) << pcore_test::describe_status(status);
    }
  }
}

TEST_F(AbiErrorsTest, DamagedCheckpointIsCorrupt) {
  ASSERT_NO_FATAL_FAILURE(make_clean_store());
  const std::string ckpt = first_file(clean_, "checkpoint-", ".ckpt");
  ASSERT_NE(ckpt, "");
  expect_corrupt(damaged_copy(clean_, ckpt,
                              [](std::vector<uint8_t>& b) {
                                for (size_t i = b.size() / 2; i < b.size() / 2 + 16 && i < b.size(); ++i) b[i] ^= 0x5A;
                              }),
                 ckpt);
  expect_corrupt(damaged_copy(clean_, ckpt, [](std::vector<uint8_t>& b) { b[0] ^= 0xFF; }), ckpt);
  expect_corrupt(damaged_copy(clean_, ckpt, [](std::vector<uint8_t>& b) { b.resize(b.size() / 2); }), ckpt);
}

TEST_F(AbiErrorsTest, DamagedLogIsCorrupt) {
  ASSERT_NO_FATAL_FAILURE(make_clean_store());
  // A log with committed records: a child commits four batches and dies without closing.
  const std::string path = scratch_.sub("with-log");
  pcore_test::copy_dir(clean_, path);
  const pid_t pid = pcore_test::spawn_child("commit-and-die", {path}, -1);
  ASSERT_GT(pid, 0);
  const int status = pcore_test::wait_child(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  const std::string wal = first_file(path, "wal-", ".log");
  ASSERT_NE(wal, "");
  const size_t wal_size = pcore_test::read_file(path + "/" + wal).size();
  ASSERT_GT(wal_size, 4u * 25 * 100) << "the four commits should be in the log";

  // Undamaged, all four batches recover.
  {
    const std::string copy = scratch_.sub("log-intact");
    pcore_test::copy_dir(path, copy);
    Handle store(open_dir(copy));
    ASSERT_NE(store.get(), nullptr);
    EXPECT_EQ(pcore_test::store_stats(store.get()).live_nodes, ids_.size() + 100);
  }
  // A flipped byte early in the log, with valid commits after it: CORRUPT, not a silent cut.
  expect_corrupt(damaged_copy(path, wal,
                              [](std::vector<uint8_t>& b) {
                                const size_t at = frames_end(b, 4) / 4;
                                for (size_t i = at; i < at + 8; ++i) b[i] ^= 0xA5;
                              }),
                 wal);
}

TEST_F(AbiErrorsTest, TornLogTailIsCut) {
  ASSERT_NO_FATAL_FAILURE(make_clean_store());
  const std::string path = scratch_.sub("torn");
  pcore_test::copy_dir(clean_, path);
  const pid_t pid = pcore_test::spawn_child("commit-and-die", {path}, -1);
  ASSERT_GT(pid, 0);
  const int status = pcore_test::wait_child(pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string wal = first_file(path, "wal-", ".log");
  ASSERT_NE(wal, "");
  // Cut the last few bytes: the last commit record is torn, as if the power failed mid-write.
  const std::string torn = damaged_copy(path, wal, [](std::vector<uint8_t>& b) { b.resize(frames_end(b, 4) - 5); });
  Handle store(open_dir(torn));
  ASSERT_NE(store.get(), nullptr);
  const uint64_t live = pcore_test::store_stats(store.get()).live_nodes;
  EXPECT_EQ(live, ids_.size() + 75) << "the first three commits survive, the torn fourth is cut";
  for (uint64_t i = 0; i < ids_.size(); ++i) {
    ASSERT_TRUE(node_holds(store.get(), ids_[i], 100 + (i % 7) * 300, i)) << i;
  }
  PCORE_EXPECT_OK(pcore_store_verify(store.get()));
}

TEST_F(AbiErrorsTest, DamagedDataFileNeverCrashes) {
  ASSERT_NO_FATAL_FAILURE(make_clean_store());
  const std::string seg = first_file(clean_, "class-", ".seg");
  ASSERT_NE(seg, "");
  const std::string dir = damaged_copy(clean_, seg, [](std::vector<uint8_t>& b) {
    for (size_t i = 0; i < b.size(); i += 97) b[i] ^= 0xFF;
  });
  PcoreStoreOptions options = default_options();
  PcoreStore* out = nullptr;
  const int32_t status = pcore_store_open(dir.c_str(), &options, &out);
  EXPECT_TRUE(status == pcore_test::kOk || status == static_cast<int32_t>(PCORE_CORRUPT))
      << pcore_test::describe_status(status);
  if (status == pcore_test::kOk) {
    Handle store(out);
    for (uint64_t id : ids_) {
      PcoreNodeBytes bytes{};
      const int32_t read_status = pcore_node_read(out, id, &bytes);
      EXPECT_TRUE(read_status == pcore_test::kOk || read_status == static_cast<int32_t>(PCORE_CORRUPT));
    }
    const int32_t verify = pcore_store_verify(out);
    EXPECT_TRUE(verify == pcore_test::kOk || verify == static_cast<int32_t>(PCORE_CORRUPT) ||
                verify == static_cast<int32_t>(PCORE_INTERNAL));
  }
}

// ---- roots ----------------------------------------------------------------------------------

TEST_F(AbiErrorsTest, RootNameOver255BytesIsInvalid) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  const uint64_t id = make_node(s, 8, 1);
  const std::string longest(PCORE_ROOT_NAME_MAX_BYTES, 'n');
  const std::string too_long(PCORE_ROOT_NAME_MAX_BYTES + 1, 'n');
  PCORE_ASSERT_OK(pcore_root_set(s, longest.data(), longest.size(), id, nullptr, 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_set(s, too_long.data(), too_long.size(), id, nullptr, 0));
  uint64_t out = 4242;
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_get(s, too_long.data(), too_long.size(), &out, nullptr, 0, nullptr));
  EXPECT_EQ(out, 4242u);
  PCORE_ASSERT_OK(pcore_root_get(s, longest.data(), longest.size(), &out, nullptr, 0, nullptr));
  EXPECT_EQ(out, id);

  // Meta over the limit.
  const std::vector<uint8_t> meta(PCORE_ROOT_META_MAX_BYTES + 1, 7);
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_set(s, "m", 1, id, meta.data(), meta.size()));
  PCORE_ASSERT_OK(pcore_root_set(s, "m", 1, id, meta.data(), PCORE_ROOT_META_MAX_BYTES));

  // Unknown name: NOT_FOUND, outputs untouched.
  out = 4242;
  size_t meta_len = 4242;
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_root_get(s, "nope", 4, &out, nullptr, 0, &meta_len));
  EXPECT_EQ(out, 4242u);
  EXPECT_EQ(meta_len, 4242u);

  // A short buffer gets a prefix and the full length.
  uint8_t buf[10] = {};
  PCORE_ASSERT_OK(pcore_root_get(s, "m", 1, &out, buf, sizeof(buf), &meta_len));
  EXPECT_EQ(meta_len, static_cast<size_t>(PCORE_ROOT_META_MAX_BYTES));
  EXPECT_EQ(buf[9], 7);
}

// ---- failed calls change nothing ------------------------------------------------------------

TEST_F(AbiErrorsTest, FailedCallsLeaveTheStoreAsItWas) {
  ScratchDir dir("abi-unchanged");
  const std::string path = dir.sub("store");
  Handle store(open_dir(path));
  PcoreStore* s = store.get();
  const uint64_t a = make_node(s, 300, 1);
  const uint64_t b = make_node(s, 300, 2);
  PCORE_ASSERT_OK(pcore_root_set(s, "r", 1, a, "xy", 2));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  const std::vector<uint8_t> update = pcore_test::make_pattern(300, 3);
  PCORE_ASSERT_OK(pcore_node_publish(s, b, update.data(), update.size(), nullptr));  // b is dirty

  const PcoreStoreStats before = pcore_test::store_stats(s);
  const PcoreClassStats total_before = pcore_test::total_stats(s);
  const std::vector<uint8_t> huge(300000, 1);
  PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
  const std::string long_name(300, 'x');
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_publish(s, a, huge.data(), huge.size(), nullptr));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_publish(s, b, huge.data(), huge.size(), nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_allocate(s, 10, 0, &alloc));
  EXPECT_FAILS(PCORE_TOO_LARGE, pcore_node_allocate(s, 300000, kKind, &alloc));
  EXPECT_FAILS(PCORE_NOT_FOUND, pcore_node_publish(s, (uint64_t{55555} << 16) | 1, update.data(), 10, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_set(s, long_name.data(), long_name.size(), b, nullptr, 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_root_set(s, "r", 1, b, nullptr, 5));
  EXPECT_FAILS(PCORE_DOUBLE_FREE, [&] {
    const uint64_t c = make_node(s, 10, 4);
    pcore_node_free(s, c, 0);
    return pcore_node_free(s, c, 0);
  }());
  PcoreStore* busy = nullptr;
  PcoreStoreOptions options = default_options();
  EXPECT_FAILS(PCORE_BUSY, pcore_store_open(path.c_str(), &options, &busy));

  const PcoreStoreStats after = pcore_test::store_stats(s);
  EXPECT_EQ(after.live_nodes, before.live_nodes);
  EXPECT_EQ(after.reserved_nodes, before.reserved_nodes);
  EXPECT_EQ(after.reallocations, before.reallocations);
  EXPECT_EQ(after.epoch, before.epoch);
  EXPECT_EQ(pcore_test::total_stats(s).live_bytes, total_before.live_bytes);
  EXPECT_TRUE(node_holds(s, a, 300, 1));
  EXPECT_TRUE(node_holds(s, b, 300, 3));
  uint64_t root = 0;
  uint8_t meta[4] = {};
  size_t meta_len = 0;
  PCORE_ASSERT_OK(pcore_root_get(s, "r", 1, &root, meta, sizeof(meta), &meta_len));
  EXPECT_EQ(root, a);
  EXPECT_EQ(meta_len, 2u);
  EXPECT_EQ(std::memcmp(meta, "xy", 2), 0);
  PCORE_EXPECT_OK(pcore_store_verify(s));

  // And all of it survives a commit and reopen.
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  PCORE_ASSERT_OK(store.close());
  Handle reopened(open_dir(path));
  EXPECT_TRUE(node_holds(reopened.get(), a, 300, 1));
  EXPECT_TRUE(node_holds(reopened.get(), b, 300, 3));
}

// ---- versioned structs ----------------------------------------------------------------------

// Every struct starts with a uint64_t struct_size and has 8-byte fields only, so a size that is
// not a multiple of 8 ends inside a field. Such a size, or one too small, is refused before the
// call does anything: an output asks for at least one field past struct_size.
TEST_F(AbiErrorsTest, StructSizeInsideAFieldOrTooSmallIsInvalid) {
  ScratchDir dir("abi-struct-size");
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  const uint64_t id = make_node(s, 40, 1);
  const uint64_t allocations = pcore_test::total_stats(s).total_allocations;
  const uint64_t mid_pointer = offsetof(PcoreAllocResult, writable) + 4;
  for (const uint64_t size : {uint64_t{0}, uint64_t{4}, uint64_t{8}, uint64_t{12}, uint64_t{20}, mid_pointer}) {
    SCOPED_TRACE("struct_size " + std::to_string(size));
    PcoreAllocResult alloc = pcore_test::sized<PcoreAllocResult>();
    alloc.struct_size = size;
    alloc.id = 4242;
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_allocate(s, 64, kKind, &alloc));
    EXPECT_EQ(alloc.id, 4242u);
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    info.struct_size = size;
    info.id = 4242;
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_info(s, id, &info));
    EXPECT_EQ(info.id, 4242u);
    PcoreStoreStats stats = pcore_test::sized<PcoreStoreStats>();
    stats.struct_size = size;
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_stats(s, &stats));
    EXPECT_EQ(stats.epoch, 0u);
    PcoreClassStats class_stats = pcore_test::sized<PcoreClassStats>();
    class_stats.struct_size = size;
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_class_stats(s, 0, &class_stats));
    EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_class_stats(s, PCORE_CLASS_TOTAL, &class_stats));
    EXPECT_EQ(class_stats.class_bytes, 0u);
    if (size != 8) {  // an input of struct_size only is valid: every option takes its default
      PcoreStoreOptions options = default_options();
      options.struct_size = size;
      PcoreStore* out = reinterpret_cast<PcoreStore*>(uintptr_t{0x55});
      EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_open(dir.sub("s").c_str(), &options, &out));
      EXPECT_EQ(out, reinterpret_cast<PcoreStore*>(uintptr_t{0x55}));
    }
  }
  EXPECT_EQ(pcore_test::total_stats(s).total_allocations, allocations) << "a refused allocate allocated";
  EXPECT_NE(::access(dir.sub("s").c_str(), F_OK), 0) << "a refused open created the store";

  // A shorter struct (an older header) gets the fields it has; the rest stay as they were.
  PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
  info.struct_size = offsetof(PcoreNodeInfo, len);
  info.len = 4242;
  PCORE_ASSERT_OK(pcore_node_info(s, id, &info));
  EXPECT_EQ(info.id, id);
  EXPECT_EQ(info.len, 4242u) << "a field past struct_size was written";
  EXPECT_EQ(info.struct_size, offsetof(PcoreNodeInfo, len)) << "struct_size is the caller's";
}

// The allocator's total is a call of its own (PCORE_CLASS_TOTAL), not a struct inside
// PcoreStoreStats that could never grow: it is the sum of the classes.
TEST_F(AbiErrorsTest, ClassTotalIsTheSumOfTheClasses) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  for (size_t len : {10, 100, 1000, 10000}) {
    make_node(s, len, len);
  }
  PCORE_ASSERT_OK(pcore_node_free(s, make_node(s, 300, 1), PCORE_REASON_UNKNOWN));
  PcoreClassStats total = pcore_test::total_stats(s);
  const PcoreStoreStats stats = pcore_test::store_stats(s);
  uint64_t live = 0;
  uint64_t allocations = 0;
  uint64_t frees = 0;
  for (uint32_t i = 0; i < stats.class_count; ++i) {
    PcoreClassStats c = pcore_test::sized<PcoreClassStats>();
    PCORE_ASSERT_OK(pcore_store_class_stats(s, i, &c));
    EXPECT_NE(c.class_bytes, 0u);
    live += c.live_bytes;
    allocations += c.total_allocations;
    frees += c.total_frees;
  }
  EXPECT_EQ(total.class_bytes, 0u) << "the total is no one class";
  EXPECT_EQ(total.live_bytes, live);
  EXPECT_EQ(total.total_allocations, allocations);
  EXPECT_EQ(total.total_allocations, 5u);
  EXPECT_EQ(total.total_frees, frees);
  EXPECT_EQ(total.total_frees, 1u);
}

// pcore_node_free's and pcore_node_retire's reason is checked and counted, not ignored.
TEST_F(AbiErrorsTest, FreeAndRetireReasonsAreCheckedAndCounted) {
  Handle store(open_in_memory());
  PcoreStore* s = store.get();
  const uint64_t a = make_node(s, 10, 1);
  const uint64_t b = make_node(s, 10, 2);
  const uint64_t c = make_node(s, 10, 3);
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_free(s, a, PCORE_REASON_COUNT));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_free(s, a, 255));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_node_retire(s, b, 0, PCORE_REASON_COUNT));
  PCORE_ASSERT_OK(pcore_store_commit(s, nullptr));
  EXPECT_TRUE(node_holds(s, a, 10, 1)) << "a free with an unknown reason freed the node";
  EXPECT_TRUE(node_holds(s, b, 10, 2)) << "a retire with an unknown reason retired the node";
  PcoreStoreStats stats = pcore_test::store_stats(s);
  for (size_t r = 0; r < PCORE_REASON_COUNT; ++r) {
    EXPECT_EQ(stats.frees_by_reason[r], 0u) << "reason " << r;
    EXPECT_EQ(stats.retires_by_reason[r], 0u) << "reason " << r;
  }

  PCORE_ASSERT_OK(pcore_node_free(s, a, PCORE_REASON_MERGE_DELETE));
  PCORE_ASSERT_OK(pcore_node_free(s, c, PCORE_REASON_MERGE_DELETE));
  PCORE_ASSERT_OK(pcore_node_retire(s, b, 0, PCORE_REASON_EVICT));
  EXPECT_FAILS(PCORE_DOUBLE_FREE, pcore_node_free(s, a, PCORE_REASON_SPLIT_REPLACE));  // not counted
  stats = pcore_test::store_stats(s);
  EXPECT_EQ(stats.frees_by_reason[PCORE_REASON_MERGE_DELETE], 2u);
  EXPECT_EQ(stats.frees_by_reason[PCORE_REASON_SPLIT_REPLACE], 0u);
  EXPECT_EQ(stats.retires_by_reason[PCORE_REASON_EVICT], 1u);
  uint64_t frees = 0;
  uint64_t retires = 0;
  for (size_t r = 0; r < PCORE_REASON_COUNT; ++r) {
    frees += stats.frees_by_reason[r];
    retires += stats.retires_by_reason[r];
  }
  EXPECT_EQ(frees, 2u);
  EXPECT_EQ(retires, 1u);
}

}  // namespace
