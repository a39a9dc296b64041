//! The superblock (sector 0 of allocation group 0) and the geometry derived from it.

use super::{be16, be32, be64, corrupt, log2_roundup, u8_at, unsupported, uuid_at};
use crate::fs::FsResult;
use crate::fs::xfs::crc;
use alloc::string::String;
use alloc::vec::Vec;

pub const MAGIC: u32 = 0x5846_5342; // "XFSB"
/// Offset of `sb_crc` (v5).
pub const CRC_OFF: usize = 0xE0;
/// Bytes of the superblock fields this reader decodes (through `sb_meta_uuid`).
pub const SB_LEN: usize = 0x108;

// sb_versionnum bits.
const VERSION_NUMBITS: u16 = 0x000F;
const VERSION_NLINKBIT: u16 = 0x0020;
const VERSION_SHAREDBIT: u16 = 0x0200;
const VERSION_LOGV2BIT: u16 = 0x0400;
const VERSION_EXTFLGBIT: u16 = 0x1000;
const VERSION_DIRV2BIT: u16 = 0x2000;
const VERSION_BORGBIT: u16 = 0x4000;
const VERSION_MOREBITSBIT: u16 = 0x8000;

// sb_features2 bits (v4; v5 implies them).
const FEAT2_LAZYSBCOUNT: u32 = 0x0002;
const FEAT2_ATTR2: u32 = 0x0008;
const FEAT2_PARENT: u32 = 0x0010;
const FEAT2_PROJID32: u32 = 0x0080;
const FEAT2_CRC: u32 = 0x0100;
const FEAT2_FTYPE: u32 = 0x0200;
const FEAT2_V4_KNOWN: u32 =
    FEAT2_LAZYSBCOUNT | FEAT2_ATTR2 | FEAT2_PARENT | FEAT2_PROJID32 | FEAT2_FTYPE | 0x0001;

// sb_features_ro_compat (v5).
pub const RO_COMPAT_FINOBT: u32 = 0x1;
pub const RO_COMPAT_RMAPBT: u32 = 0x2;
pub const RO_COMPAT_REFLINK: u32 = 0x4;
pub const RO_COMPAT_INOBTCNT: u32 = 0x8;

// sb_features_incompat (v5).
pub const INCOMPAT_FTYPE: u32 = 0x01;
pub const INCOMPAT_SPINODES: u32 = 0x02;
pub const INCOMPAT_META_UUID: u32 = 0x04;
pub const INCOMPAT_BIGTIME: u32 = 0x08;
pub const INCOMPAT_NEEDSREPAIR: u32 = 0x10;
pub const INCOMPAT_NREXT64: u32 = 0x20;
/// File content exchange: only adds log item types (the log must be clean to mount).
pub const INCOMPAT_EXCHRANGE: u32 = 0x40;
/// Directory parent pointers: kept in extended attributes, which this reader ignores.
pub const INCOMPAT_PARENT: u32 = 0x80;
const INCOMPAT_KNOWN: u32 = INCOMPAT_FTYPE
    | INCOMPAT_SPINODES
    | INCOMPAT_META_UUID
    | INCOMPAT_BIGTIME
    | INCOMPAT_NEEDSREPAIR
    | INCOMPAT_NREXT64
    | INCOMPAT_EXCHRANGE
    | INCOMPAT_PARENT;

/// Smallest allocation group mkfs makes (blocks).
const MIN_AG_BLOCKS: u32 = 64;
/// Largest allocation group (1 TiB).
const MAX_AG_BYTES: u64 = 1 << 40;
/// Largest internal log (2 GiB, XFS's limit).
const MAX_LOG_BYTES: u64 = 2 << 30;
/// Smallest log a filesystem may have (blocks).
const MIN_LOG_BLOCKS: u32 = 64;

/// The decoded, validated superblock.
#[derive(Debug, Clone)]
pub struct Superblock {
    /// 4 or 5.
    pub version: u8,
    pub block_size: u32,
    pub block_log: u32,
    pub sect_size: u32,
    pub dblocks: u64,
    /// Realtime device blocks (this reader has no realtime device).
    pub rblocks: u64,
    pub uuid: [u8; 16],
    /// The UUID stamped into v5 metadata (differs from `uuid` after a UUID change).
    pub meta_uuid: [u8; 16],
    pub log_start: u64,
    pub log_blocks: u32,
    pub root_ino: u64,
    pub ag_blocks: u32,
    pub ag_count: u32,
    pub agblk_log: u32,
    pub inode_size: u32,
    pub inode_log: u32,
    pub inopb_log: u32,
    pub label: [u8; 12],
    pub icount: u64,
    pub ifree: u64,
    pub fdblocks: u64,
    pub imax_pct: u8,
    pub dir_blk_log: u32,
    pub versionnum: u16,
    pub features2: u32,
    pub ro_compat: u32,
    pub incompat: u32,
    pub log_incompat: u32,
    /// Directory entries carry a file type byte.
    pub ftype: bool,
    /// Version 2 log (record headers may span several sectors).
    pub logv2: bool,
    /// ASCII case-insensitive names (`mkfs -n version=ci`).
    pub ascii_ci: bool,
    /// Version 2 inodes (32-bit link counts) on a v4 filesystem.
    pub nlink_v2: bool,
}

