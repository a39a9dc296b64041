//! btrfs reader tests. Images are built by `mkfs.btrfs --rootdir` (btrfs-progs 6.14) and
//! everything read is compared with the source directory, with the kernel's view of the
//! same image on a read-only loop mount (when this machine can loop-mount btrfs), and
//! with `btrfs inspect-internal dump-tree` / `btrfs subvolume list`.

use super::*;
use crate::block::{MemDisk, shared};
use crate::part::testutil::{TempDir, TempImage, blkid, run};
use std::collections::BTreeMap as Map;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
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
            format!(
                "line {i:06}: the quick brown fox jumps over the lazy dog {}\n",
                i % 7
            )
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
        std::fs::write(
            p(&format!("many/file-{i:05}")),
            format!("file number {i}\n"),
        )
        .unwrap();
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
                assert_eq!(
                    fs.read_link(&path).unwrap(),
                    want.to_str().unwrap(),
                    "{path}"
                );
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
                assert!(
                    fs.read(&path, want.len() as u64 + 10, 100)
                        .unwrap()
                        .is_empty()
                );
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
        assert_eq!(
            (st.ino, st.size, st.nlink as u64),
            (root.ino(), root.size(), root.nlink())
        );
    }
}

/// `btrfs inspect-internal dump-tree` of one tree, as text.
fn dump_tree(img: &TempImage, tree: &str) -> String {
    run(
        "btrfs",
        &["inspect-internal", "dump-tree", "-t", tree, img.path()],
        None,
    )
}

/// Regular file extents listed by dump-tree: (ino, file offset, disk bytenr, disk bytes,
/// compression).
fn dump_extents(dump: &str) -> Vec<(u64, u64, u64, u64, u8)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = dump.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim().split_once(" key (").map(|x| x.1) else {
            continue;
        };
        let f: Vec<&str> = rest.split([' ', ')']).collect();
        if f.get(1) != Some(&"EXTENT_DATA") || !lines[i + 1].contains("type 1 (regular)") {
            continue;
        }
        let disk: Vec<&str> = lines[i + 2].split_whitespace().collect();
        let comp: Vec<&str> = lines[i + 4].split_whitespace().collect();
        out.push((
            f[0].parse().unwrap(),
            f[2].parse().unwrap(),
            disk[4].parse().unwrap(),
            disk[6].parse().unwrap(),
            comp[2].parse().unwrap(),
        ));
    }
    out
}

/// Physical offsets of every copy of `logical` (`btrfs-map-logical`).
fn physical(img: &TempImage, logical: u64) -> Vec<u64> {
    // `-b`: without it the tool walks on to the next extent and may exit 1 at the last.
    let l = logical.to_string();
    run(
        "btrfs-map-logical",
        &["-l", &l, "-b", "4096", img.path()],
        None,
    )
    .lines()
    .filter_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.first() == Some(&"mirror")).then(|| w[5].parse().unwrap())
    })
    .collect()
}

fn super_field(img: &TempImage, name: &str) -> u64 {
    let d = run(
        "btrfs",
        &["inspect-internal", "dump-super", img.path()],
        None,
    );
    d.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("dump-super has no {name}"))
}

/// Every csum / compression / profile combination reads back like the source and like
/// the kernel, and the images really hold the compressed extents the test is about.
#[test]
fn feature_matrix_matches_source_and_kernel() {
    let src = TempDir::new("btrfs-src-matrix");
    build_source(&src.0, 40);
    let cases: &[(&[&str], Option<u8>)] = &[
        (
            &["--csum", "crc32c", "--compress", "zstd", "-m", "dup"],
            Some(COMPRESS_ZSTD),
        ),
        (
            &["--csum", "xxhash", "--compress", "lzo", "-m", "single"],
            Some(COMPRESS_LZO),
        ),
        (
            &["--csum", "sha256", "--compress", "zlib", "-m", "dup"],
            Some(COMPRESS_ZLIB),
        ),
        (
            &[
                "--csum",
                "blake2",
                "--compress",
                "zstd:15",
                "-n",
                "4096",
                "-s",
                "4096",
            ],
            Some(COMPRESS_ZSTD),
        ),
        (
            &[
                "--csum",
                "crc32c",
                "--compress",
                "lzo",
                "-d",
                "dup",
                "-m",
                "dup",
            ],
            Some(COMPRESS_LZO),
        ),
        (&["--csum", "xxhash", "-M"], None),
        (
            &["--compress", "zlib:9", "-n", "65536"],
            Some(COMPRESS_ZLIB),
        ),
        // 16 KiB sectors: lzo segments and data csums per 16 KiB (Linux on x86 may refuse
        // to mount it; the source is the oracle then).
        (
            &["-s", "16384", "-n", "16384", "--compress", "lzo"],
            Some(COMPRESS_LZO),
        ),
    ];
    for (args, comp) in cases {
        let img = mkfs(&src.0, args);
        let extents = dump_extents(&dump_tree(&img, "fs"));
        assert!(!extents.is_empty(), "{args:?}: no regular extents");
        if let Some(c) = comp {
            let n = extents.iter().filter(|e| e.4 == *c).count();
            assert!(n >= 5, "{args:?}: only {n} compressed extents");
        }
        let mut fs = open(&img, None);
        let n = compare(&mut fs, "/", &src.0, Strict { inodes: false });
        assert!(n > 40, "{args:?}: compared {n}");
        if let Some(m) = LoopMount::new(&img.0, "ro") {
            compare(&mut fs, "/", m.path(), Strict { inodes: true });
        }
    }
}

