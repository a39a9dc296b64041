#!/usr/bin/env bash
# skiff demo: builds skiff, creates a small guest disk the way an installer would (GPT,
# FAT32 ESP + ext4 root with a Debian-like /etc), converts it to qcow2, and looks inside
# it — no root needed past the dependency install, nothing mounted on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
echo "== building skiff (release)" >&2
cargo build --release -q -p skiff-cli
skiff="${CARGO_TARGET_DIR:-target}/release/skiff"
PATH="/usr/sbin:/sbin:$PATH"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
root_uuid=3f9c1e52-6a41-4d2e-9b0f-2c7d5e8a1b34
esp_id=1A2B3C4D

mkdir -p "$dir/root/etc" "$dir/root/bin" "$dir/root/boot/efi" "$dir/root/var/lib/dpkg" "$dir/root/home/alice"
cat > "$dir/root/etc/os-release" <<OS
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
OS
echo demo-guest > "$dir/root/etc/hostname"
cat > "$dir/root/etc/fstab" <<FSTAB
UUID=$root_uuid  /          ext4  errors=remount-ro  0 1
UUID=1A2B-3C4D   /boot/efi  vfat  umask=0077         0 1
FSTAB
cp "$(readlink -f /bin/sh)" "$dir/root/bin/sh"
: > "$dir/root/var/lib/dpkg/status"
echo "hello from inside the guest" > "$dir/root/home/alice/notes.txt"
mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$dir/root" "$dir/root.img" 64M >/dev/null 2>&1

mkfs.vfat -F 32 -n ESP -i "$esp_id" -C "$dir/esp.img" 40960 >/dev/null
mmd -i "$dir/esp.img" ::/EFI ::/EFI/BOOT
echo "not really a bootloader" > "$dir/BOOTX64.EFI"
mcopy -i "$dir/esp.img" "$dir/BOOTX64.EFI" ::/EFI/BOOT/

truncate -s 110M "$dir/disk.raw"
sgdisk -n 1:2048:+40M -t 1:ef00 -c 1:EFI -n 2:0:+64M -t 2:8300 -c 2:root "$dir/disk.raw" >/dev/null
esp_start=$(sgdisk -i 1 "$dir/disk.raw" | awk '/First sector/ {print $3}')
root_start=$(sgdisk -i 2 "$dir/disk.raw" | awk '/First sector/ {print $3}')
dd if="$dir/esp.img" of="$dir/disk.raw" bs=512 seek="$esp_start" conv=notrunc status=none
dd if="$dir/root.img" of="$dir/disk.raw" bs=512 seek="$root_start" conv=notrunc status=none
qemu-img convert -O qcow2 "$dir/disk.raw" "$dir/guest.qcow2"
img="$dir/guest.qcow2"

run() { echo; echo "\$ skiff $*" | sed "s|$dir/||g"; "$skiff" "$@"; }
run devices -a "$img"
run filesystems -a "$img"
run inspect -a "$img"
run ll -a "$img" /etc
run cat -a "$img" /etc/os-release
run ls -a "$img" /boot/efi/EFI/BOOT
run df -h "$img"
