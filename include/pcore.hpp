// pcore.hpp: header-only C++17 RAII wrappers over the pcore C ABI (include/pcore.h).
//
// - Every failing C call becomes a pcore::Error (a std::runtime_error) carrying the status;
//   its message is "<PCORE_STATUS_NAME>: <pcore_last_error_message()>".
// - pcore::Store owns one PcoreStore*: move-only, close() is idempotent, the destructor
//   closes without throwing (uncommitted work is dropped, as with pcore_store_close).
// - Store::open checks that the loaded library's ABI major version is the one this header
//   was written for, and throws PCORE_VERSION_MISMATCH otherwise.
//
// Thread safety is the C API's: one writer per store, reads from any thread. Pointers
// returned by read()/write_ptr()/allocate() stay valid until that node is next written or
// freed, or the store is closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern "C" {
#include "pcore.h"
}

namespace pcore {

/// The status every successful C call returns.
inline constexpr int32_t kStatusOk = static_cast<int32_t>(PCORE_OK);

/// A failed pcore call: status() is the C status code.
class Error : public std::runtime_error {
 public:
  /// Message built from the status name and this thread's last error message.
  explicit Error(int32_t status) : std::runtime_error(describe(status)), status_(status) {}
  /// Explicit message, for failures detected on the C++ side.
  Error(int32_t status, const std::string& message)
      : std::runtime_error(message), status_(status) {}

  [[nodiscard]] int32_t status() const noexcept { return status_; }

  /// "<PCORE_STATUS_NAME>: <pcore_last_error_message()>".
  [[nodiscard]] static std::string describe(int32_t status) {
    const char* name = pcore_status_name(status);
    const char* message = pcore_last_error_message();
    std::string text = name != nullptr ? name : "PCORE_UNKNOWN_STATUS";
    text += ": ";
    text += message != nullptr ? message : "";
    return text;
  }

 private:
  int32_t status_;
};

/// Throws pcore::Error unless status is PCORE_OK.
inline void check(int32_t status) {
  if (status != kStatusOk) {
    throw Error(status);
  }
}

/// ABI major version this header was written against.
inline constexpr uint32_t kAbiMajor = static_cast<uint32_t>(PCORE_ABI_VERSION) >> 16;

/// Throws PCORE_VERSION_MISMATCH when the loaded library has another ABI major version.
inline void check_abi_version() {
  const uint32_t loaded = pcore_abi_version();
  if ((loaded >> 16) != kAbiMajor) {
    throw Error(static_cast<int32_t>(PCORE_VERSION_MISMATCH),
                "PCORE_VERSION_MISMATCH: library ABI " + std::to_string(loaded >> 16) + "." +
                    std::to_string(loaded & 0xFFFFu) + ", header expects major " +
                    std::to_string(kAbiMajor));
  }
}

/// Durability modes, XTree's order.
enum class Durability : uint32_t {
  Strict = static_cast<uint32_t>(PCORE_DURABILITY_STRICT),
  Eventual = static_cast<uint32_t>(PCORE_DURABILITY_EVENTUAL),
  Balanced = static_cast<uint32_t>(PCORE_DURABILITY_BALANCED),
};

/// What publish does when len exceeds the node's capacity.
enum class GrowthPolicy : uint32_t {
  StableId = static_cast<uint32_t>(PCORE_GROWTH_STABLE_ID),
  NewId = static_cast<uint32_t>(PCORE_GROWTH_NEW_ID),
};

/// Builder over PcoreStoreOptions; starts from pcore_store_options_init's defaults.
class Options {
 public:
  Options() { check(pcore_store_options_init(&raw_)); }

  Options& read_only(bool on = true) { return flag(static_cast<uint32_t>(PCORE_OPEN_READ_ONLY), on); }
  Options& in_memory(bool on = true) { return flag(static_cast<uint32_t>(PCORE_OPEN_IN_MEMORY), on); }
  Options& no_create(bool on = true) { return flag(static_cast<uint32_t>(PCORE_OPEN_NO_CREATE), on); }
  Options& durability(Durability mode) {
    raw_.durability = static_cast<uint32_t>(mode);
    return *this;
  }
  Options& balanced_interval_ms(uint32_t ms) {
    raw_.balanced_interval_ms = ms;
    return *this;
  }
  Options& growth_policy(GrowthPolicy policy) {
    raw_.growth_policy = static_cast<uint32_t>(policy);
    return *this;
  }
  /// Size classes are fixed when a store is created; ignored when opening an existing one.
  Options& min_class_bytes(uint32_t bytes) {
    raw_.min_class_bytes = bytes;
    return *this;
  }
  Options& max_class_bytes(uint32_t bytes) {
    raw_.max_class_bytes = bytes;
    return *this;
  }
  Options& inline_payload_max_bytes(uint32_t bytes) {
    raw_.inline_payload_max_bytes = bytes;
    return *this;
  }
  Options& checkpoint_log_bytes(uint64_t bytes) {
    raw_.checkpoint_log_bytes = bytes;
    return *this;
  }

