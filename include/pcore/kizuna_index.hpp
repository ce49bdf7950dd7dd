// pcore/kizuna_index.hpp: Kizuna's B+ tree index (kizuna::index::BPlusTree) on a pcore tree.
//
// Header-only, C++17 (Kizuna itself is C++20). Kizuna builds its index trees in one place;
// replacing that construction with this class is all it needs:
//
//   // Kizuna side, once: the host's types and its thrower (this header defines none of them).
//   struct PcoreHost {
//     using page_id_t = kizuna::page_id_t;      // uint32_t, 0 invalid
//     using record_id_t = kizuna::record_id_t;  // uint64_t, never 0
//     using StatusCode = kizuna::StatusCode;    // Kizuna's status numbers
//     [[noreturn]] static void raise(StatusCode code, const std::string& message) {
//       throw kizuna::DBException(code, message);  // whatever Kizuna's exception type is
//     }
//   };
//   using BPlusTree = pcore::kizuna::BPlusTree<PcoreHost>;
//   BPlusTree tree(index_dir, root_page_id, unique);   // was (page_manager, file_manager, ...)
//
// Opening by directory: Kizuna opens an index per statement, each with its own page and
// file managers, while earlier handles of the same index still live. pcore allows one
// writer per directory, so the directory constructors share one pcore::Store per directory
// through a process-wide registry (StoreRegistry: keyed by the canonical path,
// reference-counted, thread-safe): open the same index by path as often, from as many
// handles and threads, as the host likes; the store closes when its last handle goes. (The
// pcore::Store& constructors are for a host that manages one store itself.)
//
// Host (the template argument) supplies page_id_t, record_id_t, StatusCode and a static
// [[noreturn]] raise(StatusCode, const std::string&). Optionally it may declare
// `static constexpr bool kRemoveMissingThrows = true;` to make Remove of an absent
// (key, value) raise KEY_NOT_FOUND (default: a no-op, as Kizuna's own tree, see Remove).
//
// Where to commit (the adapter never commits on its own): a change is durable at the
// store's next commit, which replaces Kizuna's page flush. Commit
//   - at the end of every statement that changed an index (INSERT, UPDATE, DELETE), or at
//     the transaction's commit when the engine groups statements: commit() on any handle
//     of the index (it commits the whole store, every index in the directory);
//   - after CREATE INDEX and before the new root_page_id() goes into Kizuna's catalog;
//   - after DROP INDEX (drop()) and before the catalog forgets the index.
// Or set commit_on_close(true) on a statement's handle: close() (or the destructor)
// commits before releasing the handle (the destructor swallows a failure; close() raises
// it as IO_ERROR).
//
// Method surface (design/HOSTS.md, Kizuna section), same names and signatures:
//   SearchResult Search(key); void Insert(key, value); void Remove(key, value);
//   std::vector<record_id_t> ScanEqual(key) const; ScanRange(lower, lower_inclusive, upper,
//   upper_inclusive) const; page_id_t root_page_id() const noexcept; bool is_unique() const
//   noexcept.
//
// Semantics:
// - Unique index: inserting an existing key raises DUPLICATE_KEY and keeps the old value.
//   Non-unique index: inserting an existing key overwrites its value (pcore's
//   PCORE_DUP_OVERWRITE): Search returns the last value, ScanEqual returns one.
// - Keys compare bytewise (memcmp on the common prefix, shorter first). Keys are 0..255 bytes
//   (the empty key is legal); a longer key raises INVALID_ARGUMENT before anything changes,
//   in every method that takes a key (range bounds are not keys: any length is accepted).
// - Values (record_id_t) are stored as 8 little-endian bytes.
// - Remove(key, value) removes key only if its value is value; when no such entry exists it
//   does nothing (Kizuna's tree; its UPDATE and DELETE of rows inserted before CREATE INDEX,
//   which does not backfill, rely on it), or raises KEY_NOT_FOUND if
//   Host::kRemoveMissingThrows is true.
// - Changes are durable at the pcore store's next commit (pcore::Store::commit), which
//   replaces Kizuna's page flush. One writer per store at a time (pcore's rule).
//
// Index ids (root_page_id): the choice made here.
//   The page_id_t is a small number allocated per store (1, 2, 3, ...), not a page: pcore
//   trees have no fixed root page. Index n is the pcore tree named "kizuna.index.<n>", and a
//   store root of the same name records how it was created (unique flag, page size).
//   - BPlusTree(store, 0, unique) creates a new index with the next free id;
//     root_page_id() returns it (never 0) and stays the same for the index's life.
//   - BPlusTree(store, id, unique) reopens index id: INDEX_NOT_FOUND if the store has none,
//     INVALID_ARGUMENT if it was created with the other `unique` flag.
//   - BPlusTree(store, "name", unique) opens or creates an index by name (for hosts that
//     prefer names): the name maps to an id once, kept in the store; root_page_id() is that
//     id and reopens the same tree through the id constructor.
//   The id counter, the id record and the tree are all durable at the store's next commit,
//   together: commit before recording the id in Kizuna's catalog.
//   - drop() / drop_index() (DROP INDEX) drop the tree and leave an empty record, so the id
//     is never handed out again; reopening it raises INDEX_NOT_FOUND.
//
// Status mapping (pcore -> Kizuna's StatusCode numbers):
//   INVALID_ARGUMENT -> INVALID_ARGUMENT (2)   TOO_LARGE -> RECORD_TOO_LARGE (301)
//   DUPLICATE_KEY -> DUPLICATE_KEY (403)       CORRUPT, INTERNAL -> INDEX_CORRUPTED (401)
//   NOT_FOUND (opening) -> INDEX_NOT_FOUND (400)
//   IO_ERROR, NO_SPACE, POISONED, READ_ONLY, BUSY -> IO_ERROR (100)
//   anything else (BAD_HANDLE, PANIC, LIMIT, STALE_CURSOR, ...) -> INTERNAL_ERROR (5)
//   A stored value that is not 8 bytes -> INVALID_RECORD_FORMAT (302); a damaged index
//   record -> INDEX_CORRUPTED (401). KEY_NOT_FOUND (402): Remove of a missing entry.
//   PAGE_CORRUPTED (201) is not raised: a damaged tree page is INDEX_CORRUPTED.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <pcore.hpp>

