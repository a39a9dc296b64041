//! Host tests against images made by the real tools: `mkntfs`, then files written through
//! an `ntfs-3g` FUSE mount of the image file (compression, sparse files, symlinks,
//! reparse points through `setfattr`, hard links, a fragmented file, Unicode names).
//! The oracle is the same image mounted again by ntfs-3g (stat, readlink, listings,
//! contents), `ntfsls`, `ntfscat` and blkid.

use super::*;
use crate::block::{MemDisk, shared};
use crate::fs::vfs::{join, normalize, split_parent};
use crate::part::testutil::{TempDir, TempImage, blkid, run};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

/// An ntfs-3g mount of an image file, unmounted on drop (also when a test panics).
struct Fuse {
    dir: TempDir,
}

impl Fuse {
    /// `ro`: the oracle mount must not update access times while it is read.
    fn mount(img: &str, ro: bool) -> Fuse {
        let dir = TempDir::new("ntfs-mnt");
        let opts = if ro { "ro" } else { "rw" };
        run("ntfs-3g", &["-o", opts, img, dir.path()], None);
        Fuse { dir }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel.trim_start_matches('/'))
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("umount")
                .arg(&self.dir.0)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir.0).output();
    }
}

fn data(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0;
    while v.len() < len {
        v.extend(format!("line {i}: the quick brown fox jumps over the lazy dog\n").bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn setfattr(name: &str, value: &[u8], path: &Path) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    run(
        "setfattr",
        &[
            "-n",
            name,
            "-v",
            &format!("0x{hex}"),
            path.to_str().unwrap(),
        ],
        None,
    );
}

/// A symlink (tag 0xA000000C) or junction (0xA0000003) reparse buffer.
fn reparse(junction: bool, sub: &str, print: &str, relative: bool) -> Vec<u8> {
    let enc = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let (mut s, mut p) = (enc(sub), enc(print));
    let mut d = Vec::new();
    if junction {
        let (sl, pl) = (s.len() as u16, p.len() as u16);
        s.extend([0, 0]);
        p.extend([0, 0]);
        for v in [0, sl, sl + 2, pl] {
            d.extend(v.to_le_bytes());
        }
    } else {
        for v in [0, s.len() as u16, s.len() as u16, p.len() as u16] {
            d.extend(v.to_le_bytes());
        }
        d.extend(u32::from(relative).to_le_bytes());
    }
    d.extend(s);
    d.extend(p);
    let tag: u32 = if junction { 0xA000_0003 } else { 0xA000_000C };
    let mut out = tag.to_le_bytes().to_vec();
    out.extend((d.len() as u16).to_le_bytes());
    out.extend([0, 0]);
    out.extend(d);
    out
}

/// What ntfs-3g shows for one path.
#[derive(Debug, Clone)]
struct Meta {
    ft: FileType,
    size: u64,
    ino: u64,
    nlink: u64,
    mode: u32,
    mtime: i64,
    atime: i64,
    ctime: i64,
    target: Option<String>,
    children: Option<Vec<String>>,
    content: Option<Vec<u8>>,
}

struct Built {
    /// The image file (kept for the tools used as oracles).
    img: TempImage,
    bytes: Vec<u8>,
    /// Path (inside the volume) → what ntfs-3g showed, after a remount.
    oracle: BTreeMap<String, Meta>,
    /// Statvfs from ntfs-3g: (block size, blocks, free blocks).
    df: (u64, u64, u64),
    /// Absolute path of the oracle mount (ntfs-3g's junction targets start with it).
    mnt: String,
}

const NAMES: [&str; 3] = ["Ünïcödé ファイル.txt", "emoji 😀.txt", "Ωmega"];

fn populate(m: &Fuse) {
    let w = |p: &str, d: &[u8]| std::fs::write(m.p(p), d).unwrap();
    std::fs::create_dir_all(m.p("Windows/System32/config")).unwrap();
    w("hello.txt", b"hello ntfs\n");
    w("Windows/System32/config/SOFTWARE", &data(3, 5000));
    w("big.bin", &data(1, (3 << 20) + 123));
    // Sparse: holes read as zeros.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(m.p("sparse.bin")).unwrap();
        f.set_len(10 << 20).unwrap();
        f.write_all(b"start").unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(&data(4, 10_000)).unwrap();
        f.seek(SeekFrom::Start((10 << 20) - 4)).unwrap();
        f.write_all(b"end!").unwrap();
    }
    // Compressed directory: files written into it are LZNT1-compressed.
    std::fs::create_dir(m.p("comp")).unwrap();
    setfattr(
        "system.ntfs_attrib_be",
        &0x0000_0810u32.to_be_bytes(),
        &m.p("comp"),
    );
    w("comp/text.txt", &text(300_000));
    w("comp/random.bin", &data(5, 200_000));
    let mut mixed = Vec::new();
    for i in 0..6 {
        mixed.extend(if i % 2 == 0 {
            data(6 + i, 70_000)
        } else {
            text(70_000)
        });
    }
    w("comp/mixed.bin", &mixed);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(m.p("comp/sparse.bin")).unwrap();
        f.set_len(1 << 20).unwrap();
        f.seek(SeekFrom::Start(300_000)).unwrap();
        f.write_all(&text(100_000)).unwrap();
    }
    // Unicode names.
    w(NAMES[0], b"unicode\n");
    w(NAMES[1], b"surrogate pair\n");
    std::fs::create_dir(m.p(NAMES[2])).unwrap();
    w(&format!("{}/inner", NAMES[2]), b"inner\n");
    w("empty", b"");
    // A long name with a DOS 8.3 alias (a second, DOS-only index entry).
    w("A Long File Name.txt", b"long\n");
    setfattr(
        "system.ntfs_dos_name",
        b"ALONGF~1.TXT",
        &m.p("A Long File Name.txt"),
    );
    // Symlinks: ntfs-3g makes Interix ones; reparse points through setfattr.
    std::os::unix::fs::symlink("Windows/System32", m.p("rel")).unwrap();
    std::os::unix::fs::symlink("/hello.txt", m.p("abs_interix")).unwrap();
    let rp = |p: &str, dir: bool, buf: Vec<u8>| {
        if dir {
            std::fs::create_dir(m.p(p)).unwrap();
        } else {
            std::fs::write(m.p(p), b"").unwrap();
        }
        setfattr("system.ntfs_reparse_data", &buf, &m.p(p));
    };
    rp(
        "junc",
        true,
        reparse(
            true,
            r"\??\C:\Windows\System32",
            r"C:\Windows\System32",
            false,
        ),
    );
    rp(
        "Windows/junc2",
        true,
        reparse(
            true,
            r"\??\C:\Windows\System32\config",
            r"C:\Windows\System32\config",
            false,
        ),
    );
    rp(
        "Windows/relsym",
        false,
        reparse(false, r"..\comp\text.txt", r"..\comp\text.txt", true),
    );
    // Hard links: enough names to push the record into an attribute list.
    std::fs::create_dir(m.p("links")).unwrap();
    w("links/target", b"linked\n");
    for i in 0..30 {
        std::fs::hard_link(
            m.p("links/target"),
            m.p(&format!("links/hard_link_number_{i:02}")),
        )
        .unwrap();
    }
    // A fragmented file (its run list spills into an extension record) and a directory
    // large enough for a multi-level index.
    std::fs::create_dir(m.p("pad")).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.p("frag.bin")).unwrap();
        for i in 0..400u32 {
            f.write_all(&data(100 + i, 4096)).unwrap();
            f.sync_all().unwrap();
            std::fs::write(m.p(&format!("pad/p{i:04}")), data(i, 5000)).unwrap();
        }
    }
}

