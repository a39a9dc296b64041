//! The on-disk structures of an LVM2 physical volume: the label (`LABELONE` in one of the
//! first four sectors) with its PV header (UUID, size, data and metadata area lists), and
//! each metadata area's header (`mda_header`) whose first `raw_locn` points at the current
//! VG metadata text in the area's circular buffer.
//!
//! Layouts (all little-endian), from LVM2's format documentation:
//! - label header, 32 bytes: `id[8]="LABELONE"`, `sector_xl u64` (the sector it is in),
//!   `crc_xl u32` (of bytes 20..512 of the sector), `offset_xl u32` (of the PV header
//!   from the label's start), `type[8]="LVM2 001"`.
//! - PV header: `pv_uuid[32]`, `device_size_xl u64` (bytes), then two lists of
//!   `{offset u64, size u64}` (data areas, then metadata areas), each ended by an
//!   all-zero entry; offsets are bytes from the start of the device.
//! - mda header, 512 bytes: `checksum_xl u32` (of bytes 4..512), `magic[16]`,
//!   `version u32 = 1`, `start u64`, `size u64`, then `raw_locn {offset u64, size u64,
//!   checksum u32, flags u32}` entries ended by an all-zero one; `offset` is relative to
//!   the area's start, and the text wraps from the area's end back to just after the
//!   header.

use crate::block::SharedDevice;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

pub const LABEL_SCAN_SECTORS: u64 = 4;
pub const MDA_HEADER_SIZE: u64 = 512;
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// LVM's checksum seed.
const INITIAL_CRC: u32 = 0xf597_a6cf;
/// `raw_locn.flags`: this copy is ignored (`pvchange --metadataignore y`).
const RAW_LOCN_IGNORED: u32 = 1;

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c; // OK to unwrap: i < 256, the table's length
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// LVM's checksum: the reflected CRC-32 polynomial, no final inversion, continued from
/// `crc` (start with [`crc_start`]).
pub fn crc_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8); // OK to unwrap: index masked to 0..=255
    }
    crc
}

pub fn crc_start() -> u32 {
    INITIAL_CRC
}

pub fn crc(data: &[u8]) -> u32 {
    crc_update(INITIAL_CRC, data)
}

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, msg)
}

pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// Reads `len` bytes at `offset`; a range past the device is `Corrupt` (`what` pointed
/// there).
pub fn read(dev: &SharedDevice, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, Error> {
    let size = dev.borrow().size();
    if offset.checked_add(len as u64).is_none_or(|e| e > size) {
        return Err(corrupt(format!(
            "lvm: {what} at {offset}+{len} is past the end of the device ({size} bytes)"
        )));
    }
    let mut buf = vec![0u8; len];
    dev.borrow_mut().read_at(offset, &mut buf)?;
    Ok(buf)
}

/// A byte range of the PV device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub offset: u64,
    /// 0: up to the end of the device (data areas).
    pub size: u64,
}

/// A physical volume's label and header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// Dashed as LVM prints it: `6-4-4-4-4-4-6` characters.
    pub uuid: String,
    /// The sector the label was found in.
    pub sector: u64,
    /// The device size the PV header records, in bytes.
    pub device_size: u64,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
}

/// `abcdef1234...` (32 chars) → `abcdef-1234-...` as LVM prints PV and VG UUIDs.
pub fn dashed_uuid(raw: &[u8]) -> Option<String> {
    if raw.len() != 32 || !raw.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut s = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in [6usize, 4, 4, 4, 4, 4, 6].iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        let part = raw.get(at..at + n)?;
        s.push_str(core::str::from_utf8(part).ok()?);
        at += n;
    }
    Some(s)
}

/// Reads an area list (`{offset, size}` pairs ended by a zero entry) at `off` in `sector`;
/// returns the list and the offset after the terminator.
fn areas(sector: &[u8], mut off: usize, what: &str) -> Result<(Vec<Area>, usize), Error> {
    let mut out = Vec::new();
    loop {
        let offset = le64(sector, off);
        let size = le64(sector, off + 8);
        let (Some(offset), Some(size)) = (offset, size) else {
            return Err(corrupt(format!(
                "lvm: PV header {what} list runs past its sector"
            )));
        };
        off += 16;
        if offset == 0 {
            return Ok((out, off));
        }
        out.push(Area { offset, size });
    }
}

