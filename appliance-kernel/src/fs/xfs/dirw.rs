//! Directories, for writing, in every form:
//!
//! - shortform (in the inode) and single-block directories are rewritten whole from
//!   their entry list on each change (they are small);
//! - leaf directories (data blocks plus one `LEAF1` hash block with the data blocks'
//!   best free sizes at its end) and node directories (data blocks, a hash btree of
//!   `LEAFN` blocks under `DA_NODE` blocks, and free-index blocks) change in place:
//!   entries go into the first data block with room (found through the best-free
//!   tables), hash entries into their leaf; a node directory's hash index is laid out
//!   afresh when a leaf fills up or empties.
//!
//! Growing converts shortform → block → leaf (the block becomes data block 0) → node
//! (free-index blocks from the leaf's table); shrinking converts node → leaf (when one
//! leaf remains and fits), leaf → block and block → shortform (when everything fits).
//! Data blocks left empty are freed (block 0 never is: it holds `.` and `..`).

use super::bmapw::FMap;
use super::iwrite;
use super::ondisk::dir::{
    self as odir, DA_CRC_OFF, DATA_CRC_OFF, FREE_OFFSET, LEAF_OFFSET, MAX_DA_DEPTH,
};
use super::ondisk::inode::{FMT_EXTENTS, FMT_LOCAL};
use super::ondisk::{be16, be32, be64, corrupt, put_bytes, put8, put16, put32, put64, u8_at};
use super::space::{Owner, Want};
use super::trans::Kind;
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

const NULLDATAOFF: u16 = 0xFFFF;
/// Leaf blocks one lookup walks along at most (entries sharing a hash).
const MAX_LEAF_HOPS: usize = 64;
/// Hash entries one node directory may have for skiff to change it.
const MAX_INDEX: usize = 1 << 21;

// Directory file types.
pub const FT_REG: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_LNK: u8 = 7;

/// An entry: name, inode, file type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DEnt {
    pub name: Vec<u8>,
    pub ino: u64,
    pub ftype: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Short,
    Block,
    Leaf,
    Node,
}

/// A directory being changed: its inode and block map.
struct Dir {
    ino: u64,
    map: FMap,
}

fn toolarge(msg: &str) -> Error {
    Error::new(ErrorKind::NoSpace, alloc::format!("xfs: {msg}"))
}