fn file_type(ft: std::fs::FileType) -> FileType {
    if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_dir() {
        FileType::Directory
    } else {
        FileType::Regular
    }
}

fn collect(m: &Fuse, rel: &str, out: &mut BTreeMap<String, Meta>) {
    let p = m.p(rel);
    let md = std::fs::symlink_metadata(&p).unwrap();
    let ft = file_type(md.file_type());
    let mut meta = Meta {
        ft,
        size: md.len(),
        ino: md.ino(),
        nlink: md.nlink(),
        mode: md.mode() & 0o7777,
        mtime: md.mtime(),
        atime: md.atime(),
        ctime: md.ctime(),
        target: None,
        children: None,
        content: None,
    };
    match ft {
        FileType::Symlink => {
            meta.target = Some(
                std::fs::read_link(&p)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
            )
        }
        FileType::Directory => {
            let mut names: Vec<String> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for n in &names {
                collect(m, &join(rel, n), out);
            }
            meta.children = Some(names);
        }
        _ => meta.content = Some(std::fs::read(&p).unwrap()),
    }
    out.insert(rel.to_string(), meta);
}

fn build() -> Built {
    let img = TempImage::new("ntfs", 48 << 20);
    run(
        "mkntfs",
        &["-F", "-Q", "-q", "-L", "Skiff NTFS", img.path()],
        None,
    );
    {
        let m = Fuse::mount(img.path(), false);
        populate(&m);
    }
    let m = Fuse::mount(img.path(), true);
    let mut oracle = BTreeMap::new();
    collect(&m, "/", &mut oracle);
    let df = run("stat", &["-f", "-c", "%S %b %f", m.dir.path()], None);
    let v: Vec<u64> = df.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let mnt = m.dir.path().to_string();
    drop(m);
    let bytes = std::fs::read(&img.0).unwrap();
    Built {
        img,
        bytes,
        oracle,
        df: (v[0], v[1], v[2]),
        mnt,
    }
}

