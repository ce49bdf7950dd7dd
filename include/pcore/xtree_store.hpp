// pcore/xtree_store.hpp: XTree's persistence StoreInterface implemented on pcore.
//
// XTree builds its store in exactly one place; constructing a pcore::xtree::Store there is
// all it needs. Header-only, C++17, POSIX. Requires XTree's <persistence/store_interface.h>.
//
// The one line XTree changes where it builds an index's store (dir: the index's data
// directory, field: the index's field name, the name it sets its root under):
//   store_ = std::make_unique<pcore::xtree::Store>(dir, field, durability);
// The name matters: XTree sets its root under the field name and, on reopen, asks for it
// with an empty name; an empty name here means the store's own (the index's) name.
//
// Beyond StoreInterface, XTree reaches its old store's runtime in three places; each is one
// line (store_ is XTree's StoreInterface pointer; both helpers answer false / nullopt when the
// store is not a pcore one):
//   - forceCheckpoint():            pcore::xtree::force_checkpoint(store_.get());
//   - getMemoryStats():             auto stats = pcore::xtree::memory_stats(store_.get());
//       (an std::optional<MemoryStats>: live_bytes, dead_bytes, fragmentation, total and
//        per_class, each class with the old allocator's field names, see ClassMemoryStats)
//   - the stress test's storage report: the same memory_stats call (per_class, data_file_bytes).
//
// manifest.json: XTree's index registry finds a data directory's fields by reading it. Every
// commit that follows a set_root writes it again, atomically (a temporary file, fsync,
// rename, fsync of the directory), when its content changed: {"version": 1, "created_unix":
// N, "roots": [{"name": ..., "node_id": "<16 hex digits>", "epoch": N, "mbr": [floats]}]},
// one entry per root set through this adapter (any name), committed values only. Opening a
// writable store writes it too if it is missing or stale (a crash between a commit and its
// manifest). The list of roots lives in the store (root "pcore.xtree.roots"), so every
// Store on the directory, in any order, writes the same complete file.
//
// Contracts (design/HOSTS.md, XTree section):
// - allocate_node: a zero-filled block >= min_len. Throws std::logic_error on a read-only
//   store, std::runtime_error (pcore::Error) on any other failure.
// - publish_node: repeatable, before and after a commit; data may alias the node's own block.
//   Growth when len > capacity depends on the store's growth policy (where the node moves, on
//   its growth rule: pcore::Options::growth_rule, the smallest class that holds len by
//   default, GrowthRule::Double for the seed's smallest class >= 2 x len):
//     * GrowthPolicy::StableId (default): pcore moves the node to a larger block and the id
//       stays the same, so the call simply succeeds and the tree never patches parents.
//     * GrowthPolicy::NewId: XTree's own protocol is kept. publish_node throws
//       std::runtime_error when len > capacity WITHOUT touching the store; the tree then
//       allocates a larger node, writes it and frees the old one itself (its
//       publish_with_realloc). An id never changes behind the tree's back.
// - supports_in_place_publish() is true: the tree writes through get_mapped_address(id) and
//   then calls publish_node_in_place(id, len).
// - read_node: {nullptr, 0} for unknown, freed or stale ids and on any failure; never throws.
// - free_node / free_node_immediate: frees now (a reserved node at once, a committed one at
//   the next commit, logged, so a crash can never resurrect it). retire_node frees at the
//   first commit at or after the epoch. All three throw on failure (unknown id, double free).
// - read_node_pinned: a copy of the node's bytes (one published version, taken under the
//   store's read lock) and a pin owning it, so the bytes stay valid as long as the pin lives
//   whatever the tree or the store do meanwhile. Unknown, freed or stale ids give
//   {nullptr, 0, no pin}; it never throws on a healthy store (only std::bad_alloc).
// - get_root / set_root: an empty name is the store's own name (the index name given at
//   construction; pcore's default root when none was given). get_root answers raw 0 when no
//   such root; it throws only on misuse (a name over PCORE_ROOT_NAME_MAX_BYTES) or when a
//   closed store cannot be reopened.
// - set_root: the MBR floats are kept as the root's meta bytes (see get_root_mbr), the
//   epoch in the store's list of roots (for manifest.json).
// - commit(epoch): the epoch is a hint; everything published before is durable after; then
//   manifest.json is written if set_root changed it (a failure to write it throws
//   std::runtime_error, the commit itself being durable). On a read-only store commit does
//   nothing (nothing can have changed).
// - get_mapped_address: nullptr on failure (and on a read-only store); the tree then copies
//   through publish_node. get_capacity: 0 when unknown.
// - get_node_kind: true only for committed (live) ids with a matching tag.
// - is_node_present: true for reserved or live ids; staged = not yet committed.
// - Every write on a read-only store throws std::logic_error.
// - close() releases the directory (its lock, its files): another Store may open it while
//   this object lives. Any later call reopens it on demand (an in-memory store is gone for
//   good). close() is idempotent; the destructor closes and never throws. Uncommitted work
//   is dropped at close: XTree's final commit(0) comes first. Reopening is not synchronised
//   with other threads' calls: XTree closes an index no other thread uses.
// - Where to commit: XTree's own commit points (every N inserts, its final commit(0)).
#pragma once

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <persistence/store_interface.h>

