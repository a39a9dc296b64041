//! The RPC channel: a virtio-console *multiport* driver (virtio spec 1.2 §5.3) for one
//! `virtserialport` at port 1. qemu throttles such a port when the host socket is full,
//! where port 0 (`virtconsole`) silently drops what does not fit — fatal for a framed
//! protocol — and virtio-drivers' console only speaks port 0. Polled; no interrupts.

use super::virtio::KernelHal;
use crate::log;
use bitflags::bitflags;
use spin::Mutex;
use virtio_drivers::queue::{OwningQueue, VirtQueue};
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::pci::PciTransport;

bitflags! {
    #[derive(Copy, Clone, Debug, Default, Eq, PartialEq)]
    struct Features: u64 {
        const MULTIPORT = 1 << 1;
        const VERSION_1 = 1 << 32;
    }
}

/// Queue numbers with MULTIPORT: port 0 rx/tx = 0/1, control rx/tx = 2/3, port n = 2n+2/2n+3.
pub const CTRL_RX: u16 = 2;
const CTRL_TX: u16 = 3;
/// The host's `-device virtserialport,nr=1`.
pub const RPC_PORT: u32 = 1;
pub const DATA_RX: u16 = 2 * RPC_PORT as u16 + 2;
const DATA_TX: u16 = 2 * RPC_PORT as u16 + 3;

// Control events (§5.3.6.2).
const DEVICE_READY: u16 = 0;
const DEVICE_ADD: u16 = 1;
const PORT_READY: u16 = 3;
const PORT_OPEN: u16 = 6;

const RX_BUFFERS: usize = 16;
const RX_BUFFER_SIZE: usize = 64 * 1024;
const TX_CHUNK: usize = 256 * 1024;
/// Largest data reply sent as one descriptor chain (a whole wire chunk and its prefix;
/// qemu throttles the port and resumes mid-chain when the host socket is full).
const SG_CHUNK: usize = 2 << 20;

#[derive(Debug)]
pub enum ConsoleError {
    Virtio(virtio_drivers::Error),
    NoPort,
}

impl From<virtio_drivers::Error> for ConsoleError {
    fn from(e: virtio_drivers::Error) -> Self {
        ConsoleError::Virtio(e)
    }
}

impl core::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConsoleError::Virtio(e) => write!(f, "virtio: {e}"),
            ConsoleError::NoPort => write!(f, "the host did not announce port {RPC_PORT}"),
        }
    }
}

/// What the host end of the RPC port is, as qemu's control messages say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEnd {
    /// No PORT_OPEN from the host yet.
    Unknown,
    Open,
    /// The host closed its end (the client died or hung up): nobody will ever talk to
    /// this appliance again.
    Closed,
}

pub struct Channel {
    /// The host's side of the RPC port.
    pub host: HostEnd,
    transport: PciTransport,
    ctrl_rx: OwningQueue<KernelHal, 8, 256>,
    ctrl_tx: VirtQueue<KernelHal, 8>,
    rx: OwningQueue<KernelHal, RX_BUFFERS, RX_BUFFER_SIZE>,
    tx: VirtQueue<KernelHal, 8>,
}

/// (port id, event, value) of a control message (§5.3.6.2 `virtio_console_control`).
fn parse_control(m: &[u8]) -> Option<(u32, u16, u16)> {
    let b = m.get(..8)?;
    Some((
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
    ))
}

fn control(id: u32, event: u16, value: u16) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&id.to_le_bytes());
    m[4..6].copy_from_slice(&event.to_le_bytes());
    m[6..].copy_from_slice(&value.to_le_bytes());
    m
}

