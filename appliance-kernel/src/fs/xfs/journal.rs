//! The XFS writer's journal: skiff writes through the filesystem's own internal log,
//! in the format Linux replays.
//!
//! Each transaction goes to the log as one XFS checkpoint (a start operation, a
//! transaction header, one buffer item per changed metadata buffer with the changed
//! 128-byte chunks, a commit operation) in log records of at most 32 KiB of data, each
//! record's tail LSN pointing at the transaction's first record. Only once the records
//! are on stable storage are the buffers written in place, and the next transaction's
//! records are only written once those in-place writes are stable too (a flush before
//! each transaction). So at any moment the log holds at most one transaction not yet
//! known to be in place, and:
//!
//! - killed while the records are being written: the commit operation is missing or the
//!   last record is torn; recovery (Linux's or skiff's) discards it: the change is lost;
//! - killed after the records, during the in-place writes: the log holds a committed
//!   transaction that recovery replays: the change survives;
//! - `sync`/unmount writes an unmount record, which marks the log clean.
//!
//! A read-write mount finding a log skiff can replay (buffer items only: what skiff
//! writes) replays it and writes an unmount record; any other dirty log (Linux's inode
//! items, intents, ...) is refused. A read-only mount accepts a dirty log whose
//! buffers are all already in place (every logged byte equals the disk).

use super::io::Io;
use super::logcheck::{self, LogState};
use super::ondisk::log::{
    BBSIZE, HEADER_CYCLE_SIZE, HEADER_MAGIC, RecHeader, data_blocks, header_blocks,
    parse_rec_header, record_crc,
};
use super::ondisk::sb::Superblock;
use super::ondisk::{be32, corrupt, unsupported};
use super::trans::{CHUNK, Item};
use crate::fs::FsResult;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Data bytes per log record we write (one header block: `h_size`).
const REC_DATA: usize = HEADER_CYCLE_SIZE;
/// Largest region of a buffer logged in one operation (so records fill well).
const MAX_REGION: usize = 8192;
const CLIENT_TRANS: u8 = 0x69;
const CLIENT_LOG: u8 = 0xAA;
const OP_START: u8 = 0x01;
const OP_COMMIT: u8 = 0x02;
const OP_CONTINUE: u8 = 0x04;
const OP_WAS_CONT: u8 = 0x08;
const OP_UNMOUNT: u8 = 0x20;
const TRANS_MAGIC: u32 = 0x5452_414E;
const TRANS_CHECKPOINT: u32 = 40;
const LI_BUF: u16 = 0x123C;
const BLF_CANCEL: u16 = 0x2;
const BLFT_SHIFT: u16 = 11;
const UNMOUNT_TYPE: u16 = 0x556E;
/// `XLOG_FMT_LINUX_LE`: item payloads in little-endian order.
const FMT_LINUX_LE: u32 = 1;
/// Operations one replayed log may hold at most.
const MAX_REPLAY_OPS: usize = 1 << 20;

/// Where the next log record goes.
#[derive(Debug, Clone)]
pub struct Journal {
    /// Byte offset of the log on the device.
    start: u64,
    /// Basic blocks in the log.
    n: u64,
    head: u64,
    cycle: u32,
    /// Block of the last record header written (for `h_prev_block`).
    prev: u64,
    uuid: [u8; 16],
    tid: u32,
    /// Transactions written since the last unmount record.
    pub dirty: bool,
}

/// An operation to log: flags, client, payload.
struct Op {
    flags: u8,
    client: u8,
    data: Vec<u8>,
}

fn lsn_of(cycle: u32, blk: u64) -> u64 {
    (u64::from(cycle) << 32) | (blk & 0xFFFF_FFFF)
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off + 8) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn le16(b: &[u8], off: usize) -> u16 {
    super::ondisk::bytes(b, off).map_or(0, u16::from_le_bytes)
}

fn le32(b: &[u8], off: usize) -> u32 {
    super::ondisk::bytes(b, off).map_or(0, u32::from_le_bytes)
}

