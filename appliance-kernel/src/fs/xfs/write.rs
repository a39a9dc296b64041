//! The XFS writer: geometry and feature checks for read-write mounts, the context every
//! change runs in ([`Ctx`]: the superblock, the device, the open transaction, the
//! clock), and commit.
//!
//! Each `FileSystem` call that changes something is one transaction: its metadata
//! changes collect in a [`Tx`], and on success the transaction is logged through the
//! filesystem's journal and then written in place ([`super::journal`] explains what a
//! crash at any point leaves). On failure the transaction is dropped and the filesystem
//! is exactly as before (file data written to newly allocated blocks is left in what is
//! still free space).

use super::io::Io;
use super::journal::Journal;
use super::ondisk::sb::{
    INCOMPAT_BIGTIME, INCOMPAT_NREXT64, INCOMPAT_PARENT, INCOMPAT_SPINODES, RO_COMPAT_FINOBT,
    RO_COMPAT_INOBTCNT, RO_COMPAT_REFLINK, RO_COMPAT_RMAPBT, Superblock,
};
use super::ondisk::{be16, be32, unsupported};
use super::trans::Tx;
use crate::fs::FsResult;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// ro_compat features this writer maintains.
const RO_COMPAT_KNOWN: u32 =
    RO_COMPAT_FINOBT | RO_COMPAT_RMAPBT | RO_COMPAT_REFLINK | RO_COMPAT_INOBTCNT;
/// `sb_qflags` accounting bits (user, project, group).
const QUOTA_ACCT: u16 = 0x0001 | 0x0010 | 0x0040;
/// features2: version 2 extended attributes.
const FEAT2_ATTR2: u32 = 0x0008;

/// The filesystem geometry and features the writer works with.
#[derive(Debug, Clone)]
pub struct Geo {
    pub v5: bool,
    pub bs: u32,
    pub blog: u32,
    pub sect: u32,
    pub isize: u32,
    pub inopb_log: u32,
    pub agcount: u32,
    pub agblklog: u32,
    /// Directory block size in bytes and in filesystem blocks.
    pub dirblk: u32,
    pub dir_fsbs: u32,
    /// Inode chunk alignment (blocks) and sparse chunk alignment.
    pub inoalign: u32,
    pub spino_align: u32,
    pub finobt: bool,
    pub rmapbt: bool,
    pub reflink: bool,
    pub inobtcount: bool,
    pub spinodes: bool,
    pub bigtime: bool,
    pub nrext64: bool,
    pub ftype: bool,
    pub ascii_ci: bool,
    pub attr2: bool,
    /// The UUID stamped into v5 metadata.
    pub uuid: [u8; 16],
    /// Most inodes the filesystem may hold (imaxpct).
    pub maxicount: u64,
    /// Blocks of one 64-inode chunk.
    pub chunk_blocks: u32,
    /// Inode core size and literal area.
    pub core: usize,
    pub lit: usize,
}

impl Geo {
    /// Refuses, for a read-write mount, what this writer does not maintain.
    pub fn check_writable(sb: &Superblock, raw: &[u8]) -> FsResult<()> {
        let v5 = sb.version == 5;
        if sb.rblocks != 0 {
            return Err(unsupported("writing filesystems with a realtime device"));
        }
        if be16(raw, 0xB0) & QUOTA_ACCT != 0 {
            return Err(unsupported("writing filesystems with quota accounting"));
        }
        if v5 && sb.log_incompat != 0 {
            return Err(unsupported(format_args!(
                "writing with log-incompatible features {:#x} set",
                sb.log_incompat
            )));
        }
        if v5 && sb.ro_compat & !RO_COMPAT_KNOWN != 0 {
            return Err(unsupported(format_args!(
                "writing with read-only-compatible features {:#x}",
                sb.ro_compat & !RO_COMPAT_KNOWN
            )));
        }
        if sb.incompat & INCOMPAT_PARENT != 0 {
            return Err(unsupported("writing filesystems with parent pointers"));
        }
        if !v5 && !sb.nlink_v2 {
            return Err(unsupported("writing version 1 inodes (v4 without nlink)"));
        }
        if sb.inopb_log > 6 {
            return Err(unsupported("writing with more than 64 inodes per block"));
        }
        Ok(())
    }

