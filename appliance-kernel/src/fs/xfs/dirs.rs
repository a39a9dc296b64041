//! Directory listing and name lookup over every directory form: shortform (in the
//! inode), single block, leaf and node (hash btree), with the data fork in extents or
//! btree format. Lookups in leaf and node directories follow the hash index; block and
//! shortform directories are small enough to scan.

use super::XfsFs;
use super::ondisk::corrupt;
use super::ondisk::dir::{
    self, DaBlock, DataBlock, FREE_OFFSET, LEAF_OFFSET, LeafEntry, MAX_DA_DEPTH, RawEntry,
};
use super::ondisk::inode::{FMT_LOCAL, Inode};
use crate::fs::FsResult;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Entries one directory may list at most (a reply must stay affordable).
pub const MAX_DIR_ENTRIES: usize = 1 << 20;
/// Leaf blocks one lookup may step through (entries with the same hash spanning leaves).
const MAX_LEAF_HOPS: usize = 64;
/// Data blocks one listing reads at most: a directory at `MAX_DIR_ENTRIES` of the
/// longest names needs ~70k 4 KiB blocks; a corrupt map must not make us read 32 GiB.
const MAX_DATA_BLOCKS: u64 = 1 << 18;

/// Directory forms remembered at most.
const MAX_FORMS: usize = 4096;
/// Entries (data entries plus hash index entries) of parsed blocks kept for lookups.
const PARSED_ENTRIES: usize = 16384;

/// Directory blocks parsed (and CRC-checked) for lookups, by (directory, block), so
/// walking the same paths again does not parse and checksum them again.
#[derive(Default)]
pub struct Parsed {
    data: BTreeMap<(u64, u64), Rc<DataBlock>>,
    da: BTreeMap<(u64, u64), Rc<DaBlock>>,
    entries: usize,
}

impl Parsed {
    fn make_room(&mut self, n: usize) {
        if self.entries + n > PARSED_ENTRIES {
            self.data.clear();
            self.da.clear();
            self.entries = 0;
        }
        self.entries += n;
    }
}

/// How a directory is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirForm {
    Short,
    Block,
    /// Data blocks plus a leaf (hash index) block or a node btree.
    Multi,
}

impl XfsFs {
    fn leaf_dablk(&self) -> u64 {
        LEAF_OFFSET >> self.sb.block_log
    }

    fn dirblk_fsbs(&self) -> u64 {
        1 << self.sb.dir_blk_log
    }

    /// The form of directory `dir` (remembered per inode: finding it walks the
    /// right edge of a btree-format map).
    pub(super) fn dir_form(&mut self, dir: &Inode) -> FsResult<DirForm> {
        if dir.format == FMT_LOCAL {
            return Ok(DirForm::Short);
        }
        if let Some(f) = self.forms.get(&dir.ino) {
            return Ok(*f);
        }
        let f = self.find_dir_form(dir)?;
        if self.forms.len() >= MAX_FORMS {
            self.forms.clear();
        }
        self.forms.insert(dir.ino, f);
        Ok(f)
    }

    fn find_dir_form(&mut self, dir: &Inode) -> FsResult<DirForm> {
        let end = self.last_mapped(dir)?;
        if end == self.dirblk_fsbs() {
            if dir.size != u64::from(self.sb.dir_blk_size()) {
                return Err(corrupt(format_args!(
                    "directory {}: single-block directory of size {}",
                    dir.ino, dir.size
                )));
            }
            return Ok(DirForm::Block);
        }
        if end <= self.leaf_dablk() {
            return Err(corrupt(format_args!(
                "directory {}: several data blocks but no hash index",
                dir.ino
            )));
        }
        Ok(DirForm::Multi)
    }

