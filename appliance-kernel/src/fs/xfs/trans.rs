//! Metadata transactions for the XFS writer: every metadata buffer a change reads or
//! modifies goes through a [`Tx`], which keeps the buffer's bytes as read (shared with
//! the read cache) and the working copy. Nothing reaches the device until the
//! transaction commits ([`super::journal`]): a failed operation is abandoned by
//! dropping its `Tx`, which leaves the filesystem exactly as it was.
//!
//! At commit, the changed 128-byte chunks of each buffer are found by comparing it with
//! the bytes it was read as, v5 buffers get the commit LSN and a fresh CRC (inode
//! buffers: each inode), and the journal logs the chunks before the buffers are written
//! in place.

use super::crc;
use super::io::Io;
use super::ondisk::{be16, be32, corrupt};
use crate::fs::FsResult;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Granularity of the journal's dirty bitmap (`XFS_BLF_CHUNK`).
pub const CHUNK: usize = 128;

/// Buffer types as the journal records them (`enum xfs_blft`).
pub mod blft {
    pub const UNKNOWN: u16 = 0;
    pub const BTREE: u16 = 4;
    pub const AGF: u16 = 5;
    pub const AGFL: u16 = 6;
    pub const AGI: u16 = 7;
    pub const DINO: u16 = 8;
    pub const SYMLINK: u16 = 9;
    pub const DIR_BLOCK: u16 = 10;
    pub const DIR_DATA: u16 = 11;
    pub const DIR_FREE: u16 = 12;
    pub const DIR_LEAF1: u16 = 13;
    pub const DIR_LEAFN: u16 = 14;
    pub const DA_NODE: u16 = 15;
    pub const ATTR_LEAF: u16 = 16;
    pub const SB: u16 = 18;
}

/// What a buffer holds, where that cannot be told from its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Identified by its magic number at commit.
    Meta,
    /// A run of inodes (each stamped on its own).
    Inodes,
    /// The AG free list (v4 AGFLs have no header).
    Agfl,
}

/// One buffer of the transaction.
pub struct Buf {
    pub data: Vec<u8>,
    /// The bytes as read (`None`: a new buffer, every byte of it is new).
    orig: Option<Rc<Vec<u8>>>,
    kind: Kind,
}

/// A buffer ready to be logged and written: its address, type flags, bytes, and the
/// bitmap of changed chunks.
pub struct Item {
    pub off: u64,
    pub blft: u16,
    pub data: Vec<u8>,
    pub map: Vec<u32>,
}

/// The buffers of one transaction, by byte offset on the device.
#[derive(Default)]
pub struct Tx {
    bufs: BTreeMap<u64, Buf>,
    /// Extents (filesystem block, length) freed in this transaction: they must not be
    /// written as file data before it commits (a crash would hand them back to their
    /// old owner with the new bytes).
    pub busy: Vec<(u64, u64)>,
    /// Inodes checked (or created) in this transaction.
    pub inode_ok: BTreeSet<u64>,
}

fn internal(msg: &str) -> Error {
    Error::new(ErrorKind::Internal, alloc::format!("xfs: {msg}"))
}

impl Tx {
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    fn check_shape(&self, off: u64, len: usize) -> FsResult<()> {
        // Buffers never overlap: the same bytes always travel in the same buffer.
        if let Some((&o, b)) = self
            .bufs
            .range(..off.saturating_add(len as u64))
            .next_back()
        {
            let end = o + b.data.len() as u64;
            if o == off && b.data.len() == len {
                return Ok(());
            }
            if end > off {
                return Err(internal("overlapping metadata buffers"));
            }
        }
        Ok(())
    }

    /// The working copy of the buffer at `off` (read on first use).
    pub fn get(&mut self, io: &mut Io, off: u64, len: usize, kind: Kind) -> FsResult<&mut Vec<u8>> {
        self.load(io, off, len, kind, None::<fn(&[u8], bool) -> FsResult<()>>)
    }

    /// As [`Tx::get`], running `check` over the bytes when the transaction first uses
    /// them (not later, when it may have changed them). `check`'s second argument: the
    /// block is trusted (checked before, or written by skiff since): checksums need
    /// not be computed again, the structure still is checked.
    pub fn get_checked(
        &mut self,
        io: &mut Io,
        off: u64,
        len: usize,
        kind: Kind,
        check: impl FnOnce(&[u8], bool) -> FsResult<()>,
    ) -> FsResult<&mut Vec<u8>> {
        self.load(io, off, len, kind, Some(check))
    }