static MAIN: LazyLock<Built> = LazyLock::new(build);

fn open(bytes: &[u8]) -> FsResult<NtfsFs> {
    NtfsFs::open(shared(MemDisk::new(bytes.to_vec(), true)))
}

fn read_all(fs: &mut NtfsFs, path: &str) -> FsResult<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let d = fs.read(path, out.len() as u64, 256 * 1024 + 17)?;
        if d.is_empty() {
            return Ok(out);
        }
        out.extend(d);
    }
}

#[test]
fn matches_ntfs3g_everywhere() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    assert!(b.oracle.len() > 450, "{} paths", b.oracle.len());
    for (path, want) in &b.oracle {
        let st = fs
            .stat(path, false)
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert_eq!(st.file_type, want.ft, "{path}");
        assert_eq!(u64::from(st.nlink), want.nlink, "{path}: nlink");
        assert_eq!(st.mode, want.mode, "{path}: mode");
        assert_eq!((st.uid, st.gid), (0, 0), "{path}");
        assert_eq!(
            (st.mtime, st.atime, st.ctime),
            (want.mtime, want.atime, want.ctime),
            "{path}: times"
        );
        // ntfs-3g's root inode is FUSE's 1; everywhere else the MFT record number.
        if path != "/" {
            assert_eq!(st.ino, want.ino, "{path}: ino");
        }
        match want.ft {
            FileType::Directory => {
                assert_eq!(st.size, want.size, "{path}: size");
                let mut names: Vec<String> = fs
                    .read_dir(path)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.name)
                    .collect();
                names.sort();
                assert_eq!(Some(&names), want.children.as_ref(), "{path}: listing");
            }
            FileType::Regular => {
                assert_eq!(st.size, want.size, "{path}: size");
                let got = read_all(&mut fs, path).unwrap();
                assert!(
                    Some(&got) == want.content.as_ref(),
                    "{path}: contents differ"
                );
            }
            _ => {
                let t = fs.read_link(path).unwrap();
                let theirs = want.target.as_deref().unwrap();
                match theirs.strip_prefix(&b.mnt) {
                    // ntfs-3g shows junctions as absolute paths under its mountpoint; ours
                    // are relative to the link and must land on the same place.
                    Some(inside) => {
                        let (dir, _) = split_parent(path).unwrap();
                        let ours = normalize(&join(dir, &t)).unwrap();
                        assert_eq!(ours, inside, "{path}: {t}");
                        assert!(!t.starts_with('/'), "{path}: {t}");
                    }
                    None => {
                        assert_eq!(t, theirs, "{path}");
                        assert_eq!(st.size, want.size, "{path}: size");
                    }
                }
                assert_eq!(st.size, t.len() as u64, "{path}");
            }
        }
    }
    // The structures the image was built to contain are really there.
    let frag = fs.walk("/frag.bin", false).unwrap().0;
    assert!(
        frag.attr(AT_ATTRIBUTE_LIST, &[]).is_some(),
        "frag.bin has no attribute list"
    );
    let links = fs.walk("/links/target", false).unwrap().0;
    assert!(links.attr(AT_ATTRIBUTE_LIST, &[]).is_some());
    let text = fs.walk("/comp/text.txt", false).unwrap().0;
    assert!(matches!(
        text.stream(AT_DATA, &[]).unwrap(),
        Some(Stream::NonResident(NonRes { cu: 4, .. }))
    ));
    let pad = fs.walk("/pad", false).unwrap().0;
    assert!(pad.attr(AT_INDEX_ALLOCATION, &I30).is_some());
}

