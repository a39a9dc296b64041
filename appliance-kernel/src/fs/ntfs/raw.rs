//! On-disk structures: the boot sector, update sequence arrays (fixups), MFT records and
//! their attributes, run lists. Pure functions over byte slices, every offset checked.
//!
//! Layouts follow the public NTFS documentation (the Linux-NTFS project's "NTFS
//! Documentation" and Microsoft's published structure definitions).

use super::corrupt;
use crate::fs::FsResult;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Fixups always protect 512-byte strides, whatever the sector size.
pub const FIXUP_STRIDE: usize = 512;

pub const AT_STANDARD_INFORMATION: u32 = 0x10;
pub const AT_ATTRIBUTE_LIST: u32 = 0x20;
pub const AT_FILE_NAME: u32 = 0x30;
pub const AT_VOLUME_NAME: u32 = 0x60;
pub const AT_DATA: u32 = 0x80;
pub const AT_INDEX_ROOT: u32 = 0x90;
pub const AT_INDEX_ALLOCATION: u32 = 0xA0;
pub const AT_BITMAP: u32 = 0xB0;
pub const AT_REPARSE_POINT: u32 = 0xC0;
const AT_END: u32 = 0xFFFF_FFFF;

/// Attribute header flags.
pub const ATTR_COMPRESSED: u16 = 0x0001;
pub const ATTR_ENCRYPTED: u16 = 0x4000;

/// MFT record header flags.
pub const MFT_IN_USE: u16 = 0x0001;
pub const MFT_DIRECTORY: u16 = 0x0002;

/// File attribute flags ($STANDARD_INFORMATION, $FILE_NAME).
pub const FILE_ATTR_SYSTEM: u32 = 0x0004;
pub const FILE_ATTR_ENCRYPTED: u32 = 0x4000;

/// Longest run list accepted for one attribute (all extents together).
pub const MAX_RUNS: usize = 1 << 16;

pub fn le16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Little-endian UTF-16 code units of a byte slice (a trailing odd byte is dropped).
pub fn utf16_units(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect()
}

