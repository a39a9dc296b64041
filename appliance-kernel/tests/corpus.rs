//! Corpus test: deterministic bit-flipped and truncated variants of small ext4, FAT,
//! NTFS, btrfs, XFS, LVM and LUKS images, each mounted read-only through the RPC dispatcher on a read-only disk, listed
//! and read recursively (`find` + `pread` of every file). Pass: no panic, no hang (each
//! variant runs in a thread with a time limit) and the image bytes unchanged.
//!
//! Images are built with the real tools (`mkfs.ext4 -d`, `mkfs.vfat` + `mcopy`/`mmd`,
//! `mkfs.btrfs --rootdir`, `mkfs.xfs -p`, `cryptsetup luksFormat` for LUKS1/LUKS2 around an ext4 payload,
//! unlocked and read).

use appliance::block::BlockDevice;
use appliance::block::{MemDisk, SharedDevice, shared};
use appliance::rpc::Appliance;
use appliance::volume::luks::{self, Limits};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;
use wire::{Bytes, FileType, MAX_CHUNK, Reply, Request};

/// Per-variant time limit.
const LIMIT: Duration = Duration::from_secs(10);
/// Bytes read per file at most (a corrupt size field may claim gigabytes).
const READ_CAP: u64 = 4 << 20;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("skiff-corpus-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn tool");
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
}

