//! FAT boot-sector geometry and FAT-table reading (Microsoft FAT specification 1.03,
//! sections 3 and 4), parsed and range-checked here before hadris-fat sees the volume,
//! and used for `statvfs` (free-cluster count) and directory sizes (chain lengths).

use crate::block::SharedDevice;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

fn corrupt(msg: impl Into<alloc::string::String>) -> Error {
    Error::new(ErrorKind::Corrupt, msg)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

#[derive(Debug, Clone)]
pub struct Geometry {
    pub kind: Kind,
    pub cluster_size: u64,
    /// Byte offset of the first FAT.
    pub fat_start: u64,
    /// Bytes of one FAT.
    pub fat_bytes: u64,
    /// Data clusters: valid cluster numbers are `2..cluster_count + 2`.
    pub cluster_count: u32,
    /// FAT32 root directory cluster (0 on FAT12/16).
    pub root_cluster: u32,
    /// FAT12/16 fixed root directory size in bytes.
    pub root_dir_bytes: u64,
}

fn le16(b: &[u8], o: usize) -> Result<u64, Error> {
    let s = b
        .get(o..o + 2)
        .ok_or_else(|| corrupt("boot sector too short"))?;
    Ok(u64::from(u16::from_le_bytes([s[0], s[1]])))
}

fn le32(b: &[u8], o: usize) -> Result<u64, Error> {
    let s = b
        .get(o..o + 4)
        .ok_or_else(|| corrupt("boot sector too short"))?;
    Ok(u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
}

impl Geometry {
    /// Parses and checks the BPB of the FAT volume on `dev`.
    pub fn read(dev: &SharedDevice) -> Result<Self, Error> {
        let size = dev.borrow().size();
        if size < 512 {
            return Err(corrupt("device too small for a FAT boot sector"));
        }
        let mut bs = vec![0u8; 512];
        dev.borrow_mut().read_at(0, &mut bs)?;
        Self::parse(&bs, size)
    }

    pub fn parse(bs: &[u8], dev_size: u64) -> Result<Self, Error> {
        if bs.get(510..512) != Some(&[0x55, 0xAA][..]) {
            return Err(corrupt("FAT boot sector signature 0x55AA missing"));
        }
        let bps = le16(bs, 11)?;
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(corrupt(format!("FAT: invalid bytes per sector {bps}")));
        }
        let spc = u64::from(*bs.get(13).ok_or_else(|| corrupt("short"))?);
        if spc == 0 || !spc.is_power_of_two() || spc > 128 {
            return Err(corrupt(format!("FAT: invalid sectors per cluster {spc}")));
        }
        let cluster_size = bps * spc;
        if cluster_size > 64 * 1024 {
            return Err(corrupt(format!(
                "FAT: cluster size {cluster_size} too large"
            )));
        }
        let reserved = le16(bs, 14)?;
        if reserved == 0 {
            return Err(corrupt("FAT: zero reserved sectors"));
        }
        let nfats = u64::from(*bs.get(16).ok_or_else(|| corrupt("short"))?);
        if nfats == 0 {
            return Err(corrupt("FAT: zero FATs"));
        }
        let root_entries = le16(bs, 17)?;
        let total16 = le16(bs, 19)?;
        let fat16 = le16(bs, 22)?;
        let total32 = le32(bs, 32)?;
        let fat32 = le32(bs, 36)?;
        let total_sectors = if total16 != 0 { total16 } else { total32 };
        let fat_sectors = if fat16 != 0 { fat16 } else { fat32 };
        if fat_sectors == 0 || total_sectors == 0 {
            return Err(corrupt("FAT: zero FAT size or total sectors"));
        }
        let root_dir_bytes = root_entries * 32;
        let root_dir_sectors = root_dir_bytes.div_ceil(bps);
        let data_start_sec = reserved
            .checked_add(
                nfats
                    .checked_mul(fat_sectors)
                    .ok_or_else(|| corrupt("overflow"))?,
            )
            .and_then(|v| v.checked_add(root_dir_sectors))
            .ok_or_else(|| corrupt("FAT: layout overflows"))?;
        let data_sectors = total_sectors
            .checked_sub(data_start_sec)
            .ok_or_else(|| corrupt("FAT: metadata larger than the volume"))?;
        let clusters = data_sectors / spc;
        let kind = if root_entries == 0 && fat16 == 0 {
            Kind::Fat32
        } else if clusters < 4085 {
            Kind::Fat12
        } else {
            Kind::Fat16
        };
        let max_clusters = match kind {
            Kind::Fat12 => 4084,
            Kind::Fat16 => 65524,
            Kind::Fat32 => 0x0FFF_FFF5,
        };
        if clusters == 0 || clusters > max_clusters {
            return Err(corrupt(format!(
                "FAT: {clusters} clusters do not fit a {kind:?} volume"
            )));
        }
        let fat_bytes = fat_sectors * bps;
        let needed = match kind {
            Kind::Fat12 => (clusters + 2) * 3 / 2,
            Kind::Fat16 => (clusters + 2) * 2,
            Kind::Fat32 => (clusters + 2) * 4,
        };
        if fat_bytes < needed {
            return Err(corrupt("FAT: the FAT is too small for the cluster count"));
        }
        let root_cluster = if kind == Kind::Fat32 {
            let rc = le32(bs, 44)? & 0x0FFF_FFFF;
            if rc < 2 || rc >= clusters + 2 {
                return Err(corrupt(format!("FAT32: root cluster {rc} out of range")));
            }
            rc as u32
        } else {
            0
        };
        let fat_start = reserved * bps;
        if fat_start + fat_bytes > dev_size {
            return Err(corrupt("FAT: the FAT lies past the end of the device"));
        }
        Ok(Geometry {
            kind,
            cluster_size,
            fat_start,
            fat_bytes,
            // OK: bounded by max_clusters above.
            cluster_count: clusters as u32,
            root_cluster,
            root_dir_bytes: if kind == Kind::Fat32 {
                0
            } else {
                root_dir_bytes
            },
        })
    }

    /// True when `c` is a data cluster number of this volume.
    pub fn valid_cluster(&self, c: u64) -> bool {
        c >= 2 && c < u64::from(self.cluster_count) + 2
    }

    /// Byte offset within the FAT and width in bytes of cluster `c`'s entry.
    fn entry_pos(&self, c: u32) -> (u64, usize) {
        let c = u64::from(c);
        match self.kind {
            Kind::Fat12 => (c + c / 2, 2),
            Kind::Fat16 => (c * 2, 2),
            Kind::Fat32 => (c * 4, 4),
        }
    }

    /// Decodes cluster `c`'s entry from its raw bytes.
    fn decode(&self, c: u32, b: &[u8]) -> Option<u32> {
        match self.kind {
            Kind::Fat12 => {
                let v = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
                Some(u32::from(if c & 1 == 1 { v >> 4 } else { v & 0x0FFF }))
            }
            Kind::Fat16 => Some(u32::from(u16::from_le_bytes([*b.first()?, *b.get(1)?]))),
            Kind::Fat32 => {
                let v = u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]);
                Some(v & 0x0FFF_FFFF)
            }
        }
    }
}

