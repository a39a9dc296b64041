//! FAT12/16/32 with long file names, read and write, through `hadris-fat`.

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use wire::{Error, ErrorKind};

/// Mounts a FAT filesystem. Read-write only when `!readonly` and the device allows it.
pub fn mount(_dev: SharedDevice, _readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    Err(Error::new(
        ErrorKind::Unsupported,
        "FAT not implemented yet",
    ))
}
