//! ext2/ext3/ext4: read through `ext4-view`, write through `rsext4` (see `write`).

pub mod write;

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use wire::{Error, ErrorKind};

/// Mounts an ext2/3/4 filesystem. Read-write only when `!readonly` and the device allows it.
pub fn mount(_dev: SharedDevice, _readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    Err(Error::new(
        ErrorKind::Unsupported,
        "ext4 not implemented yet",
    ))
}
