//! Filesystems end to end under qemu through the library: a GPT disk (FAT32 ESP + ext4
//! root), an MBR disk (FAT16 + ext4 with 1 KiB blocks), bare ext4 and FAT images and a
//! qcow2 copy, all built with the real tools. Reads are checked against debugfs, mtools,
//! blkid and sgdisk; after every write session e2fsck -fn and fsck.vfat -n must be clean
//! and the host tools must read back exactly what was written. Bad input (corrupt
//! superblocks, truncated images, oversize requests) fails the one call and leaves the
//! appliance answering, with read-only disk files unchanged.

use skiff_tests::skiff::wire::{self, ErrorKind, FileType, Request, TableKind};
use skiff_tests::skiff::{DriveOptions, Error, MountOptions, Session};
use skiff_tests::{
    assert_e2fsck_clean, assert_fsck_vfat_clean, builder, debugfs, debugfs_cat, extract, file_hash,
    mcopy, mkfs_ext4, mkfs_vfat, mmd, mtype, pattern, place, qcow2_from, run,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

fn remote_kind(r: Result<impl std::fmt::Debug, Error>) -> ErrorKind {
    match r {
        Err(Error::Remote(e)) => e.kind,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// The ext4 root tree: config files, a 20 MiB file, a 300-entry (htree) directory,
/// fast and slow symlinks, a sparse file, and the ESP mountpoint.
fn root_tree(dir: &Path) -> PathBuf {
    let src = dir.join("root-src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::create_dir_all(src.join("boot/efi")).unwrap();
    std::fs::create_dir_all(src.join("dir/many")).unwrap();
    std::fs::create_dir_all(src.join("old/tree/deep")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"guest\n").unwrap();
    std::fs::write(src.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(src.join("etc/shadow"), b"root:*:1::::::\n").unwrap();
    std::fs::write(src.join("old/file"), b"to be removed\n").unwrap();
    std::fs::write(src.join("old/tree/deep/x"), b"x").unwrap();
    std::fs::write(src.join("doomed"), b"rm me").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.join("etc/shadow"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(src.join("big.bin"), pattern(20 * MIB as usize, 7)).unwrap();
    for i in 0..300 {
        std::fs::write(
            src.join(format!("dir/many/f{i:03}")),
            format!("file {i}\n").repeat(i % 7 + 1),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("etc/hostname", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/".to_string() + &"long/".repeat(20), src.join("slow-link"))
        .unwrap();
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(3 * MIB).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"tail", 2 * MIB).unwrap();
    src
}

/// A FAT image with an EFI tree and a long file name.
fn esp_image(dir: &Path, name: &str, bits: u32, kib: u64, label: &str) -> PathBuf {
    let img = dir.join(name);
    mkfs_vfat(&img, bits, kib, Some(label));
    mmd(&img, &["EFI", "EFI/BOOT", "old", "old/sub"]);
    let f = dir.join(format!("{name}-boot.efi"));
    std::fs::write(&f, pattern(150_000, 3)).unwrap();
    mcopy(&img, &f, "EFI/BOOT/BOOTX64.EFI");
    let f = dir.join(format!("{name}-long.txt"));
    std::fs::write(&f, b"a long name\n").unwrap();
    mcopy(&img, &f, "A Long File Name.txt");
    mcopy(&img, &f, "old/sub/x.txt");
    mcopy(&img, &f, "doomed.txt");
    img
}

fn blkid(img: &Path, tag: &str) -> String {
    run(Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag])
        .arg(img))
    .trim()
    .to_string()
}

/// `debugfs -R 'ls -p DIR'`: (name, mode with type bits, uid, gid, size) per entry.
fn debugfs_ls(img: &Path, dir: &str) -> Vec<(String, u32, u32, u32, u64)> {
    let mut v: Vec<_> = debugfs(img, &format!("ls -p {dir}"))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('/').collect();
            // /ino/mode/uid/gid/name/size/
            if f.len() < 7 {
                return None;
            }
            let name = f[5].to_string();
            if name == "." || name == ".." {
                return None;
            }
            Some((
                name,
                u32::from_str_radix(f[2], 8).ok()?,
                f[3].parse().ok()?,
                f[4].parse().ok()?,
                f[6].parse().unwrap_or(0),
            ))
        })
        .collect();
    v.sort();
    v
}

struct Gpt {
    _dir: tempfile::TempDir,
    disk: PathBuf,
    esp: PathBuf,
    root: PathBuf,
}

const ESP_START: u64 = 2048;
const ESP_SECTORS: u64 = 40 * MIB / SECTOR;
const ROOT_START: u64 = ESP_START + ESP_SECTORS;
const ROOT_SECTORS: u64 = 48 * MIB / SECTOR;

/// GPT: partition 1 a 40 MiB FAT32 ESP, partition 2 a 48 MiB ext4 root (4 KiB blocks).
fn gpt_disk() -> Gpt {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let esp = esp_image(d, "esp.img", 32, ESP_SECTORS * SECTOR / 1024, "ESP");
    let root = d.join("root.img");
    mkfs_ext4(
        &root,
        &format!("{}k", ROOT_SECTORS * SECTOR / 1024),
        &root_tree(d),
        &["-b", "4096", "-L", "root"],
    );
    let disk = d.join("gpt.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len((ROOT_START + ROOT_SECTORS + 2048) * SECTOR)
        .unwrap();
    drop(f);
    run(Command::new("sgdisk")
        .args([
            &format!("-n1:{ESP_START}:+{ESP_SECTORS}"),
            "-t1:ef00",
            "-c1:EFI System",
            &format!("-n2:{ROOT_START}:+{ROOT_SECTORS}"),
            "-t2:8300",
            "-c2:root",
        ])
        .arg(&disk));
    // sgdisk's "+N" is a size; check where the partitions really landed.
    let info = run(Command::new("sgdisk").arg("-i2").arg(&disk));
    assert!(
        info.contains(&format!("First sector: {ROOT_START} ")),
        "{info}"
    );
    place(&disk, &esp, ESP_START * SECTOR);
    place(&disk, &root, ROOT_START * SECTOR);
    Gpt {
        _dir: dir,
        disk,
        esp,
        root,
    }
}

fn launch(disks: &[(&Path, bool)]) -> Session {
    let mut b = builder();
    for (p, writable) in disks {
        let o = if *writable {
            DriveOptions::writable()
        } else {
            DriveOptions::readonly()
        };
        b = b.add_drive(p, o);
    }
    b.launch().unwrap()
}

/// Everything the read side offers on the GPT disk, against the host tools.
fn check_gpt_reads(s: &mut Session, g: &Gpt) {
    let parts = s.partitions().unwrap();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].name, "/dev/sda1");
    assert_eq!(parts[0].table, TableKind::Gpt);
    assert_eq!(parts[0].start, ESP_START * SECTOR);
    assert_eq!(parts[0].size, ESP_SECTORS * SECTOR);
    assert!(
        parts[0]
            .part_type
            .eq_ignore_ascii_case("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        "{}",
        parts[0].part_type
    );
    assert_eq!(parts[0].label.as_deref(), Some("EFI System"));
    assert_eq!(parts[1].name, "/dev/sda2");
    assert_eq!(parts[1].start, ROOT_START * SECTOR);
    assert_eq!(parts[1].size, ROOT_SECTORS * SECTOR);
    assert_eq!(parts[1].label.as_deref(), Some("root"));

    let fs = s.filesystems().unwrap();
    let by = |dev: &str| fs.iter().find(|f| f.device == dev).unwrap().clone();
    let (esp, root) = (by("/dev/sda1"), by("/dev/sda2"));
    assert_eq!(esp.fstype, "vfat");
    assert_eq!(esp.label.as_deref(), Some("ESP"));
    assert!(
        esp.uuid
            .as_deref()
            .unwrap()
            .eq_ignore_ascii_case(&blkid(&g.esp, "UUID"))
    );
    assert_eq!(root.fstype, "ext4");
    assert_eq!(root.label.as_deref(), Some("root"));
    assert_eq!(root.uuid.as_deref().unwrap(), blkid(&g.root, "UUID"));
    assert_eq!(root.size, ROOT_SECTORS * SECTOR);

    s.mount("/dev/sda2", "/", MountOptions::readonly()).unwrap();
    s.mount("/dev/sda1", "/boot/efi", MountOptions::readonly())
        .unwrap();
    let m = s.mounts().unwrap();
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|m| m.readonly));

    // Listings and attributes against debugfs.
    for dir in ["/", "/etc", "/dir/many"] {
        let want = debugfs_ls(&g.root, dir);
        let got = s.read_dir(dir).unwrap();
        let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        let want_names: Vec<&str> = want.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(names, want_names, "{dir}");
        for (e, w) in got.iter().zip(&want) {
            assert_eq!(e.stat.mode, w.1 & 0o7777, "{dir}/{}", e.name);
            assert_eq!((e.stat.uid, e.stat.gid), (w.2, w.3), "{dir}/{}", e.name);
            if e.stat.file_type == FileType::Regular {
                assert_eq!(e.stat.size, w.4, "{dir}/{}", e.name);
            }
            let ty = match w.1 >> 12 {
                0o10 => FileType::Regular,
                0o04 => FileType::Directory,
                0o12 => FileType::Symlink,
                _ => FileType::Unknown,
            };
            assert_eq!(e.stat.file_type, ty, "{dir}/{}", e.name);
        }
    }
    assert_eq!(s.ls("/dir/many").unwrap().len(), 300);
    assert_eq!(
        s.read_file("/dir/many/f123").unwrap(),
        debugfs_cat(&g.root, "/dir/many/f123")
    );
    assert_eq!(s.read_file("/etc/hostname").unwrap(), b"guest\n");
    assert_eq!(s.stat("/etc/shadow").unwrap().mode, 0o600);

    // Symlinks: fast and slow.
    assert_eq!(s.readlink("/link").unwrap(), "etc/hostname");
    assert_eq!(s.lstat("/link").unwrap().file_type, FileType::Symlink);
    let st = s.stat("/link").unwrap();
    assert_eq!((st.file_type, st.size), (FileType::Regular, 6));
    assert_eq!(s.readlink("/slow-link").unwrap().len(), 101);
    assert_eq!(s.read_file("/link").unwrap(), b"guest\n");

    // The 20 MiB file, streamed, and ranges across chunk boundaries.
    let big = pattern(20 * MIB as usize, 7);
    let mut out = Vec::new();
    assert_eq!(s.download("/big.bin", &mut out).unwrap(), 20 * MIB);
    assert!(out == big, "download differs");
    let r = s.pread("/big.bin", MIB - 10, 2 * MIB + 20).unwrap();
    assert!(r == big[(MIB - 10) as usize..(3 * MIB + 10) as usize]);
    assert_eq!(s.pread("/big.bin", 20 * MIB - 5, 100).unwrap().len(), 5);
    assert!(s.pread("/big.bin", 30 * MIB, 100).unwrap().is_empty());
    // The sparse file reads zeros in its hole.
    let sp = s.read_file("/sparse").unwrap();
    assert_eq!(sp.len() as u64, 3 * MIB);
    assert!(sp[..2 * MIB as usize].iter().all(|&b| b == 0));
    assert_eq!(&sp[2 * MIB as usize..2 * MIB as usize + 4], b"tail");

    // The ESP through its mountpoint, against mtools.
    let efi = s.read_file("/boot/efi/EFI/BOOT/BOOTX64.EFI").unwrap();
    assert!(efi == mtype(&g.esp, "EFI/BOOT/BOOTX64.EFI"));
    assert!(efi == pattern(150_000, 3));
    let names = s.ls("/boot/efi").unwrap();
    assert!(
        names.contains(&"A Long File Name.txt".to_string()),
        "{names:?}"
    );
    let mdir = run(Command::new("mdir")
        .args(["-b", "-i"])
        .arg(&g.esp)
        .arg("::/"));
    for n in ["EFI", "A Long File Name.txt", "old", "doomed.txt"] {
        assert!(mdir.contains(n), "{n} in {mdir}");
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }

    // find walks into the ESP mount.
    let all = s.find("/").unwrap();
    for p in [
        "etc/hostname",
        "dir/many/f299",
        "boot/efi/EFI/BOOT/BOOTX64.EFI",
        "link",
        "old/tree/deep/x",
    ] {
        assert!(all.iter().any(|x| x == p), "{p} in find /");
    }
    assert_eq!(
        s.find("/dir").unwrap().len(),
        301,
        "dir/many and its 300 files"
    );

    // statvfs against dumpe2fs.
    let v = s.statvfs("/").unwrap();
    let dump = run(Command::new("dumpe2fs").arg("-h").arg(&g.root));
    let field = |k: &str| -> u64 {
        dump.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(v.block_size, field("Block size:"));
    assert_eq!(v.blocks, field("Block count:"));
    assert_eq!(v.blocks_free, field("Free blocks:"));
    assert_eq!(v.files_free, field("Free inodes:"));

    // Predicates.
    assert!(s.exists("/etc").unwrap());
    assert!(s.is_dir("/etc").unwrap());
    assert!(!s.is_file("/etc").unwrap());
    assert!(s.is_file("/link").unwrap());
    assert!(!s.exists("/nope").unwrap());
    assert!(!s.is_dir("/etc/hostname/x").unwrap());

    // Errors are per call.
    assert_eq!(remote_kind(s.read_file("/nope")), ErrorKind::NotFound);
    assert_eq!(remote_kind(s.read_file("/etc")), ErrorKind::IsADirectory);
    assert_eq!(
        remote_kind(s.write_file("/etc/x", b"no")),
        ErrorKind::ReadOnly
    );
    assert_eq!(remote_kind(s.mkdir("/x")), ErrorKind::ReadOnly);
    assert_eq!(remote_kind(s.ls("/etc/hostname")), ErrorKind::NotADirectory);
    s.ping().unwrap();
}

#[test]
fn gpt_esp_and_ext4_root_raw_and_qcow2() {
    let g = gpt_disk();
    let before = file_hash(&g.disk);
    let mut s = launch(&[(&g.disk, false)]);
    check_gpt_reads(&mut s, &g);
    s.umount("/boot/efi").unwrap();
    assert_eq!(s.mounts().unwrap().len(), 1);
    s.shutdown().unwrap();
    assert_eq!(file_hash(&g.disk), before, "a read-only disk was modified");

    // The same disk as qcow2.
    let q = qcow2_from(&g.disk, g._dir.path(), "gpt.qcow2");
    let qbefore = file_hash(&q);
    let mut s = launch(&[(&q, false)]);
    check_gpt_reads(&mut s, &g);
    s.shutdown().unwrap();
    assert_eq!(file_hash(&q), qbefore);
}

/// Every write operation on the filesystem mounted at `r` (`""` for `/`), then checks
/// the results through the appliance.
fn write_ops(s: &mut Session, r: &str, posix: bool) {
    let p = |x: &str| format!("{r}{x}");
    s.write_file(&p("/new.txt"), b"a first, longer version\n")
        .unwrap();
    s.write_file(&p("/new.txt"), b"hello world\n").unwrap();
    s.append(&p("/new.txt"), b"more\n").unwrap();
    s.append(&p("/appended"), b"created by append\n").unwrap();
    s.mkdir_p(&p("/a/b/c")).unwrap();
    s.mkdir_p(&p("/a/b")).unwrap();
    s.mkdir(&p("/a/d")).unwrap();
    assert_eq!(remote_kind(s.mkdir(&p("/a/d"))), ErrorKind::AlreadyExists);
    let up = pattern(3 * MIB as usize + 12345, 9);
    assert_eq!(
        s.upload(&mut &up[..], &p("/a/b/up.bin")).unwrap(),
        up.len() as u64
    );
    s.write_file(&p("/a/empty"), b"").unwrap();
    s.rename(&p("/new.txt"), &p("/a/renamed.txt")).unwrap();
    s.truncate(&p("/a/b/up.bin"), 1_000_000).unwrap();
    s.rm(&p("/doomed"))
        .unwrap_or_else(|_| s.rm(&p("/doomed.txt")).unwrap());
    assert_eq!(remote_kind(s.rm(&p("/old"))), ErrorKind::IsADirectory);
    s.rm_rf(&p("/old")).unwrap();
    s.rmdir(&p("/a/b/c")).unwrap();
    assert_eq!(remote_kind(s.rmdir(&p("/a/b"))), ErrorKind::NotEmpty);
    if posix {
        s.chmod(&p("/a/renamed.txt"), 0o600).unwrap();
        s.ln_s("renamed.txt", &p("/a/link")).unwrap();
        assert_eq!(s.read_file(&p("/a/link")).unwrap(), b"hello world\nmore\n");
    }
    // Read back through the appliance before the session ends.
    assert_eq!(
        s.read_file(&p("/a/renamed.txt")).unwrap(),
        b"hello world\nmore\n"
    );
    assert_eq!(
        s.read_file(&p("/a/b/up.bin")).unwrap(),
        up[..1_000_000].to_vec()
    );
    assert!(!s.exists(&p("/old")).unwrap());
    assert!(!s.exists(&p("/new.txt")).unwrap());
    assert!(s.is_dir(&p("/a/d")).unwrap());
    assert_eq!(s.stat(&p("/a/empty")).unwrap().size, 0);
}

/// The host tools' view of what [`write_ops`] did on an ext4 image.
fn check_ext4_writes(img: &Path, r: &str) {
    assert_e2fsck_clean(img);
    let p = |x: &str| format!("{r}{x}");
    assert_eq!(
        debugfs_cat(img, &p("/a/renamed.txt")),
        b"hello world\nmore\n"
    );
    assert_eq!(debugfs_cat(img, &p("/appended")), b"created by append\n");
    let up = debugfs_cat(img, &p("/a/b/up.bin"));
    assert!(up == pattern(3 * MIB as usize + 12345, 9)[..1_000_000]);
    assert!(debugfs_cat(img, &p("/a/empty")).is_empty());
    let a = debugfs_ls(img, &p("/a"));
    let names: Vec<&str> = a.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["b", "d", "empty", "link", "renamed.txt"]);
    let renamed = a.iter().find(|e| e.0 == "renamed.txt").unwrap();
    assert_eq!(renamed.1, 0o100600);
    let link = a.iter().find(|e| e.0 == "link").unwrap();
    assert_eq!(link.1 >> 12, 0o12);
    let stat = debugfs(img, &format!("stat {}", p("/a/link")));
    assert!(stat.contains("Fast link dest: \"renamed.txt\""), "{stat}");
    let root: Vec<String> = debugfs_ls(img, if r.is_empty() { "/" } else { r })
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(!root.contains(&"old".to_string()) && !root.contains(&"doomed".to_string()));
    assert!(!root.contains(&"new.txt".to_string()));
    assert!(debugfs_ls(img, &p("/a/b")).iter().all(|e| e.0 != "c"));
}

/// The host tools' view of what [`write_ops`] did on a FAT image.
fn check_fat_writes(img: &Path) {
    assert_fsck_vfat_clean(img);
    assert_eq!(mtype(img, "a/renamed.txt"), b"hello world\nmore\n");
    assert_eq!(mtype(img, "appended"), b"created by append\n");
    assert!(mtype(img, "a/b/up.bin") == pattern(3 * MIB as usize + 12345, 9)[..1_000_000]);
    assert!(mtype(img, "a/empty").is_empty());
    let root = run(Command::new("mdir").args(["-b", "-i"]).arg(img).arg("::/"));
    assert!(!root.contains("old") && !root.contains("doomed"), "{root}");
    assert!(!root.contains("new.txt"), "{root}");
    let a = run(Command::new("mdir").args(["-b", "-i"]).arg(img).arg("::/a"));
    assert!(a.contains("renamed.txt") && a.contains("::/a/d"), "{a}");
    let b = run(Command::new("mdir")
        .args(["-b", "-i"])
        .arg(img)
        .arg("::/a/b"));
    assert!(!b.contains("::/a/b/c"), "{b}");
}

#[test]
fn mbr_fat16_and_ext4_1k_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // FAT16 20 MiB at 1 MiB, ext4 (1 KiB blocks) 32 MiB after it.
    let (fat_start, fat_len) = (2048u64, 20 * MIB / SECTOR);
    let (ext_start, ext_len) = (fat_start + fat_len, 32 * MIB / SECTOR);
    let fat = esp_image(d, "fat16.img", 16, fat_len * SECTOR / 1024, "DATA");
    let ext = d.join("ext.img");
    let src = root_tree(d);
    std::fs::remove_file(src.join("big.bin")).unwrap();
    mkfs_ext4(
        &ext,
        &format!("{}k", ext_len * SECTOR / 1024),
        &src,
        &["-b", "1024", "-L", "data1k"],
    );
    let disk = d.join("mbr.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len((ext_start + ext_len) * SECTOR).unwrap();
    drop(f);
    let mut c = Command::new("sfdisk");
    c.arg("-q").arg(&disk);
    let script = format!(
        "label: dos\nstart={fat_start}, size={fat_len}, type=6\nstart={ext_start}, size={ext_len}, type=83\n"
    );
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    place(&disk, &fat, fat_start * SECTOR);
    place(&disk, &ext, ext_start * SECTOR);

    // Read-only first: listing and probing.
    let before = file_hash(&disk);
    let mut s = launch(&[(&disk, false)]);
    let parts = s.partitions().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].table, TableKind::Mbr);
    assert_eq!(parts[0].part_type, "0x06");
    assert_eq!(parts[1].start, ext_start * SECTOR);
    let fs = s.filesystems().unwrap();
    let types: Vec<(&str, &str)> = fs
        .iter()
        .map(|f| (f.device.as_str(), f.fstype.as_str()))
        .collect();
    assert_eq!(types, [("/dev/sda1", "vfat"), ("/dev/sda2", "ext4")]);
    assert_eq!(fs[0].label.as_deref(), Some("DATA"));
    assert_eq!(fs[1].label.as_deref(), Some("data1k"));
    s.mount("/dev/sda2", "/", MountOptions::readonly()).unwrap();
    assert_eq!(s.statvfs("/").unwrap().block_size, 1024);
    assert_eq!(
        s.read_file("/dir/many/f042").unwrap(),
        debugfs_cat(&ext, "/dir/many/f042")
    );
    s.shutdown().unwrap();
    assert_eq!(file_hash(&disk), before);

    // Read-write: every write operation on both filesystems.
    let mut s = launch(&[(&disk, true)]);
    s.mount("/dev/sda2", "/", MountOptions::writable()).unwrap();
    s.mount("/dev/sda1", "/boot", MountOptions::writable())
        .unwrap();
    write_ops(&mut s, "", true);
    write_ops(&mut s, "/boot", false);
    // Across filesystems is refused.
    assert_eq!(
        remote_kind(s.rename("/etc/hostname", "/boot/hostname")),
        ErrorKind::InvalidArgument
    );
    s.shutdown().unwrap();

    let (e, f) = (d.join("ext-after.img"), d.join("fat-after.img"));
    extract(&disk, ext_start * SECTOR, ext_len * SECTOR, &e);
    extract(&disk, fat_start * SECTOR, fat_len * SECTOR, &f);
    check_ext4_writes(&e, "");
    check_fat_writes(&f);
}

