//! ext2/ext3/ext4: read through `ext4-view`, write through `rsext4` (see `write`).
//!
//! Reads go through an [`ext4_view::Ext4`] loaded from the device; `statvfs` reads the
//! counters straight from the superblock. Mounts are read-only until the writer is wired in.

mod error;
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
    /// The file last read from, kept open so sequential chunked reads continue where the
    /// previous one stopped instead of walking the extent tree from the start again.
    open: Option<(String, File)>,
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
        // Write support (write::Ext4Writer) is not wired in yet: always read-only.
        let _ = readonly;
        let readonly = true;
        Ok(Ext4Fs {
            dev,
            fs,
            readonly,
            open: None,
        })
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
        let m = if follow {
            self.fs.metadata(path)
        } else {
            self.fs.symlink_metadata(path)
        }
        .map_err(map_err)?;
        Ok(to_stat(&m))
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
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
        let target = self.fs.read_link(path).map_err(map_err)?;
        Ok(String::from_utf8_lossy(target.as_ref()).into_owned())
    }

    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
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

    fn statvfs(&mut self) -> FsResult<StatVfs> {
        superblock::statvfs(&self.dev)
    }
}
