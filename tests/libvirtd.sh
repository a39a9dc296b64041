# Sourced by tests/run.sh and bench/libvirt.sh: starts virtlogd and libvirtd by hand when
# they are not running (no systemd here; root only), and stops only what it started.
#   libvirtd_start   libvirtd_stop
_skiff_started=()

# A daemon runs when the pid in its /run pid file is a live (not zombie) process.
_skiff_running() {
  local pid state
  pid="$(cat "/run/$1.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [ -n "$state" ] && [ "$state" != Z ]
}

libvirtd_start() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "libvirtd.sh: not root: using whatever libvirtd is running" >&2
    return 0
  fi
  local d
  for d in virtlogd libvirtd; do
    if ! _skiff_running "$d" && command -v "$d" >/dev/null 2>&1; then
      echo "libvirtd.sh: starting $d -d" >&2
      # Detached from our stdin/stdout: a daemon must not write into (or read) the
      # terminal or pipe this script was started from.
      "$d" -d </dev/null >/dev/null 2>>"${TMPDIR:-/tmp}/skiff-$d.log" ||
        echo "libvirtd.sh: $d failed to start (see ${TMPDIR:-/tmp}/skiff-$d.log)" >&2
      _skiff_started+=("$d")
    fi
  done
  # libvirtd answers once its socket is up.
  local i
  for i in $(seq 1 100); do
    virsh -c qemu:///system version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "libvirtd.sh: libvirtd does not answer on qemu:///system (the libvirt tests will skip)" >&2
}

libvirtd_stop() {
  local d pid
  for d in "${_skiff_started[@]}"; do
    pid="$(cat "/run/$d.pid" 2>/dev/null || true)"
    if [ -n "$pid" ]; then
      echo "libvirtd.sh: stopping $d ($pid)" >&2
      kill "$pid" 2>/dev/null || true
    fi
  done
  _skiff_started=()
}
