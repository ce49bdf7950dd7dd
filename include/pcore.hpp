// pcore.hpp: header-only C++17 RAII wrappers over the pcore C ABI (include/pcore.h).
//
// - Every failing C call becomes a pcore::Error (a std::runtime_error) carrying the status;
//   its message is "<PCORE_STATUS_NAME>: <pcore_last_error_message()>".
// - pcore::Store owns one PcoreStore*: move-only, close() is idempotent, the destructor
//   closes without throwing (uncommitted work is dropped, as with pcore_store_close).
// - Store::open checks that the loaded library's ABI major version is the one this header
//   was written for, and throws PCORE_VERSION_MISMATCH otherwise.
//
// - pcore::Tree owns one PcoreTree* (a B+ tree in a store), pcore::Cursor one PcoreCursor*;
//   both move-only, close() idempotent, destructors never throw. pcore::TreeOptions builds a
//   PcoreTreeOptions (page size, duplicates mode, comparator, flags). Keys and values are
//   passed as pcore::ByteView (from std::string_view, std::string, std::vector<uint8_t>, a
//   C string, or pointer + length); results come back as owned std::vector<uint8_t>.
//   Tree::get and Cursor::get return std::nullopt for "no such key" / "past the end"
//   (PCORE_NOT_FOUND); every other failure throws pcore::Error.
//
// Thread safety is the C API's: one writer per store, reads from any thread. Pointers
// returned by read()/write_ptr()/allocate() stay valid until that node is next written or
// freed, the store is closed, or (read()) the second commit after the read has returned
// (compaction moves clean nodes; see pcore_node_read); a thread reading nodes another thread
// may write or commit uses read_copy(). Trees and cursors should be closed before their store;
// after the store closes their calls throw PCORE_BAD_HANDLE (never a crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
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

/// A versioned C struct (PcoreNodeInfo, PcoreStoreStats, ...), zeroed, with struct_size set:
/// what every call that fills one expects.
template <typename T>
[[nodiscard]] T sized() noexcept {
  T value{};
  value.struct_size = sizeof(T);
  return value;
}

namespace detail {

/// Reads a length-prefixed value through call(buf, cap, &len), which answers the full length
/// in len: again with a buffer that large when the first was too small (the value may have
/// changed meanwhile). nullopt on PCORE_NOT_FOUND; throws on other failures.
template <typename Call>
[[nodiscard]] std::optional<std::vector<uint8_t>> read_sized_value(size_t first_guess, Call call) {
  std::vector<uint8_t> value(first_guess);
  for (;;) {
    size_t len = 0;
    const int32_t status = call(value.data(), value.size(), &len);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    if (len <= value.size()) {
      value.resize(len);
      return value;
    }
    value.resize(len);
  }
}

}  // namespace detail

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

/// Which size class a node moves to when it outgrows its block.
enum class GrowthRule : uint32_t {
  /// The smallest class that holds the new length (the default).
  Fit = static_cast<uint32_t>(PCORE_GROWTH_RULE_FIT),
  /// The smallest class of at least twice the new length (the seed's rule).
  Double = static_cast<uint32_t>(PCORE_GROWTH_RULE_DOUBLE),
};

/// Builder over PcoreStoreOptions; starts from pcore_store_options_init's defaults.
class Options {
 public:
  Options() { check(pcore_store_options_init(&raw_)); }