/// Deep trees: thousands of entries in one directory on 4 KiB nodes (a three-level fs
/// tree), listed in index order and looked up by name hash.
#[test]
fn many_files_deep_tree() {
    let src = TempDir::new("btrfs-src-many");
    std::fs::create_dir_all(src.0.join("d")).unwrap();
    for i in 0..5000 {
        std::fs::write(
            src.0.join(format!("d/entry-{i:05}-{}", "n".repeat(i % 40))),
            i.to_string(),
        )
        .unwrap();
    }
    let img = mkfs(&src.0, &["-n", "4096"]);
    let dump = dump_tree(&img, "fs");
    assert!(
        dump.contains("node ") && dump.contains(" level 2 "),
        "expected a 3-level fs tree"
    );
    let mut fs = open(&img, None);
    let entries = fs.read_dir("/d").unwrap();
    assert_eq!(entries.len(), 5000);
    // DIR_INDEX order is creation order; mkfs adds entries in readdir order of the
    // source, which the kernel mount lists the same way.
    if let Some(m) = LoopMount::new(&img.0, "ro") {
        let kernel: Vec<String> = std::fs::read_dir(m.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let ours: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        assert_eq!(ours, kernel, "directory order differs from the kernel's");
        compare(&mut fs, "/", m.path(), Strict { inodes: true });
    }
    compare(&mut fs, "/", &src.0, Strict { inodes: false });
    for i in (0..5000).step_by(997) {
        let p = format!("/d/entry-{i:05}-{}", "n".repeat(i % 40));
        assert_eq!(fs.read(&p, 0, 100).unwrap(), i.to_string().as_bytes());
    }
    assert_eq!(
        fs.stat("/d/entry-00000-x", false).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn symlinks_resolve_inside_the_filesystem() {
    let src = TempDir::new("btrfs-src-links");
    build_source(&src.0, 0);
    let img = mkfs(&src.0, &[]);
    let mut fs = open(&img, None);
    let st = fs.stat("/link-rel", true).unwrap();
    assert_eq!((st.file_type, st.size), (FileType::Regular, 12));
    assert_eq!(fs.read("/link-rel", 0, 100).unwrap(), b"hello btrfs\n");
    assert_eq!(fs.read("/dir/link-up", 0, 4).unwrap(), b"line");
    assert_eq!(
        fs.stat("/link-abs", true).unwrap().file_type,
        FileType::Directory
    );
    assert_eq!(
        fs.read("/link-abs/deep/file", 0, 100).unwrap(),
        b"deep down\n"
    );
    assert_eq!(fs.read("/link-chain", 0, 100).unwrap(), b"deep down\n");
    assert_eq!(
        fs.read_link("/link-chain").unwrap(),
        "link-abs/deep/../deep/file"
    );
    assert_eq!(fs.read_link("/long-link").unwrap(), "x".repeat(300));
    assert_eq!(
        fs.stat("/dangling", true).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        fs.stat("/dangling", false).unwrap().file_type,
        FileType::Symlink
    );
    assert_eq!(fs.stat("/loop-a", true).unwrap_err().kind, ErrorKind::Loop);
    assert_eq!(
        fs.stat("/loop-a/x", false).unwrap_err().kind,
        ErrorKind::Loop
    );
    assert_eq!(
        fs.read_link("/small.txt").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        fs.read("/dir", 0, 1).unwrap_err().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.read_dir("/small.txt").unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.stat("/small.txt/x", false).unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(fs.stat("/fifo", false).unwrap().file_type, FileType::Fifo);
    assert!(fs.read_dir("/empty-dir").unwrap().is_empty());
}

#[test]
fn writes_are_refused_naming_btrfs() {
    let src = TempDir::new("btrfs-src-ro");
    std::fs::write(src.0.join("f"), b"x").unwrap();
    let img = mkfs(&src.0, &[]);
    let before = std::fs::read(&img.0).unwrap();
    let mut fs = open(&img, None);
    let errs = [
        fs.write("/f", 0, b"y", false, 0o644).unwrap_err(),
        fs.write("/new", 0, b"y", true, 0o644).unwrap_err(),
        fs.mkdir("/d", 0o755).unwrap_err(),
        fs.unlink("/f").unwrap_err(),
        fs.rmdir("/").unwrap_err(),
        fs.rename("/f", "/g").unwrap_err(),
        fs.chmod("/f", 0o600).unwrap_err(),
        fs.symlink("f", "/l").unwrap_err(),
        fs.truncate("/f", 0).unwrap_err(),
    ];
    for e in errs {
        assert_eq!(e.kind, ErrorKind::ReadOnly);
        assert!(e.message.contains("btrfs"), "{}", e.message);
    }
    fs.sync().unwrap();
    assert!(std::fs::read(&img.0).unwrap() == before);
    // Through the dispatcher too, and probe says btrfs.
    let mut a = crate::rpc::Appliance::new();
    a.set_disk(0, img.disk());
    a.mount("/dev/sda", "/", false, None).unwrap();
    let m = a.handle(wire::Request::Mounts).unwrap();
    assert!(format!("{m:?}").contains("btrfs"), "{m:?}");
    assert!(format!("{m:?}").contains("readonly: true"), "{m:?}");
}

#[test]
fn probe_label_and_uuid_match_blkid() {
    let src = TempDir::new("btrfs-src-probe");
    std::fs::write(src.0.join("f"), b"x").unwrap();
    let img = mkfs(
        &src.0,
        &[
            "-L",
            "my-root",
            "-U",
            "0b9f2c3e-1d2a-4e5f-8a9b-0c1d2e3f4a5b",
        ],
    );
    let p = crate::fs::probe::probe(&img.disk());
    let b = blkid(img.path());
    assert_eq!(Some(&p.fstype), b.get("TYPE"));
    assert_eq!(p.label.as_ref(), b.get("LABEL"));
    assert_eq!(p.uuid.as_ref(), b.get("UUID"));
    assert_eq!(
        p.uuid.as_deref(),
        Some("0b9f2c3e-1d2a-4e5f-8a9b-0c1d2e3f4a5b")
    );
    let fs = open(&img, None);
    assert_eq!(fs.label(), "my-root");
    assert_eq!(fs.uuid(), "0b9f2c3e-1d2a-4e5f-8a9b-0c1d2e3f4a5b");
    // A changed fsid with the old one kept as the metadata UUID (btrfstune -M): tree
    // blocks still carry the old UUID, blkid and the reader report the new one.
    run(
        "btrfstune",
        &[
            "-f",
            "-M",
            "5a5a5a5a-1111-4222-8333-444455556666",
            img.path(),
        ],
        None,
    );
    let b = blkid(img.path());
    assert_eq!(
        b.get("UUID").map(String::as_str),
        Some("5a5a5a5a-1111-4222-8333-444455556666")
    );
    let mut fs = open(&img, None);
    assert_eq!(fs.uuid(), "5a5a5a5a-1111-4222-8333-444455556666");
    assert_eq!(fs.read("/f", 0, 10).unwrap(), b"x");
    assert_eq!(
        crate::fs::probe::probe(&img.disk()).uuid.as_ref(),
        b.get("UUID")
    );
}

/// `btrfs subvolume list` lines: id → (gen, top level, path).
fn kernel_subvolumes(mnt: &Path) -> Map<u64, (u64, u64, String)> {
    run("btrfs", &["subvolume", "list", mnt.to_str().unwrap()], None)
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // ID 256 gen 6 top level 5 path root
            (
                w[1].parse().unwrap(),
                (
                    w[3].parse().unwrap(),
                    w[6].parse().unwrap(),
                    w[8..].join(" "),
                ),
            )
        })
        .collect()
}

#[test]
fn subvolumes_default_named_nested_and_listed() {
    let src = TempDir::new("btrfs-src-subvol");
    let p = |s: &str| src.0.join(s);
    for d in [
        "root/etc",
        "root/usr/bin",
        "home/user/docs",
        "var/lib/machines/vm1/data",
        "srv",
    ] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::write(p("root/etc/hostname"), b"guest\n").unwrap();
    std::fs::write(p("root/usr/bin/tool"), text(300_000)).unwrap();
    std::fs::write(p("home/user/docs/notes.txt"), b"notes").unwrap();
    std::fs::write(p("var/lib/machines/vm1/data/disk"), noise(5, 200_000)).unwrap();
    std::fs::write(p("srv/plain-dir-file"), b"srv").unwrap();
    std::fs::write(p("top-file"), b"top").unwrap();
    let img = mkfs(
        &src.0,
        &[
            "--subvol",
            "rw:home",
            "--subvol",
            "default:root",
            "--subvol",
            "ro:var/lib/machines",
            "--subvol",
            "var/lib/machines/vm1",
            "--compress",
            "zstd",
        ],
    );
    // Default subvolume at /.
    let mut fs = open(&img, None);
    compare(&mut fs, "/", &p("root"), Strict { inodes: false });
    assert_eq!(fs.stat("/", true).unwrap().ino, 256);
    assert!(fs.stat("/home", false).is_err());
    let default_id = fs.subvolume_id();
    // Named subvolumes, with and without a leading slash, nested ones included.
    for (name, host) in [
        ("home", "home"),
        ("/var/lib/machines", "var/lib/machines"),
        ("var/lib/machines/vm1", "var/lib/machines/vm1"),
        ("/", ""),
    ] {
        let mut fs = open(&img, Some(name));
        compare(&mut fs, "/", &p(host), Strict { inodes: false });
    }
    // Nested subvolumes are directories with inode 256 when walking the top level.
    let mut top = open(&img, Some("/"));
    assert_eq!(top.subvolume_id(), FS_TREE_OBJECTID);
    for d in [
        "/home",
        "/root",
        "/var/lib/machines",
        "/var/lib/machines/vm1",
    ] {
        let st = top.stat(d, false).unwrap();
        assert_eq!((st.file_type, st.ino), (FileType::Directory, 256), "{d}");
    }
    assert_ne!(top.stat("/var/lib", false).unwrap().ino, 256);
    assert_eq!(
        top.read("/var/lib/machines/vm1/data/disk", 0, 1 << 20)
            .unwrap(),
        noise(5, 200_000)
    );
    // Paths that are not subvolumes.
    let e = BtrfsFs::open(img.disk(), Some("var")).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    let e = BtrfsFs::open(img.disk(), Some("nope")).err().unwrap();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    // The listing.
    let list = list_subvolumes(img.disk()).unwrap();
    let by_path: Map<String, &Subvolume> = list.iter().map(|s| (s.path.clone(), s)).collect();
    assert_eq!(
        by_path.keys().cloned().collect::<Vec<_>>(),
        ["home", "root", "var/lib/machines", "var/lib/machines/vm1"]
    );
    assert_eq!(by_path["root"].id, default_id);
    assert!(by_path["var/lib/machines"].readonly);
    assert!(!by_path["home"].readonly);
    assert_eq!(
        by_path["var/lib/machines/vm1"].parent_id,
        by_path["var/lib/machines"].id
    );
    // Against dump-tree's ROOT_BACKREF items: (id, parent, name).
    let dump = dump_tree(&img, "root");
    let lines: Vec<&str> = dump.lines().collect();
    let mut backrefs = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(k) = l.split_once(" key (").map(|x| x.1) else {
            continue;
        };
        let f: Vec<&str> = k.split([' ', ')']).collect();
        if f[1] != "ROOT_BACKREF" {
            continue;
        }
        let id: u64 = f[0].parse().unwrap();
        let parent: u64 = f[2].parse().unwrap();
        let name = lines[i + 1].rsplit("name ").next().unwrap();
        let s = list.iter().find(|s| s.id == id).unwrap();
        assert_eq!(s.parent_id, parent);
        assert!(s.path.ends_with(name), "{} vs {name}", s.path);
        backrefs += 1;
    }
    assert_eq!(backrefs, list.len());
    // Against `btrfs subvolume list` and the kernel's view of each subvolume.
    if let Some(m) = LoopMount::new(&img.0, "ro,subvolid=5") {
        let k = kernel_subvolumes(m.path());
        let ours: Map<u64, (u64, u64, String)> = list
            .iter()
            .map(|s| (s.id, (s.generation, s.parent_id, s.path.clone())))
            .collect();
        assert_eq!(ours, k);
        compare(&mut top, "/", m.path(), Strict { inodes: true });
        let ro = run(
            "btrfs",
            &["subvolume", "list", "-r", m.path().to_str().unwrap()],
            None,
        );
        let ro_ids: Vec<u64> = ro
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        let ours_ro: Vec<u64> = list.iter().filter(|s| s.readonly).map(|s| s.id).collect();
        assert_eq!(ours_ro, ro_ids);
    }
    if let Some(m) = LoopMount::new(&img.0, "ro") {
        let mut fs = open(&img, None);
        compare(&mut fs, "/", m.path(), Strict { inodes: true });
    }
}

/// `statvfs` equals what Linux reports for a read-write mount of the same image.
#[test]
fn statvfs_matches_kernel() {
    let src = TempDir::new("btrfs-src-df");
    build_source(&src.0, 50);
    for args in [
        &[][..],
        &["-m", "single"][..],
        &["-d", "dup", "-m", "dup"][..],
        &["-M"][..],
        &["--compress", "zstd"][..],
        &["-O", "block-group-tree", "--csum", "sha256"][..],
    ] {
        let img = mkfs(&src.0, args);
        let mut fs = open(&img, None);
        let st = fs.statvfs().unwrap();
        let total = super_field(&img, "total_bytes");
        let used = super_field(&img, "bytes_used");
        assert_eq!(st.block_size, 4096);
        assert_eq!(st.name_max, 255);
        assert!(
            st.blocks <= total / 4096 && st.blocks >= total / 4096 / 2,
            "{args:?}"
        );
        assert!(
            st.blocks - st.blocks_free >= used / 4096,
            "{args:?}: {st:?} used {used}"
        );
        assert!(st.blocks_avail <= st.blocks_free, "{args:?}: {st:?}");
        // The kernel, on a copy mounted read-write (see `statvfs` for why not ro).
        let copy = TempImage::new("btrfs-df-copy", 0);
        std::fs::copy(&img.0, &copy.0).unwrap();
        if let Some(m) = LoopMount::new(&copy.0, "rw") {
            let out = run(
                "stat",
                &["-f", "-c", "%S %b %f %a", m.path().to_str().unwrap()],
                None,
            );
            let k: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(
                vec![st.block_size, st.blocks, st.blocks_free, st.blocks_avail],
                k,
                "{args:?}"
            );
        }
    }
}

/// Recomputes the crc32c of a tree block (or the superblock) a test has patched.
fn reseal(img: &mut [u8], phys: u64, len: usize) {
    let b = &mut img[phys as usize..phys as usize + len];
    let c = CsumType::Crc32c.compute(&b[32..]);
    b[..32].copy_from_slice(&c);
}

fn open_bytes(bytes: Vec<u8>) -> FsResult<BtrfsFs> {
    BtrfsFs::open(shared(MemDisk::new(bytes, true)), None)
}

fn assert_corrupt<T>(r: FsResult<T>, needle: &str) {
    match r {
        Ok(_) => panic!("expected a Corrupt error mentioning {needle:?}"),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
            assert!(
                e.message.contains(needle),
                "{:?} lacks {needle:?}",
                e.message
            );
        }
    }
}

