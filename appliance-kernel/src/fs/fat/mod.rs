//! FAT12/16/32 with long file names, read and write, through `hadris-fat`.
//!
//! Presentation follows Linux `vfat` with default options: uid/gid 0, directories 0755,
//! files 0644 (0444 with the read-only attribute), timestamps from the directory entry
//! taken as UTC, directory sizes as their cluster-chain length. FAT has no Unix
//! permissions and no symbolic links: `chmod`/`symlink` are `Unsupported`.
//!
//! The boot sector is parsed and range-checked here ([`geometry`]) before hadris-fat
//! opens the volume, and every directory entry's first cluster is checked before it is
//! followed, so corrupt fields become `Corrupt` errors rather than reaching hadris-fat's
//! arithmetic.

mod geometry;
mod io;
#[cfg(test)]
mod tests;

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use geometry::{FatReader, Geometry};
use hadris_fat::sync::write::FileWriter;
use hadris_fat::sync::{
    DirectoryEntry, FatDir, FatVolume, FatVolumeReadExt, FatVolumeWriteExt, FileEntry, SeekFrom,
};
use io::{DevIo, LastError};
use wire::{DirEntry, Error, ErrorKind, FileType, Stat, StatVfs};

/// FAT's limit on directory entries (32-byte slots) per directory, spec section 6.
const MAX_DIR_SLOTS: usize = 65536;
/// Largest FAT file.
const MAX_FILE: u64 = u32::MAX as u64;
/// Linux's inode number of a FAT root directory.
const ROOT_INO: u64 = 1;

/// Mounts a FAT filesystem. Read-write only when `!readonly` and the device allows it.
pub fn mount(dev: SharedDevice, readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    Ok(Box::new(FatFs::open(dev, readonly)?))
}

pub struct FatFs {
    vol: FatVolume<DevIo>,
    dev: SharedDevice,
    geo: Geometry,
    readonly: bool,
    last: LastError,
}

/// What a path names.
enum Node {
    Root,
    Entry(Box<FileEntry>),
}

fn ro() -> Error {
    Error::new(ErrorKind::ReadOnly, "filesystem is mounted read-only")
}

fn split(path: &str) -> FsResult<(&str, &str)> {
    let path = path.trim_end_matches('/');
    let i = path
        .rfind('/')
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, format!("bad path {path:?}")))?;
    let parent = if i == 0 { "/" } else { &path[..i] };
    let name = &path[i + 1..];
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("bad path {path:?}"),
        ));
    }
    Ok((parent, name))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of a FAT date and time, read as UTC. Out-of-range fields are
/// clamped (as Linux does), never an error.
pub fn fat_time_to_unix(date: u16, time: u16) -> i64 {
    let year = 1980 + i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0x0F).clamp(1, 12);
    let day = i64::from(date & 0x1F).max(1);
    let h = i64::from(time >> 11).min(23);
    let mi = i64::from((time >> 5) & 0x3F).min(59);
    let s = (i64::from(time & 0x1F) * 2).min(59);
    days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s
}

impl FatFs {
    pub fn open(dev: SharedDevice, readonly: bool) -> FsResult<Self> {
        let geo = Geometry::read(&dev)?;
        let readonly = readonly || dev.borrow().readonly();
        let last = LastError::default();
        let io = DevIo::new(dev.clone(), readonly, last.clone());
        let vol = FatVolume::open(io).map_err(|e| map_err(&last, e, "mount"))?;
        Ok(FatFs {
            vol,
            dev,
            geo,
            readonly,
            last,
        })
    }

    fn err(&self, e: hadris_fat::Error, what: &str) -> Error {
        map_err(&self.last, e, what)
    }

    fn check_rw(&self) -> FsResult<()> {
        if self.readonly { Err(ro()) } else { Ok(()) }
    }

