//! virtio through `virtio-drivers`: the DMA `Hal` (trivial under the identity map), block
//! devices adapted to the portable [`BlockDevice`] trait, and access to the RPC channel
//! ([`super::console`]).

use super::console::{CHANNEL, ConsoleError};
use super::irq;
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use appliance::block::{BlockDevice, ReadAhead, SECTOR, check_range};
use core::ptr::NonNull;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::DeviceFunction;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};
use wire::{Error, ErrorKind};

/// DMA for virtio: heap pages, physical == virtual.
pub struct KernelHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: dma_alloc returns zeroed, page-aligned, exclusively owned heap memory whose
// physical address equals its virtual address (identity map); mmio_phys_to_virt returns
// the identity-mapped BAR address; share/unshare need no bounce buffers for the same reason.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the layout has a non-zero size (pages >= 1 for every virtio queue).
        let ptr = unsafe { alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(p) => (ptr as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        if let Some(layout) = dma_layout(pages) {
            // SAFETY: per the trait contract, vaddr/pages come from dma_alloc above.
            unsafe { dealloc(vaddr.as_ptr(), layout) };
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // BARs are assigned inside the identity-mapped 32-bit window, never at 0.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Largest single virtio-blk request.
const MAX_IO: usize = 1 << 20;
/// Sequential read-ahead window: from this size ...
const READAHEAD_MIN: usize = 64 << 10;
/// ... doubling up to this one.
const READAHEAD_MAX: usize = 1 << 20;

fn io_err(what: &str, e: virtio_drivers::Error) -> Error {
    Error::new(ErrorKind::Io, format!("virtio-blk {what}: {e}"))
}

/// The virtio-blk driver plus how to wait for its completions.
struct Blk {
    dev: VirtIOBlk<KernelHal, PciTransport>,
    /// Queue 0's used-buffer notifications arrive as the wake-up interrupt ([`irq`]), so a
    /// request in flight is awaited in `hlt` instead of by spinning, which would keep a host
    /// core busy for as long as the host takes to serve the request.
    sleeps: bool,
}

impl Blk {
    /// Waits until the device has put a request on the used ring. Only one request is ever in
    /// flight, so the caller's `complete_*` pops exactly its own (and reports `WrongToken`
    /// rather than hanging if that ever changes).
    fn wait_used(&mut self) {
        while self.dev.peek_used().is_none() {
            if self.sleeps {
                // Interrupts are off outside `wait`, so a completion that lands after the check
                // above stays pending in the local APIC and ends the `hlt` at once.
                irq::wait();
            } else {
                core::hint::spin_loop();
            }
        }
    }

    fn read_blocks(
        &mut self,
        block_id: usize,
        buf: &mut [u8],
    ) -> Result<(), virtio_drivers::Error> {
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        // SAFETY: `req`, `buf` and `resp` are neither read, written nor moved until
        // `complete_read_blocks` below has popped the request (this function does not return
        // in between, and `wait_used` touches only the used ring).
        let token = unsafe {
            self.dev
                .read_blocks_nb(block_id, &mut req, buf, &mut resp)?
        };
        self.wait_used();
        // SAFETY: the same `req`, `buf` and `resp` that `read_blocks_nb` queued for `token`.
        unsafe { self.dev.complete_read_blocks(token, &req, buf, &mut resp) }
    }

    fn write_blocks(&mut self, block_id: usize, buf: &[u8]) -> Result<(), virtio_drivers::Error> {
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        // SAFETY: `req`, `buf` and `resp` are neither read, written nor moved until
        // `complete_write_blocks` below has popped the request (this function does not return
        // in between, and `wait_used` touches only the used ring).
        let token = unsafe {
            self.dev
                .write_blocks_nb(block_id, &mut req, buf, &mut resp)?
        };
        self.wait_used();
        // SAFETY: the same `req`, `buf` and `resp` that `write_blocks_nb` queued for `token`.
        unsafe { self.dev.complete_write_blocks(token, &req, buf, &mut resp) }
    }
}

/// One virtio-blk disk as a byte-addressed [`BlockDevice`].
pub struct VirtioDisk {
    blk: Blk,
    size: u64,
    readonly: bool,
    /// Filesystems read one block at a time; this turns a sequential run of them into
    /// a few large requests. Every write goes through `write_at`, which invalidates it.
    readahead: ReadAhead,
}

impl VirtioDisk {
    /// Starts the driver on `transport` (PCI function `df`) and routes its request queue's
    /// completions to the wake-up vector; without MSI-X the disk is polled.
    pub fn new(transport: PciTransport, df: DeviceFunction) -> Result<Self, virtio_drivers::Error> {
        let dev = VirtIOBlk::new(transport)?;
        let size = dev.capacity().saturating_mul(SECTOR);
        let readonly = dev.readonly();
        // Queue 0 is virtio-blk's only request queue (virtio 1.2 §5.2.2).
        let sleeps = irq::route_queue(df, 0);
        Ok(VirtioDisk {
            blk: Blk { dev, sleeps },
            size,
            readonly,
            readahead: ReadAhead::new(READAHEAD_MIN, READAHEAD_MAX),
        })
    }

    /// False when the disk's completions are polled (no MSI-X routing).
    pub fn sleeps(&self) -> bool {
        self.blk.sleeps
    }

    /// The virtio serial (`serial=` on qemu's command line), up to 20 bytes.
    pub fn serial(&mut self) -> Vec<u8> {
        let mut id = [0u8; 20];
        match self.blk.dev.device_id(&mut id) {
            Ok(n) => id[..n.min(20)].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        read_sectors(&mut self.blk, sector, buf)
    }

    fn write_sectors(&mut self, sector: u64, buf: &[u8]) -> Result<(), Error> {
        self.readahead
            .invalidate(sector.saturating_mul(SECTOR), buf.len());
        for (i, chunk) in buf.chunks(MAX_IO).enumerate() {
            let s = sector + (i * MAX_IO) as u64 / SECTOR;
            self.blk
                .write_blocks(s as usize, chunk)
                .map_err(|e| io_err("write", e))?;
        }
        Ok(())
    }
}

/// Reads whole sectors, in requests of at most [`MAX_IO`] bytes.
fn read_sectors(blk: &mut Blk, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
    for (i, chunk) in buf.chunks_mut(MAX_IO).enumerate() {
        let s = sector + (i * MAX_IO) as u64 / SECTOR;
        blk.read_blocks(s as usize, chunk)
            .map_err(|e| io_err("read", e))?;
    }
    Ok(())
}

/// Reads any byte range (inside the device) straight from it: unaligned ranges through
/// a bounce buffer of the covering sectors.
fn read_bytes(blk: &mut Blk, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
    if buf.is_empty() {
        return Ok(());
    }
    if offset.is_multiple_of(SECTOR) && (buf.len() as u64).is_multiple_of(SECTOR) {
        return read_sectors(blk, offset / SECTOR, buf);
    }
    let first = offset / SECTOR;
    let end = (offset + buf.len() as u64).div_ceil(SECTOR);
    let mut tmp = vec![0u8; ((end - first) * SECTOR) as usize];
    read_sectors(blk, first, &mut tmp)?;
    let skip = (offset - first * SECTOR) as usize;
    buf.copy_from_slice(&tmp[skip..skip + buf.len()]);
    Ok(())
}

impl BlockDevice for VirtioDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size)?;
        let blk = &mut self.blk;
        self.readahead
            .read(offset, buf, self.size, &mut |o, b| read_bytes(blk, o, b))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if self.readonly {
            return Err(Error::new(ErrorKind::ReadOnly, "device is read-only"));
        }
        check_range(offset, buf.len(), self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        if offset.is_multiple_of(SECTOR) && (buf.len() as u64).is_multiple_of(SECTOR) {
            return self.write_sectors(offset / SECTOR, buf);
        }
        // Unaligned: read-modify-write the covering sectors.
        let first = offset / SECTOR;
        let end = (offset + buf.len() as u64).div_ceil(SECTOR);
        let mut tmp = vec![0u8; ((end - first) * SECTOR) as usize];
        self.read_sectors(first, &mut tmp)?;
        let skip = (offset - first * SECTOR) as usize;
        tmp[skip..skip + buf.len()].copy_from_slice(buf);
        self.write_sectors(first, &tmp)
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.readonly {
            return Ok(());
        }
        self.blk.dev.flush().map_err(|e| io_err("flush", e))
    }
}

/// Sends bytes on the RPC channel.
pub fn send(bytes: &[u8]) -> Result<(), ConsoleError> {
    let mut guard = CHANNEL.lock();
    guard.as_mut().ok_or(ConsoleError::NoPort)?.send(bytes)
}

/// Sends the concatenation of `parts` on the RPC channel (one frame in pieces).
pub fn send_parts(parts: &[&[u8]]) -> Result<(), ConsoleError> {
    let mut guard = CHANNEL.lock();
    guard
        .as_mut()
        .ok_or(ConsoleError::NoPort)?
        .send_parts(parts)
}

/// Hands whatever bytes have arrived to `sink`, without blocking.
pub fn recv(sink: &mut dyn FnMut(&[u8])) -> Result<usize, ConsoleError> {
    let mut guard = CHANNEL.lock();
    guard.as_mut().ok_or(ConsoleError::NoPort)?.recv(sink)
}

/// Has the host closed its end of the RPC channel?
pub fn host_closed() -> bool {
    CHANNEL
        .lock()
        .as_ref()
        .is_none_or(|c| c.host == super::console::HostEnd::Closed)
}

/// Best effort from the panic handler: a `ToHost::Panic` frame, unless the channel is
/// unavailable or was in use when the panic struck.
pub fn send_panic(msg: &str) {
    let Ok(frame) = wire::encode_frame(&wire::ToHost::Panic(alloc::string::String::from(msg)))
    else {
        return;
    };
    if let Some(mut guard) = CHANNEL.try_lock()
        && let Some(c) = guard.as_mut()
    {
        let _ = c.send(&frame);
    }
}