#[test]
fn bare_ext4_and_fat_images_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = root_tree(d);
    std::fs::remove_file(src.join("big.bin")).unwrap();
    std::fs::create_dir(src.join("mnt")).unwrap();
    let ext = d.join("bare-ext4.img");
    mkfs_ext4(&ext, "24M", &src, &["-b", "4096"]);
    let fat32 = esp_image(d, "bare-fat32.img", 32, 36 * 1024, "BARE32");
    let fat12 = esp_image(d, "bare-fat12.img", 12, 4096, "BARE12");

    let mut s = launch(&[(&ext, true), (&fat32, true), (&fat12, true)]);
    let fs = s.filesystems().unwrap();
    let types: Vec<&str> = fs.iter().map(|f| f.fstype.as_str()).collect();
    assert_eq!(types, ["ext4", "vfat", "vfat"]);
    assert!(s.partitions().unwrap().is_empty());
    s.mount("/dev/sda", "/", MountOptions::writable()).unwrap();
    s.mkdir("/mnt/x").unwrap();
    s.mkdir("/mnt/y").unwrap();
    s.mount("/dev/sdb", "/mnt/x", MountOptions::writable())
        .unwrap();
    s.mount("/dev/sdc", "/mnt/y", MountOptions::writable())
        .unwrap();
    write_ops(&mut s, "", true);
    write_ops(&mut s, "/mnt/x", false);
    write_ops(&mut s, "/mnt/y", false);
    s.shutdown().unwrap();
    check_ext4_writes(&ext, "");
    check_fat_writes(&fat32);
    check_fat_writes(&fat12);
}

