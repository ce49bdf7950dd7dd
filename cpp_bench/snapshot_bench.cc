// snapshot_bench: see snapshot_bench.h. Not a test: it never asserts a time; it checks every
// return code and every value read, and a reader process that reads a wrong value exits 1.
#include "snapshot_bench.h"

#include <lmdb.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

extern "C" {
#include "pcore.h"
}

extern char** environ;

namespace snapbench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kKeyBytes = 16;
// Inserts per writer transaction, and lookups per reader snapshot (or LMDB read txn).
constexpr size_t kInsertsPerCommit = 100;
constexpr size_t kLookupsPerSnapshot = 1000;
// The writer phase's cases: reader processes, and how often each reopens the store (0: never).
// A pcore read-only open reads the commit it opened at, so a reader that should follow the
// writer, as an LMDB read txn does, reopens; LMDB's readers never need to (pcore only).
struct ReaderCase {
  int readers;
  int reopen_ms;
};
constexpr ReaderCase kReaderCases[] = {{0, 0}, {1, 0}, {4, 0}, {4, 100}};
// A reader process stops by itself after this long, should its parent never stop it.
constexpr double kReaderSecondsMax = 300;

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

#define PC(call)                                                                   \
  do {                                                                             \
    int32_t rc_ = (call);                                                          \
    if (rc_ != PCORE_OK)                                                           \
      fail(format("pcore: %s -> %s: %s (line %d)", #call, pcore_status_name(rc_), \
                  pcore_last_error_message(), __LINE__));                          \
  } while (0)

