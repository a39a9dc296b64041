//! PCI through port I/O configuration access (0xCF8/0xCFC). The appliance assigns BARs
//! itself — hot-added devices never have them, and it keeps us independent of the
//! firmware (qboot, SeaBIOS or none) — into a fixed 32-bit window below the IOAPIC.

use super::arch::{inl, outl};
use crate::log;
use heapless::Vec as HVec;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, HeaderType, MemoryBarType, PciRoot,
};
use virtio_drivers::transport::pci::virtio_device_type;

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Memory BARs go here: above q35's MMCONFIG (0xB000_0000..0xC000_0000) and below the
/// IOAPIC at 0xFEC0_0000; mapped uncached by the boot page tables.
const MEM_WINDOW: (u64, u64) = (0xC000_0000, 0xFEC0_0000);
/// I/O BARs go here.
const IO_WINDOW: (u32, u32) = (0xC000, 0x1_0000);

/// Most PCI functions the appliance tracks.
pub const MAX_FUNCTIONS: usize = 64;

/// Configuration access through the legacy 0xCF8/0xCFC port pair.
pub struct PortCam;

fn config_address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(df.bus) << 16)
        | (u32::from(df.device & 0x1f) << 11)
        | (u32::from(df.function & 0x7) << 8)
        | u32::from(offset & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        outl(CONFIG_ADDRESS, config_address(df, offset));
        inl(CONFIG_DATA)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        outl(CONFIG_ADDRESS, config_address(df, offset));
        outl(CONFIG_DATA, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// A virtio function found on the bus.
#[derive(Clone, Copy, Debug)]
pub struct VirtioFunction {
    pub df: DeviceFunction,
    pub kind: DeviceType,
}

/// Hands out BAR addresses from the fixed windows.
pub struct BarAllocator {
    mem_next: u64,
    mem_end: u64,
    io_next: u32,
}

impl BarAllocator {
    pub const fn new() -> Self {
        BarAllocator {
            mem_next: MEM_WINDOW.0,
            mem_end: MEM_WINDOW.1,
            io_next: IO_WINDOW.0,
        }
    }

    /// An allocator for memory BARs inside `[start, end)` only (a bridge window).
    pub const fn with_window(start: u64, end: u64) -> Self {
        BarAllocator {
            mem_next: start,
            mem_end: end,
            io_next: IO_WINDOW.1,
        }
    }

    /// Reserves a naturally aligned block of `size` bytes (a bridge window).
    pub fn take_window(&mut self, size: u64) -> Option<u64> {
        self.mem(size)
    }

    fn mem(&mut self, size: u64) -> Option<u64> {
        let align = size.max(0x1000);
        let start = self.mem_next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size)?;
        (end <= self.mem_end).then(|| {
            self.mem_next = end;
            start
        })
    }

    fn io(&mut self, size: u32) -> Option<u32> {
        let align = size.max(4);
        let start = self.io_next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size)?;
        (end <= IO_WINDOW.1).then(|| {
            self.io_next = end;
            start
        })
    }
}

/// (Re)assigns every BAR of one function and enables decoding and bus mastering.
pub fn assign_bars(root: &mut PciRoot<PortCam>, alloc: &mut BarAllocator, df: DeviceFunction) {
    let (_, cmd) = root.get_status_command(df);
    root.set_command(df, cmd & !(Command::IO_SPACE | Command::MEMORY_SPACE));
    let mut index = 0u8;
    while index < 6 {
        let info = match root.bar_info(df, index) {
            Ok(i) => i,
            Err(e) => {
                log!("pci {df}: BAR{index}: {e:?}");
                break;
            }
        };
        let step = if info.as_ref().is_some_and(BarInfo::takes_two_entries) {
            2
        } else {
            1
        };
        match info {
            Some(BarInfo::Memory {
                address_type, size, ..
            }) if size > 0 => match alloc.mem(size) {
                Some(addr) if address_type == MemoryBarType::Width64 => {
                    root.set_bar_64(df, index, addr)
                }
                // OK: the window lies below 4 GiB, so the address fits in 32 bits.
                Some(addr) => root.set_bar_32(df, index, addr as u32),
                None => log!("pci {df}: no room for BAR{index} ({size} bytes)"),
            },
            Some(BarInfo::IO { size, .. }) if size > 0 => match alloc.io(size) {
                Some(addr) => root.set_bar_32(df, index, addr),
                None => log!("pci {df}: no I/O room for BAR{index}"),
            },
            _ => {}
        }
        index += step;
    }
    root.set_command(
        df,
        cmd | Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
}

/// Walks bus 0, assigns BARs, and returns the virtio functions found.
pub fn scan(
    root: &mut PciRoot<PortCam>,
    alloc: &mut BarAllocator,
) -> HVec<VirtioFunction, MAX_FUNCTIONS> {
    let mut found = HVec::new();
    for (df, info) in root.enumerate_bus(0) {
        if info.header_type != HeaderType::Standard {
            continue;
        }
        let Some(kind) = virtio_device_type(&info) else {
            continue;
        };
        assign_bars(root, alloc, df);
        if found.push(VirtioFunction { df, kind }).is_err() {
            log!("pci: more than {MAX_FUNCTIONS} virtio functions; ignoring {df}");
        }
    }
    found
}

/// Walks the capability list of `df` (bounded: a looping list ends the walk) for
/// capability `id`; calls `f` with each match's offset until it returns `Some`.
pub fn find_cap<T>(df: DeviceFunction, id: u8, mut f: impl FnMut(u8) -> Option<T>) -> Option<T> {
    let cam = PortCam;
    let mut ptr = (cam.read_word(df, 0x34) & 0xfc) as u8;
    for _ in 0..48 {
        if ptr < 0x40 {
            return None;
        }
        let hdr = cam.read_word(df, ptr);
        if hdr as u8 == id
            && let Some(t) = f(ptr)
        {
            return Some(t);
        }
        ptr = ((hdr >> 8) & 0xfc) as u8;
    }
    None
}
