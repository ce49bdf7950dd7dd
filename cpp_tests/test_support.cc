#include "test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>

extern char** environ;

namespace fs = std::filesystem;

namespace pcore_test {

std::string describe_status(int32_t status) {
  const char* name = pcore_status_name(status);
  const char* message = pcore_last_error_message();
  std::string text = name != nullptr ? name : "(null status name)";
  text += " (" + std::to_string(status) + "): ";
  text += message != nullptr ? message : "(null message)";
  return text;
}

// ---- scratch directories ------------------------------------------------------------------

namespace {

std::string scratch_root() {
  if (const char* env = std::getenv("PCORE_TEST_TMPDIR"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef PCORE_TEST_SCRATCH_ROOT
  if (std::strlen(PCORE_TEST_SCRATCH_ROOT) != 0) {
    return PCORE_TEST_SCRATCH_ROOT;
  }
#endif
  std::string root = testing::TempDir();
  while (root.size() > 1 && root.back() == '/') {
    root.pop_back();
  }
  return root;
}

}  // namespace

ScratchDir::ScratchDir(const std::string& tag) {
  const std::string root = scratch_root();
  std::error_code ec;
  fs::create_directories(root, ec);
  std::string pattern = root + "/pcore-" + tag + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << pattern << ") failed: " << std::strerror(errno);
    path_ = pattern;
    return;
  }
  path_ = buf.data();
}

ScratchDir::~ScratchDir() {
  const char* keep = std::getenv("PCORE_KEEP_SCRATCH");
  if (keep != nullptr && std::strcmp(keep, "1") == 0) {
    std::fprintf(stderr, "[scratch kept] %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::string> list_files(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const std::string& name : list_files(from)) {
    fs::copy_file(from + "/" + name, to + "/" + name, fs::copy_options::overwrite_existing);
  }
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// ---- deterministic content ----------------------------------------------------------------

void fill_pattern(void* dst, size_t len, uint64_t seed) {
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t state = seed ^ 0xA5A5A5A5DEADBEEFull;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const uint64_t word = splitmix64(state);
    std::memcpy(out + i, &word, 8);
  }
  if (i < len) {
    const uint64_t word = splitmix64(state);
    std::memcpy(out + i, &word, len - i);
  }
}

size_t pattern_mismatch(const void* src, size_t len, uint64_t seed) {
  const auto* in = static_cast<const uint8_t*>(src);
  uint64_t state = seed ^ 0xA5A5A5A5DEADBEEFull;
  for (size_t i = 0; i < len; i += 8) {
    const uint64_t word = splitmix64(state);
    uint8_t expect[8];
    std::memcpy(expect, &word, 8);
    const size_t n = len - i < 8 ? len - i : 8;
    for (size_t k = 0; k < n; ++k) {
      if (in[i + k] != expect[k]) {
        return i + k;
      }
    }
  }
  return len;
}

std::vector<uint8_t> make_pattern(size_t len, uint64_t seed) {
  std::vector<uint8_t> bytes(len);
  fill_pattern(bytes.data(), len, seed);
  return bytes;
}

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0') {
    return fallback;
  }
  return value;
}

// ---- run length ---------------------------------------------------------------------------

namespace {
bool g_long_flag = false;
}  // namespace

void take_long_flag(int* argc, char** argv) {
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    if (std::strcmp(argv[i], "--long") == 0) {
      g_long_flag = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argv[kept] = nullptr;
  *argc = kept;
}

bool long_run() { return g_long_flag || env_u64("PCORE_LONG", 0) == 1; }

PcoreStoreOptions strict_options(uint32_t flags) {
  PcoreStoreOptions options;
  pcore_store_options_init(&options);
  options.durability = PCORE_DURABILITY_STRICT;
  options.flags = flags;
  return options;
}

PcoreStoreStats store_stats(PcoreStore* store) {
  PcoreStoreStats stats = sized<PcoreStoreStats>();
  const int32_t status = pcore_store_stats(store, &stats);
  if (status != kOk) {
    ADD_FAILURE() << "pcore_store_stats -> " << describe_status(status);
  }
  return stats;
}

PcoreClassStats total_stats(PcoreStore* store) {
  PcoreClassStats total = sized<PcoreClassStats>();
  const int32_t status = pcore_store_class_stats(store, PCORE_CLASS_TOTAL, &total);
  if (status != kOk) {
    ADD_FAILURE() << "pcore_store_class_stats(PCORE_CLASS_TOTAL) -> " << describe_status(status);
  }
  return total;
}

// ---- child processes ----------------------------------------------------------------------

namespace {

std::map<std::string, ChildMain>& child_registry() {
  static std::map<std::string, ChildMain> registry;
  return registry;
}

constexpr const char* kChildFlag = "--pcore-child";

}  // namespace

ChildRegistrar::ChildRegistrar(const char* name, ChildMain main) { child_registry()[name] = main; }

bool maybe_run_child(int argc, char** argv, int* exit_code) {
  if (argc < 3 || std::strcmp(argv[1], kChildFlag) != 0) {
    return false;
  }
  const auto it = child_registry().find(argv[2]);
  if (it == child_registry().end()) {
    std::fprintf(stderr, "unknown child entry point '%s'\n", argv[2]);
    *exit_code = 125;
    return true;
  }
  std::vector<std::string> args(argv + 3, argv + argc);
  *exit_code = it->second(args);
  return true;
}

pid_t spawn_child(const std::string& name, const std::vector<std::string>& args, int pipe_write_fd) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    ADD_FAILURE() << "readlink(/proc/self/exe): " << std::strerror(errno);
    return -1;
  }
  exe[n] = '\0';

