//! The skiff appliance kernel: booted by `qemu -kernel` through its PVH note, it brings up
//! long mode, a heap, PCI and virtio, then serves the host's RPCs over virtio-console.
//! Everything that is not hardware lives in the portable `appliance` library.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel;

/// On the host this binary is an empty shell, so `cargo build`/`cargo test` of the
/// workspace works; the real kernel only exists for `x86_64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "appliance-kernel is a bare-metal kernel: build it with --target x86_64-unknown-none"
    );
    std::process::exit(2);
}