#[test]
fn bad_input_fails_one_call_and_leaves_disks_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("small"), b"small\n").unwrap();
    std::fs::write(src.join("d/big"), pattern(6 * MIB as usize, 4)).unwrap();

    // 1: superblock magic destroyed.
    let nomagic = d.join("nomagic.img");
    mkfs_ext4(&nomagic, "16M", &src, &[]);
    corrupt(&nomagic, 1024 + 0x38, &[0, 0]);
    // 2: magic intact, absurd block size.
    let badsb = d.join("badsb.img");
    mkfs_ext4(&badsb, "16M", &src, &[]);
    corrupt(&badsb, 1024 + 24, &[40, 0, 0, 0]);
    // 3: truncated: the big file's blocks lie past the end.
    let trunc = d.join("trunc.img");
    mkfs_ext4(&trunc, "16M", &src, &["-b", "4096", "-O", "^has_journal"]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&trunc)
        .unwrap();
    f.set_len(5 * MIB).unwrap();
    drop(f);
    // 4: FAT with a zero bytes-per-sector field.
    let badfat = esp_image(d, "badfat.img", 16, 16384, "BAD");
    corrupt(&badfat, 11, &[0, 0]);
    let good = d.join("good.img");
    mkfs_ext4(&good, "16M", &src, &[]);
    let disks = [&nomagic, &badsb, &trunc, &badfat, &good];
    let hashes: Vec<u64> = disks.iter().map(|p| file_hash(p)).collect();

    let mut s = launch(&disks.map(|p| (p.as_path(), false)));
    let fs = s.filesystems().unwrap();
    assert_eq!(fs[0].fstype, "unknown", "{fs:?}");
    let e = s
        .mount(
            "/dev/sda",
            "/",
            MountOptions {
                readonly: true,
                fstype: Some("ext4".into()),
            },
        )
        .unwrap_err();
    assert!(matches!(&e, Error::Remote(_)), "{e}");
    s.ping().unwrap();
    assert!(matches!(
        s.mount("/dev/sda", "/", MountOptions::readonly()),
        Err(Error::Remote(_))
    ));
    let e = s
        .mount("/dev/sdb", "/", MountOptions::readonly())
        .unwrap_err();
    assert!(matches!(&e, Error::Remote(_)), "{e}");
    s.ping().unwrap();
    assert!(matches!(
        s.mount("/dev/sdd", "/", MountOptions::readonly()),
        Err(Error::Remote(_))
    ));
    s.ping().unwrap();

    // The truncated image mounts; the file past the end fails, the rest still reads.
    // The truncated image: the mount or the read of the cut file fails with a clear
    // error (which one depends on what lies past the cut); the appliance answers on.
    match s.mount("/dev/sdc", "/", MountOptions::readonly()) {
        Ok(()) => {
            let e = s.read_file("/d/big").unwrap_err();
            assert!(
                matches!(&e, Error::Remote(r) if r.kind == ErrorKind::Corrupt),
                "{e}"
            );
            s.umount("/").unwrap();
        }
        Err(Error::Remote(r)) => assert!(r.message.contains("past the end"), "{r}"),
        Err(e) => panic!("{e}"),
    }
    s.ping().unwrap();
    // A healthy copy of the same tree mounts and reads beside them.
    s.mount("/dev/sde", "/", MountOptions::readonly()).unwrap();
    assert!(s.read_file("/d/big").unwrap() == pattern(6 * MIB as usize, 4));

    // Malformed and oversize requests.
    let r = s.call(Request::Pread {
        path: "/small".into(),
        offset: 0,
        len: wire::MAX_CHUNK + 1,
    });
    assert_eq!(remote_kind(r), ErrorKind::TooLarge);
    let r = s.call(Request::ReadDir {
        path: "relative/path".into(),
    });
    assert!(matches!(r, Err(Error::Remote(_))), "{r:?}");
    let r = s.call(Request::Stat {
        path: "/a\0b".into(),
    });
    assert!(matches!(r, Err(Error::Remote(_))), "{r:?}");
    assert_eq!(
        remote_kind(s.mount("/dev/sdz", "/x", MountOptions::readonly())),
        ErrorKind::NotFound
    );
    s.ping().unwrap();
    assert_eq!(s.read_file("/small").unwrap(), b"small\n");
    s.shutdown().unwrap();
    for (p, h) in disks.iter().zip(hashes) {
        assert_eq!(file_hash(p), h, "{p:?} changed");
    }
}

fn corrupt(img: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}
