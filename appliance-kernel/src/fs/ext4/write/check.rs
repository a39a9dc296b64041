//! Pre-flight checks of an ext4 superblock before rsext4 may touch the filesystem
//! for writing (ext4 disk layout: "The Super Block", feature flags).
//!
//! rsext4 has its own feature negotiation, but skiff only lets it write what has been
//! measured to come out clean under `e2fsck -fn`; everything else is refused here,
//! with the feature named, before a single byte is written.

use crate::block::SharedDevice;
use crate::fs::crc32c::update as crc32c;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

use super::super::super::FsResult;

/// What the writer needs from the superblock.
#[derive(Debug, Clone, Copy)]
pub(super) struct SuperInfo {
    pub block_size: u32,
    pub first_data_block: u32,
    /// Block count.
    pub blocks: u64,
    pub groups: u32,
    pub inodes_per_group: u32,
    /// Group descriptor size in bytes (32 without 64bit).
    pub desc_size: u16,
    /// `s_wtime`: a plausible "now" for timestamps when the appliance has no clock.
    pub wtime: u32,
}

const SB_OFFSET: u64 = 1024;
const SB_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;

// compat
const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const COMPAT_EXT_ATTR: u32 = 0x0008;
const COMPAT_RESIZE_INODE: u32 = 0x0010;
const COMPAT_DIR_INDEX: u32 = 0x0020;
const COMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "dir_prealloc"),
    (0x0002, "imagic_inodes"),
    (0x0040, "lazy_bg"),
    (0x0080, "exclude_inode"),
    (0x0100, "exclude_bitmap"),
    (0x0200, "sparse_super2"),
    (0x0400, "fast_commit"),
    (0x0800, "stable_inodes"),
    (0x1000, "orphan_file"),
];
/// compat features skiff writes (others are refused: they change what a writer must keep).
const COMPAT_OK: u32 =
    COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_RESIZE_INODE | COMPAT_DIR_INDEX;

// incompat
const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_EXTENTS: u32 = 0x0040;
const INCOMPAT_64BIT: u32 = 0x0080;
const INCOMPAT_FLEX_BG: u32 = 0x0200;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "compression"),
    (0x0008, "journal_dev"),
    (0x0010, "meta_bg"),
    (0x0100, "mmp"),
    (0x0400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];
const INCOMPAT_OK: u32 = INCOMPAT_RECOVER
    | INCOMPAT_FILETYPE
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_FLEX_BG
    | INCOMPAT_CSUM_SEED;

// ro_compat
const RO_SPARSE_SUPER: u32 = 0x0001;
const RO_LARGE_FILE: u32 = 0x0002;
const RO_HUGE_FILE: u32 = 0x0008;
const RO_GDT_CSUM: u32 = 0x0010;
const RO_DIR_NLINK: u32 = 0x0020;
const RO_EXTRA_ISIZE: u32 = 0x0040;
const RO_METADATA_CSUM: u32 = 0x0400;
const RO_NAMES: &[(u32, &str)] = &[
    (0x0004, "btree_dir"),
    (0x0080, "snapshot"),
    (0x0100, "quota"),
    (0x0200, "bigalloc"),
    (0x0800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];
const RO_OK: u32 = RO_SPARSE_SUPER
    | RO_LARGE_FILE
    | RO_HUGE_FILE
    | RO_GDT_CSUM
    | RO_DIR_NLINK
    | RO_EXTRA_ISIZE
    | RO_METADATA_CSUM;

/// ext4 `s_state` bit: errors were detected.
const STATE_ERROR_FS: u16 = 0x0002;

fn u16_at(sb: &[u8], off: usize) -> FsResult<u16> {
    let b = sb
        .get(off..off + 2)
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "superblock too short"))?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(sb: &[u8], off: usize) -> FsResult<u32> {
    let b = sb
        .get(off..off + 4)
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "superblock too short"))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, msg)
}

