//! File contents and the namespace, for writing: writing and truncating regular files
//! (holes allocated in whole runs near the blocks before them, data written straight to
//! the device in large requests, partial blocks read-modify-written or zero-filled),
//! creating files, directories and symlinks, linking and unlinking, renaming.

use super::space::{Owner, Want};
use super::bmapw::{self, FMap, MAX_EXTLEN};
use super::dirw::{FT_DIR, FT_LNK, FT_REG};
use super::iwrite::{self, Times};
use super::ondisk::bmap::MAX_FILEOFF;
use super::ondisk::inode::{self as dinode, FMT_EXTENTS, FMT_LOCAL};
use super::ondisk::{corrupt, put32, put64, put8, put_bytes};
use super::trans::Kind;
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// The directory entry file type of a mode.
pub fn ftype_of(mode: u16) -> u8 {
    match mode & dinode::S_IFMT {
        dinode::S_IFREG => FT_REG,
        dinode::S_IFDIR => FT_DIR,
        dinode::S_IFCHR => 3,
        dinode::S_IFBLK => 4,
        dinode::S_IFIFO => 5,
        dinode::S_IFSOCK => 6,
        dinode::S_IFLNK => FT_LNK,
        _ => 0,
    }
}

fn unsupported_shared() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "xfs: changing reflinked (shared) file blocks is not supported",
    )
}

