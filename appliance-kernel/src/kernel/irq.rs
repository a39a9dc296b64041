//! Sleeping instead of spinning while the host is quiet: the RPC port's receive queue
//! raises an MSI-X interrupt (PCI 3.0 §6.8.2; virtio 1.2 §4.1.4.3 `queue_msix_vector`) to
//! the local APIC, and the serve loop waits in `sti; hlt`. Without this an idle appliance
//! keeps a host core busy. The legacy 8259 PICs are masked so nothing else arrives.

use super::arch::outb;
use super::pci::{cam, find_cap};
use super::traps::{SPURIOUS_VECTOR, WAKE_VECTOR};
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

const LAPIC_BASE: u64 = 0xFEE0_0000;
const LAPIC_SVR: u64 = LAPIC_BASE + 0xF0;
const CAP_ID_MSIX: u8 = 0x11;
const CAP_ID_VENDOR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// Offsets in virtio's common configuration structure.
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1A;
const NO_VECTOR: u16 = 0xFFFF;

/// Masks both 8259 PICs (their timer would otherwise arrive as vector 8) and enables the
/// local APIC with its spurious vector.
pub fn init_cpu() {
    outb(0x21, 0xff);
    outb(0xA1, 0xff);
    // SAFETY: the local APIC's registers are at their architectural default address,
    // identity mapped uncached by the boot page tables; SVR accepts this value.
    unsafe {
        let svr = read_volatile(LAPIC_SVR as *const u32);
        write_volatile(
            LAPIC_SVR as *mut u32,
            (svr & !0xff) | 0x100 | u32::from(SPURIOUS_VECTOR),
        );
    }
}

/// The memory address a (32- or 64-bit) memory BAR was assigned.
fn bar_address(df: DeviceFunction, bar: u8) -> Option<u64> {
    if bar > 5 {
        return None;
    }
    let lo = cam().read_word(df, 0x10 + 4 * bar);
    if lo & 1 != 0 {
        return None;
    }
    let hi = if lo & 0b110 == 0b100 && bar < 5 {
        cam().read_word(df, 0x14 + 4 * bar)
    } else {
        0
    };
    let addr = (u64::from(hi) << 32) | u64::from(lo & !0xf);
    (addr != 0 && addr < (4 << 30)).then_some(addr)
}

/// Routes used-buffer notifications of virtqueue `queue` of the virtio function `df` to
/// [`WAKE_VECTOR`] through MSI-X table entry 0. Returns false (the caller keeps polling)
/// when the device lacks MSI-X or refuses the vector.
pub fn route_queue(df: DeviceFunction, queue: u16) -> bool {
    let Some((msix_cap, table)) = find_cap(df, CAP_ID_MSIX, |cap| {
        let t = cam().read_word(df, cap + 4);
        Some((cap, bar_address(df, (t & 7) as u8)? + u64::from(t & !7)))
    }) else {
        return false;
    };
    let Some(common) = find_cap(df, CAP_ID_VENDOR, |cap| {
        let w = cam().read_word(df, cap);
        if (w >> 24) as u8 != VIRTIO_PCI_CAP_COMMON_CFG {
            return None;
        }
        let bar = cam().read_word(df, cap + 4) as u8;
        let offset = cam().read_word(df, cap + 8);
        Some(bar_address(df, bar)? + u64::from(offset))
    }) else {
        return false;
    };
    // SAFETY: `table` and `common` lie in BARs this kernel assigned inside the identity-
    // mapped, uncached MMIO window; the writes follow the MSI-X table entry layout (address
    // low/high, data, vector control) and virtio's common configuration layout.
    let vector = unsafe {
        write_volatile(table as *mut u32, LAPIC_BASE as u32);
        write_volatile((table + 4) as *mut u32, 0);
        write_volatile((table + 8) as *mut u32, u32::from(WAKE_VECTOR));
        write_volatile((table + 12) as *mut u32, 0);
        write_volatile((common + COMMON_QUEUE_SELECT) as *mut u16, queue);
        write_volatile((common + COMMON_QUEUE_MSIX_VECTOR) as *mut u16, 0);
        read_volatile((common + COMMON_QUEUE_MSIX_VECTOR) as *const u16)
    };
    if vector == NO_VECTOR {
        return false;
    }
    // Enable MSI-X (message control bit 15, function mask bit 14 clear).
    let mut cfg = cam();
    let ctl = cfg.read_word(df, msix_cap);
    cfg.write_word(df, msix_cap, (ctl & !(1 << 30)) | (1 << 31));
    true
}

/// Sleeps until an interrupt arrives. `sti; hlt` is atomic with respect to interrupts
/// (the `sti` shadow), so a notification that raced with the caller's last check still
/// wakes it; interrupts are off again on return.
pub fn wait() {
    // SAFETY: only the wake-up and spurious vectors can arrive (PICs masked, exceptions
    // aside); their handlers just acknowledge and return.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
