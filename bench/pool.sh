#!/usr/bin/env bash
# Pool benchmark: cold launch → first file read vs pool acquire → first file read (median
# over RUNS, interleaved), then df over IMAGES images with and without the pool, through
# the library and through the CLI (`skiff df` vs `skiff df --pool`).
#   bench/pool.sh [RUNS] [IMAGES]       (defaults 20 and 50; IMAGES=0 skips the df part)
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
images="${2:-50}"
cargo build --release -q -p host-launcher --example pool-bench --bin skiff
dir="${CARGO_TARGET_DIR:-target}"
"$dir/release/examples/pool-bench" "$runs" "$images"
[ "$images" -gt 0 ] || exit 0

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/etc"
echo pool-bench >"$tmp/root/etc/hostname"
for i in $(seq 1 "$images"); do
    mkfs.ext4 -q -F -d "$tmp/root" "$tmp/g$i.img" 8M >/dev/null
done
skiff="$dir/release/skiff"
ms() { date +%s%N; }
echo
echo "CLI: skiff df -j 2 over $images images (wall clock, one run each)"
for mode in "" "--pool"; do
    t0=$(ms)
    "$skiff" df -j 2 $mode "$tmp"/g*.img >/dev/null
    t1=$(ms)
    awk -v n="$images" -v d=$(( (t1 - t0) / 1000000 )) -v m="${mode:-(cold)}" \
        'BEGIN { printf "  skiff df %-8s %8.2f s  (%.0f ms per image)\n", m, d / 1000, d / n }'
done
