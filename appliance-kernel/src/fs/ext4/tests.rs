//! Read-side tests against images built by `mkfs.ext4 -d` (1 KiB and 4 KiB blocks, the
//! default ext4 features of today's e2fsprogs), checked against the source tree and
//! `debugfs`/`dumpe2fs`.

use super::*;
use crate::block::{MemDisk, shared};
use crate::part::testutil::{TempDir, TempImage, run};
use std::os::unix::fs::{PermissionsExt, symlink};

const FILES: usize = 3000;
const BIG: usize = 20 << 20;
const SPARSE_OFFSET: u64 = 30 << 20;
const SLOW_TARGET: &str =
    "/a/rather/long/symlink/target/that/does/not/fit/in/the/inode/itself/0123456789";

fn pseudo_random(len: usize, mut x: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The source tree every image is made from.
fn source() -> TempDir {
    let d = TempDir::new("ext4-src");
    let p = &d.0;
    std::fs::create_dir(p.join("many")).unwrap();
    for i in 0..FILES {
        std::fs::write(
            p.join(format!("many/file-{i:05}")),
            format!("content {i}\n"),
        )
        .unwrap();
    }
    std::fs::write(p.join("big"), pseudo_random(BIG, 0x9E37_79B9_7F4A_7C15)).unwrap();
    let f = std::fs::File::create(p.join("sparse")).unwrap();
    f.set_len(50 << 20).unwrap();
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"island in the hole", SPARSE_OFFSET)
            .unwrap();
    }
    symlink("many/file-00001", p.join("fast")).unwrap();
    symlink(SLOW_TARGET, p.join("slow")).unwrap();
    symlink("loop-b", p.join("loop-a")).unwrap();
    symlink("loop-a", p.join("loop-b")).unwrap();
    std::fs::create_dir(p.join("etc")).unwrap();
    std::fs::write(p.join("etc/secret"), b"s3cret").unwrap();
    std::os::unix::fs::chown(p.join("etc/secret"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(
        p.join("etc/secret"),
        std::fs::Permissions::from_mode(0o4750),
    )
    .unwrap();
    std::fs::set_permissions(p.join("etc"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

fn make_image(src: &TempDir, block: u32) -> TempImage {
    let img = TempImage::new("ext4", 96 << 20);
    let b = block.to_string();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            &b,
            "-L",
            "skiff-test",
            "-d",
            src.path(),
            img.path(),
        ],
        None,
    );
    // mkfs.ext4 -d writes linear directories; e2fsck -D re-indexes the big one into an
    // htree, as the kernel would have built it. Exit status 1 means "fixed/optimised".
    let st = std::process::Command::new("e2fsck")
        .args(["-fyD", img.path()])
        .output()
        .unwrap();
    assert!(
        st.status.code().is_some_and(|c| c <= 1),
        "e2fsck -D: {st:?}"
    );
    img
}

/// `Key: value` pairs of `debugfs -R 'stat PATH'`, one line may hold several.
fn debugfs_stat(img: &TempImage, path: &str) -> String {
    run(
        "debugfs",
        &["-R", &format!("stat {path}"), img.path()],
        None,
    )
}

fn field_after<'a>(text: &'a str, key: &str) -> &'a str {
    let i = text
        .find(key)
        .unwrap_or_else(|| panic!("{key} not in {text}"))
        + key.len();
    text[i..].split_whitespace().next().unwrap()
}

