//! Partition tables: MBR (primary, extended, logical) and GPT (CRC-checked, backup header
//! used when the primary is damaged). Numbering follows libguestfs: MBR primaries 1-4,
//! logicals from 5; GPT entries by their index + 1.
//!
//! A partition that extends past the end of the disk (a truncated image, a corrupt entry)
//! makes the whole scan fail with `Corrupt` naming it, rather than silently hiding it:
//! the caller can still read the whole disk raw.

mod crc32;
mod gpt;
mod mbr;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

use crate::block::{SECTOR, SharedDevice};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind, TableKind};

pub use gpt::guid_string;

/// One partition found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub number: u32,
    pub table: TableKind,
    /// Byte offset and size on the disk.
    pub start: u64,
    pub size: u64,
    /// MBR: `0x83`; GPT: the type GUID, upper-case, dashed.
    pub part_type: String,
    /// GPT partition name.
    pub label: Option<String>,
    /// GPT unique GUID; MBR `<disk id hex>-<nn>` as blkid's PARTUUID.
    pub uuid: Option<String>,
}

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, msg)
}

/// Reads `len` bytes at `offset`; a read past the end of the disk is `Corrupt` (the
/// table pointed there).
pub(crate) fn read_bytes(disk: &SharedDevice, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len];
    let size = disk.borrow().size();
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(corrupt(alloc::format!(
            "partition table points past the end of the disk (offset {offset}, {len} bytes)"
        )));
    }
    disk.borrow_mut().read_at(offset, &mut buf)?;
    Ok(buf)
}

pub(crate) fn read_sector(disk: &SharedDevice, lba: u64) -> Result<Vec<u8>, Error> {
    let offset = lba
        .checked_mul(SECTOR)
        .ok_or_else(|| corrupt("sector number overflows"))?;
    read_bytes(disk, offset, SECTOR as usize)
}

/// Reads the partition table of a whole disk. `Ok(vec![])` when the disk has none (it is
/// then itself a filesystem device); `Err(Corrupt)` when a table is present but unusable.
pub fn scan(disk: &SharedDevice) -> Result<Vec<PartEntry>, Error> {
    let size = disk.borrow().size();
    if size < SECTOR {
        return Ok(Vec::new());
    }
    let sector0 = read_sector(disk, 0)?;
    if !mbr::looks_like_mbr(&sector0) {
        return Ok(Vec::new());
    }
    let slots = mbr::slots(&sector0)?;
    if slots.iter().any(|s| s.kind == 0xEE) {
        return gpt::scan(disk, size);
    }
    mbr::scan(disk, &sector0, size)
}
