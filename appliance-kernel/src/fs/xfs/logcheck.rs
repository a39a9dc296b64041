//! Is the internal log clean? skiff does not replay XFS logs, so a filesystem whose log
//! holds transactions not yet written in place must not be read: its metadata is stale.
//!
//! The head of the log is found as XFS finds it: every 512-byte block of the circular
//! log carries the cycle (pass) number it was written in, so the head is where the
//! cycle number drops by one; blocks of the older cycle just before the head (log
//! buffers written out of order) move the head back to the first of them. The last
//! record before the head must then end exactly at the head and be an unmount record
//! (one operation, flagged `XLOG_UNMOUNT_TRANS`) for the log to be clean. A record
//! torn by a crash at the head (its header written, its data not) is skipped and the
//! record before it is checked instead, as the kernel does. A non-zero record CRC is
//! verified.

use super::ondisk::corrupt;
use super::ondisk::log::{
    BBSIZE, HEADER_MAGIC, RecHeader, UNMOUNT_TRANS, cycle_of, data_blocks, header_blocks,
    parse_rec_header, record_crc,
};
use crate::fs::FsResult;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// The message of the dirty-log refusal.
pub const DIRTY: &str = "xfs: the log is dirty (unclean shutdown): the filesystem needs log recovery; skiff does not replay XFS logs";

/// Where the log ends: the head, and the block and header of the last complete record
/// before it.
pub type LastRecord = (u64, u64, RecHeader);

/// Basic blocks read per request while scanning.
const SCAN_CHUNK: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    Clean,
    /// Why it is dirty (for messages and tests).
    Dirty(&'static str),
}

/// The refusal for a dirty log.
pub fn dirty_error(why: &str) -> Error {
    Error::new(ErrorKind::Unsupported, format!("{DIRTY} ({why})"))
}

/// Reads basic blocks of the log: `read(first_bb, buf)` fills `buf` (a multiple of 512
/// bytes) from block `first_bb` on, never past the end of the log.
pub struct Log<R: FnMut(u64, &mut [u8]) -> FsResult<()>> {
    read: R,
    /// Blocks in the log.
    n: u64,
    logv2: bool,
}

impl<R: FnMut(u64, &mut [u8]) -> FsResult<()>> Log<R> {
    pub fn new(read: R, n: u64, logv2: bool) -> Self {
        Log { read, n, logv2 }
    }

    fn block(&mut self, bb: u64) -> FsResult<Vec<u8>> {
        let mut b = vec![0u8; BBSIZE];
        (self.read)(bb % self.n, &mut b)?;
        Ok(b)
    }

    fn cycle(&mut self, bb: u64) -> FsResult<u32> {
        Ok(cycle_of(&self.block(bb)?))
    }

    /// Blocks `from..from+count` (wrapping at the end of the log).
    fn blocks(&mut self, from: u64, count: u64) -> FsResult<Vec<u8>> {
        let mut out = vec![0u8; (count as usize) * BBSIZE];
        let mut done = 0u64;
        while done < count {
            let bb = (from + done) % self.n;
            let run = (count - done).min(self.n - bb);
            let at = (done as usize) * BBSIZE;
            let dst = out
                .get_mut(at..at + (run as usize) * BBSIZE)
                .ok_or_else(|| corrupt("log: read out of range"))?;
            (self.read)(bb, dst)?;
            done += run;
        }
        Ok(out)
    }

    /// First block in `start..start+count` (no wrapping) whose cycle is `cycle`.
    fn find_cycle(&mut self, start: u64, count: u64, cycle: u32) -> FsResult<Option<u64>> {
        let mut at = start;
        let end = start + count;
        while at < end {
            let run = (end - at).min(SCAN_CHUNK);
            let buf = self.blocks(at, run)?;
            for (i, bb) in buf.chunks_exact(BBSIZE).enumerate() {
                if cycle_of(bb) == cycle {
                    return Ok(Some(at + i as u64));
                }
            }
            at += run;
        }
        Ok(None)
    }