namespace pcore {
namespace kizuna {

/// Kizuna's StatusCode numbers, as the adapter raises them (cast to Host::StatusCode).
namespace status {
inline constexpr int kInvalidArgument = 2;
inline constexpr int kInternalError = 5;
inline constexpr int kIoError = 100;
inline constexpr int kPageCorrupted = 201;
inline constexpr int kRecordTooLarge = 301;
inline constexpr int kInvalidRecordFormat = 302;
inline constexpr int kIndexNotFound = 400;
inline constexpr int kIndexCorrupted = 401;
inline constexpr int kKeyNotFound = 402;
inline constexpr int kDuplicateKey = 403;
}  // namespace status

/// Longest key Kizuna's index takes.
inline constexpr size_t kMaxKeyBytes = 255;
/// Kizuna's page size.
inline constexpr uint32_t kDefaultPageBytes = 4096;

/// Kizuna's status number for a pcore status. opening: the call opens an index (NOT_FOUND is
/// then INDEX_NOT_FOUND rather than KEY_NOT_FOUND).
inline int status_for(int32_t pcore_status, bool opening = false) noexcept {
  switch (pcore_status) {
    case PCORE_INVALID_ARGUMENT:
      return status::kInvalidArgument;
    case PCORE_NOT_FOUND:
      return opening ? status::kIndexNotFound : status::kKeyNotFound;
    case PCORE_TOO_LARGE:
      return status::kRecordTooLarge;
    case PCORE_DUPLICATE_KEY:
      return status::kDuplicateKey;
    case PCORE_CORRUPT:
    case PCORE_INTERNAL:
      return status::kIndexCorrupted;
    case PCORE_READ_ONLY:
    case PCORE_BUSY:
    case PCORE_NO_SPACE:
    case PCORE_IO_ERROR:
    case PCORE_POISONED:
      return status::kIoError;
    default:
      return status::kInternalError;
  }
}

namespace detail {

template <class Host, class = void>
struct RemoveMissingThrows : std::false_type {};
template <class Host>
struct RemoveMissingThrows<Host, std::void_t<decltype(Host::kRemoveMissingThrows)>>
    : std::bool_constant<static_cast<bool>(Host::kRemoveMissingThrows)> {};

/// Index creation reads and advances a per-store counter: one at a time in this process.
inline std::mutex& creation_mutex() {
  static std::mutex mutex;
  return mutex;
}

inline constexpr std::string_view kCounterRoot = "kizuna.next_index_id";
inline constexpr std::string_view kIndexPrefix = "kizuna.index.";
inline constexpr std::string_view kNamePrefix = "kizuna.name.";
inline constexpr uint8_t kRecordMagic[4] = {'K', 'Z', 'I', 'X'};
inline constexpr uint8_t kRecordVersion = 1;
/// Index record: "KZIX", u8 version, u8 unique, u16 0, u32 page bytes (little-endian).
inline constexpr size_t kRecordBytes = 12;

inline void put_u32(uint8_t* out, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<uint8_t>(v >> (8 * i));
  }
}
inline uint32_t get_u32(const uint8_t* in) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<uint32_t>(in[i]) << (8 * i);
  }
  return v;
}

}  // namespace detail

