//! btrfs on-disk structures: keys, the superblock, tree block headers and the items this
//! reader uses, each parsed from untrusted bytes with bounds-checked accessors.
//!
//! Layouts follow the btrfs on-disk format documentation (all integers little-endian).

use super::corrupt;
use crate::fs::FsResult;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Primary superblock offset and size.
pub const SUPER_OFFSET: u64 = 0x1_0000;
pub const SUPER_SIZE: usize = 4096;
pub const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// Tree block header size.
pub const HEADER_SIZE: usize = 0x65;
/// A leaf item descriptor: key + data offset + data size.
pub const ITEM_SIZE: usize = 25;
/// An internal node's key pointer: key + block pointer + generation.
pub const KEY_PTR_SIZE: usize = 33;
/// Levels a tree may have (0 = leaf .. 7).
pub const MAX_LEVEL: u8 = 8;
/// Size of the system chunk array in the superblock.
pub const SYS_CHUNK_ARRAY_MAX: usize = 2048;
const SYS_CHUNK_ARRAY_OFF: usize = 0x32B;

// Tree (objectid) numbers.
pub const EXTENT_TREE_OBJECTID: u64 = 2;
pub const FS_TREE_OBJECTID: u64 = 5;
pub const ROOT_TREE_DIR_OBJECTID: u64 = 6;
pub const CSUM_TREE_OBJECTID: u64 = 7;
pub const FREE_SPACE_TREE_OBJECTID: u64 = 10;
pub const BLOCK_GROUP_TREE_OBJECTID: u64 = 11;
pub const DEV_ITEMS_OBJECTID: u64 = 1;
/// First objectid of a subvolume (and of an inode).
pub const FIRST_FREE_OBJECTID: u64 = 256;
/// Last objectid a subvolume can have (-256 as u64).
pub const LAST_FREE_OBJECTID: u64 = u64::MAX - 255;
/// The csum tree's item objectid (-10 as u64).
pub const EXTENT_CSUM_OBJECTID: u64 = u64::MAX - 9;
/// The inode number Linux shows for a subvolume whose root is gone.
pub const EMPTY_SUBVOL_DIR_OBJECTID: u64 = 2;

// Item types.
pub const INODE_ITEM_KEY: u8 = 1;
pub const INODE_REF_KEY: u8 = 12;
pub const DIR_ITEM_KEY: u8 = 84;
pub const DIR_INDEX_KEY: u8 = 96;
pub const EXTENT_DATA_KEY: u8 = 108;
pub const EXTENT_CSUM_KEY: u8 = 128;
pub const ROOT_ITEM_KEY: u8 = 132;
pub const ROOT_BACKREF_KEY: u8 = 144;
pub const BLOCK_GROUP_ITEM_KEY: u8 = 192;
pub const DEV_ITEM_KEY: u8 = 216;
pub const CHUNK_ITEM_KEY: u8 = 228;

// Incompat feature bits.
pub const INCOMPAT_MIXED_BACKREF: u64 = 1 << 0;
pub const INCOMPAT_DEFAULT_SUBVOL: u64 = 1 << 1;
pub const INCOMPAT_MIXED_GROUPS: u64 = 1 << 2;
pub const INCOMPAT_COMPRESS_LZO: u64 = 1 << 3;
pub const INCOMPAT_COMPRESS_ZSTD: u64 = 1 << 4;
pub const INCOMPAT_BIG_METADATA: u64 = 1 << 5;
pub const INCOMPAT_EXTENDED_IREF: u64 = 1 << 6;
pub const INCOMPAT_RAID56: u64 = 1 << 7;
pub const INCOMPAT_SKINNY_METADATA: u64 = 1 << 8;
pub const INCOMPAT_NO_HOLES: u64 = 1 << 9;
pub const INCOMPAT_METADATA_UUID: u64 = 1 << 10;
pub const INCOMPAT_RAID1C34: u64 = 1 << 11;
pub const INCOMPAT_ZONED: u64 = 1 << 12;
pub const INCOMPAT_EXTENT_TREE_V2: u64 = 1 << 13;
pub const INCOMPAT_RAID_STRIPE_TREE: u64 = 1 << 14;
pub const INCOMPAT_SIMPLE_QUOTA: u64 = 1 << 16;
/// What this reader understands.
pub const INCOMPAT_SUPPORTED: u64 = INCOMPAT_MIXED_BACKREF
    | INCOMPAT_DEFAULT_SUBVOL
    | INCOMPAT_MIXED_GROUPS
    | INCOMPAT_COMPRESS_LZO
    | INCOMPAT_COMPRESS_ZSTD
    | INCOMPAT_BIG_METADATA
    | INCOMPAT_EXTENDED_IREF
    | INCOMPAT_RAID56
    | INCOMPAT_SKINNY_METADATA
    | INCOMPAT_NO_HOLES
    | INCOMPAT_METADATA_UUID
    | INCOMPAT_RAID1C34
    | INCOMPAT_SIMPLE_QUOTA;