  [[nodiscard]] bool has_flag(uint32_t flag_bit) const noexcept { return (raw_.flags & flag_bit) != 0; }
  [[nodiscard]] bool is_read_only() const noexcept {
    return has_flag(static_cast<uint32_t>(PCORE_OPEN_READ_ONLY));
  }
  [[nodiscard]] bool is_in_memory() const noexcept {
    return has_flag(static_cast<uint32_t>(PCORE_OPEN_IN_MEMORY));
  }
  [[nodiscard]] GrowthPolicy growth() const noexcept { return static_cast<GrowthPolicy>(raw_.growth_policy); }

  [[nodiscard]] const PcoreStoreOptions& raw() const noexcept { return raw_; }
  [[nodiscard]] PcoreStoreOptions& raw() noexcept { return raw_; }

 private:
  Options& flag(uint32_t bit, bool on) {
    raw_.flags = on ? (raw_.flags | bit) : (raw_.flags & ~bit);
    return *this;
  }

  PcoreStoreOptions raw_{};
};

/// A freshly allocated, zero-filled block.
struct Allocation {
  uint64_t id;
  void* writable;
  size_t capacity;
};

/// A node's latest published bytes; valid until the node is next written or freed.
struct Bytes {
  const void* data;
  size_t len;

  [[nodiscard]] const uint8_t* begin() const noexcept { return static_cast<const uint8_t*>(data); }
  [[nodiscard]] const uint8_t* end() const noexcept { return begin() + len; }
};

/// A writable view of a node's current bytes (see pcore_node_write_ptr).
struct WriteRegion {
  void* data;
  size_t capacity;
};

/// A named root: the node id and its meta bytes.
struct Root {
  uint64_t id;
  std::vector<uint8_t> meta;
};

using NodeInfo = PcoreNodeInfo;
using Stats = PcoreStoreStats;
using ClassStats = PcoreClassStats;

/// Owns one open store. Move-only.
class Store {
 public:
  /// An empty (closed) store; every call on it throws PCORE_BAD_HANDLE.
  Store() noexcept = default;

  /// Opens (or creates) the store in dir.
  [[nodiscard]] static Store open(const std::string& dir, const Options& options = Options()) {
    check_abi_version();
    PcoreStore* handle = nullptr;
    check(pcore_store_open(dir.c_str(), &options.raw(), &handle));
    return Store(handle);
  }

