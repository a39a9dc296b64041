//! Path-level requests: reading, listing, `find`, and the write side (`mkdir -p`,
//! `rm -r`, rename, ...) over the mount table. Guest paths are normalized here; every
//! recursive walk is bounded in depth and size so a corrupt tree (a directory cycle)
//! ends with an error instead of hanging.

use super::{Appliance, err};
use crate::fs::FsResult;
use crate::fs::vfs::{join, normalize, split_parent};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{DirEntry, Error, ErrorKind, FileType, MAX_CHUNK, MAX_FRAME, Stat};

/// Deepest directory nesting a recursive walk descends (Linux `PATH_MAX` / 2).
pub const MAX_DEPTH: usize = 2048;
/// Most names `find` returns.
pub const MAX_FIND_NAMES: usize = 1 << 20;
/// Most directory visits of one recursive walk (stops exponential blow-up when a corrupt
/// tree shares one directory between many parents).
pub const MAX_DIR_VISITS: usize = 1 << 18;

impl Appliance {
    pub fn stat(&mut self, path: &str, follow: bool) -> FsResult<Stat> {
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.stat(&inner, follow)
    }

    pub fn read_dir(&mut self, path: &str) -> FsResult<Vec<wire::DirEntry>> {
        let (fs, inner) = self.mounts.resolve(path)?;
        let mut v = fs.read_dir(&inner)?;
        v.retain(|e| e.name != "." && e.name != "..");
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn pread(&mut self, path: &str, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        if len > MAX_CHUNK {
            return Err(err(
                ErrorKind::TooLarge,
                format!("read of {len} bytes exceeds the {MAX_CHUNK}-byte chunk limit"),
            ));
        }
        let mut buf = self.take_buffer(len as usize);
        let (fs, inner) = match self.mounts.resolve(path) {
            Ok(x) => x,
            Err(e) => {
                self.recycle(buf);
                return Err(e);
            }
        };
        match fs.read_into(&inner, offset, &mut buf) {
            Ok(n) => {
                // A filesystem never answers more than was asked.
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => {
                self.recycle(buf);
                Err(e)
            }
        }
    }

    /// Every path below `path`, relative to it, depth first with each directory's
    /// entries sorted by name (`path` itself is not listed). Symlinks are listed, not
    /// followed; mounted filesystems below `path` are walked into.
    pub fn find(&mut self, path: &str) -> FsResult<Vec<String>> {
        let root = normalize(path)?;
        let st = self.stat(&root, true)?;
        if st.file_type != FileType::Directory {
            return Err(err(
                ErrorKind::NotADirectory,
                format!("{root} is not a directory"),
            ));
        }
        // Names and types only: no entry's attributes are read.
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut walk = super::TreeWalk::new(self, &root, false, None)?;
        while let Some(n) = walk.next(self)? {
            bytes = bytes.saturating_add(n.rel.len() + 2);
            if out.len() >= MAX_FIND_NAMES || bytes > MAX_FRAME as usize / 2 {
                return Err(err(
                    ErrorKind::TooLarge,
                    format!("find below {root}: too many names for one reply"),
                ));
            }
            out.push(n.rel);
        }
        Ok(out)
    }

    /// Walks the tree below `root` depth first with each directory's entries sorted,
    /// iteratively (the appliance's stack is small). `remove`: unlinks every
    /// non-directory and removes each directory after its contents (`root` included);
    /// otherwise pushes every relative path to `out`. Symlinks are never followed.
    fn walk_tree(&mut self, root: &str, remove: bool, out: &mut Vec<String>) -> FsResult<()> {
        let mut walk = Walk::default();
        let mut stack = vec![walk.open(self, String::from(root), String::new())?];
        while let Some(top) = stack.last_mut() {
            let Some(e) = top.entries.next() else {
                // OK to unwrap: `top` is the last element of the non-empty stack.
                let done = stack.pop().unwrap();
                walk.close(&done);
                if remove {
                    let (fs, inner) = self.mounts.resolve(&done.dir)?;
                    fs.rmdir(&inner)?;
                }
                continue;
            };
            if e.name.is_empty() || e.name.contains('/') || e.name.contains('\0') {
                return Err(err(
                    ErrorKind::Corrupt,
                    format!("directory {} holds an invalid name {:?}", top.dir, e.name),
                ));
            }
            let child = join(&top.dir, &e.name);
            let rel = if top.rel.is_empty() {
                e.name.clone()
            } else {
                format!("{}/{}", top.rel, e.name)
            };
            // A mountpoint's entry shows the directory below it; it is a directory.
            let is_dir =
                e.stat.file_type == FileType::Directory || self.mounts.is_mountpoint(&child);
            if !remove {
                walk.bytes = walk.bytes.saturating_add(rel.len() + 2);
                if out.len() >= MAX_FIND_NAMES || walk.bytes > MAX_FRAME as usize / 2 {
                    return Err(err(
                        ErrorKind::TooLarge,
                        format!("find below {root}: too many names for one reply"),
                    ));
                }
                out.push(rel.clone());
            }
            if is_dir {
                if stack.len() > MAX_DEPTH {
                    return Err(err(
                        ErrorKind::Loop,
                        format!("directory tree deeper than {MAX_DEPTH} levels at {child}"),
                    ));
                }
                let frame = walk.open(self, child, rel)?;
                stack.push(frame);
            } else if remove {
                let (fs, inner) = self.mounts.resolve(&child)?;
                fs.unlink(&inner)?;
            }
        }
        Ok(())
    }

    pub fn write_file(
        &mut self,
        path: &str,
        offset: u64,
        data: &[u8],
        truncate: bool,
        mode: u32,
    ) -> FsResult<u64> {
        let (fs, inner) = self.mounts.resolve(path)?;
        if inner == "/" {
            return Err(err(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        }
        fs.write(&inner, offset, data, truncate, mode & 0o7777)
    }

    /// Appends to a file, creating it (mode 0644) when missing.
    pub fn append(&mut self, path: &str, data: &[u8]) -> FsResult<u64> {
        let (fs, inner) = self.mounts.resolve(path)?;
        let size = match fs.stat(&inner, true) {
            Ok(st) if st.file_type == FileType::Directory => {
                return Err(err(
                    ErrorKind::IsADirectory,
                    format!("{path} is a directory"),
                ));
            }
            Ok(st) => st.size,
            Err(e) if e.kind == ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        fs.write(&inner, size, data, false, 0o644)
    }

    pub fn mkdir(&mut self, path: &str, parents: bool, mode: u32) -> FsResult<()> {
        let p = normalize(path)?;
        let mode = mode & 0o7777;
        if !parents {
            if p == "/" || self.mounts.is_mountpoint(&p) {
                return Err(err(ErrorKind::AlreadyExists, format!("{p} exists")));
            }
            let (fs, inner) = self.mounts.resolve(&p)?;
            return fs.mkdir(&inner, mode);
        }
        let mut cur = String::new();
        for comp in p.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            match self.stat(&cur, true) {
                Ok(st) if st.file_type == FileType::Directory => continue,
                Ok(_) => {
                    return Err(err(
                        ErrorKind::NotADirectory,
                        format!("{cur} exists and is not a directory"),
                    ));
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    let (fs, inner) = self.mounts.resolve(&cur)?;
                    fs.mkdir(&inner, mode)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `rm` / `rm -r`. Refuses `/` and anything that is or holds a mountpoint.
    pub fn remove(&mut self, path: &str, recursive: bool) -> FsResult<()> {
        let p = normalize(path)?;
        if p == "/" {
            return Err(err(ErrorKind::InvalidArgument, "refusing to remove /"));
        }
        self.not_a_mountpoint(&p)?;
        let st = self.stat(&p, false)?;
        if st.file_type != FileType::Directory {
            let (fs, inner) = self.mounts.resolve(&p)?;
            return fs.unlink(&inner);
        }
        if !recursive {
            return Err(err(
                ErrorKind::IsADirectory,
                format!("{p} is a directory (remove it recursively or use rmdir)"),
            ));
        }
        if self.mounts.has_mount_below(&p) {
            return Err(err(
                ErrorKind::Busy,
                format!("a filesystem is mounted below {p}"),
            ));
        }
        self.walk_tree(&p, true, &mut Vec::new())
    }

    pub fn rmdir(&mut self, path: &str) -> FsResult<()> {
        let p = normalize(path)?;
        self.not_a_mountpoint(&p)?;
        let (fs, inner) = self.mounts.resolve(&p)?;
        fs.rmdir(&inner)
    }

    /// Renames within one filesystem; across filesystems is `InvalidArgument` (EXDEV).
    pub fn rename(&mut self, from: &str, to: &str) -> FsResult<()> {
        let f = normalize(from)?;
        let t = normalize(to)?;
        self.not_a_mountpoint(&f)?;
        self.not_a_mountpoint(&t)?;
        if t.starts_with(&f) && t.as_bytes().get(f.len()) == Some(&b'/') {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("cannot move {f} into itself ({t})"),
            ));
        }
        let (fi, ti) = (self.mounts.mount_index(&f)?, self.mounts.mount_index(&t)?);
        if fi != ti {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("{f} and {t} are on different filesystems"),
            ));
        }
        let (_, tin) = self.mounts.resolve(&t)?;
        let (fs, fin) = self.mounts.resolve(&f)?;
        fs.rename(&fin, &tin)
    }

    pub fn chmod(&mut self, path: &str, mode: u32) -> FsResult<()> {
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.chmod(&inner, mode & 0o7777)
    }

    pub fn symlink(&mut self, target: &str, linkpath: &str) -> FsResult<()> {
        if target.is_empty() || target.contains('\0') {
            return Err(err(ErrorKind::InvalidArgument, "invalid symlink target"));
        }
        let p = normalize(linkpath)?;
        if split_parent(&p).is_none() || self.mounts.is_mountpoint(&p) {
            return Err(err(ErrorKind::AlreadyExists, format!("{p} exists")));
        }
        let (fs, inner) = self.mounts.resolve(&p)?;
        fs.symlink(target, &inner)
    }

    pub fn truncate(&mut self, path: &str, size: u64) -> FsResult<()> {
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.truncate(&inner, size)
    }

    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult<()> {
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.chown(&inner, uid, gid)
    }

    pub fn utimens(&mut self, path: &str, atime: i64, mtime: i64) -> FsResult<()> {
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.set_times(&inner, atime, mtime)
    }

    /// `touch`: creates `path` empty (0644) if missing, then stamps both times with the
    /// host's clock.
    pub fn touch(&mut self, path: &str) -> FsResult<()> {
        let now = self.clock.ok_or_else(|| {
            err(
                ErrorKind::InvalidArgument,
                "touch needs the host's clock (SetClock) first",
            )
        })?;
        let p = normalize(path)?;
        let (fs, inner) = self.mounts.resolve(&p)?;
        match fs.stat(&inner, true) {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {
                fs.write(&inner, 0, &[], false, 0o644)?;
            }
            Err(e) => return Err(e),
        }
        fs.set_times(&inner, now, now)
    }

    pub fn getxattr(&mut self, path: &str, name: &str) -> FsResult<Vec<u8>> {
        check_xattr_name(name)?;
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.get_xattr(&inner, name)
    }

    pub fn listxattrs(&mut self, path: &str) -> FsResult<Vec<String>> {
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.list_xattrs(&inner)
    }

    pub fn setxattr(&mut self, path: &str, name: &str, value: &[u8]) -> FsResult<()> {
        check_xattr_name(name)?;
        if value.len() > MAX_XATTR_VALUE {
            return Err(err(
                ErrorKind::TooLarge,
                format!("extended attribute values are at most {MAX_XATTR_VALUE} bytes"),
            ));
        }
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.set_xattr(&inner, name, value)
    }

    pub fn removexattr(&mut self, path: &str, name: &str) -> FsResult<()> {
        check_xattr_name(name)?;
        let (fs, inner) = self.mounts.resolve(path)?;
        fs.remove_xattr(&inner, name)
    }

    /// Remembers the host's clock and hands it to every mounted filesystem.
    pub fn set_clock(&mut self, now: i64) {
        self.clock = Some(now);
        for fs in self.mounts.filesystems_mut() {
            fs.set_clock(now);
        }
    }

    fn not_a_mountpoint(&self, p: &str) -> FsResult<()> {
        if self.mounts.is_mountpoint(p) {
            return Err(err(ErrorKind::Busy, format!("{p} is a mountpoint")));
        }
        Ok(())
    }
}

/// Largest extended attribute value accepted (Linux's XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: usize = 65536;

/// `namespace.name` with a namespace Linux knows and a name of 1..=255 bytes.
fn check_xattr_name(name: &str) -> FsResult<()> {
    let ok = name.len() <= 255
        && ["user.", "trusted.", "security.", "system."]
            .iter()
            .any(|ns| name.strip_prefix(ns).is_some_and(|rest| !rest.is_empty()))
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "{name:?} is not an extended attribute name (user.*, security.*, trusted.*, system.*)"
            ),
        ))
    }
}