/// A store shared by every handle opened on its directory (see StoreRegistry).
using SharedStore = std::shared_ptr<Store>;

/// The process-wide registry of stores opened by directory: one pcore::Store per directory
/// (pcore's one writer per directory), shared by reference count. Thread-safe. The first
/// open's options apply until the last reference goes; the store is closed (under the
/// registry's lock, so that a concurrent open never finds the directory still locked) when
/// the last reference is released.
class StoreRegistry {
 public:
  /// The store of dir, opened (or created) with options unless already open.
  static SharedStore open(const std::string& dir, const Options& options = Options()) {
    std::string key = key_of(dir);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.stores.find(key);
    if (it == r.stores.end()) {
      auto store = std::make_unique<Store>(Store::open(dir, options));
      it = r.stores.emplace(key, Entry{std::move(store), 0}).first;
    }
    ++it->second.refs;
    return SharedStore(it->second.store.get(), [key](Store*) noexcept { release(key); });
  }

  /// How many handles share dir's store (0: not open through the registry).
  static size_t references(const std::string& dir) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.stores.find(key_of(dir));
    return it == r.stores.end() ? 0 : it->second.refs;
  }

  /// How many directories are open through the registry.
  static size_t open_stores() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    return r.stores.size();
  }

 private:
  struct Entry {
    std::unique_ptr<Store> store;
    size_t refs;
  };
  struct Registry {
    std::mutex mutex;
    std::map<std::string, Entry> stores;
  };

  /// Never destroyed: a handle released during static destruction still finds it.
  static Registry& registry() {
    static Registry* r = new Registry();
    return *r;
  }

  /// One key per directory however it is spelled (relative, "..", symlinks).
  static std::string key_of(const std::string& dir) {
    std::error_code ec;
    std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::absolute(dir, ec), ec);
    if (ec) {
      return std::filesystem::absolute(dir).lexically_normal().string();
    }
    std::string key = p.lexically_normal().string();
    while (key.size() > 1 && key.back() == '/') {
      key.pop_back();
    }
    return key;
  }

  static void release(const std::string& key) noexcept {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.stores.find(key);
    if (it == r.stores.end() || --it->second.refs != 0) {
      return;
    }
    std::unique_ptr<Store> store = std::move(it->second.store);
    r.stores.erase(it);
    try {
      store->close();
    } catch (...) {
      // A failed final checkpoint loses nothing committed: the log replays at the next open.
    }
  }
};

/// Kizuna's BPlusTree on a pcore tree. Move-only.
template <class Host>
class BPlusTree {
 public:
  using page_id_t = typename Host::page_id_t;
  using record_id_t = typename Host::record_id_t;
  using StatusCode = typename Host::StatusCode;

  static_assert(sizeof(record_id_t) == 8, "record_id_t is stored as 8 bytes");
  static_assert(std::is_unsigned_v<page_id_t>, "page_id_t is an unsigned page number");

  struct SearchResult {
    bool found;
    record_id_t value;
  };

  /// Kizuna's constructor shape with a pcore store in place of its PageManager and
  /// FileManager: root_page_id 0 creates a new index, any other value reopens that index.
  /// page_bytes is the page size of a new index (Kizuna's 4 KiB by default); an existing
  /// index keeps the page size it was created with.
  BPlusTree(Store& store, page_id_t root_page_id, bool unique, uint32_t page_bytes = kDefaultPageBytes)
      : store_(&store), unique_(unique) {
    open_by_id(root_page_id, page_bytes);
  }

