//! PCI configuration access and BAR assignment. Two PCI hosts are supported, told apart
//! at boot by [`init`]: q35's (port I/O configuration access through 0xCF8/0xCFC) and
//! microvm's GPEX (`-machine microvm,pcie=on`: ECAM only, memory-mapped at
//! [`ECAM_BASE`]). The appliance assigns BARs itself — hot-added devices never have them,
//! and it keeps us independent of the firmware (qboot, SeaBIOS or none) — into a fixed
//! 32-bit window that depends on the host.

use super::arch::{inl, outl};
use crate::log;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};
use heapless::Vec as HVec;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, HeaderType, MemoryBarType, PciRoot,
};
use virtio_drivers::transport::pci::virtio_device_type;

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// microvm's ECAM (qemu include/hw/i386/microvm.h, `PCIE_ECAM_BASE`/`PCIE_ECAM_SIZE`):
/// 256 buses of 1 MiB, `bus << 20 | device << 15 | function << 12 | register`. Inside the
/// top GiB, which the boot page tables map uncached.
const ECAM_BASE: u64 = 0xE000_0000;

/// q35: memory BARs above its MMCONFIG (0xB000_0000..0xC000_0000) and below the IOAPIC
/// at 0xFEC0_0000; I/O BARs at 0xC000.. . Mapped uncached by the boot page tables.
const Q35_MEM_WINDOW: (u64, u64) = (0xC000_0000, 0xFEC0_0000);
const Q35_IO_WINDOW: (u32, u32) = (0xC000, 0x1_0000);
/// microvm: GPEX's 32-bit MMIO window (`PCIE_MMIO_BASE`, `PCIE_MMIO_SIZE`), right below
/// the ECAM. GPEX has no I/O port window there (`x-pio-size` 0), so I/O BARs stay
/// unassigned; virtio's modern interface needs only memory BARs. (Its 64-bit window, the
/// top quarter of the physical address space, lies outside the 4 GiB identity map.)
const MICROVM_MEM_WINDOW: (u64, u64) = (0xC000_0000, 0xE000_0000);

/// The host bridge, 00:00.0, on both machines.
const HOST_BRIDGE: DeviceFunction = DeviceFunction {
    bus: 0,
    device: 0,
    function: 0,
};

/// Most PCI functions the appliance tracks.
pub const MAX_FUNCTIONS: usize = 64;

/// How configuration space is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cam {
    /// The legacy 0xCF8/0xCFC port pair (q35).
    Port,
    /// Memory-mapped ECAM at [`ECAM_BASE`] (microvm's GPEX).
    Ecam,
}

/// Set once by [`init`]: the machine has ECAM only.
static USE_ECAM: AtomicBool = AtomicBool::new(false);

/// Finds how to reach configuration space: through ports when a host bridge answers there
/// (q35), else through microvm's ECAM when one answers there. With neither, ports (the bus
/// then looks empty). Call once, before anything else touches PCI.
pub fn init() -> Cam {
    let present = |cam: Cam| {
        let vendor = cam.read_word(HOST_BRIDGE, 0) & 0xffff;
        vendor != 0xffff && vendor != 0
    };
    let found = if present(Cam::Port) {
        Cam::Port
    } else if present(Cam::Ecam) {
        Cam::Ecam
    } else {
        Cam::Port
    };
    USE_ECAM.store(found == Cam::Ecam, Ordering::Relaxed);
    found
}

/// The configuration access [`init`] chose.
pub fn cam() -> Cam {
    if USE_ECAM.load(Ordering::Relaxed) {
        Cam::Ecam
    } else {
        Cam::Port
    }
}

fn config_address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(df.bus) << 16)
        | (u32::from(df.device & 0x1f) << 11)
        | (u32::from(df.function & 0x7) << 8)
        | u32::from(offset & 0xfc)
}

/// The ECAM address of one configuration dword (always inside the 256 MiB at ECAM_BASE).
fn ecam_address(df: DeviceFunction, offset: u8) -> u64 {
    ECAM_BASE
        | (u64::from(df.bus) << 20)
        | (u64::from(df.device & 0x1f) << 15)
        | (u64::from(df.function & 0x7) << 12)
        | u64::from(offset & 0xfc)
}

impl ConfigurationAccess for Cam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        match self {
            Cam::Port => {
                outl(CONFIG_ADDRESS, config_address(df, offset));
                inl(CONFIG_DATA)
            }
            // SAFETY: an aligned dword inside the ECAM region, identity mapped uncached by
            // the boot page tables; configuration reads have no side effects on memory.
            Cam::Ecam => unsafe { read_volatile(ecam_address(df, offset) as *const u32) },
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        match self {
            Cam::Port => {
                outl(CONFIG_ADDRESS, config_address(df, offset));
                outl(CONFIG_DATA, data);
            }
            // SAFETY: as in `read_word`; the ECAM region is device memory, never RAM the
            // kernel uses, so the write affects only the device's configuration space.
            Cam::Ecam => unsafe { write_volatile(ecam_address(df, offset) as *mut u32, data) },
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
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
    io_end: u32,
}

impl BarAllocator {
    /// An allocator over the whole window of the machine `cam` belongs to.
    pub const fn new(cam: Cam) -> Self {
        let ((mem_next, mem_end), (io_next, io_end)) = match cam {
            Cam::Port => (Q35_MEM_WINDOW, Q35_IO_WINDOW),
            Cam::Ecam => (MICROVM_MEM_WINDOW, (0, 0)),
        };
        BarAllocator {
            mem_next,
            mem_end,
            io_next,
            io_end,
        }
    }

    /// An allocator for memory BARs inside `[start, end)` only (a bridge window).
    pub const fn with_window(start: u64, end: u64) -> Self {
        BarAllocator {
            mem_next: start,
            mem_end: end,
            io_next: 0,
            io_end: 0,
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

    /// Does this allocator hand out I/O ports at all?
    fn has_io(&self) -> bool {
        self.io_end > 0
    }

    fn io(&mut self, size: u32) -> Option<u32> {
        let align = size.max(4);
        let start = self.io_next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size)?;
        (end <= self.io_end).then(|| {
            self.io_next = end;
            start
        })
    }
}

/// (Re)assigns every BAR of one function and enables decoding and bus mastering.
/// An allocator without an I/O window (a bridge window, or microvm) leaves I/O BARs alone
/// and I/O decoding off.
pub fn assign_bars(root: &mut PciRoot<Cam>, alloc: &mut BarAllocator, df: DeviceFunction) {
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
            Some(BarInfo::IO { size, .. }) if size > 0 && alloc.has_io() => match alloc.io(size) {
                Some(addr) => root.set_bar_32(df, index, addr),
                None => log!("pci {df}: no I/O room for BAR{index}"),
            },
            _ => {}
        }
        index += step;
    }
    let io = if alloc.has_io() {
        Command::IO_SPACE
    } else {
        Command::empty()
    };
    root.set_command(
        df,
        (cmd - Command::IO_SPACE) | io | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
}

/// Walks bus 0, assigns BARs, and returns the virtio functions found.
pub fn scan(
    root: &mut PciRoot<Cam>,
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
    let cfg = cam();
    let mut ptr = (cfg.read_word(df, 0x34) & 0xfc) as u8;
    for _ in 0..48 {
        if ptr < 0x40 {
            return None;
        }
        let hdr = cfg.read_word(df, ptr);
        if hdr as u8 == id
            && let Some(t) = f(ptr)
        {
            return Some(t);
        }
        ptr = ((hdr >> 8) & 0xfc) as u8;
    }
    None
}
