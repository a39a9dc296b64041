//! [`LuksDevice`]: the decrypted payload of an unlocked LUKS device as a block device.
//!
//! Reads of whole encryption sectors are decrypted in the caller's buffer (no copy, no
//! allocation); other reads and all writes go through one sector-aligned buffer per
//! request (at most [`CHUNK`] bytes at a time), partial sectors being read, decrypted,
//! patched and re-encrypted.

use super::{LuksHeader, SectorCipher, VolumeKey, err};
use crate::block::{BlockDevice, SharedDevice, check_range};
use alloc::format;
use alloc::vec;
use wire::{Error, ErrorKind};

/// Largest buffer one unaligned read or a write allocates; longer requests loop.
pub const CHUNK: usize = 1 << 20;

pub struct LuksDevice {
    inner: SharedDevice,
    /// Byte offset of the payload on `inner`.
    start: u64,
    size: u64,
    sector_size: u64,
    /// IV number of the payload's first sector (512-byte units, dm-crypt's convention
    /// for every sector size).
    iv_base: u64,
    cipher: SectorCipher,
    readonly: bool,
}

impl LuksDevice {
    /// The payload of `inner` described by `h`, keyed with `key` (which must be the
    /// volume key [`LuksHeader::unlock`] returned).
    pub fn new(inner: SharedDevice, h: &LuksHeader, key: &VolumeKey) -> Result<LuksDevice, Error> {
        let (dev_size, readonly) = {
            let d = inner.borrow();
            (d.size(), d.readonly())
        };
        let s = &h.segment;
        if s.offset > dev_size {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "LUKS payload offset {} is past the end of the device",
                    s.offset
                ),
            ));
        }
        let cipher = SectorCipher::new(&s.cipher, key.bytes())?;
        Ok(LuksDevice {
            inner,
            start: s.offset,
            size: h.payload_size(dev_size),
            sector_size: u64::from(s.sector_size),
            iv_base: s.iv_tweak,
            cipher,
            readonly,
        })
    }

    /// The IV number of the sector at payload byte `offset` (a sector boundary).
    fn iv(&self, offset: u64) -> u64 {
        self.iv_base.wrapping_add(offset / 512)
    }

    fn step(&self) -> u64 {
        self.sector_size / 512
    }

    /// Reads and decrypts whole sectors at `offset` (aligned) into `buf`.
    fn read_sectors(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.inner.borrow_mut().read_at(self.start + offset, buf)?;
        self.cipher
            .decrypt(buf, self.sector_size as usize, self.iv(offset), self.step());
        Ok(())
    }
}

impl BlockDevice for LuksDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size)?;
        let ss = self.sector_size;
        if offset.is_multiple_of(ss) && (buf.len() as u64).is_multiple_of(ss) {
            return self.read_sectors(offset, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let first = pos - pos % ss;
            let head = (pos - first) as usize;
            let n = (buf.len() - done).min(CHUNK);
            // The payload size is a whole number of sectors, so rounding up stays inside.
            let end = (pos + n as u64).next_multiple_of(ss);
            let mut tmp = vec![0u8; (end - first) as usize];
            self.read_sectors(first, &mut tmp)?;
            let (Some(dst), Some(src)) = (buf.get_mut(done..done + n), tmp.get(head..head + n))
            else {
                return Err(err(ErrorKind::Internal, "LUKS read: bad chunk bounds"));
            };
            dst.copy_from_slice(src);
            done += n;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if self.readonly {
            return Err(err(ErrorKind::ReadOnly, "the LUKS device is read-only"));
        }
        check_range(offset, buf.len(), self.size)?;
        let ss = self.sector_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let first = pos - pos % ss;
            let head = (pos - first) as usize;
            let n = (buf.len() - done).min(CHUNK);
            let end = (pos + n as u64).next_multiple_of(ss);
            let len = (end - first) as usize;
            let mut tmp = vec![0u8; len];
            let ssz = ss as usize;
            // Partial first and last sectors: keep the bytes the caller does not write.
            if (head != 0 || n < ssz)
                && let Some(s) = tmp.get_mut(..ssz)
            {
                self.read_sectors(first, s)?;
            }
            let tail = head + n;
            if !tail.is_multiple_of(ssz)
                && len > ssz
                && let Some(s) = tmp.get_mut(len - ssz..)
            {
                self.read_sectors(end - ss, s)?;
            }
            let (Some(dst), Some(src)) = (tmp.get_mut(head..tail), buf.get(done..done + n)) else {
                return Err(err(ErrorKind::Internal, "LUKS write: bad chunk bounds"));
            };
            dst.copy_from_slice(src);
            self.cipher
                .encrypt(&mut tmp, ssz, self.iv(first), self.step());
            self.inner.borrow_mut().write_at(self.start + first, &tmp)?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.inner.borrow_mut().flush()
    }
}
