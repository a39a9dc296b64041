//! PCIe root ports with native hotplug (PCIe base spec §6.7; qemu hw/pci/pcie.c):
//! the appliance numbers each port's secondary bus, gives it a fixed memory window, powers
//! its slot on, and on every rescan notices new devices (presence detect), removal
//! requests (attention button, which qemu's `device_del` presses: the appliance then
//! powers the slot off and qemu detaches the device) and vanished devices.

use super::pci::{BarAllocator, Cam, assign_bars, cam, find_cap};
use crate::log;
use virtio_drivers::transport::pci::bus::{
    Command, ConfigurationAccess, DeviceFunction, HeaderType, PciRoot,
};

const CAP_ID_PCIE: u8 = 0x10;
/// Offsets inside the PCI Express capability.
const SLOT_CAPS: u8 = 0x14;
const SLOT_CTL_STA: u8 = 0x18;
/// Slot Capabilities: hot-plug capable.
const SLTCAP_HPC: u32 = 1 << 6;
/// Slot Control: power indicator field and power controller control (1 = off).
const SLTCTL_PIC_MASK: u32 = 0b11 << 8;
const SLTCTL_PIC_ON: u32 = 0b01 << 8;
const SLTCTL_PIC_OFF: u32 = 0b11 << 8;
const SLTCTL_PCC: u32 = 1 << 10;
/// Slot Status (upper half of the dword): attention button pressed, presence detect
/// changed, command completed, presence detect state.
const SLTSTA_ABP: u32 = 1 << 16;
const SLTSTA_PDC: u32 = 1 << 19;
const SLTSTA_CC: u32 = 1 << 20;
const SLTSTA_PDS: u32 = 1 << 22;

/// Memory window each root port gets (bridge windows have 1 MiB granularity; a
/// virtio-blk function needs ~20 KiB).
const PORT_WINDOW: u64 = 1 << 20;

/// One hotplug-capable root port.
pub struct Port {
    pub df: DeviceFunction,
    pub bus: u8,
    cap: u8,
    window: u64,
}

/// What a rescan found on one port.
pub enum SlotEvent {
    /// A function is present and powered on the secondary bus: `(bus, 0, 0)`.
    Present(DeviceFunction),
    /// The host asked to remove what is in the slot (attention button).
    EjectRequested,
    /// Nothing is in the slot.
    Empty,
}

impl Port {
    fn ctl_sta(&self) -> u32 {
        cam().read_word(self.df, self.cap + SLOT_CTL_STA)
    }

    /// Writes Slot Control; status bits written as 0 are left alone (RW1C), `clear`
    /// names status bits to acknowledge.
    fn write_ctl(&self, ctl: u32, clear: u32) {
        cam().write_word(self.df, self.cap + SLOT_CTL_STA, (ctl & 0xffff) | clear);
    }

    fn power_on(&self) {
        let v = self.ctl_sta();
        if v & SLTCTL_PCC != 0 || v & SLTCTL_PIC_MASK != SLTCTL_PIC_ON {
            self.write_ctl((v & !(SLTCTL_PCC | SLTCTL_PIC_MASK)) | SLTCTL_PIC_ON, 0);
        }
    }

    /// Powers the slot off; qemu detaches the device and emits DEVICE_DELETED.
    pub fn eject(&self) {
        let v = self.ctl_sta();
        self.write_ctl(v | SLTCTL_PCC | SLTCTL_PIC_OFF, 0);
    }

    /// Checks the slot: acknowledges events, powers a newly filled slot on. qemu presses
    /// the attention button both when a device is plugged and when `device_del` asks for
    /// its removal, so a press means "eject" only when the slot is `occupied` (a disk of
    /// ours is attached through it).
    pub fn poll(&self, occupied: bool) -> SlotEvent {
        let v = self.ctl_sta();
        let events = v & (SLTSTA_ABP | SLTSTA_PDC | SLTSTA_CC);
        if events != 0 {
            self.write_ctl(v, events);
        }
        if occupied && v & SLTSTA_ABP != 0 {
            return SlotEvent::EjectRequested;
        }
        if v & SLTSTA_PDS == 0 {
            return SlotEvent::Empty;
        }
        self.power_on();
        let df = DeviceFunction {
            bus: self.bus,
            device: 0,
            function: 0,
        };
        if cam().read_word(df, 0) & 0xffff == 0xffff {
            return SlotEvent::Empty;
        }
        SlotEvent::Present(df)
    }

    /// Assigns BARs for the function in this slot from the port's window.
    pub fn setup_function(&self, root: &mut PciRoot<Cam>, df: DeviceFunction) {
        let mut alloc = BarAllocator::with_window(self.window, self.window + PORT_WINDOW);
        assign_bars(root, &mut alloc, df);
    }
}

/// Finds the hotplug root ports on bus 0, numbers their buses, gives each a window from
/// `alloc` and powers their slots on.
pub fn init_ports(root: &mut PciRoot<Cam>, alloc: &mut BarAllocator) -> heapless::Vec<Port, 32> {
    let mut ports = heapless::Vec::new();
    let mut next_bus = 1u8;
    let bridges: heapless::Vec<DeviceFunction, 32> = root
        .enumerate_bus(0)
        .filter(|(_, info)| info.header_type == HeaderType::PciPciBridge)
        .map(|(df, _)| df)
        .take(32)
        .collect();
    for df in bridges {
        let Some(cap) = find_cap(df, CAP_ID_PCIE, Some) else {
            continue;
        };
        if cam().read_word(df, cap + SLOT_CAPS) & SLTCAP_HPC == 0 {
            continue;
        }
        let Some(window) = alloc.take_window(PORT_WINDOW) else {
            log!("pci {df}: no memory window left for this root port");
            continue;
        };
        let bus = next_bus;
        next_bus = next_bus.saturating_add(1);
        let mut cfg = cam();
        // Bus numbers: primary 0, secondary = subordinate = bus.
        let old = cfg.read_word(df, 0x18);
        cfg.write_word(
            df,
            0x18,
            (old & 0xff00_0000) | (u32::from(bus) << 16) | (u32::from(bus) << 8),
        );
        // Every write to a bridge's window or command registers makes qemu rebuild its
        // memory map (expensive under TCG), so write only what must change: the memory
        // window [window, window + 1 MiB), and the prefetchable window off (base > limit;
        // its upper halves reset to 0). The I/O window stays as reset: I/O decoding is
        // never enabled on the port.
        let base = ((window >> 16) & 0xfff0) as u32;
        let limit = (((window + PORT_WINDOW - 1) >> 16) & 0xfff0) as u32;
        cfg.write_word(df, 0x20, base | (limit << 16));
        if cfg.read_word(df, 0x24) != 0x0000_fff0 {
            cfg.write_word(df, 0x24, 0x0000_fff0);
        }
        let (_, cmd) = root.get_status_command(df);
        let want = cmd | Command::MEMORY_SPACE | Command::BUS_MASTER;
        if want != cmd {
            root.set_command(df, want);
        }
        let port = Port {
            df,
            bus,
            cap,
            window,
        };
        port.power_on();
        if ports.push(port).is_err() {
            break;
        }
    }
    ports
}
