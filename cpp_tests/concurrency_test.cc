// ConcurrencyTest: reader threads read nodes and scan B+ trees through the C ABI while one
// writer publishes (growing nodes into larger size classes), frees, retires, inserts and
// removes tree entries, commits and checkpoints.
//
// What the readers check:
// - a node read gives exactly the bytes of one version the writer published for that node
//   (each version encodes the node id and the version; the length depends on the version),
//   and no older version than the writer had finished publishing before the read;
// - a node is NOT_FOUND only after the writer freed (or retired) it;
// - a scan returns strictly ordered keys, each with exactly one value the writer wrote for
//   that key; a cursor answering PCORE_STALE_CURSOR after a change is positioned again just
//   past the last key it returned, and the order must hold across that;
// - lookups (a unique and a multi tree) answer OK with a well-formed value or NOT_FOUND.
// At the end, uncommitted changes are made, the store is closed and reopened, and it must hold
// exactly the last commit: every node, every tree entry, nothing freed.
//
// Runs 10 s; 60 s with --long or PCORE_LONG=1; PCORE_CONCURRENCY_SECONDS=N overrides both.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using pcore_test::Rng;
using pcore_test::ScratchDir;

constexpr int32_t kNotFound = static_cast<int32_t>(PCORE_NOT_FOUND);
constexpr int32_t kStale = static_cast<int32_t>(PCORE_STALE_CURSOR);
constexpr int32_t kDuplicate = static_cast<int32_t>(PCORE_DUPLICATE_KEY);

uint64_t run_seconds() {
  const uint64_t fallback = pcore_test::long_run() ? 60 : 10;
  return pcore_test::env_u64("PCORE_CONCURRENCY_SECONDS", fallback);
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t state = a * 0x9E3779B97F4A7C15ull ^ b;
  return pcore_test::splitmix64(state);
}

void put_be64(uint8_t* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t get_be64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = v << 8 | in[i];
  }
  return v;
}

std::string hex(uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "%#llx", static_cast<unsigned long long>(v));
  return text;
}

// ---- node versions ------------------------------------------------------------------------

constexpr size_t kSlots = 48;
constexpr uint8_t kNodeKind = 7;
constexpr size_t kNodeHeaderBytes = 24;  // magic, length, node id, version
constexpr uint64_t kNodeMagic = 0x434F4E43;  // "CONC"
// From the smallest class to ones several classes up: a node published at a length above its
// block's capacity moves to a larger class (keeping its id).
constexpr size_t kNodeLengths[] = {24, 48, 100, 240, 600, 1500, 3500, 9000, 20000};
constexpr size_t kNodeBytesMax = 20000;

size_t node_len(uint64_t version) { return kNodeLengths[mix(version, 1) % std::size(kNodeLengths)]; }

/// Version `version` of node `id`: header (magic, length, id, version, big-endian) and a body
/// that depends on both.
std::vector<uint8_t> node_bytes(uint64_t id, uint64_t version) {
  std::vector<uint8_t> bytes(node_len(version));
  put_be64(bytes.data(), kNodeMagic << 32 | bytes.size());
  put_be64(bytes.data() + 8, id);
  put_be64(bytes.data() + 16, version);
  pcore_test::fill_pattern(bytes.data() + kNodeHeaderBytes, bytes.size() - kNodeHeaderBytes, mix(id, version));
  return bytes;
}

/// The version these bytes are, exactly, of node `id`; nullopt if they are no version of it.
std::optional<uint64_t> node_version_of(uint64_t id, const uint8_t* bytes, size_t len) {
  if (len < kNodeHeaderBytes || get_be64(bytes) != (kNodeMagic << 32 | len) || get_be64(bytes + 8) != id) {
    return std::nullopt;
  }
  const uint64_t version = get_be64(bytes + 16);
  const std::vector<uint8_t> expected = node_bytes(id, version);
  if (expected.size() != len || std::memcmp(expected.data(), bytes, len) != 0) {
    return std::nullopt;
  }
  return version;
}

// ---- tree entries -------------------------------------------------------------------------

constexpr uint64_t kKeys = 3000;
constexpr uint64_t kMultiKeys = 300;
constexpr uint64_t kMultiValues = 8;
// 512-byte pages: many pages, so splits, merges and new roots happen all the time. Values
// above 32 bytes (page / 16) live in their own store node.
constexpr uint32_t kPageBytes = 512;
constexpr size_t kValueBodies[] = {0, 8, 16, 40, 100, 300};

/// Key k: its number big-endian (the order), then 0..10 bytes that depend on it.
std::vector<uint8_t> kv_key(uint64_t k) {
  std::vector<uint8_t> key(8 + k % 11);
  put_be64(key.data(), k);
  pcore_test::fill_pattern(key.data() + 8, key.size() - 8, k);
  return key;
}

