#!/usr/bin/env bash
# The main job: builds pcore and runs `pcore demo` (XTree's workload: growing buckets and data
# records, commits, close, reopen, byte-for-byte verification, allocator statistics).
# Extra arguments go to `pcore demo` (e.g. --records 10000000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet -p pcore-cli
exec target/release/pcore demo "$@"
