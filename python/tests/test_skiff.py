"""The skiff Python bindings against real appliances: launch, read, write (checked with
debugfs and e2fsck afterwards), inspect, pool, errors, the GIL released during calls."""

import os
import subprocess
import threading

import pytest

import skiff

# Generous: TCG on two shared cores can be slow.
SLOW = dict(timeout=120, call_timeout=120)
ROOT_UUID = "0a1b2c3d-1111-2222-3333-444455556666"  # conftest.DEBIAN_ROOT_UUID


def debugfs(img, request):
    return subprocess.run(
        ["debugfs", "-R", request, img], capture_output=True, check=True
    ).stdout


def e2fsck_clean(img):
    p = subprocess.run(["e2fsck", "-fn", img], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def qemu_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_readme_example(images, capsys):
    # Exactly as in the README (with the test image's path).
    with skiff.launch(drives=[images["ext4"]], **SLOW) as g:
        print(g.read_file("/etc/hostname").decode())
    assert capsys.readouterr().out == "pyguest\n\n"


def test_read_calls(images):
    with skiff.launch(images["ext4"], **SLOW) as g:
        assert [d.name for d in g.devices()] == ["/dev/sda"]
        assert g.devices()[0].readonly
        assert g.ls("/etc") == ["hostname", "motd"]
        data = g.read_file("/data/big.bin")
        assert isinstance(data, bytes) and data == images["ext4_big"]
        assert g.pread("/data/big.bin", 1000, 10) == images["ext4_big"][1000:1010]
        st = g.stat("/etc/hostname")
        assert st.is_file and st.size == 8 and st.mode == 0o644
        assert g.lstat("/data/link").is_symlink
        assert g.stat("/data/link").size == 8
        assert g.readlink("/data/link") == "../etc/hostname"
        names = {e.name: e for e in g.readdir("/data")}
        assert names["sub"].stat.is_dir and names["big.bin"].stat.size == 3 << 20
        assert sorted(g.find("/data")) == ["big.bin", "link", "sub", "sub/a.txt"]
        assert g.exists("/etc") and g.is_dir("/etc") and not g.is_file("/etc")
        assert not g.exists("/nope")
        v = g.statvfs("/")
        assert v.blocks > 0 and v.blocks_free <= v.blocks
        assert [m.mountpoint for m in g.mounts()] == ["/"]
        assert g.filesystems()[0].fstype == "ext4"
        assert g.pread_device("/dev/sda", 1024 + 56, 2) == b"\x53\xef"  # ext4 magic
        assert repr(st).startswith("Stat(file_type='regular', mode=420,")
        assert repr(g) == "<skiff.Guest /dev/sda>"


def test_download_upload(images, writable_ext4, tmp_path):
    out = tmp_path / "big.out"
    with skiff.launch(images["ext4"], **SLOW) as g:
        assert g.download("/data/big.bin", out) == 3 << 20
    assert out.read_bytes() == images["ext4_big"]
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(1 << 20) * 2)
    with skiff.launch(writable_ext4, readonly=False, **SLOW) as g:
        assert g.upload(str(src), "/up.bin") == 2 << 20
    assert debugfs(writable_ext4, "cat /up.bin") == src.read_bytes()
    e2fsck_clean(writable_ext4)


def test_writes_checked_with_debugfs_and_e2fsck(writable_ext4):
    with skiff.launch(drives=[writable_ext4], readonly=False, **SLOW) as g:
        g.write_file("/etc/hostname", b"renamed\n")
        g.mkdir("/new")
        g.mkdir("/deep/er/dir", parents=True)
        g.write_file("/new/f.txt", "text as str\n")
        g.append("/new/f.txt", bytearray(b"more\n"))
        g.pwrite("/new/f.txt", 0, b"TEXT")
        g.symlink("f.txt", "/new/link")
        g.chmod("/new/f.txt", 0o600)
        g.chown("/new/f.txt", 1000, 100)
        g.utimens("/new/f.txt", 1_600_000_000, 1_700_000_000)
        g.rename("/etc/motd", "/new/motd")
        g.truncate("/data/big.bin", 4096)
        g.rm("/data/sub/a.txt")
        g.rmdir("/data/sub")
        g.touch("/new/empty")
        st = g.stat("/new/f.txt")
        assert (st.mode, st.uid, st.gid, st.mtime) == (0o600, 1000, 100, 1_700_000_000)
        g.sync()
    assert debugfs(writable_ext4, "cat /etc/hostname") == b"renamed\n"
    assert debugfs(writable_ext4, "cat /new/f.txt") == b"TEXT as str\nmore\n"
    assert debugfs(writable_ext4, "cat /new/motd") == b"hello from skiff\n"
    stat = debugfs(writable_ext4, "stat /new/f.txt").decode()
    assert "User:  1000" in stat and "Group:   100" in stat and "Mode:  0600" in stat
    assert b"Size: 4096" in debugfs(writable_ext4, "stat /data/big.bin")
    ls = debugfs(writable_ext4, "ls -l /data").decode()
    assert "sub" not in ls
    assert b"f.txt" in debugfs(writable_ext4, "stat /new/link")
    e2fsck_clean(writable_ext4)


