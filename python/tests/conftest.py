"""Guest images for the Python tests, built with the real tools (mkfs.ext4 -d,
mkfs.vfat + mcopy, sfdisk, dd), as the Rust integration tests build theirs."""

import os
import shutil
import subprocess

import pytest

DEBIAN_ROOT_UUID = "0a1b2c3d-1111-2222-3333-444455556666"
DEBIAN_ESP_UUID = "12AB-34CD"


def run(*args, input=None):
    """Runs a tool; fails the test with its stderr if it fails."""
    p = subprocess.run(args, input=input, capture_output=True)
    if p.returncode != 0:
        raise AssertionError(f"{args}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def write_tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


def mkfs_ext4(root, out, size, *extra):
    run("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", *extra, "-d", root, out, size)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Built once per run: a bare ext4 guest, a Debian-like GPT disk (ESP + root), a FAT
    disk, a blank disk and a qcow2 overlay naming a backing file."""
    d = tmp_path_factory.mktemp("images")
    out = {}

    # A bare ext4 filesystem with a hostname, a few files, a symlink.
    root = d / "small-root"
    write_tree(
        root,
        {
            "etc/hostname": "pyguest\n",
            "etc/motd": "hello from skiff\n",
            "data/big.bin": os.urandom(3 << 20),
            "data/sub/a.txt": "a\n",
        },
    )
    os.symlink("../etc/hostname", root / "data/link")
    out["ext4"] = str(d / "guest.img")
    mkfs_ext4(str(root), out["ext4"], "16M")
    out["ext4_big"] = (root / "data/big.bin").read_bytes()

    # A Debian-like GPT disk: sda1 an ESP (FAT32), sda2 the ext4 root with an fstab.
    root = d / "debian-root"
    write_tree(
        root,
        {
            "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
            'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
            "etc/hostname": "debian-py\n",
            "etc/fstab": f"UUID={DEBIAN_ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
            f"UUID={DEBIAN_ESP_UUID} /boot/efi vfat umask=0077 0 1\n",
            "etc/debian_version": "12.5\n",
            "var/lib/dpkg/status": "Package: dash\nStatus: install ok installed\n"
            "Version: 0.5.12-2\nArchitecture: amd64\n\n",
            "boot/efi/.keep": "",
        },
    )
    os.makedirs(root / "usr/bin")
    shutil.copy("/bin/dash", root / "usr/bin/dash")
    os.symlink("dash", root / "usr/bin/sh")
    os.symlink("usr/bin", root / "bin")
    ext4 = d / "root.ext4"
    mkfs_ext4(str(root), str(ext4), "16M", "-U", DEBIAN_ROOT_UUID, "-L", "root")
    esp = d / "esp.vfat"
    run("mkfs.vfat", "-C", "-F", "32", "-i", "12AB34CD", "-n", "ESP", str(esp), "34816")
    hello = d / "hello.txt"
    hello.write_text("efi\n")
    run("mcopy", "-i", str(esp), str(hello), "::/hello.txt")
    img = d / "debian.img"
    with open(img, "wb") as f:
        f.truncate(56 << 20)
    run(
        "sfdisk",
        "-q",
        str(img),
        input=b"label: gpt\n"
        b"start=2048, size=69632, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n"
        b"start=71680, size=32768, type=0FC63DAF-8483-4772-8E79-3D69C4773F88, name=root\n",
    )
    for part, start in ((esp, 2048), (ext4, 71680)):
        run("dd", f"if={part}", f"of={img}", "bs=512", f"seek={start}",
            "conv=notrunc,sparse", "status=none")
    out["debian"] = str(img)

    # A FAT disk (no partition table).
    fat = d / "fat.img"
    run("mkfs.vfat", "-C", "-F", "16", "-n", "PYFAT", str(fat), "16384")
    run("mmd", "-i", str(fat), "::/docs")
    note = d / "note.txt"
    note.write_text("fat note\n")
    run("mcopy", "-i", str(fat), str(note), "::/docs/note.txt")
    out["fat"] = str(fat)

    # A blank disk and a qcow2 overlay on a backing file.
    blank = d / "blank.img"
    with open(blank, "wb") as f:
        f.truncate(4 << 20)
    out["blank"] = str(blank)
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", out["ext4"], "-F", "raw",
        str(d / "overlay.qcow2"))
    out["overlay"] = str(d / "overlay.qcow2")
    return out


@pytest.fixture
def writable_ext4(images, tmp_path):
    """A fresh copy of the bare ext4 guest, to write to."""
    p = tmp_path / "rw.img"
    shutil.copy(images["ext4"], p)
    return str(p)
