//! XFS: skiff's own reader and writer (no maintained `no_std` crate exists).
//!
//! **Reading** handles v5 (CRC) filesystems with today's mkfs defaults (ftype, sparse
//! inodes, reflink, bigtime, inobtcount, finobt, rmapbt, large extent counts) and v4
//! ones: superblock and AG header checks, inodes v1-v3, data forks in local, extents and
//! btree format, every directory form (shortform, block, leaf, node; extents or btree
//! data forks), inline and remote symlinks, extended attributes (shortform, leaf, node).
//! v5 metadata CRCs are verified (superblock, AGF, AGI, inodes, directory, btree and
//! remote symlink blocks). A filesystem whose log is dirty is refused at mount
//! ([`logcheck`]) unless the log is one skiff wrote (see below).
//!
//! **Writing** (read-write mounts) changes v5 and v4 filesystems through every
//! `FileSystem` write method: file data (create, overwrite, extend, sparse, truncate;
//! shared reflinked blocks copied on write), directories in every form converting as
//! they grow and shrink (`dirw`), symlinks, ownership, modes, times, extended attributes
//! in shortform and leaf form (`attr`). Everything a change touches is kept consistent
//! and checksummed: inode allocation (`ialloc`: inobt, finobt, sparse inode chunks
//! when free space is too fragmented for whole ones, AGI, superblock),
//! free space (`space`: bnobt, cntbt, AGFL, counters), reverse mappings (rmapbt) and
//! reference counts (`refc`: refcountbt) when present, extent maps converting between
//! the inode and a bmbt (`bmapw`). `btree` is the one engine behind every AG btree.
//!
//! **Crash safety: through the log, as XFS does.** Each write call is one transaction
//! (`trans`): its metadata buffers are logged in the filesystem's own internal journal
//! as an XFS checkpoint (`journal`, the format Linux replays), the device is flushed,
//! and only then are the buffers written in place; the next transaction's records are
//! only written after another flush. Killed at any point:
//! - before the commit is on disk: the change is lost as a whole (its records are
//!   incomplete or torn; recovery discards them). File data written to newly allocated
//!   blocks is lost with it (it lies in what is still free space);
//! - after the commit: the log holds the whole transaction, which recovery replays (the
//!   next read-write skiff mount, or Linux's mount), so the change survives complete;
//! - overwrites of existing file blocks are written in place before the commit, as on
//!   Linux: a kill may leave part of the new bytes in the file (never other files'
//!   data: blocks freed by an uncommitted change are not reused for data until it
//!   commits).
//!
//! So a kill loses at most the call in progress and never leaves a filesystem
//! `xfs_repair -n` rejects once the log is replayed. `sync` (and unmount) writes an
//! unmount record: the log is then clean for every tool. A read-only skiff mount of a
//! log skiff left dirty is accepted when every logged change is already in place, and
//! otherwise refused with a request to mount read-write once (which replays it).
//!
//! **Refused** (`Unsupported`, naming what): a dirty log written by Linux (skiff
//! replays only logs of plain buffer items, as it writes them), a zeroed log, realtime
//! devices, quota accounting, log-incompatible or unknown read-only-compatible features,
//! parent pointers, v1 inodes, more than 64 inodes per block — at mount, for read-write
//! mounts; per change: POSIX ACLs (`system.*` attributes), changing node- or
//! btree-format attribute forks, directory blocks split across extents, forks of more
//! than 65536 extents. Damage found while changing fails the change (`Corrupt`, naming
//! the structure) with nothing written; a full filesystem or AG, or the inode limit
//! (`imaxpct`), is `NoSpace` with nothing half-allocated.
//!
//! [`ondisk`] parses structures from bytes; `io` does device access with a bounded
//! metadata cache kept coherent with writes; the read logic is here (path walk, file
//! data), in `extents` (block maps), `dirs` (directory forms) and `logcheck`.

mod attr;
mod bmapw;
mod btree;
mod crc;
mod dirs;
mod dirw;
mod extents;
mod fileops;
mod ialloc;
mod io;
mod iwrite;
pub mod journal;
pub mod logcheck;
pub mod ondisk;
mod refc;
mod space;
mod trans;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wtests;

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use io::Io;
use logcheck::LogState;
use ondisk::inode::{self as dinode, FMT_EXTENTS, FMT_LOCAL, Inode};
use ondisk::sb::Superblock;
use ondisk::symlink;
use ondisk::{ag, corrupt, unsupported};
use wire::{DirEntry, Error, ErrorKind, FileType, Stat, StatVfs};

