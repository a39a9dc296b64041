//! ext2/ext3/ext4: read through `ext4-view`, write through `rsext4` (see `write`).
//!
//! Reads go through an [`ext4_view::Ext4`] loaded from the device. When mounted
//! read-write, every mutation is delegated to [`write::Ext4Writer`] (which leaves the
//! image consistent after each call) and the `ext4-view` instance is then reloaded so
//! reads see the change. `statvfs` reads the counters straight from the superblock.

mod error;
mod raw;
mod superblock;
pub mod write;

#[cfg(test)]
mod tests;

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use error::{DevReader, map_err};
use ext4_view::{Ext4, File, Metadata};
use wire::{DirEntry, Error, ErrorKind, FileType, Stat, StatVfs};

/// Directory entries listed for one directory at most (ext4 allows ~2^32 in theory; a
/// corrupt directory must not make us allocate without bound).
const MAX_DIR_ENTRIES: usize = 4 << 20;

/// A mounted ext2/3/4 filesystem.
pub struct Ext4Fs {
    dev: SharedDevice,
    fs: Ext4,
    readonly: bool,
    writer: Option<write::Ext4Writer>,
    /// The file last read from, kept open so sequential chunked reads continue where the
    /// previous one stopped instead of walking the extent tree from the start again.
    open: Option<(String, File)>,
    /// The direct reader of the hot paths (see `raw`); `None` when the filesystem has a
    /// feature it leaves to `ext4-view`.
    raw: Option<raw::Raw>,
}

fn load(dev: &SharedDevice) -> FsResult<Ext4> {
    Ext4::load(Box::new(DevReader(dev.clone()))).map_err(map_err)
}

/// Mounts an ext2/3/4 filesystem. Read-write only when `!readonly` and the device allows it.
pub fn mount(dev: SharedDevice, readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    Ok(Box::new(Ext4Fs::mount(dev, readonly)?))
}

impl Ext4Fs {
    /// See [`mount`].
    pub fn mount(dev: SharedDevice, readonly: bool) -> FsResult<Self> {
        let readonly = readonly || dev.borrow().readonly();
        let fs = load(&dev)?;
        let writer = if readonly {
            None
        } else {
            Some(write::Ext4Writer::open(dev.clone())?)
        };
        let raw = raw::Raw::new(dev.clone());
        Ok(Ext4Fs {
            dev,
            fs,
            readonly,
            writer,
            open: None,
            raw,
        })
    }

    /// Is the direct reader (`raw`) serving the hot paths? (Tests.)
    #[cfg(test)]
    pub fn has_direct_reader(&self) -> bool {
        self.raw.is_some()
    }

    /// Serves everything through `ext4-view` (tests compare the two).
    #[cfg(test)]
    pub fn disable_direct_reader(&mut self) {
        self.raw = None;
    }

    fn writer(&mut self) -> FsResult<&mut write::Ext4Writer> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::ReadOnly, "filesystem is mounted read-only"))
    }

    /// The writer, for reading extended attributes (ext4-view does not expose them): only
    /// read-write mounts have one.
    fn writer_or_xattr_ro(&mut self) -> FsResult<&mut write::Ext4Writer> {
        self.writer.as_mut().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "ext4: extended attributes are readable on read-write mounts only",
            )
        })
    }

    /// Runs a mutation on the writer, then reloads the read side so it sees the change.
    fn mutate<T>(&mut self, f: impl FnOnce(&mut write::Ext4Writer) -> FsResult<T>) -> FsResult<T> {
        self.open = None;
        let w = self.writer()?;
        if w.in_batch() {
            // The read side is refreshed once the batch is written out; meanwhile
            // `stat` asks rsext4.
            return f(w);
        }
        if let Some(r) = self.raw.as_mut() {
            r.invalidate();
        }
        let r = f(self.writer()?);
        // Reload even after a failure: the writer may have changed something before
        // failing, and a stale view must never be served.
        let reloaded = load(&self.dev);
        let value = r?;
        self.fs = reloaded?;
        Ok(value)
    }
}

fn file_type(m: &Metadata) -> FileType {
    use ext4_view::FileType as T;
    match m.file_type() {
        T::Regular => FileType::Regular,
        T::Directory => FileType::Directory,
        T::Symlink => FileType::Symlink,
        T::CharacterDevice => FileType::CharDevice,
        T::BlockDevice => FileType::BlockDevice,
        T::Fifo => FileType::Fifo,
        T::Socket => FileType::Socket,
    }
}

