//! On-disk inodes (`xfs_dinode`): version 1/2 cores on v4 filesystems, version 3 (with
//! CRC, inode number and UUID) on v5, followed by the data fork and, from `di_forkoff`,
//! the attribute fork.

use super::sb::Superblock;
use super::{be16, be32, be64, corrupt, u8_at, uuid_at};
use crate::fs::FsResult;
use crate::fs::xfs::crc;
use alloc::vec::Vec;
use wire::FileType;

pub const MAGIC: u16 = 0x494E; // "IN"
/// Offset of `di_crc` (v3).
pub const CRC_OFF: usize = 0x64;
/// Size of the v1/v2 inode core.
pub const CORE_V2: usize = 0x64;
/// Size of the v3 inode core.
pub const CORE_V3: usize = 0xB0;

// Data fork formats (`di_format`).
pub const FMT_DEV: u8 = 0;
pub const FMT_LOCAL: u8 = 1;
pub const FMT_EXTENTS: u8 = 2;
pub const FMT_BTREE: u8 = 3;

pub const S_IFMT: u16 = 0o170000;
pub const S_IFSOCK: u16 = 0o140000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFIFO: u16 = 0o010000;

/// `di_flags`: the file's data lives on the realtime device.
pub const DIFLAG_REALTIME: u16 = 0x0001;
/// `di_flags2`: timestamps are 64-bit nanosecond counters.
pub const DIFLAG2_BIGTIME: u64 = 0x0008;
/// `di_flags2`: 64-bit data fork extent counter.
pub const DIFLAG2_NREXT64: u64 = 0x0010;

/// Bigtime timestamps count from the lowest 32-bit time, 1901-12-13.
const BIGTIME_EPOCH_OFFSET: i64 = 1 << 31;

/// A decoded inode: the core fields this reader uses and a copy of the data fork.
#[derive(Debug, Clone)]
pub struct Inode {
    pub ino: u64,
    pub version: u8,
    /// Full mode: file type and permission bits.
    pub mode: u16,
    /// Data fork format (`FMT_*`).
    pub format: u8,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    /// Blocks used (data, attribute and btree blocks).
    pub nblocks: u64,
    /// Data fork extent count.
    pub nextents: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    /// Creation time (v3 inodes only).
    pub crtime: Option<i64>,
    pub flags: u16,
    pub flags2: u64,
    /// The data fork bytes (the literal area up to the attribute fork).
    pub fork: Vec<u8>,
}

impl Inode {
    pub fn file_type(&self) -> FileType {
        file_type(self.mode)
    }
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    pub fn is_realtime(&self) -> bool {
        self.flags & DIFLAG_REALTIME != 0
    }
}

/// The wire file type of a mode.
pub fn file_type(mode: u16) -> FileType {
    match mode & S_IFMT {
        S_IFREG => FileType::Regular,
        S_IFDIR => FileType::Directory,
        S_IFLNK => FileType::Symlink,
        S_IFCHR => FileType::CharDevice,
        S_IFBLK => FileType::BlockDevice,
        S_IFIFO => FileType::Fifo,
        S_IFSOCK => FileType::Socket,
        _ => FileType::Unknown,
    }
}

/// Seconds of the timestamp at `off`: `{ i32 seconds, u32 nanoseconds }`, or with
/// bigtime a u64 of nanoseconds since 1901-12-13T20:45:52Z.
fn timestamp(buf: &[u8], off: usize, bigtime: bool) -> i64 {
    if bigtime {
        let ns = be64(buf, off);
        // At most 2^64 / 10^9 < 2^35: fits an i64.
        (ns / 1_000_000_000) as i64 - BIGTIME_EPOCH_OFFSET
    } else {
        i64::from(be32(buf, off) as i32)
    }
}

