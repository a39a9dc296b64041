//! Writer tests: images made by `mkfs.xfs -p`, changed through the `FileSystem` write
//! methods, then checked with `xfs_repair -n` (silent), `xfs_db -r` (`ls`, `inode`,
//! `freesp`, `sb 0`), skiff's own reader, and for v5 a kernel loop mount.

use super::tests::*;
use super::*;
use crate::block::{BlockDevice, shared};
use crate::part::testutil::TempImage;
use std::cell::Cell;
use std::os::unix::fs::FileExt;
use std::process::Command;

/// A read-write file-backed disk; after `limit` writes it accepts no more (a kill).
struct RwDisk {
    f: std::fs::File,
    size: u64,
    writes: Rc<Cell<u64>>,
    limit: Option<u64>,
}

impl BlockDevice for RwDisk {
    fn size(&self) -> u64 {
        self.size
    }
    fn readonly(&self) -> bool {
        false
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        crate::block::check_range(offset, buf.len(), self.size)?;
        self.f
            .read_exact_at(buf, offset)
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        crate::block::check_range(offset, buf.len(), self.size)?;
        if self.limit.is_some_and(|l| self.writes.get() >= l) {
            return Err(Error::new(ErrorKind::Io, "killed"));
        }
        self.writes.set(self.writes.get() + 1);
        self.f
            .write_all_at(buf, offset)
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
    }
    fn flush(&mut self) -> Result<(), Error> {
        if self.limit.is_some_and(|l| self.writes.get() >= l) {
            return Err(Error::new(ErrorKind::Io, "killed"));
        }
        Ok(())
    }
}

fn rw_disk(img: &str, limit: Option<u64>) -> (SharedDevice, Rc<Cell<u64>>) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let size = f.metadata().unwrap().len();
    let writes = Rc::new(Cell::new(0));
    (
        shared(RwDisk {
            f,
            size,
            writes: writes.clone(),
            limit,
        }),
        writes,
    )
}

/// Mounts `img` read-write.
fn rw(img: &str) -> XfsFs {
    let (d, _) = rw_disk(img, None);
    let mut fs = XfsFs::open_with(d, true).unwrap_or_else(|e| panic!("{img}: {e:?}"));
    fs.set_clock(1_700_000_000);
    fs
}

/// `xfs_repair -n` must be silent (and succeed).
fn repair_silent(img: &str) {
    let out = Command::new("xfs_repair")
        .args(["-n", "-f", img])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let noise: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.starts_with("Phase")
                && !l.trim_start().starts_with("- ")
                && !l.starts_with("No modify flag set")
                && !l.starts_with("Cannot get host filesystem geometry")
                && !l.starts_with("Repair may fail if there is a sector size mismatch")
                && !l.starts_with("the image and the host filesystem")
                && !l.trim().is_empty()
        })
        .collect();
    assert!(
        out.status.success() && noise.is_empty(),
        "xfs_repair -n {img}:\n{}",
        noise.join("\n")
    );
}

fn write_all(fs: &mut XfsFs, path: &str, data: &[u8]) {
    // In chunks of at most 1 MiB, as the host sends them.
    if data.is_empty() {
        fs.write(path, 0, &[], true, 0o644).unwrap();
        return;
    }
    for (i, c) in data.chunks(1 << 20).enumerate() {
        fs.write(path, (i << 20) as u64, c, i == 0, 0o644)
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

fn small_tree() -> N {
    dir(vec![
        kid("hello.txt", file(b"hello, xfs\n")),
        kid("empty", file(b"")),
        kid(
            "sub",
            dir(vec![kid("a", file(b"aaa")), kid("b", file(b"bbb"))]),
        ),
        kid("big.bin", file(&pseudo_random(300_000, 5))),
    ])
}

fn v5_image(tag: &str, extra: &[&str]) -> TempImage {
    make_image(tag, 64 << 20, extra, &small_tree())
}

#[test]
fn chmod_chown_times_are_logged_and_in_place() {
    let img = v5_image("xfsw-attr", &[]);
    let p = img.path();
    {
        let mut fs = rw(p);
        assert!(!fs.readonly());
        fs.chmod("/hello.txt", 0o600).unwrap();
        fs.chown("/hello.txt", 1000, 1001).unwrap();
        fs.set_times("/hello.txt", 1_600_000_000, 1_600_000_100)
            .unwrap();
        let st = fs.stat("/hello.txt", false).unwrap();
        assert_eq!((st.mode, st.uid, st.gid), (0o600, 1000, 1001));
        assert_eq!(
            (st.atime, st.mtime, st.ctime),
            (1_600_000_000, 1_600_000_100, 1_700_000_000)
        );
        fs.sync().unwrap();
    }
    repair_silent(p);
    let ino = db_ino(p, "/hello.txt");
    let f = db_inode(p, ino);
    assert_eq!(f["core.mode"], "0100600");
    assert_eq!(f["core.uid"], "1000");
    assert_eq!(f["core.gid"], "1001");
    assert_eq!(db_time(&f["core.mtime.sec"]), 1_600_000_100);
    assert!(
        logprint_state(p).ends_with("state: <CLEAN>"),
        "the log is clean after sync"
    );
    // The kernel sees it too.
    let m = Mounted::new(p, "ro");
    let md = std::fs::metadata(m.at("hello.txt")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o600, 1000, 1001)
    );
    assert_eq!(md.mtime(), 1_600_000_100);
}

/// Runs `f` on `img` mounted read-write on a disk that stops taking writes after
/// `limit` of them (errors from `f` are expected once it is reached).
fn killed_after(img: &str, limit: u64, f: impl FnOnce(&mut XfsFs)) -> u64 {
    let (d, writes) = rw_disk(img, Some(limit));
    let mut fs = XfsFs::open_with(d, true).unwrap();
    fs.set_clock(1_700_000_000);
    f(&mut fs);
    let _ = fs.sync();
    writes.get()
}

#[test]
fn a_killed_commit_is_replayed_by_linux_and_by_skiff() {
    let img = v5_image("xfsw-replay", &[]);
    let p = img.path();
    let ino = db_ino(p, "/hello.txt");
    // One write: the log record; the in-place writes never happen.
    let n = killed_after(p, 1, |fs| {
        assert!(fs.chmod("/hello.txt", 0o600).is_err());
    });
    assert_eq!(n, 1);
    assert_eq!(db_inode(p, ino)["core.mode"], "0100644", "not in place yet");
    assert!(
        !logprint_state(p).contains("CLEAN"),
        "{}",
        logprint_state(p)
    );
    let copy = TempImage::new("xfsw-replay-copy", 0);
    std::fs::copy(p, copy.path()).unwrap();
    // A read-only skiff mount sees the change is not in place and refuses.
    let e = open_err(p);
    assert!(e.message.contains("read-write once"), "{e:?}");
    // Linux replays it.
    let m = Mounted::new(p, "");
    m.umount();
    assert_eq!(db_inode(p, ino)["core.mode"], "0100600");
    repair_silent(p);
    // skiff replays it too.
    {
        let fs = rw(copy.path());
        drop(fs);
    }
    assert_eq!(db_inode(copy.path(), ino)["core.mode"], "0100600");
    assert!(logprint_state(copy.path()).ends_with("<CLEAN>"));
    repair_silent(copy.path());
    open(copy.path());
}

#[test]
fn files_are_created_written_and_read_back() {
    let img = v5_image("xfsw-files", &[]);
    let p = img.path();
    let big = pseudo_random(3 << 20, 99);
    {
        let mut fs = rw(p);
        write_all(&mut fs, "/new.txt", b"brand new\n");
        write_all(&mut fs, "/sub/c", b"ccc");
        write_all(&mut fs, "/large.bin", &big);
        // Overwrite inside, extend past the end, and leave a hole.
        fs.write("/hello.txt", 7, b"XFS", false, 0).unwrap();
        fs.write("/hello.txt", 100_000, b"far", false, 0).unwrap();
        fs.write("/empty", 0, b"", false, 0).unwrap();
        assert_eq!(read_all(&mut fs, "/new.txt"), b"brand new\n");
        fs.sync().unwrap();
    }
    repair_silent(p);
    let mut fs = open(p);
    assert_eq!(read_all(&mut fs, "/new.txt"), b"brand new\n");
    assert_eq!(read_all(&mut fs, "/sub/c"), b"ccc");
    assert!(read_all(&mut fs, "/large.bin") == big);
    let h = read_all(&mut fs, "/hello.txt");
    assert_eq!(h.len(), 100_003);
    assert_eq!(&h[..11], b"hello, XFS\n");
    assert!(h[11..100_000].iter().all(|&b| b == 0));
    assert_eq!(&h[100_000..], b"far");
    let names: Vec<String> = db_ls(p, "/").into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"new.txt".to_string()) && names.contains(&"large.bin".to_string()));
    let ino = db_ino(p, "/large.bin");
    let f = db_inode(p, ino);
    assert_eq!(f["core.size"], (3u64 << 20).to_string());
    assert_eq!(f["core.nblocks"], "768");
    // The kernel reads the same bytes.
    let m = Mounted::new(p, "ro");
    assert!(std::fs::read(m.at("large.bin")).unwrap() == big);
    assert_eq!(std::fs::read(m.at("hello.txt")).unwrap(), h);
    assert_eq!(std::fs::read(m.at("sub/c")).unwrap(), b"ccc");
}

