//! The per-AG btrees, for writing: free space by block and by size (bnobt, cntbt),
//! inodes (inobt, finobt), reverse mappings (rmapbt, whose node keys carry a low and a
//! high key) and reference counts (refcountbt). One engine for all: blocks are decoded
//! into entry lists, changed, and encoded back; inserts split full blocks (a new root
//! when the root splits), deletes keep every non-root block at least half full by
//! borrowing from or merging with a sibling under the same parent (collapsing a root
//! left with one child), and keys are fixed up the path after each change.
//!
//! Every block is checked when first read (magic, level, record count, v5 CRC, owner,
//! location, UUID), child pointers must lie inside the AG and levels strictly fall, so
//! a hostile image cannot make a walk loop.

use super::ondisk::{be16, be32, be64, corrupt, put16, put32, uuid_at};
use super::trans::Kind;
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec::Vec;
use core::cmp::Ordering;

/// "No block" in short-format sibling pointers.
pub const NULL_AGBLOCK: u32 = u32::MAX;
/// Deepest AG btree any geometry allows.
pub const MAX_LEVELS: u32 = 9;
/// Short-format header sizes.
const HDR_V4: usize = 16;
const HDR_V5: usize = 56;
/// Records a range query may return at most.
const MAX_QUERY: usize = 1 << 16;

/// rmapbt offset field: flag bits and the offset itself.
pub const RMAP_ATTR_FORK: u64 = 1 << 63;
pub const RMAP_BMBT_BLOCK: u64 = 1 << 62;
pub const RMAP_UNWRITTEN: u64 = 1 << 61;
pub const RMAP_OFF_MASK: u64 = (1 << 54) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    Bno,
    Cnt,
    Ino,
    Fino,
    Rmap,
    Refc,
}

impl Tree {
    fn magic(self, v5: bool) -> u32 {
        match (self, v5) {
            (Tree::Bno, true) => 0x4142_3342,
            (Tree::Bno, false) => 0x4142_5442,
            (Tree::Cnt, true) => 0x4142_3343,
            (Tree::Cnt, false) => 0x4142_5443,
            (Tree::Ino, true) => 0x4941_4233,
            (Tree::Ino, false) => 0x4941_4254,
            (Tree::Fino, true) => 0x4649_4233,
            (Tree::Fino, false) => 0x4649_4254,
            (Tree::Rmap, _) => 0x524D_4233,
            (Tree::Refc, _) => 0x5233_4643,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tree::Bno => "free space (bno) btree",
            Tree::Cnt => "free space (cnt) btree",
            Tree::Ino => "inode btree",
            Tree::Fino => "free inode btree",
            Tree::Rmap => "reverse mapping btree",
            Tree::Refc => "reference count btree",
        }
    }

    pub fn rec_len(self) -> usize {
        match self {
            Tree::Bno | Tree::Cnt => 8,
            Tree::Ino | Tree::Fino => 16,
            Tree::Rmap => 24,
            Tree::Refc => 12,
        }
    }

    /// Bytes of one key (the low key; rmapbt nodes store a high key after it).
    fn key_len(self) -> usize {
        match self {
            Tree::Bno | Tree::Cnt => 8,
            Tree::Ino | Tree::Fino | Tree::Refc => 4,
            Tree::Rmap => 20,
        }
    }

    fn overlapping(self) -> bool {
        self == Tree::Rmap
    }

    /// Bytes of a node key slot.
    fn slot_len(self) -> usize {
        if self.overlapping() {
            2 * self.key_len()
        } else {
            self.key_len()
        }
    }

    /// Where the AG header keeps the root and the level count: (AGI?, root, levels).
    fn root_fields(self) -> (bool, usize, usize) {
        match self {
            Tree::Bno => (false, 0x10, 0x1C),
            Tree::Cnt => (false, 0x14, 0x20),
            Tree::Rmap => (false, 0x18, 0x24),
            Tree::Refc => (false, 0x58, 0x5C),
            Tree::Ino => (true, 0x14, 0x18),
            Tree::Fino => (true, 0x148, 0x14C),
        }
    }