#[test]
fn contents_are_what_was_written() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    assert_eq!(read_all(&mut fs, "/hello.txt").unwrap(), b"hello ntfs\n");
    assert_eq!(
        read_all(&mut fs, "/big.bin").unwrap(),
        data(1, (3 << 20) + 123)
    );
    assert_eq!(read_all(&mut fs, "/comp/text.txt").unwrap(), text(300_000));
    assert_eq!(
        read_all(&mut fs, "/comp/random.bin").unwrap(),
        data(5, 200_000)
    );
    let s = read_all(&mut fs, "/sparse.bin").unwrap();
    assert_eq!(s.len(), 10 << 20);
    assert_eq!(&s[..5], b"start");
    assert!(s[5..5 << 20].iter().all(|&x| x == 0));
    assert_eq!(&s[5 << 20..(5 << 20) + 10_000], &data(4, 10_000)[..]);
    assert_eq!(&s[(10 << 20) - 4..], b"end!");
    let cs = read_all(&mut fs, "/comp/sparse.bin").unwrap();
    assert_eq!(&cs[300_000..400_000], &text(100_000)[..]);
    assert!(cs[..300_000].iter().chain(&cs[400_000..]).all(|&x| x == 0));
    let mut frag = Vec::new();
    for i in 0..400u32 {
        frag.extend(data(100 + i, 4096));
    }
    assert_eq!(read_all(&mut fs, "/frag.bin").unwrap(), frag);
    // Reads at odd offsets across compression units and runs.
    let t = text(300_000);
    assert_eq!(
        fs.read("/comp/text.txt", 65_530, 20).unwrap(),
        &t[65_530..65_550]
    );
    assert_eq!(
        fs.read("/comp/text.txt", 299_990, 100).unwrap(),
        &t[299_990..]
    );
    assert!(fs.read("/comp/text.txt", 300_000, 10).unwrap().is_empty());
    assert_eq!(
        fs.read("/big.bin", 4095, 2).unwrap(),
        &data(1, 4097)[4095..]
    );
    // And as ntfscat sees them.
    for p in [
        "/comp/mixed.bin",
        "/frag.bin",
        "/Windows/System32/config/SOFTWARE",
    ] {
        let out = Command::new("ntfscat")
            .args([b.img.path(), p])
            .output()
            .unwrap();
        assert!(out.status.success(), "ntfscat {p}");
        assert_eq!(read_all(&mut fs, p).unwrap(), out.stdout, "{p}");
    }
}

#[test]
fn case_insensitive_lookups() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    let real = fs.stat("/Windows/System32/config/SOFTWARE", false).unwrap();
    let ci = fs.stat("/windows/system32/CONFIG/software", false).unwrap();
    assert_eq!(real.ino, ci.ino);
    assert_eq!(
        read_all(&mut fs, "/WINDOWS/system32/Config/Software").unwrap(),
        data(3, 5000)
    );
    // Non-ASCII case folding through $UpCase.
    assert!(fs.stat("/ωMEGA/INNER", false).is_ok());
    assert!(fs.stat("/üNÏCÖDÉ ファイル.TXT", false).is_ok());
    // Listings keep the real case.
    let names: Vec<String> = fs
        .read_dir("/windows")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"System32".to_string()), "{names:?}");
    assert_eq!(
        fs.stat("/nonexistent", false).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        fs.stat("/hello.txt/x", false).unwrap_err().kind,
        ErrorKind::NotADirectory
    );
}