    fn load(
        &mut self,
        io: &mut Io,
        off: u64,
        len: usize,
        kind: Kind,
        check: Option<impl FnOnce(&[u8], bool) -> FsResult<()>>,
    ) -> FsResult<&mut Vec<u8>> {
        if !self.bufs.contains_key(&off) {
            self.check_shape(off, len)?;
            let (rc, trusted) = io.meta_trusted(off, len)?;
            if let Some(check) = check {
                check(&rc, trusted)?;
                io.trust(off, len);
            }
            let data = (*rc).clone();
            self.bufs.insert(
                off,
                Buf {
                    data,
                    orig: Some(rc),
                    kind,
                },
            );
        }
        let b = self
            .bufs
            .get_mut(&off)
            .ok_or_else(|| internal("buffer vanished"))?;
        if b.data.len() != len {
            return Err(internal("metadata buffer read with two sizes"));
        }
        Ok(&mut b.data)
    }

    /// A new, zeroed buffer at `off` (a block just allocated for metadata): its old
    /// contents are never read.
    pub fn new_buf(&mut self, off: u64, len: usize, kind: Kind) -> FsResult<&mut Vec<u8>> {
        if self.bufs.get(&off).is_some_and(|b| b.data.len() != len) {
            self.bufs.remove(&off);
        }
        self.check_shape(off, len)?;
        let b = self.bufs.entry(off).or_insert(Buf {
            data: Vec::new(),
            orig: None,
            kind,
        });
        b.data = vec![0u8; len];
        b.orig = None;
        b.kind = kind;
        Ok(&mut b.data)
    }

    /// Forgets the buffers inside `off..off+len` (blocks being freed): their last
    /// contents need not reach the disk.
    pub fn forget(&mut self, off: u64, len: u64) {
        let keys: Vec<u64> = self
            .bufs
            .range(off..off.saturating_add(len))
            .map(|(&k, _)| k)
            .collect();
        for k in keys {
            self.bufs.remove(&k);
        }
    }

    /// The buffers that changed, stamped for commit at `lsn` (v5) and with their
    /// changed-chunk bitmaps. The transaction is emptied.
    pub fn take_items(&mut self, v5: bool, lsn: u64, isize: usize) -> FsResult<Vec<Item>> {
        let bufs = core::mem::take(&mut self.bufs);
        self.busy.clear();
        self.inode_ok.clear();
        let mut out = Vec::new();
        for (off, mut b) in bufs {
            if let Some(o) = &b.orig
                && **o == b.data
            {
                continue;
            }
            let blft = if v5 {
                stamp(
                    &mut b.data,
                    b.orig.as_deref().map(|v| v.as_slice()),
                    b.kind,
                    lsn,
                    isize,
                )?
            } else {
                buf_type(&b.data, b.kind)
            };
            let map = dirty_map(&b.data, b.orig.as_deref().map(|v| v.as_slice()));
            out.push(Item {
                off,
                blft,
                data: b.data,
                map,
            });
        }
        Ok(out)
    }
}

/// The bitmap of `CHUNK`-byte chunks of `data` that differ from `orig`.
pub fn dirty_map(data: &[u8], orig: Option<&[u8]>) -> Vec<u32> {
    let chunks = data.len().div_ceil(CHUNK);
    let mut map = vec![0u32; chunks.div_ceil(32)];
    for (i, c) in data.chunks(CHUNK).enumerate() {
        let changed = match orig {
            None => true,
            Some(o) => o.get(i * CHUNK..i * CHUNK + c.len()) != Some(c),
        };
        if changed && let Some(w) = map.get_mut(i / 32) {
            *w |= 1 << (i % 32);
        }
    }
    map
}

fn put_be64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off + 8) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn put_le32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Sets the LSN field at `lsn_off` and recomputes the CRC at `crc_off` over `b`.
fn seal(b: &mut [u8], lsn_off: usize, crc_off: usize, lsn: u64) {
    put_be64(b, lsn_off, lsn);
    let c = crc::xfs_cksum(b, crc_off);
    put_le32(b, crc_off, c);
}

/// Recomputes the CRC at `crc_off` without touching any LSN (structures with no LSN
/// field, and stamping outside a commit).
pub fn reseal(b: &mut [u8], crc_off: usize) {
    let c = crc::xfs_cksum(b, crc_off);
    put_le32(b, crc_off, c);
}

