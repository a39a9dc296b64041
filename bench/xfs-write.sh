#!/usr/bin/env bash
# XFS writes, skiff beside libguestfs on the same image in the same run (issue 13):
#   1. upload of a 64 MiB random file   (skiff --rw upload   vs guestfish upload)
#   2. copy-in of 3,000 small files      (skiff --rw copy-in  vs guestfish copy-in)
#      (30 dirs x 100 files of 1-4 KiB, into /srv)
#   3. customize --ssh-inject            (skiff customize     vs virt-customize)
# Image: a 300 MiB raw XFS (mkfs.xfs defaults: v5, crc, finobt, sparse inodes, reflink,
# bigtime) holding a small RHEL-9-like root, made with `mkfs.xfs -p protofile` (no
# mount). Every job runs on a fresh copy of it; after each write `xfs_repair -n` says
# whether the filesystem is clean and the result is read back (download + cmp,
# checksums-out, cat authorized_keys) before its time counts in the table.
#   bench/xfs-write.sh [R]        R skiff runs per job, median reported (default 3);
#                                 libguestfs: 1 run per job after an uncounted warm-up
#   SKIFF_BIN=PATH                the skiff binary (default target/release/skiff; this
#                                 script does not build it)
#   SKIFF_BENCH_NO_VIRT=1         skip guestfish/virt-customize (20-120 s each under TCG)
# libguestfs runs with LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg.
# Prints figures only; nothing here asserts on time. A job that fails, leaves a
# filesystem xfs_repair -n rejects, or reads back wrong is reported as such.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
skiff="$(realpath "${SKIFF_BIN:-target/release/skiff}")"
[ -x "$skiff" ] || { echo "no skiff binary at $skiff (cargo build --release -p skiff-cli)" >&2; exit 1; }
for t in mkfs.xfs xfs_repair; do
  command -v "$t" > /dev/null || { echo "$t missing (xfsprogs)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- the guest: a RHEL-9-like root on XFS, from a protofile -----------------------
f="$work/files"; mkdir -p "$f"
printf 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n' \
  > "$f/passwd"
printf 'root:*:19800:0:99999:7:::\nalice:!!:19800:0:99999:7:::\n' > "$f/shadow"
printf 'root:x:0:\nalice:x:1000:\n' > "$f/group"
echo rhel9 > "$f/hostname"
printf '127.0.0.1 localhost\n' > "$f/hosts"
printf '%s\n' 'NAME="Red Hat Enterprise Linux"' 'VERSION="9.4 (Plow)"' 'ID="rhel"' \
  'ID_LIKE="fedora"' 'VERSION_ID="9.4"' 'PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"' \
  > "$f/os-release"
echo 'Red Hat Enterprise Linux release 9.4 (Plow)' > "$f/redhat-release"
printf '/dev/sda / xfs defaults 0 0\n' > "$f/fstab"
echo '# bash' > "$f/bashrc"
sh_bin="$(command -v dash || command -v sh)"
# protofile: boot-image line, blocks/inodes line, then the root dir; `$` ends a dir.
cat > "$work/proto" << EOF
/dev/null
0 0
d--755 0 0
etc d--755 0 0
passwd ---644 0 0 $f/passwd
shadow ---000 0 0 $f/shadow
group ---644 0 0 $f/group
hostname ---644 0 0 $f/hostname
hosts ---644 0 0 $f/hosts
os-release ---644 0 0 $f/os-release
redhat-release ---644 0 0 $f/redhat-release
fstab ---644 0 0 $f/fstab
\$
bin l--777 0 0 usr/bin
usr d--755 0 0
bin d--755 0 0
sh ---755 0 0 $sh_bin
\$
\$
root d--550 0 0
\$
home d--755 0 0
alice d--700 1000 1000
.bashrc ---644 1000 1000 $f/bashrc
\$
\$
srv d--755 0 0
\$
tmp d--777 0 0
\$
\$
EOF
base="$work/base.img"
truncate -s 300M "$base"
# The env lets mkfs.xfs (xfsprogs >= 5.19) make a filesystem below its 300 MB minimum.
TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -p "$work/proto" "$base"
xfs_repair -n "$base" > /dev/null 2>&1 || { echo "the base image is not clean" >&2; exit 1; }

# --- what is written ----------------------------------------------------------------
big="$work/big64"
head -c 64M /dev/urandom > "$big"
src="$work/tree3k"
for d in $(seq -w 0 29); do
  mkdir -p "$src/d$d"
  for i in $(seq -w 0 99); do
    head -c $(( 1024 + (10#$d * 100 + 10#$i) * 2477 % 3073 )) /dev/urandom > "$src/d$d/f$i"
  done
done
in_files="$(find "$src" -type f | wc -l)"
in_kib="$(du -sk --apparent-size "$src" | cut -f1)"
(cd "$src" && find . -type f | sort | xargs sha256sum) > "$work/src.sums"
if command -v ssh-keygen > /dev/null; then
  ssh-keygen -q -t ed25519 -N '' -C bench@host -f "$work/key" > /dev/null
else
  echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKeyBenchKeyBenchKeyBenchKey bench@host" \
    > "$work/key.pub"
fi
key="$work/key.pub"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b-a}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# repair IMG: "clean" or "NOT CLEAN (first lines)"
repair() {
  local out
  if out="$(xfs_repair -n "$1" 2>&1)"; then echo clean
  else echo "NOT CLEAN: $(printf '%s\n' "$out" | grep -v '^\(Phase\|        - \)' | head -3 | tr '\n' ' ')"
  fi
}
# verify JOB IMG: read the result back with skiff (XFS reads), "ok" or what differs
verify() {
  case "$1" in
    upload)
      rm -f "$work/back"
      "$skiff" download -a "$2,format=raw" /big "$work/back" > /dev/null 2>&1 \
        && cmp -s "$big" "$work/back" && echo ok || echo "/big differs or unreadable" ;;
    copyin)
      "$skiff" checksums-out -a "$2,format=raw" sha256 /srv/tree3k 2> /dev/null \
        | sort -k2 > "$work/img.sums" || true
      diff -q <(sort -k2 "$work/src.sums") "$work/img.sums" > /dev/null \
        && echo ok || echo "/srv/tree3k differs ($(wc -l < "$work/img.sums") of $in_files files read back)" ;;
    inject)
      local ak
      ak="$("$skiff" cat -a "$2,format=raw" /home/alice/.ssh/authorized_keys 2> /dev/null)" || true
      printf '%s\n' "$ak" | grep -qxF "$(cat "$key")" && echo ok \
        || echo "key missing from ~alice/.ssh/authorized_keys" ;;
  esac
}
# job JOB IMG: run JOB's skiff command on IMG
skiff_job() {
  case "$1" in
    upload) "$skiff" --rw upload -a "$2,format=raw" "$big" /big ;;
    copyin) "$skiff" --rw copy-in -a "$2,format=raw" "$src" /srv ;;
    inject) "$skiff" customize -a "$2,format=raw" --ssh-inject "alice:file:$key" ;;
  esac
}
virt_job() {
  case "$1" in
    upload) guestfish --format=raw --rw -a "$2" -m /dev/sda upload "$big" /big ;;
    copyin) guestfish --format=raw --rw -a "$2" -m /dev/sda copy-in "$src" /srv ;;
    inject) virt-customize -q --format raw -a "$2" --ssh-inject "alice:file:$key" ;;
  esac
}
jobs=(upload copyin inject)
declare -A label=([upload]="upload 64 MiB" [copyin]="copy-in $in_files files" \
  [inject]="customize --ssh-inject")