/// Version `version` of key k's value: k, the version, and a body that depends on both.
std::vector<uint8_t> kv_value(uint64_t k, uint64_t version) {
  std::vector<uint8_t> value(16 + kValueBodies[mix(version, 2) % std::size(kValueBodies)]);
  put_be64(value.data(), k);
  put_be64(value.data() + 8, version);
  pcore_test::fill_pattern(value.data() + 16, value.size() - 16, mix(k, version));
  return value;
}

std::vector<uint8_t> multi_key(uint64_t k) {
  std::vector<uint8_t> key(8);
  put_be64(key.data(), k);
  return key;
}

std::vector<uint8_t> multi_value(uint64_t k, uint64_t j) {
  std::vector<uint8_t> value(16);
  put_be64(value.data(), j);
  put_be64(value.data() + 8, mix(k, j));
  return value;
}

bool bytes_less(const uint8_t* a, size_t al, const uint8_t* b, size_t bl) {
  const int c = std::memcmp(a, b, std::min(al, bl));
  return c < 0 || (c == 0 && al < bl);
}

// ---- shared state -------------------------------------------------------------------------

/// One node the readers may read. The writer stores `publishing` before a publish and
/// `published` after it, and clears `id` before it frees or retires the node.
struct NodeSlot {
  std::atomic<uint64_t> id{0};
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> publishing{0};
};

/// What went wrong in any thread: counted, the first few kept in words.
class Failures {
 public:
  void add(std::string what) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (++count_ <= kKept) {
      messages_.push_back(std::move(what));
    }
  }
  size_t count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }
  std::vector<std::string> messages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_;
  }

 private:
  static constexpr size_t kKept = 20;
  mutable std::mutex mutex_;
  size_t count_ = 0;
  std::vector<std::string> messages_;
};

struct Shared {
  PcoreStore* store = nullptr;
  PcoreTree* kv = nullptr;
  PcoreTree* multi = nullptr;
  std::array<NodeSlot, kSlots> slots;
  /// Every kv value version the writer has started to insert is at most this.
  std::atomic<uint64_t> kv_version_high{0};
  std::atomic<bool> stop{false};
  Failures failures;

  void fail(const std::string& what, int32_t status) {
    failures.add(what + " -> " + pcore_test::describe_status(status));
  }
};

struct ReaderCounts {
  uint64_t node_reads = 0;
  uint64_t nodes_gone = 0;
  uint64_t scans = 0;
  uint64_t scanned_entries = 0;
  uint64_t stale_repositions = 0;
  uint64_t gets = 0;
  uint64_t multi_gets = 0;
};

// ---- readers ------------------------------------------------------------------------------

/// A copy of node `id`'s bytes into `buf` (grown when the node is larger): one published
/// version whatever the writer does meanwhile. (pcore_node_read's pointer would be valid
/// only until the node is next written, which a reader in another thread cannot know.)
int32_t read_node(PcoreStore* store, uint64_t id, std::vector<uint8_t>& buf, size_t* len) {
  for (;;) {
    const int32_t status = pcore_node_read_copy(store, id, buf.data(), buf.size(), len);
    if (status != pcore_test::kOk || *len <= buf.size()) {
      return status;
    }
    buf.resize(*len);
  }
}

/// Reads the node in `slot` and checks it is exactly one version, and no older than what
/// the writer had published before the read.
void read_slot(Shared& sh, NodeSlot& slot, std::vector<uint8_t>& buf, ReaderCounts& counts) {
  const uint64_t id = slot.id.load(std::memory_order_acquire);
  if (id == 0) {
    return;
  }
  const uint64_t low = slot.published.load(std::memory_order_acquire);
  size_t len = 0;
  const int32_t status = read_node(sh.store, id, buf, &len);
  const uint64_t high = slot.publishing.load(std::memory_order_acquire);
  const bool still_there = slot.id.load(std::memory_order_acquire) == id;
  if (status == kNotFound && !still_there) {
    ++counts.nodes_gone;
    return;
  }
  if (status != pcore_test::kOk) {
    sh.fail("reading node " + hex(id) + (still_there ? " (not freed)" : ""), status);
    return;
  }
  ++counts.node_reads;
  const std::optional<uint64_t> version = node_version_of(id, buf.data(), len);
  if (!version) {
    sh.failures.add("node " + hex(id) + ": " + std::to_string(len) + " bytes that are no version of it");
  } else if (still_there && (*version < low || *version > high)) {
    sh.failures.add("node " + hex(id) + ": version " + std::to_string(*version) + " outside [" +
                    std::to_string(low) + ", " + std::to_string(high) + "] around the read");
  }
}