    /// First block in `lo+1..=hi` with cycle `want`, given cycle(lo) != want and
    /// cycle(hi) == want (binary search, the blocks between changing cycle once).
    fn bisect(&mut self, mut lo: u64, mut hi: u64, want: u32) -> FsResult<u64> {
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.cycle(mid)? == want {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// The head: the block the next record would be written at (`None`: zeroed log).
    pub fn find_head(&mut self) -> FsResult<Option<u64>> {
        let n = self.n;
        let first = self.cycle(0)?;
        if first == 0 {
            // A zeroed log (freshly made or cleared by xfs_repair): nothing to replay.
            return Ok(None);
        }
        let last = self.cycle(n - 1)?;
        // Writes of up to 8 log buffers can land out of order.
        let window = n.min(if self.logv2 { 4096 } else { 512 });
        let mut head;
        if last == 0 {
            // Partly zeroed: the head is the first never-written block, unless blocks
            // before it were never written either.
            head = self.bisect(0, n - 1, 0)?;
            let start = head.saturating_sub(window);
            if let Some(h) = self.find_cycle(start, head - start, 0)? {
                head = h;
            }
            return Ok(Some(head));
        }
        let stop_on;
        if first == last {
            // One pass over the whole log: the head is at its end, i.e. block 0.
            head = n;
            stop_on = last.wrapping_sub(1);
        } else {
            head = self.bisect(0, n - 1, last)?;
            stop_on = last;
        }
        if head >= window {
            if let Some(h) = self.find_cycle(head - window, window, stop_on)? {
                head = h;
            }
        } else {
            // The window wraps: first the physical end of the log (holes there are one
            // cycle older still), then its start.
            let tail_part = window - head;
            if let Some(h) = self.find_cycle(n - tail_part, tail_part, stop_on.wrapping_sub(1))? {
                head = h;
            } else if let Some(h) = self.find_cycle(0, head, stop_on)? {
                head = h;
            }
        }
        Ok(Some(head % n))
    }

    /// The last record header before block `head`: (its block, header). Searches back at
    /// most one maximal record (header blocks and 256 KiB of data).
    pub(super) fn record_before(&mut self, head: u64) -> FsResult<Option<(u64, RecHeader)>> {
        let n = self.n;
        let limit = n.min(8 + 512 + 8);
        let mut back = 0u64;
        while back < limit {
            let run = (limit - back).min(SCAN_CHUNK);
            // Blocks head-back-run .. head-back, read in one request.
            // (back + run <= n; when it is n the chunk is the whole log from `head`.)
            let from = (head + n - ((back + run) % n)) % n;
            let buf = self.blocks(from, run)?;
            for i in (0..run).rev() {
                let at = (i as usize) * BBSIZE;
                let bb = buf.get(at..at + BBSIZE).unwrap_or(&[]);
                if super::ondisk::be32(bb, 0) == HEADER_MAGIC {
                    let blk = (from + i) % n;
                    let h = parse_rec_header(bb).ok_or_else(|| {
                        corrupt(format_args!("log: bad record header at block {blk}"))
                    })?;
                    return Ok(Some((blk, h)));
                }
            }
            back += run;
        }
        Ok(None)
    }

    /// Decides whether the log is clean.
    pub fn state(&mut self) -> FsResult<LogState> {
        Ok(self.scan()?.0)
    }

    /// Decides whether the log is clean, and where the last complete record before the
    /// head is: `(head, record block, record header)` (`None` for a zeroed log).
    pub fn scan(&mut self) -> FsResult<(LogState, Option<LastRecord>)> {
        if self.n < 2 {
            return Err(corrupt("log: too small"));
        }
        let Some(mut head) = self.find_head()? else {
            return Ok((LogState::Clean, None));
        };
        // At most one torn record is stepped over.
        for _ in 0..2 {
            let Some((rblk, h)) = self.record_before(head)? else {
                return Err(corrupt(format_args!(
                    "log: no record header before the head at block {head}"
                )));
            };
            let hblks = u64::from(header_blocks(&h, self.logv2));
            let dblks = u64::from(data_blocks(&h));
            let span = hblks + dblks;
            let to_head = (head + self.n - rblk) % self.n;
            let to_head = if to_head == 0 { self.n } else { to_head };
            if span > to_head {
                // The record runs past the head: torn by a crash while being written.
                // Nothing in it was committed; check the record before it.
                head = rblk;
                continue;
            }
            let last = Some((head, rblk, h));
            if span < to_head {
                return Ok((LogState::Dirty("blocks after the last record"), last));
            }
            if h.num_logops != 1 {
                return Ok((
                    LogState::Dirty("the last record is not an unmount record"),
                    last,
                ));
            }
            let op = self.block(rblk + hblks)?;
            if super::ondisk::u8_at(&op, 9) & UNMOUNT_TRANS == 0 {
                return Ok((
                    LogState::Dirty("the last record is not an unmount record"),
                    last,
                ));
            }
            if h.crc != 0 {
                let all = self.blocks(rblk, span)?;
                let hdr_bytes = (hblks as usize) * BBSIZE;
                let headers = all.get(..hdr_bytes).unwrap_or(&[]);
                let data = all
                    .get(hdr_bytes..hdr_bytes + h.len as usize)
                    .unwrap_or(&[]);
                if record_crc(headers, data) != h.crc {
                    return Err(corrupt(format_args!(
                        "log: the unmount record at block {rblk} has a bad CRC"
                    )));
                }
            }
            return Ok((LogState::Clean, last));
        }
        Ok((LogState::Dirty("torn records at the head"), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::xfs::ondisk::log::HEADER_CYCLE_SIZE;

    const N: u64 = 64;

    fn bb(log: &mut [u8], b: u64) -> &mut [u8] {
        let at = (b % N) as usize * BBSIZE;
        &mut log[at..at + BBSIZE]
    }

    /// Stamps blocks `from..to` as plain data of `cycle`.
    fn stamp(log: &mut [u8], from: u64, to: u64, cycle: u32) {
        for b in from..to {
            bb(log, b)[..4].copy_from_slice(&cycle.to_be_bytes());
        }
    }

    /// Writes a record at `at` with `data` data blocks; returns the block after it.
    fn record(log: &mut [u8], at: u64, cycle: u32, data: u32, ops: u32, unmount: bool) -> u64 {
        {
            let h = bb(log, at);
            h.fill(0);
            h[0..4].copy_from_slice(&HEADER_MAGIC.to_be_bytes());
            h[4..8].copy_from_slice(&cycle.to_be_bytes());
            h[8..12].copy_from_slice(&2u32.to_be_bytes());
            h[12..16].copy_from_slice(&(data * 512).to_be_bytes());
            h[16..24].copy_from_slice(&((u64::from(cycle) << 32) | at).to_be_bytes());
            h[40..44].copy_from_slice(&ops.to_be_bytes());
            h[320..324].copy_from_slice(&(HEADER_CYCLE_SIZE as u32).to_be_bytes());
        }
        for i in 0..u64::from(data) {
            let d = bb(log, at + 1 + i);
            d.fill(0x11);
            d[..4].copy_from_slice(&cycle.to_be_bytes());
            if i == 0 {
                d[4..8].copy_from_slice(&8u32.to_be_bytes());
                d[8] = 0x69;
                d[9] = if unmount { UNMOUNT_TRANS } else { 0x02 };
            }
        }
        (at + 1 + u64::from(data)) % N
    }

    /// Stores the correct CRC in the record at `at` (one data block).
    fn seal(log: &mut [u8], at: u64) {
        let h = bb(log, at).to_vec();
        let d = bb(log, at + 1).to_vec();
        let c = record_crc(&h, &d);
        bb(log, at)[32..36].copy_from_slice(&c.to_le_bytes());
    }

    fn check(log: &[u8]) -> (Option<u64>, FsResult<LogState>) {
        let read = |b: u64, buf: &mut [u8]| {
            let at = b as usize * BBSIZE;
            buf.copy_from_slice(&log[at..at + buf.len()]);
            Ok(())
        };
        let head = Log::new(read, N, true).find_head().unwrap();
        (head, Log::new(read, N, true).state())
    }

    fn empty() -> Vec<u8> {
        vec![0u8; N as usize * BBSIZE]
    }

    #[test]
    fn zeroed_and_fresh_logs() {
        let log = empty();
        assert_eq!(check(&log), (None, Ok(LogState::Clean)));
        let mut log = empty();
        let next = record(&mut log, 0, 1, 1, 1, true);
        assert_eq!(check(&log), (Some(next), Ok(LogState::Clean)));
        // mkfs's cycle-0 filler headers after it read as never written.
        for b in next..N {
            record(&mut log, b, 0, 0, 0, false);
            bb(&mut log, b)[4..8].copy_from_slice(&0u32.to_be_bytes());
        }
        assert_eq!(check(&log), (Some(next), Ok(LogState::Clean)));
    }

    #[test]
    fn transactions_after_unmount_are_dirty() {
        let mut log = empty();
        let a = record(&mut log, 0, 1, 1, 1, true);
        let b = record(&mut log, a, 1, 2, 3, false);
        assert_eq!(check(&log).0, Some(b));
        assert!(matches!(check(&log).1, Ok(LogState::Dirty(_))));
        // A lone unmount-looking record with two operations is no unmount record.
        let mut log = empty();
        record(&mut log, 0, 1, 1, 2, true);
        assert!(matches!(check(&log).1, Ok(LogState::Dirty(_))));
        // Data blocks of the current cycle after the unmount record.
        let mut log = empty();
        let a = record(&mut log, 0, 1, 1, 1, true);
        stamp(&mut log, a, a + 3, 1);
        assert_eq!(check(&log).0, Some(a + 3));
        assert!(matches!(check(&log).1, Ok(LogState::Dirty(_))));
    }

    #[test]
    fn torn_record_at_head_is_skipped() {
        let mut log = empty();
        let a = record(&mut log, 0, 1, 1, 1, true);
        // A record of 4 data blocks of which only 1 reached the disk.
        record(&mut log, a, 1, 4, 3, false);
        bb(&mut log, a + 2).fill(0);
        bb(&mut log, a + 3).fill(0);
        bb(&mut log, a + 4).fill(0);
        assert_eq!(check(&log), (Some(a + 2), Ok(LogState::Clean)));
    }

    #[test]
    fn wrapped_logs_and_holes() {
        // Cycle 2 over the start of a log written fully in cycle 1.
        let mut log = empty();
        stamp(&mut log, 0, N, 1);
        let a = record(&mut log, 0, 2, 2, 3, false);
        let b = record(&mut log, a, 2, 1, 1, true);
        assert_eq!(check(&log), (Some(b), Ok(LogState::Clean)));
        // An older-cycle block before the head (a log buffer written out of order):
        // the head moves back to it and the log is not clean.
        bb(&mut log, 1)[..4].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(check(&log).0, Some(1));
        assert!(matches!(check(&log).1, Ok(LogState::Dirty(_))));
        // One pass ending exactly at the end: the head is block 0.
        let mut log = empty();
        stamp(&mut log, 0, N, 1);
        record(&mut log, N - 2, 1, 1, 1, true);
        assert_eq!(check(&log), (Some(0), Ok(LogState::Clean)));
        // An unmount record wrapping around the end of the log.
        let mut log = empty();
        stamp(&mut log, 0, N, 1);
        let h = record(&mut log, N - 1, 2, 1, 1, true);
        stamp(&mut log, 0, N - 1, 1);
        bb(&mut log, 0)[..4].copy_from_slice(&2u32.to_be_bytes());
        // Block N-1 is the header (cycle 2), block 0 its data (cycle 2).
        assert_eq!(h, 1);
        let (head, state) = check(&log);
        assert_eq!(head, Some(1));
        assert_eq!(state, Ok(LogState::Clean));
    }

    #[test]
    fn record_crcs() {
        let mut log = empty();
        record(&mut log, 0, 1, 1, 1, true);
        seal(&mut log, 0);
        assert_eq!(check(&log).1, Ok(LogState::Clean));
        bb(&mut log, 1)[100] ^= 1;
        let e = check(&log).1.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.message.contains("bad CRC"), "{e:?}");
        // A bad header is corrupt, not clean.
        let mut log = empty();
        record(&mut log, 0, 1, 1, 1, true);
        bb(&mut log, 0)[8..12].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(check(&log).1.unwrap_err().kind, ErrorKind::Corrupt);
    }
}
