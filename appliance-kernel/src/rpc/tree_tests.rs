//! Whole-tree requests against real images: checksums against `sha256sum` & co. of the
//! source files, `du` against `du -sk` on a loop mount of the same image, `cp -r` and
//! streamed writes against `debugfs` and `e2fsck -fn`, `FindStat` against `find`, and the
//! ext4 direct reader against `ext4-view` on ext2/ext3/ext4 images.

use super::*;
use crate::block::{MemDisk, SharedDevice};
use crate::part::testutil::{TempDir, TempImage, run};
use alloc::string::ToString;
use std::collections::BTreeMap as Map;
use std::os::unix::fs::{PermissionsExt, symlink};
use wire::{FileType, TreeEntry};

fn s(x: &str) -> String {
    x.to_string()
}

/// An image file and the in-memory disk the appliance works on.
struct Img {
    file: TempImage,
    disk: Rc<RefCell<MemDisk>>,
}

impl Img {
    /// `mkfs_type` (`ext4`, `ext3`, `ext2`) with `block` size, made from `src`.
    fn new(src: &TempDir, mkfs_type: &str, block: u32, size_mib: u64) -> Img {
        let file = TempImage::new("tree", size_mib << 20);
        let b = block.to_string();
        run(
            &format!("mkfs.{mkfs_type}"),
            &[
                "-q",
                "-F",
                "-b",
                &b,
                "-E",
                "root_owner=0:0",
                "-d",
                src.path(),
                file.path(),
            ],
            None,
        );
        let disk = Rc::new(RefCell::new(MemDisk::new(
            std::fs::read(&file.0).unwrap(),
            false,
        )));
        Img { file, disk }
    }

    fn appliance(&self, readonly: bool) -> Appliance {
        let mut a = Appliance::new();
        let dev: SharedDevice = self.disk.clone();
        a.set_disk(0, dev);
        a.handle(Request::Mount {
            device: s("/dev/sda"),
            mountpoint: s("/"),
            readonly,
            fstype: None,
        })
        .unwrap();
        a
    }

    /// Writes the disk back to the image file (after the appliance synced it).
    fn save(&self) {
        std::fs::write(&self.file.0, &self.disk.borrow().data).unwrap();
    }