    /// The geometry of `sb` (`raw`: the superblock sector, for fields the reader does
    /// not decode).
    pub fn new(sb: &Superblock, raw: &[u8]) -> Geo {
        let v5 = sb.version == 5;
        let inopb_log = sb.inopb_log.min(6);
        let inoalign = be32(raw, 0xB4);
        let spino_align = if v5 { be32(raw, 0xE4) } else { 0 };
        let chunk_blocks = 64u32 >> inopb_log;
        let core = if v5 { 176 } else { 100 };
        let dblocks = sb.dblocks;
        let imax = u64::from(sb.imax_pct);
        let maxicount = if imax == 0 {
            u64::MAX
        } else {
            let blocks = dblocks / 100 * imax + dblocks % 100 * imax / 100;
            (blocks / u64::from(chunk_blocks) * u64::from(chunk_blocks)) << inopb_log
        };
        Geo {
            v5,
            bs: sb.block_size,
            blog: sb.block_log,
            sect: sb.sect_size,
            isize: sb.inode_size,
            inopb_log,
            agcount: sb.ag_count,
            agblklog: sb.agblk_log,
            dirblk: sb.dir_blk_size(),
            dir_fsbs: 1 << sb.dir_blk_log,
            inoalign: inoalign.max(1),
            spino_align,
            finobt: v5 && sb.ro_compat & RO_COMPAT_FINOBT != 0,
            rmapbt: v5 && sb.ro_compat & RO_COMPAT_RMAPBT != 0,
            reflink: v5 && sb.ro_compat & RO_COMPAT_REFLINK != 0,
            inobtcount: v5 && sb.ro_compat & RO_COMPAT_INOBTCNT != 0,
            spinodes: v5 && sb.incompat & INCOMPAT_SPINODES != 0,
            bigtime: v5 && sb.incompat & INCOMPAT_BIGTIME != 0,
            nrext64: v5 && sb.incompat & INCOMPAT_NREXT64 != 0,
            ftype: sb.ftype,
            ascii_ci: sb.ascii_ci,
            attr2: v5 || sb.features2 & FEAT2_ATTR2 != 0,
            uuid: sb.meta_uuid,
            maxicount,
            chunk_blocks: chunk_blocks.max(1),
            core,
            lit: (sb.inode_size as usize).saturating_sub(core),
        }
    }
}

/// A read-write mount's writer state.
pub struct Writer {
    pub g: Geo,
    pub journal: Journal,
    pub tx: Tx,
    /// Seconds since the epoch stamped on changes (the host's clock).
    pub now: i64,
    /// Seed for new inodes' generation numbers.
    pub igen: u32,
    /// A commit failed half-way: the device state is only known after a remount.
    pub failed: bool,
}

/// What a change runs with.
pub struct Ctx<'a> {
    pub sb: &'a Superblock,
    pub g: &'a Geo,
    pub io: &'a mut Io,
    pub tx: &'a mut Tx,
    pub now: i64,
    pub igen: &'a mut u32,
    /// Btree blocks freed while the free list was full (freed after the change).
    pub agfl_defer: Vec<(u32, u32)>,
}

impl Writer {
    pub fn open(io: &mut Io, sb: &Superblock) -> FsResult<Writer> {
        let raw = io.read_vec(0, sb.sect_size as usize)?;
        Geo::check_writable(sb, &raw)?;
        let g = Geo::new(sb, &raw);
        let journal = Journal::open(io, sb, true)?;
        let igen = super::crc::update(0x1234_5678, &raw) ^ (journal.next_lsn() as u32);
        Ok(Writer {
            g,
            journal,
            tx: Tx::default(),
            now: 0,
            igen,
            failed: false,
        })
    }

    /// Logs and writes the open transaction.
    pub fn commit(&mut self, io: &mut Io) -> FsResult<()> {
        if self.tx.is_empty() {
            return Ok(());
        }
        let lsn = self.journal.next_lsn();
        let items = self.tx.take_items(self.g.v5, lsn, self.g.isize as usize)?;
        if items.is_empty() {
            return Ok(());
        }
        if !self.journal.fits(&items) {
            return Err(Error::new(
                ErrorKind::NoSpace,
                "xfs: the change is too large for the filesystem's log",
            ));
        }
        self.failed = true;
        // Earlier in-place writes and this change's file data first.
        io.flush()?;
        self.journal.log(io, &items)?;
        // In place, neighbouring buffers (AG headers, adjacent btree blocks) in one
        // request each.
        let mut i = 0;
        while let Some(first) = items.get(i) {
            let mut end = first.off + first.data.len() as u64;
            let mut j = i + 1;
            while let Some(next) = items.get(j) {
                if next.off != end || end - first.off >= 1 << 20 {
                    break;
                }
                end += next.data.len() as u64;
                j += 1;
            }
            if j == i + 1 {
                io.write(first.off, &first.data)?;
            } else {
                let mut run = Vec::with_capacity((end - first.off) as usize);
                for it in items.get(i..j).unwrap_or(&[]) {
                    run.extend_from_slice(&it.data);
                }
                io.write_run(
                    first.off,
                    &run,
                    items
                        .get(i..j)
                        .unwrap_or(&[])
                        .iter()
                        .map(|it| it.data.len()),
                )?;
            }
            i = j;
        }
        self.failed = false;
        Ok(())
    }

    /// Makes everything durable and marks the log clean.
    pub fn sync(&mut self, io: &mut Io) -> FsResult<()> {
        self.commit(io)?;
        if self.journal.dirty {
            io.flush()?;
            self.journal.unmount(io)?;
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// A fresh inode generation number.
    pub fn next_gen(&mut self) -> u32 {
        let mut x = *self.igen;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *self.igen = x;
        x
    }
}