/// xorshift32: the variants are the same on every run.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() as usize) % n.max(1)
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A source tree: a few files (one multi-block), nested directories, symlinks.
fn source_tree(t: &Tmp, symlinks: bool) -> PathBuf {
    let src = t.0.join("src");
    std::fs::create_dir_all(src.join("dir/sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("Another Dir")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("dir/medium.bin"), data(1, 20_000)).unwrap();
    std::fs::write(src.join("dir/sub/small"), b"small").unwrap();
    std::fs::write(src.join("dir/sub/deeper/big.dat"), data(2, 70_000)).unwrap();
    std::fs::write(src.join("Another Dir/A Long File Name.txt"), b"long").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    if symlinks {
        std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
        std::os::unix::fs::symlink("dir/sub/../sub/small", src.join("dir/rel")).unwrap();
        std::os::unix::fs::symlink("x".repeat(100), src.join("slow-link")).unwrap();
    }
    src
}

fn ext4_image(t: &Tmp) -> Vec<u8> {
    let src = source_tree(t, true);
    let img = t.0.join("ext4.img");
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "1024",
            "-N",
            "64",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(&src)
        .arg(&img)
        .arg("1M"));
    std::fs::read(img).unwrap()
}

fn fat_image(t: &Tmp, bits: u32, kb: u32) -> Vec<u8> {
    let src = source_tree(t, false);
    let img = t.0.join(format!("fat{bits}.img"));
    run(Command::new("mkfs.vfat")
        .args(["-C", "-s", "1", "-F"])
        .arg(bits.to_string())
        .arg(&img)
        .arg(kb.to_string())
        .stdout(std::process::Stdio::null()));
    let i = img.to_str().unwrap();
    for d in ["dir", "dir/sub", "dir/sub/deeper", "Another Dir"] {
        run(Command::new("mmd").args(["-i", i]).arg(format!("::/{d}")));
    }
    for f in [
        "hello.txt",
        "dir/medium.bin",
        "dir/sub/small",
        "dir/sub/deeper/big.dat",
        "Another Dir/A Long File Name.txt",
        "empty",
    ] {
        run(Command::new("mcopy")
            .args(["-i", i])
            .arg(src.join(f))
            .arg(format!("::/{f}")));
    }
    std::fs::read(img).unwrap()
}

/// A small NTFS image (512-byte clusters, so the MFT sits in the first 64 KiB), filled
/// through an ntfs-3g FUSE mount (unmounted even when a step fails).
fn ntfs_image(t: &Tmp) -> Vec<u8> {
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            for _ in 0..50 {
                if Command::new("umount")
                    .arg(&self.0)
                    .output()
                    .is_ok_and(|o| o.status.success())
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        }
    }
    let src = source_tree(t, true);
    let img = t.0.join("ntfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    run(Command::new("mkntfs")
        .args(["-F", "-Q", "-q", "-c", "512", "-L", "corpus"])
        .arg(&img));
    let mnt = t.0.join("ntfs-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("ntfs-3g").arg(&img).arg(&mnt));
    let guard = Unmount(mnt.clone());
    run(Command::new("cp").arg("-a").arg(src.join(".")).arg(&mnt));
    drop(guard);
    std::fs::read(img).unwrap()
}

fn dump(dev: &SharedDevice) -> Vec<u8> {
    let size = dev.borrow().size() as usize;
    let mut v = vec![0u8; size];
    dev.borrow_mut().read_at(0, &mut v).unwrap();
    v
}

/// Mounts, lists and reads everything; returns how many files were read in full. Errors
/// from the appliance are fine (the image is corrupt); panics and hangs are not.
fn exercise(img: Vec<u8>, fstype: Option<&str>) -> usize {
    let dev = shared(MemDisk::new(img.clone(), true));
    let mut a = Appliance::new();
    a.set_disk(0, dev.clone());
    let _ = a.handle(Request::Filesystems);
    let mut read_ok = 0;
    let mounted = a.handle(Request::Mount {
        device: "/dev/sda".to_string(),
        mountpoint: "/".to_string(),
        readonly: true,
        fstype: fstype.map(str::to_string),
    });
    if mounted.is_ok() {
        let _ = a.handle(Request::StatVfs {
            path: "/".to_string(),
        });
        let _ = a.handle(Request::ReadDir {
            path: "/".to_string(),
        });
        // Whole-tree walks with attributes (every page, a bounded number of them).
        let mut after = None;
        for _ in 0..64 {
            match a.handle(Request::FindStat {
                path: "/".to_string(),
                after: after.take(),
            }) {
                Ok(Reply::Tree { next: Some(n), .. }) => after = Some(n),
                _ => break,
            }
        }
        let _ = a.handle(Request::Du {
            path: "/".to_string(),
        });
        if let Ok(Reply::Names(names)) = a.handle(Request::Find {
            path: "/".to_string(),
        }) {
            for n in names {
                let path = format!("/{n}");
                let st = match a.handle(Request::Lstat { path: path.clone() }) {
                    Ok(Reply::Stat(st)) => st,
                    _ => continue,
                };
                match st.file_type {
                    FileType::Directory => {
                        let _ = a.handle(Request::ReadDir { path });
                    }
                    FileType::Symlink => {
                        let _ = a.handle(Request::Readlink { path: path.clone() });
                        let _ = a.handle(Request::Stat { path });
                    }
                    _ => {
                        let mut off = 0u64;
                        loop {
                            match a.handle(Request::Pread {
                                path: path.clone(),
                                offset: off,
                                len: 16 * 1024,
                            }) {
                                Ok(Reply::Data(Bytes(d))) if d.is_empty() => {
                                    read_ok += 1;
                                    break;
                                }
                                Ok(Reply::Data(Bytes(d))) => {
                                    assert!(d.len() <= 16 * 1024);
                                    off += d.len() as u64;
                                    if off >= READ_CAP {
                                        break;
                                    }
                                }
                                _ => break,
                            }
                        }
                    }
                }
            }
        }
        // A read beyond the chunk limit is refused, not attempted.
        assert!(
            a.handle(Request::Pread {
                path: "/hello.txt".to_string(),
                offset: 0,
                len: MAX_CHUNK + 1,
            })
            .is_err()
        );
        // Writes are refused on a read-only mount.
        assert!(
            a.handle(Request::WriteFile {
                path: "/new".to_string(),
                offset: 0,
                data: Bytes(vec![1]),
                truncate: true,
                mode: 0o644,
            })
            .is_err()
        );
    }
    let _ = a.handle(Request::Shutdown);
    assert_eq!(a.handle(Request::Ping).unwrap(), Reply::Unit);
    assert!(dump(&dev) == img, "a read-only disk was modified");
    read_ok
}

/// An XFS image of the source tree (v5 or v4) made with `mkfs.xfs -p protofile`: 32 MiB
/// (mkfs.xfs makes nothing under 16 MiB) in two AGs, so the log sits in AG 1 and the
/// first bytes hold the AG headers, the inodes and the directories.
fn xfs_image(t: &Tmp, v4: bool) -> Vec<u8> {
    let src = source_tree(t, false);
    let s = |p: &str| src.join(p).display().to_string();
    // Protofile paths cannot hold spaces either.
    let long = t.0.join("long.txt");
    std::fs::copy(src.join("Another Dir/A Long File Name.txt"), &long).unwrap();
    // Protofile names cannot hold spaces: "Another Dir" goes in as Another_Dir.
    let mut proto = format!(
        "skiff\n0 0\nd--755 0 0\n\
         hello.txt ---644 0 0 {}\n\
         empty ---644 0 0 {}\n\
         dir d--755 0 0\n medium.bin ---644 0 0 {}\n\
         sub d--755 0 0\n small ---644 0 0 {}\n\
         deeper d--755 0 0\n big.dat ---644 0 0 {}\n$\n$\n\
         rel l--777 0 0 sub/../sub/small\n$\n\
         Another_Dir d--755 0 0\n A_Long_File_Name.txt ---644 0 0 {}\n$\n\
         link l--777 0 0 hello.txt\n\
         slow-link l--777 0 0 {}\n",
        s("hello.txt"),
        s("empty"),
        s("dir/medium.bin"),
        s("dir/sub/small"),
        s("dir/sub/deeper/big.dat"),
        long.display(),
        "x/".repeat(50),
    );
    if v4 {
        // A remote symlink (mkfs 6.1 writes v5 ones without their header).
        proto.push_str(&format!("remote-link l--777 0 0 {}\n", "y/".repeat(300)));
    }
    proto.push_str("$\n");
    let pf = t.0.join("proto");
    std::fs::write(&pf, proto).unwrap();
    let img = t.0.join(if v4 { "xfs4.img" } else { "xfs5.img" });
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let opts: &[&str] = if v4 {
        &["-m", "crc=0", "-b", "size=512"]
    } else {
        &["-b", "size=1024"]
    };
    run(Command::new("mkfs.xfs")
        .env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1")
        .args(["-q", "-f", "-d", "agcount=2", "-p"])
        .arg(&pf)
        .args(opts)
        .arg(&img));
    std::fs::read(img).unwrap()
}

/// The variants of `base`: bit flips (mostly in the metadata-heavy first `hot` bytes)
/// and truncations.
fn variants(
    base: &[u8],
    seed: u32,
    flips: usize,
    truncs: usize,
    hot: usize,
) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    // Made one at a time (images of tens of MiB must not all be in memory at once), in
    // the same order and from the same random sequence as ever.
    let mut rng = Rng(seed);
    (0..flips + truncs).map(move |n| {
        if n < flips {
            let i = n;
            let mut v = base.to_vec();
            let nbits = 1 + rng.below(if i % 4 == 0 { 32 } else { 4 });
            let mut what = Vec::new();
            for _ in 0..nbits {
                let range = if rng.below(5) == 0 {
                    v.len()
                } else {
                    hot.min(v.len())
                };
                let off = rng.below(range);
                let bit = rng.below(8);
                v[off] ^= 1 << bit;
                what.push(format!("{off}.{bit}"));
            }
            (format!("flip#{i} [{}]", what.join(" ")), v)
        } else {
            let i = n - flips;
            // Both very short cuts (inside the metadata) and cuts anywhere.
            let len = if i.is_multiple_of(2) {
                rng.below(hot.min(base.len()))
            } else {
                rng.below(base.len())
            };
            (format!("truncate#{i} to {len}"), base[..len].to_vec())
        }
    })
}

/// Runs every variant in its own thread with the time limit; fails on the first panic or
/// hang, naming the variant.
fn run_corpus(name: &str, base: Vec<u8>, fstype: &'static str, seed: u32, hot: usize) -> usize {
    // The pristine image must mount and read all its files.
    let vs = variants(&base, seed, 170, 40, hot);
    run_fs_variants(name, &base, vs, fstype)
}

