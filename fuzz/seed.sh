#!/usr/bin/env bash
# Writes small seed images for the fuzz targets into corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
PATH="/usr/sbin:/sbin:$PATH"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir -p "$t/src/d" corpus/filesystems corpus/partitions corpus/btrfs
echo hello > "$t/src/a.txt"; echo world > "$t/src/d/b.txt"; ln -s a.txt "$t/src/l"
mkfs.ext4 -q -F -b 1024 -N 32 -O ^has_journal -d "$t/src" "$t/ext4.img" 256 >/dev/null 2>&1
mkfs.vfat -C "$t/fat.img" 128 >/dev/null; mcopy -i "$t/fat.img" "$t/src/a.txt" ::/
truncate -s 1M "$t/mbr.img"; echo ',256K,83' | sfdisk -q "$t/mbr.img"
truncate -s 1M "$t/gpt.img"; sgdisk -n 1:34:+256K "$t/gpt.img" >/dev/null
# NTFS: 2 MiB, 512-byte clusters; files copied in with ntfscp (no FUSE needed).
truncate -s 2M "$t/ntfs.img"; mkntfs -F -Q -q -c 512 -L seed "$t/ntfs.img" 2>/dev/null
ntfscp -q "$t/ntfs.img" "$t/src/a.txt" /a.txt
truncate -s 256M "$t/btrfs.img"
mkfs.btrfs -q -f --shrink -m single -n 4096 --compress zstd --rootdir "$t/src" "$t/btrfs.img"
cp "$t/ext4.img" "$t/fat.img" "$t/ntfs.img" corpus/filesystems/
cp "$t/btrfs.img" corpus/btrfs/
cp "$t/mbr.img" "$t/gpt.img" "$t/fat.img" corpus/partitions/
# LUKS1 and LUKS2 headers (passphrase "fuzz", cheap KDFs within the target's limits),
# and a LUKS2 JSON area on its own.
mkdir -p corpus/luks
truncate -s 1100K "$t/luks1.img"
printf fuzz | cryptsetup luksFormat -q --batch-mode --key-file=- --type luks1 \
  --cipher aes-cbc-essiv:sha256 --key-size 256 --pbkdf-force-iterations 1000 \
  --align-payload 8 "$t/luks1.img"
truncate -s 320K "$t/luks2.img"
printf fuzz | cryptsetup luksFormat -q --batch-mode --key-file=- --type luks2 \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --luks2-metadata-size 16k \
  --luks2-keyslots-size 256k --offset 576 "$t/luks2.img" >/dev/null 2>&1
dd if="$t/luks2.img" of="$t/luks2.json" bs=4096 skip=1 count=3 status=none
cp "$t/luks1.img" "$t/luks2.img" "$t/luks2.json" corpus/luks/

# xfs: structures cut from v4 and v5 images (first byte: 0 = v4 geometry, 1 = v5).
if command -v mkfs.xfs >/dev/null; then
  mkdir -p corpus/xfs
  { printf 'skiff\n0 0\nd--755 0 0\nmany d--755 0 0\n'
    for i in $(seq 1 40); do echo "entry-$i ---644 0 0 $t/src/a.txt"; done
    printf '$\nlnk l--777 0 0 a.txt\n$\n'; } > "$t/proto"
  for v in 4 5; do
    img="$t/x$v.img"; opts=(); [ "$v" = 4 ] && opts=(-m crc=0 -i size=512)
    truncate -s 64M "$img"
    TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f "${opts[@]}" -p "$t/proto" "$img" 2>/dev/null
    byte() { xfs_db -r -c "convert $1 $2 byte" "$img" | sed 's/ .*//'; }
    seed() { { printf "\\x0$((v - 4))"; dd if="$img" bs=512 skip=$(($1 / 512)) count=$(($2 / 512)) 2>/dev/null; } > "corpus/xfs/v$v-$3"; }
    many=$(xfs_db -r -c 'ls /' "$img" | awk '$6 == "many" {print $2}')
    fsb=$(xfs_db -r -c "inode $many" -c bmap "$img" | awk '{print $5; exit}')
    seed 0 512 sb; seed 512 512 agf; seed 1024 512 agi
    root=$(xfs_db -r -c 'sb 0' -c 'p rootino' "$img" | awk '{print $3}')
    seed "$(byte inode "$root")" 512 root-inode; seed "$(byte inode "$many")" 512 dir-inode
    seed "$(byte fsb "$fsb")" 4096 dir-block
  done
  # xfs_write: whole 32 MiB images (v5 and v4) with the same tree.
  mkdir -p corpus/xfs_write
  for v in 4 5; do
    img="corpus/xfs_write/v$v.img"; opts=(); [ "$v" = 4 ] && opts=(-m crc=0)
    rm -f "$img"; truncate -s 32M "$img"
    TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -d agcount=2 "${opts[@]}" -p "$t/proto" "$img" 2>/dev/null
  done
fi
# Inspection parsers: the first byte picks the parser (see fuzz_targets/inspect.rs).
mkdir -p corpus/inspect
{ printf '\000'; head -c 65536 /var/lib/dpkg/status 2>/dev/null || true; } > corpus/inspect/dpkg
printf '\001P:musl\nV:1.2.5-r0\nA:x86_64\nT:libc\n\n' > corpus/inspect/apk
printf '\002%%NAME%%\nlinux\n\n%%VERSION%%\n1:6.9-1\n\n%%ARCH%%\nx86_64\n\n' > corpus/inspect/pacman
if command -v rpm >/dev/null && command -v rpmbuild >/dev/null; then
  printf 'Name: seed\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n%%description\nd\n%%files\n' > "$t/seed.spec"
  rpmbuild -bb --quiet --define "_topdir $t/top" "$t/seed.spec" >/dev/null 2>&1
  mkdir -p "$t/rpmdb" && rpm --initdb --dbpath "$t/rpmdb"
  rpm -i --justdb --nodeps --noscripts --dbpath "$t/rpmdb" "$t"/top/RPMS/noarch/*.rpm 2>/dev/null
  { printf '\004'; cat "$t/rpmdb/rpmdb.sqlite"; } > corpus/inspect/sqlite
fi