pub use logcheck::DIRTY as DIRTY_LOG_MESSAGE;

/// Symlinks followed in one path resolution at most (Linux's limit).
const MAX_SYMLINKS: usize = 40;
/// Parsed inodes kept per cache generation (each holds its data fork: <= 2 KiB).
const INODE_CACHE: usize = 512;
/// Largest single read served (the RPC layer asks for at most 1 MiB): shorter reads
/// are allowed by the trait.
const MAX_READ: usize = 4 << 20;
/// Inode cluster read unit in bytes (XFS allocates inodes in chunks of 64, written in
/// clusters of at least 8 KiB).
const INODE_CLUSTER: u64 = 8192;
/// AGs whose headers are checked at mount; beyond this they are checked on first use.
const EAGER_AG_CHECKS: u32 = 64;

/// Mounts an XFS filesystem: read-write when `!readonly` and the device allows it
/// (after refusing features the writer does not maintain and replaying a log skiff
/// left), else read-only.
pub fn mount(dev: SharedDevice, readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    let writable = !readonly && !dev.borrow().readonly();
    Ok(Box::new(XfsFs::open_with(dev, writable)?))
}

/// A mounted XFS filesystem.
pub struct XfsFs {
    sb: Superblock,
    io: Io,
    /// AGs whose AGF and AGI passed their checks.
    ags_ok: BTreeSet<u32>,
    /// Two generations of parsed inodes: lookups promote from `old` to `young`; when
    /// `young` is full it becomes `old`.
    young: BTreeMap<u64, Rc<Inode>>,
    old: BTreeMap<u64, Rc<Inode>>,
    /// Block map windows of the last inodes read (see `extents`).
    windows: Vec<Rc<extents::Window>>,
    /// The forms of directories looked at (see `dirs`).
    forms: BTreeMap<u64, dirs::DirForm>,
    /// Directory blocks parsed for lookups (see `dirs`).
    parsed: dirs::Parsed,
    /// The file last read: its path and inode, so chunked reads skip the path walk.
    last_file: Option<(String, Rc<Inode>)>,
    /// Geometry as the writer and the attribute reader use it.
    g: write::Geo,
    /// The writer (read-write mounts only).
    w: Option<write::Writer>,
    /// Block map windows loaded from a btree (a test hook for the window cache).
    #[cfg(test)]
    window_loads: usize,
}

impl core::fmt::Debug for XfsFs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XfsFs")
            .field("version", &self.sb.version)
            .field("uuid", &self.uuid())
            .field("label", &self.label())
            .finish_non_exhaustive()
    }
}

fn ro_error() -> Error {
    Error::new(
        ErrorKind::ReadOnly,
        "xfs: the filesystem is mounted read-only",
    )
}

fn not_found(path: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("{path}: not found"))
}

impl XfsFs {
    /// Reads and checks the superblock, the AG headers and the log (read-only).
    pub fn open(dev: SharedDevice) -> FsResult<Self> {
        Self::open_with(dev, false)
    }

