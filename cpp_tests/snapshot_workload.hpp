// The workload of the snapshot tests, written against pcore.h alone: a writer that rewrites
// every node and most of a tree's entries in each commit (a "round"), and a check that a
// snapshot shows exactly one round, whole: every node, the index naming them, every tree
// entry.
//
// Round r's commit holds: root "round" -> an index node (r, then the ids of kNodes nodes);
// node i's bytes = pattern(i, r); tree "t" with the keys k < kKeys for which k % 10 != r % 10,
// each with the value (r, k). Every round frees and replaces a tenth of the nodes, so ids go
// stale and handles are reused.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace snapshot_workload {

inline constexpr uint64_t kNodes = 48;
inline constexpr uint64_t kKeys = 400;
inline constexpr const char* kRoot = "round";
inline constexpr const char* kTree = "t";

inline size_t node_len(uint64_t i, uint64_t round) { return 24 + (i * 37 + round * 13) % 700; }
inline uint64_t node_seed(uint64_t i, uint64_t round) { return (round << 20) ^ (i * 0x9E37u) ^ 0x51u; }

inline std::vector<uint8_t> key_bytes(uint64_t k) {
  std::vector<uint8_t> key(8);
  for (int b = 0; b < 8; ++b) key[b] = static_cast<uint8_t>(k >> (56 - 8 * b));
  return key;
}

inline bool key_present(uint64_t k, uint64_t round) { return k % 10 != round % 10; }

/// The writer child ("snapshot-writer", registered by pcore_snapshot_test.cc) committing
/// `rounds` rounds in `dir`, once it has committed its first: `pid` -1 if it could not start.
/// `fd` is the pipe it reports each round on.
struct WriterChild {
  pid_t pid = -1;
  int fd = -1;
};

inline WriterChild spawn_writer(const std::string& dir, uint64_t rounds) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = pcore_test::spawn_child("snapshot-writer", {dir, std::to_string(rounds)}, fds[1]);
  close(fds[1]);
  uint64_t first = 0;
  if (pid < 0 || read(fds[0], &first, sizeof first) != static_cast<ssize_t>(sizeof first)) {
    close(fds[0]);
    return {};
  }
  return {pid, fds[0]};
}

/// The writer's side: the store, the tree, and the live ids.
struct Writer {
  PcoreStore* store = nullptr;
  PcoreTree* tree = nullptr;
  uint64_t index = 0;
  std::vector<uint64_t> ids;
};

inline int32_t open_tree(PcoreStore* store, PcoreTree** out) {
  PcoreTreeOptions opts{};
  pcore_tree_options_init(&opts);
  opts.duplicates = PCORE_DUP_OVERWRITE;
  return pcore_tree_open(store, kTree, std::strlen(kTree), &opts, out);
}

inline uint64_t publish_new(PcoreStore* store, const void* data, size_t len) {
  PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
  if (pcore_node_allocate(store, len, 1, &a) != pcore_test::kOk) return 0;
  uint64_t id = a.id;
  if (pcore_node_publish(store, a.id, data, len, &id) != pcore_test::kOk) return 0;
  return id;
}

/// Writes and commits round `round` (the first call creates everything). Returns false on
/// any failure (the message is pcore_last_error_message()).
inline bool write_round(Writer& w, uint64_t round) {
  if (w.ids.empty()) w.ids.assign(kNodes, 0);
  for (uint64_t i = 0; i < kNodes; ++i) {
    const std::vector<uint8_t> bytes = pcore_test::make_pattern(node_len(i, round), node_seed(i, round));
    const bool replace = w.ids[i] == 0 || i % 10 == round % 10;
    if (replace) {
      if (w.ids[i] != 0 && pcore_node_free(w.store, w.ids[i], 0) != pcore_test::kOk) return false;
      w.ids[i] = publish_new(w.store, bytes.data(), bytes.size());
      if (w.ids[i] == 0) return false;
    } else {
      uint64_t id = w.ids[i];
      if (pcore_node_publish(w.store, w.ids[i], bytes.data(), bytes.size(), &id) != pcore_test::kOk) return false;
      w.ids[i] = id;
    }
  }
  std::vector<uint64_t> index{round};
  index.insert(index.end(), w.ids.begin(), w.ids.end());
  const size_t index_len = index.size() * sizeof(uint64_t);
  if (w.index == 0) {
    w.index = publish_new(w.store, index.data(), index_len);
    if (w.index == 0) return false;
  } else {
    uint64_t id = w.index;
    if (pcore_node_publish(w.store, w.index, index.data(), index_len, &id) != pcore_test::kOk) return false;
    w.index = id;
  }
  if (pcore_root_set(w.store, kRoot, std::strlen(kRoot), w.index, &round, sizeof round) != pcore_test::kOk) {
    return false;
  }
  for (uint64_t k = 0; k < kKeys; ++k) {
    const std::vector<uint8_t> key = key_bytes(k);
    if (key_present(k, round)) {
      const uint64_t value[2] = {round, k};
      if (pcore_tree_insert(w.tree, key.data(), key.size(), value, sizeof value) != pcore_test::kOk) return false;
    } else if (pcore_tree_remove(w.tree, key.data(), key.size(), nullptr) != pcore_test::kOk) {
      return false;
    }
  }
  return pcore_store_commit(w.store, nullptr) == pcore_test::kOk;
}

