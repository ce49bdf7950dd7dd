// bulk_commit_bench: issue 17 item 3's two bulk loads, pcore (through the C ABI, STRICT)
// beside LMDB (default synced commit) in one run, on one file system:
//   1M random 16-byte keys with 100-byte values, one transaction: insert time, commit time;
//   1M sorted 8-byte keys (big-endian counters) with 8-byte values: insert time (LMDB with
//   MDB_APPEND), commit time;
// and, after each load, issue 17 item 4's closes: the close right after the commit (pcore may
// checkpoint there), then a reopen, one lookup and the close of the unchanged store (the
// median of kUnchangedCloses such cycles: one close is tens of microseconds, within a page
// fault or a preemption of noise).
//
//   <build>/bin/bulk_commit_bench [--dir DIR] [--n N] [--runs R]   (medians of R runs, default 3)

#include "lmdb_bench_common.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

using bench::Clock;
using bench::die;
using bench::median;
using bench::since;

struct Load {
  size_t key_bytes, value_bytes;
  std::vector<unsigned char> keys;  // n keys of key_bytes, in insert order
  bool sorted;
};

Load random_load(size_t n) {
  Load l{16, 100, std::vector<unsigned char>(n * 16), false};
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < n; ++i) {
    for (int half = 0; half < 2; ++half) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(&l.keys[i * 16 + half * 8], &x, 8);
    }
  }
  return l;
}

Load sorted_load(size_t n) {
  Load l{8, 8, std::vector<unsigned char>(n * 8), true};
  for (size_t i = 0; i < n; ++i) {
    uint64_t be = __builtin_bswap64(i);
    std::memcpy(&l.keys[i * 8], &be, 8);
  }
  return l;
}

struct Figures {
  double insert_s, commit_s, close_s, unchanged_close_s;
};

PcoreTree* pcore_tree(PcoreStore* s) {
  PcoreTreeOptions topt;
  if (int st = pcore_tree_options_init(&topt); st != PCORE_OK) die("pcore_tree_options_init", st);
  PcoreTree* t = nullptr;
  if (int st = pcore_tree_open(s, "t", 1, &topt, &t); st != PCORE_OK) die("pcore_tree_open", st);
  return t;
}

// Reopen, one lookup, close cycles of an unchanged store per run; the row gives their median.
constexpr int kUnchangedCloses = 15;

// Times a store's close, its tree closed first (untimed).
double pcore_close(PcoreStore* s, PcoreTree* t) {
  pcore_tree_close(t);
  auto t0 = Clock::now();
  if (int st = pcore_store_close(s); st != PCORE_OK) die("pcore_store_close", st);
  return since(t0);
}

Figures pcore_run(const fs::path& dir, const Load& l) {
  fs::remove_all(dir);
  PcoreStore* s = bench::open_pcore_strict(dir);
  PcoreTree* t = pcore_tree(s);
  if (int st = pcore_store_commit(s, nullptr); st != PCORE_OK) die("pcore_store_commit", st);
  const size_t n = l.keys.size() / l.key_bytes;
  std::vector<unsigned char> value(l.value_bytes, 0x5A);
  auto t0 = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(value.data(), &i, 8);
    if (int st = pcore_tree_insert(t, &l.keys[i * l.key_bytes], l.key_bytes, value.data(), value.size()); st != PCORE_OK)
      die("pcore_tree_insert", st);
  }
  const double insert_s = since(t0);
  t0 = Clock::now();
  if (int st = pcore_store_commit(s, nullptr); st != PCORE_OK) die("pcore_store_commit", st);
  const double commit_s = since(t0);
  const double close_s = pcore_close(s, t);
  std::vector<double> unchanged;
  for (int i = 0; i < kUnchangedCloses; ++i) {
    s = bench::open_pcore_strict(dir);
    t = pcore_tree(s);
    unsigned char got[128];
    size_t got_len = 0;
    if (int st = pcore_tree_get(t, &l.keys[0], l.key_bytes, got, sizeof got, &got_len); st != PCORE_OK)
      die("pcore_tree_get", st);
    unchanged.push_back(pcore_close(s, t));
  }
  Figures f{insert_s, commit_s, close_s, median(unchanged)};
  fs::remove_all(dir);
  return f;
}