#include <pcore.hpp>

#ifndef DS_RETIRE
/// Retires id at epoch; Reason is an enumerator name of xtree::persist::RetireReason.
#define DS_RETIRE(store, id, epoch, Reason) \
  (store)->retire_node((id), (epoch), ::xtree::persist::RetireReason::Reason, __FILE__, __LINE__)
#endif

#ifndef DS_FREE_IMMEDIATE
/// Frees id now; Reason is an enumerator name of xtree::persist::RetireReason.
#define DS_FREE_IMMEDIATE(store, id, Reason) \
  (store)->free_node_immediate((id), ::xtree::persist::RetireReason::Reason, __FILE__, __LINE__)
#endif

namespace pcore {
namespace xtree {

/// XTree's durability modes, in its declaration order.
enum class Durability : uint32_t {
  STRICT = static_cast<uint32_t>(PCORE_DURABILITY_STRICT),
  EVENTUAL = static_cast<uint32_t>(PCORE_DURABILITY_EVENTUAL),
  BALANCED = static_cast<uint32_t>(PCORE_DURABILITY_BALANCED),
};

/// Tag type selecting the in-memory constructor.
struct InMemoryTag {
  explicit InMemoryTag() = default;
};
inline constexpr InMemoryTag in_memory{};

/// One size class's allocator statistics, under the old XTree allocator's field names.
struct ClassMemoryStats {
  size_t class_size = 0;  ///< block size; 0 in a total
  size_t live_bytes = 0;
  size_t dead_bytes = 0;  ///< free blocks below the high-water marks
  size_t total_segments = 0;
  size_t active_segments = 0;
  uint64_t allocs_from_bump = 0;
  uint64_t allocs_from_bitmap = 0;
  uint64_t frees_to_bitmap = 0;
  uint64_t total_allocations = 0;
  uint64_t total_frees = 0;
  double fragmentation = 0;  ///< dead / (live + dead)
  double reuse_rate = 0;     ///< allocs_from_bitmap / total_frees
};

/// What XTree's getMemoryStats() and its stress test's storage report print.
struct MemoryStats {
  size_t live_bytes = 0;
  size_t dead_bytes = 0;
  double fragmentation = 0;
  ClassMemoryStats total;  ///< sums over all classes
  std::vector<ClassMemoryStats> per_class;
  uint64_t live_nodes = 0;
  uint64_t data_file_bytes = 0;  ///< bytes of the class files on disk
  uint64_t log_bytes = 0;
  uint64_t pending_free_bytes = 0;  ///< freed, reusable once the log is synced
};

namespace detail {

/// The store root listing the roots set through the adapter (for manifest.json):
/// u8 version 1, u64 created_unix, then per root u8 name length, name, u64 epoch (LE).
inline constexpr std::string_view kRootListName = "pcore.xtree.roots";
inline constexpr uint8_t kRootListVersion = 1;
inline constexpr const char* kManifestFile = "manifest.json";

struct ListedRoot {
  std::string name;
  uint64_t epoch = 0;
};

struct RootList {
  uint64_t created_unix = 0;
  std::vector<ListedRoot> roots;
};

inline void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
}

inline uint64_t get_u64(const uint8_t* in) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(in[i]) << (8 * i);
  }
  return v;
}