#define MC(call)                                                                            \
  do {                                                                                      \
    int rc_ = (call);                                                                       \
    if (rc_ != MDB_SUCCESS)                                                                 \
      fail(format("lmdb: %s -> %d %s (line %d)", #call, rc_, mdb_strerror(rc_), __LINE__)); \
  } while (0)

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// n random 16-byte keys, deterministic in seed, so a reader process makes the writer's keys
// again. 128 random bits: a duplicate among 10^6 keys has odds of ~10^-27, and a load would
// report it (DUPLICATE_KEY, MDB_KEYEXIST). Key i's value is i + 1.
struct Keys {
  size_t n = 0;
  std::vector<uint8_t> bytes;
  const uint8_t* key(size_t i) const { return bytes.data() + i * kKeyBytes; }
  static uint64_t value(size_t i) { return uint64_t{i} + 1; }
};

Keys make_keys(size_t n, uint64_t seed) {
  Keys k;
  k.n = n;
  k.bytes.resize(n * kKeyBytes);
  uint64_t x = seed;
  for (size_t i = 0; i < n * kKeyBytes / 8; ++i) {
    uint64_t r = splitmix64(x);
    memcpy(k.bytes.data() + i * 8, &r, 8);
  }
  return k;
}

std::vector<uint32_t> shuffled(size_t n, uint64_t seed) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

// The writer's i-th new key, made as it is inserted (a writer may commit millions).
struct FreshKey {
  uint8_t bytes[kKeyBytes];
  FreshKey(uint64_t seed, size_t i) {
    uint64_t x = seed ^ (uint64_t{i} * 0xD1B54A32D192ED03ull);
    uint64_t a = splitmix64(x), b = splitmix64(x);
    memcpy(bytes, &a, 8);
    memcpy(bytes + 8, &b, 8);
  }
};

uint64_t load_u64(const void* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

void check_value(const char* engine, size_t i, size_t len, uint64_t v) {
  if (len != 8 || v != Keys::value(i))
    fail(format("%s: key #%zu: value len %zu, value %" PRIu64 ", expected %" PRIu64, engine, i, len, v,
                Keys::value(i)));
}

int g_dir_counter = 0;

fs::path fresh_dir(const Config& cfg, const char* tag) {
  fs::path p = fs::path(cfg.dir) / format("snap-%s-%d", tag, g_dir_counter++);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// ---------------------------------------------------------------------------------------------
// pcore

struct PcoreDb {
  PcoreStore* store = nullptr;
  PcoreTree* tree = nullptr;
  void open(const fs::path& dir, uint32_t durability, uint32_t store_flags, uint32_t tree_flags) {
    PcoreStoreOptions so;
    PC(pcore_store_options_init(&so));
    so.durability = durability;
    so.flags = store_flags;
    PC(pcore_store_open(dir.c_str(), &so, &store));
    PcoreTreeOptions to;
    PC(pcore_tree_options_init(&to));
    to.page_bytes = 4096;
    to.duplicates = PCORE_DUP_UNIQUE;
    to.flags = tree_flags;
    PC(pcore_tree_open(store, "bench", 5, &to, &tree));
  }
  void insert(const Keys& k, size_t i) {
    uint64_t v = Keys::value(i);
    PC(pcore_tree_insert(tree, k.key(i), kKeyBytes, &v, 8));
  }
  PcoreStoreStats stats() {
    PcoreStoreStats ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    PC(pcore_store_stats(store, &ss));
    return ss;
  }
  void close() {
    if (tree) PC(pcore_tree_close(tree));
    tree = nullptr;
    if (store) PC(pcore_store_close(store));
    store = nullptr;
  }
  ~PcoreDb() {
    if (tree) pcore_tree_close(tree);
    if (store) pcore_store_close(store);
  }
};

// Looks keys up in `order`: `get(i, &value, &len)` answers a pcore status.
template <class Get>
double pcore_lookups(const Keys& k, const std::vector<uint32_t>& order, Get&& get) {
  auto t0 = Clock::now();
  for (uint32_t i : order) {
    uint64_t v = 0;
    size_t len = 0;
    int32_t rc = get(k.key(i), &v, &len);
    if (rc != PCORE_OK)
      fail(format("pcore: lookup of key #%u -> %s: %s", i, pcore_status_name(rc), pcore_last_error_message()));
    check_value("pcore", i, len, v);
  }
  return seconds_since(t0) * 1e9 / static_cast<double>(order.size());
}

struct ScanSum {
  uint64_t count = 0;
  uint64_t value_sum = 0;
};

// An ordered scan through a cursor on `snap` (NULL: a plain cursor): next+get, next_get or
// batch.
ScanSum pcore_scan(PcoreSnapshot* snap, PcoreTree* tree, int how) {
  ScanSum s;
  PcoreCursor* c = nullptr;
  if (snap) PC(pcore_snapshot_cursor_open(snap, tree, &c));
  else PC(pcore_cursor_open(tree, &c));
  int32_t rc = pcore_cursor_first(c);
  PcoreBytes key, val;
  if (how == 2) {
    static std::vector<uint64_t> buf(8192);
    size_t count = 0, used = 0;
    while ((rc = pcore_cursor_next_batch(c, buf.data(), buf.size() * 8, &count, &used)) == PCORE_OK) {
      const uint8_t* at = reinterpret_cast<const uint8_t*>(buf.data());
      for (size_t i = 0; i < count; ++i) {
        uint32_t lens[2];
        memcpy(lens, at, 8);
        if (lens[1] == 8) s.value_sum += load_u64(at + 8 + lens[0]);
        at += (8 + lens[0] + lens[1] + 7) / 8 * 8;
      }
      s.count += count;
    }
  } else {
    if (rc == PCORE_OK) rc = pcore_cursor_get(c, &key, &val);
    while (rc == PCORE_OK) {
      ++s.count;
      if (val.len == 8) s.value_sum += load_u64(val.data);
      if (how == 1) {
        rc = pcore_cursor_next_get(c, &key, &val);
      } else {
        rc = pcore_cursor_next(c);
        if (rc == PCORE_OK) rc = pcore_cursor_get(c, &key, &val);
      }
    }
  }
  pcore_cursor_close(c);
  if (rc != PCORE_NOT_FOUND) fail(format("pcore: snapshot scan -> %s", pcore_status_name(rc)));
  return s;
}

// ---------------------------------------------------------------------------------------------
// LMDB

struct LmdbDb {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  void open(const fs::path& dir, unsigned flags) {
    MC(mdb_env_create(&env));
    MC(mdb_env_set_mapsize(env, size_t{4} << 30));
    MC(mdb_env_set_maxreaders(env, 126));
    MC(mdb_env_open(env, dir.c_str(), flags, 0644));
    MDB_txn* txn = nullptr;
    MC(mdb_txn_begin(env, nullptr, flags & MDB_RDONLY, &txn));
    int rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
    if (rc != MDB_SUCCESS) mdb_txn_abort(txn);
    MC(rc);
    MC(mdb_txn_commit(txn));
  }
  void put(MDB_txn* txn, const Keys& k, size_t i, unsigned flags) {
    uint64_t v = Keys::value(i);
    MDB_val key{kKeyBytes, const_cast<uint8_t*>(k.key(i))};
    MDB_val d{8, &v};
    MC(mdb_put(txn, dbi, &key, &d, flags));
  }
  void get(MDB_txn* txn, const Keys& k, size_t i) {
    MDB_val key{kKeyBytes, const_cast<uint8_t*>(k.key(i))};
    MDB_val d;
    int rc = mdb_get(txn, dbi, &key, &d);
    if (rc != MDB_SUCCESS) fail(format("lmdb: key #%zu: %s", i, mdb_strerror(rc)));
    check_value("lmdb", i, d.mv_size, load_u64(d.mv_data));
  }
  ~LmdbDb() {
    if (env) mdb_env_close(env);
  }
};

// ---------------------------------------------------------------------------------------------
// Lookups and scans

// The scan rows: `how` 0 next+get, 1 next_get, 2 batch on the snapshot; 3 next_get on a
// plain cursor, for the snapshot's own cost.
struct ScanRow {
  const char* key;
  const char* label;
};
constexpr ScanRow kScanRows[] = {
    {"scan", "snapshot scan next+get"},
    {"scan_next_get", "snapshot scan next_get"},
    {"scan_batch", "snapshot scan batch"},
    {"scan_plain", "  no snapshot, next_get"},
};

struct ReadRows {
  std::string sz;
  const Record& record;
  int engine;
  void lookup(const char* key, const std::string& label, double ns) const {
    record(std::string("snap_") + key + "_" + sz, label, "ns/lookup", engine, ns);
  }
  void scan(const char* key, const std::string& label, double ns) const {
    record(std::string("snap_") + key + "_" + sz, label, "ns/entry", engine, ns);
  }
};

std::string size_label(size_t n) {
  if (n >= 1000000 && n % 1000000 == 0) return format("%zuM", n / 1000000);
  if (n >= 1000 && n % 1000 == 0) return format("%zuk", n / 1000);
  return format("%zu", n);
}

void pcore_read_run(const Config& cfg, const Keys& k, const std::vector<uint32_t>& order, const ReadRows& rows) {
  fs::path dir = fresh_dir(cfg, "pcore");
  {
    PcoreDb db;
    db.open(dir, PCORE_DURABILITY_EVENTUAL, 0, 0);
    for (size_t i = 0; i < k.n; ++i) db.insert(k, i);
    PC(pcore_store_commit(db.store, nullptr));
    PcoreTree* tree = db.tree;

    rows.lookup("lookup_plain", "lookup " + rows.sz + ", no snapshot", pcore_lookups(k, order, [&](auto key, uint64_t* v, size_t* len) {
      return pcore_tree_get(tree, key, kKeyBytes, v, 8, len);
    }));
    PcoreSnapshot* snap = nullptr;
    PC(pcore_snapshot_begin(db.store, &snap));
    double held = pcore_lookups(k, order, [&](auto key, uint64_t* v, size_t* len) {
      return pcore_snapshot_tree_get(snap, tree, key, kKeyBytes, v, 8, len);
    });
    rows.lookup("lookup_held", "lookup " + rows.sz + ", one snapshot for all", held);
    double each = pcore_lookups(k, order, [&](auto key, uint64_t* v, size_t* len) {
      PcoreSnapshot* s = nullptr;
      int32_t rc = pcore_snapshot_begin(db.store, &s);
      if (rc != PCORE_OK) return rc;
      rc = pcore_snapshot_tree_get(s, tree, key, kKeyBytes, v, 8, len);
      int32_t end = pcore_snapshot_end(s);
      return rc != PCORE_OK ? rc : end;
    });
    rows.lookup("lookup_each", "lookup " + rows.sz + ", snapshot per lookup", each);
    rows.lookup("lookup_renew", "  same, LMDB reset/renew per lookup", each);

    const double dn = static_cast<double>(k.n);
    for (int how = 0; how < 4; ++how) {
      auto t0 = Clock::now();
      ScanSum s = pcore_scan(how < 3 ? snap : nullptr, tree, how < 3 ? how : 1);
      double ns = seconds_since(t0) * 1e9 / dn;
      if (s.count != k.n || s.value_sum != k.n * (k.n + 1) / 2)
        fail(format("pcore: scan (%s) saw %" PRIu64 " entries, expected %zu", kScanRows[how].label, s.count, k.n));
      rows.scan(kScanRows[how].key, std::string(kScanRows[how].label) + " " + rows.sz, ns);
    }
    PC(pcore_snapshot_end(snap));
  }
  fs::remove_all(dir);
}

void lmdb_read_run(const Config& cfg, const Keys& k, const std::vector<uint32_t>& order, const ReadRows& rows) {
  fs::path dir = fresh_dir(cfg, "lmdb");
  {
    LmdbDb db;
    db.open(dir, MDB_NOSYNC);
    MDB_txn* txn = nullptr;
    MC(mdb_txn_begin(db.env, nullptr, 0, &txn));
    for (size_t i = 0; i < k.n; ++i) db.put(txn, k, i, 0);
    MC(mdb_txn_commit(txn));
    const double dn = static_cast<double>(order.size());

    auto t0 = Clock::now();
    MC(mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &txn));
    for (uint32_t i : order) db.get(txn, k, i);
    mdb_txn_abort(txn);
    const double one_txn = seconds_since(t0) * 1e9 / dn;
    rows.lookup("lookup_plain", "lookup " + rows.sz + ", no snapshot", one_txn);
    rows.lookup("lookup_held", "lookup " + rows.sz + ", one snapshot for all", one_txn);

    t0 = Clock::now();
    for (uint32_t i : order) {
      MC(mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &txn));
      db.get(txn, k, i);
      mdb_txn_abort(txn);
    }
    rows.lookup("lookup_each", "lookup " + rows.sz + ", snapshot per lookup",
                seconds_since(t0) * 1e9 / dn);

    t0 = Clock::now();
    MC(mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &txn));
    for (uint32_t i : order) {
      db.get(txn, k, i);
      mdb_txn_reset(txn);
      MC(mdb_txn_renew(txn));
    }
    mdb_txn_abort(txn);
    rows.lookup("lookup_renew", "  same, LMDB reset/renew per lookup", seconds_since(t0) * 1e9 / dn);

    // LMDB's one scan (MDB_NEXT gives key and value in one call) is the peer of every row.
    t0 = Clock::now();
    MC(mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &txn));
    MDB_cursor* cur = nullptr;
    MC(mdb_cursor_open(txn, db.dbi, &cur));
    MDB_val key, d;
    ScanSum s;
    int rc = mdb_cursor_get(cur, &key, &d, MDB_FIRST);
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &key, &d, MDB_NEXT)) {
      ++s.count;
      if (d.mv_size == 8) s.value_sum += load_u64(d.mv_data);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    const double scan_ns = seconds_since(t0) * 1e9 / static_cast<double>(k.n);
    if (rc != MDB_NOTFOUND || s.count != k.n || s.value_sum != k.n * (k.n + 1) / 2)
      fail(format("lmdb: scan saw %" PRIu64 " entries, expected %zu", s.count, k.n));
    for (const ScanRow& row : kScanRows) rows.scan(row.key, std::string(row.label) + " " + rows.sz, scan_ns);
  }
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Writer with reader processes