    /// Directory block `dablk` (a file block number, aligned to the directory block
    /// size) with its 512-byte address, or `None` when it is a hole.
    pub(super) fn dir_block(
        &mut self,
        dir: &Inode,
        dablk: u64,
    ) -> FsResult<Option<(Rc<Vec<u8>>, u64)>> {
        let ino = dir.ino;
        let n = self.dirblk_fsbs();
        let bsize = self.sb.dir_blk_size() as usize;
        let w = self.extents(dir, dablk, dablk + n)?;
        let pieces: Vec<_> = w.overlapping(dablk, dablk + n).copied().collect();
        let Some(first) = pieces.first() else {
            return Ok(None);
        };
        if pieces.iter().any(|e| e.unwritten) {
            return Err(corrupt(format_args!(
                "directory {ino}: unwritten extent in a directory"
            )));
        }
        let bad = || {
            corrupt(format_args!(
                "directory {ino}: bad block map for block {dablk}"
            ))
        };
        let start = self
            .sb
            .fsb_to_byte(first.block + (dablk.saturating_sub(first.off)))
            .ok_or_else(bad)?;
        let daddr = start >> 9;
        if first.off <= dablk && first.end() >= dablk + n {
            // The usual case: the whole directory block lies in one extent.
            self.check_ag_of_fsb(first.block)?;
            return Ok(Some((self.io.meta(start, bsize)?, daddr)));
        }
        // A directory block split across extents: assemble it (not cached).
        let mut buf = alloc::vec![0u8; bsize];
        let mut covered = 0u64;
        for e in &pieces {
            let a = e.off.max(dablk);
            let b = e.end().min(dablk + n);
            if a != dablk + covered {
                return Err(corrupt(format_args!(
                    "directory {ino}: block {dablk} is partly unmapped"
                )));
            }
            self.check_ag_of_fsb(e.block)?;
            let src = self.sb.fsb_to_byte(e.block + (a - e.off)).ok_or_else(bad)?;
            let at = ((a - dablk) << self.sb.block_log) as usize;
            let len = ((b - a) << self.sb.block_log) as usize;
            let dst = buf.get_mut(at..at + len).ok_or_else(bad)?;
            self.io.read_into(src, dst)?;
            covered += b - a;
        }
        if covered != n {
            return Err(corrupt(format_args!(
                "directory {ino}: block {dablk} is partly unmapped"
            )));
        }
        Ok(Some((Rc::new(buf), daddr)))
    }

    /// The entries of directory `dir`, without `.` and `..`, in on-disk order.
    pub(super) fn dir_entries(&mut self, dir: &Inode) -> FsResult<Vec<RawEntry>> {
        let ino = dir.ino;
        let mut out = match self.dir_form(dir)? {
            DirForm::Short => self.shortform(dir)?.entries,
            DirForm::Block => {
                let b = self.data_block(dir, 0, true)?;
                b.entries.iter().map(|(_, e)| e.clone()).collect()
            }
            DirForm::Multi => self.multi_entries(dir)?,
        };
        out.retain(|e| e.name != b"." && e.name != b"..");
        if let Some(e) = out.iter().find(|e| e.ino == ino) {
            return Err(corrupt(format_args!(
                "directory {ino} contains itself as {:?}",
                alloc::string::String::from_utf8_lossy(&e.name)
            )));
        }
        Ok(out)
    }

    fn shortform(&self, dir: &Inode) -> FsResult<dir::Shortform> {
        let len = usize::try_from(dir.size).unwrap_or(usize::MAX);
        let data = dir
            .fork
            .get(..len)
            .ok_or_else(|| corrupt(format_args!("directory {}: shortform overruns", dir.ino)))?;
        dir::parse_shortform(&self.sb, dir.ino, data)
    }

