//! btrfs reader tests. Images are built by `mkfs.btrfs --rootdir` (btrfs-progs 6.14) and
//! everything read is compared with the source directory, with the kernel's view of the
//! same image on a read-only loop mount (when this machine can loop-mount btrfs), and
//! with `btrfs inspect-internal dump-tree` / `btrfs subvolume list`.

use super::*;
use crate::block::{MemDisk, shared};
use crate::part::testutil::{TempDir, TempImage, blkid, run};
use std::collections::BTreeMap as Map;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random bytes (incompressible).
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Compressible text, different on every line.
fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(
            format!("line {i:06}: the quick brown fox jumps over the lazy dog {}\n", i % 7)
                .as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

/// A source tree exercising every kind of file the reader handles.
fn build_source(root: &Path, many: usize) {
    let p = |s: &str| root.join(s);
    std::fs::create_dir_all(p("dir/sub/deep")).unwrap();
    std::fs::create_dir_all(p("many")).unwrap();
    std::fs::create_dir_all(p("empty-dir")).unwrap();
    std::fs::write(p("small.txt"), b"hello btrfs\n").unwrap();
    std::fs::write(p("empty"), b"").unwrap();
    std::fs::write(p("text.log"), text(700 * 1024 + 123)).unwrap();
    std::fs::write(p("random.bin"), noise(7, 300 * 1024 + 5)).unwrap();
    let mut mixed = text(200 * 1024);
    mixed.extend(noise(9, 100 * 1024));
    mixed.extend(text(64 * 1024 + 17));
    std::fs::write(p("mixed.bin"), mixed).unwrap();
    std::fs::write(p("dir/sub/deep/file"), b"deep down\n").unwrap();
    std::fs::write(p("dir/inline-max"), vec![b'x'; 2000]).unwrap();
    std::fs::write(p("dir/just-over-inline"), text(5000)).unwrap();
    // A sparse file: data, a hole, data, a hole up to the end.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(p("sparse")).unwrap();
        f.write_all(&noise(3, 8192)).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&text(10_000)).unwrap();
        f.set_len(3 << 20).unwrap();
    }
    for i in 0..many {
        std::fs::write(p(&format!("many/file-{i:05}")), format!("file number {i}\n")).unwrap();
    }
    symlink("small.txt", p("link-rel")).unwrap();
    symlink("../text.log", p("dir/link-up")).unwrap();
    symlink("/dir/sub", p("link-abs")).unwrap();
    symlink("nowhere", p("dangling")).unwrap();
    symlink("loop-b", p("loop-a")).unwrap();
    symlink("loop-a", p("loop-b")).unwrap();
    symlink("link-abs/deep/../deep/file", p("link-chain")).unwrap();
    symlink("x".repeat(300), p("long-link")).unwrap();
    std::fs::set_permissions(p("small.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(p("dir/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(p("dir/sub/deep/file"), Some(1000), Some(1001)).unwrap();
    run("mkfifo", &[p("fifo").to_str().unwrap()], None);
}

/// Builds an image of `src` with extra mkfs arguments.
fn mkfs(src: &Path, args: &[&str]) -> TempImage {
    let img = TempImage::new("btrfs", 256 << 20);
    let mut a = vec!["-q", "-f", "--rootdir", src.to_str().unwrap()];
    a.extend_from_slice(args);
    a.push(img.path());
    run("mkfs.btrfs", &a, None);
    img
}

fn open(img: &TempImage, subvol: Option<&str>) -> BtrfsFs {
    BtrfsFs::open(img.disk(), subvol).unwrap_or_else(|e| panic!("open {:?}: {e}", subvol))
}

fn kind(t: std::fs::FileType) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_file() {
        FileType::Regular
    } else if t.is_fifo() {
        FileType::Fifo
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::Socket
    }
}

