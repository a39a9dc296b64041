//! A read-only reader of Berkeley DB hash and btree database files, enough to list the
//! key/value pairs of rpm's `Packages` database (RHEL ≤ 8, older Fedora and SUSE): the
//! metadata page, hash bucket pages and btree leaf pages, and overflow pages for big
//! values. Pages are scanned in file order (as `db_dump -r` salvages): every hash or
//! btree-leaf page's pairs are read, so no bucket or tree arithmetic is trusted.
//! Both byte orders are read (the metadata magic says which).
//!
//! Not read: encrypted databases and databases with page checksums (refused as
//! `Unsupported`), duplicate sets (skipped).

use super::source::{Reader, Result};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

const HASH_MAGIC: u32 = 0x0006_1561;
const BTREE_MAGIC: u32 = 0x0005_3162;

const P_HASH_UNSORTED: u8 = 2;
const P_LBTREE: u8 = 5;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;

const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
const B_KEYDATA: u8 = 1;
const B_OVERFLOW: u8 = 3;
const B_DELETE: u8 = 0x80;

/// Size of the generic page header.
const PAGE_HDR: usize = 26;
/// The largest value assembled from an overflow chain.
pub const MAX_VALUE: u64 = super::rpm::MAX_BLOB as u64;

fn corrupt(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, format!("berkeley db: {}", what.into()))
}

/// Hash or btree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hash,
    Btree,
}

/// An open database file.
pub struct Db<'r, 'a> {
    r: &'r mut Reader<'a>,
    swap: bool,
    pub kind: Kind,
    page_size: u64,
    last_pgno: u64,
}

/// One item of a page: inline bytes, or a reference to an overflow chain.
enum Item {
    Inline(Vec<u8>),
    Overflow { pgno: u32, len: u32 },
    Other,
}

