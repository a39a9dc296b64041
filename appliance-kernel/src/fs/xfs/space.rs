//! Free space: allocating and freeing extents in an AG's free-space btrees (by block
//! and by size), keeping the AG free list (AGFL) stocked for their splits, the AGF and
//! superblock counters, and the reverse mappings (rmapbt) of what is allocated.
//!
//! Counters follow XFS: `agf_freeblks` is the free space in the btrees, `agf_flcount`
//! the blocks on the free list, `agf_btreeblks` the free-space and rmap btree blocks
//! beyond their roots, and the superblock's `sb_fdblocks` their sum over the AGs
//! (so moving blocks between the btrees, the free list and btree blocks leaves it
//! unchanged). Extents freed in a transaction are "busy": not handed out for file data
//! until it commits.

use super::btree::{Bt, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_OFF_MASK, RMAP_UNWRITTEN, Tree};
use super::ondisk::{be32, be64, corrupt, put32, put64, uuid_at};
use super::trans::Kind;
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

// rmapbt owners of what is not a file.
pub const OWN_AG: u64 = -5i64 as u64;
pub const OWN_INOBT: u64 = -6i64 as u64;
pub const OWN_INODES: u64 = -7i64 as u64;
pub const OWN_REFC: u64 = -8i64 as u64;

// AGF fields.
const AGF_FLFIRST: usize = 0x28;
const AGF_FLLAST: usize = 0x2C;
const AGF_FLCOUNT: usize = 0x30;
pub const AGF_FREEBLKS: usize = 0x34;
const AGF_LONGEST: usize = 0x38;
const AGF_BTREEBLKS: usize = 0x3C;
const AGF_RMAP_BLOCKS: usize = 0x50;
const AGF_REFC_BLOCKS: usize = 0x54;
// AGI fields.
pub const AGI_IBLOCKS: usize = 0x150;
pub const AGI_FBLOCKS: usize = 0x154;
// Superblock counters.
pub const SB_ICOUNT: usize = 0x80;
pub const SB_IFREE: usize = 0x88;
pub const SB_FDBLOCKS: usize = 0x90;

/// Candidates examined per search before giving up on finding a better fit.
const MAX_CANDIDATES: usize = 256;

/// Who an extent belongs to, as the rmapbt records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub owner: u64,
    /// File offset (inode owners) with the attr-fork / bmbt-block flag bits.
    pub offset: u64,
    pub unwritten: bool,
}

impl Owner {
    pub fn special(owner: u64) -> Owner {
        Owner {
            owner,
            offset: 0,
            unwritten: false,
        }
    }

    pub fn data(ino: u64, off: u64, unwritten: bool) -> Owner {
        Owner {
            owner: ino,
            offset: off & RMAP_OFF_MASK,
            unwritten,
        }
    }

    pub fn attr(ino: u64, off: u64) -> Owner {
        Owner {
            owner: ino,
            offset: (off & RMAP_OFF_MASK) | RMAP_ATTR_FORK,
            unwritten: false,
        }
    }

    pub fn bmbt(ino: u64, attr: bool) -> Owner {
        Owner {
            owner: ino,
            offset: RMAP_BMBT_BLOCK | if attr { RMAP_ATTR_FORK } else { 0 },
            unwritten: false,
        }
    }

    /// Whether the offsets of neighbouring records must be contiguous to merge.
    fn ignore_offset(&self) -> bool {
        (self.owner as i64) < 0 || self.offset & RMAP_BMBT_BLOCK != 0
    }

    fn flags(&self) -> u64 {
        (self.offset & (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK))
            | if self.unwritten { RMAP_UNWRITTEN } else { 0 }
    }

    fn rec(&self, agbno: u32, len: u32) -> Vec<u8> {
        let mut r = alloc::vec![0u8; 24];
        put32(&mut r, 0, agbno);
        put32(&mut r, 4, len);
        put64(&mut r, 8, self.owner);
        put64(&mut r, 16, self.offset | self.flags());
        r
    }

    /// This owner `delta` blocks further on.
    fn advanced(&self, delta: u32) -> Owner {
        let mut o = *self;
        if !self.ignore_offset() {
            o.offset =
                (self.offset & !RMAP_OFF_MASK) | ((self.offset & RMAP_OFF_MASK) + u64::from(delta));
        }
        o
    }
}

/// An rmapbt record decoded.
#[derive(Clone, Copy, Debug)]
struct Rmap {
    start: u32,
    len: u32,
    owner: u64,
    /// Offset with flags (attr fork, bmbt, unwritten).
    off: u64,
}

impl Rmap {
    fn parse(r: &[u8]) -> Rmap {
        Rmap {
            start: be32(r, 0),
            len: be32(r, 4),
            owner: be64(r, 8),
            off: be64(r, 16),
        }
    }
    fn end(&self) -> u32 {
        self.start.saturating_add(self.len)
    }
    fn owner_of(&self) -> Owner {
        Owner {
            owner: self.owner,
            offset: self.off & !RMAP_UNWRITTEN,
            unwritten: self.off & RMAP_UNWRITTEN != 0,
        }
    }
}

