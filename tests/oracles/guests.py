#!/usr/bin/env python3
"""Test guests for `skiff inspect --xml`, built with the real tools, deterministically.

    python3 tests/oracles/guests.py list
    python3 tests/oracles/guests.py build NAME OUTDIR     -> OUTDIR/NAME.img (raw)
    python3 tests/oracles/guests.py fingerprint NAME OUTDIR

Every guest is a raw disk image whose partition table, filesystem UUIDs, labels and
contents are fixed here, so that `virt-inspector` run on it once (tests/oracles/record.sh)
gives the XML the CI test compares `skiff inspect --xml` with. The one input from outside
is the Debian archive: the `debian` guest is a `debootstrap --variant=minbase bookworm`
tree, downloaded once and cached next to the images (OUTDIR/debian-tree); its package
list is the guest's fingerprint (a point release changes it; the test says so).

Needs root (loop devices for LVM, an ntfs-3g FUSE mount) and: sfdisk, mkfs.ext4,
mkfs.vfat + mcopy, mkswap, mkfs.xfs, mkfs.btrfs (>= 6.x for --subvol), mkntfs + ntfs-3g,
LVM tools, rpmbuild + rpm, hivexregedit, debootstrap (network, first time only).
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

SECTOR = 512
MIB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))

# Filesystem UUIDs and labels, fixed so the recorded XML stays valid.
U = {
    "deb-esp": "1A2B3C4D",
    "deb-root": "5c5b9a5e-6a8e-4f8c-9a61-3e2f4d1c7b01",
    "deb-swap": "5c5b9a5e-6a8e-4f8c-9a61-3e2f4d1c7b02",
    "rhel-boot": "9e1f6b0a-7c3d-4e21-8f55-0a1b2c3d4e01",
    "rhel-root": "9e1f6b0a-7c3d-4e21-8f55-0a1b2c3d4e02",
    "rhel-swap": "9e1f6b0a-7c3d-4e21-8f55-0a1b2c3d4e03",
    "fed-esp": "F0ED0001",
    "fed-boot": "f3d0ea00-0000-4000-8000-000000000001",
    "fed-btrfs": "f3d0ea00-0000-4000-8000-000000000002",
    "arch-root": "a7c40000-1111-4222-8333-444455556666",
    "alpine-root": "a1b2c3d4-0000-4000-8000-a1b2c3d4e5f6",
    "coreos-root": "c0e05000-0000-4000-8000-000000000001",
    "coreos-usr": "c0e05000-0000-4000-8000-000000000002",
    "win-sysres": "0123456789ABCDEF",
    "win-c": "1122334455667788",
    "win22-c": "8877665544332211",
    "ubuntu-root": "0b0e7e00-2204-4000-8000-000000000001",
    "rocky-root": "20c6e900-0903-4000-8000-000000000001",
    "noos-data": "d47a0000-0000-4000-8000-000000000001",
}


def run(*args, env=None, input=None, cwd=None):
    e = dict(os.environ)
    e.update({"LC_ALL": "C", "TZ": "UTC"})
    if env:
        e.update(env)
    r = subprocess.run(list(args), env=e, input=input, cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace"))
        sys.stderr.write(r.stderr.decode(errors="replace"))
        raise SystemExit(f"guests.py: {' '.join(args)} failed ({r.returncode})")
    return r.stdout.decode(errors="replace")


def write(root, rel, data, mode=0o644):
    p = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)


def symlink(root, rel, target):
    p = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p):
        os.remove(p)
    os.symlink(target, p)


def mkdirs(root, *rels):
    for r in rels:
        os.makedirs(os.path.join(root, r.lstrip("/")), exist_ok=True)


def elf_binary():
    """A real x86_64 ELF executable (the host's dash): what arch detection reads."""
    for p in ("/bin/dash", "/usr/bin/dash", "/bin/sh"):
        real = os.path.realpath(p)
        if os.path.isfile(real):
            with open(real, "rb") as f:
                data = f.read()
            if data[:4] == b"\x7fELF" and data[18] == 62:
                return data
    raise SystemExit("guests.py: no x86_64 ELF shell on this host")


def pe_binary():
    """A minimal PE32+ (x86-64) header, as `file` recognises it: `cmd.exe`."""
    h = bytearray(1024)
    h[0:2] = b"MZ"
    h[0x3C:0x40] = struct.pack("<I", 0x80)
    h[0x80:0x84] = b"PE\0\0"
    h[0x84:0x86] = struct.pack("<H", 0x8664)
    h[0x94:0x96] = struct.pack("<H", 0xF0)
    h[0x98:0x9A] = struct.pack("<H", 0x20B)
    return bytes(h)


# ---------------------------------------------------------------------------------
# Disks and filesystems


def new_disk(path, parts, label, label_id):
    """Creates `path` with partitions `parts` [(size_mib, type, uuid|None, name|None)],
    1 MiB aligned from sector 2048; returns [(start_sector, sectors)]."""
    lines = [f"label: {label}", f"label-id: {label_id}", "unit: sectors"]
    start = 2048
    out = []
    for size_mib, ptype, uuid, name in parts:
        n = size_mib * MIB // SECTOR
        line = f"start={start}, size={n}, type={ptype}"
        if uuid:
            line += f", uuid={uuid}"
        if name:
            line += f', name="{name}"'
        lines.append(line)
        out.append((start, n))
        start += n
    total = (start + 2048) * SECTOR
    if os.path.exists(path):
        os.remove(path)
    with open(path, "wb") as f:
        f.truncate(total)
    run("sfdisk", "-q", path, input=("\n".join(lines) + "\n").encode())
    return out


def dd_into(fs_img, disk, start_sector):
    run("dd", f"if={fs_img}", f"of={disk}", "bs=1M", f"seek={start_sector * SECTOR}",
        "oflag=seek_bytes", "conv=notrunc,sparse", "status=none")


def blank(path, size):
    if os.path.exists(path):
        os.remove(path)
    with open(path, "wb") as f:
        f.truncate(size)


def ext4(path, size, tree, uuid, label):
    blank(path, size)
    lab = ["-L", label] if label else []
    run("mkfs.ext4", "-q", "-F", "-U", uuid, *lab, "-E", "root_owner=0:0", "-d", tree, path)


def vfat(path, size, serial, label, files=()):
    if os.path.exists(path):
        os.remove(path)
    lab = ["-n", label] if label else []
    run("mkfs.vfat", "-C", "-i", serial, *lab, path, str(size // 1024))
    made = set()
    for rel, data in files:
        with tempfile.NamedTemporaryFile() as t:
            t.write(data.encode())
            t.flush()
            parts = os.path.dirname(rel).split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in made:
                    made.add(d)
                    run("mmd", "-i", path, "::" + d)
            run("mcopy", "-i", path, t.name, "::" + rel)


def swap(path, size, uuid, label):
    blank(path, size)
    lab = ["-L", label] if label else []
    run("mkswap", "-q", "-U", uuid, *lab, path)


def protofile(tree):
    """An xfs protofile describing `tree` (what mkfs.xfs -p reads)."""
    out = ["/dev/null", "0 0"]

    def mode(st):
        import stat as S
        t = {S.S_IFREG: "-", S.S_IFDIR: "d", S.S_IFLNK: "l"}[S.S_IFMT(st.st_mode)]
        return f"{t}--{S.S_IMODE(st.st_mode) & 0o777:03o}"

    def walk(d, depth):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            st = os.lstat(p)
            m = mode(st)
            pad = " " * depth
            if m[0] == "d":
                out.append(f"{pad}{name} {m} 0 0")
                walk(p, depth + 1)
                out.append(f"{pad}$")
            elif m[0] == "l":
                out.append(f"{pad}{name} {m} 0 0 {os.readlink(p)}")
            else:
                out.append(f"{pad}{name} {m} 0 0 {p}")

    out.append("d--755 0 0")
    walk(tree, 1)
    out.append("$")
    return "\n".join(out) + "\n"


XFS_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}


def xfs(path, size, tree, uuid, label, work):
    blank(path, size)
    proto = os.path.join(work, os.path.basename(path) + ".proto")
    with open(proto, "w") as f:
        f.write(protofile(tree))
    run("mkfs.xfs", "-q", "-f", "-m", f"uuid={uuid}", "-L", label, "-p", proto, path,
        env=XFS_ENV)


def ntfs(path, size, serial, label, tree, hidden_sectors):
    """mkntfs, the tree copied in through an ntfs-3g mount, the serial number fixed (in
    the boot sector and its backup: mkntfs picks a random one)."""
    blank(path, size)
    lab = ["-L", label] if label else []
    run("mkntfs", "-q", "-F", "-Q", *lab, "-p", str(hidden_sectors), "-H", "16", "-S", "63",
        path)
    s = bytes.fromhex(serial)[::-1]
    with open(path, "r+b") as f:
        for off in (0, size - SECTOR):
            f.seek(off + 0x48)
            f.write(s)
    if tree:
        mnt = tempfile.mkdtemp(prefix="skiff-ntfs-")
        run("ntfs-3g", "-o", "rw", path, mnt)
        try:
            run("cp", "-a", "--no-preserve=ownership", tree + "/.", mnt)
        finally:
            run("umount", mnt)
            os.rmdir(mnt)


# ---------------------------------------------------------------------------------
# LVM without device-mapper (the tools on a loop device, activation off)

LVM_CONFIG = "global/activation=0 backup/backup=0 backup/archive=0"


def lvm(*args):
    return run(args[0], "--config", LVM_CONFIG, *args[1:],
               env={"LVM_SUPPRESS_FD_WARNINGS": "1"})


def lvm_layout(disk, start_sector, sectors, vg, lvs):
    """Makes VG `vg` on the partition and LVs [(name, size_mib)]; returns
    {name: [(byte offset on the disk, bytes)]} for their segments."""
    loop = run("losetup", "-f", "--show", "-o", str(start_sector * SECTOR),
               "--sizelimit", str(sectors * SECTOR), disk).strip()
    try:
        lvm("pvcreate", "-ff", "-y", loop)
        lvm("vgcreate", "-y", vg, loop)
        for name, size in lvs:
            lvm("lvcreate", "-an", "-Zn", "-y", "-n", name, "-L", f"{size}M", vg)
        pe_start = int(lvm("pvs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                           "pe_start", loop).strip())
        extent = int(lvm("vgs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                         "vg_extent_size", vg).strip())
        rep = json.loads(lvm("lvs", "--segments", "--reportformat", "json", "-o",
                             "lv_name,seg_pe_ranges", vg))
        out = {}
        for row in next(iter(rep["report"][0].values())):
            for rng in row["seg_pe_ranges"].split():
                _, span = rng.rsplit(":", 1)
                a, b = (int(x) for x in span.split("-"))
                out.setdefault(row["lv_name"], []).append(
                    (start_sector * SECTOR + pe_start + a * extent, (b - a + 1) * extent))
        lvm("vgchange", "-an", vg)
        return out
    finally:
        subprocess.run(["losetup", "-d", loop])


def scatter(fs_img, disk, segments):
    with open(fs_img, "rb") as src, open(disk, "r+b") as dst:
        for off, n in segments:
            data = src.read(n)
            dst.seek(off)
            dst.write(data)


# ---------------------------------------------------------------------------------
# Package databases


def rpm_database(tree, dbpath, work, packages):
    """Builds `packages` with rpmbuild and records them (rpm -i --justdb) in a fresh
    sqlite rpmdb at `dbpath` inside `tree`."""
    top = os.path.join(work, "rpmbuild")
    os.makedirs(os.path.join(top, "SPECS"), exist_ok=True)
    rpms = []
    for p in packages:
        lines = [f"Name: {p['name']}", f"Version: {p['version']}", f"Release: {p['release']}",
                 f"Summary: {p['summary']}", "License: MIT"]
        if p.get("epoch") is not None:
            lines.append(f"Epoch: {p['epoch']}")
        if p.get("url"):
            lines.append(f"URL: {p['url']}")
        if p.get("arch") == "noarch":
            lines.append("BuildArch: noarch")
        lines += ["", "%description", p["description"], "", "%files", ""]
        spec = os.path.join(top, "SPECS", p["name"] + ".spec")
        with open(spec, "w") as f:
            f.write("\n".join(lines))
        run("rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
            "--define", "_build_id_links none", "--define", "debug_package %{nil}",
            "--define", "source_date_epoch_from_changelog 0", spec,
            env={"SOURCE_DATE_EPOCH": "1700000000"})
    for dirpath, _, files in os.walk(os.path.join(top, "RPMS")):
        rpms += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".rpm")]
    db = os.path.join(tree, dbpath.lstrip("/"))
    os.makedirs(db, exist_ok=True)
    macros = ["--define", f"_dbpath {db}", "--define", "_db_backend sqlite"]
    run("rpm", *macros, "--initdb")
    run("rpm", *macros, "-i", "--justdb", "--nodeps", "--noscripts", "--notriggers",
        "--ignorearch", "--ignoreos", *sorted(rpms))
    # rpm keeps its sqlite database in WAL mode and leaves the (checkpointed, empty)
    # -wal and the -shm files, as an installed system has them: keep them. librpm
    # (virt-inspector's appliance mounts the guest read-only) cannot open a WAL
    # database without its -shm file. Everything must be in the main file.
    wal = os.path.join(db, "rpmdb.sqlite-wal")
    if os.path.exists(wal) and os.path.getsize(wal) != 0:
        raise SystemExit("guests.py: rpm left a non-empty rpmdb.sqlite-wal")


def rpm_config(tree, dbpath):
    """What librpm reads before it opens a database (an installed rpm package has
    them): rpmrc (the host's) and the macros naming the database."""
    with open("/usr/lib/rpm/rpmrc", "rb") as f:
        write(tree, "usr/lib/rpm/rpmrc", f.read())
    write(tree, "usr/lib/rpm/macros", f"%_dbpath {dbpath}\n%_db_backend sqlite\n")


RHEL_PACKAGES = [
    dict(name="bash", version="5.1.8", release="9.el9", summary="The GNU Bourne Again shell",
         url="https://www.gnu.org/software/bash",
         description="The GNU Bourne Again shell (Bash) is a shell or command language\n"
                     "interpreter that is compatible with the Bourne shell (sh)."),
    dict(name="setup", version="2.13.7", release="10.el9", arch="noarch",
         summary="A set of system configuration and setup files",
         url="https://pagure.io/setup/",
         description="The setup package contains a set of important system configuration\n"
                     "and setup files, such as passwd, group, and profile."),
    dict(name="kernel-core", version="5.14.0", release="427.13.1.el9_4",
         summary="The Linux kernel", url="https://www.kernel.org/",
         description="The kernel package contains the Linux kernel (vmlinuz)."),
    dict(name="shadow-utils", epoch=2, version="4.9", release="8.el9",
         summary="Utilities for managing accounts & shadow password files",
         url="http://pkg-shadow.alioth.debian.org/",
         description="The shadow-utils package includes the necessary programs for\n"
                     "converting UNIX password files to the shadow password format."),
    dict(name="redhat-release", version="9.4", release="0.5.el9", summary="Red Hat Enterprise "
         "Linux release files", description="Red Hat Enterprise Linux release files."),
]

FEDORA_PACKAGES = [
    dict(name="fedora-release-common", version="40", release="39", arch="noarch",
         summary="Fedora release files", url="https://fedoraproject.org/",
         description="Release files common to all Editions and Spins of Fedora"),
    dict(name="dnf", version="4.19.2", release="1.fc40", arch="noarch",
         summary="Package manager", url="https://github.com/rpm-software-management/dnf",
         description="Utility that allows users to manage packages on their systems.\n"
                     "It supports RPMs, modules and comps groups & environments."),
    dict(name="btrfs-progs", version="6.8", release="1.fc40",
         summary="Userspace programs for btrfs", url="https://btrfs.readthedocs.io",
         description="The btrfs-progs package provides all the userspace programs needed\n"
                     "to create, check, modify and correct any inconsistencies in the btrfs\n"
                     "filesystem."),
    dict(name="glibc", version="2.39", release="5.fc40", epoch=None,
         summary="The GNU libc libraries", url="http://www.gnu.org/software/glibc/",
         description="The glibc package contains standard libraries which are used by\n"
                     "multiple programs on the system."),
    dict(name="tzdata", version="2024a", release="5.fc40", arch="noarch",
         summary="Timezone data", url="https://www.iana.org/time-zones",
         description="This package contains data files with rules for various timezones"
                     " around\nthe world."),
    dict(name="vim-minimal", epoch=2, version="9.1.158", release="1.fc40",
         summary="A minimal version of the VIM editor", url="http://www.vim.org/",
         description="VIM (VIsual editor iMproved) is an updated and improved version of "
                     "the vi\neditor."),
]


def pacman_desc(name, version, desc, arch, url=None, extra=()):
    lines = [f"%NAME%\n{name}\n", f"%VERSION%\n{version}\n", f"%BASE%\n{name}\n",
             f"%DESC%\n{desc}\n"]
    if url:
        lines.append(f"%URL%\n{url}\n")
    lines += [f"%ARCH%\n{arch}\n", "%BUILDDATE%\n1709283412\n",
              "%INSTALLDATE%\n1711000000\n",
              "%PACKAGER%\nArch Linux Packager <packager@archlinux.org>\n",
              "%SIZE%\n1048576\n", "%REASON%\n1\n", "%LICENSE%\nGPL-3.0-or-later\n",
              "%VALIDATION%\npgp\n"]
    lines += list(extra)
    return "\n".join(lines) + "\n"


ARCH_PACKAGES = [
    ("bash", "5.2.026-2", "The GNU Bourne Again shell", "x86_64",
     "https://www.gnu.org/software/bash/bash.html"),
    ("filesystem", "2024.01.31-1", "Base Arch Linux files", "any",
     "https://archlinux.org"),
    ("pacman", "6.1.0-3", "A library-based package manager with dependency support",
     "x86_64", "https://www.archlinux.org/pacman/"),
    ("linux-api-headers", "6.8-1", "Kernel headers sanitized for use in userspace",
     "any", "https://www.gnu.org/software/libc"),
    ("iana-etc", "20240305-1", "/etc/protocols and /etc/services provided by IANA",
     "any", "https://www.iana.org/protocols"),
    ("zlib", "1:1.3.1-1", "Compression library implementing the deflate compression "
     "method found in gzip and PKZIP", "x86_64", "https://www.zlib.net/"),
    ("nourl", "0.1-1", "A package without a home page", "x86_64", None),
]

APK_INSTALLED = """\
C:Q1Rj0xRZb0H8ZrA9VvZ2v3mK0e5XQ=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407913
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705066043
c:8e8e9c3eb1c58c1eae9fa3c1aa1ac69ef0c0b0b4
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1l5XJjmZ5FMmN1nEgcO5Qk5Q1yT4=

C:Q1V2Y0mZ3qO1Cz5mFv+7X0yC2kYfY=
P:busybox
V:1.36.1-r15
A:x86_64
S:509568
I:959488
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1705066043
c:2ab0a4e3b1f6a1b9d5e1c0b1f0c2d1a0e9f8b7c6
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox
a:0:0:755

C:Q1wlWdTw3oXbyyFNa/7UmuzH6gKkI=
P:alpine-baselayout
V:3.4.3-r2
A:x86_64
S:8855
I:331776
T:Alpine base dir structure and init scripts
U:https://git.alpinelinux.org/cgit/aports/tree/main/alpine-baselayout
L:GPL-2.0-only
o:alpine-baselayout
m:Natanael Copa <ncopa@alpinelinux.org>
t:1704891000
c:0b0c1d0e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c

C:Q1Ajx7n5S4C3cDq2BkF1gVq8vN0hY=
P:apk-tools
V:2.14.0-r5
A:x86_64
S:120973
I:307200
T:Alpine Package Keeper - package manager for alpine
U:https://gitlab.alpinelinux.org/alpine/apk-tools
L:GPL-2.0-only
o:apk-tools
m:Natanael Copa <ncopa@alpinelinux.org>
t:1705066043
c:5d3b1c7a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c

C:Q1BbbbXHbsWP02FkNj4pEzQdX6jfM=
P:tzdata
V:2024a-r0
A:x86_64
S:151240
I:665600
T:Timezone data
U:https://www.iana.org/time-zones
L:Public-Domain
o:tzdata
m:Natanael Copa <ncopa@alpinelinux.org>
t:1706713400
c:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b

"""

# ---------------------------------------------------------------------------------
# Windows registry hives (hivexregedit --merge into an empty hive)


def empty_hive():
    """A hive with only its root key (and a security cell): what hivexregedit needs."""
    bin_ = bytearray(32)
    bin_[0:4] = b"hbin"

    def cell(data):
        off = len(bin_)
        size = -(-(4 + len(data)) // 8) * 8
        bin_.extend(struct.pack("<i", -size))
        bin_.extend(data)
        bin_.extend(bytes(off + size - len(bin_)))
        return off

    sk_off = len(bin_)
    sd = bytes([1, 0, 0x04, 0x80] + [0] * 16)
    sk = b"sk\0\0" + struct.pack("<IIII", sk_off, sk_off, 1, len(sd)) + sd
    cell(sk)
    nk = bytearray(76)
    nk[0:2] = b"nk"
    nk[2:4] = struct.pack("<H", 0x2C)
    for o, v in ((16, 0), (20, 0), (28, 0xFFFFFFFF), (32, 0xFFFFFFFF), (36, 0),
                 (40, 0xFFFFFFFF), (44, sk_off), (48, 0xFFFFFFFF)):
        nk[o:o + 4] = struct.pack("<I", v)
    nk[72:74] = struct.pack("<H", 4)
    root = cell(bytes(nk) + b"ROOT")
    length = -(-(len(bin_) + 8) // 4096) * 4096
    free = length - len(bin_)
    bin_.extend(struct.pack("<i", free))
    bin_.extend(bytes(length - len(bin_)))
    bin_[8:12] = struct.pack("<I", length)
    base = bytearray(4096)
    base[0:4] = b"regf"
    for o, v in ((4, 1), (8, 1), (20, 1), (24, 3), (32, 1), (36, root), (40, length),
                 (44, 1)):
        base[o:o + 4] = struct.pack("<I", v)
    csum = 0
    for i in range(0, 508, 4):
        csum ^= struct.unpack_from("<I", base, i)[0]
    base[508:512] = struct.pack("<I", csum)
    return bytes(base) + bytes(bin_)


class Reg:
    """`.reg` text for hivexregedit (every parent key listed before its children)."""

    def __init__(self):
        self.text = "Windows Registry Editor Version 5.00\n"
        self.keys = set()

    def key(self, path):
        parts = path.split("\\")
        for i in range(1, len(parts) + 1):
            p = "\\".join(parts[:i])
            if p not in self.keys or i == len(parts):
                self.keys.add(p)
                self.text += f"\n[HKEY_LOCAL_MACHINE\\X\\{p}]\n"
        return self

    @staticmethod
    def q(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def sz(self, name, value):
        data = (value + "\0").encode("utf-16-le")
        self.text += f"{self.q(name)}=hex(1):{','.join(f'{b:02x}' for b in data)}\n"
        return self

    def dword(self, name, value):
        self.text += f"{self.q(name)}=dword:{value:08x}\n"
        return self

    def binary(self, name, data):
        self.text += f"{self.q(name)}=hex:{','.join(f'{b:02x}' for b in data)}\n"
        return self

    def build(self, path, work):
        with open(path, "wb") as f:
            f.write(empty_hive())
        reg = path + ".reg"
        with open(reg, "w") as f:
            f.write(self.text)
        run("hivexregedit", "--merge", "--prefix", "HKEY_LOCAL_MACHINE\\X", path, reg)
        os.remove(reg)


def guid_bytes(g):
    b = bytes.fromhex(g.replace("-", ""))
    return b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]


def windows_tree(tree, work, *, product, variant, edition, build, hostname, drives, apps):
    mkdirs(tree, "Windows/System32/config", "Program Files", "Users/Public",
           "Windows/Temp")
    write(tree, "Windows/System32/cmd.exe", pe_binary())
    write(tree, "Windows/System32/drivers/etc/hosts", "127.0.0.1 localhost\r\n")
    sw = Reg()
    sw.key("Microsoft\\Windows NT\\CurrentVersion") \
        .sz("ProductName", product).sz("InstallationType", variant) \
        .sz("EditionID", edition).sz("CurrentVersion", "6.3") \
        .sz("CurrentBuildNumber", build).sz("CurrentBuild", build) \
        .dword("CurrentMajorVersionNumber", 10).dword("CurrentMinorVersionNumber", 0) \
        .sz("SystemRoot", "C:\\Windows")
    for path, values in apps:
        sw.key(path)
        for k, v in values:
            sw.sz(k, v)
    sw.build(os.path.join(tree, "Windows/System32/config/SOFTWARE"), work)
    sy = Reg()
    sy.key("Select").dword("Current", 1).dword("Default", 1).dword("LastKnownGood", 2)
    sy.key("ControlSet001\\Services\\Tcpip\\Parameters").sz("Hostname", hostname) \
        .sz("Domain", "")
    sy.key("ControlSet001\\Control\\ComputerName\\ComputerName") \
        .sz("ComputerName", hostname.upper())
    sy.key("ControlSet002\\Services\\Tcpip\\Parameters").sz("Hostname", "OLD-NAME")
    sy.key("MountedDevices")
    for name, blob in drives:
        sy.binary(name, blob)
    sy.build(os.path.join(tree, "Windows/System32/config/SYSTEM"), work)


WIN_APPS = [
    ("Microsoft\\Windows\\CurrentVersion\\Uninstall\\7-Zip",
     [("DisplayName", "7-Zip 23.01 (x64)"), ("DisplayVersion", "23.01"),
      ("Publisher", "Igor Pavlov"), ("InstallLocation", "C:\\Program Files\\7-Zip\\"),
      ("URLInfoAbout", "https://www.7-zip.org/")]),
    ("Microsoft\\Windows\\CurrentVersion\\Uninstall\\"
     "{AC76BA86-7AD7-1033-7B44-AC0F074E4100}",
     [("DisplayName", "Adobe Acrobat Reader DC"), ("DisplayVersion", "23.001.20093"),
      ("Publisher", "Adobe Systems Incorporated"), ("Comments", "Line one\r\nLine two"),
      ("URLInfoAbout", "https://www.adobe.com"), ("InstallDate", "20240229")]),
    ("Microsoft\\Windows\\CurrentVersion\\Uninstall\\NoDisplayName",
     [("DisplayVersion", "1.0")]),
    ("Microsoft\\Windows\\CurrentVersion\\Uninstall\\Mozilla Firefox 124.0 (x64 en-US)",
     [("DisplayName", "Mozilla Firefox (x64 en-US)"), ("DisplayVersion", "124.0"),
      ("Publisher", "Mozilla"), ("InstallLocation", "C:\\Program Files\\Mozilla Firefox"),
      ("URLInfoAbout", "https://www.mozilla.org")]),
    ("WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Notepad++",
     [("DisplayName", "Notepad++ (32-bit x86)"), ("DisplayVersion", "8.6.4"),
      ("Publisher", "Notepad++ Team"), ("Comments", "A <free> & \"open\" editor")]),
]


def cdrom_blob():
    return "\\??\\IDE#CdRomQEMU_DVD-ROM_2.5+#5&1#{53f56308-b6bf-11d0-94f2-00a0c91efb8b}" \
        .encode("utf-16-le")


# ---------------------------------------------------------------------------------
# The guests


def debian_tree(out):
    tree = os.path.join(out, "debian-tree")
    if not os.path.isdir(tree):
        tmp = tree + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        mirror = os.environ.get("SKIFF_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        run("debootstrap", "--variant=minbase", "bookworm", tmp, mirror)
        # What an installed system has and debootstrap leaves out; apt's lists and the
        # downloaded .debs are not needed.
        shutil.rmtree(os.path.join(tmp, "var/cache/apt/archives"), ignore_errors=True)
        shutil.rmtree(os.path.join(tmp, "var/lib/apt/lists"), ignore_errors=True)
        os.rename(tmp, tree)
    write(tree, "etc/hostname", "debian-oracle\n")
    write(tree, "etc/fstab",
          "# /etc/fstab: static file system information.\n"
          f"UUID={U['deb-root']} /               ext4    errors=remount-ro 0       1\n"
          f"UUID=1A2B-3C4D  /boot/efi       vfat    umask=0077      0       1\n"
          f"UUID={U['deb-swap']} none            swap    sw              0       0\n"
          "tmpfs /tmp tmpfs defaults 0 0\n"
          "/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n")
    mkdirs(tree, "boot/efi")
    return tree


def du(tree):
    n = 0
    for dirpath, dirs, files in os.walk(tree):
        for f in files + dirs:
            try:
                n += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return n


def build_debian(out, work):
    tree = debian_tree(out)
    img = os.path.join(out, "debian.img")
    root_size = (du(tree) * 13 // 10 // MIB + 64) // 4 * 4
    parts = new_disk(img, [
        (16, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a01",
         "EFI System Partition"),
        (root_size, "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
         "0e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a02", "root"),
        (16, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "0e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a03",
         "swap"),
    ], "gpt", "6d2a8e01-3b4c-4d5e-8f60-718293a4b5c6")
    fs = os.path.join(work, "fs")
    vfat(fs, 16 * MIB, U["deb-esp"], "ESP",
         [("EFI/debian/grubx64.efi", "not a boot loader\n")])
    dd_into(fs, img, parts[0][0])
    ext4(fs, root_size * MIB, tree, U["deb-root"], "debian-root")
    dd_into(fs, img, parts[1][0])
    swap(fs, 16 * MIB, U["deb-swap"], "swap")
    dd_into(fs, img, parts[2][0])
    return img


def usrmerge(tree):
    for d in ("bin", "sbin", "lib", "lib64"):
        mkdirs(tree, "usr/" + d)
        symlink(tree, d, "usr/" + d)


def build_rhel(out, work):
    tree = os.path.join(work, "root")
    usrmerge(tree)
    mkdirs(tree, "boot", "home", "root", "tmp", "var/tmp", "proc", "sys", "dev", "run")
    write(tree, "usr/bin/bash", elf_binary(), 0o755)
    symlink(tree, "usr/bin/sh", "bash")
    write(tree, "usr/lib/os-release",
          'NAME="Red Hat Enterprise Linux"\nVERSION="9.4 (Plow)"\nID="rhel"\n'
          'ID_LIKE="fedora"\nVERSION_ID="9.4"\nPLATFORM_ID="platform:el9"\n'
          'PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\nANSI_COLOR="0;31"\n'
          'CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos"\n'
          'HOME_URL="https://www.redhat.com/"\n')
    symlink(tree, "etc/os-release", "../usr/lib/os-release")
    write(tree, "etc/redhat-release", "Red Hat Enterprise Linux release 9.4 (Plow)\n")
    symlink(tree, "etc/system-release", "redhat-release")
    write(tree, "etc/hostname", "rhel9-oracle.example.com\n")
    write(tree, "etc/hosts", "127.0.0.1   localhost localhost.localdomain\n")
    write(tree, "etc/fstab",
          "#\n# /etc/fstab\n# Created by anaconda\n#\n"
          "/dev/mapper/rhel-root   /                       xfs     defaults        0 0\n"
          f"UUID={U['rhel-boot']} /boot                   xfs     defaults        0 0\n"
          "/dev/mapper/rhel-swap   none                    swap    defaults        0 0\n")
    rpm_config(tree, "/var/lib/rpm")
    write(tree, "usr/bin/dnf", "#!/usr/bin/python3\n", 0o755)
    rpm_database(tree, "/var/lib/rpm", work, RHEL_PACKAGES)
    boot = os.path.join(work, "boot")
    write(boot, "grub2/grub.cfg", "# not a real grub.cfg\n")
    write(boot, "vmlinuz-5.14.0-427.13.1.el9_4.x86_64", "not a kernel\n")

    img = os.path.join(out, "rhel.img")
    parts = new_disk(img, [(64, "83", None, None), (272, "8e", None, None)], "dos",
                     "0x52484c39")
    lay = lvm_layout(img, parts[1][0], parts[1][1], "rhel", [("root", 192), ("swap", 16)])
    fs = os.path.join(work, "fs")
    xfs(fs, 64 * MIB, boot, U["rhel-boot"], "boot", work)
    dd_into(fs, img, parts[0][0])
    xfs(fs, 192 * MIB, tree, U["rhel-root"], "root", work)
    scatter(fs, img, lay["root"])
    swap(fs, 16 * MIB, U["rhel-swap"], "")
    scatter(fs, img, lay["swap"])
    return img


def build_fedora(out, work):
    tree = os.path.join(work, "btrfs")
    root = os.path.join(tree, "root")
    usrmerge(root)
    mkdirs(root, "boot/efi", "home", "root", "tmp", "proc", "sys", "dev", "run", "var/tmp")
    write(root, "usr/bin/bash", elf_binary(), 0o755)
    symlink(root, "usr/bin/sh", "bash")
    write(root, "usr/lib/os-release",
          'NAME="Fedora Linux"\nVERSION="40 (Server Edition)"\nID=fedora\nVERSION_ID=40\n'
          'VERSION_CODENAME=""\nPLATFORM_ID="platform:f40"\n'
          'PRETTY_NAME="Fedora Linux 40 (Server Edition)"\nANSI_COLOR="0;38;2;60;110;180"\n'
          'LOGO=fedora-logo-icon\nCPE_NAME="cpe:/o:fedoraproject:fedora:40"\n'
          'HOME_URL="https://fedoraproject.org/"\nVARIANT="Server Edition"\n'
          'VARIANT_ID=server\n')
    symlink(root, "etc/os-release", "../usr/lib/os-release")
    write(root, "usr/lib/fedora-release", "Fedora release 40 (Forty)\n")
    symlink(root, "etc/fedora-release", "../usr/lib/fedora-release")
    symlink(root, "etc/redhat-release", "fedora-release")
    symlink(root, "etc/system-release", "fedora-release")
    write(root, "etc/hostname", "fedora-oracle\n")
    write(root, "etc/fstab",
          f"UUID={U['fed-btrfs']} /                       btrfs   subvol=root,compress=zstd:1 0 0\n"
          f"UUID={U['fed-boot']} /boot                   ext4    defaults        1 2\n"
          "UUID=F0ED-0001          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n"
          f"UUID={U['fed-btrfs']} /home                   btrfs   subvol=home,compress=zstd:1 0 0\n")
    rpm_config(root, "/usr/lib/sysimage/rpm")
    write(root, "usr/bin/dnf-3", "#!/usr/bin/python3\n", 0o755)
    symlink(root, "usr/bin/dnf", "dnf-3")
    rpm_database(root, "/usr/lib/sysimage/rpm", work, FEDORA_PACKAGES)
    symlink(root, "var/lib/rpm", "../../usr/lib/sysimage/rpm")
    write(tree, "home/fedora/.bashrc", "# .bashrc\n")
    boot = os.path.join(work, "boot")
    write(boot, "loader/entries/fedora.conf", "title Fedora Linux 40\n")
    mkdirs(boot, "efi")
    write(boot, "vmlinuz-6.8.5-301.fc40.x86_64", "not a kernel\n")

    img = os.path.join(out, "fedora.img")
    parts = new_disk(img, [
        (16, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "f3d0ea00-1111-4000-8000-000000000001",
         "EFI System Partition"),
        (32, "BC13C2FF-59E6-4262-A352-B275FD6F7172", "f3d0ea00-1111-4000-8000-000000000002",
         None),
        (160, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "f3d0ea00-1111-4000-8000-000000000003",
         None),
    ], "gpt", "f3d0ea00-2222-4000-8000-000000000000")
    fs = os.path.join(work, "fs")
    vfat(fs, 16 * MIB, U["fed-esp"], "EFI", [("EFI/fedora/shimx64.efi", "not a shim\n")])
    dd_into(fs, img, parts[0][0])
    ext4(fs, 32 * MIB, boot, U["fed-boot"], "boot")
    dd_into(fs, img, parts[1][0])
    blank(fs, 160 * MIB)
    run("mkfs.btrfs", "-q", "-f", "-U", U["fed-btrfs"], "-L", "fedora", "--rootdir", tree,
        "--subvol", "root", "--subvol", "home", fs)
    dd_into(fs, img, parts[2][0])
    return img


def build_arch(out, work):
    tree = os.path.join(work, "root")
    usrmerge(tree)
    mkdirs(tree, "boot", "home", "root", "tmp", "proc", "sys", "dev", "run")
    write(tree, "usr/bin/bash", elf_binary(), 0o755)
    symlink(tree, "usr/bin/sh", "bash")
    write(tree, "usr/lib/os-release",
          'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n'
          'ANSI_COLOR="38;2;23;147;209"\nHOME_URL="https://archlinux.org/"\n'
          'LOGO=archlinux-logo\n')
    symlink(tree, "etc/os-release", "../usr/lib/os-release")
    write(tree, "etc/arch-release", "")
    write(tree, "etc/hostname", "arch-oracle\n")
    write(tree, "etc/fstab",
          "# Static information about the filesystems.\n"
          "# <file system> <dir> <type> <options> <dump> <pass>\n"
          f"# /dev/vda1\nUUID={U['arch-root']}\t/\text4\trw,relatime\t0 1\n\n")
    db = "var/lib/pacman/local"
    write(tree, db + "/ALPM_DB_VERSION", "9\n")
    for name, ver, desc, arch, url in ARCH_PACKAGES:
        d = f"{db}/{name}-{ver}"
        write(tree, d + "/desc", pacman_desc(name, ver, desc, arch, url))
        write(tree, d + "/files", "%FILES%\nusr/\n\n")
    # A directory that is not a package (corrupt: no desc).
    mkdirs(tree, db + "/broken-1.0-1")
    img = os.path.join(out, "arch.img")
    parts = new_disk(img, [(48, "83", None, None)], "dos", "0x0a7c4001")
    fs = os.path.join(work, "fs")
    ext4(fs, 48 * MIB, tree, U["arch-root"], "")
    dd_into(fs, img, parts[0][0])
    return img


def build_alpine(out, work):
    tree = os.path.join(work, "root")
    mkdirs(tree, "bin", "sbin", "usr/bin", "lib", "home", "root", "tmp", "proc", "sys",
           "dev", "var")
    write(tree, "bin/busybox", elf_binary(), 0o755)
    for b in ("sh", "ls", "echo", "rm"):
        symlink(tree, "bin/" + b, "/bin/busybox")
    write(tree, "etc/os-release",
          'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'
          'PRETTY_NAME="Alpine Linux v3.19"\nHOME_URL="https://alpinelinux.org/"\n'
          'BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"\n')
    write(tree, "etc/alpine-release", "3.19.1\n")
    write(tree, "etc/hostname", "alpine-oracle\n")
    write(tree, "etc/hosts", "127.0.0.1\tlocalhost localhost.localdomain\n")
    write(tree, "etc/fstab", f"UUID={U['alpine-root']}\t/\text4\trw,relatime 0 1\n"
                             "/dev/cdrom\t/media/cdrom\tiso9660\tnoauto,ro 0 0\n"
                             "/dev/usbdisk\t/media/usb\tvfat\tnoauto 0 0\n"
                             "tmpfs\t/tmp\ttmpfs\tnosuid,nodev\t0\t0\n")
    write(tree, "lib/apk/db/installed", APK_INSTALLED)
    img = os.path.join(out, "alpine.img")
    ext4(img, 40 * MIB, tree, U["alpine-root"], "alpine")
    return img


def build_coreos(out, work):
    root = os.path.join(work, "root")
    mkdirs(root, "usr", "root", "home", "var/log", "boot", "tmp", "proc", "sys", "dev")
    write(root, "etc/coreos/update.conf", "GROUP=stable\n")
    symlink(root, "etc/os-release", "../usr/lib/os-release")
    symlink(root, "etc/lsb-release", "../usr/share/coreos/lsb-release")
    write(root, "etc/hostname", "coreos-oracle\n")
    symlink(root, "bin", "usr/bin")
    symlink(root, "lib64", "usr/lib64")
    usr = os.path.join(work, "usr")
    mkdirs(usr, "local", "lib64", "sbin", "share/doc")
    write(usr, "bin/bash", elf_binary(), 0o755)
    write(usr, "lib/os-release",
          'NAME="Container Linux by CoreOS"\nID=coreos\nVERSION=2345.3.0\n'
          'VERSION_ID=2345.3.0\nBUILD_ID=2020-03-02-1520\n'
          'PRETTY_NAME="Container Linux by CoreOS 2345.3.0 (Rhyolite)"\n'
          'ANSI_COLOR="38;5;75"\nHOME_URL="https://coreos.com/"\n')
    write(usr, "share/coreos/lsb-release",
          'DISTRIB_ID="Container Linux by CoreOS"\nDISTRIB_RELEASE=2345.3.0\n'
          'DISTRIB_CODENAME="Rhyolite"\n'
          'DISTRIB_DESCRIPTION="Container Linux by CoreOS 2345.3.0 (Rhyolite)"\n')
    img = os.path.join(out, "coreos.img")
    parts = new_disk(img, [
        (32, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "c0e05000-1111-4000-8000-000000000001",
         "ROOT"),
        (32, "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6", "c0e05000-1111-4000-8000-000000000002",
         "USR-A"),
    ], "gpt", "c0e05000-2222-4000-8000-000000000000")
    fs = os.path.join(work, "fs")
    ext4(fs, 32 * MIB, root, U["coreos-root"], "ROOT")
    dd_into(fs, img, parts[0][0])
    ext4(fs, 32 * MIB, usr, U["coreos-usr"], "USR-A")
    dd_into(fs, img, parts[1][0])
    return img


def build_windows(out, work):
    img = os.path.join(out, "windows.img")
    sig = 0x57494E31
    parts = new_disk(img, [(16, "7", None, None), (64, "7", None, None)], "dos", hex(sig))
    c_off = parts[1][0] * SECTOR
    drives = [
        ("\\DosDevices\\C:", struct.pack("<IQ", sig, c_off)),
        ("\\DosDevices\\D:", cdrom_blob()),
        ("\\??\\Volume{4b1e7a3c-0000-0000-0000-100000000000}",
         struct.pack("<IQ", sig, parts[0][0] * SECTOR)),
    ]
    tree = os.path.join(work, "c")
    windows_tree(tree, work, product="Windows 10 Pro", variant="Client",
                 edition="Professional", build="19045", hostname="WIN10-ORACLE",
                 drives=drives, apps=WIN_APPS)
    sysres = os.path.join(work, "sysres")
    write(sysres, "Boot/BCD", "not a BCD store\n")
    write(sysres, "bootmgr", "not a boot manager\n")
    fs = os.path.join(work, "fs")
    ntfs(fs, 16 * MIB, U["win-sysres"], "System Reserved", sysres, parts[0][0])
    dd_into(fs, img, parts[0][0])
    ntfs(fs, 64 * MIB, U["win-c"], "Windows", tree, parts[1][0])
    dd_into(fs, img, parts[1][0])
    return img


def build_win2k22(out, work):
    img = os.path.join(out, "win2k22.img")
    c_guid = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
    parts = new_disk(img, [
        (16, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "7a6b5c4d-3e2f-4a1b-9c8d-000000000001",
         "EFI system partition"),
        (16, "E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "7a6b5c4d-3e2f-4a1b-9c8d-000000000002",
         "Microsoft reserved partition"),
        (64, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", c_guid, "Basic data partition"),
    ], "gpt", "7a6b5c4d-3e2f-4a1b-9c8d-aaaaaaaaaaaa")
    drives = [("\\DosDevices\\C:", b"DMIO:ID:" + guid_bytes(c_guid))]
    tree = os.path.join(work, "c")
    windows_tree(tree, work, product="Windows Server 2022 Standard", variant="Server",
                 edition="ServerStandard", build="20348", hostname="WIN2K22-ORACLE",
                 drives=drives, apps=WIN_APPS[:2])
    fs = os.path.join(work, "fs")
    vfat(fs, 16 * MIB, "EF150001", "", [("EFI/Microsoft/Boot/bootmgfw.efi", "no\n")])
    dd_into(fs, img, parts[0][0])
    ntfs(fs, 64 * MIB, U["win22-c"], "", tree, parts[2][0])
    dd_into(fs, img, parts[2][0])
    return img


UBUNTU_STATUS = """\
Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 394
Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>
Architecture: amd64
Version: 12ubuntu4.6
Replaces: base, dpkg (<= 1.15.0), miscutils
Provides: base
Depends: libc6 (>= 2.34), libcrypt1 (>= 1:4.4.10-10ubuntu3)
Conffiles:
 /etc/debian_version 5aa6c1cb4e2ea53d7bd6d8f1a0e7c2f0
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy of a Debian system, and
 several important miscellaneous files, such as /etc/debian_version,
 /etc/host.conf, /etc/issue, /etc/motd, /etc/profile, and others,
 and the text of several common licenses in use on Debian systems.
Homepage: https://tracker.debian.org/pkg/base-files

Package: libgcc-s1
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 140
Maintainer: Ubuntu Core developers <ubuntu-devel-discuss@lists.ubuntu.com>
Architecture: amd64
Multi-Arch: same
Source: gcc-12 (12.3.0-1ubuntu1~22.04)
Version: 12.3.0-1ubuntu1~22.04
Depends: gcc-12-base (= 12.3.0-1ubuntu1~22.04), libc6 (>= 2.35)
Description: GCC support library
 Shared version of the support library, a library of internal subroutines
 that GCC uses to overcome shortcomings of particular machines, or
 special needs for some languages.
Homepage: http://gcc.gnu.org/

Package: old-config-only
Status: deinstall ok config-files
Priority: optional
Section: misc
Installed-Size: 12
Maintainer: Nobody <nobody@example.com>
Architecture: all
Version: 1.0-1
Description: removed, its configuration files left

Package: tzdata
Status: install ok installed
Priority: required
Section: localization
Installed-Size: 3876
Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>
Architecture: all
Multi-Arch: foreign
Version: 2024a-0ubuntu0.22.04
Replaces: libc0.1, libc0.3, libc6, libc6.1
Provides: tzdata-bookworm
Depends: debconf (>= 0.5) | debconf-2.0
Description: time zone and daylight-saving time data
 This package contains data required for the implementation of
 standard local time for many representative locations around the globe.
Homepage: https://www.iana.org/time-zones

"""


def build_ubuntu(out, work):
    tree = os.path.join(work, "root")
    usrmerge(tree)
    mkdirs(tree, "boot", "home", "root", "tmp", "proc", "sys", "dev", "run", "var/tmp")
    write(tree, "usr/bin/dash", elf_binary(), 0o755)
    symlink(tree, "usr/bin/sh", "dash")
    write(tree, "usr/lib/os-release",
          'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
          'VERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\n'
          'ID_LIKE=debian\nHOME_URL="https://www.ubuntu.com/"\nUBUNTU_CODENAME=jammy\n')
    symlink(tree, "etc/os-release", "../usr/lib/os-release")
    write(tree, "etc/lsb-release",
          "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n"
          'DISTRIB_DESCRIPTION="Ubuntu 22.04.4 LTS"\n')
    write(tree, "etc/debian_version", "bookworm/sid\n")
    write(tree, "etc/hostname", "ubuntu-oracle\n")
    write(tree, "etc/fstab",
          "# /etc/fstab: static file system information.\n"
          f"/dev/disk/by-uuid/{U['ubuntu-root']} / ext4 defaults 0 1\n"
          "/swap.img\tnone\tswap\tsw\t0\t0\n")
    write(tree, "var/lib/dpkg/status", UBUNTU_STATUS)
    img = os.path.join(out, "ubuntu.img")
    parts = new_disk(img, [(32, "83", None, None)], "dos", "0x0b0e7e22")
    fs = os.path.join(work, "fs")
    ext4(fs, 32 * MIB, tree, U["ubuntu-root"], "cloudimg-rootfs")
    dd_into(fs, img, parts[0][0])
    return img


ROCKY_PACKAGES = [
    dict(name="rocky-release", version="9.3", release="1.2.el9", arch="noarch",
         summary="Rocky Linux release files", url="https://rockylinux.org/",
         description="Rocky Linux release files."),
    dict(name="coreutils", version="8.32", release="34.el9",
         summary="A set of basic GNU tools commonly used in shell scripts",
         url="https://www.gnu.org/software/coreutils/",
         description="These are the GNU core utilities."),
]


def build_rocky(out, work):
    tree = os.path.join(work, "root")
    usrmerge(tree)
    mkdirs(tree, "boot", "home", "root", "tmp", "proc", "sys", "dev", "run", "var/tmp")
    write(tree, "usr/bin/bash", elf_binary(), 0o755)
    symlink(tree, "usr/bin/sh", "bash")
    write(tree, "etc/os-release",
          'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\n'
          'ID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\nPLATFORM_ID="platform:el9"\n'
          'PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\nANSI_COLOR="0;32"\n'
          'CPE_NAME="cpe:/o:rocky:rocky:9::baseos"\nHOME_URL="https://rockylinux.org/"\n')
    write(tree, "etc/rocky-release", "Rocky Linux release 9.3 (Blue Onyx)\n")
    symlink(tree, "etc/redhat-release", "rocky-release")
    symlink(tree, "etc/system-release", "rocky-release")
    write(tree, "etc/hostname", "rocky-oracle\n")
    write(tree, "etc/fstab",
          f"UUID={U['rocky-root']} /                       ext4    defaults        1 1\n")
    rpm_config(tree, "/var/lib/rpm")
    write(tree, "usr/bin/dnf", "#!/usr/bin/python3\n", 0o755)
    rpm_database(tree, "/var/lib/rpm", work, ROCKY_PACKAGES)
    img = os.path.join(out, "rocky.img")
    parts = new_disk(img, [(48, "83", None, None)], "dos", "0x20c6e993")
    fs = os.path.join(work, "fs")
    ext4(fs, 48 * MIB, tree, U["rocky-root"], "")
    dd_into(fs, img, parts[0][0])
    return img


def build_noos(out, work):
    """A data disk: an ext4 filesystem with files but no operating system."""
    tree = os.path.join(work, "data")
    write(tree, "backups/notes.txt", "no operating system here\n")
    mkdirs(tree, "etc")
    img = os.path.join(out, "noos.img")
    parts = new_disk(img, [(16, "83", None, None)], "dos", "0x0d47a001")
    fs = os.path.join(work, "fs")
    ext4(fs, 16 * MIB, tree, U["noos-data"], "data")
    dd_into(fs, img, parts[0][0])
    return img


GUESTS = {
    "debian": build_debian,
    "rhel": build_rhel,
    "fedora": build_fedora,
    "arch": build_arch,
    "alpine": build_alpine,
    "coreos": build_coreos,
    "windows": build_windows,
    "win2k22": build_win2k22,
    "ubuntu": build_ubuntu,
    "rocky": build_rocky,
    "noos": build_noos,
}


def fingerprint(name, out):
    """`RECIPE PACKAGES`: a hash of these recipes (what the cached images were built
    from) and, for debian, a hash of the package list debootstrap installed (`-` for the
    other guests, whose contents the recipes fix entirely)."""
    with open(os.path.abspath(__file__), "rb") as f:
        recipe = hashlib.sha256(f.read()).hexdigest()[:16]
    packages = "-"
    if name == "debian":
        h = hashlib.sha256()
        status = os.path.join(out, "debian-tree/var/lib/dpkg/status")
        with open(status, "rb") as f:
            for line in f:
                if line.startswith((b"Package:", b"Version:", b"Architecture:")):
                    h.update(line)
        packages = h.hexdigest()[:16]
    return f"{recipe} {packages}"


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "list":
        print("\n".join(GUESTS))
        return
    if len(sys.argv) != 4 or sys.argv[1] not in ("build", "fingerprint") \
            or sys.argv[2] not in GUESTS:
        raise SystemExit(__doc__)
    name, out = sys.argv[2], os.path.abspath(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    if sys.argv[1] == "fingerprint":
        print(fingerprint(name, out))
        return
    work = tempfile.mkdtemp(prefix=f"skiff-guest-{name}-", dir=out)
    try:
        img = GUESTS[name](out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(img)


if __name__ == "__main__":
    main()
