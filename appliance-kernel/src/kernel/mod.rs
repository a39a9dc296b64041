//! Bare-metal half of the appliance: boot, CPU/port access, heap, PCI, virtio, serve loop.

pub mod arch;
pub mod boot;
pub mod cmdline;
pub mod console;
pub mod heap;
pub mod hotplug;
pub mod irq;
pub mod panic;
pub mod pci;
pub mod serve;
pub mod traps;
pub mod virtio;
