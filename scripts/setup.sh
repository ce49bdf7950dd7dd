#!/usr/bin/env bash
# Installs what the build needs and is missing: cmake, GoogleTest, a C++ compiler and FUSE's
# mount helper from Debian's packages, and rustfmt/clippy for the Rust toolchain. Safe to run repeatedly.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
[ -e /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
# Peers the B+ tree benchmark measures against in the same run.
[ -e /usr/include/lmdb.h ] || need_apt+=(liblmdb-dev)
[ -e /usr/include/sqlite3.h ] || need_apt+=(libsqlite3-dev)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# powercut/ (the power-cut file system of the crash tests) mounts FUSE through fusermount3;
# its pure-Rust mount needs no libfuse headers.
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian's packages"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo (the Rust toolchain) is required; install it with rustup" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component" >/dev/null 2>&1 || true
  fi
done
# Miri (scripts/test.sh runs some unit tests under it) comes with a nightly toolchain: when
# one is installed, add the components it needs.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  for component in miri rust-src; do
    if ! rustup +nightly component list --installed 2>/dev/null | grep -q "^$component"; then
      rustup component add "$component" --toolchain nightly >/dev/null 2>&1 || true
    fi
  done
fi