/// Logical address of the fs tree's root block (from dump-tree's first block line).
fn fs_tree_root(img: &TempImage) -> u64 {
    let d = dump_tree(img, "fs");
    let l = d
        .lines()
        .find(|l| l.starts_with("leaf ") || l.starts_with("node "))
        .unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Byte offset in a leaf of the data of the item with `key`.
fn leaf_item(block: &[u8], key: Key) -> (usize, usize) {
    let n = u32::from_le_bytes(block[0x60..0x64].try_into().unwrap()) as usize;
    for i in 0..n {
        let off = HEADER_SIZE + i * ITEM_SIZE;
        if Key::parse(block, off) == Some(key) {
            let d = u32::from_le_bytes(block[off + 17..off + 21].try_into().unwrap()) as usize;
            let s = u32::from_le_bytes(block[off + 21..off + 25].try_into().unwrap()) as usize;
            return (HEADER_SIZE + d, s);
        }
    }
    panic!("no item {key:?} in the leaf");
}

#[test]
fn corrupt_images_are_errors_not_panics() {
    let src = TempDir::new("btrfs-src-corrupt");
    std::fs::write(src.0.join("small.txt"), b"hello\n").unwrap();
    std::fs::write(src.0.join("random.bin"), noise(11, 300 * 1024)).unwrap();
    std::fs::write(src.0.join("text.log"), text(400 * 1024)).unwrap();
    let img = mkfs(&src.0, &["--compress", "zstd"]);
    let base = std::fs::read(&img.0).unwrap();
    let nodesize = 16384;
    {
        let mut fs = open_bytes(base.clone()).unwrap();
        assert_eq!(fs.read("/small.txt", 0, 10).unwrap(), b"hello\n");
    }

    // The superblock's checksum.
    let mut b = base.clone();
    b[0x10000 + 0x100] ^= 1;
    assert_corrupt(open_bytes(b), "superblock");

    // Too small, truncated, or no filesystem at all.
    assert_corrupt(open_bytes(base[..0x10000 + 100].to_vec()), "too small");
    assert!(open_bytes(base[..4 << 20].to_vec()).is_err());
    assert!(open_bytes(vec![0; 1 << 20]).is_err());

    // One bad copy of the (DUP) fs tree root is read from the other copy; both bad is
    // Corrupt naming the block.
    let root = fs_tree_root(&img);
    let copies = physical(&img, root);
    assert_eq!(copies.len(), 2, "metadata should be DUP");
    let mut b = base.clone();
    b[copies[0] as usize + 300] ^= 0x40;
    let mut fs = open_bytes(b.clone()).unwrap();
    assert_eq!(fs.read("/small.txt", 0, 10).unwrap(), b"hello\n");
    b[copies[1] as usize + 300] ^= 0x40;
    assert_corrupt(
        open_bytes(b),
        &format!("tree block {root}: crc32c checksum mismatch"),
    );

    // File data: a flipped bit in an uncompressed and in a compressed extent is Corrupt
    // naming the file; other files still read.
    let mut fs = open_bytes(base.clone()).unwrap();
    let extents = dump_extents(&dump_tree(&img, "fs"));
    for (name, compressed) in [("random.bin", false), ("text.log", true)] {
        let ino = fs.stat(&format!("/{name}"), false).unwrap().ino;
        let e = extents
            .iter()
            .find(|e| e.0 == ino && (e.4 != 0) == compressed)
            .unwrap_or_else(|| panic!("{name}: no extent with compressed={compressed}"));
        let phys = physical(&img, e.2)[0] as usize;
        let mut b = base.clone();
        b[phys + 100] ^= 0x01;
        let mut bad = open_bytes(b).unwrap();
        let r = bad.read(&format!("/{name}"), e.1, 4096);
        assert_corrupt(
            r,
            &format!(
                "/{name}: extent at file offset {}: data crc32c checksum mismatch",
                e.1
            ),
        );
        assert_eq!(bad.read("/small.txt", 0, 10).unwrap(), b"hello\n");
    }
    assert!(fs.read("/random.bin", 0, 1 << 20).unwrap() == noise(11, 300 * 1024));

    // A node pointing at itself: the fs tree root rewritten as a level-1 node whose one
    // child is itself (and the root item saying level 1).
    let rt = super_field(&img, "root");
    let rt_copies = physical(&img, rt);
    let mut b = base.clone();
    for &p in &copies {
        let blk = &mut b[p as usize..p as usize + nodesize];
        let generation = blk[0x50..0x58].to_vec();
        blk[0x60..0x64].copy_from_slice(&1u32.to_le_bytes());
        blk[0x64] = 1;
        let kp = HEADER_SIZE;
        blk[kp..kp + 8].copy_from_slice(&256u64.to_le_bytes());
        blk[kp + 8] = INODE_ITEM_KEY;
        blk[kp + 9..kp + 17].copy_from_slice(&0u64.to_le_bytes());
        blk[kp + 17..kp + 25].copy_from_slice(&root.to_le_bytes());
        blk[kp + 25..kp + 33].copy_from_slice(&generation);
        reseal(&mut b, p, nodesize);
    }
    for &p in &rt_copies {
        let blk = &mut b[p as usize..p as usize + nodesize];
        let (d, _) = leaf_item(blk, Key::new(FS_TREE_OBJECTID, ROOT_ITEM_KEY, 0));
        blk[d + 238] = 1;
        reseal(&mut b, p, nodesize);
    }
    assert_corrupt(
        open_bytes(b),
        &format!("tree block {root}: level 1 where 0 was expected"),
    );

    // A leaf item claiming a huge size, and a leaf claiming a huge item count.
    for (field, value, needle) in [
        (HEADER_SIZE + 21, 0xFFFF_FF00u32, "data outside the block"),
        (0x60, 0xFFFF_FFFF, "items do not fit"),
    ] {
        let mut b = base.clone();
        for &p in &copies {
            let at = p as usize + field;
            b[at..at + 4].copy_from_slice(&value.to_le_bytes());
            reseal(&mut b, p, nodesize);
        }
        assert_corrupt(open_bytes(b), needle);
    }

    // The system chunk array mapping the chunk tree past the end of the device, or a
    // zero-length chunk.
    let stripe0 = 0x10000 + 0x32B + 17 + CHUNK_ITEM_SIZE + 8;
    let mut b = base.clone();
    // One bad stripe of the DUP system chunk: the other copy serves.
    b[stripe0..stripe0 + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    reseal(&mut b, 0x10000, 4096);
    assert!(open_bytes(b.clone()).is_ok());
    b[stripe0 + STRIPE_SIZE..stripe0 + STRIPE_SIZE + 8]
        .copy_from_slice(&(1u64 << 50).to_le_bytes());
    reseal(&mut b, 0x10000, 4096);
    assert_corrupt(open_bytes(b), "past the end of the device");
    let mut b = base.clone();
    let len0 = 0x10000 + 0x32B + 17;
    b[len0..len0 + 8].copy_from_slice(&0u64.to_le_bytes());
    reseal(&mut b, 0x10000, 4096);
    assert_corrupt(open_bytes(b), "zero length");
}

/// What the kernel itself writes: preallocated extents, extents split by overwrites
/// (reads at an offset into an extent, compressed or not), compressed inline extents,
/// hard links, a snapshot and a changed default subvolume. Needs a read-write loop mount;
/// skipped (with a note) where btrfs cannot be mounted.
#[test]
fn kernel_written_image() {
    // Default features (holes implicit) and without NO_HOLES (explicit hole extents).
    kernel_written(&[], "");
    kernel_written(&["-O", "^no-holes"], "disk byte 0 nr 0");
}

fn kernel_written(mkfs_args: &[&str], must_contain: &str) {
    let src = TempDir::new("btrfs-src-kw");
    std::fs::write(src.0.join("seed"), b"seed").unwrap();
    let img = mkfs(&src.0, mkfs_args);
    let sh = |m: &Path, script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(m)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    {
        let Some(m) = LoopMount::new(&img.0, "rw,compress=zstd,max_inline=2048") else {
            return;
        };
        let p = m.path();
        std::fs::write(p.join("text"), text(600 * 1024)).unwrap();
        std::fs::write(p.join("plain"), noise(21, 400 * 1024)).unwrap();
        std::fs::write(p.join("inline-z"), text(1900)).unwrap();
        sh(p, "sync");
        // Overwrite the middles: the original extents are now referenced at offsets.
        sh(
            p,
            "dd if=/dev/zero of=text bs=1000 seek=150 count=40 conv=notrunc status=none",
        );
        sh(
            p,
            "dd if=/dev/urandom of=plain bs=4096 seek=20 count=3 conv=notrunc status=none",
        );
        sh(
            p,
            "fallocate -l 1M prealloc && fallocate -o 2M -l 512K prealloc && truncate -s 5M prealloc",
        );
        sh(
            p,
            "printf data | dd of=prealloc bs=1 seek=1500000 conv=notrunc status=none",
        );
        sh(
            p,
            "ln text hard-link && mkdir -p d/e && ln -s ../text d/e/up && rm seed",
        );
        sh(
            p,
            "btrfs -q subvolume create sv && cp plain sv/copy && mkdir sv/x",
        );
        sh(
            p,
            "btrfs property set sv compression lzo && cp text sv/lzo-text",
        );
        sh(
            p,
            "mkdir -p snaps && btrfs -q subvolume snapshot -r sv snaps/sv-1",
        );
        sh(
            p,
            "btrfs -q subvolume snapshot sv snaps/sv-rw && echo changed > snaps/sv-rw/copy",
        );
        sh(
            p,
            "btrfs -q subvolume create sv/nested && echo n > sv/nested/f",
        );
        sh(p, "btrfs subvolume set-default sv");
        sh(p, "sync");
    }
    let dump = dump_tree(&img, "fs");
    assert!(dump.contains("type 2 (prealloc)"), "no prealloc extent");
    assert!(
        dump.contains(must_contain),
        "{mkfs_args:?}: no {must_contain:?}"
    );
    assert!(dump.contains("(inline)") && dump.contains("compression 3 (zstd)"));
    // Extents referenced at an offset (the overwritten middles).
    assert!(
        dump.lines()
            .any(|l| l.contains("extent data offset") && !l.contains("offset 0 ")),
        "no extent referenced at an offset"
    );
    let mut fs = open(&img, None);
    let Some(m) = LoopMount::new(&img.0, "ro") else {
        return;
    };
    let n = compare(&mut fs, "/", m.path(), Strict { inodes: true });
    assert!(n >= 5, "{n}");
    let st = fs.stat("/snaps", false);
    assert!(st.is_err(), "default subvolume is sv, which has no snaps");
    drop(m);
    let mut top = open(&img, Some("/"));
    let Some(m) = LoopMount::new(&img.0, "ro,subvolid=5") else {
        return;
    };
    let n = compare(&mut top, "/", m.path(), Strict { inodes: true });
    assert!(n >= 15, "{n}");
    let ours: Map<u64, (u64, u64, String)> = top
        .subvolumes()
        .unwrap()
        .iter()
        .map(|s| (s.id, (s.generation, s.parent_id, s.path.clone())))
        .collect();
    assert_eq!(ours, kernel_subvolumes(m.path()));
    let zeros = top.read("/prealloc", 0, 1 << 20).unwrap();
    assert!(zeros.iter().all(|&b| b == 0) && zeros.len() == 1 << 20);
}

/// A loop device over an image file, detached on drop.
struct LoopDev(String);

impl LoopDev {
    fn new(img: &Path) -> Option<LoopDev> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(img)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("note: no loop devices here; skipping");
            return None;
        }
        Some(LoopDev(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A two-device filesystem (RAID1 metadata, RAID0 data) read from one device: the tree
/// comes from the local RAID1 copy, RAID0 data is read where its stripe is local, and a
/// stripe on the missing device is a clear `Unsupported` error naming it. The pieces each
/// device can serve are complementary and match the data the kernel wrote.
#[test]
fn multi_device_reads_what_is_local() {
    let d1 = TempImage::new("btrfs-dev1", 300 << 20);
    let d2 = TempImage::new("btrfs-dev2", 300 << 20);
    run(
        "mkfs.btrfs",
        &[
            "-q",
            "-f",
            "-d",
            "raid0",
            "-m",
            "raid1",
            d1.path(),
            d2.path(),
        ],
        None,
    );
    let big = noise(77, 2 << 20);
    {
        let Some(l1) = LoopDev::new(&d1.0) else {
            return;
        };
        let Some(l2) = LoopDev::new(&d2.0) else {
            return;
        };
        let Some(m) = LoopMount::new(
            Path::new(&l1.0),
            &format!("rw,device={},device={}", l1.0, l2.0),
        ) else {
            return;
        };
        std::fs::write(m.path().join("small"), b"tiny").unwrap();
        std::fs::write(m.path().join("big"), &big).unwrap();
        std::fs::create_dir(m.path().join("dir")).unwrap();
        drop(m);
    }
    let mut served = vec![0u8; big.len() / 4096];
    for (devid, img) in [(1u8, &d1), (2u8, &d2)] {
        let mut fs = open(img, None);
        let mut names: Vec<String> = fs
            .read_dir("/")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["big", "dir", "small"]);
        assert_eq!(fs.read("/small", 0, 100).unwrap(), b"tiny");
        let e = fs.read("/big", 0, big.len()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
        let other = 3 - devid;
        assert!(
            e.message
                .contains(&format!("device {other}, which is not attached")),
            "{e}"
        );
        for (i, slot) in served.iter_mut().enumerate() {
            let off = i * 4096;
            match fs.read("/big", off as u64, 4096) {
                Ok(d) => {
                    assert_eq!(d, big[off..off + 4096], "device {devid}, offset {off}");
                    assert_eq!(*slot, 0, "offset {off} served by both devices");
                    *slot = devid;
                }
                Err(e) => assert_eq!(e.kind, ErrorKind::Unsupported, "{e}"),
            }
        }
    }
    assert!(
        served.iter().all(|&d| d != 0),
        "some 4 KiB pieces were served by neither device"
    );
    assert!(served.contains(&1) && served.contains(&2));
}

/// The decompressors on real compressed extents (taken raw from mkfs.btrfs images) and
/// on thousands of mutations of them: the pristine ones decode to the file's bytes, a
/// mutated one decodes to exactly `ram_bytes` bytes or fails, never panics or overruns.
#[test]
fn decompressors_survive_mutated_extents() {
    let src = TempDir::new("btrfs-src-comp");
    let data = text(256 * 1024);
    std::fs::write(src.0.join("t"), &data).unwrap();
    for (algo, c) in [
        ("zlib", COMPRESS_ZLIB),
        ("lzo", COMPRESS_LZO),
        ("zstd", COMPRESS_ZSTD),
    ] {
        let img = mkfs(&src.0, &["--compress", algo]);
        let raw_img = std::fs::read(&img.0).unwrap();
        let extents = dump_extents(&dump_tree(&img, "fs"));
        let mut streams = Vec::new();
        for e in extents.iter().filter(|e| e.4 == c) {
            let p = physical(&img, e.2)[0] as usize;
            streams.push((e.1 as usize, raw_img[p..p + e.3 as usize].to_vec()));
        }
        assert!(
            streams.len() >= 2,
            "{algo}: {} compressed extents",
            streams.len()
        );
        let mut x = 0x9E37_79B9u32 ^ u32::from(c);
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize % n.max(1)
        };
        for (file_off, s) in &streams {
            let out = compress::decompress(c, s, 128 * 1024, 4096).unwrap();
            let want = &data[*file_off..(*file_off + 128 * 1024).min(data.len())];
            assert_eq!(&out[..want.len()], want, "{algo} at {file_off}");
            for i in 0..700 {
                let mut m = s.clone();
                match i % 7 {
                    0 => m.truncate(rnd(m.len())),
                    1 => {
                        let at = rnd(m.len());
                        m[at] = rnd(256) as u8;
                    }
                    _ => {
                        for _ in 0..1 + rnd(4) {
                            let at = rnd(m.len());
                            m[at] ^= 1 << rnd(8);
                        }
                    }
                }
                let ram = [128 * 1024, 4096, 1, 0][i % 4];
                if let Ok(out) = compress::decompress(c, &m, ram, 4096) {
                    assert_eq!(out.len(), ram, "{algo} mutation {i}");
                }
            }
        }
    }
}

/// Subvolumes through the dispatcher, named as libguestfs names them:
/// `btrfsvol:DEVICE/PATH` in `filesystems`, mountable by that name, gone with the disk.
#[test]
fn btrfsvol_names_through_the_dispatcher() {
    use crate::rpc::Appliance;
    use alloc::string::ToString;
    use wire::{Reply, Request};
    let src = TempDir::new("btrfs-src-btrfsvol");
    let p = |s: &str| src.0.join(s);
    for d in ["root/etc", "home/user"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::write(p("root/etc/hostname"), b"fedora\n").unwrap();
    std::fs::write(p("home/user/notes"), b"mine\n").unwrap();
    let img = mkfs(&src.0, &["--subvol", "default:root", "--subvol", "rw:home"]);
    let mut a = Appliance::new();
    a.set_disk(0, img.disk());
    let Reply::Filesystems(fss) = a.handle(Request::Filesystems).unwrap() else {
        panic!()
    };
    let names: Vec<(&str, &str)> = fss
        .iter()
        .map(|f| (f.device.as_str(), f.fstype.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("/dev/sda", "btrfs"),
            ("btrfsvol:/dev/sda/root", "btrfs"),
            ("btrfsvol:/dev/sda/home", "btrfs"),
        ]
    );
    assert_eq!(fss[1].uuid, fss[0].uuid);
    let mount = |a: &mut Appliance, dev: &str, mp: &str| {
        a.handle(Request::Mount {
            device: dev.to_string(),
            mountpoint: mp.to_string(),
            readonly: true,
            fstype: None,
        })
    };
    let cat = |a: &mut Appliance, path: &str| match a.handle(Request::Pread {
        path: path.to_string(),
        offset: 0,
        len: 100,
    }) {
        Ok(Reply::Data(d)) => d.0,
        other => panic!("{path}: {other:?}"),
    };
    // The guest's own layout: root subvolume at /, home at /home.
    mount(&mut a, "btrfsvol:/dev/sda/root", "/").unwrap();
    std::fs::create_dir_all(p("root/home")).ok();
    assert_eq!(cat(&mut a, "/etc/hostname"), b"fedora\n");
    // /home does not exist in the root subvolume: mounting there is refused, and the
    // subvolume mounts elsewhere (at / of another appliance) fine.
    assert!(mount(&mut a, "btrfsvol:/dev/sda/home", "/home").is_err());
    let mut b = Appliance::new();
    b.set_disk(0, img.disk());
    mount(&mut b, "btrfsvol:/dev/sda/home", "/").unwrap();
    assert_eq!(cat(&mut b, "/user/notes"), b"mine\n");
    let Reply::Mounts(m) = b.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert_eq!(m[0].device, "btrfsvol:/dev/sda/home");
    assert_eq!(m[0].fstype, "btrfs");
    // Bad names.
    for bad in [
        "btrfsvol:/dev/sdz/home",
        "btrfsvol:/dev/sda",
        "btrfsvol:/dev/sda/nope",
    ] {
        assert!(mount(&mut b, bad, "/x").is_err(), "{bad}");
    }
    // The subvolume's mount goes with its disk.
    b.remove_disk(0);
    let Reply::Mounts(m) = b.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert!(m.is_empty(), "{m:?}");
}
