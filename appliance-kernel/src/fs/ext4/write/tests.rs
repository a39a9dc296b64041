//! Host tests of [`Ext4Writer`]: images built by `mkfs.ext4 -d`, changed through the
//! writer, then checked by the independent tools (`e2fsck -fn`, `debugfs`).

use super::*;
use crate::block::MemDisk;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A temporary directory holding a source tree and an image; removed on drop.
struct Img {
    dir: PathBuf,
    path: PathBuf,
    disk: Rc<RefCell<MemDisk>>,
}

impl Drop for Img {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("skiff-ext4w-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds `mkfs.ext4 -q -d src -b block [extra] img 16M` from `files` (path, contents;
/// a path ending in `/` is a directory; contents starting with `->` make a symlink).
fn image(tag: &str, block: u32, files: &[(&str, &[u8])], extra: &[&str]) -> Img {
    image_sized(tag, block, files, extra, "16M")
}

fn image_sized(tag: &str, block: u32, files: &[(&str, &[u8])], extra: &[&str], size: &str) -> Img {
    let dir = tempdir(tag);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (p, data) in files {
        let full = src.join(p.trim_start_matches('/'));
        if p.ends_with('/') {
            std::fs::create_dir_all(&full).unwrap();
            continue;
        }
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        if let Some(t) = data.strip_prefix(b"->") {
            std::os::unix::fs::symlink(std::str::from_utf8(t).unwrap(), &full).unwrap();
        } else {
            std::fs::write(&full, data).unwrap();
        }
    }
    let path = dir.join("img");
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(&src)
        .args(["-b", &block.to_string()])
        .args(extra)
        .arg(&path)
        .arg(size)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mkfs.ext4");
    assert!(st.success(), "mkfs.ext4 failed");
    let data = std::fs::read(&path).unwrap();
    let disk = Rc::new(RefCell::new(MemDisk::new(data, false)));
    Img { dir, path, disk }
}

impl Img {
    fn dev(&self) -> SharedDevice {
        self.disk.clone()
    }

    fn writer(&self) -> Ext4Writer {
        Ext4Writer::open(self.dev()).expect("open for writing")
    }

    /// Writes the in-memory disk back to the image file.
    fn save(&self) -> &Path {
        std::fs::write(&self.path, &self.disk.borrow().data).unwrap();
        &self.path
    }

    /// Saves, then asserts `e2fsck -fn` finds the filesystem clean.
    fn fsck(&self) {
        self.save();
        let out = Command::new("e2fsck")
            .arg("-fn")
            .arg(&self.path)
            .output()
            .expect("e2fsck");
        if !out.status.success() {
            let _ = std::fs::copy(
                &self.path,
                std::env::temp_dir().join("skiff-ext4w-failed.img"),
            );
        }
        assert!(
            out.status.success(),
            "e2fsck -fn reported problems (exit {:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn debugfs(&self, cmd: &str) -> Vec<u8> {
        self.save();
        let out = Command::new("debugfs")
            .args(["-R", cmd])
            .arg(&self.path)
            .output()
            .expect("debugfs");
        out.stdout
    }

    fn cat(&self, path: &str) -> Vec<u8> {
        self.debugfs(&format!("cat {path}"))
    }

    fn stat(&self, path: &str) -> String {
        String::from_utf8_lossy(&self.debugfs(&format!("stat {path}"))).into_owned()
    }

    /// True when debugfs finds `path`.
    fn exists(&self, path: &str) -> bool {
        self.stat(path).contains("Inode:")
    }

    fn ls(&self, path: &str) -> Vec<String> {
        let out = self.debugfs(&format!("ls -p {path}"));
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split('/').nth(5).map(String::from))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .collect()
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn kind<T>(r: FsResult<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind,
    }
}

const BLOCKS: [u32; 2] = [1024, 4096];

#[test]
fn create_overwrite_and_extend() {
    for b in BLOCKS {
        let img = image("create", b, &[("/etc/hostname", b"old-host\n")], &[]);
        let mut w = img.writer();
        assert_eq!(w.block_size(), b);
        // new file
        assert_eq!(
            w.write("/hello", 0, b"hello world\n", false, 0o644)
                .unwrap(),
            12
        );
        // overwrite in place, no truncate: tail kept
        w.write("/etc/hostname", 0, b"NEW", false, 0o600).unwrap();
        // extend with a hole
        w.write("/sparse", 100_000, b"xyz", false, 0o640).unwrap();
        w.sync().unwrap();
        img.fsck();
        assert_eq!(img.cat("/hello"), b"hello world\n");
        assert_eq!(img.cat("/etc/hostname"), b"NEW-host\n");
        let mut want = vec![0u8; 100_000];
        want.extend_from_slice(b"xyz");
        assert_eq!(img.cat("/sparse"), want);
        let st = img.stat("/hello");
        assert!(st.contains("Type: regular"), "{st}");
        assert!(st.contains("Mode:  0644"), "{st}");
        assert!(st.contains("User:     0   Group:     0"), "{st}");
        assert!(img.stat("/sparse").contains("Size: 100003"));
        // the existing file keeps its mode
        assert!(img.stat("/etc/hostname").contains("Mode:  0644"));
    }
}

#[test]
fn write_with_truncate_replaces_contents() {
    for b in BLOCKS {
        let long = pattern(50_000, 1);
        let img = image("trunc-w", b, &[("/f", &long)], &[]);
        let mut w = img.writer();
        w.write("/f", 0, b"short", true, 0o644).unwrap();
        img.fsck();
        assert_eq!(img.cat("/f"), b"short");
        // append after the end
        w.write("/f", 5, b"+more", false, 0o644).unwrap();
        img.fsck();
        assert_eq!(img.cat("/f"), b"short+more");
    }
}

#[test]
fn five_mib_in_one_mib_chunks() {
    for b in BLOCKS {
        let img = image("big", b, &[("/d/", b"")], &[]);
        let mut w = img.writer();
        let data = pattern(5 << 20, b);
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            let n = w
                .write("/d/big.bin", (i as u64) << 20, chunk, false, 0o644)
                .unwrap();
            assert_eq!(n, chunk.len() as u64);
        }
        w.sync().unwrap();
        img.fsck();
        assert!(img.cat("/d/big.bin") == data, "5 MiB file differs ({b})");
    }
}

#[test]
fn mkdir_tree_and_errors() {
    for b in BLOCKS {
        let img = image("mkdir", b, &[("/file", b"x")], &[]);
        let mut w = img.writer();
        w.mkdir("/a", 0o755).unwrap();
        w.mkdir("/a/b", 0o700).unwrap();
        w.mkdir("/a/b/c", 0o755).unwrap();
        w.write("/a/b/c/leaf", 0, b"leaf", false, 0o644).unwrap();
        assert_eq!(kind(w.mkdir("/a", 0o755)), ErrorKind::AlreadyExists);
        assert_eq!(kind(w.mkdir("/file", 0o755)), ErrorKind::AlreadyExists);
        assert_eq!(kind(w.mkdir("/missing/x", 0o755)), ErrorKind::NotFound);
        assert_eq!(kind(w.mkdir("/file/x", 0o755)), ErrorKind::NotADirectory);
        assert_eq!(kind(w.mkdir("/", 0o755)), ErrorKind::InvalidArgument);
        img.fsck();
        assert_eq!(img.cat("/a/b/c/leaf"), b"leaf");
        let st = img.stat("/a/b");
        assert!(
            st.contains("Type: directory") && st.contains("Mode:  0700"),
            "{st}"
        );
        assert!(img.stat("/a").contains("Links: 3"));
        assert_eq!(img.ls("/a"), vec!["b"]);
    }
}

#[test]
fn unlink_and_rmdir() {
    for b in BLOCKS {
        let big = pattern(300_000, 3);
        let img = image(
            "rm",
            b,
            &[
                ("/f", b"small"),
                ("/big", &big),
                ("/l", b"->f"),
                ("/full/inner", b"x"),
                ("/empty/", b""),
            ],
            &[],
        );
        let mut w = img.writer();
        w.unlink("/f").unwrap();
        w.unlink("/big").unwrap();
        w.unlink("/l").unwrap();
        assert_eq!(kind(w.unlink("/f")), ErrorKind::NotFound);
        assert_eq!(kind(w.unlink("/empty")), ErrorKind::IsADirectory);
        assert_eq!(kind(w.rmdir("/full")), ErrorKind::NotEmpty);
        assert_eq!(kind(w.rmdir("/full/inner")), ErrorKind::NotADirectory);
        w.rmdir("/empty").unwrap();
        assert_eq!(kind(w.rmdir("/empty")), ErrorKind::NotFound);
        img.fsck();
        for p in ["/f", "/big", "/l", "/empty"] {
            assert!(!img.exists(p), "{p} still exists");
        }
        assert_eq!(img.cat("/full/inner"), b"x");
        // rm -r by hand
        w.unlink("/full/inner").unwrap();
        w.rmdir("/full").unwrap();
        img.fsck();
        assert!(!img.exists("/full"));
    }
}

#[test]
fn rename_cases() {
    for b in BLOCKS {
        let img = image(
            "mv",
            b,
            &[
                ("/a", b"A"),
                ("/b", b"B"),
                ("/d1/x", b"X"),
                ("/d2/", b""),
                ("/tree/sub/leaf", b"L"),
            ],
            &[],
        );
        let mut w = img.writer();
        w.rename("/a", "/a2").unwrap(); // same dir
        w.rename("/d1/x", "/d2/y").unwrap(); // across dirs
        w.rename("/a2", "/b").unwrap(); // replaces
        w.rename("/tree", "/d2/tree").unwrap(); // directory across dirs
        assert_eq!(
            kind(w.rename("/d2/tree", "/d2/tree/sub/t")),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(w.rename("/nope", "/x")), ErrorKind::NotFound);
        assert_eq!(kind(w.rename("/b", "/d1")), ErrorKind::IsADirectory);
        img.fsck();
        assert!(!img.exists("/a") && !img.exists("/a2") && !img.exists("/d1/x"));
        assert_eq!(img.cat("/b"), b"A");
        assert_eq!(img.cat("/d2/y"), b"X");
        assert_eq!(img.cat("/d2/tree/sub/leaf"), b"L");
        assert!(img.stat("/d2").contains("Links: 3"));
        assert!(img.stat("/").contains("Links: 5"), "{}", img.stat("/")); // ., .., lost+found, d1, d2
    }
}

#[test]
fn chmod_keeps_type() {
    for b in BLOCKS {
        let img = image("chmod", b, &[("/f", b"x"), ("/d/", b"")], &[]);
        let mut w = img.writer();
        w.chmod("/f", 0o4750).unwrap();
        w.chmod("/d", 0o700).unwrap();
        // a type in the mode argument is ignored
        w.chmod("/f", 0o100_600).unwrap();
        img.fsck();
        let st = img.stat("/f");
        assert!(
            st.contains("Type: regular") && st.contains("Mode:  0600"),
            "{st}"
        );
        let st = img.stat("/d");
        assert!(
            st.contains("Type: directory") && st.contains("Mode:  0700"),
            "{st}"
        );
        assert_eq!(kind(w.chmod("/none", 0o600)), ErrorKind::NotFound);
    }
}

#[test]
fn fast_and_slow_symlinks() {
    for b in BLOCKS {
        let img = image("ln", b, &[("/target", b"T"), ("/dir/", b"")], &[]);
        let mut w = img.writer();
        let slow = format!("/{}", "s".repeat(300));
        w.symlink("target", "/fast").unwrap();
        w.symlink(&slow, "/dir/slow").unwrap();
        assert_eq!(kind(w.symlink("x", "/fast")), ErrorKind::AlreadyExists);
        // writing through a symlink writes its target
        w.write("/fast", 1, b"2", false, 0o644).unwrap();
        img.fsck();
        let st = img.stat("/fast");
        assert!(st.contains("Type: symlink"), "{st}");
        assert!(st.contains("Fast link dest: \"target\""), "{st}");
        let st = img.stat("/dir/slow");
        assert!(
            st.contains("Type: symlink") && st.contains("Size: 301"),
            "{st}"
        );
        assert_eq!(img.cat("/dir/slow"), slow.as_bytes());
        assert_eq!(img.cat("/target"), b"T2");
    }
}

#[test]
fn truncate_down_and_up() {
    for b in BLOCKS {
        let data = pattern(200_000, 7);
        let img = image("truncate", b, &[("/f", &data)], &[]);
        let mut w = img.writer();
        w.truncate("/f", 5000).unwrap();
        img.fsck();
        assert_eq!(img.cat("/f"), &data[..5000]);
        w.truncate("/f", 70_000).unwrap();
        img.fsck();
        let mut want = data[..5000].to_vec();
        want.resize(70_000, 0);
        assert_eq!(img.cat("/f"), want);
        w.truncate("/f", 0).unwrap();
        img.fsck();
        assert!(img.cat("/f").is_empty());
        assert_eq!(kind(w.truncate("/", 0)), ErrorKind::IsADirectory);
    }
}

#[test]
fn htree_directory() {
    let names: Vec<String> = (0..2000)
        .map(|i| format!("/many/file_with_a_long_name_{i}"))
        .collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    for b in BLOCKS {
        let img = image("htree", b, &files, &[]);
        // mkfs -d writes linear directories; e2fsck -D indexes them.
        let st = Command::new("e2fsck")
            .arg("-fyD")
            .arg(&img.path)
            .output()
            .unwrap();
        assert!(st.status.code().unwrap_or(8) < 4, "e2fsck -fyD failed");
        img.disk.borrow_mut().data = std::fs::read(&img.path).unwrap();
        let htree = String::from_utf8_lossy(&img.debugfs("htree /many")).into_owned();
        assert!(htree.contains("Root node dump"), "not indexed: {htree}");

        let mut w = img.writer();
        for i in 0..300 {
            w.write(
                &format!("/many/new_{i}"),
                0,
                format!("{i}").as_bytes(),
                false,
                0o644,
            )
            .unwrap();
        }
        for i in (0..2000).step_by(3) {
            w.unlink(&format!("/many/file_with_a_long_name_{i}"))
                .unwrap();
        }
        w.rename("/many/file_with_a_long_name_1", "/many/renamed")
            .unwrap();
        w.mkdir("/many/subdir", 0o755).unwrap();
        // directories moved into, out of and below an indexed directory
        w.mkdir("/top", 0o755).unwrap();
        w.rename("/top", "/many/subdir/top").unwrap();
        w.rename("/many/subdir", "/sub2").unwrap();
        w.mkdir("/many/d2", 0o755).unwrap();
        assert_eq!(
            kind(w.rename("/many", "/many/d2/x")),
            ErrorKind::InvalidArgument
        );
        w.rename("/many/d2", "/many/d3").unwrap();
        img.fsck();
        assert!(img.stat("/sub2/top").contains("Type: directory"));
        assert_eq!(img.cat("/many/new_299"), b"299");
        assert_eq!(img.cat("/many/renamed"), b"x");
        assert!(!img.exists("/many/file_with_a_long_name_0"));
        assert!(img.exists("/many/file_with_a_long_name_2"));
        let htree = String::from_utf8_lossy(&img.debugfs("htree /many")).into_owned();
        assert!(htree.contains("Root node dump"), "index lost");
    }
}

#[test]
fn intermediate_symlinks_and_dotdot() {
    let img = image(
        "paths",
        4096,
        &[
            ("/usr/lib/x", b"x"),
            ("/lib", b"->usr/lib"),
            ("/abs", b"->/usr"),
        ],
        &[],
    );
    let mut w = img.writer();
    w.write("/lib/new", 0, b"via-link", false, 0o644).unwrap();
    w.write("/abs/lib/../lib/./n2", 0, b"n2", false, 0o644)
        .unwrap();
    w.mkdir("/lib/sub", 0o755).unwrap();
    img.fsck();
    assert_eq!(img.cat("/usr/lib/new"), b"via-link");
    assert_eq!(img.cat("/usr/lib/n2"), b"n2");
    assert!(img.stat("/usr/lib/sub").contains("Type: directory"));
    // a symlink loop is refused
    w.symlink("loop2", "/loop1").unwrap();
    w.symlink("loop1", "/loop2").unwrap();
    assert_eq!(
        kind(w.write("/loop1/x", 0, b"", false, 0o644)),
        ErrorKind::Loop
    );
    assert_eq!(
        kind(w.write("relative", 0, b"", false, 0o644)),
        ErrorKind::InvalidArgument
    );
    img.fsck();
}

#[test]
fn unsupported_features_are_refused_without_writing() {
    for (opts, feature) in [
        (&["-O", "inline_data"][..], "inline_data"),
        (&["-O", "^extent,^64bit"][..], "extent"),
        (&["-O", "quota"][..], "quota"),
        (&["-O", "orphan_file"][..], "orphan_file"),
        (&["-O", "bigalloc", "-C", "16384"][..], "bigalloc"),
    ] {
        let img = image("unsup", 4096, &[("/f", b"x")], opts);
        let before = img.disk.borrow().data.clone();
        let e = Ext4Writer::open(img.dev()).err().expect("refused");
        assert_eq!(e.kind, ErrorKind::Unsupported, "{opts:?}: {e}");
        assert!(e.message.contains(feature), "{opts:?}: {e}");
        assert!(mount_rw_supported(&img.dev()).is_err());
        assert!(img.disk.borrow().data == before, "{opts:?}: image changed");
    }
}

#[test]
fn read_only_device_and_bad_superblock() {
    let img = image("ro", 1024, &[("/f", b"x")], &[]);
    let data = img.disk.borrow().data.clone();
    let ro: SharedDevice = Rc::new(RefCell::new(MemDisk::new(data.clone(), true)));
    assert_eq!(kind(Ext4Writer::open(ro)), ErrorKind::ReadOnly);

    let mut bad = data.clone();
    bad[1024 + 0x38] ^= 0xff; // magic
    let dev: SharedDevice = Rc::new(RefCell::new(MemDisk::new(bad, false)));
    assert_eq!(kind(Ext4Writer::open(dev)), ErrorKind::Corrupt);

    let mut bad = data.clone();
    bad[1024 + 0x20] ^= 0x40; // blocks per group, caught by the checksum
    let dev: SharedDevice = Rc::new(RefCell::new(MemDisk::new(bad, false)));
    assert_eq!(kind(Ext4Writer::open(dev)), ErrorKind::Corrupt);

    let small: SharedDevice = Rc::new(RefCell::new(MemDisk::new(vec![0; 1500], false)));
    assert_eq!(kind(Ext4Writer::open(small)), ErrorKind::Corrupt);
    // nothing to unmount: a device that is fine stays byte-identical after open
    let dev = img.dev();
    Ext4Writer::open(dev.clone()).unwrap();
    assert!(img.disk.borrow().data == data);
    let _ = dev.borrow().size();
}

#[test]
fn uninitialised_groups_get_used() {
    // 64 MiB with 1 KiB blocks: 8 groups, most flagged INODE_UNINIT / BLOCK_UNINIT.
    let img = image_sized("uninit", 1024, &[("/d/", b"")], &[], "64M");
    let mut w = img.writer();
    let data = pattern(20 << 20, 9);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        w.write("/d/f", (i as u64) << 20, chunk, false, 0o644)
            .unwrap();
    }
    img.fsck();
    // enough directories to spread inodes over several groups
    for i in 0..40 {
        w.mkdir(&format!("/d{i}"), 0o755).unwrap();
        w.write(&format!("/d{i}/f"), 0, b"x", false, 0o644).unwrap();
    }
    img.fsck();
    assert!(img.cat("/d/f") == data);
    assert_eq!(img.cat("/d39/f"), b"x");
    w.unlink("/d/f").unwrap();
    img.fsck();
}

/// Deterministic bit flips in the metadata area of a small image: open and a few
/// writes must return errors, never panic. Counts panics and reports them.
#[test]
fn bit_flipped_images_do_not_panic() {
    let img = image(
        "flip",
        1024,
        &[
            ("/a/b/c", b"hello"),
            ("/big", &pattern(40_000, 5)),
            ("/l", b"->a/b"),
        ],
        &[],
    );
    let base = img.disk.borrow().data.clone();
    // Flip bits only inside blocks that hold something (metadata, directories, data).
    let used: Vec<usize> = base
        .chunks(1024)
        .enumerate()
        .filter(|(i, b)| *i > 0 && b.iter().any(|&x| x != 0))
        .map(|(i, _)| i)
        .collect();
    let opened = std::sync::Arc::new(AtomicU32::new(0));
    let mut seed = 0x1234_5678u32;
    let mut panics = Vec::new();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for case in 0..300 {
        let mut data = base.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let block = used[seed as usize % used.len()];
            let byte = block * 1024 + (seed >> 10) as usize % 1024;
            data[byte] ^= 1 << (seed >> 28 & 7);
        }
        let opened = opened.clone();
        let r = std::panic::catch_unwind(move || {
            let dev: SharedDevice = Rc::new(RefCell::new(MemDisk::new(data, false)));
            if let Ok(mut w) = Ext4Writer::open(dev) {
                opened.fetch_add(1, Ordering::SeqCst);
                let _ = w.write("/a/b/new", 0, b"data", false, 0o644);
                let _ = w.write("/big", 1000, b"over", false, 0o644);
                let _ = w.mkdir("/a/d", 0o755);
                let _ = w.rename("/a/b/c", "/c2");
                let _ = w.unlink("/l");
                let _ = w.truncate("/big", 10);
            }
        });
        if r.is_err() {
            panics.push(case);
        }
    }
    std::panic::set_hook(prev);
    eprintln!(
        "bit flips: {} of 300 images opened for writing, {} panics",
        opened.load(Ordering::SeqCst),
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "rsext4 panicked on flipped images: {panics:?}"
    );
}