impl Ctx<'_> {
    fn bs(&self) -> u64 {
        u64::from(self.g.bs)
    }

    /// Writes `data` to the device at file block `fb` of a run starting at disk block
    /// `pb` covering file bytes `a..b` of a write of `data` at `offset`.
    fn write_blocks(&mut self, disk: u64, bytes: &[u8]) -> FsResult<()> {
        self.io.write(disk, bytes)
    }

    /// Reads block `pb` (for a partial overwrite): bytes at or past the file's old size
    /// read as zeros (whatever lies there on disk is not the file's).
    fn read_block_for_update(&mut self, pb: u64, fb: u64, old_size: u64) -> FsResult<Vec<u8>> {
        let bs = self.bs();
        let off = self
            .sb
            .fsb_to_byte(pb)
            .ok_or_else(|| corrupt("file block outside the filesystem"))?;
        let mut v = self.io.read_vec(off, bs as usize)?;
        let start = fb * bs;
        if old_size < start + bs {
            let keep = old_size.saturating_sub(start) as usize;
            if let Some(t) = v.get_mut(keep..) {
                t.fill(0);
            }
        }
        Ok(v)
    }

    /// Writes file bytes `a..b` (inside one mapped run: file block `fb0` at disk block
    /// `pb0`, `fresh`: the blocks hold nothing of the file yet) from `data` (the bytes
    /// of the file from `data_off`).
    fn fill_run(
        &mut self,
        fb0: u64,
        pb0: u64,
        a: u64,
        b: u64,
        data: &[u8],
        data_off: u64,
        fresh: bool,
        old_size: u64,
    ) -> FsResult<()> {
        let bs = self.bs();
        let disk0 = self
            .sb
            .fsb_to_byte(pb0)
            .ok_or_else(|| corrupt("file block outside the filesystem"))?;
        let disk_of = |file_byte: u64| disk0 + (file_byte - fb0 * bs);
        let slice = |x: u64, y: u64| data.get((x - data_off) as usize..(y - data_off) as usize).unwrap_or(&[]);
        let mut a = a;
        // Head block, when the write starts inside it.
        if a % bs != 0 || (b - a) < bs {
            let blk_start = a / bs * bs;
            let blk_end = blk_start + bs;
            let fb = blk_start / bs;
            let mut blk = if fresh {
                vec![0u8; bs as usize]
            } else {
                self.read_block_for_update(pb0 + (fb - fb0), fb, old_size)?
            };
            let e = b.min(blk_end);
            if let Some(dst) = blk.get_mut((a - blk_start) as usize..(e - blk_start) as usize) {
                dst.copy_from_slice(slice(a, e));
            }
            self.write_blocks(disk_of(blk_start), &blk)?;
            a = e;
            if a >= b {
                return Ok(());
            }
        }
        // Whole blocks straight from the caller's bytes.
        let whole_end = b / bs * bs;
        if whole_end > a {
            self.write_blocks(disk_of(a), slice(a, whole_end))?;
            a = whole_end;
        }
        // Tail block.
        if a < b {
            let fb = a / bs;
            let mut blk = if fresh {
                vec![0u8; bs as usize]
            } else {
                self.read_block_for_update(pb0 + (fb - fb0), fb, old_size)?
            };
            if let Some(dst) = blk.get_mut(0..(b - a) as usize) {
                dst.copy_from_slice(slice(a, b));
            }
            self.write_blocks(disk_of(a), &blk)?;
        }
        Ok(())
    }

    /// Frees the mapped blocks of `map` in file blocks `from..to`.
    fn punch(&mut self, map: &mut FMap, flags2: u64, from: u64, to: u64) -> FsResult<u64> {
        let ino = map.ino;
        // Refuse before changing anything when a block is shared.
        for e in map.exts.clone() {
            if e.end() <= from || e.off >= to {
                continue;
            }
            let a = e.off.max(from);
            let b = e.end().min(to);
            if self.extent_shared(flags2, e.block + (a - e.off), b - a)? {
                return Err(unsupported_shared());
            }
        }
        let mut freed = 0u64;
        for p in map.unmap(from, to - from) {
            self.free_extent(p.block, p.len as u32, Owner::data(ino, p.off, p.unwritten))?;
            freed += p.len;
        }
        if freed > 0 {
            iwrite::add_nblocks(self.inode(ino)?, -(freed as i64))?;
        }
        Ok(freed)
    }

    /// Makes the file bytes from `old_size` up to `new_end` read as zeros before the
    /// size grows over them: the old last block's tail is zeroed, blocks mapped wholly
    /// past the old end are freed.
    fn clear_past_eof(&mut self, map: &mut FMap, flags2: u64, old_size: u64, new_end: u64) -> FsResult<()> {
        let bs = self.bs();
        if new_end <= old_size {
            return Ok(());
        }
        let first_whole = old_size.div_ceil(bs);
        let last = new_end.div_ceil(bs);
        if last > first_whole && map.next_from(first_whole).is_some_and(|e| e.off < last) {
            self.punch(map, flags2, first_whole, last)?;
        }
        if old_size % bs != 0 {
            let fb = old_size / bs;
            if let Some(e) = map.find(fb).copied()
                && !e.unwritten
            {
                if self.extent_shared(flags2, e.block + (fb - e.off), 1)? {
                    return Err(unsupported_shared());
                }
                let pb = e.block + (fb - e.off);
                let blk = self.read_block_for_update(pb, fb, old_size)?;
                let disk = self
                    .sb
                    .fsb_to_byte(pb)
                    .ok_or_else(|| corrupt("file block outside the filesystem"))?;
                self.write_blocks(disk, &blk)?;
            }
        }
        Ok(())
    }

    /// Writes `data` at byte `offset` of regular file `ino`.
    pub fn file_write(&mut self, ino: u64, offset: u64, data: &[u8]) -> FsResult<()> {
        let g = self.g;
        let bs = self.bs();
        let raw = self.inode_copy(ino)?;
        if iwrite::mode(&raw) & dinode::S_IFMT != dinode::S_IFREG {
            return Err(Error::new(ErrorKind::InvalidArgument, "xfs: not a regular file"));
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e.div_ceil(bs) <= MAX_FILEOFF)
            .ok_or_else(|| Error::new(ErrorKind::TooLarge, "xfs: write past the largest file size"))?;
        let flags2 = bmapw::flags2(&raw);
        let old_size = iwrite::size(&raw);
        let mut map = self.load_fmap(ino, false)?;
        self.clear_past_eof(&mut map, flags2, old_size, offset)?;
        let first = offset / bs;
        let last = end.div_ceil(bs);
        let agno = (ino >> self.sb.agino_log()) as u32;
        let mut fb = first;
        let mut allocated = 0u64;
        while fb < last {
            let next = map.next_from(fb).copied();
            match next {
                Some(e) if e.off <= fb => {
                    // Mapped: overwrite (unwritten blocks are filled as fresh ones).
                    let run_end = e.end().min(last);
                    let pb = e.block + (fb - e.off);
                    if !e.unwritten && self.extent_shared(flags2, pb, run_end - fb)? {
                        return Err(unsupported_shared());
                    }
                    let a = offset.max(fb * bs);
                    let b = end.min(run_end * bs);
                    // Fresh means: no file bytes there to keep. Unwritten blocks read
                    // as zeros; so do blocks wholly past the old size.
                    self.fill_run(fb, pb, a, b, data, offset, e.unwritten, old_size)?;
                    if e.unwritten {
                        map.mark_written(fb, run_end - fb)?;
                        self.rmap_convert(ino, fb, pb, run_end - fb)?;
                    }
                    fb = run_end;
                }
                _ => {
                    // A hole up to the next mapping (or the end of the write).
                    let hole_end = next.map_or(last, |e| e.off.min(last));
                    let want = (hole_end - fb).min(MAX_EXTLEN);
                    let near = fb
                        .checked_sub(1)
                        .and_then(|p| map.find(p))
                        .map(|e| e.block + e.len)
                        .and_then(|b| self.split_fsb(b).ok());
                    let got = self.alloc(
                        Want {
                            agno: near.map_or(agno, |n| n.0),
                            near: near.map(|n| n.1),
                            minlen: 1,
                            maxlen: want as u32,
                            align: 1,
                            data: true,
                            same_ag: false,
                        },
                        Owner::data(ino, fb, false),
                    )?;
                    let Some((pb, len)) = got else {
                        return Err(Error::new(ErrorKind::NoSpace, "xfs: no space left on the filesystem"));
                    };
                    let len = u64::from(len);
                    map.map(fb, pb, len, false)?;
                    allocated += len;
                    let a = offset.max(fb * bs);
                    let b = end.min((fb + len) * bs);
                    self.fill_run(fb, pb, a, b, data, offset, true, old_size)?;
                    fb += len;
                }
            }
        }
        self.store_fmap(&mut map)?;
        let now = self.now;
        let raw = self.inode(ino)?;
        iwrite::add_nblocks(raw, allocated as i64)?;
        if end > old_size {
            iwrite::set_size(raw, end);
        }
        iwrite::touch(g, raw, Times::modified(now));
        Ok(())
    }

    /// Turns the reverse mapping of file blocks `fb..+len` at `pb` from unwritten to
    /// written.
    fn rmap_convert(&mut self, ino: u64, fb: u64, pb: u64, len: u64) -> FsResult<()> {
        if !self.g.rmapbt {
            return Ok(());
        }
        let (agno, agbno) = self.split_fsb(pb)?;
        let len = len as u32;
        self.rmap_remove(agno, agbno, len, Owner::data(ino, fb, true))?;
        self.rmap_add(agno, agbno, len, Owner::data(ino, fb, false))
    }

    /// Sets the size of regular file `ino`, freeing blocks past a smaller one.
    pub fn file_truncate(&mut self, ino: u64, size: u64) -> FsResult<()> {
        let g = self.g;
        let bs = self.bs();
        let raw = self.inode_copy(ino)?;
        if iwrite::mode(&raw) & dinode::S_IFMT != dinode::S_IFREG {
            return Err(Error::new(ErrorKind::InvalidArgument, "xfs: not a regular file"));
        }
        if size.div_ceil(bs) > MAX_FILEOFF {
            return Err(Error::new(ErrorKind::TooLarge, "xfs: size past the largest file size"));
        }
        let flags2 = bmapw::flags2(&raw);
        let old = iwrite::size(&raw);
        let mut map = self.load_fmap(ino, false)?;
        if size < old || map.end() > size.div_ceil(bs) {
            let keep = size.div_ceil(bs);
            let mapped_end = map.end();
            if mapped_end > keep {
                self.punch(&mut map, flags2, keep, mapped_end)?;
            }
            if size % bs != 0 && size < old {
                let fb = size / bs;
                if let Some(e) = map.find(fb).copied()
                    && !e.unwritten
                {
                    if self.extent_shared(flags2, e.block + (fb - e.off), 1)? {
                        return Err(unsupported_shared());
                    }
                    let pb = e.block + (fb - e.off);
                    let blk = self.read_block_for_update(pb, fb, size)?;
                    let disk = self
                        .sb
                        .fsb_to_byte(pb)
                        .ok_or_else(|| corrupt("file block outside the filesystem"))?;
                    self.write_blocks(disk, &blk)?;
                }
            }
        }
        if size > old {
            self.clear_past_eof(&mut map, flags2, old, size)?;
        }
        self.store_fmap(&mut map)?;
        let now = self.now;
        let raw = self.inode(ino)?;
        iwrite::set_size(raw, size);
        iwrite::touch(g, raw, Times::modified(now));
        Ok(())
    }

    /// Creates an inode of `mode` owned by `uid`/`gid` in the AG of `parent`.
    pub fn new_inode(&mut self, parent: u64, mode: u16, uid: u32, gid: u32) -> FsResult<u64> {
        let agno = (parent >> self.sb.agino_log()) as u32;
        let ino = self.alloc_inode(agno)?;
        let g = self.g;
        let now = self.now;
        let raw = self.inode(ino)?;
        iwrite::format_new(g, raw, ino, mode, uid, gid, now);
        Ok(ino)
    }

    /// Adds a link `name` in `dir` to `ino` and stamps the directory.
    fn link_into(&mut self, dir: u64, name: &[u8], ino: u64, ftype: u8) -> FsResult<()> {
        self.dir_add(dir, name, ino, ftype)?;
        let (g, now) = (self.g, self.now);
        iwrite::touch(g, self.inode(dir)?, Times::modified(now));
        Ok(())
    }

    /// Creates regular file `name` in `dir`.
    pub fn create_file(&mut self, dir: u64, name: &[u8], perm: u16, uid: u32, gid: u32) -> FsResult<u64> {
        let ino = self.new_inode(dir, dinode::S_IFREG | (perm & 0o7777), uid, gid)?;
        put8(self.inode(ino)?, iwrite::DI_FORMAT, FMT_EXTENTS);
        self.link_into(dir, name, ino, FT_REG)?;
        Ok(ino)
    }

    /// Creates directory `name` in `dir`.
    pub fn create_dir(&mut self, dir: u64, name: &[u8], perm: u16, uid: u32, gid: u32) -> FsResult<u64> {
        let ino = self.new_inode(dir, dinode::S_IFDIR | (perm & 0o7777), uid, gid)?;
        self.dir_init(ino, dir)?;
        iwrite::set_nlink(self.inode(ino)?, 2);
        self.link_into(dir, name, ino, FT_DIR)?;
        let raw = self.inode(dir)?;
        let n = iwrite::nlink(raw);
        iwrite::set_nlink(raw, n.checked_add(1).ok_or_else(|| corrupt("link count overflow"))?);
        Ok(ino)
    }

    /// Creates symlink `name` in `dir` pointing at `target`.
    pub fn create_symlink(&mut self, dir: u64, name: &[u8], target: &[u8], uid: u32, gid: u32) -> FsResult<u64> {
        let max = super::ondisk::symlink::MAX_LEN;
        if target.is_empty() || target.len() > max {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                alloc::format!("xfs: symlink targets hold 1 to {max} bytes"),
            ));
        }
        let ino = self.new_inode(dir, dinode::S_IFLNK | 0o777, uid, gid)?;
        let g = self.g;
        let room = g.lit;
        if target.len() <= room {
            let raw = self.inode(ino)?;
            put_bytes(iwrite::dfork_mut(g, raw), 0, target);
            put8(raw, iwrite::DI_FORMAT, FMT_LOCAL);
            iwrite::set_size(raw, target.len() as u64);
        } else {
            let hdr = super::ondisk::symlink::hdr_len(self.sb);
            let bs = g.bs as usize;
            let blocks = (hdr + target.len()).div_ceil(bs) as u32;
            let agno = (ino >> self.sb.agino_log()) as u32;
            let got = self.alloc(
                Want {
                    agno,
                    near: None,
                    minlen: blocks,
                    maxlen: blocks,
                    align: 1,
                    data: false,
                    same_ag: false,
                },
                Owner::data(ino, 0, false),
            )?;
            let Some((fsb, _)) = got else {
                return Err(Error::new(ErrorKind::NoSpace, "xfs: no space for a symlink"));
            };
            let off = self
                .sb
                .fsb_to_byte(fsb)
                .ok_or_else(|| corrupt("symlink block outside the filesystem"))?;
            let mut b = vec![0u8; blocks as usize * bs];
            if g.v5 {
                put32(&mut b, 0, super::ondisk::symlink::MAGIC);
                put32(&mut b, 4, 0);
                put32(&mut b, 8, target.len() as u32);
                put_bytes(&mut b, 16, &g.uuid);
                put64(&mut b, 32, ino);
                put64(&mut b, 40, off >> 9);
            }
            put_bytes(&mut b, hdr, target);
            if g.v5 {
                self.tx.new_buf(off, b.len(), Kind::Meta)?.copy_from_slice(&b);
            } else {
                // No header to recognise it by: written with the data, before commit.
                self.io.write(off, &b)?;
            }
            let mut map = self.load_fmap(ino, false)?;
            map.map(0, fsb, u64::from(blocks), false)?;
            let raw = self.inode(ino)?;
            put8(raw, iwrite::DI_FORMAT, FMT_EXTENTS);
            iwrite::add_nblocks(raw, i64::from(blocks))?;
            iwrite::set_size(raw, target.len() as u64);
            self.store_fmap(&mut map)?;
        }
        self.link_into(dir, name, ino, FT_LNK)?;
        Ok(ino)
    }

    /// Frees everything inode `ino` holds (data, attribute fork) and the inode.
    fn destroy_inode(&mut self, ino: u64) -> FsResult<()> {
        let raw = self.inode_copy(ino)?;
        let flags2 = bmapw::flags2(&raw);
        let fmt = iwrite::format(&raw);
        if fmt == dinode::FMT_EXTENTS || fmt == dinode::FMT_BTREE {
            let mut map = self.load_fmap(ino, false)?;
            let end = map.end();
            if end > 0 {
                self.punch(&mut map, flags2, 0, end)?;
            }
            self.store_fmap(&mut map)?;
        }
        self.drop_attr_fork(ino)?;
        self.free_inode(ino)
    }

    /// Drops one link to `ino` (a non-directory); frees it when none remain.
    pub fn unlink_inode(&mut self, ino: u64) -> FsResult<()> {
        let (g, now) = (self.g, self.now);
        let raw = self.inode(ino)?;
        let n = iwrite::nlink(raw);
        if n > 1 {
            iwrite::set_nlink(raw, n - 1);
            iwrite::touch(g, raw, Times::changed(now));
            return Ok(());
        }
        self.destroy_inode(ino)
    }

    /// Removes entry `name` (not a directory) from `dir`.
    pub fn remove_file(&mut self, dir: u64, name: &[u8]) -> FsResult<()> {
        let ino = self.dir_remove(dir, name)?;
        let (g, now) = (self.g, self.now);
        iwrite::touch(g, self.inode(dir)?, Times::modified(now));
        self.unlink_inode(ino)
    }

    /// Removes empty directory `name` (inode `ino`) from `dir`.
    pub fn remove_dir(&mut self, dir: u64, name: &[u8], ino: u64) -> FsResult<()> {
        if self.dir_count(ino, 1)? > 0 {
            return Err(Error::new(ErrorKind::NotEmpty, "xfs: the directory is not empty"));
        }
        self.dir_remove(dir, name)?;
        let (g, now) = (self.g, self.now);
        let raw = self.inode(dir)?;
        let n = iwrite::nlink(raw);
        iwrite::set_nlink(raw, n.saturating_sub(1).max(2));
        iwrite::touch(g, raw, Times::modified(now));
        self.destroy_inode(ino)
    }

    /// The parent of directory `dir` (its `..`).
    pub fn dir_parent(&mut self, dir: u64) -> FsResult<u64> {
        let d = self.load_fmap(dir, false)?;
        let g = self.g;
        let raw = self.inode(dir)?;
        if iwrite::format(raw) == FMT_LOCAL {
            let data = iwrite::dfork(g, raw).to_vec();
            let len = usize::try_from(iwrite::size(raw)).unwrap_or(usize::MAX);
            let sf = super::ondisk::dir::parse_shortform(
                self.sb,
                dir,
                data.get(..len).ok_or_else(|| corrupt("shortform overruns"))?,
            )?;
            return Ok(sf.parent);
        }
        let _ = d;
        self.dir_dotdot(dir)
    }
}

