#!/usr/bin/env bash
# Installs what skiff needs on a fresh Debian 12 machine, and only what is missing:
# qemu 10 (bookworm-backports), libvirt's headers and pkg-config (the default build has
# the libvirt backend and links libvirt), the image tools used as test oracles, and the
# x86_64-unknown-none Rust target. Safe to run again; prints what it does.
#   SKIFF_DEPS_LIBVIRT=1   also install the libvirt daemon (libvirt-daemon-system), which
#                          the libvirt backend's tests use (tests/run.sh sets it; =0 there
#                          skips the daemon)
#   SKIFF_DEPS_BENCH=1     also install libguestfs-tools (side-by-side benchmarks only)
set -euo pipefail

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || pkgs+=(qemu-system-x86)
have qemu-img || pkgs+=(qemu-utils)
have mkfs.ext4 || pkgs+=(e2fsprogs)
have mkfs.vfat || pkgs+=(dosfstools)
have mcopy || pkgs+=(mtools)
have sfdisk || pkgs+=(fdisk)
have sgdisk || pkgs+=(gdisk)
have mkntfs || pkgs+=(ntfs-3g)
have setfattr || pkgs+=(attr)
have pvcreate || pkgs+=(lvm2)
have cryptsetup || pkgs+=(cryptsetup-bin)
# LUKS payload oracle: OpenSSL's AES-XTS/CBC through Python's cryptography package.
/usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || pkgs+=(python3-cryptography)
# btrfs-progs >= 6.x (bookworm-backports): mkfs.btrfs --rootdir --subvol --compress.
# (Matched on the captured help text: `| grep -q` would SIGPIPE mkfs.btrfs under pipefail.)
case "$(mkfs.btrfs --help 2>&1 || true)" in *--compress*) ;; *) pkgs+=(btrfs-progs) ;; esac
have mkfs.xfs || pkgs+=(xfsprogs)
# Inspection oracles: rpm databases (rpmbuild, rpm, sqlite3, db5.3_load/db5.3_dump),
# registry hives (hivexregedit writes them, python3-hivex reads them), `file` for PE.
have rpmbuild || pkgs+=(rpm)
have sqlite3 || pkgs+=(sqlite3)
have db5.3_load || pkgs+=(db5.3-util)
have hivexregedit || pkgs+=(libwin-hivex-perl)
/usr/bin/python3 -c 'import hivex' >/dev/null 2>&1 || pkgs+=(python3-hivex)
have file || pkgs+=(file)
# customize tests: sha512-crypt checked with `openssl passwd -6`; python3 builds the guest trees.
have openssl || pkgs+=(openssl)
have python3 || pkgs+=(python3)
have debootstrap || pkgs+=(debootstrap)  # tests/oracles/guests.py: the Debian oracle guest
# `skiff mount` (FUSE, through the fuser crate: no libfuse needed): fusermount3 for
# unmounting; its tests compare with rsync.
have fusermount3 || pkgs+=(fuse3)
have rsync || pkgs+=(rsync)
# The Python bindings (tests/python.sh): a venv with pip; pip fetches maturin from PyPI.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv python3-pip)
# The libvirt backend is in the default build: skiff links libvirt (libvirt0 comes with
# libvirt-dev). `cargo build --no-default-features` needs neither.
[ -f /usr/include/libvirt/libvirt.h ] || pkgs+=(libvirt-dev)
have pkg-config || pkgs+=(pkg-config)
if [ "${SKIFF_DEPS_LIBVIRT:-0}" = 1 ]; then
  have libvirtd || pkgs+=(libvirt-daemon-system)
fi
if [ "${SKIFF_DEPS_BENCH:-0}" = 1 ]; then
  have guestfish || pkgs+=(libguestfs-tools)
  # libguestfs boots the host's kernel: without one, supermin fails.
  compgen -G '/boot/vmlinuz-*' >/dev/null || pkgs+=(linux-image-amd64)
  have hyperfine || pkgs+=(hyperfine)
  # bench/python.sh: libguestfs' Python module (for Debian's /usr/bin/python3).
  /usr/bin/python3 -c 'import guestfs' >/dev/null 2>&1 || pkgs+=(python3-guestfs)
fi

if [ ${#pkgs[@]} -gt 0 ]; then
  echo "install-deps: installing ${pkgs[*]}" >&2
  # qemu 10 lives in bookworm-backports (bookworm's qemu 7 conflicts with qemu-utils 10).
  if [ -f /etc/debian_version ] && grep -q '^12' /etc/debian_version \
     && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    need_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  need_root apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  bp=()
  grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ && bp=(-t bookworm-backports)
  need_root apt-get install -y -qq --no-install-recommends "${bp[@]}" "${pkgs[@]}" >/dev/null
fi

# The appliance is built for x86_64-unknown-none (rust-toolchain.toml names it too).
if have rustup && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
  echo "install-deps: rustup target add x86_64-unknown-none" >&2
  rustup target add x86_64-unknown-none >&2
fi
