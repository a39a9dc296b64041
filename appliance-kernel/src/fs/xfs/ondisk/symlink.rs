//! Remote symlink blocks: symlink targets too long for the inode are stored in up to
//! three extents; on v5 filesystems each extent starts with an `XSLM` header (owner,
//! location, the target bytes it holds and a CRC over the extent).

use super::sb::Superblock;
use super::{be32, be64, corrupt, uuid_at};
use crate::fs::FsResult;
use crate::fs::xfs::crc;

pub const MAGIC: u32 = 0x5853_4C4D; // "XSLM"
pub const HDR_LEN: usize = 56;
pub const CRC_OFF: usize = 12;
/// Longest symlink target XFS stores (`XFS_SYMLINK_MAXLEN`).
pub const MAX_LEN: usize = 1024;
/// Most extents a remote symlink may have (`XFS_SYMLINK_MAPS`).
pub const MAX_EXTENTS: u64 = 3;

/// Header bytes before the target bytes in each remote symlink extent.
pub fn hdr_len(sb: &Superblock) -> usize {
    if sb.version == 5 { HDR_LEN } else { 0 }
}

/// Checks one remote symlink extent of inode `ino` (`buf` is the whole extent, `daddr`
/// its 512-byte address) that should hold target bytes `offset..offset+want`, and
/// returns those bytes.
pub fn parse_remote<'a>(
    sb: &Superblock,
    ino: u64,
    buf: &'a [u8],
    daddr: u64,
    offset: usize,
    want: usize,
) -> FsResult<&'a [u8]> {
    let hdr = hdr_len(sb);
    if sb.version == 5 {
        if be32(buf, 0) != MAGIC {
            return Err(corrupt(format_args!(
                "symlink {ino}: remote block: bad magic"
            )));
        }
        if !crc::verify(buf, CRC_OFF) {
            return Err(corrupt(format_args!(
                "symlink {ino}: remote block: bad CRC"
            )));
        }
        if be32(buf, 4) as usize != offset
            || be32(buf, 8) as usize != want
            || be64(buf, 32) != ino
            || be64(buf, 40) != daddr
            || uuid_at(buf, 16) != sb.meta_uuid
        {
            return Err(corrupt(format_args!(
                "symlink {ino}: remote block header does not match (offset, length, owner, location or UUID)"
            )));
        }
    }
    hdr.checked_add(want)
        .and_then(|end| buf.get(hdr..end))
        .ok_or_else(|| corrupt(format_args!("symlink {ino}: remote block: truncated")))
}