/// compat_ro: the block group items live in their own tree.
pub const COMPAT_RO_BLOCK_GROUP_TREE: u64 = 1 << 3;
/// compat_ro: a free space tree exists.
pub const COMPAT_RO_FREE_SPACE_TREE: u64 = 1 << 0;

// Block group / chunk type bits.
pub const BG_DATA: u64 = 1 << 0;
pub const BG_RAID0: u64 = 1 << 3;
pub const BG_RAID1: u64 = 1 << 4;
pub const BG_DUP: u64 = 1 << 5;
pub const BG_RAID10: u64 = 1 << 6;
pub const BG_RAID5: u64 = 1 << 7;
pub const BG_RAID6: u64 = 1 << 8;
pub const BG_RAID1C3: u64 = 1 << 9;
pub const BG_RAID1C4: u64 = 1 << 10;
pub const BG_PROFILE_MASK: u64 =
    BG_RAID0 | BG_RAID1 | BG_DUP | BG_RAID10 | BG_RAID5 | BG_RAID6 | BG_RAID1C3 | BG_RAID1C4;

// File extent types and compression.
pub const FILE_EXTENT_INLINE: u8 = 0;
pub const FILE_EXTENT_REG: u8 = 1;
pub const FILE_EXTENT_PREALLOC: u8 = 2;
pub const COMPRESS_NONE: u8 = 0;
pub const COMPRESS_ZLIB: u8 = 1;
pub const COMPRESS_LZO: u8 = 2;
pub const COMPRESS_ZSTD: u8 = 3;

/// Inode flag: the file's data has no checksums.
pub const INODE_NODATASUM: u64 = 1 << 0;
/// Root item flag: read-only subvolume.
pub const ROOT_SUBVOL_RDONLY: u64 = 1 << 0;

/// Longest name in a directory.
pub const NAME_MAX: usize = 255;

pub fn le16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

pub fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub fn uuid16(b: &[u8], off: usize) -> Option<[u8; 16]> {
    b.get(off..off.checked_add(16)?)?.try_into().ok()
}

/// A 16-byte UUID as lower-case 8-4-4-4-12.
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

/// A btrfs key. The derived order (objectid, type, offset) is the on-disk sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub objectid: u64,
    pub ty: u8,
    pub offset: u64,
}

impl Key {
    pub const fn new(objectid: u64, ty: u8, offset: u64) -> Self {
        Key {
            objectid,
            ty,
            offset,
        }
    }

    /// The 17-byte on-disk key at `off`.
    pub fn parse(b: &[u8], off: usize) -> Option<Key> {
        Some(Key {
            objectid: le64(b, off)?,
            ty: u8_at(b, off.checked_add(8)?)?,
            offset: le64(b, off.checked_add(9)?)?,
        })
    }
}

/// The device this filesystem image is (superblock `dev_item`, or a chunk-tree dev item).
#[derive(Clone, Debug)]
pub struct DevItem {
    pub devid: u64,
    pub total_bytes: u64,
    pub bytes_used: u64,
}

impl DevItem {
    pub fn parse(b: &[u8]) -> Option<DevItem> {
        Some(DevItem {
            devid: le64(b, 0)?,
            total_bytes: le64(b, 8)?,
            bytes_used: le64(b, 16)?,
        })
    }
}

/// The superblock fields this reader uses.
#[derive(Clone, Debug)]
pub struct Superblock {
    pub csum_type: u16,
    pub fsid: [u8; 16],
    /// The UUID tree blocks carry (the fsid unless METADATA_UUID is set).
    pub metadata_uuid: [u8; 16],
    pub generation: u64,
    pub root: u64,
    pub chunk_root: u64,
    pub total_bytes: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub chunk_root_generation: u64,
    pub compat_ro_flags: u64,
    pub incompat_flags: u64,
    pub root_level: u8,
    pub chunk_root_level: u8,
    pub dev_item: DevItem,
    pub label: String,
    pub sys_chunk_array: Vec<u8>,
}

