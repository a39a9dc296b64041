#!/usr/bin/env bash
# Launch through libvirt vs direct, side by side: wall time of `skiff devices -a DISK`
# (launch → Hello → Devices → Shutdown → domain/qemu gone), alternating the two backends,
# N runs each (default 10), median and min/max in ms; then the median of each step of the
# libvirt launches (SKIFF_LIBVIRT_TRACE=1: connect, kernel placement, createXML, channel,
# resume, Hello, calls, qemu's exit). Prints figures only.
#   bench/libvirt.sh [RUNS]        SKIFF_BENCH_URI=qemu:///system (default)
# Back-to-back libvirt launches also wait for libvirtd's teardown of the previous domain
# (it closes the client's connection, then reaps qemu, restores labels, removes cgroups,
# in its event loop): that shows up in the next run's "connect" step.
# Needs root for qemu:///system (starts virtlogd/libvirtd like tests/run.sh when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
uri="${SKIFF_BENCH_URI:-qemu:///system}"
cargo build --release -q -p skiff-cli
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
  SKIFF_LIBVIRT_TRACE=1 "$skiff" --backend "$1" --connect "$uri" devices -a "$disk,format=raw" \
    >/dev/null 2>>"$work/trace-$1"
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
rm -f "$work"/trace-*
direct=()
libvirt=()
for _ in $(seq 1 "$runs"); do
  direct+=("$(one direct)")
  libvirt+=("$(one libvirt)")
done
echo "skiff devices -a 4MiB raw disk, launch to exit, $runs runs each, alternating (uri $uri):"
stats direct "${direct[@]}"
stats libvirt "${libvirt[@]}"
echo "libvirt launch steps, median ms (SKIFF_LIBVIRT_TRACE):"
awk '/^skiff: libvirt: / {
    sub(/^skiff: libvirt: /, ""); ms = $(NF - 1); $NF = ""; $(NF - 1) = ""; sub(/ +$/, "")
    if (!($0 in n)) order[++k] = $0
    v[$0, ++n[$0]] = ms
  }
  END {
    for (i = 1; i <= k; i++) {
      s = order[i]; c = n[s]
      for (a = 1; a <= c; a++) x[a] = v[s, a]
      for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
      m = (c % 2) ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2
      printf "  %-18s %8.1f ms   (min %.1f, max %.1f)\n", s, m, x[1], x[c]
    }
  }' "$work/trace-libvirt"
