//! Guest disk images for the inspection, `each` and `shell` tests, built with the real
//! tools (`mkfs.ext4 -d`, `mkfs.vfat` + `mcopy`, `sfdisk`, `dd` into partition offsets),
//! and the path of the `skiff` binary for CLI tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs a tool; panics with its stderr when it fails.
pub fn run(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog} is installed (tests/install-deps.sh): {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `sfdisk IMAGE` with `script` on stdin.
pub fn sfdisk(image: &Path, script: &str) {
    use std::io::Write;
    let mut c = Command::new("sfdisk")
        .args(["-q", s(image)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sfdisk is installed");
    c.stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .expect("write sfdisk script");
    let out = c.wait_with_output().expect("sfdisk runs");
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies `fs` into `image` at sector `start` (512-byte sectors), keeping holes.
pub fn dd_into(fs: &Path, image: &Path, start: u64) {
    run(
        "dd",
        &[
            &format!("if={}", s(fs)),
            &format!("of={}", s(image)),
            "bs=512",
            &format!("seek={start}"),
            "conv=notrunc,sparse",
            "status=none",
        ],
    );
}

/// `mkfs.ext4 -d ROOT` into a new file of `size` (e.g. `16M`), with `extra` options.
pub fn mkfs_ext4(root: &Path, out: &Path, size: &str, extra: &[&str]) {
    let mut args = vec!["-q", "-F"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-d", s(root), s(out), size]);
    run("mkfs.ext4", &args);
}

/// Writes `files` (`relative path`, contents) below `root`, creating directories.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, data) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("relative file path")).expect("mkdir");
        std::fs::write(&p, data).expect("write file");
    }
}

/// The host's dash (a real x86_64 ELF) copied to `to`.
fn copy_dash(to: &Path) {
    let src = ["/usr/bin/dash", "/bin/dash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dash is installed");
    std::fs::copy(src, to).expect("copy dash");
}

pub const DEBIAN_ROOT_UUID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
pub const DEBIAN_ESP_UUID: &str = "12AB-34CD";

/// A GPT disk like a Debian 12 install: `/dev/sda1` an ESP (FAT32, `UUID=12AB-34CD`,
/// holding `/hello.txt` = "efi\n"), `/dev/sda2` an ext4 root with os-release, hostname
/// `hostname`, an fstab by UUID for `/` and `/boot/efi` (plus swap by path), dpkg's
/// status file, `/bin -> usr/bin` and `/usr/bin/sh -> dash` (the host's dash).
pub fn debian_gpt(dir: &Path, name: &str, hostname: &str) -> PathBuf {
    let work = tempfile::tempdir_in(dir).expect("tempdir");
    let root = work.path().join("root");
    write_tree(
        &root,
        &[
            (
                "etc/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                 VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
            ),
            ("etc/hostname", &format!("{hostname}\n")),
            (
                "etc/fstab",
                &format!(
                    "# /etc/fstab\nUUID={DEBIAN_ROOT_UUID} / ext4 errors=remount-ro 0 1\n\
                     UUID={DEBIAN_ESP_UUID} /boot/efi vfat umask=0077 0 1\n\
                     /dev/vda3 none swap sw 0 0\nproc /proc proc defaults 0 0\n"
                ),
            ),
            ("etc/debian_version", "12.5\n"),
            (
                "var/lib/dpkg/status",
                "Package: dash\nStatus: install ok installed\n",
            ),
            ("boot/efi/.keep", ""),
        ],
    );
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    copy_dash(&root.join("usr/bin/dash"));
    std::os::unix::fs::symlink("dash", root.join("usr/bin/sh")).expect("symlink");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
    let ext4 = work.path().join("root.ext4");
    mkfs_ext4(&root, &ext4, "16M", &["-U", DEBIAN_ROOT_UUID, "-L", "root"]);
    let esp = work.path().join("esp.vfat");
    run(
        "mkfs.vfat",
        &[
            "-C",
            "-F",
            "32",
            "-i",
            "12AB34CD",
            "-n",
            "ESP",
            s(&esp),
            "34816",
        ],
    );
    let hello = work.path().join("hello.txt");
    std::fs::write(&hello, "efi\n").expect("write");
    run("mcopy", &["-i", s(&esp), s(&hello), "::/hello.txt"]);
    let img = dir.join(name);
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(56 << 20))
        .expect("create image");
    sfdisk(
        &img,
        "label: gpt\n\
         start=2048, size=69632, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n\
         start=71680, size=32768, type=0FC63DAF-8483-4772-8E79-3D69C4773F88, name=root\n",
    );
    dd_into(&esp, &img, 2048);
    dd_into(&ext4, &img, 71680);
    img
}

/// An MBR disk like an old Fedora: `/dev/sda1` ext4 `/boot` (label `boot`, 1 KiB
/// blocks), `/dev/sda2` the ext4 root with no os-release but `/etc/redhat-release`,
/// `HOSTNAME=` in `/etc/sysconfig/network`, `/var/lib/rpm`, a real `/bin/sh`, and an
/// fstab naming `/dev/vda2` and `LABEL=boot`.
pub fn fedora_mbr(dir: &Path, name: &str) -> PathBuf {
    let work = tempfile::tempdir_in(dir).expect("tempdir");
    let root = work.path().join("root");
    write_tree(
        &root,
        &[
            ("etc/redhat-release", "Fedora release 39 (Thirty Nine)\n"),
            (
                "etc/sysconfig/network",
                "NETWORKING=yes\nHOSTNAME=\"fedora-vm\"\n",
            ),
            (
                "etc/fstab",
                "/dev/vda2 / ext4 defaults 1 1\nLABEL=boot /boot ext4 defaults 1 2\n\
                 tmpfs /tmp tmpfs defaults 0 0\n",
            ),
            ("var/lib/rpm/rpmdb.sqlite", "x"),
            ("boot/.keep", ""),
        ],
    );
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    copy_dash(&root.join("bin/sh"));
    let boot = work.path().join("boot");
    write_tree(&boot, &[("vmlinuz", "not a kernel\n")]);
    let root_fs = work.path().join("root.ext4");
    mkfs_ext4(&root, &root_fs, "12M", &[]);
    let boot_fs = work.path().join("boot.ext4");
    mkfs_ext4(&boot, &boot_fs, "4M", &["-b", "1024", "-L", "boot"]);
    let img = dir.join(name);
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(20 << 20))
        .expect("create image");
    sfdisk(
        &img,
        "label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=24576, type=83\n",
    );
    dd_into(&boot_fs, &img, 2048);
    dd_into(&root_fs, &img, 10240);
    img
}

/// A bare ext4 image (no partition table) whose `/etc/hostname` is `hostname`.
pub fn small_ext4(dir: &Path, name: &str, hostname: &str) -> PathBuf {
    let work = tempfile::tempdir_in(dir).expect("tempdir");
    let root = work.path().join("root");
    write_tree(&root, &[("etc/hostname", &format!("{hostname}\n"))]);
    let img = dir.join(name);
    mkfs_ext4(&root, &img, "4M", &[]);
    img
}

/// The `skiff` binary of this build: `$SKIFF_BIN`, else `skiff` in the target profile
/// directory above this test executable (`cargo test --workspace` builds it, because
/// the CLI crate's own tests, `cli/tests/cli.rs`, need it).
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("skiff");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p skiff-cli, same profile) or set SKIFF_BIN",
        bin.display()
    );
    bin
}

/// Runs `skiff ARGS` (with a generous boot timeout) feeding `stdin`.
pub fn skiff_cli(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    // The options go first: after `each ... --` everything belongs to the command.
    let mut c = Command::new(skiff_bin())
        .args(["--timeout", "120"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run skiff");
    let mut input = c.stdin.take().expect("piped stdin");
    // A command that stops reading early closes its stdin: ignore that.
    let _ = input.write_all(stdin);
    drop(input);
    c.wait_with_output().expect("wait for skiff")
}
