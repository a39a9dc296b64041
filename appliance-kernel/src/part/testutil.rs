//! Test helpers shared by the partition, probe and ext4 tests: temporary image files and
//! running the real tools (sfdisk, sgdisk, mkfs.*, debugfs, blkid).

use crate::block::{MemDisk, SharedDevice, shared};
use std::path::PathBuf;
use std::process::Command;

/// A temporary image file, removed on drop.
pub struct TempImage(pub PathBuf);

impl TempImage {
    pub fn new(tag: &str, size: u64) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!(
            "skiff-test-{}-{}-{}.img",
            tag,
            std::process::id(),
            n
        ));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        TempImage(p)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
    pub fn disk(&self) -> SharedDevice {
        shared(MemDisk::new(std::fs::read(&self.0).unwrap(), true))
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A temporary directory, removed (recursively) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("skiff-test-{}-{}-{}.d", tag, std::process::id(), n));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `KEY=value` lines of `blkid -o export` (or `blkid -p -o export`) for a file.
pub fn blkid(path: &str) -> std::collections::HashMap<String, String> {
    run("blkid", &["-p", "-o", "export", path], None)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
