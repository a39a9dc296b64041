#!/usr/bin/env bash
# Whole-tree benchmark on a Debian-like root: metadata walks and bulk data, skiff beside
# guestfish (when installed) on the same image in the same run.
#   1. launch + mount + cat a small file     (the launch floor, subtracted below)
#   2. `find /` of the whole tree             (launch included)
#   3. `du /` and `checksum sha256` of 64 MiB (launch included)
#   4. copy one 64 MiB file out (`download`)  (MB/s after launch)
#   5. upload one 64 MiB file (`--rw upload`) (MB/s after launch; e2fsck -fn must stay clean)
# Runs are interleaved (cat, find, du, checksum, download, upload, cat, ...) so a noisy
# neighbour hurts every figure alike; medians are printed.
#   bench/tree.sh [RUNS]            (default 5)
#   SKIFF_BENCH_TREE=DIR            use DIR as the tree (default: a cached
#                                   `debootstrap --variant=minbase bookworm`, made on
#                                   first use when debootstrap is installed and we are
#                                   root; else a few thousand files of the host's /usr)
#   SKIFF_BENCH_CACHE=DIR           where the debootstrapped tree is cached
#   SKIFF_BENCH_NO_GUESTFISH=1      skip guestfish
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cargo build --release -q -p host-launcher --bin skiff
skiff="$(realpath "${CARGO_TARGET_DIR:-target}/release/skiff")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ---- the tree ----
tree="${SKIFF_BENCH_TREE:-}"
if [ -z "$tree" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    cache="${SKIFF_BENCH_CACHE:-/var/cache/skiff-bench}"
  else
    cache="${SKIFF_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skiff-bench}"
  fi
  tree="$cache/bookworm-minbase"
  if [ ! -d "$tree" ] && [ "$(id -u)" -eq 0 ] && command -v debootstrap > /dev/null; then
    echo "building $tree with debootstrap (once; a few minutes)" >&2
    mkdir -p "$cache"
    rm -rf "$tree.tmp"
    debootstrap --variant=minbase bookworm "$tree.tmp" http://deb.debian.org/debian > "$cache/debootstrap.log" 2>&1
    mv "$tree.tmp" "$tree"
  fi
  if [ ! -d "$tree" ]; then
    # No debootstrap: a few thousand files of the host's /usr (same shape: deep
    # directories, many small files, symlinks).
    tree="$work/usr-tree"
    mkdir -p "$tree"
    (cd / && find usr/bin usr/lib/x86_64-linux-gnu usr/share/doc usr/share/man/man1 -maxdepth 3 \
        \( -type f -size -2M -o -type l \) 2>/dev/null | head -n 6000 \
        | tar -cf - --no-recursion -T - 2>/dev/null) | tar -xf - -C "$tree"
  fi
fi
paths="$(cd "$tree" && find . -mindepth 1 | wc -l)"
tree_kib="$(du -sk "$tree" | cut -f1)"

# ---- the image: the tree, /big.bin (64 MiB) and room for a 64 MiB upload ----
head -c $((64 << 20)) /dev/urandom > "$work/big.bin"
head -c $((64 << 20)) /dev/urandom > "$work/up.bin"
want_big="$(sha256sum < "$work/big.bin" | cut -d' ' -f1)"
want_up="$(sha256sum < "$work/up.bin" | cut -d' ' -f1)"
mkdir -p "$work/root"
cp -a "$tree/." "$work/root/"
cp "$work/big.bin" "$work/root/big.bin"
echo "bench-guest" > "$work/root/etc/hostname" 2>/dev/null || { mkdir -p "$work/root/etc"; echo "bench-guest" > "$work/root/etc/hostname"; }
img_mib=$(( tree_kib / 1024 + 64 + 64 + 256 ))
img="$work/disk.img"
mkfs.ext4 -q -F -b 4096 -E root_owner=0:0 -d "$work/root" "$img" "${img_mib}M"
rm -rf "$work/root"
rw="$work/rw.img"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b-a)*1000}'; }
rate() { awk -v ms="$1" -v l="$2" 'BEGIN {d=(ms-l)/1000; if (d <= 0) print "n/a"; else printf "%.0f MB/s", 64*1.048576/d}'; }