    /// The (low) key of a record.
    pub fn rec_key(self, rec: &[u8]) -> Vec<u8> {
        match self {
            Tree::Bno | Tree::Cnt => rec.get(..8).unwrap_or(&[]).to_vec(),
            Tree::Ino | Tree::Fino | Tree::Refc => rec.get(..4).unwrap_or(&[]).to_vec(),
            Tree::Rmap => {
                let mut k = Vec::with_capacity(20);
                k.extend_from_slice(rec.get(..4).unwrap_or(&[0; 4]));
                k.extend_from_slice(rec.get(8..16).unwrap_or(&[0; 8]));
                let off = be64(rec, 16) & !RMAP_UNWRITTEN;
                k.extend_from_slice(&off.to_be_bytes());
                k
            }
        }
    }

    /// The high key of an rmapbt record: its last block and file offset.
    fn rec_high_key(self, rec: &[u8]) -> Vec<u8> {
        let start = be32(rec, 0);
        let len = be32(rec, 4);
        let owner = be64(rec, 8);
        let off = be64(rec, 16) & !RMAP_UNWRITTEN;
        let last = start.wrapping_add(len.saturating_sub(1));
        let inode_owner = (owner as i64) >= 0;
        let hi_off = if inode_owner && off & RMAP_BMBT_BLOCK == 0 {
            off.wrapping_add(u64::from(len.saturating_sub(1)))
        } else {
            off
        };
        let mut k = Vec::with_capacity(20);
        k.extend_from_slice(&last.to_be_bytes());
        k.extend_from_slice(&owner.to_be_bytes());
        k.extend_from_slice(&hi_off.to_be_bytes());
        k
    }

    /// Orders two (low) keys.
    pub fn cmp(self, a: &[u8], b: &[u8]) -> Ordering {
        match self {
            Tree::Bno | Tree::Ino | Tree::Fino | Tree::Refc => be32(a, 0).cmp(&be32(b, 0)),
            Tree::Cnt => (be32(a, 4), be32(a, 0)).cmp(&(be32(b, 4), be32(b, 0))),
            Tree::Rmap => (be32(a, 0), be64(a, 4), be64(a, 12) & RMAP_OFF_MASK).cmp(&(
                be32(b, 0),
                be64(b, 4),
                be64(b, 12) & RMAP_OFF_MASK,
            )),
        }
    }
}

/// One entry of a decoded block: a record (leaves) or a key slot and child (nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub bytes: Vec<u8>,
    pub ptr: u32,
}

/// A decoded block.
struct Block {
    level: u16,
    left: u32,
    right: u32,
    entries: Vec<Entry>,
}

/// A position: the blocks from the root down and the entry index in each.
pub type Path = Vec<(u32, usize)>;

/// One AG's btree of one kind.
#[derive(Clone, Copy, Debug)]
pub struct Bt {
    pub tree: Tree,
    pub agno: u32,
}

fn hdr_len(c: &Ctx) -> usize {
    if c.g.v5 { HDR_V5 } else { HDR_V4 }
}

impl Bt {
    pub fn new(tree: Tree, agno: u32) -> Bt {
        Bt { tree, agno }
    }

    fn err(&self, what: impl core::fmt::Display) -> wire::Error {
        corrupt(format_args!(
            "AG {} {}: {what}",
            self.agno,
            self.tree.name()
        ))
    }

    pub fn maxrecs(&self, c: &Ctx, level: u16) -> usize {
        let room = c.g.bs as usize - hdr_len(c);
        if level == 0 {
            room / self.tree.rec_len()
        } else {
            room / (self.tree.slot_len() + 4)
        }
    }

    fn minrecs(&self, c: &Ctx, level: u16) -> usize {
        self.maxrecs(c, level) / 2
    }

    /// The root block and the number of levels.
    pub fn root(&self, c: &mut Ctx) -> FsResult<(u32, u32)> {
        let (agi, rf, lf) = self.tree.root_fields();
        let h = if agi {
            c.agi(self.agno)?
        } else {
            c.agf(self.agno)?
        };
        let (root, levels) = (be32(h, rf), be32(h, lf));
        if levels == 0 || levels > MAX_LEVELS || root == 0 || root >= c.ag_len(self.agno) {
            return Err(self.err("bad root"));
        }
        Ok((root, levels))
    }

    fn set_root(&self, c: &mut Ctx, root: u32, levels: u32) -> FsResult<()> {
        let (agi, rf, lf) = self.tree.root_fields();
        let h = if agi {
            c.agi(self.agno)?
        } else {
            c.agf(self.agno)?
        };
        put32(h, rf, root);
        put32(h, lf, levels);
        Ok(())
    }

