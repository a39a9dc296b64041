//! Panics: the message goes to the host as a last `ToHost::Panic` frame (when the console
//! is up) and to the debug console, then qemu exits with [`arch::EXIT_PANIC`].

use super::arch;
use super::virtio;
use crate::log;
use alloc::string::String;
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A panic while reporting a panic: just stop.
        arch::exit(arch::EXIT_PANIC);
    }
    log!("appliance panic: {}", info);
    let mut msg = String::new();
    let _ = write!(msg, "{}", info);
    virtio::send_panic(&msg);
    arch::exit(arch::EXIT_PANIC)
}
