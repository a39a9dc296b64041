//! XFS on-disk structures: pure parsers and validators over byte slices, no I/O.
//!
//! Everything here takes the bytes of one structure (a superblock sector, an AG header,
//! an inode, a btree or directory block) and either returns its decoded fields or a
//! `Corrupt` error naming the structure. Reading the bytes from the device, caching and
//! walking between structures lives one level up (`super::io`, `super::extents`,
//! `super::dirs`), so a future writer can reuse these parsers and checks as they are.
//!
//! Layouts follow the XFS Algorithms & Data Structures documentation; all multi-byte
//! fields are big-endian except the CRC fields (see [`super::crc`]).

pub mod ag;
pub mod bmap;
pub mod dir;
pub mod inode;
pub mod log;
pub mod sb;
pub mod symlink;

use alloc::format;
use alloc::string::String;
use wire::{Error, ErrorKind};

/// A `Corrupt` error with the `xfs: ` prefix.
pub fn corrupt(msg: impl core::fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, format!("xfs: {msg}"))
}

/// An `Unsupported` error with the `xfs: ` prefix.
pub fn unsupported(msg: impl core::fmt::Display) -> Error {
    Error::new(ErrorKind::Unsupported, format!("xfs: {msg}"))
}

/// `N` bytes of `b` at `off`, or `None` when they do not all lie inside `b`.
pub fn bytes<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    b.get(off..end)?.try_into().ok()
}

// Fixed-width big-endian reads. Every parser checks its structure's length before
// reading fields, so these never fall outside in practice; if one did, the field reads
// as 0, which the structure's own checks (magic numbers, counts) then reject.

pub fn be16(b: &[u8], off: usize) -> u16 {
    bytes(b, off).map_or(0, u16::from_be_bytes)
}

pub fn be32(b: &[u8], off: usize) -> u32 {
    bytes(b, off).map_or(0, u32::from_be_bytes)
}

pub fn be64(b: &[u8], off: usize) -> u64 {
    bytes(b, off).map_or(0, u64::from_be_bytes)
}

/// Big-endian stores for the writer: a store outside `b` is dropped (callers size their
/// buffers from the geometry first, so this never happens in practice).
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = off.checked_add(2).and_then(|e| b.get_mut(off..e)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = off.checked_add(4).and_then(|e| b.get_mut(off..e)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub fn put64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = off.checked_add(8).and_then(|e| b.get_mut(off..e)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub fn put8(b: &mut [u8], off: usize, v: u8) {
    if let Some(s) = b.get_mut(off) {
        *s = v;
    }
}

/// Copies `src` into `b` at `off` (dropped when it does not fit).
pub fn put_bytes(b: &mut [u8], off: usize, src: &[u8]) {
    if let Some(s) = off.checked_add(src.len()).and_then(|e| b.get_mut(off..e)) {
        s.copy_from_slice(src);
    }
}

pub fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// A 16-byte UUID field.
pub fn uuid_at(b: &[u8], off: usize) -> [u8; 16] {
    bytes(b, off).unwrap_or([0; 16])
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Ceiling of log2 (the number of bits needed to hold `v - 1`); 0 for 0 and 1.
pub fn log2_roundup(v: u64) -> u32 {
    if v <= 1 {
        0
    } else {
        64 - (v - 1).leading_zeros()
    }
}
