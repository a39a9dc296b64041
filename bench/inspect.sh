#!/usr/bin/env bash
# `skiff inspect --xml` vs `virt-inspector` on the same guests, in one run: the oracle
# guests of tests/oracles/guests.py (built with the real tools, cached in $OUT), each
# inspected R times by both (median printed), then the rate over N guests with
# `skiff each -j P ... -- inspect --xml` (N sparse copies of the alpine guest).
#   bench/inspect.sh [GUEST...]    (default: every oracle guest)
#   R=3 N=50 P=2 bench/inspect.sh debian rhel
# Needs the guest-building tools (tests/install-deps.sh) and, for the comparison,
# libguestfs-tools (SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh); SKIFF_BENCH_NO_VIRT=1
# skips virt-inspector (20-80 s a guest under TCG). Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
R="${R:-3}"
N="${N:-50}"
P="${P:-2}"
# SKIFF=path/to/skiff uses that binary instead of building the release one.
if [ -z "${SKIFF:-}" ]; then
  cargo build --release -q -p skiff-cli
  SKIFF="${CARGO_TARGET_DIR:-target}/release/skiff"
fi
skiff="$SKIFF"
OUT="${OUT:-${CARGO_TARGET_DIR:-target}/tmp/oracle-guests}"
mkdir -p "$OUT"
guests=("$@")
[ ${#guests[@]} -gt 0 ] || mapfile -t guests < <(python3 tests/oracles/guests.py list)
# virt-inspector: TCG like skiff (/dev/kvm may exist on a CPU without vmx/svm).
export LIBGUESTFS_BACKEND="${LIBGUESTFS_BACKEND:-direct}"
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
now() { date +%s.%N; }
# median of the numbers on stdin
median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# time_of CMD...: seconds one run of CMD takes (its output discarded)
time_of() { local t0; t0=$(now); "$@" > /dev/null 2>&1; awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'; }
have_virt=0
if [ "${SKIFF_BENCH_NO_VIRT:-0}" != 1 ] && command -v virt-inspector > /dev/null; then have_virt=1; fi

printf '%-10s %14s %16s\n' guest "skiff (s)" "virt-inspector (s)"
for g in "${guests[@]}"; do
  img="$OUT/$g.img"
  [ -f "$img" ] || img=$(python3 tests/oracles/guests.py build "$g" "$OUT")
  s=$(for _ in $(seq "$R"); do time_of "$skiff" inspect --xml -a "$img"; done | median)
  v=-
  if [ $have_virt = 1 ]; then
    v=$(for _ in $(seq "$R"); do time_of virt-inspector --format=raw -a "$img"; done | median)
  fi
  printf '%-10s %14s %16s\n' "$g" "$s" "$v"
done

# The rate: N copies of the alpine guest (sparse), P appliances at a time.
base="$OUT/alpine.img"
[ -f "$base" ] || base=$(python3 tests/oracles/guests.py build alpine "$OUT")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
imgs=()
for i in $(seq 1 "$N"); do
  cp --sparse=always "$base" "$work/g$i.img"
  imgs+=("$work/g$i.img")
done
t0=$(now)
"$skiff" each -j "$P" "${imgs[@]}" -- inspect --xml > "$work/out.xml"
t1=$(now)
awk -v n="$N" -v a="$t0" -v b="$t1" -v p="$P" -v os="$(grep -c '<operatingsystem>' "$work/out.xml")" \
  'BEGIN { t = b - a; printf "skiff each -j %d -- inspect --xml over %d guests: %.1f s, %.2f guests/s (%d OSes found)\n", p, n, t, n / t, os }'