/// UTF-16 as UTF-8; unpaired surrogates become U+FFFD.
pub fn utf16_to_string(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// NTFS time (100 ns units since 1601-01-01 UTC) as Unix seconds.
pub fn ntfs_time_to_unix(t: u64) -> i64 {
    // OK to cast: u64::MAX / 10^7 < i64::MAX.
    (t / 10_000_000) as i64 - 11_644_473_600
}

/// Volume geometry from the boot sector.
#[derive(Debug, Clone)]
pub struct Geometry {
    pub cluster_size: u64,
    pub total_clusters: u64,
    pub mft_lcn: u64,
    pub record_size: usize,
    pub serial: u64,
}

/// A size given as clusters (positive) or as a power of two in bytes (negative).
fn clusters_or_log(v: u8, cluster_size: u64) -> Option<u64> {
    // OK to cast: reinterpreting the on-disk byte as signed is the format's rule.
    let s = v as i8;
    if s > 0 {
        cluster_size.checked_mul(u64::from(v))
    } else {
        let shift = u32::from(s.unsigned_abs());
        (shift < 32).then(|| 1u64 << shift)
    }
}

impl Geometry {
    /// Parses and sanity-checks the first sector.
    pub fn parse(b: &[u8]) -> FsResult<Self> {
        if b.get(3..11) != Some(b"NTFS    ".as_slice()) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "ntfs: boot sector has no NTFS signature",
            ));
        }
        let bad = |what: &str| corrupt(format!("boot sector: {what}"));
        let sector_size = u64::from(le16(b, 0x0B).ok_or_else(|| bad("short"))?);
        if !sector_size.is_power_of_two() || !(256..=4096).contains(&sector_size) {
            return Err(bad("bad bytes per sector"));
        }
        let spc = *b.get(0x0D).ok_or_else(|| bad("short"))?;
        // Values above 0x80 encode 2^(256-v) sectors (clusters above 64 KiB).
        let sectors_per_cluster = if spc > 0x80 {
            let shift = 256 - u32::from(spc);
            if shift > 20 {
                return Err(bad("bad sectors per cluster"));
            }
            1u64 << shift
        } else {
            u64::from(spc)
        };
        if !sectors_per_cluster.is_power_of_two() {
            return Err(bad("bad sectors per cluster"));
        }
        let cluster_size = sector_size * sectors_per_cluster;
        if cluster_size > 2 << 20 {
            return Err(bad("cluster size above 2 MiB"));
        }
        let total_sectors = le64(b, 0x28).ok_or_else(|| bad("short"))?;
        let total_clusters = total_sectors / sectors_per_cluster;
        let mft_lcn = le64(b, 0x30).ok_or_else(|| bad("short"))?;
        if total_clusters == 0 || mft_lcn >= total_clusters {
            return Err(bad("MFT lies outside the volume"));
        }
        let rec = clusters_or_log(*b.get(0x40).ok_or_else(|| bad("short"))?, cluster_size)
            .ok_or_else(|| bad("bad MFT record size"))?;
        if !rec.is_power_of_two() || !(512..=4096).contains(&rec) {
            return Err(bad("bad MFT record size"));
        }
        let idx = clusters_or_log(*b.get(0x44).ok_or_else(|| bad("short"))?, cluster_size)
            .ok_or_else(|| bad("bad index block size"))?;
        if !idx.is_power_of_two() || !(512..=65536).contains(&idx) {
            return Err(bad("bad index block size"));
        }
        // The index block size is checked for sanity only: each directory's $INDEX_ROOT
        // carries the size its blocks really have.
        Ok(Geometry {
            cluster_size,
            total_clusters,
            mft_lcn,
            // OK to cast: both bounded above.
            record_size: rec as usize,
            serial: le64(b, 0x48).ok_or_else(|| bad("short"))?,
        })
    }
}

/// Checks the magic and the update sequence array of a multi-sector record and puts the
/// saved bytes back. `what` names the structure in errors.
pub fn apply_fixups(buf: &mut [u8], magic: &[u8; 4], what: &str) -> FsResult<()> {
    if buf.get(..4) != Some(magic.as_slice()) {
        return Err(corrupt(format!("{what}: bad magic")));
    }
    let bad = || corrupt(format!("{what}: bad update sequence array"));
    let usa_ofs = usize::from(le16(buf, 4).ok_or_else(bad)?);
    let usa_count = usize::from(le16(buf, 6).ok_or_else(bad)?);
    let strides = buf.len() / FIXUP_STRIDE;
    if strides == 0 || usa_count != strides + 1 || usa_ofs < 8 || usa_ofs % 2 != 0 {
        return Err(bad());
    }
    let usa_end = usa_ofs.checked_add(usa_count * 2).ok_or_else(bad)?;
    if usa_end > FIXUP_STRIDE - 2 {
        return Err(bad());
    }
    let usn = le16(buf, usa_ofs).ok_or_else(bad)?;
    for i in 1..usa_count {
        let pos = i * FIXUP_STRIDE - 2;
        if le16(buf, pos) != Some(usn) {
            return Err(corrupt(format!(
                "{what}: fixup mismatch in sector {} (torn write)",
                i - 1
            )));
        }
        let saved = le16(buf, usa_ofs + 2 * i).ok_or_else(bad)?;
        buf.get_mut(pos..pos + 2)
            .ok_or_else(bad)?
            .copy_from_slice(&saved.to_le_bytes());
    }
    Ok(())
}

/// One run: `len` clusters from `vcn`, at `lcn` or a hole (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub vcn: u64,
    pub lcn: Option<u64>,
    pub len: u64,
}

impl Run {
    pub fn end(&self) -> u64 {
        // Checked when the run was decoded.
        self.vcn.saturating_add(self.len)
    }
}