    fn check_ptr(&self, c: &Ctx, p: u32) -> FsResult<u32> {
        if p == 0 || p >= c.ag_len(self.agno) {
            return Err(self.err(format_args!("pointer {p} outside the AG")));
        }
        Ok(p)
    }

    /// Reads block `agbno`, expected at `level` (checked when first read).
    fn read(&self, c: &mut Ctx, agbno: u32, level: u16) -> FsResult<Block> {
        self.check_ptr(c, agbno)?;
        let off = c.ag_byte(self.agno, agbno);
        let bs = c.g.bs as usize;
        let v5 = c.g.v5;
        let magic = self.tree.magic(v5);
        let uuid = c.g.uuid;
        let agno = self.agno;
        let daddr = off >> 9;
        let me = *self;
        let b = c.tx.get_checked(c.io, off, bs, Kind::Meta, |b, trusted| {
            if be32(b, 0) != magic {
                return Err(me.err(format_args!("block {agbno}: bad magic")));
            }
            if v5 {
                if !trusted && !super::crc::verify(b, 52) {
                    return Err(me.err(format_args!("block {agbno}: bad CRC")));
                }
                if be64(b, 16) != daddr || uuid_at(b, 32) != uuid || be32(b, 48) != agno {
                    return Err(
                        me.err(format_args!("block {agbno}: wrong location, UUID or owner"))
                    );
                }
            }
            Ok(())
        })?;
        if be32(b, 0) != magic {
            return Err(self.err(format_args!("block {agbno}: bad magic")));
        }
        let got = be16(b, 4);
        if got != level {
            return Err(self.err(format_args!("block {agbno}: level {got}, expected {level}")));
        }
        let n = usize::from(be16(b, 6));
        let hdr = hdr_len(c);
        let max = self.maxrecs(c, level);
        if n > max {
            return Err(self.err(format_args!("block {agbno}: {n} records")));
        }
        let b = c.tx.get(c.io, off, bs, Kind::Meta)?;
        let mut entries = Vec::with_capacity(n + 1);
        if level == 0 {
            let rl = self.tree.rec_len();
            for i in 0..n {
                let at = hdr + i * rl;
                entries.push(Entry {
                    bytes: b.get(at..at + rl).unwrap_or(&[]).to_vec(),
                    ptr: 0,
                });
            }
        } else {
            let sl = self.tree.slot_len();
            let ptrs = hdr + max * sl;
            for i in 0..n {
                let at = hdr + i * sl;
                entries.push(Entry {
                    bytes: b.get(at..at + sl).unwrap_or(&[]).to_vec(),
                    ptr: be32(b, ptrs + 4 * i),
                });
            }
        }
        let left = be32(b, 8);
        let right = be32(b, 12);
        for e in &entries {
            if level > 0 {
                self.check_ptr(c, e.ptr)?;
            }
        }
        Ok(Block {
            level,
            left,
            right,
            entries,
        })
    }

    /// Writes `blk` back to block `agbno` (entries, count, siblings).
    fn write(&self, c: &mut Ctx, agbno: u32, blk: &Block) -> FsResult<()> {
        let off = c.ag_byte(self.agno, agbno);
        let bs = c.g.bs as usize;
        let hdr = hdr_len(c);
        let max = self.maxrecs(c, blk.level);
        if blk.entries.len() > max {
            return Err(self.err("block overfilled (internal)"));
        }
        let b = c.tx.get(c.io, off, bs, Kind::Meta)?;
        put16(b, 4, blk.level);
        put16(b, 6, blk.entries.len() as u16);
        put32(b, 8, blk.left);
        put32(b, 12, blk.right);
        if let Some(area) = b.get_mut(hdr..) {
            area.fill(0);
        }
        if blk.level == 0 {
            let rl = self.tree.rec_len();
            for (i, e) in blk.entries.iter().enumerate() {
                super::ondisk::put_bytes(b, hdr + i * rl, &e.bytes);
            }
        } else {
            let sl = self.tree.slot_len();
            let ptrs = hdr + max * sl;
            for (i, e) in blk.entries.iter().enumerate() {
                super::ondisk::put_bytes(b, hdr + i * sl, &e.bytes);
                put32(b, ptrs + 4 * i, e.ptr);
            }
        }
        Ok(())
    }

