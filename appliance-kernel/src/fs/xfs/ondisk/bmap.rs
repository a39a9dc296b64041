//! Block mapping: extent records (`xfs_bmbt_rec`), the btree root kept in an inode's
//! data fork (`xfs_bmdr_block`) and long-format btree blocks (`BMAP` / `BMA3`).

use super::sb::Superblock;
use super::{be16, be32, be64, bytes, corrupt, uuid_at};
use crate::fs::FsResult;
use crate::fs::xfs::crc;
use alloc::vec::Vec;

pub const BMAP_MAGIC: u32 = 0x424D_4150; // "BMAP" (v4)
pub const BMA3_MAGIC: u32 = 0x424D_4133; // "BMA3" (v5)
/// "No block": the end of a sibling chain.
pub const NULL_FSBLOCK: u64 = u64::MAX;
/// File offsets (in blocks) are 54-bit.
pub const MAX_FILEOFF: u64 = (1 << 54) - 1;
/// Long-format btree block header sizes and the v5 CRC offset.
pub const HDR_V4: usize = 24;
pub const HDR_V5: usize = 72;
pub const BLOCK_CRC_OFF: usize = 64;
/// Deepest block map btree: with the smallest blocks and the most extents a fork can
/// count, XFS needs fewer levels than this.
pub const MAX_LEVELS: u16 = 10;

/// One mapping of file blocks `off..off+len` to filesystem blocks `block..block+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub off: u64,
    pub block: u64,
    pub len: u64,
    /// Preallocated, never written: reads as zeros.
    pub unwritten: bool,
}

impl Extent {
    /// First file block after the extent (no overflow once [`check_extent`] passed).
    pub fn end(&self) -> u64 {
        self.off.saturating_add(self.len)
    }
}

/// Decodes a 16-byte extent record: flag (1 bit), startoff (54), startblock (52),
/// blockcount (21).
pub fn decode_rec(rec: [u8; 16]) -> Extent {
    let l0 = u64::from_be_bytes(bytes(&rec, 0).unwrap_or([0; 8]));
    let l1 = u64::from_be_bytes(bytes(&rec, 8).unwrap_or([0; 8]));
    Extent {
        unwritten: l0 >> 63 != 0,
        off: (l0 & ((1 << 63) - 1)) >> 9,
        block: ((l0 & 0x1FF) << 43) | (l1 >> 21),
        len: l1 & ((1 << 21) - 1),
    }
}

/// Checks one extent of inode `ino`: not empty, inside the file offset range and inside
/// one allocation group.
pub fn check_extent(sb: &Superblock, ino: u64, e: &Extent) -> FsResult<()> {
    if e.len == 0 {
        return Err(corrupt(format_args!("inode {ino}: empty extent")));
    }
    if e.off
        .checked_add(e.len)
        .is_none_or(|end| end > MAX_FILEOFF + 1)
    {
        return Err(corrupt(format_args!(
            "inode {ino}: extent at file block {} is past the largest file offset",
            e.off
        )));
    }
    if !sb.extent_in_fs(e.block, e.len) {
        return Err(corrupt(format_args!(
            "inode {ino}: extent of {} blocks at block {} is outside the filesystem",
            e.len, e.block
        )));
    }
    Ok(())
}

/// Decodes `n` extent records from `buf` (an inode fork or a btree leaf's record area),
/// checking each and that they are sorted and do not overlap. `after` is the first file
/// block the first record may start at (the end of the previous leaf's last extent).
pub fn parse_records(
    sb: &Superblock,
    ino: u64,
    buf: &[u8],
    n: usize,
    after: u64,
) -> FsResult<Vec<Extent>> {
    let mut out = Vec::with_capacity(n);
    let mut next = after;
    for i in 0..n {
        let rec = i
            .checked_mul(16)
            .and_then(|o| bytes::<16>(buf, o))
            .ok_or_else(|| corrupt(format_args!("inode {ino}: extent list is truncated")))?;
        let e = decode_rec(rec);
        check_extent(sb, ino, &e)?;
        if e.off < next {
            return Err(corrupt(format_args!(
                "inode {ino}: extents out of order or overlapping at file block {}",
                e.off
            )));
        }
        next = e.end();
        out.push(e);
    }
    Ok(out)
}

/// The part of a btree node this reader walks: keys (first file block below each
/// child) and child block numbers.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub level: u16,
    pub keys: Vec<u64>,
    pub ptrs: Vec<u64>,
}

impl Node {
    /// Index of the child to descend into for file block `off`: the last key at or
    /// before it (the first child when `off` is before every key).
    pub fn child_for(&self, off: u64) -> usize {
        self.keys.partition_point(|&k| k <= off).saturating_sub(1)
    }
}

fn parse_keys_ptrs(
    sb: &Superblock,
    ino: u64,
    buf: &[u8],
    keys_at: usize,
    ptrs_at: usize,
    n: usize,
    level: u16,
) -> FsResult<Node> {
    let mut keys = Vec::with_capacity(n);
    let mut ptrs = Vec::with_capacity(n);
    for i in 0..n {
        let k = be64(buf, keys_at + i * 8);
        let p = be64(buf, ptrs_at + i * 8);
        if keys.last().is_some_and(|&last| k <= last) || k > MAX_FILEOFF {
            return Err(corrupt(format_args!(
                "inode {ino}: block map btree keys out of order"
            )));
        }
        if !sb.extent_in_fs(p, 1) {
            return Err(corrupt(format_args!(
                "inode {ino}: block map btree pointer {p} is outside the filesystem"
            )));
        }
        keys.push(k);
        ptrs.push(p);
    }
    Ok(Node { level, keys, ptrs })
}