fn le64(b: &[u8], off: usize) -> u64 {
    super::ondisk::bytes(b, off).map_or(0, u64::from_le_bytes)
}

/// A logged buffer: 512-byte address, length in basic blocks, bitmap, regions.
type LoggedBuf = (u64, u64, Vec<u32>, Vec<Vec<u8>>);

/// A buffer item being read back: as [`LoggedBuf`] with the regions it announced.
type PartialBuf = (u64, u64, Vec<u32>, usize, Vec<Vec<u8>>);

/// A committed transaction read back from the log: its buffer items.
struct Replay {
    bufs: Vec<LoggedBuf>,
}

impl Journal {
    /// Finds the head of the log of `sb` and checks it is clean; a dirty log skiff can
    /// replay is replayed when `writable` (or accepted, unchanged, when everything in
    /// it is already in place).
    pub fn open(io: &mut Io, sb: &Superblock, writable: bool) -> FsResult<Journal> {
        let start = sb
            .fsb_to_byte(sb.log_start)
            .ok_or_else(|| corrupt("superblock: bad log start"))?;
        let n = (u64::from(sb.log_blocks) << sb.block_log) / BBSIZE as u64;
        let (state, last) = {
            let read = |bb: u64, buf: &mut [u8]| io.read_into(start + bb * 512, buf);
            logcheck::Log::new(read, n, sb.logv2).scan()?
        };
        let Some((head, rblk, h)) = last else {
            return Err(unsupported(
                "the log is zeroed (after xfs_repair -L?): mount it with Linux once before writing",
            ));
        };
        let span = u64::from(header_blocks(&h, sb.logv2)) + u64::from(data_blocks(&h));
        let mut j = Journal {
            start,
            n,
            head,
            cycle: h.cycle.wrapping_add(((rblk + span) / n) as u32),
            prev: rblk,
            uuid: sb.uuid,
            tid: 0x5AFF_0000 ^ h.cycle.rotate_left(16) ^ (head as u32),
            dirty: false,
        };
        if let LogState::Dirty(why) = state {
            j.replay(io, sb, writable, why, &h)?;
        }
        Ok(j)
    }

    /// The LSN the next transaction will carry (its first record's).
    pub fn next_lsn(&self) -> u64 {
        lsn_of(self.cycle, self.head)
    }

    /// Bytes of log space a transaction of `items` takes at most (for the caller's size
    /// check before committing).
    pub fn fits(&self, items: &[Item]) -> bool {
        let mut bytes = 4 * 12 + 16usize;
        for it in items {
            let regions: usize = it.map.iter().map(|w| w.count_ones() as usize).sum();
            bytes += 32 + it.map.len() * 4 + regions * CHUNK + regions * 12;
        }
        let records = bytes.div_ceil(REC_DATA - 2 * MAX_REGION).max(1);
        let blocks = (bytes / BBSIZE + 2 * records) as u64;
        // Leave room for an unmount record and never lap the log within a transaction.
        blocks * 2 + 16 < self.n
    }

