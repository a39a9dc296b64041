//! Helpers shared by the integration tests: image building with the real tools
//! (`qemu-img`), deterministic disk contents, and a launch builder with test settings.

pub mod guests;

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
