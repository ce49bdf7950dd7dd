#!/usr/bin/env bash
# Every test: formatting, lints, the generated header's freshness, the fuzz corpus replayed,
# Rust unit and property tests, the GoogleTest binaries through ctest (a release build, then all of them again with
# ASan + UBSan, and the concurrency suite with ThreadSanitizer), and Miri on the unit tests
# of page layout, bitmaps, mappings and cursors racing a writer.
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
  cargo build --quiet -p pcore --lib
  git diff --exit-code -- include/pcore.h || { echo "include/pcore.h is stale: commit the regenerated header" >&2; exit 1; }
fi
echo "== powercut: the power-cut file system (its own crate), built beside pcore for crash --power"
cargo fmt --manifest-path powercut/Cargo.toml -- --check
cargo clippy --manifest-path powercut/Cargo.toml --target-dir target --all-targets --quiet -- -D warnings
cargo build --release --quiet --manifest-path powercut/Cargo.toml --target-dir target
cargo test --release --quiet --manifest-path powercut/Cargo.toml --target-dir target
echo "== fuzz harnesses (their own crate): lints, and every committed input replayed once"
# Not fuzzing (that needs nightly and cargo-fuzz: fuzz/README.md): the corpus and the inputs
# that crashed before their fixes go through the targets' harnesses and models as plain calls.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target --all-targets --quiet -- -D warnings
cargo run --release --quiet --manifest-path fuzz/Cargo.toml --target-dir target --bin replay
echo "== cargo test"
# The shared library itself (cargo test builds only the rlib): tests/c_program.rs links a C
# program against it where cargo leaves it.
cargo build --release --quiet -p pcore --lib
cargo test --release --quiet
echo "== GoogleTest through ctest"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
echo "== GoogleTest with ASan + UBSan (build-asan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPCORE_SANITIZE=ON -DPCORE_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
echo "== concurrency suite with ThreadSanitizer (build-tsan)"
# Only this suite and KizunaHostTest (statements opening one index from several threads)
# share a store between threads: TSan has nothing to check in the others.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPCORE_TSAN=ON -DPCORE_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j "$jobs" --target concurrency_tests kizuna_tests
ctest --test-dir build-tsan -L concurrency_tests --output-on-failure -j "$jobs"
ctest --test-dir build-tsan -R '^KizunaHostTest[.]' --output-on-failure -j "$jobs"
echo "== Miri: page layout, bitmaps, anonymous mappings, cursors racing a writer"
if cargo +nightly miri --version >/dev/null 2>&1; then
  # parking_lot_core keeps a pointer in an integer; permissive provenance accepts that.
  MIRIFLAGS=-Zmiri-permissive-provenance cargo +nightly miri test --quiet --lib -- \
    btree::page alloc::bitmap os::mapping::tests::anonymous os::mapping::tests::out_of_range btree::cursor
else
  echo "== Miri SKIPPED: no nightly toolchain with miri (rustup component add miri rust-src --toolchain nightly)" >&2
fi
