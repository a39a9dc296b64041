//! Helpers shared by the integration tests: image building with the real tools
//! (`qemu-img`), deterministic disk contents, and a launch builder with test settings.

pub mod guests;
pub mod lvm;

use skiff::{Appliance, Builder};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use skiff;

/// Deterministic pseudo-random bytes (xorshift), different for every `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `qemu-img` with `args`; panics with its stderr if it fails.
pub fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("qemu-img is installed (tests/install-deps.sh)");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A raw image of `size` bytes filled with [`pattern`]`(size, seed)`.
pub fn raw_image(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pattern(size, seed)).expect("write raw image");
    p
}

/// `qemu-img convert -O qcow2 raw dest`.
pub fn qcow2_from(raw: &Path, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", s(raw), s(&p)]);
    p
}

/// `qemu-img create -f FORMAT dest SIZE`: an empty image.
pub fn empty_image(dir: &Path, name: &str, format: &str, size: &str) -> PathBuf {
    let p = dir.join(name);
    qemu_img(&["create", "-q", "-f", format, s(&p), size]);
    p
}

/// The guest-visible contents of any image: `qemu-img convert -O raw` to a temp file.
pub fn contents(image: &Path, format: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.raw");
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        format,
        "-O",
        "raw",
        s(image),
        s(&out),
    ]);
    std::fs::read(&out).expect("read converted image")
}

/// A launch builder with settings for a busy test machine: generous timeouts (TCG on two
/// shared cores can be slow), `SKIFF_TEST_VERBOSE=1` for the appliance log.
pub fn builder() -> Builder {
    Appliance::builder()
        .timeout(Duration::from_secs(120))
        .call_timeout(Duration::from_secs(120))
        .verbose(std::env::var("SKIFF_TEST_VERBOSE").is_ok_and(|v| v == "1"))
}

// ---- filesystem images (mkfs.ext4 -d, mkfs.vfat + mtools, partition tables) ----

/// Runs `cmd`; panics with its output if it fails. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/install-deps.sh installs the tools)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mkfs.ext4 -q -F [extra] -d src img size` (`size` as mkfs takes it: `32M`).
pub fn mkfs_ext4(img: &Path, size: &str, src: &Path, extra: &[&str]) {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0"])
        .args(extra)
        .arg("-d")
        .arg(src)
        .arg(img)
        .arg(size));
}

/// `mkfs.vfat -C -F bits [-n label] img kib`.
pub fn mkfs_vfat(img: &Path, bits: u32, kib: u64, label: Option<&str>) {
    let mut c = Command::new("mkfs.vfat");
    c.args(["-C", "-F", &bits.to_string()]);
    if let Some(l) = label {
        c.args(["-n", l]);
    }
    run(c.arg(img).arg(kib.to_string()));
}

/// `mmd -i img ::/dir` for each directory, in order.
pub fn mmd(img: &Path, dirs: &[&str]) {
    for d in dirs {
        run(Command::new("mmd")
            .arg("-i")
            .arg(img)
            .arg(format!("::/{d}")));
    }
}

/// `mcopy -i img host ::/guest`.
pub fn mcopy(img: &Path, host: &Path, guest: &str) {
    run(Command::new("mcopy")
        .arg("-i")
        .arg(img)
        .arg(host)
        .arg(format!("::/{guest}")));
}

/// `mtype -i img ::/path` as bytes.
pub fn mtype(img: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("mtype")
        .arg("-i")
        .arg(img)
        .arg(format!("::/{path}"))
        .output()
        .expect("mtype is installed");
    assert!(out.status.success(), "mtype {path}: {out:?}");
    out.stdout
}

/// `debugfs -R request img` (stdout; debugfs prints its banner on stderr).
pub fn debugfs(img: &Path, request: &str) -> String {
    run(Command::new("debugfs").arg("-R").arg(request).arg(img))
}

/// `debugfs -R 'cat path'` as bytes.
pub fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .output()
        .expect("debugfs is installed");
    assert!(out.status.success(), "debugfs cat {path}: {out:?}");
    out.stdout
}

/// `e2fsck -fn img` must report a clean filesystem.
pub fn assert_e2fsck_clean(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck is installed");
    assert!(
        out.status.success(),
        "e2fsck -fn {img:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fsck.vfat -n img` must report a clean filesystem.
pub fn assert_fsck_vfat_clean(img: &Path) {
    let out = Command::new("fsck.vfat")
        .arg("-n")
        .arg(img)
        .output()
        .expect("fsck.vfat is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "fsck.vfat -n {img:?}: {text}");
}

/// Writes the file `part` into `disk` at byte `offset` (what `dd conv=notrunc` does).
pub fn place(disk: &Path, part: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let data = std::fs::read(part).expect("read partition image");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .expect("open disk image");
    f.write_all_at(&data, offset).expect("write partition");
}

/// Copies `len` bytes of `disk` at `offset` to a new file `out`.
pub fn extract(disk: &Path, offset: u64, len: u64, out: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(disk).expect("open disk image");
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).expect("read partition");
    std::fs::write(out, buf).expect("write extracted partition");
}

/// A 64-bit FNV-1a hash of a file's bytes (to check an image is unchanged).
pub fn file_hash(p: &Path) -> u64 {
    let data = std::fs::read(p).expect("read file to hash");
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seeded() {
        assert_eq!(pattern(100, 1), pattern(100, 1));
        assert_ne!(pattern(100, 1), pattern(100, 2));
        assert_eq!(pattern(13, 5).len(), 13);
    }
}
