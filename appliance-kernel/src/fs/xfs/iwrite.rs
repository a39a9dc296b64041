//! Inodes, for writing: finding an inode in its block buffer, the core fields (v2 and
//! v3 layouts, 64-bit extent counters, bigtime timestamps), the fork areas, and
//! formatting new and freed inodes.

use super::ondisk::inode::{self as dinode, CRC_OFF, MAGIC};
use super::ondisk::{be16, be32, be64, corrupt, put_bytes, put8, put16, put32, put64, u8_at};
use super::trans::Kind;
use super::write::{Ctx, Geo};
use crate::fs::FsResult;
use alloc::vec::Vec;

pub const DI_MODE: usize = 0x02;
pub const DI_VERSION: usize = 0x04;
pub const DI_FORMAT: usize = 0x05;
pub const DI_UID: usize = 0x08;
pub const DI_GID: usize = 0x0C;
pub const DI_NLINK: usize = 0x10;
pub const DI_BIG_NEXTENTS: usize = 0x18;
pub const DI_ATIME: usize = 0x20;
pub const DI_MTIME: usize = 0x28;
pub const DI_CTIME: usize = 0x30;
pub const DI_SIZE: usize = 0x38;
pub const DI_NBLOCKS: usize = 0x40;
pub const DI_NEXTENTS: usize = 0x4C;
pub const DI_ANEXTENTS: usize = 0x50;
pub const DI_FORKOFF: usize = 0x52;
pub const DI_AFORMAT: usize = 0x53;
pub const DI_GEN: usize = 0x5C;
pub const DI_NEXT_UNLINKED: usize = 0x60;
pub const DI_CHANGECOUNT: usize = 0x68;
pub const DI_FLAGS2: usize = 0x78;
pub const DI_CRTIME: usize = 0x90;
pub const DI_INO: usize = 0x98;
pub const DI_UUID: usize = 0xA0;

/// `di_flags2` bits.
pub const DIFLAG2_REFLINK: u64 = 0x2;
pub const DIFLAG2_BIGTIME: u64 = dinode::DIFLAG2_BIGTIME;
pub const DIFLAG2_NREXT64: u64 = dinode::DIFLAG2_NREXT64;

/// End of the unlinked list.
pub const NULLAGINO: u32 = u32::MAX;

/// Which timestamps to set.
#[derive(Clone, Copy)]
pub struct Times {
    pub atime: Option<i64>,
    pub mtime: Option<i64>,
    pub ctime: Option<i64>,
}

impl Times {
    /// mtime and ctime (content changed).
    pub fn modified(now: i64) -> Times {
        Times {
            atime: None,
            mtime: Some(now),
            ctime: Some(now),
        }
    }
    /// ctime only (attributes changed).
    pub fn changed(now: i64) -> Times {
        Times {
            atime: None,
            mtime: None,
            ctime: Some(now),
        }
    }
}

/// Bigtime timestamps count nanoseconds from 1901-12-13T20:45:52Z.
const BIGTIME_OFFSET: i64 = 1 << 31;

pub fn bigtime(g: &Geo, raw: &[u8]) -> bool {
    g.v5 && be64(raw, DI_FLAGS2) & DIFLAG2_BIGTIME != 0
}

pub fn nrext64(g: &Geo, raw: &[u8]) -> bool {
    g.v5 && be64(raw, DI_FLAGS2) & DIFLAG2_NREXT64 != 0
}

/// Stores `sec` in the timestamp at `off` (clamped to what the format holds).
pub fn set_time(g: &Geo, raw: &mut [u8], off: usize, sec: i64) {
    if bigtime(g, raw) {
        let t = sec.clamp(
            -BIGTIME_OFFSET,
            (u64::MAX / 1_000_000_000) as i64 - BIGTIME_OFFSET,
        );
        put64(raw, off, (t + BIGTIME_OFFSET) as u64 * 1_000_000_000);
    } else {
        let t = sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        put32(raw, off, t as u32);
        put32(raw, off + 4, 0);
    }
}

/// Sets the timestamps in `t` and counts a change (v3).
pub fn touch(g: &Geo, raw: &mut [u8], t: Times) {
    if let Some(s) = t.atime {
        set_time(g, raw, DI_ATIME, s);
    }
    if let Some(s) = t.mtime {
        set_time(g, raw, DI_MTIME, s);
    }
    if let Some(s) = t.ctime {
        set_time(g, raw, DI_CTIME, s);
        if g.v5 {
            put64(
                raw,
                DI_CHANGECOUNT,
                be64(raw, DI_CHANGECOUNT).wrapping_add(1),
            );
        }
    }
}

pub fn mode(raw: &[u8]) -> u16 {
    be16(raw, DI_MODE)
}

