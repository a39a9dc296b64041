//! GPT (UEFI spec §5.3): the header at LBA 1 (or its backup at the last LBA when the
//! primary fails its checks), header CRC32 and partition-entry-array CRC32 both verified.
//! GUIDs are printed as sgdisk does: upper case, dashed, the first three fields stored
//! little-endian on disk.

use super::crc32::crc32;
use super::{PartEntry, corrupt, read_bytes};
use crate::block::{SECTOR, SharedDevice};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, TableKind};

/// Largest entry array we accept (the usual one is 128 × 128 bytes = 16 KiB).
const MAX_ARRAY_BYTES: u64 = 4 << 20;
/// Most entries we accept.
const MAX_ENTRIES: u32 = 65536;

fn le_u32(b: &[u8], off: usize) -> Result<u32, Error> {
    let s = b
        .get(off..off.saturating_add(4))
        .ok_or_else(|| corrupt("GPT header field out of range"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u64(b: &[u8], off: usize) -> Result<u64, Error> {
    let s = b
        .get(off..off.saturating_add(8))
        .ok_or_else(|| corrupt("GPT field out of range"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// Formats a GUID stored in the mixed-endian on-disk layout, as sgdisk prints it.
pub fn guid_string(b: &[u8]) -> Option<String> {
    let g = b.get(..16)?;
    Some(format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    ))
}

/// The fields of a header that passed its checks.
struct Header {
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

/// Reads and checks the header at `lba`; `Err` says why it is unusable.
fn header(disk: &SharedDevice, lba: u64, disk_sectors: u64) -> Result<Header, Error> {
    let offset = lba
        .checked_mul(SECTOR)
        .ok_or_else(|| corrupt("GPT header offset overflows"))?;
    let h = read_bytes(disk, offset, SECTOR as usize)?;
    if h.get(..8) != Some(&b"EFI PART"[..]) {
        return Err(corrupt(format!("no GPT signature at LBA {lba}")));
    }
    let size = le_u32(&h, 12)?;
    if !(92..=SECTOR as u32).contains(&size) {
        return Err(corrupt(format!(
            "GPT header at LBA {lba}: bad header size {size}"
        )));
    }
    let stored = le_u32(&h, 16)?;
    let mut copy = h
        .get(..size as usize)
        .ok_or_else(|| corrupt("GPT header too short"))?
        .to_vec();
    copy.get_mut(16..20)
        .ok_or_else(|| corrupt("GPT header too short"))?
        .fill(0);
    if crc32(&copy) != stored {
        return Err(corrupt(format!("GPT header at LBA {lba}: CRC32 mismatch")));
    }
    if le_u64(&h, 24)? != lba {
        return Err(corrupt(format!(
            "GPT header at LBA {lba} names another LBA"
        )));
    }
    let entries_lba = le_u64(&h, 72)?;
    let num_entries = le_u32(&h, 80)?;
    let entry_size = le_u32(&h, 84)?;
    if entry_size < 128 || entry_size % 8 != 0 || entry_size > 4096 {
        return Err(corrupt(format!("GPT entry size {entry_size} is invalid")));
    }
    if num_entries > MAX_ENTRIES || u64::from(num_entries) * u64::from(entry_size) > MAX_ARRAY_BYTES
    {
        return Err(corrupt(format!(
            "GPT entry array of {num_entries} entries is too large"
        )));
    }
    if entries_lba == 0 || entries_lba >= disk_sectors {
        return Err(corrupt(format!(
            "GPT entry array at LBA {entries_lba} is outside the disk"
        )));
    }
    Ok(Header {
        entries_lba,
        num_entries,
        entry_size,
        entries_crc: le_u32(&h, 88)?,
    })
}

/// Reads the entry array of a checked header and verifies its CRC.
fn entry_array(disk: &SharedDevice, h: &Header) -> Result<Vec<u8>, Error> {
    // Both factors are bounded by the checks in `header`.
    let len = u64::from(h.num_entries) * u64::from(h.entry_size);
    let offset = h
        .entries_lba
        .checked_mul(SECTOR)
        .ok_or_else(|| corrupt("GPT entry array offset overflows"))?;
    // len <= MAX_ARRAY_BYTES, fits in usize.
    let bytes = read_bytes(disk, offset, len as usize)?;
    if crc32(&bytes) != h.entries_crc {
        return Err(corrupt("GPT partition entry array: CRC32 mismatch"));
    }
    Ok(bytes)
}

fn utf16_name(b: &[u8]) -> Option<String> {
    let units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    let s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    (!s.is_empty()).then_some(s)
}

/// Parses the GPT of a disk with a protective MBR. Uses the backup header when the
/// primary header or its entry array is damaged; both damaged → `Corrupt`.
pub fn scan(disk: &SharedDevice, disk_size: u64) -> Result<Vec<PartEntry>, Error> {
    let sectors = disk_size / SECTOR;
    if sectors < 3 {
        return Err(corrupt("disk too small for a GPT"));
    }
    let last = sectors - 1;
    let primary = header(disk, 1, sectors).and_then(|h| entry_array(disk, &h).map(|a| (h, a)));
    let (h, array) = match primary {
        Ok(x) => x,
        Err(e1) => {
            match header(disk, last, sectors).and_then(|h| entry_array(disk, &h).map(|a| (h, a))) {
                Ok(x) => x,
                Err(e2) => {
                    return Err(corrupt(format!(
                        "GPT primary and backup both unusable: {}; {}",
                        e1.message, e2.message
                    )));
                }
            }
        }
    };
    let mut out = Vec::new();
    // entry_size <= 4096, fits in usize.
    for (i, e) in array.chunks_exact(h.entry_size as usize).enumerate() {
        let type_guid = e.get(..16).ok_or_else(|| corrupt("GPT entry too short"))?;
        if type_guid.iter().all(|&b| b == 0) {
            continue;
        }
        let number = u32::try_from(i + 1).map_err(|_| corrupt("too many GPT entries"))?;
        let first = le_u64(e, 32)?;
        let last_lba = le_u64(e, 40)?;
        if first == 0 || last_lba < first || last_lba >= sectors {
            return Err(corrupt(format!(
                "GPT partition {number} (LBA {first}..={last_lba}) lies outside the disk ({sectors} sectors)"
            )));
        }
        // first <= last_lba < sectors = disk_size / 512: no overflow.
        let start = first * SECTOR;
        let size = (last_lba - first + 1) * SECTOR;
        out.push(PartEntry {
            number,
            table: TableKind::Gpt,
            start,
            size,
            part_type: guid_string(type_guid).ok_or_else(|| corrupt("GPT entry too short"))?,
            label: e.get(56..128).and_then(utf16_name),
            uuid: e.get(16..32).and_then(guid_string),
        });
    }
    Ok(out)
}