fn check_image(src: &TempDir, img: &TempImage) {
    let disk = shared(MemDisk::new(std::fs::read(&img.0).unwrap(), true));
    let mut fs = mount(disk, true).unwrap();
    assert!(fs.readonly());
    assert_eq!(fs.fstype(), "ext4");

    // Root listing: no . and .., names and types as in the source.
    let mut root: Vec<String> = fs
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    root.sort();
    let mut want: Vec<String> = std::fs::read_dir(&src.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .chain(["lost+found".to_string()])
        .collect();
    want.sort();
    assert_eq!(root, want);

    // The htree directory: every entry, with its size and content.
    let many = fs.read_dir("/many").unwrap();
    assert_eq!(many.len(), FILES);
    let mut names: Vec<&str> = many.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(*n, format!("file-{i:05}"));
    }
    for e in &many {
        assert_eq!(e.stat.file_type, FileType::Regular);
        let i: usize = e.name[5..].parse().unwrap();
        assert_eq!(e.stat.size, format!("content {i}\n").len() as u64);
    }
    assert_eq!(
        fs.read("/many/file-02999", 0, 100).unwrap(),
        b"content 2999\n"
    );
    let dbg = debugfs_stat(img, "/many");
    assert!(
        dbg.contains("Flags: 0x81000") || dbg.contains("Flags: 0x1000"),
        "not htree: {dbg}"
    );

    // Symlinks: fast (in the inode) and slow (in a block), stat follows, lstat does not.
    assert_eq!(fs.read_link("/fast").unwrap(), "many/file-00001");
    assert_eq!(fs.read_link("/slow").unwrap(), SLOW_TARGET);
    assert_eq!(
        fs.stat("/fast", false).unwrap().file_type,
        FileType::Symlink
    );
    assert_eq!(fs.stat("/fast", false).unwrap().size, 15);
    assert_eq!(
        fs.stat("/slow", false).unwrap().size,
        SLOW_TARGET.len() as u64
    );
    assert_eq!(fs.stat("/fast", true).unwrap().file_type, FileType::Regular);
    assert_eq!(fs.read("/fast", 0, 100).unwrap(), b"content 1\n");
    assert_eq!(
        fs.stat("/slow", true).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(fs.stat("/loop-a", true).unwrap_err().kind, ErrorKind::Loop);
    assert_eq!(
        fs.read_link("/big").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );

    // Sparse file: holes read as zeros, the island where it was written.
    let st = fs.stat("/sparse", true).unwrap();
    assert_eq!(st.size, 50 << 20);
    let around = fs.read("/sparse", SPARSE_OFFSET - 4, 30).unwrap();
    assert_eq!(&around[..4], &[0; 4]);
    assert_eq!(&around[4..22], b"island in the hole");
    assert_eq!(&around[22..], &[0; 8]);
    assert!(
        fs.read("/sparse", 1 << 20, 4096)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(fs.read("/sparse", 50 << 20, 10).unwrap(), b"");
    assert_eq!(fs.read("/sparse", (50 << 20) - 3, 10).unwrap(), [0; 3]);

    // The big file in 1 MiB chunks (sequential: reuses the open file).
    let want_big = std::fs::read(src.0.join("big")).unwrap();
    let mut got = Vec::new();
    loop {
        let chunk = fs.read("/big", got.len() as u64, 1 << 20).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 1 << 20);
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got.len(), want_big.len());
    assert!(got == want_big, "big file content differs");
    // Random access, backwards too.
    assert_eq!(
        fs.read("/big", 12345, 777).unwrap(),
        &want_big[12345..12345 + 777]
    );
    assert_eq!(fs.read("/big", 7, 5).unwrap(), &want_big[7..12]);

    // Attributes against debugfs.
    for path in ["/etc/secret", "/etc", "/big", "/slow"] {
        let st = fs.stat(path, false).unwrap();
        let d = debugfs_stat(img, path);
        let mode = u32::from_str_radix(field_after(&d, "Mode:"), 8).unwrap();
        assert_eq!(st.mode, mode & 0o7777, "{path}");
        assert_eq!(st.uid.to_string(), field_after(&d, "User:"), "{path}");
        assert_eq!(st.gid.to_string(), field_after(&d, "Group:"), "{path}");
        assert_eq!(st.size.to_string(), field_after(&d, "Size:"), "{path}");
        let mtime =
            i64::from_str_radix(field_after(&d, "mtime: 0x").split(':').next().unwrap(), 16)
                .unwrap();
        assert_eq!(st.mtime, mtime, "{path}");
        let ctime =
            i64::from_str_radix(field_after(&d, "ctime: 0x").split(':').next().unwrap(), 16)
                .unwrap();
        assert_eq!(st.ctime, ctime, "{path}");
    }
    let secret = fs.stat("/etc/secret", true).unwrap();
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o4750, 1234, 5678));
    assert_eq!(fs.stat("/etc", true).unwrap().mode, 0o1777);
    assert_eq!(
        fs.stat("/etc", true).unwrap().file_type,
        FileType::Directory
    );

    // Errors.
    assert_eq!(
        fs.stat("/nope", true).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        fs.read_dir("/big").unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.read_dir("/big/x").unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.read("/etc", 0, 10).unwrap_err().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.read("/nope", 0, 10).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        fs.write("/x", 0, b"x", false, 0o644).unwrap_err().kind,
        ErrorKind::ReadOnly
    );

    // statvfs against dumpe2fs.
    let h = run("dumpe2fs", &["-h", img.path()], None);
    let num = |k: &str| -> u64 {
        let l = h.lines().find(|l| l.starts_with(k)).unwrap();
        l[k.len()..].trim().parse().unwrap()
    };
    let v = fs.statvfs().unwrap();
    assert_eq!(v.block_size, num("Block size:"));
    assert_eq!(v.blocks, num("Block count:"));
    assert_eq!(v.blocks_free, num("Free blocks:"));
    assert_eq!(
        v.blocks_avail,
        num("Free blocks:") - num("Reserved block count:")
    );
    assert_eq!(v.files, num("Inode count:"));
    assert_eq!(v.files_free, num("Free inodes:"));
    assert_eq!(v.name_max, 255);
}