/// Where a v5 structure keeps its LSN and CRC, and its journal type, by magic number.
fn layout(b: &[u8]) -> Option<(usize, usize, u16)> {
    let m32 = be32(b, 0);
    let m16 = be16(b, 8);
    Some(match m32 {
        0x5846_5342 => (0xF0, 0xE0, blft::SB),    // XFSB
        0x5841_4746 => (0xD0, 0xD8, blft::AGF),   // XAGF
        0x5841_4749 => (0x140, 0x138, blft::AGI), // XAGI
        0x5841_464C => (0x18, 0x20, blft::AGFL),  // XAFL
        0x4142_3342 | 0x4142_3343 | 0x4941_4233 | 0x4649_4233 | 0x524D_4233 | 0x5233_4643 => {
            (24, 52, blft::BTREE) // AB3B AB3C IAB3 FIB3 RMB3 R3FC
        }
        0x424D_4133 => (32, 64, blft::BTREE),    // BMA3
        0x5844_4233 => (16, 4, blft::DIR_BLOCK), // XDB3
        0x5844_4433 => (16, 4, blft::DIR_DATA),  // XDD3
        0x5844_4633 => (16, 4, blft::DIR_FREE),  // XDF3
        0x5853_4C4D => (48, 12, blft::SYMLINK),  // XSLM
        _ => match m16 {
            0x3DF1 => (24, 12, blft::DIR_LEAF1),
            0x3DFF => (24, 12, blft::DIR_LEAFN),
            0x3EBE => (24, 12, blft::DA_NODE),
            0x3BEE => (24, 12, blft::ATTR_LEAF),
            _ => return None,
        },
    })
}

/// Stamps a v5 buffer for commit at `lsn` (`orig`: its bytes as read; inode buffers
/// stamp only the inodes that changed); returns its journal type.
fn stamp(b: &mut [u8], orig: Option<&[u8]>, kind: Kind, lsn: u64, isize: usize) -> FsResult<u16> {
    match kind {
        Kind::Inodes => {
            if isize == 0 || !b.len().is_multiple_of(isize) {
                return Err(internal("inode buffer of odd size"));
            }
            for (i, ino) in b.chunks_mut(isize).enumerate() {
                let same = orig.is_some_and(|o| o.get(i * isize..(i + 1) * isize) == Some(&*ino));
                if !same && be16(ino, 0) == super::ondisk::inode::MAGIC {
                    seal(ino, 0x70, super::ondisk::inode::CRC_OFF, lsn);
                }
            }
            Ok(blft::DINO)
        }
        Kind::Agfl | Kind::Meta => match layout(b) {
            Some((l, c, t)) => {
                seal(b, l, c, lsn);
                Ok(t)
            }
            None => Err(corrupt(
                "a metadata block about to be written has no known magic",
            )),
        },
    }
}

/// The journal type of a v4 buffer (no CRCs to stamp).
fn buf_type(b: &[u8], kind: Kind) -> u16 {
    match kind {
        Kind::Inodes => blft::DINO,
        Kind::Agfl => blft::AGFL,
        Kind::Meta => match (be32(b, 0), be16(b, 8)) {
            (0x5846_5342, _) => blft::SB,
            (0x5841_4746, _) => blft::AGF,
            (0x5841_4749, _) => blft::AGI,
            (0x4142_5442 | 0x4142_5443 | 0x4941_4254 | 0x4649_4254 | 0x424D_4150, _) => blft::BTREE,
            (0x5844_3242, _) => blft::DIR_BLOCK,
            (0x5844_3244, _) => blft::DIR_DATA,
            (0x5844_3246, _) => blft::DIR_FREE,
            (_, 0xD2F1) => blft::DIR_LEAF1,
            (_, 0xD2FF) => blft::DIR_LEAFN,
            (_, 0xFEBE) => blft::DA_NODE,
            (_, 0xFBEE) => blft::ATTR_LEAF,
            _ => blft::UNKNOWN,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_maps() {
        let orig = vec![0u8; 4096];
        let mut d = orig.clone();
        assert_eq!(dirty_map(&d, Some(&orig)), vec![0]);
        d[0] = 1;
        d[129] = 1;
        d[4095] = 1;
        assert_eq!(dirty_map(&d, Some(&orig)), vec![0x8000_0003]);
        assert_eq!(dirty_map(&d, None), vec![u32::MAX]);
        let big = vec![0u8; 8192];
        assert_eq!(dirty_map(&big, None), vec![u32::MAX, u32::MAX]);
    }
}
