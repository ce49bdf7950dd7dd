// pcore/xtree_store.hpp: XTree's persistence StoreInterface implemented on pcore.
//
// XTree builds its store in exactly one place; constructing a pcore::xtree::Store there is
// all it needs. Header-only, C++17. Requires XTree's <persistence/store_interface.h>.
//
// Contracts (design/HOSTS.md, XTree section):
// - allocate_node: a zero-filled block >= min_len. Throws std::logic_error on a read-only
//   store, std::runtime_error (pcore::Error) on any other failure.
// - publish_node: repeatable, before and after a commit; data may alias the node's own block.
//   Growth when len > capacity depends on the store's growth policy:
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
// - get_root: raw 0 when no such root; an empty name is the store's default root. It throws
//   only on misuse (a closed store, a name over PCORE_ROOT_NAME_MAX_BYTES).
// - set_root: the MBR floats are kept as the root's meta bytes (see get_root_mbr).
// - commit(epoch): the epoch is a hint; everything published before is durable after.
//   On a read-only store commit does nothing (nothing can have changed).
// - get_mapped_address: nullptr on failure (and on a read-only store); the tree then copies
//   through publish_node. get_capacity: 0 when unknown.
// - get_node_kind: true only for committed (live) ids with a matching tag.
// - is_node_present: true for reserved or live ids; staged = not yet committed.
// - Every write on a read-only store throws std::logic_error.
// - close() is idempotent; the destructor closes and never throws. Uncommitted work is
//   dropped at close: XTree's final commit(0) comes first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

class Store final : public ::xtree::persist::StoreInterface {
 public:
  using NodeID = ::xtree::persist::NodeID;
  using NodeKind = ::xtree::persist::NodeKind;
  using NodeBytes = ::xtree::persist::NodeBytes;
  using AllocResult = ::xtree::persist::AllocResult;
  using RetireReason = ::xtree::persist::RetireReason;

  /// Opens (or creates) the store in dir with XTree's durability mode (default BALANCED).
  explicit Store(const std::string& dir, Durability durability = Durability::BALANCED,
                 bool read_only = false)
      : Store(dir, make_options(durability, read_only)) {}

  /// Opens dir with full pcore options (growth policy, size classes, read-only, ...).
  Store(const std::string& dir, const ::pcore::Options& options)
      : store_(::pcore::Store::open(dir, options)),
        read_only_(options.is_read_only()),
        new_id_growth_(options.growth() == ::pcore::GrowthPolicy::NewId) {}

  /// A store without files.
  explicit Store(InMemoryTag, ::pcore::Options options = ::pcore::Options())
      : store_(::pcore::Store::in_memory(options)),
        read_only_(options.is_read_only()),
        new_id_growth_(options.growth() == ::pcore::GrowthPolicy::NewId) {}

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  Store(Store&&) = delete;
  Store& operator=(Store&&) = delete;

  ~Store() override = default;  // pcore::Store closes without throwing

  // ---- StoreInterface ----

  AllocResult allocate_node(size_t min_len, NodeKind kind) override {
    require_writable("allocate_node");
    PcoreAllocResult out = ::pcore::sized<PcoreAllocResult>();
    expect_ok(pcore_node_allocate(store_.raw(), min_len, static_cast<uint8_t>(kind), &out));
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
    expect_ok(pcore_node_publish(store_.raw(), id.raw(), data, len, &out_id));
    if (out_id != id.raw()) {
      // Only possible if the store moved the node under a new id, which the capacity check
      // above rules out; never let an id change silently.
      throw std::logic_error("pcore::xtree::Store::publish_node: the node moved to a new id");
    }
  }

  bool supports_in_place_publish() const override { return true; }

  void publish_node_in_place(NodeID id, size_t len) override {
    require_writable("publish_node_in_place");
    expect_ok(pcore_node_publish_in_place(store_.raw(), id.raw(), len));
  }

  NodeBytes read_node(NodeID id) const override {
    PcoreNodeBytes out{};
    if (pcore_node_read(store_.raw(), id.raw(), &out) != ::pcore::kStatusOk) {
      return NodeBytes{nullptr, 0};
    }
    return NodeBytes{out.data, out.len};
  }

  void retire_node(NodeID id, uint64_t retire_epoch, RetireReason reason = RetireReason::Unknown,
                   const char* file = nullptr, int line = 0) override {
    (void)file;
    (void)line;
    require_writable("retire_node");
    expect_ok(pcore_node_retire(store_.raw(), id.raw(), retire_epoch, static_cast<uint8_t>(reason)));
  }

  void free_node(NodeID id) override { free_node_immediate(id, RetireReason::Unknown); }