/// Decodes the mapping pairs in `b` for an extent starting at `vcn`, appending to `out`.
/// Every allocated run must lie inside the volume's `total_clusters`.
pub fn decode_runs(
    b: &[u8],
    mut vcn: u64,
    total_clusters: u64,
    out: &mut Vec<Run>,
    what: &str,
) -> FsResult<u64> {
    let bad = |m: &str| corrupt(format!("{what}: run list: {m}"));
    let mut pos = 0usize;
    let mut lcn: i64 = 0;
    loop {
        let h = *b.get(pos).ok_or_else(|| bad("not terminated"))?;
        if h == 0 {
            return Ok(vcn);
        }
        let len_size = usize::from(h & 0x0F);
        let off_size = usize::from(h >> 4);
        if len_size == 0 || len_size > 8 || off_size > 8 {
            return Err(bad("bad run header"));
        }
        pos += 1;
        let len_bytes = b
            .get(pos..pos + len_size)
            .ok_or_else(|| bad("truncated run"))?;
        let mut len = 0u64;
        for (i, v) in len_bytes.iter().enumerate() {
            len |= u64::from(*v) << (8 * i);
        }
        pos += len_size;
        if len == 0 || len > i64::MAX as u64 {
            return Err(bad("bad run length"));
        }
        let run_lcn = if off_size == 0 {
            None
        } else {
            let off_bytes = b
                .get(pos..pos + off_size)
                .ok_or_else(|| bad("truncated run"))?;
            let mut d = 0u64;
            for (i, v) in off_bytes.iter().enumerate() {
                d |= u64::from(*v) << (8 * i);
            }
            // Sign-extend from off_size bytes.
            let shift = 64 - 8 * off_size as u32;
            // OK to cast: a deliberate reinterpretation for sign extension.
            let delta = ((d << shift) as i64) >> shift;
            pos += off_size;
            lcn = lcn.checked_add(delta).ok_or_else(|| bad("LCN overflows"))?;
            // OK to cast: checked non-negative.
            let l = u64::try_from(lcn).map_err(|_| bad("negative LCN"))?;
            let end = l.checked_add(len).ok_or_else(|| bad("run overflows"))?;
            if end > total_clusters {
                return Err(bad("run points past the end of the volume"));
            }
            Some(l)
        };
        if out.len() >= MAX_RUNS {
            return Err(bad("too many runs"));
        }
        out.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn.checked_add(len).ok_or_else(|| bad("VCN overflows"))?;
    }
}

/// The value of one attribute record (an extent, for non-resident attributes split over
/// several records).
#[derive(Debug, Clone)]
pub enum RawValue {
    Resident(Vec<u8>),
    NonResident {
        lowest_vcn: u64,
        runs: Vec<Run>,
        /// Decoded end VCN of this extent.
        end_vcn: u64,
        data_size: u64,
        init_size: u64,
        compression_unit: u8,
    },
}

#[derive(Debug, Clone)]
pub struct RawAttr {
    pub ty: u32,
    pub name: Vec<u16>,
    pub flags: u16,
    pub value: RawValue,
}

/// Header fields of an MFT record used here.
pub struct RecordHeader {
    pub flags: u16,
    /// Names of the file as the record counts them (a DOS alias counts).
    pub link_count: u16,
    pub base: u64,
}

pub fn record_header(rec: &[u8]) -> Option<RecordHeader> {
    Some(RecordHeader {
        flags: le16(rec, 0x16)?,
        link_count: le16(rec, 0x12)?,
        base: le64(rec, 0x20)? & 0x0000_FFFF_FFFF_FFFF,
    })
}

