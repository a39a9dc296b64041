//! The journal's on-disk format: a circular run of 512-byte basic blocks. Every block
//! written in a pass over the log starts with that pass's cycle number (the first word
//! of each data block is saved in its record header and replaced by the cycle), and
//! each log record starts with a header block (`0xFEEDBABE`) followed, for large v2
//! records, by extension header blocks, then its data. An unmount (clean shutdown)
//! record is a record with a single operation flagged `XLOG_UNMOUNT_TRANS`.

use super::{be32, be64, uuid_at};
use crate::fs::xfs::crc;

/// Basic block: the log's addressing unit.
pub const BBSIZE: usize = 512;
pub const HEADER_MAGIC: u32 = 0xFEED_BABE;
/// Data bytes one header (or extension header) block describes.
pub const HEADER_CYCLE_SIZE: usize = 32768;
/// `sizeof(struct xlog_rec_header)`: the bytes its CRC covers.
pub const REC_HDR_LEN: usize = 328;
/// `sizeof(struct xlog_rec_ext_header)`.
pub const EXT_HDR_LEN: usize = 260;
pub const CRC_OFF: usize = 32;
/// `oh_flags` of an operation header: this is an unmount record.
pub const UNMOUNT_TRANS: u8 = 0x20;
/// Largest record data XFS writes (256 KiB log buffers).
pub const MAX_RECORD_BYTES: u32 = 256 * 1024;
const VERSION_1: u32 = 1;
const VERSION_2: u32 = 2;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecHeader {
    pub cycle: u32,
    pub version: u32,
    /// Bytes of record data after the header blocks.
    pub len: u32,
    pub lsn: u64,
    pub tail_lsn: u64,
    pub crc: u32,
    pub num_logops: u32,
    pub uuid: [u8; 16],
    /// Log buffer size (v2 logs): decides how many header blocks the record has.
    pub size: u32,
}

/// The cycle number a basic block was written in: its first word, or for a record
/// header block (whose first word is the magic) its `h_cycle`. mkfs fills the unused
/// log with cycle-0 headers, so "never written" reads as cycle 0 either way.
pub fn cycle_of(bb: &[u8]) -> u32 {
    match be32(bb, 0) {
        HEADER_MAGIC => be32(bb, 4),
        c => c,
    }
}

/// Decodes a record header block, `None` when `bb` does not start one or its fields
/// are out of range.
pub fn parse_rec_header(bb: &[u8]) -> Option<RecHeader> {
    if bb.len() < BBSIZE || be32(bb, 0) != HEADER_MAGIC {
        return None;
    }
    let h = RecHeader {
        cycle: be32(bb, 4),
        version: be32(bb, 8),
        len: be32(bb, 12),
        lsn: be64(bb, 16),
        tail_lsn: be64(bb, 24),
        crc: bytes_le32(bb, CRC_OFF),
        num_logops: be32(bb, 40),
        uuid: uuid_at(bb, 304),
        size: be32(bb, 320),
    };
    let version_ok = h.version == VERSION_1 || h.version == VERSION_2;
    let size_ok = h.version == VERSION_1 || h.size <= MAX_RECORD_BYTES;
    if !version_ok || !size_ok || h.len > MAX_RECORD_BYTES || h.cycle == 0 {
        return None;
    }
    Some(h)
}

fn bytes_le32(b: &[u8], off: usize) -> u32 {
    super::bytes(b, off).map_or(0, u32::from_le_bytes)
}

/// Header blocks of a record (1, or one per 32 KiB of log buffer for big v2 records).
pub fn header_blocks(h: &RecHeader, logv2: bool) -> u32 {
    if logv2 && h.version == VERSION_2 && h.size as usize > HEADER_CYCLE_SIZE {
        (h.size as usize).div_ceil(HEADER_CYCLE_SIZE) as u32
    } else {
        1
    }
}

/// Basic blocks of record data.
pub fn data_blocks(h: &RecHeader) -> u32 {
    (h.len as usize).div_ceil(BBSIZE) as u32
}

/// The CRC XFS stores in a record header: over the header (its CRC field as zero), the
/// extension headers and the data as they lie on disk. `headers` is the header block
/// followed by the extension header blocks; `data` is the record data.
pub fn record_crc(headers: &[u8], data: &[u8]) -> u32 {
    let first = headers.get(..REC_HDR_LEN).unwrap_or(headers);
    let c = crc::update(!0, first.get(..CRC_OFF).unwrap_or(first));
    let c = crc::update(c, &[0u8; 4]);
    let mut c = crc::update(c, first.get(CRC_OFF + 4..).unwrap_or(&[]));
    let xheads = data.len().div_ceil(HEADER_CYCLE_SIZE).max(1);
    for i in 1..xheads {
        let ext = headers
            .get(i * BBSIZE..i * BBSIZE + EXT_HDR_LEN)
            .unwrap_or(&[]);
        c = crc::update(c, ext);
    }
    !crc::update(c, data)
}