/// One directory being walked: its remaining entries.
struct Frame {
    dir: String,
    rel: String,
    entries: alloc::vec::IntoIter<DirEntry>,
    key: Option<(usize, u64)>,
}

/// Bounds of one recursive walk: total directory visits, reply size, and the
/// directories currently open (by mount and inode) to detect cycles.
#[derive(Default)]
struct Walk {
    visits: usize,
    bytes: usize,
    ancestors: BTreeSet<(usize, u64)>,
}

impl Walk {
    fn open(&mut self, app: &mut Appliance, dir: String, rel: String) -> FsResult<Frame> {
        self.visits += 1;
        if self.visits > MAX_DIR_VISITS {
            return Err(err(
                ErrorKind::TooLarge,
                format!("more than {MAX_DIR_VISITS} directories below the starting point"),
            ));
        }
        let mi = app.mounts.mount_index(&dir)?;
        let st = app.stat(&dir, false)?;
        // Inode 0 means the filesystem has no stable number for it: no cycle check.
        let key = (st.ino != 0).then_some((mi, st.ino));
        if let Some(k) = key
            && !self.ancestors.insert(k)
        {
            return Err(Error::new(
                ErrorKind::Loop,
                format!("directory cycle: {dir} is its own ancestor"),
            ));
        }
        let entries = app.read_dir(&dir)?.into_iter();
        Ok(Frame {
            dir,
            rel,
            entries,
            key,
        })
    }

    fn close(&mut self, f: &Frame) {
        if let Some(k) = f.key {
            self.ancestors.remove(&k);
        }
    }
}
