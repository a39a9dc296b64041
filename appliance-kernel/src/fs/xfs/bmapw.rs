//! Block maps, for writing: a fork's whole extent list is loaded ([`FMap`]), changed in
//! memory (mapping and unmapping ranges, neighbouring extents merged), and stored back:
//! in the inode when it fits (extents format), otherwise as a freshly laid out block
//! map btree (bmbt) whose root sits in the inode (btree format), reusing the old
//! tree's blocks where it can. A fork thus converts between the two formats as it grows
//! and shrinks, and every tree written is balanced (all blocks below the top one at
//! least half full).

use super::iwrite::{self, dfork_mut};
use super::ondisk::bmap::{self, BtreeBlock, Extent, NULL_FSBLOCK};
use super::ondisk::inode::{FMT_BTREE, FMT_EXTENTS};
use super::ondisk::{be64, corrupt, put_bytes, put16, put32, put64};
use super::space::{Owner, Want};
use super::trans::Kind;
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Extents one fork may have for skiff to change it.
pub const MAX_MAP_EXTENTS: usize = 1 << 16;
/// Longest extent a record holds (21-bit block count).
pub const MAX_EXTLEN: u64 = (1 << 21) - 1;
/// bmbt blocks one fork may have for skiff to change it.
const MAX_BMBT_BLOCKS: usize = 1 << 12;

/// A fork's extent list, loaded for change.
#[derive(Debug, Clone)]
pub struct FMap {
    pub ino: u64,
    pub attr: bool,
    pub exts: Vec<Extent>,
    /// The bmbt blocks the fork had when loaded.
    old_bmbt: Vec<u64>,
    pub dirty: bool,
}

/// Encodes an extent record.
pub fn encode_rec(e: &Extent) -> [u8; 16] {
    let l0 = (u64::from(e.unwritten) << 63) | ((e.off & bmap::MAX_FILEOFF) << 9) | (e.block >> 43);
    let l1 = (e.block << 21) | (e.len & MAX_EXTLEN);
    let mut r = [0u8; 16];
    put64(&mut r, 0, l0);
    put64(&mut r, 8, l1);
    r
}

impl FMap {
    /// The extent mapping file block `fb`, if any.
    pub fn find(&self, fb: u64) -> Option<&Extent> {
        let i = self.exts.partition_point(|e| e.end() <= fb);
        self.exts.get(i).filter(|e| e.off <= fb)
    }

    /// The first extent ending after `fb`.
    pub fn next_from(&self, fb: u64) -> Option<&Extent> {
        let i = self.exts.partition_point(|e| e.end() <= fb);
        self.exts.get(i)
    }

    /// The first file block after the last mapped one.
    pub fn end(&self) -> u64 {
        self.exts.last().map_or(0, Extent::end)
    }

    /// Maps `len` blocks from file block `off` to `block` (the range must be a hole).
    pub fn map(&mut self, off: u64, block: u64, len: u64, unwritten: bool) -> FsResult<()> {
        if len == 0 {
            return Ok(());
        }
        let i = self.exts.partition_point(|e| e.end() <= off);
        if self.exts.get(i).is_some_and(|e| e.off < off + len) {
            return Err(Error::new(
                ErrorKind::Internal,
                "xfs: mapping over mapped blocks",
            ));
        }
        if self.exts.len() >= MAX_MAP_EXTENTS {
            return Err(Error::new(
                ErrorKind::TooLarge,
                alloc::format!(
                    "xfs: inode {}: more than {MAX_MAP_EXTENTS} extents",
                    self.ino
                ),
            ));
        }
        self.exts.insert(
            i,
            Extent {
                off,
                block,
                len,
                unwritten,
            },
        );
        self.merge_around(i);
        self.dirty = true;
        Ok(())
    }

