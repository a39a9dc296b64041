//! rpm's ndb package database (`Packages.db`, SUSE ≥ 15.3): a 32-byte header
//! (`RpmP`, version 0, generation, slot page count, next package index) sharing the
//! first slot page with the slot table; 16-byte slots (`Slot`, package index, block
//! offset, block count); blobs at `block offset × 16`: a 16-byte head (`BlbS`, package
//! index, generation, length), the header blob, padding, and a 12-byte tail (Adler-32 of
//! everything before it, length, `BlbE`). All little-endian.
//!
//! Every slot and blob is checked (magics, index, lengths, checksum); a bad blob is
//! skipped and counted.

use super::source::{Reader, Result};
use alloc::format;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

const DB_MAGIC: &[u8; 4] = b"RpmP";
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const HEAD_MAGIC: &[u8; 4] = b"BlbS";
const TAIL_MAGIC: &[u8; 4] = b"BlbE";
const PAGE: u64 = 4096;
const BLK: u64 = 16;
/// rpm's own bound on slot pages.
const MAX_SLOT_PAGES: u32 = 2048;

fn corrupt(what: impl Into<alloc::string::String>) -> Error {
    Error::new(ErrorKind::Corrupt, format!("rpm ndb: {}", what.into()))
}

fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// Adler-32 (zlib's checksum), continuing from `a`.
pub fn adler32(a: u32, data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut s1, mut s2) = (a & 0xffff, a >> 16);
    for chunk in data.chunks(5552) {
        for &b in chunk {
            s1 += u32::from(b);
            s2 += s1;
        }
        s1 %= MOD;
        s2 %= MOD;
    }
    (s2 << 16) | s1
}

/// Calls `f` with the header blob of every package, in slot order, until it returns
/// false. Returns the slots skipped (a blob that does not check out).
pub fn rpm_packages(r: &mut Reader, f: &mut dyn FnMut(&[u8]) -> bool) -> Result<u64> {
    let h = r
        .read(0, 32)
        .map_err(|_| corrupt("file shorter than its header"))?;
    if h.get(..4) != Some(&DB_MAGIC[..]) {
        return Err(corrupt("bad magic"));
    }
    let version = le32(&h, 4).unwrap_or(u32::MAX);
    if version != 0 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("rpm ndb: version {version}"),
        ));
    }
    let npages = le32(&h, 12).unwrap_or(0);
    if npages == 0 || npages > MAX_SLOT_PAGES {
        return Err(corrupt(format!("{npages} slot pages")));
    }
    let table_len = u64::from(npages) * PAGE;
    let slots = r
        .read(
            0,
            usize::try_from(table_len).map_err(|_| corrupt("slot table"))?,
        )
        .map_err(|_| corrupt("slot table runs past the end of the file"))?;
    let mut skipped = 0u64;
    // The header occupies the first two slots.
    for s in slots.chunks_exact(16).skip(2) {
        if s.get(..4) != Some(&SLOT_MAGIC[..]) {
            return Err(corrupt("bad slot magic"));
        }
        let (Some(pkgidx), Some(blkoff), Some(blkcnt)) = (le32(s, 4), le32(s, 8), le32(s, 12))
        else {
            continue;
        };
        if pkgidx == 0 {
            continue;
        }
        match blob(r, pkgidx, blkoff, blkcnt, table_len) {
            Ok(b) => {
                if !f(&b) {
                    break;
                }
            }
            Err(_) => skipped += 1,
        }
    }
    Ok(skipped)
}

fn blob(r: &mut Reader, pkgidx: u32, blkoff: u32, blkcnt: u32, table_len: u64) -> Result<Vec<u8>> {
    let off = u64::from(blkoff) * BLK;
    let total = u64::from(blkcnt) * BLK;
    if off < table_len || total < 32 || total > super::rpm::MAX_BLOB as u64 + 48 {
        return Err(corrupt(format!("package {pkgidx}: bad blob location")));
    }
    let all = r.read(off, total as usize)?;
    let (head, rest) = all.split_at_checked(16).ok_or_else(|| corrupt("blob"))?;
    if head.get(..4) != Some(&HEAD_MAGIC[..]) || le32(head, 4) != Some(pkgidx) {
        return Err(corrupt(format!("package {pkgidx}: bad blob head")));
    }
    let len = le32(head, 12).ok_or_else(|| corrupt("blob"))? as u64;
    if (16 + len + 12).div_ceil(BLK) != u64::from(blkcnt) {
        return Err(corrupt(format!(
            "package {pkgidx}: blob length {len} does not fit its blocks"
        )));
    }
    let tail_at = all.len() - 12;
    let tail = all.get(tail_at..).ok_or_else(|| corrupt("blob"))?;
    if tail.get(8..12) != Some(&TAIL_MAGIC[..]) || le32(tail, 4).map(u64::from) != Some(len) {
        return Err(corrupt(format!("package {pkgidx}: bad blob tail")));
    }
    let sum = adler32(1, all.get(..tail_at).ok_or_else(|| corrupt("blob"))?);
    if le32(tail, 0) != Some(sum) {
        return Err(corrupt(format!("package {pkgidx}: blob checksum mismatch")));
    }
    Ok(rest
        .get(..len as usize)
        .ok_or_else(|| corrupt("blob"))?
        .to_vec())
}

#[cfg(test)]
/// Writes an ndb file holding `blobs` (for tests): the layout rpm's ndb backend writes,
/// with one slot page.
pub fn build(blobs: &[&[u8]]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; PAGE as usize];
    out[..4].copy_from_slice(DB_MAGIC);
    out[12..16].copy_from_slice(&1u32.to_le_bytes());
    out[16..20].copy_from_slice(&(blobs.len() as u32 + 1).to_le_bytes());
    for s in out.chunks_exact_mut(16).skip(2) {
        s[..4].copy_from_slice(SLOT_MAGIC);
    }
    for (i, b) in blobs.iter().enumerate() {
        let pkgidx = i as u32 + 1;
        let blkoff = out.len() as u64 / BLK;
        let blkcnt = (16 + b.len() as u64 + 12).div_ceil(BLK);
        let start = out.len();
        out.extend_from_slice(HEAD_MAGIC);
        out.extend(pkgidx.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend((b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
        out.resize(start + (blkcnt * BLK) as usize - 12, 0);
        let sum = adler32(1, &out[start..]);
        out.extend(sum.to_le_bytes());
        out.extend((b.len() as u32).to_le_bytes());
        out.extend_from_slice(TAIL_MAGIC);
        let slot = 32 + 16 * i;
        out[slot + 4..slot + 8].copy_from_slice(&pkgidx.to_le_bytes());
        out[slot + 8..slot + 12].copy_from_slice(&(blkoff as u32).to_le_bytes());
        out[slot + 12..slot + 16].copy_from_slice(&(blkcnt as u32).to_le_bytes());
    }
    out
}