    /// Refuses an entry whose first cluster lies outside the volume.
    fn check_entry(&self, e: &FileEntry, path: &str) -> FsResult<()> {
        let c = e.cluster().0 as u64;
        if c != 0 && !self.geo.valid_cluster(c) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{path}: first cluster {c} is outside the volume"),
            ));
        }
        if e.is_directory() && c == 0 {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{path}: directory without clusters"),
            ));
        }
        Ok(())
    }

    /// Finds `path` by walking its components from the root.
    fn lookup(&self, path: &str) -> FsResult<Node> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let Some((last, dirs)) = comps.split_last() else {
            return Ok(Node::Root);
        };
        let mut dir = self.vol.root_dir();
        for c in dirs {
            let e = self.find_in(&dir, c, path)?;
            if !e.is_directory() {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{path}: {c} is not a directory"),
                ));
            }
            dir = self.vol.open_dir_entry(&e).map_err(|e| self.err(e, path))?;
        }
        Ok(Node::Entry(Box::new(self.find_in(&dir, last, path)?)))
    }

    fn find_in(&self, dir: &FatDir<'_, DevIo>, name: &str, path: &str) -> FsResult<FileEntry> {
        if name == "." || name == ".." {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path}: unnormalized path"),
            ));
        }
        let e = dir
            .find(name)
            .map_err(|e| self.err(e, path))?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{path}: not found")))?;
        self.check_entry(&e, path)?;
        Ok(e)
    }

    /// The directory `path` names.
    fn open_dir(&self, path: &str) -> FsResult<FatDir<'_, DevIo>> {
        match self.lookup(path)? {
            Node::Root => Ok(self.vol.root_dir()),
            Node::Entry(e) if e.is_directory() => {
                self.vol.open_dir_entry(&e).map_err(|e| self.err(e, path))
            }
            Node::Entry(_) => Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            )),
        }
    }

    /// The entries of a directory (without `.`/`..`), bounded by FAT's limit.
    fn entries(&self, dir: &FatDir<'_, DevIo>, path: &str) -> FsResult<Vec<FileEntry>> {
        let mut out = Vec::new();
        let mut it = dir.entries();
        let mut slots = 0usize;
        while let Some(r) = it.next_entry() {
            slots += 1;
            if slots > MAX_DIR_SLOTS {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("{path}: more than {MAX_DIR_SLOTS} directory entries"),
                ));
            }
            let e = match r {
                Ok(DirectoryEntry::Entry(e)) => e,
                // A short name with bytes FAT forbids: skip it, like Linux lists around it.
                Err(hadris_fat::Error::InvalidShortFilename) => continue,
                Err(e) => return Err(self.err(e, path)),
            };
            let name = e.name();
            if name == "." || name == ".." {
                continue;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn stat_root(&self) -> FsResult<Stat> {
        let size = if self.geo.root_cluster != 0 {
            FatReader::new(&self.geo, &self.dev).chain_len(self.geo.root_cluster)?
                * self.geo.cluster_size
        } else {
            self.geo.root_dir_bytes
        };
        Ok(Stat {
            file_type: FileType::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size,
            nlink: 2,
            ino: ROOT_INO,
            mtime: 0,
            atime: 0,
            ctime: 0,
        })
    }

    fn stat_entry(&self, e: &FileEntry, path: &str) -> FsResult<Stat> {
        self.check_entry(e, path)?;
        let cluster = e.cluster().0 as u64;
        let dir = e.is_directory();
        let size = if dir {
            // OK to cast: check_entry bounded it by the cluster count (a u32).
            FatReader::new(&self.geo, &self.dev).chain_len(cluster as u32)? * self.geo.cluster_size
        } else {
            e.len()
        };
        let ro = e
            .attributes()
            .contains(hadris_fat::raw::DirEntryAttrFlags::READ_ONLY);
        let mode = match (dir, ro) {
            (true, _) => 0o755,
            (false, false) => 0o644,
            (false, true) => 0o444,
        };
        // A directory's (or non-empty file's) first cluster identifies it; an empty file
        // gets a number from its path, above every cluster number.
        let ino = if cluster >= 2 {
            cluster
        } else {
            (1 << 32) | u64::from(fnv1a(path.as_bytes()))
        };
        let m = e.modified();
        let c = e.created();
        Ok(Stat {
            file_type: if dir {
                FileType::Directory
            } else {
                FileType::Regular
            },
            mode,
            uid: 0,
            gid: 0,
            size,
            nlink: if dir { 2 } else { 1 },
            ino,
            mtime: fat_time_to_unix(m.date, m.time),
            atime: fat_time_to_unix(e.accessed_date(), 0),
            ctime: fat_time_to_unix(c.date, c.time),
        })
    }

    /// Rewrites a whole file with `data` (reusing its clusters, freeing the rest).
    fn rewrite(&self, e: &FileEntry, data: &[u8], path: &str) -> FsResult<()> {
        let mut w = self.vol.write_file(e).map_err(|x| self.err(x, path))?;
        let r = write_all(&mut w, data);
        let f = w.finish();
        r.map_err(|x| self.err(x, path))?;
        f.map_err(|x| self.err(x, path))
    }

    /// Appends `zeros` zero bytes and then `data` at the end of the file.
    fn append(&self, e: &FileEntry, zeros: u64, data: &[u8], path: &str) -> FsResult<()> {
        let mut w = FileWriter::new_append(&self.vol, e).map_err(|x| self.err(x, path))?;
        let r = (|| {
            let block = vec![0u8; 64 * 1024];
            let mut left = zeros;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                // OK to slice: n <= block.len().
                write_all(&mut w, &block[..n])?;
                left -= n as u64;
            }
            write_all(&mut w, data)
        })();
        let f = w.finish();
        r.map_err(|x| self.err(x, path))?;
        f.map_err(|x| self.err(x, path))
    }

    /// Looks up a file that must exist and not be a directory or the root.
    fn file_entry(&self, path: &str) -> FsResult<FileEntry> {
        match self.lookup(path)? {
            Node::Root => Err(Error::new(ErrorKind::IsADirectory, "/ is a directory")),
            Node::Entry(e) if e.is_directory() => Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            )),
            Node::Entry(e) => Ok(*e),
        }
    }

    fn read_all(&self, e: &FileEntry, path: &str) -> FsResult<Vec<u8>> {
        let mut r = self.vol.read_file(e).map_err(|x| self.err(x, path))?;
        let size = usize::try_from(e.len())
            .map_err(|_| Error::new(ErrorKind::TooLarge, "file too large"))?;
        self.read_up_to(size, path, |b| r.read(b))
    }

    /// Reads up to `want` bytes with `read` (a FAT file reader), stopping early at its end.
    fn read_up_to(
        &self,
        want: usize,
        path: &str,
        mut read: impl FnMut(&mut [u8]) -> Result<usize, hadris_fat::Error>,
    ) -> FsResult<Vec<u8>> {
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            // OK to slice: got < want == buf.len().
            let n = read(&mut buf[got..]).map_err(|x| self.err(x, path))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }
}