    /// Merges extent `i` with its neighbours where they continue each other.
    fn merge_around(&mut self, i: usize) {
        let joins = |a: &Extent, b: &Extent| {
            a.end() == b.off
                && a.block + a.len == b.block
                && a.unwritten == b.unwritten
                && a.len + b.len <= MAX_EXTLEN
        };
        let mut i = i;
        if i > 0
            && let (Some(a), Some(b)) = (self.exts.get(i - 1), self.exts.get(i))
            && joins(a, b)
        {
            let l = b.len;
            if let Some(a) = self.exts.get_mut(i - 1) {
                a.len += l;
            }
            self.exts.remove(i);
            i -= 1;
        }
        if let (Some(a), Some(b)) = (self.exts.get(i), self.exts.get(i + 1))
            && joins(a, b)
        {
            let l = b.len;
            if let Some(a) = self.exts.get_mut(i) {
                a.len += l;
            }
            self.exts.remove(i + 1);
        }
    }

    /// Unmaps file blocks `off..off+len`: returns the pieces that were mapped.
    pub fn unmap(&mut self, off: u64, len: u64) -> Vec<Extent> {
        let end = off.saturating_add(len);
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(self.exts.len() + 1);
        for e in self.exts.drain(..) {
            if e.end() <= off || e.off >= end {
                keep.push(e);
                continue;
            }
            let a = e.off.max(off);
            let b = e.end().min(end);
            if e.off < a {
                keep.push(Extent {
                    len: a - e.off,
                    ..e
                });
            }
            out.push(Extent {
                off: a,
                block: e.block + (a - e.off),
                len: b - a,
                unwritten: e.unwritten,
            });
            if b < e.end() {
                keep.push(Extent {
                    off: b,
                    block: e.block + (b - e.off),
                    len: e.end() - b,
                    unwritten: e.unwritten,
                });
            }
        }
        self.exts = keep;
        if !out.is_empty() {
            self.dirty = true;
        }
        out
    }