// ---------------------------------------------------------------------------------
// A model of the tree, checked against skiff's reader, xfs_db and Linux

#[derive(Clone, Debug, PartialEq, Eq)]
enum M {
    File(Vec<u8>),
    Dir,
    Link(String),
}

type Model = std::collections::BTreeMap<String, M>;

fn model_of(n: &N) -> Model {
    fn walk(n: &N, path: &str, out: &mut Model) {
        if let N::Dir { kids, .. } = n {
            for (k, c) in kids {
                let p = if path == "/" {
                    format!("/{k}")
                } else {
                    format!("{path}/{k}")
                };
                match c {
                    N::Dir { .. } => {
                        out.insert(p.clone(), M::Dir);
                        walk(c, &p, out);
                    }
                    N::File { data, .. } => {
                        out.insert(p, M::File(data.clone()));
                    }
                    N::Link(t) => {
                        out.insert(p, M::Link(t.clone()));
                    }
                    _ => {}
                }
            }
        }
    }
    let mut m = Model::new();
    walk(n, "/", &mut m);
    m
}

fn children<'m>(model: &'m Model, dir: &str) -> Vec<&'m str> {
    let prefix = if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    };
    model
        .keys()
        .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
        .map(|k| &k[prefix.len()..])
        .collect()
}

/// The image holds exactly `model`: xfs_repair -n is silent, skiff's reader and
/// xfs_db list the same names, files read the same bytes; `kernel`: a loop mount too.
fn verify(img: &str, model: &Model, kernel: bool) {
    repair_silent(img);
    let mut fs = open(img);
    let mut dirs = vec!["/".to_string()];
    dirs.extend(
        model
            .iter()
            .filter(|(_, v)| **v == M::Dir)
            .map(|(k, _)| k.clone()),
    );
    for d in &dirs {
        let mut want = children(model, d);
        want.sort_unstable();
        let mut got: Vec<String> = fs
            .read_dir(d)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "{d}: skiff listing");
        let mut dbl: Vec<String> = db_ls(img, d).into_iter().map(|(n, _)| n).collect();
        dbl.sort_unstable();
        assert_eq!(dbl, want, "{d}: xfs_db ls");
    }
    for (p, v) in model {
        match v {
            M::File(data) => assert!(read_all(&mut fs, p) == *data, "{p}: contents"),
            M::Link(t) => assert_eq!(&fs.read_link(p).unwrap(), t, "{p}"),
            M::Dir => assert_eq!(fs.stat(p, false).unwrap().file_type, FileType::Directory),
        }
    }
    if kernel {
        let m = Mounted::new(img, "ro");
        for d in &dirs {
            let mut want = children(model, d);
            want.sort_unstable();
            let mut got: Vec<String> = std::fs::read_dir(m.at(d.trim_start_matches('/')))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            got.sort_unstable();
            assert_eq!(got, want, "{d}: Linux listing");
        }
        for (p, v) in model {
            let at = m.at(p.trim_start_matches('/'));
            match v {
                M::File(data) => {
                    assert!(std::fs::read(&at).unwrap() == *data, "{p}: Linux contents")
                }
                M::Link(t) => assert_eq!(std::fs::read_link(&at).unwrap().to_string_lossy(), *t),
                M::Dir => assert!(at.is_dir()),
            }
        }
    }
}

fn kind_of(img: &str, path: &str) -> &'static str {
    let mut fs = open(img);
    dir_kind(&mut fs, path)
}

/// Grows a directory through every form and shrinks it back, checking each stage.
fn dir_forms(tag: &str, opts: &[&str], kernel: bool) {
    let tree = dir(vec![kid("d", dir(vec![])), kid("keep", file(b"keep"))]);
    let img = make_image(tag, 96 << 20, opts, &tree);
    let p = img.path();
    let mut model = model_of(&tree);
    let name = |i: usize| format!("entry-{i:05}-with-a-name-of-some-length");
    let mut count = 0usize;
    let grow = [(2, "short"), (50, "block"), (300, "leaf"), (1500, "node")];
    for (want, form) in grow {
        let mut fs = rw(p);
        while count < want {
            let path = format!("/d/{}", name(count));
            let data = format!("file {count}");
            fs.write(&path, 0, data.as_bytes(), true, 0o644).unwrap();
            model.insert(path, M::File(data.into_bytes()));
            count += 1;
        }
        fs.sync().unwrap();
        drop(fs);
        verify(p, &model, kernel && form == "node");
        let k = kind_of(p, "/d");
        assert!(
            k.starts_with(form),
            "{tag}: {count} entries: {k}, want {form}"
        );
    }
    let shrink = [(300, "leaf"), (50, "block"), (2, "short"), (0, "short")];
    for (want, form) in shrink {
        let mut fs = rw(p);
        while count > want {
            count -= 1;
            let path = format!("/d/{}", name(count));
            fs.unlink(&path).unwrap();
            model.remove(&path);
        }
        fs.sync().unwrap();
        drop(fs);
        verify(p, &model, false);
        let k = kind_of(p, "/d");
        assert!(
            k.starts_with(form),
            "{tag}: {count} entries: {k}, want {form}"
        );
    }
    // An empty directory goes.
    {
        let mut fs = rw(p);
        fs.rmdir("/d").unwrap();
        model.remove("/d");
        fs.sync().unwrap();
    }
    verify(p, &model, kernel);
    let sb = db_sb(p);
    // In use: the root, the two realtime inodes mkfs makes, and keep.
    assert_eq!(
        sb["icount"].parse::<u64>().unwrap() - sb["ifree"].parse::<u64>().unwrap(),
        4
    );
}

#[test]
fn directories_grow_and_shrink_through_every_form_v5() {
    dir_forms("xfsw-dirs5", &[], true);
}

#[test]
fn directories_grow_and_shrink_through_every_form_v4() {
    dir_forms("xfsw-dirs4", &["-m", "crc=0"], false);
}

#[test]
fn directories_with_8k_blocks() {
    dir_forms("xfsw-dirs8k", &["-n", "size=8192"], true);
}

