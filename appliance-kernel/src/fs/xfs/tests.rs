//! Host tests against images made by the real tools: `mkfs.xfs -p protofile` (v5
//! defaults and variants, v4), loop mounts for what a protofile cannot make (holes,
//! unwritten extents, fragmented files, reflinks, a dirty log), checked against the
//! model tree they were made from and against `xfs_db -r` (`ls`, `inode`/`print`,
//! `bmap`, `sb`), `xfs_repair -n`, `xfs_logprint` and `blkid`.

use super::*;
use crate::block::{BlockDevice, shared};
use crate::part::testutil::{TempDir, TempImage, blkid};
use std::collections::BTreeMap as Map;
use std::os::unix::fs::FileExt;
use std::process::Command;

// ---------------------------------------------------------------------------------
// Tools and images

/// Runs a tool with the environment that lets mkfs.xfs make filesystems under 300 MB
/// (the fstests escape hatch); panics with its stderr on failure.
pub(super) fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1")
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `xfs_db -r` with the given commands.
pub(super) fn db(img: &str, cmds: &[&str]) -> String {
    let mut args = vec!["-r"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(img);
    tool("xfs_db", &args)
}

/// `xfs_db -x` (expert mode: writes; `write -d` recomputes the CRC of what it breaks).
pub(super) fn db_write(img: &str, cmds: &[&str]) {
    let mut args = vec!["-x"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(img);
    let out = Command::new("xfs_db").args(&args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("error") && !text.contains("not found"),
        "xfs_db {args:?}: {text}"
    );
}

pub(super) fn repair_clean(img: &str) {
    tool("xfs_repair", &["-n", "-f", img]);
}

/// A read-only file-backed disk (images are read in place, not copied to memory).
pub(super) struct FileDisk(std::fs::File, u64);

impl BlockDevice for FileDisk {
    fn size(&self) -> u64 {
        self.1
    }
    fn readonly(&self) -> bool {
        true
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        crate::block::check_range(offset, buf.len(), self.1)?;
        self.0
            .read_exact_at(buf, offset)
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), Error> {
        Err(Error::new(ErrorKind::ReadOnly, "test disk"))
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

pub(super) fn disk(img: &str) -> SharedDevice {
    let f = std::fs::File::open(img).unwrap();
    let len = f.metadata().unwrap().len();
    shared(FileDisk(f, len))
}

pub(super) fn open(img: &str) -> XfsFs {
    XfsFs::open(disk(img)).unwrap_or_else(|e| panic!("{img}: {e:?}"))
}

pub(super) fn open_err(img: &str) -> Error {
    match XfsFs::open(disk(img)) {
        Ok(_) => panic!("{img}: mounted"),
        Err(e) => e,
    }
}

pub(super) fn pseudo_random(len: usize, mut x: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------------------
// A model tree, written out as a protofile

#[derive(Clone, Debug)]
pub(super) enum N {
    Dir {
        mode: u16,
        uid: u32,
        gid: u32,
        kids: Vec<(String, N)>,
    },
    File {
        mode: u16,
        uid: u32,
        gid: u32,
        data: Vec<u8>,
    },
    Link(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

pub(super) fn dir(kids: Vec<(String, N)>) -> N {
    N::Dir {
        mode: 0o755,
        uid: 0,
        gid: 0,
        kids,
    }
}

pub(super) fn file(data: &[u8]) -> N {
    N::File {
        mode: 0o644,
        uid: 0,
        gid: 0,
        data: data.to_vec(),
    }
}

pub(super) fn kid(name: &str, n: N) -> (String, N) {
    (name.to_string(), n)
}

pub(super) fn mode_str(t: char, mode: u16) -> String {
    format!(
        "{t}{}{}{:03o}",
        if mode & 0o4000 != 0 { 'u' } else { '-' },
        if mode & 0o2000 != 0 { 'g' } else { '-' },
        mode & 0o777
    )
}

/// Writes the protofile for `root` (file contents go to files in `store`).
pub(super) fn protofile(root: &N, store: &TempDir) -> String {
    fn emit(n: &N, name: &str, store: &TempDir, counter: &mut usize, out: &mut String) {
        match n {
            N::Dir {
                mode,
                uid,
                gid,
                kids,
            } => {
                out.push_str(&format!("{name} {} {uid} {gid}\n", mode_str('d', *mode)));
                for (k, c) in kids {
                    emit(c, k, store, counter, out);
                }
                out.push_str("$\n");
            }
            N::File {
                mode,
                uid,
                gid,
                data,
            } => {
                *counter += 1;
                let p = store.0.join(format!("f{counter}"));
                std::fs::write(&p, data).unwrap();
                out.push_str(&format!(
                    "{name} {} {uid} {gid} {}\n",
                    mode_str('-', *mode),
                    p.display()
                ));
            }
            N::Link(t) => out.push_str(&format!("{name} l--777 0 0 {t}\n")),
            N::Char(a, b) => out.push_str(&format!("{name} c--620 0 5 {a} {b}\n")),
            N::Block(a, b) => out.push_str(&format!("{name} b--660 0 6 {a} {b}\n")),
            N::Fifo => out.push_str(&format!("{name} p--644 7 8\n")),
        }
    }
    let mut out = String::from("skiff\n0 0\n");
    let mut counter = 0;
    // The root's "name" is not written: its line is the mode alone.
    let mut body = String::new();
    emit(root, "ROOT", store, &mut counter, &mut body);
    out.push_str(body.strip_prefix("ROOT ").unwrap());
    out
}

/// An image of `root` made with `mkfs.xfs -p` and `opts` (checked by xfs_repair -n).
pub(super) fn make_image(tag: &str, size: u64, opts: &[&str], root: &N) -> TempImage {
    let store = TempDir::new("xfs-store");
    let proto = store.0.join("proto");
    std::fs::write(&proto, protofile(root, &store)).unwrap();
    let img = TempImage::new(tag, size);
    let mut args = vec!["-q", "-f", "-p", proto.to_str().unwrap()];
    args.extend_from_slice(opts);
    args.push(img.path());
    tool("mkfs.xfs", &args);
    repair_clean(img.path());
    img
}

// ---------------------------------------------------------------------------------
// Oracles

/// `xfs_db ls` of a directory: (name, inode) in listing order, without `.` and `..`.
pub(super) fn db_ls(img: &str, path: &str) -> Vec<(String, u64)> {
    let out = db(img, &[&format!("ls {path}")]);
    let mut v = Vec::new();
    for line in out.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 7 {
            continue;
        }
        assert_eq!(f[f.len() - 1], "(good)", "{line}");
        let name = f[5..f.len() - 1].join(" ");
        if name == "." || name == ".." {
            continue;
        }
        v.push((name, f[1].parse().unwrap()));
    }
    v
}

/// `field = value` lines of an `xfs_db` print.
pub(super) fn db_fields(out: &str) -> Map<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub(super) fn db_inode(img: &str, ino: u64) -> Map<String, String> {
    db_fields(&db(img, &[&format!("inode {ino}"), "print"]))
}

pub(super) fn db_sb(img: &str) -> Map<String, String> {
    db_fields(&db(img, &["sb 0", "print"]))
}

/// Seconds since the epoch of an `xfs_db` date ("Mon Nov 30 19:14:14 2026"), read
/// as UTC (xfs_db prints local time; the tests run it with TZ unset = UTC).
pub(super) fn db_time(s: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", s, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

// ---------------------------------------------------------------------------------
// Checks

/// Reads a whole file in 1 MiB chunks, as the host does.
pub(super) fn read_all(fs: &mut XfsFs, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let d = fs.read(path, out.len() as u64, 1 << 20).unwrap();
        if d.is_empty() {
            return out;
        }
        out.extend_from_slice(&d);
    }
}

/// Compares the filesystem below `path` with the model, entry by entry.
pub(super) fn check_tree(fs: &mut XfsFs, path: &str, n: &N) {
    let N::Dir {
        mode,
        uid,
        gid,
        kids,
    } = n
    else {
        panic!("not a dir model");
    };
    let st = fs.stat(path, true).unwrap();
    assert_eq!(st.file_type, FileType::Directory, "{path}");
    assert_eq!(
        (st.mode, st.uid, st.gid),
        (u32::from(*mode), *uid, *gid),
        "{path}"
    );
    let listed = fs.read_dir(path).unwrap();
    let mut got: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
    let mut want: Vec<&str> = kids.iter().map(|(k, _)| k.as_str()).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{path}");
    let by_name: Map<&str, &DirEntry> = listed.iter().map(|e| (e.name.as_str(), e)).collect();
    for (name, k) in kids {
        let p = if path == "/" {
            format!("/{name}")
        } else {
            format!("{path}/{name}")
        };
        let st = fs.stat(&p, false).unwrap();
        assert_eq!(&st, &by_name[name.as_str()].stat, "{p}: read_dir vs lstat");
        match k {
            N::Dir { .. } => check_tree(fs, &p, k),
            N::File {
                mode,
                uid,
                gid,
                data,
            } => {
                assert_eq!(st.file_type, FileType::Regular, "{p}");
                assert_eq!(
                    (st.mode, st.uid, st.gid),
                    (u32::from(*mode), *uid, *gid),
                    "{p}"
                );
                assert_eq!(st.size, data.len() as u64, "{p}");
                assert_eq!(st.nlink, 1, "{p}");
                assert!(read_all(fs, &p) == *data, "{p}: contents differ");
            }
            N::Link(t) => {
                assert_eq!(st.file_type, FileType::Symlink, "{p}");
                assert_eq!(st.size, t.len() as u64, "{p}");
                assert_eq!(fs.read_link(&p).unwrap(), *t, "{p}");
            }
            N::Char(..) => {
                assert_eq!(st.file_type, FileType::CharDevice, "{p}");
                assert_eq!((st.mode, st.uid, st.gid), (0o620, 0, 5), "{p}");
            }
            N::Block(..) => {
                assert_eq!(st.file_type, FileType::BlockDevice, "{p}");
                assert_eq!((st.mode, st.uid, st.gid), (0o660, 0, 6), "{p}");
            }
            N::Fifo => {
                assert_eq!(st.file_type, FileType::Fifo, "{p}");
                assert_eq!((st.mode, st.uid, st.gid), (0o644, 7, 8), "{p}");
            }
        }
    }
}

/// Our listing of `path` against `xfs_db ls`: the same names and inode numbers in the
/// same order, and every name looked up by path to the same inode.
pub(super) fn check_against_db(fs: &mut XfsFs, img: &str, path: &str) -> usize {
    let want = db_ls(img, path);
    let got: Vec<(String, u64)> = fs
        .read_dir(path)
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.stat.ino))
        .collect();
    assert_eq!(got, want, "{path}: listing differs from xfs_db ls");
    for (name, ino) in &want {
        let p = if path == "/" {
            format!("/{name}")
        } else {
            format!("{path}/{name}")
        };
        assert_eq!(fs.stat(&p, false).unwrap().ino, *ino, "{p}: lookup");
    }
    want.len()
}

/// Inode number of `path` per xfs_db.
pub(super) fn db_ino(img: &str, path: &str) -> u64 {
    let (parent, name) = crate::fs::vfs::split_parent(path).unwrap();
    db_ls(img, parent)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{path} not in xfs_db ls"))
        .1
}

/// The parsed inode of `path`.
pub(super) fn fs_inode(img: &str, path: &str) -> Rc<Inode> {
    open(img).resolve(path, false).unwrap()
}

/// A directory's stored form, as the reader sees it.
pub(super) fn dir_kind(fs: &mut XfsFs, path: &str) -> &'static str {
    let d = fs.resolve(path, true).unwrap();
    let btree = d.format == dinode::FMT_BTREE;
    match fs.dir_form(&d).unwrap() {
        dirs::DirForm::Short => "short",
        dirs::DirForm::Block => "block",
        dirs::DirForm::Multi => {
            let leaf = ondisk::dir::LEAF_OFFSET >> fs.sb.block_log;
            let (buf, daddr) = fs.dir_block(&d, leaf).unwrap().unwrap();
            match ondisk::dir::parse_da_block(&fs.sb, d.ino, &buf, daddr).unwrap() {
                ondisk::dir::DaBlock::Leaf { single: true, .. } if !btree => "leaf",
                ondisk::dir::DaBlock::Leaf { single: true, .. } => "leaf+btree",
                _ if btree => "node+btree",
                _ => "node",
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The standard tree

const LONG_TARGET_LEN: usize = 900;

pub(super) fn long_target() -> String {
    let mut t = String::from("/a/remote/symlink/target");
    while t.len() < LONG_TARGET_LEN {
        t.push_str("/0123456789");
    }
    t.truncate(LONG_TARGET_LEN);
    t
}

/// A tree with every directory form, every file type and files of several sizes.
/// `remote_link`: include a symlink too long for the inode (mkfs 6.1's protofile writes
/// those without the v5 header, so v5 images get theirs from a kernel mount instead).
pub(super) fn standard_tree(node_entries: usize, remote_link: bool) -> N {
    let small = |i: usize| file(format!("content {i}\n").as_bytes());
    let short_dir = dir(vec![
        kid("a", small(1)),
        kid("b", small(2)),
        kid("sub", dir(vec![])),
    ]);
    // Too many for a shortform directory even in a 2 KiB inode, few enough for one
    // 4 KiB directory block.
    let block_dir = dir((0..70)
        .map(|i| kid(&format!("block-entry-{i:02}-padding"), small(i)))
        .collect());
    let leaf_dir = dir((0..400)
        .map(|i| kid(&format!("leaf-entry-with-a-longer-name-{i:05}"), small(i)))
        .collect());
    let node_dir = dir((0..node_entries)
        .map(|i| {
            kid(
                &format!("node-entry-with-a-much-longer-name-to-fill-blocks-{i:06}"),
                file(b""),
            )
        })
        .collect());
    let mut root = vec![
        kid("hello.txt", file(b"hello, xfs\n")),
        kid("empty", file(b"")),
        kid(
            "big.bin",
            file(&pseudo_random(5 << 20, 0x1234_5678_9ABC_DEF1)),
        ),
        kid(
            "odd.bin",
            file(&pseudo_random(123_457, 0x000D_DBA1_10DD_BA11)),
        ),
        kid(
            "secret",
            N::File {
                mode: 0o4750,
                uid: 1234,
                gid: 5678,
                data: b"s3cret".to_vec(),
            },
        ),
        kid(
            "shared",
            N::Dir {
                mode: 0o2775,
                uid: 1000,
                gid: 100,
                kids: vec![kid("x", small(7))],
            },
        ),
        kid("short", short_dir),
        kid("block", block_dir),
        kid("leaf", leaf_dir),
        kid("node", node_dir),
        kid("fast-link", N::Link("hello.txt".into())),
        kid("dir-link", N::Link("short/sub".into())),
        kid("abs-link", N::Link("/short/a".into())),
        kid("up-link", N::Link("short/sub/../b".into())),
        kid("loop-a", N::Link("loop-b".into())),
        kid("loop-b", N::Link("loop-a".into())),
        kid("dangling", N::Link("no/such/file".into())),
        kid("tty", N::Char(4, 5)),
        kid("disk", N::Block(8, 1)),
        kid("pipe", N::Fifo),
    ];
    if remote_link {
        root.push(kid("slow-link", N::Link(long_target())));
    }
    dir(root)
}

/// Everything a standard image must show.
pub(super) fn check_standard(
    img: &TempImage,
    node_entries: usize,
    remote_link: bool,
    expect_node: &str,
) {
    let path = img.path();
    let mut fs = open(path);
    check_tree(&mut fs, "/", &standard_tree(node_entries, remote_link));
    for d in ["/", "/short", "/block", "/leaf", "/node", "/shared"] {
        check_against_db(&mut fs, path, d);
    }
    assert_eq!(dir_kind(&mut fs, "/short"), "short");
    assert_eq!(dir_kind(&mut fs, "/block"), "block");
    assert_eq!(dir_kind(&mut fs, "/leaf"), "leaf");
    assert_eq!(dir_kind(&mut fs, "/node"), expect_node);

    // Symlinks: followed in stat, in the middle of paths, absolute ones from this
    // filesystem's root; `..` after a link is the link target's parent.
    let hello = fs.stat("/hello.txt", true).unwrap();
    assert_eq!(fs.stat("/fast-link", true).unwrap(), hello);
    assert_eq!(
        fs.stat("/fast-link", false).unwrap().file_type,
        FileType::Symlink
    );
    assert_eq!(fs.read("/fast-link", 0, 100).unwrap(), b"hello, xfs\n");
    assert_eq!(
        fs.stat("/dir-link/../a", true).unwrap(),
        fs.stat("/short/a", true).unwrap()
    );
    assert_eq!(
        fs.stat("/abs-link", true).unwrap(),
        fs.stat("/short/a", true).unwrap()
    );
    assert_eq!(
        fs.stat("/up-link", true).unwrap(),
        fs.stat("/short/b", true).unwrap()
    );
    let names: Vec<String> = fs
        .read_dir("/dir-link")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.is_empty());
    assert_eq!(fs.stat("/loop-a", true).unwrap_err().kind, ErrorKind::Loop);
    assert_eq!(
        fs.stat("/loop-a", false).unwrap().file_type,
        FileType::Symlink
    );
    assert_eq!(
        fs.stat("/dangling", true).unwrap_err().kind,
        ErrorKind::NotFound
    );
    if remote_link {
        assert_eq!(fs.read_link("/slow-link").unwrap(), long_target());
    }
    assert_eq!(
        fs.read_link("/hello.txt").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        fs.stat("/nope", true).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        fs.stat("/hello.txt/x", true).unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.read("/short", 0, 10).unwrap_err().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.read("/pipe", 0, 10).unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        fs.read_dir("/hello.txt").unwrap_err().kind,
        ErrorKind::NotADirectory
    );

    // Reads at odd offsets and lengths, past the end, and chunked out of order.
    let big = pseudo_random(5 << 20, 0x1234_5678_9ABC_DEF1);
    for (off, len) in [(0, 1), (4095, 2), (1 << 20, 1 << 20), ((5 << 20) - 3, 100)] {
        let got = fs.read("/big.bin", off, len).unwrap();
        let end = (off as usize + len).min(big.len());
        assert!(got == big[off as usize..end], "big.bin at {off}+{len}");
    }
    assert!(fs.read("/big.bin", 5 << 20, 10).unwrap().is_empty());
    assert!(fs.read("/big.bin", u64::MAX, 10).unwrap().is_empty());
    assert!(fs.read("/hello.txt", 0, 0).unwrap().is_empty());

    // Inode fields against xfs_db.
    for p in [
        "/secret",
        "/shared",
        "/tty",
        "/pipe",
        "/fast-link",
        "/node",
        "/big.bin",
    ] {
        let ino = db_ino(path, p);
        let f = db_inode(path, ino);
        let st = fs.stat(p, false).unwrap();
        assert_eq!(st.ino, ino, "{p}");
        let mode = u32::from_str_radix(&f["core.mode"], 8).unwrap();
        assert_eq!(st.mode, mode & 0o7777, "{p}");
        assert_eq!(st.uid.to_string(), f["core.uid"], "{p}");
        assert_eq!(st.gid.to_string(), f["core.gid"], "{p}");
        assert_eq!(st.nlink.to_string(), f["core.nlinkv2"], "{p}");
        assert_eq!(st.size.to_string(), f["core.size"], "{p}");
        assert_eq!(st.mtime, db_time(&f["core.mtime.sec"]), "{p}");
        assert_eq!(st.atime, db_time(&f["core.atime.sec"]), "{p}");
        assert_eq!(st.ctime, db_time(&f["core.ctime.sec"]), "{p}");
    }
    assert_eq!(fs.stat("/", true).unwrap().ino, fs.sb.root_ino);
}

#[test]
fn v5_defaults() {
    let img = make_image(
        "xfs-v5",
        192 << 20,
        &["-L", "skiff-v5"],
        &standard_tree(20000, false),
    );
    let sb = db_sb(img.path());
    assert_eq!(sb["versionnum"].parse::<u16>().ok(), None); // hex, e.g. 0xb4a5
    let fs = open(img.path());
    let features = fs.sb.feature_names();
    for f in [
        "crc",
        "ftype",
        "sparse",
        "bigtime",
        "finobt",
        "reflink",
        "inobtcount",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    drop(fs);
    check_standard(&img, 20000, false, "node+btree");
}

#[test]
fn v4_crc0() {
    // v4 has no remote symlink header, so mkfs -p writes its long symlinks correctly.
    let img = make_image(
        "xfs-v4",
        96 << 20,
        &["-m", "crc=0", "-L", "skiff-v4"],
        &standard_tree(3000, true),
    );
    let fs = open(img.path());
    assert_eq!(fs.sb.version, 4);
    assert!(fs.sb.ftype);
    assert_eq!(fs.sb.inode_size, 256);
    drop(fs);
    check_standard(&img, 3000, true, "node+btree");
}

#[test]
fn v4_without_ftype() {
    let img = make_image(
        "xfs-v4-noftype",
        96 << 20,
        &["-m", "crc=0", "-n", "ftype=0"],
        &standard_tree(2000, true),
    );
    assert!(!open(img.path()).sb.ftype);
    check_standard(&img, 2000, true, "node+btree");
}

/// v5 variants: each option set gets the standard tree and every check.
fn v5_variant(tag: &str, opts: &[&str], check: impl Fn(&XfsFs, &str)) {
    let img = make_image(tag, 128 << 20, opts, &standard_tree(2500, false));
    check(&open(img.path()), img.path());
    let mut fs = open(img.path());
    let kind = dir_kind(&mut fs, "/node");
    assert!(kind.starts_with("node"), "{tag}: /node is {kind}");
    drop(fs);
    check_standard(&img, 2500, false, kind);
}

#[test]
fn v5_rmapbt_reflink() {
    v5_variant("xfs-rmap", &["-m", "rmapbt=1,reflink=1"], |fs, _| {
        assert!(fs.sb.feature_names().contains(&"rmapbt"));
        assert!(fs.sb.feature_names().contains(&"reflink"));
    });
}

#[test]
fn v5_dir_blocks_8k() {
    v5_variant("xfs-n8k", &["-n", "size=8192"], |fs, _| {
        assert_eq!(fs.sb.dir_blk_size(), 8192);
    });
}

#[test]
fn v5_many_small_ags_no_bigtime() {
    v5_variant(
        "xfs-ag8",
        &["-d", "agcount=8", "-m", "bigtime=0"],
        |fs, _| {
            assert_eq!(fs.sb.ag_count, 8);
            assert!(!fs.sb.feature_names().contains(&"bigtime"));
        },
    );
}

#[test]
fn v5_1k_blocks_nrext64() {
    v5_variant(
        "xfs-1k",
        &["-b", "size=1024", "-i", "nrext64=1", "-n", "size=4096"],
        |fs, img| {
            assert_eq!(fs.sb.block_size, 1024);
            assert_eq!(fs.sb.dir_blk_size(), 4096);
            assert!(fs.sb.feature_names().contains(&"nrext64"));
            // Inodes use the 64-bit extent counter (read at its own offset).
            let f = db_inode(img, db_ino(img, "/big.bin"));
            assert_eq!(f["v3.nrext64"], "1");
            let i = fs_inode(img, "/big.bin");
            assert_eq!(i.nextents.to_string(), f["core.nextents"]);
            assert_ne!(i.flags2 & dinode::DIFLAG2_NREXT64, 0);
        },
    );
}

#[test]
fn v5_2k_inodes() {
    v5_variant("xfs-i2k", &["-i", "size=2048"], |fs, _| {
        assert_eq!(fs.sb.inode_size, 2048);
    });
}

#[test]
fn ascii_ci_lookup() {
    let root = dir(vec![
        kid("MixedCase.TXT", file(b"one")),
        kid(
            "big",
            dir((0..800)
                .map(|i| kid(&format!("Entry-Name-{i:04}"), file(b"")))
                .collect()),
        ),
    ]);
    let img = make_image("xfs-ci", 64 << 20, &["-n", "version=ci"], &root);
    let mut fs = open(img.path());
    assert!(fs.sb.ascii_ci);
    check_tree(&mut fs, "/", &root);
    assert_eq!(fs.read("/mixedcase.txt", 0, 10).unwrap(), b"one");
    assert_eq!(fs.read("/MIXEDCASE.txt", 0, 10).unwrap(), b"one");
    // Through the hash index of a leaf/node directory too.
    let want = fs.stat("/big/Entry-Name-0123", true).unwrap().ino;
    assert_eq!(fs.stat("/BIG/entry-name-0123", true).unwrap().ino, want);
    assert!(dir_kind(&mut fs, "/big") != "block");
    check_against_db(&mut fs, img.path(), "/big");
}

/// A v5 image whose long symlink mkfs 6.1 wrote without the remote symlink header:
/// xfs_repair -n flags it, and so must we (and nothing else in the image).
#[test]
fn mkfs_protofile_remote_symlink_is_corrupt() {
    let store = TempDir::new("xfs-store");
    let root = dir(vec![
        kid("ok", file(b"fine")),
        kid("slow-link", N::Link(long_target())),
    ]);
    let proto = store.0.join("proto");
    std::fs::write(&proto, protofile(&root, &store)).unwrap();
    let img = TempImage::new("xfs-badlink", 32 << 20);
    tool(
        "mkfs.xfs",
        &["-q", "-f", "-p", proto.to_str().unwrap(), img.path()],
    );
    let repair = Command::new("xfs_repair")
        .args(["-n", "-f", img.path()])
        .output()
        .unwrap();
    assert!(!repair.status.success());
    assert!(String::from_utf8_lossy(&repair.stderr).contains("bad symlink header"));
    let mut fs = open(img.path());
    assert_eq!(fs.read("/ok", 0, 10).unwrap(), b"fine");
    let e = fs.read_link("/slow-link").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(e.message.contains("remote block"), "{e:?}");
}

// ---------------------------------------------------------------------------------
// Kernel-written images (loop mounts)

/// A loop mount of an image file, unmounted on drop.
pub(super) struct Mounted {
    pub(super) dir: TempDir,
    on: bool,
}

impl Mounted {
    pub(super) fn new(img: &str, opts: &str) -> Self {
        let dir = TempDir::new("xfs-mnt");
        let o = if opts.is_empty() {
            String::from("loop")
        } else {
            format!("loop,{opts}")
        };
        tool("mount", &["-o", &o, img, dir.path()]);
        Mounted { dir, on: true }
    }
    pub(super) fn at(&self, rel: &str) -> std::path::PathBuf {
        self.dir.0.join(rel)
    }
    pub(super) fn umount(mut self) {
        tool("umount", &[self.dir.path()]);
        self.on = false;
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.on {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

pub(super) fn logprint_state(img: &str) -> String {
    let out = Command::new("xfs_logprint")
        .args(["-t", img])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.lines()
        .find(|l| l.contains("state:"))
        .unwrap_or_else(|| panic!("xfs_logprint: {s}"))
        .trim()
        .to_string()
}

/// Test hook: how many bmbt windows were loaded (see `extents`).
fn windows_loaded(fs: &XfsFs) -> usize {
    fs.window_loads
}

#[test]
fn kernel_written_files() {
    use std::os::unix::fs::symlink;
    let img = TempImage::new("xfs-kernel", 128 << 20);
    tool("mkfs.xfs", &["-q", "-f", img.path()]);
    // Every other 4 KiB block of a 47 MiB file: 6000 extents, a two-level bmbt.
    const HOLES: usize = 6000;
    let mut holes = vec![0u8; (HOLES - 1) * 8192 + 4096];
    let orig = pseudo_random(3 << 20, 77);
    let max_target: String = {
        let mut t = String::new();
        // XFS_SYMLINK_MAXLEN is 1024 with the terminating NUL.
        while t.len() < 1023 {
            t.push_str("/segment");
        }
        t.truncate(1023);
        t
    };
    {
        // allocsize=4k: no speculative preallocation filling the holes.
        let m = Mounted::new(img.path(), "allocsize=4k");
        let f = std::fs::File::create(m.at("holes")).unwrap();
        for i in 0..HOLES {
            let block = pseudo_random(4096, i as u64 + 1);
            f.write_all_at(&block, (i * 8192) as u64).unwrap();
            holes[i * 8192..i * 8192 + 4096].copy_from_slice(&block);
        }
        f.sync_all().unwrap();
        drop(f);
        tool(
            "xfs_io",
            &[
                "-f",
                "-c",
                "falloc 0 1m",
                "-c",
                "pwrite -S 0x61 524288 4096",
                "-c",
                "fsync",
                m.at("prealloc").to_str().unwrap(),
            ],
        );
        let f = std::fs::File::create(m.at("sparse")).unwrap();
        f.set_len(10 << 20).unwrap();
        f.write_all_at(b"island", 3 << 20).unwrap();
        drop(f);
        std::fs::write(m.at("orig"), &orig).unwrap();
        tool(
            "cp",
            &[
                "--reflink=always",
                m.at("orig").to_str().unwrap(),
                m.at("clone").to_str().unwrap(),
            ],
        );
        symlink(long_target(), m.at("slow-link")).unwrap();
        symlink(&max_target, m.at("max-link")).unwrap();
        std::fs::create_dir(m.at("made")).unwrap();
        for i in 0..1500 {
            std::fs::write(m.at(&format!("made/kernel-made-entry-{i:05}")), b"k").unwrap();
        }
        // Extended attributes in the inode: the data forks (a btree root, a directory)
        // shrink to make room.
        let value = "v".repeat(120);
        for p in ["holes", "made"] {
            tool(
                "setfattr",
                &["-n", "user.skiff", "-v", &value, m.at(p).to_str().unwrap()],
            );
        }
        m.umount();
    }
    repair_clean(img.path());
    assert!(logprint_state(img.path()).contains("<CLEAN>"));
    let path = img.path();
    let mut fs = open(path);

    // The fragmented file: btree format with a two-level tree, per xfs_db.
    let hino = db_ino(path, "/holes");
    let f = db_inode(path, hino);
    assert_eq!(f["core.format"], "3 (btree)");
    assert_eq!(f["core.nextents"], HOLES.to_string());
    assert_eq!(f["u3.bmbt.level"], "2");
    assert_ne!(f["core.forkoff"], "0", "no attribute fork");
    assert_ne!(db_inode(path, db_ino(path, "/made"))["core.forkoff"], "0");
    let before = windows_loaded(&fs);
    assert!(read_all(&mut fs, "/holes") == holes, "holes differ");
    // Chunked sequential reads reuse the loaded windows: 6000 extents, 4096 a window.
    assert!(windows_loaded(&fs) - before <= 3, "bmbt re-walked");
    // Random access inside the tree.
    for i in [0usize, 1, 2047, 2048, 4321, HOLES - 2] {
        let got = fs.read("/holes", (i * 8192) as u64 + 4000, 200).unwrap();
        assert!(
            got == holes[i * 8192 + 4000..i * 8192 + 4200],
            "holes at {i}"
        );
    }

    // Unwritten extents read as zeros.
    let bmap = db(
        path,
        &[&format!("inode {}", db_ino(path, "/prealloc")), "bmap"],
    );
    assert!(bmap.contains("flag 1"), "no unwritten extent: {bmap}");
    let mut want = vec![0u8; 1 << 20];
    want[524288..524288 + 4096].fill(0x61);
    assert!(read_all(&mut fs, "/prealloc") == want);

    let sparse = read_all(&mut fs, "/sparse");
    assert_eq!(sparse.len(), 10 << 20);
    assert_eq!(&sparse[3 << 20..(3 << 20) + 6], b"island");
    assert!(sparse.iter().filter(|&&b| b != 0).count() == 6);

    // Shared extents: both files map the same blocks and read the same.
    let b1 = db(path, &[&format!("inode {}", db_ino(path, "/orig")), "bmap"]);
    let b2 = db(
        path,
        &[&format!("inode {}", db_ino(path, "/clone")), "bmap"],
    );
    assert_eq!(b1, b2);
    assert!(read_all(&mut fs, "/orig") == orig);
    assert!(read_all(&mut fs, "/clone") == orig);

    // Remote symlinks with the v5 header, written by the kernel.
    assert_eq!(fs.read_link("/slow-link").unwrap(), long_target());
    assert_eq!(fs.read_link("/max-link").unwrap(), max_target);
    let st = fs.stat("/max-link", false).unwrap();
    assert_eq!(st.size, 1023);
    assert_eq!(
        db_inode(path, st.ino)["core.format"],
        "2 (extents)",
        "max-link is not remote"
    );

    assert_eq!(check_against_db(&mut fs, path, "/made"), 1500);
    assert_eq!(check_against_db(&mut fs, path, "/"), 8);

    // Statvfs against the superblock counters and the kernel's own statfs.
    let sb = db_sb(path);
    let v = fs.statvfs().unwrap();
    let n = |k: &str| sb[k].parse::<u64>().unwrap();
    assert_eq!(v.block_size, n("blocksize"));
    assert_eq!(v.blocks, n("dblocks") - n("logblocks"));
    assert_eq!(v.blocks_free, n("fdblocks") - 8 * n("agcount"));
    assert_eq!(v.blocks_avail, v.blocks_free);
    assert!(v.files >= n("icount"));
    assert_eq!(v.files_free, v.files - (n("icount") - n("ifree")));
    assert_eq!(v.name_max, 255);
    let m = Mounted::new(path, "ro,norecovery");
    let df = tool("stat", &["-f", "-c", "%S %b %c", m.dir.path()]);
    m.umount();
    let df: Vec<u64> = df.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!((df[0], df[1]), (v.block_size, v.blocks), "statfs");
}

#[test]
fn dirty_log_is_refused_until_replayed() {
    let img = TempImage::new("xfs-dirty", 64 << 20);
    tool("mkfs.xfs", &["-q", "-f", img.path()]);
    let m = Mounted::new(img.path(), "");
    std::fs::write(m.at("before"), b"before").unwrap();
    m.umount();
    assert!(open(img.path()).read("/before", 0, 10).unwrap() == b"before");

    // Commit transactions to the log, then shut down without writing metadata back.
    let m = Mounted::new(img.path(), "");
    std::fs::create_dir(m.at("after")).unwrap();
    let f = std::fs::File::create(m.at("after/file")).unwrap();
    f.write_all_at(b"after", 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::create_dir(m.at("after2")).unwrap();
    tool("xfs_io", &["-x", "-c", "shutdown -f", m.dir.path()]);
    m.umount();
    assert!(logprint_state(img.path()).contains("<DIRTY>"));
    let repair = Command::new("xfs_repair")
        .args(["-n", "-f", img.path()])
        .output()
        .unwrap();
    assert!(
        !repair.status.success(),
        "xfs_repair -n accepted a dirty log"
    );
    let e = open_err(img.path());
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    assert!(e.message.starts_with(DIRTY_LOG_MESSAGE), "{e:?}");
    // Through the dispatcher the refusal reaches the host as is.
    let mut a = crate::rpc::Appliance::new();
    a.set_disk(0, disk(img.path()));
    let r = a.handle(wire::Request::Mount {
        device: "/dev/sda".into(),
        mountpoint: "/".into(),
        readonly: true,
        fstype: None,
    });
    assert!(r.unwrap_err().message.contains("the log is dirty"));

    // The kernel replays it; then the image reads, with the replayed changes.
    let m = Mounted::new(img.path(), "");
    m.umount();
    assert!(logprint_state(img.path()).contains("<CLEAN>"));
    let mut fs = open(img.path());
    assert_eq!(fs.read("/after/file", 0, 10).unwrap(), b"after");
    assert_eq!(
        fs.stat("/after2", true).unwrap().file_type,
        FileType::Directory
    );
}

#[test]
fn wrapped_log_head_matches_logprint() {
    let img = TempImage::new("xfs-wrap", 64 << 20);
    tool("mkfs.xfs", &["-q", "-f", img.path()]);
    let path = img.path();
    let sb = db_sb(path);
    let n = |k: &str| sb[k].parse::<u64>().unwrap();
    let log_bbs = n("logblocks") * n("blocksize") / 512;
    let log_byte = {
        let fs = open(path);
        fs.sb.fsb_to_byte(fs.sb.log_start).unwrap()
    };
    let cycle0 = || {
        let mut b = [0u8; 512];
        std::fs::File::open(path)
            .unwrap()
            .read_exact_at(&mut b, log_byte)
            .unwrap();
        ondisk::log::cycle_of(&b)
    };
    // Metadata-heavy rounds until the log has wrapped at least twice.
    let mut rounds = 0;
    while cycle0() < 3 {
        rounds += 1;
        assert!(rounds < 40, "the log does not wrap");
        let m = Mounted::new(path, "");
        let d = m.at("d");
        std::fs::create_dir(&d).unwrap();
        for i in 0..6000 {
            std::fs::write(d.join(format!("{}-{i}", "n".repeat(200))), b"").unwrap();
        }
        std::fs::remove_dir_all(&d).unwrap();
        m.umount();
    }
    let lp = logprint_state(path);
    eprintln!("{rounds} rounds: {lp}");
    assert!(lp.contains("<CLEAN>"), "{lp}");
    let head: u64 = lp
        .split_whitespace()
        .skip_while(|w| *w != "head:")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let fs = open(path);
    let io = &fs.io;
    let read = |bb: u64, buf: &mut [u8]| io.read_into(log_byte + bb * 512, buf);
    let mut log = logcheck::Log::new(read, log_bbs, true);
    assert_eq!(log.find_head().unwrap(), Some(head));
    assert_eq!(log.state().unwrap(), LogState::Clean);
    // The kernel's unmount record carries a CRC, which `state` verified.
    let (_, rec) = log.record_before(head).unwrap().unwrap();
    assert_ne!(rec.crc, 0);
    assert_eq!(rec.num_logops, 1);
}

// ---------------------------------------------------------------------------------
// Corruption: every damaged structure is `Corrupt` naming it, never a panic

/// A copy of `img` changed by `f` (given the copy's path).
fn damaged(img: &TempImage, f: impl FnOnce(&str)) -> TempImage {
    let copy = TempImage::new("xfs-damaged", 0);
    std::fs::copy(img.path(), copy.path()).unwrap();
    f(copy.path());
    copy
}

fn flip(path: &str, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5A;
    f.write_all_at(&b, at).unwrap();
}

/// Byte offset of file block `fblock` of inode `ino`, from `xfs_db bmap`.
fn db_block_byte(img: &str, ino: u64, fblock: u64) -> u64 {
    let sb = db_sb(img);
    let agblocks: u64 = sb["agblocks"].parse().unwrap();
    let bs: u64 = sb["blocksize"].parse().unwrap();
    let out = db(img, &[&format!("inode {ino}"), "bmap"]);
    for line in out.lines() {
        // "data offset 0 startblock 8238 (1/46) count 1 flag 0"
        let f: Vec<&str> = line.split_whitespace().collect();
        let off: u64 = f[2].parse().unwrap();
        let count: u64 = f[7].parse().unwrap();
        if (off..off + count).contains(&fblock) {
            let (ag, agb) = f[5]
                .trim_matches(|c| c == '(' || c == ')')
                .split_once('/')
                .unwrap();
            let (ag, agb): (u64, u64) = (ag.parse().unwrap(), agb.parse().unwrap());
            return (ag * agblocks + agb + (fblock - off)) * bs;
        }
    }
    panic!("block {fblock} of inode {ino} is not mapped: {out}");
}

fn expect_corrupt<T>(r: FsResult<T>, what: &str) {
    match r {
        Err(e) if e.kind == ErrorKind::Corrupt && e.message.contains(what) => {}
        Err(e) => panic!("expected Corrupt naming {what:?}, got {e:?}"),
        Ok(_) => panic!("expected Corrupt naming {what:?}, got Ok"),
    }
}

#[test]
fn corruption_is_reported() {
    let base = make_image("xfs-base", 64 << 20, &[], &standard_tree(6000, false));
    let p = base.path();
    assert_eq!(db_inode(p, db_ino(p, "/node"))["core.format"], "3 (btree)");
    let (sect, ag_bytes) = {
        let fs = open(p);
        (u64::from(fs.sb.sect_size), fs.sb.ag_byte(1))
    };
    let ino = |path: &str| db_ino(p, path);
    let inode_byte = |path: &str| open(p).sb.ino_to_byte(ino(path)).unwrap();
    let leaf_dablk = ondisk::dir::LEAF_OFFSET / 4096;

    // Superblock.
    let img = damaged(&base, |d| flip(d, 0));
    expect_corrupt(XfsFs::open(disk(img.path())), "superblock: bad magic");
    let img = damaged(&base, |d| flip(d, 0x1F0));
    expect_corrupt(XfsFs::open(disk(img.path())), "superblock: bad CRC");
    let img = damaged(&base, |d| db_write(d, &["sb 0", "write -d agcount 1000"]));
    expect_corrupt(XfsFs::open(disk(img.path())), "superblock:");
    let img = damaged(&base, |d| db_write(d, &["sb 0", "write -d rootino 7"]));
    expect_corrupt(XfsFs::open(disk(img.path())), "root inode");
    // A truncated image.
    let img = damaged(&base, |d| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(d)
            .unwrap()
            .set_len(40 << 20)
            .unwrap()
    });
    expect_corrupt(XfsFs::open(disk(img.path())), "larger than its device");

    // AG headers.
    let img = damaged(&base, |d| flip(d, ag_bytes + sect + 0x70));
    expect_corrupt(XfsFs::open(disk(img.path())), "AG 1 AGF: bad CRC");
    let img = damaged(&base, |d| flip(d, 2 * ag_bytes + 2 * sect));
    expect_corrupt(XfsFs::open(disk(img.path())), "AG 2 AGI: bad magic");
    let img = damaged(&base, |d| db_write(d, &["agf 3", "write -d length 12"]));
    expect_corrupt(XfsFs::open(disk(img.path())), "AG 3 AGF: length");

    // An inode: only what needs it fails.
    let img = damaged(&base, |d| flip(d, inode_byte("/hello.txt") + 0x84));
    let mut fs = open(img.path());
    expect_corrupt(
        fs.stat("/hello.txt", true),
        &format!("inode {}: bad CRC", ino("/hello.txt")),
    );
    expect_corrupt(fs.read_dir("/"), "bad CRC");
    assert!(fs.read("/empty", 0, 1).unwrap().is_empty());
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/hello.txt")),
                "write -d core.magic 0",
            ],
        )
    });
    expect_corrupt(open(img.path()).stat("/hello.txt", true), "bad magic");

    // Data fork pointers out of range.
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/big.bin")),
                "write -d u3.bmx[0].startblock 99999999",
            ],
        )
    });
    expect_corrupt(
        open(img.path()).read("/big.bin", 0, 10),
        "outside the filesystem",
    );
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/big.bin")),
                "write -d core.nextents 1000",
            ],
        )
    });
    expect_corrupt(open(img.path()).read("/big.bin", 0, 10), "do not fit");
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/node")),
                "write -d u3.bmbt.ptrs[1] 987654321",
            ],
        )
    });
    expect_corrupt(
        open(img.path()).read_dir("/node"),
        "block map btree pointer",
    );

    // Directory blocks.
    let blk = db_block_byte(p, ino("/block"), 0);
    let img = damaged(&base, |d| flip(d, blk + 200));
    expect_corrupt(
        open(img.path()).read_dir("/block"),
        "directory block: bad CRC",
    );
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/block")),
                "dblock 0",
                "write -d bu[3].inumber 999999999999",
            ],
        )
    });
    expect_corrupt(open(img.path()).read_dir("/block"), "invalid inode number");
    let leaf = db_block_byte(p, ino("/leaf"), leaf_dablk);
    let img = damaged(&base, |d| flip(d, leaf + 8));
    let mut fs = open(img.path());
    expect_corrupt(
        fs.stat("/leaf/leaf-entry-with-a-longer-name-00007", true),
        "leaf/node block: bad magic",
    );
    let node_ptr: u64 = db_inode(p, ino("/node"))["u3.bmbt.ptrs[1]"]
        .parse()
        .unwrap();
    let (agno, agbno) = {
        let fs = open(p);
        fs.sb.split_fsb(node_ptr)
    };
    let bmbt_byte = (agno * db_sb(p)["agblocks"].parse::<u64>().unwrap() + agbno) * 4096;
    let img = damaged(&base, |d| flip(d, bmbt_byte + 1000));
    expect_corrupt(open(img.path()).read_dir("/node"), "block map block");

    // A directory that contains itself.
    let short = ino("/short");
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {short}"),
                &format!("write -d u3.sfdir3.list[0].inumber.i4 {short}"),
            ],
        )
    });
    let mut fs = open(img.path());
    expect_corrupt(fs.read_dir("/short"), "contains itself");
    expect_corrupt(fs.stat("/short/a", true), "contains itself");
    // And one whose entry points at an inode slot outside the filesystem.
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {short}"),
                "write -d u3.sfdir3.list[1].inumber.i4 4000000000",
            ],
        )
    });
    expect_corrupt(open(img.path()).read_dir("/short"), "invalid inode number");

    // A file flagged as living on a realtime device (there is none here).
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/hello.txt")),
                "write -d core.realtime 1",
            ],
        )
    });
    let e = open(img.path()).read("/hello.txt", 0, 10).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    assert!(e.message.contains("realtime"), "{e:?}");

    // A symlink claiming more than XFS allows.
    let img = damaged(&base, |d| {
        db_write(
            d,
            &[
                &format!("inode {}", ino("/fast-link")),
                "write -d core.size 5000",
            ],
        )
    });
    expect_corrupt(
        open(img.path()).read_link("/fast-link"),
        "does not fit in the inode",
    );
}

