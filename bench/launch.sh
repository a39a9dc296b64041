#!/usr/bin/env bash
# Launch benchmark: spawn → Hello, spawn → first reply, and the qemu floor, over N runs.
#   bench/launch.sh [RUNS]         (default 20)
#   SKIFF_BENCH_DISK=disk.img bench/launch.sh   attaches one raw disk
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p host-launcher --example launch-bench
dir="${CARGO_TARGET_DIR:-target}"
exec "$dir/release/examples/launch-bench" "$@"
