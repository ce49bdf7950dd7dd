// Shared helpers for the GoogleTest suites: scratch directories, deterministic byte patterns,
// status assertions for the C API, and child processes (fork+exec of the test binary itself).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

extern "C" {
#include "pcore.h"
}

namespace pcore_test {

// ---- status helpers -----------------------------------------------------------------------

/// "PCORE_NOT_FOUND (2): <last error message>".
std::string describe_status(int32_t status);

inline constexpr int32_t kOk = static_cast<int32_t>(PCORE_OK);

/// A versioned C struct (PcoreNodeInfo, PcoreStoreStats, ...), zeroed, with struct_size set.
template <typename T>
T sized() {
  T value{};
  value.struct_size = sizeof(T);
  return value;
}

/// pcore_store_class_stats(PCORE_CLASS_TOTAL): the allocator's sums over all classes (fails
/// the test on error).
PcoreClassStats total_stats(PcoreStore* store);

/// Child side: writes a whole record to the parent's pipe; exits the child (status 4) if the
/// parent is gone.
void child_send(const void* record, size_t len);

}  // namespace pcore_test

/// Expects a failure with the given status and a non-empty last error message.
#define EXPECT_FAILS(expected, expr)                                                          \
  do {                                                                                        \
    const int32_t fail_status_ = (expr);                                                      \
    EXPECT_EQ(fail_status_, static_cast<int32_t>(expected))                                   \
        << #expr << " -> " << ::pcore_test::describe_status(fail_status_) << ", expected "    \
        << pcore_status_name(static_cast<int32_t>(expected));                                 \
    if (fail_status_ != ::pcore_test::kOk) {                                                  \
      EXPECT_STRNE(pcore_last_error_message(), "") << #expr << ": no error message";          \
    }                                                                                         \
  } while (0)


/// Asserts a C call returns PCORE_OK, printing the status name and last error message.
#define PCORE_ASSERT_OK(expr)                                                                   \
  do {                                                                                          \
    const int32_t pcore_status_ = (expr);                                                       \
    ASSERT_EQ(pcore_status_, ::pcore_test::kOk)                                                 \
        << #expr << " -> " << ::pcore_test::describe_status(pcore_status_);                     \
  } while (0)

#define PCORE_EXPECT_OK(expr)                                                                   \
  do {                                                                                          \
    const int32_t pcore_status_ = (expr);                                                       \
    EXPECT_EQ(pcore_status_, ::pcore_test::kOk)                                                 \
        << #expr << " -> " << ::pcore_test::describe_status(pcore_status_);                     \
  } while (0)

/// Expects a C call to return the given PCORE_* status.
#define PCORE_EXPECT_STATUS(expected, expr)                                                     \
  do {                                                                                          \
    const int32_t pcore_status_ = (expr);                                                       \
    EXPECT_EQ(pcore_status_, static_cast<int32_t>(expected))                                    \
        << #expr << " -> " << ::pcore_test::describe_status(pcore_status_) << ", expected "     \
        << pcore_status_name(static_cast<int32_t>(expected));                                   \
  } while (0)

namespace pcore_test {

// ---- scratch directories ------------------------------------------------------------------

/// A fresh directory under $PCORE_TEST_TMPDIR, the configured scratch root, or
/// testing::TempDir(); removed with its contents on destruction unless PCORE_KEEP_SCRATCH=1.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag = "test");
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  /// path()/name (not created).
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Names of the regular files in dir (not recursive), sorted.
std::vector<std::string> list_files(const std::string& dir);
/// Copies every regular file of from into to (created if missing).
void copy_dir(const std::string& from, const std::string& to);
/// Whole file contents.
std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

// ---- deterministic content ----------------------------------------------------------------

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Fills len bytes with a pattern that depends only on seed.
void fill_pattern(void* dst, size_t len, uint64_t seed);
/// Returns the offset of the first byte that differs from fill_pattern(seed), or len.
size_t pattern_mismatch(const void* src, size_t len, uint64_t seed);
inline bool matches_pattern(const void* src, size_t len, uint64_t seed) {
  return src != nullptr && pattern_mismatch(src, len, seed) == len;
}
std::vector<uint8_t> make_pattern(size_t len, uint64_t seed);

/// A small seeded generator (splitmix64).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64(state_); }
  /// Uniform in [lo, hi] (inclusive).
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + next() % (hi - lo + 1); }
  bool chance(unsigned percent) { return next() % 100 < percent; }

 private:
  uint64_t state_;
};

/// Integer from the environment, or fallback when unset or unparsable.
uint64_t env_u64(const char* name, uint64_t fallback);

// ---- run length ---------------------------------------------------------------------------

/// Called by main(): removes `--long` from argv (GoogleTest must not see it) and remembers it.
void take_long_flag(int* argc, char** argv);
/// True when the binary got `--long` or the environment has PCORE_LONG=1.
bool long_run();

// ---- stats --------------------------------------------------------------------------------

PcoreStoreStats store_stats(PcoreStore* store);  // fails the test (ADD_FAILURE) on error

/// The default options, STRICT durability (every commit synced), and these open flags.
PcoreStoreOptions strict_options(uint32_t flags = 0);

// ---- child processes ----------------------------------------------------------------------

/// A child entry point: args are the arguments after "--pcore-child <name>". Returns the
/// process exit code.
using ChildMain = int (*)(const std::vector<std::string>& args);

/// Registers a child entry point at static-initialization time.
struct ChildRegistrar {
  ChildRegistrar(const char* name, ChildMain main);
};

/// Called first by main(): runs a registered child and returns true when argv asks for one.
bool maybe_run_child(int argc, char** argv, int* exit_code);

/// Starts this test binary again as child `name` (posix_spawn of /proc/self/exe, so it is safe
/// whatever threads exist). When pipe_write_fd >= 0 it becomes fd 3 in the child.
/// stdout/stderr are inherited. Returns the pid; fails the test on error (-1).
pid_t spawn_child(const std::string& name, const std::vector<std::string>& args, int pipe_write_fd);

/// waitpid; returns the raw wait status.
int wait_child(pid_t pid);

/// The fd a spawned child receives its pipe on.
inline constexpr int kChildPipeFd = 3;

/// What a child killed by the parent wrote to its pipe.
struct KilledChild {
  std::vector<uint8_t> bytes;
  bool saw_ready = false;
  int wait_status = 0;
  bool killed_by_us = false;
};

/// Spawns child `name` with `args` and a pipe; when `wait_for_ready`, reads until a whole
/// record (of `record_bytes`) for which `is_ready` holds arrives (60 s at most); lets the child
/// run `delay_ms` more; SIGKILLs it; and returns everything it wrote.
KilledChild run_child_until_killed(const std::string& name, const std::vector<std::string>& args,
                                   size_t record_bytes, const std::function<bool(const uint8_t*)>& is_ready,
                                   bool wait_for_ready, uint64_t delay_ms);

/// The whole records in `bytes` (a torn last record is dropped).
template <typename Record>
std::vector<Record> records_of(const std::vector<uint8_t>& bytes) {
  std::vector<Record> records(bytes.size() / sizeof(Record));
  if (!records.empty()) {
    std::memcpy(records.data(), bytes.data(), records.size() * sizeof(Record));
  }
  return records;
}

}  // namespace pcore_test
