#!/usr/bin/env python3
"""The robustness figure: mutated disk images through the skiff CLI, in qemu.

Builds small base images with the real tools (ext4, FAT, MBR and GPT disks, and the
newer formats whose tools are installed: XFS, btrfs, NTFS, LVM2, LUKS2), then for COUNT
iterations takes a base, mutates it (bit flips, byte runs, truncations — mostly in the
first MiB, where the metadata is) and runs one `skiff shell` on it, read-only: the
guest is inspected and mounted the way it mounts itself, then every filesystem is listed,
walked and stat'ed. Each run is classified:

    ok            exit status 0, every command answered
    clean error   some command (or the launch) failed with a one-line `skiff: ...` error
    slow          timed out in the pool, answered when run again alone (see below)
    crash         the appliance crashed (a panic or CPU exception inside it)
    host panic    the skiff process panicked
    hang          no answer within the time limit (the run is killed)
    modified      the image bytes changed (disks are attached read-only)

The target is 0 of the last four. A run that timed out (hang) is run again alone at the
end, on an otherwise idle pool: only a hang that happens again counts as one; one that
does not is reported as "slow" (the machine was starved, not the appliance stuck). Not
part of the CI suite (it takes a while):

    fuzz/mutate.py [--count N] [--jobs J] [--seed S] [--keep DIR] [--only luks,xfs,...]

Images that end in anything but ok/clean error are kept under --keep (default
fuzz/mutate-failures/) for reproduction.
"""

import argparse
import concurrent.futures
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIFF = os.environ.get("SKIFF_BIN", os.path.join(ROOT, "target", "release", "skiff"))
LIMIT = 60  # seconds per run: far above a normal run (well under a second)
LUKS_KEY = "fuzzpass"  # the luks base's passphrase, given with --key
SCRIPT = b"-filesystems\n-mounts\n-find /\n-statvfs /\n-ll /\n-cat /etc/hostname\n"


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, **kw)


def have(tool):
    return shutil.which(tool) is not None


def tree(d):
    os.makedirs(os.path.join(d, "etc"), exist_ok=True)
    # /etc, /bin and /etc/fstab: a Linux root to inspection (libguestfs' rule), so the
    # partitioned bases are mounted the way the guest mounts itself.
    os.makedirs(os.path.join(d, "bin"), exist_ok=True)
    os.makedirs(os.path.join(d, "usr/share/doc/x"), exist_ok=True)
    with open(os.path.join(d, "etc/hostname"), "w") as f:
        f.write("mutant\n")
    with open(os.path.join(d, "etc/os-release"), "w") as f:
        f.write('ID=debian\nVERSION_ID="12"\n')
    with open(os.path.join(d, "etc/fstab"), "w") as f:
        f.write("LABEL=root / ext4 defaults 0 1\nLABEL=BOOT /boot vfat defaults 0 2\n")
    rnd = random.Random(1)
    for i in range(40):
        with open(os.path.join(d, "usr/share/doc/x", f"f{i}"), "wb") as f:
            f.write(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 9000))))
    os.symlink("../etc/hostname", os.path.join(d, "usr/link"))