impl Ctx<'_> {
    // ---------------------------------------------------------------------------
    // Geometry

    fn dhdr(&self) -> usize {
        odir::data_hdr_len(self.sb)
    }

    fn dahdr(&self) -> usize {
        odir::da_hdr_len(self.sb)
    }

    fn entsize(&self, namelen: usize) -> usize {
        odir::data_entry_len(self.sb, namelen)
    }

    /// First entry offset in a data block (after `.` and `..`).
    fn first_off(&self) -> usize {
        self.dhdr() + 2 * self.entsize(1).max(self.entsize(2))
    }

    fn leaf_blk(&self) -> u64 {
        LEAF_OFFSET >> self.g.blog
    }

    fn free_blk(&self) -> u64 {
        FREE_OFFSET >> self.g.blog
    }

    fn fsbs(&self) -> u64 {
        u64::from(self.g.dir_fsbs)
    }

    /// Data blocks the data space can hold.
    fn max_db(&self) -> u64 {
        LEAF_OFFSET / u64::from(self.g.dirblk)
    }

    fn hash(&self, name: &[u8]) -> u32 {
        if self.g.ascii_ci {
            odir::hashname_ci(name)
        } else {
            odir::hashname(name)
        }
    }

    fn same(&self, a: &[u8], b: &[u8]) -> bool {
        a == b || (self.g.ascii_ci && a.eq_ignore_ascii_case(b))
    }

    fn addr(&self, db: u64, off: usize) -> u32 {
        ((db * u64::from(self.g.dirblk) + off as u64) >> 3) as u32
    }

    /// (data block, offset) of a hash entry address.
    fn unaddr(&self, addr: u32) -> (u64, usize) {
        let byte = u64::from(addr) * 8;
        let b = u64::from(self.g.dirblk);
        (byte / b, (byte % b) as usize)
    }

    // ---------------------------------------------------------------------------
    // Directory blocks

    fn load_dir(&mut self, ino: u64) -> FsResult<Dir> {
        let map = self.load_fmap(ino, false)?;
        Ok(Dir { ino, map })
    }

    fn form(&mut self, d: &Dir) -> FsResult<Form> {
        let raw = self.inode(d.ino)?;
        if iwrite::format(raw) == FMT_LOCAL {
            return Ok(Form::Short);
        }
        if d.map.find(self.leaf_blk()).is_none() {
            if d.map.end() != self.fsbs() {
                return Err(corrupt(format_args!(
                    "directory {}: no hash index and not a single block",
                    d.ino
                )));
            }
            return Ok(Form::Block);
        }
        let lb = self.leaf_blk();
        let b = self.dir_buf(d, lb)?;
        let m = be16(b, 8);
        Ok(match m {
            0x3DF1 | 0xD2F1 => Form::Leaf,
            _ => Form::Node,
        })
    }

    /// The byte offset of directory block `dablk` (mapped in one extent).
    fn dir_off(&self, d: &Dir, dablk: u64) -> FsResult<u64> {
        let e = d.map.find(dablk).ok_or_else(|| {
            corrupt(format_args!(
                "directory {}: block {dablk} is not mapped",
                d.ino
            ))
        })?;
        if e.end() < dablk + self.fsbs() || e.unwritten {
            return Err(Error::new(
                ErrorKind::Unsupported,
                alloc::format!(
                    "xfs: directory {}: changing a directory block split across extents",
                    d.ino
                ),
            ));
        }
        self.sb
            .fsb_to_byte(e.block + (dablk - e.off))
            .ok_or_else(|| corrupt(format_args!("directory {}: bad block map", d.ino)))
    }

    /// Directory block `dablk`, checked when first read.
    fn dir_buf(&mut self, d: &Dir, dablk: u64) -> FsResult<&mut Vec<u8>> {
        let off = self.dir_off(d, dablk)?;
        let len = self.g.dirblk as usize;
        let sb = self.sb;
        let ino = d.ino;
        let v5 = self.g.v5;
        let uuid = self.g.uuid;
        self.tx
            .get_checked(self.io, off, len, Kind::Meta, |b, trusted| {
                let daddr = off >> 9;
                if trusted {
                    // Checked whole before (or written by skiff): only its kind and owner.
                    let data_like = matches!(
                        be32(b, 0),
                        0x5844_4233
                            | 0x5844_3242
                            | 0x5844_4433
                            | 0x5844_3244
                            | 0x5844_4633
                            | 0x5844_3246
                    );
                    let da_like = matches!(
                        be16(b, 8),
                        0x3DF1 | 0xD2F1 | 0x3DFF | 0xD2FF | 0x3EBE | 0xFEBE
                    );
                    let owner_ok =
                        !v5 || (data_like && be64(b, 40) == ino) || (da_like && be64(b, 48) == ino);
                    if !(data_like || da_like) || !owner_ok {
                        return Err(corrupt(format_args!(
                            "directory {ino}: a block of another kind"
                        )));
                    }
                    return Ok(());
                }
                match be32(b, 0) {
                    0x5844_4233 | 0x5844_3242 => {
                        odir::parse_data_block(sb, ino, b, daddr, true).map(|_| ())
                    }
                    0x5844_4433 | 0x5844_3244 => {
                        odir::parse_data_block(sb, ino, b, daddr, false).map(|_| ())
                    }
                    0x5844_4633 | 0x5844_3246 => {
                        if v5
                            && (!super::crc::verify(b, DATA_CRC_OFF)
                                || be64(b, 8) != daddr
                                || super::ondisk::uuid_at(b, 24) != uuid
                                || be64(b, 40) != ino)
                        {
                            return Err(corrupt(format_args!(
                                "directory {ino}: free index block: bad CRC or header"
                            )));
                        }
                        Ok(())
                    }
                    _ => odir::parse_da_block(sb, ino, b, daddr).map(|_| ()),
                }
            })
    }

    /// Maps and formats nothing yet: a new directory block at `dablk` (zeroed).
    fn dir_new_buf(&mut self, d: &mut Dir, dablk: u64) -> FsResult<&mut Vec<u8>> {
        let n = self.fsbs();
        let agno = (d.ino >> self.sb.agino_log()) as u32;
        let near = d
            .map
            .exts
            .iter()
            .rev()
            .find(|e| e.off < self.leaf_blk())
            .map(|e| e.block + e.len);
        let near_ag = near.and_then(|b| self.split_fsb(b).ok());
        let got = self.alloc(
            Want {
                agno: near_ag.map_or(agno, |x| x.0),
                near: near_ag.map(|x| x.1),
                minlen: n as u32,
                maxlen: n as u32,
                align: 1,
                data: false,
                same_ag: false,
            },
            Owner::data(d.ino, dablk, false),
        )?;
        let Some((fsb, len)) = got else {
            return Err(toolarge("no space for a directory block"));
        };
        if u64::from(len) != n {
            return Err(corrupt("directory block allocation came back short"));
        }
        d.map.map(dablk, fsb, n, false)?;
        iwrite::add_nblocks(self.inode(d.ino)?, n as i64)?;
        let off = self
            .sb
            .fsb_to_byte(fsb)
            .ok_or_else(|| corrupt("directory block outside the filesystem"))?;
        let len = self.g.dirblk as usize;
        self.tx.new_buf(off, len, Kind::Meta)
    }

    /// Unmaps and frees directory block `dablk`.
    fn dir_free_block(&mut self, d: &mut Dir, dablk: u64) -> FsResult<()> {
        let n = self.fsbs();
        for p in d.map.unmap(dablk, n) {
            let off = self.sb.fsb_to_byte(p.block).unwrap_or(0);
            self.tx.forget(off, p.len << self.g.blog);
            self.free_extent(p.block, p.len as u32, Owner::data(d.ino, p.off, false))?;
            iwrite::add_nblocks(self.inode(d.ino)?, -(p.len as i64))?;
        }
        Ok(())
    }

    /// Writes the v5 self-describing header of a new data/block/free block.
    fn stamp_data_hdr(&self, b: &mut [u8], magic: u32, daddr: u64, owner: u64) {
        put32(b, 0, magic);
        if self.g.v5 {
            put64(b, 8, daddr);
            put_bytes(b, 24, &self.g.uuid);
            put64(b, 40, owner);
        }
    }

    /// Writes the header of a new leaf/node block.
    fn stamp_da_hdr(&self, b: &mut [u8], magic: u16, daddr: u64, owner: u64) {
        put16(b, 8, magic);
        if self.g.v5 {
            put64(b, 16, daddr);
            put_bytes(b, 32, &self.g.uuid);
            put64(b, 48, owner);
        }
    }

    /// Stores the block map and the directory size (end of the last data block).
    fn finish_dir(&mut self, d: &mut Dir) -> FsResult<()> {
        self.store_fmap(&mut d.map)?;
        let lb = self.leaf_blk();
        let last = d
            .map
            .exts
            .iter()
            .filter(|e| e.off < lb)
            .map(|e| e.end().min(lb))
            .max()
            .unwrap_or(0);
        let blog = self.g.blog;
        let raw = self.inode(d.ino)?;
        if iwrite::format(raw) != FMT_LOCAL {
            iwrite::set_size(raw, last << blog);
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------
    // Shortform

    fn sf_decode(&mut self, ino: u64) -> FsResult<(u64, Vec<DEnt>)> {
        let g = self.g;
        let raw = self.inode(ino)?;
        let len = usize::try_from(iwrite::size(raw)).unwrap_or(usize::MAX);
        let fork = iwrite::dfork(g, raw);
        let data = fork
            .get(..len)
            .ok_or_else(|| corrupt(format_args!("directory {ino}: shortform overruns")))?
            .to_vec();
        let sf = odir::parse_shortform(self.sb, ino, &data)?;
        let ents = sf
            .entries
            .into_iter()
            .map(|e| DEnt {
                name: e.name,
                ino: e.ino,
                ftype: e.ftype.unwrap_or(0),
            })
            .collect();
        Ok((sf.parent, ents))
    }

    fn sf_size(&self, parent: u64, ents: &[DEnt]) -> usize {
        let wide = parent > u64::from(u32::MAX) || ents.iter().any(|e| e.ino > u64::from(u32::MAX));
        let il = if wide { 8 } else { 4 };
        2 + il
            + ents
                .iter()
                .map(|e| 3 + e.name.len() + usize::from(self.g.ftype) + il)
                .sum::<usize>()
    }

    fn sf_encode(&self, parent: u64, ents: &[DEnt]) -> Vec<u8> {
        let big = |i: u64| i > u64::from(u32::MAX);
        let i8count = usize::from(big(parent)) + ents.iter().filter(|e| big(e.ino)).count();
        let wide = i8count > 0;
        let mut out = Vec::with_capacity(self.sf_size(parent, ents));
        out.push(ents.len() as u8);
        out.push(i8count.min(255) as u8);
        let put_ino = |out: &mut Vec<u8>, i: u64| {
            if wide {
                out.extend_from_slice(&i.to_be_bytes());
            } else {
                out.extend_from_slice(&(i as u32).to_be_bytes());
            }
        };
        put_ino(&mut out, parent);
        let mut off = self.first_off();
        for e in ents {
            out.push(e.name.len() as u8);
            out.extend_from_slice(&(off as u16).to_be_bytes());
            out.extend_from_slice(&e.name);
            if self.g.ftype {
                out.push(e.ftype);
            }
            put_ino(&mut out, e.ino);
            off += self.entsize(e.name.len());
        }
        out
    }

    // ---------------------------------------------------------------------------
    // Data blocks

    /// The regions of data block bytes `hdr..end`: (offset, length, entry or free).
    fn regions(&self, ino: u64, b: &[u8], end: usize) -> FsResult<Vec<(usize, usize, bool)>> {
        let mut out = Vec::new();
        let mut pos = self.dhdr();
        while pos < end {
            if be16(b, pos) == 0xFFFF {
                let n = usize::from(be16(b, pos + 2));
                if n < 8 || n % 8 != 0 || pos + n > end {
                    return Err(corrupt(format_args!("directory {ino}: bad free region")));
                }
                out.push((pos, n, false));
                pos += n;
            } else {
                let nl = usize::from(u8_at(b, pos + 8));
                let n = self.entsize(nl);
                if nl == 0 || pos + n > end {
                    return Err(corrupt(format_args!("directory {ino}: bad entry")));
                }
                out.push((pos, n, true));
                pos += n;
            }
        }
        Ok(out)
    }

    fn write_free(b: &mut [u8], off: usize, len: usize) {
        put16(b, off, 0xFFFF);
        put16(b, off + 2, len as u16);
        if let Some(s) = b.get_mut(off + 4..off + len - 2) {
            s.fill(0);
        }
        put16(b, off + len - 2, off as u16);
    }

    fn write_ent(&self, b: &mut [u8], off: usize, e: &DEnt) {
        let n = self.entsize(e.name.len());
        if let Some(s) = b.get_mut(off..off + n) {
            s.fill(0);
        }
        put64(b, off, e.ino);
        put8(b, off + 8, e.name.len() as u8);
        put_bytes(b, off + 9, &e.name);
        if self.g.ftype {
            put8(b, off + 9 + e.name.len(), e.ftype);
        }
        put16(b, off + n - 2, off as u16);
    }

    fn read_ent(&self, b: &[u8], off: usize) -> DEnt {
        let nl = usize::from(u8_at(b, off + 8));
        DEnt {
            ino: be64(b, off),
            name: b.get(off + 9..off + 9 + nl).unwrap_or(&[]).to_vec(),
            ftype: if self.g.ftype {
                u8_at(b, off + 9 + nl)
            } else {
                0
            },
        }
    }

    /// Rewrites the best-free table of a data block from its regions; returns the
    /// longest free region.
    fn fix_bestfree(&self, ino: u64, b: &mut [u8], end: usize) -> FsResult<u16> {
        let mut free: Vec<(usize, usize)> = self
            .regions(ino, b, end)?
            .into_iter()
            .filter(|r| !r.2)
            .map(|r| (r.0, r.1))
            .collect();
        free.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let at = if self.g.v5 { 48 } else { 4 };
        for i in 0..3 {
            let (o, l) = free.get(i).copied().unwrap_or((0, 0));
            put16(b, at + 4 * i, o as u16);
            put16(b, at + 4 * i + 2, l as u16);
        }
        Ok(free.first().map_or(0, |f| f.1 as u16))
    }

    /// Puts `e` in the first free region of data block `b` that holds it.
    fn data_insert(&self, ino: u64, b: &mut [u8], e: &DEnt) -> FsResult<Option<usize>> {
        let end = b.len();
        let need = self.entsize(e.name.len());
        let regions = self.regions(ino, b, end)?;
        let Some(&(off, len, _)) = regions.iter().find(|r| !r.2 && r.1 >= need) else {
            return Ok(None);
        };
        self.write_ent(b, off, e);
        if len > need {
            Self::write_free(b, off + need, len - need);
        }
        Ok(Some(off))
    }

    /// Frees the entry at `off`, merging the free space around it.
    fn data_remove(&self, ino: u64, b: &mut [u8], off: usize) -> FsResult<()> {
        let end = b.len();
        let regions = self.regions(ino, b, end)?;
        let i = regions
            .iter()
            .position(|r| r.0 == off && r.2)
            .ok_or_else(|| {
                corrupt(format_args!(
                    "directory {ino}: hash index points between entries"
                ))
            })?;
        let (mut start, mut len, _) =
            *regions.get(i).ok_or_else(|| corrupt("directory regions"))?;
        if i > 0
            && let Some(&(po, pl, false)) = regions.get(i - 1)
        {
            start = po;
            len += pl;
        }
        if let Some(&(_, nl, false)) = regions.get(i + 1) {
            len += nl;
        }
        Self::write_free(b, start, len);
        Ok(())
    }

    fn new_data_block(&self, b: &mut [u8], daddr: u64, owner: u64) {
        let magic = if self.g.v5 { 0x5844_4433 } else { 0x5844_3244 };
        self.stamp_data_hdr(b, magic, daddr, owner);
        let h = self.dhdr();
        let len = b.len();
        Self::write_free(b, h, len - h);
    }

    // ---------------------------------------------------------------------------
    // Whole-directory builds (shortform and block forms)

    /// The entries (without `.` and `..`) and parent of a block-form directory.
    fn block_entries(&mut self, d: &Dir) -> FsResult<(u64, Vec<DEnt>)> {
        let b = self.dir_buf(d, 0)?.clone();
        let end = self.block_leaf_start(d.ino, &b)?;
        self.entries_of(d.ino, &b, end)
    }

    /// Where the hash entries of a single-block directory start.
    fn block_leaf_start(&self, ino: u64, b: &[u8]) -> FsResult<usize> {
        let len = b.len();
        let magic = be32(b, 0);
        if magic != 0x5844_4233 && magic != 0x5844_3242 {
            return Err(corrupt(format_args!(
                "directory {ino}: block 0 is not a directory block"
            )));
        }
        let count = be32(b, len.saturating_sub(8)) as usize;
        count
            .checked_mul(8)
            .and_then(|n| len.checked_sub(8)?.checked_sub(n))
            .filter(|&s| s >= self.dhdr())
            .ok_or_else(|| corrupt(format_args!("directory {ino}: block tail overruns")))
    }

    /// Entries of a data area `hdr..end`: (parent, others).
    fn entries_of(&self, ino: u64, b: &[u8], end: usize) -> FsResult<(u64, Vec<DEnt>)> {
        let mut parent = 0;
        let mut out = Vec::new();
        for (off, _, used) in self.regions(ino, b, end)? {
            if !used {
                continue;
            }
            let e = self.read_ent(b, off);
            if e.name == b"." {
                continue;
            }
            if e.name == b".." {
                parent = e.ino;
                continue;
            }
            out.push(e);
        }
        Ok((parent, out))
    }

    /// Every entry of a leaf or node directory (data blocks), with `..`'s inode.
    fn all_entries(&mut self, d: &Dir) -> FsResult<(u64, Vec<DEnt>)> {
        let lb = self.leaf_blk();
        let dbs: Vec<u64> = self.data_blocks(d, lb);
        let mut parent = 0;
        let mut out = Vec::new();
        for dablk in dbs {
            let b = self.dir_buf(d, dablk)?.clone();
            let (p, mut e) = self.entries_of(d.ino, &b, b.len())?;
            if dablk == 0 {
                parent = p;
            }
            out.append(&mut e);
        }
        Ok((parent, out))
    }

    /// The mapped data block numbers (as dablks), below `lb`.
    fn data_blocks(&self, d: &Dir, lb: u64) -> Vec<u64> {
        let n = self.fsbs();
        let mut out = Vec::new();
        for e in &d.map.exts {
            if e.off >= lb {
                break;
            }
            let mut b = e.off.div_ceil(n) * n;
            while b < e.end().min(lb) {
                out.push(b);
                b += n;
            }
        }
        out
    }

    /// Builds a single-block directory holding `ents`; `None` when they do not fit.
    fn build_block(&self, ino: u64, parent: u64, ents: &[DEnt], daddr: u64) -> Option<Vec<u8>> {
        let len = self.g.dirblk as usize;
        let mut b = vec![0u8; len];
        let magic = if self.g.v5 { 0x5844_4233 } else { 0x5844_3242 };
        self.stamp_data_hdr(&mut b, magic, daddr, ino);
        let count = ents.len() + 2;
        let leaf_at = len.checked_sub(8 + count * 8)?;
        let mut off = self.dhdr();
        let mut leaf: Vec<(u32, u32)> = Vec::with_capacity(count);
        let dot = DEnt {
            name: b".".to_vec(),
            ino,
            ftype: FT_DIR,
        };
        let dotdot = DEnt {
            name: b"..".to_vec(),
            ino: parent,
            ftype: FT_DIR,
        };
        for e in [&dot, &dotdot].into_iter().chain(ents.iter()) {
            let n = self.entsize(e.name.len());
            if off + n > leaf_at {
                return None;
            }
            self.write_ent(&mut b, off, e);
            leaf.push((self.hash(&e.name), (off >> 3) as u32));
            off += n;
        }
        if off < leaf_at {
            Self::write_free(&mut b, off, leaf_at - off);
        }
        leaf.sort_unstable();
        for (i, (h, a)) in leaf.iter().enumerate() {
            put32(&mut b, leaf_at + 8 * i, *h);
            put32(&mut b, leaf_at + 8 * i + 4, *a);
        }
        put32(&mut b, len - 8, count as u32);
        put32(&mut b, len - 4, 0);
        self.fix_bestfree(ino, &mut b, leaf_at).ok()?;
        Some(b)
    }

    /// Rewrites a directory held in shortform or one block as `ents`: shortform when
    /// it fits in the inode, one block when that holds it, else leaf form.
    fn rebuild_small(&mut self, d: &mut Dir, parent: u64, ents: &[DEnt]) -> FsResult<()> {
        let g = self.g;
        let sf = self.sf_size(parent, ents);
        let room = iwrite::dsize(g, self.inode(d.ino)?);
        // Drop the blocks it has.
        let mapped: Vec<u64> = self.data_blocks(d, u64::MAX);
        for dablk in mapped {
            self.dir_free_block(d, dablk)?;
        }
        if sf <= room {
            let bytes = self.sf_encode(parent, ents);
            self.store_fmap(&mut d.map)?;
            let raw = self.inode(d.ino)?;
            let fork = iwrite::dfork_mut(g, raw);
            fork.fill(0);
            put_bytes(fork, 0, &bytes);
            put8(raw, iwrite::DI_FORMAT, FMT_LOCAL);
            iwrite::set_nextents(g, raw, 0)?;
            iwrite::set_size(raw, bytes.len() as u64);
            return Ok(());
        }
        {
            let raw = self.inode(d.ino)?;
            if iwrite::format(raw) == FMT_LOCAL {
                iwrite::dfork_mut(g, raw).fill(0);
                put8(raw, iwrite::DI_FORMAT, FMT_EXTENTS);
                iwrite::set_nextents(g, raw, 0)?;
            }
        }
        // A probe build decides between block and leaf form.
        if self.build_block(d.ino, parent, ents, 0).is_some() {
            let b = self.dir_new_buf(d, 0)?;
            let _ = b;
            let off = self.dir_off(d, 0)?;
            let built = self
                .build_block(d.ino, parent, ents, off >> 9)
                .ok_or_else(|| corrupt("directory block build"))?;
            let b = self.dir_buf(d, 0)?;
            b.copy_from_slice(&built);
            return self.finish_dir(d);
        }
        self.build_leaf_dir(d, parent, ents)
    }

    /// Lays `ents` out in data blocks with a leaf (or, if too many, node) index.
    fn build_leaf_dir(&mut self, d: &mut Dir, parent: u64, ents: &[DEnt]) -> FsResult<()> {
        let len = self.g.dirblk as usize;
        let mut blocks: Vec<Vec<DEnt>> = vec![Vec::new()];
        let mut used = self.first_off();
        for e in ents {
            let n = self.entsize(e.name.len());
            if used + n > len {
                blocks.push(Vec::new());
                used = self.dhdr();
            }
            used += n;
            if let Some(b) = blocks.last_mut() {
                b.push(e.clone());
            }
        }
        if blocks.len() as u64 > self.max_db() {
            return Err(toolarge("the directory is at its maximum size"));
        }
        let mut index: Vec<(u32, u32)> = Vec::new();
        let mut bests: Vec<u16> = Vec::new();
        for (db, list) in blocks.iter().enumerate() {
            let dablk = db as u64 * self.fsbs();
            self.dir_new_buf(d, dablk)?;
            let daddr = self.dir_off(d, dablk)? >> 9;
            let mut b = vec![0u8; len];
            self.new_data_block(&mut b, daddr, d.ino);
            if db == 0 {
                for e in [
                    DEnt {
                        name: b".".to_vec(),
                        ino: d.ino,
                        ftype: FT_DIR,
                    },
                    DEnt {
                        name: b"..".to_vec(),
                        ino: parent,
                        ftype: FT_DIR,
                    },
                ] {
                    let off = self
                        .data_insert(d.ino, &mut b, &e)?
                        .ok_or_else(|| corrupt("directory build"))?;
                    index.push((self.hash(&e.name), self.addr(0, off)));
                }
            }
            for e in list {
                let off = self
                    .data_insert(d.ino, &mut b, e)?
                    .ok_or_else(|| corrupt("directory build"))?;
                index.push((self.hash(&e.name), self.addr(db as u64, off)));
            }
            bests.push(self.fix_bestfree(d.ino, &mut b, len)?);
            self.dir_buf(d, dablk)?.copy_from_slice(&b);
        }
        index.sort_unstable();
        if self.leaf1_fits(index.len(), bests.len()) {
            let lb = self.leaf_blk();
            self.dir_new_buf(d, lb)?;
            self.write_leaf1(d, &index, &bests)?;
        } else {
            self.write_free_index(d, &bests)?;
            self.rebuild_index(d, index)?;
        }
        self.finish_dir(d)
    }

    // ---------------------------------------------------------------------------
    // Leaf form

    fn leaf1_fits(&self, ents: usize, bests: usize) -> bool {
        self.dahdr() + 8 * ents + 2 * bests + 4 <= self.g.dirblk as usize
    }

    fn read_leaf1(&mut self, d: &Dir) -> FsResult<Leaf1> {
        let lb = self.leaf_blk();
        let h = self.dahdr();
        let cnt_at = if self.g.v5 { 56 } else { 12 };
        let b = self.dir_buf(d, lb)?;
        let len = b.len();
        let count = usize::from(be16(b, cnt_at));
        let nb = be32(b, len - 4) as usize;
        if h + 8 * count + 2 * nb + 4 > len {
            return Err(corrupt(format_args!(
                "directory {}: leaf block overfilled",
                d.ino
            )));
        }
        let ents = (0..count)
            .map(|i| (be32(b, h + 8 * i), be32(b, h + 8 * i + 4)))
            .filter(|e| e.1 != 0)
            .collect();
        let bests = (0..nb).map(|i| be16(b, len - 4 - 2 * nb + 2 * i)).collect();
        Ok((ents, bests))
    }

    fn write_leaf1(&mut self, d: &Dir, ents: &[(u32, u32)], bests: &[u16]) -> FsResult<()> {
        let lb = self.leaf_blk();
        let off = self.dir_off(d, lb)?;
        let len = self.g.dirblk as usize;
        let h = self.dahdr();
        let mut b = vec![0u8; len];
        let magic = if self.g.v5 { 0x3DF1 } else { 0xD2F1 };
        self.stamp_da_hdr(&mut b, magic, off >> 9, d.ino);
        let cnt_at = if self.g.v5 { 56 } else { 12 };
        put16(&mut b, cnt_at, ents.len() as u16);
        for (i, (hh, a)) in ents.iter().enumerate() {
            put32(&mut b, h + 8 * i, *hh);
            put32(&mut b, h + 8 * i + 4, *a);
        }
        let nb = bests.len();
        for (i, v) in bests.iter().enumerate() {
            put16(&mut b, len - 4 - 2 * nb + 2 * i, *v);
        }
        put32(&mut b, len - 4, nb as u32);
        let buf = self.dir_buf(d, lb)?;
        // Keep the old block's CRC field/LSN area as is: stamping rewrites them.
        buf.copy_from_slice(&b);
        Ok(())
    }

    // ---------------------------------------------------------------------------
    // Node form: free index and hash btree

    fn free_hdr(&self) -> usize {
        if self.g.v5 { 64 } else { 16 }
    }

    fn max_bests(&self) -> usize {
        (self.g.dirblk as usize - self.free_hdr()) / 2
    }

    /// The best-free sizes of every data block slot (NULLDATAOFF for holes).
    fn read_free_index(&mut self, d: &Dir) -> FsResult<Vec<u16>> {
        let fb = self.free_blk();
        let n = self.fsbs();
        let per = self.max_bests();
        let (fd, nv) = if self.g.v5 { (48, 52) } else { (4, 8) };
        let mut out: Vec<u16> = Vec::new();
        let blocks: Vec<u64> = d
            .map
            .exts
            .iter()
            .filter(|e| e.end() > fb)
            .flat_map(|e| {
                let s = e.off.max(fb).div_ceil(n) * n;
                (0..(e.end().saturating_sub(s)).div_ceil(n)).map(move |i| s + i * n)
            })
            .take(1 << 16)
            .collect();
        let h = self.free_hdr();
        for dablk in blocks {
            let i = ((dablk - fb) / n) as usize;
            let b = self.dir_buf(d, dablk)?.clone();
            let firstdb = be32(&b, fd) as usize;
            let nvalid = be32(&b, nv) as usize;
            if firstdb != i * per || nvalid > per {
                return Err(corrupt(format_args!(
                    "directory {}: bad free index block",
                    d.ino
                )));
            }
            if out.len() < firstdb {
                out.resize(firstdb, NULLDATAOFF);
            }
            out.truncate(firstdb);
            for k in 0..nvalid {
                out.push(be16(&b, h + 2 * k));
            }
        }
        while out.last() == Some(&NULLDATAOFF) {
            out.pop();
        }
        Ok(out)
    }

    /// Writes the free index for `bests` (one slot per data block), adding and dropping
    /// free-index blocks as needed.
    fn write_free_index(&mut self, d: &mut Dir, bests: &[u16]) -> FsResult<()> {
        let fb = self.free_blk();
        let n = self.fsbs();
        let per = self.max_bests();
        let h = self.free_hdr();
        let len = self.g.dirblk as usize;
        let (fd, nv, nu) = if self.g.v5 { (48, 52, 56) } else { (4, 8, 12) };
        let nblocks = bests.len().div_ceil(per);
        // Existing free blocks beyond what is needed, or with nothing used, go.
        let mapped: Vec<u64> = d
            .map
            .exts
            .iter()
            .filter(|e| e.end() > fb)
            .flat_map(|e| {
                let s = e.off.max(fb).div_ceil(n) * n;
                (0..(e.end().saturating_sub(s)).div_ceil(n)).map(move |i| s + i * n)
            })
            .take(1 << 16)
            .collect();
        for i in 0..nblocks.max(mapped.len()) {
            let dablk = fb + i as u64 * n;
            let slice = bests
                .get(i * per..((i + 1) * per).min(bests.len()))
                .unwrap_or(&[]);
            let mut valid = slice.len();
            while valid > 0 && slice.get(valid - 1) == Some(&NULLDATAOFF) {
                valid -= 1;
            }
            let used = slice.iter().filter(|&&v| v != NULLDATAOFF).count();
            let exists = d.map.find(dablk).is_some();
            if used == 0 {
                if exists {
                    self.dir_free_block(d, dablk)?;
                }
                continue;
            }
            if !exists {
                self.dir_new_buf(d, dablk)?;
            }
            let daddr = self.dir_off(d, dablk)? >> 9;
            let mut b = vec![0u8; len];
            let magic = if self.g.v5 { 0x5844_4633 } else { 0x5844_3246 };
            self.stamp_data_hdr(&mut b, magic, daddr, d.ino);
            put32(&mut b, fd, (i * per) as u32);
            put32(&mut b, nv, valid as u32);
            put32(&mut b, nu, used as u32);
            for (k, v) in slice.iter().take(valid).enumerate() {
                put16(&mut b, h + 2 * k, *v);
            }
            self.dir_buf(d, dablk)?.copy_from_slice(&b);
        }
        Ok(())
    }

    /// Reads a leaf/node block of the hash index.
    fn read_da(&mut self, d: &Dir, dablk: u64) -> FsResult<DaBlk> {
        let v5 = self.g.v5;
        let h = self.dahdr();
        let cnt_at = if v5 { 56 } else { 12 };
        let b = self.dir_buf(d, dablk)?;
        let magic = be16(b, 8);
        let forw = be32(b, 0);
        let back = be32(b, 4);
        let count = usize::from(be16(b, cnt_at));
        let node = magic == 0x3EBE || magic == 0xFEBE;
        let level = if node { be16(b, cnt_at + 2) } else { 0 };
        if h + 8 * count > b.len() {
            return Err(corrupt(format_args!(
                "directory {}: index block overfilled",
                d.ino
            )));
        }
        let ents = (0..count)
            .map(|i| (be32(b, h + 8 * i), be32(b, h + 8 * i + 4)))
            .collect();
        Ok(DaBlk {
            node,
            level,
            forw,
            back,
            ents,
        })
    }

    fn write_da(&mut self, d: &Dir, dablk: u64, blk: &DaBlk) -> FsResult<()> {
        let off = self.dir_off(d, dablk)?;
        let len = self.g.dirblk as usize;
        let h = self.dahdr();
        let v5 = self.g.v5;
        let mut b = vec![0u8; len];
        let magic = match (blk.node, v5) {
            (true, true) => 0x3EBE,
            (true, false) => 0xFEBE,
            (false, true) => 0x3DFF,
            (false, false) => 0xD2FF,
        };
        self.stamp_da_hdr(&mut b, magic, off >> 9, d.ino);
        put32(&mut b, 0, blk.forw);
        put32(&mut b, 4, blk.back);
        let cnt_at = if v5 { 56 } else { 12 };
        put16(&mut b, cnt_at, blk.ents.len() as u16);
        if blk.node {
            put16(&mut b, cnt_at + 2, blk.level);
        }
        for (i, (x, y)) in blk.ents.iter().enumerate() {
            put32(&mut b, h + 8 * i, *x);
            put32(&mut b, h + 8 * i + 4, *y);
        }
        self.dir_buf(d, dablk)?.copy_from_slice(&b);
        Ok(())
    }

    fn da_cap(&self) -> usize {
        (self.g.dirblk as usize - self.dahdr()) / 8
    }

    /// The index blocks mapped in the leaf space (the root first).
    fn index_blocks(&self, d: &Dir) -> Vec<u64> {
        let lb = self.leaf_blk();
        let fb = self.free_blk();
        let n = self.fsbs();
        let mut out = Vec::new();
        for e in &d.map.exts {
            if e.end() <= lb || e.off >= fb {
                continue;
            }
            let mut b = e.off.max(lb).div_ceil(n) * n;
            while b < e.end().min(fb) {
                out.push(b);
                b += n;
            }
        }
        out
    }

    /// Every hash entry of a node directory, walking the leaves left to right.
    fn index_entries(&mut self, d: &Dir) -> FsResult<Vec<(u32, u32)>> {
        let mut dablk = self.leaf_blk();
        // Down the left edge.
        for _ in 0..MAX_DA_DEPTH {
            let b = self.read_da(d, dablk)?;
            if !b.node {
                break;
            }
            dablk = u64::from(b.ents.first().map(|e| e.1).unwrap_or(0));
        }
        let mut out = Vec::new();
        let mut hops = 0usize;
        loop {
            let b = self.read_da(d, dablk)?;
            if b.node {
                return Err(corrupt(format_args!(
                    "directory {}: node among leaves",
                    d.ino
                )));
            }
            out.extend(b.ents.iter().copied().filter(|e| e.1 != 0));
            if out.len() > MAX_INDEX {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    "xfs: directory too large to change",
                ));
            }
            if b.forw == 0 {
                break;
            }
            hops += 1;
            if hops > 1 << 16 {
                return Err(corrupt(format_args!(
                    "directory {}: leaf chain loops",
                    d.ino
                )));
            }
            dablk = u64::from(b.forw);
        }
        Ok(out)
    }

    /// Lays out the hash index of a node directory afresh from `ents`.
    fn rebuild_index(&mut self, d: &mut Dir, mut ents: Vec<(u32, u32)>) -> FsResult<()> {
        ents.sort_unstable();
        let cap = self.da_cap();
        let lb = self.leaf_blk();
        let n = self.fsbs();
        // Leaves three quarters full, so inserts have room before the next rebuild.
        let fill = (cap * 3 / 4).max(1);
        let mut leaves: Vec<Vec<(u32, u32)>> = if ents.len() <= cap {
            vec![ents]
        } else {
            ents.chunks(fill).map(<[_]>::to_vec).collect()
        };
        if leaves.is_empty() {
            leaves.push(Vec::new());
        }
        // Levels of nodes above the leaves (when more than one leaf).
        let mut levels: Vec<usize> = Vec::new(); // blocks per node level, bottom up
        let mut count = leaves.len();
        while count > 1 {
            let k = count.div_ceil(cap);
            levels.push(k);
            count = k;
            if levels.len() >= MAX_DA_DEPTH {
                return Err(toolarge("the directory hash index is at its maximum depth"));
            }
        }
        let total = leaves.len() + levels.iter().sum::<usize>();
        // Block numbers: the root at the leaf offset, the rest reusing mapped blocks.
        let mut have: Vec<u64> = self
            .index_blocks(d)
            .into_iter()
            .filter(|&b| b != lb)
            .collect();
        have.sort_unstable();
        let mut next_new = have.last().map_or(lb + n, |&b| b + n);
        let mut ids: Vec<u64> = Vec::with_capacity(total);
        ids.push(lb);
        let mut reuse = have.iter().copied();
        while ids.len() < total {
            match reuse.next() {
                Some(b) => ids.push(b),
                None => {
                    if next_new + n > self.free_blk() {
                        return Err(toolarge("the directory hash index is full"));
                    }
                    self.dir_new_buf(d, next_new)?;
                    ids.push(next_new);
                    next_new += n;
                }
            }
        }
        let spare: Vec<u64> = reuse.collect();
        if d.map.find(lb).is_none() {
            self.dir_new_buf(d, lb)?;
        }
        // The root is the top block; leaves and lower nodes take the other ids.
        // Order: ids[0] = root; then the blocks of each level from the top down.
        let nlevels = levels.len();
        let mut level_ids: Vec<Vec<u64>> = Vec::new(); // index 0 = leaves
        let mut at = 1usize;
        if nlevels == 0 {
            level_ids.push(vec![lb]);
        } else {
            let mut per_level: Vec<usize> = vec![leaves.len()];
            per_level.extend(levels.iter().copied());
            for (li, &k) in per_level.iter().enumerate() {
                if li == nlevels {
                    level_ids.push(vec![lb]);
                } else {
                    level_ids.push(ids.get(at..at + k).unwrap_or(&[]).to_vec());
                    at += k;
                }
            }
        }
        // Leaves.
        let mut below: Vec<(u32, u64)> = Vec::new(); // (max hash, block)
        let lids = level_ids.first().cloned().unwrap_or_default();
        for (i, l) in leaves.iter().enumerate() {
            let id = *lids.get(i).ok_or_else(|| corrupt("index layout"))?;
            let blk = DaBlk {
                node: false,
                level: 0,
                forw: lids.get(i + 1).map_or(0, |&b| b as u32),
                back: if i > 0 {
                    lids.get(i - 1).map_or(0, |&b| b as u32)
                } else {
                    0
                },
                ents: l.clone(),
            };
            self.write_da(d, id, &blk)?;
            below.push((l.last().map_or(0, |e| e.0), id));
        }
        // Nodes.
        for li in 1..=nlevels {
            let nids = level_ids.get(li).cloned().unwrap_or_default();
            let k = nids.len();
            let cnt = below.len();
            let (base, rem) = (cnt / k, cnt % k);
            let mut pos = 0;
            let mut mine = Vec::with_capacity(k);
            for (i, &id) in nids.iter().enumerate() {
                let take = base + usize::from(i < rem);
                let kids = below.get(pos..pos + take).unwrap_or(&[]);
                pos += take;
                let blk = DaBlk {
                    node: true,
                    level: li as u16,
                    forw: nids.get(i + 1).map_or(0, |&b| b as u32),
                    back: if i > 0 {
                        nids.get(i - 1).map_or(0, |&b| b as u32)
                    } else {
                        0
                    },
                    ents: kids.iter().map(|(h, b)| (*h, *b as u32)).collect(),
                };
                self.write_da(d, id, &blk)?;
                mine.push((kids.last().map_or(0, |e| e.0), id));
            }
            below = mine;
        }
        for b in spare {
            self.dir_free_block(d, b)?;
        }
        Ok(())
    }

    /// The path from the root to the leaf where `hash` belongs: (block, entry index).
    fn index_path(&mut self, d: &Dir, hash: u32) -> FsResult<Vec<(u64, usize)>> {
        let mut dablk = self.leaf_blk();
        let mut path = Vec::new();
        for _ in 0..=MAX_DA_DEPTH {
            let b = self.read_da(d, dablk)?;
            if !b.node {
                let i = b.ents.partition_point(|e| e.0 < hash);
                path.push((dablk, i));
                return Ok(path);
            }
            if b.ents.is_empty() {
                return Err(corrupt(format_args!(
                    "directory {}: empty index node",
                    d.ino
                )));
            }
            let i = b.ents.partition_point(|e| e.0 < hash).min(b.ents.len() - 1);
            path.push((dablk, i));
            dablk = u64::from(b.ents.get(i).map_or(0, |e| e.1));
            let lb = self.leaf_blk();
            if dablk < lb || dablk >= self.free_blk() {
                return Err(corrupt(format_args!(
                    "directory {}: index points outside",
                    d.ino
                )));
            }
        }
        Err(corrupt(format_args!("directory {}: index too deep", d.ino)))
    }

    /// After the leaf at the end of `path` changed its highest hash to `max`, fixes the
    /// node entries above it.
    fn fix_index_hashes(&mut self, d: &Dir, path: &[(u64, usize)], mut max: u32) -> FsResult<()> {
        for k in (0..path.len().saturating_sub(1)).rev() {
            let (blk, i) = *path.get(k).ok_or_else(|| corrupt("index path"))?;
            let mut b = self.read_da(d, blk)?;
            let last = i + 1 == b.ents.len();
            match b.ents.get_mut(i) {
                Some(e) if e.0 != max => e.0 = max,
                _ => return Ok(()),
            }
            self.write_da(d, blk, &b)?;
            if !last {
                return Ok(());
            }
            max = b.ents.last().map_or(max, |e| e.0);
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------
    // Lookup

    /// The entry named `name` in directory `dir`: (inode, file type).
    pub fn dir_lookup(&mut self, dir: u64, name: &[u8]) -> FsResult<Option<(u64, u8)>> {
        let d = self.load_dir(dir)?;
        Ok(self.find(&d, name)?.map(|f| (f.ent.ino, f.ent.ftype)))
    }

    /// Finds `name`: the entry and where it is.
    fn find(&mut self, d: &Dir, name: &[u8]) -> FsResult<Option<Found>> {
        match self.form(d)? {
            Form::Short => {
                let (_, ents) = self.sf_decode(d.ino)?;
                let pick = pick_name(self, &ents, name);
                Ok(pick.map(|i| Found {
                    ent: ents.get(i).cloned().unwrap_or_else(empty_ent),
                    db: 0,
                    off: i,
                    leaf: None,
                }))
            }
            Form::Block => {
                let (_, ents) = self.block_entries(d)?;
                let pick = pick_name(self, &ents, name);
                Ok(pick.map(|i| Found {
                    ent: ents.get(i).cloned().unwrap_or_else(empty_ent),
                    db: 0,
                    off: i,
                    leaf: None,
                }))
            }
            Form::Leaf => {
                let (ents, _) = self.read_leaf1(d)?;
                let h = self.hash(name);
                let start = ents.partition_point(|e| e.0 < h);
                let cands: Vec<u32> = ents
                    .get(start..)
                    .unwrap_or(&[])
                    .iter()
                    .take_while(|e| e.0 == h)
                    .map(|e| e.1)
                    .collect();
                self.pick_addr(d, name, &cands, None)
            }
            Form::Node => {
                let h = self.hash(name);
                let path = self.index_path(d, h)?;
                let (mut blk, _) = *path.last().ok_or_else(|| corrupt("index path"))?;
                let mut cands: Vec<(u32, u64)> = Vec::new();
                for hop in 0..MAX_LEAF_HOPS {
                    let b = self.read_da(d, blk)?;
                    let start = b.ents.partition_point(|e| e.0 < h);
                    cands.extend(
                        b.ents
                            .get(start..)
                            .unwrap_or(&[])
                            .iter()
                            .take_while(|e| e.0 == h)
                            .map(|e| (e.1, blk)),
                    );
                    let runs_on = b.ents.last().is_none_or(|e| e.0 <= h);
                    if b.forw == 0 || !runs_on || hop + 1 == MAX_LEAF_HOPS {
                        break;
                    }
                    blk = u64::from(b.forw);
                }
                let addrs: Vec<u32> = cands.iter().map(|c| c.0).collect();
                let mut f = self.pick_addr(d, name, &addrs, None)?;
                if let Some(found) = f.as_mut() {
                    let a = self.addr(found.db, found.off);
                    found.leaf = cands.iter().find(|c| c.0 == a).map(|c| c.1);
                }
                Ok(f)
            }
        }
    }

    fn pick_addr(
        &mut self,
        d: &Dir,
        name: &[u8],
        addrs: &[u32],
        _leaf: Option<u64>,
    ) -> FsResult<Option<Found>> {
        let mut folded = None;
        for &a in addrs {
            if a == 0 {
                continue;
            }
            let (db, off) = self.unaddr(a);
            if db >= self.max_db() {
                return Err(corrupt(format_args!(
                    "directory {}: index points outside the data",
                    d.ino
                )));
            }
            let dablk = db * self.fsbs();
            let b = self.dir_buf(d, dablk)?.clone();
            if off + 16 > b.len() || be16(&b, off) == 0xFFFF {
                return Err(corrupt(format_args!(
                    "directory {}: index points at free space",
                    d.ino
                )));
            }
            let e = self.read_ent(&b, off);
            if e.name == name {
                return Ok(Some(Found {
                    ent: e,
                    db,
                    off,
                    leaf: None,
                }));
            }
            if folded.is_none() && self.same(&e.name, name) {
                folded = Some(Found {
                    ent: e,
                    db,
                    off,
                    leaf: None,
                });
            }
        }
        Ok(folded)
    }

    // ---------------------------------------------------------------------------
    // Changes

    /// Makes `dir` an empty shortform directory whose parent is `parent`.
    pub fn dir_init(&mut self, dir: u64, parent: u64) -> FsResult<()> {
        let g = self.g;
        let bytes = self.sf_encode(parent, &[]);
        let raw = self.inode(dir)?;
        let fork = iwrite::dfork_mut(g, raw);
        fork.fill(0);
        put_bytes(fork, 0, &bytes);
        put8(raw, iwrite::DI_FORMAT, FMT_LOCAL);
        iwrite::set_size(raw, bytes.len() as u64);
        Ok(())
    }

    /// Entries of `dir` other than `.` and `..` (at most `limit` counted).
    pub fn dir_count(&mut self, dir: u64, limit: usize) -> FsResult<usize> {
        let d = self.load_dir(dir)?;
        Ok(match self.form(&d)? {
            Form::Short => self.sf_decode(dir)?.1.len(),
            Form::Block => self.block_entries(&d)?.1.len(),
            Form::Leaf => self.read_leaf1(&d)?.0.len().saturating_sub(2),
            Form::Node => {
                // Any data block beyond the first, or entries in the first, count.
                let lb = self.leaf_blk();
                let dbs = self.data_blocks(&d, lb);
                if dbs.len() > 1 {
                    return Ok(limit.max(1));
                }
                self.all_entries(&d)?.1.len()
            }
        })
    }

    /// Adds `name` → `ino` to `dir` (the name must not exist).
    pub fn dir_add(&mut self, dir: u64, name: &[u8], ino: u64, ftype: u8) -> FsResult<()> {
        let mut d = self.load_dir(dir)?;
        if self.find(&d, name)?.is_some() {
            return Err(Error::new(ErrorKind::AlreadyExists, "xfs: the name exists"));
        }
        let e = DEnt {
            name: name.to_vec(),
            ino,
            ftype,
        };
        match self.form(&d)? {
            Form::Short => {
                let (parent, mut ents) = self.sf_decode(dir)?;
                ents.push(e.clone());
                self.rebuild_small(&mut d, parent, &ents)
            }
            Form::Block => {
                let (parent, mut ents) = self.block_entries(&d)?;
                ents.push(e.clone());
                if self.build_block(dir, parent, &ents, 0).is_some() {
                    let off = self.dir_off(&d, 0)?;
                    let built = self
                        .build_block(dir, parent, &ents, off >> 9)
                        .ok_or_else(|| corrupt("directory block build"))?;
                    self.dir_buf(&d, 0)?.copy_from_slice(&built);
                    return self.finish_dir(&mut d);
                }
                self.block_to_leaf(&mut d)?;
                self.leaf_add(&mut d, &e)
            }
            Form::Leaf => self.leaf_add(&mut d, &e),
            Form::Node => self.node_add(&mut d, &e),
        }
    }

    /// Turns a single-block directory into leaf form: the block becomes data block 0
    /// (entries stay where they are) and its hash entries move to a new leaf block.
    fn block_to_leaf(&mut self, d: &mut Dir) -> FsResult<()> {
        let mut b = self.dir_buf(d, 0)?.clone();
        let len = b.len();
        let leaf_at = self.block_leaf_start(d.ino, &b)?;
        let count = (len - 8 - leaf_at) / 8;
        let ents: Vec<(u32, u32)> = (0..count)
            .map(|i| (be32(&b, leaf_at + 8 * i), be32(&b, leaf_at + 8 * i + 4)))
            .filter(|e| e.1 != 0)
            .collect();
        // The tail becomes free space, merged with a free region before it.
        let regions = self.regions(d.ino, &b, leaf_at)?;
        let mut start = leaf_at;
        if let Some(&(o, _, false)) = regions.last() {
            start = o;
        }
        Self::write_free(&mut b, start, len - start);
        put32(&mut b, 0, if self.g.v5 { 0x5844_4433 } else { 0x5844_3244 });
        let best = self.fix_bestfree(d.ino, &mut b, len)?;
        self.dir_buf(d, 0)?.copy_from_slice(&b);
        let lb = self.leaf_blk();
        self.dir_new_buf(d, lb)?;
        self.write_leaf1(d, &ents, &[best])
    }

    /// A data block for an entry of `need` bytes: (db, new?) from `bests`.
    fn pick_db(&self, bests: &[u16], need: usize) -> (u64, bool) {
        if let Some(i) = bests
            .iter()
            .position(|&b| b != NULLDATAOFF && usize::from(b) >= need)
        {
            return (i as u64, false);
        }
        let hole = bests.iter().position(|&b| b == NULLDATAOFF);
        (hole.unwrap_or(bests.len()) as u64, true)
    }

    /// Inserts `e` into data block `db` (making it when `new`); returns its address and
    /// the block's new best free size.
    fn put_in_db(&mut self, d: &mut Dir, db: u64, new: bool, e: &DEnt) -> FsResult<(u32, u16)> {
        if db >= self.max_db() {
            return Err(toolarge("the directory is at its maximum size"));
        }
        let dablk = db * self.fsbs();
        let mut b = if new {
            self.dir_new_buf(d, dablk)?;
            let daddr = self.dir_off(d, dablk)? >> 9;
            let mut b = vec![0u8; self.g.dirblk as usize];
            self.new_data_block(&mut b, daddr, d.ino);
            b
        } else {
            self.dir_buf(d, dablk)?.clone()
        };
        let off = self.data_insert(d.ino, &mut b, e)?.ok_or_else(|| {
            corrupt(format_args!(
                "directory {}: best free table is wrong",
                d.ino
            ))
        })?;
        let len = b.len();
        let best = self.fix_bestfree(d.ino, &mut b, len)?;
        self.dir_buf(d, dablk)?.copy_from_slice(&b);
        Ok((self.addr(db, off), best))
    }

    fn leaf_add(&mut self, d: &mut Dir, e: &DEnt) -> FsResult<()> {
        let (mut ents, mut bests) = self.read_leaf1(d)?;
        let need = self.entsize(e.name.len());
        let (db, new) = self.pick_db(&bests, need);
        let nbests = bests.len().max(db as usize + 1);
        if !self.leaf1_fits(ents.len() + 1, nbests) {
            // Too many for one leaf: node form, then add there.
            self.leaf_to_node(d, ents, bests)?;
            return self.node_add(d, e);
        }
        let (addr, best) = self.put_in_db(d, db, new, e)?;
        if bests.len() <= db as usize {
            bests.resize(db as usize + 1, NULLDATAOFF);
        }
        if let Some(b) = bests.get_mut(db as usize) {
            *b = best;
        }
        let h = self.hash(&e.name);
        let at = ents.partition_point(|x| (x.0, x.1) < (h, addr));
        ents.insert(at, (h, addr));
        self.write_leaf1(d, &ents, &bests)?;
        self.finish_dir(d)
    }

    fn leaf_to_node(
        &mut self,
        d: &mut Dir,
        ents: Vec<(u32, u32)>,
        bests: Vec<u16>,
    ) -> FsResult<()> {
        self.write_free_index(d, &bests)?;
        self.rebuild_index(d, ents)
    }

    fn node_add(&mut self, d: &mut Dir, e: &DEnt) -> FsResult<()> {
        let mut bests = self.read_free_index(d)?;
        let need = self.entsize(e.name.len());
        let (db, new) = self.pick_db(&bests, need);
        let (addr, best) = self.put_in_db(d, db, new, e)?;
        if bests.len() <= db as usize {
            bests.resize(db as usize + 1, NULLDATAOFF);
        }
        if let Some(b) = bests.get_mut(db as usize) {
            *b = best;
        }
        self.write_free_index(d, &bests)?;
        let h = self.hash(&e.name);
        let path = self.index_path(d, h)?;
        let (leaf, _) = *path.last().ok_or_else(|| corrupt("index path"))?;
        let mut lb = self.read_da(d, leaf)?;
        if lb.ents.len() >= self.da_cap() {
            let mut all = self.index_entries(d)?;
            all.push((h, addr));
            self.rebuild_index(d, all)?;
            return self.finish_dir(d);
        }
        let at = lb.ents.partition_point(|x| (x.0, x.1) < (h, addr));
        lb.ents.insert(at, (h, addr));
        let max = lb.ents.last().map_or(0, |x| x.0);
        self.write_da(d, leaf, &lb)?;
        self.fix_index_hashes(d, &path, max)?;
        self.finish_dir(d)
    }

    /// Removes `name` from `dir`; returns the inode it named.
    pub fn dir_remove(&mut self, dir: u64, name: &[u8]) -> FsResult<u64> {
        let mut d = self.load_dir(dir)?;
        let f = self
            .find(&d, name)?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "xfs: no such entry"))?;
        match self.form(&d)? {
            Form::Short | Form::Block => {
                let (parent, mut ents) = match self.form(&d)? {
                    Form::Short => self.sf_decode(dir)?,
                    _ => self.block_entries(&d)?,
                };
                if f.off < ents.len() {
                    ents.remove(f.off);
                }
                self.rebuild_small(&mut d, parent, &ents)?;
            }
            Form::Leaf => {
                let (mut ents, mut bests) = self.read_leaf1(&d)?;
                let a = self.addr(f.db, f.off);
                let i = ents
                    .iter()
                    .position(|x| x.1 == a)
                    .ok_or_else(|| corrupt("leaf entry vanished"))?;
                ents.remove(i);
                let best = self.take_from_db(&mut d, f.db, f.off)?;
                if (f.db as usize) < bests.len()
                    && let Some(b) = bests.get_mut(f.db as usize)
                {
                    *b = best;
                }
                while bests.last() == Some(&NULLDATAOFF) {
                    bests.pop();
                }
                self.write_leaf1(&d, &ents, &bests)?;
                self.finish_dir(&mut d)?;
                self.maybe_leaf_to_block(&mut d, bests.len())?;
            }
            Form::Node => {
                let a = self.addr(f.db, f.off);
                let h = self.hash(&f.ent.name);
                let path = self.index_path(&d, h)?;
                let (pleaf, _) = *path.last().ok_or_else(|| corrupt("index path"))?;
                let leaf = f.leaf.unwrap_or(pleaf);
                let mut lb = self.read_da(&d, leaf)?;
                let i = lb
                    .ents
                    .iter()
                    .position(|x| x.1 == a)
                    .ok_or_else(|| corrupt("index entry vanished"))?;
                lb.ents.remove(i);
                let mut bests = self.read_free_index(&d)?;
                let best = self.take_from_db(&mut d, f.db, f.off)?;
                if let Some(b) = bests.get_mut(f.db as usize) {
                    *b = best;
                }
                while bests.last() == Some(&NULLDATAOFF) {
                    bests.pop();
                }
                self.write_free_index(&mut d, &bests)?;
                let root_is_leaf = leaf == self.leaf_blk();
                if lb.ents.is_empty() && !root_is_leaf || leaf != pleaf || self.index_shrinks(&d)? {
                    let mut all = self.index_entries(&d)?;
                    all.retain(|x| x.1 != a);
                    self.rebuild_index(&mut d, all)?;
                } else {
                    let max = lb.ents.last().map_or(0, |x| x.0);
                    self.write_da(&d, leaf, &lb)?;
                    self.fix_index_hashes(&d, &path, max)?;
                }
                self.finish_dir(&mut d)?;
                self.maybe_node_to_leaf(&mut d)?;
            }
        }
        Ok(f.ent.ino)
    }

    /// Removes the entry at `off` of data block `db`; frees the block when it empties
    /// (not block 0). Returns the block's best free size (NULLDATAOFF: freed).
    fn take_from_db(&mut self, d: &mut Dir, db: u64, off: usize) -> FsResult<u16> {
        let dablk = db * self.fsbs();
        let mut b = self.dir_buf(d, dablk)?.clone();
        self.data_remove(d.ino, &mut b, off)?;
        let len = b.len();
        let best = self.fix_bestfree(d.ino, &mut b, len)?;
        if db != 0 && usize::from(best) == len - self.dhdr() {
            self.dir_free_block(d, dablk)?;
            return Ok(NULLDATAOFF);
        }
        self.dir_buf(d, dablk)?.copy_from_slice(&b);
        Ok(best)
    }

    /// Leaf form back to one block (or shortform) when everything fits.
    fn maybe_leaf_to_block(&mut self, d: &mut Dir, nbests: usize) -> FsResult<()> {
        if nbests > 2 {
            return Ok(());
        }
        let (parent, ents) = self.all_entries(d)?;
        if self.build_block(d.ino, parent, &ents, 0).is_none() {
            return Ok(());
        }
        // Everything goes, then the small form is written.
        let all: Vec<u64> = d.map.exts.iter().map(|e| e.off).collect();
        let _ = all;
        let mapped: Vec<(u64, u64)> = d.map.exts.iter().map(|e| (e.off, e.len)).collect();
        for (off, len) in mapped {
            for p in d.map.unmap(off, len) {
                let o = self.sb.fsb_to_byte(p.block).unwrap_or(0);
                self.tx.forget(o, p.len << self.g.blog);
                self.free_extent(p.block, p.len as u32, Owner::data(d.ino, p.off, false))?;
                iwrite::add_nblocks(self.inode(d.ino)?, -(p.len as i64))?;
            }
        }
        self.rebuild_small(d, parent, &ents)
    }

    /// Whether the hash index of a node directory is a root over a few leaves whose
    /// entries now fit in fewer (so a fresh layout makes the directory smaller).
    fn index_shrinks(&mut self, d: &Dir) -> FsResult<bool> {
        let lb = self.leaf_blk();
        let root = self.read_da(d, lb)?;
        if !root.node || root.level != 1 || root.ents.len() > 4 {
            return Ok(false);
        }
        let mut total = 0usize;
        for &(_, child) in &root.ents {
            total += self.read_da(d, u64::from(child))?.ents.len();
        }
        let cap = self.da_cap();
        Ok(total.div_ceil(cap * 3 / 4) < root.ents.len() || total <= cap / 2)
    }

    /// Node form back to leaf form when a single leaf remains and fits with the table.
    fn maybe_node_to_leaf(&mut self, d: &mut Dir) -> FsResult<()> {
        let lb = self.leaf_blk();
        let root = self.read_da(d, lb)?;
        if root.node {
            return Ok(());
        }
        let bests = self.read_free_index(d)?;
        if !self.leaf1_fits(root.ents.len(), bests.len()) {
            return Ok(());
        }
        // Drop the free index blocks, then write the leaf.
        let fb = self.free_blk();
        let frees: Vec<u64> = d
            .map
            .exts
            .iter()
            .filter(|e| e.end() > fb)
            .map(|e| e.off)
            .collect();
        for f in frees {
            let n = self.fsbs();
            let len = d.map.find(f).map_or(n, |e| e.len);
            let mut b = f;
            while b < f + len {
                self.dir_free_block(d, b)?;
                b += n;
            }
        }
        self.write_leaf1(d, &root.ents, &bests)?;
        self.finish_dir(d)?;
        self.maybe_leaf_to_block(d, bests.len())
    }

    /// Points `name` in `dir` at `ino` (type `ftype`); returns the inode it named.
    pub fn dir_replace(&mut self, dir: u64, name: &[u8], ino: u64, ftype: u8) -> FsResult<u64> {
        let mut d = self.load_dir(dir)?;
        let f = self
            .find(&d, name)?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "xfs: no such entry"))?;
        match self.form(&d)? {
            Form::Short | Form::Block => {
                let (parent, mut ents) = match self.form(&d)? {
                    Form::Short => self.sf_decode(dir)?,
                    _ => self.block_entries(&d)?,
                };
                if let Some(x) = ents.get_mut(f.off) {
                    x.ino = ino;
                    x.ftype = ftype;
                }
                self.rebuild_small(&mut d, parent, &ents)?;
            }
            Form::Leaf | Form::Node => {
                let dablk = f.db * self.fsbs();
                let mut b = self.dir_buf(&d, dablk)?.clone();
                let mut e = f.ent.clone();
                e.ino = ino;
                e.ftype = ftype;
                self.write_ent(&mut b, f.off, &e);
                self.dir_buf(&d, dablk)?.copy_from_slice(&b);
            }
        }
        Ok(f.ent.ino)
    }

    /// The `..` of directory `dir`.
    pub fn dir_dotdot(&mut self, dir: u64) -> FsResult<u64> {
        let d = self.load_dir(dir)?;
        match self.form(&d)? {
            Form::Short => Ok(self.sf_decode(dir)?.0),
            Form::Block => Ok(self.block_entries(&d)?.0),
            Form::Leaf | Form::Node => {
                let b = self.dir_buf(&d, 0)?.clone();
                Ok(self.entries_of(dir, &b, b.len())?.0)
            }
        }
    }

    /// Sets the `..` of directory `dir` to `parent`.
    pub fn dir_set_parent(&mut self, dir: u64, parent: u64) -> FsResult<()> {
        let mut d = self.load_dir(dir)?;
        match self.form(&d)? {
            Form::Short => {
                let (_, ents) = self.sf_decode(dir)?;
                self.rebuild_small(&mut d, parent, &ents)
            }
            Form::Block => {
                let (_, ents) = self.block_entries(&d)?;
                self.rebuild_small(&mut d, parent, &ents)
            }
            Form::Leaf | Form::Node => {
                let mut b = self.dir_buf(&d, 0)?.clone();
                let len = b.len();
                let regions = self.regions(dir, &b, len)?;
                let at = regions
                    .iter()
                    .filter(|r| r.2)
                    .map(|r| r.0)
                    .find(|&o| self.read_ent(&b, o).name == b"..")
                    .ok_or_else(|| corrupt(format_args!("directory {dir}: no .. entry")))?;
                let mut e = self.read_ent(&b, at);
                e.ino = parent;
                self.write_ent(&mut b, at, &e);
                self.dir_buf(&d, 0)?.copy_from_slice(&b);
                Ok(())
            }
        }
    }
}

/// A leaf-form directory's hash entries (hash, address) and best-free table.
type Leaf1 = (Vec<(u32, u32)>, Vec<u16>);

/// A leaf or node block of the hash index.
#[derive(Clone, Debug)]
struct DaBlk {
    node: bool,
    level: u16,
    forw: u32,
    back: u32,
    /// Leaves: (hash, address); nodes: (highest hash below, child block).
    ents: Vec<(u32, u32)>,
}

/// A found entry: itself, its data block and offset (shortform/block: its index in
/// the entry list), and for node directories the leaf holding its hash entry.
struct Found {
    ent: DEnt,
    db: u64,
    off: usize,
    leaf: Option<u64>,
}

fn empty_ent() -> DEnt {
    DEnt {
        name: Vec::new(),
        ino: 0,
        ftype: 0,
    }
}

fn pick_name(c: &Ctx, ents: &[DEnt], name: &[u8]) -> Option<usize> {
    ents.iter()
        .position(|e| e.name == name)
        .or_else(|| ents.iter().position(|e| c.same(&e.name, name)))
}

// Offsets of CRC fields, kept referenced for readers of this module.
const _: (usize, usize) = (DATA_CRC_OFF, DA_CRC_OFF);