impl Superblock {
    /// Parses (but does not checksum) a superblock. Sizes and levels are range-checked.
    pub fn parse(b: &[u8]) -> FsResult<Superblock> {
        let bad = |what: &str| corrupt(format!("superblock: {what}"));
        if b.get(0x40..0x48) != Some(&MAGIC[..]) {
            return Err(bad("bad magic"));
        }
        let field = |off| le64(b, off).ok_or_else(|| bad("truncated"));
        let bytenr = field(0x30)?;
        if bytenr != SUPER_OFFSET {
            return Err(bad(&format!("records its own offset as {bytenr}")));
        }
        let fsid = uuid16(b, 0x20).ok_or_else(|| bad("truncated"))?;
        let incompat_flags = field(0xBC)?;
        let metadata_uuid = if incompat_flags & INCOMPAT_METADATA_UUID != 0 {
            uuid16(b, 0x23B).ok_or_else(|| bad("truncated"))?
        } else {
            fsid
        };
        let sectorsize = le32(b, 0x90).ok_or_else(|| bad("truncated"))?;
        let nodesize = le32(b, 0x94).ok_or_else(|| bad("truncated"))?;
        if !sectorsize.is_power_of_two() || !(4096..=65536).contains(&sectorsize) {
            return Err(bad(&format!("bad sector size {sectorsize}")));
        }
        if !nodesize.is_power_of_two()
            || !(4096..=65536).contains(&nodesize)
            || nodesize < sectorsize
        {
            return Err(bad(&format!("bad node size {nodesize}")));
        }
        let sys_len = le32(b, 0xA0).ok_or_else(|| bad("truncated"))? as usize;
        if sys_len > SYS_CHUNK_ARRAY_MAX {
            return Err(bad(&format!("system chunk array of {sys_len} bytes")));
        }
        let sys_chunk_array = b
            .get(SYS_CHUNK_ARRAY_OFF..SYS_CHUNK_ARRAY_OFF + sys_len)
            .ok_or_else(|| bad("truncated"))?
            .to_vec();
        let root_level = u8_at(b, 0xC6).ok_or_else(|| bad("truncated"))?;
        let chunk_root_level = u8_at(b, 0xC7).ok_or_else(|| bad("truncated"))?;
        if root_level >= MAX_LEVEL || chunk_root_level >= MAX_LEVEL {
            return Err(bad("tree root level above the maximum"));
        }
        let dev_item =
            DevItem::parse(b.get(0xC9..0x12B).unwrap_or(&[])).ok_or_else(|| bad("truncated"))?;
        let label_field = b.get(0x12B..0x22B).ok_or_else(|| bad("truncated"))?;
        let label_end = label_field
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(label_field.len());
        let label = String::from_utf8_lossy(label_field.get(..label_end).unwrap_or(&[])).into();
        Ok(Superblock {
            csum_type: le16(b, 0xC4).ok_or_else(|| bad("truncated"))?,
            fsid,
            metadata_uuid,
            generation: field(0x48)?,
            root: field(0x50)?,
            chunk_root: field(0x58)?,
            total_bytes: field(0x70)?,
            sectorsize,
            nodesize,
            chunk_root_generation: field(0xA4)?,
            compat_ro_flags: field(0xB4)?,
            incompat_flags,
            root_level,
            chunk_root_level,
            dev_item,
            label,
            sys_chunk_array,
        })
    }
}

/// A tree block header.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub fsid: [u8; 16],
    pub bytenr: u64,
    pub generation: u64,
    pub nritems: u32,
    pub level: u8,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        Some(Header {
            fsid: uuid16(b, 0x20)?,
            bytenr: le64(b, 0x30)?,
            generation: le64(b, 0x50)?,
            nritems: le32(b, 0x60)?,
            level: u8_at(b, 0x64)?,
        })
    }
}

/// A chunk item (logical → physical mapping of one block group).
#[derive(Clone, Debug)]
pub struct ChunkItem {
    pub length: u64,
    pub stripe_len: u64,
    pub ty: u64,
    pub sub_stripes: u16,
    /// (devid, physical offset) of each stripe.
    pub stripes: Vec<(u64, u64)>,
}

/// Size of a chunk item without its stripes, and of one stripe.
pub const CHUNK_ITEM_SIZE: usize = 48;
pub const STRIPE_SIZE: usize = 32;

impl ChunkItem {
    /// Parses a chunk item at the start of `b`; returns it and its size in bytes.
    pub fn parse(b: &[u8]) -> Option<(ChunkItem, usize)> {
        let num_stripes = le16(b, 44)? as usize;
        let size = CHUNK_ITEM_SIZE.checked_add(num_stripes.checked_mul(STRIPE_SIZE)?)?;
        if size > b.len() {
            return None;
        }
        let mut stripes = Vec::with_capacity(num_stripes);
        for i in 0..num_stripes {
            let off = CHUNK_ITEM_SIZE + i * STRIPE_SIZE;
            stripes.push((le64(b, off)?, le64(b, off + 8)?));
        }
        Some((
            ChunkItem {
                length: le64(b, 0)?,
                stripe_len: le64(b, 16)?,
                ty: le64(b, 24)?,
                sub_stripes: le16(b, 46)?,
                stripes,
            },
            size,
        ))
    }
}

