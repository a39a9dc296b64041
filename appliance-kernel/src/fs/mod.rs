//! Filesystems: the interface a mounted filesystem offers to the RPC layer.
//!
//! Paths handed to a [`FileSystem`] are absolute *within that filesystem* (`/`, `/etc/passwd`),
//! already split from the mountpoint by the mount table. Every method returns a
//! [`wire::Error`] on failure: a corrupt structure is `Corrupt`, a missing feature
//! `Unsupported` (naming it), never a panic.

pub mod btrfs;
pub mod crc32c;
pub mod ext4;
pub mod fat;
pub mod ntfs;
pub mod probe;
pub mod vfs;
pub mod xfs;

use alloc::string::String;
use alloc::vec::Vec;
use wire::{DirEntry, Error, ErrorKind, FileType, Stat, StatVfs};

pub type FsResult<T> = Result<T, Error>;

fn read_only() -> Error {
    Error::new(ErrorKind::ReadOnly, "filesystem is mounted read-only")
}

/// What a writable filesystem that cannot hold an attribute answers.
fn cannot_hold(fs: &(impl FileSystem + ?Sized), what: &str) -> Error {
    if fs.readonly() {
        read_only()
    } else {
        Error::new(
            ErrorKind::Unsupported,
            alloc::format!("{} cannot set {what}", fs.fstype()),
        )
    }
}

pub trait FileSystem {
    /// `ext4`, `vfat`, ...
    fn fstype(&self) -> &str;
    /// Mounted read-only (writes fail with `ReadOnly`).
    fn readonly(&self) -> bool;

    /// `follow`: resolve a final symlink (stat) or not (lstat).
    fn stat(&mut self, path: &str, follow: bool) -> FsResult<Stat>;
    /// Entries of a directory, without `.` and `..`.
    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>>;
    fn read_link(&mut self, path: &str) -> FsResult<String>;
    /// Up to `len` bytes at `offset`; shorter at end of file, empty past it.
    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>>;
    fn statvfs(&mut self) -> FsResult<StatVfs>;

    /// Writes `data` at `offset`, creating the file with `mode` if missing; `truncate`
    /// empties an existing file first. Returns the bytes written.
    fn write(
        &mut self,
        _path: &str,
        _offset: u64,
        _data: &[u8],
        _truncate: bool,
        _mode: u32,
    ) -> FsResult<u64> {
        Err(read_only())
    }
    fn mkdir(&mut self, _path: &str, _mode: u32) -> FsResult<()> {
        Err(read_only())
    }
    /// Removes a file or symlink (not a directory).
    fn unlink(&mut self, _path: &str) -> FsResult<()> {
        Err(read_only())
    }
    /// Removes an empty directory.
    fn rmdir(&mut self, _path: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn rename(&mut self, _from: &str, _to: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn chmod(&mut self, _path: &str, _mode: u32) -> FsResult<()> {
        Err(read_only())
    }
    fn symlink(&mut self, _target: &str, _linkpath: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn truncate(&mut self, _path: &str, _size: u64) -> FsResult<()> {
        Err(read_only())
    }
    /// The value of extended attribute `name` (`namespace.name`).
    fn get_xattr(&mut self, _path: &str, name: &str) -> FsResult<Vec<u8>> {
        Err(Error::new(
            ErrorKind::Unsupported,
            alloc::format!(
                "{}: extended attributes ({name}) are not supported",
                self.fstype()
            ),
        ))
    }
    /// The names of the extended attributes of `path`.
    fn list_xattrs(&mut self, _path: &str) -> FsResult<Vec<String>> {
        Err(Error::new(
            ErrorKind::Unsupported,
            alloc::format!("{}: extended attributes are not supported", self.fstype()),
        ))
    }
    /// Creates or replaces extended attribute `name`.
    fn set_xattr(&mut self, _path: &str, _name: &str, _value: &[u8]) -> FsResult<()> {
        Err(read_only())
    }
    /// Removes extended attribute `name`.
    fn remove_xattr(&mut self, _path: &str, _name: &str) -> FsResult<()> {
        Err(read_only())
    }
    /// The time (seconds since the epoch) to stamp on what changes from now on: the
    /// host's clock (the appliance has none). Filesystems that stamp nothing ignore it.
    fn set_clock(&mut self, _now: i64) {}
    /// Writes back everything buffered and flushes the device. Called at umount/shutdown.
    fn sync(&mut self) -> FsResult<()> {
        Ok(())
    }

    // ---- walks and bulk data (defaults built on the methods above) ----

    /// Names and types of a directory's entries (without `.` and `..`), unsorted: what a
    /// walk needs to descend, without reading every entry's attributes.
    fn read_dir_names(&mut self, path: &str) -> FsResult<Vec<(String, FileType)>> {
        Ok(self
            .read_dir(path)?
            .into_iter()
            .map(|e| (e.name, e.stat.file_type))
            .collect())
    }

    /// Reads up to `buf.len()` bytes at `offset` into `buf`; returns how many (short only
    /// at end of file). Filesystems that can read the device straight into `buf` (the
    /// reply's buffer) override this; the default reads and copies.
    fn read_into(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let data = self.read(path, offset, buf.len())?;
        let n = data.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    /// Bytes the node at `path` (not following a final symlink; `st` is its `lstat`)
    /// occupies on disk, as `du` counts them (`st_blocks` × 512). `None`: the
    /// filesystem cannot tell, and the caller estimates from the size.
    fn allocated(&mut self, _path: &str, _st: &Stat) -> FsResult<Option<u64>> {
        Ok(None)
    }

    /// Sets the owner of `path` (not following a final symlink).
    fn chown(&mut self, _path: &str, _uid: u32, _gid: u32) -> FsResult<()> {
        Err(cannot_hold(self, "owners"))
    }

    /// Sets the access and modification times of `path` (seconds since the epoch; not
    /// following a final symlink).
    fn set_times(&mut self, _path: &str, _atime: i64, _mtime: i64) -> FsResult<()> {
        Err(cannot_hold(self, "times"))
    }

    /// Many changes follow (a tree copied in): the filesystem may keep its write state
    /// open until [`FileSystem::end_batch`] instead of committing after each call.
    /// Reads of paths changed meanwhile must still see the changes (`stat` at least).
    fn begin_batch(&mut self) -> FsResult<()> {
        Ok(())
    }

    /// Commits everything since [`FileSystem::begin_batch`]; afterwards the filesystem
    /// is as consistent as after any single call. Also done by `sync`.
    fn end_batch(&mut self) -> FsResult<()> {
        Ok(())
    }
}