  /// Opens the index called name, creating it (with the next free id) when the store has
  /// none. root_page_id() then reopens it through the id constructor too.
  BPlusTree(Store& store, std::string_view name, bool unique, uint32_t page_bytes = kDefaultPageBytes)
      : store_(&store), unique_(unique) {
    open_by_name(name, page_bytes);
  }

  /// As the Store& constructor, on the store the registry holds for dir (opened on first
  /// use): open one index by path as many times, from as many threads, as the host likes.
  BPlusTree(const std::string& dir, page_id_t root_page_id, bool unique, uint32_t page_bytes = kDefaultPageBytes)
      : BPlusTree(open_shared(dir), root_page_id, unique, page_bytes) {}

  /// As the named Store& constructor, on the registry's store for dir.
  BPlusTree(const std::string& dir, std::string_view name, bool unique, uint32_t page_bytes = kDefaultPageBytes)
      : BPlusTree(open_shared(dir), name, unique, page_bytes) {}

  /// As the Store& constructor, holding a reference to a shared store.
  BPlusTree(SharedStore store, page_id_t root_page_id, bool unique, uint32_t page_bytes = kDefaultPageBytes)
      : shared_(std::move(store)), store_(checked(shared_)), unique_(unique) {
    open_by_id(root_page_id, page_bytes);
  }

  /// As the named Store& constructor, holding a reference to a shared store.
  BPlusTree(SharedStore store, std::string_view name, bool unique, uint32_t page_bytes = kDefaultPageBytes)
      : shared_(std::move(store)), store_(checked(shared_)), unique_(unique) {
    open_by_name(name, page_bytes);
  }

  BPlusTree(const BPlusTree&) = delete;
  BPlusTree& operator=(const BPlusTree&) = delete;
  BPlusTree(BPlusTree&& other) noexcept
      : shared_(std::move(other.shared_)),
        store_(std::exchange(other.store_, nullptr)),
        tree_(std::move(other.tree_)),
        id_(other.id_),
        unique_(other.unique_),
        commit_on_close_(std::exchange(other.commit_on_close_, false)) {}
  BPlusTree& operator=(BPlusTree&& other) noexcept {
    if (this != &other) {
      close_quietly();
      tree_ = std::move(other.tree_);  // the tree before its store's reference
      shared_ = std::move(other.shared_);
      store_ = std::exchange(other.store_, nullptr);
      id_ = other.id_;
      unique_ = other.unique_;
      commit_on_close_ = std::exchange(other.commit_on_close_, false);
    }
    return *this;
  }
  /// Commits first if commit_on_close is set (a failure is swallowed: call close() to see it).
  ~BPlusTree() { close_quietly(); }

  /// The key's value; {false, 0} when absent.
  SearchResult Search(const std::vector<uint8_t>& key) {
    check_key(key);
    std::optional<std::vector<uint8_t>> value;
    guard([&] { value = tree_.get(key); });
    if (!value) {
      return SearchResult{false, record_id_t{}};
    }
    return SearchResult{true, decode(*value)};
  }

  /// Unique: DUPLICATE_KEY on an existing key (the old value stays). Non-unique: overwrites.
  void Insert(const std::vector<uint8_t>& key, record_id_t value) {
    check_key(key);
    const Value bytes = encode(value);
    guard([&] { tree_.insert(key, ByteView(bytes.data(), bytes.size())); });
  }

  /// Removes key if its value is value; KEY_NOT_FOUND otherwise (see the header comment).
  void Remove(const std::vector<uint8_t>& key, record_id_t value) {
    check_key(key);
    const Value bytes = encode(value);
    bool removed = false;
    guard([&] { removed = tree_.remove_pair(key, ByteView(bytes.data(), bytes.size())); });
    if (!removed && detail::RemoveMissingThrows<Host>::value) {
      fail(status::kKeyNotFound, "no entry with this key and record id in index " + std::to_string(id_));
    }
  }

  /// The values stored under key: at most one (unique and overwrite trees).
  std::vector<record_id_t> ScanEqual(const std::vector<uint8_t>& key) const {
    check_key(key);
    std::optional<std::vector<uint8_t>> value;
    guard([&] { value = tree_.get(key); });
    std::vector<record_id_t> out;
    if (value) {
      out.push_back(decode(*value));
    }
    return out;
  }

