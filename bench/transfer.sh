#!/usr/bin/env bash
# Trees in and out, skiff beside libguestfs (virt-tar-out, virt-copy-in) on the same
# image in the same run:
#   1. tar-out /usr of a Debian root        (skiff tar-out vs virt-tar-out)
#   2. copy-in of a 3,000-file tree          (skiff --rw copy-in vs guestfish copy-in,
#                                             virt-copy-in's engine: virt-copy-in itself
#                                             needs an OS on the disk; e2fsck -fn clean)
# Each result is checked (the archive's file list against GNU tar's of the source; the
# copied-in tree with debugfs rdump + diff -r) before its time counts.
#   bench/transfer.sh [RUNS]         (default 3; libguestfs: 1 run after a warm-up)
#   SKIFF_BENCH_TREE=DIR             the root (default: bench/tree.sh's cached
#                                    debootstrap, else a few thousand files of /usr)
#   SKIFF_BENCH_PROFILE=debug        use the debug build (default release)
#   SKIFF_BENCH_NO_GUESTFISH=1       skip libguestfs
# libguestfs runs with LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
# (TCG like skiff here); it is skipped with a note when virt-tar-out is missing.
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
profile="${SKIFF_BENCH_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release -q -p skiff-cli
else
  cargo build -q -p skiff-cli
fi
skiff="$(realpath "${CARGO_TARGET_DIR:-target}/$profile/skiff")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tree="${SKIFF_BENCH_TREE:-}"
if [ -z "$tree" ]; then
  if [ -d /var/cache/skiff-bench/bookworm-minbase ]; then
    tree=/var/cache/skiff-bench/bookworm-minbase
  else
    tree="$work/usr-tree"
    mkdir -p "$tree/usr"
    (cd / && find usr/bin usr/lib/x86_64-linux-gnu usr/share/doc -maxdepth 3 \
        \( -type f -size -2M -o -type l \) 2>/dev/null | awk "NR <= 6000" \
        | tar -cf - --no-recursion -T - 2>/dev/null) | tar -xf - -C "$tree"
  fi
fi
tree_kib="$(du -sk "$tree" | cut -f1)"
img_mib=$(( tree_kib / 1024 + 256 ))
img="$work/disk.img"
mkfs.ext4 -q -F -b 4096 -E root_owner=0:0 -d "$tree" "$img" "${img_mib}M"
usr_paths="$(cd "$tree/usr" && find . | wc -l)"
usr_kib="$(du -sk "$tree/usr" | cut -f1)"

# The copy-in tree: 3,000 files (small text and binaries of the root) in 100 dirs.
src="$work/in/tree3k"
mkdir -p "$src"
(cd "$tree/usr" && find . -type f -size -64k | awk "NR <= 3000") > "$work/list"
n=0
while read -r f; do
  d="$src/d$(( n / 30 ))"; mkdir -p "$d"
  cp -p "$tree/usr/$f" "$d/f$n"; n=$((n + 1))
done < "$work/list"
in_files="$(find "$src" -type f | wc -l)"
in_kib="$(du -sk "$src" | cut -f1)"
empty="$work/empty"; mkdir -p "$empty"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b-a}'; }
check_tar() { # archive: its names are the source's
  diff <(tar -tf "$1" | sed -e 's,^\./,,' -e 's,/$,,' | grep -v '^\.\?$' | sort) \
       <(cd "$tree/usr" && find . -mindepth 1 | sed 's,^\./,,' | sort) > /dev/null \
    || { echo "tar-out: the archive's names differ from the source" >&2; exit 1; }
}
check_in() { # image: /tree3k is the source, e2fsck clean
  e2fsck -fn "$1" > /dev/null 2>&1 || { echo "copy-in: e2fsck -fn not clean" >&2; exit 1; }
  rm -rf "$work/dump"; mkdir -p "$work/dump"
  debugfs -R "rdump /tree3k $work/dump" "$1" > /dev/null 2>&1
  diff -r "$src" "$work/dump/tree3k" > /dev/null || { echo "copy-in: tree differs" >&2; exit 1; }
}

echo "image: ${img_mib} MiB ext4 of $tree; /usr: $usr_paths paths, $usr_kib KiB"
echo "copy-in tree: $in_files files in $(( (in_files + 29) / 30 )) dirs, $in_kib KiB; skiff: $profile build; accel: ${SKIFF_ACCEL:-auto}"
echo
echo "== skiff ($runs runs each)"
to=(); ci=()
for _ in $(seq "$runs"); do
  rm -f "$work/usr.tar"
  t0="$(now)"; "$skiff" tar-out -a "$img,format=raw" -m /dev/sda /usr "$work/usr.tar"; t1="$(now)"
  check_tar "$work/usr.tar"; to+=("$(secs "$t0" "$t1")")
  mkfs.ext4 -q -F -b 4096 -d "$empty" "$work/in.img" 256M
  t0="$(now)"; "$skiff" --rw copy-in -a "$work/in.img,format=raw" -m /dev/sda "$src" /; t1="$(now)"
  check_in "$work/in.img"; ci+=("$(secs "$t0" "$t1")")
done
s_to="$(printf '%s\n' "${to[@]}" | median)"; s_ci="$(printf '%s\n' "${ci[@]}" | median)"
echo "tar-out /usr:        median ${s_to} s   (all: ${to[*]}; $(stat -c %s "$work/usr.tar") bytes)"
echo "copy-in 3,000 files: median ${s_ci} s   (all: ${ci[*]})"

if [ "${SKIFF_BENCH_NO_GUESTFISH:-0}" = 1 ] || ! command -v virt-tar-out > /dev/null; then
  echo
  echo "libguestfs: skipped (virt-tar-out/virt-copy-in missing; SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
  exit 0
fi
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
echo
echo "== libguestfs (1 run each after an uncounted warm-up)"
virt-tar-out -a "$img" /etc/hostname /dev/null > /dev/null 2>&1 || true
rm -f "$work/usr.tar"
t0="$(now)"; virt-tar-out -a "$img" /usr "$work/usr.tar"; t1="$(now)"
check_tar "$work/usr.tar"; g_to="$(secs "$t0" "$t1")"
mkfs.ext4 -q -F -b 4096 -d "$empty" "$work/in.img" 256M
# virt-copy-in wants an operating system on the disk (it inspects, then mounts); the
# empty filesystem has none, so its own engine is driven directly: guestfish copy-in.
t0="$(now)"; guestfish --rw -a "$work/in.img" -m /dev/sda copy-in "$src" /; t1="$(now)"
check_in "$work/in.img"; g_ci="$(secs "$t0" "$t1")"
echo "virt-tar-out /usr:        ${g_to} s"
echo "guestfish copy-in 3,000 files (virt-copy-in's engine): ${g_ci} s"
echo
awk -v a="$g_to" -v b="$s_to" 'BEGIN {printf "tar-out: skiff %.1fx faster\n", a/b}'
awk -v a="$g_ci" -v b="$s_ci" 'BEGIN {printf "copy-in: skiff %.1fx faster\n", a/b}'
