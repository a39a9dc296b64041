//! A read-only reader of Windows registry hive files (the "regf" format), written from
//! the format's public documentation: the 4 KiB base block (signature, sequence numbers,
//! root cell, checksum), hive bins of cells, key nodes (`nk`), subkey lists (`lf`,
//! `lh`, `li`, and one level of `ri`), value lists and values (`vk`) with inline, cell
//! and big (`db`) data.
//!
//! A dirty hive (its two sequence numbers differ: the transaction logs hold newer data)
//! is read as it is and flagged; the logs are not replayed. Key and value names are
//! matched case-insensitively. Every cell offset is checked to lie in the hive bins,
//! every count is bounded, and lists cannot nest beyond what the format allows.

use super::source::{Reader, Result};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Offset of the first hive bin (cell offsets are relative to it).
const BASE: u64 = 4096;
/// The largest cell read (real cells are below 16 KiB; big data is split in segments).
const MAX_CELL: usize = 1 << 20;
/// Most subkeys or values of one key looked at.
pub const MAX_CHILDREN: usize = 1 << 16;
/// The largest value data assembled.
pub const MAX_DATA: usize = 4 << 20;

pub const REG_NONE: u32 = 0;
pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
pub const REG_LINK: u32 = 6;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

fn corrupt(what: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("registry hive: {}", what.into()),
    )
}

fn le16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The base-block checksum: XOR of its first 127 little-endian words, with 0 and
/// 0xffffffff mapped to 1 and 0xfffffffe.
pub fn checksum(base: &[u8]) -> u32 {
    let mut x = 0u32;
    for w in base.chunks_exact(4).take(127) {
        x ^= u32::from_le_bytes(w.try_into().unwrap_or_default());
    }
    match x {
        0 => 1,
        u32::MAX => u32::MAX - 1,
        x => x,
    }
}

/// An open hive.
pub struct Hive<'r, 'a> {
    r: &'r mut Reader<'a>,
    root: u32,
    /// End of the hive bins (relative to [`BASE`]).
    data_len: u64,
    /// The two sequence numbers differ.
    pub dirty: bool,
    pub minor_version: u32,
}

/// A key node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub offset: u32,
    pub name: String,
    subkey_count: u32,
    subkey_list: u32,
    value_count: u32,
    value_list: u32,
}

/// A value: its name, type and raw data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// Empty for the key's default value (`@`).
    pub name: String,
    pub kind: u32,
    pub data: Vec<u8>,
}

/// Decodes UTF-16LE up to the first NUL (lossily).
pub fn utf16(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Name bytes as stored: Latin-1 when `compressed`, else UTF-16LE.
fn name(b: &[u8], compressed: bool) -> String {
    if compressed {
        b.iter().map(|&c| char::from(c)).collect()
    } else {
        let units = b.chunks_exact(2).map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        });
        char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }
}

/// Case-insensitive name comparison (Unicode simple uppercase, as Windows compares).
pub fn name_eq(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}

impl Value {
    /// The string of a REG_SZ / REG_EXPAND_SZ / REG_LINK value (to its first NUL).
    pub fn string(&self) -> Option<String> {
        matches!(self.kind, REG_SZ | REG_EXPAND_SZ | REG_LINK).then(|| utf16(&self.data))
    }

    /// The strings of a REG_MULTI_SZ value (empty strings end the list).
    pub fn multi_string(&self) -> Option<Vec<String>> {
        if self.kind != REG_MULTI_SZ {
            return None;
        }
        let mut out = Vec::new();
        let units: Vec<u16> = self
            .data
            .chunks_exact(2)
            .map(|c| {
                u16::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ])
            })
            .collect();
        for s in units.split(|&u| u == 0) {
            if s.is_empty() {
                break;
            }
            out.push(
                char::decode_utf16(s.iter().copied())
                    .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            );
        }
        Some(out)
    }

    /// A REG_DWORD (little-endian) or REG_DWORD_BIG_ENDIAN value.
    pub fn dword(&self) -> Option<u32> {
        let b: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
        match self.kind {
            REG_DWORD => Some(u32::from_le_bytes(b)),
            REG_DWORD_BIG_ENDIAN => Some(u32::from_be_bytes(b)),
            _ => None,
        }
    }

    /// A REG_QWORD value.
    pub fn qword(&self) -> Option<u64> {
        let b: [u8; 8] = self.data.get(..8)?.try_into().ok()?;
        (self.kind == REG_QWORD).then(|| u64::from_le_bytes(b))
    }
}