#[test]
fn read_1k_and_4k_images() {
    let src = source();
    for block in [1024, 4096] {
        let img = make_image(&src, block);
        let h = run("dumpe2fs", &["-h", img.path()], None);
        for feature in ["extent", "64bit", "flex_bg", "metadata_csum", "dir_index"] {
            assert!(h.contains(feature), "mkfs did not enable {feature}");
        }
        check_image(&src, &img);
    }
}

#[test]
fn corrupt_and_truncated_images() {
    let src = TempDir::new("ext4-small-src");
    std::fs::write(src.0.join("f"), vec![7u8; 100_000]).unwrap();
    let img = make_image(&src, 1024);
    let data = std::fs::read(&img.0).unwrap();

    // Bad magic.
    let mut bad = data.clone();
    bad[1024 + 56] ^= 0xFF;
    let e = mount(shared(MemDisk::new(bad, true)), true).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");

    // An unknown incompatible feature is refused, naming it.
    let mut bad = data.clone();
    bad[1024 + 0x60 + 3] |= 0x80;
    // Fix the superblock checksum so the feature check is what fails.
    let crc = crc32c(&bad[1024..1024 + 0x3FC]);
    bad[1024 + 0x3FC..1024 + 0x400].copy_from_slice(&crc.to_le_bytes());
    let e = mount(shared(MemDisk::new(bad, true)), true).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert!(e.message.contains("feature"), "{e}");

    // Truncated: reading past the device is Corrupt, never a panic.
    for len in [0usize, 1000, 2048, 4096, 64 << 10, 1 << 20] {
        let disk = shared(MemDisk::new(data[..len].to_vec(), true));
        if let Ok(mut fs) = mount(disk, true) {
            let _ = fs.read_dir("/");
            let _ = fs.read("/f", 0, 100_000);
        }
    }
    let disk = shared(MemDisk::new(data[..2 << 20].to_vec(), true));
    let mut fs = mount(disk, true).unwrap();
    let _ = fs.read_dir("/");
    let _ = fs.read("/f", 0, 100_000);
}

/// CRC32C (Castagnoli), ext4's metadata checksum: `!crc32c_raw(!0, data)` as the
/// superblock checksum stores it.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0x82F6_3B78 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    c
}

