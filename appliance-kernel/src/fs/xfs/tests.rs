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
fn tool(cmd: &str, args: &[&str]) -> String {
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
fn db(img: &str, cmds: &[&str]) -> String {
    let mut args = vec!["-r"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(img);
    tool("xfs_db", &args)
}

/// `xfs_db -x` (expert mode: writes, recomputing CRCs).
fn db_write(img: &str, cmds: &[&str]) {
    let mut args = vec!["-x"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(img);
    tool("xfs_db", &args);
}

fn repair_clean(img: &str) {
    tool("xfs_repair", &["-n", "-f", img]);
}

/// A read-only file-backed disk (images are read in place, not copied to memory).
struct FileDisk(std::fs::File, u64);

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

fn disk(img: &str) -> SharedDevice {
    let f = std::fs::File::open(img).unwrap();
    let len = f.metadata().unwrap().len();
    shared(FileDisk(f, len))
}

fn open(img: &str) -> XfsFs {
    XfsFs::open(disk(img)).unwrap_or_else(|e| panic!("{img}: {e:?}"))
}

fn open_err(img: &str) -> Error {
    match XfsFs::open(disk(img)) {
        Ok(_) => panic!("{img}: mounted"),
        Err(e) => e,
    }
}

fn pseudo_random(len: usize, mut x: u64) -> Vec<u8> {
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
enum N {
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

fn dir(kids: Vec<(String, N)>) -> N {
    N::Dir {
        mode: 0o755,
        uid: 0,
        gid: 0,
        kids,
    }
}

fn file(data: &[u8]) -> N {
    N::File {
        mode: 0o644,
        uid: 0,
        gid: 0,
        data: data.to_vec(),
    }
}

fn kid(name: &str, n: N) -> (String, N) {
    (name.to_string(), n)
}

fn mode_str(t: char, mode: u16) -> String {
    format!(
        "{t}{}{}{:03o}",
        if mode & 0o4000 != 0 { 'u' } else { '-' },
        if mode & 0o2000 != 0 { 'g' } else { '-' },
        mode & 0o777
    )
}

/// Writes the protofile for `root` (file contents go to files in `store`).
fn protofile(root: &N, store: &TempDir) -> String {
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
fn make_image(tag: &str, size: u64, opts: &[&str], root: &N) -> TempImage {
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
fn db_ls(img: &str, path: &str) -> Vec<(String, u64)> {
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
fn db_fields(out: &str) -> Map<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn db_inode(img: &str, ino: u64) -> Map<String, String> {
    db_fields(&db(img, &[&format!("inode {ino}"), "print"]))
}

fn db_sb(img: &str) -> Map<String, String> {
    db_fields(&db(img, &["sb 0", "print"]))
}

/// Seconds since the epoch of an `xfs_db` date ("Mon Nov 30 19:14:14 2026"), read
/// as UTC (xfs_db prints local time; the tests run it with TZ unset = UTC).
fn db_time(s: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", s, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

// ---------------------------------------------------------------------------------
// Checks

/// Reads a whole file in 1 MiB chunks, as the host does.
fn read_all(fs: &mut XfsFs, path: &str) -> Vec<u8> {
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
fn check_tree(fs: &mut XfsFs, path: &str, n: &N) {
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
    assert_eq!((st.mode, st.uid, st.gid), (u32::from(*mode), *uid, *gid), "{path}");
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
                assert_eq!((st.mode, st.uid, st.gid), (u32::from(*mode), *uid, *gid), "{p}");
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
fn check_against_db(fs: &mut XfsFs, img: &str, path: &str) -> usize {
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
fn db_ino(img: &str, path: &str) -> u64 {
    let (parent, name) = crate::fs::vfs::split_parent(path).unwrap();
    db_ls(img, parent)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{path} not in xfs_db ls"))
        .1
}

/// A directory's stored form, as the reader sees it.
fn dir_kind(fs: &mut XfsFs, path: &str) -> &'static str {
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

fn long_target() -> String {
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
fn standard_tree(node_entries: usize, remote_link: bool) -> N {
    let small = |i: usize| file(format!("content {i}\n").as_bytes());
    let short_dir = dir(vec![kid("a", small(1)), kid("b", small(2)), kid("sub", dir(vec![]))]);
    let block_dir = dir((0..30).map(|i| kid(&format!("blk-{i:02}"), small(i))).collect());
    let leaf_dir = dir(
        (0..400)
            .map(|i| kid(&format!("leaf-entry-with-a-longer-name-{i:05}"), small(i)))
            .collect(),
    );
    let node_dir = dir(
        (0..node_entries)
            .map(|i| {
                kid(
                    &format!("node-entry-with-a-much-longer-name-to-fill-blocks-{i:06}"),
                    file(b""),
                )
            })
            .collect(),
    );
    let mut root = vec![
        kid("hello.txt", file(b"hello, xfs\n")),
        kid("empty", file(b"")),
        kid("big.bin", file(&pseudo_random(5 << 20, 0x1234_5678_9ABC_DEF1))),
        kid(
            "odd.bin",
            file(&pseudo_random(123_457, 0x0DDB_A11_0DDB_A11)),
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
fn check_standard(img: &TempImage, node_entries: usize, remote_link: bool, expect_node: &str) {
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
    assert_eq!(fs.stat("/fast-link", false).unwrap().file_type, FileType::Symlink);
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
    assert_eq!(fs.stat("/loop-a", false).unwrap().file_type, FileType::Symlink);
    assert_eq!(fs.stat("/dangling", true).unwrap_err().kind, ErrorKind::NotFound);
    if remote_link {
        assert_eq!(fs.read_link("/slow-link").unwrap(), long_target());
    }
    assert_eq!(
        fs.read_link("/hello.txt").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(fs.stat("/nope", true).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        fs.stat("/hello.txt/x", true).unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(fs.read("/short", 0, 10).unwrap_err().kind, ErrorKind::IsADirectory);
    assert_eq!(fs.read("/pipe", 0, 10).unwrap_err().kind, ErrorKind::InvalidArgument);
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
    for p in ["/secret", "/shared", "/tty", "/pipe", "/fast-link", "/node", "/big.bin"] {
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
        160 << 20,
        &["-L", "skiff-v5"],
        &standard_tree(6000, false),
    );
    let sb = db_sb(img.path());
    assert_eq!(sb["versionnum"].parse::<u16>().ok(), None); // hex, e.g. 0xb4a5
    let fs = open(img.path());
    let features = fs.sb.feature_names();
    for f in ["crc", "ftype", "sparse", "bigtime", "finobt", "reflink", "inobtcount"] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    drop(fs);
    check_standard(&img, 6000, false, "node+btree");
}