impl<'r, 'a> Db<'r, 'a> {
    pub fn open(r: &'r mut Reader<'a>) -> Result<Self> {
        let meta = r
            .read(0, 72)
            .map_err(|_| corrupt("file shorter than its metadata page"))?;
        let raw = u32::from_le_bytes(
            meta.get(12..16)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| corrupt("meta"))?,
        );
        let (kind, swap) = match (raw, raw.swap_bytes()) {
            (HASH_MAGIC, _) => (Kind::Hash, false),
            (BTREE_MAGIC, _) => (Kind::Btree, false),
            (_, HASH_MAGIC) => (Kind::Hash, true),
            (_, BTREE_MAGIC) => (Kind::Btree, true),
            _ => return Err(corrupt(format!("bad magic {raw:#x}"))),
        };
        let g32 = |o: usize| -> Result<u32> {
            let v = u32::from_le_bytes(
                meta.get(o..o + 4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| corrupt("meta"))?,
            );
            Ok(if swap { v.swap_bytes() } else { v })
        };
        let page_size = u64::from(g32(20)?);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(format!("bad page size {page_size}")));
        }
        let encrypt = *meta.get(24).ok_or_else(|| corrupt("meta"))?;
        let metaflags = *meta.get(26).ok_or_else(|| corrupt("meta"))?;
        if encrypt != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "berkeley db: encrypted database",
            ));
        }
        if metaflags & 0x01 != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "berkeley db: page checksums",
            ));
        }
        let by_size = (r.size() / page_size).saturating_sub(1);
        let last_pgno = u64::from(g32(32)?).min(by_size);
        Ok(Db {
            r,
            swap,
            kind,
            page_size,
            last_pgno,
        })
    }

    fn u16_at(&self, b: &[u8], o: usize) -> Option<u16> {
        let v = u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?);
        Some(if self.swap { v.swap_bytes() } else { v })
    }

    fn u32_at(&self, b: &[u8], o: usize) -> Option<u32> {
        let v = u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?);
        Some(if self.swap { v.swap_bytes() } else { v })
    }

    fn page(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > self.last_pgno {
            return Err(corrupt(format!(
                "page {n} past the last page {}",
                self.last_pgno
            )));
        }
        self.r.read(n * self.page_size, self.page_size as usize)
    }

    /// The items of a hash or btree-leaf page, in index order.
    fn items(&self, page: &[u8], ptype: u8) -> Vec<Item> {
        let entries = usize::from(self.u16_at(page, 20).unwrap_or(0));
        let ps = page.len();
        let mut out = Vec::new();
        for i in 0..entries.min((ps - PAGE_HDR) / 2) {
            let Some(off) = self.u16_at(page, PAGE_HDR + 2 * i).map(usize::from) else {
                break;
            };
            if off < PAGE_HDR || off >= ps {
                out.push(Item::Other);
                continue;
            }
            let item = if ptype == P_LBTREE {
                // BKEYDATA: len u16, type u8, data.
                let len = self.u16_at(page, off).map(usize::from);
                let ty = page.get(off + 2).copied().unwrap_or(0);
                if ty & B_DELETE != 0 {
                    Item::Other
                } else {
                    match (ty, len) {
                        (B_KEYDATA, Some(len)) => page
                            .get(off + 3..off + 3 + len)
                            .map_or(Item::Other, |d| Item::Inline(d.to_vec())),
                        (B_OVERFLOW, _) => {
                            match (self.u32_at(page, off + 4), self.u32_at(page, off + 8)) {
                                (Some(pgno), Some(len)) => Item::Overflow { pgno, len },
                                _ => Item::Other,
                            }
                        }
                        _ => Item::Other,
                    }
                }
            } else {
                // Hash items run to the start of the previous item (or the page end).
                let end = if i == 0 {
                    ps
                } else {
                    self.u16_at(page, PAGE_HDR + 2 * (i - 1))
                        .map_or(ps, |e| usize::from(e).min(ps))
                };
                match page.get(off).copied() {
                    Some(H_KEYDATA) if end > off => page
                        .get(off + 1..end)
                        .map_or(Item::Other, |d| Item::Inline(d.to_vec())),
                    Some(H_OFFPAGE) => {
                        match (self.u32_at(page, off + 4), self.u32_at(page, off + 8)) {
                            (Some(pgno), Some(len)) => Item::Overflow { pgno, len },
                            _ => Item::Other,
                        }
                    }
                    _ => Item::Other,
                }
            };
            out.push(item);
        }
        out
    }

    /// Assembles an overflow chain of `len` bytes starting at `pgno`.
    fn overflow(&mut self, pgno: u32, len: u32) -> Result<Vec<u8>> {
        if u64::from(len) > MAX_VALUE {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("berkeley db: a {len}-byte value exceeds the bound"),
            ));
        }
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        let mut next = u64::from(pgno);
        let mut seen = BTreeSet::new();
        while out.len() < len {
            if next == 0 || !seen.insert(next) {
                return Err(corrupt("overflow chain ends early or loops"));
            }
            let p = self.page(next)?;
            if p.get(25) != Some(&P_OVERFLOW) {
                return Err(corrupt(format!("page {next} is not an overflow page")));
            }
            let here = usize::from(
                self.u16_at(&p, 22)
                    .ok_or_else(|| corrupt("overflow page"))?,
            );
            let here = here.min(len - out.len());
            out.extend_from_slice(
                p.get(PAGE_HDR..PAGE_HDR + here)
                    .ok_or_else(|| corrupt(format!("overflow page {next}: bad length")))?,
            );
            if here == 0 {
                return Err(corrupt(format!("overflow page {next} is empty")));
            }
            next = u64::from(
                self.u32_at(&p, 16)
                    .ok_or_else(|| corrupt("overflow page"))?,
            );
        }
        Ok(out)
    }

    fn resolve(&mut self, item: Item) -> Result<Option<Vec<u8>>> {
        match item {
            Item::Inline(v) => Ok(Some(v)),
            Item::Overflow { pgno, len } => self.overflow(pgno, len).map(Some),
            Item::Other => Ok(None),
        }
    }

    /// Calls `f(key, value)` for every pair on every data page, in file order, until it
    /// returns false. Returns the pairs skipped (a bad item or overflow chain).
    pub fn scan(&mut self, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<u64> {
        let mut skipped = 0u64;
        let want = match self.kind {
            Kind::Hash => [P_HASH, P_HASH_UNSORTED],
            Kind::Btree => [P_LBTREE, P_LBTREE],
        };
        for n in 1..=self.last_pgno {
            let page = self.page(n)?;
            let ptype = page.get(25).copied().unwrap_or(0);
            if !want.contains(&ptype) {
                continue;
            }
            let mut items = self.items(&page, ptype).into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                let (Ok(Some(k)), Ok(Some(v))) = (self.resolve(k), self.resolve(v)) else {
                    skipped += 1;
                    continue;
                };
                if !f(&k, &v) {
                    return Ok(skipped);
                }
            }
        }
        Ok(skipped)
    }
}

/// Calls `f` with every value of rpm's `Packages` database whose key is a package
/// number (4 bytes, not 0: key 0 holds rpm's next-instance counter). Returns the
/// pairs skipped.
pub fn rpm_packages(r: &mut Reader, f: &mut dyn FnMut(&[u8]) -> bool) -> Result<u64> {
    let mut db = Db::open(r)?;
    let mut bad = 0u64;
    let skipped = db.scan(&mut |k, v| {
        if k.len() != 4 {
            bad += 1;
            return true;
        }
        if k == [0, 0, 0, 0] {
            return true;
        }
        f(v)
    })?;
    Ok(skipped + bad)
}