#[test]
fn dos_names_and_broken_utf16() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    // The 8.3 alias is found but not listed (ntfs-3g's listing is checked elsewhere).
    let long = fs.stat("/A Long File Name.txt", false).unwrap();
    assert_eq!(fs.stat("/alongf~1.txt", false).unwrap().ino, long.ino);
    let names: Vec<String> = fs
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(!names.iter().any(|n| n.contains('~')), "{names:?}");
    // The alias counts as a link, as ntfs-3g shows it.
    assert_eq!(long.nlink, 2);
    assert_eq!(
        utf16_to_string(&[0x41, 0xD800, 0x42, 0xDC00]),
        "A\u{FFFD}B\u{FFFD}"
    );
    // Break the surrogate pair of the emoji name in the root index: listed with U+FFFD,
    // and found under that name.
    let mut img = b.bytes.clone();
    let pair: Vec<u8> = [0xD83Du16, 0xDE00, b'.' as u16]
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut patched = 0;
    let mut i = 0;
    while let Some(p) = img[i..]
        .windows(pair.len())
        .position(|w| w == pair.as_slice())
    {
        let at = i + p;
        i = at + 1;
        img[at + 2..at + 4].copy_from_slice(&(b'A' as u16).to_le_bytes());
        patched += 1;
    }
    assert!(patched >= 1);
    let mut fs = open(&img).unwrap();
    let names: Vec<String> = fs
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    let broken = "emoji \u{FFFD}A.txt";
    assert!(names.iter().any(|n| n == broken), "{names:?}");
    assert_eq!(
        read_all(&mut fs, &format!("/{broken}")).unwrap(),
        b"surrogate pair\n"
    );
}

