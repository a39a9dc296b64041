//! FAT tests against images built by mkfs.vfat and mtools, read back with mtools and
//! checked with `fsck.vfat -n` after every write.

use super::*;
use crate::block::{MemDisk, shared};
use crate::rpc::Appliance;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use wire::{Bytes, Reply, Request};

static N: AtomicUsize = AtomicUsize::new(0);

/// A unique temporary directory, removed on drop.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!(
            "skiff-fat-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.env("TZ", "UTC").output().expect("spawn tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random contents.
pub fn content(seed: u32, len: usize) -> Vec<u8> {
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

/// What the test images hold: (path, contents); `None` contents = directory.
fn tree() -> Vec<(&'static str, Option<Vec<u8>>)> {
    vec![
        (
            "/A Long File Name.txt",
            Some(b"hello, long names\n".to_vec()),
        ),
        ("/SHORT.TXT", Some(b"short".to_vec())),
        ("/empty", Some(vec![])),
        ("/Sub Dir", None),
        ("/Sub Dir/inner file.bin", Some(content(1, 10_000))),
        ("/Sub Dir/deeper", None),
        ("/Sub Dir/deeper/big.dat", Some(content(2, 150_000))),
        ("/lower.txt", Some(b"lower case short name".to_vec())),
    ]
}

/// Builds a FAT image of `kb` KiB with `mkfs.vfat -F bits` and fills it with [`tree`]
/// through mtools (mtimes preserved: every file is stamped 2021-03-04 05:06:08 UTC).
fn build(t: &Tmp, bits: u32, kb: u32) -> PathBuf {
    let img = t.0.join("fat.img");
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", "SKIFFTEST", "-i", "12345678", "-F"])
        .arg(bits.to_string())
        .arg(&img)
        .arg(kb.to_string()));
    fill(t, &img, "");
    img
}

fn fill(t: &Tmp, img: &Path, suffix: &str) {
    let target = format!("{}{suffix}", img.display());
    for (i, (p, c)) in tree().into_iter().enumerate() {
        match c {
            None => {
                run(Command::new("mmd")
                    .arg("-i")
                    .arg(&target)
                    .arg(format!("::{p}")));
            }
            Some(c) => {
                let src = t.0.join(format!("src{i}"));
                std::fs::write(&src, &c).unwrap();
                run(Command::new("touch")
                    .args(["-d", "2021-03-04 05:06:08 UTC"])
                    .arg(&src));
                run(Command::new("mcopy")
                    .args(["-m", "-i"])
                    .arg(&target)
                    .arg(&src)
                    .arg(format!("::{p}")));
            }
        }
    }
}

fn appliance(img: &Path, readonly: bool) -> (Appliance, SharedDevice) {
    let dev = shared(MemDisk::new(std::fs::read(img).unwrap(), readonly));
    let mut a = Appliance::new();
    a.set_disk(0, dev.clone());
    (a, dev)
}

fn mount(a: &mut Appliance, device: &str, readonly: bool) {
    a.handle(Request::Mount {
        device: device.to_string(),
        mountpoint: "/".to_string(),
        readonly,
        fstype: Some("vfat".to_string()),
    })
    .unwrap();
}

fn dump(dev: &SharedDevice) -> Vec<u8> {
    let size = dev.borrow().size() as usize;
    let mut v = vec![0u8; size];
    dev.borrow_mut().read_at(0, &mut v).unwrap();
    v
}

fn cat(a: &mut Appliance, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let r = a
            .handle(Request::Pread {
                path: path.to_string(),
                offset: out.len() as u64,
                len: 4096 + 17,
            })
            .unwrap();
        let Reply::Data(Bytes(d)) = r else { panic!() };
        if d.is_empty() {
            return out;
        }
        out.extend(d);
    }
}

fn stat(a: &mut Appliance, path: &str) -> Stat {
    match a.handle(Request::Stat {
        path: path.to_string(),
    }) {
        Ok(Reply::Stat(s)) => s,
        r => panic!("stat {path}: {r:?}"),
    }
}

