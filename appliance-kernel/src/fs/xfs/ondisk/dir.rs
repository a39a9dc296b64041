//! Directories (version 2 format, with the v5 "dir3" headers): shortform directories
//! inside the inode, data blocks (`XD2D`/`XDD3`) and single-block directories
//! (`XD2B`/`XDB3`) holding the entries, and the hash-indexed leaf (`LEAF1`, `LEAFN`) and
//! node (`DA_NODE`) blocks above the 32 GiB offset of the directory's address space.

use super::sb::Superblock;
use super::{be16, be32, be64, corrupt, u8_at, uuid_at};
use crate::fs::FsResult;
use crate::fs::xfs::crc;
use alloc::vec::Vec;

pub const DIR2_BLOCK_MAGIC: u32 = 0x5844_3242; // "XD2B"
pub const DIR2_DATA_MAGIC: u32 = 0x5844_3244; // "XD2D"
pub const DIR3_BLOCK_MAGIC: u32 = 0x5844_4233; // "XDB3"
pub const DIR3_DATA_MAGIC: u32 = 0x5844_4433; // "XDD3"
pub const DIR2_LEAF1_MAGIC: u16 = 0xD2F1;
pub const DIR2_LEAFN_MAGIC: u16 = 0xD2FF;
pub const DA_NODE_MAGIC: u16 = 0xFEBE;
pub const DIR3_LEAF1_MAGIC: u16 = 0x3DF1;
pub const DIR3_LEAFN_MAGIC: u16 = 0x3DFF;
pub const DA3_NODE_MAGIC: u16 = 0x3EBE;

/// Byte offset in a directory's address space where the leaf (hash index) blocks start;
/// data blocks live below it.
pub const LEAF_OFFSET: u64 = 1 << 35;
/// Byte offset of the free-space index blocks.
pub const FREE_OFFSET: u64 = 2 << 35;
/// Offset of the CRC in data/block headers and in leaf/node headers (v5).
pub const DATA_CRC_OFF: usize = 4;
pub const DA_CRC_OFF: usize = 12;
/// Deepest directory hash btree (XFS_DA_NODE_MAXDEPTH).
pub const MAX_DA_DEPTH: usize = 5;
/// Longest entry name.
pub const MAX_NAME: usize = 255;
/// Largest file type value in an entry (XFS_DIR3_FT_WHT).
const MAX_FTYPE: u8 = 8;

/// One directory entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// The file type byte, when the filesystem stores one.
    pub ftype: Option<u8>,
}