declare -A times fails g_time g_note

echo "image: 300 MiB raw XFS ($(xfs_db -r -c version "$base" 2>/dev/null | sed 's/^versionnum \[[^]]*\] = //'))"
echo "copy-in tree: $in_files files in 30 dirs, $in_kib KiB; upload: 64 MiB random"
echo "skiff: $skiff ($(stat -c %y "$skiff" | cut -d. -f1)); accel: ${SKIFF_ACCEL:-auto}$(grep -qE 'vmx|svm' /proc/cpuinfo || echo ' (no vmx/svm: TCG)')"
echo "load average: $(uptime | sed 's/.*load average: *//')"
echo
echo "== skiff ($runs runs per job, fresh image copy each)"
for r in $(seq "$runs"); do
  for j in "${jobs[@]}"; do
    img="$work/s-$j.img"
    cp --sparse=always "$base" "$img"
    t0="$(now)"
    if skiff_job "$j" "$img" > "$work/log" 2>&1; then
      t1="$(now)"; t="$(secs "$t0" "$t1")"
      fs="$(repair "$img")"; ok="$(verify "$j" "$img")"
      if [ "$fs" = clean ] && [ "$ok" = ok ]; then
        times[$j]="${times[$j]:-} $t"
      else
        fails[$j]="${fails[$j]:-} run$r"
      fi
      printf '  run %s %-26s %6s s   xfs_repair -n: %s; read back: %s\n' "$r" "${label[$j]}" "$t" "$fs" "$ok"
    else
      fails[$j]="${fails[$j]:-} run$r"
      printf '  run %s %-26s FAILED: %s\n' "$r" "${label[$j]}" "$(tail -2 "$work/log" | tr '\n' ' ')"
    fi
    rm -f "$img"
  done