    /// Formats a new, empty block at `agbno`.
    fn init_block(&self, c: &mut Ctx, agbno: u32, level: u16) -> FsResult<()> {
        let off = c.ag_byte(self.agno, agbno);
        let bs = c.g.bs as usize;
        let v5 = c.g.v5;
        let uuid = c.g.uuid;
        let agno = self.agno;
        let b = c.tx.new_buf(off, bs, Kind::Meta)?;
        put32(b, 0, self.tree.magic(v5));
        put16(b, 4, level);
        put32(b, 8, NULL_AGBLOCK);
        put32(b, 12, NULL_AGBLOCK);
        if v5 {
            super::ondisk::put64(b, 16, off >> 9);
            super::ondisk::put_bytes(b, 32, &uuid);
            put32(b, 48, agno);
        }
        Ok(())
    }

    /// The key slot describing block `blk` in its parent.
    fn block_key(&self, blk: &Block) -> Vec<u8> {
        let t = self.tree;
        let Some(first) = blk.entries.first() else {
            return alloc::vec![0u8; t.slot_len()];
        };
        let mut k = if blk.level == 0 {
            t.rec_key(&first.bytes)
        } else {
            first.bytes.get(..t.key_len()).unwrap_or(&[]).to_vec()
        };
        if t.overlapping() {
            let mut hi: Option<Vec<u8>> = None;
            for e in &blk.entries {
                let h = if blk.level == 0 {
                    t.rec_high_key(&e.bytes)
                } else {
                    e.bytes.get(t.key_len()..).unwrap_or(&[]).to_vec()
                };
                if hi
                    .as_ref()
                    .is_none_or(|m| cmp_high(&h, m) == Ordering::Greater)
                {
                    hi = Some(h);
                }
            }
            k.extend_from_slice(&hi.unwrap_or_default());
        }
        k
    }

