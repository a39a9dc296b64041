//! Adapter from skiff's byte-addressed [`BlockDevice`](crate::block::BlockDevice) to
//! rsext4's sector-addressed [`BlockIo`] (512-byte logical sectors).

use crate::block::{SECTOR, SharedDevice};
use alloc::rc::Rc;
use core::cell::RefCell;
use rsext4::{BlockIo, DeviceCapabilities, DeviceGeometry, Ext4Error, Ext4Result, SectorId};

/// A [`SharedDevice`] seen as rsext4 sectors. The first device error is kept in
/// `last_error` so the caller can report the real cause instead of rsext4's bare `Io`.
pub(super) struct DevIo {
    dev: SharedDevice,
    sectors: u64,
    readonly: bool,
    pub(super) last_error: Rc<RefCell<Option<wire::Error>>>,
}

impl DevIo {
    pub(super) fn new(dev: SharedDevice, last_error: Rc<RefCell<Option<wire::Error>>>) -> Self {
        let (size, readonly) = {
            let d = dev.borrow();
            (d.size(), d.readonly())
        };
        DevIo {
            dev,
            sectors: size / SECTOR,
            readonly,
            last_error,
        }
    }

    /// Byte offset and length of `count` sectors at `sector`, refusing ranges past the
    /// device or a buffer of the wrong size.
    fn range(&self, sector: SectorId, count: u32, buf_len: usize) -> Ext4Result<(u64, usize)> {
        let end = sector
            .raw()
            .checked_add(u64::from(count))
            .ok_or_else(Ext4Error::overflow)?;
        if end > self.sectors {
            return Err(Ext4Error::io().with_operation("skiff:sector_out_of_range"));
        }
        let len = u64::from(count)
            .checked_mul(SECTOR)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(Ext4Error::overflow)?;
        if buf_len < len {
            return Err(Ext4Error::buffer_too_small(buf_len, len));
        }
        let offset = sector
            .raw()
            .checked_mul(SECTOR)
            .ok_or_else(Ext4Error::overflow)?;
        Ok((offset, len))
    }

    fn record(&self, e: wire::Error) -> Ext4Error {
        let mut slot = self.last_error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
        Ext4Error::io()
    }
}

impl BlockIo for DevIo {
    fn write(&mut self, buffer: &[u8], sector: SectorId, count: u32) -> Ext4Result<()> {
        if self.readonly {
            return Err(Ext4Error::read_only());
        }
        let (offset, len) = self.range(sector, count, buffer.len())?;
        let data = buffer.get(..len).ok_or_else(Ext4Error::overflow)?;
        let r = self.dev.borrow_mut().write_at(offset, data);
        r.map_err(|e| self.record(e))
    }

    fn read(&mut self, buffer: &mut [u8], sector: SectorId, count: u32) -> Ext4Result<()> {
        let (offset, len) = self.range(sector, count, buffer.len())?;
        let data = buffer.get_mut(..len).ok_or_else(Ext4Error::overflow)?;
        let r = self.dev.borrow_mut().read_at(offset, data);
        r.map_err(|e| self.record(e))
    }

    fn geometry(&self) -> DeviceGeometry {
        // SECTOR is 512: fits in u32.
        DeviceGeometry::new(SECTOR as u32, self.sectors)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            read_only: self.readonly,
            flush: true,
            ..DeviceCapabilities::default()
        }
    }

    /// rsext4 flushes as a write barrier (journal blocks, commit record, checkpoint):
    /// 8 times per mounted call. skiff's writes complete one at a time, in order, into
    /// qemu's writeback cache, i.e. the host's page cache, where they survive qemu or
    /// the appliance being killed at any moment; a device flush (an `fdatasync` of the
    /// image on the host, 3-5 ms here) only adds durability against a host crash. That
    /// is what `Sync`, `Umount` and `Shutdown` give, once, at the end; a barrier per
    /// journal step made uploads ~10x slower (bench/tree.sh).
    fn flush(&mut self) -> Ext4Result<()> {
        Ok(())
    }
}