impl Ctx<'_> {
    fn add_nlink(&mut self, ino: u64, delta: i64) -> FsResult<()> {
        let raw = self.inode(ino)?;
        let n = i64::from(iwrite::nlink(raw)) + delta;
        let n = u32::try_from(n).map_err(|_| corrupt(format_args!("inode {ino}: link count out of range")))?;
        iwrite::set_nlink(raw, n);
        Ok(())
    }

    /// Sets the permission bits of `ino`.
    pub fn set_mode(&mut self, ino: u64, perm: u16) -> FsResult<()> {
        let (g, now) = (self.g, self.now);
        let raw = self.inode(ino)?;
        let m = (iwrite::mode(raw) & dinode::S_IFMT) | (perm & 0o7777);
        super::ondisk::put16(raw, iwrite::DI_MODE, m);
        iwrite::touch(g, raw, Times::changed(now));
        Ok(())
    }

    /// Sets the owner and group of `ino`; like Linux, a regular file loses its set-user-ID
    /// bit (and set-group-ID, when group-executable).
    pub fn set_owner(&mut self, ino: u64, uid: u32, gid: u32) -> FsResult<()> {
        let (g, now) = (self.g, self.now);
        let raw = self.inode(ino)?;
        put32(raw, iwrite::DI_UID, uid);
        put32(raw, iwrite::DI_GID, gid);
        let mut m = iwrite::mode(raw);
        if m & dinode::S_IFMT == dinode::S_IFREG {
            m &= !0o4000;
            if m & 0o010 != 0 {
                m &= !0o2000;
            }
            super::ondisk::put16(raw, iwrite::DI_MODE, m);
        }
        iwrite::touch(g, raw, Times::changed(now));
        Ok(())
    }

    /// Sets the access and modification times of `ino`.
    pub fn set_times(&mut self, ino: u64, atime: i64, mtime: i64) -> FsResult<()> {
        let (g, now) = (self.g, self.now);
        let raw = self.inode(ino)?;
        iwrite::touch(
            g,
            raw,
            Times {
                atime: Some(atime),
                mtime: Some(mtime),
                ctime: Some(now),
            },
        );
        Ok(())
    }

    /// Renames `sname` in `sdir` (inode `sino`) to `dname` in `ddir`, replacing what
    /// `dname` named (a file by a file, an empty directory by a directory).
    pub fn rename(
        &mut self,
        sdir: u64,
        sname: &[u8],
        ddir: u64,
        dname: &[u8],
        sino: u64,
        root: u64,
    ) -> FsResult<()> {
        let (found, _) = self
            .dir_lookup(sdir, sname)?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "xfs: the source does not exist"))?;
        if found != sino {
            return Err(Error::new(ErrorKind::NotFound, "xfs: the source changed"));
        }
        if sdir == ddir && sname == dname {
            return Ok(());
        }
        let smode = iwrite::mode(self.inode(sino)?);
        let is_dir = smode & dinode::S_IFMT == dinode::S_IFDIR;
        let ftype = ftype_of(smode);
        if is_dir && sdir != ddir {
            // Not into itself or below itself.
            let mut cur = ddir;
            for _ in 0..4096 {
                if cur == sino {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "xfs: a directory cannot move below itself",
                    ));
                }
                if cur == root {
                    break;
                }
                let up = self.dir_parent(cur)?;
                if up == cur {
                    break;
                }
                cur = up;
            }
        }
        let (g, now) = (self.g, self.now);
        match self.dir_lookup(ddir, dname)? {
            Some((tino, _)) if tino == sino => return Ok(()),
            Some((tino, _)) => {
                let tmode = iwrite::mode(self.inode(tino)?);
                let t_dir = tmode & dinode::S_IFMT == dinode::S_IFDIR;
                if is_dir && !t_dir {
                    return Err(Error::new(ErrorKind::NotADirectory, "xfs: the target is not a directory"));
                }
                if !is_dir && t_dir {
                    return Err(Error::new(ErrorKind::IsADirectory, "xfs: the target is a directory"));
                }
                if t_dir && self.dir_count(tino, 1)? > 0 {
                    return Err(Error::new(ErrorKind::NotEmpty, "xfs: the target directory is not empty"));
                }
                self.dir_replace(ddir, dname, sino, ftype)?;
                if t_dir {
                    // Its `..` no longer counts; the source's takes its place below.
                    self.add_nlink(ddir, -1)?;
                    let traw = self.inode(tino)?;
                    iwrite::set_nlink(traw, 1);
                    self.unlink_dir_inode(tino)?;
                } else {
                    self.unlink_inode(tino)?;
                }
            }
            None => self.dir_add(ddir, dname, sino, ftype)?,
        }
        self.dir_remove(sdir, sname)?;
        if is_dir && sdir != ddir {
            self.dir_set_parent(sino, ddir)?;
            self.add_nlink(sdir, -1)?;
            self.add_nlink(ddir, 1)?;
        }
        iwrite::touch(g, self.inode(sdir)?, Times::modified(now));
        if ddir != sdir {
            iwrite::touch(g, self.inode(ddir)?, Times::modified(now));
        }
        iwrite::touch(g, self.inode(sino)?, Times::changed(now));
        Ok(())
    }

    /// Frees an (empty, unlinked) directory inode.
    fn unlink_dir_inode(&mut self, ino: u64) -> FsResult<()> {
        let raw = self.inode_copy(ino)?;
        if iwrite::format(&raw) != FMT_LOCAL {
            let mut map = self.load_fmap(ino, false)?;
            let end = map.end();
            let mut freed = 0u64;
            for p in map.unmap(0, end) {
                let off = self.sb.fsb_to_byte(p.block).unwrap_or(0);
                self.tx.forget(off, p.len << self.g.blog);
                self.free_extent(p.block, p.len as u32, Owner::data(ino, p.off, false))?;
                freed += p.len;
            }
            self.store_fmap(&mut map)?;
            iwrite::add_nblocks(self.inode(ino)?, -(freed as i64))?;
        }
        self.drop_attr_fork(ino)?;
        self.free_inode(ino)
    }
}
