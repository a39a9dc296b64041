#!/usr/bin/env bash
# Launch through libvirt vs direct, side by side: wall time of `skiff devices -a DISK`
# (launch → Hello → Devices → Shutdown → domain/qemu gone), alternating the two backends,
# N runs each (default 10), median and min/max in ms. Prints figures only.
#   bench/libvirt.sh [RUNS]        SKIFF_BENCH_URI=qemu:///system (default)
# Needs root for qemu:///system (starts virtlogd/libvirtd like tests/run.sh when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
uri="${SKIFF_BENCH_URI:-qemu:///system}"
cargo build --release -q -p host-launcher --features libvirt
skiff="${CARGO_TARGET_DIR:-target}/release/skiff"
source tests/libvirtd.sh
libvirtd_start
work="$(mktemp -d)"
trap 'rm -rf "$work"; libvirtd_stop' EXIT
chmod 755 "$work" # libvirt's qemu runs as libvirt-qemu: it must reach the disk
disk="$work/disk.img"
head -c $((4 << 20)) /dev/urandom >"$disk"

now_ns() { date +%s%N; }
one() { # backend -> elapsed ms
  local t0 t1
  t0=$(now_ns)
  "$skiff" --backend "$1" --connect "$uri" devices -a "$disk,format=raw" >/dev/null
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000))
}
stats() { # label, microsecond values...
  local label="$1"
  shift
  printf '%s\n' "$@" | sort -n | awk -v l="$label" '
    { v[NR] = $1 }
    END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%-8s median %8.1f ms   min %8.1f ms   max %8.1f ms   (n=%d)\n", l, m / 1000, v[1] / 1000, v[NR] / 1000, NR
    }'
}

# One warm-up each (page cache, kernel placed under /var/lib/libvirt/boot).
one direct >/dev/null
one libvirt >/dev/null
direct=()
libvirt=()
for _ in $(seq 1 "$runs"); do
  direct+=("$(one direct)")
  libvirt+=("$(one libvirt)")
done
echo "skiff devices -a 4MiB raw disk, launch to exit, $runs runs each, alternating (uri $uri):"
stats direct "${direct[@]}"
stats libvirt "${libvirt[@]}"
