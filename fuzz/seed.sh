#!/usr/bin/env bash
# Writes small seed images for the fuzz targets into corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
PATH="/usr/sbin:/sbin:$PATH"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir -p "$t/src/d" corpus/filesystems corpus/partitions
echo hello > "$t/src/a.txt"; echo world > "$t/src/d/b.txt"; ln -s a.txt "$t/src/l"
mkfs.ext4 -q -F -b 1024 -N 32 -O ^has_journal -d "$t/src" "$t/ext4.img" 256 >/dev/null 2>&1
mkfs.vfat -C "$t/fat.img" 128 >/dev/null; mcopy -i "$t/fat.img" "$t/src/a.txt" ::/
truncate -s 1M "$t/mbr.img"; echo ',256K,83' | sfdisk -q "$t/mbr.img"
truncate -s 1M "$t/gpt.img"; sgdisk -n 1:34:+256K "$t/gpt.img" >/dev/null
# NTFS: 2 MiB, 512-byte clusters; files copied in with ntfscp (no FUSE needed).
truncate -s 2M "$t/ntfs.img"; mkntfs -F -Q -q -c 512 -L seed "$t/ntfs.img" 2>/dev/null
ntfscp -q "$t/ntfs.img" "$t/src/a.txt" /a.txt
cp "$t/ext4.img" "$t/fat.img" "$t/ntfs.img" corpus/filesystems/
cp "$t/mbr.img" "$t/gpt.img" "$t/fat.img" corpus/partitions/