#[test]
fn external_log_is_unsupported() {
    let img = TempImage::new("xfs-extlog", 64 << 20);
    let log = TempImage::new("xfs-extlog-log", 16 << 20);
    let logdev = format!("logdev={},size=10m", log.path());
    tool("mkfs.xfs", &["-q", "-f", "-l", &logdev, img.path()]);
    assert_eq!(db_sb(img.path())["logstart"], "0");
    let e = open_err(img.path());
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    assert!(e.message.contains("external log"), "{e:?}");
}

#[test]
fn dispatcher_probe_and_readonly() {
    use wire::{Reply, Request};
    let root = dir(vec![
        kid("etc", dir(vec![kid("hostname", file(b"guest\n"))])),
        kid("data", file(&pseudo_random(3 << 20, 5))),
    ]);
    let img = make_image("xfs-rpc", 64 << 20, &["-L", "skiffxfs"], &root);
    // probe (the appliance's own detector) agrees with blkid, and so do we.
    let ids = blkid(img.path());
    assert_eq!(ids["TYPE"], "xfs");
    let p = crate::fs::probe::probe(&disk(img.path()));
    assert_eq!(p.fstype, "xfs");
    assert_eq!(p.label.as_deref(), Some(ids["LABEL"].as_str()));
    assert_eq!(p.uuid.as_deref(), Some(ids["UUID"].as_str()));
    let fs = open(img.path());
    assert_eq!(fs.label().as_deref(), Some("skiffxfs"));
    assert_eq!(fs.uuid(), ids["UUID"]);
    drop(fs);

    let mut a = crate::rpc::Appliance::new();
    a.set_disk(0, disk(img.path()));
    // Asked read-write and detected: mounted read-only.
    a.handle(Request::Mount {
        device: "/dev/sda".into(),
        mountpoint: "/".into(),
        readonly: false,
        fstype: None,
    })
    .unwrap();
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert_eq!((m[0].fstype.as_str(), m[0].readonly), ("xfs", true));
    let Reply::Names(names) = a.handle(Request::Find { path: "/".into() }).unwrap() else {
        panic!()
    };
    assert_eq!(names, ["data", "etc", "etc/hostname"]);
    let Reply::Data(wire::Bytes(d)) = a
        .handle(Request::Pread {
            path: "/etc/hostname".into(),
            offset: 0,
            len: 100,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d, b"guest\n");
    for req in [
        Request::WriteFile {
            path: "/new".into(),
            offset: 0,
            data: wire::Bytes(vec![1]),
            truncate: true,
            mode: 0o644,
        },
        Request::Mkdir {
            path: "/d".into(),
            parents: false,
            mode: 0o755,
        },
        Request::Remove {
            path: "/data".into(),
            recursive: false,
        },
    ] {
        let e = a.handle(req).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly, "{e:?}");
    }
    let mut fs = open(img.path());
    for e in [
        fs.write("/x", 0, b"x", false, 0o644).unwrap_err(),
        fs.mkdir("/x", 0o755).unwrap_err(),
        fs.unlink("/data").unwrap_err(),
        fs.rmdir("/etc").unwrap_err(),
        fs.rename("/data", "/y").unwrap_err(),
        fs.chmod("/data", 0o600).unwrap_err(),
        fs.symlink("a", "/b").unwrap_err(),
        fs.truncate("/data", 0).unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::ReadOnly);
        assert!(e.message.contains("xfs"), "{e:?}");
    }
    assert!(fs.readonly());
    assert_eq!(fs.fstype(), "xfs");
}

