#!/usr/bin/env bash
# df over many images: `skiff df -j P` vs `virt-df` given the same parallelism (P
# virt-df processes, one image each at a time, LIBGUESTFS_BACKEND=direct), on the same
# images, side by side in one run. Images: N copies of a small MBR disk (ext4 + FAT16),
# built with mkfs.ext4 -d / mkfs.vfat + mcopy / sfdisk / dd.
#   bench/df.sh [N] [P]     (defaults: 50 images, P = number of cores)
# Needs libguestfs-tools for the comparison: SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh
# SKIFF_BENCH_NO_VIRTDF=1 skips virt-df (it takes ~15 s per image under TCG).
# SKIFF_BENCH_DF_FLAGS="--shared" (or "--pool") passes flags to skiff df.
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-50}"
P="${2:-$(nproc)}"
cargo build --release -q -p skiff-cli
skiff="${CARGO_TARGET_DIR:-target}/release/skiff"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/root/etc"
echo bench > "$work/root/etc/hostname"
mkfs.ext4 -q -F -d "$work/root" "$work/root.ext4" 8M
mkfs.vfat -C -F 16 "$work/boot.vfat" 16384 >/dev/null
echo hi | mcopy -i "$work/boot.vfat" - ::/hello.txt
truncate -s 28M "$work/base.img"
printf 'label: dos\nstart=2048, size=32768, type=6\nstart=34816, size=16384, type=83\n' |
  sfdisk -q "$work/base.img"
dd if="$work/boot.vfat" of="$work/base.img" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$work/base.img" bs=512 seek=34816 conv=notrunc,sparse status=none
imgs=()
for i in $(seq 1 "$N"); do
  cp --sparse=always "$work/base.img" "$work/g$i.img"
  imgs+=("$work/g$i.img")
done

now() { date +%s.%N; }
rate() { awk -v n="$N" -v a="$1" -v b="$2" 'BEGIN { t = b - a; printf "%.2f s, %.1f images/s", t, n / t }'; }

echo "df over $N images (2 filesystems each), parallelism $P"
t0=$(now)
"$skiff" df ${SKIFF_BENCH_DF_FLAGS:-} -j "$P" "${imgs[@]}" > "$work/skiff.out"
t1=$(now)
echo "skiff df -j $P:        $(rate "$t0" "$t1")   ($(($(wc -l < "$work/skiff.out") - 1)) filesystems)"

if [ "${SKIFF_BENCH_NO_VIRTDF:-0}" != 1 ] && command -v virt-df > /dev/null; then
  # /dev/kvm may exist on a CPU without vmx/svm (KVM then aborts): TCG like skiff.
  export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
  t0=$(now)
  printf '%s\n' "${imgs[@]}" |
    xargs -P "$P" -n 1 sh -c 'virt-df --format=raw -a "$0" | tail -n +2' > "$work/virt.out"
  t1=$(now)
  echo "virt-df ($P processes): $(rate "$t0" "$t1")   ($(wc -l < "$work/virt.out") filesystems)"
else
  echo "virt-df: not installed (SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
fi
