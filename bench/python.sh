#!/usr/bin/env bash
# Python bindings benchmark: launch → read /etc/hostname → shutdown through the skiff
# module, beside the same through libguestfs' `guestfs` module (Debian python3-guestfs,
# LIBGUESTFS_BACKEND=direct, TCG) on the same ext4 image in the same run. Medians.
#   bench/python.sh [RUNS]          (default 7 for skiff, 3 for guestfs)
#   SKIFF_BENCH_NO_GUESTFS=1        skip guestfs
# python3-guestfs comes from `SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh`; it is
# importable by Debian's /usr/bin/python3. Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-7}"
py="$(SKIFF_PY_BUILD_ONLY=1 bash tests/python.sh | tail -1)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/etc"
echo "bench-guest" > "$work/src/etc/hostname"
img="$work/disk.img"
mkfs.ext4 -q -F -E root_owner=0:0 -d "$work/src" "$img" 64M

cat > "$work/bench.py" <<'PY'
import statistics, sys, time
which, img, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

def with_skiff():
    import skiff
    with skiff.launch(drives=[img]) as g:
        return g.read_file("/etc/hostname")

def with_guestfs():
    import guestfs
    g = guestfs.GuestFS(python_return_dict=True)
    g.add_drive_opts(img, format="raw", readonly=1)
    g.launch()
    g.mount_ro("/dev/sda", "/")
    data = g.read_file("/etc/hostname")
    g.shutdown()
    g.close()
    return data

f = with_skiff if which == "skiff" else with_guestfs
assert f() == b"bench-guest\n"   # warm-up (guestfs: builds its appliance), not counted
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    assert f() == b"bench-guest\n"
    times.append((time.perf_counter() - t0) * 1000)
print(f"launch → read → shutdown: median {statistics.median(times):.1f} ms"
      f"   (all: {' '.join(f'{t:.1f}' for t in times)})")
PY

echo "image: 64 MiB ext4 with /etc/hostname; accel: ${SKIFF_ACCEL:-auto}"
echo
echo "== skiff ($("$py" --version), $runs runs)"
"$py" "$work/bench.py" skiff "$img" "$runs"
if [ "${SKIFF_BENCH_NO_GUESTFS:-0}" = 1 ] || ! /usr/bin/python3 -c 'import guestfs' 2>/dev/null; then
  echo
  echo "guestfs: skipped (install: SKIFF_DEPS_BENCH=1 bash tests/install-deps.sh)"
  exit 0
fi
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}"
g_runs=$(( runs < 3 ? runs : 3 ))
echo
echo "== guestfs ($(/usr/bin/python3 --version), $g_runs runs; a first, uncounted run builds its appliance)"
/usr/bin/python3 "$work/bench.py" guestfs "$img" "$g_runs"
