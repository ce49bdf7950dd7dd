// A store at rest (issue 18 item 1): once no commit came for `idle_checkpoint_ms`, its
// background thread checkpoints it when its files hold more than the footprint trigger, cuts
// the free tails, gives the log's space back and the free blocks' pages. Through the C ABI,
// and across kills.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "pcore.hpp"
#include "test_support.hpp"

namespace {

using pcore_test::ScratchDir;

// Rows a store is loaded with: ~1.3 MiB of leaves, past the size below which the footprint
// is not looked at.
constexpr uint64_t kRows = 40000;

void key_of(uint64_t i, uint8_t* key) {
  const uint64_t mixed = i * 0x9E3779B97F4A7C15ull;
  for (int b = 0; b < 8; ++b) key[b] = static_cast<uint8_t>(mixed >> (56 - 8 * b));
  for (int b = 0; b < 8; ++b) key[8 + b] = static_cast<uint8_t>(i >> (56 - 8 * b));
}

PcoreStore* open_resting(const std::string& dir, uint64_t idle_ms) {
  PcoreStoreOptions options = pcore_test::strict_options();
  options.idle_checkpoint_ms = idle_ms;
  PcoreStore* store = nullptr;
  const int32_t status = pcore_store_open(dir.c_str(), &options, &store);
  EXPECT_EQ(status, pcore_test::kOk) << pcore_last_error_message();
  return store;
}

PcoreTree* open_tree(PcoreStore* store) {
  PcoreTree* tree = nullptr;
  EXPECT_EQ(pcore_tree_open(store, "t", 1, nullptr, &tree), pcore_test::kOk) << pcore_last_error_message();
  return tree;
}

// Inserts rows [from, to), a commit every 500, as a SQL engine commits per statement.
bool statements(PcoreStore* store, PcoreTree* tree, uint64_t from, uint64_t to) {
  uint8_t key[16];
  for (uint64_t i = from; i < to; ++i) {
    key_of(i, key);
    if (pcore_tree_insert(tree, key, sizeof key, &i, sizeof i) != pcore_test::kOk) return false;
    if ((i + 1) % 500 == 0 && pcore_store_commit(store, nullptr) != pcore_test::kOk) return false;
  }
  return pcore_store_commit(store, nullptr) == pcore_test::kOk;
}

void expect_rows(PcoreTree* tree, uint64_t rows) {
  uint64_t len = 0;
  ASSERT_EQ(pcore_tree_len(tree, &len), pcore_test::kOk);
  EXPECT_EQ(len, rows);
  uint8_t key[16];
  for (uint64_t i = 0; i < rows; i += 37) {
    key_of(i, key);
    uint64_t value = ~i;
    size_t value_len = 0;
    ASSERT_EQ(pcore_tree_get(tree, key, sizeof key, &value, sizeof value, &value_len), pcore_test::kOk) << "row " << i;
    ASSERT_EQ(value_len, sizeof value);
    ASSERT_EQ(value, i) << "row " << i;
  }
}

// Rested: the checkpoint holds the last commit, the log is empty and its kept space given
// back (a commit's own checkpoint keeps it: ~3x), and the free blocks' pages given back to the
// file system (~1.9x without): within issue 18's 1.5x of the live bytes (~5x without the rest
// step).
bool rested(const PcoreStoreStats& st) {
  return st.log_bytes == 0 && st.checkpoint_epoch == st.epoch && st.footprint_ratio <= 1.5;
}

// Waits (30 s at most: a loaded machine) until the store rested.
PcoreStoreStats wait_for_rest(PcoreStore* store) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const PcoreStoreStats st = pcore_test::store_stats(store);
    if (rested(st) || std::chrono::steady_clock::now() > until) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(RestTest, AStoreAtRestGivesItsLogBack) {
  ScratchDir scratch("rest");
  PcoreStore* store = open_resting(scratch.sub("store"), 100);
  ASSERT_NE(store, nullptr);
  PcoreTree* tree = open_tree(store);
  ASSERT_TRUE(statements(store, tree, 0, kRows));
  // On a loaded machine a pause between two commits may pass the idle time already: the
  // figures during the load are not compared.
  const PcoreStoreStats st = wait_for_rest(store);
  EXPECT_TRUE(rested(st)) << "log " << st.log_bytes << ", checkpoint epoch " << st.checkpoint_epoch << " of "
                          << st.epoch << ", " << st.footprint_ratio << "x";
  EXPECT_GT(st.given_back_bytes, 0u) << "free pages given back";
  expect_rows(tree, kRows);
  // The store goes on over the pages it gave back (each allocated again before reuse), rests
  // again, and a reopen finds every row.
  ASSERT_TRUE(statements(store, tree, kRows, kRows + kRows / 4));
  const PcoreStoreStats again = wait_for_rest(store);
  EXPECT_TRUE(rested(again) && again.epoch > st.epoch) << again.footprint_ratio << "x at epoch " << again.epoch;
  expect_rows(tree, kRows + kRows / 4);
  PCORE_EXPECT_OK(pcore_store_verify(store));
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_EXPECT_OK(pcore_store_close(store));
  store = open_resting(scratch.sub("store"), PCORE_IDLE_CHECKPOINT_NEVER);
  ASSERT_NE(store, nullptr);
  tree = open_tree(store);
  expect_rows(tree, kRows + kRows / 4);
  PCORE_EXPECT_OK(pcore_store_verify(store));
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// With the rest step off, the log stays until a checkpoint the host or the log's size calls
// for: after longer than the default's second, it is still there.
TEST(RestTest, NeverMeansTheLogStays) {
  ScratchDir scratch("rest-never");
  pcore::Options options;
  options.durability(pcore::Durability::Strict).no_idle_checkpoint();
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(scratch.sub("store").c_str(), &options.raw(), &store));
  PcoreTree* tree = open_tree(store);
  ASSERT_TRUE(statements(store, tree, 0, kRows));
  const PcoreStoreStats busy = pcore_test::store_stats(store);
  ASSERT_GT(busy.footprint_ratio, 1.4) << "past the trigger: a store that would rest";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const PcoreStoreStats later = pcore_test::store_stats(store);
  EXPECT_EQ(later.log_bytes, busy.log_bytes);
  EXPECT_EQ(later.checkpoint_epoch, busy.checkpoint_epoch);
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// Nodes of 100 bytes (`count`), a commit per 1,000, then 70 % of them freed at random, a
// commit per 1,000: free blocks that share their pages with live ones. Returns the kept ids
// with their seeds (the node's bytes are the pattern of its seed).
std::vector<std::pair<uint64_t, uint64_t>> nodes_then_random_frees(PcoreStore* store, uint64_t count) {
  std::vector<std::pair<uint64_t, uint64_t>> nodes, kept;
  for (uint64_t i = 0; i < count; ++i) {
    PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
    if (pcore_node_allocate(store, 100, 1, &a) != pcore_test::kOk) return {};
    const std::vector<uint8_t> bytes = pcore_test::make_pattern(100, i);
    if (pcore_node_publish(store, a.id, bytes.data(), bytes.size(), &a.id) != pcore_test::kOk) return {};
    nodes.emplace_back(a.id, i);
    if ((i + 1) % 1000 == 0 && pcore_store_commit(store, nullptr) != pcore_test::kOk) return {};
  }
  pcore_test::Rng rng(7);
  for (uint64_t i = 0; i < nodes.size(); ++i) {
    if (rng.between(0, 99) < 70) {
      if (pcore_node_free(store, nodes[i].first, PCORE_REASON_UNKNOWN) != pcore_test::kOk) return {};
    } else {
      kept.push_back(nodes[i]);
    }
    if ((i + 1) % 1000 == 0 && pcore_store_commit(store, nullptr) != pcore_test::kOk) return {};
  }
  if (pcore_store_commit(store, nullptr) != pcore_test::kOk) return {};
  return kept;
}

void expect_nodes(PcoreStore* store, const std::vector<std::pair<uint64_t, uint64_t>>& kept) {
  std::vector<uint8_t> copy(100);
  for (const auto& [id, seed] : kept) {
    size_t len = 0;
    ASSERT_EQ(pcore_node_read_copy(store, id, copy.data(), copy.size(), &len), pcore_test::kOk) << id;
    ASSERT_EQ(len, 100u);
    ASSERT_TRUE(pcore_test::matches_pattern(copy.data(), len, seed)) << "node " << id;
  }
  PCORE_EXPECT_OK(pcore_store_verify(store));
}

// Free blocks sharing pages with live nodes: at rest the store moves nodes toward the fronts
// of its class files (a checkpoint records the moves: no commit, the epoch stays) and gives
// the rest back, within 1.5x; a pcore_node_read pointer taken just before keeps the store from
// moving anything until two commits have passed (its contract).
TEST(RestTest, NodesMoveAtRestOnlyOncePointersExpired) {
  ScratchDir scratch("rest-nodes");
  PcoreStore* store = open_resting(scratch.sub("store"), 20);
  ASSERT_NE(store, nullptr);
  const auto kept = nodes_then_random_frees(store, 60000);
  ASSERT_FALSE(kept.empty()) << pcore_last_error_message();
  PcoreNodeBytes pointed{};
  PCORE_ASSERT_OK(pcore_node_read(store, kept.back().first, &pointed));
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  PcoreStoreStats st = pcore_test::store_stats(store);
  while (!(st.log_bytes == 0 && st.checkpoint_epoch == st.epoch) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = pcore_test::store_stats(store);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the rest step after its checkpoint
  st = pcore_test::store_stats(store);
  EXPECT_GT(st.footprint_ratio, 1.5) << "nodes moved while a read pointer may be in use";
  EXPECT_TRUE(pcore_test::matches_pattern(pointed.data, pointed.len, kept.back().second));
  const uint64_t epoch = st.epoch;
  for (int round = 0; round < 2; ++round) {
    PCORE_ASSERT_OK(pcore_root_set(store, "round", 5, round, nullptr, 0));
    PCORE_ASSERT_OK(pcore_store_commit(store, nullptr));
  }
  st = wait_for_rest(store);
  EXPECT_TRUE(rested(st)) << st.footprint_ratio << "x";
  EXPECT_EQ(st.epoch, epoch + 2) << "the rest step made no commit";
  expect_nodes(store, kept);
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// Child: loads the rows (args: dir, idle ms), says so, and waits to be killed without closing,
// its background thread checkpointing the store meanwhile.
int rest_writer_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  PcoreStore* store = open_resting(args[0], std::stoull(args[1]));
  if (store == nullptr) return 3;
  PcoreTree* tree = open_tree(store);
  if (tree == nullptr || !statements(store, tree, 0, kRows)) return 4;
  const uint8_t ready = 1;
  pcore_test::child_send(&ready, 1);
  for (;;) pause();
}
const pcore_test::ChildRegistrar kRegisterRestWriter("rest-writer", rest_writer_main);

// Child: makes nodes and frees 70 % of them at random (args: dir, idle ms), says so, and waits
// to be killed without closing while its background thread moves nodes, checkpoints and
// punches. The kept nodes follow from the seeds: the parent makes the same choices.
int rest_node_writer_main(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  PcoreStore* store = open_resting(args[0], std::stoull(args[1]));
  if (store == nullptr) return 3;
  if (nodes_then_random_frees(store, 60000).empty()) return 4;
  const uint8_t ready = 1;
  pcore_test::child_send(&ready, 1);
  for (;;) pause();
}
const pcore_test::ChildRegistrar kRegisterRestNodeWriter("rest-node-writer", rest_node_writer_main);

// Killed before, during or after the rest step's moves, checkpoints and punches: every
// committed node is there, where the store says it is.
TEST(RestTest, AKillAroundTheRestMovesLosesNothing) {
  const uint64_t kills = pcore_test::long_run() ? 30 : 6;
  pcore_test::Rng rng(22);
  for (uint64_t k = 0; k < kills; ++k) {
    ScratchDir scratch("rest-node-kill");
    const std::string dir = scratch.sub("store");
    const uint64_t delay = rng.between(0, 60);
    const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
        "rest-node-writer", {dir, "2"}, 1, [](const uint8_t*) { return true; }, /*wait_for_ready=*/true, delay);
    ASSERT_TRUE(child.saw_ready);
    PcoreStore* store = open_resting(dir, PCORE_IDLE_CHECKPOINT_NEVER);
    ASSERT_NE(store, nullptr) << "kill " << k << " after " << delay << " ms";
    // The same choices as the child made, in a scratch store: the kept ids and seeds.
    ScratchDir twin_dir("rest-node-twin");
    PcoreStore* twin = open_resting(twin_dir.sub("store"), PCORE_IDLE_CHECKPOINT_NEVER);
    const auto kept = nodes_then_random_frees(twin, 60000);
    PCORE_EXPECT_OK(pcore_store_close(twin));
    ASSERT_FALSE(kept.empty());
    expect_nodes(store, kept);
    PCORE_EXPECT_OK(pcore_store_close(store));
  }
}

// Killed before, during or after the rest checkpoint: every committed row is there.
TEST(RestTest, AKillAroundTheRestCheckpointLosesNothing) {
  const uint64_t kills = pcore_test::long_run() ? 30 : 6;
  pcore_test::Rng rng(21);
  for (uint64_t k = 0; k < kills; ++k) {
    ScratchDir scratch("rest-kill");
    const std::string dir = scratch.sub("store");
    const uint64_t delay = rng.between(0, 40);
    const pcore_test::KilledChild child = pcore_test::run_child_until_killed(
        "rest-writer", {dir, "2"}, 1, [](const uint8_t*) { return true; }, /*wait_for_ready=*/true, delay);
    ASSERT_TRUE(child.saw_ready);
    PcoreStore* store = open_resting(dir, PCORE_IDLE_CHECKPOINT_NEVER);
    ASSERT_NE(store, nullptr) << "kill " << k << " after " << delay << " ms";
    PcoreTree* tree = open_tree(store);
    expect_rows(tree, kRows);
    PCORE_EXPECT_OK(pcore_store_verify(store));
    PCORE_EXPECT_OK(pcore_tree_close(tree));
    PCORE_EXPECT_OK(pcore_store_close(store));
  }
}

}  // namespace