/// Checks the pristine `base` reads, then runs the filesystem variants `vs` (mounted with
/// the type detected, or named `fstype`, in turn).
fn run_fs_variants(
    name: &str,
    base: &[u8],
    vs: impl IntoIterator<Item = (String, Vec<u8>)>,
    fstype: &'static str,
) -> usize {
    let pristine_reads = exercise(base.to_vec(), Some(fstype));
    assert!(
        pristine_reads >= 5,
        "{name}: pristine image read {pristine_reads} files"
    );
    run_variants(name, vs, move |img, i| {
        exercise(img, if i % 2 == 0 { None } else { Some(fstype) })
    })
}

/// Runs `f` on every variant (with its index) in its own thread with the time limit.
fn run_variants(
    name: &str,
    vs: impl IntoIterator<Item = (String, Vec<u8>)>,
    f: impl Fn(Vec<u8>, usize) -> usize + Send + Copy + 'static,
) -> usize {
    let mut total = 0;
    let mut fully_read = 0;
    for (i, (what, img)) in vs.into_iter().enumerate() {
        total += 1;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("{name} {what}"))
            .spawn(move || {
                let r = f(img, i);
                let _ = tx.send(r);
            })
            .unwrap();
        match rx.recv_timeout(LIMIT) {
            Ok(n) => {
                fully_read += n;
                handle.join().unwrap();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let e = handle.join().unwrap_err();
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{name} {what}: panicked: {msg}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} {what}: did not finish within {LIMIT:?}");
            }
        }
    }
    eprintln!("{name}: {total} variants, {fully_read} files read in full");
    total
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn fat_corpus() {
    assert!(
        have("mkfs.vfat") && have("mcopy"),
        "mkfs.vfat and mtools are needed"
    );
    let t = Tmp::new("fat");
    let fat12 = fat_image(&t, 12, 1024);
    let n = run_corpus("fat12", fat12, "vfat", 0x1234_5678, 32 * 1024);
    let t16 = Tmp::new("fat16");
    let fat16 = fat_image(&t16, 16, 4 * 1024);
    let m = run_corpus("fat16", fat16, "vfat", 0x0BAD_F00D, 64 * 1024);
    assert!(n + m >= 200);
}

#[test]
fn ext4_corpus() {
    assert!(have("mkfs.ext4"), "mkfs.ext4 is needed");
    let t = Tmp::new("ext4");
    let img = ext4_image(&t);
    let n = run_corpus("ext4", img, "ext4", 0x5EED_0E47, 96 * 1024);
    assert!(n >= 200);
}

#[test]
fn ntfs_corpus() {
    assert!(
        have("mkntfs") && have("ntfs-3g"),
        "mkntfs and ntfs-3g (FUSE) are needed"
    );
    let t = Tmp::new("ntfs");
    let img = ntfs_image(&t);
    let n = run_corpus("ntfs", img, "ntfs", 0x0417_F5A1, 256 * 1024);
    assert!(n >= 200);
}

// ---- LVM ----

/// Loop devices and the VG of the LVM corpus image, released even on failure.
struct LvmLab {
    vg: String,
    dev: Option<String>,
}

impl Drop for LvmLab {
    fn drop(&mut self) {
        if let Some(d) = self.dev.take() {
            let _ = lvm_cmd("vgremove", &["-f", "-y", &self.vg]);
            let _ = Command::new("losetup").args(["-d", &d]).status();
        }
        let _ = std::fs::remove_file(format!("/etc/lvm/backup/{}", self.vg));
        if let Ok(rd) = std::fs::read_dir("/etc/lvm/archive") {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}_", self.vg))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// An LVM tool without device-mapper (nothing is activated).
fn lvm_cmd(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd)
        .args(["--config", "global/activation=0"])
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .expect("spawn lvm tool");
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    out
}

/// An 8 MiB whole-disk PV (a small metadata area, so flips hit it) with a VG whose LV
/// `root` has two segments around another LV, holding the corpus ext4 image (written
/// through the appliance's LV device).
fn lvm_image(t: &Tmp) -> (Vec<u8>, String) {
    let img = t.0.join("lvm.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup: {out:?}");
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let vg = format!("skcorpus{}", std::process::id());
    let mut lab = LvmLab {
        vg: vg.clone(),
        dev: Some(dev.clone()),
    };
    lvm_cmd(
        "pvcreate",
        &[
            "-ff",
            "-y",
            "--metadatasize",
            "16k",
            "--dataalignment",
            "64k",
            &dev,
        ],
    );
    lvm_cmd("vgcreate", &["-s", "256k", &vg, &dev]);
    for (n, s) in [("root", "512k"), ("gap", "256k")] {
        lvm_cmd("lvcreate", &["-an", "-Zn", "-y", "-n", n, "-L", s, &vg]);
    }
    lvm_cmd("lvextend", &["-L", "+512k", &format!("{vg}/root")]);
    // Detach (the metadata stays in the file); the lab then only removes LVM's backups.
    if let Some(d) = lab.dev.take() {
        let _ = Command::new("losetup").args(["-d", &d]).status();
    }
    drop(lab);
    let fs = ext4_image(t);
    let dev = shared(MemDisk::new(std::fs::read(&img).unwrap(), false));
    let mut a = Appliance::new();
    a.set_disk(0, dev.clone());
    let root = format!("/dev/{vg}/root");
    for (i, c) in fs.chunks(256 << 10).enumerate() {
        a.handle(Request::PwriteDevice {
            device: root.clone(),
            offset: (i << 18) as u64,
            data: Bytes(c.to_vec()),
        })
        .unwrap();
    }
    (dump(&dev), vg)
}

/// Recomputes the LVM checksums of a (mutated) single-PV image whose label is in
/// sector 1, so that mutations reach the metadata parser instead of stopping at a
/// checksum.
fn lvm_fix_checksums(img: &mut [u8]) {
    use appliance::volume::lvm::label::crc;
    let le64 = |b: &[u8], o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    };
    let Some(hdr) = img
        .get(532..536)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()) as usize)
    else {
        return;
    };
    let mut o = 512 + hdr.min(400) + 40;
    while le64(img, o).is_some_and(|v| v != 0) && o < 1000 {
        o += 16;
    }
    if let Some(mda) = le64(img, o + 16).map(|m| m as usize)
        && mda + 512 <= img.len()
    {
        if let (Some(off), Some(len)) = (le64(img, mda + 40), le64(img, mda + 48)) {
            let (s, n) = (mda.saturating_add(off as usize), len as usize);
            if s.checked_add(n).is_some_and(|e| e <= img.len()) {
                let c = crc(&img[s..s + n]);
                img[mda + 56..mda + 60].copy_from_slice(&c.to_le_bytes());
            }
        }
        let c = crc(&img[mda + 4..mda + 512]);
        img[mda..mda + 4].copy_from_slice(&c.to_le_bytes());
    }
    if img.len() >= 1024 {
        let c = crc(&img[512 + 20..1024]);
        img[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
    }
}

