//! The mount table: maps absolute guest paths to (filesystem, path within it).
//!
//! Like Linux: `/` is mounted first, every other mountpoint must be an existing directory
//! of the filesystem below it, a path belongs to the mount with the longest matching
//! mountpoint prefix, and a mount with another mount below it cannot be unmounted.

use super::{FileSystem, FsResult};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind, FileType};

/// Longest accepted guest path, in bytes (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// Normalizes an absolute path: collapses `//` and `.`, resolves `..` lexically without
/// ever going above `/`, and drops a trailing `/`. Relative or empty paths, and paths
/// containing NUL, are `InvalidArgument`.
pub fn normalize(path: &str) -> FsResult<String> {
    if !path.starts_with('/') {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("path must be absolute: {path:?}"),
        ));
    }
    if path.len() > PATH_MAX {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("path longer than {PATH_MAX} bytes"),
        ));
    }
    if path.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "path contains a NUL byte",
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Joins a normalized absolute directory and one name.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Splits a normalized absolute path into (parent, final name); `/` has no parent.
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    if path == "/" {
        return None;
    }
    let i = path.rfind('/')?;
    let parent = if i == 0 { "/" } else { path.get(..i)? };
    Some((parent, path.get(i + 1..)?))
}

/// `path` relative to `mountpoint` when it lies at or below it: `Some("/")` for the
/// mountpoint itself, `Some("/x/y")` below it.
fn below<'a>(mountpoint: &str, path: &'a str) -> Option<&'a str> {
    if mountpoint == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(mountpoint)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// One mounted filesystem.
pub struct MountEntry {
    /// The device it was mounted from (`/dev/sda1`).
    pub device: String,
    /// Normalized absolute mountpoint.
    pub mountpoint: String,
    pub fs: Box<dyn FileSystem>,
}

impl core::fmt::Debug for MountEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MountEntry")
            .field("device", &self.device)
            .field("mountpoint", &self.mountpoint)
            .field("fstype", &self.fs.fstype())
            .finish()
    }
}

/// The appliance's mounts, in mount order.
#[derive(Default)]
pub struct MountTable {
    mounts: Vec<MountEntry>,
}