echo "tree: $tree ($paths paths, $tree_kib KiB); image: ${img_mib} MiB ext4 (4 KiB blocks) + /big.bin (64 MiB)"
echo "accel: ${SKIFF_ACCEL:-auto}; $runs interleaved runs"
echo
echo "== skiff"
a=(-a "$img,format=raw")
"$skiff" cat "${a[@]}" /etc/hostname > /dev/null   # warm the page cache
find_want="$(cd "$tree" && find . -mindepth 1 | wc -l)"
cat_t=(); find_t=(); du_t=(); sum_t=(); down_t=(); up_t=()
for _ in $(seq "$runs"); do
  t0="$(now)"; out="$("$skiff" cat "${a[@]}" /etc/hostname)"; t1="$(now)"
  [ "$out" = "bench-guest" ] || { echo "skiff cat: wrong output: $out" >&2; exit 1; }
  cat_t+=("$(ms "$t0" "$t1")")

  t0="$(now)"; n="$("$skiff" find "${a[@]}" / | wc -l)"; t1="$(now)"
  # The image adds /big.bin and lost+found (and /etc/hostname when the tree had none).
  [ "$n" -ge "$find_want" ] || { echo "skiff find: $n paths, expected >= $find_want" >&2; exit 1; }
  find_t+=("$(ms "$t0" "$t1")")

  if "$skiff" --help 2>/dev/null | grep -q '^ *du '; then
    t0="$(now)"; "$skiff" du "${a[@]}" / > /dev/null; t1="$(now)"
    du_t+=("$(ms "$t0" "$t1")")
    t0="$(now)"; got="$("$skiff" checksum "${a[@]}" sha256 /big.bin)"; t1="$(now)"
    [ "$got" = "$want_big" ] || { echo "skiff checksum: $got, expected $want_big" >&2; exit 1; }
    sum_t+=("$(ms "$t0" "$t1")")
  fi

  rm -f "$work/out.bin"
  t0="$(now)"; "$skiff" download "${a[@]}" /big.bin "$work/out.bin"; t1="$(now)"
  [ "$(sha256sum < "$work/out.bin" | cut -d' ' -f1)" = "$want_big" ] || { echo "skiff download differs" >&2; exit 1; }
  down_t+=("$(ms "$t0" "$t1")")

  cp --sparse=always "$img" "$rw"
  t0="$(now)"; "$skiff" --rw upload -a "$rw,format=raw" "$work/up.bin" /up.bin; t1="$(now)"
  up_t+=("$(ms "$t0" "$t1")")
  e2fsck -fn "$rw" > "$work/fsck.log" 2>&1 || { echo "e2fsck -fn after upload:" >&2; cat "$work/fsck.log" >&2; exit 1; }
  got="$(debugfs -R "cat /up.bin" "$rw" 2>/dev/null | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$want_up" ] || { echo "skiff upload: debugfs reads back different bytes" >&2; exit 1; }
done
c="$(printf '%s\n' "${cat_t[@]}" | median)"
f="$(printf '%s\n' "${find_t[@]}" | median)"
d="$(printf '%s\n' "${down_t[@]}" | median)"
u="$(printf '%s\n' "${up_t[@]}" | median)"
echo "launch + mount + cat small file: median ${c} ms   (all: ${cat_t[*]})"
echo "find / ($paths paths):        median ${f} ms   (all: ${find_t[*]})"
if [ ${#du_t[@]} -gt 0 ]; then
  du_m="$(printf '%s\n' "${du_t[@]}" | median)"
  sum_m="$(printf '%s\n' "${sum_t[@]}" | median)"
  echo "du /:                            median ${du_m} ms   (all: ${du_t[*]})"
  echo "checksum sha256 (64 MiB):        median ${sum_m} ms = $(rate "$sum_m" "$c") after launch   (all: ${sum_t[*]})"
fi
echo "copy 64 MiB out (download):      median ${d} ms = $(rate "$d" "$c") after launch   (all: ${down_t[*]})"
echo "upload 64 MiB (--rw upload):     median ${u} ms = $(rate "$u" "$c") after launch   (all: ${up_t[*]}); e2fsck -fn clean"

if [ "${SKIFF_BENCH_NO_GUESTFISH:-0}" = 1 ] || ! command -v guestfish > /dev/null; then
  echo
  echo "guestfish: skipped (install: SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
  exit 0
fi
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
echo
echo "== guestfish (3 runs each; a first, uncounted run builds its appliance)"
guestfish --ro -a "$img" -m /dev/sda cat /etc/hostname > /dev/null
g_run=(); g_find=(); g_down=(); g_up=()
for _ in 1 2 3; do
  t0="$(now)"; guestfish --ro -a "$img" run > /dev/null; t1="$(now)"
  g_run+=("$(ms "$t0" "$t1")")
  t0="$(now)"; guestfish --ro -a "$img" -m /dev/sda find / > /dev/null; t1="$(now)"
  g_find+=("$(ms "$t0" "$t1")")
  rm -f "$work/gout.bin"
  t0="$(now)"; guestfish --ro -a "$img" -m /dev/sda download /big.bin "$work/gout.bin"; t1="$(now)"
  g_down+=("$(ms "$t0" "$t1")")
  cp --sparse=always "$img" "$rw"
  t0="$(now)"; guestfish -a "$rw" -m /dev/sda upload "$work/up.bin" /up.bin; t1="$(now)"
  g_up+=("$(ms "$t0" "$t1")")
done
gl="$(printf '%s\n' "${g_run[@]}" | median)"
gf="$(printf '%s\n' "${g_find[@]}" | median)"
gd="$(printf '%s\n' "${g_down[@]}" | median)"
gu="$(printf '%s\n' "${g_up[@]}" | median)"
echo "launch only (run):               median ${gl} ms"
echo "find /:                          median ${gf} ms"
echo "copy 64 MiB out (download):      median ${gd} ms = $(rate "$gd" "$gl") after launch"
echo "upload 64 MiB:                   median ${gu} ms = $(rate "$gu" "$gl") after launch"