/// A request for space.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    /// AG to try first.
    pub agno: u32,
    /// Block (in that AG) to allocate at or after, if possible.
    pub near: Option<u32>,
    pub minlen: u32,
    pub maxlen: u32,
    /// Start alignment in blocks (1: none).
    pub align: u32,
    /// File data (written before the transaction commits): never from busy extents.
    pub data: bool,
    /// Only in `agno`.
    pub same_ag: bool,
}

fn alloc_rec(start: u32, len: u32) -> Vec<u8> {
    let mut r = alloc::vec![0u8; 8];
    put32(&mut r, 0, start);
    put32(&mut r, 4, len);
    r
}

fn nospace(msg: &str) -> Error {
    Error::new(ErrorKind::NoSpace, alloc::format!("xfs: {msg}"))
}

impl Ctx<'_> {
    /// Blocks in AG `agno`.
    pub fn ag_len(&self, agno: u32) -> u32 {
        self.sb.ag_len(agno)
    }

    /// Byte offset of block `agbno` of AG `agno`.
    pub fn ag_byte(&self, agno: u32, agbno: u32) -> u64 {
        self.sb.ag_byte(agno) + (u64::from(agbno) << self.g.blog)
    }

    /// The filesystem block number of `agbno` in `agno`.
    pub fn fsb(&self, agno: u32, agbno: u32) -> u64 {
        (u64::from(agno) << self.g.agblklog) | u64::from(agbno)
    }

    /// (AG, block in the AG) of filesystem block `fsb`, checked to lie inside.
    pub fn split_fsb(&self, fsb: u64) -> FsResult<(u32, u32)> {
        if !self.sb.extent_in_fs(fsb, 1) {
            return Err(corrupt(format_args!(
                "block {fsb} is outside the filesystem"
            )));
        }
        let (a, b) = self.sb.split_fsb(fsb);
        Ok((a as u32, b as u32))
    }

    /// The AGF of `agno` (checked when first read).
    pub fn agf(&mut self, agno: u32) -> FsResult<&mut Vec<u8>> {
        if agno >= self.g.agcount {
            return Err(corrupt(format_args!("AG {agno} does not exist")));
        }
        let sect = self.g.sect as usize;
        let off = self.sb.ag_byte(agno) + sect as u64;
        let sb = self.sb;
        self.tx
            .get_checked(self.io, off, sect, Kind::Meta, |b, trusted| {
                if trusted {
                    return (be32(b, 0) == super::ondisk::ag::AGF_MAGIC && be32(b, 8) == agno)
                        .then_some(())
                        .ok_or_else(|| corrupt(format_args!("AG {agno} AGF: bad magic")));
                }
                super::ondisk::ag::parse_agf(sb, agno, b).map(|_| ())
            })
    }

    /// The AGI of `agno` (checked when first read).
    pub fn agi(&mut self, agno: u32) -> FsResult<&mut Vec<u8>> {
        if agno >= self.g.agcount {
            return Err(corrupt(format_args!("AG {agno} does not exist")));
        }
        let sect = self.g.sect as usize;
        let off = self.sb.ag_byte(agno) + 2 * sect as u64;
        let sb = self.sb;
        self.tx
            .get_checked(self.io, off, sect, Kind::Meta, |b, trusted| {
                if trusted {
                    return (be32(b, 0) == super::ondisk::ag::AGI_MAGIC && be32(b, 8) == agno)
                        .then_some(())
                        .ok_or_else(|| corrupt(format_args!("AG {agno} AGI: bad magic")));
                }
                super::ondisk::ag::parse_agi(sb, agno, b)
            })
    }

    fn agfl(&mut self, agno: u32) -> FsResult<&mut Vec<u8>> {
        let sect = self.g.sect as usize;
        let off = self.sb.ag_byte(agno) + 3 * sect as u64;
        let v5 = self.g.v5;
        let uuid = self.g.uuid;
        self.tx
            .get_checked(self.io, off, sect, Kind::Agfl, |b, trusted| {
                if v5
                    && (be32(b, 0) != 0x5841_464C
                        || be32(b, 4) != agno
                        || uuid_at(b, 8) != uuid
                        || !(trusted || super::crc::verify(b, 0x20)))
                {
                    return Err(corrupt(format_args!("AG {agno} AGFL: bad header or CRC")));
                }
                Ok(())
            })
    }

    /// The primary superblock sector.
    pub fn sbuf(&mut self) -> FsResult<&mut Vec<u8>> {
        let sect = self.g.sect as usize;
        self.tx.get(self.io, 0, sect, Kind::Meta)
    }

    /// Adds `delta` to a 64-bit superblock counter.
    pub fn sb_add(&mut self, off: usize, delta: i64) -> FsResult<()> {
        let b = self.sbuf()?;
        let v = be64(b, off);
        let nv = v
            .checked_add_signed(delta)
            .ok_or_else(|| corrupt("superblock: counter out of range"))?;
        put64(b, off, nv);
        Ok(())
    }

    /// Adds `delta` to a 32-bit field of an AG header.
    pub fn hdr_add(&mut self, agi: bool, agno: u32, off: usize, delta: i64) -> FsResult<()> {
        let b = if agi {
            self.agi(agno)?
        } else {
            self.agf(agno)?
        };
        let v = i64::from(be32(b, off)) + delta;
        let v = u32::try_from(v)
            .map_err(|_| corrupt(format_args!("AG {agno} header: counter out of range")))?;
        put32(b, off, v);
        Ok(())
    }

    fn agfl_size(&self) -> u32 {
        (self.g.sect - if self.g.v5 { 36 } else { 0 }) / 4
    }

    fn agfl_slot(&self, i: u32) -> usize {
        (if self.g.v5 { 36 } else { 0 }) + 4 * i as usize
    }

    /// (first, last, count) of the free list, checked.
    fn agfl_state(&mut self, agno: u32) -> FsResult<(u32, u32, u32)> {
        let size = self.agfl_size();
        let f = self.agf(agno)?;
        let (first, last, count) = (
            be32(f, AGF_FLFIRST),
            be32(f, AGF_FLLAST),
            be32(f, AGF_FLCOUNT),
        );
        if first >= size || last >= size || count > size {
            return Err(corrupt(format_args!(
                "AG {agno} AGF: bad free list indexes"
            )));
        }
        let span = if count == 0 {
            0
        } else {
            (last + size - first) % size + 1
        };
        if span != count {
            return Err(corrupt(format_args!(
                "AG {agno} AGF: bad free list indexes"
            )));
        }
        Ok((first, last, count))
    }

    /// Takes a block off the free list.
    fn agfl_get(&mut self, agno: u32) -> FsResult<u32> {
        let (first, _, count) = self.agfl_state(agno)?;
        if count == 0 {
            return Err(nospace("the AG free list is empty"));
        }
        let slot = self.agfl_slot(first);
        let size = self.agfl_size();
        let bno = be32(self.agfl(agno)?, slot);
        if bno == 0 || bno >= self.ag_len(agno) {
            return Err(corrupt(format_args!(
                "AG {agno} AGFL: block {bno} outside the AG"
            )));
        }
        let f = self.agf(agno)?;
        put32(f, AGF_FLFIRST, (first + 1) % size);
        put32(f, AGF_FLCOUNT, count - 1);
        Ok(bno)
    }

    /// Puts a block on the free list; false when it is full.
    fn agfl_put(&mut self, agno: u32, bno: u32) -> FsResult<bool> {
        let (_, last, count) = self.agfl_state(agno)?;
        let size = self.agfl_size();
        if count >= size {
            return Ok(false);
        }
        let nl = (last + 1) % size;
        let slot = self.agfl_slot(nl);
        put32(self.agfl(agno)?, slot, bno);
        let f = self.agf(agno)?;
        put32(f, AGF_FLLAST, nl);
        put32(f, AGF_FLCOUNT, count + 1);
        Ok(true)
    }

    /// Blocks the free list must hold before the free-space and rmap btrees change: one
    /// split at every level plus a new root, for each of them.
    fn min_freelist(&mut self, agno: u32) -> FsResult<u32> {
        let rmap = self.g.rmapbt;
        let f = self.agf(agno)?;
        let lvl = |off| be32(f, off).min(super::btree::MAX_LEVELS) + 1;
        let mut need = lvl(0x1C) + lvl(0x20);
        if rmap {
            need += lvl(0x24);
        }
        Ok(need)
    }

    /// Stocks the free list of `agno` up to its minimum (and trims a long one).
    pub fn fix_freelist(&mut self, agno: u32) -> FsResult<()> {
        let need = self.min_freelist(agno)?;
        for _ in 0..8 {
            let (_, _, count) = self.agfl_state(agno)?;
            if count >= need {
                break;
            }
            let want = need - count;
            let got = self.alloc_in_ag(
                agno,
                &Want {
                    agno,
                    near: None,
                    minlen: 1,
                    maxlen: want,
                    align: 1,
                    data: false,
                    same_ag: true,
                },
                Owner::special(OWN_AG),
                true,
            )?;
            let Some((start, len)) = got else {
                return Err(nospace(&alloc::format!(
                    "AG {agno} has no space left for its free list"
                )));
            };
            for b in start..start + len {
                if !self.agfl_put(agno, b)? {
                    return Err(corrupt(format_args!("AG {agno}: free list overflow")));
                }
            }
        }
        // Hand back what merges pushed onto the list well beyond its need.
        let (_, _, count) = self.agfl_state(agno)?;
        if count > need + 16 {
            for _ in 0..(count - need - 8) {
                let b = self.agfl_get(agno)?;
                self.free_in_ag(agno, b, 1, Owner::special(OWN_AG), true)?;
            }
        }
        Ok(())
    }

    /// A block for a split of `tree` in `agno`.
    pub fn alloc_btree_block(&mut self, tree: Tree, agno: u32) -> FsResult<u32> {
        match tree {
            Tree::Bno | Tree::Cnt | Tree::Rmap => {
                let b = self.agfl_get(agno)?;
                self.hdr_add(false, agno, AGF_BTREEBLKS, 1)?;
                if tree == Tree::Rmap {
                    self.hdr_add(false, agno, AGF_RMAP_BLOCKS, 1)?;
                }
                self.tx.forget(self.ag_byte(agno, b), u64::from(self.g.bs));
                Ok(b)
            }
            Tree::Ino | Tree::Fino | Tree::Refc => {
                let owner = if tree == Tree::Refc {
                    OWN_REFC
                } else {
                    OWN_INOBT
                };
                let got = self.alloc_in_ag_fixed(agno, 1, Owner::special(owner))?;
                self.sb_add(SB_FDBLOCKS, -1)?;
                match tree {
                    Tree::Ino if self.g.inobtcount => self.hdr_add(true, agno, AGI_IBLOCKS, 1)?,
                    Tree::Fino if self.g.inobtcount => self.hdr_add(true, agno, AGI_FBLOCKS, 1)?,
                    Tree::Refc => self.hdr_add(false, agno, AGF_REFC_BLOCKS, 1)?,
                    _ => {}
                }
                Ok(got)
            }
        }
    }

    /// Frees a block a btree of `tree` no longer uses.
    pub fn free_btree_block(&mut self, tree: Tree, agno: u32, agbno: u32) -> FsResult<()> {
        self.tx
            .forget(self.ag_byte(agno, agbno), u64::from(self.g.bs));
        match tree {
            Tree::Bno | Tree::Cnt | Tree::Rmap => {
                self.hdr_add(false, agno, AGF_BTREEBLKS, -1)?;
                if tree == Tree::Rmap {
                    self.hdr_add(false, agno, AGF_RMAP_BLOCKS, -1)?;
                }
                if !self.agfl_put(agno, agbno)? {
                    // The list is full: freed once the current change is done.
                    self.agfl_defer.push((agno, agbno));
                }
                Ok(())
            }
            Tree::Ino | Tree::Fino | Tree::Refc => {
                let owner = if tree == Tree::Refc {
                    OWN_REFC
                } else {
                    OWN_INOBT
                };
                match tree {
                    Tree::Ino if self.g.inobtcount => self.hdr_add(true, agno, AGI_IBLOCKS, -1)?,
                    Tree::Fino if self.g.inobtcount => self.hdr_add(true, agno, AGI_FBLOCKS, -1)?,
                    Tree::Refc => self.hdr_add(false, agno, AGF_REFC_BLOCKS, -1)?,
                    _ => {}
                }
                self.free_extent(self.fsb(agno, agbno), 1, Owner::special(owner))
            }
        }
    }

    /// Frees the btree blocks a full free list could not take.
    pub fn drain_deferred(&mut self) -> FsResult<()> {
        for _ in 0..64 {
            let Some((agno, b)) = self.agfl_defer.pop() else {
                return Ok(());
            };
            self.fix_freelist(agno)?;
            self.free_in_ag(agno, b, 1, Owner::special(OWN_AG), true)?;
        }
        Err(corrupt("too many deferred btree block frees"))
    }

    /// One block in `agno` (for a btree of that AG): exactly there or nothing.
    fn alloc_in_ag_fixed(&mut self, agno: u32, len: u32, owner: Owner) -> FsResult<u32> {
        self.fix_freelist(agno)?;
        let w = Want {
            agno,
            near: None,
            minlen: len,
            maxlen: len,
            align: 1,
            data: false,
            same_ag: true,
        };
        match self.alloc_in_ag(agno, &w, owner, false)? {
            Some((b, _)) => Ok(b),
            None => Err(nospace(&alloc::format!("AG {agno} is full"))),
        }
    }

    /// The free-space record of `agno` containing or starting after `agbno`.
    fn free_at(&mut self, agno: u32, agbno: u32) -> FsResult<Option<(u32, u32)>> {
        let bt = Bt::new(Tree::Bno, agno);
        Ok(bt
            .find_le(self, &alloc_rec(agbno, 0))?
            .map(|(_, r)| (be32(&r, 0), be32(&r, 4))))
    }

    /// Checks a free-space record of `agno`.
    fn check_free(&self, agno: u32, fs: u32, fl: u32) -> FsResult<()> {
        if fl == 0 || fs == 0 || fs.checked_add(fl).is_none_or(|e| e > self.ag_len(agno)) {
            return Err(corrupt(format_args!(
                "AG {agno} free space btrees: bad free extent {fs}+{fl}"
            )));
        }
        Ok(())
    }

    /// The usable part of free extent `fs..fs+fl` for `w`: aligned, and (for data)
    /// clear of busy extents. Returns the longest such piece.
    fn usable(&self, agno: u32, fs: u32, fl: u32, w: &Want) -> (u32, u32) {
        let mut pieces: Vec<(u32, u32)> = alloc::vec![(fs, fs.saturating_add(fl))];
        if w.data {
            for &(bf, bl) in &self.tx.busy {
                let (ba, bb) = self.sb.split_fsb(bf);
                if ba != u64::from(agno) {
                    continue;
                }
                let (bs, be) = (bb as u32, (bb + bl).min(u64::from(u32::MAX)) as u32);
                let mut next = Vec::new();
                for (a, b) in pieces {
                    if be <= a || bs >= b {
                        next.push((a, b));
                        continue;
                    }
                    if a < bs {
                        next.push((a, bs));
                    }
                    if be < b {
                        next.push((be, b));
                    }
                }
                pieces = next;
            }
        }
        let align = w.align.max(1);
        let mut best = (0, 0);
        for (a, b) in pieces {
            let s = a.div_ceil(align).saturating_mul(align);
            if s < b && b - s > best.1 {
                best = (s, b - s);
            }
        }
        best
    }

    /// Allocates in AG `agno` only: finds space, takes it out of the free-space btrees
    /// and records its owner. `agfl`: the blocks go to the free list (the superblock's
    /// free block count does not change). The caller stocked the free list.
    fn alloc_in_ag(
        &mut self,
        agno: u32,
        w: &Want,
        owner: Owner,
        agfl: bool,
    ) -> FsResult<Option<(u32, u32)>> {
        let minlen = w.minlen.max(1);
        let maxlen = w.maxlen.max(minlen);
        let mut pick: Option<(u32, u32, u32, u32)> = None; // (free start, free len, start, len)
        // Right at (or after) the block asked for: files grow contiguously.
        if let Some(near) = w.near
            && let Some((fs, fl)) = self.free_at(agno, near)?
            && self.check_free(agno, fs, fl).is_ok()
            && fs <= near
            && fs.saturating_add(fl) > near
        {
            let (s, l) = self.usable(agno, near, fs + fl - near, w);
            if s == near && l >= minlen {
                pick = Some((fs, fl, s, l.min(maxlen)));
            }
        }
        if pick.is_none() {
            // The smallest extent holding maxlen, else the largest holding minlen.
            let cnt = Bt::new(Tree::Cnt, agno);
            let mut key = alloc_rec(0, maxlen);
            let mut seen = 0;
            if let Some((mut path, mut r)) = cnt.find_ge(self, &key)? {
                loop {
                    let (fs, fl) = (be32(&r, 0), be32(&r, 4));
                    self.check_free(agno, fs, fl)?;
                    let (s, l) = self.usable(agno, fs, fl, w);
                    if l >= maxlen {
                        pick = Some((fs, fl, s, maxlen));
                        break;
                    }
                    seen += 1;
                    if seen >= MAX_CANDIDATES || !cnt.step(self, &mut path, true)? {
                        break;
                    }
                    r = cnt.rec_at(self, &path)?.unwrap_or_default();
                }
            }
            if pick.is_none() {
                key = alloc_rec(u32::MAX, u32::MAX);
                seen = 0;
                if let Some((mut path, mut r)) = cnt.find_le(self, &key)? {
                    let mut best: Option<(u32, u32, u32, u32)> = None;
                    loop {
                        let (fs, fl) = (be32(&r, 0), be32(&r, 4));
                        self.check_free(agno, fs, fl)?;
                        if fl < minlen || best.is_some_and(|b| fl <= b.3) {
                            break;
                        }
                        let (s, l) = self.usable(agno, fs, fl, w);
                        if l >= minlen && best.is_none_or(|b| l > b.3) {
                            best = Some((fs, fl, s, l.min(maxlen)));
                        }
                        seen += 1;
                        if seen >= MAX_CANDIDATES || !cnt.step(self, &mut path, false)? {
                            break;
                        }
                        r = cnt.rec_at(self, &path)?.unwrap_or_default();
                    }
                    pick = best;
                }
            }
        }
        let Some((fs, fl, s, l)) = pick else {
            return Ok(None);
        };
        // (For the free list too: its blocks leave the free-space btrees and belong
        // to the AG; the superblock count is the caller's business.)
        let _ = agfl;
        self.take_free(agno, fs, fl, s, l)?;
        self.hdr_add(false, agno, AGF_FREEBLKS, -i64::from(l))?;
        self.rmap_add(agno, s, l, owner)?;
        self.set_longest(agno)?;
        Ok(Some((s, l)))
    }

    /// Removes `s..s+l` from free extent `fs..fs+fl` in both free-space btrees.
    fn take_free(&mut self, agno: u32, fs: u32, fl: u32, s: u32, l: u32) -> FsResult<()> {
        self.check_free(agno, fs, fl)?;
        let fe = fs + fl;
        let e = s.saturating_add(l);
        if s < fs || e > fe || l == 0 {
            return Err(corrupt(format_args!(
                "AG {agno}: allocation outside its free extent"
            )));
        }
        let bno = Bt::new(Tree::Bno, agno);
        let cnt = Bt::new(Tree::Cnt, agno);
        let (path, rec) = bno.find_eq(self, &alloc_rec(fs, 0))?.ok_or_else(|| {
            corrupt(format_args!(
                "AG {agno} free space (bno) btree: record missing"
            ))
        })?;
        if be32(&rec, 4) != fl {
            return Err(corrupt(format_args!(
                "AG {agno} free space btrees disagree about the extent at block {fs}"
            )));
        }
        let mut pieces = Vec::new();
        if s > fs {
            pieces.push((fs, s - fs));
        }
        if e < fe {
            pieces.push((e, fe - e));
        }
        match pieces.as_slice() {
            [] => bno.delete(self, &path)?,
            [(a, b)] => bno.update(self, &path, &alloc_rec(*a, *b))?,
            [(a, b), (c, d)] => {
                bno.update(self, &path, &alloc_rec(*a, *b))?;
                bno.insert(self, &alloc_rec(*c, *d))?;
            }
            _ => {}
        }
        let (cpath, _) = cnt.find_eq(self, &alloc_rec(fs, fl))?.ok_or_else(|| {
            corrupt(format_args!(
                "AG {agno} free space (cnt) btree: record missing"
            ))
        })?;
        cnt.delete(self, &cpath)?;
        for (a, b) in pieces {
            cnt.insert(self, &alloc_rec(a, b))?;
        }
        Ok(())
    }

    /// Sets `agf_longest` from the by-size btree.
    fn set_longest(&mut self, agno: u32) -> FsResult<()> {
        let longest = Bt::new(Tree::Cnt, agno)
            .last(self)?
            .map_or(0, |r| be32(&r, 4));
        put32(self.agf(agno)?, AGF_LONGEST, longest);
        Ok(())
    }

    /// Allocates an extent for `w` (AG after AG from `w.agno` unless `same_ag`):
    /// `(filesystem block, length)`, or `None` when no AG has room.
    pub fn alloc(&mut self, w: Want, owner: Owner) -> FsResult<Option<(u64, u32)>> {
        let n = self.g.agcount;
        let tries = if w.same_ag { 1 } else { n };
        for i in 0..tries {
            let agno = (w.agno + i) % n;
            let f = self.agf(agno)?;
            let free = be32(f, AGF_FREEBLKS);
            let longest = be32(f, AGF_LONGEST);
            // Keep a few blocks per AG for the free list and btree splits.
            if longest < w.minlen.max(1) || free < w.minlen.saturating_add(8) {
                continue;
            }
            self.fix_freelist(agno)?;
            let mut ww = w;
            if i > 0 {
                ww.near = None;
            }
            if let Some((s, l)) = self.alloc_in_ag(agno, &ww, owner, false)? {
                self.sb_add(SB_FDBLOCKS, -i64::from(l))?;
                return Ok(Some((self.fsb(agno, s), l)));
            }
        }
        Ok(None)
    }

    /// Frees `len` blocks at filesystem block `fsb` owned by `owner`.
    pub fn free_extent(&mut self, fsb: u64, len: u32, owner: Owner) -> FsResult<()> {
        let (agno, agbno) = self.split_fsb(fsb)?;
        if !self.sb.extent_in_fs(fsb, u64::from(len)) || len == 0 {
            return Err(corrupt(format_args!(
                "freeing blocks {fsb}+{len} outside the filesystem"
            )));
        }
        self.fix_freelist(agno)?;
        self.free_in_ag(agno, agbno, len, owner, false)?;
        self.sb_add(SB_FDBLOCKS, i64::from(len))
    }

    /// Puts `agbno..+len` back in the free-space btrees of `agno`, merging with its
    /// neighbours, and drops its reverse mapping. `from_agfl`: the blocks come off the
    /// free list (free block counts move between counters only).
    fn free_in_ag(
        &mut self,
        agno: u32,
        agbno: u32,
        len: u32,
        owner: Owner,
        _from_agfl: bool,
    ) -> FsResult<()> {
        let end = agbno
            .checked_add(len)
            .filter(|&e| e <= self.ag_len(agno))
            .ok_or_else(|| corrupt(format_args!("AG {agno}: freeing blocks past the AG")))?;
        let bno = Bt::new(Tree::Bno, agno);
        let cnt = Bt::new(Tree::Cnt, agno);
        let left = bno.find_le(self, &alloc_rec(agbno, 0))?;
        let right = bno.find_ge(self, &alloc_rec(agbno, 0))?;
        let mut start = agbno;
        let mut total = len;
        let mut merge_left = None;
        let mut merge_right = None;
        if let Some((p, r)) = left {
            let (ls, ll) = (be32(&r, 0), be32(&r, 4));
            self.check_free(agno, ls, ll)?;
            let le = ls.saturating_add(ll);
            if le > agbno {
                return Err(corrupt(format_args!(
                    "AG {agno}: freeing blocks {agbno}+{len}, already free"
                )));
            }
            if le == agbno {
                merge_left = Some((p, ls, ll));
            }
        }
        if let Some((p, r)) = right {
            let (rs, rl) = (be32(&r, 0), be32(&r, 4));
            self.check_free(agno, rs, rl)?;
            if rs < end {
                return Err(corrupt(format_args!(
                    "AG {agno}: freeing blocks {agbno}+{len}, already free"
                )));
            }
            if rs == end {
                merge_right = Some((p, rs, rl));
            }
        }
        if let Some((_, ls, ll)) = merge_left {
            start = ls;
            total += ll;
            let (cp, _) = cnt.find_eq(self, &alloc_rec(ls, ll))?.ok_or_else(|| {
                corrupt(format_args!(
                    "AG {agno} free space (cnt) btree: record missing"
                ))
            })?;
            cnt.delete(self, &cp)?;
        }
        if let Some((_, rs, rl)) = merge_right {
            total += rl;
            let (cp, _) = cnt.find_eq(self, &alloc_rec(rs, rl))?.ok_or_else(|| {
                corrupt(format_args!(
                    "AG {agno} free space (cnt) btree: record missing"
                ))
            })?;
            cnt.delete(self, &cp)?;
        }
        match (merge_left, merge_right) {
            (Some(_), Some((_, rs, _))) => {
                let (rp, _) = bno.find_eq(self, &alloc_rec(rs, 0))?.ok_or_else(|| {
                    corrupt(format_args!(
                        "AG {agno} free space (bno) btree: record missing"
                    ))
                })?;
                bno.delete(self, &rp)?;
                let (lp, _) = bno.find_eq(self, &alloc_rec(start, 0))?.ok_or_else(|| {
                    corrupt(format_args!(
                        "AG {agno} free space (bno) btree: record missing"
                    ))
                })?;
                bno.update(self, &lp, &alloc_rec(start, total))?;
            }
            (Some((lp, _, _)), None) => bno.update(self, &lp, &alloc_rec(start, total))?,
            (None, Some((rp, _, _))) => bno.update(self, &rp, &alloc_rec(start, total))?,
            (None, None) => bno.insert(self, &alloc_rec(start, total))?,
        }
        cnt.insert(self, &alloc_rec(start, total))?;
        self.hdr_add(false, agno, AGF_FREEBLKS, i64::from(len))?;
        self.set_longest(agno)?;
        self.rmap_remove(agno, agbno, len, owner)?;
        let fsb = self.fsb(agno, agbno);
        self.tx.busy.push((fsb, u64::from(len)));
        self.tx
            .forget(self.ag_byte(agno, agbno), u64::from(len) << self.g.blog);
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // Reverse mappings

    fn rmaps_at(&mut self, agno: u32, lo: u32, hi: u32) -> FsResult<Vec<Rmap>> {
        let bt = Bt::new(Tree::Rmap, agno);
        Ok(bt
            .query_blocks(self, lo, hi)?
            .iter()
            .map(|r| Rmap::parse(r))
            .collect())
    }

    fn mergeable(r: &Rmap, o: &Owner) -> bool {
        r.owner == o.owner
            && (r.off & (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK | RMAP_UNWRITTEN)) == o.flags()
    }

    /// Records that `owner` has `agbno..+len` of `agno` (merging with its neighbours).
    pub fn rmap_add(&mut self, agno: u32, agbno: u32, len: u32, owner: Owner) -> FsResult<()> {
        if !self.g.rmapbt {
            return Ok(());
        }
        let end = agbno
            .checked_add(len)
            .filter(|&e| e <= self.ag_len(agno) && len > 0)
            .ok_or_else(|| corrupt(format_args!("AG {agno}: mapping blocks past the AG")))?;
        let bt = Bt::new(Tree::Rmap, agno);
        if !self.g.reflink || (owner.owner as i64) < 0 {
            let clash = self.rmaps_at(agno, agbno, end - 1)?;
            if let Some(r) = clash.first() {
                return Err(corrupt(format_args!(
                    "AG {agno} reverse mapping btree: blocks {agbno}+{len} are already owned by {} (at {}+{})",
                    r.owner as i64, r.start, r.len
                )));
            }
        }
        let off = owner.offset & RMAP_OFF_MASK;
        let left = if agbno > 0 {
            self.rmaps_at(agno, agbno - 1, agbno - 1)?
                .into_iter()
                .find(|r| {
                    Self::mergeable(r, &owner)
                        && r.end() == agbno
                        && (owner.ignore_offset()
                            || (r.off & RMAP_OFF_MASK) + u64::from(r.len) == off)
                })
        } else {
            None
        };
        let right = self.rmaps_at(agno, end, end)?.into_iter().find(|r| {
            Self::mergeable(r, &owner)
                && r.start == end
                && (owner.ignore_offset() || off + u64::from(len) == (r.off & RMAP_OFF_MASK))
        });
        let key = |r: &Rmap| Tree::Rmap.rec_key(&r.owner_of().rec(r.start, r.len));
        let ag_len = self.ag_len(agno);
        let sum = |parts: &[u32]| -> FsResult<u32> {
            parts
                .iter()
                .try_fold(0u32, |a, &b| a.checked_add(b))
                .filter(|&t| t <= ag_len)
                .ok_or_else(|| {
                    corrupt(format_args!(
                        "AG {agno} reverse mapping btree: record too long"
                    ))
                })
        };
        match (left, right) {
            (Some(l), Some(r)) => {
                let (rp, _) = bt
                    .find_eq(self, &key(&r))?
                    .ok_or_else(|| corrupt("reverse mapping btree: record missing"))?;
                bt.delete(self, &rp)?;
                let (lp, _) = bt
                    .find_eq(self, &key(&l))?
                    .ok_or_else(|| corrupt("reverse mapping btree: record missing"))?;
                let total = sum(&[l.len, len, r.len])?;
                bt.update(self, &lp, &l.owner_of().rec(l.start, total))?;
            }
            (Some(l), None) => {
                let (lp, _) = bt
                    .find_eq(self, &key(&l))?
                    .ok_or_else(|| corrupt("reverse mapping btree: record missing"))?;
                let total = sum(&[l.len, len])?;
                bt.update(self, &lp, &l.owner_of().rec(l.start, total))?;
            }
            (None, Some(r)) => {
                let (rp, _) = bt
                    .find_eq(self, &key(&r))?
                    .ok_or_else(|| corrupt("reverse mapping btree: record missing"))?;
                let total = sum(&[len, r.len])?;
                bt.delete(self, &rp)?;
                bt.insert(self, &owner.rec(agbno, total))?;
            }
            (None, None) => bt.insert(self, &owner.rec(agbno, len))?,
        }
        Ok(())
    }

    /// Drops the record that `owner` has `agbno..+len` of `agno`.
    pub fn rmap_remove(&mut self, agno: u32, agbno: u32, len: u32, owner: Owner) -> FsResult<()> {
        if !self.g.rmapbt {
            return Ok(());
        }
        let end = agbno
            .checked_add(len)
            .filter(|&e| e <= self.ag_len(agno) && len > 0)
            .ok_or_else(|| corrupt(format_args!("AG {agno}: unmapping blocks past the AG")))?;
        let off = owner.offset & RMAP_OFF_MASK;
        let fork = owner.offset & (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK);
        let found = self.rmaps_at(agno, agbno, agbno)?.into_iter().find(|r| {
            r.owner == owner.owner
                && r.off & (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK) == fork
                && r.start <= agbno
                && r.end() >= end
                && (owner.ignore_offset()
                    || (r.off & RMAP_OFF_MASK) + u64::from(agbno - r.start) == off)
        });
        let Some(r) = found else {
            return Err(corrupt(format_args!(
                "AG {agno} reverse mapping btree: no record of {} owning blocks {agbno}+{len}",
                owner.owner as i64
            )));
        };
        let bt = Bt::new(Tree::Rmap, agno);
        let ro = r.owner_of();
        let (path, _) = bt
            .find_eq(self, &Tree::Rmap.rec_key(&ro.rec(r.start, r.len)))?
            .ok_or_else(|| corrupt("reverse mapping btree: record missing"))?;
        let head = agbno - r.start;
        let tail = r.end() - end;
        match (head, tail) {
            (0, 0) => bt.delete(self, &path)?,
            (0, t) => {
                bt.delete(self, &path)?;
                bt.insert(self, &ro.advanced(r.len - t).rec(end, t))?;
            }
            (h, 0) => bt.update(self, &path, &ro.rec(r.start, h))?,
            (h, t) => {
                bt.update(self, &path, &ro.rec(r.start, h))?;
                bt.insert(self, &ro.advanced(h + len).rec(end, t))?;
            }
        }
        Ok(())
    }

    /// Whether any block of `agbno..+len` in `agno` is shared (reflinked).
    pub fn shared(&mut self, agno: u32, agbno: u32, len: u32) -> FsResult<bool> {
        if !self.g.reflink || len == 0 {
            return Ok(false);
        }
        let bt = Bt::new(Tree::Refc, agno);
        Ok(bt
            .query_blocks(self, agbno, agbno + len - 1)?
            .iter()
            .any(|r| be32(r, 0) & 0x8000_0000 == 0))
    }
}
