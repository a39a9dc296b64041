//! Bring-up and the serve loop: heap, PCI, virtio devices, `Hello`, then one request at a
//! time from the console, dispatched to the portable [`Appliance`].

use super::arch;
use super::boot::BootInfo;
use super::cmdline::{TestKnob, test_knob};
use super::console::{CHANNEL, Channel};
use super::pci::{self, BarAllocator, PortCam};
use super::virtio::{self, VirtioDisk};
use crate::log;
use alloc::string::String;
use appliance::block::{BlockDevice, shared};
use appliance::rpc::Appliance;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::PciRoot;
use wire::{Call, Error, ErrorKind, FrameReader, Hello, PROTOCOL_VERSION, Request, ToHost};

/// The disk slot a virtio serial names: `skiff<N>`.
fn slot_from_serial(serial: &[u8]) -> Option<usize> {
    let digits = serial.strip_prefix(b"skiff")?;
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    Some(n)
}

fn send(msg: &ToHost) {
    match wire::encode_frame(msg) {
        Ok(frame) => {
            if let Err(e) = virtio::send(&frame) {
                log!("console send failed: {e}");
            }
        }
        Err(e) => log!("cannot encode reply: {e}"),
    }
}

fn reply(id: u64, result: Result<wire::Reply, Error>) {
    let frame = wire::encode_frame(&ToHost::Reply { id, result });
    match frame {
        Ok(f) => {
            if let Err(e) = virtio::send(&f) {
                log!("console send failed: {e}");
            }
        }
        // A reply too large for one frame (a huge directory listing): say so instead.
        Err(_) => send(&ToHost::Reply {
            id,
            result: Err(Error::new(
                ErrorKind::TooLarge,
                "reply does not fit in one frame",
            )),
        }),
    }
}

pub fn main(info: Option<BootInfo>) -> ! {
    let cmdline = info.as_ref().map(|i| &i.cmdline[..]).unwrap_or(&[]);
    let knob = test_knob(cmdline);
    if knob == TestKnob::ExitAtOnce {
        arch::exit(arch::EXIT_OK);
    }
    let ram = info.as_ref().map(|i| &i.ram[..]).unwrap_or(&[]);
    let heap = super::heap::init(ram);
    log!(
        "skiff appliance: heap {:#x}+{} MiB",
        heap.start,
        heap.len >> 20
    );

    let mut root = PciRoot::new(PortCam);
    let mut bars = BarAllocator::new();
    let functions = pci::scan(&mut root, &mut bars);
    log!("pci scan done: {} virtio functions", functions.len());

    let mut app = Appliance::new();
    let mut next_slot = 0usize;
    let mut console_up = false;
    for f in &functions {
        match f.kind {
            DeviceType::Block => {
                let transport = match PciTransport::new::<virtio::KernelHal, _>(&mut root, f.df) {
                    Ok(t) => t,
                    Err(e) => {
                        log!("virtio-blk {}: {e}", f.df);
                        continue;
                    }
                };
                match VirtioDisk::new(transport) {
                    Ok(mut d) => {
                        let slot = slot_from_serial(&d.serial()).unwrap_or_else(|| {
                            while app.device(&appliance::block::disk_name(next_slot)).is_ok() {
                                next_slot += 1;
                            }
                            next_slot
                        });
                        log!(
                            "disk {}: {} at {} ({} bytes)",
                            slot,
                            f.df,
                            appliance::block::disk_name(slot),
                            d.size()
                        );
                        app.set_disk(slot, shared(d));
                    }
                    Err(e) => log!("virtio-blk {}: {e}", f.df),
                }
            }
            DeviceType::Console if !console_up => {
                let channel = PciTransport::new::<virtio::KernelHal, _>(&mut root, f.df)
                    .map_err(|e| log!("virtio-console {}: {e}", f.df))
                    .ok()
                    .and_then(|t| {
                        Channel::new(t)
                            .map_err(|e| log!("virtio-console {}: {e}", f.df))
                            .ok()
                    });
                if let Some(c) = channel {
                    *CHANNEL.lock() = Some(c);
                    console_up = true;
                }
            }
            _ => {}
        }
    }
    if !console_up {
        panic!("no virtio console: the host channel is missing");
    }
    if knob == TestKnob::Panic {
        panic!("skiff.test=panic requested on the kernel command line");
    }
    let version = if knob == TestKnob::BadVersion {
        PROTOCOL_VERSION + 1000
    } else {
        PROTOCOL_VERSION
    };
    send(&ToHost::Hello(Hello {
        version,
        devices: app.devices(),
    }));

    let mut reader = FrameReader::new();
    let mut frames: alloc::vec::Vec<alloc::vec::Vec<u8>> = alloc::vec::Vec::new();
    loop {
        let mut desync = false;
        let got = virtio::recv(&mut |mut input: &[u8]| {
            while !input.is_empty() && !desync {
                match reader.push(input) {
                    Ok((used, body)) => {
                        input = &input[used..];
                        frames.extend(body);
                    }
                    Err(e) => {
                        log!("bad frame from host: {e}");
                        desync = true;
                    }
                }
            }
        });
        if let Err(e) = got {
            panic!("console receive failed: {e}");
        }
        for body in frames.drain(..) {
            serve_one(&mut app, &body);
        }
        if desync {
            // The stream is out of sync: no way to find the next frame boundary. Report it
            // and start over with whatever arrives next.
            reply(
                0,
                Err(Error::new(
                    ErrorKind::InvalidArgument,
                    String::from("bad frame"),
                )),
            );
            reader = FrameReader::new();
        }
        core::hint::spin_loop();
    }
}

fn serve_one(app: &mut Appliance, body: &[u8]) {
    let call: Call = match wire::decode(body) {
        Ok(c) => c,
        Err(e) => {
            log!("malformed request: {e}");
            reply(
                0,
                Err(Error::new(ErrorKind::InvalidArgument, "malformed request")),
            );
            return;
        }
    };
    match call.request {
        Request::Shutdown => {
            let r = app.handle(Request::Shutdown);
            reply(call.id, r);
            arch::exit(arch::EXIT_OK);
        }
        req => {
            let r = app.handle(req);
            reply(call.id, r);
        }
    }
}
