#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks formatting and
# lints, then runs every unit test and every qemu-based integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --release 2>&1