    fn entry_key<'e>(&self, level: u16, e: &'e Entry) -> alloc::borrow::Cow<'e, [u8]> {
        if level == 0 {
            alloc::borrow::Cow::Owned(self.tree.rec_key(&e.bytes))
        } else {
            alloc::borrow::Cow::Borrowed(e.bytes.get(..self.tree.key_len()).unwrap_or(&[]))
        }
    }

    /// Descends to the leaf where `key` belongs: the path, with the leaf index at the
    /// first record whose key is not below `key`.
    pub fn descend(&self, c: &mut Ctx, key: &[u8]) -> FsResult<Path> {
        let (root, levels) = self.root(c)?;
        let mut path = Vec::with_capacity(levels as usize);
        let mut blk = root;
        for level in (0..levels as u16).rev() {
            let b = self.read(c, blk, level)?;
            if level > 0 {
                if b.entries.is_empty() {
                    return Err(self.err(format_args!("node {blk} is empty")));
                }
                let i = b
                    .entries
                    .partition_point(|e| {
                        self.tree.cmp(&self.entry_key(level, e), key) != Ordering::Greater
                    })
                    .saturating_sub(1);
                path.push((blk, i));
                blk = b.entries.get(i).map(|e| e.ptr).unwrap_or(0);
            } else {
                let i = b.entries.partition_point(|e| {
                    self.tree.cmp(&self.entry_key(0, e), key) == Ordering::Less
                });
                path.push((blk, i));
            }
        }
        Ok(path)
    }

    /// The record at the path's leaf position, if the index is inside the leaf.
    pub fn rec_at(&self, c: &mut Ctx, path: &Path) -> FsResult<Option<Vec<u8>>> {
        let Some(&(blk, i)) = path.last() else {
            return Ok(None);
        };
        let b = self.read(c, blk, 0)?;
        Ok(b.entries.get(i).map(|e| e.bytes.clone()))
    }

    /// Moves the path to the next record (`forward`) or the previous one; false at
    /// either end of the tree.
    pub fn step(&self, c: &mut Ctx, path: &mut Path, forward: bool) -> FsResult<bool> {
        let depth = path.len();
        if depth == 0 {
            return Ok(false);
        }
        // Within the leaf first.
        let Some(&(leaf, i)) = path.last() else {
            return Ok(false);
        };
        let n = self.read(c, leaf, 0)?.entries.len();
        if forward && i + 1 < n {
            if let Some(l) = path.last_mut() {
                l.1 = i + 1;
            }
            return Ok(true);
        }
        if !forward && i > 0 && i <= n {
            if let Some(l) = path.last_mut() {
                l.1 = i - 1;
            }
            return Ok(true);
        }
        // Up to the first node with a neighbour on that side, then down its edge.
        let mut d = depth - 1;
        loop {
            if d == 0 {
                return Ok(false);
            }
            d -= 1;
            let Some(&(blk, i)) = path.get(d) else {
                return Ok(false);
            };
            let level = (depth - 1 - d) as u16;
            let b = self.read(c, blk, level)?;
            let ni = if forward {
                (i + 1 < b.entries.len()).then_some(i + 1)
            } else {
                i.checked_sub(1)
            };
            if let Some(ni) = ni {
                if let Some(p) = path.get_mut(d) {
                    p.1 = ni;
                }
                let mut child = b.entries.get(ni).map(|e| e.ptr).unwrap_or(0);
                for (k, slot) in path.iter_mut().enumerate().skip(d + 1) {
                    let lvl = (depth - 1 - k) as u16;
                    let cb = self.read(c, child, lvl)?;
                    if cb.entries.is_empty() {
                        return Err(self.err(format_args!("block {child} is empty")));
                    }
                    let idx = if forward { 0 } else { cb.entries.len() - 1 };
                    *slot = (child, idx);
                    if lvl > 0 {
                        child = cb.entries.get(idx).map(|e| e.ptr).unwrap_or(0);
                    }
                }
                return Ok(true);
            }
        }
    }

    /// The last record whose key is at or below `key`.
    pub fn find_le(&self, c: &mut Ctx, key: &[u8]) -> FsResult<Option<(Path, Vec<u8>)>> {
        let mut path = self.descend(c, key)?;
        if let Some(r) = self.rec_at(c, &path)?
            && self.tree.cmp(&self.tree.rec_key(&r), key) == Ordering::Equal
        {
            return Ok(Some((path, r)));
        }
        // The leaf index is the insertion point: the record before it.
        let (leaf, i) = *path.last().unwrap_or(&(0, 0));
        if i > 0 {
            if let Some(l) = path.last_mut() {
                *l = (leaf, i - 1);
            }
        } else if !self.step(c, &mut path, false)? {
            return Ok(None);
        }
        Ok(self.rec_at(c, &path)?.map(|r| (path, r)))
    }

    /// The first record whose key is at or above `key`.
    pub fn find_ge(&self, c: &mut Ctx, key: &[u8]) -> FsResult<Option<(Path, Vec<u8>)>> {
        let mut path = self.descend(c, key)?;
        if let Some(r) = self.rec_at(c, &path)? {
            return Ok(Some((path, r)));
        }
        // Past the end of the leaf: the first record of the next one.
        let (leaf, _) = *path.last().unwrap_or(&(0, 0));
        let n = self.read(c, leaf, 0)?.entries.len();
        if n > 0 {
            if let Some(l) = path.last_mut() {
                *l = (leaf, n - 1);
            }
            if !self.step(c, &mut path, true)? {
                return Ok(None);
            }
        } else {
            return Ok(None);
        }
        Ok(self.rec_at(c, &path)?.map(|r| (path, r)))
    }

    /// The record whose key equals `key`.
    pub fn find_eq(&self, c: &mut Ctx, key: &[u8]) -> FsResult<Option<(Path, Vec<u8>)>> {
        let path = self.descend(c, key)?;
        match self.rec_at(c, &path)? {
            Some(r) if self.tree.cmp(&self.tree.rec_key(&r), key) == Ordering::Equal => {
                Ok(Some((path, r)))
            }
            _ => Ok(None),
        }
    }

    /// The last record of the tree.
    pub fn last(&self, c: &mut Ctx) -> FsResult<Option<Vec<u8>>> {
        let (root, levels) = self.root(c)?;
        let mut blk = root;
        for level in (0..levels as u16).rev() {
            let b = self.read(c, blk, level)?;
            let Some(e) = b.entries.last() else {
                return Ok(None);
            };
            if level == 0 {
                return Ok(Some(e.bytes.clone()));
            }
            blk = e.ptr;
        }
        Ok(None)
    }

    /// Every record whose block range meets `lo..=hi` (rmapbt and refcountbt use the
    /// record's start and length; rmapbt nodes their high keys).
    pub fn query_blocks(&self, c: &mut Ctx, lo: u32, hi: u32) -> FsResult<Vec<Vec<u8>>> {
        let (root, levels) = self.root(c)?;
        let mut out = Vec::new();
        let mut stack: Vec<(u32, u16, Option<u32>)> =
            alloc::vec![(root, (levels - 1) as u16, None)];
        while let Some((blk, level, _)) = stack.pop() {
            let b = self.read(c, blk, level)?;
            if level == 0 {
                for e in &b.entries {
                    let start = be32(&e.bytes, 0) & 0x7FFF_FFFF;
                    let len = be32(&e.bytes, 4);
                    let last = start.saturating_add(len.saturating_sub(1));
                    if start <= hi && last >= lo {
                        if out.len() >= MAX_QUERY {
                            return Err(self.err("too many records in one query"));
                        }
                        out.push(e.bytes.clone());
                    }
                }
                continue;
            }
            let n = b.entries.len();
            for (i, e) in b.entries.iter().enumerate().rev() {
                let low = be32(&e.bytes, 0) & 0x7FFF_FFFF;
                if low > hi {
                    continue;
                }
                let reaches = if self.tree.overlapping() {
                    be32(&e.bytes, self.tree.key_len()) >= lo
                } else {
                    // The next sibling's low key bounds this child; a record starting
                    // before `lo` may still reach it, so keep the child just before.
                    let next_low = b
                        .entries
                        .get(i + 1)
                        .map(|n| be32(&n.bytes, 0) & 0x7FFF_FFFF);
                    next_low.is_none_or(|nl| nl > lo) || i + 1 == n
                };
                if reaches {
                    stack.push((e.ptr, level - 1, None));
                }
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------
    // Changes

    /// Inserts `rec`.
    pub fn insert(&self, c: &mut Ctx, rec: &[u8]) -> FsResult<()> {
        let key = self.tree.rec_key(rec);
        let path = self.descend(c, &key)?;
        if let Some(r) = self.rec_at(c, &path)?
            && self.tree.cmp(&self.tree.rec_key(&r), &key) == Ordering::Equal
        {
            return Err(self.err("inserting a record that exists"));
        }
        let depth = path.len() - 1;
        self.insert_at(
            c,
            &path,
            depth,
            Entry {
                bytes: rec.to_vec(),
                ptr: 0,
            },
        )
    }

    /// Inserts `e` at the path's index at `depth` (leaf: `path.len()-1`).
    fn insert_at(&self, c: &mut Ctx, path: &Path, depth: usize, e: Entry) -> FsResult<()> {
        let (blk, idx) = *path.get(depth).ok_or_else(|| self.err("bad path"))?;
        let level = (path.len() - 1 - depth) as u16;
        let mut b = self.read(c, blk, level)?;
        let idx = idx.min(b.entries.len());
        b.entries.insert(idx, e);
        if b.entries.len() <= self.maxrecs(c, level) {
            self.write(c, blk, &b)?;
            return self.fix_keys(c, path, depth, &b);
        }
        // Split: the upper half moves to a new right sibling.
        let nb = c.alloc_btree_block(self.tree, self.agno)?;
        self.init_block(c, nb, level)?;
        let mid = b.entries.len().div_ceil(2);
        let right_entries = b.entries.split_off(mid);
        let right = Block {
            level,
            left: blk,
            right: b.right,
            entries: right_entries,
        };
        if b.right != NULL_AGBLOCK {
            let rr = b.right;
            let mut rb = self.read(c, rr, level)?;
            rb.left = nb;
            self.write(c, rr, &rb)?;
        }
        b.right = nb;
        self.write(c, blk, &b)?;
        self.write(c, nb, &right)?;
        let lkey = self.block_key(&b);
        let rkey = self.block_key(&right);
        if depth == 0 {
            // A new root above the two halves.
            let root = c.alloc_btree_block(self.tree, self.agno)?;
            self.init_block(c, root, level + 1)?;
            let rb = Block {
                level: level + 1,
                left: NULL_AGBLOCK,
                right: NULL_AGBLOCK,
                entries: alloc::vec![
                    Entry {
                        bytes: lkey,
                        ptr: blk
                    },
                    Entry {
                        bytes: rkey,
                        ptr: nb
                    }
                ],
            };
            self.write(c, root, &rb)?;
            let (_, levels) = self.root(c)?;
            if levels >= MAX_LEVELS {
                return Err(self.err("too many levels"));
            }
            return self.set_root(c, root, levels + 1);
        }
        // The parent: refresh the left half's key, insert the right half after it.
        let (pblk, pidx) = *path.get(depth - 1).ok_or_else(|| self.err("bad path"))?;
        let plevel = level + 1;
        let mut pb = self.read(c, pblk, plevel)?;
        if let Some(pe) = pb.entries.get_mut(pidx) {
            pe.bytes = lkey;
        }
        self.write(c, pblk, &pb)?;
        // The parent's position (the path keeps its length: levels come from it).
        let mut ppath = path.clone();
        if let Some(p) = ppath.get_mut(depth - 1) {
            p.1 = pidx + 1;
        }
        self.insert_at(
            c,
            &ppath,
            depth - 1,
            Entry {
                bytes: rkey,
                ptr: nb,
            },
        )
    }

    /// After block `path[depth]` changed to `b`, brings the keys above it up to date.
    fn fix_keys(&self, c: &mut Ctx, path: &Path, depth: usize, b: &Block) -> FsResult<()> {
        let mut key = self.block_key(b);
        let mut d = depth;
        while d > 0 {
            let (pblk, pidx) = *path.get(d - 1).ok_or_else(|| self.err("bad path"))?;
            let plevel = (path.len() - d) as u16;
            let mut pb = self.read(c, pblk, plevel)?;
            match pb.entries.get_mut(pidx) {
                Some(pe) if pe.bytes != key => pe.bytes = key,
                _ => return Ok(()),
            }
            self.write(c, pblk, &pb)?;
            key = self.block_key(&pb);
            d -= 1;
        }
        Ok(())
    }

    /// Replaces the record at `path` with `rec`, which must keep its place in the
    /// order (otherwise it is deleted and inserted).
    pub fn update(&self, c: &mut Ctx, path: &Path, rec: &[u8]) -> FsResult<()> {
        let depth = path.len() - 1;
        let (blk, idx) = *path.last().ok_or_else(|| self.err("bad path"))?;
        let mut b = self.read(c, blk, 0)?;
        let key = self.tree.rec_key(rec);
        let t = self.tree;
        let fits_before = idx
            .checked_sub(1)
            .and_then(|p| b.entries.get(p))
            .is_none_or(|p| t.cmp(&t.rec_key(&p.bytes), &key) == Ordering::Less);
        let fits_after = b
            .entries
            .get(idx + 1)
            .is_none_or(|n| t.cmp(&t.rec_key(&n.bytes), &key) == Ordering::Greater);
        let first_or_last = idx == 0 || idx + 1 >= b.entries.len();
        if b.entries.get(idx).is_none() {
            return Err(self.err("updating a missing record"));
        }
        let in_order = fits_before
            && fits_after
            && (!first_or_last || self.neighbours_allow(c, path, &key)?);
        if in_order {
            if let Some(e) = b.entries.get_mut(idx) {
                e.bytes = rec.to_vec();
            }
            self.write(c, blk, &b)?;
            return self.fix_keys(c, path, depth, &b);
        }
        self.delete(c, path)?;
        self.insert(c, rec)
    }

    /// Whether a new key at a leaf's edge still orders against the neighbouring leaves
    /// (checked through the tree: the key must fall where the path is).
    fn neighbours_allow(&self, c: &mut Ctx, path: &Path, key: &[u8]) -> FsResult<bool> {
        let mut p = path.clone();
        let t = self.tree;
        if self.step(c, &mut p, false)?
            && let Some(r) = self.rec_at(c, &p)?
            && p != *path
            && t.cmp(&t.rec_key(&r), key) != Ordering::Less
        {
            return Ok(false);
        }
        let mut p = path.clone();
        if self.step(c, &mut p, true)?
            && let Some(r) = self.rec_at(c, &p)?
            && p != *path
            && t.cmp(&t.rec_key(&r), key) != Ordering::Greater
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// Deletes the record at `path`.
    pub fn delete(&self, c: &mut Ctx, path: &Path) -> FsResult<()> {
        let depth = path.len() - 1;
        self.delete_at(c, path, depth)
    }

    /// Deletes the entry at `path[depth]`, rebalancing below-minimum blocks.
    fn delete_at(&self, c: &mut Ctx, path: &Path, depth: usize) -> FsResult<()> {
        let (blk, idx) = *path.get(depth).ok_or_else(|| self.err("bad path"))?;
        let level = (path.len() - 1 - depth) as u16;
        let mut b = self.read(c, blk, level)?;
        if idx >= b.entries.len() {
            return Err(self.err("deleting a missing entry"));
        }
        b.entries.remove(idx);
        if depth == 0 {
            // The root: a node left with one child hands the root to it.
            if level > 0 && b.entries.len() == 1 {
                let child = b.entries.first().map(|e| e.ptr).unwrap_or(0);
                let (_, levels) = self.root(c)?;
                self.set_root(c, child, levels - 1)?;
                return c.free_btree_block(self.tree, self.agno, blk);
            }
            return self.write(c, blk, &b);
        }
        if b.entries.len() >= self.minrecs(c, level) {
            self.write(c, blk, &b)?;
            return self.fix_keys(c, path, depth, &b);
        }
        let (pblk, pidx) = *path.get(depth - 1).ok_or_else(|| self.err("bad path"))?;
        let plevel = level + 1;
        let mut pb = self.read(c, pblk, plevel)?;
        if pb.entries.len() < 2 {
            // Only under a one-child root (never left so): accept the short block.
            self.write(c, blk, &b)?;
            return self.fix_keys(c, path, depth, &b);
        }
        let min = self.minrecs(c, level);
        let max = self.maxrecs(c, level);
        let (li, ri) = if pidx > 0 {
            (pidx - 1, pidx)
        } else {
            (pidx, pidx + 1)
        };
        let lblk = pb.entries.get(li).map(|e| e.ptr).unwrap_or(0);
        let rblk = pb.entries.get(ri).map(|e| e.ptr).unwrap_or(0);
        let (mut lb, mut rb) = if pidx > 0 {
            (self.read(c, lblk, level)?, b)
        } else {
            let rb = self.read(c, rblk, level)?;
            (b, rb)
        };
        if lb.entries.len() + rb.entries.len() > max
            || (pidx > 0 && lb.entries.len() > min)
            || (pidx == 0 && rb.entries.len() > min)
        {
            // Borrow one entry from the fuller sibling.
            if pidx > 0 {
                let e = lb.entries.pop().ok_or_else(|| self.err("empty sibling"))?;
                rb.entries.insert(0, e);
            } else {
                if rb.entries.is_empty() {
                    return Err(self.err("empty sibling"));
                }
                let e = rb.entries.remove(0);
                lb.entries.push(e);
            }
            self.write(c, lblk, &lb)?;
            self.write(c, rblk, &rb)?;
            if let Some(pe) = pb.entries.get_mut(li) {
                pe.bytes = self.block_key(&lb);
            }
            if let Some(pe) = pb.entries.get_mut(ri) {
                pe.bytes = self.block_key(&rb);
            }
            self.write(c, pblk, &pb)?;
            return self.fix_keys(c, path, depth - 1, &pb);
        }
        // Merge the right block into the left one.
        let rright = rb.right;
        lb.entries.append(&mut rb.entries);
        lb.right = rright;
        if rright != NULL_AGBLOCK {
            let mut rr = self.read(c, rright, level)?;
            rr.left = lblk;
            self.write(c, rright, &rr)?;
        }
        self.write(c, lblk, &lb)?;
        if let Some(pe) = pb.entries.get_mut(li) {
            pe.bytes = self.block_key(&lb);
        }
        self.write(c, pblk, &pb)?;
        c.free_btree_block(self.tree, self.agno, rblk)?;
        let mut ppath = path.clone();
        if let Some(p) = ppath.get_mut(depth - 1) {
            p.1 = ri;
        }
        self.delete_at(c, &ppath, depth - 1)
    }
}

/// Orders two rmapbt high keys.
fn cmp_high(a: &[u8], b: &[u8]) -> Ordering {
    (be32(a, 0), be64(a, 4), be64(a, 12) & RMAP_OFF_MASK).cmp(&(
        be32(b, 0),
        be64(b, 4),
        be64(b, 12) & RMAP_OFF_MASK,
    ))
}