    /// As [`XfsFs::open`]; `writable`: mount read-write (refusing what the writer does
    /// not maintain, replaying a log skiff left dirty).
    pub fn open_with(dev: SharedDevice, writable: bool) -> FsResult<Self> {
        let io = Io::new(dev);
        let size = io.size();
        let first = io.read_vec(0, 512.min(size as usize))?;
        if first.len() < 512 || ondisk::be32(&first, 0) != ondisk::sb::MAGIC {
            return Err(corrupt("superblock: bad magic"));
        }
        let sect = usize::from(ondisk::be16(&first, 0x66));
        let buf = if (1024..=32768).contains(&sect) && sect as u64 <= size {
            io.read_vec(0, sect)?
        } else {
            first
        };
        let sb = Superblock::parse(&buf)?;
        if sb.fs_bytes() > size {
            return Err(corrupt(format_args!(
                "the filesystem ({} bytes) is larger than its device ({size} bytes)",
                sb.fs_bytes()
            )));
        }
        // A realtime device (sb.rblocks != 0) is not attached here: files on it are
        // refused one by one (`read_data`), everything else reads.
        let g = write::Geo::new(&sb, &buf);
        let mut fs = XfsFs {
            g,
            w: None,
            sb,
            io,
            ags_ok: BTreeSet::new(),
            young: BTreeMap::new(),
            old: BTreeMap::new(),
            windows: Vec::new(),
            forms: BTreeMap::new(),
            parsed: dirs::Parsed::default(),
            last_file: None,
            #[cfg(test)]
            window_loads: 0,
        };
        // The log first: with a dirty log, "needs recovery" is the accurate answer even
        // when metadata a replay would rewrite looks damaged. A log skiff left is
        // replayed (read-write) or accepted when already in place (read-only).
        if writable {
            fs.w = Some(write::Writer::open(&mut fs.io, &fs.sb)?);
        } else if let Err(e) = fs.check_log() {
            if e.kind != ErrorKind::Unsupported {
                return Err(e);
            }
            journal::Journal::open(&mut fs.io, &fs.sb, false)?;
        }
        for agno in 0..fs.sb.ag_count.min(EAGER_AG_CHECKS) {
            fs.check_ag(agno)?;
        }
        let root = fs.inode(fs.sb.root_ino)?;
        if !root.is_dir() {
            return Err(corrupt("the root inode is not a directory"));
        }
        Ok(fs)
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The filesystem label, `None` when empty.
    pub fn label(&self) -> Option<String> {
        self.sb.label()
    }

    /// The filesystem UUID (`xxxxxxxx-xxxx-...`).
    pub fn uuid(&self) -> String {
        ondisk::uuid_string(&self.sb.uuid)
    }

    /// Checks the AGF and AGI of `agno` once.
    fn check_ag(&mut self, agno: u32) -> FsResult<()> {
        if self.ags_ok.contains(&agno) {
            return Ok(());
        }
        if agno >= self.sb.ag_count {
            return Err(corrupt(format_args!("AG {agno} does not exist")));
        }
        let sect = self.sb.sect_size as usize;
        let base = self.sb.ag_byte(agno);
        let buf = self.io.read_vec(base + sect as u64, 2 * sect)?;
        ag::parse_agf(&self.sb, agno, buf.get(..sect).unwrap_or(&[]))?;
        ag::parse_agi(&self.sb, agno, buf.get(sect..).unwrap_or(&[]))?;
        self.ags_ok.insert(agno);
        Ok(())
    }

    fn check_ag_of_fsb(&mut self, fsb: u64) -> FsResult<()> {
        let (agno, _) = self.sb.split_fsb(fsb);
        self.check_ag(u32::try_from(agno).unwrap_or(u32::MAX))
    }

    /// Refuses a dirty log.
    fn check_log(&mut self) -> FsResult<()> {
        let start = self
            .sb
            .fsb_to_byte(self.sb.log_start)
            .ok_or_else(|| corrupt("superblock: bad log start"))?;
        let nbb = (u64::from(self.sb.log_blocks) << self.sb.block_log) / 512;
        let io = &self.io;
        let read = |bb: u64, buf: &mut [u8]| io.read_into(start + bb * 512, buf);
        match logcheck::Log::new(read, nbb, self.sb.logv2).state()? {
            LogState::Clean => Ok(()),
            LogState::Dirty(why) => Err(logcheck::dirty_error(why)),
        }
    }

    /// Inode `ino`, parsed and checked (cached).
    fn inode(&mut self, ino: u64) -> FsResult<Rc<Inode>> {
        if let Some(i) = self.young.get(&ino) {
            return Ok(i.clone());
        }
        if let Some(i) = self.old.remove(&ino) {
            self.remember(i.clone());
            return Ok(i);
        }
        let sb = &self.sb;
        let at = sb
            .ino_to_byte(ino)
            .ok_or_else(|| corrupt(format_args!("inode number {ino} is out of range")))?;
        let agno = (ino >> sb.agino_log()) as u32;
        self.check_ag(agno)?;
        // Read the aligned cluster around the inode (inside its AG) through the cache.
        let sb = &self.sb;
        let bs = u64::from(sb.block_size);
        let cluster = INODE_CLUSTER.max(bs);
        let ag_start = sb.ag_byte(agno);
        let ag_end = ag_start + (u64::from(sb.ag_len(agno)) << sb.block_log);
        let rel = at - ag_start;
        let c_start = ag_start + rel / cluster * cluster;
        let c_len = cluster.min(ag_end - c_start);
        let isize = u64::from(sb.inode_size);
        let buf = self.io.meta(c_start, c_len as usize)?;
        let within = (at - c_start) as usize;
        let raw = buf
            .get(within..within + isize as usize)
            .ok_or_else(|| corrupt(format_args!("inode {ino}: outside its cluster")))?;
        let inode = Rc::new(dinode::parse(&self.sb, ino, raw)?);
        self.remember(inode.clone());
        Ok(inode)
    }

    fn remember(&mut self, i: Rc<Inode>) {
        if self.young.len() >= INODE_CACHE {
            self.old = core::mem::take(&mut self.young);
        }
        self.young.insert(i.ino, i);
    }

    /// The target of symlink `inode`.
    fn link_target(&mut self, inode: &Inode) -> FsResult<Vec<u8>> {
        let ino = inode.ino;
        let size = usize::try_from(inode.size).unwrap_or(usize::MAX);
        if size == 0 || size > symlink::MAX_LEN {
            return Err(corrupt(format_args!(
                "symlink {ino}: target length {} is out of range",
                inode.size
            )));
        }
        if inode.format == FMT_LOCAL {
            return inode
                .fork
                .get(..size)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| corrupt(format_args!("symlink {ino}: inline target overruns")));
        }
        if inode.format != FMT_EXTENTS || inode.nextents > symlink::MAX_EXTENTS {
            return Err(corrupt(format_args!("symlink {ino}: bad data fork")));
        }
        let w = self.extents(inode, 0, u64::MAX)?;
        let hdr = symlink::hdr_len(&self.sb);
        let mut out = Vec::with_capacity(size);
        let mut next_off = 0u64;
        for e in &w.exts {
            if out.len() >= size {
                break;
            }
            let bytes = e.len.saturating_mul(u64::from(self.sb.block_size));
            if e.off != next_off || e.unwritten || bytes > 4 * 65536 {
                return Err(corrupt(format_args!("symlink {ino}: bad extent")));
            }
            next_off = e.end();
            let start = self
                .sb
                .fsb_to_byte(e.block)
                .ok_or_else(|| corrupt(format_args!("symlink {ino}: bad extent")))?;
            self.check_ag_of_fsb(e.block)?;
            let buf = self.io.read_vec(start, bytes as usize)?;
            let room = (bytes as usize).saturating_sub(hdr);
            let want = room.min(size - out.len());
            let part = symlink::parse_remote(&self.sb, ino, &buf, start >> 9, out.len(), want)?;
            out.extend_from_slice(part);
        }
        if out.len() != size {
            return Err(corrupt(format_args!(
                "symlink {ino}: extents hold {} of {size} target bytes",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Resolves `path` to an inode, following symlinks in every component and, when
    /// `follow`, in the last one.
    fn resolve(&mut self, path: &str, follow: bool) -> FsResult<Rc<Inode>> {
        let root = self.sb.root_ino;
        // The directories from the root to the current one, for `..`.
        let mut stack: Vec<Rc<Inode>> = vec![self.inode(root)?];
        // Components still to walk, last first.
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut links = 0usize;
        while let Some(c) = todo.pop() {
            if c == "." {
                continue;
            }
            if c == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack
                .last()
                .cloned()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "xfs: empty path stack"))?;
            if !dir.is_dir() {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{path}: a component is not a directory"),
                ));
            }
            let ino = self
                .dir_lookup(&dir, c.as_bytes())?
                .ok_or_else(|| not_found(path))?;
            let child = self.inode(ino)?;
            if child.is_symlink() && (follow || !todo.is_empty()) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::new(
                        ErrorKind::Loop,
                        format!("{path}: too many levels of symbolic links"),
                    ));
                }
                let target = self.link_target(&child)?;
                let target = String::from_utf8_lossy(&target).into_owned();
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
                continue;
            }
            stack.push(child);
        }
        stack
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "xfs: empty path stack"))
    }

    fn stat_of(&self, i: &Inode) -> Stat {
        Stat {
            file_type: i.file_type(),
            mode: u32::from(i.mode & 0o7777),
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            nlink: i.nlink,
            ino: i.ino,
            mtime: i.mtime,
            atime: i.atime,
            ctime: i.ctime,
        }
    }

    /// Up to `len` bytes of regular file `inode` at `offset`: one device read per extent
    /// piece, straight into the result; holes and unwritten extents read as zeros.
    fn read_data(&mut self, inode: &Inode, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        if inode.is_realtime() {
            return Err(unsupported("files on the realtime device"));
        }
        if offset >= inode.size || len == 0 {
            return Ok(Vec::new());
        }
        let left = inode.size - offset;
        let want = usize::try_from(left)
            .map_or(len, |l| l.min(len))
            .min(MAX_READ);
        let mut out = vec![0u8; want];
        let log = self.sb.block_log;
        let bs = u64::from(self.sb.block_size);
        let end = offset + want as u64;
        let first = offset >> log;
        let last = end.div_ceil(bs);
        let w = self.extents(inode, first, last)?;
        for e in w.overlapping(first, last) {
            if e.unwritten {
                continue;
            }
            let e_start = e.off.saturating_mul(bs);
            let a = offset.max(e_start);
            let b = end.min(e.end().saturating_mul(bs));
            if a >= b {
                continue;
            }
            let disk = self
                .sb
                .fsb_to_byte(e.block)
                .ok_or_else(|| corrupt(format_args!("inode {}: bad extent", inode.ino)))?
                + (a - e_start);
            let (agno, _) = self.sb.split_fsb(e.block);
            self.check_ag(u32::try_from(agno).unwrap_or(u32::MAX))?;
            let dst = out
                .get_mut((a - offset) as usize..(b - offset) as usize)
                .ok_or_else(|| Error::new(ErrorKind::Internal, "xfs: read range"))?;
            self.io.read_into(disk, dst)?;
        }
        Ok(out)
    }
}