#[test]
fn reparse_target_translation() {
    // Relative symlinks keep their path; drive-absolute ones become relative to the link.
    assert_eq!(translate_target(r"..\a\b", true, 3), "../a/b");
    assert_eq!(translate_target(r"\??\C:\Users", false, 0), "Users");
    assert_eq!(
        translate_target(r"\??\C:\Users\x\", false, 2),
        "../../Users/x"
    );
    assert_eq!(translate_target(r"\??\D:\", false, 0), ".");
    assert_eq!(translate_target(r"\??\D:", false, 1), "..");
    assert_eq!(
        translate_target(r"\??\UNC\srv\share\f", false, 1),
        "//srv/share/f"
    );
    assert_eq!(
        translate_target(r"\??\Volume{1234}\dir", false, 0),
        "Volume{1234}/dir"
    );
    // Hostile buffers: no panic, no target.
    for len in 0..40 {
        let b = reparse(true, r"\??\C:\x", "x", false);
        let _ = reparse_target(&b[..len.min(b.len())], 0);
    }
    let mut b = reparse(false, "abc", "abc", true);
    b[8..10].copy_from_slice(&0xFFF0u16.to_le_bytes());
    assert_eq!(
        reparse_target(&b, 0),
        Some("abc".to_string()),
        "falls back to the print name"
    );
    b[12..14].copy_from_slice(&0xFFF0u16.to_le_bytes());
    assert_eq!(reparse_target(&b, 0), None);
}

#[test]
fn symlinks_are_followed_inside_the_volume() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    // Through a junction and an Interix symlink in the middle of a path.
    let want = fs.stat("/Windows/System32/config/SOFTWARE", true).unwrap();
    assert_eq!(
        fs.stat("/junc/config/SOFTWARE", true).unwrap().ino,
        want.ino
    );
    assert_eq!(fs.stat("/rel/config/SOFTWARE", true).unwrap().ino, want.ino);
    assert_eq!(
        fs.stat("/Windows/junc2/SOFTWARE", true).unwrap().ino,
        want.ino
    );
    assert_eq!(read_all(&mut fs, "/Windows/relsym").unwrap(), text(300_000));
    assert_eq!(read_all(&mut fs, "/abs_interix").unwrap(), b"hello ntfs\n");
    assert_eq!(
        fs.stat("/junc", true).unwrap().file_type,
        FileType::Directory
    );
    assert_eq!(
        fs.stat("/junc", false).unwrap().file_type,
        FileType::Symlink
    );
    assert_eq!(
        fs.read_link("/hello.txt").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
}

#[test]
fn listing_matches_ntfsls() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    for dir in ["/", "/pad", "/Windows", "/comp", "/links"] {
        let out = run("ntfsls", &["-p", dir, b.img.path()], None);
        // ntfsls adds `.` (and `..`, hidden in the root as a metafile) itself.
        let mut theirs: Vec<&str> = out.lines().filter(|l| *l != "." && *l != "..").collect();
        theirs.sort();
        let mut ours: Vec<String> = fs
            .read_dir(dir)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        ours.sort();
        assert_eq!(ours, theirs, "{dir}");
    }
}

#[test]
fn statvfs_label_and_writes() {
    let b = &*MAIN;
    let mut fs = open(&b.bytes).unwrap();
    let s = fs.statvfs().unwrap();
    assert_eq!((s.block_size, s.blocks, s.blocks_free), b.df);
    assert_eq!(s.name_max, 255);
    assert_eq!(fs.statvfs().unwrap(), s, "cached");
    assert!(fs.readonly());
    assert_eq!(fs.fstype(), "ntfs");
    assert_eq!(fs.label(), Some("Skiff NTFS"));
    let e = fs.write("/hello.txt", 0, b"x", false, 0o644).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ReadOnly);
    assert!(e.message.contains("ntfs"), "{}", e.message);
    for e in [
        fs.mkdir("/d", 0o755).unwrap_err(),
        fs.unlink("/hello.txt").unwrap_err(),
        fs.rmdir("/pad").unwrap_err(),
        fs.rename("/hello.txt", "/x").unwrap_err(),
        fs.chmod("/hello.txt", 0).unwrap_err(),
        fs.symlink("a", "/b").unwrap_err(),
        fs.truncate("/hello.txt", 0).unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::ReadOnly);
    }
    // The probe: label and serial as blkid shows them.
    let p = crate::fs::probe::probe(&shared(MemDisk::new(b.bytes.clone(), true)));
    let bk = blkid(b.img.path());
    assert_eq!(p.fstype, "ntfs");
    // `-o export` escapes the space: ask for the bare value.
    let label = run(
        "blkid",
        &["-p", "-s", "LABEL", "-o", "value", b.img.path()],
        None,
    );
    assert_eq!(p.label.as_deref(), Some(label.trim_end()), "{bk:?}");
    assert_eq!(p.uuid.as_ref(), bk.get("UUID"), "{bk:?}");
    assert_eq!(p.uuid, Some(format!("{:016X}", fs.serial())));
}

#[test]
fn found_by_content_whatever_the_partition_type() {
    // An MBR partition of type 0x83 (Linux) holding the NTFS volume.
    let b = &*MAIN;
    let disk = TempImage::new("ntfs-mbr", (b.bytes.len() as u64) + (1 << 20));
    run(
        "sfdisk",
        &["-q", disk.path()],
        Some("label: dos\nstart=2048, type=83\n"),
    );
    let mut d = std::fs::read(&disk.0).unwrap();
    d[1 << 20..].copy_from_slice(&b.bytes);
    let mut a = crate::rpc::Appliance::new();
    a.set_disk(0, shared(MemDisk::new(d, true)));
    let fss = a.filesystems();
    let f = fss.iter().find(|f| f.device == "/dev/sda1").unwrap();
    assert_eq!(f.fstype, "ntfs");
    assert_eq!(f.label.as_deref(), Some("Skiff NTFS"));
    a.mount("/dev/sda1", "/", true, None).unwrap();
    assert_eq!(a.pread("/hello.txt", 0, 100).unwrap(), b"hello ntfs\n");
}