Figures lmdb_run(const fs::path& dir, const Load& l) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  MDB_env* env = bench::open_lmdb(dir);
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  const size_t n = l.keys.size() / l.key_bytes;
  std::vector<unsigned char> value(l.value_bytes, 0x5A);
  auto t0 = Clock::now();
  if (int rc = mdb_txn_begin(env, nullptr, 0, &txn)) die("mdb_txn_begin", rc);
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &dbi)) die("mdb_dbi_open", rc);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(value.data(), &i, 8);
    MDB_val key{l.key_bytes, const_cast<unsigned char*>(&l.keys[i * l.key_bytes])}, val{value.size(), value.data()};
    if (int rc = mdb_put(txn, dbi, &key, &val, l.sorted ? MDB_APPEND : 0)) die("mdb_put", rc);
  }
  const double insert_s = since(t0);
  t0 = Clock::now();
  if (int rc = mdb_txn_commit(txn)) die("mdb_txn_commit", rc);
  const double commit_s = since(t0);
  t0 = Clock::now();
  mdb_env_close(env);
  const double close_s = since(t0);
  std::vector<double> unchanged;
  for (int i = 0; i < kUnchangedCloses; ++i) {
    env = bench::open_lmdb(dir);
    if (int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn)) die("mdb_txn_begin", rc);
    if (int rc = mdb_dbi_open(txn, nullptr, 0, &dbi)) die("mdb_dbi_open", rc);
    MDB_val key{l.key_bytes, const_cast<unsigned char*>(&l.keys[0])}, val;
    if (int rc = mdb_get(txn, dbi, &key, &val)) die("mdb_get", rc);
    mdb_txn_abort(txn);
    t0 = Clock::now();
    mdb_env_close(env);
    unchanged.push_back(since(t0));
  }
  Figures f{insert_s, commit_s, close_s, median(unchanged)};
  fs::remove_all(dir);
  return f;
}

// One line of the table: the medians of one figure over the runs, in ms.
void row(const char* name, const std::vector<Figures>& p, const std::vector<Figures>& m, double Figures::*field) {
  std::vector<double> pv, mv;
  for (const Figures& f : p) pv.push_back(f.*field * 1e3);
  for (const Figures& f : m) mv.push_back(f.*field * 1e3);
  std::printf("  %-32s %12.3f %12.3f %8.2f\n", name, median(pv), median(mv), median(pv) / median(mv));
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path() / "pcore-bulk-commit-bench";
  size_t n = 1000000;
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--n" && i + 1 < argc) {
      n = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: bulk_commit_bench [--dir DIR] [--n N] [--runs R]\n");
      return 2;
    }
  }
  std::printf("%zu entries, one transaction, synced commit; ms, medians of %d runs (%s)\n", n, runs, dir.c_str());
  std::printf("%-34s %12s %12s %8s\n", "", "pcore", "LMDB", "ratio");
  for (int sorted = 0; sorted < 2; ++sorted) {
    const Load l = sorted ? sorted_load(n) : random_load(n);
    std::vector<Figures> p, m;
    for (int r = 0; r < runs; ++r) {
      p.push_back(pcore_run(dir / "pcore", l));
      m.push_back(lmdb_run(dir / "lmdb", l));
    }
    const char* what = sorted ? "sorted 8-byte keys, 8-byte values" : "random 16-byte keys, 100-byte values";
    std::printf("%s\n", what);
    row("insert", p, m, &Figures::insert_s);
    row("commit", p, m, &Figures::commit_s);
    row("close after the commit", p, m, &Figures::close_s);
    row("close, reopened and unchanged", p, m, &Figures::unchanged_close_s);
  }
  return 0;
}
