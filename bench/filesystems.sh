#!/usr/bin/env bash
# Filesystems benchmark: XFS, btrfs and NTFS images made by the real tools (a few
# thousand small files and a 64 MiB file), skiff beside guestfish (libguestfs,
# LIBGUESTFS_BACKEND=direct, TCG) on the same images in the same run:
#   1. launch + mount + cat a small file
#   2. find / (every path) over ~3000 files
#   3. copy the 64 MiB file out to the host (checked by sha256)
#   bench/filesystems.sh [RUNS]   (default 3)
#   SKIFF_BIN=path                the skiff binary (default: a release build)
#   SKIFF_BENCH_NO_GUESTFISH=1    skip guestfish
# NTFS is filled through an ntfs-3g FUSE mount. Prints figures; asserts outputs only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
if [ -z "${SKIFF_BIN:-}" ]; then
  cargo build --release -q -p skiff-cli
  SKIFF_BIN="${CARGO_TARGET_DIR:-target}/release/skiff"
fi
skiff="$SKIFF_BIN"
work="$(mktemp -d)"
mnt="$work/mnt"
cleanup() { mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"; rm -rf "$work"; }
trap cleanup EXIT

src="$work/src"
mkdir -p "$src/etc"
echo "bench-guest" > "$src/etc/hostname"
for d in $(seq 1 30); do
  mkdir -p "$src/tree/d$d"
  for f in $(seq 1 100); do echo "$d/$f" > "$src/tree/d$d/f$f"; done
done
head -c $((64 << 20)) /dev/urandom > "$src/big.bin"
want="$(sha256sum < "$src/big.bin" | cut -d' ' -f1)"
nfiles="$(find "$src" | wc -l)"

truncate -s 400M "$work/xfs.img"
mkdir -p "$mnt"
# XFS from the tree with a mkfs.xfs protofile (no kernel mount needed).
proto="$work/proto"
{
  echo "bench"; echo "0 0"; echo "d--755 0 0"
  (cd "$src" && find . -mindepth 1 | LC_ALL=C sort | awk -F/ -v root="$src" '
    { depth = NF - 1; while (open > 0 && depth <= stack[open]) { print "$"; open-- }
      name = $NF; path = root substr($0, 2)
      cmd = "test -d \"" path "\""; isdir = (system(cmd) == 0)
      if (isdir) { print name " d--755 0 0"; stack[++open] = depth }
      else { print name " ---644 0 0 " path } }
    END { while (open-- > 0) print "$" }')
  echo "$"
} > "$proto"
mkfs.xfs -q -f -p "$proto" "$work/xfs.img"
truncate -s 256M "$work/btrfs.img"; mkfs.btrfs -q -f --rootdir "$src" "$work/btrfs.img"
truncate -s 256M "$work/ntfs.img"; mkntfs -q -F -Q "$work/ntfs.img" 2> /dev/null
ntfs-3g "$work/ntfs.img" "$mnt"; cp -r "$src/." "$mnt/"; umount "$mnt"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", (b-a)*1000}'; }
row() { printf '%-8s %-34s median %7s ms   (all: %s)\n' "$1" "$2" "$(printf '%s\n' "${@:3}" | median)" "${*:3}"; }

echo "images: $nfiles paths (3000 small files, 64 MiB /big.bin); $runs runs; accel: ${SKIFF_ACCEL:-auto}"
for fs in xfs btrfs ntfs; do
  img="$work/$fs.img"
  c=(); f=(); d=()
  "$skiff" cat -a "$img" /etc/hostname > /dev/null
  for _ in $(seq "$runs"); do
    t0="$(now)"; o="$("$skiff" cat -a "$img" /etc/hostname)"; t1="$(now)"
    [ "$o" = bench-guest ] || { echo "skiff $fs cat: $o" >&2; exit 1; }
    c+=("$(ms "$t0" "$t1")")
    t0="$(now)"; n="$("$skiff" find -a "$img" / | wc -l)"; t1="$(now)"
    f+=("$(ms "$t0" "$t1")")
    rm -f "$work/out"
    t0="$(now)"; "$skiff" download -a "$img" /big.bin "$work/out"; t1="$(now)"
    [ "$(sha256sum < "$work/out" | cut -d' ' -f1)" = "$want" ] || { echo "skiff $fs download differs" >&2; exit 1; }
    d+=("$(ms "$t0" "$t1")")
  done
  echo
  row "$fs" "skiff launch + mount + cat" "${c[@]}"
  row "$fs" "skiff find / ($n paths)" "${f[@]}"
  row "$fs" "skiff copy 64 MiB out" "${d[@]}"
  if [ "${SKIFF_BENCH_NO_GUESTFISH:-0}" != 1 ] && command -v guestfish > /dev/null; then
    export LIBGUESTFS_BACKEND=direct
    export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
    c=(); f=(); d=()
    for _ in $(seq "$runs"); do
      t0="$(now)"; o="$(guestfish --ro -a "$img" -m /dev/sda cat /etc/hostname)"; t1="$(now)"
      [ "$o" = bench-guest ] || { echo "guestfish $fs cat: $o" >&2; exit 1; }
      c+=("$(ms "$t0" "$t1")")
      t0="$(now)"; n="$(guestfish --ro -a "$img" -m /dev/sda find / | wc -l)"; t1="$(now)"
      f+=("$(ms "$t0" "$t1")")
      rm -f "$work/gout"
      t0="$(now)"; guestfish --ro -a "$img" -m /dev/sda download /big.bin "$work/gout"; t1="$(now)"
      [ "$(sha256sum < "$work/gout" | cut -d' ' -f1)" = "$want" ] || { echo "guestfish $fs download differs" >&2; exit 1; }
      d+=("$(ms "$t0" "$t1")")
    done
    row "$fs" "guestfish launch + mount + cat" "${c[@]}"
    row "$fs" "guestfish find / ($n paths)" "${f[@]}"
    row "$fs" "guestfish copy 64 MiB out" "${d[@]}"
  fi
done