// ---- corrupt images ----

fn geometry(img: &[u8]) -> Geometry {
    Geometry::parse(&img[..512]).unwrap()
}

/// Byte offset of MFT record `n` (the MFT's first extent covers these images' records).
fn record_offset(img: &[u8], n: u64) -> usize {
    let g = geometry(img);
    let off = (g.mft_lcn * g.cluster_size + n * g.record_size as u64) as usize;
    assert_eq!(&img[off..off + 4], b"FILE");
    off
}

fn ino(path: &str) -> u64 {
    let mut fs = open(&MAIN.bytes).unwrap();
    fs.stat(path, false).unwrap().ino
}

fn kind_of(r: FsResult<impl Sized>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            assert!(e.message.starts_with("ntfs: "), "{}", e.message);
            e.kind
        }
    }
}

/// The first attribute of `ty` in the record at `rec`: its offset.
fn find_attr(img: &[u8], rec: usize, ty: u32) -> usize {
    let mut pos = rec + usize::from(le16(img, rec + 0x14).unwrap());
    loop {
        let t = le32(img, pos).unwrap();
        assert_ne!(t, 0xFFFF_FFFF, "attribute {ty:#x} not found");
        if t == ty {
            return pos;
        }
        pos += le32(img, pos + 4).unwrap() as usize;
    }
}

#[test]
fn bad_fixups_are_corrupt() {
    let mut img = MAIN.bytes.clone();
    let r = record_offset(&img, ino("/hello.txt"));
    img[r + 510] ^= 0xFF;
    let mut fs = open(&img).unwrap();
    assert_eq!(kind_of(fs.stat("/hello.txt", false)), ErrorKind::Corrupt);
    assert!(fs.stat("/big.bin", false).is_ok());
    // Every index block torn: listings and lookups below the root fail, cleanly.
    let mut img = MAIN.bytes.clone();
    let g = geometry(&img);
    let mut n = 0;
    for off in (0..img.len()).step_by(g.cluster_size as usize) {
        if &img[off..off + 4] == b"INDX" {
            img[off + 1022] ^= 0x55;
            n += 1;
        }
    }
    assert!(n >= 2);
    match open(&img) {
        Err(e) => assert_eq!(e.kind, ErrorKind::Corrupt),
        Ok(mut fs) => {
            assert_eq!(kind_of(fs.read_dir("/pad")), ErrorKind::Corrupt);
            assert_eq!(kind_of(fs.read_dir("/")), ErrorKind::Corrupt);
        }
    }
    // The boot sector's MFT record 0 torn: the mount fails.
    let mut img = MAIN.bytes.clone();
    let r0 = record_offset(&img, 0);
    img[r0 + 1022] ^= 1;
    assert_eq!(kind_of(open(&img)), ErrorKind::Corrupt);
}

