//! A direct reader for the hot paths of ext2/3/4 (ext4 disk layout: superblock, group
//! descriptors, inode table, extent tree, indirect blocks, linear directories), beside
//! `ext4-view`:
//!
//! - metadata walks: a path → inode cache (bounded) filled from every directory listed,
//!   so a walk never resolves paths from the root again; names and types listed without
//!   reading each entry's inode; inode-table blocks cached (bounded) and read ahead;
//!   directory blocks read in whole contiguous runs;
//! - file data read from the device straight into the caller's buffer, extent by extent
//!   (no block cache, no copy);
//! - real inode numbers, link counts and change times (which `ext4-view` 1.0 does not
//!   expose), and `st_blocks` for `du`.
//!
//! It handles what it is sure of and answers `None` for the rest (a journal that needs
//! recovery, meta_bg, casefold, inline data, encrypted inodes, a symlink inside a path),
//! and the caller falls back to `ext4-view`. Every on-disk value is untrusted: bounded
//! parsing, checked arithmetic, `Corrupt` errors naming the structure.

use crate::block::SharedDevice;
use crate::fs::{FsResult, crc32c};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{DirEntry, Error, ErrorKind, FileType, Stat};

const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const INCOMPAT_ENCRYPT: u32 = 0x10000;
/// Incompatible features this reader understands (inline data and encryption per inode:
/// such inodes are left to `ext4-view`). Anything else (needs_recovery, meta_bg,
/// casefold, dirdata, ...) disables it.
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

const FLAG_HUGE_FILE: u32 = 0x4_0000;
const FLAG_EXTENTS: u32 = 0x8_0000;
const FLAG_ENCRYPT: u32 = 0x800;
const FLAG_INLINE_DATA: u32 = 0x1000_0000;

const ROOT_INO: u32 = 2;
/// Largest group descriptor table read (8 MiB: 131072 groups of 64 bytes, a 16 TiB
/// filesystem with 4 KiB blocks); larger ones are left to `ext4-view`.
const MAX_DESC_TABLE: u64 = 8 << 20;
/// Bytes of inode-table and indirect blocks cached.
const CACHE_BYTES: usize = 2 << 20;
/// Blocks read at once on an inode-table miss (the neighbours are usually next).
const TABLE_READAHEAD: u64 = 8;
/// Paths remembered (path → inode); the map is emptied when full.
const MAX_PATHS: usize = 16 << 10;
/// Directories larger than this are left unlisted (`TooLarge`).
const MAX_DIR_BYTES: u64 = 256 << 20;
/// Directory entries listed for one directory at most.
const MAX_DIR_ENTRIES: usize = 4 << 20;
/// A directory with at most this many entries has all of them remembered when it is
/// searched for one name.
const REMEMBER_ALL: usize = 4096;
/// Extent-tree blocks visited by one mapping.
const MAX_TREE_NODES: usize = 4096;
/// Depth of an extent tree (the format allows 5 levels below the inode).
const MAX_TREE_DEPTH: u16 = 5;
/// Bytes of a directory read per device request.
const DIR_WINDOW: u64 = 1 << 20;

fn corrupt(msg: String) -> Error {
    Error::new(ErrorKind::Corrupt, format!("ext4: {msg}"))
}

/// A little-endian field; 0 when it lies outside `b` (callers check lengths first).
fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off.saturating_add(2))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// The inode fields the hot paths use.
#[derive(Clone)]
pub(super) struct Inode {
    pub ino: u32,
    mode: u16,
    uid: u32,
    gid: u32,
    pub size: u64,
    links: u16,
    /// `st_blocks`: 512-byte units.
    blocks512: u64,
    flags: u32,
    atime: i64,
    mtime: i64,
    ctime: i64,
    block: [u8; 60],
}

