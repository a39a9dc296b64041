//! Device access for the XFS reader: range-checked reads straight into the caller's
//! buffer (file data), and a bounded LRU cache of metadata blocks (inode clusters,
//! directory and btree blocks), keyed by byte offset and length.

use super::ondisk::corrupt;
use crate::block::SharedDevice;
use crate::fs::FsResult;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Bytes of metadata kept cached at most.
pub const CACHE_BYTES: usize = 2 << 20;
/// Cached blocks at most.
const CACHE_ENTRIES: usize = 1024;
/// Largest single metadata read (a 64 KiB directory block is the largest structure).
pub const MAX_META_READ: usize = 64 << 10;

/// A cached block: its bytes, when it was last used, and whether its checks passed
/// (or skiff wrote it whole): the writer checks a trusted block's structure only.
type Cached = (Rc<Vec<u8>>, u64, bool);

pub struct Io {
    dev: SharedDevice,
    size: u64,
    /// (offset, length) → (bytes, last use).
    cache: BTreeMap<(u64, usize), Cached>,
    /// last use → key: the eviction order.
    lru: BTreeMap<u64, (u64, usize)>,
    bytes: usize,
    tick: u64,
}

impl Io {
    pub fn new(dev: SharedDevice) -> Self {
        let size = dev.borrow().size();
        Io {
            dev,
            size,
            cache: BTreeMap::new(),
            lru: BTreeMap::new(),
            bytes: 0,
            tick: 0,
        }
    }

    /// Size of the device in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads `buf.len()` bytes at `off` in one device request. A range past the end of
    /// the device is `Corrupt` (the filesystem points outside its device).
    pub fn read_into(&self, off: u64, buf: &mut [u8]) -> FsResult<()> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(corrupt(format_args!(
                "read of {} bytes at byte {off} is past the end of the device ({} bytes)",
                buf.len(),
                self.size
            )));
        }
        let mut d = self
            .dev
            .try_borrow_mut()
            .map_err(|_| Error::new(ErrorKind::Internal, "xfs: device busy"))?;
        d.read_at(off, buf)
    }

    /// Reads `len` bytes at `off` into a new buffer (not cached).
    pub fn read_vec(&self, off: u64, len: usize) -> FsResult<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_into(off, &mut v)?;
        Ok(v)
    }

    /// Reads a metadata block through the cache.
    pub fn meta(&mut self, off: u64, len: usize) -> FsResult<Rc<Vec<u8>>> {
        if len > MAX_META_READ {
            return Err(corrupt(format_args!(
                "metadata read of {len} bytes is larger than any XFS structure"
            )));
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((data, used, _)) = self.cache.get_mut(&(off, len)) {
            self.lru.remove(used);
            *used = tick;
            self.lru.insert(tick, (off, len));
            return Ok(data.clone());
        }
        let data = Rc::new(self.read_vec(off, len)?);
        while self.bytes + len > CACHE_BYTES || self.cache.len() >= CACHE_ENTRIES {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            if let Some((old, _, _)) = self.cache.remove(&key) {
                self.bytes -= old.len();
            }
        }
        self.cache.insert((off, len), (data.clone(), tick, false));
        self.lru.insert(tick, (off, len));
        self.bytes += len;
        Ok(data)
    }

    /// Writes `data` at `off` in one device request and brings every cached block it
    /// overlaps up to date.
    pub fn write(&mut self, off: u64, data: &[u8]) -> FsResult<()> {
        off.checked_add(data.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    alloc::format!(
                        "xfs: write of {} bytes at {off} is past the device",
                        data.len()
                    ),
                )
            })?;
        {
            let mut d = self
                .dev
                .try_borrow_mut()
                .map_err(|_| Error::new(ErrorKind::Internal, "xfs: device busy"))?;
            d.write_at(off, data)?;
        }
        self.patch(off, data);
        Ok(())
    }

    /// Brings the cached blocks overlapping `off..off+data.len()` up to date.
    fn patch(&mut self, off: u64, data: &[u8]) {
        let end = off.saturating_add(data.len() as u64);
        // Cached blocks are at most MAX_META_READ long: those overlapping start after
        // off - MAX_META_READ.
        let lo = off.saturating_sub(MAX_META_READ as u64);
        let keys: Vec<(u64, usize)> = self
            .cache
            .range((lo, 0)..(end, 0))
            .map(|(k, _)| *k)
            .filter(|&(o, l)| o + l as u64 > off && o < end)
            .collect();
        for (o, l) in keys {
            if let Some((rc, _, trusted)) = self.cache.get_mut(&(o, l)) {
                // Written whole by skiff: trusted; partly: checked again when next used.
                *trusted = o == off && l == data.len();
                let v = Rc::make_mut(rc);
                let a = o.max(off);
                let b = (o + l as u64).min(end);
                let dst = v.get_mut((a - o) as usize..(b - o) as usize);
                let src = data.get((a - off) as usize..(b - off) as usize);
                if let (Some(dst), Some(src)) = (dst, src) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }

    /// A metadata block through the cache, and whether it is trusted (see `Cached`).
    pub fn meta_trusted(&mut self, off: u64, len: usize) -> FsResult<(Rc<Vec<u8>>, bool)> {
        let data = self.meta(off, len)?;
        let trusted = self.cache.get(&(off, len)).is_some_and(|c| c.2);
        Ok((data, trusted))
    }

    /// Marks a cached block as checked.
    pub fn trust(&mut self, off: u64, len: usize) {
        if let Some(c) = self.cache.get_mut(&(off, len)) {
            c.2 = true;
        }
    }

    /// Writes buffers lying end to end (of `lens` bytes each, `data` their
    /// concatenation) in one device request, keeping the cache as separate writes would.
    pub fn write_run(
        &mut self,
        off: u64,
        data: &[u8],
        lens: impl Iterator<Item = usize>,
    ) -> FsResult<()> {
        off.checked_add(data.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "xfs: write past the device"))?;
        {
            let mut d = self
                .dev
                .try_borrow_mut()
                .map_err(|_| Error::new(ErrorKind::Internal, "xfs: device busy"))?;
            d.write_at(off, data)?;
        }
        let mut at = 0usize;
        for l in lens {
            if let Some(part) = data.get(at..at + l) {
                self.patch(off + at as u64, part);
            }
            at += l;
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub fn flush(&mut self) -> FsResult<()> {
        let mut d = self
            .dev
            .try_borrow_mut()
            .map_err(|_| Error::new(ErrorKind::Internal, "xfs: device busy"))?;
        d.flush()
    }

    /// True when the device refuses writes.
    pub fn readonly(&self) -> bool {
        self.dev.borrow().readonly()
    }

    /// Bytes currently cached (for tests).
    #[cfg(test)]
    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }
}
