//! Inode allocation: free inodes are found through the free inode btree (finobt) when
//! there is one, else the inode btree; when an AG has none, a new aligned chunk of 64
//! inodes is allocated and formatted, recorded in both btrees, the AGI and the
//! superblock. Freed inodes go back to their chunk (chunks are kept, as with the
//! `ikeep` mount option).

use super::btree::{Bt, Tree};
use super::iwrite;
use super::ondisk::{be16, be32, be64, corrupt, put16, put32, put64, u8_at};
use super::space::{OWN_INODES, Owner, SB_ICOUNT, SB_IFREE, Want};
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

const AGI_COUNT: usize = 0x10;
const AGI_FREECOUNT: usize = 0x1C;
const AGI_NEWINO: usize = 0x20;
/// Inode btree records examined looking for a free inode without a finobt.
const MAX_SCAN: usize = 1 << 16;

/// An inode btree record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IRec {
    start: u32,
    /// Bit i: inodes 4i..4i+4 are not allocated (sparse chunks).
    holemask: u16,
    count: u8,
    freecount: u32,
    free: u64,
}

impl IRec {
    fn parse(c: &Ctx, r: &[u8]) -> IRec {
        if c.g.spinodes {
            IRec {
                start: be32(r, 0),
                holemask: be16(r, 4),
                count: u8_at(r, 6),
                freecount: u32::from(u8_at(r, 7)),
                free: be64(r, 8),
            }
        } else {
            IRec {
                start: be32(r, 0),
                holemask: 0,
                count: 64,
                freecount: be32(r, 4),
                free: be64(r, 8),
            }
        }
    }

    fn encode(&self, c: &Ctx) -> Vec<u8> {
        let mut r = alloc::vec![0u8; 16];
        put32(&mut r, 0, self.start);
        if c.g.spinodes {
            put16(&mut r, 4, self.holemask);
            super::ondisk::put8(&mut r, 6, self.count);
            super::ondisk::put8(&mut r, 7, self.freecount as u8);
        } else {
            put32(&mut r, 4, self.freecount);
        }
        put64(&mut r, 8, self.free);
        r
    }

    /// Inodes that exist (not in a hole).
    fn present(&self) -> u64 {
        let mut m = 0u64;
        for i in 0..16 {
            if self.holemask & (1 << i) == 0 {
                m |= 0xF << (4 * i);
            }
        }
        m
    }

    fn check(&self, agno: u32) -> FsResult<()> {
        let free = (self.free & self.present()).count_ones();
        if free != self.freecount {
            return Err(corrupt(format_args!(
                "AG {agno} inode btree: record at inode {} is inconsistent",
                self.start
            )));
        }
        Ok(())
    }
}

fn key(agino: u32) -> Vec<u8> {
    agino.to_be_bytes().to_vec()
}

