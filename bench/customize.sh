#!/usr/bin/env bash
# customize and sysprep: `skiff customize --hostname --ssh-inject --root-password` and
# `skiff sysprep` vs `virt-customize` / `virt-sysprep` with the same operations on copies
# of the same image, side by side in one run; then the rate of `skiff each -j P` over N
# images (customize, then sysprep). Image: a small ext4 Debian-like guest built with
# mkfs.ext4 -d (users, shadow, machine-id, SSH host keys, logs).
#   bench/customize.sh [N] [P]     (defaults: 50 images, P = 2)
# SKIFF_BENCH_PROFILE=debug uses the debug build (default: release).
# SKIFF_BENCH_NO_VIRT=1 skips virt-customize/virt-sysprep (20-60 s each under TCG).
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-50}"
P="${2:-2}"
profile="${SKIFF_BENCH_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release -q -p skiff-cli
else
  cargo build -q -p skiff-cli
fi
skiff="${CARGO_TARGET_DIR:-target}/$profile/skiff"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

r="$work/root"
mkdir -p "$r/etc/ssh" "$r/root" "$r/home/alice" "$r/var/log" "$r/tmp" "$r/usr/bin" \
  "$r/lib/systemd"
printf 'ID=debian\nVERSION_ID="12"\n' > "$r/etc/os-release"
echo 12.5 > "$r/etc/debian_version"
echo old > "$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 old\n' > "$r/etc/hosts"
printf '/dev/sda / ext4 defaults 0 1\n' > "$r/etc/fstab"
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' > "$r/etc/passwd"
printf 'root:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n' > "$r/etc/shadow"
chmod 640 "$r/etc/shadow"
echo 0123456789abcdef0123456789abcdef > "$r/etc/machine-id"
echo key > "$r/etc/ssh/ssh_host_ed25519_key"
echo log > "$r/var/log/syslog"
echo x > "$r/tmp/junk"
cp /bin/dash "$r/usr/bin/sh"
ln -s usr/bin "$r/bin"
mkfs.ext4 -q -F -d "$r" "$work/base.img" 64M
key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKeyBenchKeyBenchKeyBenchKey bench@host"
ops=(--hostname web1 --ssh-inject "root:string:$key" --root-password password:bench)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f s", b - a }'; }
rate() { awk -v n="$N" -v a="$1" -v b="$2" 'BEGIN { t = b - a; printf "%.2f s, %.2f images/s", t, n / t }'; }

echo "one image ($profile skiff):"
cp --sparse=always "$work/base.img" "$work/one.img"
t0=$(now); "$skiff" customize -a "$work/one.img" "${ops[@]}" > /dev/null; t1=$(now)
echo "  skiff customize --hostname --ssh-inject --root-password: $(secs "$t0" "$t1")"
t0=$(now); "$skiff" sysprep -a "$work/one.img" > /dev/null; t1=$(now)
echo "  skiff sysprep (defaults):                               $(secs "$t0" "$t1")"
if [ "${SKIFF_BENCH_NO_VIRT:-0}" != 1 ] && command -v virt-customize > /dev/null; then
  export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
  cp --sparse=always "$work/base.img" "$work/virt.img"
  t0=$(now); virt-customize -q --format raw -a "$work/virt.img" "${ops[@]}" > /dev/null; t1=$(now)
  echo "  virt-customize, same operations:                        $(secs "$t0" "$t1")"
  t0=$(now); virt-sysprep -q --format raw -a "$work/virt.img" > /dev/null; t1=$(now)
  echo "  virt-sysprep (defaults):                                $(secs "$t0" "$t1")"
else
  echo "  virt-customize/virt-sysprep: skipped"
fi

imgs=()
for i in $(seq 1 "$N"); do
  cp --sparse=always "$work/base.img" "$work/g$i.img"
  imgs+=("$work/g$i.img")
done
echo "$N images, skiff each -j $P:"
t0=$(now)
"$skiff" each -j "$P" "${imgs[@]}" -- customize "${ops[@]}" > /dev/null
t1=$(now)
echo "  customize: $(rate "$t0" "$t1")"
t0=$(now)
"$skiff" each -j "$P" "${imgs[@]}" -- sysprep > /dev/null
t1=$(now)
echo "  sysprep:   $(rate "$t0" "$t1")"