done

if [ "${SKIFF_BENCH_NO_VIRT:-0}" = 1 ]; then
  virt_skip="skipped (SKIFF_BENCH_NO_VIRT=1)"
elif ! command -v guestfish > /dev/null || ! command -v virt-customize > /dev/null; then
  virt_skip="skipped (guestfish/virt-customize missing; SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
else
  virt_skip=""
  export LIBGUESTFS_BACKEND=direct
  export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
  echo
  echo "== libguestfs (1 run per job after an uncounted warm-up; $LIBGUESTFS_BACKEND_SETTINGS)"
  cp --sparse=always "$base" "$work/warm.img"
  guestfish --format=raw -a "$work/warm.img" -m /dev/sda ls / > /dev/null 2>&1 || true
  rm -f "$work/warm.img"
  for j in "${jobs[@]}"; do
    img="$work/g-$j.img"
    cp --sparse=always "$base" "$img"
    t0="$(now)"
    if virt_job "$j" "$img" > "$work/log" 2>&1; then
      t1="$(now)"; t="$(secs "$t0" "$t1")"
      fs="$(repair "$img")"; ok="$(verify "$j" "$img")"
      if [ "$fs" = clean ] && [ "$ok" = ok ]; then g_time[$j]="$t"; else g_note[$j]="bad result"; fi
      printf '  %-28s %6s s   xfs_repair -n: %s; read back: %s\n' "${label[$j]}" "$t" "$fs" "$ok"
    else
      g_note[$j]="failed"
      printf '  %-28s FAILED: %s\n' "${label[$j]}" "$(tail -3 "$work/log" | tr '\n' ' ')"
    fi
    rm -f "$img"
  done
fi

echo
if [ -n "$virt_skip" ]; then echo "libguestfs: $virt_skip"; fi
printf '%-26s %10s  %-20s %9s  %14s  %s\n' job "skiff (s)" "skiff runs" "MiB/s" "libguestfs (s)" ratio
for j in "${jobs[@]}"; do
  all="$(echo ${times[$j]:-})"
  if [ -n "$all" ]; then
    m="$(printf '%s\n' $all | median)"
  else
    m=""
  fi
  mibs="-"
  if [ "$j" = upload ] && [ -n "$m" ]; then mibs="$(awk -v t="$m" 'BEGIN {printf "%.1f", 64/t}')"; fi
  g="${g_time[$j]:-${g_note[$j]:-${virt_skip:+skipped}}}"
  ratio="-"
  if [ -n "$m" ] && [ -n "${g_time[$j]:-}" ]; then
    ratio="$(awk -v a="${g_time[$j]}" -v b="$m" \
      'BEGIN {if (a >= b) printf "skiff %.1fx faster", a/b; else printf "skiff %.1fx slower", b/a}')"
  fi
  if [ -n "${fails[$j]:-}" ]; then all="$all (failed:${fails[$j]})"; fi
  printf '%-26s %10s  %-20s %9s  %14s  %s\n' "${label[$j]}" "${m:-FAILED}" "${all:--}" "$mibs" "${g:--}" "$ratio"
done