impl Channel {
    /// Negotiates MULTIPORT, sets up the control and port-1 queues and opens the port.
    pub fn new(mut transport: PciTransport) -> Result<Channel, ConsoleError> {
        let features = transport.begin_init(Features::MULTIPORT | Features::VERSION_1);
        if !features.contains(Features::MULTIPORT) {
            return Err(ConsoleError::NoPort);
        }
        let ctrl_rx = OwningQueue::new(VirtQueue::new(&mut transport, CTRL_RX, false, false)?)?;
        let ctrl_tx = VirtQueue::new(&mut transport, CTRL_TX, false, false)?;
        let rx = OwningQueue::new(VirtQueue::new(&mut transport, DATA_RX, false, false)?)?;
        let tx = VirtQueue::new(&mut transport, DATA_TX, false, false)?;
        transport.finish_init();
        let mut ch = Channel {
            host: HostEnd::Unknown,
            transport,
            ctrl_rx,
            ctrl_tx,
            rx,
            tx,
        };
        // The receive buffers were queued before DRIVER_OK: tell the device now.
        ch.transport.notify(CTRL_RX);
        ch.transport.notify(DATA_RX);
        ch.send_control(0, DEVICE_READY, 1)?;
        // qemu announces its ports right after DEVICE_READY, and answers our PORT_READY
        // with PORT_OPEN when its end (the socket to the host) is connected. The
        // handshake is bounded; a host already gone never sends PORT_OPEN.
        let mut ready = false;
        for _ in 0..10_000_000u32 {
            let mut added = None;
            let mut host = ch.host;
            ch.ctrl_rx.poll(&mut ch.transport, |m| {
                if let Some((id, event, value)) = parse_control(m) {
                    if event == DEVICE_ADD {
                        added = Some(id);
                    } else if id == RPC_PORT && event == PORT_OPEN {
                        host = if value == 0 {
                            HostEnd::Closed
                        } else {
                            HostEnd::Open
                        };
                    }
                }
                Ok(Some(()))
            })?;
            ch.host = host;
            if let Some(id) = added {
                ch.send_control(id, PORT_READY, u16::from(id == RPC_PORT))?;
                if id == RPC_PORT {
                    ch.send_control(id, PORT_OPEN, 1)?;
                    ready = true;
                }
            }
            if ready && ch.host != HostEnd::Unknown {
                break;
            }
            core::hint::spin_loop();
        }
        if !ready {
            return Err(ConsoleError::NoPort);
        }
        if ch.host == HostEnd::Unknown {
            // qemu answers PORT_READY at once when the host is there: it is not.
            log!("the host end of the channel is not connected");
            ch.host = HostEnd::Closed;
        }
        Ok(ch)
    }

    fn send_control(&mut self, id: u32, event: u16, value: u16) -> Result<(), ConsoleError> {
        let m = control(id, event, value);
        self.ctrl_tx
            .add_notify_wait_pop(&[&m], &mut [], &mut self.transport)?;
        Ok(())
    }

    /// Sends bytes to the host; blocks while qemu throttles the port (the host is slow).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        for chunk in bytes.chunks(TX_CHUNK) {
            self.tx
                .add_notify_wait_pop(&[chunk], &mut [], &mut self.transport)?;
        }
        Ok(())
    }

    /// Sends the concatenation of `parts`, each from where it lies (qemu copies it out
    /// of guest memory; the appliance copies nothing).
    pub fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), ConsoleError> {
        // Two parts of at most a chunk each (a data reply: prefix and 1 MiB) go as one
        // descriptor chain: one notify and one wait instead of one per piece.
        // (virtio-drivers refuses empty descriptors: an empty part goes the other way.)
        if let [a, b] = parts
            && !a.is_empty()
            && !b.is_empty()
            && a.len() + b.len() <= SG_CHUNK
        {
            self.tx
                .add_notify_wait_pop(&[a, b], &mut [], &mut self.transport)?;
            return Ok(());
        }
        for p in parts {
            self.send(p)?;
        }
        Ok(())
    }

    /// Hands every received buffer to `sink`, without blocking. Control messages (the host
    /// closing the port, ...) are consumed and logged. Returns the bytes delivered.
    pub fn recv(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<usize, ConsoleError> {
        let mut total = 0;
        while let Some(n) = self.rx.poll(&mut self.transport, |buf| {
            sink(buf);
            Ok(Some(buf.len()))
        })? {
            total += n;
        }
        let mut host = self.host;
        self.ctrl_rx.poll(&mut self.transport, |m| {
            if let Some((id, event, value)) = parse_control(m)
                && id == RPC_PORT
                && event == PORT_OPEN
            {
                if value == 0 {
                    log!("host closed the channel");
                    host = HostEnd::Closed;
                } else {
                    host = HostEnd::Open;
                }
            }
            Ok(Some(()))
        })?;
        self.host = host;
        Ok(total)
    }
}

/// The channel, behind a lock only so the panic handler can reach it.
pub static CHANNEL: Mutex<Option<Channel>> = Mutex::new(None);
