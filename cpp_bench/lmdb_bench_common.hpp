// What the benches that time pcore beside LMDB alone share (bulk_commit_bench,
// large_value_bench): failing loudly, timing, medians, and opening each engine the one way
// those benches compare (pcore STRICT, LMDB with its default synced commit and an 8 GiB map).
#pragma once

#include <errno.h>
#include <lmdb.h>
#include <pcore.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

[[noreturn]] inline void die(const char* what, int code) {
  std::fprintf(stderr, "%s: %s failed (%d)\n", program_invocation_short_name, what, code);
  std::exit(1);
}

inline double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline PcoreStore* open_pcore_strict(const std::filesystem::path& dir) {
  PcoreStoreOptions opt;
  if (pcore_store_options_init(&opt) != PCORE_OK) die("pcore_store_options_init", -1);
  opt.durability = PCORE_DURABILITY_STRICT;
  PcoreStore* s = nullptr;
  if (int st = pcore_store_open(dir.c_str(), &opt, &s); st != PCORE_OK) die("pcore_store_open", st);
  return s;
}

inline MDB_env* open_lmdb(const std::filesystem::path& dir) {
  MDB_env* env = nullptr;
  if (int rc = mdb_env_create(&env)) die("mdb_env_create", rc);
  mdb_env_set_mapsize(env, size_t(8) << 30);
  if (int rc = mdb_env_open(env, dir.c_str(), 0, 0644)) die("mdb_env_open", rc);
  return env;
}

}  // namespace bench
