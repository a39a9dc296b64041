//! The bridge between `ext4-view` and skiff: a [`BlockDevice`](crate::block::BlockDevice)
//! as an `Ext4Read`, and `Ext4Error` mapped to `wire::Error`.

use crate::block::SharedDevice;
use alloc::boxed::Box;
use alloc::format;
use ext4_view::{Ext4Error, Ext4Read};
use wire::{Error, ErrorKind};

/// Reads the filesystem through a shared device.
pub struct DevReader(pub SharedDevice);

impl Ext4Read for DevReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        let mut d = self
            .0
            .try_borrow_mut()
            .map_err(|_| Box::new(Error::new(ErrorKind::Internal, "device busy")))?;
        let size = d.size();
        if start_byte
            .checked_add(dst.len() as u64)
            .is_none_or(|end| end > size)
        {
            // The filesystem points past the end of its device: a truncated image or a
            // corrupt block number.
            return Err(Box::new(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "ext4: read of {} bytes at {start_byte} is past the end of the device ({size} bytes)",
                    dst.len()
                ),
            )));
        }
        d.read_at(start_byte, dst).map_err(Box::new)?;
        Ok(())
    }
}

/// Maps an `ext4-view` error to the wire's error classes.
pub fn map_err(e: Ext4Error) -> Error {
    let kind = match &e {
        Ext4Error::NotFound => ErrorKind::NotFound,
        Ext4Error::NotADirectory => ErrorKind::NotADirectory,
        Ext4Error::IsADirectory => ErrorKind::IsADirectory,
        Ext4Error::TooManySymlinks => ErrorKind::Loop,
        Ext4Error::Corrupt(_) => ErrorKind::Corrupt,
        Ext4Error::Incompatible(_) | Ext4Error::Encrypted => ErrorKind::Unsupported,
        Ext4Error::FileTooLarge | Ext4Error::PathTooLong => ErrorKind::TooLarge,
        Ext4Error::NotAbsolute
        | Ext4Error::NotASymlink
        | Ext4Error::IsASpecialFile
        | Ext4Error::MalformedPath
        | Ext4Error::NotUtf8 => ErrorKind::InvalidArgument,
        Ext4Error::Io(inner) => {
            // Our own reader's errors come back as they were raised.
            if let Some(w) = inner.downcast_ref::<Error>() {
                return w.clone();
            }
            ErrorKind::Io
        }
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("ext4: {e}"))
}
