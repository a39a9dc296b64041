//! `skiff mount` (FUSE) end to end: an ext4 and a FAT guest made from a source tree
//! with the real tools, read through the mount with ordinary tools (`ls -lR`, `cat`,
//! `cp -a`, `rsync -n --checksum` against the source tree, `find | wc -l` against
//! `skiff find`); with `--rw`, files written by `cp` and `echo >` checked with debugfs
//! and `e2fsck -fn` after `skiff umount`; and the mount process killed (SIGTERM: it
//! unmounts and shuts down cleanly; SIGKILL: `fusermount -u`, the appliance powers itself
//! off) leaving no qemu and a clean filesystem.
//!
//! Needs /dev/fuse and root (or fusermount3); a machine without /dev/fuse skips with a
//! note.

use skiff_tests::guests::{self, skiff_bin};
use skiff_tests::{assert_e2fsck_clean, assert_fsck_vfat_clean, debugfs, debugfs_cat, pattern};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    eprintln!("note: /dev/fuse is missing: skiff mount tests skipped");
    false
}

/// Runs a command; panics with its output unless it succeeds. Returns stdout.
fn sh(cmd: &mut Command) -> String {
    let o = cmd.stdin(Stdio::null()).output().expect("run command");
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn skiff(args: &[&str]) -> Output {
    Command::new(skiff_bin())
        .args(["--timeout", "120"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skiff")
}

/// A source tree: nested directories, a few hundred small files, a 5 MiB file, symlinks,
/// odd modes, a name with spaces, an empty file and directory.
fn source_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("etc/hostname", b"mounted-guest\n");
    w("etc/motd", b"welcome\n");
    w("big/blob.bin", &pattern(5 << 20 | 123, 7));
    w("with space/file name.txt", b"spaces\n");
    w("empty-file", b"");
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    for d in 0..8 {
        for f in 0..40 {
            w(
                &format!("tree/d{d}/sub{}/f{f}.txt", f % 3),
                format!("dir {d} file {f}\n").repeat(f + 1).as_bytes(),
            );
        }
    }
    std::os::unix::fs::symlink("../etc/hostname", root.join("tree/link-to-hostname")).unwrap();
    std::os::unix::fs::symlink("/nowhere", root.join("tree/dangling")).unwrap();
    std::fs::set_permissions(
        root.join("etc/motd"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(root.join("tree/d0"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// The ext4 image of `src` (mkfs.ext4 -d).
fn ext4_image(dir: &Path, src: &Path) -> PathBuf {
    let img = dir.join("ext4.img");
    guests::mkfs_ext4(src, &img, "48M", &[]);
    img
}

/// A mounted `skiff mount`: unmounts (lazily) on drop if the test did not.
struct Mounted {
    mp: PathBuf,
    pid: u32,
    /// qemu's pid (the mount process's child).
    qemu: Vec<u32>,
}

impl Mounted {
    /// `skiff mount [args] -a img MP --pid-file ...` in the background; returns once it
    /// is mounted.
    fn new(dir: &Path, name: &str, args: &[&str]) -> Mounted {
        let mp = dir.join(name);
        std::fs::create_dir_all(&mp).unwrap();
        let pid_file = dir.join(format!("{name}.pid"));
        let mut a = vec!["mount"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            "--pid-file",
            pid_file.to_str().unwrap(),
            mp.to_str().unwrap(),
        ]);
        let o = skiff(&a);
        assert!(
            o.status.success(),
            "skiff {a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(mounted(&mp), "mounted once skiff mount returns");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let qemu = children(pid);
        assert!(!qemu.is_empty(), "qemu runs under the mount process");
        Mounted { mp, pid, qemu }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    fn s(&self) -> &str {
        self.mp.to_str().unwrap()
    }

    /// Waits for the mount process and its qemu to be gone.
    fn assert_all_gone(&self) {
        wait_gone(self.pid);
        for &q in &self.qemu {
            wait_gone(q);
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if mounted(&self.mp) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mp)
                .status();
        }
    }
}

/// Is something mounted at `mp`?
fn mounted(mp: &Path) -> bool {
    let mp = mp.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(mp))
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            && let Some(rest) = stat.rsplit(')').next()
            && rest.split_whitespace().nth(1) == Some(&pid.to_string())
        {
            out.push(p);
        }
    }
    out
}

/// Is process `pid` running (not gone, not a zombie)?
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

fn wait_gone(pid: u32) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "process {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `skiff umount MP` (which waits for the appliance to shut down).
fn umount(m: &Mounted) {
    let o = skiff(&["umount", m.s()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!mounted(&m.mp));
    m.assert_all_gone();
}

/// `find DIR | wc -l` as a number.
fn find_count(dir: &Path) -> usize {
    sh(Command::new("find").arg(dir)).lines().count()
}

/// `skiff find /` over `img` (one appliance, no FUSE): its line count.
fn skiff_find_count(img: &Path) -> usize {
    let o = skiff(&["find", "-a", img.to_str().unwrap(), "/"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().count()
}

/// `rsync -n -i` (dry run, itemized) with `opts` from `src/` to `dst/`: the lines of
/// what would change (nothing when the trees are the same).
fn rsync_diff(opts: &[&str], src: &Path, dst: &Path) -> Vec<String> {
    let out = sh(Command::new("rsync")
        .args(["-n", "-i"])
        .args(opts)
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display())));
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `diff` without rsync's line for a time difference of the top directory.
fn without_root_time(diff: Vec<String>) -> Vec<String> {
    diff.into_iter().filter(|l| l != ".d..t...... ./").collect()
}

/// The mtime (seconds) debugfs reports for `path` in `img`.
fn debugfs_mtime(img: &Path, path: &str) -> i64 {
    let st = debugfs(img, &format!("stat {path}"));
    let hex = st
        .lines()
        .find_map(|l| l.trim().strip_prefix("mtime: 0x"))
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no mtime in debugfs stat: {st}"));
    i64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn ext4_read_only() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let img = ext4_image(dir.path(), &src);
    let before = skiff_tests::file_hash(&img);
    let m = Mounted::new(dir.path(), "mnt", &["-a", img.to_str().unwrap()]);

    // ls -lR sees every name; cat reads contents.
    let ls = sh(Command::new("ls").arg("-lR").arg(&m.mp));
    for name in [
        "hostname",
        "blob.bin",
        "file name.txt",
        "f39.txt",
        "link-to-hostname",
    ] {
        assert!(ls.contains(name), "{name} in ls -lR");
    }
    assert!(
        ls.lines()
            .any(|l| l.starts_with("-rw------- 1 root root") && l.ends_with(" motd")),
        "motd's mode: {ls}"
    );
    assert_eq!(
        sh(Command::new("cat").arg(m.path("etc/hostname"))),
        "mounted-guest\n"
    );
    assert_eq!(
        std::fs::read(m.path("big/blob.bin")).unwrap(),
        pattern(5 << 20 | 123, 7)
    );
    assert_eq!(
        std::fs::read_link(m.path("tree/link-to-hostname")).unwrap(),
        Path::new("../etc/hostname")
    );
    assert_eq!(
        std::fs::read_to_string(m.path("tree/link-to-hostname")).unwrap(),
        "mounted-guest\n"
    );
    // Stable inode numbers per path, distinct per file.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::symlink_metadata(m.path(p)).unwrap().ino();
    assert_eq!(ino("etc/motd"), ino("etc/motd"));
    assert_ne!(ino("etc/motd"), ino("etc/hostname"));
    assert_eq!(std::fs::metadata(&m.mp).unwrap().ino(), 1);

    // rsync --checksum against the source tree: nothing differs (contents, modes,
    // owners, times, symlinks).
    // The image's root directory has mkfs's times, not the source directory's: that one
    // difference is checked against debugfs instead.
    let diff = without_root_time(rsync_diff(&["-a", "--checksum"], &src, &m.mp));
    assert!(diff.is_empty(), "rsync sees differences: {diff:?}");
    assert_eq!(
        std::fs::metadata(&m.mp).unwrap().mtime(),
        debugfs_mtime(&img, "/")
    );
    // cp -a out of the mount gives the source tree back.
    let copy = dir.path().join("copy");
    sh(Command::new("cp").arg("-a").arg(&m.mp).arg(&copy));
    let diff = without_root_time(rsync_diff(&["-a", "--checksum"], &src, &copy));
    assert!(diff.is_empty(), "cp -a copy differs: {diff:?}");
    sh(Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "lost+found"])
        .arg(&src)
        .arg(&copy));

    // find | wc -l against skiff find (find also prints the mountpoint itself; the
    // ext4 image has lost+found, which the source lacks).
    let fuse_count = find_count(&m.mp);
    // Writes are refused.
    assert!(std::fs::write(m.path("etc/new"), b"x").is_err());
    umount(&m);
    assert_eq!(fuse_count, skiff_find_count(&img) + 1);
    assert_eq!(
        skiff_tests::file_hash(&img),
        before,
        "a read-only mount changes nothing"
    );
}

#[test]
fn fat_read_only() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // FAT: no symlinks, no modes; names as they are.
    let w = |rel: &str, data: &[u8]| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("README.TXT", b"fat guest\n");
    w("Long File Name.txt", b"long names\n");
    w("big/blob.bin", &pattern(3 << 20 | 5, 9));
    for d in 0..4 {
        for f in 0..25 {
            w(
                &format!("tree/d{d}/f{f}.txt"),
                format!("fat {d} {f}\n").repeat(f + 1).as_bytes(),
            );
        }
    }
    let img = dir.path().join("fat.img");
    skiff_tests::mkfs_vfat(&img, 16, 32 << 10, Some("SKIFFFAT"));
    // mcopy -s copies the tree (-b batch, -Q quits on first error).
    sh(Command::new("mcopy")
        .args(["-s", "-Q", "-i"])
        .arg(&img)
        .args(std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()))
        .arg("::/"));
    // --uid/--gid: FAT has no owners; every file shows the ones given.
    let m = Mounted::new(
        dir.path(),
        "fatmnt",
        &["--uid", "1234", "--gid", "567", "-a", img.to_str().unwrap()],
    );
    let ls = sh(Command::new("ls").arg("-lR").arg(&m.mp));
    assert!(ls.contains("Long File Name.txt"), "{ls}");
    {
        use std::os::unix::fs::MetadataExt;
        for p in ["README.TXT", "tree/d1", "big/blob.bin"] {
            let md = std::fs::metadata(m.path(p)).unwrap();
            assert_eq!((md.uid(), md.gid()), (1234, 567), "{p}");
        }
    }
    assert_eq!(
        sh(Command::new("cat").arg(m.path("README.TXT"))),
        "fat guest\n"
    );
    let diff = rsync_diff(&["-r", "--checksum"], &src, &m.mp);
    assert!(diff.is_empty(), "rsync sees differences: {diff:?}");
    let copy = dir.path().join("copy");
    sh(Command::new("cp").arg("-a").arg(&m.mp).arg(&copy));
    sh(Command::new("diff").arg("-r").arg(&src).arg(&copy));
    let fuse_count = find_count(&m.mp);
    umount(&m);
    assert_eq!(fuse_count, skiff_find_count(&img) + 1);
    assert_fsck_vfat_clean(&img);
}

#[test]
fn ext4_read_write_checked_with_debugfs() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let img = ext4_image(dir.path(), &src);
    let m = Mounted::new(dir.path(), "rw", &["--rw", "-a", img.to_str().unwrap()]);

    // cp -a a tree in, echo > a file, and the usual changes.
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(extra.join("nested/deeper")).unwrap();
    std::fs::write(
        extra.join("nested/deeper/data.bin"),
        pattern(3 << 20 | 77, 3),
    )
    .unwrap();
    std::fs::write(extra.join("small.txt"), b"small\n").unwrap();
    std::fs::set_permissions(
        extra.join("small.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("small.txt", extra.join("link")).unwrap();
    sh(Command::new("cp")
        .arg("-a")
        .arg(&extra)
        .arg(m.path("copied")));
    sh(Command::new("sh").arg("-c").arg(format!(
        "echo hello > '{0}/new.txt' && echo again >> '{0}/new.txt' && \
         mkdir '{0}/made' && mv '{0}/etc/motd' '{0}/made/motd' && rm '{0}/empty-file' && \
         rmdir '{0}/empty-dir' && chmod 700 '{0}/made' && ln -s new.txt '{0}/new-link' && \
         truncate -s 1000 '{0}/big/blob.bin' && touch -d @1600000000 '{0}/etc/hostname' && \
         chown 1234:567 '{0}/new.txt'",
        m.s()
    )));
    // Read back through the mount before unmounting.
    assert_eq!(std::fs::read(m.path("new.txt")).unwrap(), b"hello\nagain\n");
    assert_eq!(
        std::fs::read(m.path("copied/nested/deeper/data.bin")).unwrap(),
        pattern(3 << 20 | 77, 3)
    );
    // Symlinks keep their creation times: the appliance sets no symlink times (a
    // lutimes through the mount changes nothing), so rsync leaves link times out.
    let diff = rsync_diff(
        &["-a", "--checksum", "--omit-link-times"],
        &extra,
        &m.path("copied"),
    );
    assert!(diff.is_empty(), "{diff:?}");
    umount(&m);

    // debugfs reads what the mount wrote.
    assert_eq!(debugfs_cat(&img, "/new.txt"), b"hello\nagain\n");
    assert_eq!(
        debugfs_cat(&img, "/copied/nested/deeper/data.bin"),
        pattern(3 << 20 | 77, 3)
    );
    assert_eq!(debugfs_cat(&img, "/copied/small.txt"), b"small\n");
    assert_eq!(debugfs_cat(&img, "/made/motd"), b"welcome\n");
    let st = debugfs(&img, "stat /copied/small.txt");
    assert!(st.contains("Mode:  0640"), "{st}");
    let st = debugfs(&img, "stat /new.txt");
    assert!(
        st.contains("User:  1234") && st.contains("Group:   567"),
        "{st}"
    );
    let st = debugfs(&img, "stat /big/blob.bin");
    assert!(st.contains("Size: 1000"), "{st}");
    let st = debugfs(&img, "stat /etc/hostname");
    assert!(st.contains("mtime: 0x5f5e1000"), "{st}");
    assert!(debugfs(&img, "stat /new-link").contains("Fast link dest: \"new.txt\""));
    assert!(debugfs(&img, "stat /copied/link").contains("Fast link dest: \"small.txt\""));
    let root = debugfs(&img, "ls /");
    assert!(
        !root.contains("empty-file") && !root.contains("empty-dir"),
        "{root}"
    );
    assert!(debugfs(&img, "stat /made").contains("Mode:  0700"));
    assert_e2fsck_clean(&img);
}

#[test]
fn killed_with_sigterm_unmounts_and_shuts_down_cleanly() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let img = ext4_image(dir.path(), &src);
    let m = Mounted::new(dir.path(), "term", &["--rw", "-a", img.to_str().unwrap()]);
    std::fs::write(m.path("written-before-kill.txt"), b"kept\n").unwrap();
    sh(Command::new("kill").args(["-TERM", &m.pid.to_string()]));
    m.assert_all_gone();
    assert!(!mounted(&m.mp), "SIGTERM unmounts");
    assert_eq!(debugfs_cat(&img, "/written-before-kill.txt"), b"kept\n");
    assert_e2fsck_clean(&img);
}

#[test]
fn killed_with_sigkill_leaves_no_qemu_and_a_clean_filesystem() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let img = ext4_image(dir.path(), &src);
    let m = Mounted::new(dir.path(), "kill", &["--rw", "-a", img.to_str().unwrap()]);
    std::fs::write(m.path("written.txt"), b"maybe\n").unwrap();
    sh(Command::new("kill").args(["-KILL", &m.pid.to_string()]));
    m.assert_all_gone();
    // The mountpoint is left to fusermount -u.
    sh(Command::new("fusermount3").arg("-u").arg(&m.mp));
    assert!(!mounted(&m.mp));
    assert_e2fsck_clean(&img);
}

#[test]
fn foreground_mount_ends_at_fusermount_u() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = guests::debian_gpt(dir.path(), "debian.img", "fg-host");
    let mp = dir.path().join("fg");
    std::fs::create_dir_all(&mp).unwrap();
    // No -m: the guest is mounted the way it mounts itself (root, then the ESP).
    let mut child = Command::new(skiff_bin())
        .args(["--timeout", "120", "mount", "-f", "-a"])
        .arg(&img)
        .arg(&mp)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !mounted(&mp) {
        assert!(child.try_wait().unwrap().is_none(), "skiff mount -f exited");
        assert!(start.elapsed() < Duration::from_secs(120), "not mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read(mp.join("etc/hostname")).unwrap(),
        b"fg-host\n"
    );
    assert_eq!(
        std::fs::read(mp.join("boot/efi/hello.txt")).unwrap(),
        b"efi\n"
    );
    // A name on the other guest mount gets its own node id (no clash with the root's).
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(mp.join("boot/efi/hello.txt"))
        .unwrap()
        .ino();
    let b = std::fs::metadata(mp.join("etc/hostname")).unwrap().ino();
    assert_ne!(a, b);
    sh(Command::new("fusermount3").arg("-u").arg(&mp));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Not mounted: skiff umount says so (exit 2).
    assert_eq!(
        skiff(&["umount", mp.to_str().unwrap()]).status.code(),
        Some(2)
    );
}
