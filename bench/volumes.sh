#!/usr/bin/env bash
# Volumes benchmark: launch -> first file read (cat /etc/hostname) from an ext4 on a plain
# partition, on an LVM logical volume, and on LUKS2 with cryptsetup's default Argon2id,
# skiff beside guestfish (libguestfs, LIBGUESTFS_BACKEND=direct, TCG) on the same images
# in the same run. The LUKS unlock (the key derivation, LuksOpen) is reported separately:
# `skiff filesystems` with the key minus without it, with enough --memory that no
# relaunch happens (the relaunch is measured on its own line).
#   bench/volumes.sh [RUNS]     (default 3; LUKS2 runs are slow under TCG)
#   SKIFF_BIN=path              the skiff binary (default: a release build)
#   SKIFF_BENCH_NO_GUESTFISH=1  skip guestfish
# Needs root (losetup, LVM without device-mapper). Prints figures; asserts outputs only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
if [ -z "${SKIFF_BIN:-}" ]; then
  cargo build --release -q -p skiff-cli
  SKIFF_BIN="${CARGO_TARGET_DIR:-target}/release/skiff"
fi
skiff="$SKIFF_BIN"
pass="bench passphrase"

work="$(mktemp -d)"
vg="skbench$$"
cleanup() {
  [ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null || true
  rm -f "/etc/lvm/backup/$vg" /etc/lvm/archive/"$vg"_* 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export LVM_SUPPRESS_FD_WARNINGS=1
noact=(--config global/activation=0)

# A minimal Linux root as both skiff's and libguestfs' inspection recognise it.
mkdir -p "$work/src/etc" "$work/src/usr/bin" "$work/src/bin"
echo "bench-guest" > "$work/src/etc/hostname"
echo "proc /proc proc defaults 0 0" > "$work/src/etc/fstab"
printf 'ID=debian\nVERSION_ID="12"\n' > "$work/src/etc/os-release"
mkfs.ext4 -q -F -E root_owner=0:0 -d "$work/src" "$work/fs.img" 32M

# 1. A plain partition.
plain="$work/plain.img"
truncate -s 40M "$plain"
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$plain"
dd if="$work/fs.img" of="$plain" bs=512 seek=2048 conv=notrunc,sparse status=none

# 2. An LV (linear, first extent of the PV on /dev/sda1).
lvm_img="$work/lvm.img"
truncate -s 48M "$lvm_img"
printf 'label: dos\nstart=2048, type=8e\n' | sfdisk -q "$lvm_img"
loopdev="$(losetup -f --show -o $((2048 * 512)) "$lvm_img")"
pvcreate "${noact[@]}" -q -ff -y "$loopdev" > /dev/null
vgcreate "${noact[@]}" -q "$vg" "$loopdev" > /dev/null
lvcreate "${noact[@]}" -q -an -Zn -y -n root -L 32M "$vg" > /dev/null 2>&1
pe_start="$(pvs "${noact[@]}" --noheadings --units b --nosuffix -o pe_start "$loopdev" | tr -d ' ')"
losetup -d "$loopdev"; loopdev=""
dd if="$work/fs.img" of="$lvm_img" bs=1M oflag=seek_bytes seek=$((2048 * 512 + pe_start)) conv=notrunc,sparse status=none

# 3. LUKS2, cryptsetup's defaults (Argon2id, memory and time benchmarked on this host).
luks="$work/luks.img"
cp --sparse=always "$work/fs.img" "$luks"
truncate -s 36M "$luks"
printf '%s' "$pass" | cryptsetup reencrypt --encrypt --batch-mode --key-file=- --type luks2 \
  --reduce-device-size 4M --force-offline-reencrypt "$luks" > /dev/null 2>&1
kdf="$(cryptsetup luksDump "$luks" | awk '/PBKDF:/ {p=$2} /Memory:/ {m=$2} /Time cost:/ {t=$3} END {print p ", memory " m " KiB, time cost " t}')"
need_mib="$(cryptsetup luksDump "$luks" | awk '/Memory:/ {print int($2 / 1024) + 128; exit}')"
keyfile="$work/key"
printf '%s\n' "$pass" > "$keyfile"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", (b-a)*1000}'; }
# time_it OUTVAR CMD...: runs CMD `runs` times (output must be bench-guest when cat).
time_it() {
  local -n out=$1; shift
  out=()
  for _ in $(seq "$runs"); do
    local t0 t1 o
    t0="$(now)"
    if ! o="$("$@" 2> "$work/err")"; then
      echo "FAILED: $*: $(tail -n 3 "$work/err" | tr '\n' ' ')" >&2
      continue
    fi
    t1="$(now)"
    case "$*" in *cat*|gf_luks) [ "$o" = "bench-guest" ] || { echo "wrong output from $*: $o" >&2; exit 1; } ;; esac
    out+=("$(ms "$t0" "$t1")")
  done
}
report() {
  if [ $# -lt 2 ]; then printf '%-44s failed\n' "$1"; return; fi
  printf '%-44s median %6s ms   (all: %s)\n' "$1" "$(printf '%s\n' "${@:2}" | median)" "${*:2}"
}

echo "images: ext4 32 MiB; LUKS2 KDF: $kdf; accel: ${SKIFF_ACCEL:-auto}; $runs runs"
echo
echo "== skiff ($skiff)"
"$skiff" cat -a "$plain" /etc/hostname > /dev/null
time_it a "$skiff" cat -a "$plain" /etc/hostname;                      report "plain partition: launch + cat" "${a[@]}"
time_it b "$skiff" cat -a "$lvm_img" /etc/hostname;                    report "LVM LV: launch + cat" "${b[@]}"
time_it c "$skiff" --memory "$need_mib" cat -a "$luks" --key "/dev/sda:file:$keyfile" /etc/hostname
report "LUKS2: launch + unlock + cat (--memory $need_mib)" "${c[@]}"
time_it d "$skiff" --memory "$need_mib" filesystems -a "$luks"
time_it e "$skiff" --memory "$need_mib" filesystems -a "$luks" --key "/dev/sda:file:$keyfile"
unlock=(); for i in $(seq 0 $((${#e[@]} < ${#d[@]} ? ${#e[@]} - 1 : ${#d[@]} - 1))); do unlock+=("$(( e[i] - d[i] ))"); done
report "LUKS2: LuksOpen (key derivation) alone" "${unlock[@]}"
time_it f "$skiff" cat -a "$luks" --key "/dev/sda:file:$keyfile" /etc/hostname
report "LUKS2: default memory (relaunch) + cat" "${f[@]}"

if [ "${SKIFF_BENCH_NO_GUESTFISH:-0}" = 1 ] || ! command -v guestfish > /dev/null; then
  echo; echo "guestfish: skipped (install: SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"; exit 0
fi
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
echo
echo "== guestfish (-i; a first, uncounted run may build its appliance)"
guestfish --ro -a "$plain" -i cat /etc/hostname > /dev/null
time_it g guestfish --ro -a "$plain" -i cat /etc/hostname;            report "plain partition: launch + cat" "${g[@]}"
time_it h guestfish --ro -a "$lvm_img" -i cat /etc/hostname;          report "LVM LV: launch + cat" "${h[@]}"
# libguestfs 1.48 (Debian 12) `-i --key` finds no OS on a whole-disk LUKS volume: open it
# by hand (`luks-open`, the key on stdin), as one would.
gf_luks() {
  printf '%s\n' "$pass" | guestfish --keys-from-stdin --ro -a "$luks" \
    run : luks-open /dev/sda lk : mount-ro /dev/mapper/lk / : cat /etc/hostname
}
time_it k gf_luks
report "LUKS2: launch + luks-open + cat" "${k[@]}"