/// mkdir, rename (same directory, across, over a file and over an empty directory,
/// directories moving with their `..`), unlink, rmdir, symlinks (inline and remote).
fn namespace_ops(tag: &str, size: u64, opts: &[&str], kernel: bool) {
    let tree = small_tree();
    let img = make_image(tag, size, opts, &tree);
    let p = img.path();
    let mut model = model_of(&tree);
    let long = "/a/long/symlink/target/".repeat(30);
    {
        let mut fs = rw(p);
        fs.mkdir("/etc", 0o755).unwrap();
        fs.mkdir("/etc/ssh", 0o700).unwrap();
        fs.mkdir("/home", 0o755).unwrap();
        fs.mkdir("/home/user", 0o750).unwrap();
        assert_eq!(
            fs.mkdir("/etc", 0o755).unwrap_err().kind,
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            fs.mkdir("/nope/x", 0o755).unwrap_err().kind,
            ErrorKind::NotFound
        );
        for d in ["/etc", "/etc/ssh", "/home", "/home/user"] {
            model.insert(d.into(), M::Dir);
        }
        write_all(&mut fs, "/etc/hostname", b"guest\n");
        write_all(&mut fs, "/etc/ssh/key", b"ssh-ed25519 AAAA test\n");
        model.insert("/etc/hostname".into(), M::File(b"guest\n".to_vec()));
        model.insert(
            "/etc/ssh/key".into(),
            M::File(b"ssh-ed25519 AAAA test\n".to_vec()),
        );
        // Same directory.
        fs.rename("/hello.txt", "/hello2.txt").unwrap();
        let v = model.remove("/hello.txt").unwrap();
        model.insert("/hello2.txt".into(), v);
        // Across directories, over an existing file.
        fs.rename("/sub/a", "/etc/hostname").unwrap();
        let v = model.remove("/sub/a").unwrap();
        model.insert("/etc/hostname".into(), v);
        // A directory moves: its `..` and both parents' link counts change.
        fs.rename("/sub", "/home/user/sub").unwrap();
        for k in ["/sub", "/sub/b"] {
            let v = model.remove(k).unwrap();
            model.insert(format!("/home/user{k}"), v);
        }
        // Over an empty directory; not over a non-empty one; not below itself.
        fs.mkdir("/home/empty", 0o755).unwrap();
        assert_eq!(
            fs.rename("/home/user", "/etc").unwrap_err().kind,
            ErrorKind::NotEmpty
        );
        assert_eq!(
            fs.rename("/home", "/home/user/sub/x").unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        fs.rename("/etc/ssh", "/home/empty").unwrap();
        model.remove("/etc/ssh");
        let v = model.remove("/etc/ssh/key").unwrap();
        model.insert("/home/empty".into(), M::Dir);
        model.insert("/home/empty/key".into(), v);
        // Removals.
        assert_eq!(
            fs.unlink("/home").unwrap_err().kind,
            ErrorKind::IsADirectory
        );
        assert_eq!(fs.rmdir("/home").unwrap_err().kind, ErrorKind::NotEmpty);
        assert_eq!(
            fs.rmdir("/etc/hostname").unwrap_err().kind,
            ErrorKind::NotADirectory
        );
        fs.unlink("/big.bin").unwrap();
        model.remove("/big.bin");
        // Symlinks.
        fs.symlink("hello2.txt", "/link").unwrap();
        fs.symlink(&long, "/home/long-link").unwrap();
        model.insert("/link".into(), M::Link("hello2.txt".into()));
        model.insert("/home/long-link".into(), M::Link(long.clone()));
        assert_eq!(read_all(&mut fs, "/link"), b"hello, xfs\n");
        fs.sync().unwrap();
    }
    verify(p, &model, kernel);
    // Directory link counts as Linux keeps them.
    let mut fs = open(p);
    assert_eq!(fs.stat("/home", false).unwrap().nlink, 4); // ., .., user, empty
    assert_eq!(fs.stat("/home/user", false).unwrap().nlink, 3);
    assert_eq!(fs.stat("/", false).unwrap().nlink, 4); // ., .., etc, home
    let f = db_inode(p, db_ino(p, "/home/long-link"));
    assert_eq!(f["core.format"], "2 (extents)");
}

#[test]
fn namespace_v5() {
    namespace_ops("xfsw-ns5", 64 << 20, &[], true);
}

#[test]
fn namespace_v4() {
    namespace_ops("xfsw-ns4", 64 << 20, &["-m", "crc=0"], false);
}

#[test]
fn namespace_rmapbt_reflink() {
    namespace_ops("xfsw-nsrmap", 64 << 20, &["-m", "rmapbt=1,reflink=1"], true);
}

#[test]
fn namespace_many_small_ags() {
    namespace_ops(
        "xfsw-nsags",
        256 << 20,
        &["-d", "agcount=16", "-m", "rmapbt=1,bigtime=0"],
        true,
    );
}

fn agf_field(img: &str, agno: u32, field: &str) -> u64 {
    let f = db_fields(&db(img, &[&format!("agf {agno}"), "print"]));
    f[field].parse().unwrap()
}

/// A file written one block in two grows past what its inode holds (extents format →
/// btree), and truncated back returns to extents.
fn fragmented_file(tag: &str, opts: &[&str], bs: usize) {
    let tree = small_tree();
    let img = make_image(tag, 96 << 20, opts, &tree);
    let p = img.path();
    let mut model = model_of(&tree);
    let blocks = 1200usize;
    let mut want = vec![0u8; (blocks * 2 - 1) * bs];
    {
        let mut fs = rw(p);
        for i in 0..blocks {
            let d = pseudo_random(bs, i as u64 + 1);
            fs.write("/frag", (2 * i * bs) as u64, &d, false, 0o644)
                .unwrap();
            want[2 * i * bs..(2 * i + 1) * bs].copy_from_slice(&d);
        }
        fs.sync().unwrap();
    }
    model.insert("/frag".into(), M::File(want.clone()));
    verify(p, &model, !opts.contains(&"crc=0"));
    let ino = db_ino(p, "/frag");
    let f = db_inode(p, ino);
    assert_eq!(f["core.format"], "3 (btree)");
    assert_eq!(f["core.nextents"], blocks.to_string());
    // Cut to a tenth: still a (smaller) btree; to a few blocks: extents again.
    let kernel = !opts.contains(&"crc=0");
    {
        let mut fs = rw(p);
        fs.truncate("/frag", (blocks / 5 * bs) as u64).unwrap();
        fs.sync().unwrap();
    }
    want.truncate(blocks / 5 * bs);
    model.insert("/frag".into(), M::File(want.clone()));
    verify(p, &model, kernel);
    let f = db_inode(p, ino);
    assert_eq!(f["core.nextents"], (blocks / 10).to_string());
    // Fragment again and truncate: back to extents.
    {
        let mut fs = rw(p);
        fs.truncate("/frag", 0).unwrap();
        for i in 0..blocks {
            fs.write("/frag", (2 * i * bs) as u64, &[7u8; 100], false, 0)
                .unwrap();
        }
        fs.truncate("/frag", (3 * bs) as u64).unwrap();
        fs.sync().unwrap();
    }
    let mut t = vec![0u8; 3 * bs];
    t[..100].fill(7);
    t[2 * bs..2 * bs + 100].fill(7);
    model.insert("/frag".into(), M::File(t));
    verify(p, &model, kernel);
    let f = db_inode(p, ino);
    assert_eq!(f["core.format"], "2 (extents)");
    assert_eq!(f["core.nextents"], "2");
}

#[test]
fn fragmented_file_btree_map_v5() {
    fragmented_file("xfsw-frag5", &[], 4096);
}

#[test]
fn fragmented_file_btree_map_1k_rmap() {
    fragmented_file("xfsw-frag1k", &["-b", "size=1024", "-m", "rmapbt=1"], 1024);
}

#[test]
fn fragmented_file_btree_map_v4() {
    fragmented_file("xfsw-frag4", &["-m", "crc=0"], 4096);
}

/// Thousands of one-block files, every other one removed, splits the free-space (and
/// rmap) btrees to several levels; removing the rest merges them back.
#[test]
fn free_space_btrees_split_and_merge() {
    let tree = dir(vec![kid("d", dir(vec![]))]);
    let img = make_image(
        "xfsw-freesp",
        64 << 20,
        &["-b", "size=1024", "-m", "rmapbt=1", "-d", "agcount=2"],
        &tree,
    );
    let p = img.path();
    let mut model = model_of(&tree);
    let n = 6000;
    {
        let mut fs = rw(p);
        for i in 0..n {
            let path = format!("/d/f{i}");
            fs.write(&path, 0, &[i as u8; 700], true, 0o644).unwrap();
        }
        for i in (0..n).step_by(2) {
            fs.unlink(&format!("/d/f{i}")).unwrap();
        }
        fs.sync().unwrap();
    }
    for i in (1..n).step_by(2) {
        model.insert(format!("/d/f{i}"), M::File(vec![i as u8; 700]));
    }
    verify(p, &model, false);
    // The files are in the AG of /d.
    let ag = (db_ino(p, "/d") >> open(p).sb.agino_log()) as u32;
    let levels: Vec<u64> = ["bnolevel", "cntlevel", "rmaplevel"]
        .iter()
        .map(|f| agf_field(p, ag, f))
        .collect();
    assert!(levels.iter().all(|&l| l >= 2), "levels {levels:?}");
    let btree_blocks = agf_field(p, ag, "btreeblks");
    {
        let mut fs = rw(p);
        for i in (1..n).step_by(2) {
            fs.unlink(&format!("/d/f{i}")).unwrap();
            model.remove(&format!("/d/f{i}"));
        }
        fs.sync().unwrap();
    }
    verify(p, &model, true);
    // Merged back: the inode chunks kept leave ~140 free extents (two leaves).
    assert!(agf_field(p, ag, "bnolevel") <= 2);
    assert!(agf_field(p, ag, "btreeblks") * 4 < btree_blocks);
    // Free space as xfs_db counts it matches the superblock.
    let out = db(p, &["freesp -s"]);
    let total: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("total free blocks "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // xfs_db counts the free list as free space; sb_fdblocks counts the btree blocks
    // beyond the roots too.
    let agfl: u64 = (0..2).map(|a| agf_field(p, a, "btreeblks")).sum();
    let sb = db_sb(p);
    assert_eq!(
        total + agfl,
        sb["fdblocks"].parse::<u64>().unwrap(),
        "{out}"
    );
}

/// sb_fdblocks against the AG counters, through the writer's view.
fn counters_agree(fs: &mut XfsFs) -> (u64, u64) {
    let n = fs.sb.ag_count;
    fs.peek(|c| {
        let mut sum = 0u64;
        for a in 0..n {
            let f = c.agf(a)?;
            sum += u64::from(ondisk::be32(f, 0x34))
                + u64::from(ondisk::be32(f, 0x30))
                + u64::from(ondisk::be32(f, 0x3C));
        }
        let fd = ondisk::be64(c.sbuf()?, 0x90);
        Ok((sum, fd))
    })
    .unwrap()
}

/// `getfattr -d -m -` of a path under a Linux mount: name → value (hex).
fn getfattr(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["--absolute-names", "-d", "-m", "-", "-e", "hex"])
        .arg(path)
        .output()
        .unwrap();
    let mut m = std::collections::BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = l.split_once('=') {
            let hex = v.trim_start_matches("0x");
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            m.insert(k.to_string(), bytes);
        }
    }
    m
}

