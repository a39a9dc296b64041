//! A small read-only reader of the SQLite 3 file format, enough to scan one table:
//! the database header, table b-tree pages (interior and leaf), overflow chains and the
//! record format. Used for rpm's `rpmdb.sqlite` (`Packages (hnum INTEGER PRIMARY KEY,
//! blob BLOB)`).
//!
//! Bounded and cycle-safe: every page number is checked against the page count, a
//! b-tree page is visited at most once and no deeper than [`MAX_DEPTH`], an overflow
//! chain cannot be longer than its payload needs, and payloads are bounded.
//! A write-ahead log (`-wal` file) is read when given: its frames up to the last valid
//! commit (salts and cumulative checksums checked, as SQLite's recovery does) replace
//! the main file's pages, so changes not yet checkpointed are seen.

use super::source::{Reader, Result};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Deeper than any real b-tree (a 64 KiB-page tree of depth 20 holds more rows than
/// a file can).
pub const MAX_DEPTH: usize = 32;
/// The largest record payload assembled.
pub const MAX_PAYLOAD: u64 = super::rpm::MAX_BLOB as u64;

fn corrupt(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, format!("sqlite: {}", what.into()))
}

/// One column value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// An open database file (and its write-ahead log).
pub struct Db<'r, 'a> {
    r: &'r mut Reader<'a>,
    page_size: u64,
    usable: u64,
    pages: u64,
    /// The log and, for each page it holds, the offset of its latest committed frame.
    wal: Option<(&'r mut Reader<'a>, BTreeMap<u64, u64>)>,
}

const WAL_MAGIC_LE: u32 = 0x377f_0682;
const WAL_MAGIC_BE: u32 = 0x377f_0683;

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn wal_checksum(big_endian: bool, mut s: (u32, u32), data: &[u8]) -> (u32, u32) {
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| -> u32 {
            let a: [u8; 4] = b.try_into().unwrap_or_default();
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let (x0, x1) = (
            word(pair.get(..4).unwrap_or_default()),
            word(pair.get(4..).unwrap_or_default()),
        );
        s.0 = s.0.wrapping_add(x0).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(x1).wrapping_add(s.0);
    }
    s
}

/// The committed frames of a write-ahead log for pages of `page_size` bytes: page
/// number → frame data offset, and the database size (pages) at the last commit.
/// Reading stops at the first frame whose salts or checksum do not match (the end of
/// the valid log); a log that does not belong to the database is ignored (empty).
pub fn read_wal(w: &mut Reader, page_size: u64) -> Result<(BTreeMap<u64, u64>, Option<u64>)> {
    let mut committed = BTreeMap::new();
    let Ok(h) = w.read(0, 32) else {
        return Ok((committed, None));
    };
    let magic = be32(&h, 0).unwrap_or(0);
    if magic != WAL_MAGIC_LE && magic != WAL_MAGIC_BE {
        return Ok((committed, None));
    }
    let big = magic == WAL_MAGIC_BE;
    if be32(&h, 8).map(u64::from) != Some(page_size) {
        return Ok((committed, None));
    }
    let mut sum = wal_checksum(big, (0, 0), h.get(..24).unwrap_or_default());
    if (be32(&h, 24), be32(&h, 28)) != (Some(sum.0), Some(sum.1)) {
        return Ok((committed, None));
    }
    let salts = h.get(16..24).unwrap_or_default().to_vec();
    let mut pending = BTreeMap::new();
    let mut db_size = None;
    let frame = 24 + page_size;
    let mut off = 32u64;
    while off.checked_add(frame).is_some_and(|e| e <= w.size()) {
        let fh = w.read(off, 24)?;
        if fh.get(8..16) != Some(salts.as_slice()) {
            break;
        }
        let page = w.read(off + 24, page_size as usize)?;
        sum = wal_checksum(big, sum, fh.get(..8).unwrap_or_default());
        sum = wal_checksum(big, sum, &page);
        if (be32(&fh, 16), be32(&fh, 20)) != (Some(sum.0), Some(sum.1)) {
            break;
        }
        let pgno = u64::from(be32(&fh, 0).unwrap_or(0));
        if pgno == 0 {
            break;
        }
        pending.insert(pgno, off + 24);
        let commit = be32(&fh, 4).unwrap_or(0);
        if commit != 0 {
            committed.append(&mut pending);
            db_size = Some(u64::from(commit));
        }
        off += frame;
    }
    Ok((committed, db_size))
}

