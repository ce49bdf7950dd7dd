// large_value_bench: N values of 16 KiB committed in one write transaction, pcore (through
// the C ABI, STRICT: the values are over the inline maximum, so synced rather than logged)
// beside LMDB (mdb_put of each value, default synced commit) in the same run, on the same
// file system. The source of docs/LOG.md's large-value figures (issue 17 item 2).
//
//   <build>/bin/large_value_bench [--dir DIR] [--values N]...   (default: 20000 and 100000)

#include "lmdb_bench_common.hpp"

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
using bench::since;

constexpr size_t kValueBytes = 16 << 10;

struct Figures {
  double put_s, commit_s;
};

Figures pcore_run(const fs::path& dir, size_t values) {
  fs::remove_all(dir);
  PcoreStore* s = bench::open_pcore_strict(dir);
  std::vector<unsigned char> value(kValueBytes, 0xA5);
  auto t = Clock::now();
  for (size_t i = 0; i < values; ++i) {
    std::memcpy(value.data(), &i, sizeof i);
    PcoreAllocResult r;
    r.struct_size = sizeof r;
    if (int st = pcore_node_allocate(s, value.size(), 1, &r); st != PCORE_OK) die("pcore_node_allocate", st);
    if (int st = pcore_node_publish(s, r.id, value.data(), value.size(), nullptr); st != PCORE_OK)
      die("pcore_node_publish", st);
  }
  Figures f{since(t), 0};
  t = Clock::now();
  if (int st = pcore_store_commit(s, nullptr); st != PCORE_OK) die("pcore_store_commit", st);
  f.commit_s = since(t);
  if (int st = pcore_store_close(s); st != PCORE_OK) die("pcore_store_close", st);
  fs::remove_all(dir);
  return f;
}

Figures lmdb_run(const fs::path& dir, size_t values) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  MDB_env* env = bench::open_lmdb(dir);
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  std::vector<unsigned char> value(kValueBytes, 0xA5);
  auto t = Clock::now();
  if (int rc = mdb_txn_begin(env, nullptr, 0, &txn)) die("mdb_txn_begin", rc);
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &dbi)) die("mdb_dbi_open", rc);
  for (size_t i = 0; i < values; ++i) {
    std::memcpy(value.data(), &i, sizeof i);
    uint64_t k = __builtin_bswap64(i);
    MDB_val key{sizeof k, &k}, val{value.size(), value.data()};
    if (int rc = mdb_put(txn, dbi, &key, &val, 0)) die("mdb_put", rc);
  }
  Figures f{since(t), 0};
  t = Clock::now();
  if (int rc = mdb_txn_commit(txn)) die("mdb_txn_commit", rc);
  f.commit_s = since(t);
  mdb_env_close(env);
  fs::remove_all(dir);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path() / "pcore-large-value-bench";
  std::vector<size_t> counts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--values" && i + 1 < argc) {
      counts.push_back(std::strtoull(argv[++i], nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: large_value_bench [--dir DIR] [--values N]...\n");
      return 2;
    }
  }
  if (counts.empty()) counts = {20000, 100000};
  std::printf("values of 16 KiB, one write transaction, synced commit; seconds (%s)\n", dir.c_str());
  std::printf("%8s %12s %12s %12s %12s %8s\n", "values", "pcore put", "pcore commit", "LMDB put", "LMDB commit",
              "commit ratio");
  for (size_t n : counts) {
    Figures p = pcore_run(dir / "pcore", n);
    Figures l = lmdb_run(dir / "lmdb", n);
    std::printf("%8zu %12.3f %12.3f %12.3f %12.3f %8.2f\n", n, p.put_s, p.commit_s, l.put_s, l.commit_s,
                p.commit_s / l.commit_s);
  }
  return 0;
}
