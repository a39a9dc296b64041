//! Bring-up and the serve loop: heap, PCI, virtio devices, `Hello`, then one request at a
//! time from the channel, dispatched to the portable [`Appliance`]. `Shutdown` and
//! `Rescan` touch hardware and are finished here.

use super::arch;
use super::boot::BootInfo;
use super::cmdline::{TestKnob, test_knob};
use super::console::{CHANNEL, Channel};
use super::hotplug::{self, Port, SlotEvent};
use super::irq;
use super::pci::{self, BarAllocator, Cam};
use super::virtio::{self, VirtioDisk};
use crate::log;
use alloc::string::String;
use alloc::vec::Vec;
use appliance::block::{BlockDevice, disk_name, shared};
use appliance::rpc::Appliance;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use wire::{Call, Error, ErrorKind, FrameReader, Hello, PROTOCOL_VERSION, Reply, Request, ToHost};

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
    let frame = match wire::encode_frame(msg) {
        Ok(f) => f,
        Err(_) => {
            // A reply too large for one frame (a huge listing): say so instead.
            let ToHost::Reply { id, .. } = msg else {
                return;
            };
            let Ok(f) = wire::encode_frame(&ToHost::Reply {
                id: *id,
                result: Err(Error::new(
                    ErrorKind::TooLarge,
                    "reply does not fit in one frame",
                )),
            }) else {
                return;
            };
            f
        }
    };
    if let Err(e) = virtio::send(&frame) {
        log!("channel send failed: {e}");
    }
}

fn reply(id: u64, result: Result<Reply, Error>) {
    send(&ToHost::Reply { id, result });
}

/// Answers `id` with `result`; file and device bytes go out without being encoded into
/// a frame (the prefix is, the data follows from the buffer the disk was read into),
/// and the buffer is handed back to `app` for the next read.
fn reply_to(app: &mut Appliance, id: u64, result: Result<Reply, Error>) {
    match result {
        Ok(Reply::Data(wire::Bytes(data))) => {
            match wire::data_reply_prefix(id, data.len()) {
                Ok(prefix) => {
                    if let Err(e) = virtio::send_parts(&[&prefix, &data]) {
                        log!("channel send failed: {e}");
                    }
                }
                Err(_) => reply(
                    id,
                    Err(Error::new(
                        ErrorKind::TooLarge,
                        "reply does not fit in one frame",
                    )),
                ),
            }
            app.recycle(data);
        }
        r => reply(id, r),
    }
}

/// Hardware state the serve loop keeps between requests.
struct Machine {
    root: PciRoot<Cam>,
    ports: heapless::Vec<Port, 32>,
    /// Disk slot attached through each port (same index as `ports`).
    port_disk: [Option<usize>; 32],
    app: Appliance,
}

impl Machine {
    /// Starts the virtio-blk driver for `df` and attaches it; returns its slot.
    fn attach_disk(&mut self, df: DeviceFunction) -> Option<usize> {
        let transport = PciTransport::new::<virtio::KernelHal, _>(&mut self.root, df)
            .map_err(|e| log!("virtio-blk {df}: {e}"))
            .ok()?;
        let mut d = VirtioDisk::new(transport, df)
            .map_err(|e| log!("virtio-blk {df}: {e}"))
            .ok()?;
        if !d.sleeps() {
            log!("virtio-blk {df}: no MSI-X, polling");
        }
        let slot = match slot_from_serial(&d.serial()) {
            Some(s) if self.app.device(&disk_name(s)).is_err() => s,
            _ => (0..).find(|&s| self.app.device(&disk_name(s)).is_err())?,
        };
        log!("disk {} at {df} ({} bytes)", disk_name(slot), d.size());
        self.app.set_disk(slot, shared(d));
        Some(slot)
    }