/// Checks one kv entry; returns its key number, or nullopt (a failure was recorded).
std::optional<uint64_t> check_kv_entry(Shared& sh, const PcoreBytes& key, const PcoreBytes& value) {
  if (key.len < 8 || get_be64(key.data) >= kKeys) {
    sh.failures.add("a kv entry with a malformed key of " + std::to_string(key.len) + " bytes");
    return std::nullopt;
  }
  const uint64_t k = get_be64(key.data);
  const std::vector<uint8_t> expected_key = kv_key(k);
  if (expected_key.size() != key.len || std::memcmp(expected_key.data(), key.data, key.len) != 0) {
    sh.failures.add("kv key " + std::to_string(k) + ": torn key bytes");
    return std::nullopt;
  }
  const uint64_t high = sh.kv_version_high.load(std::memory_order_acquire);
  if (value.len < 16 || get_be64(value.data) != k || get_be64(value.data + 8) > high) {
    sh.failures.add("kv key " + std::to_string(k) + ": a value of " + std::to_string(value.len) +
                    " bytes that names another key or an unwritten version");
    return std::nullopt;
  }
  const std::vector<uint8_t> expected = kv_value(k, get_be64(value.data + 8));
  if (expected.size() != value.len || std::memcmp(expected.data(), value.data, value.len) != 0) {
    sh.failures.add("kv key " + std::to_string(k) + ": a value that is no version written for it");
    return std::nullopt;
  }
  return k;
}

/// Positions `cursor` for a scan: from `start` the first time, past `last` (the last key
/// returned) after a stale answer.
int32_t position(PcoreCursor* cursor, bool forward, const std::vector<uint8_t>& start, bool from_start,
                 const std::vector<uint8_t>* last) {
  uint32_t kind = static_cast<uint32_t>(PCORE_BOUND_UNBOUNDED);
  const std::vector<uint8_t>* at = &start;
  if (last != nullptr) {
    kind = static_cast<uint32_t>(PCORE_BOUND_EXCLUDED);
    at = last;
  } else if (from_start) {
    kind = static_cast<uint32_t>(PCORE_BOUND_INCLUDED);
  }
  const uint32_t none = static_cast<uint32_t>(PCORE_BOUND_UNBOUNDED);
  const int32_t status = forward ? pcore_cursor_set_bounds(cursor, at->data(), at->size(), kind, "", 0, none)
                                 : pcore_cursor_set_bounds(cursor, "", 0, none, at->data(), at->size(), kind);
  if (status != pcore_test::kOk) {
    return status;
  }
  return forward ? pcore_cursor_first(cursor) : pcore_cursor_last(cursor);
}

void scan_kv(Shared& sh, Rng& rng, PcoreCursor* cursor, ReaderCounts& counts) {
  const bool forward = rng.chance(70);
  const bool from_start = rng.chance(80);
  const std::vector<uint8_t> start = kv_key(rng.next() % kKeys);
  const uint64_t want = rng.between(1, 300);
  constexpr uint64_t kRepositionsMax = 1000;  // a scan racing a busy writer gives up here
  std::vector<uint8_t> last;
  bool have_last = false;
  uint64_t seen = 0;
  uint64_t repositions = 0;
  ++counts.scans;
  int32_t status = position(cursor, forward, start, from_start, nullptr);
  while (status == pcore_test::kOk && seen < want) {
    PcoreBytes key{};
    PcoreBytes value{};
    status = pcore_cursor_get(cursor, &key, &value);
    if (status == pcore_test::kOk) {
      const std::optional<uint64_t> k = check_kv_entry(sh, key, value);
      if (!k) {
        return;
      }
      if (have_last && (forward ? !bytes_less(last.data(), last.size(), key.data, key.len)
                                : !bytes_less(key.data, key.len, last.data(), last.size()))) {
        sh.failures.add("a " + std::string(forward ? "forward" : "backward") + " scan returned key " +
                        std::to_string(*k) + " after key " + std::to_string(get_be64(last.data())));
        return;
      }
      last.assign(key.data, key.data + key.len);
      have_last = true;
      ++seen;
      ++counts.scanned_entries;
      status = forward ? pcore_cursor_next(cursor) : pcore_cursor_prev(cursor);
    }
    if (status == kStale) {
      if (++repositions > kRepositionsMax) {
        return;
      }
      ++counts.stale_repositions;
      status = position(cursor, forward, start, from_start, have_last ? &last : nullptr);
    }
  }
  if (status != pcore_test::kOk && status != kNotFound) {
    sh.fail(std::string(forward ? "forward" : "backward") + " scan after " + std::to_string(seen) + " entries",
            status);
  }
}

void get_kv(Shared& sh, Rng& rng, std::vector<uint8_t>& buf, ReaderCounts& counts) {
  const uint64_t k = rng.next() % kKeys;
  const std::vector<uint8_t> key = kv_key(k);
  size_t len = 0;
  const int32_t status = pcore_tree_get(sh.kv, key.data(), key.size(), buf.data(), buf.size(), &len);
  ++counts.gets;
  if (status == kNotFound) {
    return;
  }
  if (status != pcore_test::kOk || len > buf.size()) {
    sh.fail("kv get of key " + std::to_string(k) + " (value of " + std::to_string(len) + " bytes)", status);
    return;
  }
  check_kv_entry(sh, PcoreBytes{key.data(), key.size()}, PcoreBytes{buf.data(), len});
}