/// Decodes and checks inode `ino` from its `sb.inode_size` bytes.
pub fn parse(sb: &Superblock, ino: u64, buf: &[u8]) -> FsResult<Inode> {
    let isize = sb.inode_size as usize;
    let buf = buf
        .get(..isize)
        .ok_or_else(|| corrupt(format_args!("inode {ino}: truncated")))?;
    if be16(buf, 0) != MAGIC {
        return Err(corrupt(format_args!("inode {ino}: bad magic")));
    }
    let version = u8_at(buf, 4);
    let v3 = version == 3;
    if sb.version == 5 {
        if !v3 {
            return Err(corrupt(format_args!(
                "inode {ino}: version {version} on a v5 filesystem"
            )));
        }
        if !crc::verify(buf, CRC_OFF) {
            return Err(corrupt(format_args!("inode {ino}: bad CRC")));
        }
        if be64(buf, 0x98) != ino {
            return Err(corrupt(format_args!(
                "inode {ino}: records inode number {}",
                be64(buf, 0x98)
            )));
        }
        if uuid_at(buf, 0xA0) != sb.meta_uuid {
            return Err(corrupt(format_args!(
                "inode {ino}: filesystem UUID mismatch"
            )));
        }
    } else if version != 1 && version != 2 {
        return Err(corrupt(format_args!(
            "inode {ino}: version {version} on a v4 filesystem"
        )));
    }

    let mode = be16(buf, 2);
    if mode == 0 {
        return Err(corrupt(format_args!(
            "inode {ino} is not in use (a directory entry points to a free inode)"
        )));
    }
    let ftype = mode & S_IFMT;
    let format = u8_at(buf, 5);
    let format_ok = match ftype {
        S_IFREG => matches!(format, FMT_EXTENTS | FMT_BTREE),
        S_IFDIR => matches!(format, FMT_LOCAL | FMT_EXTENTS | FMT_BTREE),
        S_IFLNK => matches!(format, FMT_LOCAL | FMT_EXTENTS),
        S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK => format == FMT_DEV,
        _ => {
            return Err(corrupt(format_args!(
                "inode {ino}: bad file type in mode {mode:#o}"
            )));
        }
    };
    if !format_ok {
        return Err(corrupt(format_args!(
            "inode {ino}: data fork format {format} is invalid for mode {mode:#o}"
        )));
    }

    let flags2 = if v3 { be64(buf, 0x78) } else { 0 };
    let bigtime = v3 && flags2 & DIFLAG2_BIGTIME != 0;
    let size = be64(buf, 0x38);
    if size > i64::MAX as u64 {
        return Err(corrupt(format_args!("inode {ino}: negative size")));
    }
    let nextents = if v3 && flags2 & DIFLAG2_NREXT64 != 0 {
        be64(buf, 0x18)
    } else {
        u64::from(be32(buf, 0x4C))
    };

    let core = if v3 { CORE_V3 } else { CORE_V2 };
    let literal = isize
        .checked_sub(core)
        .ok_or_else(|| corrupt(format_args!("inode {ino}: inode smaller than its core")))?;
    let forkoff = usize::from(u8_at(buf, 0x52)) * 8;
    let dsize = if forkoff == 0 { literal } else { forkoff };
    if dsize > literal {
        return Err(corrupt(format_args!(
            "inode {ino}: attribute fork offset {forkoff} is past the inode"
        )));
    }
    let fork = buf
        .get(core..core + dsize)
        .ok_or_else(|| corrupt(format_args!("inode {ino}: truncated data fork")))?
        .to_vec();

    match format {
        FMT_EXTENTS if nextents > (dsize / 16) as u64 => {
            return Err(corrupt(format_args!(
                "inode {ino}: {nextents} extents do not fit in the inode"
            )));
        }
        FMT_LOCAL if size > dsize as u64 => {
            return Err(corrupt(format_args!(
                "inode {ino}: inline data of {size} bytes does not fit in the inode"
            )));
        }
        _ => {}
    }

    Ok(Inode {
        ino,
        version,
        mode,
        format,
        uid: be32(buf, 0x08),
        gid: be32(buf, 0x0C),
        nlink: if version == 1 {
            u32::from(be16(buf, 0x06))
        } else {
            be32(buf, 0x10)
        },
        size,
        nblocks: be64(buf, 0x40),
        nextents,
        atime: timestamp(buf, 0x20, bigtime),
        mtime: timestamp(buf, 0x28, bigtime),
        ctime: timestamp(buf, 0x30, bigtime),
        crtime: v3.then(|| timestamp(buf, 0x90, bigtime)),
        flags: be16(buf, 0x5A),
        flags2,
        fork,
    })
}