/// Every attribute of one (fixed-up) MFT record.
pub fn parse_attrs(
    rec: &[u8],
    total_clusters: u64,
    out: &mut Vec<RawAttr>,
    what: &str,
) -> FsResult<()> {
    let bad = |m: &str| corrupt(format!("{what}: {m}"));
    let first = usize::from(le16(rec, 0x14).ok_or_else(|| bad("short record"))?);
    let used = le32(rec, 0x18).ok_or_else(|| bad("short record"))? as usize;
    let used = used.min(rec.len());
    let mut pos = first;
    loop {
        let ty = le32(rec, pos)
            .filter(|_| pos + 4 <= used)
            .ok_or_else(|| bad("attributes run past the end of the record"))?;
        if ty == AT_END {
            return Ok(());
        }
        let len = le32(rec, pos + 4).ok_or_else(|| bad("truncated attribute"))? as usize;
        let end = pos
            .checked_add(len)
            .ok_or_else(|| bad("bad attribute length"))?;
        if len < 0x18 || end > used {
            return Err(bad("bad attribute length"));
        }
        let a = rec
            .get(pos..end)
            .ok_or_else(|| bad("bad attribute length"))?;
        let nonres = *a.get(8).ok_or_else(|| bad("truncated attribute"))?;
        let name_len = usize::from(*a.get(9).ok_or_else(|| bad("truncated attribute"))?);
        let name_ofs = usize::from(le16(a, 10).ok_or_else(|| bad("truncated attribute"))?);
        let flags = le16(a, 12).ok_or_else(|| bad("truncated attribute"))?;
        let name = if name_len == 0 {
            Vec::new()
        } else {
            utf16_units(
                a.get(name_ofs..name_ofs + 2 * name_len)
                    .ok_or_else(|| bad("attribute name outside the attribute"))?,
            )
        };
        let value = if nonres == 0 {
            let vlen = le32(a, 0x10).ok_or_else(|| bad("truncated attribute"))? as usize;
            let vofs = usize::from(le16(a, 0x14).ok_or_else(|| bad("truncated attribute"))?);
            let v = vofs
                .checked_add(vlen)
                .and_then(|e| a.get(vofs..e))
                .ok_or_else(|| bad("resident value outside the attribute"))?;
            RawValue::Resident(v.to_vec())
        } else {
            let f = |o| le64(a, o).ok_or_else(|| bad("truncated non-resident attribute"));
            let lowest_vcn = f(0x10)?;
            let mp = usize::from(le16(a, 0x20).ok_or_else(|| bad("truncated attribute"))?);
            let compression_unit = *a.get(0x22).ok_or_else(|| bad("truncated attribute"))?;
            let (data_size, init_size) = (f(0x30)?, f(0x38)?);
            let pairs = a
                .get(mp..)
                .ok_or_else(|| bad("mapping pairs outside the attribute"))?;
            let mut runs = Vec::new();
            let end_vcn = decode_runs(pairs, lowest_vcn, total_clusters, &mut runs, what)?;
            RawValue::NonResident {
                lowest_vcn,
                runs,
                end_vcn,
                data_size,
                init_size,
                compression_unit,
            }
        };
        out.push(RawAttr {
            ty,
            name,
            flags,
            value,
        });
        pos = end;
    }
}

/// Record numbers named by an $ATTRIBUTE_LIST value, in list order, without duplicates;
/// more than `max` distinct records is `Corrupt`.
pub fn attribute_list_records(list: &[u8], max: usize, what: &str) -> FsResult<Vec<u64>> {
    let mut out: Vec<u64> = Vec::new();
    let mut seen = alloc::collections::BTreeSet::new();
    let mut pos = 0usize;
    while pos + 0x1A <= list.len() {
        let rlen = usize::from(le16(list, pos + 4).unwrap_or(0));
        if rlen < 0x1A || pos + rlen > list.len() {
            return Err(corrupt(format!("{what}: attribute list: bad entry length")));
        }
        let r = le64(list, pos + 0x10).unwrap_or(0) & 0x0000_FFFF_FFFF_FFFF;
        if seen.insert(r) {
            if out.len() >= max {
                return Err(corrupt(format!(
                    "{what}: attribute list names more than {max} records"
                )));
            }
            out.push(r);
        }
        pos += rlen;
    }
    Ok(out)
}