void get_multi(Shared& sh, Rng& rng, std::vector<uint8_t>& buf, ReaderCounts& counts) {
  const uint64_t k = rng.next() % kMultiKeys;
  const std::vector<uint8_t> key = multi_key(k);
  size_t len = 0;
  const int32_t status = pcore_tree_get(sh.multi, key.data(), key.size(), buf.data(), buf.size(), &len);
  ++counts.multi_gets;
  if (status == kNotFound) {
    return;
  }
  if (status != pcore_test::kOk) {
    sh.fail("multi get of key " + std::to_string(k), status);
    return;
  }
  const uint64_t j = len == 16 ? get_be64(buf.data()) : kMultiValues;
  if (j >= kMultiValues || multi_value(k, j) != std::vector<uint8_t>(buf.begin(), buf.begin() + 16)) {
    sh.failures.add("multi key " + std::to_string(k) + ": a value of " + std::to_string(len) +
                    " bytes that was never inserted");
  }
}

void reader_main(Shared& sh, uint64_t seed, ReaderCounts& counts) {
  Rng rng(seed);
  std::vector<uint8_t> node_buf(kNodeBytesMax);
  std::vector<uint8_t> value_buf(1024);
  PcoreCursor* cursor = nullptr;
  const int32_t status = pcore_cursor_open(sh.kv, &cursor);
  if (status != pcore_test::kOk) {
    sh.fail("pcore_cursor_open", status);
    return;
  }
  while (!sh.stop.load(std::memory_order_relaxed)) {
    const uint64_t op = rng.next() % 20;
    if (op < 10) {
      read_slot(sh, sh.slots[rng.next() % kSlots], node_buf, counts);
    } else if (op < 14) {
      scan_kv(sh, rng, cursor, counts);
    } else if (op < 18) {
      get_kv(sh, rng, value_buf, counts);
    } else {
      get_multi(sh, rng, value_buf, counts);
    }
  }
  pcore_cursor_close(cursor);
}

// ---- the writer ---------------------------------------------------------------------------

/// The writer's view: what it has done, and what the last commit holds.
struct Model {
  std::array<uint64_t, kSlots> version{};
  std::array<std::pair<uint64_t, uint64_t>, kSlots> committed{};  // (id, version) per slot
  std::vector<uint64_t> freed;            // freed or retired since the last commit
  std::vector<uint64_t> freed_committed;  // ids whose free is committed
  std::map<uint64_t, uint64_t> kv, kv_committed;  // key -> value version
  std::set<std::pair<uint64_t, uint64_t>> multi, multi_committed;
  uint64_t next_version = 1;
  uint64_t epoch = 0;
  uint64_t commits = 0;
  uint64_t publishes = 0;
  uint64_t replacements = 0;
  uint64_t kv_ops = 0;
  uint64_t multi_ops = 0;
};

class Writer {
 public:
  Writer(Shared& sh, uint64_t seed) : sh_(sh), rng_(seed) {}

  Model& model() { return m_; }

  /// Fills every slot with a published node.
  void populate() {
    for (size_t s = 0; s < kSlots; ++s) {
      install_new_node(s);
    }
  }

  /// One random operation; a commit every few dozen to few hundred.
  void step() {
    const uint64_t op = rng_.next() % 100;
    if (op < 35) {
      publish_new_version(rng_.next() % kSlots);
    } else if (op < 39) {
      replace_node(rng_.next() % kSlots);
    } else if (op < 85) {
      change_kv();
    } else {
      change_multi();
    }
    if (--until_commit_ == 0) {
      commit();
      until_commit_ = rng_.between(10, 300);
      if (m_.commits % 50 == 0) {
        check(pcore_store_checkpoint(sh_.store), "pcore_store_checkpoint");
      }
    }
  }

  void commit() {
    if (!check(pcore_store_commit(sh_.store, &m_.epoch), "pcore_store_commit")) {
      return;
    }
    ++m_.commits;
    for (size_t s = 0; s < kSlots; ++s) {
      m_.committed[s] = {sh_.slots[s].id.load(std::memory_order_relaxed), m_.version[s]};
    }
    m_.freed_committed.insert(m_.freed_committed.end(), m_.freed.begin(), m_.freed.end());
    m_.freed.clear();
    m_.kv_committed = m_.kv;
    m_.multi_committed = m_.multi;
  }

