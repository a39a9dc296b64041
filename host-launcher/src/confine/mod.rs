//! Confining qemu: what a qemu taken over by a hostile image could still do.
//!
//! qemu gets every file it needs as an inherited fd (images, the kernel memfd, the RPC and
//! QMP sockets), so after start-up it has no reason to open anything. Where the host
//! allows it:
//! - `-sandbox on,obsolete=deny,spawn=deny,resourcecontrol=deny` (seccomp: no exec, no
//!   fork, no scheduler/affinity changes, no obsolete syscalls) and
//!   `elevateprivileges=deny` (no set*uid) when qemu runs as the caller;
//! - when skiff runs as root, `-run-with user=UID:GID,chroot=DIR`: qemu drops to an
//!   unprivileged uid of its own (one per launch, from a range no account uses) and
//!   chroots into an empty, root-owned, read-only directory right after start-up. The
//!   uid change needs set*uid, so `elevateprivileges=allow` there; qemu sets
//!   `no_new_privs` and keeps no capability, so nothing regains root afterwards.
//!
//! Whether qemu has `-sandbox` (seccomp compiled in) and `-run-with` (qemu ≥ 9.1) is
//! probed once per binary (`qemu -sandbox on -version`) and remembered per process and in
//! `$XDG_CACHE_HOME/skiff/qemu-caps` keyed by the binary's path, size, mtime and inode.
//! `SKIFF_CONFINE=off` turns all of this off (debugging a custom qemu).

pub mod process;

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a qemu binary offers for confinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `-sandbox` (seccomp) is compiled in.
    pub sandbox: bool,
    /// `-run-with user=...,chroot=...` is understood.
    pub run_with: bool,
}

/// The seccomp policy for a qemu that stays the caller's uid.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";
/// ... and for one that drops to its own uid itself (it needs set*uid once).
pub const SANDBOX_DROPPING: &str =
    "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny";

/// The first uid of the range qemu processes drop to (2^24 of them, above what
/// `useradd` and systemd's dynamic users hand out).
pub const UID_BASE: u32 = 0x7A00_0000;
const UID_SPAN: u32 = 1 << 24;

/// Where confined qemus are chrooted when skiff runs as root.
pub const EMPTY_DIR: &str = "/run/skiff/empty";

static MEMO: Mutex<Option<HashMap<PathBuf, Caps>>> = Mutex::new(None);
static NEXT_UID: AtomicU32 = AtomicU32::new(0);

/// Is confinement turned off (`SKIFF_CONFINE=off|0|no`)?
pub fn disabled_by_env() -> bool {
    std::env::var("SKIFF_CONFINE")
        .map(|v| matches!(v.as_str(), "off" | "0" | "no" | "false"))
        .unwrap_or(false)
}

/// What `binary` supports (probed once, cached).
pub fn caps(binary: &Path) -> Caps {
    let key = which(binary).unwrap_or_else(|| binary.to_path_buf());
    if let Some(c) = MEMO
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return *c;
    }
    let id = file_key(&key);
    let cached = id.as_deref().and_then(read_cache);
    let c = match cached {
        Some(c) => c,
        None => {
            let c = Caps {
                sandbox: probe(binary, &["-sandbox", "on", "-version"]),
                run_with: probe(binary, &["-run-with", "async-teardown=off", "-version"]),
            };
            if let Some(id) = &id {
                write_cache(id, c);
            }
            c
        }
    };
    MEMO.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, c);
    c
}

/// The arguments that confine a qemu `binary` started by this process.
pub fn args(binary: &Path) -> Result<Vec<String>> {
    if disabled_by_env() {
        return Ok(Vec::new());
    }
    let c = caps(binary);
    let mut out = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let drop_uid = root && c.run_with;
    if c.sandbox {
        out.push("-sandbox".to_string());
        out.push(if drop_uid { SANDBOX_DROPPING } else { SANDBOX }.to_string());
    }
    if drop_uid {
        let dir = empty_dir()?;
        let uid = next_uid();
        out.push("-run-with".to_string());
        out.push(format!("user={uid}:{uid},chroot={}", dir.display()));
    }
    Ok(out)
}

/// A fresh unprivileged uid for the next qemu: distinct per launch within this process
/// and, through the pid, mostly across processes.
fn next_uid() -> u32 {
    let n = NEXT_UID.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    UID_BASE + ((pid.wrapping_mul(64) ^ n) % UID_SPAN)
}

/// The empty chroot: created root-owned 0555 under /run, refused if anyone else could
/// have put something there.
pub fn empty_dir() -> Result<PathBuf> {
    let dir = Path::new(EMPTY_DIR);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent);
    }
    let _ = std::fs::DirBuilder::new().mode(0o555).create(dir);
    let bad = |why: String| Error::Config(format!("cannot confine qemu in {EMPTY_DIR}: {why}"));
    let m = std::fs::symlink_metadata(dir).map_err(|e| bad(e.to_string()))?;
    if !m.is_dir() || m.uid() != 0 || m.permissions().mode() & 0o022 != 0 {
        return Err(bad(
            "it must be a directory owned by root and writable by nobody else".into(),
        ));
    }
    if std::fs::read_dir(dir)
        .map_err(|e| bad(e.to_string()))?
        .next()
        .is_some()
    {
        return Err(bad("it is not empty".into()));
    }
    Ok(dir.to_path_buf())
}

/// Does `binary args...` exit 0?
fn probe(binary: &Path, args: &[&str]) -> bool {
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `binary` as found on PATH (or as given when it has a slash).
fn which(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return std::fs::canonicalize(binary).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

/// The cache key of a binary: path, size, mtime (ns) and inode.
fn file_key(p: &Path) -> Option<String> {
    let m = std::fs::metadata(p).ok()?;
    Some(format!(
        "{}\t{}\t{}.{}\t{}",
        p.display(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

fn cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("skiff").join("qemu-caps"))
}

fn read_cache(key: &str) -> Option<Caps> {
    let text = std::fs::read_to_string(cache_file()?).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once('\t')?;
        (k == key).then(|| Caps {
            sandbox: v.contains('s'),
            run_with: v.contains('r'),
        })
    })
}

fn write_cache(key: &str, c: Caps) {
    let Some(file) = cache_file() else { return };
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    // Keep the file small: one line per binary, the newest wins.
    let path = key.split('\t').next().unwrap_or_default();
    text = text
        .lines()
        .filter(|l| l.split('\t').next() != Some(path))
        .map(|l| format!("{l}\n"))
        .collect();
    let flags = format!(
        "{}{}-",
        if c.sandbox { "s" } else { "" },
        if c.run_with { "r" } else { "" }
    );
    text.push_str(&format!("{key}\t{flags}\n"));
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_unprivileged_and_distinct() {
        let a = next_uid();
        let b = next_uid();
        assert_ne!(a, b);
        for u in [a, b] {
            assert!((UID_BASE..UID_BASE + UID_SPAN).contains(&u));
        }
    }

    #[test]
    fn qemu_caps_probe() {
        // This machine's qemu (Debian's) has seccomp and -run-with.
        let c = caps(Path::new("qemu-system-x86_64"));
        assert!(c.sandbox && c.run_with, "{c:?}");
        assert_eq!(
            caps(Path::new("/nonexistent/qemu")),
            Caps {
                sandbox: false,
                run_with: false
            }
        );
    }
}
