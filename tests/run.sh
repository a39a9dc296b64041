#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks formatting and
# lints, then runs every unit test and every qemu-based integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
# A /dev/null that became a regular file (seen once on a shared machine: something
# replaced it) hands its contents to every reader, and cargo's rustc probe then fails
# with odd parse errors. Put the device back (needs root, as install-deps.sh does).
if [ ! -c /dev/null ]; then
  echo "tests/run.sh: /dev/null is not a character device; recreating it" >&2
  rm -f /dev/null && mknod -m 666 /dev/null c 1 3
fi
# Nothing here reads the caller's stdin (cargo's rustc probes would read whatever it holds).
exec </dev/null
# The libvirt daemon too (SKIFF_DEPS_LIBVIRT=0 skips it): the libvirt backend, in the
# default build, is tested against libvirtd (its tests pass with a note without one).
SKIFF_DEPS_LIBVIRT="${SKIFF_DEPS_LIBVIRT:-1}" bash tests/install-deps.sh
if command -v libvirtd >/dev/null 2>&1; then
  source tests/libvirtd.sh
  libvirtd_start
  trap libvirtd_stop EXIT
fi
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo clippy (library and CLI without the default features: no libvirt)" >&2
cargo clippy -p host-launcher -p skiff-cli --all-targets --no-default-features -q -- -D warnings
echo "== cargo clippy (appliance kernel, x86_64-unknown-none)" >&2
cargo clippy -q -p appliance-kernel --bin appliance-kernel --target x86_64-unknown-none --profile appliance -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --release 2>&1
echo "== python bindings: pip install ./python into a venv, pytest python/tests" >&2
bash tests/python.sh