fn write_all(w: &mut FileWriter<'_, DevIo>, mut data: &[u8]) -> Result<(), hadris_fat::Error> {
    while !data.is_empty() {
        let n = w.write(data)?;
        if n == 0 {
            return Err(hadris_fat::Error::NoFreeSpace);
        }
        data = data.get(n..).unwrap_or_default();
    }
    Ok(())
}

fn fnv1a(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}

/// Maps a hadris-fat error to the wire's, preferring the block device's own error.
fn map_err(last: &LastError, e: hadris_fat::Error, what: &str) -> Error {
    use hadris_fat::Error as H;
    let dev = last.borrow_mut().take();
    let kind = match &e {
        H::EntryNotFound => ErrorKind::NotFound,
        H::NotADirectory => ErrorKind::NotADirectory,
        H::NotAFile => ErrorKind::IsADirectory,
        H::InvalidPath | H::InvalidFilename | H::InvalidShortFilename => ErrorKind::InvalidArgument,
        H::NoFreeSpace | H::DirectoryFull => ErrorKind::NoSpace,
        H::AlreadyExists => ErrorKind::AlreadyExists,
        H::DirectoryNotEmpty => ErrorKind::NotEmpty,
        H::Io(_) | H::IoContext { .. } => {
            if let Some(d) = dev {
                return Error::new(d.kind, format!("{what}: {}", d.message));
            }
            ErrorKind::Io
        }
        H::InvalidBootSignature { .. }
        | H::UnsupportedFatType(_)
        | H::InvalidFsInfoSignature { .. }
        | H::ClusterOutOfBounds { .. }
        | H::BadCluster { .. }
        | H::UnexpectedEndOfChain { .. }
        | H::CorruptFilesystem { .. }
        | H::ClusterLoop { .. } => ErrorKind::Corrupt,
        H::WriterConflict => ErrorKind::Busy,
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("{what}: {e}"))
}

