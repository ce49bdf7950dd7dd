// pcore_store_backup through the C ABI, as a host uses it: copies taken from a read-only open
// beside a writer process are each one whole commit (every node, the index naming them, the
// tree's every entry); a backup process SIGKILLed at any moment leaves the destination absent
// or whole, never damaged, and the next backup clears what it left; the call's argument checks.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "pcore.hpp"
#include "snapshot_workload.hpp"
#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;
namespace sw = snapshot_workload;

bool exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

// Entries of `dir` whose names start with `prefix`.
std::vector<std::string> entries_starting(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  closedir(d);
  return out;
}

// Opens the copy in `dir` and checks it holds one whole round; returns "" or what is wrong.
std::string check_copy(const std::string& dir, uint64_t* out_round) {
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_NO_CREATE);
  PcoreStore* store = nullptr;
  int32_t st = pcore_store_open(dir.c_str(), &opts, &store);
  if (st != pcore_test::kOk) return std::string("open: ") + pcore_status_name(st) + " " + pcore_last_error_message();
  std::string problem;
  PcoreTree* tree = nullptr;
  PcoreSnapshot* snap = nullptr;
  if (sw::open_tree(store, &tree) != pcore_test::kOk) {
    problem = "tree open";
  } else if (pcore_snapshot_begin(store, &snap) != pcore_test::kOk) {
    problem = "snapshot";
  } else {
    problem = sw::check_snapshot(snap, tree, out_round);
    pcore_snapshot_end(snap);
  }
  if (problem.empty() && pcore_store_verify(store) != pcore_test::kOk) problem = "verify";
  if (tree != nullptr) pcore_tree_close(tree);
  if (pcore_store_close(store) != pcore_test::kOk && problem.empty()) problem = "close";
  return problem;
}

// A store of `rounds` rounds plus `ballast` nodes of 2 KiB (so a backup takes a while).
void make_store(const std::string& dir, uint64_t rounds, uint64_t ballast) {
  sw::Writer w;
  PcoreStoreOptions opts = pcore_test::strict_options();
  ASSERT_EQ(pcore_store_open(dir.c_str(), &opts, &w.store), pcore_test::kOk);
  ASSERT_EQ(sw::open_tree(w.store, &w.tree), pcore_test::kOk);
  const std::vector<uint8_t> bytes = pcore_test::make_pattern(2048, 7);
  for (uint64_t i = 0; i < ballast; ++i) ASSERT_NE(sw::publish_new(w.store, bytes.data(), bytes.size()), 0u);
  for (uint64_t round = 1; round <= rounds; ++round) ASSERT_TRUE(sw::write_round(w, round));
  pcore_tree_close(w.tree);
  ASSERT_EQ(pcore_store_close(w.store), pcore_test::kOk);
}

// Child: opens the store read-only, says so, backs it up to args[1], says so again.
int backup_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_READ_ONLY);
  PcoreStore* store = nullptr;
  if (pcore_store_open(args[0].c_str(), &opts, &store) != pcore_test::kOk) return 3;
  const uint64_t started = 1;
  pcore_test::child_send(&started, sizeof started);
  if (pcore_store_backup(store, args[1].c_str(), 0) != pcore_test::kOk) {
    std::fprintf(stderr, "backup: %s\n", pcore_last_error_message());
    return 4;
  }
  const uint64_t done = 2;
  pcore_test::child_send(&done, sizeof done);
  return pcore_store_close(store) == pcore_test::kOk ? 0 : 5;
}
const pcore_test::ChildRegistrar kRegisterBackup("backup", backup_main);