/// Reads a whole file through the reader in `chunk`-byte pieces.
fn read_all(fs: &mut BtrfsFs, path: &str, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let d = fs.read(path, out.len() as u64, chunk).unwrap();
        assert!(d.len() <= chunk);
        if d.is_empty() {
            return out;
        }
        out.extend_from_slice(&d);
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// What a comparison checks besides names, types and contents.
#[derive(Clone, Copy)]
struct Strict {
    /// Inode numbers, link counts and directory sizes (the kernel knows; a source tree
    /// does not).
    inodes: bool,
}

/// Compares the reader's tree at `dir` with the host directory `host`, recursively.
/// Returns the number of paths compared.
fn compare(fs: &mut BtrfsFs, dir: &str, host: &Path, strict: Strict) -> usize {
    let mut want: Vec<String> = std::fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    want.sort();
    let entries = fs.read_dir(dir).unwrap();
    let mut got: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    got.sort();
    assert_eq!(got, want, "entries of {dir}");
    let mut n = 0;
    for e in entries {
        let path = join(dir, &e.name);
        let hp = host.join(&e.name);
        let m = std::fs::symlink_metadata(&hp).unwrap();
        let st = fs.stat(&path, false).unwrap();
        assert_eq!(st, e.stat, "{path}: read_dir and lstat disagree");
        assert_eq!(st.file_type, kind(m.file_type()), "{path}");
        assert_eq!(st.mode, m.mode() & 0o7777, "{path} mode");
        assert_eq!((st.uid, st.gid), (m.uid(), m.gid()), "{path} owner");
        assert_eq!(st.mtime, m.mtime(), "{path} mtime");
        if strict.inodes {
            assert_eq!(st.ino, m.ino(), "{path} ino");
            assert_eq!(st.nlink as u64, m.nlink(), "{path} nlink");
            assert_eq!(st.size, m.size(), "{path} size");
            assert_eq!(st.ctime, m.ctime(), "{path} ctime");
            assert_eq!(st.atime, m.atime(), "{path} atime");
        }
        n += 1;
        match st.file_type {
            FileType::Directory => n += compare(fs, &path, &hp, strict),
            FileType::Symlink => {
                let want = std::fs::read_link(&hp).unwrap();
                assert_eq!(fs.read_link(&path).unwrap(), want.to_str().unwrap(), "{path}");
                assert_eq!(st.size, want.as_os_str().len() as u64, "{path} size");
            }
            FileType::Regular => {
                let want = std::fs::read(&hp).unwrap();
                assert_eq!(st.size, want.len() as u64, "{path} size");
                let got = read_all(fs, &path, 1 << 20);
                assert!(got == want, "{path}: contents differ (1 MiB reads)");
                if want.len() > 10_000 {
                    // Odd-sized reads cross extent and sector boundaries.
                    let got = read_all(fs, &path, 65_536 + 4_097);
                    assert!(got == want, "{path}: contents differ (odd reads)");
                    let mid = want.len() / 3;
                    let part = fs.read(&path, mid as u64, 12_345).unwrap();
                    assert_eq!(part, want[mid..(mid + 12_345).min(want.len())], "{path}");
                }
                assert!(fs.read(&path, want.len() as u64 + 10, 100).unwrap().is_empty());
            }
            _ => {}
        }
    }
    n
}

/// A read-only loop mount of an image, unmounted on drop. `None` (with a note) where
/// this machine cannot mount btrfs; the tests then rely on the other oracles.
struct LoopMount {
    dir: TempDir,
}

impl LoopMount {
    fn new(img: &Path, opts: &str) -> Option<LoopMount> {
        let dir = TempDir::new("btrfs-mnt");
        let out = Command::new("mount")
            .args(["-t", "btrfs", "-o", &format!("loop,{opts}")])
            .arg(img)
            .arg(&dir.0)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "note: cannot loop-mount btrfs here ({}); skipping the kernel comparison",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(LoopMount { dir })
    }
    fn path(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir.0).status();
    }
}

#[test]
fn name_hash_matches_dump_tree() {
    // From `dump-tree -t root` of any mkfs.btrfs image: the root tree directory's
    // `default` entry is keyed (ROOT_TREE_DIR DIR_ITEM 2378154706).
    assert_eq!(name_hash(b"default"), 2378154706);
}

#[test]
fn plain_image_matches_source_and_kernel() {
    let src = TempDir::new("btrfs-src");
    build_source(&src.0, 300);
    let img = mkfs(&src.0, &[]);
    let mut fs = open(&img, None);
    assert!(fs.readonly());
    assert_eq!(fs.fstype(), "btrfs");
    let n = compare(&mut fs, "/", &src.0, Strict { inodes: false });
    assert!(n > 300, "compared {n} paths");
    if let Some(m) = LoopMount::new(&img.0, "ro") {
        compare(&mut fs, "/", m.path(), Strict { inodes: true });
        let root = std::fs::metadata(m.path()).unwrap();
        let st = fs.stat("/", true).unwrap();
        assert_eq!((st.ino, st.size, st.nlink as u64), (root.ino(), root.size(), root.nlink()));
    }
}