    /// Marks file blocks `off..off+len` (mapped, unwritten) as written.
    pub fn mark_written(&mut self, off: u64, len: u64) -> FsResult<()> {
        let pieces = self.unmap(off, len);
        for p in pieces {
            self.map(p.off, p.block, p.len, false)?;
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// Loads the extent list of inode `ino`'s data fork (`attr`: attribute fork).
    pub fn load_fmap(&mut self, ino: u64, attr: bool) -> FsResult<FMap> {
        let g = self.g;
        let raw = self.inode_copy(ino)?;
        let (fmt, fork, n) = if attr {
            (
                iwrite::aformat(&raw),
                iwrite::afork(g, &raw).to_vec(),
                iwrite::anextents(g, &raw),
            )
        } else {
            (
                iwrite::format(&raw),
                iwrite::dfork(g, &raw).to_vec(),
                iwrite::nextents(g, &raw),
            )
        };
        let mut m = FMap {
            ino,
            attr,
            exts: Vec::new(),
            old_bmbt: Vec::new(),
            dirty: false,
        };
        match fmt {
            FMT_EXTENTS => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > fork.len() / 16 {
                    return Err(corrupt(format_args!("inode {ino}: {n} extents do not fit")));
                }
                m.exts = bmap::parse_records(self.sb, ino, &fork, n, 0)?;
            }
            FMT_BTREE => {
                let root = bmap::parse_root(self.sb, ino, &fork)?;
                self.walk_bmbt(ino, root, &mut m)?;
                if m.exts.len() as u64 != n {
                    return Err(corrupt(format_args!(
                        "inode {ino}: block map holds {} extents, the inode says {n}",
                        m.exts.len()
                    )));
                }
            }
            1 if !attr => {} // local: no extents
            f => {
                return Err(corrupt(format_args!(
                    "inode {ino}: fork format {f} has no block map"
                )));
            }
        }
        Ok(m)
    }

    fn walk_bmbt(&mut self, ino: u64, root: bmap::Node, m: &mut FMap) -> FsResult<()> {
        let bs = self.g.bs as usize;
        let mut level_ptrs = root.ptrs;
        let mut level = root.level;
        while level > 0 {
            level -= 1;
            let mut next = Vec::new();
            let mut after = 0u64;
            for fsb in level_ptrs {
                if m.old_bmbt.len() >= MAX_BMBT_BLOCKS {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        alloc::format!("xfs: inode {ino}: block map too large to change"),
                    ));
                }
                if m.old_bmbt.contains(&fsb) {
                    return Err(corrupt(format_args!(
                        "inode {ino}: block map block {fsb} used twice"
                    )));
                }
                m.old_bmbt.push(fsb);
                let off = self
                    .sb
                    .fsb_to_byte(fsb)
                    .ok_or_else(|| corrupt(format_args!("inode {ino}: bad block map block")))?;
                let buf = self.tx.get(self.io, off, bs, Kind::Meta)?.clone();
                match bmap::parse_block(self.sb, ino, fsb, &buf, level, after)? {
                    BtreeBlock::Node { node, .. } => next.extend(node.ptrs),
                    BtreeBlock::Leaf { recs, .. } => {
                        if m.exts.len() + recs.len() > MAX_MAP_EXTENTS {
                            return Err(Error::new(
                                ErrorKind::TooLarge,
                                alloc::format!(
                                    "xfs: inode {ino}: more than {MAX_MAP_EXTENTS} extents"
                                ),
                            ));
                        }
                        after = recs.last().map_or(after, Extent::end);
                        m.exts.extend(recs);
                    }
                }
            }
            level_ptrs = next;
        }
        Ok(())
    }

    /// Stores `m` back into its inode: extents format when the list fits in the fork,
    /// else a new bmbt (old tree blocks reused, surplus freed, extra allocated).
    pub fn store_fmap(&mut self, m: &mut FMap) -> FsResult<()> {
        if !m.dirty {
            return Ok(());
        }
        let g = self.g;
        let ino = m.ino;
        let raw = self.inode_copy(ino)?;
        let fsize = if m.attr {
            iwrite::afork(g, &raw).len()
        } else {
            iwrite::dsize(g, &raw)
        };
        let n = m.exts.len();
        let mut old = core::mem::take(&mut m.old_bmbt);
        let mut fork = alloc::vec![0u8; fsize];
        let fmt;
        let mut new_blocks: Vec<u64> = Vec::new();
        if n * 16 <= fsize {
            for (i, e) in m.exts.iter().enumerate() {
                put_bytes(&mut fork, i * 16, &encode_rec(e));
            }
            fmt = FMT_EXTENTS;
        } else {
            let hdr = bmap::block_hdr_len(self.sb);
            let bs = g.bs as usize;
            let leaf_max = (bs - hdr) / 16;
            let node_max = (bs - hdr) / 16;
            let root_max = fsize.saturating_sub(4) / 16;
            if root_max == 0 {
                return Err(corrupt(format_args!(
                    "inode {ino}: fork too small for a btree root"
                )));
            }
            // Lay out the levels bottom up: each is a list of blocks, each block a
            // range of the level below (records at level 0).
            let mut levels: Vec<Vec<(usize, usize)>> = Vec::new();
            let mut count = n;
            let mut per = leaf_max;
            loop {
                let k = count.div_ceil(per);
                let mut blocks = Vec::with_capacity(k);
                let (base, rem) = (count / k, count % k);
                let mut at = 0;
                for i in 0..k {
                    let len = base + usize::from(i < rem);
                    blocks.push((at, len));
                    at += len;
                }
                levels.push(blocks);
                if k <= root_max {
                    break;
                }
                count = k;
                per = node_max;
                if levels.len() >= usize::from(bmap::MAX_LEVELS) - 1 {
                    return Err(Error::new(ErrorKind::TooLarge, "xfs: block map too deep"));
                }
            }
            let total: usize = levels.iter().map(Vec::len).sum();
            // Blocks: reuse old ones, allocate the rest near the inode.
            let agno = (ino >> self.sb.agino_log()) as u32;
            while new_blocks.len() < total {
                if let Some(b) = old.pop() {
                    new_blocks.push(b);
                    continue;
                }
                let got = self.alloc(
                    Want {
                        agno,
                        near: None,
                        minlen: 1,
                        maxlen: 1,
                        align: 1,
                        data: false,
                        same_ag: false,
                    },
                    Owner::bmbt(ino, m.attr),
                )?;
                let Some((fsb, _)) = got else {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        "xfs: no space for a block map block",
                    ));
                };
                iwrite::add_nblocks(self.inode(ino)?, 1)?;
                new_blocks.push(fsb);
            }
            // Write the blocks, level by level.
            let mut at = 0usize;
            let mut below: Vec<(u64, u64)> = Vec::new(); // (first key, block) of the level below
            for (li, blocks) in levels.iter().enumerate() {
                let ids: Vec<u64> = new_blocks
                    .get(at..at + blocks.len())
                    .unwrap_or(&[])
                    .to_vec();
                at += blocks.len();
                let mut mine = Vec::with_capacity(blocks.len());
                for (bi, &(start, len)) in blocks.iter().enumerate() {
                    let fsb = *ids.get(bi).ok_or_else(|| corrupt("bmbt layout"))?;
                    let left = if bi > 0 {
                        ids.get(bi - 1).copied().unwrap_or(NULL_FSBLOCK)
                    } else {
                        NULL_FSBLOCK
                    };
                    let right = ids.get(bi + 1).copied().unwrap_or(NULL_FSBLOCK);
                    let off = self
                        .sb
                        .fsb_to_byte(fsb)
                        .ok_or_else(|| corrupt("bmbt block outside the filesystem"))?;
                    let v5 = g.v5;
                    let uuid = g.uuid;
                    let b = self.tx.new_buf(off, bs, Kind::Meta)?;
                    put32(
                        b,
                        0,
                        if v5 {
                            bmap::BMA3_MAGIC
                        } else {
                            bmap::BMAP_MAGIC
                        },
                    );
                    put16(b, 4, li as u16);
                    put16(b, 6, len as u16);
                    put64(b, 8, left);
                    put64(b, 16, right);
                    if v5 {
                        put64(b, 24, off >> 9);
                        put_bytes(b, 40, &uuid);
                        put64(b, 56, ino);
                    }
                    let first_key = if li == 0 {
                        let recs = m.exts.get(start..start + len).unwrap_or(&[]);
                        for (i, e) in recs.iter().enumerate() {
                            put_bytes(b, hdr + i * 16, &encode_rec(e));
                        }
                        recs.first().map_or(0, |e| e.off)
                    } else {
                        let kids = below.get(start..start + len).unwrap_or(&[]);
                        for (i, (k, p)) in kids.iter().enumerate() {
                            put64(b, hdr + i * 8, *k);
                            put64(b, hdr + node_max * 8 + i * 8, *p);
                        }
                        kids.first().map_or(0, |k| k.0)
                    };
                    mine.push((first_key, fsb));
                }
                below = mine;
            }
            // The root in the inode.
            let top = levels.len() as u16;
            put16(&mut fork, 0, top);
            put16(&mut fork, 2, below.len() as u16);
            for (i, (k, p)) in below.iter().enumerate() {
                put64(&mut fork, 4 + i * 8, *k);
                put64(&mut fork, 4 + root_max * 8 + i * 8, *p);
            }
            fmt = FMT_BTREE;
        }
        // Old tree blocks not reused.
        for fsb in old {
            let off = self.sb.fsb_to_byte(fsb).unwrap_or(0);
            self.tx.forget(off, u64::from(g.bs));
            self.free_extent(fsb, 1, Owner::bmbt(ino, m.attr))?;
            iwrite::add_nblocks(self.inode(ino)?, -1)?;
        }
        m.old_bmbt = new_blocks;
        let raw = self.inode(ino)?;
        if m.attr {
            put_bytes(iwrite::afork_mut(g, raw), 0, &fork);
            super::ondisk::put8(raw, iwrite::DI_AFORMAT, fmt);
            iwrite::set_anextents(g, raw, n as u64)?;
        } else {
            put_bytes(dfork_mut(g, raw), 0, &fork);
            super::ondisk::put8(raw, iwrite::DI_FORMAT, fmt);
            iwrite::set_nextents(g, raw, n as u64)?;
        }
        m.dirty = false;
        Ok(())
    }

    /// Whether the extent at `block..+len` of an inode flagged reflink is shared.
    pub fn extent_shared(&mut self, raw_flags2: u64, block: u64, len: u64) -> FsResult<bool> {
        if raw_flags2 & iwrite::DIFLAG2_REFLINK == 0 {
            return Ok(false);
        }
        let (agno, agbno) = self.split_fsb(block)?;
        self.shared(agno, agbno, u32::try_from(len).unwrap_or(u32::MAX))
    }
}

/// The `di_flags2` of an inode's bytes.
pub fn flags2(raw: &[u8]) -> u64 {
    be64(raw, iwrite::DI_FLAGS2)
}