/// Reads a varint at `b[pos..]`: (value, bytes used).
fn varint(b: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(pos.checked_add(i)?)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(byte), 9));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

impl<'r, 'a> Db<'r, 'a> {
    /// Checks the header: magic, page size, reserved bytes, page count.
    pub fn open(r: &'r mut Reader<'a>) -> Result<Self> {
        let h = r
            .read(0, 100)
            .map_err(|_| corrupt("file shorter than its 100-byte header"))?;
        if h.get(..16) != Some(&MAGIC[..]) {
            return Err(corrupt("bad magic"));
        }
        let raw = be16(&h, 16).ok_or_else(|| corrupt("header"))?;
        let page_size: u64 = if raw == 1 { 65536 } else { u64::from(raw) };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(format!("bad page size {raw}")));
        }
        let reserved = u64::from(*h.get(20).ok_or_else(|| corrupt("header"))?);
        let usable = page_size - reserved;
        if usable < 480 {
            return Err(corrupt(format!("usable page size {usable} below 480")));
        }
        // The header's page count is valid when its change counter matches the
        // version-valid-for number; else (old writers) the file size says.
        let by_size = r.size() / page_size;
        let counted = u64::from(be32(&h, 28).unwrap_or(0));
        let valid = be32(&h, 24) == be32(&h, 92);
        let pages = if valid && counted > 0 {
            counted.min(by_size)
        } else {
            by_size
        };
        if be32(&h, 56).is_some_and(|e| e > 3) {
            return Err(corrupt("bad text encoding"));
        }
        Ok(Db {
            r,
            page_size,
            usable,
            pages,
            wal: None,
        })
    }

    /// Opens the database with its write-ahead log `w`.
    pub fn open_with_wal(r: &'r mut Reader<'a>, w: &'r mut Reader<'a>) -> Result<Self> {
        let mut db = Db::open(r)?;
        let (frames, size) = read_wal(w, db.page_size)?;
        if let Some(size) = size {
            // Pages past the main file exist only in the log; no more than it holds.
            let max = (db.r.size() / db.page_size).saturating_add(frames.len() as u64);
            db.pages = size.min(max);
        }
        if !frames.is_empty() {
            db.wal = Some((w, frames));
        }
        Ok(db)
    }

    pub fn page_count(&self) -> u64 {
        self.pages
    }

    fn page(&mut self, n: u64) -> Result<Vec<u8>> {
        if n == 0 || n > self.pages {
            return Err(corrupt(format!(
                "page {n} out of range (1..={})",
                self.pages
            )));
        }
        if let Some((w, frames)) = &mut self.wal
            && let Some(&off) = frames.get(&n)
        {
            return w.read(off, self.page_size as usize);
        }
        self.r
            .read((n - 1) * self.page_size, self.page_size as usize)
    }

    /// The root page of table `name` (from `sqlite_schema`, case-insensitively).
    pub fn table_root(&mut self, name: &str) -> Result<Option<u64>> {
        let mut found = None;
        self.scan_table(1, &mut |_, rec| {
            if let Ok(cols) = record(&rec)
                && matches!(cols.first(), Some(Value::Text(t)) if t == b"table")
                && matches!(cols.get(1), Some(Value::Text(t)) if t.eq_ignore_ascii_case(name.as_bytes()))
                && let Some(Value::Int(root)) = cols.get(3)
            {
                found = u64::try_from(*root).ok();
                return false;
            }
            true
        })?;
        Ok(found)
    }

    /// Calls `f(rowid, payload)` for every row of the table b-tree rooted at `root`, in
    /// rowid order, until it returns false. A row whose payload cannot be assembled
    /// (bad overflow chain, too large) is skipped and counted in the returned number.
    pub fn scan_table(
        &mut self,
        root: u64,
        f: &mut dyn FnMut(i64, Vec<u8>) -> bool,
    ) -> Result<u64> {
        let mut visited = BTreeSet::new();
        let mut skipped = 0u64;
        // An explicit stack of (page, depth): no recursion on guest-controlled depth.
        let mut stack: Vec<(u64, usize)> = alloc::vec![(root, 0)];
        while let Some((pgno, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(corrupt(format!(
                    "b-tree deeper than {MAX_DEPTH} at page {pgno}"
                )));
            }
            if !visited.insert(pgno) {
                return Err(corrupt(format!(
                    "b-tree page {pgno} reached twice (a cycle)"
                )));
            }
            let page = self.page(pgno)?;
            let hdr = if pgno == 1 { 100 } else { 0 };
            let kind = *page.get(hdr).ok_or_else(|| corrupt("page header"))?;
            let ncells = usize::from(be16(&page, hdr + 3).ok_or_else(|| corrupt("page header"))?);
            let (ptrs, interior) = match kind {
                0x0d => (hdr + 8, false),
                0x05 => (hdr + 12, true),
                _ => {
                    return Err(corrupt(format!(
                        "page {pgno}: type {kind:#x} is not a table b-tree page"
                    )));
                }
            };
            if ptrs + ncells * 2 > self.usable as usize {
                return Err(corrupt(format!("page {pgno}: {ncells} cells do not fit")));
            }
            if interior {
                let right = be32(&page, hdr + 8).ok_or_else(|| corrupt("page header"))?;
                // Pushed in reverse so that the leftmost child is visited first.
                stack.push((u64::from(right), depth + 1));
                for i in (0..ncells).rev() {
                    let off = usize::from(
                        be16(&page, ptrs + 2 * i).ok_or_else(|| corrupt("cell pointer"))?,
                    );
                    let child = be32(&page, off)
                        .ok_or_else(|| corrupt(format!("page {pgno}: cell {i} out of the page")))?;
                    stack.push((u64::from(child), depth + 1));
                }
                continue;
            }
            for i in 0..ncells {
                let off =
                    usize::from(be16(&page, ptrs + 2 * i).ok_or_else(|| corrupt("cell pointer"))?);
                let Some((size, n1)) = varint(&page, off) else {
                    return Err(corrupt(format!("page {pgno}: cell {i} out of the page")));
                };
                let Some((rowid, n2)) = varint(&page, off + n1) else {
                    return Err(corrupt(format!("page {pgno}: cell {i} out of the page")));
                };
                match self.payload(&page, off + n1 + n2, size) {
                    Ok(p) => {
                        if !f(rowid as i64, p) {
                            return Ok(skipped);
                        }
                    }
                    Err(_) => skipped += 1,
                }
            }
        }
        Ok(skipped)
    }

    /// Assembles a leaf cell's payload of `size` bytes starting at `page[start..]`,
    /// following its overflow chain.
    fn payload(&mut self, page: &[u8], start: usize, size: u64) -> Result<Vec<u8>> {
        if size > MAX_PAYLOAD {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("sqlite: a {size}-byte record exceeds the bound"),
            ));
        }
        let u = self.usable;
        let x = u - 35;
        let local = if size <= x {
            size
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((size - m) % (u - 4));
            if k <= x { k } else { m }
        } as usize;
        let mut out = Vec::with_capacity(size as usize);
        out.extend_from_slice(
            page.get(start..start + local)
                .ok_or_else(|| corrupt("cell payload runs off its page"))?,
        );
        if local as u64 == size {
            return Ok(out);
        }
        let mut next = u64::from(
            be32(page, start + local).ok_or_else(|| corrupt("overflow pointer off the page"))?,
        );
        // The chain needs exactly this many pages; a longer one is a cycle.
        let per = (u - 4) as usize;
        let mut budget = (size as usize - local).div_ceil(per);
        while out.len() < size as usize {
            if budget == 0 || next == 0 {
                return Err(corrupt("overflow chain ends early or loops"));
            }
            budget -= 1;
            let p = self.page(next)?;
            next = u64::from(be32(&p, 0).ok_or_else(|| corrupt("overflow page"))?);
            let want = (size as usize - out.len()).min(per);
            out.extend_from_slice(p.get(4..4 + want).ok_or_else(|| corrupt("overflow page"))?);
        }
        Ok(out)
    }
}