/// Checks that `snapshot` shows one whole round; returns "" or what is wrong. `*out_round`
/// receives the round.
inline std::string check_snapshot(PcoreSnapshot* snap, PcoreTree* tree, uint64_t* out_round) {
  auto fail = [](const std::string& what, int32_t status) {
    return what + ": " + pcore_status_name(status) + " " + pcore_last_error_message();
  };
  uint64_t index_id = 0;
  uint64_t round = 0;
  size_t meta_len = 0;
  int32_t st = pcore_snapshot_root_get(snap, kRoot, std::strlen(kRoot), &index_id, &round, sizeof round, &meta_len);
  if (st != pcore_test::kOk) return fail("root", st);
  *out_round = round;
  PcoreNodeBytes index{};
  st = pcore_snapshot_node_read(snap, index_id, &index);
  if (st != pcore_test::kOk) return fail("index node", st);
  if (index.len != (kNodes + 1) * sizeof(uint64_t)) return "index node of " + std::to_string(index.len) + " bytes";
  std::vector<uint64_t> ids(kNodes + 1);
  std::memcpy(ids.data(), index.data, index.len);
  if (ids[0] != round) return "index of round " + std::to_string(ids[0]) + " under root of " + std::to_string(round);
  std::vector<uint8_t> copy(1024);
  for (uint64_t i = 0; i < kNodes; ++i) {
    size_t len = 0;
    st = pcore_snapshot_node_read_copy(snap, ids[i + 1], copy.data(), copy.size(), &len);
    if (st != pcore_test::kOk) return fail("node " + std::to_string(i), st);
    if (len != node_len(i, round) || !pcore_test::matches_pattern(copy.data(), len, node_seed(i, round))) {
      return "node " + std::to_string(i) + " is not round " + std::to_string(round) + "'s";
    }
    // The pointer read must show the same bytes, and keep showing them (checked at the end).
    PcoreNodeBytes view{};
    st = pcore_snapshot_node_read(snap, ids[i + 1], &view);
    if (st != pcore_test::kOk || view.len != len || std::memcmp(view.data, copy.data(), len) != 0) {
      return fail("node " + std::to_string(i) + " by pointer", st);
    }
  }
  PcoreCursor* cur = nullptr;
  st = pcore_snapshot_cursor_open(snap, tree, &cur);
  if (st != pcore_test::kOk) return fail("cursor open", st);
  std::string problem;
  uint64_t seen = 0;
  st = pcore_cursor_first(cur);
  while (st == pcore_test::kOk && problem.empty()) {
    PcoreBytes key{};
    PcoreBytes value{};
    st = pcore_cursor_get(cur, &key, &value);
    if (st == static_cast<int32_t>(PCORE_NOT_FOUND)) break;
    if (st != pcore_test::kOk) break;
    uint64_t v[2] = {0, 0};
    if (value.len != sizeof v) {
      problem = "a value of " + std::to_string(value.len) + " bytes";
      break;
    }
    std::memcpy(v, value.data, sizeof v);
    if (v[0] != round || key_bytes(v[1]) != std::vector<uint8_t>(static_cast<const uint8_t*>(key.data),
                                                                  static_cast<const uint8_t*>(key.data) + key.len)) {
      problem = "entry of round " + std::to_string(v[0]) + " in a scan of round " + std::to_string(round);
    }
    ++seen;
    st = pcore_cursor_next(cur);
  }
  if (problem.empty() && st != pcore_test::kOk && st != static_cast<int32_t>(PCORE_NOT_FOUND)) {
    problem = fail("scan", st);
  }
  pcore_cursor_close(cur);
  if (!problem.empty()) return problem;
  uint64_t expected = 0;
  for (uint64_t k = 0; k < kKeys; ++k) expected += key_present(k, round) ? 1 : 0;
  if (seen != expected) return "a scan of " + std::to_string(seen) + " entries, expected " + std::to_string(expected);
  const std::vector<uint8_t> key = key_bytes(round % kKeys);
  uint64_t v[2] = {0, 0};
  size_t len = 0;
  st = pcore_snapshot_tree_get(snap, tree, key.data(), key.size(), v, sizeof v, &len);
  const bool present = key_present(round % kKeys, round);
  if (present ? (st != pcore_test::kOk || v[0] != round) : st != static_cast<int32_t>(PCORE_NOT_FOUND)) {
    return fail("get", st);
  }
  return "";
}

}  // namespace snapshot_workload