impl FileSystem for FatFs {
    fn fstype(&self) -> &str {
        "vfat"
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn stat(&mut self, path: &str, _follow: bool) -> FsResult<Stat> {
        match self.lookup(path)? {
            Node::Root => self.stat_root(),
            Node::Entry(e) => self.stat_entry(&e, path),
        }
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let dir = self.open_dir(path)?;
        let entries = self.entries(&dir, path)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = e.name().to_string();
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            let stat = self.stat_entry(&e, &child)?;
            out.push(DirEntry { name, stat });
        }
        Ok(out)
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        self.lookup(path)?;
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{path} is not a symbolic link (FAT has none)"),
        ))
    }

    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let e = self.file_entry(path)?;
        self.check_entry(&e, path)?;
        if offset >= e.len() || len == 0 {
            return Ok(Vec::new());
        }
        let want = (e.len() - offset).min(len as u64) as usize;
        let mut r = self.vol.read_file(&e).map_err(|x| self.err(x, path))?;
        r.seek(SeekFrom::Start(offset))
            .map_err(|x| self.err(x, path))?;
        self.read_up_to(want, path, |b| r.read(b))
    }

    fn statvfs(&mut self) -> FsResult<StatVfs> {
        let free = FatReader::new(&self.geo, &self.dev).free_clusters()?;
        Ok(StatVfs {
            block_size: self.geo.cluster_size,
            blocks: u64::from(self.geo.cluster_count),
            blocks_free: free,
            blocks_avail: free,
            files: 0,
            files_free: 0,
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
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_FILE)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::TooLarge,
                    "FAT files are limited to 4 GiB - 1 byte",
                )
            })?;
        let e = match self.lookup(path) {
            Ok(Node::Root) => {
                return Err(Error::new(ErrorKind::IsADirectory, "/ is a directory"));
            }
            Ok(Node::Entry(e)) if e.is_directory() => {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path} is a directory"),
                ));
            }
            Ok(Node::Entry(e)) => *e,
            Err(x) if x.kind == ErrorKind::NotFound => {
                let (parent, name) = split(path)?;
                let dir = self.open_dir(parent)?;
                self.vol
                    .create_file(&dir, name)
                    .map_err(|x| self.err(x, path))?
            }
            Err(x) => return Err(x),
        };
        let size = if truncate { 0 } else { e.len() };
        if truncate && offset == 0 {
            self.rewrite(&e, data, path)?;
        } else if offset >= size && !truncate {
            self.append(&e, offset - size, data, path)?;
        } else {
            // Overwrite in the middle: FAT has no sparse files, so rebuild the contents.
            let mut content = if truncate {
                Vec::new()
            } else {
                self.read_all(&e, path)?
            };
            let new_len = content.len().max(end as usize);
            content.resize(new_len, 0);
            // OK to slice: end <= new_len and offset + data.len() == end.
            content[offset as usize..end as usize].copy_from_slice(data);
            self.rewrite(&e, &content, path)?;
        }
        Ok(data.len() as u64)
    }

    fn mkdir(&mut self, path: &str, _mode: u32) -> FsResult<()> {
        self.check_rw()?;
        let (parent, name) = split(path)?;
        let dir = self.open_dir(parent)?;
        if dir.find(name).map_err(|x| self.err(x, path))?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{path} exists"),
            ));
        }
        self.vol
            .create_dir(&dir, name)
            .map(|_| ())
            .map_err(|x| self.err(x, path))
    }

    fn unlink(&mut self, path: &str) -> FsResult<()> {
        self.check_rw()?;
        let e = self.file_entry(path)?;
        self.vol.delete(&e).map_err(|x| self.err(x, path))
    }

    fn rmdir(&mut self, path: &str) -> FsResult<()> {
        self.check_rw()?;
        match self.lookup(path)? {
            Node::Root => Err(Error::new(ErrorKind::Busy, "cannot remove the root")),
            Node::Entry(e) if !e.is_directory() => Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            )),
            Node::Entry(e) => self.vol.delete(&e).map_err(|x| self.err(x, path)),
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> FsResult<()> {
        self.check_rw()?;
        let src = match self.lookup(from)? {
            Node::Root => return Err(Error::new(ErrorKind::Busy, "cannot rename the root")),
            Node::Entry(e) => *e,
        };
        let (to_parent, to_name) = split(to)?;
        let (from_parent, from_name) = split(from)?;
        if from_parent == to_parent && from_name == to_name {
            return Ok(());
        }
        if src.is_directory()
            && (to.starts_with(from) && to.as_bytes().get(from.len()) == Some(&b'/'))
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot move {from} into itself"),
            ));
        }
        match self.lookup(to) {
            Ok(Node::Root) => return Err(Error::new(ErrorKind::Busy, "cannot replace /")),
            Ok(Node::Entry(dst)) => {
                let same = from_parent == to_parent && from_name.eq_ignore_ascii_case(to_name);
                if same {
                    // A case-only rename: FAT looks names up case-insensitively, so move
                    // through a temporary name.
                    let tmp = format!("{to_name}.skiff-rename-tmp");
                    let tmp_path = if to_parent == "/" {
                        format!("/{tmp}")
                    } else {
                        format!("{to_parent}/{tmp}")
                    };
                    self.rename(from, &tmp_path)?;
                    return self.rename(&tmp_path, to);
                }
                match (src.is_directory(), dst.is_directory()) {
                    (false, true) => {
                        return Err(Error::new(
                            ErrorKind::IsADirectory,
                            format!("{to} is a directory"),
                        ));
                    }
                    (true, false) => {
                        return Err(Error::new(
                            ErrorKind::NotADirectory,
                            format!("{to} is not a directory"),
                        ));
                    }
                    // Replace the target (an empty directory, or a file) like rename(2).
                    _ => self.vol.delete(&dst).map_err(|x| self.err(x, to))?,
                }
            }
            Err(x) if x.kind == ErrorKind::NotFound => {}
            Err(x) => return Err(x),
        }
        // Look the source up again: deleting the target may have moved nothing, but
        // hadris-fat refuses stale handles, so use a fresh one.
        let src = match self.lookup(from)? {
            Node::Root => return Err(Error::new(ErrorKind::Busy, "cannot rename the root")),
            Node::Entry(e) => *e,
        };
        let dir = self.open_dir(to_parent)?;
        self.vol
            .rename(&src, &dir, to_name)
            .map(|_| ())
            .map_err(|x| self.err(x, to))
    }

    fn chmod(&mut self, path: &str, _mode: u32) -> FsResult<()> {
        self.lookup(path)?;
        Err(Error::new(
            ErrorKind::Unsupported,
            "chmod: FAT (vfat) has no Unix permissions",
        ))
    }

    fn symlink(&mut self, _target: &str, _linkpath: &str) -> FsResult<()> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "symlink: FAT (vfat) cannot store symbolic links",
        ))
    }

    fn truncate(&mut self, path: &str, size: u64) -> FsResult<()> {
        self.check_rw()?;
        if size > MAX_FILE {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "FAT files are limited to 4 GiB - 1 byte",
            ));
        }
        let e = self.file_entry(path)?;
        let cur = e.len();
        if size < cur {
            // OK to cast: size < cur <= u32::MAX.
            self.vol
                .truncate(&e, size as usize)
                .map_err(|x| self.err(x, path))
        } else if size > cur {
            self.append(&e, size - cur, &[], path)
        } else {
            Ok(())
        }
    }

    fn sync(&mut self) -> FsResult<()> {
        if !self.readonly {
            self.vol.sync().map_err(|x| self.err(x, "sync"))?;
        }
        self.dev.borrow_mut().flush()
    }
}