  void publish_new_version(size_t s) {
    NodeSlot& slot = sh_.slots[s];
    const uint64_t id = slot.id.load(std::memory_order_relaxed);
    const uint64_t version = m_.next_version++;
    const std::vector<uint8_t> bytes = node_bytes(id, version);
    slot.publishing.store(version, std::memory_order_release);
    uint64_t out_id = 0;
    if (check(pcore_node_publish(sh_.store, id, bytes.data(), bytes.size(), &out_id), "publish " + hex(id))) {
      if (out_id != id) {
        sh_.failures.add("publish of " + hex(id) + " under STABLE_ID growth gave id " + hex(out_id));
      }
      m_.version[s] = version;
      ++m_.publishes;
    }
    slot.published.store(m_.version[s], std::memory_order_release);
  }

  /// Frees (or retires until the next commit) the slot's node and puts a new one in its place,
  /// allocated small so that its first publishes grow it.
  void replace_node(size_t s) {
    NodeSlot& slot = sh_.slots[s];
    const uint64_t old = slot.id.exchange(0, std::memory_order_acq_rel);
    if (rng_.chance(50)) {
      check(pcore_node_free(sh_.store, old, static_cast<uint8_t>(PCORE_REASON_SPLIT_REPLACE)), "free " + hex(old));
    } else {
      check(pcore_node_retire(sh_.store, old, m_.epoch + 1, static_cast<uint8_t>(PCORE_REASON_EVICT)),
            "retire " + hex(old));
    }
    m_.freed.push_back(old);
    install_new_node(s);
    ++m_.replacements;
  }

  void install_new_node(size_t s) {
    NodeSlot& slot = sh_.slots[s];
    PcoreAllocResult a = pcore_test::sized<PcoreAllocResult>();
    if (!check(pcore_node_allocate(sh_.store, kNodeHeaderBytes, kNodeKind, &a), "allocate")) {
      return;
    }
    const uint64_t version = m_.next_version++;
    const std::vector<uint8_t> bytes = node_bytes(a.id, version);
    slot.publishing.store(version, std::memory_order_release);
    check(pcore_node_publish(sh_.store, a.id, bytes.data(), bytes.size(), nullptr), "first publish " + hex(a.id));
    slot.published.store(version, std::memory_order_release);
    m_.version[s] = version;
    slot.id.store(a.id, std::memory_order_release);
  }

  void change_kv() {
    const uint64_t k = rng_.next() % kKeys;
    const std::vector<uint8_t> key = kv_key(k);
    ++m_.kv_ops;
    if (rng_.chance(60)) {
      const uint64_t version = m_.next_version++;
      const std::vector<uint8_t> value = kv_value(k, version);
      sh_.kv_version_high.store(version, std::memory_order_release);
      if (check(pcore_tree_insert(sh_.kv, key.data(), key.size(), value.data(), value.size()),
                "kv insert " + std::to_string(k))) {
        m_.kv[k] = version;
      }
      return;
    }
    uint64_t removed = -1;
    if (check(pcore_tree_remove(sh_.kv, key.data(), key.size(), &removed), "kv remove " + std::to_string(k))) {
      if ((removed == 1) != (m_.kv.erase(k) == 1)) {
        sh_.failures.add("kv remove of key " + std::to_string(k) + " disagrees with the model");
      }
    }
  }

  void change_multi() {
    const uint64_t k = rng_.next() % kMultiKeys;
    const uint64_t j = rng_.next() % kMultiValues;
    const std::vector<uint8_t> key = multi_key(k);
    const std::vector<uint8_t> value = multi_value(k, j);
    const bool present = m_.multi.count({k, j}) == 1;
    ++m_.multi_ops;
    if (rng_.chance(55)) {
      const int32_t status = pcore_tree_insert(sh_.multi, key.data(), key.size(), value.data(), value.size());
      if (status != (present ? kDuplicate : pcore_test::kOk)) {
        sh_.fail("multi insert of (" + std::to_string(k) + ", " + std::to_string(j) + ")", status);
      }
      m_.multi.insert({k, j});
      return;
    }
    uint64_t removed = -1;
    if (check(pcore_tree_remove_pair(sh_.multi, key.data(), key.size(), value.data(), value.size(), &removed),
              "multi remove")) {
      if ((removed == 1) != present) {
        sh_.failures.add("multi remove of (" + std::to_string(k) + ", " + std::to_string(j) +
                         ") disagrees with the model");
      }
      m_.multi.erase({k, j});
    }
  }

 private:
  bool check(int32_t status, const std::string& what) {
    if (status != pcore_test::kOk) {
      sh_.fail(what, status);
      return false;
    }
    return true;
  }

  Shared& sh_;
  Rng rng_;
  Model m_;
  uint64_t until_commit_ = 1;
};

// ---- opening and the final check ----------------------------------------------------------

PcoreStoreOptions store_options() {
  PcoreStoreOptions options;
  pcore_store_options_init(&options);
  // Group commit with a short interval: the background sync thread runs during the test too.
  options.durability = PCORE_DURABILITY_BALANCED;
  options.balanced_interval_ms = 2;
  // Automatic checkpoints (besides the writer's own) while readers read.
  options.checkpoint_log_bytes = 1 << 20;
  return options;
}

