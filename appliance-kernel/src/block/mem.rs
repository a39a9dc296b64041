//! An in-memory disk: the test double for file-backed disks, and a building block for
//! host-side tests of partitions and filesystems.

use super::{BlockDevice, check_range};
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

pub struct MemDisk {
    pub data: Vec<u8>,
    readonly: bool,
}

impl MemDisk {
    pub fn new(data: Vec<u8>, readonly: bool) -> Self {
        MemDisk { data, readonly }
    }
}

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn readonly(&self) -> bool {
        self.readonly
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size())?;
        let o = offset as usize;
        buf.copy_from_slice(&self.data[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if self.readonly {
            return Err(Error::new(ErrorKind::ReadOnly, "device is read-only"));
        }
        check_range(offset, buf.len(), self.size())?;
        let o = offset as usize;
        self.data[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