/// The inode change time. `ext4-view` 1.0 keeps it but has no accessor; its `Debug`
/// output (a derived one, stable for the pinned major version) carries it. Falls back to
/// the modification time.
fn ctime(m: &Metadata) -> i64 {
    let dbg = alloc::format!("{m:?}");
    let key = "ctime: Timestamp { seconds: ";
    dbg.find(key)
        .and_then(|i| dbg.get(i + key.len()..))
        .and_then(|rest| {
            let end = rest
                .find(|c: char| c != '-' && !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest.get(..end)?.parse().ok()
        })
        .unwrap_or_else(|| m.modified().seconds())
}

fn to_stat(m: &Metadata) -> Stat {
    let dir = m.is_dir();
    Stat {
        file_type: file_type(m),
        mode: u32::from(m.mode()),
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
        // ext4-view 1.0 exposes neither the link count nor the inode number.
        nlink: if dir { 2 } else { 1 },
        ino: 0,
        mtime: m.modified().seconds(),
        atime: m.accessed().seconds(),
        ctime: ctime(m),
    }
}

impl FileSystem for Ext4Fs {
    fn fstype(&self) -> &str {
        "ext4"
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn stat(&mut self, path: &str, follow: bool) -> FsResult<Stat> {
        // In a batch the disk lags behind rsext4's view: ask rsext4.
        if let Some(w) = self.writer.as_mut().filter(|w| w.in_batch()) {
            return w.stat(path, follow);
        }
        if let Some(r) = self.raw.as_mut().and_then(|r| r.stat(path, follow)) {
            return r;
        }
        // A path through symlinks: ext4-view resolves it, the direct reader stats the
        // result (so the inode number is real, as callers that compare files need).
        if follow
            && self.raw.is_some()
            && let Ok(canon) = self.fs.canonicalize(path)
            && let Ok(canon) = canon.to_str()
            && let Some(r) = self.raw.as_mut().and_then(|r| r.stat(canon, false))
        {
            return r;
        }
        let m = if follow {
            self.fs.metadata(path)
        } else {
            self.fs.symlink_metadata(path)
        }
        .map_err(map_err)?;
        Ok(to_stat(&m))
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        if let Some(r) = self.raw.as_mut().and_then(|r| r.read_dir(path)) {
            return r;
        }
        let mut out = Vec::new();
        for entry in self.fs.read_dir(path).map_err(map_err)? {
            let entry = entry.map_err(map_err)?;
            let name = entry.file_name();
            let name = name.as_ref();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() >= MAX_DIR_ENTRIES {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    alloc::format!("{path}: more than {MAX_DIR_ENTRIES} entries"),
                ));
            }
            let stat = to_stat(&entry.metadata().map_err(map_err)?);
            out.push(DirEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                stat,
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        if let Some(r) = self.raw.as_mut().and_then(|r| r.read_link(path)) {
            return r;
        }
        let target = self.fs.read_link(path).map_err(map_err)?;
        Ok(String::from_utf8_lossy(target.as_ref()).into_owned())
    }

    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        if self.raw.is_some() {
            // Bounded by the bytes left in the file (the size comes from the inode).
            let size = self.stat(path, true)?.size;
            let want = usize::try_from(size.saturating_sub(offset)).map_or(len, |l| l.min(len));
            let mut buf = vec![0u8; want];
            if let Some(r) = self
                .raw
                .as_mut()
                .and_then(|r| r.read_into(path, offset, &mut buf))
            {
                buf.truncate(r?);
                return Ok(buf);
            }
        }
        // Reuse the open file when this continues (or revisits) the last one read.
        let mut file = match self.open.take() {
            Some((p, f)) if p == path => f,
            _ => self.fs.open(path).map_err(map_err)?,
        };
        let size = file.metadata().len();
        if offset >= size || len == 0 {
            self.open = Some((String::from(path), file));
            return Ok(Vec::new());
        }
        if file.position() != offset {
            file.seek_to(offset).map_err(map_err)?;
        }
        // Bounded by the bytes left in the file.
        let want = usize::try_from(size - offset).map_or(len, |left| left.min(len));
        let mut buf = vec![0u8; want];
        let mut done = 0;
        while done < want {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let n = file.read_bytes(rest).map_err(map_err)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        self.open = Some((String::from(path), file));
        Ok(buf)
    }

    fn read_dir_names(&mut self, path: &str) -> FsResult<Vec<(String, FileType)>> {
        if let Some(r) = self.raw.as_mut().and_then(|r| r.read_dir_names(path)) {
            return r;
        }
        let mut out = Vec::new();
        for entry in self.fs.read_dir(path).map_err(map_err)? {
            let entry = entry.map_err(map_err)?;
            let name = entry.file_name();
            let name = name.as_ref();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() >= MAX_DIR_ENTRIES {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    alloc::format!("{path}: more than {MAX_DIR_ENTRIES} entries"),
                ));
            }
            let t = match entry.file_type().map_err(map_err)? {
                ext4_view::FileType::Regular => FileType::Regular,
                ext4_view::FileType::Directory => FileType::Directory,
                ext4_view::FileType::Symlink => FileType::Symlink,
                ext4_view::FileType::CharacterDevice => FileType::CharDevice,
                ext4_view::FileType::BlockDevice => FileType::BlockDevice,
                ext4_view::FileType::Fifo => FileType::Fifo,
                ext4_view::FileType::Socket => FileType::Socket,
            };
            out.push((String::from_utf8_lossy(name).into_owned(), t));
        }
        Ok(out)
    }

    fn read_into(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        if let Some(r) = self
            .raw
            .as_mut()
            .and_then(|r| r.read_into(path, offset, buf))
        {
            return r;
        }
        let data = self.read(path, offset, buf.len())?;
        let n = data.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), data.get(..n)) {
            d.copy_from_slice(s);
        }
        Ok(n)
    }

    fn allocated(&mut self, _path: &str, st: &Stat) -> FsResult<Option<u64>> {
        match self.raw.as_mut() {
            Some(r) if st.ino != 0 => r.allocated(st.ino),
            _ => Ok(None),
        }
    }

    fn statvfs(&mut self) -> FsResult<StatVfs> {
        superblock::statvfs(&self.dev)
    }

    fn write(
        &mut self,
        path: &str,
        offset: u64,
        data: &[u8],
        truncate: bool,
        mode: u32,
    ) -> FsResult<u64> {
        self.mutate(|w| w.write(path, offset, data, truncate, mode))
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> FsResult<()> {
        self.mutate(|w| w.mkdir(path, mode))
    }

    fn unlink(&mut self, path: &str) -> FsResult<()> {
        self.mutate(|w| w.unlink(path))
    }

    fn rmdir(&mut self, path: &str) -> FsResult<()> {
        self.mutate(|w| w.rmdir(path))
    }

    fn rename(&mut self, from: &str, to: &str) -> FsResult<()> {
        self.mutate(|w| w.rename(from, to))
    }

    fn chmod(&mut self, path: &str, mode: u32) -> FsResult<()> {
        self.mutate(|w| w.chmod(path, mode))
    }

    fn symlink(&mut self, target: &str, linkpath: &str) -> FsResult<()> {
        self.mutate(|w| w.symlink(target, linkpath))
    }

    fn truncate(&mut self, path: &str, size: u64) -> FsResult<()> {
        self.mutate(|w| w.truncate(path, size))
    }

    fn get_xattr(&mut self, path: &str, name: &str) -> FsResult<Vec<u8>> {
        self.writer_or_xattr_ro()?.get_xattr(path, name)
    }

    fn list_xattrs(&mut self, path: &str) -> FsResult<Vec<String>> {
        self.writer_or_xattr_ro()?.list_xattrs(path)
    }

    fn set_xattr(&mut self, path: &str, name: &str, value: &[u8]) -> FsResult<()> {
        self.mutate(|w| w.set_xattr(path, name, value))
    }

    fn remove_xattr(&mut self, path: &str, name: &str) -> FsResult<()> {
        self.mutate(|w| w.remove_xattr(path, name))
    }

    fn set_clock(&mut self, now: i64) {
        if let Some(w) = self.writer.as_mut() {
            w.set_time(now);
        }
    }

    fn sync(&mut self) -> FsResult<()> {
        self.end_batch()?;
        match self.writer.as_mut() {
            Some(w) => w.sync(),
            None => Ok(()),
        }
    }

    fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult<()> {
        self.mutate(|w| w.chown(path, uid, gid))
    }

    fn set_times(&mut self, path: &str, atime: i64, mtime: i64) -> FsResult<()> {
        self.mutate(|w| w.set_times(path, atime, mtime))
    }

    fn begin_batch(&mut self) -> FsResult<()> {
        match self.writer.as_mut() {
            Some(w) => w.begin_batch(),
            None => Ok(()),
        }
    }

    fn end_batch(&mut self) -> FsResult<()> {
        let Some(w) = self.writer.as_mut().filter(|w| w.in_batch()) else {
            return Ok(());
        };
        let r = w.end_batch();
        // The read side sees everything the batch wrote (even after a failure).
        self.open = None;
        if let Some(raw) = self.raw.as_mut() {
            raw.invalidate();
        }
        let reloaded = load(&self.dev);
        r?;
        self.fs = reloaded?;
        Ok(())
    }
}