pub fn format(raw: &[u8]) -> u8 {
    u8_at(raw, DI_FORMAT)
}

pub fn aformat(raw: &[u8]) -> u8 {
    u8_at(raw, DI_AFORMAT)
}

pub fn nlink(raw: &[u8]) -> u32 {
    be32(raw, DI_NLINK)
}

pub fn set_nlink(raw: &mut [u8], n: u32) {
    put32(raw, DI_NLINK, n);
}

pub fn size(raw: &[u8]) -> u64 {
    be64(raw, DI_SIZE)
}

pub fn set_size(raw: &mut [u8], s: u64) {
    put64(raw, DI_SIZE, s);
}

pub fn nblocks(raw: &[u8]) -> u64 {
    be64(raw, DI_NBLOCKS)
}

pub fn add_nblocks(raw: &mut [u8], delta: i64) -> FsResult<()> {
    let v = nblocks(raw)
        .checked_add_signed(delta)
        .ok_or_else(|| corrupt("inode: block count out of range"))?;
    put64(raw, DI_NBLOCKS, v);
    Ok(())
}

pub fn nextents(g: &Geo, raw: &[u8]) -> u64 {
    if nrext64(g, raw) {
        be64(raw, DI_BIG_NEXTENTS)
    } else {
        u64::from(be32(raw, DI_NEXTENTS))
    }
}

pub fn set_nextents(g: &Geo, raw: &mut [u8], n: u64) -> FsResult<()> {
    if nrext64(g, raw) {
        put64(raw, DI_BIG_NEXTENTS, n);
    } else {
        let n = u32::try_from(n).map_err(|_| {
            wire::Error::new(
                wire::ErrorKind::TooLarge,
                "xfs: too many extents for this inode",
            )
        })?;
        put32(raw, DI_NEXTENTS, n);
    }
    Ok(())
}

pub fn anextents(g: &Geo, raw: &[u8]) -> u64 {
    if nrext64(g, raw) {
        u64::from(be32(raw, DI_NEXTENTS))
    } else {
        u64::from(be16(raw, DI_ANEXTENTS))
    }
}

pub fn set_anextents(g: &Geo, raw: &mut [u8], n: u64) -> FsResult<()> {
    let too_many =
        || wire::Error::new(wire::ErrorKind::TooLarge, "xfs: too many attribute extents");
    if nrext64(g, raw) {
        put32(raw, DI_NEXTENTS, u32::try_from(n).map_err(|_| too_many())?);
    } else {
        put16(raw, DI_ANEXTENTS, u16::try_from(n).map_err(|_| too_many())?);
    }
    Ok(())
}

/// Bytes of the attribute fork offset (0: no attribute fork).
pub fn forkoff(raw: &[u8]) -> usize {
    usize::from(u8_at(raw, DI_FORKOFF)) * 8
}

/// Size of the data fork area.
pub fn dsize(g: &Geo, raw: &[u8]) -> usize {
    match forkoff(raw) {
        0 => g.lit,
        f => f.min(g.lit),
    }
}

pub fn dfork<'r>(g: &Geo, raw: &'r [u8]) -> &'r [u8] {
    let d = dsize(g, raw);
    raw.get(g.core..g.core + d).unwrap_or(&[])
}

pub fn dfork_mut<'r>(g: &Geo, raw: &'r mut [u8]) -> &'r mut [u8] {
    let d = dsize(g, raw);
    raw.get_mut(g.core..g.core + d).unwrap_or_default()
}

pub fn afork<'r>(g: &Geo, raw: &'r [u8]) -> &'r [u8] {
    match forkoff(raw) {
        0 => &[],
        f => raw.get(g.core + f..g.core + g.lit).unwrap_or(&[]),
    }
}

pub fn afork_mut<'r>(g: &Geo, raw: &'r mut [u8]) -> &'r mut [u8] {
    match forkoff(raw) {
        0 => &mut [],
        f => raw.get_mut(g.core + f..g.core + g.lit).unwrap_or_default(),
    }
}

/// Formats a free inode (a new chunk's, or one just freed): magic, version,
/// generation, an empty unlinked pointer and (v5) its identity.
pub fn format_free(g: &Geo, raw: &mut [u8], ino: u64, igen: u32) {
    raw.fill(0);
    put16(raw, 0, MAGIC);
    put8(raw, DI_VERSION, if g.v5 { 3 } else { 2 });
    put32(raw, DI_GEN, igen);
    put32(raw, DI_NEXT_UNLINKED, NULLAGINO);
    if g.v5 {
        put64(raw, DI_INO, ino);
        put_bytes(raw, DI_UUID, &g.uuid);
    }
}