def bases(work):
    """(name, path) of every base image the installed tools can make."""
    src = os.path.join(work, "src")
    tree(src)
    out = []

    def img(name, size):
        p = os.path.join(work, name)
        with open(p, "wb") as f:
            f.truncate(size)
        return p

    ext4 = img("ext4.img", 4 << 20)
    sh("mkfs.ext4", "-q", "-F", "-L", "root", "-b", "1024", "-d", src, ext4)
    out.append(("ext4", ext4))
    fat = img("fat.img", 4 << 20)
    sh("mkfs.vfat", "-n", "BOOT", fat)
    sh("mcopy", "-s", "-i", fat, os.path.join(src, "etc"), "::/")
    out.append(("fat", fat))
    for table in ("dos", "gpt"):
        d = img(f"{table}.img", 10 << 20)
        sh("sfdisk", "-q", d, input=b"label: %s\nstart=2048, size=8192\nstart=10240, size=8192\n" % table.encode())
        with open(d, "r+b") as f, open(fat, "rb") as a, open(ext4, "rb") as b:
            f.seek(2048 * 512)
            f.write(a.read())
            f.seek(10240 * 512)
            f.write(b.read())
        out.append(("mbr" if table == "dos" else "gpt", d))
    if have("mkfs.xfs"):
        x = img("xfs.img", 24 << 20)
        env = dict(os.environ, TEST_DIR="1", TEST_DEV="1", QA_CHECK_FS="1")
        proto = os.path.join(work, "proto")
        with open(proto, "w") as f:
            f.write("/ 0 0\nd--755 0 0\netc d--755 0 0\nhostname ---644 0 0 %s\n$\n"
                    "usr d--755 0 0\nlink l--777 0 0 ../etc/hostname\n$\n$\n"
                    % os.path.join(src, "etc/hostname"))
        try:
            sh("mkfs.xfs", "-q", "-f", "-p", proto, x, env=env)
            out.append(("xfs", x))
        except subprocess.CalledProcessError:
            pass
    if have("mkfs.btrfs"):
        b = img("btrfs.img", 120 << 20)
        try:
            sh("mkfs.btrfs", "-q", "-f", "--rootdir", src, b)
            with open(b, "r+b") as f:
                f.truncate(120 << 20)
            out.append(("btrfs", b))
        except subprocess.CalledProcessError:
            pass
    if have("mkntfs") and have("ntfs-3g"):
        n = img("ntfs.img", 4 << 20)
        mnt = os.path.join(work, "ntfs-mnt")
        os.makedirs(mnt, exist_ok=True)
        try:
            sh("mkntfs", "-F", "-Q", "-q", "-c", "512", n)
            sh("ntfs-3g", n, mnt)
            try:
                sh("cp", "-a", src + "/.", mnt)
            finally:
                subprocess.run(["umount", mnt], capture_output=True)
            out.append(("ntfs", n))
        except subprocess.CalledProcessError:
            pass
    if have("pvcreate") and have("losetup") and os.geteuid() == 0:
        p = img("lvm.img", 16 << 20)
        loop = subprocess.run(["losetup", "-f", "--show", p], check=True,
                              capture_output=True, text=True).stdout.strip()
        vg = f"skmut{os.getpid()}"
        cfg = ["--config", "global/activation=0"]
        env = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")
        try:
            sh("pvcreate", *cfg, "-ff", "-y", "--metadatasize", "16k", loop, env=env)
            sh("vgcreate", *cfg, vg, loop, env=env)
            sh("lvcreate", *cfg, "-an", "-Zn", "-L", "4M", "-n", "root", vg, env=env)
            rep = subprocess.run(["pvs", *cfg, "--noheadings", "-o", "pe_start", "--units", "b",
                                  "--nosuffix", loop], capture_output=True, text=True, env=env)
            start = int(rep.stdout.split()[0])
            # Detach first: the VG's metadata must stay in the image (no vgremove).
            subprocess.run(["losetup", "-d", loop], capture_output=True)
            loop = None
            with open(p, "r+b") as f, open(ext4, "rb") as e:
                f.seek(start)
                f.write(e.read())
            out.append(("lvm", p))
        except (subprocess.CalledProcessError, ValueError, IndexError):
            pass
        finally:
            if loop:
                subprocess.run(["losetup", "-d", loop], capture_output=True)
            for d in ("/etc/lvm/backup", "/etc/lvm/archive"):
                for f in (os.listdir(d) if os.path.isdir(d) else []):
                    if f.startswith(vg):
                        os.unlink(os.path.join(d, f))
    if have("cryptsetup"):
        # LUKS2 around the ext4 base (encrypted in place, offline: no device-mapper),
        # PBKDF2 with few iterations so that every run unlocks it quickly.
        p = img("luks.img", 12 << 20)
        key = os.path.join(work, "luks.key")
        with open(key, "w") as f:
            f.write(LUKS_KEY)
        with open(p, "r+b") as f, open(ext4, "rb") as e:
            f.write(e.read())
        try:
            sh("cryptsetup", "reencrypt", "--encrypt", "--type", "luks2",
               "--reduce-device-size", "8M", "--pbkdf", "pbkdf2",
               "--pbkdf-force-iterations", "1000", "--batch-mode", "--key-file", key, p)
            out.append(("luks", p))
        except subprocess.CalledProcessError:
            pass
    return out


def mutate(data, rnd):
    b = bytearray(data)
    hot = min(len(b), 1 << 20) if rnd.random() < 0.85 else len(b)
    kind = rnd.choice(("flips", "flips", "run", "truncate", "mixed"))
    if kind in ("flips", "mixed"):
        for _ in range(rnd.randrange(1, 17)):
            i = rnd.randrange(hot)
            b[i] ^= 1 << rnd.randrange(8)
    if kind in ("run", "mixed"):
        i = rnd.randrange(hot)
        n = rnd.randrange(1, 65)
        v = rnd.choice((0, 0xFF, rnd.randrange(256)))
        b[i:i + n] = bytes([v]) * len(b[i:i + n])
    if kind == "truncate":
        del b[rnd.randrange(512, max(513, len(b))):]
    return bytes(b), kind