impl Inode {
    fn file_type(&self) -> FileType {
        match self.mode & 0xF000 {
            0x8000 => FileType::Regular,
            0x4000 => FileType::Directory,
            0xA000 => FileType::Symlink,
            0x2000 => FileType::CharDevice,
            0x6000 => FileType::BlockDevice,
            0x1000 => FileType::Fifo,
            0xC000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    fn stat(&self) -> Stat {
        Stat {
            file_type: self.file_type(),
            mode: u32::from(self.mode & 0o7777),
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            nlink: u32::from(self.links),
            ino: u64::from(self.ino),
            mtime: self.mtime,
            atime: self.atime,
            ctime: self.ctime,
        }
    }

    /// Left to `ext4-view` (or refused by it): data inline in the inode, encrypted.
    fn special(&self) -> bool {
        self.flags & (FLAG_INLINE_DATA | FLAG_ENCRYPT) != 0
    }
}

/// A run of logical blocks: `physical == 0` is a hole (or unwritten: reads as zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    logical: u64,
    physical: u64,
    len: u64,
}

/// One directory entry as listed: name, inode, type from the entry (if known).
struct Dent {
    name: String,
    ino: u32,
    file_type: Option<FileType>,
}

/// Bounded block cache (inode tables, indirect blocks): least recently used goes.
struct Cache {
    blocks: BTreeMap<u64, (u64, Vec<u8>)>,
    clock: u64,
    cap: usize,
}

impl Cache {
    fn get(&mut self, block: u64) -> Option<&[u8]> {
        self.clock += 1;
        let clock = self.clock;
        self.blocks.get_mut(&block).map(|e| {
            e.0 = clock;
            e.1.as_slice()
        })
    }

    fn insert(&mut self, block: u64, data: Vec<u8>) {
        if self.blocks.len() >= self.cap
            && let Some(old) = self
                .blocks
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(&b, _)| b)
        {
            self.blocks.remove(&old);
        }
        self.clock += 1;
        self.blocks.insert(block, (self.clock, data));
    }
}

/// See the module documentation.
pub(super) struct Raw {
    dev: SharedDevice,
    /// Bytes on the device (a truncated image is shorter than the filesystem says).
    dev_size: u64,
    bs: u64,
    blocks: u64,
    inodes: u32,
    ipg: u32,
    inode_size: usize,
    /// Inode table (first block) of each group.
    tables: Vec<u64>,
    /// metadata_csum: the checksum seed.
    seed: Option<u32>,
    huge_file: bool,
    filetype: bool,
    cache: Cache,
    paths: BTreeMap<String, u32>,
}

