//! The direct backend: qemu as a child of this process.

pub mod hotplug;
pub mod qemu;
pub mod qmp;
