//! x86 port I/O, the debug console (port 0xe9, qemu `isa-debugcon`) and power-off through
//! qemu's `isa-debug-exit` (port 0xf4: qemu exits with status `(value << 1) | 1`).

use core::arch::asm;
use core::fmt;

const DEBUGCON: u16 = 0xe9;
const DEBUG_EXIT: u16 = 0xf4;

/// qemu exit status 33: a clean shutdown.
pub const EXIT_OK: u8 = 0x10;
/// qemu exit status 35: the appliance panicked.
pub const EXIT_PANIC: u8 = 0x11;

pub fn outb(port: u16, v: u8) {
    // SAFETY: port writes have no memory effects; the ports used here are qemu's debug
    // devices and PCI configuration ports, which the appliance owns.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: port reads have no memory effects (PCI configuration data port).
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Powers the machine off; qemu exits with `(code << 1) | 1`.
pub fn exit(code: u8) -> ! {
    outb(DEBUG_EXIT, code);
    // Without the exit device (a misconfigured profile), stop here for good.
    loop {
        // SAFETY: cli/hlt only stop this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Writes to the debug console (the appliance log the host shows with `--verbose`).
pub struct DebugCon;

impl fmt::Write for DebugCon {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            outb(DEBUGCON, b);
        }
        Ok(())
    }
}

/// `log!("...")`: one line on the debug console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::kernel::arch::DebugCon, $($arg)*);
    }};
}
