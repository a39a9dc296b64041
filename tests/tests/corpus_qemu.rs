//! Corpus test under qemu: deterministic bit-flipped and truncated variants of small
//! ext4 and FAT images, 8 disks per appliance, each mounted read-only, walked with `find`
//! and every file read. The appliance must never crash or hang (every call has a time
//! limit: the session's call timeout), must keep answering after a failed call, and
//! the image files must be unchanged (hash before/after).

use skiff_tests::skiff::wire::FileType;
use skiff_tests::skiff::{DriveOptions, Error, Format, MountOptions, Session};
use skiff_tests::{builder, file_hash, mcopy, mkfs_ext4, mkfs_vfat, mmd, pattern};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Disks attached to one appliance.
const PER_BOOT: usize = 8;
/// The most bytes read from one file (a corrupt size field may claim terabytes).
const READ_CAP: u64 = 256 << 10;

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

fn tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("dir/sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("Another Dir")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("dir/medium.bin"), pattern(20_000, 1)).unwrap();
    std::fs::write(src.join("dir/sub/small"), b"small").unwrap();
    std::fs::write(src.join("dir/sub/deeper/big.dat"), pattern(70_000, 2)).unwrap();
    std::fs::write(src.join("Another Dir/A Long File Name.txt"), b"long").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    src
}

fn ext4_base(dir: &Path) -> Vec<u8> {
    let src = tree(dir);
    std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(100), src.join("slow-link")).unwrap();
    let img = dir.join("ext4.img");
    mkfs_ext4(&img, "1M", &src, &["-b", "1024", "-N", "64"]);
    std::fs::read(img).unwrap()
}

fn fat_base(dir: &Path, bits: u32, kib: u64) -> Vec<u8> {
    let src = tree(dir);
    let img = dir.join(format!("fat{bits}.img"));
    mkfs_vfat(&img, bits, kib, None);
    mmd(&img, &["dir", "dir/sub", "dir/sub/deeper", "Another Dir"]);
    for f in [
        "hello.txt",
        "dir/medium.bin",
        "dir/sub/small",
        "dir/sub/deeper/big.dat",
        "Another Dir/A Long File Name.txt",
        "empty",
    ] {
        mcopy(&img, &src.join(f), f);
    }
    std::fs::read(img).unwrap()
}

/// Bit flips (mostly in the metadata-heavy first `hot` bytes) and truncations (to
/// whole sectors: a disk is made of sectors).
fn variants(base: &[u8], seed: u32, flips: usize, truncs: usize, hot: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for i in 0..flips {
        let mut v = base.to_vec();
        let nbits = 1 + rng.below(if i % 4 == 0 { 32 } else { 4 });
        for _ in 0..nbits {
            let range = if rng.below(5) == 0 { v.len() } else { hot };
            let off = rng.below(range);
            v[off] ^= 1 << rng.below(8);
        }
        out.push(v);
    }
    for i in 0..truncs {
        let len = if i % 2 == 0 {
            rng.below(hot)
        } else {
            rng.below(base.len())
        };
        let len = (len / 512).max(1) * 512;
        out.push(base[..len].to_vec());
    }
    out
}

/// Mounts `dev` read-only at `/`, finds every path and reads every regular file (up to
/// [`READ_CAP`] bytes). Errors from the filesystem are fine; anything that closes the
/// session (crash, hang, bad frame) is not. Returns the files read.
fn exercise(s: &mut Session, dev: &str, name: &str) -> usize {
    let ok_or_remote = |r: Result<(), Error>, what: &str| match r {
        Ok(()) => true,
        Err(Error::Remote(_)) => false,
        Err(e) => panic!("{name}: {what}: {e}"),
    };
    let mounted = s.mount(dev, "/", MountOptions::readonly());
    if !ok_or_remote(mounted, "mount") {
        return 0;
    }
    let mut files = 0;
    match s.find("/") {
        Ok(paths) => {
            for p in paths {
                let full = format!("/{p}");
                match s.lstat(&full) {
                    Ok(st) if st.file_type == FileType::Regular => {
                        let r = s.pread(&full, 0, READ_CAP).map(|_| ());
                        if ok_or_remote(r, &format!("read {full}")) {
                            files += 1;
                        }
                    }
                    Ok(st) if st.file_type == FileType::Symlink => {
                        ok_or_remote(s.readlink(&full).map(|_| ()), "readlink");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        ok_or_remote(Err(e), &format!("lstat {full}"));
                    }
                }
            }
        }
        Err(e) => {
            ok_or_remote(Err(e), "find");
        }
    }
    ok_or_remote(s.statvfs("/").map(|_| ()), "statvfs");
    // The mount was made; unmounting a read-only one must work.
    s.umount("/")
        .unwrap_or_else(|e| panic!("{name}: umount: {e}"));
    files
}

fn run_corpus(name: &str, base: Vec<u8>, seed: u32, hot: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let vs = variants(&base, seed, 60, 12, hot.min(base.len()));
    let mut paths = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        let p = dir.path().join(format!("{name}-{i}.img"));
        std::fs::write(&p, v).unwrap();
        paths.push(p);
    }
    let hashes: Vec<u64> = paths.iter().map(|p| file_hash(p)).collect();
    let mut files = 0;
    for (boot, group) in paths.chunks(PER_BOOT).enumerate() {
        let mut b = builder().call_timeout(Duration::from_secs(30));
        for p in group {
            b = b.add_drive(p, DriveOptions::readonly().format(Format::Raw));
        }
        let mut s = b
            .launch()
            .unwrap_or_else(|e| panic!("{name}: boot {boot}: {e}"));
        let devs: Vec<String> = s.devices().iter().map(|d| d.name.clone()).collect();
        assert_eq!(devs.len(), group.len());
        for (dev, p) in devs.iter().zip(group) {
            let label = p.file_name().unwrap().to_string_lossy().into_owned();
            files += exercise(&mut s, dev, &label);
            s.ping().unwrap();
        }
        s.shutdown()
            .unwrap_or_else(|e| panic!("{name}: boot {boot}: shutdown: {e}"));
    }
    for (p, h) in paths.iter().zip(hashes) {
        assert_eq!(file_hash(p), h, "{p:?} changed");
    }
    eprintln!("{name}: {} variants, {files} files read", vs.len());
    files
}

// 72 variants each of ext4, FAT12 and FAT16: 216 images, 27 appliance boots.

#[test]
fn ext4_variants_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let files = run_corpus("ext4", ext4_base(dir.path()), 0xE4E4_0001, 48 << 10);
    assert!(files > 0, "some variants must still read");
}

#[test]
fn fat12_variants_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let files = run_corpus(
        "fat12",
        fat_base(dir.path(), 12, 1024),
        0xFA12_0002,
        16 << 10,
    );
    assert!(files > 0);
}

#[test]
fn fat16_variants_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let files = run_corpus(
        "fat16",
        fat_base(dir.path(), 16, 16384),
        0xFA16_0003,
        64 << 10,
    );
    assert!(files > 0);
}
