//! Corpus test: deterministic bit-flipped and truncated variants of small ext4, FAT and
//! btrfs images, each mounted read-only through the RPC dispatcher on a read-only disk, listed
//! and read recursively (`find` + `pread` of every file). Pass: no panic, no hang (each
//! variant runs in a thread with a time limit) and the image bytes unchanged.
//!
//! Images are built with the real tools (`mkfs.ext4 -d`, `mkfs.vfat` + `mcopy`/`mmd`,
//! `mkfs.btrfs --rootdir`).

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
) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for i in 0..flips {
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
        out.push((format!("flip#{i} [{}]", what.join(" ")), v));
    }
    for i in 0..truncs {
        // Both very short cuts (inside the metadata) and cuts anywhere.
        let len = if i % 2 == 0 {
            rng.below(hot.min(base.len()))
        } else {
            rng.below(base.len())
        };
        out.push((format!("truncate#{i} to {len}"), base[..len].to_vec()));
    }
    out
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
    let vs = variants(&base, seed, 170, 40, hot);
    let total = vs.len();
    let mut fully_read = 0;
    for (i, (what, img)) in vs.into_iter().enumerate() {
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

fn run_variants(
    name: &str,
    base: Vec<u8>,
    vs: Vec<(String, Vec<u8>)>,
    fstype: &'static str,
) -> usize {
    let pristine_reads = exercise(base, Some(fstype));
    assert!(
        pristine_reads >= 5,
        "{name}: pristine image read {pristine_reads} files"
    );
    let total = vs.len();
    let mut fully_read = 0;
    for (i, (what, img)) in vs.into_iter().enumerate() {
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
        total += run_variants(&format!("btrfs-{compress}"), img, vs, "btrfs");
    }
    assert!(total >= 600);
}