    fn buf_ops(items: &[Item]) -> FsResult<Vec<Op>> {
        let mut ops = Vec::new();
        for it in items {
            let len_bb = it.data.len() / BBSIZE;
            let blf_len = u16::try_from(len_bb)
                .ok()
                .filter(|_| it.data.len() % BBSIZE == 0 && len_bb > 0)
                .ok_or_else(|| Error::new(ErrorKind::Internal, "xfs: odd buffer size"))?;
            // Regions: runs of dirty chunks, cut to MAX_REGION.
            let mut regions: Vec<Vec<u8>> = Vec::new();
            let chunks = it.data.len() / CHUNK;
            let dirty = |i: usize| it.map.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0);
            let mut i = 0;
            while i < chunks {
                if !dirty(i) {
                    i += 1;
                    continue;
                }
                let from = i;
                while i < chunks && dirty(i) && (i - from) * CHUNK < MAX_REGION {
                    i += 1;
                }
                regions.push(it.data.get(from * CHUNK..i * CHUNK).unwrap_or(&[]).to_vec());
            }
            if regions.is_empty() {
                continue;
            }
            let mut f = Vec::with_capacity(20 + 4 * it.map.len());
            f.extend_from_slice(&LI_BUF.to_le_bytes());
            let size = u16::try_from(regions.len() + 1)
                .map_err(|_| Error::new(ErrorKind::Internal, "xfs: too many regions"))?;
            f.extend_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&(it.blft << BLFT_SHIFT).to_le_bytes());
            f.extend_from_slice(&blf_len.to_le_bytes());
            f.extend_from_slice(&(it.off / BBSIZE as u64).to_le_bytes());
            f.extend_from_slice(&(it.map.len() as u32).to_le_bytes());
            for w in &it.map {
                f.extend_from_slice(&w.to_le_bytes());
            }
            ops.push(Op {
                flags: 0,
                client: CLIENT_TRANS,
                data: f,
            });
            for r in regions {
                ops.push(Op {
                    flags: 0,
                    client: CLIENT_TRANS,
                    data: r,
                });
            }
        }
        Ok(ops)
    }

    /// Formats `ops` as log records from the head on: (the bytes, new head, new cycle,
    /// last record block).
    fn format(&self, tid: u32, ops: &[Op]) -> FsResult<(Vec<u8>, u64, u32, u64)> {
        let n = self.n;
        let mut out = Vec::new();
        let mut blk = self.head;
        let mut cycle = self.cycle;
        let mut prev = self.prev;
        let tail = lsn_of(self.cycle, self.head);
        let mut i = 0;
        while i < ops.len() {
            let mut data = Vec::with_capacity(REC_DATA);
            let mut count = 0u32;
            while let Some(op) = ops.get(i) {
                let need = 12 + op.data.len();
                if count > 0 && data.len() + need > REC_DATA {
                    break;
                }
                if need > REC_DATA {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        "xfs: log operation too big",
                    ));
                }
                data.extend_from_slice(&tid.to_be_bytes());
                data.extend_from_slice(&(op.data.len() as u32).to_be_bytes());
                data.push(op.client);
                data.push(op.flags);
                data.extend_from_slice(&[0, 0]);
                data.extend_from_slice(&op.data);
                count += 1;
                i += 1;
            }
            data.resize(data.len().div_ceil(BBSIZE) * BBSIZE, 0);
            let dblks = data.len() / BBSIZE;
            let mut hdr = vec![0u8; BBSIZE];
            // Stamp the cycle into every data block, keeping the words it replaces.
            for j in 0..dblks {
                let pos = blk + 1 + j as u64;
                let c = if pos >= n {
                    cycle.wrapping_add(1)
                } else {
                    cycle
                };
                let word = be32(&data, j * BBSIZE);
                put32(&mut hdr, 44 + 4 * j, word);
                put32(&mut data, j * BBSIZE, c);
            }
            put32(&mut hdr, 0, HEADER_MAGIC);
            put32(&mut hdr, 4, cycle);
            put32(&mut hdr, 8, 2);
            put32(&mut hdr, 12, data.len() as u32);
            put64(&mut hdr, 16, lsn_of(cycle, blk));
            put64(&mut hdr, 24, tail);
            put32(&mut hdr, 36, prev as u32);
            put32(&mut hdr, 40, count);
            put32(&mut hdr, 300, FMT_LINUX_LE);
            if let Some(s) = hdr.get_mut(304..320) {
                s.copy_from_slice(&self.uuid);
            }
            put32(&mut hdr, 320, REC_DATA as u32);
            let c = record_crc(&hdr, &data);
            if let Some(s) = hdr.get_mut(32..36) {
                s.copy_from_slice(&c.to_le_bytes());
            }
            out.extend_from_slice(&hdr);
            out.extend_from_slice(&data);
            prev = blk;
            blk += 1 + dblks as u64;
            if blk >= n {
                blk -= n;
                cycle = cycle.wrapping_add(1);
            }
        }
        Ok((out, blk, cycle, prev))
    }

    /// Writes `bytes` (records formatted at the head) to the log: the part up to the
    /// physical end first, then the part wrapped to the start, so a crash between the
    /// two leaves a torn record at the head rather than future blocks before it.
    fn write_at_head(&self, io: &mut Io, bytes: &[u8]) -> FsResult<()> {
        let room = ((self.n - self.head) as usize) * BBSIZE;
        let (a, b) = bytes.split_at(room.min(bytes.len()));
        io.write(self.start + self.head * BBSIZE as u64, a)?;
        if !b.is_empty() {
            io.write(self.start, b)?;
        }
        Ok(())
    }

    /// Logs the transaction of `items` (already stamped with [`Journal::next_lsn`]) and
    /// flushes the device: on return the transaction is committed.
    pub fn log(&mut self, io: &mut Io, items: &[Item]) -> FsResult<()> {
        let mut ops = Self::buf_ops(items)?;
        if ops.is_empty() {
            return Ok(());
        }
        let nitems = ops.len() as u32;
        self.tid = self.tid.wrapping_mul(0x9E37_79B1).wrapping_add(0x7F4A_7C15) | 1;
        let tid = self.tid;
        let mut th = Vec::with_capacity(16);
        th.extend_from_slice(&TRANS_MAGIC.to_le_bytes());
        th.extend_from_slice(&TRANS_CHECKPOINT.to_le_bytes());
        th.extend_from_slice(&tid.to_le_bytes());
        th.extend_from_slice(&nitems.to_le_bytes());
        let mut all = Vec::with_capacity(ops.len() + 3);
        all.push(Op {
            flags: OP_START,
            client: CLIENT_TRANS,
            data: Vec::new(),
        });
        all.push(Op {
            flags: 0,
            client: CLIENT_TRANS,
            data: th,
        });
        all.append(&mut ops);
        all.push(Op {
            flags: OP_COMMIT,
            client: CLIENT_TRANS,
            data: Vec::new(),
        });
        let (bytes, head, cycle, prev) = self.format(tid, &all)?;
        if (bytes.len() / BBSIZE) as u64 * 2 + 16 >= self.n {
            return Err(Error::new(
                ErrorKind::NoSpace,
                "xfs: the change is too large for the filesystem's log",
            ));
        }
        self.write_at_head(io, &bytes)?;
        io.flush()?;
        self.head = head;
        self.cycle = cycle;
        self.prev = prev;
        self.dirty = true;
        Ok(())
    }

    /// Writes an unmount record (the log is clean from then on) and flushes. The
    /// caller has flushed the in-place writes before.
    pub fn unmount(&mut self, io: &mut Io) -> FsResult<()> {
        let mut payload = Vec::with_capacity(8);
        payload.extend_from_slice(&UNMOUNT_TYPE.to_le_bytes());
        payload.extend_from_slice(&[0u8; 6]);
        let op = Op {
            flags: OP_UNMOUNT,
            client: CLIENT_LOG,
            data: payload,
        };
        let (bytes, head, cycle, prev) = self.format(0xB0C0_D0D0, &[op])?;
        self.write_at_head(io, &bytes)?;
        io.flush()?;
        self.head = head;
        self.cycle = cycle;
        self.prev = prev;
        self.dirty = false;
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // Replay

    /// Reads `count` basic blocks from `blk` on (wrapping).
    fn read_blocks(&self, io: &Io, blk: u64, count: u64) -> FsResult<Vec<u8>> {
        let mut out = vec![0u8; (count as usize) * BBSIZE];
        let mut done = 0u64;
        while done < count {
            let b = (blk + done) % self.n;
            let run = (count - done).min(self.n - b);
            let at = (done as usize) * BBSIZE;
            let dst = out
                .get_mut(at..at + (run as usize) * BBSIZE)
                .ok_or_else(|| corrupt("log: read out of range"))?;
            io.read_into(self.start + b * BBSIZE as u64, dst)?;
            done += run;
        }
        Ok(out)
    }

    /// The committed transactions from the tail named by `last` to the head; `Err`
    /// (`Unsupported`) when the log holds anything skiff does not replay.
    fn committed(&self, io: &Io, logv2: bool, last: &RecHeader) -> FsResult<Vec<Replay>> {
        let theirs = |why: &str| logcheck::dirty_error(why);
        let tail_blk = last.tail_lsn & 0xFFFF_FFFF;
        if tail_blk >= self.n {
            return Err(corrupt("log: tail outside the log"));
        }
        let mut blk = tail_blk;
        // Open transactions: whether their header was seen, and their items so far.
        let mut open: BTreeMap<u32, (bool, Vec<PartialBuf>)> = BTreeMap::new();
        let mut done = Vec::new();
        let mut ops_seen = 0usize;
        let mut walked = 0u64;
        while blk != self.head {
            let hb = self.read_blocks(io, blk, 1)?;
            let h = parse_rec_header(&hb)
                .ok_or_else(|| corrupt(format_args!("log: bad record header at block {blk}")))?;
            if h.uuid != self.uuid {
                return Err(corrupt("log: a record of another filesystem"));
            }
            let hblks = u64::from(header_blocks(&h, logv2));
            let dblks = u64::from(data_blocks(&h));
            let span = hblks + dblks;
            walked += span;
            if walked > self.n {
                return Err(corrupt("log: records run past the head"));
            }
            let all = self.read_blocks(io, blk, span)?;
            let hdr_bytes = (hblks as usize) * BBSIZE;
            let headers = all.get(..hdr_bytes).unwrap_or(&[]);
            let mut data = all
                .get(hdr_bytes..hdr_bytes + h.len as usize)
                .unwrap_or(&[])
                .to_vec();
            if h.crc != 0 && record_crc(headers, &data) != h.crc {
                return Err(corrupt(format_args!("log: record at block {blk}: bad CRC")));
            }
            // Put back the words the cycle stamps replaced.
            for j in 0..(dblks as usize) {
                let (hblk, slot) = (j / 64, j % 64);
                let word_at = if hblk == 0 {
                    44 + 4 * slot
                } else {
                    4 + 4 * slot
                };
                let word = be32(headers.get(hblk * BBSIZE..).unwrap_or(&[]), word_at);
                put32(&mut data, j * BBSIZE, word);
            }
            let mut pos = 0usize;
            for _ in 0..h.num_logops {
                ops_seen += 1;
                if ops_seen > MAX_REPLAY_OPS {
                    return Err(corrupt("log: too many operations"));
                }
                let tid = be32(&data, pos);
                let len = be32(&data, pos + 4) as usize;
                let client = super::ondisk::u8_at(&data, pos + 8);
                let flags = super::ondisk::u8_at(&data, pos + 9);
                let payload = pos
                    .checked_add(12)
                    .and_then(|a| Some((a, a.checked_add(len)?)))
                    .and_then(|(a, b)| data.get(a..b))
                    .ok_or_else(|| corrupt("log: operation overruns its record"))?;
                pos += 12 + len;
                if flags & OP_UNMOUNT != 0 {
                    continue;
                }
                if client != CLIENT_TRANS || flags & (OP_CONTINUE | OP_WAS_CONT) != 0 {
                    return Err(theirs("operations skiff does not replay"));
                }
                if flags & OP_START != 0 {
                    open.insert(tid, (false, Vec::new()));
                    continue;
                }
                let Some((hdr_seen, items)) = open.get_mut(&tid) else {
                    return Err(theirs("an operation of an unknown transaction"));
                };
                if flags & OP_COMMIT != 0 {
                    let (_, items) = open.remove(&tid).unwrap_or_default();
                    let mut bufs = Vec::new();
                    for (daddr, bbs, map, want, regions) in items {
                        if regions.len() != want {
                            return Err(corrupt("log: a buffer item misses regions"));
                        }
                        bufs.push((daddr, bbs, map, regions));
                    }
                    done.push(Replay { bufs });
                    continue;
                }
                if !*hdr_seen {
                    if le32(payload, 0) != TRANS_MAGIC {
                        return Err(corrupt("log: transaction without a header"));
                    }
                    *hdr_seen = true;
                    continue;
                }
                // Region of the current item, or a new item.
                if let Some(last) = items.last_mut()
                    && last.4.len() < last.3
                {
                    if payload.len() % CHUNK != 0 {
                        return Err(corrupt("log: buffer region of odd length"));
                    }
                    last.4.push(payload.to_vec());
                    continue;
                }
                if le16(payload, 0) != LI_BUF {
                    return Err(theirs("log items other than buffers"));
                }
                let size = usize::from(le16(payload, 2));
                let flags = le16(payload, 4);
                let bbs = u64::from(le16(payload, 6));
                let daddr = le64(payload, 8);
                let words = le32(payload, 16) as usize;
                if flags & BLF_CANCEL != 0 {
                    return Err(theirs("cancelled buffers"));
                }
                if size == 0 || words > 16 || bbs == 0 || payload.len() < 20 + 4 * words {
                    return Err(corrupt("log: bad buffer item"));
                }
                let map = (0..words).map(|w| le32(payload, 20 + 4 * w)).collect();
                items.push((daddr, bbs, map, size - 1, Vec::new()));
            }
            blk = (blk + span) % self.n;
        }
        Ok(done)
    }

    /// Applies one logged buffer to `disk` (the buffer's bytes as on the device).
    fn apply(disk: &mut [u8], map: &[u32], regions: &[Vec<u8>]) -> FsResult<()> {
        let chunks = disk.len() / CHUNK;
        let dirty = |i: usize| map.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0);
        let mut bit = 0usize;
        for r in regions {
            while bit < chunks && !dirty(bit) {
                bit += 1;
            }
            let mut run = 0usize;
            while bit + run < chunks && dirty(bit + run) {
                run += 1;
            }
            let n = run.min(r.len() / CHUNK);
            if n == 0 {
                return Err(corrupt("log: buffer regions do not match the bitmap"));
            }
            let dst = disk
                .get_mut(bit * CHUNK..(bit + n) * CHUNK)
                .ok_or_else(|| corrupt("log: buffer region outside the buffer"))?;
            dst.copy_from_slice(r.get(..n * CHUNK).unwrap_or(&[]));
            bit += n;
        }
        Ok(())
    }

    /// Replays (or, read-only, checks) the committed transactions of a dirty log.
    fn replay(
        &mut self,
        io: &mut Io,
        sb: &Superblock,
        writable: bool,
        why: &'static str,
        last: &RecHeader,
    ) -> FsResult<()> {
        let trans = self.committed(io, sb.logv2, last).map_err(|e| {
            if e.kind == ErrorKind::Corrupt {
                e
            } else {
                logcheck::dirty_error(why)
            }
        })?;
        let fs_bytes = sb.fs_bytes();
        let mut pending = false;
        for t in &trans {
            for (daddr, bbs, map, regions) in &t.bufs {
                let off = daddr
                    .checked_mul(BBSIZE as u64)
                    .filter(|o| {
                        o.checked_add(bbs * BBSIZE as u64)
                            .is_some_and(|e| e <= fs_bytes)
                    })
                    .ok_or_else(|| corrupt("log: buffer outside the filesystem"))?;
                let mut buf = io.read_vec(off, (*bbs as usize) * BBSIZE)?;
                let before = buf.clone();
                Self::apply(&mut buf, map, regions)?;
                if buf != before {
                    pending = true;
                    if writable {
                        io.write(off, &buf)?;
                    }
                }
            }
        }
        if !pending && !writable {
            return Ok(());
        }
        if !writable {
            return Err(Error::new(
                ErrorKind::Unsupported,
                alloc::format!(
                    "{} ({why}); skiff can replay it: mount the filesystem read-write once",
                    logcheck::DIRTY
                ),
            ));
        }
        io.flush()?;
        self.unmount(io)
    }

    /// The record header bytes at `blk` (tests).
    #[cfg(test)]
    pub fn header_at(&self, io: &Io, blk: u64) -> Option<RecHeader> {
        parse_rec_header(&self.read_blocks(io, blk, 1).ok()?)
    }

    /// The head and cycle (tests).
    #[cfg(test)]
    pub fn position(&self) -> (u64, u32) {
        (self.head, self.cycle)
    }
}
