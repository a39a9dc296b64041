//! The chunk map: logical addresses → offsets on this device.
//!
//! Built from the superblock's system chunk array (enough to read the chunk tree) and then
//! from the chunk tree. Only the device this image is (the superblock's devid) is present:
//! single, DUP and the mirrored profiles read any copy on it, RAID0/RAID10 map striped
//! addresses, and an address whose only copies live on other devices is a clear error.

use super::ondisk::*;
use super::{corrupt, unsupported};
use crate::fs::FsResult;
use alloc::collections::BTreeMap;
use alloc::format;
use wire::{Error, ErrorKind};

/// Most chunks accepted (a 1 PiB filesystem of 1 GiB chunks has a million; one with more
/// than this is refused rather than allowed to eat the appliance's memory).
pub const MAX_CHUNKS: usize = 1 << 18;
/// Most stripes one chunk may have.
const MAX_STRIPES: usize = 256;

#[derive(Clone, Debug)]
pub struct Chunk {
    pub logical: u64,
    pub item: ChunkItem,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.logical.saturating_add(self.item.length)
    }

    /// Copies of each byte: 1, 2 for DUP/RAID1/RAID10, 3 and 4 for RAID1C3/C4.
    pub fn copies(&self) -> usize {
        let t = self.item.ty;
        if t & (BG_DUP | BG_RAID1) != 0 {
            2
        } else if t & BG_RAID1C3 != 0 {
            3
        } else if t & BG_RAID1C4 != 0 {
            4
        } else if t & BG_RAID10 != 0 {
            (self.item.sub_stripes as usize).max(1)
        } else {
            1
        }
    }
}

pub struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
    devid: u64,
    dev_size: u64,
}

/// A piece of a logical range: where it lies on this device, and how many of the
/// requested bytes are contiguous there.
#[derive(Clone, Copy, Debug)]
pub struct Mapped {
    pub physical: u64,
    pub len: u64,
}

impl ChunkMap {
    pub fn new(devid: u64, dev_size: u64) -> Self {
        ChunkMap {
            chunks: BTreeMap::new(),
            devid,
            dev_size,
        }
    }

    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.values()
    }

    /// Adds a chunk after checking it is sane and overlaps no other. A chunk already
    /// present with the same start and length (the chunk tree repeats the system array)
    /// is replaced.
    pub fn insert(&mut self, logical: u64, item: ChunkItem) -> FsResult<()> {
        let name = || format!("chunk at logical {logical}");
        if item.length == 0 {
            return Err(corrupt(format!("{}: zero length", name())));
        }
        let end = logical
            .checked_add(item.length)
            .ok_or_else(|| corrupt(format!("{}: length overflows", name())))?;
        let n = item.stripes.len();
        if n == 0 || n > MAX_STRIPES {
            return Err(corrupt(format!("{}: {n} stripes", name())));
        }
        let striped = item.ty & (BG_RAID0 | BG_RAID10 | BG_RAID5 | BG_RAID6) != 0;
        if striped && (item.stripe_len == 0 || !item.stripe_len.is_power_of_two()) {
            return Err(corrupt(format!(
                "{}: stripe length {}",
                name(),
                item.stripe_len
            )));
        }
        if item.ty & BG_RAID10 != 0
            && (item.sub_stripes == 0 || !n.is_multiple_of(item.sub_stripes as usize))
        {
            return Err(corrupt(format!(
                "{}: {n} stripes in groups of {}",
                name(),
                item.sub_stripes
            )));
        }
        if (item.ty & BG_PROFILE_MASK).count_ones() > 1 {
            return Err(corrupt(format!("{}: several profiles", name())));
        }
        if let Some((_, prev)) = self.chunks.range(..=logical).next_back()
            && prev.end() > logical
            && !(prev.logical == logical && prev.item.length == item.length)
        {
            return Err(corrupt(format!("{} overlaps another chunk", name())));
        }
        if let Some((&next, _)) = self.chunks.range(logical.saturating_add(1)..).next()
            && next < end
        {
            return Err(corrupt(format!("{} overlaps another chunk", name())));
        }
        if self.chunks.len() >= MAX_CHUNKS {
            return Err(corrupt(format!("more than {MAX_CHUNKS} chunks")));
        }
        self.chunks.insert(logical, Chunk { logical, item });
        Ok(())
    }

    /// The chunk holding `logical`.
    pub fn chunk(&self, logical: u64) -> FsResult<&Chunk> {
        match self.chunks.range(..=logical).next_back() {
            Some((_, c)) if c.end() > logical => Ok(c),
            _ => Err(corrupt(format!("logical address {logical} is in no chunk"))),
        }
    }

    /// How many copies `logical` has (for retrying another mirror after a bad checksum).
    pub fn copies(&self, logical: u64) -> usize {
        self.chunk(logical).map_or(1, Chunk::copies)
    }

    /// Maps `len` bytes at `logical` using copy number `mirror` (0-based). Returns the
    /// first contiguous piece. An error names what is missing.
    pub fn map(&self, logical: u64, len: u64, mirror: usize) -> FsResult<Mapped> {
        let c = self.chunk(logical)?;
        let it = &c.item;
        let off = logical - c.logical;
        let in_chunk = c.end() - logical;
        let n = it.stripes.len();
        let t = it.ty;
        let (stripe_index, stripe_off, contiguous) = if t & (BG_RAID0 | BG_RAID10) != 0 {
            let sl = it.stripe_len;
            let stripe_nr = off / sl;
            let within = off % sl;
            let (groups, width) = if t & BG_RAID10 != 0 {
                let sub = it.sub_stripes as usize;
                (n / sub, sub)
            } else {
                (n, 1)
            };
            let groups64 = groups as u64;
            let group = (stripe_nr % groups64) as usize;
            if mirror >= width {
                return Err(no_copy(logical, mirror));
            }
            let idx = group * width + mirror;
            let row = stripe_nr / groups64;
            let dev_off = row
                .checked_mul(sl)
                .and_then(|x| x.checked_add(within))
                .ok_or_else(|| corrupt(format!("chunk at {}: stripe overflow", c.logical)))?;
            (idx, dev_off, (sl - within).min(in_chunk))
        } else if t & (BG_RAID5 | BG_RAID6) != 0 {
            return Err(unsupported(format!(
                "RAID5/6 chunk at logical {} ({n} devices; only device {} is attached)",
                c.logical, self.devid
            )));
        } else {
            if mirror >= c.copies() {
                return Err(no_copy(logical, mirror));
            }
            // single has one stripe; DUP / RAID1* keep one full copy per stripe.
            (mirror, off, in_chunk)
        };
        let &(devid, dev_start) = it
            .stripes
            .get(stripe_index)
            .ok_or_else(|| corrupt(format!("chunk at {}: missing stripe", c.logical)))?;
        if devid != self.devid {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "btrfs: logical address {logical} is on device {devid}, which is not \
                     attached (this is device {})",
                    self.devid
                ),
            ));
        }
        let physical = dev_start
            .checked_add(stripe_off)
            .ok_or_else(|| corrupt(format!("chunk at {}: offset overflows", c.logical)))?;
        let len = len.min(contiguous);
        if physical.checked_add(len).is_none_or(|e| e > self.dev_size) {
            return Err(corrupt(format!(
                "chunk at {} maps logical {logical} past the end of the device",
                c.logical
            )));
        }
        Ok(Mapped { physical, len })
    }
}