inline std::vector<uint8_t> encode_root_list(const RootList& list) {
  std::vector<uint8_t> out;
  out.push_back(kRootListVersion);
  put_u64(out, list.created_unix);
  for (const ListedRoot& r : list.roots) {
    out.push_back(static_cast<uint8_t>(r.name.size()));
    out.insert(out.end(), r.name.begin(), r.name.end());
    put_u64(out, r.epoch);
  }
  return out;
}

/// nullopt when the bytes are not a root list of this version.
inline std::optional<RootList> decode_root_list(const std::vector<uint8_t>& m) {
  if (m.size() < 9 || m[0] != kRootListVersion) {
    return std::nullopt;
  }
  RootList list;
  list.created_unix = get_u64(m.data() + 1);
  size_t at = 9;
  while (at < m.size()) {
    const size_t len = m[at++];
    if (m.size() - at < len + 8) {
      return std::nullopt;
    }
    ListedRoot r;
    r.name.assign(reinterpret_cast<const char*>(m.data() + at), len);
    r.epoch = get_u64(m.data() + at + len);
    at += len + 8;
    list.roots.push_back(std::move(r));
  }
  return list;
}

inline void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof(esc), "\\u%04x", u);
      out += esc;
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

/// A float that reads back as the same float; JSON has no NaN or infinity: null.
inline void append_json_float(std::string& out, float v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
  out += buf;
}

[[noreturn]] inline void throw_errno(const std::string& what, const std::string& path) {
  throw std::runtime_error("pcore::xtree: " + what + " " + path + ": " + std::strerror(errno));
}

inline void write_all(int fd, const std::string& text, const std::string& path) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      throw_errno("cannot write", path);
    }
    done += static_cast<size_t>(n);
  }
}

/// Replaces dir/name with text so that a crash leaves the old file or the new one, whole:
/// a temporary file written and synced, renamed over the old one, then the directory synced.
inline void write_file_atomically(const std::string& dir, const char* name, const std::string& text) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw_errno("cannot create", tmp);
  }
  try {
    write_all(fd, text, tmp);
    if (::fsync(fd) != 0) {
      throw_errno("cannot sync", tmp);
    }
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw_errno("cannot close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw_errno("cannot rename to", path);
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    throw_errno("cannot open directory", dir);
  }
  const int synced = ::fsync(dfd);
  ::close(dfd);
  if (synced != 0) {
    throw_errno("cannot sync directory", dir);
  }
}

/// The file's bytes; empty when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::string out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return out;
  }
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    out.append(buf, n);
  }
  std::fclose(f);
  return out;
}

}  // namespace detail

class Store final : public ::xtree::persist::StoreInterface {
 public:
  using NodeID = ::xtree::persist::NodeID;
  using NodeKind = ::xtree::persist::NodeKind;
  using NodeBytes = ::xtree::persist::NodeBytes;
  using AllocResult = ::xtree::persist::AllocResult;
  using RetireReason = ::xtree::persist::RetireReason;
  using PinnedBytes = ::xtree::persist::StoreInterface::PinnedBytes;

