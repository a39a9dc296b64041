#!/usr/bin/env bash
# Pool benchmark: cold launch → first file read vs pool acquire → first file read (median
# over RUNS, interleaved), then df over IMAGES images with and without the pool, through
# the library and through the CLI (`skiff df` vs `skiff df --pool`), then
# `skiff each -- cat /etc/hostname` over the IMAGES images with and without --pool, at
# -j 1 and -j 2 (ROUNDS interleaved rounds, median wall clock and mean CPU time of skiff
# and all its qemu/qemu-img children).
#   bench/pool.sh [RUNS] [IMAGES] [ROUNDS]  (defaults 20, 50, 3; IMAGES=0 skips the bulk part)
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
images="${2:-50}"
rounds="${3:-3}"
cargo build --release -q -p host-launcher --example pool-bench
cargo build --release -q -p skiff-cli
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

echo
echo "CLI: skiff each -- cat /etc/hostname over $images images ($rounds interleaved rounds)"
# wall seconds and CPU seconds (user+sys of skiff and every child it waited for) of one run.
run_each() {
    local TIMEFORMAT="%R %U %S"
    { time "$skiff" each "$@" "$tmp"/g*.img -- cat /etc/hostname >/dev/null 2>/dev/null; } 2>&1 |
        awk '{ printf "%s %.2f\n", $1, $2 + $3 }'
}
declare -A walls cpus
for r in $(seq 1 "$rounds"); do
    for j in 1 2; do
        for mode in "" "--pool"; do
            read -r w c < <(run_each -j "$j" $mode)
            walls["$j$mode"]+="$w "
            cpus["$j$mode"]+="$c "
        done
    done
done
for j in 1 2; do
    for mode in "" "--pool"; do
        echo "${walls["$j$mode"]}|${cpus["$j$mode"]}" | awk -v n="$images" -v l="each -j $j ${mode:-(cold)}" '{
            split($0, p, "|"); k = split(p[1], w, " "); split(p[2], c, " ")
            for (i = 1; i <= k; i++) for (m = i + 1; m <= k; m++) if (w[m] < w[i]) { t = w[i]; w[i] = w[m]; w[m] = t }
            s = 0; for (i = 1; i <= k; i++) s += c[i]
            med = (k % 2) ? w[(k + 1) / 2] : (w[k / 2] + w[k / 2 + 1]) / 2
            printf "  skiff %-20s %6.2f s  %5.1f images/s  CPU %5.2f s (%.0f ms per image)\n", l, med, n / med, s / k, 1000 * s / k / n
        }'
    done
done