  /// Values of the keys between the bounds (a missing bound: unbounded), in key order.
  std::vector<record_id_t> ScanRange(const std::optional<std::vector<uint8_t>>& lower, bool lower_inclusive,
                                     const std::optional<std::vector<uint8_t>>& upper,
                                     bool upper_inclusive) const {
    std::vector<record_id_t> out;
    guard([&] {
      Cursor cursor(tree_);
      cursor.set_bounds(lower ? Bound::at(*lower, lower_inclusive) : Bound::unbounded(),
                        upper ? Bound::at(*upper, upper_inclusive) : Bound::unbounded());
      cursor.first();
      while (std::optional<std::pair<Bytes, Bytes>> entry = cursor.get_view()) {
        out.push_back(decode(entry->second.begin(), entry->second.len));
        cursor.next();
      }
    });
    return out;
  }

  /// The index id (never 0); passed back to the constructor it reopens this index.
  page_id_t root_page_id() const noexcept { return id_; }
  bool is_unique() const noexcept { return unique_; }

  // ---- beyond Kizuna's surface -------------------------------------------------------------

  /// Commits the store (every index in it): the changes so far are durable. IO_ERROR (or
  /// the status's mapping) on failure.
  void commit() {
    Store& store = open_store();
    guard([&] { store.commit(); });
  }

  /// Whether close() and the destructor commit first (default false).
  void set_commit_on_close(bool on) noexcept { commit_on_close_ = on; }
  bool commit_on_close() const noexcept { return commit_on_close_; }

  /// Releases the handle (and its reference to a shared store), committing first if
  /// commit_on_close is set; idempotent. Any later call on the handle raises INTERNAL_ERROR.
  void close() {
    if (store_ != nullptr && tree_.is_open() && commit_on_close_) {
      commit();
    }
    release();
  }

  /// Kizuna's DROP INDEX: the index's tree is dropped (pcore_tree_drop: every page freed,
  /// the tree gone, at the store's next commit) and its id retired: reopening it raises
  /// INDEX_NOT_FOUND, a new index never reuses it, and a named index's name opens a new,
  /// empty index. Other handles of the index raise INTERNAL_ERROR from then on. This handle
  /// is closed afterwards (committing first if commit_on_close is set); otherwise commit
  /// before the catalog forgets the index.
  void drop() {
    Store& store = open_store();
    tree_ = Tree();
    drop_index(store, id_);
    if (commit_on_close_) {
      commit();
    }
    release();
  }

  /// DROP INDEX without a handle (the index's unique flag need not be known).
  static void drop_index(Store& store, page_id_t id) {
    std::lock_guard<std::mutex> lock(detail::creation_mutex());
    const std::string name = tree_name_of(id);
    const std::optional<Root> record = get_root(store, name);
    if (!record || record->meta.empty()) {
      fail(status::kIndexNotFound, "no index " + std::to_string(id) + " in this store");
    }
    const int32_t dropped = pcore_tree_drop(store.raw(), name.data(), name.size());
    // NOT_FOUND: the tree was never written (a record without a tree): retire the id anyway.
    if (dropped != kStatusOk && dropped != static_cast<int32_t>(PCORE_NOT_FOUND)) {
      fail(status_for(dropped), std::string("pcore: ") + Error::describe(dropped));
    }
    // The record stays, empty, so the id is never handed out again.
    guard([&] { store.set_root(name, 0, nullptr, 0); });
  }

  /// DROP INDEX on the registry's store for dir.
  static void drop_index(const std::string& dir, page_id_t id) {
    SharedStore store = open_shared(dir);
    drop_index(*store, id);
  }

  /// False once closed (or moved from).
  bool is_open() const noexcept { return store_ != nullptr && tree_.is_open(); }

  /// The store this handle works on.
  Store& store() { return open_store(); }