/// Lists PVs, VGs, LVs and filesystems, then mounts every LV listed, walks and reads it,
/// and reads the LVs raw. Returns the files read in full.
fn exercise_lvm(img: Vec<u8>) -> usize {
    let dev = shared(MemDisk::new(img.clone(), true));
    let mut a = Appliance::new();
    a.set_disk(0, dev.clone());
    let _ = a.handle(Request::Pvs);
    let _ = a.handle(Request::Vgs);
    let lvs = match a.handle(Request::Lvs) {
        Ok(Reply::Lvs(l)) => l,
        _ => Vec::new(),
    };
    let mut read_ok = 0;
    for lv in lvs.iter().take(64) {
        for off in [0, lv.size.saturating_sub(4096)] {
            let _ = a.handle(Request::PreadDevice {
                device: lv.name.clone(),
                offset: off,
                len: 4096,
            });
        }
    }
    let fss = match a.handle(Request::Filesystems) {
        Ok(Reply::Filesystems(f)) => f,
        _ => Vec::new(),
    };
    for f in fss
        .iter()
        .filter(|f| f.device.matches('/').count() == 3)
        .take(16)
    {
        if a.handle(Request::Mount {
            device: f.device.clone(),
            mountpoint: "/".to_string(),
            readonly: true,
            fstype: None,
        })
        .is_err()
        {
            continue;
        }
        if let Ok(Reply::Names(names)) = a.handle(Request::Find {
            path: "/".to_string(),
        }) {
            for n in names {
                let path = format!("/{n}");
                if let Ok(Reply::Stat(st)) = a.handle(Request::Lstat { path: path.clone() })
                    && st.file_type == FileType::Regular
                {
                    let mut off = 0u64;
                    while let Ok(Reply::Data(Bytes(d))) = a.handle(Request::Pread {
                        path: path.clone(),
                        offset: off,
                        len: 16 * 1024,
                    }) {
                        if d.is_empty() {
                            read_ok += 1;
                            break;
                        }
                        off += d.len() as u64;
                        if off >= READ_CAP {
                            break;
                        }
                    }
                }
            }
        }
        let _ = a.handle(Request::Umount {
            mountpoint: "/".to_string(),
        });
    }
    let _ = a.handle(Request::Shutdown);
    assert!(dump(&dev) == img, "a read-only disk was modified");
    read_ok
}

#[test]
fn lvm_corpus() {
    assert!(
        have("pvcreate") && have("losetup") && have("mkfs.ext4"),
        "lvm2, losetup and mkfs.ext4 are needed"
    );
    let t = Tmp::new("lvm");
    let (base, _vg) = lvm_image(&t);
    let pristine = exercise_lvm(base.clone());
    assert!(pristine >= 5, "lvm: pristine image read {pristine} files");
    // Flips in the label and metadata area (the first 96 KiB); every other variant gets
    // its checksums recomputed so the mutation reaches the metadata parser.
    let mut vs: Vec<_> = variants(&base, 0x1A7E_2001, 170, 40, 96 * 1024).collect();
    for (i, (what, v)) in vs.iter_mut().enumerate() {
        if i % 2 == 1 {
            lvm_fix_checksums(v);
            what.push_str(" +checksums");
        }
    }
    let total = vs.len();
    let mut fully_read = 0;
    for (what, img) in vs {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("lvm {what}"))
            .spawn(move || {
                let _ = tx.send(exercise_lvm(img));
            })
            .unwrap();
        match rx.recv_timeout(LIMIT) {
            Ok(n) => {
                fully_read += n;
                handle.join().unwrap();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let e = handle.join().unwrap_err();
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("lvm {what}: panicked: {msg}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("lvm {what}: did not finish within {LIMIT:?}");
            }
        }
    }
    eprintln!("lvm: {total} variants, {fully_read} files read in full");
    assert!(total >= 200);
}

// ---- LUKS ----

const LUKS_PASS: &str = "corpus passphrase";

