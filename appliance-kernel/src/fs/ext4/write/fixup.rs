//! Repairs, after rsext4 has unmounted, the one on-disk detail rsext4 0.9.2 gets wrong:
//! the padding of a freshly initialised inode bitmap (ext4 disk layout, "Block and
//! inode Bitmaps": bits past `s_inodes_per_group` must be set).
//!
//! rsext4 zeroes the whole bitmap block when it first allocates an inode in a group
//! flagged `INODE_UNINIT` (`ext4/alloc.rs`, `candidate.fill(0)`), which `e2fsck` reports
//! as "Padding at end of inode bitmap is not set". The bitmap checksum covers only the
//! first `s_inodes_per_group / 8` bytes, so setting the padding needs no checksum update.
//! Runs after the unmount, when the journal is checkpointed and empty.

use super::check::SuperInfo;
use crate::block::SharedDevice;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

use super::super::super::FsResult;

/// `bg_flags` bit: the inode bitmap is not initialised.
const BG_INODE_UNINIT: u16 = 0x0001;

/// One group descriptor's fields used here.
struct Desc {
    flags: u16,
    inode_bitmap: u64,
}

fn descriptors(dev: &SharedDevice, sb: &SuperInfo) -> FsResult<Vec<Desc>> {
    let bs = u64::from(sb.block_size);
    let start = (u64::from(sb.first_data_block) + 1)
        .checked_mul(bs)
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "descriptor table offset overflows"))?;
    let len = u64::from(sb.groups)
        .checked_mul(u64::from(sb.desc_size))
        .and_then(|l| usize::try_from(l).ok())
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "descriptor table too large"))?;
    let mut raw = vec![0u8; len];
    dev.borrow_mut().read_at(start, &mut raw)?;
    let ds = usize::from(sb.desc_size);
    let mut out = Vec::with_capacity(usize::try_from(sb.groups).unwrap_or(0));
    for d in raw.chunks_exact(ds) {
        let field = |off: usize, n: usize| -> u64 {
            d.get(off..off + n).map_or(0, |b| {
                b.iter()
                    .rev()
                    .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
            })
        };
        let hi = if ds >= 64 { field(0x24, 4) } else { 0 };
        out.push(Desc {
            // Two bytes: fits in u16.
            flags: field(0x12, 2) as u16,
            inode_bitmap: field(0x04, 4) | (hi << 32),
        });
    }
    Ok(out)
}

/// For each group: is its inode bitmap flagged uninitialised?
pub(super) fn inode_uninit(dev: &SharedDevice, sb: &SuperInfo) -> FsResult<Vec<bool>> {
    Ok(descriptors(dev, sb)?
        .iter()
        .map(|d| d.flags & BG_INODE_UNINIT != 0)
        .collect())
}

/// Sets the padding bits of every inode bitmap whose group was `INODE_UNINIT` in
/// `before` and no longer is. Returns how many bitmaps were repaired.
pub(super) fn pad_new_inode_bitmaps(
    dev: &SharedDevice,
    sb: &SuperInfo,
    before: &[bool],
) -> FsResult<usize> {
    let after = descriptors(dev, sb)?;
    let bs =
        usize::try_from(sb.block_size).map_err(|_| Error::new(ErrorKind::Corrupt, "block size"))?;
    let ipg = usize::try_from(sb.inodes_per_group)
        .map_err(|_| Error::new(ErrorKind::Corrupt, "inodes per group"))?;
    let bits = bs.checked_mul(8).unwrap_or(0);
    if ipg >= bits {
        return Ok(0);
    }
    let mut fixed = 0;
    for (was, desc) in before.iter().zip(after.iter()) {
        if !*was || desc.flags & BG_INODE_UNINIT != 0 {
            continue;
        }
        if desc.inode_bitmap >= sb.blocks || desc.inode_bitmap == 0 {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "inode bitmap outside the filesystem",
            ));
        }
        let off = desc.inode_bitmap * u64::from(sb.block_size);
        let mut block = vec![0u8; bs];
        dev.borrow_mut().read_at(off, &mut block)?;
        let mut changed = false;
        for bit in ipg..bits {
            if let Some(byte) = block.get_mut(bit / 8) {
                let mask = 1u8 << (bit % 8);
                if *byte & mask == 0 {
                    *byte |= mask;
                    changed = true;
                }
            }
        }
        if changed {
            dev.borrow_mut().write_at(off, &block)?;
            fixed += 1;
        }
    }
    Ok(fixed)
}
