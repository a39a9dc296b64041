//! Adapter from a [`SharedDevice`] to hadris-fat's `Read`/`Write`/`Seek` traits, with a
//! small write-through block cache (hadris-fat reads directory entries and FAT entries a
//! few bytes at a time; on virtio-blk each device read is a round trip).

use crate::block::SharedDevice;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use hadris_fat::sync::{Error as IoError, ErrorKind as IoErrorKind, Read, Seek, SeekFrom, Write};

/// Cache block size and number of (direct-mapped) slots.
const BLK: u64 = 4096;
const SLOTS: usize = 32;

/// The last device error, kept so the filesystem layer can report the device's own
/// message instead of hadris-fat's static one.
pub type LastError = Rc<RefCell<Option<wire::Error>>>;

pub struct DevIo {
    dev: SharedDevice,
    pos: u64,
    size: u64,
    readonly: bool,
    slots: Vec<Option<(u64, Vec<u8>)>>,
    last: LastError,
}

impl DevIo {
    pub fn new(dev: SharedDevice, readonly: bool, last: LastError) -> Self {
        let (size, dev_ro) = {
            let d = dev.borrow();
            (d.size(), d.readonly())
        };
        DevIo {
            dev,
            pos: 0,
            size,
            readonly: readonly || dev_ro,
            slots: vec![None; SLOTS],
            last,
        }
    }

    fn fail(&self, e: wire::Error) -> IoError {
        *self.last.borrow_mut() = Some(e);
        IoError::new(IoErrorKind::Other, "block device error")
    }

    /// Reads `buf.len()` bytes at `off` (all inside the device) through the cache.
    fn read_exact_at(&mut self, mut off: u64, mut buf: &mut [u8]) -> Result<(), IoError> {
        while !buf.is_empty() {
            let blk = off / BLK;
            let within = (off % BLK) as usize;
            if within == 0 && buf.len() as u64 >= BLK {
                // Whole blocks: straight from the device (write-through keeps the cache
                // consistent, so no lookup is needed).
                let n = (buf.len() as u64 / BLK * BLK) as usize;
                let (head, tail) = buf.split_at_mut(n);
                self.dev
                    .borrow_mut()
                    .read_at(off, head)
                    .map_err(|e| self.fail(e))?;
                off += n as u64;
                buf = tail;
                continue;
            }
            let slot = (blk % SLOTS as u64) as usize;
            let hit = matches!(self.slots.get(slot), Some(Some((b, _))) if *b == blk);
            if !hit {
                let start = blk * BLK;
                let len = BLK.min(self.size - start) as usize;
                let mut data = vec![0u8; len];
                self.dev
                    .borrow_mut()
                    .read_at(start, &mut data)
                    .map_err(|e| self.fail(e))?;
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some((blk, data));
                }
            }
            let Some(Some((_, data))) = self.slots.get(slot) else {
                return Err(IoError::new(IoErrorKind::Other, "cache slot vanished"));
            };
            let avail = data.len().saturating_sub(within);
            let n = avail.min(buf.len());
            if n == 0 {
                return Err(IoError::new(IoErrorKind::UnexpectedEof, "read past device"));
            }
            let (head, tail) = buf.split_at_mut(n);
            head.copy_from_slice(data.get(within..within + n).ok_or(IoError::new(
                IoErrorKind::Other,
                "cache block shorter than expected",
            ))?);
            off += n as u64;
            buf = tail;
        }
        Ok(())
    }

    /// Updates cached blocks overlapping a write of `data` at `off`.
    fn update_cache(&mut self, off: u64, data: &[u8]) {
        let end = off + data.len() as u64;
        for (b, block) in self.slots.iter_mut().flatten() {
            let bs = *b * BLK;
            let be = bs + block.len() as u64;
            let s = off.max(bs);
            let e = end.min(be);
            if s < e {
                let (ds, de) = ((s - off) as usize, (e - off) as usize);
                let (cs, ce) = ((s - bs) as usize, (e - bs) as usize);
                if let (Some(dst), Some(src)) = (block.get_mut(cs..ce), data.get(ds..de)) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

impl Read for DevIo {
    type Error = IoErrorKind;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        let left = self.size.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let (head, _) = buf.split_at_mut(n);
        self.read_exact_at(self.pos, head)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for DevIo {
    type Error = IoErrorKind;

    fn write(&mut self, buf: &[u8]) -> Result<usize, IoError> {
        if self.readonly {
            return Err(self.fail(wire::Error::new(
                wire::ErrorKind::ReadOnly,
                "filesystem is mounted read-only",
            )));
        }
        let left = self.size.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(self.fail(wire::Error::new(
                wire::ErrorKind::Io,
                "write past the end of the device",
            )));
        }
        let data = buf.get(..n).unwrap_or_default();
        self.dev
            .borrow_mut()
            .write_at(self.pos, data)
            .map_err(|e| self.fail(e))?;
        self.update_cache(self.pos, data);
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), IoError> {
        // Writes are write-through; durability is the device flush at sync time.
        Ok(())
    }
}

impl Seek for DevIo {
    type Error = IoErrorKind;

    fn seek(&mut self, pos: SeekFrom) -> Result<u64, IoError> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
        }
        .ok_or(IoError::new(IoErrorKind::InvalidInput, "invalid seek"))?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{MemDisk, shared};

    #[test]
    fn cached_reads_and_writes_agree_with_the_device() {
        let data: Vec<u8> = (0..20000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dev = shared(MemDisk::new(data.clone(), false));
        let mut io = DevIo::new(dev.clone(), false, LastError::default());
        let mut b = [0u8; 100];
        io.seek(SeekFrom::Start(4050)).unwrap();
        assert_eq!(io.read(&mut b).unwrap(), 100);
        assert_eq!(&b[..], &data[4050..4150]);
        io.seek(SeekFrom::Start(4090)).unwrap();
        io.write(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).unwrap();
        io.seek(SeekFrom::Start(4088)).unwrap();
        let mut c = [0u8; 16];
        io.read(&mut c).unwrap();
        assert_eq!(c[2..14], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let mut d = [0u8; 16];
        dev.borrow_mut().read_at(4088, &mut d).unwrap();
        assert_eq!(c, d);
        // Short read at the end, zero past it.
        io.seek(SeekFrom::End(-3)).unwrap();
        assert_eq!(io.read(&mut b).unwrap(), 3);
        assert_eq!(io.read(&mut b).unwrap(), 0);
        assert!(io.write(&[1]).is_err());
        // Big aligned read bypassing the cache sees the written bytes too.
        let mut big = vec![0u8; 8192];
        io.seek(SeekFrom::Start(0)).unwrap();
        io.read(&mut big).unwrap();
        assert_eq!(big[4090..4102], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(io.seek(SeekFrom::Current(-100000)).is_err());
    }

    #[test]
    fn read_only_refuses_writes() {
        let dev = shared(MemDisk::new(vec![0; 1024], false));
        let last = LastError::default();
        let mut io = DevIo::new(dev, true, last.clone());
        assert!(io.write(&[1]).is_err());
        assert_eq!(
            last.borrow().as_ref().unwrap().kind,
            wire::ErrorKind::ReadOnly
        );
    }
}