  std::vector<std::string> argv_strings{exe, kChildFlag, name};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv_ptrs;
  for (std::string& s : argv_strings) {
    argv_ptrs.push_back(s.data());
  }
  argv_ptrs.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  int staged_fd = -1;
  if (pipe_write_fd >= 0) {
    // Move the pipe out of the way first, so dup2 onto fd 3 always clears FD_CLOEXEC.
    staged_fd = fcntl(pipe_write_fd, F_DUPFD_CLOEXEC, 100);
    if (staged_fd < 0) {
      ADD_FAILURE() << "fcntl(F_DUPFD_CLOEXEC): " << std::strerror(errno);
      posix_spawn_file_actions_destroy(&actions);
      return -1;
    }
    posix_spawn_file_actions_adddup2(&actions, staged_fd, kChildPipeFd);
  }
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, exe, &actions, nullptr, argv_ptrs.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (staged_fd >= 0) {
    close(staged_fd);
  }
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn: " << std::strerror(rc);
    return -1;
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      ADD_FAILURE() << "waitpid: " << std::strerror(errno);
      return -1;
    }
  }
  return status;
}

namespace {

// Reads from fd until the deadline (or EOF when deadline is null); with is_ready, stops as
// soon as a whole record for which it holds has arrived.
void drain(int fd, std::vector<uint8_t>& bytes, const std::chrono::steady_clock::time_point* deadline,
           size_t record_bytes, const std::function<bool(const uint8_t*)>* is_ready, bool* saw_ready,
           bool* eof) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline != nullptr) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return;
      }
      timeout_ms = static_cast<int>(left.count());
    }
    pollfd pfd{fd, POLLIN, 0};
    const int rc = poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) {
      continue;
    }
    if (rc <= 0) {
      return;
    }
    uint8_t chunk[8192];
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      *eof = true;
      return;
    }
    bytes.insert(bytes.end(), chunk, chunk + n);
    if (is_ready != nullptr && !*saw_ready) {
      for (size_t at = 0; at + record_bytes <= bytes.size(); at += record_bytes) {
        if ((*is_ready)(&bytes[at])) {
          *saw_ready = true;
          return;
        }
      }
    }
  }
}

}  // namespace

KilledChild run_child_until_killed(const std::string& name, const std::vector<std::string>& args,
                                   size_t record_bytes, const std::function<bool(const uint8_t*)>& is_ready,
                                   bool wait_for_ready, uint64_t delay_ms) {
  KilledChild run;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return run;
  }
  const pid_t pid = spawn_child(name, args, fds[1]);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return run;
  }
  bool eof = false;
  if (wait_for_ready) {
    const auto ready_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    drain(fds[0], run.bytes, &ready_deadline, record_bytes, &is_ready, &run.saw_ready, &eof);
    if (!run.saw_ready) {
      ADD_FAILURE() << "the child never became ready" << (eof ? " (it died)" : " (timeout)");
    }
  }
  if (!eof) {
    const auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    drain(fds[0], run.bytes, &kill_at, record_bytes, nullptr, &run.saw_ready, &eof);
  }
  run.killed_by_us = kill(pid, SIGKILL) == 0;
  run.wait_status = wait_child(pid);
  while (!eof) {
    drain(fds[0], run.bytes, nullptr, record_bytes, nullptr, &run.saw_ready, &eof);
  }
  close(fds[0]);
  return run;
}

void child_send(const void* record, size_t len) {
  const char* p = static_cast<const char*>(record);
  while (len > 0) {
    const ssize_t n = write(kChildPipeFd, p, len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      _exit(4);  // the parent is gone
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
}

}  // namespace pcore_test