/// Checks an entry name: 1..=255 bytes, no `/` and no NUL.
fn check_name(dir: u64, name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.len() > MAX_NAME || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(corrupt(format_args!(
            "directory {dir}: invalid entry name {:?}",
            alloc::string::String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

fn check_entry_ino(sb: &Superblock, dir: u64, ino: u64) -> FsResult<()> {
    if !sb.valid_ino(ino) {
        return Err(corrupt(format_args!(
            "directory {dir}: entry points to invalid inode number {ino}"
        )));
    }
    Ok(())
}

fn check_ftype(dir: u64, ft: u8) -> FsResult<()> {
    if ft > MAX_FTYPE {
        return Err(corrupt(format_args!(
            "directory {dir}: bad file type {ft} in an entry"
        )));
    }
    Ok(())
}

/// A shortform directory: the parent and the entries (without `.` and `..`, which
/// shortform directories do not store).
#[derive(Debug, Clone)]
pub struct Shortform {
    pub parent: u64,
    pub entries: Vec<RawEntry>,
}

/// Decodes the shortform directory of inode `dir` (`data` is the data fork cut to the
/// inode size).
pub fn parse_shortform(sb: &Superblock, dir: u64, data: &[u8]) -> FsResult<Shortform> {
    let bad = |what: &str| corrupt(format_args!("directory {dir}: shortform {what}"));
    if data.len() < 6 {
        return Err(bad("header truncated"));
    }
    let count = usize::from(u8_at(data, 0));
    let i8count = usize::from(u8_at(data, 1));
    let wide = i8count != 0;
    let ino_len = if wide { 8 } else { 4 };
    let read_ino = |off: usize| -> u64 {
        if wide {
            be64(data, off)
        } else {
            u64::from(be32(data, off))
        }
    };
    if data.len() < 2 + ino_len {
        return Err(bad("header truncated"));
    }
    let parent = read_ino(2);
    check_entry_ino(sb, dir, parent)?;
    let mut pos = 2 + ino_len;
    let mut entries = Vec::with_capacity(count);
    let mut min_offset = 0u32;
    let ft_len = usize::from(sb.ftype);
    for _ in 0..count {
        let namelen = usize::from(u8_at(data, pos));
        let offset = u32::from(be16(data, pos + 1));
        let name_at = pos + 3;
        let end = name_at + namelen + ft_len + ino_len;
        if namelen == 0 || end > data.len() {
            return Err(bad("entry overruns the directory"));
        }
        let name = data.get(name_at..name_at + namelen).unwrap_or(&[]);
        check_name(dir, name)?;
        // Entries are kept in increasing order of their data-block offsets.
        if offset < min_offset {
            return Err(bad("entries out of order"));
        }
        min_offset = offset + 1;
        let ftype = if sb.ftype {
            let ft = u8_at(data, name_at + namelen);
            check_ftype(dir, ft)?;
            Some(ft)
        } else {
            None
        };
        let ino = read_ino(name_at + namelen + ft_len);
        check_entry_ino(sb, dir, ino)?;
        entries.push(RawEntry {
            name: name.to_vec(),
            ino,
            ftype,
        });
        pos = end;
    }
    if pos != data.len() {
        return Err(bad("size does not match its entries"));
    }
    Ok(Shortform { parent, entries })
}

/// Header size of data and single-block directory blocks.
pub fn data_hdr_len(sb: &Superblock) -> usize {
    if sb.version == 5 { 64 } else { 16 }
}

/// Header size of leaf and node blocks.
pub fn da_hdr_len(sb: &Superblock) -> usize {
    if sb.version == 5 { 64 } else { 16 }
}

/// Bytes a data entry with a `namelen`-byte name takes (8-byte aligned).
pub fn data_entry_len(sb: &Superblock, namelen: usize) -> usize {
    (8 + 1 + namelen + usize::from(sb.ftype) + 2 + 7) & !7
}

/// Checks the v5 self-describing header of a directory block (data/block when
/// `data_hdr`, leaf/node otherwise): CRC, location, UUID and owner.
fn check_v5_hdr(
    sb: &Superblock,
    dir: u64,
    buf: &[u8],
    daddr: u64,
    data_hdr: bool,
    what: &str,
) -> FsResult<()> {
    let (crc_off, blkno_off, uuid_off, owner_off) = if data_hdr {
        (DATA_CRC_OFF, 8, 24, 40)
    } else {
        (DA_CRC_OFF, 16, 32, 48)
    };
    if !crc::verify(buf, crc_off) {
        return Err(corrupt(format_args!("directory {dir}: {what}: bad CRC")));
    }
    if be64(buf, blkno_off) != daddr {
        return Err(corrupt(format_args!(
            "directory {dir}: {what}: block records the wrong location"
        )));
    }
    if uuid_at(buf, uuid_off) != sb.meta_uuid {
        return Err(corrupt(format_args!(
            "directory {dir}: {what}: filesystem UUID mismatch"
        )));
    }
    if be64(buf, owner_off) != dir {
        return Err(corrupt(format_args!(
            "directory {dir}: {what}: block belongs to inode {}",
            be64(buf, owner_off)
        )));
    }
    Ok(())
}

/// A leaf entry: the hash of a name and where its data entry is (in 8-byte units of
/// the directory's address space; 0 is a stale entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry {
    pub hash: u32,
    pub addr: u32,
}

/// A decoded data block (or single-block directory).
#[derive(Debug, Clone, Default)]
pub struct DataBlock {
    /// The entries in block order, with their byte offsets in the block.
    pub entries: Vec<(u32, RawEntry)>,
    /// Single-block form only: the hash index in the block's tail.
    pub leaf: Vec<LeafEntry>,
}

/// Decodes and checks a directory data block of `dir` (`block_form`: the single-block
/// directory, whose tail holds a hash index). `daddr` is the block's 512-byte address.
pub fn parse_data_block(
    sb: &Superblock,
    dir: u64,
    buf: &[u8],
    daddr: u64,
    block_form: bool,
) -> FsResult<DataBlock> {
    let what = if block_form {
        "directory block"
    } else {
        "data block"
    };
    let len = buf.len();
    if len != sb.dir_blk_size() as usize {
        return Err(corrupt(format_args!("directory {dir}: {what}: truncated")));
    }
    let want = match (sb.version == 5, block_form) {
        (true, true) => DIR3_BLOCK_MAGIC,
        (true, false) => DIR3_DATA_MAGIC,
        (false, true) => DIR2_BLOCK_MAGIC,
        (false, false) => DIR2_DATA_MAGIC,
    };
    if be32(buf, 0) != want {
        return Err(corrupt(format_args!("directory {dir}: {what}: bad magic")));
    }
    if sb.version == 5 {
        check_v5_hdr(sb, dir, buf, daddr, true, what)?;
    }
    let hdr = data_hdr_len(sb);
    let mut out = DataBlock::default();
    let end = if block_form {
        let count = be32(buf, len - 8) as usize;
        let stale = be32(buf, len - 4) as usize;
        let leaf_start = count
            .checked_mul(8)
            .and_then(|n| (len - 8).checked_sub(n))
            .filter(|&s| s >= hdr)
            .ok_or_else(|| {
                corrupt(format_args!(
                    "directory {dir}: {what}: {count} leaf entries do not fit"
                ))
            })?;
        if stale > count {
            return Err(corrupt(format_args!(
                "directory {dir}: {what}: more stale entries than entries"
            )));
        }
        out.leaf = parse_leaf_array(dir, buf, leaf_start, count, what)?;
        leaf_start
    } else {
        len
    };
    let ft_len = usize::from(sb.ftype);
    let mut pos = hdr;
    while pos < end {
        if be16(buf, pos) == 0xFFFF {
            // An unused region: freetag, length, ..., tag (its own offset) at the end.
            let n = usize::from(be16(buf, pos + 2));
            if n < 8 || n % 8 != 0 || pos + n > end || usize::from(be16(buf, pos + n - 2)) != pos {
                return Err(corrupt(format_args!(
                    "directory {dir}: {what}: bad free region at offset {pos}"
                )));
            }
            pos += n;
            continue;
        }
        let ino = be64(buf, pos);
        let namelen = usize::from(u8_at(buf, pos + 8));
        let n = data_entry_len(sb, namelen);
        if namelen == 0 || pos + n > end {
            return Err(corrupt(format_args!(
                "directory {dir}: {what}: entry at offset {pos} overruns the block"
            )));
        }
        if usize::from(be16(buf, pos + n - 2)) != pos {
            return Err(corrupt(format_args!(
                "directory {dir}: {what}: entry at offset {pos} has a bad tag"
            )));
        }
        let name = buf.get(pos + 9..pos + 9 + namelen).unwrap_or(&[]);
        check_name(dir, name)?;
        check_entry_ino(sb, dir, ino)?;
        let ftype = if ft_len == 1 {
            let ft = u8_at(buf, pos + 9 + namelen);
            check_ftype(dir, ft)?;
            Some(ft)
        } else {
            None
        };
        out.entries.push((
            pos as u32,
            RawEntry {
                name: name.to_vec(),
                ino,
                ftype,
            },
        ));
        pos += n;
    }
    Ok(out)
}

/// `count` leaf entries at `at`, checked to be in hash order.
fn parse_leaf_array(
    dir: u64,
    buf: &[u8],
    at: usize,
    count: usize,
    what: &str,
) -> FsResult<Vec<LeafEntry>> {
    let mut v = Vec::with_capacity(count);
    let mut prev = 0u32;
    for i in 0..count {
        let o = at + i * 8;
        let e = LeafEntry {
            hash: be32(buf, o),
            addr: be32(buf, o + 4),
        };
        if e.hash < prev {
            return Err(corrupt(format_args!(
                "directory {dir}: {what}: hash index out of order"
            )));
        }
        prev = e.hash;
        v.push(e);
    }
    Ok(v)
}

/// What a block of the directory's leaf space is.
#[derive(Debug, Clone)]
pub enum DaBlock {
    /// A leaf: the single leaf of a leaf-form directory, or one leaf of a node-form
    /// directory. `forw` is the next leaf in hash order (0: none).
    Leaf {
        entries: Vec<LeafEntry>,
        forw: u32,
        single: bool,
    },
    /// An interior node of the hash btree: (highest hash below, child block) pairs.
    Node {
        level: u16,
        entries: Vec<(u32, u32)>,
    },
}

/// Decodes and checks a leaf or node block of directory `dir`.
pub fn parse_da_block(sb: &Superblock, dir: u64, buf: &[u8], daddr: u64) -> FsResult<DaBlock> {
    let len = buf.len();
    if len != sb.dir_blk_size() as usize {
        return Err(corrupt(format_args!(
            "directory {dir}: leaf/node block truncated"
        )));
    }
    let v5 = sb.version == 5;
    let magic = be16(buf, 8);
    let (leaf1, leafn, node) = if v5 {
        (DIR3_LEAF1_MAGIC, DIR3_LEAFN_MAGIC, DA3_NODE_MAGIC)
    } else {
        (DIR2_LEAF1_MAGIC, DIR2_LEAFN_MAGIC, DA_NODE_MAGIC)
    };
    let what = match magic {
        m if m == leaf1 || m == leafn => "leaf block",
        m if m == node => "node block",
        _ => {
            return Err(corrupt(format_args!(
                "directory {dir}: leaf/node block: bad magic"
            )));
        }
    };
    if v5 {
        check_v5_hdr(sb, dir, buf, daddr, false, what)?;
    }
    let forw = be32(buf, 0);
    let cnt_at = if v5 { 56 } else { 12 };
    let count = usize::from(be16(buf, cnt_at));
    let hdr = da_hdr_len(sb);
    if magic == node {
        let level = be16(buf, cnt_at + 2);
        if level == 0 || usize::from(level) >= MAX_DA_DEPTH {
            return Err(corrupt(format_args!(
                "directory {dir}: node block: level {level} is out of range"
            )));
        }
        if count == 0 || hdr + count * 8 > len {
            return Err(corrupt(format_args!(
                "directory {dir}: node block: {count} entries do not fit"
            )));
        }
        let mut entries = Vec::with_capacity(count);
        let mut prev = 0u32;
        for i in 0..count {
            let o = hdr + i * 8;
            let h = be32(buf, o);
            if h < prev {
                return Err(corrupt(format_args!(
                    "directory {dir}: node block: hashes out of order"
                )));
            }
            prev = h;
            entries.push((h, be32(buf, o + 4)));
        }
        return Ok(DaBlock::Node { level, entries });
    }
    let single = magic == leaf1;
    // A single leaf ends with its best-free table: bestcount u16 entries, then the count.
    let limit = if single {
        let bests = be32(buf, len - 4) as usize;
        bests
            .checked_mul(2)
            .and_then(|b| (len - 4).checked_sub(b))
            .ok_or_else(|| {
                corrupt(format_args!(
                    "directory {dir}: leaf block: best-free table does not fit"
                ))
            })?
    } else {
        len
    };
    if hdr + count * 8 > limit {
        return Err(corrupt(format_args!(
            "directory {dir}: leaf block: {count} entries do not fit"
        )));
    }
    let stale = usize::from(be16(buf, cnt_at + 2));
    if stale > count {
        return Err(corrupt(format_args!(
            "directory {dir}: leaf block: more stale entries than entries"
        )));
    }
    let entries = parse_leaf_array(dir, buf, hdr, count, what)?;
    Ok(DaBlock::Leaf {
        entries,
        forw,
        single,
    })
}

/// The directory name hash (`xfs_da_hashname`): 7-bit rotations of 4-byte groups.
pub fn hashname(name: &[u8]) -> u32 {
    hash_with(name, |b| b)
}

/// The hash of an ASCII case-insensitive filesystem (`-n version=ci`): names are
/// hashed lower-cased.
pub fn hashname_ci(name: &[u8]) -> u32 {
    hash_with(name, |b| b.to_ascii_lowercase())
}

fn hash_with(name: &[u8], f: impl Fn(u8) -> u8) -> u32 {
    let mut hash = 0u32;
    let mut groups = name.chunks_exact(4);
    for g in &mut groups {
        let mut v = 0u32;
        for (i, &b) in g.iter().enumerate() {
            v ^= u32::from(f(b)) << (21 - 7 * i as u32);
        }
        hash = v ^ hash.rotate_left(28);
    }
    let rest = groups.remainder();
    let n = rest.len() as u32;
    if n == 0 {
        return hash;
    }
    let mut v = 0u32;
    for (i, &b) in rest.iter().enumerate() {
        v ^= u32::from(f(b)) << (7 * (n - 1 - i as u32));
    }
    v ^ hash.rotate_left(7 * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        // Values `xfs_db -r -c 'ls /'` prints for these names (xfsprogs 6.1).
        assert_eq!(hashname(b"."), 0x2e);
        assert_eq!(hashname(b".."), 0x172e);
        assert_eq!(hashname(b"sparse"), 0x0c3c_ba7a);
        assert_eq!(hashname(b"small"), 0x3db8_766b);
        assert_eq!(hashname(b"lnk"), 0x001b_376b);
        assert_eq!(hashname(b"dev"), 0x0019_32f6);
        assert_eq!(hashname(b"fifo"), 0x0cda_736f);
        assert_eq!(hashname_ci(b"FiFo"), hashname(b"fifo"));
    }
}