/// A LUKS image made by `cryptsetup luksFormat` with `args`, its payload (from `offset`)
/// filled with the ext4 image written through the appliance's own `LuksDevice`.
fn luks_image(t: &Tmp, args: &[&str], size: u64) -> Vec<u8> {
    let img = t.0.join("luks.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let mut c = Command::new("cryptsetup");
    c.args(["luksFormat", "--batch-mode", "--key-file", "-"])
        .args(args)
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("cryptsetup");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(LUKS_PASS.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "cryptsetup luksFormat {args:?}"
    );
    let fs = ext4_image(t);
    let m = std::rc::Rc::new(std::cell::RefCell::new(MemDisk::new(
        std::fs::read(&img).unwrap(),
        false,
    )));
    let dev: SharedDevice = m.clone();
    let (_, mut d) = luks::open(dev, LUKS_PASS.as_bytes(), None, &Limits::default()).unwrap();
    assert!(d.size() >= fs.len() as u64, "payload too small");
    d.write_at(0, &fs).unwrap();
    drop(d);
    m.borrow().data.clone()
}

/// Recomputes the SHA-256 checksums of both LUKS2 header copies (when the primary's
/// size field still makes sense), so that mutated JSON reaches the metadata parser.
fn fix_luks2_checksums(v: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let Some(size) = v
        .get(8..16)
        .map(|s| u64::from_be_bytes(s.try_into().unwrap()))
    else {
        return;
    };
    if !(16384..=(4 << 20)).contains(&size) || !size.is_power_of_two() {
        return;
    }
    let size = size as usize;
    for off in [0, size] {
        if v.len() < off + size {
            return;
        }
        v[off + 448..off + 512].fill(0);
        let sum = Sha256::digest(&v[off..off + size]);
        v[off + 448..off + 480].copy_from_slice(&sum);
    }
}

/// LuksInfo, LuksOpen (tight KDF limits: a flipped iteration count must not take
/// minutes), then mount the mapping read-only and read every file. Returns the files
/// read in full; the disk must be unchanged.
fn exercise_luks(img: Vec<u8>) -> usize {
    let dev = shared(MemDisk::new(img.clone(), true));
    let mut a = Appliance::new();
    a.set_luks_limits(Limits {
        max_pbkdf2_iterations: 20_000,
        max_argon2_time: 16,
        max_argon2_memory_kib: 8 << 10,
    });
    a.set_disk(0, dev.clone());
    let _ = a.handle(Request::LuksInfo);
    let _ = a.handle(Request::Filesystems);
    let mut read_ok = 0;
    let opened = a.handle(Request::LuksOpen {
        device: "/dev/sda".to_string(),
        key: Bytes(LUKS_PASS.as_bytes().to_vec()),
        name: None,
    });
    if let Ok(Reply::Text(m)) = opened {
        let _ = a.handle(Request::Filesystems);
        let _ = a.handle(Request::LuksInfo);
        let mounted = a.handle(Request::Mount {
            device: m.clone(),
            mountpoint: "/".to_string(),
            readonly: true,
            fstype: None,
        });
        if mounted.is_ok()
            && let Ok(Reply::Names(names)) = a.handle(Request::Find {
                path: "/".to_string(),
            })
        {
            for n in names {
                let path = format!("/{n}");
                let mut off = 0u64;
                while let Ok(Reply::Data(Bytes(d))) = a.handle(Request::Pread {
                    path: path.clone(),
                    offset: off,
                    len: 64 * 1024,
                }) {
                    if d.is_empty() {
                        read_ok += 1;
                        break;
                    }
                    off += d.len() as u64;
                    if off >= READ_CAP {
                        break;
                    }
                }
            }
            assert!(a.handle(Request::LuksClose { name: m.clone() }).is_err());
            let _ = a.handle(Request::Umount {
                mountpoint: "/".to_string(),
            });
        }
        let _ = a.handle(Request::LuksClose { name: m });
    }
    let _ = a.handle(Request::Shutdown);
    assert!(dump(&dev) == img, "a read-only disk was modified");
    read_ok
}

fn run_luks_corpus(name: &str, base: Vec<u8>, seed: u32, hot: usize, luks2: bool) -> usize {
    let pristine_reads = exercise_luks(base.clone());
    assert!(
        pristine_reads >= 5,
        "{name}: pristine image read {pristine_reads} files"
    );
    let mut vs: Vec<_> = variants(&base, seed, 170, 40, hot).collect();
    if luks2 {
        // Flips in the JSON metadata with both checksums made valid again.
        let json_end = 4096 + base[4096..].iter().position(|&b| b == 0).unwrap();
        let mut rng = seed ^ 0x9E37_79B9;
        for i in 0..120 {
            let mut v = base.clone();
            let mut what = Vec::new();
            for _ in 0..1 + i % 3 {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                let off = 4096 + rng as usize % (json_end - 4096);
                let bit = (rng >> 24) % 7; // keep it ASCII
                v[off] ^= 1 << bit;
                what.push(format!("{off}.{bit}"));
            }
            fix_luks2_checksums(&mut v);
            vs.push((format!("json#{i} [{}]", what.join(" ")), v));
        }
    }
    run_variants(name, vs, |img, _| exercise_luks(img))
}

#[test]
fn luks1_corpus() {
    assert!(
        have("cryptsetup") && have("mkfs.ext4"),
        "cryptsetup is needed"
    );
    let t = Tmp::new("luks1");
    let img = luks_image(
        &t,
        &[
            "--type",
            "luks1",
            "--cipher",
            "aes-cbc-essiv:sha256",
            "--key-size",
            "256",
            "--pbkdf-force-iterations",
            "1000",
            "--align-payload",
            "8",
        ],
        (2056 * 512) + (1 << 20),
    );
    let n = run_luks_corpus("luks1", img, 0x1A5C_0001, 4096, false);
    assert!(n >= 200);
}

#[test]
fn luks2_corpus() {
    assert!(
        have("cryptsetup") && have("mkfs.ext4"),
        "cryptsetup is needed"
    );
    let t = Tmp::new("luks2");
    let img = luks_image(
        &t,
        &[
            "--type",
            "luks2",
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "1024",
            "--pbkdf-force-iterations",
            "4",
            "--luks2-metadata-size",
            "16k",
            "--luks2-keyslots-size",
            "256k",
            "--offset",
            "576",
            "--sector-size",
            "4096",
        ],
        294_912 + (1 << 20),
    );
    let n = run_luks_corpus("luks2", img, 0x1A5C_0002, 36 * 1024, true);
    assert!(n >= 300);
}

/// A small btrfs image (single metadata, so a flipped block has no good mirror) of the
/// source tree, with a compressed file, and the physical ranges of its tree blocks.
fn btrfs_image(t: &Tmp, compress: &str) -> (Vec<u8>, Vec<(usize, usize)>) {
    let src = source_tree(t, true);
    std::fs::write(
        src.join("dir/compressible.txt"),
        "all work and no play makes a dull image\n".repeat(5000),
    )
    .unwrap();
    let img = t.0.join("btrfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    run(Command::new("mkfs.btrfs")
        .args([
            "-q",
            "-f",
            "--shrink",
            "-m",
            "single",
            "-n",
            "4096",
            "--compress",
            compress,
        ])
        .arg("--rootdir")
        .arg(&src)
        .arg(&img));
    let dump = Command::new("btrfs")
        .args(["inspect-internal", "dump-tree"])
        .arg(&img)
        .output()
        .unwrap();
    let mut blocks = Vec::new();
    for l in String::from_utf8_lossy(&dump.stdout).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if (w.first() == Some(&"leaf") || w.first() == Some(&"node")) && w.get(2) == Some(&"items")
        {
            let map = Command::new("btrfs-map-logical")
                .args(["-l", w[1], "-b", "4096"])
                .arg(&img)
                .output()
                .unwrap();
            for m in String::from_utf8_lossy(&map.stdout).lines() {
                let f: Vec<&str> = m.split_whitespace().collect();
                if f.first() == Some(&"mirror") {
                    blocks.push((f[5].parse().unwrap(), 4096));
                }
            }
        }
    }
    blocks.push((0x10000, 4096)); // the superblock
    blocks.sort();
    blocks.dedup();
    (std::fs::read(img).unwrap(), blocks)
}

