//! Sequential read-ahead for a disk: one cached window of device bytes that grows while
//! reads continue where the previous one ended (a file read block by block) and is
//! bypassed by random reads. `ext4-view` asks for one filesystem block per call and
//! hadris-fat one cluster; on virtio-blk every call is a round trip to qemu, so without
//! this a 1 MiB file read is 256-1024 requests.
//!
//! The cache is write-through safe: the owner calls [`ReadAhead::invalidate`] for every
//! write, so a read never returns bytes older than a completed write.

use alloc::vec::Vec;
use wire::Error;

/// Reads device bytes at an offset into a buffer (the uncached path).
pub type Fetch<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), Error> + 'a;

/// Read-ahead state for one device.
pub struct ReadAhead {
    /// Cached bytes `[start, start + buf.len())`; empty when nothing is cached.
    buf: Vec<u8>,
    start: u64,
    /// End of the last read that went to the device.
    last_end: u64,
    /// Current read-ahead size: 0 after a random read, doubling (from `min` up to `max`)
    /// while reads stay sequential.
    window: usize,
    min: usize,
    max: usize,
}

impl ReadAhead {
    /// Windows grow from `min` to `max` bytes.
    pub fn new(min: usize, max: usize) -> Self {
        ReadAhead {
            buf: Vec::new(),
            start: 0,
            last_end: u64::MAX,
            window: 0,
            min: min.max(1),
            max: max.max(min),
        }
    }

    fn cache_end(&self) -> u64 {
        self.start.saturating_add(self.buf.len() as u64)
    }

    /// Fills `dst` with the device bytes at `offset` (the caller checked the range lies
    /// inside a device of `size` bytes), from the cached window where possible, else
    /// through `fetch(offset, buf)`, reading ahead when the access is sequential.
    pub fn read(
        &mut self,
        mut offset: u64,
        mut dst: &mut [u8],
        size: u64,
        fetch: &mut Fetch<'_>,
    ) -> Result<(), Error> {
        if dst.is_empty() {
            return Ok(());
        }
        let mut sequential = false;
        // Whatever part starts inside the window comes from it.
        if !self.buf.is_empty() && offset >= self.start && offset < self.cache_end() {
            let from = (offset - self.start) as usize;
            let n = dst.len().min(self.buf.len() - from);
            let (head, tail) = dst.split_at_mut(n);
            head.copy_from_slice(self.buf.get(from..from + n).unwrap_or_default());
            if tail.is_empty() {
                return Ok(());
            }
            offset += n as u64;
            dst = tail;
            sequential = true;
        }
        sequential |=
            offset == self.last_end || (!self.buf.is_empty() && offset == self.cache_end());
        self.window = if sequential {
            (self.window.saturating_mul(2)).clamp(self.min, self.max)
        } else {
            0
        };
        let left = size.saturating_sub(offset);
        let ahead = (self.window as u64).min(left) as usize;
        let end = offset + dst.len() as u64;
        if ahead > dst.len() {
            self.buf.clear();
            self.buf.resize(ahead, 0);
            if let Err(e) = fetch(offset, &mut self.buf) {
                self.buf.clear();
                return Err(e);
            }
            self.start = offset;
            dst.copy_from_slice(self.buf.get(..dst.len()).unwrap_or_default());
        } else {
            fetch(offset, dst)?;
        }
        self.last_end = end;
        Ok(())
    }

    /// Drops the cached window if it overlaps `[offset, offset + len)` (a write).
    pub fn invalidate(&mut self, offset: u64, len: usize) {
        let end = offset.saturating_add(len as u64);
        if !self.buf.is_empty() && offset < self.cache_end() && end > self.start {
            self.buf.clear();
        }
    }

    /// Drops everything cached (the device may have changed behind our back).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.window = 0;
        self.last_end = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn disk() -> Vec<u8> {
        (0..1u32 << 20).map(|i| (i % 251) as u8).collect()
    }