fn xattrs(tag: &str, opts: &[&str], kernel: bool) {
    let tree = small_tree();
    let img = make_image(tag, 64 << 20, opts, &tree);
    let p = img.path();
    let label = b"system_u:object_r:etc_t:s0\0".to_vec();
    let big = pseudo_random(20_000, 3);
    let mut want: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    {
        let mut fs = rw(p);
        fs.set_xattr("/hello.txt", "security.selinux", &label)
            .unwrap();
        assert_eq!(
            fs.get_xattr("/hello.txt", "security.selinux").unwrap(),
            label
        );
        fs.set_xattr("/sub", "user.comment", b"a directory")
            .unwrap();
        fs.set_xattr("/hello.txt", "trusted.t", b"T").unwrap();
        fs.sync().unwrap();
    }
    repair_silent(p);
    want.insert("security.selinux".into(), label.clone());
    want.insert("trusted.t".into(), b"T".to_vec());
    let ino = db_ino(p, "/hello.txt");
    assert_eq!(db_inode(p, ino)["core.aformat"], "1 (local)");
    if kernel {
        let m = Mounted::new(p, "ro");
        assert_eq!(getfattr(&m.at("hello.txt")), want);
        assert_eq!(getfattr(&m.at("sub"))["user.comment"], b"a directory");
    }
    // Many attributes: a leaf block; one too big for it: a remote value.
    {
        let mut fs = rw(p);
        for i in 0..40 {
            let v = format!("value number {i} with some padding to take room");
            fs.set_xattr("/hello.txt", &format!("user.attr{i:02}"), v.as_bytes())
                .unwrap();
            want.insert(format!("user.attr{i:02}"), v.into_bytes());
        }
        fs.set_xattr("/hello.txt", "user.big", &big).unwrap();
        want.insert("user.big".into(), big.clone());
        let mut names = fs.list_xattrs("/hello.txt").unwrap();
        names.sort();
        assert_eq!(names, want.keys().cloned().collect::<Vec<_>>());
        assert_eq!(fs.get_xattr("/hello.txt", "user.big").unwrap(), big);
        assert_eq!(
            fs.get_xattr("/hello.txt", "user.nope").unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            fs.set_xattr("/hello.txt", "system.posix_acl_access", b"x")
                .unwrap_err()
                .kind,
            ErrorKind::Unsupported
        );
        // The file's contents replaced: its label stays.
        write_all(&mut fs, "/hello.txt", b"replaced\n");
        fs.sync().unwrap();
    }
    repair_silent(p);
    assert_eq!(db_inode(p, ino)["core.aformat"], "2 (extents)");
    {
        let mut fs = open(p);
        assert_eq!(
            fs.get_xattr("/hello.txt", "security.selinux").unwrap(),
            label
        );
        assert_eq!(fs.get_xattr("/hello.txt", "user.big").unwrap(), big);
        assert_eq!(read_all(&mut fs, "/hello.txt"), b"replaced\n");
    }
    if kernel {
        let m = Mounted::new(p, "ro");
        assert_eq!(getfattr(&m.at("hello.txt")), want);
    }
    // Back down to a few (shortform), then none (the fork goes).
    {
        let mut fs = rw(p);
        for i in 0..40 {
            fs.remove_xattr("/hello.txt", &format!("user.attr{i:02}"))
                .unwrap();
            want.remove(&format!("user.attr{i:02}"));
        }
        fs.remove_xattr("/hello.txt", "user.big").unwrap();
        want.remove("user.big");
        assert_eq!(
            fs.remove_xattr("/hello.txt", "user.big").unwrap_err().kind,
            ErrorKind::NotFound
        );
        fs.sync().unwrap();
    }
    repair_silent(p);
    assert_eq!(db_inode(p, ino)["core.aformat"], "1 (local)");
    if kernel {
        let m = Mounted::new(p, "ro");
        assert_eq!(getfattr(&m.at("hello.txt")), want);
    }
    {
        let mut fs = rw(p);
        fs.remove_xattr("/hello.txt", "security.selinux").unwrap();
        fs.remove_xattr("/hello.txt", "trusted.t").unwrap();
        fs.remove_xattr("/sub", "user.comment").unwrap();
        assert!(fs.list_xattrs("/hello.txt").unwrap().is_empty());
        fs.sync().unwrap();
    }
    repair_silent(p);
    assert_eq!(db_inode(p, ino)["core.forkoff"], "0");
}

#[test]
fn xattrs_v5() {
    xattrs("xfsw-xattr5", &[], true);
}

#[test]
fn xattrs_v4() {
    xattrs("xfsw-xattr4", &["-m", "crc=0"], false);
}

#[test]
fn xattrs_rmapbt() {
    xattrs("xfsw-xattrrmap", &["-m", "rmapbt=1"], true);
}