PcoreTree* open_tree(PcoreStore* store, const char* name, uint32_t duplicates) {
  PcoreTreeOptions options;
  pcore_tree_options_init(&options);
  options.page_bytes = kPageBytes;
  options.duplicates = duplicates;
  PcoreTree* tree = nullptr;
  const int32_t status = pcore_tree_open(store, name, std::strlen(name), &options, &tree);
  EXPECT_EQ(status, pcore_test::kOk) << name << ": " << pcore_test::describe_status(status);
  return tree;
}

/// Every entry of a tree, in cursor order (no writer runs).
std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> all_entries(PcoreTree* tree) {
  std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> entries;
  PcoreCursor* cursor = nullptr;
  PCORE_EXPECT_OK(pcore_cursor_open(tree, &cursor));
  PCORE_EXPECT_OK(pcore_cursor_first(cursor));
  for (;;) {
    PcoreBytes key{};
    PcoreBytes value{};
    const int32_t status = pcore_cursor_get(cursor, &key, &value);
    if (status != pcore_test::kOk) {
      EXPECT_EQ(status, kNotFound) << pcore_test::describe_status(status);
      break;
    }
    entries.emplace_back(std::vector<uint8_t>(key.data, key.data + key.len),
                         std::vector<uint8_t>(value.data, value.data + value.len));
    PCORE_EXPECT_OK(pcore_cursor_next(cursor));
  }
  pcore_cursor_close(cursor);
  return entries;
}

/// Changes that must not survive the close: new versions, a free, tree changes.
void make_uncommitted_changes(Writer& writer, Shared& sh) {
  for (size_t s = 0; s < 4; ++s) {
    writer.publish_new_version(s);
  }
  const uint64_t doomed = sh.slots[kSlots - 1].id.load();
  PCORE_EXPECT_OK(pcore_node_free(sh.store, doomed, static_cast<uint8_t>(PCORE_REASON_UNKNOWN)));
  for (int i = 0; i < 50; ++i) {
    writer.change_kv();
    writer.change_multi();
  }
}

void expect_committed_nodes(PcoreStore* store, const Model& m) {
  for (size_t s = 0; s < kSlots; ++s) {
    const auto [id, version] = m.committed[s];
    PcoreNodeBytes bytes{};
    const int32_t status = pcore_node_read(store, id, &bytes);
    ASSERT_EQ(status, pcore_test::kOk) << "slot " << s << " node " << hex(id) << ": "
                                       << pcore_test::describe_status(status);
    const std::vector<uint8_t> expected = node_bytes(id, version);
    ASSERT_EQ(bytes.len, expected.size()) << "node " << hex(id);
    EXPECT_EQ(std::memcmp(bytes.data, expected.data(), expected.size()), 0)
        << "node " << hex(id) << " is not its committed version " << version;
  }
  // The latest frees (a sample, they can be many): none of those ids may come back.
  const size_t from = m.freed_committed.size() > 5000 ? m.freed_committed.size() - 5000 : 0;
  for (size_t i = from; i < m.freed_committed.size(); ++i) {
    PcoreNodeInfo info = pcore_test::sized<PcoreNodeInfo>();
    EXPECT_EQ(pcore_node_info(store, m.freed_committed[i], &info), kNotFound)
        << "freed node " << hex(m.freed_committed[i]) << " is back";
  }
}

void expect_committed_trees(PcoreTree* kv, PcoreTree* multi, const Model& m) {
  PCORE_EXPECT_OK(pcore_tree_verify(kv));
  PCORE_EXPECT_OK(pcore_tree_verify(multi));
  std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> expected_kv;
  for (const auto& [k, version] : m.kv_committed) {
    expected_kv.emplace_back(kv_key(k), kv_value(k, version));
  }
  EXPECT_TRUE(all_entries(kv) == expected_kv) << "the kv tree is not its last commit ("
                                              << m.kv_committed.size() << " entries expected)";
  std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> expected_multi;
  for (const auto& [k, j] : m.multi_committed) {
    expected_multi.emplace_back(multi_key(k), multi_value(k, j));
  }
  EXPECT_TRUE(all_entries(multi) == expected_multi)
      << "the multi tree is not its last commit (" << m.multi_committed.size() << " pairs expected)";
}