fn no_copy(logical: u64, mirror: usize) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("btrfs: logical address {logical} has no copy {mirror}"),
    )
}

/// Parses the superblock's system chunk array into `map`.
pub fn load_sys_array(map: &mut ChunkMap, array: &[u8]) -> FsResult<()> {
    let mut off = 0usize;
    while off < array.len() {
        let key =
            Key::parse(array, off).ok_or_else(|| corrupt("system chunk array: truncated key"))?;
        off += 17;
        if key.ty != CHUNK_ITEM_KEY {
            return Err(corrupt(format!(
                "system chunk array: item of type {} instead of a chunk",
                key.ty
            )));
        }
        let rest = array.get(off..).unwrap_or(&[]);
        let (item, size) = ChunkItem::parse(rest)
            .ok_or_else(|| corrupt("system chunk array: truncated chunk item"))?;
        map.insert(key.offset, item)?;
        off = off
            .checked_add(size)
            .ok_or_else(|| corrupt("system chunk array: overflow"))?;
    }
    Ok(())
}

/// Chunks the chunk tree lists, for [`ChunkMap::insert`].
pub fn parse_chunk_leaf_item(key: &Key, data: &[u8]) -> FsResult<Option<(u64, ChunkItem)>> {
    if key.ty != CHUNK_ITEM_KEY {
        return Ok(None);
    }
    let (item, size) = ChunkItem::parse(data)
        .ok_or_else(|| corrupt(format!("chunk item at logical {}: truncated", key.offset)))?;
    if size != data.len() {
        return Err(corrupt(format!(
            "chunk item at logical {}: {} bytes for {} stripes",
            key.offset,
            data.len(),
            item.stripes.len()
        )));
    }
    Ok(Some((key.offset, item)))
}

/// Device items of the chunk tree.
pub fn parse_dev_item(key: &Key, data: &[u8]) -> FsResult<Option<DevItem>> {
    if key.objectid != DEV_ITEMS_OBJECTID || key.ty != DEV_ITEM_KEY {
        return Ok(None);
    }
    DevItem::parse(data)
        .map(Some)
        .ok_or_else(|| corrupt(format!("device item {}: truncated", key.offset)))
}