/// Decodes the btree root held in a data fork of the btree format.
pub fn parse_root(sb: &Superblock, ino: u64, fork: &[u8]) -> FsResult<Node> {
    let level = be16(fork, 0);
    let numrecs = usize::from(be16(fork, 2));
    let maxrecs = fork.len().saturating_sub(4) / 16;
    if level == 0 || level > MAX_LEVELS {
        return Err(corrupt(format_args!(
            "inode {ino}: block map btree root level {level} is out of range"
        )));
    }
    if numrecs == 0 || numrecs > maxrecs {
        return Err(corrupt(format_args!(
            "inode {ino}: block map btree root has {numrecs} records (at most {maxrecs} fit)"
        )));
    }
    parse_keys_ptrs(sb, ino, fork, 4, 4 + maxrecs * 8, numrecs, level)
}

/// A decoded long-format btree block.
#[derive(Debug, Clone)]
pub enum BtreeBlock {
    Node { node: Node, right: u64 },
    Leaf { recs: Vec<Extent>, right: u64 },
}

/// Header size of long-format btree blocks on this filesystem.
pub fn block_hdr_len(sb: &Superblock) -> usize {
    if sb.version == 5 { HDR_V5 } else { HDR_V4 }
}

/// Decodes and checks block map btree block `fsb` of inode `ino`, which its parent says
/// is at `level`. `after` is the smallest file block a leaf record may start at.
pub fn parse_block(
    sb: &Superblock,
    ino: u64,
    fsb: u64,
    buf: &[u8],
    level: u16,
    after: u64,
) -> FsResult<BtreeBlock> {
    let bs = sb.block_size as usize;
    let buf = buf.get(..bs).ok_or_else(|| {
        corrupt(format_args!(
            "inode {ino}: block map block {fsb}: truncated"
        ))
    })?;
    let hdr = block_hdr_len(sb);
    let magic = be32(buf, 0);
    if sb.version == 5 {
        if magic != BMA3_MAGIC {
            return Err(corrupt(format_args!(
                "inode {ino}: block map block {fsb}: bad magic"
            )));
        }
        if !crc::verify(buf, BLOCK_CRC_OFF) {
            return Err(corrupt(format_args!(
                "inode {ino}: block map block {fsb}: bad CRC"
            )));
        }
        if Some(be64(buf, 24)) != sb.fsb_to_daddr(fsb)
            || uuid_at(buf, 40) != sb.meta_uuid
            || be64(buf, 56) != ino
        {
            return Err(corrupt(format_args!(
                "inode {ino}: block map block {fsb}: wrong location, UUID or owner"
            )));
        }
    } else if magic != BMAP_MAGIC {
        return Err(corrupt(format_args!(
            "inode {ino}: block map block {fsb}: bad magic"
        )));
    }
    let got_level = be16(buf, 4);
    if got_level != level {
        return Err(corrupt(format_args!(
            "inode {ino}: block map block {fsb}: level {got_level}, expected {level}"
        )));
    }
    let numrecs = usize::from(be16(buf, 6));
    let maxrecs = (bs - hdr) / 16;
    if numrecs == 0 || numrecs > maxrecs {
        return Err(corrupt(format_args!(
            "inode {ino}: block map block {fsb}: {numrecs} records (at most {maxrecs} fit)"
        )));
    }
    let right = be64(buf, 16);
    if right != NULL_FSBLOCK && (right == fsb || !sb.extent_in_fs(right, 1)) {
        return Err(corrupt(format_args!(
            "inode {ino}: block map block {fsb}: bad right sibling {right}"
        )));
    }
    if level == 0 {
        let area = buf.get(hdr..).unwrap_or(&[]);
        let recs = parse_records(sb, ino, area, numrecs, after)?;
        Ok(BtreeBlock::Leaf { recs, right })
    } else {
        let node = parse_keys_ptrs(sb, ino, buf, hdr, hdr + maxrecs * 8, numrecs, level)?;
        Ok(BtreeBlock::Node { node, right })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields() {
        // flag=1, startoff=0x123456789, startblock=0xABCDEF012345, blockcount=0x1FFFF.
        let off: u64 = 0x1_2345_6789;
        let block: u64 = 0xABCD_EF01_2345;
        let len: u64 = 0x1_FFFF;
        let l0 = (1u64 << 63) | (off << 9) | (block >> 43);
        let l1 = (block << 21) | len;
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&l0.to_be_bytes());
        rec[8..].copy_from_slice(&l1.to_be_bytes());
        assert_eq!(
            decode_rec(rec),
            Extent {
                off,
                block,
                len,
                unwritten: true
            }
        );
    }

    #[test]
    fn child_choice() {
        let n = Node {
            level: 1,
            keys: vec![0, 10, 20],
            ptrs: vec![1, 2, 3],
        };
        assert_eq!(n.child_for(0), 0);
        assert_eq!(n.child_for(9), 0);
        assert_eq!(n.child_for(10), 1);
        assert_eq!(n.child_for(25), 2);
        let n = Node {
            level: 1,
            keys: vec![5],
            ptrs: vec![1],
        };
        assert_eq!(n.child_for(0), 0);
    }
}