#[test]
fn no_space_leaves_a_clean_filesystem() {
    for b in BLOCKS {
        let img = image("enospc", b, &[("/keep", b"keep")], &[]);
        let mut w = img.writer();
        let chunk = pattern(1 << 20, 11);
        let mut err = None;
        for i in 0..32u64 {
            if let Err(e) = w.write("/fill", i << 20, &chunk, false, 0o644) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("a 16 MiB filesystem cannot take 32 MiB");
        assert_eq!(e.kind, ErrorKind::NoSpace, "{e}");
        img.fsck();
        assert_eq!(img.cat("/keep"), b"keep");
        // fill the rest in small files, then ask for more metadata
        let mut n = 0;
        while w
            .write(&format!("/small{n}"), 0, &chunk[..4096], false, 0o644)
            .is_ok()
        {
            n += 1;
            assert!(n < 10_000);
        }
        img.fsck();
        for r in [
            w.mkdir("/newdir", 0o755),
            w.symlink(&"t".repeat(200), "/slowlink"),
            w.write("/small0", 8192, &chunk[..8192], false, 0o644)
                .map(|_| ()),
        ] {
            if let Err(e) = r {
                assert_eq!(e.kind, ErrorKind::NoSpace, "{e}");
            }
            img.fsck();
        }
        // the filesystem stays usable: free the space and write again
        w.unlink("/fill").unwrap();
        w.write("/after", 0, b"ok", false, 0o644).unwrap();
        img.fsck();
        assert_eq!(img.cat("/after"), b"ok");
    }
}

/// The read side (`ext4-view`) re-opens the filesystem after every mutation: it must
/// see what was written, including in an htree directory and through a symlink.
#[test]
fn ext4_view_reads_what_was_written() {
    for b in BLOCKS {
        let img = image("view", b, &[("/etc/os-release", b"ID=test\n")], &[]);
        let mut w = img.writer();
        let big = pattern(3 << 20, 13);
        w.write("/etc/os-release", 0, b"ID=skiff\n", true, 0o644)
            .unwrap();
        w.mkdir("/var", 0o755).unwrap();
        w.write("/var/big", 0, &big, false, 0o600).unwrap();
        w.symlink("/var/big", "/link").unwrap();
        for i in 0..200 {
            w.write(&format!("/var/f{i}"), 0, b"f", false, 0o644)
                .unwrap();
        }
        w.rename("/var/f7", "/var/seven").unwrap();
        let view = ext4_view::Ext4::load(Box::new(img.disk.borrow().data.clone())).unwrap();
        assert_eq!(view.read("/etc/os-release").unwrap(), b"ID=skiff\n");
        assert!(view.read("/var/big").unwrap() == big);
        assert!(view.read("/link").unwrap() == big);
        assert_eq!(view.read("/var/seven").unwrap(), b"f");
        assert!(!view.exists("/var/f7").unwrap());
        let names = view.read_dir("/var").unwrap().count();
        assert_eq!(names, 2 + 201); // . and .., big, f0..f199 minus f7, seven
        img.fsck();
    }
}

/// Counts the device traffic of one call on a 1 GiB image (run with `--ignored
/// --nocapture`): the cost of mounting per call.
#[test]
#[ignore]
fn traffic_per_call() {
    struct Counting {
        inner: MemDisk,
        reads: u64,
        writes: u64,
        read_calls: u64,
    }
    impl crate::block::BlockDevice for Counting {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn readonly(&self) -> bool {
            false
        }
        fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), Error> {
            self.reads += b.len() as u64;
            self.read_calls += 1;
            self.inner.read_at(o, b)
        }
        fn write_at(&mut self, o: u64, b: &[u8]) -> Result<(), Error> {
            self.writes += b.len() as u64;
            self.inner.write_at(o, b)
        }
        fn flush(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }
    let img = image_sized("traffic", 4096, &[("/f", b"x")], &[], "1G");
    let data = img.disk.borrow().data.clone();
    let c = Rc::new(RefCell::new(Counting {
        inner: MemDisk::new(data, false),
        reads: 0,
        writes: 0,
        read_calls: 0,
    }));
    let mut w = Ext4Writer::open(c.clone()).unwrap();
    let chunk = pattern(1 << 20, 1);
    for (what, i) in [
        ("small write", 0u64),
        ("1 MiB write", 1),
        ("1 MiB write", 2),
    ] {
        {
            let mut c = c.borrow_mut();
            (c.reads, c.writes, c.read_calls) = (0, 0, 0);
        }
        let t = std::time::Instant::now();
        if i == 0 {
            w.write("/f", 0, b"y", false, 0o644).unwrap();
        } else {
            w.write("/big", i << 20, &chunk, false, 0o644).unwrap();
        }
        let c = c.borrow();
        eprintln!(
            "{what}: read {} KiB in {} calls, wrote {} KiB, {:?}",
            c.reads / 1024,
            c.read_calls,
            c.writes / 1024,
            t.elapsed()
        );
    }
}

/// Other layouts today's mke2fs can make: each gets the same sequence of calls and
/// must come out clean.
#[test]
fn feature_variants() {
    for opts in [
        &["-O", "^metadata_csum"][..],
        &["-O", "^metadata_csum,uninit_bg"][..],
        &["-O", "^has_journal"][..],
        &["-O", "^flex_bg"][..],
        &["-O", "^64bit"][..],
        &["-O", "^dir_index"][..],
        &["-I", "128"][..],
        &["-O", "metadata_csum_seed"][..],
    ] {
        for b in BLOCKS {
            let img = image("variant", b, &[("/d/f", b"old"), ("/gone", b"x")], opts);
            let mut w = img.writer();
            let data = pattern(600_000, b);
            w.write("/d/f", 0, &data, true, 0o644).unwrap();
            w.mkdir("/d/sub", 0o750).unwrap();
            for i in 0..100 {
                w.write(&format!("/d/sub/n{i}"), 0, b"n", false, 0o644)
                    .unwrap();
            }
            w.symlink(&"p".repeat(100), "/d/slow").unwrap();
            w.rename("/d/f", "/d/sub/f").unwrap();
            w.unlink("/gone").unwrap();
            w.truncate("/d/sub/f", 1000).unwrap();
            w.chmod("/d/sub", 0o700).unwrap();
            img.fsck();
            assert_eq!(img.cat("/d/sub/f"), &data[..1000], "{opts:?} {b}");
            assert!(img.stat("/d/sub").contains("Mode:  0700"), "{opts:?} {b}");
        }
    }
}

/// An image whose journal holds a committed transaction (made with debugfs `jo/jw/jc`):
/// the writer replays it before writing, and the result is clean.
#[test]
fn needs_recovery_is_replayed() {
    // plain journal, and with journal checksums (v3, as Linux writes with metadata_csum)
    for open in ["jo", "jo -c"] {
        let img = image("recover", 4096, &[("/f", b"hello\n")], &[]);
        img.save();
        let bmap = String::from_utf8_lossy(&img.debugfs("bmap /f 0"))
            .trim()
            .to_string();
        let blk = img.dir.join("blk");
        let mut content = b"JOURNALED\n".to_vec();
        content.resize(4096, 0);
        std::fs::write(&blk, &content).unwrap();
        let script = img.dir.join("script");
        std::fs::write(
            &script,
            format!("{open}\njw -b {bmap} {}\njc\n", blk.display()),
        )
        .unwrap();
        let st = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(&img.path)
            .output()
            .unwrap();
        assert!(st.status.success());
        img.disk.borrow_mut().data = std::fs::read(&img.path).unwrap();
        let features = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&img.path)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&features.stdout).contains("needs_recovery"));

        let mut w = img.writer();
        w.write("/new", 0, b"new", false, 0o644).unwrap();
        img.fsck();
        assert_eq!(img.cat("/f"), b"JOURNA"); // replayed block, old size
        assert_eq!(img.cat("/new"), b"new");
    }
}