  /// A store without files (PCORE_OPEN_IN_MEMORY is added to options).
  [[nodiscard]] static Store in_memory(Options options = Options()) {
    check_abi_version();
    options.in_memory(true);
    PcoreStore* handle = nullptr;
    check(pcore_store_open(nullptr, &options.raw(), &handle));
    return Store(handle);
  }

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  Store(Store&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Store& operator=(Store&& other) noexcept {
    if (this != &other) {
      close_quietly();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  /// Closes without throwing; uncommitted work is dropped.
  ~Store() { close_quietly(); }

  /// Closes the store (checkpoint, unlock). Idempotent: a second call does nothing.
  /// The handle is gone even when this throws.
  void close() {
    if (handle_ == nullptr) {
      return;
    }
    PcoreStore* handle = std::exchange(handle_, nullptr);
    check(pcore_store_close(handle));
  }

  [[nodiscard]] bool is_open() const noexcept { return handle_ != nullptr; }
  explicit operator bool() const noexcept { return is_open(); }
  /// The C handle (nullptr once closed). Still owned by this object.
  [[nodiscard]] PcoreStore* raw() const noexcept { return handle_; }

  /// pcore_node_allocate.
  [[nodiscard]] Allocation allocate(size_t min_len, uint8_t kind) {
    PcoreAllocResult out{};
    check(pcore_node_allocate(handle_, min_len, kind, &out));
    return Allocation{out.id, out.writable, out.capacity};
  }

  /// pcore_node_publish. Returns the id to use from now on (a new one only under
  /// GrowthPolicy::NewId when the node moved).
  uint64_t publish(uint64_t id, const void* data, size_t len) {
    uint64_t out_id = id;
    check(pcore_node_publish(handle_, id, data, len, &out_id));
    return out_id;
  }

  /// pcore_node_write_ptr: begins a mutation; end it with publish_in_place.
  [[nodiscard]] WriteRegion write_ptr(uint64_t id) {
    void* ptr = nullptr;
    size_t capacity = 0;
    check(pcore_node_write_ptr(handle_, id, &ptr, &capacity));
    return WriteRegion{ptr, capacity};
  }

  /// pcore_node_publish_in_place.
  void publish_in_place(uint64_t id, size_t len) { check(pcore_node_publish_in_place(handle_, id, len)); }

  /// pcore_node_read; throws PCORE_NOT_FOUND for unknown, freed or stale ids.
  [[nodiscard]] Bytes read(uint64_t id) const {
    PcoreNodeBytes out{};
    check(pcore_node_read(handle_, id, &out));
    return Bytes{out.data, out.len};
  }

  /// pcore_node_read; nullopt for unknown, freed or stale ids, throws on other failures.
  [[nodiscard]] std::optional<Bytes> try_read(uint64_t id) const {
    PcoreNodeBytes out{};
    const int32_t status = pcore_node_read(handle_, id, &out);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    return Bytes{out.data, out.len};
  }

  /// pcore_node_info; throws PCORE_NOT_FOUND for unknown, freed or stale ids.
  [[nodiscard]] NodeInfo info(uint64_t id) const {
    PcoreNodeInfo out{};
    check(pcore_node_info(handle_, id, &out));
    return out;
  }

  /// pcore_node_info; nullopt for unknown, freed or stale ids.
  [[nodiscard]] std::optional<NodeInfo> try_info(uint64_t id) const {
    PcoreNodeInfo out{};
    const int32_t status = pcore_node_info(handle_, id, &out);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    return out;
  }

  /// True for reserved or live ids with a matching tag.
  [[nodiscard]] bool contains(uint64_t id) const { return try_info(id).has_value(); }

  /// pcore_node_free: a reserved node is freed at once, a live one at the next commit.
  void free(uint64_t id, uint8_t reason = static_cast<uint8_t>(PCORE_REASON_UNKNOWN)) {
    check(pcore_node_free(handle_, id, reason));
  }

  /// pcore_node_retire: freed at the first commit at or after epoch.
  void retire(uint64_t id, uint64_t epoch, uint8_t reason = static_cast<uint8_t>(PCORE_REASON_UNKNOWN)) {
    check(pcore_node_retire(handle_, id, epoch, reason));
  }

  /// pcore_root_set; an empty name is the store's default root. Durable at the next commit.
  void set_root(std::string_view name, uint64_t id, const void* meta = nullptr, size_t meta_len = 0) {
    check(pcore_root_set(handle_, name_ptr(name), name.size(), id, meta, meta_len));
  }

  /// pcore_root_get; nullopt when there is no such root.
  [[nodiscard]] std::optional<Root> get_root(std::string_view name = {}) const {
    Root root{0, std::vector<uint8_t>(256)};
    size_t meta_len = 0;
    int32_t status = pcore_root_get(handle_, name_ptr(name), name.size(), &root.id, root.meta.data(),
                                    root.meta.size(), &meta_len);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    if (meta_len > root.meta.size()) {
      root.meta.resize(meta_len);
      status = pcore_root_get(handle_, name_ptr(name), name.size(), &root.id, root.meta.data(),
                              root.meta.size(), &meta_len);
      if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
        return std::nullopt;
      }
      check(status);
    }
    root.meta.resize(meta_len);
    return root;
  }

  /// pcore_store_commit; returns the new epoch.
  uint64_t commit() {
    uint64_t epoch = 0;
    check(pcore_store_commit(handle_, &epoch));
    return epoch;
  }

  /// pcore_store_checkpoint.
  void checkpoint() { check(pcore_store_checkpoint(handle_)); }

  /// pcore_store_stats.
  [[nodiscard]] Stats stats() const {
    PcoreStoreStats out{};
    out.struct_size = static_cast<uint32_t>(sizeof(PcoreStoreStats));
    check(pcore_store_stats(handle_, &out));
    return out;
  }

  /// pcore_store_class_stats for class_index < stats().class_count.
  [[nodiscard]] ClassStats class_stats(uint32_t class_index) const {
    PcoreClassStats out{};
    check(pcore_store_class_stats(handle_, class_index, &out));
    return out;
  }

  /// pcore_store_verify: throws PCORE_CORRUPT / PCORE_INTERNAL on a mismatch.
  void verify() const { check(pcore_store_verify(handle_)); }

 private:
  explicit Store(PcoreStore* handle) noexcept : handle_(handle) {}

  static const char* name_ptr(std::string_view name) noexcept { return name.empty() ? "" : name.data(); }

  void close_quietly() noexcept {
    if (handle_ != nullptr) {
      (void)pcore_store_close(std::exchange(handle_, nullptr));
    }
  }

  PcoreStore* handle_ = nullptr;
};

}  // namespace pcore