// Readers copy one node while the writer rewrites it as fast as it can: new versions of
// other lengths (growing it into larger classes), commits (whose freed blocks an in-memory
// store reuses at once) and replacements. Every copy must be one whole version. Copying
// through pcore_node_read's pointer instead fails here within milliseconds.
TEST(ConcurrencyTest, NodeCopiesAreWholeVersionsWhileTheNodeIsRewritten) {
  Shared sh;
  PcoreStoreOptions options;
  pcore_store_options_init(&options);
  options.flags = PCORE_OPEN_IN_MEMORY;
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &options, &sh.store));
  Writer writer(sh, 77);
  writer.install_new_node(0);
  std::array<ReaderCounts, 2> counts{};
  std::vector<std::thread> readers;
  for (ReaderCounts& c : counts) {
    readers.emplace_back([&sh, &c] {
      std::vector<uint8_t> buf(kNodeBytesMax);
      while (!sh.stop.load(std::memory_order_relaxed)) {
        read_slot(sh, sh.slots[0], buf, c);
      }
    });
  }
  constexpr int kPublishes = 200000;
  for (int i = 1; i <= kPublishes && sh.failures.count() == 0; ++i) {
    writer.publish_new_version(0);
    if (i % 64 == 0) {
      writer.commit();
    }
    if (i % 1000 == 0) {
      writer.replace_node(0);
    }
  }
  sh.stop.store(true);
  for (std::thread& t : readers) {
    t.join();
  }
  for (const std::string& message : sh.failures.messages()) {
    ADD_FAILURE() << message;
  }
  EXPECT_EQ(sh.failures.count(), 0u);
  for (const ReaderCounts& c : counts) {
    EXPECT_GT(c.node_reads, 0u);
  }
  EXPECT_GT(pcore_test::store_stats(sh.store).reallocations, 0u);
  PCORE_EXPECT_OK(pcore_store_close(sh.store));
}

constexpr size_t kReaders = 3;
using AllReaderCounts = std::array<ReaderCounts, kReaders>;

/// Runs the readers against `writer` for run_seconds() or until something fails; ends with
/// a commit.
AllReaderCounts run_readers_against(Shared& sh, Writer& writer) {
  AllReaderCounts counts{};
  std::vector<std::thread> readers;
  for (size_t r = 0; r < kReaders; ++r) {
    readers.emplace_back(reader_main, std::ref(sh), 1000 + r, std::ref(counts[r]));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(run_seconds());
  while (std::chrono::steady_clock::now() < deadline && sh.failures.count() == 0) {
    for (int i = 0; i < 100; ++i) {
      writer.step();
    }
  }
  sh.stop.store(true);
  for (std::thread& t : readers) {
    t.join();
  }
  writer.commit();
  return counts;
}

/// Prints what the run did, and checks it was not vacuous: every reader did each kind of
/// read, and nodes grew into larger classes.
void report_run(const Model& m, const PcoreStoreStats& stats, const AllReaderCounts& counts) {
  const auto n = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("writer: %llu commits, %llu publishes (%llu moved to a larger class), %llu replacements, "
              "%llu kv and %llu multi changes\n",
              n(m.commits), n(m.publishes), n(stats.reallocations), n(m.replacements), n(m.kv_ops), n(m.multi_ops));
  for (size_t r = 0; r < kReaders; ++r) {
    const ReaderCounts& c = counts[r];
    std::printf("reader %zu: %llu node reads (%llu freed meanwhile), %llu scans of %llu entries "
                "(%llu repositioned after STALE_CURSOR), %llu gets, %llu multi gets\n",
                r, n(c.node_reads), n(c.nodes_gone), n(c.scans), n(c.scanned_entries), n(c.stale_repositions),
                n(c.gets), n(c.multi_gets));
    EXPECT_GT(c.node_reads, 0u) << "reader " << r;
    EXPECT_GT(c.scanned_entries, 0u) << "reader " << r;
    EXPECT_GT(c.gets, 0u) << "reader " << r;
    EXPECT_GT(c.multi_gets, 0u) << "reader " << r;
  }
  EXPECT_GT(m.commits, 1u);
  EXPECT_GT(stats.reallocations, 0u) << "no node grew into a larger class";
}

TEST(ConcurrencyTest, ReadersSeeWholePublishedVersionsWhileAWriterChurns) {
  ScratchDir dir("concurrency");
  const std::string path = dir.sub("store");
  const PcoreStoreOptions options = store_options();
  Shared sh;
  ASSERT_EQ(pcore_store_open(path.c_str(), &options, &sh.store), pcore_test::kOk);
  sh.kv = open_tree(sh.store, "kv", PCORE_DUP_OVERWRITE);
  sh.multi = open_tree(sh.store, "multi", PCORE_DUP_MULTI);
  ASSERT_NE(sh.kv, nullptr);
  ASSERT_NE(sh.multi, nullptr);
  Writer writer(sh, 0xC0FFEE);
  writer.populate();
  writer.commit();

  const AllReaderCounts counts = run_readers_against(sh, writer);
  for (const std::string& message : sh.failures.messages()) {
    ADD_FAILURE() << message;
  }
  ASSERT_EQ(sh.failures.count(), 0u);
  const Model& m = writer.model();
  report_run(m, pcore_test::store_stats(sh.store), counts);

  make_uncommitted_changes(writer, sh);
  PCORE_EXPECT_OK(pcore_tree_close(sh.kv));
  PCORE_EXPECT_OK(pcore_tree_close(sh.multi));
  PCORE_ASSERT_OK(pcore_store_close(sh.store));

  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(path.c_str(), &options, &store));
  expect_committed_nodes(store, m);
  PcoreTree* kv = open_tree(store, "kv", PCORE_DUP_OVERWRITE);
  PcoreTree* multi = open_tree(store, "multi", PCORE_DUP_MULTI);
  expect_committed_trees(kv, multi, m);
  PCORE_EXPECT_OK(pcore_store_verify(store));
  pcore_tree_close(kv);
  pcore_tree_close(multi);
  PCORE_EXPECT_OK(pcore_store_close(store));
}