/// Decodes a record (header of serial types, then the values).
pub fn record(p: &[u8]) -> Result<Vec<Value>> {
    let (hlen, n) = varint(p, 0).ok_or_else(|| corrupt("record header"))?;
    let hlen = usize::try_from(hlen).map_err(|_| corrupt("record header"))?;
    if hlen > p.len() || hlen < n {
        return Err(corrupt("record header length"));
    }
    let mut pos = n;
    let mut data = hlen;
    let mut out = Vec::new();
    while pos < hlen {
        let (t, m) = varint(p, pos).ok_or_else(|| corrupt("record serial type"))?;
        pos += m;
        let len: usize = match t {
            0 | 8 | 9 | 10 | 11 => 0,
            1..=4 => t as usize,
            5 => 6,
            6 | 7 => 8,
            _ => usize::try_from((t - 12) / 2).map_err(|_| corrupt("record"))?,
        };
        let end = data.checked_add(len).ok_or_else(|| corrupt("record"))?;
        let bytes = p
            .get(data..end)
            .ok_or_else(|| corrupt("record value runs past the payload"))?;
        data = end;
        out.push(match t {
            0 | 10 | 11 => Value::Null,
            8 => Value::Int(0),
            9 => Value::Int(1),
            1..=6 => {
                let mut v: i64 = if bytes.first().is_some_and(|&b| b & 0x80 != 0) {
                    -1
                } else {
                    0
                };
                for &b in bytes {
                    v = (v << 8) | i64::from(b);
                }
                Value::Int(v)
            }
            7 => Value::Float(u64::from_be_bytes(
                bytes.try_into().map_err(|_| corrupt("float"))?,
            )),
            t if t % 2 == 0 => Value::Blob(bytes.to_vec()),
            _ => Value::Text(bytes.to_vec()),
        });
        if out.len() > 4096 {
            return Err(corrupt("record with more than 4096 columns"));
        }
    }
    Ok(out)
}

/// Calls `f` with the `blob` column of every row of rpm's `Packages` table (with the
/// write-ahead log `wal` applied, when given). Returns the number of rows skipped
/// (unreadable payloads or records).
pub fn rpm_packages<'r, 'a>(
    r: &'r mut Reader<'a>,
    wal: Option<&'r mut Reader<'a>>,
    f: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<u64> {
    let mut db = match wal {
        Some(w) => Db::open_with_wal(r, w)?,
        None => Db::open(r)?,
    };
    let root = db
        .table_root("Packages")?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "sqlite: no Packages table"))?;
    let mut bad = 0u64;
    let skipped = db.scan_table(root, &mut |_, rec| match record(&rec) {
        // (hnum INTEGER PRIMARY KEY, blob BLOB): hnum is the rowid, stored as NULL.
        Ok(cols) => match cols.get(1) {
            Some(Value::Blob(b)) => f(b),
            _ => {
                bad += 1;
                true
            }
        },
        Err(_) => {
            bad += 1;
            true
        }
    })?;
    Ok(skipped + bad)
}