  Options& read_only(bool on = true) { return flag(PCORE_OPEN_READ_ONLY, on); }
  Options& in_memory(bool on = true) { return flag(PCORE_OPEN_IN_MEMORY, on); }
  Options& no_create(bool on = true) { return flag(PCORE_OPEN_NO_CREATE, on); }
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
  Options& growth_rule(GrowthRule rule) {
    raw_.growth_rule = static_cast<uint32_t>(rule);
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
  /// After this long without a commit, a store whose files hold more than 1.4 times its live
  /// bytes is checkpointed by its background thread (ABI 2.3; default 1000 ms).
  Options& idle_checkpoint_ms(uint64_t ms) {
    raw_.idle_checkpoint_ms = ms;
    return *this;
  }
  /// No checkpoint at rest: the store's files stay as the last commit left them.
  Options& no_idle_checkpoint() { return idle_checkpoint_ms(PCORE_IDLE_CHECKPOINT_NEVER); }

  [[nodiscard]] bool has_flag(uint64_t flag_bit) const noexcept { return (raw_.flags & flag_bit) != 0; }
  [[nodiscard]] bool is_read_only() const noexcept { return has_flag(PCORE_OPEN_READ_ONLY); }
  [[nodiscard]] bool is_in_memory() const noexcept { return has_flag(PCORE_OPEN_IN_MEMORY); }
  [[nodiscard]] GrowthPolicy growth() const noexcept { return static_cast<GrowthPolicy>(raw_.growth_policy); }
  [[nodiscard]] GrowthRule growth_rule() const noexcept { return static_cast<GrowthRule>(raw_.growth_rule); }

  [[nodiscard]] const PcoreStoreOptions& raw() const noexcept { return raw_; }
  [[nodiscard]] PcoreStoreOptions& raw() noexcept { return raw_; }

 private:
  Options& flag(uint64_t bit, bool on) {
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

/// A node's latest published bytes; valid until the node is next written or freed, or the
/// second commit after the read has returned.
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
using CompactReport = PcoreCompactReport;

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
    PcoreAllocResult out = sized<PcoreAllocResult>();
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

  /// pcore_node_read_copy: a copy of the node's bytes, exactly one published version even
  /// while another thread writes the node; throws PCORE_NOT_FOUND for unknown, freed or
  /// stale ids.
  [[nodiscard]] std::vector<uint8_t> read_copy(uint64_t id) const {
    std::vector<uint8_t> bytes;
    check(copy_node(id, bytes));
    return bytes;
  }

  /// pcore_node_read_copy; nullopt for unknown, freed or stale ids, throws on other failures.
  [[nodiscard]] std::optional<std::vector<uint8_t>> try_read_copy(uint64_t id) const {
    std::vector<uint8_t> bytes;
    const int32_t status = copy_node(id, bytes);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    return bytes;
  }

  /// pcore_node_info; throws PCORE_NOT_FOUND for unknown, freed or stale ids.
  [[nodiscard]] NodeInfo info(uint64_t id) const {
    PcoreNodeInfo out = sized<PcoreNodeInfo>();
    check(pcore_node_info(handle_, id, &out));
    return out;
  }

  /// pcore_node_info; nullopt for unknown, freed or stale ids.
  [[nodiscard]] std::optional<NodeInfo> try_info(uint64_t id) const {
    PcoreNodeInfo out = sized<PcoreNodeInfo>();
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
    uint64_t id = 0;
    std::optional<std::vector<uint8_t>> meta =
        detail::read_sized_value(256, [&](void* buf, size_t cap, size_t* len) {
          return pcore_root_get(handle_, name_ptr(name), name.size(), &id, buf, cap, len);
        });
    if (!meta) {
      return std::nullopt;
    }
    return Root{id, std::move(*meta)};
  }

  /// pcore_store_commit; returns the new epoch.
  uint64_t commit() {
    uint64_t epoch = 0;
    check(pcore_store_commit(handle_, &epoch));
    return epoch;
  }

  /// pcore_store_abort: every change since the last commit is thrown away; open trees hold
  /// their committed entries again, and a tree created since is gone (its handles throw
  /// PCORE_BAD_HANDLE; open it again). See also WriteTransaction.
  void abort() { check(pcore_store_abort(handle_)); }

  /// pcore_store_checkpoint.
  void checkpoint() { check(pcore_store_checkpoint(handle_)); }

  /// pcore_store_backup: a compacted copy of the last commit in dest_dir, taken while the
  /// store goes on; flags 0 or PCORE_BACKUP_REPLACE.
  void backup(const std::string& dest_dir, uint32_t flags = 0) const {
    check(pcore_store_backup(handle_, dest_dir.c_str(), flags));
  }

  /// pcore_store_compact: moves nodes forward and cuts the class files' free tails, online.
  /// Its rounds are commits: call it where you would call commit().
  CompactReport compact() {
    PcoreCompactReport out = sized<PcoreCompactReport>();
    check(pcore_store_compact(handle_, 0, &out));
    return out;
  }

  /// pcore_store_stats.
  [[nodiscard]] Stats stats() const {
    PcoreStoreStats out = sized<PcoreStoreStats>();
    check(pcore_store_stats(handle_, &out));
    return out;
  }

  /// pcore_store_class_stats for class_index < stats().class_count, or PCORE_CLASS_TOTAL.
  [[nodiscard]] ClassStats class_stats(uint32_t class_index) const {
    PcoreClassStats out = sized<PcoreClassStats>();
    check(pcore_store_class_stats(handle_, class_index, &out));
    return out;
  }

  /// The allocator's figures summed over all size classes (PCORE_CLASS_TOTAL).
  [[nodiscard]] ClassStats total_stats() const { return class_stats(PCORE_CLASS_TOTAL); }

  /// pcore_store_verify: throws PCORE_CORRUPT / PCORE_INTERNAL on a mismatch.
  void verify() const { check(pcore_store_verify(handle_)); }

 private:
  explicit Store(PcoreStore* handle) noexcept : handle_(handle) {}

  static const char* name_ptr(std::string_view name) noexcept { return name.empty() ? "" : name.data(); }

  static constexpr size_t kCopyBufferBytes = 256;

  /// pcore_node_read_copy into out, sized to the node.
  int32_t copy_node(uint64_t id, std::vector<uint8_t>& out) const {
    out.resize(kCopyBufferBytes);
    for (;;) {
      size_t len = 0;
      const int32_t status = pcore_node_read_copy(handle_, id, out.data(), out.size(), &len);
      if (status != kStatusOk || len <= out.size()) {
        out.resize(status == kStatusOk ? len : 0);
        return status;
      }
      out.resize(len);  // a larger node: copy again (it may have changed meanwhile)
    }
  }

  void close_quietly() noexcept {
    if (handle_ != nullptr) {
      (void)pcore_store_close(std::exchange(handle_, nullptr));
    }
  }

  PcoreStore* handle_ = nullptr;
};

/// A scope of changes to a store that commits only when told to: leaving the scope any other
/// way (an exception halfway through a statement, an early return) aborts, so the store is
/// as its last commit left it. One at a time per store; the store must outlive it.
///
///   pcore::WriteTransaction txn(store);
///   index_a.insert(key, row);   // throws on a duplicate in index_b below: both undone
///   index_b.insert(key2, row);
///   txn.commit();
class WriteTransaction {
 public:
  explicit WriteTransaction(Store& store) noexcept : store_(&store) {}
  ~WriteTransaction() {
    if (store_ != nullptr && store_->is_open()) {
      (void)pcore_store_abort(store_->raw());  // never throws from a destructor
    }
  }
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;

  /// Commits (pcore_store_commit) and ends the transaction; returns the new epoch. If the
  /// commit throws, the transaction is still open and aborts when it goes out of scope.
  uint64_t commit() {
    const uint64_t epoch = store_->commit();
    store_ = nullptr;
    return epoch;
  }

  /// Aborts now (pcore_store_abort) and ends the transaction.
  void abort() {
    Store* store = store_;
    store_ = nullptr;
    store->abort();
  }

 private:
  Store* store_;
};


// ---- B+ trees -------------------------------------------------------------------------------

/// A non-owning view of bytes (a key, a value or a bound). The C calls copy what they need,
/// so the viewed bytes only have to live for the duration of the call.
class ByteView {
 public:
  constexpr ByteView() noexcept = default;
  constexpr ByteView(const void* data, size_t size) noexcept : data_(data), size_(size) {}
  ByteView(std::string_view text) noexcept : data_(text.data()), size_(text.size()) {}  // NOLINT
  ByteView(const std::string& text) noexcept : data_(text.data()), size_(text.size()) {}  // NOLINT
  ByteView(const char* text) noexcept : ByteView(std::string_view(text)) {}  // NOLINT
  ByteView(const std::vector<uint8_t>& bytes) noexcept  // NOLINT
      : data_(bytes.data()), size_(bytes.size()) {}

  [[nodiscard]] const void* data() const noexcept { return data_; }
  [[nodiscard]] size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::vector<uint8_t> to_vector() const {
    const auto* p = static_cast<const uint8_t*>(data_);
    return size_ == 0 ? std::vector<uint8_t>() : std::vector<uint8_t>(p, p + size_);
  }

 private:
  // Never NULL: the C API refuses NULL with a non-zero length, and an empty view is "".
  const void* data_ = "";
  size_t size_ = 0;
};

/// What inserting an existing key does (fixed when the tree is created).
enum class Duplicates : uint32_t {
  /// PCORE_DUPLICATE_KEY; the tree is unchanged.
  Unique = static_cast<uint32_t>(PCORE_DUP_UNIQUE),
  /// The new value replaces the old one.
  Overwrite = static_cast<uint32_t>(PCORE_DUP_OVERWRITE),
  /// One entry per (key, value) pair.
  Multi = static_cast<uint32_t>(PCORE_DUP_MULTI),
};

/// A key order for TreeOptions::comparator (see PcoreCompareFn: a total order that never
/// throws; ctx is passed back unchanged).
using CompareFn = PcoreCompareFn;

/// Builder over PcoreTreeOptions; starts from pcore_tree_options_init's defaults (4 KiB pages,
/// unique keys, bytewise order, create when missing).
class TreeOptions {
 public:
  TreeOptions() { check(pcore_tree_options_init(&raw_)); }

  /// A power of two from 512 to 65536; fixed when the tree is created.
  TreeOptions& page_bytes(uint32_t bytes) {
    raw_.page_bytes = bytes;
    return *this;
  }
  /// Fixed when the tree is created.
  TreeOptions& duplicates(Duplicates mode) {
    raw_.duplicates = static_cast<uint32_t>(mode);
    return *this;
  }
  /// A host key order (NULL: bytewise). A tree created with a comparator must be reopened
  /// with one, and one without without. fn and ctx must outlive every use of the tree.
  TreeOptions& comparator(CompareFn fn, void* ctx = nullptr) {
    raw_.compare = fn;
    raw_.compare_ctx = ctx;
    return *this;
  }
  /// PCORE_TREE_NO_CREATE: Tree::open throws PCORE_NOT_FOUND when the tree does not exist.
  TreeOptions& no_create(bool on = true) {
    const uint64_t bit = PCORE_TREE_NO_CREATE;
    raw_.flags = on ? (raw_.flags | bit) : (raw_.flags & ~bit);
    return *this;
  }
  /// Optional ceiling on entries per page (0: none); bytes still decide every split.
  TreeOptions& max_entries_per_page(uint32_t count) {
    raw_.max_entries_per_page = count;
    return *this;
  }

  [[nodiscard]] uint32_t page_bytes() const noexcept { return static_cast<uint32_t>(raw_.page_bytes); }
  [[nodiscard]] Duplicates duplicates() const noexcept { return static_cast<Duplicates>(raw_.duplicates); }

  [[nodiscard]] const PcoreTreeOptions& raw() const noexcept { return raw_; }
  [[nodiscard]] PcoreTreeOptions& raw() noexcept { return raw_; }

 private:
  PcoreTreeOptions raw_{};
};

using TreeStats = PcoreTreeStats;

/// One key and its value, owned.
using Entry = std::pair<std::vector<uint8_t>, std::vector<uint8_t>>;

/// Owns one PcoreTree handle. Move-only. The tree itself lives in the store: closing the
/// handle keeps it, and its changes are durable at the store's next commit.
class Tree {
 public:
  /// An empty (closed) tree; every call on it throws PCORE_BAD_HANDLE.
  Tree() noexcept = default;

  /// Opens (or creates, unless options.no_create()) the tree called name in store.
  [[nodiscard]] static Tree open(Store& store, std::string_view name,
                                 const TreeOptions& options = TreeOptions()) {
    PcoreTree* handle = nullptr;
    check(pcore_tree_open(store.raw(), name.empty() ? "" : name.data(), name.size(), &options.raw(),
                          &handle));
    return Tree(handle);
  }

  /// The longest key a tree with page_bytes pages takes (pcore_tree_max_key_bytes).
  [[nodiscard]] static size_t max_key_bytes(uint32_t page_bytes = 4096) {
    size_t out = 0;
    check(pcore_tree_max_key_bytes(page_bytes, &out));
    return out;
  }

  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
  Tree(Tree&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Tree& operator=(Tree&& other) noexcept {
    if (this != &other) {
      close_quietly();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  /// Releases the handle without throwing.
  ~Tree() { close_quietly(); }

  /// Releases the handle (cursors opened through it are refused). Idempotent; the handle is gone
  /// even when this throws.
  void close() {
    if (handle_ == nullptr) {
      return;
    }
    PcoreTree* handle = std::exchange(handle_, nullptr);
    check(pcore_tree_close(handle));
  }

  [[nodiscard]] bool is_open() const noexcept { return handle_ != nullptr; }
  explicit operator bool() const noexcept { return is_open(); }
  /// The C handle (nullptr once closed). Still owned by this object.
  [[nodiscard]] PcoreTree* raw() const noexcept { return handle_; }

  /// pcore_tree_insert: throws PCORE_DUPLICATE_KEY (unique tree, or the same pair in a multi
  /// tree), PCORE_INVALID_ARGUMENT (key too long), ...; on failure the tree is unchanged.
  void insert(ByteView key, ByteView value) {
    check(pcore_tree_insert(handle_, key.data(), key.size(), value.data(), value.size()));
  }

  /// pcore_tree_insert, answering false instead of throwing PCORE_DUPLICATE_KEY.
  bool try_insert(ByteView key, ByteView value) {
    const int32_t status = pcore_tree_insert(handle_, key.data(), key.size(), value.data(), value.size());
    if (status == static_cast<int32_t>(PCORE_DUPLICATE_KEY)) {
      return false;
    }
    check(status);
    return true;
  }

  /// The value of key (a multi tree: its first value); nullopt when the key is absent.
  [[nodiscard]] std::optional<std::vector<uint8_t>> get(ByteView key) const {
    return detail::read_sized_value(kGetBufferBytes, [&](void* buf, size_t cap, size_t* len) {
      return pcore_tree_get(handle_, key.data(), key.size(), buf, cap, len);
    });
  }

  /// Whether key is in the tree.
  [[nodiscard]] bool contains(ByteView key) const {
    size_t len = 0;
    const int32_t status = pcore_tree_get(handle_, key.data(), key.size(), nullptr, 0, &len);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return false;
    }
    check(status);
    return true;
  }

  /// Removes key (a multi tree: all its values); false when it was absent.
  bool remove(ByteView key) {
    uint64_t removed = 0;
    check(pcore_tree_remove(handle_, key.data(), key.size(), &removed));
    return removed != 0;
  }

  /// Removes the pair (key, value) (not multi: key only if its value is value); false when
  /// there was no such pair.
  bool remove_pair(ByteView key, ByteView value) {
    uint64_t removed = 0;
    check(pcore_tree_remove_pair(handle_, key.data(), key.size(), value.data(), value.size(), &removed));
    return removed != 0;
  }

  /// pcore_tree_bulk_load of sorted, distinct pairs into this empty tree.
  void bulk_load(const std::vector<Entry>& entries) {
    std::vector<PcoreBytes> keys(entries.size());
    std::vector<PcoreBytes> values(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      keys[i] = PcoreBytes{entries[i].first.data(), entries[i].first.size()};
      values[i] = PcoreBytes{entries[i].second.data(), entries[i].second.size()};
    }
    check(pcore_tree_bulk_load(handle_, keys.data(), values.data(), entries.size()));
  }

  /// The number of entries (pairs, in a multi tree).
  [[nodiscard]] uint64_t len() const {
    uint64_t out = 0;
    check(pcore_tree_len(handle_, &out));
    return out;
  }

  /// pcore_tree_stats (reads every page).
  [[nodiscard]] TreeStats stats() const {
    PcoreTreeStats out = sized<PcoreTreeStats>();
    check(pcore_tree_stats(handle_, &out));
    return out;
  }

  /// pcore_tree_verify: throws PCORE_CORRUPT naming the page when an invariant fails.
  void verify() const { check(pcore_tree_verify(handle_)); }

 private:
  static constexpr size_t kGetBufferBytes = 64;

  explicit Tree(PcoreTree* handle) noexcept : handle_(handle) {}

  void close_quietly() noexcept {
    if (handle_ != nullptr) {
      (void)pcore_tree_close(std::exchange(handle_, nullptr));
    }
  }

  PcoreTree* handle_ = nullptr;
};

/// One end of a cursor's range.
struct Bound {
  uint32_t kind = static_cast<uint32_t>(PCORE_BOUND_UNBOUNDED);
  ByteView key;

  [[nodiscard]] static Bound unbounded() noexcept { return Bound{}; }
  [[nodiscard]] static Bound included(ByteView key) noexcept {
    return Bound{static_cast<uint32_t>(PCORE_BOUND_INCLUDED), key};
  }
  [[nodiscard]] static Bound excluded(ByteView key) noexcept {
    return Bound{static_cast<uint32_t>(PCORE_BOUND_EXCLUDED), key};
  }
  /// Included or excluded as inclusive says.
  [[nodiscard]] static Bound at(ByteView key, bool inclusive) noexcept {
    return inclusive ? included(key) : excluded(key);
  }
};

/// The records one Cursor::next_batch call wrote into its buffer (pcore_cursor_next_batch's
/// layout): a range of (key, value) pairs whose bytes live in that buffer, valid until it is
/// next written. Empty past the end of the scan.
class Batch {
 public:
  class iterator {
   public:
    using value_type = std::pair<Bytes, Bytes>;
    using difference_type = std::ptrdiff_t;
    iterator() noexcept = default;
    iterator(const uint8_t* at, size_t left) noexcept : at_(at), left_(left) {}
    [[nodiscard]] value_type operator*() const noexcept {
      uint32_t lens[2];
      std::memcpy(lens, at_, sizeof lens);
      const uint8_t* key = at_ + PCORE_BATCH_HEADER_BYTES;
      return {Bytes{key, lens[0]}, Bytes{key + lens[0], lens[1]}};
    }
    iterator& operator++() noexcept {
      uint32_t lens[2];
      std::memcpy(lens, at_, sizeof lens);
      const size_t bytes = PCORE_BATCH_HEADER_BYTES + size_t{lens[0]} + size_t{lens[1]};
      at_ += (bytes + PCORE_BATCH_RECORD_ALIGN - 1) / PCORE_BATCH_RECORD_ALIGN * PCORE_BATCH_RECORD_ALIGN;
      --left_;
      return *this;
    }
    [[nodiscard]] bool operator==(const iterator& other) const noexcept { return left_ == other.left_; }
    [[nodiscard]] bool operator!=(const iterator& other) const noexcept { return left_ != other.left_; }

   private:
    const uint8_t* at_ = nullptr;
    size_t left_ = 0;
  };

  Batch() noexcept = default;
  Batch(const void* data, size_t count, size_t used) noexcept
      : data_(static_cast<const uint8_t*>(data)), count_(count), used_(used) {}

  [[nodiscard]] iterator begin() const noexcept { return {data_, count_}; }
  [[nodiscard]] iterator end() const noexcept { return {nullptr, 0}; }
  [[nodiscard]] size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  /// The bytes the records take in the buffer.
  [[nodiscard]] size_t used_bytes() const noexcept { return used_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t count_ = 0;
  size_t used_ = 0;
};

/// Owns one PcoreCursor. Move-only. Opened unpositioned: call first(), last() or seek().
/// After any change to the tree the cursor throws PCORE_STALE_CURSOR (from next, prev, get)
/// until positioned again.
class Cursor {
 public:
  /// An empty (closed) cursor; every call on it throws PCORE_BAD_HANDLE.
  Cursor() noexcept = default;

  /// pcore_cursor_open.
  explicit Cursor(const Tree& tree) { check(pcore_cursor_open(tree.raw(), &handle_)); }

  /// Takes ownership of a cursor handle opened elsewhere (pcore_snapshot_cursor_open).
  [[nodiscard]] static Cursor adopt(PcoreCursor* handle) noexcept {
    Cursor c;
    c.handle_ = handle;
    return c;
  }

  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  Cursor(Cursor&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Cursor& operator=(Cursor&& other) noexcept {
    if (this != &other) {
      close_quietly();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~Cursor() { close_quietly(); }

  /// Releases the cursor. Idempotent; the handle is gone even when this throws.
  void close() {
    if (handle_ == nullptr) {
      return;
    }
    PcoreCursor* handle = std::exchange(handle_, nullptr);
    check(pcore_cursor_close(handle));
  }

  [[nodiscard]] bool is_open() const noexcept { return handle_ != nullptr; }
  explicit operator bool() const noexcept { return is_open(); }
  [[nodiscard]] PcoreCursor* raw() const noexcept { return handle_; }

  /// Limits the cursor to keys between lower and upper; takes effect at the next first(),
  /// last() or move.
  Cursor& set_bounds(const Bound& lower, const Bound& upper) {
    check(pcore_cursor_set_bounds(handle_, lower.key.data(), lower.key.size(), lower.kind, upper.key.data(),
                                  upper.key.size(), upper.kind));
    return *this;
  }

  /// The first entry within the bounds.
  Cursor& first() {
    check(pcore_cursor_first(handle_));
    return *this;
  }
  /// The last entry within the bounds.
  Cursor& last() {
    check(pcore_cursor_last(handle_));
    return *this;
  }
  /// The first entry whose key is >= key.
  Cursor& seek(ByteView key) {
    check(pcore_cursor_seek(handle_, key.data(), key.size()));
    return *this;
  }
  Cursor& next() {
    check(pcore_cursor_next(handle_));
    return *this;
  }
  Cursor& prev() {
    check(pcore_cursor_prev(handle_));
    return *this;
  }

  /// The entry under the cursor, copied; nullopt past either end or outside the bounds.
  [[nodiscard]] std::optional<Entry> get() const {
    std::optional<std::pair<Bytes, Bytes>> view = get_view();
    if (!view) {
      return std::nullopt;
    }
    return Entry(std::vector<uint8_t>(view->first.begin(), view->first.end()),
                 std::vector<uint8_t>(view->second.begin(), view->second.end()));
  }

  /// The entry under the cursor without a copy: the bytes belong to the cursor and are
  /// valid until its next call or its close. nullopt past either end or outside the bounds.
  [[nodiscard]] std::optional<std::pair<Bytes, Bytes>> get_view() const {
    PcoreBytes key{};
    PcoreBytes value{};
    const int32_t status = pcore_cursor_get(handle_, &key, &value);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    return std::make_pair(Bytes{key.data, key.len}, Bytes{value.data, value.len});
  }

  /// Moves to the next entry and reads it without a copy (pcore_cursor_next_get): the bytes
  /// belong to the cursor and are valid until its next call or its close. nullopt once the
  /// cursor moved past the end or outside the bounds.
  [[nodiscard]] std::optional<std::pair<Bytes, Bytes>> next_view() {
    PcoreBytes key{};
    PcoreBytes value{};
    const int32_t status = pcore_cursor_next_get(handle_, &key, &value);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    return std::make_pair(Bytes{key.data, key.len}, Bytes{value.data, value.len});
  }

  /// Reads the entries from the one under the cursor on into `buffer`, as many as fit, and
  /// moves past them (pcore_cursor_next_batch). Empty once the cursor is past the end or
  /// outside the bounds; throws PCORE_TOO_LARGE when the next entry alone does not fit. A
  /// whole scan: first(), then
  ///   for (Batch b; !(b = cursor.next_batch(buf)).empty();) for (auto [key, value] : b) ...
  /// The buffer's elements are 8 bytes, so its records' headers are aligned.
  [[nodiscard]] Batch next_batch(std::vector<uint64_t>& buffer) {
    size_t count = 0;
    size_t used = 0;
    const int32_t status =
        pcore_cursor_next_batch(handle_, buffer.data(), buffer.size() * sizeof(uint64_t), &count, &used);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return Batch{};
    }
    check(status);
    return Batch{buffer.data(), count, used};
  }

 private:
  void close_quietly() noexcept {
    if (handle_ != nullptr) {
      (void)pcore_cursor_close(std::exchange(handle_, nullptr));
    }
  }

  PcoreCursor* handle_ = nullptr;
};

/// Owns one read snapshot (pcore_snapshot_begin): the store as of its last commit, whatever
/// the writer commits meanwhile, until the snapshot ends. Move-only; ends when destroyed.
/// Holding one for long holds disk space: the blocks of its commit are not reused.
///
///   pcore::Snapshot snap(store);
///   auto value = snap.get(tree, key);        // as of snap.epoch()
///   pcore::Cursor c = snap.cursor(tree);      // never PCORE_STALE_CURSOR
class Snapshot {
 public:
  /// An empty (ended) snapshot; every call on it throws PCORE_BAD_HANDLE.
  Snapshot() noexcept = default;

  /// pcore_snapshot_begin.
  explicit Snapshot(const Store& store) { check(pcore_snapshot_begin(store.raw(), &handle_)); }

  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  Snapshot(Snapshot&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Snapshot& operator=(Snapshot&& other) noexcept {
    if (this != &other) {
      end_quietly();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~Snapshot() { end_quietly(); }

  /// Ends the snapshot (pcore_snapshot_end). Idempotent.
  void end() {
    if (handle_ != nullptr) {
      check(pcore_snapshot_end(std::exchange(handle_, nullptr)));
    }
  }

  [[nodiscard]] bool is_open() const noexcept { return handle_ != nullptr; }
  [[nodiscard]] PcoreSnapshot* raw() const noexcept { return handle_; }

  /// The epoch of the commit the snapshot reads.
  [[nodiscard]] uint64_t epoch() const {
    uint64_t epoch = 0;
    check(pcore_snapshot_epoch(handle_, &epoch));
    return epoch;
  }

  /// The node as of the snapshot: the bytes stay valid and unchanged until the snapshot
  /// ends. nullopt when no node had that id then.
  [[nodiscard]] std::optional<Bytes> read(uint64_t id) const {
    PcoreNodeBytes out{};
    const int32_t status = pcore_snapshot_node_read(handle_, id, &out);
    if (status == static_cast<int32_t>(PCORE_NOT_FOUND)) {
      return std::nullopt;
    }
    check(status);
    return Bytes{out.data, out.len};
  }

  /// The named root as of the snapshot; nullopt when there was none.
  [[nodiscard]] std::optional<Root> get_root(std::string_view name = {}) const {
    uint64_t id = 0;
    std::optional<std::vector<uint8_t>> meta =
        detail::read_sized_value(256, [&](void* buf, size_t cap, size_t* len) {
          return pcore_snapshot_root_get(handle_, name.empty() ? "" : name.data(), name.size(), &id, buf, cap,
                                         len);
        });
    if (!meta) {
      return std::nullopt;
    }
    return Root{id, std::move(*meta)};
  }

  /// tree.get as of the snapshot (nullopt also when the tree did not exist then).
  [[nodiscard]] std::optional<std::vector<uint8_t>> get(const Tree& tree, ByteView key) const {
    return detail::read_sized_value(64, [&](void* buf, size_t cap, size_t* len) {
      return pcore_snapshot_tree_get(handle_, tree.raw(), key.data(), key.size(), buf, cap, len);
    });
  }

  /// A cursor on tree as of the snapshot (pcore_snapshot_cursor_open): never stale; it keeps
  /// the snapshot's commit readable until it is closed.
  [[nodiscard]] Cursor cursor(const Tree& tree) const {
    PcoreCursor* handle = nullptr;
    check(pcore_snapshot_cursor_open(handle_, tree.raw(), &handle));
    return Cursor::adopt(handle);
  }

 private:
  void end_quietly() noexcept {
    if (handle_ != nullptr) {
      (void)pcore_snapshot_end(std::exchange(handle_, nullptr));
    }
  }

  PcoreSnapshot* handle_ = nullptr;
};

}  // namespace pcore