impl Raw {
    /// A reader for the filesystem on `dev`, or `None` when it has a feature this reader
    /// leaves to `ext4-view` (or a superblock it does not like: `ext4-view` judges).
    pub fn new(dev: SharedDevice) -> Option<Raw> {
        let mut sb = [0u8; 1024];
        dev.borrow_mut().read_at(1024, &mut sb).ok()?;
        if le16(&sb, 0x38) != 0xEF53 {
            return None;
        }
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        if incompat & !INCOMPAT_KNOWN != 0 {
            return None;
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return None;
        }
        let bs = 1024u64 << log;
        let wide = incompat & INCOMPAT_64BIT != 0;
        let blocks = u64::from(le32(&sb, 0x4))
            | if wide {
                u64::from(le32(&sb, 0x150)) << 32
            } else {
                0
            };
        let first = u64::from(le32(&sb, 0x14));
        let bpg = u64::from(le32(&sb, 0x20));
        let ipg = le32(&sb, 0x28);
        let inodes = le32(&sb, 0x0);
        let inode_size = if le32(&sb, 0x4C) >= 1 {
            usize::from(le16(&sb, 0x58))
        } else {
            128
        };
        if bpg == 0
            || ipg == 0
            || first >= blocks
            || inode_size < 128
            || !inode_size.is_power_of_two()
            || inode_size as u64 > bs
        {
            return None;
        }
        let desc_size = if wide { u64::from(le16(&sb, 0xFE)) } else { 32 };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return None;
        }
        let groups = (blocks - first).div_ceil(bpg);
        let table_len = groups.checked_mul(desc_size)?;
        if table_len > MAX_DESC_TABLE || u64::from(inodes) > groups.checked_mul(u64::from(ipg))? {
            return None;
        }
        let mut raw = vec![0u8; usize::try_from(table_len).ok()?];
        dev.borrow_mut()
            .read_at(first.checked_add(1)?.checked_mul(bs)?, &mut raw)
            .ok()?;
        let ds = usize::try_from(desc_size).ok()?;
        let tables: Vec<u64> = raw
            .chunks_exact(ds)
            .map(|d| {
                let hi = if ds >= 64 {
                    u64::from(le32(d, 0x28))
                } else {
                    0
                };
                u64::from(le32(d, 0x8)) | (hi << 32)
            })
            .collect();
        let seed = (ro_compat & RO_COMPAT_METADATA_CSUM != 0).then(|| {
            if incompat & INCOMPAT_CSUM_SEED != 0 {
                le32(&sb, 0x270)
            } else {
                crc32c::update(!0, sb.get(0x68..0x78).unwrap_or_default())
            }
        });
        let dev_size = dev.borrow().size();
        Some(Raw {
            dev,
            dev_size,
            bs,
            blocks,
            inodes,
            ipg,
            inode_size,
            tables,
            seed,
            huge_file: ro_compat & RO_COMPAT_HUGE_FILE != 0,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            cache: Cache {
                blocks: BTreeMap::new(),
                clock: 0,
                cap: (CACHE_BYTES / bs as usize).max(8),
            },
            paths: BTreeMap::new(),
        })
    }

    /// Reads device bytes the filesystem points at: past the end of the device (a
    /// truncated image, a corrupt block number) is `Corrupt`.
    fn read_dev(&self, at: u64, buf: &mut [u8]) -> FsResult<()> {
        if at
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.dev_size)
        {
            return Err(corrupt(format!(
                "read of {} bytes at {at} is past the end of the device ({} bytes)",
                buf.len(),
                self.dev_size
            )));
        }
        self.dev.borrow_mut().read_at(at, buf)
    }

    /// Forgets everything cached (the filesystem was written).
    pub fn invalidate(&mut self) {
        self.cache.blocks.clear();
        self.paths.clear();
    }

    fn check_block(&self, block: u64, what: &dyn Fn() -> String) -> FsResult<()> {
        if block == 0 || block >= self.blocks {
            return Err(corrupt(format!(
                "{} points at block {block}, outside the filesystem",
                what()
            )));
        }
        Ok(())
    }

    /// One metadata block through the cache; a miss reads `ahead` blocks at once
    /// (clipped to the filesystem).
    fn block(&mut self, block: u64, ahead: u64, what: &dyn Fn() -> String) -> FsResult<&[u8]> {
        self.check_block(block, what)?;
        if self.cache.get(block).is_none() {
            let n = ahead.clamp(1, self.blocks - block);
            let bs = self.bs as usize;
            let mut buf = vec![0u8; bs * n as usize];
            self.read_dev(block * self.bs, &mut buf)?;
            for (i, chunk) in buf.chunks_exact(bs).enumerate().rev() {
                self.cache.insert(block + i as u64, chunk.to_vec());
            }
        }
        self.cache
            .get(block)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "ext4: block cache"))
    }

    /// Reads and checks inode `ino`.
    pub fn inode(&mut self, ino: u32) -> FsResult<Inode> {
        if ino == 0 || ino > self.inodes {
            return Err(corrupt(format!("inode number {ino} out of range")));
        }
        let index = ino - 1;
        let group = (index / self.ipg) as usize;
        let table = *self
            .tables
            .get(group)
            .ok_or_else(|| corrupt(format!("inode {ino}: no group {group}")))?;
        let byte = u64::from(index % self.ipg) * self.inode_size as u64;
        let block = table
            .checked_add(byte / self.bs)
            .ok_or_else(|| corrupt(format!("inode {ino}: table offset overflows")))?;
        let at = (byte % self.bs) as usize;
        let isz = self.inode_size;
        let (seed, huge, bs) = (self.seed, self.huge_file, self.bs);
        let b = self.block(block, TABLE_READAHEAD, &|| {
            format!("group {group} inode table")
        })?;
        let raw = b
            .get(at..at + isz)
            .ok_or_else(|| corrupt(format!("inode {ino} outside its table block")))?;
        let extra = if isz > 128 {
            usize::from(le16(raw, 0x80))
        } else {
            0
        };
        if let Some(seed) = seed {
            let generation = le32(raw, 0x64);
            let mut c = crc32c::update(seed, &ino.to_le_bytes());
            c = crc32c::update(c, &generation.to_le_bytes());
            c = crc32c::update(c, raw.get(..0x7C).unwrap_or_default());
            c = crc32c::update(c, &[0, 0]);
            let has_hi = isz > 128 && extra >= 4;
            if isz > 128 {
                c = crc32c::update(c, raw.get(0x7E..0x80).unwrap_or_default());
                if has_hi {
                    c = crc32c::update(c, raw.get(0x80..0x82).unwrap_or_default());
                    c = crc32c::update(c, &[0, 0]);
                    c = crc32c::update(c, raw.get(0x84..).unwrap_or_default());
                } else {
                    c = crc32c::update(c, raw.get(0x80..).unwrap_or_default());
                }
            }
            let stored = u32::from(le16(raw, 0x7C))
                | if has_hi {
                    u32::from(le16(raw, 0x82)) << 16
                } else {
                    0
                };
            let want = if has_hi { c } else { c & 0xFFFF };
            if stored != want {
                return Err(corrupt(format!("inode {ino}: checksum mismatch")));
            }
        }
        let time = |base: usize, extra_off: usize| -> i64 {
            let secs = i64::from(le32(raw, base) as i32);
            if isz > 128 && extra_off + 4 <= 0x80 + extra {
                secs + (i64::from(le32(raw, extra_off) & 3) << 32)
            } else {
                secs
            }
        };
        let flags = le32(raw, 0x20);
        let blocks_lo = u64::from(le32(raw, 0x1C));
        let blocks = if huge {
            let b = blocks_lo | (u64::from(le16(raw, 0x74)) << 32);
            if flags & FLAG_HUGE_FILE != 0 {
                b.saturating_mul(bs / 512)
            } else {
                b
            }
        } else {
            blocks_lo
        };
        let mut block = [0u8; 60];
        block.copy_from_slice(raw.get(0x28..0x64).unwrap_or(&[0; 60]));
        Ok(Inode {
            ino,
            mode: le16(raw, 0x0),
            uid: u32::from(le16(raw, 0x2)) | (u32::from(le16(raw, 0x78)) << 16),
            gid: u32::from(le16(raw, 0x18)) | (u32::from(le16(raw, 0x7A)) << 16),
            size: u64::from(le32(raw, 0x4)) | (u64::from(le32(raw, 0x6C)) << 32),
            links: le16(raw, 0x1A),
            blocks512: blocks,
            flags,
            atime: time(0x8, 0x8C),
            ctime: time(0xC, 0x84),
            mtime: time(0x10, 0x88),
            block,
        })
    }

    /// Runs covering logical blocks `[first, first + count)` of `inode`, holes included,
    /// in order.
    fn map(&mut self, inode: &Inode, first: u64, count: u64) -> FsResult<Vec<Run>> {
        let end = first
            .checked_add(count)
            .ok_or_else(|| corrupt(format!("inode {}: range overflows", inode.ino)))?;
        let mut found = if inode.flags & FLAG_EXTENTS != 0 {
            self.map_extents(inode, first, end)?
        } else {
            self.map_indirect(inode, first, end)?
        };
        // Fill the holes between mapped runs.
        found.sort_unstable_by_key(|r| r.logical);
        let mut out = Vec::with_capacity(found.len() * 2 + 1);
        let mut at = first;
        for r in found {
            let (s, e) = (r.logical.max(at), (r.logical + r.len).min(end));
            if e <= s {
                continue;
            }
            if s > at {
                out.push(Run {
                    logical: at,
                    physical: 0,
                    len: s - at,
                });
            }
            out.push(Run {
                logical: s,
                physical: if r.physical == 0 {
                    0
                } else {
                    r.physical + (s - r.logical)
                },
                len: e - s,
            });
            at = e;
        }
        if at < end {
            out.push(Run {
                logical: at,
                physical: 0,
                len: end - at,
            });
        }
        Ok(out)
    }

    fn map_extents(&mut self, inode: &Inode, first: u64, end: u64) -> FsResult<Vec<Run>> {
        let ino = inode.ino;
        let mut out = Vec::new();
        // (node bytes, expected depth or None for the root)
        let mut stack: Vec<(Vec<u8>, Option<u16>)> = vec![(inode.block.to_vec(), None)];
        let mut visited = 0usize;
        while let Some((node, want_depth)) = stack.pop() {
            visited += 1;
            if visited > MAX_TREE_NODES {
                return Err(corrupt(format!("inode {ino}: extent tree too large")));
            }
            if le16(&node, 0) != 0xF30A {
                return Err(corrupt(format!("inode {ino}: extent node: bad magic")));
            }
            let entries = usize::from(le16(&node, 2));
            let depth = le16(&node, 6);
            if depth > MAX_TREE_DEPTH || want_depth.is_some_and(|d| d != depth) {
                return Err(corrupt(format!("inode {ino}: extent tree depth {depth}")));
            }
            if 12 + entries * 12 > node.len() || entries > usize::from(le16(&node, 4)) {
                return Err(corrupt(format!(
                    "inode {ino}: extent node holds {entries} entries"
                )));
            }
            let at = |i: usize| 12 + i * 12;
            if depth == 0 {
                for i in 0..entries {
                    let e = at(i);
                    let logical = u64::from(le32(&node, e));
                    let raw_len = le16(&node, e + 4);
                    let (len, unwritten) = if raw_len > 32768 {
                        (u64::from(raw_len - 32768), true)
                    } else {
                        (u64::from(raw_len), false)
                    };
                    if logical + len <= first || logical >= end || len == 0 {
                        continue;
                    }
                    let physical =
                        u64::from(le32(&node, e + 8)) | (u64::from(le16(&node, e + 6)) << 32);
                    if physical == 0 || physical.checked_add(len).is_none_or(|x| x > self.blocks) {
                        return Err(corrupt(format!(
                            "inode {ino}: extent at block {physical} outside the filesystem"
                        )));
                    }
                    out.push(Run {
                        logical,
                        physical: if unwritten { 0 } else { physical },
                        len,
                    });
                    if out.len() > (end - first) as usize + MAX_TREE_NODES {
                        return Err(corrupt(format!("inode {ino}: overlapping extents")));
                    }
                }
            } else {
                for i in 0..entries {
                    let e = at(i);
                    let start = u64::from(le32(&node, e));
                    let next = if i + 1 < entries {
                        u64::from(le32(&node, at(i + 1)))
                    } else {
                        u64::MAX
                    };
                    if next <= first || start >= end {
                        continue;
                    }
                    let child =
                        u64::from(le32(&node, e + 4)) | (u64::from(le16(&node, e + 8)) << 32);
                    let data = self
                        .block(child, 1, &|| format!("inode {ino} extent index"))?
                        .to_vec();
                    stack.push((data, Some(depth - 1)));
                }
            }
        }
        Ok(out)
    }

    fn map_indirect(&mut self, inode: &Inode, first: u64, end: u64) -> FsResult<Vec<Run>> {
        let ppb = self.bs / 4;
        let ino = inode.ino;
        let mut out: Vec<Run> = Vec::new();
        for l in first..end {
            let ptr = if l < 12 {
                le32(&inode.block, l as usize * 4)
            } else {
                let mut rest = l - 12;
                let (root_slot, levels) = if rest < ppb {
                    (12, 1)
                } else if rest - ppb < ppb * ppb {
                    rest -= ppb;
                    (13, 2)
                } else if rest - ppb - ppb * ppb < ppb * ppb * ppb {
                    rest -= ppb + ppb * ppb;
                    (14, 3)
                } else {
                    return Err(corrupt(format!("inode {ino}: block {l} past the map")));
                };
                let mut ptr = le32(&inode.block, root_slot * 4);
                let mut level = levels;
                while level > 0 && ptr != 0 {
                    level -= 1;
                    let idx = (rest / ppb.pow(level)) % ppb;
                    let b =
                        self.block(u64::from(ptr), 1, &|| format!("inode {ino} indirect block"))?;
                    ptr = le32(b, idx as usize * 4);
                }
                ptr
            };
            let phys = u64::from(ptr);
            if phys != 0 {
                self.check_block(phys, &|| format!("inode {ino} block map"))?;
            }
            match out.last_mut() {
                Some(r)
                    if r.logical + r.len == l
                        && ((r.physical == 0 && phys == 0)
                            || (r.physical != 0 && r.physical + r.len == phys)) =>
                {
                    r.len += 1
                }
                _ => out.push(Run {
                    logical: l,
                    physical: phys,
                    len: 1,
                }),
            }
        }
        Ok(out)
    }

    /// Reads `buf.len()` bytes of `inode` at `offset` (clipped to its size) straight from
    /// the device into `buf`; returns the bytes read.
    fn read_data(&mut self, inode: &Inode, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        if offset >= inode.size || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(inode.size - offset).map_or(buf.len(), |l| l.min(buf.len()));
        let bs = self.bs;
        let first = offset / bs;
        let last = (offset + want as u64 - 1) / bs;
        let runs = self.map(inode, first, last - first + 1)?;
        let mut done = 0usize;
        for r in runs {
            // Byte range of this run inside the request.
            let run_start = (r.logical * bs).max(offset);
            let run_end = ((r.logical + r.len) * bs).min(offset + want as u64);
            if run_end <= run_start {
                continue;
            }
            let n = (run_end - run_start) as usize;
            let dst = buf
                .get_mut(done..done + n)
                .ok_or_else(|| Error::new(ErrorKind::Internal, "ext4: read bounds"))?;
            if r.physical == 0 {
                dst.fill(0);
            } else {
                let at = r.physical * bs + (run_start - r.logical * bs);
                self.read_dev(at, dst)?;
            }
            done += n;
        }
        Ok(done)
    }

    /// Every entry of directory `dir` (not `.`/`..`).
    fn list(&mut self, dir: &Inode) -> FsResult<Vec<Dent>> {
        let ino = dir.ino;
        if dir.size > MAX_DIR_BYTES {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("ext4: directory inode {ino} is {} bytes", dir.size),
            ));
        }
        let bs = self.bs;
        let nblocks = dir.size.div_ceil(bs);
        let window = (DIR_WINDOW / bs).max(1);
        let mut out = Vec::new();
        let mut at = 0u64;
        while at < nblocks {
            let count = window.min(nblocks - at);
            let runs = self.map(dir, at, count)?;
            for r in runs {
                if r.physical == 0 {
                    continue;
                }
                let mut data = vec![0u8; (r.len * bs) as usize];
                self.read_dev(r.physical * bs, &mut data)?;
                for (i, block) in data.chunks_exact(bs as usize).enumerate() {
                    self.parse_dir_block(ino, r.logical + i as u64, block, &mut out)?;
                }
            }
            at += count;
        }
        Ok(out)
    }

    fn parse_dir_block(
        &self,
        ino: u32,
        lblock: u64,
        block: &[u8],
        out: &mut Vec<Dent>,
    ) -> FsResult<()> {
        let mut pos = 0usize;
        while pos + 8 <= block.len() {
            let child = le32(block, pos);
            let rec_len = usize::from(le16(block, pos + 4));
            let name_len = usize::from(block.get(pos + 6).copied().unwrap_or(0));
            let ft = block.get(pos + 7).copied().unwrap_or(0);
            if rec_len < 8 || pos + rec_len > block.len() || (child != 0 && 8 + name_len > rec_len)
            {
                return Err(corrupt(format!(
                    "directory inode {ino} block {lblock}: bad entry at byte {pos}"
                )));
            }
            if child != 0 {
                let name = block.get(pos + 8..pos + 8 + name_len).unwrap_or_default();
                if name != b"." && name != b".." && !name.is_empty() {
                    if out.len() >= MAX_DIR_ENTRIES {
                        return Err(Error::new(
                            ErrorKind::TooLarge,
                            format!(
                                "ext4: directory inode {ino}: more than {MAX_DIR_ENTRIES} entries"
                            ),
                        ));
                    }
                    let file_type = if self.filetype {
                        match ft {
                            1 => Some(FileType::Regular),
                            2 => Some(FileType::Directory),
                            3 => Some(FileType::CharDevice),
                            4 => Some(FileType::BlockDevice),
                            5 => Some(FileType::Fifo),
                            6 => Some(FileType::Socket),
                            7 => Some(FileType::Symlink),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    out.push(Dent {
                        name: String::from_utf8_lossy(name).into_owned(),
                        ino: child,
                        file_type,
                    });
                }
            }
            pos += rec_len;
        }
        Ok(())
    }

    fn remember(&mut self, path: String, ino: u32) {
        if self.paths.len() >= MAX_PATHS {
            self.paths.clear();
        }
        self.paths.insert(path, ino);
    }

    /// Remembers the entries of directory `dir_path` (all of them when few enough).
    fn remember_dir(&mut self, dir_path: &str, dents: &[Dent]) {
        if dents.len() > REMEMBER_ALL {
            return;
        }
        for d in dents {
            let p = crate::fs::vfs::join(dir_path, &d.name);
            self.remember(p, d.ino);
        }
    }

    /// The inode a normalized absolute path names, without following a final symlink.
    /// `None`: a symlink (or an inode this reader leaves alone) lies on the way.
    fn lookup(&mut self, path: &str) -> FsResult<Option<Inode>> {
        if let Some(&ino) = self.paths.get(path) {
            return self.inode(ino).map(Some);
        }
        let mut cur = self.inode(ROOT_INO)?;
        let mut prefix = String::with_capacity(path.len());
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            match cur.file_type() {
                FileType::Directory => {}
                FileType::Symlink => return Ok(None),
                _ => {
                    return Err(Error::new(
                        ErrorKind::NotADirectory,
                        format!("ext4: {prefix} is not a directory"),
                    ));
                }
            }
            if cur.special() {
                return Ok(None);
            }
            let parent = if prefix.is_empty() {
                String::from("/")
            } else {
                prefix.clone()
            };
            prefix.push('/');
            prefix.push_str(comp);
            let ino = match self.paths.get(&prefix) {
                Some(&i) => i,
                None => {
                    let dents = self.list(&cur)?;
                    let found = dents.iter().find(|d| d.name == comp).map(|d| d.ino);
                    self.remember_dir(&parent, &dents);
                    let Some(i) = found else {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("ext4: {prefix} does not exist"),
                        ));
                    };
                    self.remember(prefix.clone(), i);
                    i
                }
            };
            cur = self.inode(ino)?;
        }
        Ok(Some(cur))
    }

    /// `stat`/`lstat`; `None` when `ext4-view` must answer (a symlink to follow, ...).
    pub fn stat(&mut self, path: &str, follow: bool) -> Option<FsResult<Stat>> {
        match self.lookup(path) {
            Ok(Some(i)) if follow && i.file_type() == FileType::Symlink => None,
            Ok(Some(i)) => Some(Ok(i.stat())),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The directory at `path` for listing, or `None` for `ext4-view`.
    fn dir(&mut self, path: &str) -> Option<FsResult<Inode>> {
        match self.lookup(path) {
            Ok(Some(i)) if i.special() => None,
            Ok(Some(i)) => match i.file_type() {
                FileType::Directory => Some(Ok(i)),
                FileType::Symlink => None,
                _ => Some(Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("ext4: {path} is not a directory"),
                ))),
            },
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    pub fn read_dir_names(&mut self, path: &str) -> Option<FsResult<Vec<(String, FileType)>>> {
        let dir = match self.dir(path)? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let dents = self.list(&dir)?;
            self.remember_dir(path, &dents);
            let mut out = Vec::with_capacity(dents.len());
            for d in dents {
                let t = match d.file_type {
                    Some(t) => t,
                    None => self.inode(d.ino)?.file_type(),
                };
                out.push((d.name, t));
            }
            Ok(out)
        })())
    }

    pub fn read_dir(&mut self, path: &str) -> Option<FsResult<Vec<DirEntry>>> {
        let dir = match self.dir(path)? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let dents = self.list(&dir)?;
            self.remember_dir(path, &dents);
            let mut out = Vec::with_capacity(dents.len());
            for d in dents {
                let stat = self.inode(d.ino)?.stat();
                out.push(DirEntry { name: d.name, stat });
            }
            Ok(out)
        })())
    }

    /// File bytes at `offset` into `buf`; `None` for `ext4-view` (a symlink to follow,
    /// inline data, ...).
    pub fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Option<FsResult<usize>> {
        let inode = match self.lookup(path) {
            Ok(Some(i)) => i,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if inode.special() {
            return None;
        }
        match inode.file_type() {
            FileType::Regular => Some(self.read_data(&inode, offset, buf)),
            FileType::Directory => Some(Err(Error::new(
                ErrorKind::IsADirectory,
                format!("ext4: {path} is a directory"),
            ))),
            // Symlinks are followed, special files refused: ext4-view's answers.
            _ => None,
        }
    }

    /// A symlink's target; `None` for `ext4-view`.
    pub fn read_link(&mut self, path: &str) -> Option<FsResult<String>> {
        let inode = match self.lookup(path) {
            Ok(Some(i)) => i,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if inode.file_type() != FileType::Symlink || inode.special() {
            return None;
        }
        let len = usize::try_from(inode.size)
            .ok()
            .filter(|&l| l > 0 && l < 4096)?;
        // A fast symlink keeps its target in the block map (and has no data blocks);
        // a short target beside an xattr block is ambiguous: ext4-view decides.
        if len < 60 && inode.flags & FLAG_EXTENTS == 0 {
            if inode.blocks512 != 0 {
                return None;
            }
            let t = inode.block.get(..len)?;
            return Some(Ok(String::from_utf8_lossy(t).into_owned()));
        }
        let mut buf = vec![0u8; len];
        Some(self.read_data(&inode, 0, &mut buf).map(|n| {
            buf.truncate(n);
            String::from_utf8_lossy(&buf).into_owned()
        }))
    }

    /// `st_blocks` × 512 of inode `ino`.
    pub fn allocated(&mut self, ino: u64) -> FsResult<Option<u64>> {
        let Ok(ino) = u32::try_from(ino) else {
            return Ok(None);
        };
        Ok(Some(self.inode(ino)?.blocks512.saturating_mul(512)))
    }
}