impl FileSystem for XfsFs {
    fn fstype(&self) -> &str {
        "xfs"
    }

    fn readonly(&self) -> bool {
        self.w.is_none()
    }

    fn stat(&mut self, path: &str, follow: bool) -> FsResult<Stat> {
        let i = self.resolve(path, follow)?;
        Ok(self.stat_of(&i))
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let dir = self.resolve(path, true)?;
        if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            ));
        }
        let entries = self.dir_entries(&dir)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let child = self.inode(e.ino)?;
            out.push(DirEntry {
                name: String::from_utf8_lossy(&e.name).into_owned(),
                stat: self.stat_of(&child),
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        let i = self.resolve(path, false)?;
        if !i.is_symlink() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path} is not a symbolic link"),
            ));
        }
        let t = self.link_target(&i)?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let inode = match &self.last_file {
            Some((p, i)) if p == path => i.clone(),
            _ => {
                let i = self.resolve(path, true)?;
                match i.file_type() {
                    FileType::Regular => {}
                    FileType::Directory => {
                        return Err(Error::new(
                            ErrorKind::IsADirectory,
                            format!("{path} is a directory"),
                        ));
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidArgument,
                            format!("{path} is not a regular file"),
                        ));
                    }
                }
                self.last_file = Some((String::from(path), i.clone()));
                i
            }
        };
        self.read_data(&inode, offset, len)
    }

    fn statvfs(&mut self) -> FsResult<StatVfs> {
        // The counters as they are now (writes change them).
        let sect = self.sb.sect_size as usize;
        let cur = Superblock::parse(&self.io.meta(0, sect)?)?;
        let sb = &cur;
        // As Linux reports it, less the per-AG metadata reservations it also holds back:
        // the internal log is not counted, 8 blocks per AG are set aside for the
        // free-space btrees and the free list, and the inode total is what fits in the
        // free space (bounded by imaxpct).
        let log = u64::from(sb.log_blocks);
        let blocks = sb.dblocks.saturating_sub(log);
        let set_aside = u64::from(sb.ag_count) * 8;
        let free = sb.fdblocks.saturating_sub(set_aside).min(blocks);
        let mut files = sb
            .icount
            .saturating_add(free.saturating_mul(1 << sb.inopb_log));
        if sb.imax_pct != 0 {
            let inodes_per_chunk = 64u64;
            let chunk_blocks = (inodes_per_chunk >> sb.inopb_log).max(1);
            let max_blocks = sb.dblocks / 100 * u64::from(sb.imax_pct)
                + sb.dblocks % 100 * u64::from(sb.imax_pct) / 100;
            let max_inodes = (max_blocks / chunk_blocks * chunk_blocks) << sb.inopb_log;
            files = files.min(max_inodes);
        }
        files = files.max(sb.icount);
        let used = sb.icount - sb.ifree;
        Ok(StatVfs {
            block_size: u64::from(sb.block_size),
            blocks,
            blocks_free: free,
            blocks_avail: free,
            files,
            files_free: files.saturating_sub(used),
            name_max: 255,
        })
    }

    fn write(
        &mut self,
        path: &str,
        offset: u64,
        data: &[u8],
        truncate: bool,
        mode: u32,
    ) -> FsResult<u64> {
        self.writable()?;
        let ino = match self.resolve(path, true) {
            Ok(i) => {
                self.check_regular(path, &i)?;
                Some(i.ino)
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                if self.resolve(path, false).is_ok() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{path}: a dangling symbolic link"),
                    ));
                }
                None
            }
            Err(e) => return Err(e),
        };
        match ino {
            Some(ino) => self.mutate(|c| {
                if truncate {
                    c.file_truncate(ino, 0)?;
                }
                c.file_write(ino, offset, data)
            })?,
            None => {
                let (dir, name) = self.parent_of(path)?;
                self.mutate(|c| {
                    let ino = c.create_file(dir, name.as_bytes(), (mode & 0o7777) as u16, 0, 0)?;
                    c.file_write(ino, offset, data)
                })?
            }
        }
        Ok(data.len() as u64)
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> FsResult<()> {
        self.writable()?;
        let (dir, name) = self.parent_of(path)?;
        self.mutate(|c| {
            if c.dir_lookup(dir, name.as_bytes())?.is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{path} exists"),
                ));
            }
            c.create_dir(dir, name.as_bytes(), (mode & 0o7777) as u16, 0, 0)
                .map(|_| ())
        })
    }

    fn unlink(&mut self, path: &str) -> FsResult<()> {
        self.writable()?;
        let i = self.resolve(path, false)?;
        if i.is_dir() {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        }
        let (dir, name) = self.parent_of(path)?;
        self.mutate(|c| c.remove_file(dir, name.as_bytes()))
    }

    fn rmdir(&mut self, path: &str) -> FsResult<()> {
        self.writable()?;
        let i = self.resolve(path, false)?;
        if !i.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            ));
        }
        if i.ino == self.sb.root_ino {
            return Err(Error::new(
                ErrorKind::Busy,
                "xfs: the root cannot be removed",
            ));
        }
        let (dir, name) = self.parent_of(path)?;
        self.mutate(|c| c.remove_dir(dir, name.as_bytes(), i.ino))
    }

    fn rename(&mut self, from: &str, to: &str) -> FsResult<()> {
        self.writable()?;
        let src = self.resolve(from, false)?;
        let (sdir, sname) = self.parent_of(from)?;
        let (ddir, dname) = self.parent_of(to)?;
        let root = self.sb.root_ino;
        self.mutate(|c| {
            c.rename(
                sdir,
                sname.as_bytes(),
                ddir,
                dname.as_bytes(),
                src.ino,
                root,
            )
        })
    }

    fn chmod(&mut self, path: &str, mode: u32) -> FsResult<()> {
        self.writable()?;
        let i = self.resolve(path, true)?;
        self.mutate(|c| c.set_mode(i.ino, (mode & 0o7777) as u16))
    }

    fn symlink(&mut self, target: &str, linkpath: &str) -> FsResult<()> {
        self.writable()?;
        let (dir, name) = self.parent_of(linkpath)?;
        self.mutate(|c| {
            if c.dir_lookup(dir, name.as_bytes())?.is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{linkpath} exists"),
                ));
            }
            c.create_symlink(dir, name.as_bytes(), target.as_bytes(), 0, 0)
                .map(|_| ())
        })
    }

    fn truncate(&mut self, path: &str, size: u64) -> FsResult<()> {
        self.writable()?;
        let i = self.resolve(path, true)?;
        self.check_regular(path, &i)?;
        self.mutate(|c| c.file_truncate(i.ino, size))
    }

    fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult<()> {
        self.writable()?;
        let i = self.resolve(path, false)?;
        self.mutate(|c| c.set_owner(i.ino, uid, gid))
    }

    fn set_times(&mut self, path: &str, atime: i64, mtime: i64) -> FsResult<()> {
        self.writable()?;
        let i = self.resolve(path, true)?;
        self.mutate(|c| c.set_times(i.ino, atime, mtime))
    }

    fn get_xattr(&mut self, path: &str, name: &str) -> FsResult<Vec<u8>> {
        let (ns, n) = attr::split_name(name)?;
        let i = self.resolve(path, true)?;
        self.peek(|c| c.attr_get(i.ino, ns, &n))?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{path}: no extended attribute {name}"),
            )
        })
    }

    fn list_xattrs(&mut self, path: &str) -> FsResult<Vec<String>> {
        let i = self.resolve(path, true)?;
        let attrs = self.peek(|c| c.attr_list(i.ino))?;
        Ok(attrs
            .iter()
            .filter_map(|a| attr::full_name(a.ns, &a.name))
            .collect())
    }

    fn set_xattr(&mut self, path: &str, name: &str, value: &[u8]) -> FsResult<()> {
        self.writable()?;
        let (ns, n) = attr::split_name(name)?;
        let i = self.resolve(path, true)?;
        self.mutate(|c| c.attr_change(i.ino, ns, &n, Some(value)).map(|_| ()))
    }

    fn remove_xattr(&mut self, path: &str, name: &str) -> FsResult<()> {
        self.writable()?;
        let (ns, n) = attr::split_name(name)?;
        let i = self.resolve(path, true)?;
        let found = self.mutate(|c| c.attr_change(i.ino, ns, &n, None))?;
        if !found {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{path}: no extended attribute {name}"),
            ));
        }
        Ok(())
    }

    fn set_clock(&mut self, now: i64) {
        if let Some(w) = self.w.as_mut() {
            w.now = now;
        }
    }

    fn sync(&mut self) -> FsResult<()> {
        match self.w.as_mut() {
            Some(w) => w.sync(&mut self.io),
            None => Ok(()),
        }
    }
}

