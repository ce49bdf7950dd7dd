#!/usr/bin/env bash
# The benchmark report: builds pcore and cpp_bench's btree_bench, then runs `pcore bench`,
# which measures the node store against glibc malloc/memcpy/fdatasync, the B+ tree against
# LMDB and SQLite, and read snapshots against LMDB's read transactions in one run, prints one
# table of ratios, and writes docs/bench.json and the chart docs/bench.svg that the README
# shows. Extra arguments go to `pcore bench` (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
cargo build --release --quiet -p pcore-cli
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs" --target btree_bench
mkdir -p docs
exec target/release/pcore bench --json docs/bench.json --svg docs/bench.svg "$@"
