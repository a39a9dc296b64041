//! The few ext4 superblock counters `statvfs` needs (ext4 disk layout, "The Super Block"),
//! read straight from the device since `ext4-view` does not expose them.

use crate::block::SharedDevice;
use alloc::format;
use wire::{Error, ErrorKind, StatVfs};

const INCOMPAT_64BIT: u32 = 0x80;

fn corrupt(msg: &str) -> Error {
    Error::new(ErrorKind::Corrupt, format!("ext4 superblock: {msg}"))
}

fn le32(sb: &[u8], off: usize) -> Result<u32, Error> {
    let s = sb
        .get(off..off + 4)
        .ok_or_else(|| corrupt("field out of range"))?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

/// A 64-bit count split into `lo` and (with the 64bit feature) `hi` halves.
fn count(sb: &[u8], lo: usize, hi: usize, wide: bool) -> Result<u64, Error> {
    let high = if wide { le32(sb, hi)? } else { 0 };
    Ok(u64::from(le32(sb, lo)?) | (u64::from(high) << 32))
}

/// Block size, block and inode counts from the primary superblock.
pub fn statvfs(dev: &SharedDevice) -> Result<StatVfs, Error> {
    let mut sb = [0u8; 1024];
    dev.borrow_mut().read_at(1024, &mut sb)?;
    if sb.get(0x38..0x3A) != Some(&[0x53, 0xEF][..]) {
        return Err(corrupt("bad magic"));
    }
    let log = le32(&sb, 0x18)?;
    if log > 6 {
        return Err(corrupt("bad block size"));
    }
    let block_size = 1024u64 << log;
    let wide = le32(&sb, 0x60)? & INCOMPAT_64BIT != 0;
    let blocks = count(&sb, 0x04, 0x150, wide)?;
    let reserved = count(&sb, 0x08, 0x154, wide)?;
    let free = count(&sb, 0x0C, 0x158, wide)?;
    Ok(StatVfs {
        block_size,
        blocks,
        blocks_free: free,
        blocks_avail: free.saturating_sub(reserved),
        files: u64::from(le32(&sb, 0x00)?),
        files_free: u64::from(le32(&sb, 0x10)?),
        name_max: 255,
    })
}