  /// The pcore tree's name: "kizuna.index.<root_page_id()>".
  std::string tree_name() const { return tree_name_of(id_); }
  static std::string tree_name_of(page_id_t id) { return std::string(detail::kIndexPrefix) + std::to_string(id); }
  /// The underlying pcore tree (stats, verify, cursors).
  const Tree& tree() const noexcept { return tree_; }
  Tree& tree() noexcept { return tree_; }
  /// Entries in the index.
  uint64_t size() const {
    uint64_t n = 0;
    guard([&] { n = tree_.len(); });
    return n;
  }
  TreeStats stats() const {
    TreeStats s{};
    guard([&] { s = tree_.stats(); });
    return s;
  }
  /// pcore_tree_verify; INDEX_CORRUPTED naming the page on failure.
  void verify() const {
    guard([&] { tree_.verify(); });
  }

 private:
  using Value = std::array<uint8_t, 8>;

  /// Raises the host's exception; never returns (a host raise that returns is a host bug:
  /// pcore::Error is thrown then).
  [[noreturn]] static void fail(int code, const std::string& message) {
    Host::raise(static_cast<StatusCode>(code), message);
    throw Error(static_cast<int32_t>(PCORE_INTERNAL), message);
  }

  /// Runs f, turning a pcore::Error into the host's exception with Kizuna's status.
  template <class F>
  static void guard(F&& f, bool opening = false) {
    int code = 0;
    std::string message;
    try {
      std::forward<F>(f)();
      return;
    } catch (const Error& e) {
      code = status_for(e.status(), opening);
      message = std::string("pcore: ") + e.what();
    }
    fail(code, message);
  }

  static void check_key(const std::vector<uint8_t>& key) {
    if (key.size() > kMaxKeyBytes) {
      fail(status::kInvalidArgument, "index key of " + std::to_string(key.size()) + " bytes; at most " +
                                         std::to_string(kMaxKeyBytes));
    }
  }