struct Reader {
  pid_t pid = -1;
  fs::path ready;
  fs::path out;
};

Reader spawn_reader(const Config& cfg, const char* engine, const fs::path& dir, int index, int reopen_ms) {
  Reader r;
  r.ready = dir.parent_path() / format("%s.ready%d", dir.filename().c_str(), index);
  r.out = dir.parent_path() / format("%s.out%d", dir.filename().c_str(), index);
  std::string keys = std::to_string(cfg.writer_keys), seed = std::to_string(cfg.seed);
  std::string parent = std::to_string(getpid());
  std::vector<std::string> args = {cfg.self,  "--snapshot-reader", engine,  dir.string(), keys, seed,
                                   r.ready.string(), parent, std::to_string(reopen_ms)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, r.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int rc = posix_spawn(&r.pid, cfg.self.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail(format("posix_spawn %s: %s", cfg.self.c_str(), strerror(rc)));
  return r;
}

void wait_ready(const std::vector<Reader>& readers) {
  auto t0 = Clock::now();
  for (const Reader& r : readers) {
    while (!fs::exists(r.ready)) {
      int status = 0;
      if (waitpid(r.pid, &status, WNOHANG) == r.pid) fail(format("reader %d ended before it was ready", r.pid));
      if (seconds_since(t0) > 60) fail("reader processes not ready after 60 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

// What a reader process did: lookups, reopens, and the microseconds the reopens took.
struct ReaderCount {
  uint64_t lookups = 0;
  uint64_t reopens = 0;
  uint64_t reopen_us = 0;
};

// Stops the readers; returns what they did. A reader that failed a check fails this.
std::vector<ReaderCount> stop_readers(std::vector<Reader>& readers) {
  std::vector<ReaderCount> counts;
  std::string err;
  for (Reader& r : readers) kill(r.pid, SIGTERM);
  for (Reader& r : readers) {
    int status = 0;
    waitpid(r.pid, &status, 0);
    std::ifstream in(r.out);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) err += format("reader %d: status %#x: %s; ", r.pid, status, text.c_str());
    ReaderCount c;
    char* at = nullptr;
    c.lookups = std::strtoull(text.c_str(), &at, 10);
    c.reopens = std::strtoull(at, &at, 10);
    c.reopen_us = std::strtoull(at, &at, 10);
    counts.push_back(c);
    fs::remove(r.ready);
    fs::remove(r.out);
  }
  readers.clear();
  if (!err.empty()) fail(err);
  return counts;
}

// One mode of the writer phase: what each engine's commit does.
struct Mode {
  const char* tag;
  const char* label;
  uint32_t pcore_durability;
  unsigned lmdb_flags;
};
const Mode kModes[] = {
    {"strict", "STRICT", PCORE_DURABILITY_STRICT, 0},
    {"eventual", "EVENTUAL", PCORE_DURABILITY_EVENTUAL, MDB_NOSYNC},
};

struct WriterResult {
  double us_per_commit = 0;
  // The data file's size when the writer phase starts and when it ends, and the entries the
  // phase committed: the growth per entry compares engines whose writers commit at different
  // rates over the same time.
  double start_file_bytes = 0;
  double data_file_bytes = 0;
  double entries_committed = 0;
  double pinned_bytes = 0;
  std::vector<ReaderCount> readers;
};

// Commits transactions of kInsertsPerCommit new keys for cfg.writer_seconds; `commit_batch`
// inserts the new keys [from, from + kInsertsPerCommit) and commits.
template <class Commit>
double commit_loop(const Config& cfg, WriterResult& res, Commit&& commit_batch) {
  size_t next = 0, commits = 0;
  auto t0 = Clock::now();
  double t = 0;
  do {
    commit_batch(next);
    next += kInsertsPerCommit;
    ++commits;
    t = seconds_since(t0);
  } while (t < cfg.writer_seconds);
  res.entries_committed = static_cast<double>(next);
  return t * 1e6 / static_cast<double>(commits);
}

WriterResult pcore_writer(const Config& cfg, const Mode& mode, ReaderCase rc, const Keys& base, uint64_t fresh_seed) {
  const int readers_n = rc.readers;
  WriterResult res;
  fs::path dir = fresh_dir(cfg, "pcore-w");
  {
    PcoreDb db;
    db.open(dir, mode.pcore_durability, 0, 0);
    for (size_t i = 0; i < base.n; ++i) db.insert(base, i);
    PC(pcore_store_commit(db.store, nullptr));
    std::vector<Reader> readers;
    try {
      for (int i = 0; i < readers_n; ++i) readers.push_back(spawn_reader(cfg, "pcore", dir, i, rc.reopen_ms));
      wait_ready(readers);
      // (A reader that reopens may be between its close and its open.)
      if (rc.reopen_ms == 0 && db.stats().reader_processes != static_cast<uint64_t>(readers_n))
        fail(format("pcore: %" PRIu64 " reader processes in the table, %d running", db.stats().reader_processes, readers_n));
      res.start_file_bytes = static_cast<double>(db.stats().data_file_bytes);
      res.us_per_commit = commit_loop(cfg, res, [&](size_t from) {
        for (size_t i = from; i < from + kInsertsPerCommit; ++i) {
          uint64_t v = Keys::value(i);
          PC(pcore_tree_insert(db.tree, FreshKey(fresh_seed, i).bytes, kKeyBytes, &v, 8));
        }
        PC(pcore_store_commit(db.store, nullptr));
      });
      PcoreStoreStats ss = db.stats();
      res.data_file_bytes = static_cast<double>(ss.data_file_bytes);
      res.pinned_bytes = static_cast<double>(ss.pinned_bytes);
      res.readers = stop_readers(readers);
      // Once no reader is left, the next commit lets the writer reuse everything they pinned.
      uint64_t v = 0;
      PC(pcore_tree_insert(db.tree, FreshKey(fresh_seed ^ 1, 0).bytes, kKeyBytes, &v, 8));
      PC(pcore_store_commit(db.store, nullptr));
      ss = db.stats();
      if (ss.pinned_bytes != 0 || ss.reader_processes != 0)
        fail(format("pcore: %" PRIu64 " bytes still pinned, %" PRIu64 " reader processes, after the readers ended",
                    ss.pinned_bytes, ss.reader_processes));
    } catch (...) {
      for (Reader& r : readers) kill(r.pid, SIGKILL), waitpid(r.pid, nullptr, 0);
      throw;
    }
  }
  fs::remove_all(dir);
  return res;
}

// The bytes of LMDB's data file in use: its pages up to the last one written.
double lmdb_file_bytes(MDB_env* env) {
  MDB_envinfo info;
  MDB_stat st;
  MC(mdb_env_info(env, &info));
  MC(mdb_env_stat(env, &st));
  return static_cast<double>(info.me_last_pgno + 1) * st.ms_psize;
}

WriterResult lmdb_writer(const Config& cfg, const Mode& mode, ReaderCase rc, const Keys& base, uint64_t fresh_seed) {
  const int readers_n = rc.readers;
  WriterResult res;
  fs::path dir = fresh_dir(cfg, "lmdb-w");
  {
    LmdbDb db;
    db.open(dir, mode.lmdb_flags);
    MDB_txn* txn = nullptr;
    MC(mdb_txn_begin(db.env, nullptr, 0, &txn));
    for (size_t i = 0; i < base.n; ++i) db.put(txn, base, i, 0);
    MC(mdb_txn_commit(txn));
    std::vector<Reader> readers;
    try {
      for (int i = 0; i < readers_n; ++i) readers.push_back(spawn_reader(cfg, "lmdb", dir, i, 0));
      wait_ready(readers);
      res.start_file_bytes = lmdb_file_bytes(db.env);
      res.us_per_commit = commit_loop(cfg, res, [&](size_t from) {
        MDB_txn* t = nullptr;
        MC(mdb_txn_begin(db.env, nullptr, 0, &t));
        for (size_t i = from; i < from + kInsertsPerCommit; ++i) {
          uint64_t v = Keys::value(i);
          FreshKey fk(fresh_seed, i);
          MDB_val key{kKeyBytes, fk.bytes};
          MDB_val d{8, &v};
          MC(mdb_put(t, db.dbi, &key, &d, 0));
        }
        MC(mdb_txn_commit(t));
      });
      res.data_file_bytes = lmdb_file_bytes(db.env);
      res.readers = stop_readers(readers);
    } catch (...) {
      for (Reader& r : readers) kill(r.pid, SIGKILL), waitpid(r.pid, nullptr, 0);
      throw;
    }
  }
  fs::remove_all(dir);
  return res;
}

// The rows of a writer case with readers: the slowdown, the readers' own lookups, the space.
void record_readers(const Config& cfg, int engine, const std::string& tag, const WriterResult& r, double us0,
                    const Record& record) {
  record(tag + "_vs0", "  time per commit / 0 readers", "x", engine, r.us_per_commit / us0);
  std::vector<ReaderCount> c = r.readers;
  std::sort(c.begin(), c.end(), [](const ReaderCount& a, const ReaderCount& b) { return a.lookups < b.lookups; });
  const ReaderCount& median = c[c.size() / 2];
  record(tag + "_reader", "  lookup in a reader (median reader)", "ns/lookup", engine,
         median.lookups > 0 ? cfg.writer_seconds * 1e9 / static_cast<double>(median.lookups) : 0);
  if (median.reopens > 0)
    record(tag + "_reopen", "  a reader's reopen (median reader)", "ms", engine,
           static_cast<double>(median.reopen_us) / 1e3 / static_cast<double>(median.reopens));
  record(tag + "_file", "  data file at the end", "MB", engine, r.data_file_bytes / 1e6);
  record(tag + "_growth", "  data file growth per committed entry", "B/entry", engine,
         r.entries_committed > 0 ? (r.data_file_bytes - r.start_file_bytes) / r.entries_committed : 0);
  if (engine == kPcore)
    record(tag + "_pinned", "  pinned_bytes / data file", "x", engine,
           r.data_file_bytes > 0 ? r.pinned_bytes / r.data_file_bytes : 0);
}

// ---------------------------------------------------------------------------------------------
// The reader process

volatile sig_atomic_t g_stop = 0;

void on_term(int) { g_stop = 1; }

// Loops over snapshots of kLookupsPerSnapshot lookups until SIGTERM; returns the lookups done.
// Loops over snapshots of kLookupsPerSnapshot lookups until SIGTERM, reopening the store
// every `reopen_ms` (0: never) to read the writer's newer commits.
ReaderCount pcore_reader(const fs::path& dir, const Keys& k, const std::vector<uint32_t>& order,
                         const fs::path& ready, int reopen_ms) {
  PcoreDb db;
  db.open(dir, PCORE_DURABILITY_EVENTUAL, PCORE_OPEN_READ_ONLY, PCORE_TREE_NO_CREATE);
  ReaderCount done;
  size_t at = 0;
  auto t0 = Clock::now(), opened = t0;
  while (!g_stop && seconds_since(t0) < kReaderSecondsMax) {
    if (reopen_ms > 0 && seconds_since(opened) * 1e3 >= reopen_ms) {
      auto r0 = Clock::now();
      db.close();
      db.open(dir, PCORE_DURABILITY_EVENTUAL, PCORE_OPEN_READ_ONLY, PCORE_TREE_NO_CREATE);
      opened = Clock::now();
      done.reopen_us += static_cast<uint64_t>(seconds_since(r0) * 1e6);
      ++done.reopens;
    }
    PcoreSnapshot* snap = nullptr;
    PC(pcore_snapshot_begin(db.store, &snap));
    for (size_t j = 0; j < kLookupsPerSnapshot; ++j, at = (at + 1) % order.size()) {
      uint32_t i = order[at];
      uint64_t v = 0;
      size_t len = 0;
      int32_t rc = pcore_snapshot_tree_get(snap, db.tree, k.key(i), kKeyBytes, &v, 8, &len);
      if (rc != PCORE_OK) {
        pcore_snapshot_end(snap);
        fail(format("pcore reader: key #%u -> %s: %s", i, pcore_status_name(rc), pcore_last_error_message()));
      }
      check_value("pcore reader", i, len, v);
    }
    PC(pcore_snapshot_end(snap));
    if (done.lookups == 0) std::ofstream(ready).put('\n');
    done.lookups += kLookupsPerSnapshot;
  }
  return done;
}

ReaderCount lmdb_reader(const fs::path& dir, const Keys& k, const std::vector<uint32_t>& order,
                     const fs::path& ready) {
  LmdbDb db;
  db.open(dir, MDB_RDONLY);
  ReaderCount done;
  size_t at = 0;
  MDB_txn* txn = nullptr;
  MC(mdb_txn_begin(db.env, nullptr, MDB_RDONLY, &txn));
  mdb_txn_reset(txn);
  auto t0 = Clock::now();
  while (!g_stop && seconds_since(t0) < kReaderSecondsMax) {
    MC(mdb_txn_renew(txn));
    for (size_t j = 0; j < kLookupsPerSnapshot; ++j, at = (at + 1) % order.size()) db.get(txn, k, order[at]);
    mdb_txn_reset(txn);
    if (done.lookups == 0) std::ofstream(ready).put('\n');
    done.lookups += kLookupsPerSnapshot;
  }
  mdb_txn_abort(txn);
  return done;
}

}  // namespace

void read_run(const Config& cfg, int engine, const Record& record) {
  const Keys k = make_keys(cfg.lookup_keys, cfg.seed ^ 0x51A95u);
  const std::vector<uint32_t> order = shuffled(k.n, cfg.seed + 11);
  ReadRows rows{size_label(k.n), record, engine};
  if (engine == kPcore) pcore_read_run(cfg, k, order, rows);
  else lmdb_read_run(cfg, k, order, rows);
}

void writer_run(const Config& cfg, int engine, const Record& record) {
  const Keys base = make_keys(cfg.writer_keys, cfg.seed);
  const uint64_t fresh_seed = cfg.seed ^ 0xF4E5Bu;
  for (const Mode& mode : kModes) {
    double us0 = 0;
    for (const ReaderCase& rc : kReaderCases) {
      if (rc.reopen_ms > 0 && engine != kPcore) continue;
      WriterResult r = engine == kPcore ? pcore_writer(cfg, mode, rc, base, fresh_seed)
                                        : lmdb_writer(cfg, mode, rc, base, fresh_seed);
      std::string tag = format("snap_commit_%s_%dr", mode.tag, rc.readers);
      std::string who = format("%d reader%s, %s", rc.readers, rc.readers == 1 ? "" : "s", mode.label);
      if (rc.reopen_ms > 0) {
        tag += format("_reopen%d", rc.reopen_ms);
        who = format("%d reopening %dms, %s", rc.readers, rc.reopen_ms, mode.label);
      }
      record(tag, "commit x100, " + who, "us/commit", engine, r.us_per_commit);
      if (rc.readers == 0) us0 = r.us_per_commit;
      else record_readers(cfg, engine, tag, r, us0, record);
    }
  }
}

int reader_main(int argc, char** argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: btree_bench --snapshot-reader pcore|lmdb DIR KEYS SEED READY_FILE PARENT_PID REOPEN_MS\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != static_cast<pid_t>(std::stol(argv[7]))) return 1;  // the parent is gone already
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, nullptr);
  try {
    const std::string engine = argv[2];
    const Keys k = make_keys(std::stoull(argv[4]), std::stoull(argv[5]));
    const std::vector<uint32_t> order = shuffled(k.n, getpid());
    const ReaderCount done = engine == "pcore" ? pcore_reader(argv[3], k, order, argv[6], std::stoi(argv[8]))
                                               : lmdb_reader(argv[3], k, order, argv[6]);
    printf("%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", done.lookups, done.reopens, done.reopen_us);
    return 0;
  } catch (const std::exception& e) {
    printf("0 0 0 %s\n", e.what());
    return 1;
  }
}

}  // namespace snapbench