  void free_node_immediate(NodeID id, RetireReason reason = RetireReason::Reallocation,
                           const char* file = nullptr, int line = 0) override {
    (void)file;
    (void)line;
    require_writable("free_node_immediate");
    expect_ok(pcore_node_free(store_.raw(), id.raw(), static_cast<uint8_t>(reason)));
  }

  NodeID get_root(std::string_view name = {}) const override {
    uint64_t id = 0;
    const int32_t status =
        pcore_root_get(store_.raw(), name_ptr(name), name.size(), &id, nullptr, 0, nullptr);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return NodeID::from_raw(0);
    }
    expect_ok(status);
    return NodeID::from_raw(id);
  }

  void set_root(NodeID id, uint64_t epoch, const float* mbr, size_t mbr_size,
                std::string_view name = {}) override {
    (void)epoch;  // 0 in practice; the root becomes durable at the next commit
    require_writable("set_root");
    if (mbr == nullptr && mbr_size != 0) {
      throw std::invalid_argument("pcore::xtree::Store::set_root: mbr is null");
    }
    const size_t meta_len = mbr_size * sizeof(float);
    expect_ok(pcore_root_set(store_.raw(), name_ptr(name), name.size(), id.raw(),
                             meta_len != 0 ? static_cast<const void*>(mbr) : nullptr, meta_len));
  }

  void commit(uint64_t epoch) override {
    (void)epoch;  // a hint only
    if (read_only_) {
      return;
    }
    expect_ok(pcore_store_commit(store_.raw(), nullptr));
  }

  void* get_mapped_address(NodeID id) override {
    if (read_only_) {
      return nullptr;
    }
    void* ptr = nullptr;
    size_t capacity = 0;
    if (pcore_node_write_ptr(store_.raw(), id.raw(), &ptr, &capacity) != ::pcore::kStatusOk) {
      return nullptr;
    }
    return ptr;
  }

  size_t get_capacity(NodeID id) override {
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(store_.raw(), id.raw(), &info) != ::pcore::kStatusOk) {
      return 0;
    }
    return static_cast<size_t>(info.capacity);
  }

  bool get_node_kind(NodeID id, NodeKind& out_kind) const override {
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(store_.raw(), id.raw(), &info) != ::pcore::kStatusOk || info.committed == 0) {
      return false;
    }
    out_kind = static_cast<NodeKind>(info.kind);
    return true;
  }

  bool is_node_present(NodeID id) const override { return is_node_present(id, nullptr); }

  bool is_node_present(NodeID id, bool* out_is_staged) const override {
    PcoreNodeInfo info = ::pcore::sized<PcoreNodeInfo>();
    if (pcore_node_info(store_.raw(), id.raw(), &info) != ::pcore::kStatusOk) {
      return false;
    }
    if (out_is_staged != nullptr) {
      *out_is_staged = info.committed == 0;
    }
    return true;
  }

  // ---- beyond StoreInterface ----

  /// Closes the store; idempotent (XTree may call it twice). Uncommitted work is dropped.
  void close() { store_.close(); }

  [[nodiscard]] bool is_open() const noexcept { return store_.is_open(); }
  [[nodiscard]] bool read_only() const noexcept { return read_only_; }
  [[nodiscard]] bool new_id_growth() const noexcept { return new_id_growth_; }

  /// The MBR floats stored by set_root under name; empty when there is no such root.
  [[nodiscard]] std::vector<float> get_root_mbr(std::string_view name = {}) const {
    const std::optional<::pcore::Root> root = store_.get_root(name);
    std::vector<float> mbr;
    if (root) {
      mbr.resize(root->meta.size() / sizeof(float));
      if (!mbr.empty()) {
        std::memcpy(mbr.data(), root->meta.data(), mbr.size() * sizeof(float));
      }
    }
    return mbr;
  }

  /// pcore_store_stats (reallocations, allocator counters, ...).
  [[nodiscard]] ::pcore::Stats stats() const { return store_.stats(); }

  /// The underlying pcore store and its C handle.
  [[nodiscard]] ::pcore::Store& pcore_store() noexcept { return store_; }
  [[nodiscard]] const ::pcore::Store& pcore_store() const noexcept { return store_; }
  [[nodiscard]] PcoreStore* raw() const noexcept { return store_.raw(); }

 private:
  static ::pcore::Options make_options(Durability durability, bool read_only) {
    ::pcore::Options options;
    options.durability(static_cast<::pcore::Durability>(durability));
    options.read_only(read_only);
    return options;
  }

  static const char* name_ptr(std::string_view name) noexcept { return name.empty() ? "" : name.data(); }

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

  ::pcore::Store store_;
  bool read_only_;
  bool new_id_growth_;
};

}  // namespace xtree
}  // namespace pcore