/// Read-write mount: mutations go to the writer and the read side sees them at once;
/// the image stays clean for `e2fsck -fn` and the host tools read back the changes.
#[test]
fn read_write_delegation() {
    let src = TempDir::new("ext4-rw-src");
    std::fs::write(src.0.join("old"), b"old contents").unwrap();
    let img = make_image(&src, 4096);
    let disk = shared(MemDisk::new(std::fs::read(&img.0).unwrap(), false));

    // A read-only device stays read-only whatever the caller asks.
    let ro = shared(MemDisk::new(std::fs::read(&img.0).unwrap(), true));
    assert!(mount(ro, false).unwrap().readonly());

    let mut fs = mount(disk.clone(), false).unwrap();
    assert!(!fs.readonly());
    // Open a file for reading first: the cached handle must not survive a mutation.
    assert_eq!(fs.read("/old", 0, 3).unwrap(), b"old");
    fs.write("/old", 0, b"NEW", false, 0o644).unwrap();
    assert_eq!(fs.read("/old", 0, 100).unwrap(), b"NEW contents");
    assert_eq!(fs.write("/new", 0, b"hello", true, 0o600).unwrap(), 5);
    assert_eq!(fs.stat("/new", true).unwrap().mode, 0o600);
    fs.mkdir("/dir", 0o755).unwrap();
    fs.symlink("../new", "/dir/link").unwrap();
    assert_eq!(fs.read_link("/dir/link").unwrap(), "../new");
    assert_eq!(fs.read("/dir/link", 0, 10).unwrap(), b"hello");
    fs.rename("/new", "/dir/moved").unwrap();
    assert_eq!(fs.stat("/new", true).unwrap_err().kind, ErrorKind::NotFound);
    fs.chmod("/dir/moved", 0o640).unwrap();
    fs.truncate("/dir/moved", 2).unwrap();
    assert_eq!(fs.read("/dir/moved", 0, 10).unwrap(), b"he");
    fs.unlink("/old").unwrap();
    assert_eq!(
        fs.read("/old", 0, 10).unwrap_err().kind,
        ErrorKind::NotFound
    );
    fs.mkdir("/gone", 0o700).unwrap();
    fs.rmdir("/gone").unwrap();
    // A failing mutation leaves the view usable.
    assert_eq!(fs.rmdir("/dir").unwrap_err().kind, ErrorKind::NotEmpty);
    assert_eq!(
        fs.stat("/dir", true).unwrap().file_type,
        FileType::Directory
    );
    fs.sync().unwrap();
    drop(fs);

    let out = TempImage::new("ext4-rw-out", 0);
    {
        let d = disk.borrow();
        let mut bytes = vec![0u8; d.size() as usize];
        drop(d);
        disk.borrow_mut().read_at(0, &mut bytes).unwrap();
        std::fs::write(&out.0, bytes).unwrap();
    }
    run("e2fsck", &["-fn", out.path()], None);
    let cat = run("debugfs", &["-R", "cat /dir/moved", out.path()], None);
    assert_eq!(cat, "he");
    let d = debugfs_stat(&out, "/dir/moved");
    assert_eq!(field_after(&d, "Mode:"), "0640");
}

/// Lists and reads everything below `path`, bounded in depth and entry count (a corrupt
/// image may contain directory loops). Errors are fine; panics are not.
fn walk(fs: &mut dyn FileSystem, path: &str, depth: u32, budget: &mut u32) {
    if depth > 16 || *budget == 0 {
        return;
    }
    let Ok(entries) = fs.read_dir(path) else {
        return;
    };
    for e in entries {
        *budget = budget.saturating_sub(1);
        if *budget == 0 {
            return;
        }
        let p = if path == "/" {
            format!("/{}", e.name)
        } else {
            format!("{path}/{}", e.name)
        };
        let _ = fs.stat(&p, true);
        match e.stat.file_type {
            FileType::Directory => walk(fs, &p, depth + 1, budget),
            FileType::Symlink => {
                let _ = fs.read_link(&p);
            }
            _ => {
                let _ = fs.read(&p, 0, 1 << 16);
            }
        }
    }
    let _ = fs.statvfs();
}

/// 240 deterministic bit-flipped and truncated variants of a small image: every one is
/// mounted, listed and read recursively without a panic.
#[test]
fn bit_flipped_images_never_panic() {
    let src = TempDir::new("ext4-flip-src");
    std::fs::create_dir(src.0.join("d")).unwrap();
    for i in 0..40 {
        std::fs::write(src.0.join(format!("d/f{i}")), vec![i as u8; i * 300]).unwrap();
    }
    symlink("d/f1", src.0.join("s")).unwrap();
    let img = TempImage::new("ext4-flip", 1 << 20);
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "1024",
            "-N",
            "64",
            "-d",
            src.path(),
            img.path(),
        ],
        None,
    );
    let data = std::fs::read(&img.0).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut mounted, mut refused) = (0, 0);
    // Metadata lives in the first ~100 KiB: aim most flips there.
    for round in 0..240u32 {
        let mut v = data.clone();
        if round % 12 == 11 {
            v.truncate((next() % data.len() as u64) as usize);
        } else {
            let span = if round % 3 == 0 { v.len() } else { 96 << 10 };
            for _ in 0..1 + round % 8 {
                let at = (next() % span as u64) as usize;
                v[at] ^= 1 << (next() % 8);
            }
        }
        let disk = shared(MemDisk::new(v, true));
        match mount(disk, true) {
            Ok(mut fs) => {
                mounted += 1;
                let mut budget = 2000;
                walk(fs.as_mut(), "/", 0, &mut budget);
            }
            Err(e) => {
                assert_ne!(e.kind, ErrorKind::Internal, "{e}");
                refused += 1;
            }
        }
    }
    // Both paths were exercised: damage that still mounts, and damage refused up front.
    eprintln!("bit flips: {mounted} mounted, {refused} refused");
    assert!(
        mounted >= 50 && refused >= 1,
        "{mounted} mounted, {refused} refused"
    );
}
