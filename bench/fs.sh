#!/usr/bin/env bash
# Filesystem benchmark, skiff beside guestfish (libguestfs, LIBGUESTFS_BACKEND=direct) on
# the same ext4 image in the same run:
#   1. launch + mount + cat a small file   (skiff: median of RUNS; guestfish: 3 runs)
#   2. copy a 64 MiB file out to the host  (MB/s, launch included and excluded)
#   bench/fs.sh [RUNS]          (default 7)
#   SKIFF_BENCH_NO_GUESTFISH=1  skip guestfish
# guestfish comes from `SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh`. Its first run
# builds the libguestfs appliance (supermin) and can take minutes; that run is not
# counted. Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-7}"
cargo build --release -q -p skiff-cli
skiff="${CARGO_TARGET_DIR:-target}/release/skiff"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/etc"
echo "bench-guest" > "$work/src/etc/hostname"
head -c $((64 << 20)) /dev/urandom > "$work/src/big.bin"
img="$work/disk.img"
mkfs.ext4 -q -F -b 4096 -E root_owner=0:0 -d "$work/src" "$img" 128M
want="$(sha256sum < "$work/src/big.bin")"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b-a)*1000}'; }

echo "image: 128 MiB ext4 (4 KiB blocks), /etc/hostname + 64 MiB /big.bin; accel: ${SKIFF_ACCEL:-auto}"
echo
echo "== skiff ($runs runs each)"
"$skiff" cat -a "$img,format=raw" /etc/hostname > /dev/null   # warm the page cache
cat_t=(); cp_t=()
for _ in $(seq "$runs"); do
  t0="$(now)"; out="$("$skiff" cat -a "$img,format=raw" /etc/hostname)"; t1="$(now)"
  [ "$out" = "bench-guest" ] || { echo "skiff cat: wrong output: $out" >&2; exit 1; }
  cat_t+=("$(ms "$t0" "$t1")")
  rm -f "$work/out.bin"
  t0="$(now)"; "$skiff" download -a "$img,format=raw" /big.bin "$work/out.bin"; t1="$(now)"
  [ "$(sha256sum < "$work/out.bin")" = "$want" ] || { echo "skiff download differs" >&2; exit 1; }
  cp_t+=("$(ms "$t0" "$t1")")
done
s_cat="$(printf '%s\n' "${cat_t[@]}" | median)"
s_cp="$(printf '%s\n' "${cp_t[@]}" | median)"
s_rate="$(awk -v ms="$s_cp" -v c="$s_cat" 'BEGIN {printf "%.0f MB/s (%.0f MB/s after launch)", 64*1.048576/(ms/1000), 64*1.048576/((ms-c)/1000)}')"
echo "launch + mount + cat small file: median ${s_cat} ms   (all: ${cat_t[*]})"
echo "copy 64 MiB out (launch incl.):  median ${s_cp} ms = ${s_rate}"

if [ "${SKIFF_BENCH_NO_GUESTFISH:-0}" = 1 ] || ! command -v guestfish > /dev/null; then
  echo
  echo "guestfish: skipped (install: SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
  exit 0
fi
export LIBGUESTFS_BACKEND=direct
# /dev/kvm may exist without vmx/svm (a KVM guest then dies): TCG, like skiff here.
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
echo
echo "== guestfish (3 runs each; a first, uncounted run builds its appliance and may take minutes)"
guestfish --ro -a "$img" -m /dev/sda cat /etc/hostname > /dev/null
g_cat=(); g_cp=(); g_launch=()
for _ in 1 2 3; do
  t0="$(now)"; guestfish --ro -a "$img" run > /dev/null; t1="$(now)"
  g_launch+=("$(ms "$t0" "$t1")")
  t0="$(now)"; out="$(guestfish --ro -a "$img" -m /dev/sda cat /etc/hostname)"; t1="$(now)"
  [ "$out" = "bench-guest" ] || { echo "guestfish cat: wrong output: $out" >&2; exit 1; }
  g_cat+=("$(ms "$t0" "$t1")")
  rm -f "$work/gout.bin"
  t0="$(now)"; guestfish --ro -a "$img" -m /dev/sda download /big.bin "$work/gout.bin"; t1="$(now)"
  [ "$(sha256sum < "$work/gout.bin")" = "$want" ] || { echo "guestfish download differs" >&2; exit 1; }
  g_cp+=("$(ms "$t0" "$t1")")
done
gl="$(printf '%s\n' "${g_launch[@]}" | median)"
gc="$(printf '%s\n' "${g_cat[@]}" | median)"
gp="$(printf '%s\n' "${g_cp[@]}" | median)"
g_rate="$(awk -v ms="$gp" -v l="$gl" 'BEGIN {printf "%.0f MB/s (%.0f MB/s after launch)", 64*1.048576/(ms/1000), 64*1.048576/((ms-l)/1000)}')"
echo "launch only (run):               median ${gl} ms   (all: ${g_launch[*]})"
echo "launch + mount + cat small file: median ${gc} ms   (all: ${g_cat[*]})"
echo "copy 64 MiB out (launch incl.):  median ${gp} ms = ${g_rate}"