  /// Opens (or creates) the store in dir with XTree's durability mode (default BALANCED).
  /// Without an index name, an empty root name is pcore's default root.
  explicit Store(const std::string& dir, Durability durability = Durability::BALANCED,
                 bool read_only = false)
      : Store(dir, std::string_view(), make_options(durability, read_only)) {}

  /// Opens dir for the index called index_name: an empty root name means index_name.
  Store(const std::string& dir, std::string_view index_name, Durability durability = Durability::BALANCED,
        bool read_only = false)
      : Store(dir, index_name, make_options(durability, read_only)) {}

  /// Opens dir with full pcore options (growth policy, size classes, read-only, ...).
  Store(const std::string& dir, const ::pcore::Options& options) : Store(dir, std::string_view(), options) {}

  /// Opens dir with full pcore options for the index called index_name.
  Store(const std::string& dir, std::string_view index_name, const ::pcore::Options& options)
      : dir_(dir),
        index_name_(index_name),
        options_(options),
        store_(::pcore::Store::open(dir, options)),
        read_only_(options.is_read_only()),
        new_id_growth_(options.growth() == ::pcore::GrowthPolicy::NewId) {
    check_index_name();
    load_root_list();
    if (!read_only_) {
      write_manifest_if_stale();
    }
  }

  /// A store without files (no manifest; closing it ends it).
  explicit Store(InMemoryTag, ::pcore::Options options = ::pcore::Options())
      : Store(in_memory, std::string_view(), std::move(options)) {}

  /// A store without files for the index called index_name.
  Store(InMemoryTag, std::string_view index_name, ::pcore::Options options = ::pcore::Options())
      : index_name_(index_name),
        options_(options),
        store_(::pcore::Store::in_memory(options)),
        read_only_(options.is_read_only()),
        new_id_growth_(options.growth() == ::pcore::GrowthPolicy::NewId) {
    check_index_name();
    load_root_list();
  }

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  Store(Store&&) = delete;
  Store& operator=(Store&&) = delete;

  ~Store() override = default;  // pcore::Store closes without throwing

  // ---- StoreInterface ----

  AllocResult allocate_node(size_t min_len, NodeKind kind) override {
    require_writable("allocate_node");
    PcoreAllocResult out = ::pcore::sized<PcoreAllocResult>();
    expect_ok(pcore_node_allocate(handle(), min_len, static_cast<uint8_t>(kind), &out));
    return AllocResult{NodeID::from_raw(out.id), out.writable, out.capacity};
  }

  void publish_node(NodeID id, const void* data, size_t len) override {
    require_writable("publish_node");
    if (new_id_growth_) {
      // XTree's protocol: the tree reallocates under a new id itself.
      const size_t capacity = get_capacity(id);
      if (capacity != 0 && len > capacity) {
        throw std::runtime_error("pcore::xtree::Store::publish_node: " + std::to_string(len) +
                                 " bytes exceed the node's capacity of " + std::to_string(capacity) +
                                 " (NEW_ID growth policy: reallocate under a new id)");
      }
    }
    uint64_t out_id = id.raw();
    expect_ok(pcore_node_publish(handle(), id.raw(), data, len, &out_id));
    if (out_id != id.raw()) {
      // Only possible if the store moved the node under a new id, which the capacity check
      // above rules out; never let an id change silently.
      throw std::logic_error("pcore::xtree::Store::publish_node: the node moved to a new id");
    }
  }

  bool supports_in_place_publish() const override { return true; }

  void publish_node_in_place(NodeID id, size_t len) override {
    require_writable("publish_node_in_place");
    expect_ok(pcore_node_publish_in_place(handle(), id.raw(), len));
  }

  NodeBytes read_node(NodeID id) const override {
    PcoreNodeBytes out{};
    if (pcore_node_read(try_handle(), id.raw(), &out) != ::pcore::kStatusOk) {
      return NodeBytes{nullptr, 0};
    }
    return NodeBytes{out.data, out.len};
  }