/// Formats a new in-use inode of `mode` (type and permissions).
pub fn format_new(g: &Geo, raw: &mut [u8], ino: u64, mode: u16, uid: u32, gid: u32, now: i64) {
    let igen = be32(raw, DI_GEN);
    format_free(g, raw, ino, igen);
    put16(raw, DI_MODE, mode);
    let fmt = match mode & dinode::S_IFMT {
        dinode::S_IFDIR | dinode::S_IFLNK => dinode::FMT_LOCAL,
        dinode::S_IFREG => dinode::FMT_EXTENTS,
        _ => dinode::FMT_DEV,
    };
    put8(raw, DI_FORMAT, fmt);
    put32(raw, DI_UID, uid);
    put32(raw, DI_GID, gid);
    put32(raw, DI_NLINK, 1);
    put8(raw, DI_AFORMAT, dinode::FMT_EXTENTS);
    if g.v5 {
        let mut f2 = 0;
        if g.bigtime {
            f2 |= DIFLAG2_BIGTIME;
        }
        if g.nrext64 {
            f2 |= DIFLAG2_NREXT64;
        }
        put64(raw, DI_FLAGS2, f2);
        set_time(g, raw, DI_CRTIME, now);
    }
    set_time(g, raw, DI_ATIME, now);
    set_time(g, raw, DI_MTIME, now);
    set_time(g, raw, DI_CTIME, now);
}

impl Ctx<'_> {
    /// (byte offset of the block holding inode `ino`, byte offset within it).
    fn ino_block(&self, ino: u64) -> FsResult<(u64, usize)> {
        let at = self
            .sb
            .ino_to_byte(ino)
            .ok_or_else(|| corrupt(format_args!("inode number {ino} is out of range")))?;
        let bs = u64::from(self.g.bs);
        let agno = (ino >> self.sb.agino_log()) as u32;
        let ag = self.sb.ag_byte(agno);
        let blk = ag + (at - ag) / bs * bs;
        Ok((blk, (at - blk) as usize))
    }

    /// The bytes of inode `ino` (in use or free), checked on first use in a transaction.
    pub fn inode(&mut self, ino: u64) -> FsResult<&mut [u8]> {
        let (blk, within) = self.ino_block(ino)?;
        let bs = self.g.bs as usize;
        let isize = self.g.isize as usize;
        let check = !self.tx.inode_ok.contains(&ino);
        let b = self.tx.get(self.io, blk, bs, Kind::Inodes)?;
        let raw = b
            .get_mut(within..within + isize)
            .ok_or_else(|| corrupt(format_args!("inode {ino}: outside its block")))?;
        if check {
            if be16(raw, 0) != MAGIC {
                return Err(corrupt(format_args!("inode {ino}: bad magic")));
            }
            if self.g.v5 {
                if !super::crc::verify(raw, CRC_OFF) {
                    return Err(corrupt(format_args!("inode {ino}: bad CRC")));
                }
                if be64(raw, DI_INO) != ino {
                    return Err(corrupt(format_args!("inode {ino}: wrong inode number")));
                }
            }
            if mode(raw) != 0 {
                dinode::parse(self.sb, ino, raw)?;
            }
            self.tx.inode_ok.insert(ino);
        }
        let b = self.tx.get(self.io, blk, bs, Kind::Inodes)?;
        b.get_mut(within..within + isize)
            .ok_or_else(|| corrupt(format_args!("inode {ino}: outside its block")))
    }

    /// A copy of inode `ino`'s bytes.
    pub fn inode_copy(&mut self, ino: u64) -> FsResult<Vec<u8>> {
        Ok(self.inode(ino)?.to_vec())
    }

    /// Formats the inodes of a new chunk's blocks `agbno..+blocks` of `agno` (new
    /// buffers: their old contents are never read).
    pub fn init_inode_blocks(&mut self, agno: u32, agbno: u32, blocks: u32) -> FsResult<()> {
        let bs = self.g.bs as usize;
        let isize = self.g.isize as usize;
        let per = bs / isize;
        for b in 0..blocks {
            let off = self.ag_byte(agno, agbno + b);
            let first_agino = u64::from(agbno + b) << self.g.inopb_log;
            let base = u64::from(agno) << self.sb.agino_log();
            let gens: Vec<u32> = (0..per).map(|_| self.next_gen()).collect();
            let g = self.g;
            let buf = self.tx.new_buf(off, bs, Kind::Inodes)?;
            for (i, raw) in buf.chunks_mut(isize).enumerate() {
                let ino = base | (first_agino + i as u64);
                format_free(g, raw, ino, gens.get(i).copied().unwrap_or(1));
            }
            for i in 0..per {
                self.tx.inode_ok.insert(base | (first_agino + i as u64));
            }
        }
        Ok(())
    }
}
