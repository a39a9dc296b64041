#!/usr/bin/env bash
# FUSE benchmark: `skiff mount` beside `guestmount` (libguestfs, LIBGUESTFS_BACKEND=direct,
# TCG) on the same ext4 image in the same run. For each run, a fresh read-only mount:
#   mount     `skiff mount` / `guestmount` until the filesystem is up
#   cat       `cat` of a 64 MiB file through the mount (cold: the first read)
#   find      `find | wc -l` over ~4,000 paths through the mount (cold)
#   bench/mount.sh [RUNS]          (default 5 for skiff, 3 for guestmount)
#   SKIFF_BENCH_NO_GUESTMOUNT=1   skip guestmount
# guestmount comes from `SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh`. Medians; prints
# figures only, nothing asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cargo build --release -q -p skiff-cli
skiff="${CARGO_TARGET_DIR:-target}/release/skiff"

work="$(mktemp -d)"
mp="$work/mnt"
mkdir -p "$mp" "$work/src/etc"
cleanup() {
  mountpoint -q "$mp" && fusermount3 -u -z "$mp" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "bench-guest" > "$work/src/etc/hostname"
head -c $((64 << 20)) /dev/urandom > "$work/src/big.bin"
for d in $(seq 0 39); do
  for s in 0 1 2; do
    mkdir -p "$work/src/tree/d$d/s$s"
    for f in $(seq 0 29); do echo "file $d $s $f" > "$work/src/tree/d$d/s$s/f$f"; done
  done
done
img="$work/disk.img"
mkfs.ext4 -q -F -b 4096 -E root_owner=0:0 -d "$work/src" "$img" 256M
want="$(sha256sum < "$work/src/big.bin" | cut -d' ' -f1)"
paths="$(cd "$work/src" && find . | wc -l)"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b-a)*1000}'; }
rate() { awk -v ms="$1" 'BEGIN {printf "%.0f MB/s", 64*1.048576/(ms/1000)}'; }

# One measured run: $1 mounts on $mp, $2 unmounts. Appends to m_t, c_t, f_t.
measure() {
  local t0 t1 sum n
  t0="$(now)"; eval "$1"; t1="$(now)"
  m_t+=("$(ms "$t0" "$t1")")
  t0="$(now)"; sum="$(cat "$mp/big.bin" | sha256sum | cut -d' ' -f1)"; t1="$(now)"
  [ "$sum" = "$want" ] || { echo "cat through the mount differs" >&2; exit 1; }
  c_t+=("$(ms "$t0" "$t1")")
  t0="$(now)"; n="$(find "$mp" | wc -l)"; t1="$(now)"
  f_t+=("$(ms "$t0" "$t1")")
  found="$n"
  eval "$2"
}

report() {
  local m c f
  m="$(printf '%s\n' "${m_t[@]}" | median)"
  c="$(printf '%s\n' "${c_t[@]}" | median)"
  f="$(printf '%s\n' "${f_t[@]}" | median)"
  echo "mount:                  median ${m} ms   (all: ${m_t[*]})"
  echo "cat 64 MiB:             median ${c} ms = $(rate "$c")   (all: ${c_t[*]})"
  echo "find | wc -l (${found}):  median ${f} ms   (all: ${f_t[*]})"
}

echo "image: 256 MiB ext4 (4 KiB blocks), a 64 MiB file and ${paths} paths; accel: ${SKIFF_ACCEL:-auto}"
echo
echo "== skiff mount ($runs runs)"
m_t=(); c_t=(); f_t=()
for _ in $(seq "$runs"); do
  measure "\"$skiff\" mount -a \"$img,format=raw\" \"$mp\"" "\"$skiff\" umount \"$mp\""
done
report
# For scale: the same file through `skiff cat` (no FUSE; launch included).
c_t=()
for _ in $(seq "$runs"); do
  t0="$(now)"; sum="$("$skiff" cat -a "$img,format=raw" /big.bin | sha256sum | cut -d' ' -f1)"; t1="$(now)"
  [ "$sum" = "$want" ] || { echo "skiff cat differs" >&2; exit 1; }
  c_t+=("$(ms "$t0" "$t1")")
done
c="$(printf '%s\n' "${c_t[@]}" | median)"
echo "(skiff cat, no FUSE, launch included: median ${c} ms = $(rate "$c")   (all: ${c_t[*]}))"

if [ "${SKIFF_BENCH_NO_GUESTMOUNT:-0}" = 1 ] || ! command -v guestmount > /dev/null; then
  echo
  echo "guestmount: skipped (install: SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
  exit 0
fi
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
g_runs=$(( runs < 3 ? runs : 3 ))
echo
echo "== guestmount ($g_runs runs; a first, uncounted run builds its appliance)"
guestmount --format=raw -a "$img" -m /dev/sda --ro "$mp" && guestunmount "$mp"
m_t=(); c_t=(); f_t=()
for _ in $(seq "$g_runs"); do
  # guestunmount returns before guestmount's appliance is gone: wait for the pid.
  measure "guestmount --format=raw -a \"$img\" -m /dev/sda --ro --pid-file \"$work/g.pid\" \"$mp\"" \
          "guestunmount \"$mp\"; while [ -f \"$work/g.pid\" ] && kill -0 \$(cat \"$work/g.pid\") 2>/dev/null; do sleep 0.1; done"
done
report