/// Reads FAT entries through a one-chunk cache.
pub struct FatReader<'a> {
    geo: &'a Geometry,
    dev: &'a SharedDevice,
    chunk_start: u64,
    chunk: Vec<u8>,
}

const CHUNK: u64 = 64 * 1024;

impl<'a> FatReader<'a> {
    pub fn new(geo: &'a Geometry, dev: &'a SharedDevice) -> Self {
        FatReader {
            geo,
            dev,
            chunk_start: 0,
            chunk: Vec::new(),
        }
    }

    /// The FAT entry of data cluster `c`.
    pub fn entry(&mut self, c: u32) -> Result<u32, Error> {
        let (off, width) = self.geo.entry_pos(c);
        if off + width as u64 > self.geo.fat_bytes {
            return Err(corrupt(format!("FAT: no entry for cluster {c}")));
        }
        let cached = off >= self.chunk_start
            && off + width as u64 <= self.chunk_start + self.chunk.len() as u64;
        if !cached {
            // Chunks overlap by 4 bytes so no entry straddles two of them.
            let start = off.saturating_sub(off % CHUNK);
            let len = (CHUNK + 4).min(self.geo.fat_bytes - start);
            let mut buf = vec![0u8; len as usize];
            self.dev
                .borrow_mut()
                .read_at(self.geo.fat_start + start, &mut buf)?;
            self.chunk_start = start;
            self.chunk = buf;
        }
        let i = (off - self.chunk_start) as usize;
        let b = self
            .chunk
            .get(i..i + width)
            .ok_or_else(|| corrupt("FAT entry out of range"))?;
        self.geo
            .decode(c, b)
            .ok_or_else(|| corrupt("FAT entry out of range"))
    }

    /// Number of free data clusters.
    pub fn free_clusters(&mut self) -> Result<u64, Error> {
        let mut n = 0u64;
        for c in 2..self.geo.cluster_count + 2 {
            if self.entry(c)? == 0 {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Length in clusters of the chain starting at `first`, bounded by the cluster count
    /// (a looping chain is `Corrupt`).
    pub fn chain_len(&mut self, first: u32) -> Result<u64, Error> {
        let mut n = 0u64;
        let mut c = first;
        while self.geo.valid_cluster(u64::from(c)) {
            n += 1;
            if n > u64::from(self.geo.cluster_count) {
                return Err(corrupt(format!("FAT: cluster chain from {first} loops")));
            }
            c = self.entry(c)?;
        }
        Ok(n)
    }
}