/// An inode item.
#[derive(Clone, Copy, Debug, Default)]
pub struct InodeItem {
    pub size: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub flags: u64,
    pub atime: i64,
    pub ctime: i64,
    pub mtime: i64,
}

pub const INODE_ITEM_SIZE: usize = 160;

impl InodeItem {
    pub fn parse(b: &[u8]) -> Option<InodeItem> {
        if b.len() < INODE_ITEM_SIZE {
            return None;
        }
        Some(InodeItem {
            size: le64(b, 16)?,
            nlink: le32(b, 40)?,
            uid: le32(b, 44)?,
            gid: le32(b, 48)?,
            mode: le32(b, 52)?,
            flags: le64(b, 64)?,
            atime: le64(b, 112)? as i64,
            ctime: le64(b, 124)? as i64,
            mtime: le64(b, 136)? as i64,
        })
    }
}

/// The root item fields this reader uses.
#[derive(Clone, Copy, Debug)]
pub struct RootItem {
    pub generation: u64,
    pub root_dirid: u64,
    pub bytenr: u64,
    pub bytes_used: u64,
    pub flags: u64,
    pub level: u8,
}

impl RootItem {
    pub fn parse(b: &[u8]) -> Option<RootItem> {
        Some(RootItem {
            generation: le64(b, 160)?,
            root_dirid: le64(b, 168)?,
            bytenr: le64(b, 176)?,
            bytes_used: le64(b, 192)?,
            flags: le64(b, 208)?,
            level: u8_at(b, 238)?,
        })
    }
}

/// One directory entry of a DIR_ITEM / DIR_INDEX item.
#[derive(Clone, Debug)]
pub struct DirItem<'a> {
    pub location: Key,
    pub name: &'a [u8],
}

const DIR_ITEM_HEADER: usize = 30;

/// The entries packed in one DIR_ITEM / DIR_INDEX item (several when names collide).
pub fn parse_dir_items(b: &[u8]) -> FsResult<Vec<DirItem<'_>>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < b.len() {
        let bad = || corrupt("directory item: truncated or oversized entry");
        let location = Key::parse(b, off).ok_or_else(bad)?;
        let data_len = le16(b, off + 25).ok_or_else(bad)? as usize;
        let name_len = le16(b, off + 27).ok_or_else(bad)? as usize;
        if name_len == 0 || name_len > NAME_MAX {
            return Err(corrupt(format!("directory item: name of {name_len} bytes")));
        }
        let name_off = off + DIR_ITEM_HEADER;
        let name = b.get(name_off..name_off + name_len).ok_or_else(bad)?;
        let end = name_off
            .checked_add(name_len)
            .and_then(|e| e.checked_add(data_len))
            .filter(|&e| e <= b.len())
            .ok_or_else(bad)?;
        out.push(DirItem { location, name });
        off = end;
    }
    Ok(out)
}

/// A file extent item.
#[derive(Clone, Debug)]
pub struct FileExtent {
    pub ram_bytes: u64,
    pub compression: u8,
    pub encryption: u8,
    pub other_encoding: u16,
    pub ty: u8,
    /// Regular / prealloc only (zero for inline).
    pub disk_bytenr: u64,
    pub disk_num_bytes: u64,
    pub offset: u64,
    pub num_bytes: u64,
}

/// Where an inline extent's data starts in the item.
pub const FILE_EXTENT_INLINE_DATA: usize = 21;

impl FileExtent {
    pub fn parse(b: &[u8]) -> Option<FileExtent> {
        let ty = u8_at(b, 20)?;
        let (disk_bytenr, disk_num_bytes, offset, num_bytes) = if ty == FILE_EXTENT_INLINE {
            (0, 0, 0, 0)
        } else {
            (le64(b, 21)?, le64(b, 29)?, le64(b, 37)?, le64(b, 45)?)
        };
        Some(FileExtent {
            ram_bytes: le64(b, 8)?,
            compression: u8_at(b, 16)?,
            encryption: u8_at(b, 17)?,
            other_encoding: le16(b, 18)?,
            ty,
            disk_bytenr,
            disk_num_bytes,
            offset,
            num_bytes,
        })
    }
}

/// A root ref / backref: (directory inode in the parent, name).
pub fn parse_root_ref(b: &[u8]) -> Option<(u64, &[u8])> {
    let dirid = le64(b, 0)?;
    let name_len = le16(b, 16)? as usize;
    let name = b.get(18..18usize.checked_add(name_len)?)?;
    Some((dirid, name))
}

/// The first name of an INODE_REF item: (index, name).
pub fn parse_inode_ref(b: &[u8]) -> Option<(u64, &[u8])> {
    let index = le64(b, 0)?;
    let name_len = le16(b, 8)? as usize;
    let name = b.get(10..10usize.checked_add(name_len)?)?;
    Some((index, name))
}