  /// A copy owned by the pin: pcore_node_read's pointer lasts only until the node's next
  /// write, which a pin cannot hold back.
  PinnedBytes read_node_pinned(NodeID id) const override {
    PinnedBytes out;
    PcoreStore* store = try_handle();
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(store, id.raw(), &info) != ::pcore::kStatusOk) {
      return out;
    }
    size_t cap = static_cast<size_t>(info.len);
    for (;;) {
      std::shared_ptr<uint8_t> bytes(new uint8_t[cap == 0 ? 1 : cap], std::default_delete<uint8_t[]>());
      size_t len = 0;
      if (pcore_node_read_copy(store, id.raw(), bytes.get(), cap, &len) != ::pcore::kStatusOk) {
        return out;
      }
      if (len <= cap) {
        out.data = bytes.get();
        out.size = len;
        out.pin = std::move(bytes);
        return out;
      }
      cap = len;  // published again, larger, since the info: copy once more
    }
  }

  void retire_node(NodeID id, uint64_t retire_epoch, RetireReason reason = RetireReason::Unknown,
                   const char* file = nullptr, int line = 0) override {
    (void)file;
    (void)line;
    require_writable("retire_node");
    expect_ok(pcore_node_retire(handle(), id.raw(), retire_epoch, static_cast<uint8_t>(reason)));
  }

  void free_node(NodeID id) override { free_node_immediate(id, RetireReason::Unknown); }

  void free_node_immediate(NodeID id, RetireReason reason = RetireReason::Reallocation,
                           const char* file = nullptr, int line = 0) override {
    (void)file;
    (void)line;
    require_writable("free_node_immediate");
    expect_ok(pcore_node_free(handle(), id.raw(), static_cast<uint8_t>(reason)));
  }

  NodeID get_root(std::string_view name = {}) const override {
    const std::string_view root = root_name(name);
    uint64_t id = 0;
    const int32_t status = pcore_root_get(handle(), name_ptr(root), root.size(), &id, nullptr, 0, nullptr);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return NodeID::from_raw(0);
    }
    expect_ok(status);
    return NodeID::from_raw(id);
  }

  void set_root(NodeID id, uint64_t epoch, const float* mbr, size_t mbr_size,
                std::string_view name = {}) override {
    require_writable("set_root");
    if (mbr == nullptr && mbr_size != 0) {
      throw std::invalid_argument("pcore::xtree::Store::set_root: mbr is null");
    }
    const std::string_view root = root_name(name);
    if (root == detail::kRootListName) {
      throw std::invalid_argument("pcore::xtree::Store::set_root: the root name " + std::string(root) +
                                  " is the adapter's own");
    }
    PcoreStore* store = handle();
    // The list first, checked whole, so a refused list leaves the root as it was.
    detail::RootList list = root_list_;
    list_root(list, root, epoch);
    const std::vector<uint8_t> list_bytes = detail::encode_root_list(list);
    if (list_bytes.size() > static_cast<size_t>(PCORE_ROOT_META_MAX_BYTES)) {
      throw std::runtime_error("pcore::xtree::Store::set_root: too many roots for the store's root list");
    }
    const size_t meta_len = mbr_size * sizeof(float);
    expect_ok(pcore_root_set(store, name_ptr(root), root.size(), id.raw(),
                             meta_len != 0 ? static_cast<const void*>(mbr) : nullptr, meta_len));
    if (list.roots.size() != root_list_.roots.size() || list_bytes != root_list_bytes_) {
      expect_ok(pcore_root_set(store, detail::kRootListName.data(), detail::kRootListName.size(), 0,
                               list_bytes.data(), list_bytes.size()));
      root_list_ = std::move(list);
      root_list_bytes_ = list_bytes;
    }
    roots_changed_ = true;
  }

  void commit(uint64_t epoch) override {
    (void)epoch;  // a hint only
    if (read_only_) {
      return;
    }
    expect_ok(pcore_store_commit(handle(), nullptr));
    if (roots_changed_) {
      write_manifest_if_stale();
      roots_changed_ = false;
    }
  }

  void* get_mapped_address(NodeID id) override {
    if (read_only_) {
      return nullptr;
    }
    void* ptr = nullptr;
    size_t capacity = 0;
    if (pcore_node_write_ptr(try_handle(), id.raw(), &ptr, &capacity) != ::pcore::kStatusOk) {
      return nullptr;
    }
    return ptr;
  }

  size_t get_capacity(NodeID id) override {
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(try_handle(), id.raw(), &info) != ::pcore::kStatusOk) {
      return 0;
    }
    return static_cast<size_t>(info.capacity);
  }

  bool get_node_kind(NodeID id, NodeKind& out_kind) const override {
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(try_handle(), id.raw(), &info) != ::pcore::kStatusOk || info.committed == 0) {
      return false;
    }
    out_kind = static_cast<NodeKind>(info.kind);
    return true;
  }

  bool is_node_present(NodeID id) const override { return is_node_present(id, nullptr); }

  bool is_node_present(NodeID id, bool* out_is_staged) const override {
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(try_handle(), id.raw(), &info) != ::pcore::kStatusOk) {
      return false;
    }
    if (out_is_staged != nullptr) {
      *out_is_staged = info.committed == 0;
    }
    return true;
  }

  // ---- beyond StoreInterface ----

  /// Closes the store and releases its directory; idempotent (XTree may call it twice).
  /// Uncommitted work is dropped. Any later call reopens the directory on demand.
  void close() {
    roots_changed_ = false;
    store_.close();
  }

  /// False after close() until a call reopens the store.
  [[nodiscard]] bool is_open() const noexcept { return store_.is_open(); }
  [[nodiscard]] bool read_only() const noexcept { return read_only_; }
  [[nodiscard]] bool new_id_growth() const noexcept { return new_id_growth_; }
  /// The index name given at construction: what an empty root name means.
  [[nodiscard]] const std::string& index_name() const noexcept { return index_name_; }
  /// The data directory; empty for an in-memory store.
  [[nodiscard]] const std::string& directory() const noexcept { return dir_; }

  /// The MBR floats stored by set_root under name; empty when there is no such root.
  [[nodiscard]] std::vector<float> get_root_mbr(std::string_view name = {}) const {
    handle();
    const std::optional<::pcore::Root> root = store_.get_root(root_name(name));
    std::vector<float> mbr;
    if (root) {
      mbr.resize(root->meta.size() / sizeof(float));
      if (!mbr.empty()) {
        std::memcpy(mbr.data(), root->meta.data(), mbr.size() * sizeof(float));
      }
    }
    return mbr;
  }

  /// XTree's forceCheckpoint(): the committed state written to a checkpoint and the log
  /// restarted. Does nothing on a read-only store.
  void checkpoint() {
    if (read_only_) {
      return;
    }
    expect_ok(pcore_store_checkpoint(handle()));
  }

  /// XTree's getMemoryStats(): the allocator's statistics, in total and per size class.
  [[nodiscard]] MemoryStats memory_stats() const {
    handle();
    const ::pcore::Stats s = store_.stats();
    MemoryStats out;
    out.total = class_memory(store_.total_stats());
    out.live_bytes = out.total.live_bytes;
    out.dead_bytes = out.total.dead_bytes;
    out.fragmentation = out.total.fragmentation;
    for (uint32_t i = 0; i < s.class_count; ++i) {
      out.per_class.push_back(class_memory(store_.class_stats(i)));
    }
    out.live_nodes = s.live_nodes;
    out.data_file_bytes = s.data_file_bytes;
    out.log_bytes = s.log_bytes;
    out.pending_free_bytes = s.pending_free_bytes;
    return out;
  }

  /// pcore_store_stats (reallocations, allocator counters, ...).
  [[nodiscard]] ::pcore::Stats stats() const {
    handle();
    return store_.stats();
  }

  /// The underlying pcore store and its C handle (reopened first if closed).
  [[nodiscard]] ::pcore::Store& pcore_store() {
    handle();
    return store_;
  }
  [[nodiscard]] const ::pcore::Store& pcore_store() const {
    handle();
    return store_;
  }
  [[nodiscard]] PcoreStore* raw() const { return try_handle(); }

 private:
  static ::pcore::Options make_options(Durability durability, bool read_only) {
    ::pcore::Options options;
    options.durability(static_cast<::pcore::Durability>(durability));
    options.read_only(read_only);
    return options;
  }

  static ClassMemoryStats class_memory(const ::pcore::ClassStats& c) {
    ClassMemoryStats out;
    out.class_size = static_cast<size_t>(c.class_bytes);
    out.live_bytes = static_cast<size_t>(c.live_bytes);
    out.dead_bytes = static_cast<size_t>(c.dead_bytes);
    out.total_segments = static_cast<size_t>(c.total_segments);
    out.active_segments = static_cast<size_t>(c.active_segments);
    out.allocs_from_bump = c.allocs_from_bump;
    out.allocs_from_bitmap = c.allocs_from_bitmap;
    out.frees_to_bitmap = c.frees_to_bitmap;
    out.total_allocations = c.total_allocations;
    out.total_frees = c.total_frees;
    out.fragmentation = c.fragmentation;
    out.reuse_rate = c.reuse_rate;
    return out;
  }

  static const char* name_ptr(std::string_view name) noexcept { return name.empty() ? "" : name.data(); }

  void check_index_name() const {
    if (index_name_.size() > static_cast<size_t>(PCORE_ROOT_NAME_MAX_BYTES)) {
      throw std::invalid_argument("pcore::xtree::Store: an index name of " + std::to_string(index_name_.size()) +
                                  " bytes; at most " + std::to_string(PCORE_ROOT_NAME_MAX_BYTES));
    }
  }

  /// The root an XTree name means: an empty name is the store's own (the index's) name.
  std::string_view root_name(std::string_view name) const noexcept {
    return name.empty() ? std::string_view(index_name_) : name;
  }

  /// The open store's handle, reopening the directory after a close(); throws when it
  /// cannot be reopened (an in-memory store, another store holding the directory).
  PcoreStore* handle() const {
    if (!store_.is_open()) {
      if (dir_.empty()) {
        throw ::pcore::Error(static_cast<int32_t>(PCORE_BAD_HANDLE), "pcore::xtree::Store: the in-memory store is closed");
      }
      store_ = ::pcore::Store::open(dir_, options_);
      load_root_list();
    }
    return store_.raw();
  }

  /// handle() for the calls that answer "nothing" rather than throw: nullptr (which pcore
  /// refuses with a status) when the store cannot be reopened.
  PcoreStore* try_handle() const noexcept {
    try {
      return handle();
    } catch (...) {
      return nullptr;
    }
  }

  void require_writable(const char* operation) const {
    if (read_only_) {
      throw std::logic_error(std::string("pcore::xtree::Store::") + operation +
                             ": the store is open read-only");
    }
  }

  /// A read-only refusal is a logic error (XTree's contract); anything else a runtime error.
  static void expect_ok(int32_t status) {
    if (status == ::pcore::kStatusOk) {
      return;
    }
    if (status == static_cast<int32_t>(PCORE_READ_ONLY)) {
      throw std::logic_error(::pcore::Error::describe(status));
    }
    throw ::pcore::Error(status);
  }

  // ---- the root list and manifest.json ----

  void load_root_list() const {
    root_list_ = detail::RootList{};
    root_list_bytes_.clear();
    const std::optional<::pcore::Root> stored = store_.get_root(detail::kRootListName);
    if (!stored) {
      return;
    }
    std::optional<detail::RootList> list = detail::decode_root_list(stored->meta);
    if (!list) {
      throw ::pcore::Error(static_cast<int32_t>(PCORE_CORRUPT),
                           "pcore::xtree::Store: the store's list of roots is damaged");
    }
    root_list_ = std::move(*list);
    root_list_bytes_ = stored->meta;
  }

  static void list_root(detail::RootList& list, std::string_view name, uint64_t epoch) {
    if (list.created_unix == 0) {
      list.created_unix = static_cast<uint64_t>(std::time(nullptr));
    }
    for (detail::ListedRoot& r : list.roots) {
      if (r.name == name) {
        r.epoch = epoch;
        return;
      }
    }
    list.roots.push_back(detail::ListedRoot{std::string(name), epoch});
  }

  /// manifest.json's text for the roots as they are now.
  std::string manifest_text() const {
    std::string out = "{\n  \"version\": 1,\n  \"created_unix\": " + std::to_string(root_list_.created_unix) +
                      ",\n  \"roots\": [";
    bool first = true;
    for (const detail::ListedRoot& r : root_list_.roots) {
      const std::optional<::pcore::Root> root = store_.get_root(r.name);
      if (!root) {
        continue;
      }
      char id[24];
      std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(root->id));
      out += first ? "\n    {\"name\": " : ",\n    {\"name\": ";
      first = false;
      detail::append_json_string(out, r.name);
      out += ", \"node_id\": \"";
      out += id;
      out += "\", \"epoch\": " + std::to_string(r.epoch) + ", \"mbr\": [";
      const size_t floats = root->meta.size() / sizeof(float);
      for (size_t i = 0; i < floats; ++i) {
        float v = 0;
        std::memcpy(&v, root->meta.data() + i * sizeof(float), sizeof(float));
        if (i != 0) {
          out += ", ";
        }
        detail::append_json_float(out, v);
      }
      out += "]}";
    }
    out += first ? "]\n}\n" : "\n  ]\n}\n";
    return out;
  }

  /// Writes manifest.json when its content is not what the store holds (only for a store
  /// on disk whose roots were ever set through the adapter).
  void write_manifest_if_stale() {
    if (dir_.empty() || root_list_.roots.empty()) {
      return;
    }
    const std::string text = manifest_text();
    if (text == manifest_written_) {
      return;
    }
    if (manifest_written_.empty() && detail::read_file(dir_ + "/" + detail::kManifestFile) == text) {
      manifest_written_ = text;
      return;
    }
    detail::write_file_atomically(dir_, detail::kManifestFile, text);
    manifest_written_ = text;
  }

  std::string dir_;
  std::string index_name_;
  ::pcore::Options options_;
  // Mutable: a const call after close() reopens the store (and reloads the root list).
  mutable ::pcore::Store store_;
  bool read_only_;
  bool new_id_growth_;
  mutable detail::RootList root_list_;
  mutable std::vector<uint8_t> root_list_bytes_;
  bool roots_changed_ = false;
  std::string manifest_written_;
};

/// XTree's forceCheckpoint() on whatever store it holds: true when store is a pcore one
/// (checkpointed), false otherwise.
inline bool force_checkpoint(::xtree::persist::StoreInterface* store) {
  auto* pcore_store = dynamic_cast<Store*>(store);
  if (pcore_store == nullptr) {
    return false;
  }
  pcore_store->checkpoint();
  return true;
}

/// XTree's getMemoryStats() on whatever store it holds: nullopt when it is not a pcore one.
inline std::optional<MemoryStats> memory_stats(const ::xtree::persist::StoreInterface* store) {
  const auto* pcore_store = dynamic_cast<const Store*>(store);
  if (pcore_store == nullptr) {
    return std::nullopt;
  }
  return pcore_store->memory_stats();
}

}  // namespace xtree
}  // namespace pcore