    fn fsck(&self) {
        self.save();
        let out = std::process::Command::new("e2fsck")
            .args(["-fn", self.file.path()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck -fn: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn debugfs(&self, cmd: &str) -> Vec<u8> {
        let out = std::process::Command::new("debugfs")
            .args(["-R", cmd, self.file.path()])
            .output()
            .unwrap();
        out.stdout
    }
}

/// A loop mount of an image, read-only, undone on drop.
struct LoopMount(TempDir);

impl LoopMount {
    fn new(img: &str) -> LoopMount {
        let d = TempDir::new("mnt");
        run("mount", &["-o", "loop,ro", img, d.path()], None);
        LoopMount(d)
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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

/// A tree with files of awkward sizes, a sparse file, hard links, symlinks, odd modes
/// and owners, empty and deep directories.
fn source() -> TempDir {
    let d = TempDir::new("tree-src");
    let p = &d.0;
    for (i, len) in [
        0usize,
        1,
        511,
        4095,
        4096,
        4097,
        65_536,
        (1 << 20) + 3,
        3 << 20,
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(p.join(format!("f{i}")), pattern(*len, i as u64 + 7)).unwrap();
    }
    std::fs::create_dir_all(p.join("a/b/c/d")).unwrap();
    std::fs::create_dir_all(p.join("empty")).unwrap();
    for i in 0..300 {
        std::fs::write(p.join(format!("a/b/n{i:03}")), format!("n{i}\n")).unwrap();
    }
    std::fs::write(p.join("a/b/c/d/deep"), b"deep\n").unwrap();
    std::fs::write(p.join("a/hard"), pattern(10_000, 99)).unwrap();
    std::fs::hard_link(p.join("a/hard"), p.join("a/b/hard2")).unwrap();
    let f = std::fs::File::create(p.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"island", 5 << 20).unwrap();
    }
    symlink("f1", p.join("link")).unwrap();
    symlink("a/b/c", p.join("dirlink")).unwrap();
    symlink("x".repeat(200), p.join("a/longlink")).unwrap();
    // chown before chmod: chown clears the set-id bits.
    std::os::unix::fs::chown(p.join("f2"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(p.join("f2"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::os::unix::fs::chown(p.join("a/b"), Some(42), Some(43)).unwrap();
    std::fs::set_permissions(p.join("a/b"), std::fs::Permissions::from_mode(0o1770)).unwrap();
    d
}

/// Regular files below `root` (relative paths) → `TOOL` of them (`sha256sum`, ...).
fn host_sums(root: &str, tool: &str) -> Map<String, String> {
    let out = run(
        "sh",
        &[
            "-c",
            &format!("cd {root} && find . -type f -print0 | xargs -0 {tool}"),
        ],
        None,
    );
    out.lines()
        .map(|l| {
            let (h, p) = l.split_once("  ").unwrap();
            (p.trim_start_matches("./").to_string(), h.to_string())
        })
        .collect()
}

#[test]
fn checksums_match_the_coreutils_tools() {
    let src = source();
    let img = Img::new(&src, "ext4", 4096, 64);
    let mut a = img.appliance(true);
    for (algo, tool) in [
        ("md5", "md5sum"),
        ("sha1", "sha1sum"),
        ("sha224", "sha224sum"),
        ("sha256", "sha256sum"),
        ("sha384", "sha384sum"),
        ("sha512", "sha512sum"),
    ] {
        let want = host_sums(src.path(), tool);
        assert!(want.len() > 300, "{want:?}");
        // One file at a time, through a symlink too.
        for p in ["f0", "f3", "f7", "f8", "sparse", "a/b/c/d/deep"] {
            let got = a
                .handle(Request::Checksum {
                    algo: s(algo),
                    path: format!("/{p}"),
                })
                .unwrap();
            assert_eq!(got, Reply::Text(want[p].clone()), "{algo} {p}");
        }
        assert_eq!(
            a.handle(Request::Checksum {
                algo: s(algo),
                path: s("/link"),
            })
            .unwrap(),
            Reply::Text(want["f1"].clone())
        );
        // The whole tree.
        let Reply::Checksums { sums, next } = a
            .handle(Request::ChecksumsOut {
                algo: s(algo),
                dir: s("/"),
                after: None,
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(next, None);
        let got: Map<String, String> = sums
            .iter()
            .map(|c| (c.path.clone(), c.hash.clone()))
            .collect();
        assert_eq!(got, want, "{algo}");
        // Depth first, each directory sorted: resuming after any path gives the rest.
        for k in [0, 5, 150, sums.len() - 1] {
            let Reply::Checksums { sums: rest, .. } = a
                .handle(Request::ChecksumsOut {
                    algo: s(algo),
                    dir: s("/"),
                    after: Some(sums[k].path.clone()),
                })
                .unwrap()
            else {
                panic!()
            };
            assert_eq!(rest, sums[k + 1..], "{algo} after {}", sums[k].path);
        }
    }
    // Below a subdirectory, paths are relative to it.
    let Reply::Checksums { sums, .. } = a
        .handle(Request::ChecksumsOut {
            algo: s("sha256"),
            dir: s("/a/b/c"),
            after: None,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(sums.len(), 1);
    assert_eq!(sums[0].path, "d/deep");
    let e = |r: Result<Reply, Error>| r.unwrap_err().kind;
    assert_eq!(
        e(a.handle(Request::Checksum {
            algo: s("crc"),
            path: s("/f1")
        })),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        e(a.handle(Request::Checksum {
            algo: s("md5"),
            path: s("/a")
        })),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        e(a.handle(Request::ChecksumsOut {
            algo: s("md5"),
            dir: s("/f1"),
            after: None
        })),
        ErrorKind::NotADirectory
    );
}

#[test]
fn du_matches_du_on_a_loop_mount() {
    let src = source();
    for (t, b) in [("ext4", 4096), ("ext4", 1024), ("ext2", 1024)] {
        let img = Img::new(&src, t, b, 64);
        let mnt = LoopMount::new(img.file.path());
        let mut a = img.appliance(true);
        for p in ["/", "/a", "/a/b", "/f8", "/sparse", "/link", "/empty"] {
            let want: u64 = run("du", &["-sk", &format!("{}{p}", mnt.0.path())], None)
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let got = a.handle(Request::Du { path: s(p) }).unwrap();
            assert_eq!(got, Reply::Count(want), "{t} {b}: du {p}");
        }
    }
}

#[test]
fn find_stat_lists_attributes_and_resumes() {
    let src = source();
    let img = Img::new(&src, "ext4", 4096, 64);
    let mut a = img.appliance(true);
    let Reply::Names(names) = a.handle(Request::Find { path: s("/") }).unwrap() else {
        panic!()
    };
    let Reply::Tree { entries, next } = a
        .handle(Request::FindStat {
            path: s("/"),
            after: None,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(next, None);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, names);
    // Against find(1) on the source tree (plus lost+found).
    let mut want: Vec<String> = run(
        "sh",
        &["-c", &format!("cd {} && find . -mindepth 1", src.path())],
        None,
    )
    .lines()
    .map(|l| l.trim_start_matches("./").to_string())
    .collect();
    want.push(s("lost+found"));
    want.sort();
    let mut got: Vec<String> = names.clone();
    got.sort();
    assert_eq!(got, want);
    let by: Map<&str, &TreeEntry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let f2 = by["f2"];
    assert_eq!(
        (f2.stat.mode, f2.stat.uid, f2.stat.gid, f2.stat.size),
        (0o4751, 1234, 5678, 511)
    );
    let ab = by["a/b"];
    assert_eq!(ab.stat.file_type, FileType::Directory);
    assert_eq!((ab.stat.mode, ab.stat.uid, ab.stat.gid), (0o1770, 42, 43));
    assert_eq!(by["link"].link.as_deref(), Some("f1"));
    assert_eq!(by["a/longlink"].link, Some("x".repeat(200)));
    assert_eq!(by["dirlink"].stat.file_type, FileType::Symlink);
    assert_eq!(by["f1"].link, None);
    // Hard links: same inode, two links.
    assert_eq!(by["a/hard"].stat.ino, by["a/b/hard2"].stat.ino);
    assert_eq!(by["a/hard"].stat.nlink, 2);
    // Inode numbers and times as debugfs shows them.
    let st = String::from_utf8(img.debugfs("stat /a/b/c/d/deep")).unwrap();
    let inode: u64 = st
        .split("Inode: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(by["a/b/c/d/deep"].stat.ino, inode);
    // Resuming after any path gives the rest, including after a directory (its
    // contents come next) and after a path that is no longer there.
    for k in [0, 1, 7, 40, entries.len() - 1] {
        let Reply::Tree { entries: rest, .. } = a
            .handle(Request::FindStat {
                path: s("/"),
                after: Some(entries[k].path.clone()),
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(rest, entries[k + 1..], "after {}", entries[k].path);
    }
    let Reply::Tree { entries: rest, .. } = a
        .handle(Request::FindStat {
            path: s("/"),
            after: Some(s("a/zzz")),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(rest.first().map(|e| e.path.as_str()), Some("dirlink"));
}

#[test]
fn copy_inside_the_guest_is_clean_and_keeps_attributes() {
    let src = source();
    let img = Img::new(&src, "ext4", 4096, 64);
    let mut a = img.appliance(false);
    let e = |r: Result<Reply, Error>| r.unwrap_err().kind;
    let cp = |a: &mut Appliance, f: &str, t: &str, r: bool| {
        a.handle(Request::Copy {
            from: s(f),
            to: s(t),
            recursive: r,
        })
    };
    // A file to a new name, into a directory, over an existing file.
    cp(&mut a, "/f8", "/copy8", false).unwrap();
    cp(&mut a, "/f2", "/empty", false).unwrap();
    cp(&mut a, "/f7", "/f0", false).unwrap();
    // A symlink named without -r is followed.
    cp(&mut a, "/link", "/fromlink", false).unwrap();
    // A whole tree, into a new directory and into an existing one.
    cp(&mut a, "/a", "/a2", true).unwrap();
    a.handle(Request::Mkdir {
        path: s("/into"),
        parents: false,
        mode: 0o755,
    })
    .unwrap();
    cp(&mut a, "/a/b", "/into", true).unwrap();
    // Refusals.
    assert_eq!(e(cp(&mut a, "/a", "/a3", false)), ErrorKind::IsADirectory);
    assert_eq!(
        e(cp(&mut a, "/a", "/a/b/c/x", true)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(e(cp(&mut a, "/a", "/f1", true)), ErrorKind::NotADirectory);
    assert_eq!(
        e(cp(&mut a, "/f1", "/f1", false)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(e(cp(&mut a, "/nope", "/x", false)), ErrorKind::NotFound);
    a.handle(Request::Shutdown).unwrap();
    img.fsck();

    let cat = |p: &str| img.debugfs(&format!("cat {p}"));
    let srcp = |p: &str| std::fs::read(src.0.join(p)).unwrap();
    assert_eq!(cat("/copy8"), srcp("f8"));
    assert_eq!(cat("/empty/f2"), srcp("f2"));
    assert_eq!(cat("/f0"), srcp("f7"));
    assert_eq!(cat("/fromlink"), srcp("f1"));
    assert_eq!(cat("/a2/b/c/d/deep"), b"deep\n");
    assert_eq!(cat("/a2/hard"), srcp("a/hard"));
    assert_eq!(cat("/a2/b/n123"), b"n123\n");
    assert_eq!(cat("/into/b/n007"), b"n7\n");
    // Modes, owners, times and symlinks as the source has them (debugfs stat).
    let stat = |p: &str| String::from_utf8(img.debugfs(&format!("stat {p}"))).unwrap();
    let field = |st: &str, k: &str| -> String {
        st.split(k)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    for (orig, copy) in [
        ("/a/b", "/a2/b"),
        ("/a/b", "/into/b"),
        ("/f2", "/empty/f2"),
        ("/a/hard", "/a2/hard"),
        ("/a/b/c/d", "/a2/b/c/d"),
    ] {
        let (o, c) = (stat(orig), stat(copy));
        for k in ["Mode:", "User:", "Group:", "Size:", "mtime: "] {
            assert_eq!(field(&o, k), field(&c, k), "{k} of {copy}");
        }
    }
    assert_eq!(
        img.debugfs("cat /a2/longlink"),
        "x".repeat(200).as_bytes(),
        "slow symlink target"
    );
    let mut b = img.appliance(true);
    let Reply::Text(t) = b
        .handle(Request::Readlink {
            path: s("/a2/longlink"),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(t, "x".repeat(200));
    // Hard links are not kept by cp -r: two files.
    let Reply::Stat(h1) = b
        .handle(Request::Lstat {
            path: s("/a2/hard"),
        })
        .unwrap()
    else {
        panic!()
    };
    let Reply::Stat(h2) = b
        .handle(Request::Lstat {
            path: s("/a2/b/hard2"),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_ne!(h1.ino, h2.ino);
}

#[test]
fn streamed_writes_are_held_and_written_clean() {
    let src = TempDir::new("stream-src");
    std::fs::write(src.0.join("old"), b"old contents").unwrap();
    let img = Img::new(&src, "ext4", 4096, 128);
    let mut a = img.appliance(false);
    let data = pattern(40 << 20 | 12345, 5);
    let chunk = MAX_CHUNK as usize;
    let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    let mut off = 0u64;
    for (i, p) in pieces.iter().enumerate() {
        let r = a
            .handle(Request::WriteStream {
                path: s("/up.bin"),
                offset: off,
                data: Bytes(p.to_vec()),
                first: i == 0,
                truncate: true,
                mode: 0o640,
                last: i + 1 == pieces.len(),
            })
            .unwrap();
        assert_eq!(r, Reply::Written(p.len() as u64));
        off += p.len() as u64;
    }
    // Replacing a file, and an interrupted stream (another request writes what is held).
    for (i, p) in [b"new ".as_slice(), b"contents"].iter().enumerate() {
        a.handle(Request::WriteStream {
            path: s("/old"),
            offset: if i == 0 { 0 } else { 4 },
            data: Bytes(p.to_vec()),
            first: i == 0,
            truncate: true,
            mode: 0o644,
            last: false,
        })
        .unwrap();
    }
    let Reply::Data(Bytes(got)) = a
        .handle(Request::Pread {
            path: s("/old"),
            offset: 0,
            len: 100,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(got, b"new contents");
    // A piece that does not continue a stream is refused and writes nothing.
    let e = a
        .handle(Request::WriteStream {
            path: s("/old"),
            offset: 50,
            data: Bytes(b"stray".to_vec()),
            first: false,
            truncate: false,
            mode: 0o644,
            last: true,
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    // An empty stream creates an empty file.
    a.handle(Request::WriteStream {
        path: s("/empty"),
        offset: 0,
        data: Bytes(vec![]),
        first: true,
        truncate: true,
        mode: 0o600,
        last: true,
    })
    .unwrap();
    a.handle(Request::Shutdown).unwrap();
    img.fsck();
    assert!(img.debugfs("cat /up.bin") == data, "/up.bin differs");
    assert_eq!(img.debugfs("cat /old"), b"new contents");
    let st = String::from_utf8(img.debugfs("stat /empty")).unwrap();
    assert!(st.contains("Size: 0"), "{st}");
    let st = String::from_utf8(img.debugfs("stat /up.bin")).unwrap();
    assert!(st.contains("Mode:  0640"), "{st}");
}

/// The ext4 direct reader answers what ext4-view answers, on every path of ext2, ext3
/// and ext4 images with 1 KiB and 4 KiB blocks (block maps with indirect blocks, extent
/// trees, htree directories).
#[test]
fn direct_reader_agrees_with_ext4_view() {
    use crate::fs::FileSystem;
    use crate::fs::ext4::Ext4Fs;
    let src = source();
    for (t, b) in [
        ("ext2", 1024),
        ("ext3", 4096),
        ("ext4", 1024),
        ("ext4", 4096),
    ] {
        let img = Img::new(&src, t, b, 64);
        let dev: SharedDevice = img.disk.clone();
        let mut fast = Ext4Fs::mount(dev.clone(), true).unwrap();
        assert!(fast.has_direct_reader(), "{t} {b}");
        let mut slow = Ext4Fs::mount(dev, true).unwrap();
        slow.disable_direct_reader();
        let mut a = img.appliance(true);
        let Reply::Names(names) = a.handle(Request::Find { path: s("/") }).unwrap() else {
            panic!()
        };
        assert!(names.len() > 300);
        for n in &names {
            let p = format!("/{n}");
            let (x, y) = (fast.stat(&p, false).unwrap(), slow.stat(&p, false).unwrap());
            assert_eq!(
                (
                    x.file_type,
                    x.mode,
                    x.uid,
                    x.gid,
                    x.size,
                    x.mtime,
                    x.atime,
                    x.ctime
                ),
                (
                    y.file_type,
                    y.mode,
                    y.uid,
                    y.gid,
                    y.size,
                    y.mtime,
                    y.atime,
                    y.ctime
                ),
                "{t} {b} {p}"
            );
            match x.file_type {
                FileType::Regular => {
                    // The source file is the oracle (ext4-view 1.0 cannot read holes
                    // in block-mapped files).
                    let want = std::fs::read(src.0.join(n)).unwrap();
                    let whole = fast.read(&p, 0, 16 << 20).unwrap();
                    assert!(whole == want, "{t} {b} {p}");
                    let mid = fast.read(&p, 4000, 70_000).unwrap();
                    let end = want.len().min(74_000);
                    assert!(mid == want[4000.min(end)..end], "{t} {b} {p}");
                    if let Ok(v) = slow.read(&p, 0, 16 << 20) {
                        assert!(v == want, "{t} {b} {p}: ext4-view");
                    }
                }
                FileType::Directory => {
                    let mut dx: Vec<_> = fast
                        .read_dir(&p)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.name)
                        .collect();
                    let mut dy: Vec<_> = slow
                        .read_dir(&p)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.name)
                        .collect();
                    dx.sort();
                    dy.sort();
                    assert_eq!(dx, dy, "{t} {b} {p}");
                }
                FileType::Symlink => {
                    assert_eq!(fast.read_link(&p).unwrap(), slow.read_link(&p).unwrap());
                }
                _ => {}
            }
        }
    }
}