impl Superblock {
    /// Decodes and checks the primary superblock. `buf` holds at least one sector
    /// (`sb_sectsize` bytes are needed for the v5 CRC; with fewer the caller must read
    /// more and call again: see [`Superblock::sector_size_hint`]).
    pub fn parse(buf: &[u8]) -> FsResult<Self> {
        if buf.len() < SB_LEN {
            return Err(corrupt("superblock: truncated"));
        }
        if be32(buf, 0) != MAGIC {
            return Err(corrupt("superblock: bad magic"));
        }
        let versionnum = be16(buf, 0x64);
        let version = (versionnum & VERSION_NUMBITS) as u8;
        if version != 4 && version != 5 {
            return Err(unsupported(format_args!(
                "superblock version {version} (only 4 and 5 are supported)"
            )));
        }
        let sect_size = u32::from(be16(buf, 0x66));
        if version == 5 {
            let need = sect_size as usize;
            if !(512..=32768).contains(&need) || !need.is_power_of_two() {
                return Err(corrupt("superblock: bad sector size"));
            }
            if buf.len() < need {
                return Err(corrupt("superblock: shorter than its sector"));
            }
            if !crc::verify(buf.get(..need).unwrap_or(buf), CRC_OFF) {
                return Err(corrupt("superblock: bad CRC"));
            }
        }

        let features2 = if version == 5 || versionnum & VERSION_MOREBITSBIT != 0 {
            // sb_bad_features2 carries the same bits on filesystems written by kernels
            // with the old alignment bug; both count.
            be32(buf, 0xC8) | be32(buf, 0xCC)
        } else {
            0
        };
        let (ro_compat, incompat, log_incompat) = if version == 5 {
            (be32(buf, 0xD4), be32(buf, 0xD8), be32(buf, 0xDC))
        } else {
            (0, 0, 0)
        };

        if version == 4 {
            if versionnum & VERSION_DIRV2BIT == 0 {
                return Err(unsupported("version 1 directories (v4 without dirv2)"));
            }
            if versionnum & VERSION_EXTFLGBIT == 0 {
                return Err(unsupported("v4 filesystem without unwritten extent flags"));
            }
            if features2 & FEAT2_CRC != 0 {
                return Err(corrupt("superblock: CRC feature on a version 4 superblock"));
            }
            if features2 & !FEAT2_V4_KNOWN != 0 {
                return Err(unsupported(format_args!(
                    "v4 features2 bits {:#x}",
                    features2 & !FEAT2_V4_KNOWN
                )));
            }
        } else if incompat & !INCOMPAT_KNOWN != 0 {
            return Err(unsupported(format_args!(
                "incompatible feature bits {:#x}",
                incompat & !INCOMPAT_KNOWN
            )));
        }
        if incompat & INCOMPAT_NEEDSREPAIR != 0 {
            return Err(corrupt(
                "the filesystem is marked as needing repair (run xfs_repair)",
            ));
        }
        if versionnum & VERSION_SHAREDBIT != 0 || u8_at(buf, 0xB3) != 0 {
            return Err(unsupported("shared read-only filesystems (sb_shared_vn)"));
        }
        if u8_at(buf, 0x7E) != 0 {
            return Err(corrupt("superblock: mkfs did not finish (sb_inprogress)"));
        }

        let block_size = be32(buf, 0x04);
        let block_log = u32::from(u8_at(buf, 0x78));
        let min_block = if version == 5 { 1024 } else { 512 };
        if !(min_block..=65536).contains(&block_size)
            || !block_size.is_power_of_two()
            || 1u32.checked_shl(block_log) != Some(block_size)
        {
            return Err(corrupt("superblock: bad block size"));
        }
        let sect_log = u32::from(u8_at(buf, 0x79));
        if !(512..=32768).contains(&sect_size)
            || 1u32.checked_shl(sect_log) != Some(sect_size)
            || sect_size > block_size
        {
            return Err(corrupt("superblock: bad sector size"));
        }
        let inode_size = u32::from(be16(buf, 0x68));
        let inode_log = u32::from(u8_at(buf, 0x7A));
        let min_inode = if version == 5 { 512 } else { 256 };
        if !(min_inode..=2048).contains(&inode_size)
            || 1u32.checked_shl(inode_log) != Some(inode_size)
            || inode_size > block_size
        {
            return Err(corrupt("superblock: bad inode size"));
        }
        let inopblock = u32::from(be16(buf, 0x6A));
        let inopb_log = u32::from(u8_at(buf, 0x7B));
        if inopblock != block_size / inode_size || inopb_log != block_log - inode_log {
            return Err(corrupt("superblock: bad inodes per block"));
        }

        let ag_blocks = be32(buf, 0x54);
        let ag_count = be32(buf, 0x58);
        let agblk_log = u32::from(u8_at(buf, 0x7C));
        let max_ag_blocks = MAX_AG_BYTES >> block_log;
        if ag_blocks < MIN_AG_BLOCKS
            || u64::from(ag_blocks) > max_ag_blocks
            || agblk_log != log2_roundup(u64::from(ag_blocks))
        {
            return Err(corrupt("superblock: bad allocation group size"));
        }
        let dblocks = be64(buf, 0x08);
        let full = u64::from(ag_count) * u64::from(ag_blocks);
        let min =
            u64::from(ag_count.saturating_sub(1)) * u64::from(ag_blocks) + u64::from(MIN_AG_BLOCKS);
        if ag_count == 0 || dblocks > full || dblocks < min {
            return Err(corrupt(
                "superblock: data block count does not match the allocation groups",
            ));
        }
        // Every byte offset inside the filesystem must fit in a u64.
        if dblocks.checked_mul(u64::from(block_size)).is_none() {
            return Err(corrupt("superblock: filesystem size overflows"));
        }

        let dir_blk_log = u32::from(u8_at(buf, 0xC0));
        if block_log + dir_blk_log > 16 {
            return Err(corrupt("superblock: bad directory block size"));
        }
        let imax_pct = u8_at(buf, 0x7F);
        if imax_pct > 100 {
            return Err(corrupt("superblock: bad inode space percentage"));
        }

        let ftype = if version == 5 {
            incompat & INCOMPAT_FTYPE != 0
        } else {
            features2 & FEAT2_FTYPE != 0
        };
        let uuid = uuid_at(buf, 0x20);
        let meta_uuid = if version == 5 && incompat & INCOMPAT_META_UUID != 0 {
            uuid_at(buf, 0xF8)
        } else {
            uuid
        };
        let mut label = [0u8; 12];
        if let Some(l) = buf.get(0x6C..0x78) {
            label.copy_from_slice(l);
        }

        let sb = Superblock {
            version,
            block_size,
            block_log,
            sect_size,
            dblocks,
            rblocks: be64(buf, 0x10),
            uuid,
            meta_uuid,
            log_start: be64(buf, 0x30),
            log_blocks: be32(buf, 0x60),
            root_ino: be64(buf, 0x38),
            ag_blocks,
            ag_count,
            agblk_log,
            inode_size,
            inode_log,
            inopb_log,
            label,
            icount: be64(buf, 0x80),
            ifree: be64(buf, 0x88),
            fdblocks: be64(buf, 0x90),
            imax_pct,
            dir_blk_log,
            versionnum,
            features2,
            ro_compat,
            incompat,
            log_incompat,
            ftype,
            logv2: version == 5 || versionnum & VERSION_LOGV2BIT != 0,
            ascii_ci: versionnum & VERSION_BORGBIT != 0,
            nlink_v2: version == 5 || versionnum & VERSION_NLINKBIT != 0,
        };

        if sb.log_start == 0 {
            return Err(unsupported(
                "external log device (only internal logs can be checked)",
            ));
        }
        let log_bytes = u64::from(sb.log_blocks) << block_log;
        if sb.log_blocks < MIN_LOG_BLOCKS || log_bytes > MAX_LOG_BYTES {
            return Err(corrupt("superblock: bad log size"));
        }
        if !sb.extent_in_fs(sb.log_start, u64::from(sb.log_blocks)) {
            return Err(corrupt("superblock: the log lies outside the filesystem"));
        }
        if !sb.valid_ino(sb.root_ino) {
            return Err(corrupt(format_args!(
                "superblock: root inode number {} is out of range",
                sb.root_ino
            )));
        }
        if sb.icount < sb.ifree {
            return Err(corrupt("superblock: more free inodes than inodes"));
        }
        Ok(sb)
    }