/// btrfs variants: flips inside tree blocks and the superblock with the checksums
/// recomputed afterwards (so they reach the parsers), flips left unsealed (checksums
/// must catch them), flips anywhere, and truncations.
fn btrfs_variants(base: &[u8], blocks: &[(usize, usize)], seed: u32) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for i in 0..200 {
        let mut v = base.to_vec();
        let mut what = Vec::new();
        let nbits = 1 + rng.below(if i % 5 == 0 { 24 } else { 3 });
        for _ in 0..nbits {
            let off = if i % 10 == 9 {
                rng.below(v.len())
            } else {
                let (start, len) = blocks[rng.below(blocks.len())];
                // Skip the checksum field: flips there only test the checksum.
                start + 32 + rng.below(len - 32)
            };
            let bit = rng.below(8);
            v[off] ^= 1 << bit;
            what.push(format!("{off}.{bit}"));
        }
        let sealed = i % 4 != 3;
        if sealed {
            appliance::fs::btrfs::reseal_checksums(&mut v);
        }
        out.push((
            format!(
                "flip#{i}{} [{}]",
                if sealed { " sealed" } else { "" },
                what.join(" ")
            ),
            v,
        ));
    }
    for i in 0..30 {
        let len = if i % 2 == 0 {
            rng.below(
                blocks
                    .last()
                    .map_or(base.len(), |b| b.0 + b.1)
                    .min(base.len()),
            )
        } else {
            rng.below(base.len())
        };
        out.push((format!("truncate#{i} to {len}"), base[..len].to_vec()));
    }
    out
}

#[test]
fn btrfs_corpus() {
    assert!(
        have("mkfs.btrfs") && have("btrfs-map-logical"),
        "btrfs-progs is needed"
    );
    let mut total = 0;
    for (compress, seed) in [
        ("zstd", 0xB7F5_0001u32),
        ("lzo", 0xB7F5_0002),
        ("zlib", 0xB7F5_0003),
    ] {
        let t = Tmp::new(&format!("btrfs-{compress}"));
        let (img, blocks) = btrfs_image(&t, compress);
        assert!(
            blocks.len() >= 8,
            "{compress}: only {} tree blocks found",
            blocks.len()
        );
        let vs = btrfs_variants(&img, &blocks, seed);
        total += run_fs_variants(&format!("btrfs-{compress}"), &img, vs, "btrfs");
    }
    assert!(total >= 600);
}

#[test]
fn xfs_corpus() {
    assert!(have("mkfs.xfs"), "mkfs.xfs (xfsprogs) is needed");
    let t = Tmp::new("xfs5");
    let v5 = xfs_image(&t, false);
    let n = run_corpus("xfs-v5", v5, "xfs", 0x0F5F_5005, 128 * 1024);
    let t4 = Tmp::new("xfs4");
    let v4 = xfs_image(&t4, true);
    let m = run_corpus("xfs-v4", v4, "xfs", 0x0F5F_5004, 64 * 1024);
    assert!(n + m >= 400);
}

// ---- inspection: rpm's sqlite database and registry hives ----