#[test]
fn ten_thousand_files_created_and_removed() {
    let tree = dir(vec![kid("many", dir(vec![])), kid("keep", file(b"k"))]);
    let img = make_image("xfsw-10k", 128 << 20, &[], &tree);
    let p = img.path();
    let before = open(p).statvfs().unwrap();
    let icount0: u64 = db_sb(p)["icount"].parse().unwrap();
    let n = 10_000;
    {
        let mut fs = rw(p);
        for i in 0..n {
            fs.write(
                &format!("/many/file-{i:05}"),
                0,
                format!("{i}\n").as_bytes(),
                true,
                0o644,
            )
            .unwrap();
        }
        let st = fs.statvfs().unwrap();
        assert_eq!(
            before.files_free - st.files_free,
            n as u64,
            "statvfs counts the new inodes"
        );
        assert!(st.blocks_free < before.blocks_free - n as u64);
        fs.sync().unwrap();
    }
    repair_silent(p);
    assert_eq!(db_ls(p, "/many").len(), n);
    assert!(kind_of(p, "/many").starts_with("node"));
    {
        let m = Mounted::new(p, "ro");
        assert_eq!(std::fs::read_dir(m.at("many")).unwrap().count(), n);
        assert_eq!(std::fs::read(m.at("many/file-04321")).unwrap(), b"4321\n");
    }
    {
        let mut fs = rw(p);
        for i in 0..n {
            fs.unlink(&format!("/many/file-{i:05}")).unwrap();
        }
        fs.sync().unwrap();
    }
    repair_silent(p);
    assert!(db_ls(p, "/many").is_empty());
    assert_eq!(kind_of(p, "/many"), "short");
    // Everything came back but the inode chunks, which stay allocated.
    let icount1: u64 = db_sb(p)["icount"].parse().unwrap();
    let after = open(p).statvfs().unwrap();
    let chunk_blocks = (icount1 - icount0) / 64 * 8;
    assert_eq!(before.blocks_free - after.blocks_free, chunk_blocks);
    assert_eq!(
        after.files - after.files_free,
        before.files - before.files_free
    );
}

/// xorshift64: random but repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random writes and truncates of a few files, checked against a model after every
/// step and, at the end, with xfs_repair and (v5) Linux.
fn random_writes(tag: &str, opts: &[&str], seed: u64, steps: usize) {
    let tree = small_tree();
    let img = make_image(tag, 64 << 20, opts, &tree);
    let p = img.path();
    let v5 = !opts.contains(&"crc=0");
    let mut model = model_of(&tree);
    let names = ["/r0", "/r1", "/sub/r2", "/big.bin"];
    let mut files: Vec<Vec<u8>> = names
        .iter()
        .map(|n| match model.get(*n) {
            Some(M::File(d)) => d.clone(),
            _ => Vec::new(),
        })
        .collect();
    let mut rng = Rng(seed);
    let mut fs = rw(p);
    for (n, d) in names.iter().zip(&files) {
        if d.is_empty() {
            fs.write(n, 0, &[], true, 0o644).unwrap();
        }
    }
    for step in 0..steps {
        let f = rng.below(names.len() as u64) as usize;
        let name = names[f];
        let cur = &mut files[f];
        match rng.below(10) {
            0..=6 => {
                let big = rng.below(4) == 0;
                let len = if big {
                    rng.below(600_000) + 1
                } else {
                    rng.below(9000) + 1
                } as usize;
                let max_off = (cur.len() as u64 + 200_000).min(8 << 20);
                let off = rng.below(max_off) as usize;
                let data = pseudo_random(len, rng.next());
                fs.write(name, off as u64, &data, false, 0o644)
                    .unwrap_or_else(|e| panic!("step {step}: write {name} {off}+{len}: {e:?}"));
                if cur.len() < off + len {
                    cur.resize(off + len, 0);
                }
                cur[off..off + len].copy_from_slice(&data);
            }
            7 | 8 => {
                let size = rng.below(cur.len() as u64 + 100_000) as usize;
                fs.truncate(name, size as u64)
                    .unwrap_or_else(|e| panic!("step {step}: truncate {name} {size}: {e:?}"));
                cur.resize(size, 0);
            }
            _ => {
                // Remount: the next steps start from what is on disk.
                fs.sync().unwrap();
                fs = rw(p);
            }
        }
        let got = read_all(&mut fs, name);
        assert!(
            got == *cur,
            "step {step}: {name} differs from the model (len {} vs {})",
            got.len(),
            cur.len()
        );
        let (a, b) = counters_agree(&mut fs);
        assert_eq!(a, b, "step {step}: free block counters");
    }
    fs.sync().unwrap();
    drop(fs);
    for (n, d) in names.iter().zip(&files) {
        model.insert(n.to_string(), M::File(d.clone()));
    }
    verify(p, &model, v5);
}

#[test]
fn random_writes_v5() {
    random_writes("xfsw-rand5", &[], 0x5EED_0001, 1000);
}

#[test]
fn random_writes_1k_rmap_reflink() {
    random_writes(
        "xfsw-rand1k",
        &["-b", "size=1024", "-m", "rmapbt=1,reflink=1"],
        0x5EED_0002,
        1000,
    );
}

#[test]
fn random_writes_v4() {
    random_writes("xfsw-rand4", &["-m", "crc=0"], 0x5EED_0003, 500);
}

// ---------------------------------------------------------------------------------
// Crash safety: a disk that stops taking writes part-way (a kill)

/// Step `i` of a mixed workload (mkdir, create, overwrite, extend, truncate, rename,
/// unlink, rmdir, symlinks, xattrs), applied to `fs` and, on success, to `model`.
fn workload_step(fs: &mut XfsFs, model: &mut Model, i: usize) -> FsResult<()> {
    let data = |n: usize, seed: u64| pseudo_random(n, seed);
    match i {
        0 => {
            fs.mkdir("/w", 0o755)?;
            model.insert("/w".into(), M::Dir);
        }
        1 => {
            let d = data(100, 1);
            fs.write("/w/a", 0, &d, true, 0o644)?;
            model.insert("/w/a".into(), M::File(d));
        }
        2 => {
            let d = data(200_000, 2);
            fs.write("/w/b", 0, &d, true, 0o644)?;
            model.insert("/w/b".into(), M::File(d));
        }
        3 => fs.set_xattr("/w/a", "security.selinux", b"system_u:object_r:etc_t:s0\0")?,
        4 => {
            fs.mkdir("/w/d", 0o700)?;
            model.insert("/w/d".into(), M::Dir);
        }
        5..=44 => {
            let k = i - 5;
            let p = format!("/w/d/file-number-{k:03}");
            let d = data(50 + k * 37, k as u64);
            fs.write(&p, 0, &d, true, 0o600)?;
            model.insert(p, M::File(d));
        }
        45 => {
            fs.rename("/w/a", "/w/d/a2")?;
            let v = model.remove("/w/a").unwrap();
            model.insert("/w/d/a2".into(), v);
        }
        46 => {
            fs.truncate("/w/b", 5000)?;
            if let Some(M::File(d)) = model.get_mut("/w/b") {
                d.truncate(5000);
            }
        }
        47 => {
            let d = data(70_000, 47);
            fs.write("/w/b", 1 << 20, &d, false, 0)?;
            if let Some(M::File(f)) = model.get_mut("/w/b") {
                f.resize(1 << 20, 0);
                f.extend_from_slice(&d);
            }
        }
        48 => {
            fs.symlink("d/a2", "/w/link")?;
            model.insert("/w/link".into(), M::Link("d/a2".into()));
        }
        49..=68 => {
            let k = (i - 49) * 2;
            let p = format!("/w/d/file-number-{k:03}");
            fs.unlink(&p)?;
            model.remove(&p);
        }
        69 => {
            fs.mkdir("/w/e", 0o755)?;
            model.insert("/w/e".into(), M::Dir);
        }
        70 => {
            fs.rename("/w/d", "/w/e/d")?;
            let moved: Vec<String> = model
                .keys()
                .filter(|k| k.starts_with("/w/d"))
                .cloned()
                .collect();
            for k in moved {
                let v = model.remove(&k).unwrap();
                model.insert(format!("/w/e{}", &k[2..]), v);
            }
        }
        71 => {
            let d = data(3000, 71);
            fs.write("/hello.txt", 2, &d, false, 0)?;
            if let Some(M::File(f)) = model.get_mut("/hello.txt") {
                if f.len() < 3002 {
                    f.resize(3002, 0);
                }
                f[2..3002].copy_from_slice(&d);
            }
        }
        72 => {
            fs.unlink("/big.bin")?;
            model.remove("/big.bin");
        }
        73 => {
            // (A refused rmdir writes nothing.)
            fs.rmdir("/sub").unwrap_err();
            fs.unlink("/sub/a")?;
            model.remove("/sub/a");
        }
        74 => {
            fs.unlink("/sub/b")?;
            model.remove("/sub/b");
        }
        75 => {
            fs.rmdir("/sub")?;
            model.remove("/sub");
        }
        _ => {}
    }
    Ok(())
}