    /// Bytes in the filesystem.
    pub fn fs_bytes(&self) -> u64 {
        // Cannot overflow: `parse` checked dblocks * block_size.
        self.dblocks << self.block_log
    }

    /// Blocks in allocation group `agno` (the last one may be short).
    pub fn ag_len(&self, agno: u32) -> u32 {
        if agno.saturating_add(1) >= self.ag_count {
            let before = u64::from(agno) * u64::from(self.ag_blocks);
            self.dblocks
                .saturating_sub(before)
                .min(u64::from(self.ag_blocks)) as u32
        } else {
            self.ag_blocks
        }
    }

    /// Byte offset of the start of allocation group `agno`.
    pub fn ag_byte(&self, agno: u32) -> u64 {
        (u64::from(agno) * u64::from(self.ag_blocks)) << self.block_log
    }

    /// Splits a filesystem block number into (AG, block within the AG).
    pub fn split_fsb(&self, fsb: u64) -> (u64, u64) {
        (fsb >> self.agblk_log, fsb & ((1u64 << self.agblk_log) - 1))
    }

    /// True when `len` blocks from filesystem block `fsb` lie inside one allocation
    /// group (an extent never crosses one).
    pub fn extent_in_fs(&self, fsb: u64, len: u64) -> bool {
        let (agno, agbno) = self.split_fsb(fsb);
        agno < u64::from(self.ag_count)
            && agbno
                .checked_add(len)
                .is_some_and(|end| end <= u64::from(self.ag_len(agno as u32)))
    }