// Two threads misusing one cursor at once (scans, repositioning, a close racing them): every
// call answers a status (OK, NOT_FOUND, BUSY while the other thread's call holds the cursor,
// BAD_HANDLE once it is closed), never a crash. Under ThreadSanitizer this also checks that calls never share the cursor's state.
TEST(ConcurrencyTest, OneCursorUsedByTwoThreadsAnswersStatusesNeverACrash) {
  PcoreStoreOptions options = pcore_test::strict_options(PCORE_OPEN_IN_MEMORY);
  PcoreStore* store = nullptr;
  PCORE_ASSERT_OK(pcore_store_open(nullptr, &options, &store));
  PcoreTree* tree = nullptr;
  PCORE_ASSERT_OK(pcore_tree_open(store, "t", 1, nullptr, &tree));
  for (uint32_t i = 0; i < 2000; ++i) {
    uint8_t key[8];
    put_be64(key, i);
    PCORE_ASSERT_OK(pcore_tree_insert(tree, key, 8, key, 8));
  }
  constexpr int32_t kBusy = static_cast<int32_t>(PCORE_BUSY);
  constexpr int32_t kBad = static_cast<int32_t>(PCORE_BAD_HANDLE);
  std::atomic<uint64_t> busy{0};
  for (int round = 0; round < 20; ++round) {
    PcoreCursor* cursor = nullptr;
    PCORE_ASSERT_OK(pcore_cursor_open(tree, &cursor));
    std::atomic<bool> closed{false};
    std::atomic<int> failures{0};
    auto use = [&](int who) {
      std::vector<uint64_t> buf(64);
      for (int step = 0; step < 3000; ++step) {
        PcoreBytes k{};
        PcoreBytes v{};
        size_t count = 0;
        size_t used = 0;
        int32_t status;
        switch ((step + who) % 5) {
          case 0: status = pcore_cursor_first(cursor); break;
          case 1: status = pcore_cursor_next_get(cursor, &k, &v); break;
          case 2: status = pcore_cursor_get(cursor, &k, &v); break;
          case 3: status = pcore_cursor_next(cursor); break;
          default: status = pcore_cursor_next_batch(cursor, buf.data(), buf.size() * 8, &count, &used); break;
        }
        const bool allowed = status == pcore_test::kOk || status == kNotFound || status == kBusy ||
                             (status == kBad && closed.load());
        if (!allowed) {
          failures.fetch_add(1);
          ADD_FAILURE() << "thread " << who << " step " << step << ": " << pcore_test::describe_status(status);
        }
        if (status == kBusy) busy.fetch_add(1);
        // The bytes are not read: the other thread's next call may replace them (misuse).
        if (status == pcore_test::kOk && k.data != nullptr && (k.len != 8 || v.len != 8)) {
          failures.fetch_add(1);
          ADD_FAILURE() << "thread " << who << ": an entry of the wrong size";
        }
      }
    };
    std::thread a(use, 0);
    std::thread b(use, 1);
    if (round % 2 == 1) {
      // A close racing both: BUSY while a call holds the cursor, then OK once. The flag is set
      // before the close, not after it: a call that starts right after the close succeeds
      // answers BAD_HANDLE before this thread could set it (seen once under TSan).
      closed.store(true);
      int32_t status;
      while ((status = pcore_cursor_close(cursor)) == kBusy) std::this_thread::yield();
      EXPECT_EQ(status, pcore_test::kOk) << pcore_test::describe_status(status);
    }
    a.join();
    b.join();
    ASSERT_EQ(failures.load(), 0);
    if (round % 2 == 0) {
      PCORE_EXPECT_OK(pcore_cursor_close(cursor));
    } else {
      EXPECT_EQ(pcore_cursor_close(cursor), kBad);
    }
  }
  std::printf("one cursor, two threads: %llu calls answered BUSY\n", static_cast<unsigned long long>(busy.load()));
  PCORE_EXPECT_OK(pcore_tree_close(tree));
  PCORE_EXPECT_OK(pcore_store_close(store));
}

}  // namespace