/// Counts device requests.
struct Counting(SharedDevice, std::rc::Rc<core::cell::Cell<usize>>);

impl BlockDevice for Counting {
    fn size(&self) -> u64 {
        self.0.borrow().size()
    }
    fn readonly(&self) -> bool {
        true
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.1.set(self.1.get() + 1);
        self.0.borrow_mut().read_at(offset, buf)
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), Error> {
        Err(Error::new(ErrorKind::ReadOnly, "test disk"))
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn reads_whole_extents_and_caches_metadata() {
    let data = pseudo_random(6 << 20, 9);
    let root = dir(vec![kid(
        "a",
        dir(vec![kid("b", dir(vec![kid("big", file(&data))]))]),
    )]);
    let img = make_image("xfs-count", 64 << 20, &[], &root);
    let n = std::rc::Rc::new(core::cell::Cell::new(0));
    let mut fs = XfsFs::open(shared(Counting(disk(img.path()), n.clone()))).unwrap();
    let ino = db_ino(img.path(), "/a/b/big");
    let f = db_inode(img.path(), ino);
    assert_eq!(f["core.nextents"], "1", "the test needs a contiguous file");
    let first = fs.read("/a/b/big", 0, 1 << 20).unwrap();
    assert!(first == data[..1 << 20]);
    // Later chunks: one device read each (no path walk, no block map walk).
    for i in 1..6u64 {
        let before = n.get();
        let d = fs.read("/a/b/big", i << 20, 1 << 20).unwrap();
        assert!(d == data[(i as usize) << 20..((i + 1) as usize) << 20]);
        assert_eq!(n.get() - before, 1, "chunk {i}");
    }
    // A second walk of the same paths hits the metadata cache only.
    fs.last_file = None;
    let before = n.get();
    fs.stat("/a/b/big", true).unwrap();
    fs.read_dir("/a/b").unwrap();
    assert_eq!(n.get(), before);
    assert!(fs.io.cached_bytes() <= io::CACHE_BYTES);
}

/// With 1 KiB blocks a 1023-byte target needs two blocks (the v5 header takes 56
/// bytes): written by the kernel, read back byte for byte.
#[test]
fn remote_symlink_over_two_blocks() {
    let img = TempImage::new("xfs-1k-link", 64 << 20);
    tool("mkfs.xfs", &["-q", "-f", "-b", "size=1024", img.path()]);
    let mut target = String::new();
    let mut i = 0;
    while target.len() < 1023 {
        target.push_str(&format!("/part{i}"));
        i += 1;
    }
    target.truncate(1023);
    let mid: String = target.chars().take(600).collect();
    let m = Mounted::new(img.path(), "");
    std::os::unix::fs::symlink(&target, m.at("long")).unwrap();
    std::os::unix::fs::symlink(&mid, m.at("mid")).unwrap();
    m.umount();
    repair_clean(img.path());
    let ino = db_ino(img.path(), "/long");
    let f = db_inode(img.path(), ino);
    assert_eq!(f["core.nblocks"], "2", "{f:?}");
    let mut fs = open(img.path());
    assert_eq!(fs.read_link("/long").unwrap(), target);
    assert_eq!(fs.read_link("/mid").unwrap(), mid);
}