    /// Walks every hotplug port: attaches new disks, ejects those the host asked to
    /// remove (after flushing everything), forgets vanished ones.
    fn rescan(&mut self) {
        for i in 0..self.ports.len() {
            match self.ports[i].poll(self.port_disk[i].is_some()) {
                SlotEvent::Present(df) => {
                    if self.port_disk[i].is_none() {
                        self.ports[i].setup_function(&mut self.root, df);
                        self.port_disk[i] = self.attach_disk(df);
                    }
                }
                SlotEvent::EjectRequested => {
                    if let Some(slot) = self.port_disk[i].take() {
                        if let Err(e) = self.app.handle(Request::Sync) {
                            log!("sync before eject of {}: {e}", disk_name(slot));
                        }
                        self.app.remove_disk(slot);
                        log!("disk {} ejected", disk_name(slot));
                    }
                    self.ports[i].eject();
                }
                SlotEvent::Empty => {
                    if let Some(slot) = self.port_disk[i].take() {
                        self.app.remove_disk(slot);
                        log!("disk {} vanished", disk_name(slot));
                    }
                }
            }
        }
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

    let cam = pci::init();
    log!("pci: {cam:?} configuration access");
    let mut root = PciRoot::new(cam);
    let mut bars = BarAllocator::new(cam);
    let functions = pci::scan(&mut root, &mut bars);
    let ports = hotplug::init_ports(&mut root, &mut bars);
    let mut m = Machine {
        root,
        ports,
        port_disk: [None; 32],
        app: Appliance::new(),
    };

    irq::init_cpu();
    let mut console_up = false;
    let mut sleep_when_idle = false;
    for f in &functions {
        match f.kind {
            DeviceType::Block => {
                m.attach_disk(f.df);
            }
            DeviceType::Console if !console_up => {
                let channel = PciTransport::new::<virtio::KernelHal, _>(&mut m.root, f.df)
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
                    // Data and control messages (the host closing its end) wake the
                    // idle loop.
                    sleep_when_idle = irq::route_queue(f.df, super::console::DATA_RX)
                        && irq::route_queue(f.df, super::console::CTRL_RX);
                    if !sleep_when_idle {
                        log!("virtio-console {}: no MSI-X, polling", f.df);
                    }
                }
            }
            _ => {}
        }
    }
    // Disks cold-plugged behind root ports.
    m.rescan();
    if !console_up {
        panic!("no virtio console: the host channel is missing");
    }
    match knob {
        TestKnob::Panic => panic!("skiff.test=panic requested on the kernel command line"),
        // SAFETY: deliberately executes an invalid instruction (test knob); the trap
        // handler turns it into a panic.
        TestKnob::Fault => unsafe { core::arch::asm!("ud2") },
        TestKnob::StackOverflow => {
            let depth = recurse(0);
            log!("recursed {depth} levels without overflowing");
        }
        _ => {}
    }
    let version = if knob == TestKnob::BadVersion {
        PROTOCOL_VERSION + 1000
    } else {
        PROTOCOL_VERSION
    };
    send(&ToHost::Hello(Hello {
        version,
        devices: m.app.devices(),
    }));

    let mut reader = FrameReader::new();
    let mut frames: Vec<Vec<u8>> = Vec::new();
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
        let received = match got {
            Ok(n) => n,
            Err(e) => panic!("channel receive failed: {e}"),
        };
        // Requests from a client that has hung up are dropped unanswered: it can no
        // longer see their results, and each one it did see was complete.
        if virtio::host_closed() {
            frames.clear();
        }
        for body in frames.drain(..) {
            serve_one(&mut m, &body);
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
        if virtio::host_closed() {
            // The client is gone (killed, crashed, or hung up without Shutdown): nobody
            // will talk to this appliance again. Finish cleanly — sync and flush what
            // was written — and power off, so no qemu outlives its client.
            log!("the host hung up: syncing and powering off");
            if let Err(e) = m.app.handle(Request::Shutdown) {
                log!("shutdown after hang-up: {e}");
            }
            arch::exit(arch::EXIT_OK);
        }
        if received == 0 && sleep_when_idle {
            irq::wait();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Uses stack without bound (the `stack-overflow` test knob).
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = core::hint::black_box([n; 64]);
    if core::hint::black_box(n) == u64::MAX {
        return pad[0];
    }
    recurse(n + 1).wrapping_add(pad[1])
}

fn serve_one(m: &mut Machine, body: &[u8]) {
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
            let r = m.app.handle(Request::Shutdown);
            reply(call.id, r);
            arch::exit(arch::EXIT_OK);
        }
        Request::Rescan => {
            m.rescan();
            reply(call.id, Ok(Reply::Devices(m.app.devices())));
        }
        req => {
            let r = m.app.handle(req);
            reply_to(&mut m.app, call.id, r);
        }
    }
}