    /// Byte offset on the device of filesystem block `fsb`, or `None` when it is not a
    /// block of this filesystem.
    pub fn fsb_to_byte(&self, fsb: u64) -> Option<u64> {
        if !self.extent_in_fs(fsb, 1) {
            return None;
        }
        let (agno, agbno) = self.split_fsb(fsb);
        Some((agno * u64::from(self.ag_blocks) + agbno) << self.block_log)
    }

    /// The 512-byte "disk address" v5 metadata records as its own location.
    pub fn fsb_to_daddr(&self, fsb: u64) -> Option<u64> {
        self.fsb_to_byte(fsb).map(|b| b >> 9)
    }

    /// Bits of an inode number below the AG number.
    pub fn agino_log(&self) -> u32 {
        self.agblk_log + self.inopb_log
    }

    /// True when `ino` names an inode slot inside the filesystem (not necessarily an
    /// allocated inode).
    pub fn valid_ino(&self, ino: u64) -> bool {
        self.ino_to_byte(ino).is_some()
    }

    /// Byte offset on the device of inode `ino`.
    pub fn ino_to_byte(&self, ino: u64) -> Option<u64> {
        let agino_log = self.agino_log();
        let agno = ino.checked_shr(agino_log)?;
        let agino = ino & ((1u64 << agino_log) - 1);
        let agbno = agino >> self.inopb_log;
        let idx = agino & ((1u64 << self.inopb_log) - 1);
        if agno >= u64::from(self.ag_count) || agbno >= u64::from(self.ag_len(agno as u32)) {
            return None;
        }
        // The first four sectors of an AG hold its headers (superblock, AGF, AGI,
        // AGFL); inodes start in the first block after them.
        if (agbno << self.block_log) < 4 * u64::from(self.sect_size) {
            return None;
        }
        Some(self.ag_byte(agno as u32) + (agbno << self.block_log) + (idx << self.inode_log))
    }

    /// Directory block size in bytes.
    pub fn dir_blk_size(&self) -> u32 {
        self.block_size << self.dir_blk_log
    }

    /// The label (`sb_fname`), `None` when empty.
    pub fn label(&self) -> Option<String> {
        let end = self.label.iter().position(|&b| b == 0).unwrap_or(12);
        let l = self.label.get(..end).unwrap_or(&[]);
        if l.is_empty() {
            None
        } else {
            Some(String::from_utf8_lossy(l).into_owned())
        }
    }

    /// Names of the enabled features, for messages and tests.
    pub fn feature_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.version == 5 {
            v.push("crc");
        }
        if self.ftype {
            v.push("ftype");
        }
        for (bit, name) in [
            (INCOMPAT_SPINODES, "sparse"),
            (INCOMPAT_META_UUID, "meta_uuid"),
            (INCOMPAT_BIGTIME, "bigtime"),
            (INCOMPAT_NREXT64, "nrext64"),
        ] {
            if self.incompat & bit != 0 {
                v.push(name);
            }
        }
        for (bit, name) in [
            (RO_COMPAT_FINOBT, "finobt"),
            (RO_COMPAT_RMAPBT, "rmapbt"),
            (RO_COMPAT_REFLINK, "reflink"),
            (RO_COMPAT_INOBTCNT, "inobtcount"),
        ] {
            if self.ro_compat & bit != 0 {
                v.push(name);
            }
        }
        v
    }
}