#[test]
fn chown_times_and_xattrs() {
    for b in BLOCKS {
        let img = image(
            "owners",
            b,
            &[("/home/u/.ssh/", b""), ("/f", b"x"), ("/l", b"->f")],
            &["-I", "256"],
        );
        let mut w = img.writer();
        w.chown("/home/u/.ssh", 1000, 1001).unwrap();
        // chown does not follow a final symlink (lchown).
        w.chown("/l", 7, 8).unwrap();
        w.set_times("/f", 1_700_000_000, 1_600_000_000).unwrap();
        w.set_xattr("/f", "security.selinux", b"system_u:object_r:etc_t:s0\0")
            .unwrap();
        w.set_xattr("/f", "user.note", b"hello").unwrap();
        // Replacing keeps one copy.
        w.set_xattr("/f", "user.note", b"bye").unwrap();
        img.fsck();
        let st = img.stat("/home/u/.ssh");
        assert!(
            st.contains("User:  1000") && st.contains("Group:  1001"),
            "{st}"
        );
        let st = img.stat("/l");
        assert!(
            st.contains("User:     7") && st.contains("Group:     8"),
            "{st}"
        );
        let st = img.stat("/f");
        assert!(
            st.contains("User:     0"),
            "the link's target changed owner: {st}"
        );
        // debugfs prints times as hex seconds and as dates.
        assert!(
            st.contains("0x6553f100") && st.contains("0x5f5e1000"),
            "{st}"
        );
        let ea = String::from_utf8_lossy(&img.debugfs("ea_list /f")).into_owned();
        assert!(
            ea.contains("security.selinux") && ea.contains("user.note") && ea.contains("bye"),
            "{ea}"
        );
        assert!(!ea.contains("hello"), "{ea}");
        let mut names = w.list_xattrs("/f").unwrap();
        names.sort();
        assert_eq!(names, ["security.selinux", "user.note"]);
        assert_eq!(w.get_xattr("/f", "user.note").unwrap(), b"bye");
        w.remove_xattr("/f", "user.note").unwrap();
        assert_eq!(kind(w.get_xattr("/f", "user.note")), ErrorKind::NotFound);
        assert_eq!(kind(w.chown("/none", 1, 1)), ErrorKind::NotFound);
        assert_eq!(
            kind(w.set_xattr("/f", "bogus.x", b"1")),
            ErrorKind::InvalidArgument
        );
        img.fsck();
        let ea = String::from_utf8_lossy(&img.debugfs("ea_list /f")).into_owned();
        assert!(
            ea.contains("security.selinux") && !ea.contains("user.note"),
            "{ea}"
        );
    }
}
