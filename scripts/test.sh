#!/usr/bin/env bash
# Every test: formatting, lints, the generated header's freshness, Rust unit and property
# tests, then the GoogleTest binaries (xtree_tests, pcore_tests) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy (warnings denied)"
cargo clippy --all-targets --quiet -- -D warnings
echo "== include/pcore.h is the generated header"
if git rev-parse --git-dir >/dev/null 2>&1; then
  cargo build --quiet --lib
  git diff --exit-code -- include/pcore.h || { echo "include/pcore.h is stale: commit the regenerated header" >&2; exit 1; }
fi
echo "== cargo test"
cargo test --release --quiet
echo "== GoogleTest through ctest"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
