//! MBR (DOS) partition tables: four primary slots at byte 446 of sector 0, extended
//! containers (types 0x05, 0x0F, 0x85) holding a chain of EBRs with one logical partition
//! each. Numbering as Linux/libguestfs: primaries 1-4 by slot, logicals from 5 in chain
//! order. PARTUUID as blkid: `<disk signature, 8 lowercase hex>-<number, 2 hex>`.

use super::{PartEntry, corrupt, read_sector};
use crate::block::{SECTOR, SharedDevice};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::vec::Vec;
use wire::{Error, TableKind};

/// At most this many EBRs are followed (Linux stops far earlier in practice).
const MAX_LOGICALS: usize = 256;

/// One 16-byte slot of a partition table.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub boot: u8,
    pub kind: u8,
    pub start: u32,
    pub sectors: u32,
}

impl Slot {
    fn empty(&self) -> bool {
        self.kind == 0 || self.sectors == 0
    }
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, Error> {
    let s = b
        .get(off..off + 4)
        .ok_or_else(|| corrupt("MBR field out of range"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The four slots of a boot record (MBR or EBR) sector.
pub fn slots(sector: &[u8]) -> Result<[Slot; 4], Error> {
    let mut out = [Slot {
        boot: 0,
        kind: 0,
        start: 0,
        sectors: 0,
    }; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let base = 446 + 16 * i;
        let e = sector
            .get(base..base + 16)
            .ok_or_else(|| corrupt("MBR too short"))?;
        *slot = Slot {
            boot: e[0],
            kind: e[4],
            start: u32_at(e, 8)?,
            sectors: u32_at(e, 12)?,
        };
    }
    Ok(out)
}

/// True when sector 0 carries the 0x55AA signature and looks like a partition table rather
/// than a filesystem boot sector (FAT and NTFS also end their sector 0 with 0x55AA).
pub fn looks_like_mbr(sector: &[u8]) -> bool {
    if sector.get(510..512) != Some(&[0x55, 0xAA][..]) {
        return false;
    }
    // A FAT/NTFS/exFAT boot sector, not a partition table (as blkid decides).
    let jump = sector.first().copied().unwrap_or(0);
    if jump == 0xEB || jump == 0xE9 {
        let fat16 = sector.get(54..57) == Some(&b"FAT"[..]);
        let fat32 = sector.get(82..87) == Some(&b"FAT32"[..]);
        let ntfs = sector.get(3..11) == Some(&b"NTFS    "[..]);
        let exfat = sector.get(3..11) == Some(&b"EXFAT   "[..]);
        if fat16 || fat32 || ntfs || exfat {
            return false;
        }
    }
    let Ok(s) = slots(sector) else {
        return false;
    };
    // Every slot must have a sane boot flag; at least one must be used.
    s.iter().all(|e| e.boot == 0 || e.boot == 0x80) && s.iter().any(|e| !e.empty())
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

fn entry(
    number: u32,
    start_lba: u64,
    sectors: u64,
    kind: u8,
    disk_size: u64,
    disk_id: u32,
) -> Result<PartEntry, Error> {
    let start = start_lba
        .checked_mul(SECTOR)
        .ok_or_else(|| corrupt("partition start overflows"))?;
    let size = sectors
        .checked_mul(SECTOR)
        .ok_or_else(|| corrupt("partition size overflows"))?;
    let end = start
        .checked_add(size)
        .ok_or_else(|| corrupt("partition end overflows"))?;
    if start_lba == 0 || end > disk_size {
        return Err(corrupt(format!(
            "MBR partition {number} ({start}+{size} bytes) lies outside the disk ({disk_size} bytes)"
        )));
    }
    Ok(PartEntry {
        number,
        table: TableKind::Mbr,
        start,
        size,
        part_type: format!("0x{kind:02x}"),
        label: None,
        uuid: (disk_id != 0).then(|| format!("{disk_id:08x}-{number:02x}")),
    })
}

/// Parses an MBR whose sector 0 is `mbr` (already checked with [`looks_like_mbr`]).
pub fn scan(disk: &SharedDevice, mbr: &[u8], disk_size: u64) -> Result<Vec<PartEntry>, Error> {
    let disk_id = u32_at(mbr, 440)?;
    let primaries = slots(mbr)?;
    let mut out = Vec::new();
    let mut extended: Option<(u64, u64)> = None;
    for (i, s) in primaries.iter().enumerate() {
        if s.empty() {
            continue;
        }
        // i < 4: the cast cannot truncate.
        let number = i as u32 + 1;
        out.push(entry(
            number,
            u64::from(s.start),
            u64::from(s.sectors),
            s.kind,
            disk_size,
            disk_id,
        )?);
        if is_extended(s.kind) {
            if extended.is_some() {
                return Err(corrupt("MBR has more than one extended partition"));
            }
            extended = Some((u64::from(s.start), u64::from(s.sectors)));
        }
    }
    if let Some((ext_start, ext_sectors)) = extended {
        logicals(disk, ext_start, ext_sectors, disk_size, disk_id, &mut out)?;
    }
    Ok(out)
}

/// Follows the EBR chain of the extended partition at `ext_start` (sectors).
fn logicals(
    disk: &SharedDevice,
    ext_start: u64,
    ext_sectors: u64,
    disk_size: u64,
    disk_id: u32,
    out: &mut Vec<PartEntry>,
) -> Result<(), Error> {
    let ext_end = ext_start
        .checked_add(ext_sectors)
        .ok_or_else(|| corrupt("extended partition end overflows"))?;
    let mut seen = BTreeSet::new();
    let mut ebr = ext_start;
    let mut number = 5u32;
    for _ in 0..MAX_LOGICALS {
        if !seen.insert(ebr) {
            return Err(corrupt(format!(
                "loop in the chain of logical partitions (EBR at sector {ebr} seen twice)"
            )));
        }
        if ebr < ext_start || ebr >= ext_end {
            return Err(corrupt(format!(
                "EBR at sector {ebr} lies outside the extended partition"
            )));
        }
        let sector = read_sector(disk, ebr)?;
        if sector.get(510..512) != Some(&[0x55, 0xAA][..]) {
            // An EBR without a signature ends the chain (Linux does the same).
            if ebr == ext_start {
                return Ok(());
            }
            return Err(corrupt(format!(
                "EBR at sector {ebr} has no 0x55AA signature"
            )));
        }
        let s = slots(&sector)?;
        let data = s[0];
        let next = s[1];
        if !data.empty() {
            let start = ebr
                .checked_add(u64::from(data.start))
                .ok_or_else(|| corrupt("logical partition start overflows"))?;
            let e = entry(
                number,
                start,
                u64::from(data.sectors),
                data.kind,
                disk_size,
                disk_id,
            )?;
            if start.saturating_add(u64::from(data.sectors)) > ext_end {
                return Err(corrupt(format!(
                    "logical partition {number} extends past its extended partition"
                )));
            }
            out.push(e);
            number = number
                .checked_add(1)
                .ok_or_else(|| corrupt("too many logical partitions"))?;
        }
        if next.empty() || !is_extended(next.kind) {
            return Ok(());
        }
        ebr = ext_start
            .checked_add(u64::from(next.start))
            .ok_or_else(|| corrupt("EBR link overflows"))?;
    }
    Err(corrupt(format!(
        "more than {MAX_LOGICALS} logical partitions"
    )))
}