/// Steps of the workload: each one transaction.
const WORKLOAD_STEPS: usize = 76;

/// The tree as skiff reads it (files, directories, symlinks).
fn tree_of(img: &str) -> Model {
    let mut fs = open(img);
    let mut out = Model::new();
    let mut todo = vec!["/".to_string()];
    while let Some(d) = todo.pop() {
        for e in fs.read_dir(&d).unwrap() {
            let p = if d == "/" {
                format!("/{}", e.name)
            } else {
                format!("{d}/{}", e.name)
            };
            match e.stat.file_type {
                FileType::Directory => {
                    out.insert(p.clone(), M::Dir);
                    todo.push(p);
                }
                FileType::Symlink => {
                    let t = fs.read_link(&p).unwrap();
                    out.insert(p, M::Link(t));
                }
                _ => {
                    let data = read_all(&mut fs, &p);
                    out.insert(p, M::File(data));
                }
            }
        }
    }
    out
}

/// Kills the workload at `points` random device writes; after each, the log is
/// replayed (by skiff or by Linux, in turn), `xfs_repair -n` must be silent and the tree
/// must be the model after exactly the steps that committed.
fn kill_points(tag: &str, opts: &[&str], seed: u64, points: usize) {
    let tree = small_tree();
    let base = make_image(tag, 64 << 20, opts, &tree);
    // The full run: how many writes, and the model after each step.
    let mut models = vec![model_of(&tree)];
    let total = {
        let img = TempImage::new(&format!("{tag}-full"), 0);
        std::fs::copy(base.path(), img.path()).unwrap();
        let (d, writes) = rw_disk(img.path(), None);
        let mut fs = XfsFs::open_with(d, true).unwrap();
        fs.set_clock(1_700_000_000);
        let mut m = models[0].clone();
        for i in 0..WORKLOAD_STEPS {
            workload_step(&mut fs, &mut m, i).unwrap_or_else(|e| panic!("step {i}: {e:?}"));
            models.push(m.clone());
        }
        fs.sync().unwrap();
        drop(fs);
        repair_silent(img.path());
        assert_eq!(tree_of(img.path()), m, "the full run");
        writes.get()
    };
    let mut rng = Rng(seed);
    for n in 0..points {
        let k = 1 + rng.below(total - 1);
        let img = TempImage::new(&format!("{tag}-kill"), 0);
        std::fs::copy(base.path(), img.path()).unwrap();
        let (d, _) = rw_disk(img.path(), Some(k));
        let mut ok = 0;
        {
            let mut fs = XfsFs::open_with(d, true).unwrap();
            fs.set_clock(1_700_000_000);
            let mut m = models[0].clone();
            for i in 0..WORKLOAD_STEPS {
                if workload_step(&mut fs, &mut m, i).is_err() {
                    break;
                }
                ok += 1;
            }
            let _ = fs.sync();
        }
        // A read-only look never panics: either the tree, or "mount read-write once".
        if let Err(e) = XfsFs::open(disk(img.path())) {
            assert!(
                e.message.contains("read-write once"),
                "kill at write {k}: {e:?}"
            );
        }
        if n % 2 == 0 {
            drop(rw(img.path()));
        } else {
            Mounted::new(img.path(), "").umount();
        }
        repair_silent(img.path());
        let got = tree_of(img.path());
        let committed = (ok..=(ok + 1).min(WORKLOAD_STEPS)).find(|&j| models[j] == got);
        assert!(
            committed.is_some(),
            "kill at write {k} of {total} (replayed by {}): the tree is not the model after {ok} or {} steps",
            if n % 2 == 0 { "skiff" } else { "Linux" },
            ok + 1
        );
    }
}

#[test]
fn killed_at_fifty_points_v5() {
    kill_points("xfsw-kill5", &[], 0xC0FF_EE01, 50);
}

#[test]
fn killed_at_fifty_points_rmapbt() {
    kill_points("xfsw-killrmap", &["-m", "rmapbt=1"], 0xC0FF_EE02, 50);
}

// ---------------------------------------------------------------------------------
// Bad input: damage, full filesystems, limits, refusals

fn file_hash(path: &str) -> u64 {
    let d = std::fs::read(path).unwrap();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in d {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[test]
fn corrupt_free_space_btree_fails_cleanly() {
    let img = v5_image("xfsw-badbno", &[]);
    let p = img.path();
    // A bad CRC in AG 0's by-size btree root; a bad record (valid CRC) in its by-block one.
    let cntroot = agf_field(p, 0, "cntroot");
    let at = cntroot * 4096 + 200;
    let mut b = [0u8; 1];
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
    drop(f);
    let before = file_hash(p);
    {
        let mut fs = rw(p);
        let e = fs
            .write("/new", 0, &[1u8; 10_000], true, 0o644)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e:?}");
        assert!(
            e.message.contains("free space (cnt) btree") && e.message.contains("CRC"),
            "{e:?}"
        );
        // The failed change left nothing behind, in memory or on disk.
        assert_eq!(
            fs.stat("/new", false).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(read_all(&mut fs, "/hello.txt"), b"hello, xfs\n");
        fs.sync().unwrap();
    }
    assert_eq!(file_hash(p), before, "nothing was written");
    // A record out of range, with a good CRC.
    let img = v5_image("xfsw-badbno2", &[]);
    let p = img.path();
    db_write(
        p,
        &["agf 0", "addr bnoroot", "write recs[1].blockcount 60000"],
    );
    let before = file_hash(p);
    {
        let mut fs = rw(p);
        let e = fs
            .write("/new", 0, &[1u8; 10_000], true, 0o644)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e:?}");
        fs.sync().unwrap();
    }
    assert_eq!(file_hash(p), before, "nothing was written");
}

#[test]
fn a_full_filesystem_is_nospace_and_consistent() {
    let tree = dir(vec![kid("a", file(b"a"))]);
    let img = make_image("xfsw-full", 32 << 20, &["-d", "agcount=2"], &tree);
    let p = img.path();
    let chunk = pseudo_random(1 << 20, 8);
    let mut written = 0u64;
    {
        let mut fs = rw(p);
        let e = loop {
            match fs.write("/fill", written, &chunk, false, 0o644) {
                Ok(_) => written += chunk.len() as u64,
                Err(e) => break e,
            }
            assert!(written < 64 << 20);
        };
        assert_eq!(e.kind, ErrorKind::NoSpace, "{e:?}");
        // The failed chunk changed nothing; a small file still fits, or fails cleanly.
        assert_eq!(fs.stat("/fill", false).unwrap().size, written);
        let mut n = 0;
        loop {
            match fs.write(&format!("/small{n}"), 0, b"x", true, 0o644) {
                Ok(_) => n += 1,
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::NoSpace, "{e:?}");
                    break;
                }
            }
            assert!(n < 100_000);
        }
        let st = fs.statvfs().unwrap();
        assert!(st.blocks_free < 64, "{st:?}");
        fs.sync().unwrap();
    }
    repair_silent(p);
    let mut fs = open(p);
    assert_eq!(fs.stat("/fill", false).unwrap().size, written);
    assert!(read_all(&mut fs, "/fill")[..chunk.len()] == chunk[..]);
    drop(fs);
    // Freed, the space is back.
    {
        let mut fs = rw(p);
        fs.unlink("/fill").unwrap();
        let st = fs.statvfs().unwrap();
        assert!(st.blocks_free * 4096 >= written, "{st:?}");
        fs.sync().unwrap();
    }
    repair_silent(p);
}

#[test]
fn a_file_larger_than_an_ag_spans_ags() {
    let tree = dir(vec![kid("a", file(b"a"))]);
    let img = make_image("xfsw-bigag", 96 << 20, &["-d", "agcount=4"], &tree);
    let p = img.path();
    let data = pseudo_random(40 << 20, 9);
    {
        let mut fs = rw(p);
        write_all(&mut fs, "/huge", &data);
        fs.sync().unwrap();
    }
    let mut model = model_of(&tree);
    model.insert("/huge".into(), M::File(data));
    verify(p, &model, true);
    let bmap = db(p, &[&format!("inode {}", db_ino(p, "/huge")), "bmap"]);
    let ags: std::collections::BTreeSet<&str> = bmap
        .lines()
        .filter_map(|l| l.split('(').nth(1)?.split('/').next())
        .collect();
    assert!(ags.len() >= 2, "{bmap}");
}