impl<'r, 'a> Hive<'r, 'a> {
    /// Checks the base block (signature, checksum, root cell).
    pub fn open(r: &'r mut Reader<'a>) -> Result<Self> {
        let base = r
            .read(0, 512)
            .map_err(|_| corrupt("file shorter than its base block"))?;
        if base.get(..4) != Some(&b"regf"[..]) {
            return Err(corrupt("bad signature"));
        }
        let stored = le32(&base, 508).ok_or_else(|| corrupt("base block"))?;
        if stored != checksum(&base) {
            return Err(corrupt("base block checksum mismatch"));
        }
        let seq1 = le32(&base, 4).ok_or_else(|| corrupt("base block"))?;
        let seq2 = le32(&base, 8).ok_or_else(|| corrupt("base block"))?;
        let major = le32(&base, 20).ok_or_else(|| corrupt("base block"))?;
        let minor = le32(&base, 24).ok_or_else(|| corrupt("base block"))?;
        if major != 1 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("registry hive: format version {major}.{minor}"),
            ));
        }
        let root = le32(&base, 36).ok_or_else(|| corrupt("base block"))?;
        // Cells are read wherever the file has bins (a dirty hive may have grown past
        // the length its base block declares).
        let data_len = r.size().saturating_sub(BASE);
        let mut h = Hive {
            r,
            root,
            data_len,
            dirty: seq1 != seq2,
            minor_version: minor,
        };
        h.root()?;
        Ok(h)
    }

    /// The data of the allocated cell at `off` (without its size field).
    fn cell(&mut self, off: u32) -> Result<Vec<u8>> {
        let o = u64::from(off);
        if o % 8 != 0 || o.checked_add(4).is_none_or(|e| e > self.data_len) {
            return Err(corrupt(format!(
                "cell offset {off:#x} outside the hive bins"
            )));
        }
        let raw = self.r.le32(BASE + o)? as i32;
        if raw >= 0 {
            return Err(corrupt(format!("cell {off:#x} is free")));
        }
        let len = raw.unsigned_abs() as usize;
        if !(8..=MAX_CELL).contains(&len) || o + len as u64 > self.data_len {
            return Err(corrupt(format!("cell {off:#x}: bad size {len}")));
        }
        self.r.read(BASE + o + 4, len - 4)
    }

    /// The key node at `off`.
    pub fn key(&mut self, off: u32) -> Result<Key> {
        let c = self.cell(off)?;
        if c.get(..2) != Some(&b"nk"[..]) {
            return Err(corrupt(format!("cell {off:#x} is not a key node")));
        }
        let flags = le16(&c, 2).ok_or_else(|| corrupt("key node"))?;
        let nlen = usize::from(le16(&c, 72).ok_or_else(|| corrupt("key node"))?);
        let raw = c
            .get(76..76 + nlen)
            .ok_or_else(|| corrupt(format!("key node {off:#x}: name runs past its cell")))?;
        let g = |o| le32(&c, o).ok_or_else(|| corrupt("key node"));
        Ok(Key {
            offset: off,
            name: name(raw, flags & 0x20 != 0),
            subkey_count: g(20)?,
            subkey_list: g(28)?,
            value_count: g(36)?,
            value_list: g(40)?,
        })
    }

    pub fn root(&mut self) -> Result<Key> {
        self.key(self.root)
    }

    /// The offsets of a key's subkeys, from its subkey list (with one level of `ri`).
    fn subkey_offsets(&mut self, k: &Key) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if k.subkey_count == 0 || k.subkey_list == u32::MAX {
            return Ok(out);
        }
        let list = self.cell(k.subkey_list)?;
        let kind = list.get(..2).ok_or_else(|| corrupt("subkey list"))?;
        if kind == b"ri" {
            let n = usize::from(le16(&list, 2).ok_or_else(|| corrupt("ri list"))?);
            for i in 0..n {
                let sub =
                    le32(&list, 4 + 4 * i).ok_or_else(|| corrupt("ri list runs past its cell"))?;
                let l = self.cell(sub)?;
                if l.get(..2) == Some(&b"ri"[..]) {
                    return Err(corrupt("ri list inside an ri list"));
                }
                self.leaf_list(&l, &mut out)?;
            }
        } else {
            self.leaf_list(&list, &mut out)?;
        }
        Ok(out)
    }

    fn leaf_list(&self, l: &[u8], out: &mut Vec<u32>) -> Result<()> {
        let stride = match l.get(..2) {
            Some(b"lf") | Some(b"lh") => 8,
            Some(b"li") => 4,
            _ => return Err(corrupt("unknown subkey list type")),
        };
        let n = usize::from(le16(l, 2).ok_or_else(|| corrupt("subkey list"))?);
        for i in 0..n {
            if out.len() >= MAX_CHILDREN {
                return Err(corrupt(format!("more than {MAX_CHILDREN} subkeys")));
            }
            out.push(
                le32(l, 4 + stride * i).ok_or_else(|| corrupt("subkey list runs past its cell"))?,
            );
        }
        Ok(())
    }

    /// The subkeys of `k`, in list order (sorted by the hive).
    pub fn subkeys(&mut self, k: &Key) -> Result<Vec<Key>> {
        let offs = self.subkey_offsets(k)?;
        let mut out = Vec::with_capacity(offs.len());
        for o in offs {
            out.push(self.key(o)?);
        }
        Ok(out)
    }

    /// The subkey of `k` named `name` (case-insensitively).
    pub fn subkey(&mut self, k: &Key, name: &str) -> Result<Option<Key>> {
        for o in self.subkey_offsets(k)? {
            let c = self.key(o)?;
            if name_eq(&c.name, name) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The key at `path` below the root (`["Microsoft", "Windows NT", "CurrentVersion"]`).
    pub fn path(&mut self, path: &[&str]) -> Result<Option<Key>> {
        let mut k = self.root()?;
        for p in path {
            match self.subkey(&k, p)? {
                Some(c) => k = c,
                None => return Ok(None),
            }
        }
        Ok(Some(k))
    }

    fn value_offsets(&mut self, k: &Key) -> Result<Vec<u32>> {
        let n = k.value_count as usize;
        if n == 0 || k.value_list == u32::MAX {
            return Ok(Vec::new());
        }
        if n > MAX_CHILDREN {
            return Err(corrupt(format!("key {:?}: {n} values", k.name)));
        }
        let list = self.cell(k.value_list)?;
        (0..n)
            .map(|i| le32(&list, 4 * i).ok_or_else(|| corrupt("value list runs past its cell")))
            .collect()
    }

    /// The name of the value at `off`, and its cell.
    fn vk(&mut self, off: u32) -> Result<(String, Vec<u8>)> {
        let c = self.cell(off)?;
        if c.get(..2) != Some(&b"vk"[..]) {
            return Err(corrupt(format!("cell {off:#x} is not a value")));
        }
        let nlen = usize::from(le16(&c, 2).ok_or_else(|| corrupt("value"))?);
        let flags = le16(&c, 16).ok_or_else(|| corrupt("value"))?;
        let raw = c
            .get(20..20 + nlen)
            .ok_or_else(|| corrupt(format!("value {off:#x}: name runs past its cell")))?;
        Ok((name(raw, flags & 1 != 0), c))
    }

    fn value_data(&mut self, vk: &[u8]) -> Result<Vec<u8>> {
        let size = le32(vk, 4).ok_or_else(|| corrupt("value"))?;
        let off = le32(vk, 8).ok_or_else(|| corrupt("value"))?;
        if size & 0x8000_0000 != 0 {
            // Up to 4 bytes stored in the offset field itself.
            let n = (size & 0x7fff_ffff).min(4) as usize;
            return Ok(off.to_le_bytes().get(..n).unwrap_or_default().to_vec());
        }
        let size = size as usize;
        if size > MAX_DATA {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("registry hive: a {size}-byte value exceeds the bound"),
            ));
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let c = self.cell(off)?;
        if size > 16344 && self.minor_version >= 4 && c.get(..2) == Some(&b"db"[..]) {
            let n = usize::from(le16(&c, 2).ok_or_else(|| corrupt("big data"))?);
            let list = self.cell(le32(&c, 4).ok_or_else(|| corrupt("big data"))?)?;
            let mut out = Vec::with_capacity(size);
            for i in 0..n {
                if out.len() >= size {
                    break;
                }
                let seg = le32(&list, 4 * i).ok_or_else(|| corrupt("big data list"))?;
                let d = self.cell(seg)?;
                let want = (size - out.len()).min(d.len()).min(16344);
                out.extend_from_slice(d.get(..want).unwrap_or_default());
            }
            if out.len() < size {
                return Err(corrupt("big data shorter than its value"));
            }
            return Ok(out);
        }
        c.get(..size)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| corrupt("value data runs past its cell"))
    }

    /// Every value of `k`.
    pub fn values(&mut self, k: &Key) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for o in self.value_offsets(k)? {
            let (name, c) = self.vk(o)?;
            let kind = le32(&c, 12).ok_or_else(|| corrupt("value"))?;
            let data = self.value_data(&c)?;
            out.push(Value { name, kind, data });
        }
        Ok(out)
    }

    /// The value of `k` named `name` (case-insensitively; `""` is the default value).
    pub fn value(&mut self, k: &Key, name: &str) -> Result<Option<Value>> {
        for o in self.value_offsets(k)? {
            let (n, c) = self.vk(o)?;
            if name_eq(&n, name) {
                let kind = le32(&c, 12).ok_or_else(|| corrupt("value"))?;
                let data = self.value_data(&c)?;
                return Ok(Some(Value {
                    name: n,
                    kind,
                    data,
                }));
            }
        }
        Ok(None)
    }
}