  static Value encode(record_id_t value) noexcept {
    Value out{};
    const uint64_t v = static_cast<uint64_t>(value);
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<uint8_t>(v >> (8 * i));
    }
    return out;
  }

  static record_id_t decode(const uint8_t* bytes, size_t len) {
    if (len != sizeof(uint64_t)) {
      fail(status::kInvalidRecordFormat,
           "index value of " + std::to_string(len) + " bytes; a record id is 8");
    }
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(uint64_t); ++i) {
      v |= static_cast<uint64_t>(bytes[i]) << (8 * i);
    }
    return static_cast<record_id_t>(v);
  }
  static record_id_t decode(const std::vector<uint8_t>& bytes) { return decode(bytes.data(), bytes.size()); }

  static SharedStore open_shared(const std::string& dir) {
    SharedStore store;
    guard([&] { store = StoreRegistry::open(dir); }, true);
    return store;
  }

  static Store* checked(const SharedStore& store) {
    if (store == nullptr || !store->is_open()) {
      fail(status::kInvalidArgument, "no store");
    }
    return store.get();
  }

  Store& open_store() const {
    if (store_ == nullptr) {
      fail(status::kInternalError, "index " + std::to_string(id_) + ": the handle is closed");
    }
    return *store_;
  }

  void open_by_id(page_id_t root_page_id, uint32_t page_bytes) {
    if (root_page_id == 0) {
      std::lock_guard<std::mutex> lock(detail::creation_mutex());
      id_ = allocate_id(*store_);
      create(*store_, page_bytes);
    } else {
      id_ = root_page_id;
      reopen(*store_);
    }
  }

  void open_by_name(std::string_view name, uint32_t page_bytes) {
    Store& store = *store_;
    const std::string root_name = std::string(detail::kNamePrefix) + std::string(name);
    if (root_name.size() > static_cast<size_t>(PCORE_ROOT_NAME_MAX_BYTES)) {
      fail(status::kInvalidArgument, "index name of " + std::to_string(name.size()) + " bytes is too long");
    }
    std::lock_guard<std::mutex> lock(detail::creation_mutex());
    const std::optional<Root> mapped = get_root(store, root_name);
    if (mapped && (mapped->meta.size() != 4 || detail::get_u32(mapped->meta.data()) == 0)) {
      fail(status::kIndexCorrupted, "index name record \"" + std::string(name) + "\" is damaged");
    }
    const page_id_t mapped_id = mapped ? static_cast<page_id_t>(detail::get_u32(mapped->meta.data())) : 0;
    const std::optional<Root> record = mapped ? get_root(store, tree_name_of(mapped_id)) : std::nullopt;
    if (record && !record->meta.empty()) {
      id_ = mapped_id;
      reopen(store);
    } else {  // a new name, or the name of a dropped index
      id_ = allocate_id(store);
      create(store, page_bytes);
      uint8_t meta[4];
      detail::put_u32(meta, static_cast<uint32_t>(id_));
      guard([&] { store.set_root(root_name, 0, meta, sizeof(meta)); });
    }
  }

  void release() noexcept {
    tree_ = Tree();  // the tree's handle before the store's reference
    shared_.reset();
    store_ = nullptr;
  }

  void close_quietly() noexcept {
    if (store_ != nullptr && tree_.is_open() && commit_on_close_) {
      try {
        store_->commit();
      } catch (...) {
        // A destructor must not throw; close() reports the failure.
      }
    }
    release();
  }

  static std::optional<Root> get_root(const Store& store, const std::string& name) {
    std::optional<Root> root;
    guard([&] { root = store.get_root(name); });
    return root;
  }

  static constexpr uint64_t kMaxId = static_cast<uint64_t>(static_cast<page_id_t>(~page_id_t{0}));

  /// The next free index id: the store's counter (1 when absent), past any id in use.
  /// Nothing is written here; create() advances the counter.
  page_id_t allocate_id(Store& store) const {
    uint64_t next = 1;
    if (const std::optional<Root> counter = get_root(store, std::string(detail::kCounterRoot))) {
      if (counter->meta.size() != 4) {
        fail(status::kIndexCorrupted, "the store's index id counter is damaged");
      }
      next = std::max<uint64_t>(1, detail::get_u32(counter->meta.data()));
    }
    while (next <= kMaxId && get_root(store, tree_name_of(static_cast<page_id_t>(next)))) {
      ++next;
    }
    if (next > kMaxId || next > UINT32_MAX) {
      fail(status::kInternalError, "no index ids left in this store");
    }
    return static_cast<page_id_t>(next);
  }

  /// Creates index id_ (its tree, its record) and advances the counter past it.
  void create(Store& store, uint32_t page_bytes) {
    const std::string name = tree_name_of(id_);
    TreeOptions options;
    options.page_bytes(page_bytes).duplicates(unique_ ? Duplicates::Unique : Duplicates::Overwrite);
    guard([&] { tree_ = Tree::open(store, name, options); }, true);
    uint8_t record[detail::kRecordBytes] = {};
    std::memcpy(record, detail::kRecordMagic, 4);
    record[4] = detail::kRecordVersion;
    record[5] = unique_ ? 1 : 0;
    detail::put_u32(record + 8, page_bytes);
    uint8_t counter[4];
    detail::put_u32(counter, static_cast<uint32_t>(id_) + 1);
    guard([&] {
      store.set_root(name, 0, record, sizeof(record));
      store.set_root(detail::kCounterRoot, 0, counter, sizeof(counter));
    });
  }

  /// Opens the existing index id_.
  void reopen(Store& store) {
    const std::string name = tree_name_of(id_);
    const std::optional<Root> record = get_root(store, name);
    if (!record || record->meta.empty()) {  // empty: dropped
      fail(status::kIndexNotFound, "no index " + std::to_string(id_) + " in this store");
    }
    const std::vector<uint8_t>& m = record->meta;
    if (m.size() != detail::kRecordBytes || std::memcmp(m.data(), detail::kRecordMagic, 4) != 0 ||
        m[4] != detail::kRecordVersion || m[5] > 1) {
      fail(status::kIndexCorrupted, "the record of index " + std::to_string(id_) + " is damaged");
    }
    if ((m[5] == 1) != unique_) {
      fail(status::kInvalidArgument, "index " + std::to_string(id_) + " is " +
                                         (m[5] == 1 ? "unique" : "non-unique") + ", opened as " +
                                         (unique_ ? "unique" : "non-unique"));
    }
    TreeOptions options;
    options.page_bytes(detail::get_u32(m.data() + 8))
        .duplicates(unique_ ? Duplicates::Unique : Duplicates::Overwrite)
        .no_create();
    guard([&] { tree_ = Tree::open(store, name, options); }, true);
  }

  // Declared first, destroyed last: the tree's handle goes before the store's reference.
  SharedStore shared_;
  Store* store_ = nullptr;
  Tree tree_;
  page_id_t id_{};
  bool unique_ = false;
  bool commit_on_close_ = false;
};

}  // namespace kizuna
}  // namespace pcore