#[test]
fn the_inode_limit_is_nospace() {
    let tree = dir(vec![kid("d", dir(vec![]))]);
    let img = make_image("xfsw-imax", 32 << 20, &["-i", "maxpct=1"], &tree);
    let p = img.path();
    let mut n = 0;
    {
        let mut fs = rw(p);
        let e = loop {
            match fs.write(&format!("/d/f{n}"), 0, b"", true, 0o644) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 100_000);
        };
        assert_eq!(e.kind, ErrorKind::NoSpace, "{e:?}");
        assert!(e.message.contains("imaxpct"), "{e:?}");
        fs.sync().unwrap();
    }
    repair_silent(p);
    let sb = db_sb(p);
    let icount: u64 = sb["icount"].parse().unwrap();
    assert_eq!(icount - sb["ifree"].parse::<u64>().unwrap(), n as u64 + 4);
    assert_eq!(db_ls(p, "/d").len(), n);
}

#[test]
fn a_dirty_linux_log_is_refused_read_write() {
    let img = TempImage::new("xfsw-dirty", 64 << 20);
    tool("mkfs.xfs", &["-q", "-f", img.path()]);
    let m = Mounted::new(img.path(), "");
    std::fs::create_dir(m.at("after")).unwrap();
    std::fs::write(m.at("after/file"), b"after").unwrap();
    let f = std::fs::File::open(m.at("after/file")).unwrap();
    f.sync_all().unwrap();
    drop(f);
    tool("xfs_io", &["-x", "-c", "shutdown -f", m.dir.path()]);
    m.umount();
    assert!(logprint_state(img.path()).contains("<DIRTY>"));
    let before = file_hash(img.path());
    let (d, writes) = rw_disk(img.path(), None);
    let e = XfsFs::open_with(d, true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    assert!(e.message.starts_with(DIRTY_LOG_MESSAGE), "{e:?}");
    assert_eq!(writes.get(), 0);
    assert_eq!(file_hash(img.path()), before);
}

#[test]
fn quota_accounting_is_refused_read_write() {
    let img = v5_image("xfsw-quota", &[]);
    let p = img.path();
    // As a quota mount leaves it (this kernel has no XFS quota support to do it).
    db_write(p, &["sb 0", "write qflags 0x7"]);
    assert_ne!(db_sb(p)["qflags"], "0");
    let (d, _) = rw_disk(p, None);
    let e = XfsFs::open_with(d, true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}");
    assert!(e.message.contains("quota"), "{e:?}");
    // Read-only is fine.
    assert_eq!(read_all(&mut open(p), "/hello.txt"), b"hello, xfs\n");
}

#[test]
fn statvfs_follows_changes() {
    let img = v5_image("xfsw-statvfs", &[]);
    let p = img.path();
    let mut fs = rw(p);
    let a = fs.statvfs().unwrap();
    write_all(&mut fs, "/three-megs", &pseudo_random(3 << 20, 1));
    let b = fs.statvfs().unwrap();
    assert_eq!(a.blocks_free - b.blocks_free, 768);
    assert_eq!(a.files_free - b.files_free, 1);
    fs.unlink("/three-megs").unwrap();
    let c = fs.statvfs().unwrap();
    assert_eq!((c.blocks_free, c.files_free), (a.blocks_free, a.files_free));
    fs.sync().unwrap();
    drop(fs);
    // As Linux reports it.
    let m = Mounted::new(p, "ro");
    let out = Command::new("stat")
        .args(["-f", "-c", "%f %a %d"])
        .arg(m.dir.path())
        .output()
        .unwrap();
    let v: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(v[0], c.blocks_free, "free blocks as Linux counts them");
}

#[test]
fn the_dispatcher_mounts_read_write() {
    use wire::{Reply, Request};
    let img = v5_image("xfsw-rpc", &[]);
    let p = img.path();
    let (d, _) = rw_disk(p, None);
    let mut a = crate::rpc::Appliance::new();
    a.set_disk(0, d);
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
    assert_eq!((m[0].fstype.as_str(), m[0].readonly), ("xfs", false));
    a.handle(Request::Mkdir {
        path: "/etc/ssh".into(),
        parents: true,
        mode: 0o755,
    })
    .unwrap();
    a.handle(Request::WriteFile {
        path: "/etc/ssh/authorized_keys".into(),
        offset: 0,
        data: wire::Bytes(b"ssh-ed25519 AAAA\n".to_vec()),
        truncate: true,
        mode: 0o600,
    })
    .unwrap();
    a.handle(Request::Remove {
        path: "/sub".into(),
        recursive: true,
    })
    .unwrap();
    a.handle(Request::Umount {
        mountpoint: "/".into(),
    })
    .unwrap();
    drop(a);
    repair_silent(p);
    assert!(logprint_state(p).ends_with("<CLEAN>"));
    let mut fs = open(p);
    assert_eq!(
        read_all(&mut fs, "/etc/ssh/authorized_keys"),
        b"ssh-ed25519 AAAA\n"
    );
    assert_eq!(
        fs.stat("/etc/ssh/authorized_keys", false).unwrap().mode,
        0o600
    );
    assert_eq!(
        fs.stat("/sub", false).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

/// v4 with 512-byte blocks and 256-byte inodes (no inode alignment: chunks start at
/// any block).
#[test]
fn v4_with_512_byte_blocks() {
    let tree = dir(vec![
        kid("hello.txt", file(b"hello\n")),
        kid("empty", file(b"")),
        kid(
            "dir",
            dir(vec![
                kid("medium.bin", file(&pseudo_random(20_000, 1))),
                kid("sub", dir(vec![kid("small", file(b"small"))])),
            ]),
        ),
    ]);
    let img = make_image(
        "xfsw-v4-512",
        32 << 20,
        &["-m", "crc=0", "-b", "size=512", "-d", "agcount=2"],
        &tree,
    );
    let p = img.path();
    let mut model = model_of(&tree);
    {
        let mut fs = rw(p);
        fs.mkdir("/new", 0o755).unwrap();
        let d = pseudo_random(9000, 3);
        fs.write("/new/file", 0, &d, true, 0o644).unwrap();
        model.insert("/new".into(), M::Dir);
        model.insert("/new/file".into(), M::File(d));
        let m = pseudo_random(70_000, 4);
        fs.write("/dir/medium.bin", 5000, &m, false, 0).unwrap();
        if let Some(M::File(f)) = model.get_mut("/dir/medium.bin") {
            f.resize(75_000, 0);
            f[5000..].copy_from_slice(&m);
        }
        fs.rename("/dir/sub", "/new/sub").unwrap();
        model.remove("/dir/sub");
        let v = model.remove("/dir/sub/small").unwrap();
        model.insert("/new/sub".into(), M::Dir);
        model.insert("/new/sub/small".into(), v);
        fs.symlink(&"x/".repeat(200), "/lnk").unwrap();
        model.insert("/lnk".into(), M::Link("x/".repeat(200)));
        fs.set_xattr("/hello.txt", "security.selinux", b"label")
            .unwrap();
        fs.unlink("/empty").unwrap();
        model.remove("/empty");
        for i in 0..200 {
            let n = format!("/new/f{i}");
            fs.write(&n, 0, b"z", true, 0o644).unwrap();
            model.insert(n, M::File(b"z".to_vec()));
        }
        fs.sync().unwrap();
    }
    verify(p, &model, false);
    assert_eq!(
        open(p).get_xattr("/hello.txt", "security.selinux").unwrap(),
        b"label"
    );
}

/// Files sharing blocks (cp --reflink on a Linux mount): writes copy the shared blocks,
/// truncates and unlinks drop references, the reference count btree follows.
fn reflinked(tag: &str, opts: &[&str]) {
    let img = TempImage::new(tag, 128 << 20);
    let p = img.path();
    let mut args = vec!["-q", "-f"];
    args.extend_from_slice(opts);
    args.push(p);
    tool("mkfs.xfs", &args);
    let a = pseudo_random(1 << 20, 77);
    let c = pseudo_random(300_000, 78);
    {
        let m = Mounted::new(p, "");
        std::fs::write(m.at("a"), &a).unwrap();
        std::fs::write(m.at("c"), &c).unwrap();
        for (src, dst) in [("a", "b"), ("a", "b2"), ("c", "d")] {
            tool(
                "cp",
                &[
                    "--reflink=always",
                    m.at(src).to_str().unwrap(),
                    m.at(dst).to_str().unwrap(),
                ],
            );
        }
        m.umount();
    }
    repair_silent(p);
    assert!(agf_field(p, 0, "refcntlevel") >= 1);
    let refc_recs = |p: &str| -> usize {
        db(p, &["agf 0", "addr refcntroot", "print numrecs"])
            .trim()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(refc_recs(p) >= 1);
    let mut model = Model::new();
    let mut b = a.clone();
    let mut d = c.clone();
    {
        let mut fs = rw(p);
        // Inside b: a block-aligned run and partial blocks at both ends.
        let patch = pseudo_random(20_000, 5);
        fs.write("/b", 10_000, &patch, false, 0).unwrap();
        b[10_000..30_000].copy_from_slice(&patch);
        // Grow d past its shared end; cut it inside a shared block.
        fs.truncate("/d", 123_457).unwrap();
        d.truncate(123_457);
        fs.write("/d", 200_000, b"tail", false, 0).unwrap();
        d.resize(200_000, 0);
        d.extend_from_slice(b"tail");
        // c goes: d keeps the blocks, now used once.
        fs.unlink("/c").unwrap();
        fs.sync().unwrap();
    }
    model.insert("/a".into(), M::File(a.clone()));
    model.insert("/b".into(), M::File(b.clone()));
    model.insert("/b2".into(), M::File(a.clone()));
    model.insert("/d".into(), M::File(d.clone()));
    verify(p, &model, true);
    // Drop every copy of a: only b's own blocks (the copied run) remain used by b.
    {
        let mut fs = rw(p);
        fs.unlink("/a").unwrap();
        fs.truncate("/b2", 4096).unwrap();
        fs.unlink("/b2").unwrap();
        fs.sync().unwrap();
    }
    model.remove("/a");
    model.remove("/b2");
    verify(p, &model, true);
    assert_eq!(refc_recs(p), 0, "nothing is shared any more");
    {
        let mut fs = rw(p);
        fs.unlink("/b").unwrap();
        fs.unlink("/d").unwrap();
        fs.sync().unwrap();
    }
    verify(p, &Model::new(), true);
}

#[test]
fn reflinked_files_v5() {
    reflinked("xfsw-reflink", &[]);
}

#[test]
fn reflinked_files_rmapbt() {
    reflinked("xfsw-reflink-rmap", &["-m", "rmapbt=1"]);
}

/// Rough CPU figures (run with `--release -- --ignored --nocapture`): 3000 small files
/// in one directory and a 64 MiB upload, on an in-memory disk.
#[test]
#[ignore]
fn bench_cpu() {
    let img = make_image(
        "xfsw-bench",
        256 << 20,
        &[],
        &dir(vec![kid("d", dir(vec![]))]),
    );
    let bytes = std::fs::read(img.path()).unwrap();
    let dev = shared(crate::block::MemDisk::new(bytes, false));
    let mut fs = XfsFs::open_with(dev, true).unwrap();
    let t = std::time::Instant::now();
    for i in 0..3000 {
        fs.write(&format!("/d/file-{i}"), 0, &[7u8; 1000], true, 0o644)
            .unwrap();
    }
    eprintln!("3000 small files: {:?}", t.elapsed());
    let chunk = vec![5u8; 1 << 20];
    let t = std::time::Instant::now();
    for i in 0..64u64 {
        fs.write("/upload", i << 20, &chunk, false, 0o644).unwrap();
    }
    fs.sync().unwrap();
    eprintln!("64 MiB upload: {:?}", t.elapsed());
}

/// ASCII case-insensitive names (`-n version=ci`): hashes of folded names, lookups
/// that ignore case, xfs_repair checking the hashes.
#[test]
fn ascii_ci_names() {
    let tree = dir(vec![kid("d", dir(vec![]))]);
    let img = make_image("xfsw-ci", 64 << 20, &["-n", "version=ci"], &tree);
    let p = img.path();
    {
        let mut fs = rw(p);
        for i in 0..600 {
            fs.write(&format!("/d/MixedCase-{i}"), 0, b"x", true, 0o644)
                .unwrap();
        }
        // The same name in another case is the same entry.
        assert_eq!(
            fs.mkdir("/d/mixedcase-7", 0o755).unwrap_err().kind,
            ErrorKind::AlreadyExists
        );
        fs.write("/d/MIXEDCASE-8", 0, b"yy", false, 0).unwrap();
        assert_eq!(read_all(&mut fs, "/d/mixedcase-8"), b"yy");
        fs.unlink("/d/MIXEDCASE-9").unwrap();
        fs.sync().unwrap();
    }
    repair_silent(p);
    let names = db_ls(p, "/d");
    assert_eq!(names.len(), 599);
    assert!(names.iter().any(|(n, _)| n == "MixedCase-8"));
    assert!(!names.iter().any(|(n, _)| n == "MixedCase-9"));
}

/// With free space in 4-block pieces only, new inodes come in sparse chunks (part of a
/// 64-inode chunk, the rest recorded as holes).
#[test]
fn sparse_inode_chunks() {
    let tree = dir(vec![kid("d", dir(vec![]))]);
    let img = make_image("xfsw-sparse", 64 << 20, &["-d", "agcount=2"], &tree);
    let p = img.path();
    let mut files = Vec::new();
    {
        let mut fs = rw(p);
        let mut i = 0;
        loop {
            let path = format!("/d/f{i}");
            if fs.write(&path, 0, &[1u8; 4096], true, 0o644).is_err() {
                break;
            }
            files.push(path);
            i += 1;
            assert!(i < 100_000);
        }
        // Free every block at 4..8 of each aligned 8-block group.
        let mut gone = 0;
        for path in &files {
            let ino = fs.resolve(path, false).unwrap();
            let w = fs.extents(&ino, 0, 1).unwrap();
            let (_, agbno) = fs.sb.split_fsb(w.exts[0].block);
            if agbno % 8 >= 4 {
                fs.unlink(path).unwrap();
                gone += 1;
            }
        }
        assert!(gone > 1000, "{gone}");

        // Use up the free inodes, then some: new chunks can only be sparse.
        let ifree = fs.peek(|c| Ok(ondisk::be64(c.sbuf()?, 0x88))).unwrap();
        let want = ifree as usize + 300;
        for k in 0..want {
            fs.write(&format!("/d/e{k}"), 0, b"", true, 0o644)
                .unwrap_or_else(|e| panic!("{k}: {e:?}"));
        }
        fs.sync().unwrap();
    }
    repair_silent(p);
    let recs = db(p, &["agi 0", "addr root", "print recs"])
        + &db(p, &["agi 1", "addr root", "print recs"]);
    let sparse = recs
        .split(']')
        .filter_map(|r| r.split('[').nth(1))
        .filter_map(|r| {
            let h = r.split(',').nth(1)?.trim();
            match h.strip_prefix("0x") {
                Some(x) => u64::from_str_radix(x, 16).ok(),
                None => h.parse::<u64>().ok(),
            }
        })
        .filter(|&h| h != 0)
        .count();
    let odd: Vec<&str> = recs.lines().filter(|l| !l.contains(",0,64,")).collect();
    assert!(sparse > 0, "no sparse chunk: {odd:?}");
    // Freed and allocated again within the sparse chunks.
    {
        let mut fs = rw(p);
        for k in (0..200).step_by(3) {
            fs.unlink(&format!("/d/e{k}")).unwrap();
        }
        for k in 0..100 {
            fs.write(&format!("/d/again{k}"), 0, b"", true, 0o644)
                .unwrap();
        }
        fs.sync().unwrap();
    }
    repair_silent(p);
}