    /// Entries of every data block of a leaf or node directory.
    fn multi_entries(&mut self, dir: &Inode) -> FsResult<Vec<RawEntry>> {
        let n = self.dirblk_fsbs();
        // The data blocks lie below the directory's size (and the leaf offset).
        let limit = self
            .leaf_dablk()
            .min(dir.size.div_ceil(u64::from(self.sb.block_size)));
        let mut out = Vec::new();
        let mut pos = 0u64;
        let mut blocks = 0u64;
        while pos < limit {
            let w = self.extents(dir, pos, pos + n)?;
            let Some(e) = w.next_from(pos).copied() else {
                if w.hi >= limit {
                    break;
                }
                // Always advances: the window covered `pos`.
                pos = w.hi.max(pos + 1);
                continue;
            };
            // The first directory block at or after both `pos` and the extent's start.
            let start = pos.max(e.off).div_ceil(n) * n;
            if start >= limit {
                break;
            }
            if start >= e.end() {
                pos = start;
                continue;
            }
            blocks += 1;
            if blocks > MAX_DATA_BLOCKS {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    alloc::format!(
                        "xfs: directory {} has more than {MAX_DATA_BLOCKS} data blocks",
                        dir.ino
                    ),
                ));
            }
            if let Some((buf, daddr)) = self.dir_block(dir, start)? {
                let b = dir::parse_data_block(&self.sb, dir.ino, &buf, daddr, false)?;
                if out.len() + b.entries.len() > MAX_DIR_ENTRIES {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        alloc::format!(
                            "xfs: directory {} has more than {MAX_DIR_ENTRIES} entries",
                            dir.ino
                        ),
                    ));
                }
                out.extend(b.entries.into_iter().map(|(_, e)| e));
            }
            pos = start + n;
        }
        Ok(out)
    }

    /// Names equal for this filesystem (ASCII case folded with `-n version=ci`).
    fn same_name(&self, a: &[u8], b: &[u8]) -> bool {
        a == b || (self.sb.ascii_ci && a.eq_ignore_ascii_case(b))
    }

    /// Picks the exact match, else (case-insensitive filesystems) a folded match.
    fn pick<'a>(&self, name: &[u8], cands: impl Iterator<Item = &'a RawEntry>) -> Option<u64> {
        let mut folded = None;
        for e in cands {
            if e.name == name {
                return Some(e.ino);
            }
            if folded.is_none() && self.same_name(&e.name, name) {
                folded = Some(e.ino);
            }
        }
        folded
    }

    /// The inode number `name` maps to in directory `dir`.
    pub(super) fn dir_lookup(&mut self, dir: &Inode, name: &[u8]) -> FsResult<Option<u64>> {
        let ino = dir.ino;
        let found = match self.dir_form(dir)? {
            DirForm::Short => {
                let sf = self.shortform(dir)?;
                self.pick(name, sf.entries.iter())
            }
            DirForm::Block => {
                let b = self.data_block(dir, 0, true)?;
                self.pick(name, b.entries.iter().map(|(_, e)| e))
            }
            DirForm::Multi => self.hashed_lookup(dir, name)?,
        };
        if found == Some(ino) {
            return Err(corrupt(format_args!(
                "directory {ino} contains itself as {:?}",
                alloc::string::String::from_utf8_lossy(name)
            )));
        }
        Ok(found)
    }

    fn hash(&self, name: &[u8]) -> u32 {
        if self.sb.ascii_ci {
            dir::hashname_ci(name)
        } else {
            dir::hashname(name)
        }
    }

    /// Lookup through the leaf (or node btree) hash index of a leaf/node directory.
    fn hashed_lookup(&mut self, dir: &Inode, name: &[u8]) -> FsResult<Option<u64>> {
        let ino = dir.ino;
        let hash = self.hash(name);
        let leaf_first = self.leaf_dablk();
        let leaf_end = FREE_OFFSET >> self.sb.block_log;
        let mut dablk = leaf_first;
        let mut depth = 0usize;
        let mut max_level = u16::MAX;
        let mut hops = 0usize;
        let mut cands: Vec<RawEntry> = Vec::new();
        loop {
            if !(leaf_first..leaf_end).contains(&dablk) || !dablk.is_multiple_of(self.dirblk_fsbs())
            {
                return Err(corrupt(format_args!(
                    "directory {ino}: hash index points to block {dablk}"
                )));
            }
            let da = self.da_block(dir, dablk)?;
            match *da {
                DaBlock::Node { level, ref entries } => {
                    depth += 1;
                    if level >= max_level || depth > MAX_DA_DEPTH || hops > 0 {
                        return Err(corrupt(format_args!(
                            "directory {ino}: hash btree levels out of order"
                        )));
                    }
                    max_level = level;
                    // The first child whose highest hash reaches ours.
                    let i = entries
                        .partition_point(|&(h, _)| h < hash)
                        .min(entries.len().saturating_sub(1));
                    let (_, child) = entries.get(i).copied().unwrap_or((0, 0));
                    dablk = u64::from(child);
                }
                DaBlock::Leaf {
                    ref entries,
                    forw,
                    single,
                } => {
                    if max_level != u16::MAX && max_level != 1 {
                        return Err(corrupt(format_args!(
                            "directory {ino}: hash btree leaf below level {max_level}"
                        )));
                    }
                    let start = entries.partition_point(|e| e.hash < hash);
                    let matching: Vec<LeafEntry> = entries
                        .get(start..)
                        .unwrap_or(&[])
                        .iter()
                        .take_while(|e| e.hash == hash)
                        .copied()
                        .collect();
                    for e in &matching {
                        if e.addr == 0 {
                            continue; // stale
                        }
                        if let Some(c) = self.entry_at(dir, e.addr)?
                            && self.same_name(&c.name, name)
                        {
                            cands.push(c);
                        }
                    }
                    // Entries with our hash may continue in the next leaf.
                    let runs_on = entries.last().is_some_and(|e| e.hash == hash);
                    if single || forw == 0 || !runs_on {
                        break;
                    }
                    hops += 1;
                    if hops > MAX_LEAF_HOPS {
                        return Err(corrupt(format_args!(
                            "directory {ino}: too many leaves share one hash"
                        )));
                    }
                    dablk = u64::from(forw);
                }
            }
        }
        Ok(self.pick(name, cands.iter()))
    }

    /// The data entry at `addr` (8-byte units of the directory's address space).
    fn entry_at(&mut self, dir: &Inode, addr: u32) -> FsResult<Option<RawEntry>> {
        let ino = dir.ino;
        let byte = u64::from(addr) * 8;
        let bsize = u64::from(self.sb.dir_blk_size());
        if byte >= LEAF_OFFSET {
            return Err(corrupt(format_args!(
                "directory {ino}: hash index points outside the data blocks"
            )));
        }
        let dablk = (byte / bsize) << self.sb.dir_blk_log;
        let within = (byte % bsize) as u32;
        let b = self.data_block(dir, dablk, false)?;
        let i = b.entries.partition_point(|(off, _)| *off < within);
        match b.entries.get(i) {
            Some((off, e)) if *off == within => Ok(Some(e.clone())),
            _ => Err(corrupt(format_args!(
                "directory {ino}: hash index points between entries"
            ))),
        }
    }

    /// Data block `dablk` of `dir`, parsed (through the lookup cache).
    fn data_block(&mut self, dir: &Inode, dablk: u64, block_form: bool) -> FsResult<Rc<DataBlock>> {
        let ino = dir.ino;
        if let Some(b) = self.parsed.data.get(&(ino, dablk)) {
            return Ok(b.clone());
        }
        let (buf, daddr) = self
            .dir_block(dir, dablk)?
            .ok_or_else(|| corrupt(format_args!("directory {ino}: block {dablk} is not mapped")))?;
        let b = Rc::new(dir::parse_data_block(
            &self.sb, ino, &buf, daddr, block_form,
        )?);
        self.parsed.make_room(b.entries.len() + b.leaf.len());
        self.parsed.data.insert((ino, dablk), b.clone());
        Ok(b)
    }

    /// Leaf or node block `dablk` of `dir`, parsed (through the lookup cache).
    fn da_block(&mut self, dir: &Inode, dablk: u64) -> FsResult<Rc<DaBlock>> {
        let ino = dir.ino;
        if let Some(b) = self.parsed.da.get(&(ino, dablk)) {
            return Ok(b.clone());
        }
        let (buf, daddr) = self.dir_block(dir, dablk)?.ok_or_else(|| {
            corrupt(format_args!(
                "directory {ino}: hash index block {dablk} is a hole"
            ))
        })?;
        let b = Rc::new(dir::parse_da_block(&self.sb, ino, &buf, daddr)?);
        let n = match &*b {
            DaBlock::Leaf { entries, .. } => entries.len(),
            DaBlock::Node { entries, .. } => entries.len(),
        };
        self.parsed.make_room(n);
        self.parsed.da.insert((ino, dablk), b.clone());
        Ok(b)
    }
}