#[test]
fn absurd_lengths_and_runs_are_corrupt() {
    let base = &MAIN.bytes;
    let r = record_offset(base, ino("/big.bin"));
    // An attribute claiming 4 GiB.
    let mut img = base.clone();
    let a = find_attr(&img, r, AT_STANDARD_INFORMATION);
    img[a + 4..a + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let mut fs = open(&img).unwrap();
    assert_eq!(kind_of(fs.stat("/big.bin", false)), ErrorKind::Corrupt);
    // A run far past the end of the volume.
    let mut img = base.clone();
    let a = find_attr(&img, r, AT_DATA);
    let mp = a + usize::from(le16(&img, a + 0x20).unwrap());
    let h = img[mp];
    let (ls, os) = (usize::from(h & 15), usize::from(h >> 4));
    assert!(os > 0);
    for i in 0..os {
        img[mp + 1 + ls + i] = if i + 1 == os { 0x3F } else { 0xFF };
    }
    let mut fs = open(&img).unwrap();
    assert_eq!(kind_of(fs.read("/big.bin", 0, 10)), ErrorKind::Corrupt);
    // A huge hole: reads are zeros and finish at once.
    let mut img = base.clone();
    img[mp] = 0x05;
    img[mp + 1..mp + 6].copy_from_slice(&(1u64 << 39).to_le_bytes()[..5]);
    img[mp + 6] = 0;
    let mut fs = open(&img).unwrap();
    let d = fs.read("/big.bin", 1 << 20, 1 << 20).unwrap();
    assert!(d.len() == 1 << 20 && d.iter().all(|&x| x == 0));
    // A resident value pointing outside its attribute.
    let mut img = base.clone();
    let a = find_attr(&img, r, AT_FILE_NAME);
    img[a + 0x10..a + 0x14].copy_from_slice(&5000u32.to_le_bytes());
    let mut fs = open(&img).unwrap();
    assert_eq!(kind_of(fs.stat("/big.bin", false)), ErrorKind::Corrupt);
}

#[test]
fn records_pointing_at_themselves() {
    let base = &MAIN.bytes;
    // The fragmented file's extension records claim another base.
    let n = ino("/frag.bin");
    let mut fs = open(base).unwrap();
    let inode = fs.inode(n).unwrap();
    let list = fs.read_meta(&inode, AT_ATTRIBUTE_LIST, &[], "t").unwrap();
    let recs = attribute_list_records(&list, 100, "t").unwrap();
    assert!(recs.len() >= 2, "{recs:?}");
    let mut img = base.clone();
    for &ext in recs.iter().filter(|&&x| x != n) {
        let e = record_offset(&img, ext);
        img[e + 0x20..e + 0x28].copy_from_slice(&ext.to_le_bytes());
    }
    let mut fs = open(&img).unwrap();
    assert_eq!(kind_of(fs.stat("/frag.bin", false)), ErrorKind::Corrupt);
    // A directory entry pointing at its own directory: walks stay bounded.
    let mut img = base.clone();
    let hello = ino("/hello.txt");
    let name: Vec<u8> = "hello.txt"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut patched = 0;
    let mut i = 0;
    while let Some(p) = img[i..]
        .windows(name.len())
        .position(|w| w == name.as_slice())
    {
        let at = i + p;
        i = at + 1;
        if at < 0x52 || img[at - 2] != 9 {
            continue;
        }
        let entry = at - 0x42 - 16;
        if le64(&img, entry).unwrap() & 0xFFFF_FFFF_FFFF == hello {
            img[entry..entry + 6].copy_from_slice(&ROOT.to_le_bytes()[..6]);
            patched += 1;
        }
    }
    assert_eq!(patched, 1);
    let mut a = crate::rpc::Appliance::new();
    a.set_disk(0, shared(MemDisk::new(img, true)));
    a.mount("/dev/sda", "/", true, Some("ntfs")).unwrap();
    let st = a.stat("/hello.txt", false).unwrap();
    assert_eq!(st.file_type, FileType::Directory);
    // `find` meets the cycle and ends (error or bounded listing), no hang.
    let _ = a.find("/");
}

#[test]
fn garbage_never_panics() {
    // Truncations and bit flips in the metadata of the real image.
    let base = &MAIN.bytes;
    let g = geometry(base);
    let mft = (g.mft_lcn * g.cluster_size) as usize;
    let mut x = 0x1234_5678u32;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as usize % n
    };
    for i in 0..60 {
        let mut img = base.clone();
        for _ in 0..1 + i % 8 {
            let off = mft + rnd(64 * 1024);
            img[off] ^= 1 << rnd(8);
        }
        if let Ok(mut fs) = open(&img) {
            for p in ["/", "/pad", "/Windows/System32/config", "/comp", "/links"] {
                if let Ok(entries) = fs.read_dir(p) {
                    for e in entries.iter().take(20) {
                        let path = join(p, &e.name);
                        let _ = fs.read(&path, 0, 1 << 16);
                        let _ = fs.read_link(&path);
                    }
                }
            }
            let _ = fs.statvfs();
        }
    }
    for len in [0, 100, 512, 4096, mft, mft + 1000, base.len() / 2] {
        let _ = open(&base[..len]);
    }
}