/// Looks for an LVM2 label in the first four sectors. `Ok(None)`: not a PV. A label
/// whose checksum or header is wrong is `Corrupt`.
pub fn read_label(dev: &SharedDevice) -> Result<Option<PvLabel>, Error> {
    let size = dev.borrow().size();
    for sector in 0..LABEL_SCAN_SECTORS {
        let offset = sector * 512;
        if offset + 512 > size {
            break;
        }
        let s = read(dev, offset, 512, "label sector")?;
        if s.get(..8) != Some(b"LABELONE") {
            continue;
        }
        if le64(&s, 8) != Some(sector) {
            // A stale or copied label: LVM ignores it as well.
            continue;
        }
        let stored = le32(&s, 16).unwrap_or_default();
        if crc(s.get(20..).unwrap_or_default()) != stored {
            return Err(corrupt(format!(
                "lvm: PV label in sector {sector}: bad checksum"
            )));
        }
        if s.get(24..32) != Some(b"LVM2 001") {
            return Err(corrupt(format!(
                "lvm: label in sector {sector} is not an LVM2 label"
            )));
        }
        let hdr = le32(&s, 20).unwrap_or_default() as usize;
        if !(32..=512 - 48).contains(&hdr) {
            return Err(corrupt(format!(
                "lvm: PV label in sector {sector}: header offset {hdr} out of range"
            )));
        }
        let uuid = s
            .get(hdr..hdr + 32)
            .and_then(dashed_uuid)
            .ok_or_else(|| corrupt("lvm: PV header: bad PV UUID"))?;
        let device_size = le64(&s, hdr + 32).unwrap_or_default();
        let (data_areas, next) = areas(&s, hdr + 40, "data area")?;
        let (metadata_areas, _) = areas(&s, next, "metadata area")?;
        return Ok(Some(PvLabel {
            uuid,
            sector,
            device_size,
            data_areas,
            metadata_areas,
        }));
    }
    Ok(None)
}

/// The current metadata text of one metadata area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdaText {
    pub text: Vec<u8>,
    /// Size of the area (header included) and of the text.
    pub area_size: u64,
}

/// Reads one metadata area: its header (checksum, magic, version, start and size
/// checked), then the text its first `raw_locn` points at, across the end of the circular
/// buffer when it wraps, with the text's checksum checked. `Ok(None)`: the area holds no
/// metadata or is ignored.
pub fn read_mda(dev: &SharedDevice, area: Area, max_text: usize) -> Result<Option<MdaText>, Error> {
    let h = read(
        dev,
        area.offset,
        MDA_HEADER_SIZE as usize,
        "metadata area header",
    )?;
    let stored = le32(&h, 0).unwrap_or_default();
    if crc(h.get(4..).unwrap_or_default()) != stored {
        return Err(corrupt(format!(
            "lvm: metadata area header at {}: bad checksum",
            area.offset
        )));
    }
    if h.get(4..20) != Some(MDA_MAGIC.as_slice()) {
        return Err(corrupt(format!(
            "lvm: metadata area header at {}: bad magic",
            area.offset
        )));
    }
    if le32(&h, 20) != Some(1) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "lvm: metadata area header at {}: version {}",
                area.offset,
                le32(&h, 20).unwrap_or_default()
            ),
        ));
    }
    let start = le64(&h, 24).unwrap_or_default();
    let size = le64(&h, 32).unwrap_or_default();
    if start != area.offset || size != area.size || size <= MDA_HEADER_SIZE {
        return Err(corrupt(format!(
            "lvm: metadata area header at {}: records area {start}+{size}, the PV header {}+{}",
            area.offset, area.offset, area.size
        )));
    }
    let (Some(off), Some(len), Some(sum), Some(flags)) =
        (le64(&h, 40), le64(&h, 48), le32(&h, 56), le32(&h, 60))
    else {
        return Ok(None);
    };
    if off == 0 || flags & RAW_LOCN_IGNORED != 0 {
        return Ok(None);
    }
    let buf_len = size - MDA_HEADER_SIZE;
    if off < MDA_HEADER_SIZE || off >= size || len == 0 || len > buf_len {
        return Err(corrupt(format!(
            "lvm: metadata area at {}: text {off}+{len} does not fit the area ({size} bytes)",
            area.offset
        )));
    }
    if len > max_text as u64 {
        return Err(corrupt(format!(
            "lvm: metadata area at {}: text of {len} bytes exceeds the {max_text}-byte limit",
            area.offset
        )));
    }
    // The first part runs to the end of the area at most; the rest wraps to just after
    // the header.
    let first = len.min(size - off);
    let abs = |o: u64| {
        area.offset
            .checked_add(o)
            .ok_or_else(|| corrupt("lvm: metadata area offset overflows"))
    };
    let mut text = read(dev, abs(off)?, first as usize, "metadata text")?;
    if first < len {
        let rest = read(
            dev,
            abs(MDA_HEADER_SIZE)?,
            (len - first) as usize,
            "metadata text (wrapped part)",
        )?;
        text.extend_from_slice(&rest);
    }
    if crc(&text) != sum {
        return Err(corrupt(format!(
            "lvm: metadata text in area at {}: bad checksum",
            area.offset
        )));
    }
    Ok(Some(MdaText {
        text,
        area_size: size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_dashes() {
        assert_eq!(
            dashed_uuid(b"2peuwPueGxm8r2YGXddY3BAar4heQZ6l").unwrap(),
            "2peuwP-ueGx-m8r2-YGXd-dY3B-Aar4-heQZ6l"
        );
        assert!(dashed_uuid(b"short").is_none());
        assert!(dashed_uuid(&[0u8; 32]).is_none());
    }

    #[test]
    fn crc_is_lvm_crc() {
        // Standard CRC-32 = !crc_update(!0, data); LVM's differs only in its seed.
        assert_eq!(!crc_update(!0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc(b""), INITIAL_CRC);
    }
}