def classify(rc, err, timed_out, changed):
    if changed:
        return "modified"
    if timed_out:
        return "hang"
    if "panicked at" in err or rc == 101:
        return "host panic"
    if "appliance crashed" in err:
        return "crash"
    if "did not answer within" in err or "did not come up within" in err:
        return "hang"
    failed = [l for l in err.splitlines()
              if l.startswith("skiff:") and not l.startswith("skiff: warning")]
    return "ok" if rc == 0 and not failed else "clean error"


def one(job):
    i, name, path, keep = job
    with open(path, "rb") as f:
        before = hashlib.sha256(f.read()).digest()
    t = time.monotonic()
    try:
        keys = ["--key", f"all:key:{LUKS_KEY}"] if name == "luks" else []
        p = subprocess.run([SKIFF, "--timeout", str(LIMIT - 10), *keys, "shell",
                            "-a", path + ",format=raw"], input=SCRIPT,
                           capture_output=True, timeout=LIMIT)
        rc, err, timed_out = p.returncode, p.stderr.decode("utf-8", "replace"), False
    except subprocess.TimeoutExpired as e:
        rc, err, timed_out = -1, (e.stderr or b"").decode("utf-8", "replace"), True
    with open(path, "rb") as f:
        changed = hashlib.sha256(f.read()).digest() != before
    verdict = classify(rc, err, timed_out, changed)
    dst = None
    if verdict not in ("ok", "clean error") and keep:
        os.makedirs(keep, exist_ok=True)
        dst = os.path.join(keep, f"{i:06d}-{name}.img")
        shutil.copy(path, dst)
        with open(dst + ".stderr", "w") as f:
            f.write(err)
    os.unlink(path)
    return name, verdict, time.monotonic() - t, dst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--keep", default=os.path.join(ROOT, "fuzz", "mutate-failures"))
    ap.add_argument("--only", default="",
                    help="comma-separated base names to use (default: every base)")
    a = ap.parse_args()
    if not os.access(SKIFF, os.X_OK):
        sys.exit(f"{SKIFF} is missing: cargo build --release -p skiff-cli")
    work = tempfile.mkdtemp(prefix="skiff-mutate-")
    try:
        only = set(filter(None, a.only.split(",")))
        base = [(n, open(p, "rb").read()) for n, p in bases(work) if not only or n in only]
        if not base:
            sys.exit(f"no base image among {sorted(only)}")
        print("bases:", ", ".join(n for n, _ in base), file=sys.stderr)
        rnd = random.Random(a.seed)
        counts = {}
        per_kind = {}
        started = time.monotonic()
        hangs = []

        def jobs():
            for i in range(a.count):
                name, data = base[i % len(base)]
                m, _kind = mutate(data, rnd)
                p = os.path.join(work, f"m{i}.img")
                with open(p, "wb") as f:
                    f.write(m)
                yield (i, name, p, a.keep)

        with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
            pending = set()
            it = jobs()
            done = 0
            while True:
                while len(pending) < a.jobs * 2:
                    try:
                        pending.add(ex.submit(one, next(it)))
                    except StopIteration:
                        break
                if not pending:
                    break
                fin, pending = concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")
                for f in fin:
                    name, verdict, _, dst = f.result()
                    if verdict == "hang":
                        hangs.append((name, dst))
                    counts[verdict] = counts.get(verdict, 0) + 1
                    per_kind.setdefault(name, {}).setdefault(verdict, 0)
                    per_kind[name][verdict] += 1
                    done += 1
                    if done % 500 == 0:
                        print(f"{done}/{a.count} {counts}", file=sys.stderr)
        # Hangs again, one at a time: a starved machine is not a stuck appliance.
        for n, (name, dst) in enumerate(hangs):
            if dst is None:
                continue
            again = os.path.join(work, f"again{n}.img")
            shutil.copy(dst, again)
            _, verdict, _, _ = one((n, name, again, None))
            print(f"hang re-run alone: {os.path.basename(dst)}: {verdict}", file=sys.stderr)
            if verdict != "hang":
                for c in (counts, per_kind[name]):
                    c["hang"] -= 1
                    c["slow"] = c.get("slow", 0) + 1
        secs = time.monotonic() - started
        order = ("ok", "clean error", "slow", "crash", "host panic", "hang", "modified")
        print(f"{done} mutated images in {secs:.0f} s (jobs={a.jobs}, seed={a.seed})")
        print("| base | " + " | ".join(order) + " |")
        print("|---|" + "---|" * len(order))
        for name, c in sorted(per_kind.items()):
            print(f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in order) + " |")
        print("| all | " + " | ".join(str(counts.get(k, 0)) for k in order) + " |")
        bad = sum(counts.get(k, 0) for k in order[3:])
        sys.exit(1 if bad else 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