    /// Reads through `ra`, counting device fetches.
    fn read(ra: &mut ReadAhead, disk: &[u8], off: u64, len: usize, fetches: &mut usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut f = |o: u64, b: &mut [u8]| {
            *fetches += 1;
            b.copy_from_slice(&disk[o as usize..o as usize + b.len()]);
            Ok(())
        };
        ra.read(off, &mut out, disk.len() as u64, &mut f).unwrap();
        out
    }

    #[test]
    fn sequential_reads_coalesce() {
        let d = disk();
        let mut ra = ReadAhead::new(64 << 10, 256 << 10);
        let mut n = 0;
        for blk in 0..256u64 {
            let got = read(&mut ra, &d, blk * 4096, 4096, &mut n);
            assert_eq!(got, d[blk as usize * 4096..][..4096]);
        }
        // 1 MiB in 4 KiB blocks: the first two direct, then windows of 64K, 128K, 256K...
        assert!(n < 10, "{n} fetches");
    }

    #[test]
    fn random_reads_do_not_read_ahead_and_keep_the_window() {
        let d = disk();
        let mut ra = ReadAhead::new(64 << 10, 64 << 10);
        let mut n = 0;
        read(&mut ra, &d, 0, 1024, &mut n);
        read(&mut ra, &d, 1024, 1024, &mut n); // sequential: window [1024, 1024+64K)
        let before = n;
        // A random read: one fetch of exactly what was asked.
        assert_eq!(read(&mut ra, &d, 900_000, 100, &mut n), d[900_000..900_100]);
        assert_eq!(n, before + 1);
        // The window is still there.
        assert_eq!(read(&mut ra, &d, 2048, 1024, &mut n), d[2048..3072]);
        assert_eq!(n, before + 1);
    }

    #[test]
    fn straddling_and_end_of_device() {
        let d = disk();
        let mut ra = ReadAhead::new(64 << 10, 1 << 20);
        let mut n = 0;
        let len = d.len() as u64;
        read(&mut ra, &d, len - 8192, 512, &mut n);
        // Sequential up to the end: the window is clipped to the device.
        assert_eq!(
            read(&mut ra, &d, len - 7680, 7680, &mut n),
            d[d.len() - 7680..]
        );
        // A read that starts in the window and runs past it.
        let mut ra = ReadAhead::new(4096, 4096);
        read(&mut ra, &d, 0, 512, &mut n);
        read(&mut ra, &d, 512, 512, &mut n); // window [512, 4608)
        assert_eq!(read(&mut ra, &d, 4000, 2000, &mut n), d[4000..6000]);
    }

    #[test]
    fn writes_invalidate() {
        let mut d = disk();
        let mut ra = ReadAhead::new(64 << 10, 64 << 10);
        let mut n = 0;
        read(&mut ra, &d, 0, 512, &mut n);
        read(&mut ra, &d, 512, 512, &mut n); // caches [512, 512+64K)
        d[5000] = 0xEE;
        ra.invalidate(5000, 1);
        assert_eq!(read(&mut ra, &d, 4608, 1024, &mut n)[392], 0xEE);
        // A write outside the window keeps it.
        let mut ra = ReadAhead::new(4096, 4096);
        read(&mut ra, &d, 0, 512, &mut n);
        read(&mut ra, &d, 512, 512, &mut n);
        ra.invalidate(100_000, 10);
        let before = n;
        read(&mut ra, &d, 1024, 512, &mut n);
        assert_eq!(n, before);
        ra.clear();
        read(&mut ra, &d, 1536, 512, &mut n);
        assert_eq!(n, before + 1);
    }

    #[test]
    fn failed_fetch_caches_nothing() {
        let d = disk();
        let mut ra = ReadAhead::new(4096, 4096);
        let mut n = 0;
        read(&mut ra, &d, 0, 512, &mut n);
        let mut out = [0u8; 512];
        let mut bad = |_: u64, _: &mut [u8]| Err(Error::new(wire::ErrorKind::Io, "boom"));
        assert!(ra.read(512, &mut out, d.len() as u64, &mut bad).is_err());
        assert_eq!(read(&mut ra, &d, 1024, 512, &mut n), d[1024..1536]);
    }
}