impl XfsFs {
    fn writable(&self) -> FsResult<()> {
        match &self.w {
            None => Err(ro_error()),
            Some(w) if w.failed => Err(Error::new(
                ErrorKind::Io,
                "xfs: an earlier write failed part-way; remount to recover",
            )),
            Some(_) => Ok(()),
        }
    }

    fn check_regular(&self, path: &str, i: &Inode) -> FsResult<()> {
        match i.file_type() {
            FileType::Regular => Ok(()),
            FileType::Directory => Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            )),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path} is not a regular file"),
            )),
        }
    }

    /// The inode of the directory holding `path`, and the last component.
    fn parent_of(&mut self, path: &str) -> FsResult<(u64, String)> {
        let (parent, name) = crate::fs::vfs::split_parent(path).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{path}: no parent directory"),
            )
        })?;
        if name.is_empty() || name == "." || name == ".." || name.len() > 255 || name.contains('\0')
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path}: bad file name"),
            ));
        }
        let d = self.resolve(parent, true)?;
        if !d.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{parent} is not a directory"),
            ));
        }
        Ok((d.ino, String::from(name)))
    }

    /// Forgets parsed metadata (the device cache stays coherent by itself).
    fn forget_parsed(&mut self) {
        self.young.clear();
        self.old.clear();
        self.windows.clear();
        self.forms.clear();
        self.parsed = dirs::Parsed::default();
        self.last_file = None;
    }

    /// Runs a change as one transaction: committed when `f` succeeds, dropped (the
    /// filesystem untouched) when it fails.
    fn mutate<T>(&mut self, f: impl FnOnce(&mut write::Ctx) -> FsResult<T>) -> FsResult<T> {
        self.writable()?;
        let XfsFs { sb, io, w, g, .. } = self;
        let w = w.as_mut().ok_or_else(ro_error)?;
        let r = {
            let mut c = write::Ctx {
                sb,
                g,
                io,
                tx: &mut w.tx,
                now: w.now,
                igen: &mut w.igen,
                agfl_defer: Vec::new(),
            };
            f(&mut c).and_then(|v| c.drain_deferred().map(|_| v))
        };
        let r = match r {
            Ok(v) => w.commit(io).map(|_| v),
            Err(e) => {
                w.tx = trans::Tx::default();
                Err(e)
            }
        };
        self.forget_parsed();
        r
    }

    /// Runs a read through the writer's code (attributes) without changing anything.
    fn peek<T>(&mut self, f: impl FnOnce(&mut write::Ctx) -> FsResult<T>) -> FsResult<T> {
        let mut tx = trans::Tx::default();
        let mut igen = 0;
        let XfsFs { sb, io, g, .. } = self;
        let mut c = write::Ctx {
            sb,
            g,
            io,
            tx: &mut tx,
            now: 0,
            igen: &mut igen,
            agfl_defer: Vec::new(),
        };
        f(&mut c)
    }
}