fn mtype(img: &str, path: &str) -> Vec<u8> {
    let out = Command::new("mtype")
        .args(["-i", img])
        .arg(format!("::{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "mtype {path}: {out:?}");
    out.stdout
}

fn fsck_clean(img: &Path) {
    let out = Command::new("fsck.vfat")
        .arg("-n")
        .arg(img)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fsck.vfat -n reports problems:\n{text}"
    );
}

fn check_reads(bits: u32, kb: u32) {
    let t = Tmp::new(&format!("read{bits}"));
    let img = build(&t, bits, kb);
    let before = std::fs::read(&img).unwrap();
    let (mut a, dev) = appliance(&img, true);
    mount(&mut a, "/dev/sda", false);
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert!(m[0].readonly, "a read-only device gives a read-only mount");
    assert_eq!(m[0].fstype, "vfat");

    // find lists exactly the tree, depth first and sorted.
    let Reply::Names(names) = a
        .handle(Request::Find {
            path: "/".to_string(),
        })
        .unwrap()
    else {
        panic!()
    };
    let mut want: Vec<String> = tree()
        .iter()
        .map(|(p, _)| p.trim_start_matches('/').to_string())
        .collect();
    want.sort();
    assert_eq!(names, want);

    for (p, c) in tree() {
        let st = stat(&mut a, p);
        match c {
            Some(c) => {
                assert_eq!(cat(&mut a, p), c, "{p}");
                assert_eq!(mtype(img.to_str().unwrap(), p), c, "mtype {p}");
                assert_eq!(st.file_type, FileType::Regular);
                assert_eq!(st.size, c.len() as u64);
                assert_eq!(st.mode, 0o644);
                // 2021-03-04 05:06:08 UTC
                assert_eq!(st.mtime, 1_614_834_368, "{p}");
            }
            None => {
                assert_eq!(st.file_type, FileType::Directory);
                assert_eq!(st.mode, 0o755);
                assert!(
                    st.size > 0 && st.size.is_multiple_of(512),
                    "{p}: {}",
                    st.size
                );
            }
        }
        assert_eq!((st.uid, st.gid), (0, 0));
    }
    // Offsets, lengths and case-insensitive lookup.
    let r = a
        .handle(Request::Pread {
            path: "/sub dir/INNER FILE.BIN".to_string(),
            offset: 9_990,
            len: 100,
        })
        .unwrap();
    assert_eq!(r, Reply::Data(Bytes(content(1, 10_000)[9_990..].to_vec())));
    let r = a
        .handle(Request::Pread {
            path: "/Sub Dir/deeper/big.dat".to_string(),
            offset: 70_001,
            len: 3,
        })
        .unwrap();
    assert_eq!(
        r,
        Reply::Data(Bytes(content(2, 150_000)[70_001..70_004].to_vec()))
    );

    // The names match mdir's (long names where present).
    let listing = run(Command::new("mdir").args(["-b", "-i"]).arg(&img).arg("::/"));
    let mut mnames: Vec<String> = listing
        .lines()
        .map(|l| {
            l.trim_start_matches("::/")
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    mnames.sort();
    let Reply::DirEntries(d) = a
        .handle(Request::ReadDir {
            path: "/".to_string(),
        })
        .unwrap()
    else {
        panic!()
    };
    let ours: Vec<String> = d.iter().map(|e| e.name.clone()).collect();
    assert_eq!(ours, mnames);

    // statvfs agrees with mdir's free bytes.
    let Reply::StatVfs(sv) = a
        .handle(Request::StatVfs {
            path: "/".to_string(),
        })
        .unwrap()
    else {
        panic!()
    };
    let free_line = listing
        .lines()
        .last()
        .map(|_| ())
        .and(
            run(Command::new("mdir").arg("-i").arg(&img).arg("::/"))
                .lines()
                .find(|l| l.contains("bytes free"))
                .map(str::to_string),
        )
        .unwrap();
    let free: u64 = free_line
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();
    assert_eq!(sv.blocks_free * sv.block_size, free);
    assert_eq!(sv.name_max, 255);

    // Errors.
    let e = |a: &mut Appliance, r| a.handle(r).unwrap_err().kind;
    assert_eq!(
        e(
            &mut a,
            Request::Stat {
                path: "/nope".to_string()
            }
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        e(
            &mut a,
            Request::Stat {
                path: "/SHORT.TXT/x".to_string()
            }
        ),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        e(
            &mut a,
            Request::Pread {
                path: "/Sub Dir".to_string(),
                offset: 0,
                len: 1
            }
        ),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        e(
            &mut a,
            Request::Readlink {
                path: "/SHORT.TXT".to_string()
            }
        ),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        e(
            &mut a,
            Request::WriteFile {
                path: "/new".to_string(),
                offset: 0,
                data: Bytes(vec![1]),
                truncate: false,
                mode: 0o644
            }
        ),
        ErrorKind::ReadOnly
    );
    a.handle(Request::Shutdown).unwrap();
    assert_eq!(dump(&dev), before, "a read-only mount never writes");
}

#[test]
fn reads_fat12() {
    check_reads(12, 2048);
}

#[test]
fn reads_fat16() {
    check_reads(16, 20 * 1024);
}

#[test]
fn reads_fat32() {
    check_reads(32, 40 * 1024);
}

/// Writes the device back to `img` and checks it with fsck.vfat and mtype.
fn check_on_disk(dev: &SharedDevice, img: &Path, files: &[(&str, &[u8])], gone: &[&str]) {
    std::fs::write(img, dump(dev)).unwrap();
    fsck_clean(img);
    let i = img.to_str().unwrap();
    for (p, c) in files {
        assert_eq!(&mtype(i, p)[..], *c, "mtype {p}");
    }
    for p in gone {
        let out = Command::new("mtype")
            .args(["-i", i])
            .arg(format!("::{p}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{p} should be gone");
    }
}

fn check_writes(bits: u32, kb: u32) {
    let t = Tmp::new(&format!("write{bits}"));
    let img = build(&t, bits, kb);
    let (mut a, dev) = appliance(&img, false);
    mount(&mut a, "/dev/sda", false);
    let w = |a: &mut Appliance, p: &str, off: u64, d: &[u8], trunc: bool| {
        let r = a
            .handle(Request::WriteFile {
                path: p.to_string(),
                offset: off,
                data: Bytes(d.to_vec()),
                truncate: trunc,
                mode: 0o644,
            })
            .unwrap();
        assert_eq!(r, Reply::Written(d.len() as u64));
    };

    // Create with a long name; read back through us and mtools.
    let long = "/Another Long Name With Spaces.data";
    w(&mut a, long, 0, b"first", true);
    a.handle(Request::Sync).unwrap();
    check_on_disk(&dev, &img, &[(long, b"first")], &[]);

    // Append, overwrite in the middle, write past the end (zero fill).
    a.handle(Request::Append {
        path: long.to_string(),
        data: Bytes(b" second".to_vec()),
    })
    .unwrap();
    w(&mut a, long, 2, b"RS", false);
    w(&mut a, long, 15, b"end", false);
    let want = b"fiRSt second\0\0\0end".to_vec();
    assert_eq!(cat(&mut a, long), want);
    a.handle(Request::Sync).unwrap();
    check_on_disk(&dev, &img, &[(long, &want)], &[]);

    // A large multi-cluster file, replaced by a shorter one (clusters freed).
    let big = content(9, 300_000);
    for (i, chunk) in big.chunks(65_536).enumerate() {
        w(
            &mut a,
            "/Sub Dir/big upload.bin",
            (i * 65_536) as u64,
            chunk,
            i == 0,
        );
    }
    assert_eq!(cat(&mut a, "/Sub Dir/big upload.bin"), big);
    a.handle(Request::Sync).unwrap();
    check_on_disk(&dev, &img, &[("/Sub Dir/big upload.bin", &big)], &[]);
    w(&mut a, "/Sub Dir/big upload.bin", 0, b"small now", true);
    a.handle(Request::Sync).unwrap();
    check_on_disk(
        &dev,
        &img,
        &[("/Sub Dir/big upload.bin", b"small now")],
        &[],
    );

    // Truncate down and up.
    a.handle(Request::Truncate {
        path: "/Sub Dir/inner file.bin".to_string(),
        size: 5000,
    })
    .unwrap();
    a.handle(Request::Truncate {
        path: "/SHORT.TXT".to_string(),
        size: 8,
    })
    .unwrap();
    a.handle(Request::Sync).unwrap();
    check_on_disk(
        &dev,
        &img,
        &[
            ("/Sub Dir/inner file.bin", &content(1, 10_000)[..5000]),
            ("/SHORT.TXT", b"short\0\0\0"),
        ],
        &[],
    );

    // mkdir -p, rename (file into a directory, directory, case only), rm, rm -r, rmdir.
    a.handle(Request::Mkdir {
        path: "/New Dir/Nested Deeper/x".to_string(),
        parents: true,
        mode: 0o755,
    })
    .unwrap();
    w(&mut a, "/New Dir/Nested Deeper/x/f.txt", 0, b"nested", true);
    a.handle(Request::Rename {
        from: "/lower.txt".to_string(),
        to: "/New Dir/Moved Lower.txt".to_string(),
    })
    .unwrap();
    a.handle(Request::Rename {
        from: "/New Dir/Nested Deeper".to_string(),
        to: "/Renamed Deeper".to_string(),
    })
    .unwrap();
    a.handle(Request::Rename {
        from: "/SHORT.TXT".to_string(),
        to: "/short.txt".to_string(),
    })
    .unwrap();
    // rename over an existing file replaces it.
    w(&mut a, "/victim", 0, b"old", true);
    w(&mut a, "/winner", 0, b"new", true);
    a.handle(Request::Rename {
        from: "/winner".to_string(),
        to: "/victim".to_string(),
    })
    .unwrap();
    a.handle(Request::Sync).unwrap();
    check_on_disk(
        &dev,
        &img,
        &[
            ("/New Dir/Moved Lower.txt", b"lower case short name"),
            ("/Renamed Deeper/x/f.txt", b"nested"),
            ("/victim", b"new"),
        ],
        &["/lower.txt", "/New Dir/Nested Deeper/x/f.txt", "/winner"],
    );
    let Reply::DirEntries(d) = a
        .handle(Request::ReadDir {
            path: "/".to_string(),
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(d.iter().any(|e| e.name == "short.txt"), "{d:?}");
    assert!(!d.iter().any(|e| e.name == "SHORT.TXT"));

    assert_eq!(
        a.handle(Request::Rmdir {
            path: "/Renamed Deeper".to_string()
        })
        .unwrap_err()
        .kind,
        ErrorKind::NotEmpty
    );
    a.handle(Request::Remove {
        path: "/Renamed Deeper".to_string(),
        recursive: true,
    })
    .unwrap();
    a.handle(Request::Remove {
        path: "/empty".to_string(),
        recursive: false,
    })
    .unwrap();
    a.handle(Request::Mkdir {
        path: "/gone".to_string(),
        parents: false,
        mode: 0o755,
    })
    .unwrap();
    a.handle(Request::Rmdir {
        path: "/gone".to_string(),
    })
    .unwrap();
    // Unsupported on FAT, with a clear message.
    let e = a
        .handle(Request::Chmod {
            path: "/victim".to_string(),
            mode: 0o600,
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("FAT"));
    let e = a
        .handle(Request::Symlink {
            target: "victim".to_string(),
            linkpath: "/l".to_string(),
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    a.handle(Request::Umount {
        mountpoint: "/".to_string(),
    })
    .unwrap();
    check_on_disk(
        &dev,
        &img,
        &[("/victim", b"new"), (long, &want)],
        &["/Renamed Deeper/x/f.txt", "/empty", "/gone"],
    );
    // Names made by us are listed by mdir with their long names.
    let listing = run(Command::new("mdir").args(["-b", "-i"]).arg(&img).arg("::/"));
    assert!(
        listing.contains("::/Another Long Name With Spaces.data"),
        "{listing}"
    );
    assert!(listing.contains("::/New Dir/"), "{listing}");

    // Remount: everything reads back.
    mount(&mut a, "/dev/sda", false);
    assert_eq!(cat(&mut a, long), want);
    assert_eq!(
        cat(&mut a, "/New Dir/Moved Lower.txt"),
        b"lower case short name"
    );
}

#[test]
fn writes_fat12() {
    check_writes(12, 2048);
}

#[test]
fn writes_fat16() {
    check_writes(16, 20 * 1024);
}

#[test]
fn writes_fat32() {
    check_writes(32, 40 * 1024);
}

#[test]
fn mbr_disk_with_fat16_partition() {
    let t = Tmp::new("mbr");
    let img = t.0.join("disk.img");
    std::fs::write(&img, vec![0u8; 24 << 20]).unwrap();
    let mut sf = Command::new("sfdisk")
        .arg("--no-reread")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    sf.stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=40960, type=6\n")
        .unwrap();
    assert!(sf.wait().unwrap().success());
    // The partition is 20 MiB at 1 MiB.
    run(Command::new("mkfs.vfat")
        .args(["-F", "16", "--offset", "2048", "-n", "PART"])
        .arg(&img)
        .arg((20 * 1024).to_string()));
    fill(&t, &img, "@@1M");
    let (mut a, dev) = appliance(&img, false);
    a.handle(Request::Mount {
        device: "/dev/sda1".to_string(),
        mountpoint: "/".to_string(),
        readonly: false,
        fstype: None,
    })
    .or_else(|_| {
        // Probing may not be available yet: name the type.
        a.handle(Request::Mount {
            device: "/dev/sda1".to_string(),
            mountpoint: "/".to_string(),
            readonly: false,
            fstype: Some("vfat".to_string()),
        })
    })
    .unwrap();
    assert_eq!(cat(&mut a, "/Sub Dir/inner file.bin"), content(1, 10_000));
    let Reply::Partitions(p) = a.handle(Request::Partitions).unwrap() else {
        panic!()
    };
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].name.as_str(), p[0].number), ("/dev/sda1", 1));
    assert_eq!((p[0].start, p[0].size), (1 << 20, 20 << 20));
    let Reply::Filesystems(f) = a.handle(Request::Filesystems).unwrap() else {
        panic!()
    };
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].device, "/dev/sda1");
    assert_eq!(f[0].size, 20 << 20);
    // The whole disk and the partition cannot both be mounted.
    assert_eq!(
        a.handle(Request::Mount {
            device: "/dev/sda".to_string(),
            mountpoint: "/".to_string(),
            readonly: true,
            fstype: Some("vfat".to_string()),
        })
        .unwrap_err()
        .kind,
        ErrorKind::Busy
    );
    assert_eq!(
        a.handle(Request::Mount {
            device: "/dev/sda2".to_string(),
            mountpoint: "/Sub Dir".to_string(),
            readonly: true,
            fstype: Some("vfat".to_string()),
        })
        .unwrap_err()
        .kind,
        ErrorKind::NotFound
    );
    a.handle(Request::WriteFile {
        path: "/Sub Dir/Written In Partition.txt".to_string(),
        offset: 0,
        data: Bytes(b"partition data".to_vec()),
        truncate: true,
        mode: 0o644,
    })
    .unwrap();
    a.handle(Request::Shutdown).unwrap();
    std::fs::write(&img, dump(&dev)).unwrap();
    let i = format!("{}@@1M", img.display());
    assert_eq!(
        mtype(&i, "/Sub Dir/Written In Partition.txt"),
        b"partition data"
    );
    // The partition, extracted, is a clean filesystem.
    let part = t.0.join("part.img");
    std::fs::write(&part, &dump(&dev)[1 << 20..21 << 20]).unwrap();
    fsck_clean(&part);
}

#[test]
fn corrupt_boot_sectors_are_errors() {
    let t = Tmp::new("corrupt");
    let img = build(&t, 16, 20 * 1024);
    let good = std::fs::read(&img).unwrap();
    for (off, val) in [(12usize, 0u8), (13, 3), (14, 0), (16, 0), (22, 0), (510, 0)] {
        let mut b = good.clone();
        b[off] = val;
        if off == 22 {
            b[23] = 0;
        }
        let dev = shared(MemDisk::new(b, true));
        let e = FatFs::open(dev, true)
            .err()
            .unwrap_or_else(|| panic!("byte {off} = {val}: must fail"));
        assert_eq!(e.kind, ErrorKind::Corrupt, "byte {off}: {e:?}");
    }
    // Truncated: the FAT survives, the data does not.
    let dev = shared(MemDisk::new(good[..64 * 1024].to_vec(), true));
    if let Ok(mut fs) = FatFs::open(dev, true) {
        assert!(fs.read("/Sub Dir/deeper/big.dat", 0, 1 << 20).is_err());
    }
}

#[test]
fn fat_times() {
    // 2021-03-04 05:06:08
    let date = ((2021 - 1980) << 9) | (3 << 5) | 4;
    let time = (5 << 11) | (6 << 5) | 4;
    assert_eq!(fat_time_to_unix(date, time), 1_614_834_368);
    assert_eq!(fat_time_to_unix(0x21, 0), 315_532_800); // 1980-01-01
    // Garbage fields are clamped, not errors.
    let _ = fat_time_to_unix(0xFFFF, 0xFFFF);
    let _ = fat_time_to_unix(0, 0);
}

#[test]
fn directory_cycle_ends_with_an_error() {
    let t = Tmp::new("cycle");
    let img = t.0.join("fat.img");
    run(Command::new("mkfs.vfat")
        .args(["-C", "-F", "16", "-s", "1"])
        .arg(&img)
        .arg("4096"));
    for d in ["::/a", "::/a/b", "::/a/b/c"] {
        run(Command::new("mmd").arg("-i").arg(&img).arg(d));
    }
    let (mut a, dev) = appliance(&img, false);
    mount(&mut a, "/dev/sda", true);
    let ino_a = stat(&mut a, "/a").ino;
    let ino_c = stat(&mut a, "/a/b/c").ino;
    a.handle(Request::Umount {
        mountpoint: "/".to_string(),
    })
    .unwrap();
    // Point /a/b/c at /a: a directory that is its own ancestor.
    let mut bytes = dump(&dev);
    let le16 = |o: usize| u64::from(u16::from_le_bytes([bytes[o], bytes[o + 1]]));
    let bps = le16(11);
    let data_start = (le16(14) + u64::from(bytes[16]) * le16(22)) * bps + le16(17) * 32;
    let entry = (0..bytes.len() / 32)
        .map(|i| i * 32)
        .find(|&o| {
            o as u64 >= data_start && &bytes[o..o + 11] == b"C          " && le16(o + 26) == ino_c
        })
        .expect("entry of c");
    bytes[entry + 26..entry + 28].copy_from_slice(&(ino_a as u16).to_le_bytes());
    let dev = shared(MemDisk::new(bytes.clone(), true));
    let mut a = Appliance::new();
    a.set_disk(0, dev.clone());
    mount(&mut a, "/dev/sda", true);
    let e = a
        .handle(Request::Find {
            path: "/".to_string(),
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Loop, "{e:?}");
    // rm -r on a read-only mount is refused before it starts; the appliance answers on.
    assert!(
        a.handle(Request::Remove {
            path: "/a".to_string(),
            recursive: true
        })
        .is_err()
    );
    assert_eq!(stat(&mut a, "/a/b/c/b/c").ino, ino_a);
    assert_eq!(dump(&dev), bytes);
}

#[test]
fn fat_mounted_below_ext4() {
    let t = Tmp::new("nested");
    let src = t.0.join("root");
    std::fs::create_dir_all(src.join("boot")).unwrap();
    std::fs::write(src.join("etc-hostname"), b"guest\n").unwrap();
    let root = t.0.join("root.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&root)
        .arg("4M"));
    let boot = build(&t, 12, 2048);
    let mut a = Appliance::new();
    a.set_disk(0, shared(MemDisk::new(std::fs::read(&root).unwrap(), true)));
    a.set_disk(1, shared(MemDisk::new(std::fs::read(&boot).unwrap(), true)));
    for (dev, mp) in [("/dev/sda", "/"), ("/dev/sdb", "/boot")] {
        a.handle(Request::Mount {
            device: dev.to_string(),
            mountpoint: mp.to_string(),
            readonly: true,
            fstype: None,
        })
        .unwrap();
    }
    let Reply::Names(n) = a
        .handle(Request::Find {
            path: "/".to_string(),
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(
        n.contains(&"boot/Sub Dir/deeper/big.dat".to_string()),
        "{n:?}"
    );
    assert!(n.contains(&"etc-hostname".to_string()), "{n:?}");
    assert_eq!(cat(&mut a, "/boot/SHORT.TXT"), b"short");
    assert_eq!(
        a.handle(Request::Umount {
            mountpoint: "/".to_string()
        })
        .unwrap_err()
        .kind,
        ErrorKind::Busy
    );
    // Mounting on a file, or on a missing directory, is refused.
    a.handle(Request::Umount {
        mountpoint: "/boot".to_string(),
    })
    .unwrap();
    for mp in ["/etc-hostname", "/missing"] {
        assert!(
            a.handle(Request::Mount {
                device: "/dev/sdb".to_string(),
                mountpoint: mp.to_string(),
                readonly: true,
                fstype: None,
            })
            .is_err()
        );
    }
}
