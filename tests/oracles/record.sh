#!/usr/bin/env bash
# Re-records the virt-inspector oracles: builds each test guest with guests.py (the
# recipes; images cached in $OUT, default target/tmp/oracle-guests, where the CI test
# keeps them too) and saves what
# virt-inspector says about it as tests/oracles/NAME.xml, with the guest's fingerprint
# (the recipe, and for debian its package list) in NAME.fingerprint. The CI test
# (tests/tests/inspect_oracles.rs) compares `skiff inspect --xml` with these files; it
# never runs virt-inspector itself.
#
#   tests/oracles/record.sh            # every guest
#   tests/oracles/record.sh debian rhel
#
# Needs root, libguestfs-tools (SKIFF_DEPS_BENCH=1 tests/install-deps.sh) and the
# guest-building tools (tests/install-deps.sh). virt-inspector runs under TCG here
# (LIBGUESTFS_BACKEND_SETTINGS=force_tcg): 20-80 s a guest.
set -euo pipefail
cd "$(dirname "$0")"
OUT="${OUT:-${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}/tmp/oracle-guests}"
mkdir -p "$OUT"
export LIBGUESTFS_BACKEND="${LIBGUESTFS_BACKEND:-direct}"
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
guests=("$@")
[ ${#guests[@]} -gt 0 ] || mapfile -t guests < <(python3 guests.py list)
for g in "${guests[@]}"; do
  echo "== $g" >&2
  img=$(python3 guests.py build "$g" "$OUT")
  python3 guests.py fingerprint "$g" "$OUT" > "$OUT/$g.built"
  start=$(date +%s)
  virt-inspector -a "$img" > "$g.xml.tmp"
  mv "$g.xml.tmp" "$g.xml"
  cp "$OUT/$g.built" "$g.fingerprint"
  echo "   $g.xml ($(( $(date +%s) - start )) s)" >&2
done
