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
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
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
        "xfs_repair -n {img}:\n{text}"
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
        kid("sub", dir(vec![kid("a", file(b"aaa")), kid("b", file(b"bbb"))])),
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
        fs.set_times("/hello.txt", 1_600_000_000, 1_600_000_100).unwrap();
        let st = fs.stat("/hello.txt", false).unwrap();
        assert_eq!((st.mode, st.uid, st.gid), (0o600, 1000, 1001));
        assert_eq!((st.atime, st.mtime, st.ctime), (1_600_000_000, 1_600_000_100, 1_700_000_000));
        fs.sync().unwrap();
    }
    repair_silent(p);
    let ino = db_ino(p, "/hello.txt");
    let f = db_inode(p, ino);
    assert_eq!(f["core.mode"], "0100600");
    assert_eq!(f["core.uid"], "1000");
    assert_eq!(f["core.gid"], "1001");
    assert_eq!(db_time(&f["core.mtime.sec"]), 1_600_000_100);
    assert!(logprint_state(p).ends_with("state: <CLEAN>"), "the log is clean after sync");
    // The kernel sees it too.
    let m = Mounted::new(p, "ro");
    let md = std::fs::metadata(m.at("hello.txt")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o600, 1000, 1001));
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
    assert!(!logprint_state(p).contains("CLEAN"), "{}", logprint_state(p));
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
                let p = if path == "/" { format!("/{k}") } else { format!("{path}/{k}") };
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
    let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
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
    dirs.extend(model.iter().filter(|(_, v)| **v == M::Dir).map(|(k, _)| k.clone()));
    for d in &dirs {
        let mut want = children(model, d);
        want.sort_unstable();
        let mut got: Vec<String> = fs.read_dir(d).unwrap().into_iter().map(|e| e.name).collect();
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
                M::File(data) => assert!(std::fs::read(&at).unwrap() == *data, "{p}: Linux contents"),
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
        assert!(k.starts_with(form), "{tag}: {count} entries: {k}, want {form}");
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
        assert!(k.starts_with(form), "{tag}: {count} entries: {k}, want {form}");
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
    assert_eq!(sb["icount"].parse::<u64>().unwrap() - sb["ifree"].parse::<u64>().unwrap(), 4);
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