def test_inspect_and_guest_mounts(images):
    # Without mounts, the guest is mounted the way it mounts itself: root + /boot/efi.
    with skiff.launch(images["debian"], **SLOW) as g:
        assert {(m.device, m.mountpoint) for m in g.mounts()} == {
            ("/dev/sda2", "/"),
            ("/dev/sda1", "/boot/efi"),
        }
        assert g.read_file("/etc/hostname") == b"debian-py\n"
        assert g.read_file("/boot/efi/hello.txt") == b"efi\n"
        [os_] = g.inspect_os()
        assert os_["root"] == "/dev/sda2"
        assert os_["type"] == "linux"
        assert os_["distro"] == "debian"
        # libguestfs (and skiff) take the point release from /etc/debian_version.
        assert os_["version"] == "12.5"
        assert os_["hostname"] == "debian-py"
        assert os_["arch"] == "x86_64"
        assert os_["package_format"] == "deb"
        assert {e["mountpoint"]: e["device"] for e in os_["fstab"]} == {
            "/": "/dev/sda2",
            "/boot/efi": "/dev/sda1",
        }
        # Mounted again after the inspection.
        assert g.read_file("/boot/efi/hello.txt") == b"efi\n"
        apps = g.applications()
        assert [a["name"] for a in apps["applications"]] == ["dash"]
        parts = g.partitions()
        assert [(p.name, p.table, p.label) for p in parts] == [
            ("/dev/sda1", "gpt", "esp"),
            ("/dev/sda2", "gpt", "root"),
        ]
        fs = {f.device: f for f in g.filesystems()}
        assert fs["/dev/sda1"].fstype == "vfat" and fs["/dev/sda2"].uuid == ROOT_UUID
    # Explicit mounts, and mount=False.
    with skiff.launch(images["debian"], mounts=["/dev/sda1"], **SLOW) as g:
        assert g.ls("/") == ["hello.txt"]
    with skiff.launch(images["debian"], mount=False, **SLOW) as g:
        assert g.mounts() == []
        g.mount("/dev/sda2", "/")
        g.mount("/dev/sda1", "/boot/efi", readonly=True)
        assert g.read_file("/boot/efi/hello.txt") == b"efi\n"
        g.umount("/boot/efi")
        assert [m.mountpoint for m in g.mounts()] == ["/"]


def test_fat(images):
    with skiff.launch([skiff.Drive(images["fat"], format="raw")], **SLOW) as g:
        assert g.ls("/") == ["docs"]
        assert g.read_file("/docs/note.txt") == b"fat note\n"


def test_pool(images):
    with skiff.Pool(size=1, **SLOW) as pool:
        assert pool.wait_ready(1, 120)
        for _ in range(2):
            with pool.acquire([images["ext4"]]) as g:
                assert g.read_file("/etc/hostname") == b"pyguest\n"
        with pool.acquire(images["debian"]) as g:
            assert g.read_file("/boot/efi/hello.txt") == b"efi\n"


def test_errors(images, tmp_path):
    with skiff.launch(images["ext4"], **SLOW) as g:
        with pytest.raises(skiff.RemoteError) as e:
            g.read_file("/missing")
        assert e.value.kind == "not found" and e.value.errno == 2
        assert isinstance(e.value, skiff.SkiffError)
        with pytest.raises(skiff.RemoteError) as e:
            g.write_file("/etc/hostname", b"x")
        assert e.value.kind == "read-only"
        with pytest.raises(skiff.RemoteError) as e:
            g.read_file("/etc")
        assert e.value.kind == "is a directory"
        with pytest.raises(skiff.ReadOnlyError):
            g.pwrite_device("/dev/sda", 0, b"x")
        # The session is still usable after refused calls.
        assert g.read_file("/etc/hostname") == b"pyguest\n"
        with pytest.raises(skiff.InvalidArgument):
            g.write_file("/x", 42)
    with pytest.raises(skiff.SessionClosed):
        g.ls("/")
    with pytest.raises(skiff.DiskNotFound) as e:
        skiff.launch(str(tmp_path / "nope.img"), **SLOW)
    assert e.value.path.endswith("nope.img")
    with pytest.raises(skiff.ImageRefused):
        skiff.launch(images["overlay"], **SLOW)
    # With backing=True the chain is followed (and checked).
    with skiff.launch(skiff.Drive(images["overlay"], backing=True), **SLOW) as g:
        assert g.read_file("/etc/hostname") == b"pyguest\n"
    with pytest.raises(skiff.NoMountPlan) as e:
        skiff.launch(images["blank"], **SLOW)
    assert "mount=False" in str(e.value)
    with pytest.raises(skiff.InvalidArgument):
        skiff.Drive("x.img", format="vmdk")
    with pytest.raises(skiff.LaunchError):
        skiff.launch(images["ext4"], backend="nope", **SLOW)


def test_context_manager_shuts_down_on_exception(images):
    with pytest.raises(RuntimeError):
        with skiff.launch(images["ext4"], **SLOW) as g:
            pid = g.qemu_pid
            assert qemu_alive(pid)
            raise RuntimeError("boom")
    assert g.closed
    assert not qemu_alive(pid)


def test_gil_released_during_calls(images):
    with skiff.launch(images["ext4"], **SLOW) as g:
        started, done = threading.Event(), threading.Event()
        seen = []

        def work():
            started.set()
            for _ in range(20):
                g.read_file("/data/big.bin")
            done.set()

        t = threading.Thread(target=work)
        t.start()
        started.wait()
        count = 0
        while not done.is_set():
            count += 1
            seen.append(count)
        t.join()
        # Python code ran in this thread while the other one was in its calls.
        assert count > 1000
