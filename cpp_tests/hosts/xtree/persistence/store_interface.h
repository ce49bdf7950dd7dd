// Stand-in of XTree's persistence/store_interface.h (namespace xtree::persist).
//
// Written from the interface facts in design/HOSTS.md (XTree section): the same names,
// signatures and default arguments as the host's header, so that
// include/pcore/xtree_store.hpp compiles against this file exactly as it will against the
// real one. Only the interface is reproduced; none of XTree's code is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace xtree {
namespace persist {

// 8-byte node id: raw = handle << 16 | tag. Raw 0 means "no node"; raw ~0 is invalid.
class NodeID {
 public:
  constexpr NodeID() noexcept : raw_(kInvalidRaw) {}

  static constexpr NodeID from_raw(uint64_t raw) noexcept { return NodeID(raw); }
  static constexpr NodeID invalid() noexcept { return NodeID(kInvalidRaw); }
  // A tag of 0 is never issued: it becomes 1.
  static constexpr NodeID from_parts(uint64_t handle, uint16_t tag) noexcept {
    return NodeID((handle << 16) | static_cast<uint64_t>(tag == 0 ? 1 : tag));
  }

  constexpr uint64_t raw() const noexcept { return raw_; }
  constexpr uint64_t handle_index() const noexcept { return raw_ >> 16; }
  constexpr uint16_t tag() const noexcept { return static_cast<uint16_t>(raw_ & 0xFFFFu); }
  constexpr bool valid() const noexcept { return raw_ != kInvalidRaw; }

  friend constexpr bool operator==(NodeID a, NodeID b) noexcept { return a.raw_ == b.raw_; }
  friend constexpr bool operator!=(NodeID a, NodeID b) noexcept { return a.raw_ != b.raw_; }

 private:
  static constexpr uint64_t kInvalidRaw = ~uint64_t{0};
  explicit constexpr NodeID(uint64_t raw) noexcept : raw_(raw) {}
  uint64_t raw_;
};
static_assert(sizeof(NodeID) == 8, "NodeID is 8 bytes");

enum class NodeKind : uint8_t {
  Invalid = 0,
  Internal = 1,
  Leaf = 2,
  ChildVec = 3,
  ValueVec = 4,
  DataRecord = 5,
  Tombstone = 255,
};

struct NodeBytes {
  const void* data;
  size_t size;
};

struct AllocResult {
  NodeID id;
  void* writable;
  size_t capacity;
};

enum class RetireReason : uint8_t {
  Unknown = 0,
  SplitReplace = 1,
  MergeDelete = 2,
  Evict = 3,
  AbortRollback = 4,
  Reallocation = 5,
  TreeDestroy = 6,
};

class StoreInterface {
 public:
  // Bytes kept alive by a host pin. A store may leave read_node_pinned at its default,
  // which throws; the tree then falls back to read_node.
  struct PinnedBytes {
    const void* data = nullptr;
    size_t size = 0;
    std::shared_ptr<const void> pin;
  };

  virtual ~StoreInterface() = default;

  virtual AllocResult allocate_node(size_t min_len, NodeKind kind) = 0;
  virtual void publish_node(NodeID id, const void* data, size_t len) = 0;

  virtual bool supports_in_place_publish() const { return false; }
  virtual void publish_node_in_place(NodeID /*id*/, size_t /*len*/) {
    throw std::logic_error("publish_node_in_place is not supported by this store");
  }

  virtual NodeBytes read_node(NodeID id) const = 0;
  virtual PinnedBytes read_node_pinned(NodeID /*id*/) const {
    throw std::runtime_error("read_node_pinned is not supported by this store");
  }

  virtual void retire_node(NodeID id, uint64_t retire_epoch,
                           RetireReason reason = RetireReason::Unknown,
                           const char* file = nullptr, int line = 0) = 0;
  // Deprecated alias of a free with reason Unknown.
  virtual void free_node(NodeID id) = 0;
  virtual void free_node_immediate(NodeID id, RetireReason reason = RetireReason::Reallocation,
                                   const char* file = nullptr, int line = 0) = 0;

  virtual NodeID get_root(std::string_view name = {}) const = 0;
  virtual void set_root(NodeID id, uint64_t epoch, const float* mbr, size_t mbr_size,
                        std::string_view name = {}) = 0;
  virtual void commit(uint64_t epoch) = 0;

  virtual void* get_mapped_address(NodeID id) = 0;
  virtual size_t get_capacity(NodeID id) = 0;
  virtual bool get_node_kind(NodeID id, NodeKind& out_kind) const = 0;
  virtual bool is_node_present(NodeID id) const = 0;
  virtual bool is_node_present(NodeID id, bool* out_is_staged) const = 0;
};

}  // namespace persist
}  // namespace xtree