/// An empty hive (base block, one bin with a security cell and the root key), the
/// starting point `hivexregedit --merge` needs.
fn empty_hive() -> Vec<u8> {
    let mut bin = vec![0u8; 4096];
    bin[..4].copy_from_slice(b"hbin");
    bin[8..12].copy_from_slice(&4096u32.to_le_bytes());
    // sk cell at 0x20: self-linked, an empty self-relative security descriptor.
    let sk_cell = 0x20usize;
    bin[sk_cell..sk_cell + 4].copy_from_slice(&(-48i32).to_le_bytes());
    let sk = sk_cell + 4;
    bin[sk..sk + 2].copy_from_slice(b"sk");
    for (o, v) in [(4, 0x20u32), (8, 0x20), (12, 1), (16, 20)] {
        bin[sk + o..sk + o + 4].copy_from_slice(&v.to_le_bytes());
    }
    bin[sk + 20..sk + 24].copy_from_slice(&[1, 0, 0x04, 0x80]);
    // Root nk cell at 0x50.
    let nk_cell = 0x50usize;
    bin[nk_cell..nk_cell + 4].copy_from_slice(&(-88i32).to_le_bytes());
    let nk = nk_cell + 4;
    bin[nk..nk + 2].copy_from_slice(b"nk");
    bin[nk + 2..nk + 4].copy_from_slice(&0x2cu16.to_le_bytes());
    for (o, v) in [
        (28, u32::MAX),
        (32, u32::MAX),
        (40, u32::MAX),
        (44, 0x20),
        (48, u32::MAX),
    ] {
        bin[nk + o..nk + o + 4].copy_from_slice(&v.to_le_bytes());
    }
    bin[nk + 72..nk + 74].copy_from_slice(&4u16.to_le_bytes());
    bin[nk + 76..nk + 80].copy_from_slice(b"ROOT");
    let free = nk_cell + 88;
    bin[free..free + 4].copy_from_slice(&((4096 - free) as i32).to_le_bytes());
    let mut base = vec![0u8; 4096];
    base[..4].copy_from_slice(b"regf");
    for (o, v) in [
        (4, 1u32),
        (8, 1),
        (20, 1),
        (24, 3),
        (32, 1),
        (36, nk_cell as u32),
        (40, 4096),
        (44, 1),
    ] {
        base[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    let sum = base[..508]
        .chunks_exact(4)
        .fold(0u32, |x, w| x ^ u32::from_le_bytes(w.try_into().unwrap()));
    base[508..512].copy_from_slice(&sum.to_le_bytes());
    base.extend(bin);
    base
}

/// A hive made by `hivexregedit --merge` from `reg` (keys below `HKEY_LOCAL_MACHINE\X`).
fn merged_hive(t: &Tmp, tag: &str, reg: &str) -> Vec<u8> {
    let hive = t.0.join(format!("{tag}.hive"));
    let file = t.0.join(format!("{tag}.reg"));
    std::fs::write(&hive, empty_hive()).unwrap();
    std::fs::write(
        &file,
        format!("Windows Registry Editor Version 5.00\n\n{reg}"),
    )
    .unwrap();
    run(Command::new("hivexregedit")
        .arg("--merge")
        .arg(&hive)
        .args(["--prefix", "HKEY_LOCAL_MACHINE\\X"])
        .arg(&file));
    std::fs::read(hive).unwrap()
}

fn sz(s: &str) -> String {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn software_reg() -> String {
    let mut r = String::new();
    for k in [
        "Microsoft",
        "Microsoft\\Windows NT",
        "Microsoft\\Windows",
        "Microsoft\\Windows\\CurrentVersion",
        "Microsoft\\Windows\\CurrentVersion\\Uninstall",
    ] {
        r += &format!("[HKEY_LOCAL_MACHINE\\X\\{k}]\n\n");
    }
    r += &format!(
        "[HKEY_LOCAL_MACHINE\\X\\Microsoft\\Windows NT\\CurrentVersion]\n\"ProductName\"=hex(1):{}\n\"CurrentVersion\"=hex(1):{}\n\"CurrentBuildNumber\"=hex(1):{}\n\n",
        sz("Windows Server 2019 Standard"),
        sz("6.3"),
        sz("17763")
    );
    for i in 0..40 {
        r += &format!(
            "[HKEY_LOCAL_MACHINE\\X\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\App{i:02}]\n\"DisplayName\"=hex(1):{}\n\"DisplayVersion\"=hex(1):{}\n\"Publisher\"=hex(1):{}\n\n",
            sz(&format!("Application number {i}")),
            sz(&format!("{i}.0")),
            sz("Corpus Inc.")
        );
    }
    r
}

fn system_reg() -> String {
    let mut r = String::from("[HKEY_LOCAL_MACHINE\\X\\Select]\n\"Current\"=dword:00000001\n\n");
    for k in [
        "ControlSet001",
        "ControlSet001\\Services",
        "ControlSet001\\Services\\Tcpip",
    ] {
        r += &format!("[HKEY_LOCAL_MACHINE\\X\\{k}]\n\n");
    }
    r += &format!(
        "[HKEY_LOCAL_MACHINE\\X\\ControlSet001\\Services\\Tcpip\\Parameters]\n\"Hostname\"=hex(1):{}\n\n",
        sz("corpus-host")
    );
    r += "[HKEY_LOCAL_MACHINE\\X\\MountedDevices]\n\"\\\\DosDevices\\\\C:\"=hex(3):78,56,34,12,00,00,10,00,00,00,00,00\n\n";
    r
}

/// An rpm sqlite database of a few small packages (`rpmbuild` + `rpm --justdb`).
fn rpmdb(t: &Tmp) -> Vec<u8> {
    let top = t.0.join("top");
    let mut spec = String::from(
        "Name: corpus\nVersion: 1.0\nRelease: 1\nSummary: Corpus\nLicense: MIT\nBuildArch: noarch\n\
         %description\nCorpus package.\n%files\n\n",
    );
    for i in 0..12 {
        spec += &format!(
            "%package -n corpus-{i}\nSummary: Sub {i}\n%description -n corpus-{i}\nSub.\n%files -n corpus-{i}\n\n"
        );
    }
    let sp = t.0.join("corpus.spec");
    std::fs::write(&sp, spec).unwrap();
    run(Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--define"])
        .arg(format!("_topdir {}", top.display()))
        .arg(&sp));
    let db = t.0.join("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    run(Command::new("rpm").arg("--initdb").arg("--dbpath").arg(&db));
    let rpms: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run(Command::new("rpm")
        .args(["-i", "--justdb", "--nodeps", "--noscripts", "--dbpath"])
        .arg(&db)
        .args(&rpms));
    std::fs::read(db.join("rpmdb.sqlite")).unwrap()
}

/// An ext4 image holding `files` (path → bytes) and where each file's bytes lie in it
/// (mkfs.ext4 -d writes small files contiguously).
fn inspect_image(t: &Tmp, files: &[(&str, Vec<u8>)]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let src = t.0.join("inspect-src");
    for (p, d) in files {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, d).unwrap();
    }
    let img = t.0.join("inspect.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-E", "root_owner=0:0", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("8M"));
    let data = std::fs::read(img).unwrap();
    let spans = files
        .iter()
        .map(|(p, d)| {
            let off = (0..data.len() - d.len())
                .step_by(4096)
                .find(|&o| data[o..o + d.len()] == d[..])
                .unwrap_or_else(|| panic!("{p} is not contiguous in the image"));
            (off, d.len())
        })
        .collect();
    (data, spans)
}

/// Mounts the image, pages through the applications and reads the Windows facts.
/// Returns the applications listed; the disk must be unchanged.
fn exercise_inspect(img: Vec<u8>) -> usize {
    let dev = shared(MemDisk::new(img.clone(), true));
    let mut a = Appliance::new();
    a.set_disk(0, dev.clone());
    let mut n = 0;
    if a.handle(Request::Mount {
        device: "/dev/sda".to_string(),
        mountpoint: "/".to_string(),
        readonly: true,
        fstype: Some("ext4".to_string()),
    })
    .is_ok()
    {
        let mut start = 0;
        while let Ok(Reply::Applications(p)) = a.handle(Request::Applications {
            root: "/".to_string(),
            start,
        }) {
            n += p.applications.len();
            match p.next {
                Some(s) if s > start => start = s,
                Some(_) => panic!("the application pages do not advance"),
                None => break,
            }
        }
        let _ = a.handle(Request::WindowsFacts {
            root: "/".to_string(),
        });
    }
    let _ = a.handle(Request::Shutdown);
    assert!(dump(&dev) == img, "a read-only disk was modified");
    n
}

/// Flips bits in, and cuts (zeroes the tail of), the bytes of one file inside the image.
fn file_variants(
    base: &[u8],
    (off, len): (usize, usize),
    seed: u32,
    n: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let mut v = base.to_vec();
        if i % 8 == 7 {
            let cut = rng.below(len);
            v[off + cut..off + len].fill(0);
            out.push((format!("zero tail from {cut}"), v));
            continue;
        }
        let nbits = 1 + rng.below(if i % 4 == 0 { 24 } else { 3 });
        let mut what = Vec::new();
        for _ in 0..nbits {
            // Mostly in the headers and the first pages/bins.
            let range = if rng.below(3) == 0 {
                len
            } else {
                len.min(16 * 1024)
            };
            let o = rng.below(range);
            let bit = rng.below(8);
            v[off + o] ^= 1 << bit;
            what.push(format!("{o}.{bit}"));
        }
        out.push((format!("flip#{i} [{}]", what.join(" ")), v));
    }
    out
}

#[test]
fn inspect_corpus() {
    assert!(
        have("rpmbuild") && have("hivexregedit") && have("mkfs.ext4"),
        "rpm (rpmbuild), libwin-hivex-perl (hivexregedit) and mkfs.ext4 are needed"
    );
    let t = Tmp::new("inspect");
    let sqlite = rpmdb(&t);
    let software = merged_hive(&t, "software", &software_reg());
    let system = merged_hive(&t, "system", &system_reg());
    let mut cmd = vec![0u8; 512];
    cmd[..2].copy_from_slice(b"MZ");
    cmd[0x3c] = 0x80;
    cmd[0x80..0x84].copy_from_slice(b"PE\0\0");
    cmd[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
    let (img, spans) = inspect_image(
        &t,
        &[
            ("var/lib/rpm/rpmdb.sqlite", sqlite),
            ("Windows/System32/config/SOFTWARE", software),
            ("Windows/System32/config/SYSTEM", system),
            ("Windows/System32/cmd.exe", cmd),
        ],
    );
    // 13 packages and 40 Windows applications.
    let pristine = exercise_inspect(img.clone());
    assert_eq!(pristine, 13 + 40, "pristine image");
    let mut total = 0;
    for (name, span, seed) in [
        ("sqlite", spans[0], 0x5A17_E001u32),
        ("software hive", spans[1], 0x4E61_5F02),
        ("system hive", spans[2], 0x5157_E403),
    ] {
        let vs = file_variants(&img, span, seed, 150);
        total += run_variants(name, vs, |v, _| exercise_inspect(v));
    }
    assert!(total >= 450);
}

/// Mounts a (mutated) image read-write and changes it through the dispatcher: create,
/// append, mkdir -p, rename, truncate, symlink, xattrs, rm -r, sync; then mounts the
/// result again and walks it. Errors are fine (the image is damaged); panics and hangs
/// are not. Returns how many of the changes succeeded.
fn exercise_rw(img: Vec<u8>, fstype: &'static str) -> usize {
    let dev = shared(MemDisk::new(img, false));
    let mut a = Appliance::new();
    a.set_disk(0, dev);
    let mut ok = 0;
    let mount = |a: &mut Appliance| {
        a.handle(Request::Mount {
            device: "/dev/sda".to_string(),
            mountpoint: "/".to_string(),
            readonly: false,
            fstype: Some(fstype.to_string()),
        })
        .is_ok()
    };
    if mount(&mut a) {
        let s = |p: &str| p.to_string();
        let reqs = vec![
            Request::SetClock { now: 1_700_000_000 },
            Request::Mkdir {
                path: s("/new/deeper"),
                parents: true,
                mode: 0o755,
            },
            Request::WriteFile {
                path: s("/new/deeper/file"),
                offset: 0,
                data: Bytes(data(3, 9000)),
                truncate: true,
                mode: 0o644,
            },
            Request::Append {
                path: s("/hello.txt"),
                data: Bytes(b"more\n".to_vec()),
            },
            Request::WriteFile {
                path: s("/dir/medium.bin"),
                offset: 5000,
                data: Bytes(data(4, 70_000)),
                truncate: false,
                mode: 0o644,
            },
            Request::Truncate {
                path: s("/dir/sub/deeper/big.dat"),
                size: 1000,
            },
            Request::Rename {
                from: s("/dir/sub"),
                to: s("/new/sub"),
            },
            Request::Symlink {
                target: s("new/deeper/file"),
                linkpath: s("/lnk"),
            },
            Request::Setxattr {
                path: s("/hello.txt"),
                name: s("security.selinux"),
                value: Bytes(b"system_u:object_r:etc_t:s0\0".to_vec()),
            },
            Request::Chmod {
                path: s("/hello.txt"),
                mode: 0o600,
            },
            Request::Chown {
                path: s("/hello.txt"),
                uid: 1,
                gid: 2,
            },
            Request::Remove {
                path: s("/empty"),
                recursive: false,
            },
            Request::Remove {
                path: s("/new"),
                recursive: true,
            },
            Request::Sync,
        ];
        for r in reqs {
            if a.handle(r).is_ok() {
                ok += 1;
            }
        }
        let _ = a.handle(Request::Umount {
            mountpoint: "/".to_string(),
        });
        // What was written must mount again (or be refused cleanly) and walk.
        if mount(&mut a)
            && let Ok(Reply::Names(names)) = a.handle(Request::Find {
                path: "/".to_string(),
            })
        {
            for n in names.into_iter().take(256) {
                let _ = a.handle(Request::Pread {
                    path: format!("/{n}"),
                    offset: 0,
                    len: 65536,
                });
            }
        }
    }
    let _ = a.handle(Request::Shutdown);
    ok
}

#[test]
fn xfs_write_corpus() {
    assert!(have("mkfs.xfs"), "mkfs.xfs (xfsprogs) is needed");
    let t = Tmp::new("xfs5w");
    let v5 = xfs_image(&t, false);
    let pristine = exercise_rw(v5.clone(), "xfs");
    assert!(pristine >= 13, "the pristine image took {pristine} changes");
    let vs = variants(&v5, 0x0F5F_5015, 120, 20, 128 * 1024);
    let n = run_variants("xfs-v5-rw", vs, |img, _| exercise_rw(img, "xfs"));
    let t4 = Tmp::new("xfs4w");
    let v4 = xfs_image(&t4, true);
    assert!(exercise_rw(v4.clone(), "xfs") >= 13);
    let vs = variants(&v4, 0x0F5F_5014, 60, 10, 64 * 1024);
    let m = run_variants("xfs-v4-rw", vs, |img, _| exercise_rw(img, "xfs"));
    assert!(n + m >= 200);
}
