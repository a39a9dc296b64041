//! Block devices: the byte-addressed interface every partition parser and filesystem
//! reads through, plus shared handles and partition windows onto a disk.

mod mem;
mod readahead;

pub use mem::MemDisk;
pub use readahead::ReadAhead;

use alloc::format;
use alloc::rc::Rc;
use core::cell::RefCell;
use wire::{Error, ErrorKind};

/// Sector size of every skiff disk (virtio-blk's unit).
pub const SECTOR: u64 = 512;

/// A disk or a window onto one. Reads and writes take byte offsets; implementations
/// handle sector alignment themselves. Out-of-range access is an error, never a panic.
pub trait BlockDevice {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// True when writes are refused.
    fn readonly(&self) -> bool;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error>;
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error>;
    /// Makes every completed write durable (virtio flush).
    fn flush(&mut self) -> Result<(), Error>;
}

/// A device shared between the device table, partition windows and mounted filesystems.
/// The appliance is single-threaded, so `Rc<RefCell<..>>` is enough.
pub type SharedDevice = Rc<RefCell<dyn BlockDevice>>;

pub fn shared<D: BlockDevice + 'static>(d: D) -> SharedDevice {
    Rc::new(RefCell::new(d))
}

/// Checks that `[offset, offset+len)` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<(), Error> {
    let end = offset
        .checked_add(len as u64)
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "offset overflows"))?;
    if end > size {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("range {offset}+{len} is past the end of the device ({size} bytes)"),
        ));
    }
    Ok(())
}

/// A contiguous byte range of another device: a partition.
pub struct Window {
    inner: SharedDevice,
    start: u64,
    size: u64,
    readonly: bool,
}

impl Window {
    /// Fails when the window does not lie inside `inner`.
    pub fn new(inner: SharedDevice, start: u64, size: u64) -> Result<Self, Error> {
        let (outer, readonly) = {
            let d = inner.borrow();
            (d.size(), d.readonly())
        };
        let end = start
            .checked_add(size)
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "partition end overflows"))?;
        if end > outer {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "partition {start}+{size} extends past the end of the disk ({outer} bytes)"
                ),
            ));
        }
        Ok(Window {
            inner,
            start,
            size,
            readonly,
        })
    }
}

impl BlockDevice for Window {
    fn size(&self) -> u64 {
        self.size
    }
    fn readonly(&self) -> bool {
        self.readonly
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size)?;
        self.inner.borrow_mut().read_at(self.start + offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size)?;
        self.inner.borrow_mut().write_at(self.start + offset, buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.inner.borrow_mut().flush()
    }
}

/// Disk names, shared with the host through the wire crate.
pub use wire::disk_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(disk_name(0), "/dev/sda");
        assert_eq!(disk_name(25), "/dev/sdz");
        assert_eq!(disk_name(26), "/dev/sdaa");
        assert_eq!(disk_name(27), "/dev/sdab");
    }

    #[test]
    fn window_bounds() {
        let d = shared(MemDisk::new(alloc::vec![7u8; 4096], false));
        assert!(Window::new(d.clone(), 4000, 200).is_err());
        assert!(Window::new(d.clone(), u64::MAX, 2).is_err());
        let mut w = Window::new(d, 1024, 1024).unwrap();
        let mut b = [0u8; 16];
        w.read_at(1008, &mut b).unwrap();
        assert!(w.read_at(1009, &mut b).is_err());
        assert!(w.read_at(u64::MAX, &mut b).is_err());
    }
}
