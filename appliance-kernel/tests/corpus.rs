//! Corpus test: deterministic bit-flipped and truncated variants of small ext4, FAT and
//! XFS images, each mounted read-only through the RPC dispatcher on a read-only disk, listed
//! and read recursively (`find` + `pread` of every file). Pass: no panic, no hang (each
//! variant runs in a thread with a time limit) and the image bytes unchanged.
//!
//! Images are built with the real tools (`mkfs.ext4 -d`, `mkfs.vfat` + `mcopy`/`mmd`,
//! `mkfs.xfs -p`).

use appliance::block::{MemDisk, SharedDevice, shared};
use appliance::rpc::Appliance;
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
    let pristine_reads = exercise(base.clone(), Some(fstype));
    assert!(
        pristine_reads >= 5,
        "{name}: pristine image read {pristine_reads} files"
    );
    let mut total = 0;
    let mut fully_read = 0;
    for (i, (what, img)) in variants(&base, seed, 170, 40, hot).enumerate() {
        total += 1;
        let (tx, rx) = mpsc::channel();
        let detect = i % 2 == 0;
        let handle = std::thread::Builder::new()
            .name(format!("{name} {what}"))
            .spawn(move || {
                let r = exercise(img, if detect { None } else { Some(fstype) });
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