/// Names of the set bits of `bits` (unknown bits as hex).
fn names(bits: u32, table: &[(u32, &str)]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut rest = bits;
    for &(bit, name) in table {
        if rest & bit != 0 {
            out.push(String::from(name));
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push(format!("unknown {rest:#x}"));
    }
    out.join(", ")
}

/// Reads and validates the superblock; refuses what skiff cannot write safely.
/// Reads only: never writes.
pub(super) fn check_superblock(dev: &SharedDevice) -> FsResult<SuperInfo> {
    let (size, readonly) = {
        let d = dev.borrow();
        (d.size(), d.readonly())
    };
    let mut sb = alloc::vec![0u8; SB_SIZE];
    if size < SB_OFFSET + SB_SIZE as u64 {
        return Err(corrupt("device too small for an ext4 superblock"));
    }
    dev.borrow_mut().read_at(SB_OFFSET, &mut sb)?;
    if u16_at(&sb, 0x38)? != MAGIC {
        return Err(corrupt("no ext4 superblock magic"));
    }
    let compat = u32_at(&sb, 0x5C)?;
    let incompat = u32_at(&sb, 0x60)?;
    let ro_compat = u32_at(&sb, 0x64)?;

    // Checksum first: a superblock that fails it says nothing trustworthy.
    if ro_compat & RO_METADATA_CSUM != 0 {
        if sb.get(0x175).copied() != Some(1) {
            return Err(corrupt("unknown superblock checksum type"));
        }
        let want = u32_at(&sb, 0x3FC)?;
        let got = crc32c(!0, sb.get(..0x3FC).ok_or_else(|| corrupt("superblock"))?);
        if want != got {
            return Err(corrupt(format!(
                "superblock checksum mismatch (stored {want:#x}, computed {got:#x})"
            )));
        }
    }

    let bad_incompat = incompat & !INCOMPAT_OK;
    if bad_incompat != 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "ext4 write: feature not supported for writing: {}",
                names(bad_incompat, INCOMPAT_NAMES)
            ),
        ));
    }
    if incompat & INCOMPAT_EXTENTS == 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "ext4 write: filesystem without the extent feature (ext2/ext3 block maps) is not supported for writing",
        ));
    }
    if incompat & INCOMPAT_FILETYPE == 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "ext4 write: filesystem without the filetype feature is not supported for writing",
        ));
    }
    let bad_ro = ro_compat & !RO_OK;
    if bad_ro != 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "ext4 write: feature not supported for writing: {}",
                names(bad_ro, RO_NAMES)
            ),
        ));
    }
    let bad_compat = compat & !COMPAT_OK;
    if bad_compat != 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "ext4 write: feature not supported for writing: {}",
                names(bad_compat, COMPAT_NAMES)
            ),
        ));
    }

    // Geometry: everything rsext4 derives offsets from must be sane.
    let log_block = u32_at(&sb, 0x18)?;
    if log_block > 2 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "ext4 write: block size {} not supported (1 KiB to 4 KiB)",
                1u64.checked_shl(10 + log_block.min(40)).unwrap_or(0)
            ),
        ));
    }
    let block_size: u32 = 1024 << log_block;
    if u32_at(&sb, 0x1C)? != log_block {
        return Err(corrupt(
            "cluster size differs from block size without bigalloc",
        ));
    }
    let first_data_block = u32_at(&sb, 0x14)?;
    if first_data_block != u32::from(block_size == 1024) {
        return Err(corrupt(format!(
            "bad s_first_data_block {first_data_block}"
        )));
    }
    let blocks_lo = u64::from(u32_at(&sb, 0x04)?);
    let blocks_hi = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(u32_at(&sb, 0x150)?)
    } else {
        0
    };
    let blocks = blocks_lo | (blocks_hi << 32);
    let fs_bytes = blocks
        .checked_mul(u64::from(block_size))
        .ok_or_else(|| corrupt("block count overflows"))?;
    if blocks <= u64::from(first_data_block) || fs_bytes > size {
        return Err(corrupt(format!(
            "filesystem of {blocks} blocks of {block_size} bytes does not fit the {size}-byte device"
        )));
    }
    let blocks_per_group = u32_at(&sb, 0x20)?;
    if blocks_per_group == 0 || blocks_per_group > block_size * 8 {
        return Err(corrupt(format!(
            "bad s_blocks_per_group {blocks_per_group}"
        )));
    }
    let inodes_per_group = u32_at(&sb, 0x28)?;
    let inodes_count = u32_at(&sb, 0x00)?;
    if inodes_per_group == 0 || inodes_per_group > block_size * 8 {
        return Err(corrupt(format!(
            "bad s_inodes_per_group {inodes_per_group}"
        )));
    }
    let groups = (blocks - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
    if u64::from(inodes_count) != groups * u64::from(inodes_per_group) {
        return Err(corrupt("s_inodes_count disagrees with the group count"));
    }
    let rev = u32_at(&sb, 0x4C)?;
    if rev == 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "ext4 write: revision 0 (good old ext2) filesystem not supported for writing",
        ));
    }
    let inode_size = u32::from(u16_at(&sb, 0x58)?);
    if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
        return Err(corrupt(format!("bad inode size {inode_size}")));
    }
    let first_ino = u32_at(&sb, 0x54)?;
    if first_ino < 11 || first_ino > inodes_count {
        return Err(corrupt(format!("bad s_first_ino {first_ino}")));
    }
    let desc_size = if incompat & INCOMPAT_64BIT != 0 {
        let desc = u16_at(&sb, 0xFE)?;
        if desc < 64 || !desc.is_power_of_two() || desc > 1024 {
            return Err(corrupt(format!("bad group descriptor size {desc}")));
        }
        desc
    } else {
        32
    };
    let groups = u32::try_from(groups).map_err(|_| corrupt("too many block groups"))?;
    if compat & COMPAT_HAS_JOURNAL != 0 {
        let jdev = u32_at(&sb, 0xE4)?;
        let jino = u32_at(&sb, 0xE0)?;
        if jdev != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "ext4 write: external journal device not supported",
            ));
        }
        if jino == 0 || jino > inodes_count {
            return Err(corrupt(format!("bad journal inode {jino}")));
        }
    }
    let state = u16_at(&sb, 0x3A)?;
    if state & STATE_ERROR_FS != 0 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "ext4 write: filesystem is marked as having errors; run e2fsck before writing",
        ));
    }
    let hash = sb.get(0xFC).copied().unwrap_or(0);
    if hash > 5 {
        return Err(corrupt(format!("bad default directory hash {hash}")));
    }
    if readonly {
        return Err(Error::new(ErrorKind::ReadOnly, "device is read-only"));
    }
    Ok(SuperInfo {
        block_size,
        first_data_block,
        blocks,
        groups,
        inodes_per_group,
        desc_size,
        wtime: u32_at(&sb, 0x30)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // RFC 3720 test vector: 32 bytes of zeros -> 0x8A9136AA.
        assert_eq!(!crc32c(!0, &[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn feature_names() {
        assert_eq!(names(0x8000, INCOMPAT_NAMES), "inline_data");
        assert_eq!(
            names(0x8000 | 1 << 31, INCOMPAT_NAMES),
            "inline_data, unknown 0x80000000"
        );
    }
}