TEST(BackupTest, CopiesBesideAWriterProcessAreEachOneWholeCommit) {
  ScratchDir scratch("backup-live");
  const std::string dir = scratch.sub("store");
  const uint64_t rounds = pcore_test::long_run() ? 2000 : 300;
  // The snapshot tests' writer child (same binary): commits round after round.
  const snapshot_workload::WriterChild writer = snapshot_workload::spawn_writer(dir, rounds);
  ASSERT_GE(writer.pid, 0) << "the writer's first round";
  PcoreStoreOptions opts = pcore_test::strict_options(PCORE_OPEN_READ_ONLY);
  PcoreStore* reader = nullptr;
  ASSERT_EQ(pcore_store_open(dir.c_str(), &opts, &reader), pcore_test::kOk);
  uint64_t last_round = 0;
  int copies = 0;
  for (; copies < 40; ++copies) {
    const std::string dest = scratch.sub("copy-" + std::to_string(copies));
    PCORE_ASSERT_OK(pcore_store_backup(reader, dest.c_str(), 0));
    uint64_t round = 0;
    const std::string problem = check_copy(dest, &round);
    ASSERT_EQ(problem, "") << "copy " << copies;
    ASSERT_GE(round, last_round) << "a read-only open reads one commit for its life";
    last_round = round;
    if (copies % 8 == 7) {  // follow the writer: reopen
      PCORE_ASSERT_OK(pcore_store_close(reader));
      ASSERT_EQ(pcore_store_open(dir.c_str(), &opts, &reader), pcore_test::kOk);
    }
  }
  PCORE_ASSERT_OK(pcore_store_close(reader));
  uint64_t round = 0;  // let the writer finish (closing its pipe early would SIGPIPE it)
  while (read(writer.fd, &round, sizeof round) == static_cast<ssize_t>(sizeof round)) {
  }
  close(writer.fd);
  const int status = pcore_test::wait_child(writer.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer status " << status;
  std::fprintf(stderr, "backup: %d copies, last of round %llu\n", copies, static_cast<unsigned long long>(last_round));
}

TEST(BackupTest, ABackupKilledAtAnyMomentLeavesTheDestinationAbsentOrWhole) {
  ScratchDir scratch("backup-kill");
  const std::string dir = scratch.sub("store");
  const std::string dest = scratch.sub("copy");
  ASSERT_NO_FATAL_FAILURE(make_store(dir, 5, 2500));
  // Kill delays span a whole backup's time on this machine (measured, not asserted), so the
  // kills land before, during and after it.
  const auto t0 = std::chrono::steady_clock::now();
  pcore::Store::open(dir, pcore::Options().read_only(true)).backup(scratch.sub("timing"));
  const auto whole_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  const uint64_t span_ms = 2 + static_cast<uint64_t>(whole_ms.count()) * 3 / 2;
  uint64_t seed = 2026;
  int absent = 0;
  int whole = 0;
  const int kills = pcore_test::long_run() ? 200 : 30;
  for (int k = 0; k < kills; ++k) {
    const uint64_t delay_ms = pcore_test::splitmix64(seed) % span_ms;
    const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
        "backup", {dir, dest}, sizeof(uint64_t), [](const uint8_t*) { return true; }, true, delay_ms);
    ASSERT_TRUE(child.saw_ready) << "kill " << k;
    if (!exists(dest)) {
      ++absent;
      continue;
    }
    uint64_t round = 0;
    ASSERT_EQ(check_copy(dest, &round), "") << "kill " << k << " after " << delay_ms << " ms";
    ASSERT_EQ(round, 5u);
    ++whole;
    ASSERT_EQ(system(("rm -rf '" + dest + "'").c_str()), 0);
  }
  std::fprintf(stderr, "backup kills within %llu ms: %d left no copy, %d a whole one\n",
               static_cast<unsigned long long>(span_ms), absent, whole);
  // The source is untouched, and the next backup clears what the killed ones left.
  uint64_t round = 0;
  ASSERT_EQ(check_copy(dir, &round), "");
  pcore::Store source = pcore::Store::open(dir, pcore::Options().read_only(true));
  source.backup(dest);
  ASSERT_EQ(check_copy(dest, &round), "");
  EXPECT_EQ(entries_starting(scratch.path(), ".pcore-backup-"), std::vector<std::string>{});
}

TEST(BackupTest, ArgumentsAreChecked) {
  ScratchDir scratch("backup-args");
  const std::string dir = scratch.sub("store");
  ASSERT_NO_FATAL_FAILURE(make_store(dir, 2, 0));
  PcoreStoreOptions opts = pcore_test::strict_options();
  PcoreStore* store = nullptr;
  ASSERT_EQ(pcore_store_open(dir.c_str(), &opts, &store), pcore_test::kOk);
  const std::string dest = scratch.sub("copy");
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_backup(nullptr, dest.c_str(), 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, nullptr, 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, "", 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, dest.c_str(), 0x40));
  EXPECT_FALSE(exists(dest));
  PCORE_EXPECT_OK(pcore_store_backup(store, dest.c_str(), 0));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, dest.c_str(), 0));  // not empty
  // The source itself: never replaced; a directory that holds no store neither.
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, dir.c_str(), PCORE_BACKUP_REPLACE));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, scratch.path().c_str(), PCORE_BACKUP_REPLACE));
  EXPECT_FAILS(PCORE_INVALID_ARGUMENT, pcore_store_backup(store, scratch.sub("no/parent").c_str(), 0));
  {  // a writer has the copy open
    PcoreStore* other = nullptr;
    ASSERT_EQ(pcore_store_open(dest.c_str(), &opts, &other), pcore_test::kOk);
    EXPECT_FAILS(PCORE_BUSY, pcore_store_backup(store, dest.c_str(), PCORE_BACKUP_REPLACE));
    PCORE_ASSERT_OK(pcore_store_close(other));
  }
  PCORE_EXPECT_OK(pcore_store_backup(store, dest.c_str(), PCORE_BACKUP_REPLACE));
  uint64_t round = 0;
  EXPECT_EQ(check_copy(dest, &round), "");
  EXPECT_EQ(round, 2u);
  PCORE_ASSERT_OK(pcore_store_close(store));
  EXPECT_FAILS(PCORE_BAD_HANDLE, pcore_store_backup(store, dest.c_str(), PCORE_BACKUP_REPLACE));
}

}  // namespace
