//! Allocation group headers: the AGF (free space, sector 1 of the AG) and the AGI
//! (inodes, sector 2). A read-only reader needs neither to find data (inode numbers
//! and extent records carry absolute addresses) but checks both, as the kernel does at
//! mount, so a damaged AG is reported rather than half-read.

use super::sb::{RO_COMPAT_FINOBT, RO_COMPAT_REFLINK, RO_COMPAT_RMAPBT, Superblock};
use super::{be32, corrupt, uuid_at};
use crate::fs::FsResult;
use crate::fs::xfs::crc;

pub const AGF_MAGIC: u32 = 0x5841_4746; // "XAGF"
pub const AGI_MAGIC: u32 = 0x5841_4749; // "XAGI"
pub const AGF_CRC_OFF: usize = 0xD8;
pub const AGI_CRC_OFF: usize = 0x138;
const AGF_LEN: usize = 0xE0;
const AGI_LEN: usize = 0x158;
/// Deepest AG btree any geometry allows (XFS computes 5..9 from the block size).
const MAX_AG_BTREE_LEVELS: u32 = 9;

/// The AGF fields this reader uses.
#[derive(Debug, Clone, Copy)]
pub struct Agf {
    pub freeblks: u32,
    pub flcount: u32,
    pub btreeblks: u32,
}

fn check_level(level: u32, what: &str, agno: u32) -> FsResult<()> {
    if level == 0 || level > MAX_AG_BTREE_LEVELS {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: btree level {level} is out of range"
        )));
    }
    Ok(())
}

fn check_root(root: u32, len: u32, what: &str, agno: u32) -> FsResult<()> {
    if root == 0 || root >= len {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: btree root block {root} is outside the AG"
        )));
    }
    Ok(())
}

/// Decodes and checks the AGF of allocation group `agno` (one sector).
pub fn parse_agf(sb: &Superblock, agno: u32, buf: &[u8]) -> FsResult<Agf> {
    let what = "AGF";
    if buf.len() < AGF_LEN || buf.len() < sb.sect_size as usize {
        return Err(corrupt(format_args!("AG {agno} {what}: truncated")));
    }
    if be32(buf, 0) != AGF_MAGIC {
        return Err(corrupt(format_args!("AG {agno} {what}: bad magic")));
    }
    if sb.version == 5 {
        if !crc::verify(buf.get(..sb.sect_size as usize).unwrap_or(buf), AGF_CRC_OFF) {
            return Err(corrupt(format_args!("AG {agno} {what}: bad CRC")));
        }
        if uuid_at(buf, 0x40) != sb.meta_uuid {
            return Err(corrupt(format_args!(
                "AG {agno} {what}: filesystem UUID mismatch"
            )));
        }
    }
    if be32(buf, 4) != 1 {
        return Err(corrupt(format_args!("AG {agno} {what}: bad version")));
    }
    if be32(buf, 8) != agno {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: sequence number {} does not match",
            be32(buf, 8)
        )));
    }
    let len = be32(buf, 0x0C);
    if len != sb.ag_len(agno) {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: length {len} does not match the superblock geometry"
        )));
    }
    check_root(be32(buf, 0x10), len, "AGF free space (bno)", agno)?;
    check_root(be32(buf, 0x14), len, "AGF free space (cnt)", agno)?;
    check_level(be32(buf, 0x1C), "AGF free space (bno)", agno)?;
    check_level(be32(buf, 0x20), "AGF free space (cnt)", agno)?;
    if sb.ro_compat & RO_COMPAT_RMAPBT != 0 {
        check_root(be32(buf, 0x18), len, "AGF reverse mapping", agno)?;
        check_level(be32(buf, 0x24), "AGF reverse mapping", agno)?;
    }
    if sb.ro_compat & RO_COMPAT_REFLINK != 0 {
        check_root(be32(buf, 0x58), len, "AGF reference count", agno)?;
        check_level(be32(buf, 0x5C), "AGF reference count", agno)?;
    }
    let freeblks = be32(buf, 0x34);
    let longest = be32(buf, 0x38);
    let flcount = be32(buf, 0x30);
    if freeblks > len || longest > freeblks || flcount > len {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: free space counters exceed the AG"
        )));
    }
    Ok(Agf {
        freeblks,
        flcount,
        btreeblks: be32(buf, 0x3C),
    })
}

/// Decodes and checks the AGI of allocation group `agno` (one sector).
pub fn parse_agi(sb: &Superblock, agno: u32, buf: &[u8]) -> FsResult<()> {
    let what = "AGI";
    if buf.len() < AGI_LEN || buf.len() < sb.sect_size as usize {
        return Err(corrupt(format_args!("AG {agno} {what}: truncated")));
    }
    if be32(buf, 0) != AGI_MAGIC {
        return Err(corrupt(format_args!("AG {agno} {what}: bad magic")));
    }
    if sb.version == 5 {
        if !crc::verify(buf.get(..sb.sect_size as usize).unwrap_or(buf), AGI_CRC_OFF) {
            return Err(corrupt(format_args!("AG {agno} {what}: bad CRC")));
        }
        if uuid_at(buf, 0x128) != sb.meta_uuid {
            return Err(corrupt(format_args!(
                "AG {agno} {what}: filesystem UUID mismatch"
            )));
        }
    }
    if be32(buf, 4) != 1 {
        return Err(corrupt(format_args!("AG {agno} {what}: bad version")));
    }
    if be32(buf, 8) != agno {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: sequence number {} does not match",
            be32(buf, 8)
        )));
    }
    let len = be32(buf, 0x0C);
    if len != sb.ag_len(agno) {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: length {len} does not match the superblock geometry"
        )));
    }
    let count = be32(buf, 0x10);
    let freecount = be32(buf, 0x1C);
    if freecount > count {
        return Err(corrupt(format_args!(
            "AG {agno} {what}: more free inodes than inodes"
        )));
    }
    check_root(be32(buf, 0x14), len, "AGI inode btree", agno)?;
    check_level(be32(buf, 0x18), "AGI inode btree", agno)?;
    if sb.ro_compat & RO_COMPAT_FINOBT != 0 {
        check_root(be32(buf, 0x148), len, "AGI free inode btree", agno)?;
        check_level(be32(buf, 0x14C), "AGI free inode btree", agno)?;
    }
    Ok(())
}