impl MountTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &MountEntry> {
        self.mounts.iter()
    }

    /// Every mounted filesystem, to change them all (e.g. the clock).
    pub fn filesystems_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn FileSystem>> {
        self.mounts.iter_mut().map(|m| &mut m.fs)
    }

    /// The mounts as the wire reports them, in mount order.
    pub fn list(&self) -> Vec<wire::Mount> {
        self.mounts
            .iter()
            .map(|m| wire::Mount {
                device: m.device.clone(),
                mountpoint: m.mountpoint.clone(),
                fstype: String::from(m.fs.fstype()),
                readonly: m.fs.readonly(),
            })
            .collect()
    }

    /// True when `device` is mounted somewhere.
    pub fn device_mounted(&self, device: &str) -> bool {
        self.mounts.iter().any(|m| m.device == device)
    }

    /// True when the normalized `path` is a mountpoint (including `/` once mounted).
    pub fn is_mountpoint(&self, path: &str) -> bool {
        self.mounts.iter().any(|m| m.mountpoint == path)
    }

    /// True when some mountpoint lies strictly below the normalized `path`.
    pub fn has_mount_below(&self, path: &str) -> bool {
        self.mounts
            .iter()
            .any(|m| m.mountpoint != path && below(path, &m.mountpoint).is_some())
    }

    /// Mounts `fs` from `device` at `mountpoint`. `/` must come first; any other
    /// mountpoint must be an existing directory; a mountpoint or device already in use is
    /// `Busy`. On failure `fs` is dropped without being synced (nothing was written).
    pub fn mount(
        &mut self,
        device: &str,
        mountpoint: &str,
        fs: Box<dyn FileSystem>,
    ) -> FsResult<()> {
        let mp = normalize(mountpoint)?;
        if self.device_mounted(device) {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("{device} is already mounted"),
            ));
        }
        if self.is_mountpoint(&mp) {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("something is already mounted on {mp}"),
            ));
        }
        if mp != "/" {
            if self.mounts.is_empty() {
                return Err(Error::new(
                    ErrorKind::NotMounted,
                    format!("mount a filesystem on / before mounting on {mp}"),
                ));
            }
            let (below_fs, inner) = self.resolve(&mp)?;
            let st = below_fs.stat(&inner, true).map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("mountpoint {mp} does not exist"),
                    )
                } else {
                    e
                }
            })?;
            if st.file_type != FileType::Directory {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("mountpoint {mp} is not a directory"),
                ));
            }
        }
        self.mounts.push(MountEntry {
            device: String::from(device),
            mountpoint: mp,
            fs,
        });
        Ok(())
    }

    /// Syncs and removes the mount at `mountpoint`. `Busy` while another mount lies below
    /// it; when the sync fails the filesystem stays mounted and the error is returned.
    pub fn umount(&mut self, mountpoint: &str) -> FsResult<MountEntry> {
        let mp = normalize(mountpoint)?;
        let i = self
            .mounts
            .iter()
            .position(|m| m.mountpoint == mp)
            .ok_or_else(|| Error::new(ErrorKind::NotMounted, format!("nothing mounted on {mp}")))?;
        if self.has_mount_below(&mp) {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("{mp} has other filesystems mounted below it"),
            ));
        }
        // OK to index: `i` came from `position` on this vector.
        self.mounts[i].fs.sync()?;
        Ok(self.mounts.remove(i))
    }

    /// Index of the mount holding the normalized `path` (longest mountpoint prefix).
    pub fn mount_index(&self, path: &str) -> FsResult<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, m) in self.mounts.iter().enumerate() {
            if below(&m.mountpoint, path).is_some()
                && best.is_none_or(|(_, len)| m.mountpoint.len() > len)
            {
                best = Some((i, m.mountpoint.len()));
            }
        }
        best.map(|(i, _)| i).ok_or_else(|| {
            Error::new(
                ErrorKind::NotMounted,
                format!("no filesystem is mounted at or above {path}"),
            )
        })
    }

    /// Resolves an absolute guest path to the filesystem holding it and the path within
    /// that filesystem.
    pub fn resolve(&mut self, path: &str) -> FsResult<(&mut dyn FileSystem, String)> {
        let p = normalize(path)?;
        let i = self.mount_index(&p)?;
        // OK to index: `mount_index` returns a valid index.
        let m = &mut self.mounts[i];
        // OK to unwrap: `mount_index` only picks mounts for which `below` is Some.
        let inner = String::from(below(&m.mountpoint, &p).unwrap_or("/"));
        Ok((m.fs.as_mut(), inner))
    }

    /// Syncs every mounted filesystem (innermost last mounted first); returns the first
    /// error after trying them all.
    pub fn sync_all(&mut self) -> FsResult<()> {
        let mut first = None;
        for m in self.mounts.iter_mut().rev() {
            if let Err(e) = m.fs.sync() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Drops, without syncing, every mount whose device matches `gone` (its disk was
    /// detached: there is nothing left to write to). Returns how many were dropped.
    pub fn forget(&mut self, gone: impl Fn(&str) -> bool) -> usize {
        let before = self.mounts.len();
        self.mounts.retain(|m| !gone(&m.device));
        before - self.mounts.len()
    }

    /// Syncs and removes every mount, innermost first. Returns the first sync error.
    pub fn umount_all(&mut self) -> FsResult<()> {
        let r = self.sync_all();
        self.mounts.clear();
        r
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;
    use core::cell::Cell;
    use std::rc::Rc;
    use wire::{DirEntry, Stat, StatVfs};

    /// An in-memory filesystem for mount-table and dispatcher tests: a map of path →
    /// (type, contents or link target). Directories are entries with type Directory.
    pub struct FakeFs {
        pub name: &'static str,
        pub ro: bool,
        pub nodes: BTreeMap<String, (FileType, Vec<u8>)>,
        pub syncs: Rc<Cell<u32>>,
    }

    impl FakeFs {
        pub fn new(name: &'static str, ro: bool) -> Self {
            let mut nodes = BTreeMap::new();
            nodes.insert("/".to_string(), (FileType::Directory, vec![]));
            FakeFs {
                name,
                ro,
                nodes,
                syncs: Rc::new(Cell::new(0)),
            }
        }
        pub fn with_dir(mut self, p: &str) -> Self {
            self.nodes
                .insert(p.to_string(), (FileType::Directory, vec![]));
            self
        }
        pub fn with_file(mut self, p: &str, data: &[u8]) -> Self {
            self.nodes
                .insert(p.to_string(), (FileType::Regular, data.to_vec()));
            self
        }
        pub fn with_link(mut self, p: &str, target: &str) -> Self {
            self.nodes.insert(
                p.to_string(),
                (FileType::Symlink, target.as_bytes().to_vec()),
            );
            self
        }
        fn get(&self, p: &str) -> FsResult<&(FileType, Vec<u8>)> {
            self.nodes
                .get(p)
                .ok_or_else(|| Error::new(ErrorKind::NotFound, p.to_string()))
        }
        fn check_rw(&self) -> FsResult<()> {
            if self.ro {
                Err(Error::new(ErrorKind::ReadOnly, "ro"))
            } else {
                Ok(())
            }
        }
        fn parent_dir(&self, p: &str) -> FsResult<()> {
            let (parent, _) = split_parent(p).ok_or(Error::new(ErrorKind::InvalidArgument, "/"))?;
            match self.get(parent)?.0 {
                FileType::Directory => Ok(()),
                _ => Err(Error::new(ErrorKind::NotADirectory, parent.to_string())),
            }
        }
        fn children(&self, p: &str) -> Vec<String> {
            self.nodes
                .keys()
                .filter(|k| k.as_str() != "/" && split_parent(k).map(|(d, _)| d) == Some(p))
                .cloned()
                .collect()
        }
    }

    impl FileSystem for FakeFs {
        fn fstype(&self) -> &str {
            self.name
        }
        fn readonly(&self) -> bool {
            self.ro
        }
        fn stat(&mut self, path: &str, _follow: bool) -> FsResult<Stat> {
            let (t, d) = self.get(path)?;
            Ok(Stat {
                file_type: *t,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: d.len() as u64,
                nlink: 1,
                ino: path.len() as u64,
                mtime: 0,
                atime: 0,
                ctime: 0,
            })
        }
        fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
            if self.get(path)?.0 != FileType::Directory {
                return Err(Error::new(ErrorKind::NotADirectory, path.to_string()));
            }
            let mut out = Vec::new();
            for c in self.children(path) {
                let stat = self.stat(&c, false)?;
                let name = split_parent(&c).unwrap().1.to_string();
                out.push(DirEntry { name, stat });
            }
            Ok(out)
        }
        fn read_link(&mut self, path: &str) -> FsResult<String> {
            match self.get(path)? {
                (FileType::Symlink, t) => Ok(String::from_utf8(t.clone()).unwrap()),
                _ => Err(Error::new(ErrorKind::InvalidArgument, "not a link")),
            }
        }
        fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
            let (t, d) = self.get(path)?;
            if *t == FileType::Directory {
                return Err(Error::new(ErrorKind::IsADirectory, path.to_string()));
            }
            let s = (offset as usize).min(d.len());
            let e = s.saturating_add(len).min(d.len());
            Ok(d[s..e].to_vec())
        }
        fn statvfs(&mut self) -> FsResult<StatVfs> {
            Ok(StatVfs {
                block_size: 512,
                blocks: 100,
                blocks_free: 50,
                blocks_avail: 50,
                files: 10,
                files_free: 5,
                name_max: 255,
            })
        }
        fn write(
            &mut self,
            path: &str,
            offset: u64,
            data: &[u8],
            truncate: bool,
            _mode: u32,
        ) -> FsResult<u64> {
            self.check_rw()?;
            self.parent_dir(path)?;
            let e = self
                .nodes
                .entry(path.to_string())
                .or_insert((FileType::Regular, vec![]));
            if e.0 == FileType::Directory {
                return Err(Error::new(ErrorKind::IsADirectory, path.to_string()));
            }
            if truncate {
                e.1.clear();
            }
            let end = offset as usize + data.len();
            if e.1.len() < end {
                e.1.resize(end, 0);
            }
            e.1[offset as usize..end].copy_from_slice(data);
            Ok(data.len() as u64)
        }
        fn mkdir(&mut self, path: &str, _mode: u32) -> FsResult<()> {
            self.check_rw()?;
            self.parent_dir(path)?;
            if self.nodes.contains_key(path) {
                return Err(Error::new(ErrorKind::AlreadyExists, path.to_string()));
            }
            self.nodes
                .insert(path.to_string(), (FileType::Directory, vec![]));
            Ok(())
        }
        fn unlink(&mut self, path: &str) -> FsResult<()> {
            self.check_rw()?;
            if self.get(path)?.0 == FileType::Directory {
                return Err(Error::new(ErrorKind::IsADirectory, path.to_string()));
            }
            self.nodes.remove(path);
            Ok(())
        }
        fn rmdir(&mut self, path: &str) -> FsResult<()> {
            self.check_rw()?;
            if self.get(path)?.0 != FileType::Directory {
                return Err(Error::new(ErrorKind::NotADirectory, path.to_string()));
            }
            if !self.children(path).is_empty() {
                return Err(Error::new(ErrorKind::NotEmpty, path.to_string()));
            }
            self.nodes.remove(path);
            Ok(())
        }
        fn rename(&mut self, from: &str, to: &str) -> FsResult<()> {
            self.check_rw()?;
            let moved: Vec<String> = self
                .nodes
                .keys()
                .filter(|k| below(from, k).is_some())
                .cloned()
                .collect();
            if moved.is_empty() {
                return Err(Error::new(ErrorKind::NotFound, from.to_string()));
            }
            for k in moved {
                let v = self.nodes.remove(&k).unwrap();
                let rest = below(from, &k).unwrap();
                let nk = if rest == "/" {
                    to.to_string()
                } else {
                    format!("{to}{rest}")
                };
                self.nodes.insert(nk, v);
            }
            Ok(())
        }
        fn chmod(&mut self, path: &str, _mode: u32) -> FsResult<()> {
            self.check_rw()?;
            self.get(path).map(|_| ())
        }
        fn symlink(&mut self, target: &str, linkpath: &str) -> FsResult<()> {
            self.check_rw()?;
            self.parent_dir(linkpath)?;
            self.nodes.insert(
                linkpath.to_string(),
                (FileType::Symlink, target.as_bytes().to_vec()),
            );
            Ok(())
        }
        fn truncate(&mut self, path: &str, size: u64) -> FsResult<()> {
            self.check_rw()?;
            let e = self
                .nodes
                .get_mut(path)
                .ok_or_else(|| Error::new(ErrorKind::NotFound, path.to_string()))?;
            e.1.resize(size as usize, 0);
            Ok(())
        }
        fn sync(&mut self) -> FsResult<()> {
            self.syncs.set(self.syncs.get() + 1);
            Ok(())
        }
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("//a///b/").unwrap(), "/a/b");
        assert_eq!(normalize("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(normalize("/../../x").unwrap(), "/x");
        assert_eq!(normalize("/a/..").unwrap(), "/");
        assert_eq!(normalize("/a/...").unwrap(), "/a/...");
        for bad in ["", "a", "./a", "a/b", "/a\0b"] {
            assert_eq!(
                normalize(bad).unwrap_err().kind,
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
        assert!(normalize(&"/a".repeat(3000)).is_err());
    }

    #[test]
    fn parents_and_joins() {
        assert_eq!(split_parent("/a"), Some(("/", "a")));
        assert_eq!(split_parent("/a/b/c"), Some(("/a/b", "c")));
        assert_eq!(split_parent("/"), None);
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
        assert_eq!(below("/boot", "/bootx"), None);
        assert_eq!(below("/boot", "/boot"), Some("/"));
        assert_eq!(below("/boot", "/boot/efi"), Some("/efi"));
    }

    #[test]
    fn mount_resolve_umount() {
        let mut t = MountTable::new();
        let boot = FakeFs::new("vfat", false).with_dir("/efi");
        let boot_syncs = boot.syncs.clone();
        // Nothing may be mounted before `/`.
        let e = t.mount("/dev/sda1", "/boot", Box::new(boot)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotMounted);
        assert_eq!(t.resolve("/x").err().unwrap().kind, ErrorKind::NotMounted);

        let root = FakeFs::new("ext4", false)
            .with_dir("/boot")
            .with_file("/etc", b"not a dir");
        t.mount("/dev/sda2", "/", Box::new(root)).unwrap();
        // A mountpoint must exist and be a directory.
        let e = t
            .mount("/dev/sda1", "/nope", Box::new(FakeFs::new("vfat", false)))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = t
            .mount("/dev/sda1", "/etc", Box::new(FakeFs::new("vfat", false)))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotADirectory);
        // Same device twice, same mountpoint twice.
        let e = t
            .mount("/dev/sda2", "/boot", Box::new(FakeFs::new("vfat", false)))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        let e = t
            .mount("/dev/sdb", "/", Box::new(FakeFs::new("vfat", false)))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);

        let boot = FakeFs::new("vfat", false).with_dir("/efi");
        let boot_syncs2 = boot.syncs.clone();
        drop(boot_syncs);
        t.mount("/dev/sda1", "/boot/./", Box::new(boot)).unwrap();
        t.mount("/dev/sdb", "/boot/efi", Box::new(FakeFs::new("x", true)))
            .unwrap();
        assert_eq!(
            t.list()
                .iter()
                .map(|m| (m.device.as_str(), m.mountpoint.as_str(), m.readonly))
                .collect::<Vec<_>>(),
            vec![
                ("/dev/sda2", "/", false),
                ("/dev/sda1", "/boot", false),
                ("/dev/sdb", "/boot/efi", true)
            ]
        );

        let (fs, inner) = t.resolve("/boot/efi/EFI/x").unwrap();
        assert_eq!((fs.fstype(), inner.as_str()), ("x", "/EFI/x"));
        let (fs, inner) = t.resolve("/boot//grub/../a").unwrap();
        assert_eq!((fs.fstype(), inner.as_str()), ("vfat", "/a"));
        let (fs, inner) = t.resolve("/boot").unwrap();
        assert_eq!((fs.fstype(), inner.as_str()), ("vfat", "/"));
        let (fs, inner) = t.resolve("/bootx").unwrap();
        assert_eq!((fs.fstype(), inner.as_str()), ("ext4", "/bootx"));
        let (fs, inner) = t.resolve("/boot/efi/../..").unwrap();
        assert_eq!((fs.fstype(), inner.as_str()), ("ext4", "/"));
        assert!(t.resolve("boot").is_err());

        // A mount with another below it is busy; the innermost goes first.
        assert_eq!(t.umount("/boot").unwrap_err().kind, ErrorKind::Busy);
        assert_eq!(t.umount("/").unwrap_err().kind, ErrorKind::Busy);
        assert_eq!(
            t.umount("/nothing").unwrap_err().kind,
            ErrorKind::NotMounted
        );
        assert!(t.has_mount_below("/boot"));
        assert!(t.is_mountpoint("/boot/efi"));
        assert_eq!(t.umount("/boot/efi/").unwrap().device, "/dev/sdb");
        assert_eq!(boot_syncs2.get(), 0);
        let m = t.umount("/boot").unwrap();
        assert_eq!(m.device, "/dev/sda1");
        assert_eq!(boot_syncs2.get(), 1, "umount syncs");
        let (fs, inner) = t.resolve("/boot/efi").unwrap();
        assert_eq!((fs.fstype(), inner.as_str()), ("ext4", "/boot/efi"));
        t.umount("/").unwrap();
        assert!(t.is_empty());
    }
}