impl Ctx<'_> {
    /// Allocates an inode, preferring AG `agno`.
    pub fn alloc_inode(&mut self, agno: u32) -> FsResult<u64> {
        let n = self.g.agcount;
        for i in 0..n {
            let a = (agno + i) % n;
            if be32(self.agi(a)?, AGI_FREECOUNT) > 0 {
                return self.take_free_inode(a);
            }
        }
        // No free inode anywhere: a new chunk.
        let icount = be64(self.sbuf()?, SB_ICOUNT);
        if icount + 64 > self.g.maxicount {
            return Err(Error::new(
                ErrorKind::NoSpace,
                "xfs: the filesystem holds the most inodes it may (imaxpct)",
            ));
        }
        for i in 0..n {
            let a = (agno + i) % n;
            if self.new_chunk(a)? {
                return self.take_free_inode(a);
            }
        }
        // Free space too fragmented for a whole chunk: part of one (sparse inodes).
        if self.g.spinodes && self.g.spino_align > 0 && self.g.spino_align < self.g.chunk_blocks {
            for i in 0..n {
                let a = (agno + i) % n;
                if self.new_sparse_chunk(a)? {
                    return self.take_free_inode(a);
                }
            }
        }
        Err(Error::new(
            ErrorKind::NoSpace,
            "xfs: no space left for new inodes",
        ))
    }

    /// Takes a free inode of AG `agno` (which has some).
    fn take_free_inode(&mut self, agno: u32) -> FsResult<u64> {
        let ino_bt = Bt::new(Tree::Ino, agno);
        let rec = if self.g.finobt {
            let fino = Bt::new(Tree::Fino, agno);
            fino.find_ge(self, &key(0))?
                .map(|(_, r)| IRec::parse(self, &r))
        } else {
            let mut found = None;
            if let Some((mut path, mut r)) = ino_bt.find_ge(self, &key(0))? {
                for _ in 0..MAX_SCAN {
                    let ir = IRec::parse(self, &r);
                    if ir.freecount > 0 {
                        found = Some(ir);
                        break;
                    }
                    if !ino_bt.step(self, &mut path, true)? {
                        break;
                    }
                    r = ino_bt.rec_at(self, &path)?.unwrap_or_default();
                }
            }
            found
        };
        let Some(mut rec) = rec else {
            return Err(corrupt(format_args!(
                "AG {agno} AGI: free inodes counted but none recorded"
            )));
        };
        rec.check(agno)?;
        let avail = rec.free & rec.present();
        if avail == 0 {
            return Err(corrupt(format_args!(
                "AG {agno} free inode btree: record without free inodes"
            )));
        }
        let idx = avail.trailing_zeros();
        let agino = rec
            .start
            .checked_add(idx)
            .ok_or_else(|| corrupt(format_args!("AG {agno} inode btree: record out of range")))?;
        let old = rec;
        rec.free &= !(1u64 << idx);
        rec.freecount -= 1;
        let (path, cur) = ino_bt
            .find_eq(self, &key(rec.start))?
            .ok_or_else(|| corrupt(format_args!("AG {agno} inode btree: record missing")))?;
        if IRec::parse(self, &cur) != old {
            return Err(corrupt(format_args!("AG {agno}: inode btrees disagree")));
        }
        ino_bt.update(self, &path, &rec.encode(self))?;
        if self.g.finobt {
            let fino = Bt::new(Tree::Fino, agno);
            let (fpath, _) = fino.find_eq(self, &key(rec.start))?.ok_or_else(|| {
                corrupt(format_args!("AG {agno} free inode btree: record missing"))
            })?;
            if rec.freecount == 0 {
                fino.delete(self, &fpath)?;
            } else {
                fino.update(self, &fpath, &rec.encode(self))?;
            }
        }
        self.hdr_add(true, agno, AGI_FREECOUNT, -1)?;
        self.sb_add(SB_IFREE, -1)?;
        let ino = (u64::from(agno) << self.sb.agino_log()) | u64::from(agino);
        // The inode must be free on disk too.
        let raw = self.inode(ino)?;
        if iwrite::mode(raw) != 0 {
            return Err(corrupt(format_args!(
                "inode {ino} is marked free in the inode btree but is in use"
            )));
        }
        Ok(ino)
    }

    /// Allocates and records a new inode chunk in `agno`; false when it has no room.
    fn new_chunk(&mut self, agno: u32) -> FsResult<bool> {
        let blocks = self.g.chunk_blocks;
        let align = self.g.inoalign.max(blocks);
        let f = self.agf(agno)?;
        if be32(f, super::space::AGF_FREEBLKS) < blocks + 16 {
            return Ok(false);
        }
        let got = self.alloc(
            Want {
                agno,
                near: None,
                minlen: blocks,
                maxlen: blocks,
                align,
                data: false,
                same_ag: true,
            },
            Owner::special(OWN_INODES),
        )?;
        let Some((fsb, len)) = got else {
            return Ok(false);
        };
        let (_, agbno) = self.split_fsb(fsb)?;
        if len != blocks {
            return Err(corrupt("inode chunk allocation came back short"));
        }
        self.init_inode_blocks(agno, agbno, blocks)?;
        let start = agbno << self.g.inopb_log;
        if u64::from(start) >> 32 != 0 {
            return Err(corrupt("inode chunk outside the AG"));
        }
        let rec = IRec {
            start,
            holemask: 0,
            count: 64,
            freecount: 64,
            free: u64::MAX,
        };
        Bt::new(Tree::Ino, agno).insert(self, &rec.encode(self))?;
        if self.g.finobt {
            Bt::new(Tree::Fino, agno).insert(self, &rec.encode(self))?;
        }
        self.hdr_add(true, agno, AGI_COUNT, 64)?;
        self.hdr_add(true, agno, AGI_FREECOUNT, 64)?;
        put32(self.agi(agno)?, AGI_NEWINO, start);
        self.sb_add(SB_ICOUNT, 64)?;
        self.sb_add(SB_IFREE, 64)?;
        Ok(true)
    }

    /// Allocates part of an inode chunk (`spino_align` blocks) in `agno`, recorded in
    /// the chunk's inode btree record with the rest as holes; false when it has no room.
    fn new_sparse_chunk(&mut self, agno: u32) -> FsResult<bool> {
        let blocks = self.g.spino_align;
        let chunk = self.g.chunk_blocks;
        let align = self.g.inoalign.max(chunk);
        let got = self.alloc(
            Want {
                agno,
                near: None,
                minlen: blocks,
                maxlen: blocks,
                align: blocks,
                data: false,
                same_ag: true,
            },
            Owner::special(OWN_INODES),
        )?;
        let Some((fsb, len)) = got else {
            return Ok(false);
        };
        let (_, agbno) = self.split_fsb(fsb)?;
        let chunk_start = agbno / align * align;
        if len != blocks || chunk_start + chunk > self.ag_len(agno) {
            // (The change is dropped: nothing of it stays.)
            return Err(Error::new(
                ErrorKind::NoSpace,
                "xfs: no room for a sparse inode chunk",
            ));
        }
        self.init_inode_blocks(agno, agbno, blocks)?;
        let ipb = 1u32 << self.g.inopb_log;
        let start = chunk_start * ipb;
        let first = (agbno - chunk_start) * ipb; // inodes into the chunk
        let count = blocks * ipb;
        // Holemask bits (4 inodes each) of the new part.
        let mut bits = 0u16;
        for i in first / 4..(first + count) / 4 {
            bits |= 1 << i;
        }
        let ino_bt = Bt::new(Tree::Ino, agno);
        let old = ino_bt.find_eq(self, &key(start))?;
        let (rec, was_free) = match &old {
            Some((_, r)) => {
                let mut rec = IRec::parse(self, r);
                rec.check(agno)?;
                if rec.holemask & bits != bits {
                    return Err(corrupt(format_args!(
                        "AG {agno} inode btree: a new sparse chunk overlaps inodes in use"
                    )));
                }
                let was = rec.freecount;
                rec.holemask &= !bits;
                rec.count = rec.count.saturating_add(count as u8);
                rec.freecount += count;
                (rec, was)
            }
            None => (
                IRec {
                    start,
                    holemask: !bits,
                    count: count as u8,
                    freecount: count,
                    free: u64::MAX,
                },
                0,
            ),
        };
        match old {
            Some((path, _)) => ino_bt.update(self, &path, &rec.encode(self))?,
            None => ino_bt.insert(self, &rec.encode(self))?,
        }
        if self.g.finobt {
            let fino = Bt::new(Tree::Fino, agno);
            if was_free == 0 {
                fino.insert(self, &rec.encode(self))?;
            } else {
                let (fpath, _) = fino.find_eq(self, &key(start))?.ok_or_else(|| {
                    corrupt(format_args!("AG {agno} free inode btree: record missing"))
                })?;
                fino.update(self, &fpath, &rec.encode(self))?;
            }
        }
        self.hdr_add(true, agno, AGI_COUNT, i64::from(count))?;
        self.hdr_add(true, agno, AGI_FREECOUNT, i64::from(count))?;
        put32(self.agi(agno)?, AGI_NEWINO, agbno * ipb);
        self.sb_add(SB_ICOUNT, i64::from(count))?;
        self.sb_add(SB_IFREE, i64::from(count))?;
        Ok(true)
    }

    /// Returns inode `ino` to its chunk and formats it free.
    pub fn free_inode(&mut self, ino: u64) -> FsResult<()> {
        let agino_log = self.sb.agino_log();
        let agno = (ino >> agino_log) as u32;
        let agino = (ino & ((1 << agino_log) - 1)) as u32;
        let ino_bt = Bt::new(Tree::Ino, agno);
        let (path, r) = ino_bt
            .find_le(self, &key(agino))?
            .ok_or_else(|| corrupt(format_args!("inode {ino} is in no inode chunk")))?;
        let mut rec = IRec::parse(self, &r);
        rec.check(agno)?;
        if agino < rec.start || agino >= rec.start.saturating_add(64) {
            return Err(corrupt(format_args!("inode {ino} is in no inode chunk")));
        }
        let bit = 1u64 << (agino - rec.start);
        if rec.present() & bit == 0 || rec.free & bit != 0 {
            return Err(corrupt(format_args!("inode {ino} is already free")));
        }
        let was = rec.freecount;
        rec.free |= bit;
        rec.freecount += 1;
        ino_bt.update(self, &path, &rec.encode(self))?;
        if self.g.finobt {
            let fino = Bt::new(Tree::Fino, agno);
            if was == 0 {
                fino.insert(self, &rec.encode(self))?;
            } else {
                let (fpath, _) = fino.find_eq(self, &key(rec.start))?.ok_or_else(|| {
                    corrupt(format_args!("AG {agno} free inode btree: record missing"))
                })?;
                fino.update(self, &fpath, &rec.encode(self))?;
            }
        }
        self.hdr_add(true, agno, AGI_FREECOUNT, 1)?;
        self.sb_add(SB_IFREE, 1)?;
        let g = self.g;
        let raw = self.inode(ino)?;
        let igen = be32(raw, iwrite::DI_GEN).wrapping_add(1);
        iwrite::format_free(g, raw, ino, igen);
        Ok(())
    }
}
