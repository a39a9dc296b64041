//! File contents and the namespace, for writing: writing and truncating regular files
//! (holes allocated in whole runs near the blocks before them, data written straight to
//! the device in large requests, partial blocks read-modify-written or zero-filled),
//! creating files, directories and symlinks, linking and unlinking, renaming.

use super::bmapw::{self, FMap, MAX_EXTLEN};
use super::dirw::{FT_DIR, FT_LNK, FT_REG};
use super::iwrite::{self, Times};
use super::ondisk::bmap::MAX_FILEOFF;
use super::ondisk::inode::{self as dinode, FMT_EXTENTS, FMT_LOCAL};
use super::ondisk::{corrupt, put_bytes, put8, put32, put64};
use super::space::{Owner, Want};
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
    #[allow(clippy::too_many_arguments)]
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
        self.fill_run_from(fb0, pb0, pb0, a, b, data, data_off, fresh, old_size)
    }

    /// As `fill_run`, reading the old bytes of partly written blocks from `src0` (the
    /// disk block that held file block `fb0` before: a copy on write moves it).
    #[allow(clippy::too_many_arguments)]
    fn fill_run_from(
        &mut self,
        fb0: u64,
        pb0: u64,
        src0: u64,
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
        let slice = |x: u64, y: u64| {
            data.get((x - data_off) as usize..(y - data_off) as usize)
                .unwrap_or(&[])
        };
        let mut a = a;
        // Head block, when the write starts inside it.
        if !a.is_multiple_of(bs) || (b - a) < bs {
            let blk_start = a / bs * bs;
            let blk_end = blk_start + bs;
            let fb = blk_start / bs;
            let mut blk = if fresh {
                vec![0u8; bs as usize]
            } else {
                self.read_block_for_update(src0 + (fb - fb0), fb, old_size)?
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
                self.read_block_for_update(src0 + (fb - fb0), fb, old_size)?
            };
            if let Some(dst) = blk.get_mut(0..(b - a) as usize) {
                dst.copy_from_slice(slice(a, b));
            }
            self.write_blocks(disk_of(a), &blk)?;
        }
        Ok(())
    }

    /// Unmaps file blocks `from..to` of `map`: blocks only this file maps are freed,
    /// shared (reflinked) ones lose a reference. Returns the blocks unmapped.
    fn punch(&mut self, map: &mut FMap, flags2: u64, from: u64, to: u64) -> FsResult<u64> {
        let ino = map.ino;
        let mut unmapped = 0u64;
        for p in map.unmap(from, to - from) {
            unmapped += p.len;
            let owner = |off: u64| Owner::data(ino, off, p.unwritten);
            if flags2 & iwrite::DIFLAG2_REFLINK == 0 {
                self.free_extent(p.block, p.len as u32, owner(p.off))?;
                continue;
            }
            let (agno, agbno) = self.split_fsb(p.block)?;
            let free = self.refc_decrease(agno, agbno, p.len as u32)?;
            // What stays shared: only this file's reverse mapping goes.
            let mut at = agbno;
            let end = agbno + p.len as u32;
            for &(fs, fl) in free.iter().chain(core::iter::once(&(end, 0))) {
                if fs > at {
                    let off = p.off + u64::from(at - agbno);
                    self.rmap_remove(agno, at, fs - at, owner(off))?;
                }
                if fl > 0 {
                    let off = p.off + u64::from(fs - agbno);
                    self.free_extent(self.fsb(agno, fs), fl, owner(off))?;
                }
                at = fs + fl;
            }
        }
        if unmapped > 0 {
            iwrite::add_nblocks(self.inode(ino)?, -(unmapped as i64))?;
        }
        Ok(unmapped)
    }

    /// Allocates new blocks for file blocks `fb..end` (a hole in `map`) near the blocks
    /// before them, maps them and calls `fill` on each new run: (file block, disk
    /// block, length). Returns the blocks allocated.
    fn alloc_run(
        &mut self,
        map: &mut FMap,
        fb: u64,
        end: u64,
        mut fill: impl FnMut(&mut Self, u64, u64, u64) -> FsResult<()>,
    ) -> FsResult<u64> {
        let ino = map.ino;
        let agno = (ino >> self.sb.agino_log()) as u32;
        let mut at = fb;
        while at < end {
            let want = (end - at).min(MAX_EXTLEN);
            let near = at
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
                Owner::data(ino, at, false),
            )?;
            let Some((pb, len)) = got else {
                return Err(Error::new(
                    ErrorKind::NoSpace,
                    "xfs: no space left on the filesystem",
                ));
            };
            let len = u64::from(len);
            map.map(at, pb, len, false)?;
            fill(self, at, pb, len)?;
            at += len;
        }
        iwrite::add_nblocks(self.inode(ino)?, (end - fb) as i64)?;
        Ok(end - fb)
    }

    /// Replaces file block `fb` (mapped, shared) by a new block holding `content`.
    fn cow_block(&mut self, map: &mut FMap, flags2: u64, fb: u64, content: &[u8]) -> FsResult<()> {
        self.punch(map, flags2, fb, fb + 1)?;
        self.alloc_run(map, fb, fb + 1, |c, _, pb, _| {
            let disk =
                c.sb.fsb_to_byte(pb)
                    .ok_or_else(|| corrupt("file block outside the filesystem"))?;
            c.write_blocks(disk, content)
        })?;
        Ok(())
    }

    /// Makes the file bytes from `old_size` up to `new_end` read as zeros before the
    /// size grows over them: the old last block's tail is zeroed, blocks mapped wholly
    /// past the old end are freed.
    fn clear_past_eof(
        &mut self,
        map: &mut FMap,
        flags2: u64,
        old_size: u64,
        new_end: u64,
    ) -> FsResult<()> {
        let bs = self.bs();
        if new_end <= old_size {
            return Ok(());
        }
        let first_whole = old_size.div_ceil(bs);
        let last = new_end.div_ceil(bs);
        if last > first_whole && map.next_from(first_whole).is_some_and(|e| e.off < last) {
            self.punch(map, flags2, first_whole, last)?;
        }
        if !old_size.is_multiple_of(bs) {
            let fb = old_size / bs;
            if let Some(e) = map.find(fb).copied()
                && !e.unwritten
            {
                self.zero_tail(map, flags2, fb, e.block + (fb - e.off), old_size)?;
            }
        }
        Ok(())
    }

    /// Zeroes the bytes of file block `fb` (at disk block `pb`) from byte `size` of the
    /// file on; a shared block is copied first.
    fn zero_tail(
        &mut self,
        map: &mut FMap,
        flags2: u64,
        fb: u64,
        pb: u64,
        size: u64,
    ) -> FsResult<()> {
        let blk = self.read_block_for_update(pb, fb, size)?;
        if self.extent_shared(flags2, pb, 1)? {
            return self.cow_block(map, flags2, fb, &blk);
        }
        let disk = self
            .sb
            .fsb_to_byte(pb)
            .ok_or_else(|| corrupt("file block outside the filesystem"))?;
        self.write_blocks(disk, &blk)
    }

    /// Writes `data` at byte `offset` of regular file `ino`.
    pub fn file_write(&mut self, ino: u64, offset: u64, data: &[u8]) -> FsResult<()> {
        let g = self.g;
        let bs = self.bs();
        let raw = self.inode_copy(ino)?;
        if iwrite::mode(&raw) & dinode::S_IFMT != dinode::S_IFREG {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "xfs: not a regular file",
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e.div_ceil(bs) <= MAX_FILEOFF)
            .ok_or_else(|| {
                Error::new(ErrorKind::TooLarge, "xfs: write past the largest file size")
            })?;
        let flags2 = bmapw::flags2(&raw);
        let old_size = iwrite::size(&raw);
        let mut map = self.load_fmap(ino, false)?;
        self.clear_past_eof(&mut map, flags2, old_size, offset)?;
        let first = offset / bs;
        let last = end.div_ceil(bs);
        let mut fb = first;
        while fb < last {
            let next = map.next_from(fb).copied();
            match next {
                Some(e) if e.off <= fb => {
                    // Mapped: overwrite (unwritten blocks are filled as fresh ones).
                    let run_end = e.end().min(last);
                    let pb = e.block + (fb - e.off);
                    let a = offset.max(fb * bs);
                    let b = end.min(run_end * bs);
                    if !e.unwritten && self.extent_shared(flags2, pb, run_end - fb)? {
                        // Shared with another file: new blocks, the old bytes of
                        // partly written blocks copied over.
                        self.punch(&mut map, flags2, fb, run_end)?;
                        let src0 = pb;
                        let run0 = fb;
                        self.alloc_run(&mut map, fb, run_end, |c, at, npb, len| {
                            let x = a.max(at * bs);
                            let y = b.min((at + len) * bs);
                            c.fill_run_from(
                                at,
                                npb,
                                src0 + (at - run0),
                                x,
                                y,
                                data,
                                offset,
                                false,
                                old_size,
                            )
                        })?;
                        fb = run_end;
                        continue;
                    }
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
                    self.alloc_run(&mut map, fb, hole_end, |c, at, pb, len| {
                        let x = offset.max(at * bs);
                        let y = end.min((at + len) * bs);
                        c.fill_run(at, pb, x, y, data, offset, true, old_size)
                    })?;
                    fb = hole_end;
                }
            }
        }
        self.store_fmap(&mut map)?;
        let now = self.now;
        let raw = self.inode(ino)?;
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
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "xfs: not a regular file",
            ));
        }
        if size.div_ceil(bs) > MAX_FILEOFF {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "xfs: size past the largest file size",
            ));
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
            if !size.is_multiple_of(bs) && size < old {
                let fb = size / bs;
                if let Some(e) = map.find(fb).copied()
                    && !e.unwritten
                {
                    self.zero_tail(&mut map, flags2, fb, e.block + (fb - e.off), size)?;
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
    pub fn create_file(
        &mut self,
        dir: u64,
        name: &[u8],
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> FsResult<u64> {
        let ino = self.new_inode(dir, dinode::S_IFREG | (perm & 0o7777), uid, gid)?;
        put8(self.inode(ino)?, iwrite::DI_FORMAT, FMT_EXTENTS);
        self.link_into(dir, name, ino, FT_REG)?;
        Ok(ino)
    }

    /// Creates directory `name` in `dir`.
    pub fn create_dir(
        &mut self,
        dir: u64,
        name: &[u8],
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> FsResult<u64> {
        let ino = self.new_inode(dir, dinode::S_IFDIR | (perm & 0o7777), uid, gid)?;
        self.dir_init(ino, dir)?;
        iwrite::set_nlink(self.inode(ino)?, 2);
        self.link_into(dir, name, ino, FT_DIR)?;
        let raw = self.inode(dir)?;
        let n = iwrite::nlink(raw);
        iwrite::set_nlink(
            raw,
            n.checked_add(1)
                .ok_or_else(|| corrupt("link count overflow"))?,
        );
        Ok(ino)
    }

    /// Creates symlink `name` in `dir` pointing at `target`.
    pub fn create_symlink(
        &mut self,
        dir: u64,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> FsResult<u64> {
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
                return Err(Error::new(
                    ErrorKind::NoSpace,
                    "xfs: no space for a symlink",
                ));
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
                self.tx
                    .new_buf(off, b.len(), Kind::Meta)?
                    .copy_from_slice(&b);
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
            return Err(Error::new(
                ErrorKind::NotEmpty,
                "xfs: the directory is not empty",
            ));
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
                data.get(..len)
                    .ok_or_else(|| corrupt("shortform overruns"))?,
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
        let n = u32::try_from(n)
            .map_err(|_| corrupt(format_args!("inode {ino}: link count out of range")))?;
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
                    return Err(Error::new(
                        ErrorKind::NotADirectory,
                        "xfs: the target is not a directory",
                    ));
                }
                if !is_dir && t_dir {
                    return Err(Error::new(
                        ErrorKind::IsADirectory,
                        "xfs: the target is a directory",
                    ));
                }
                if t_dir && self.dir_count(tino, 1)? > 0 {
                    return Err(Error::new(
                        ErrorKind::NotEmpty,
                        "xfs: the target directory is not empty",
                    ));
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
