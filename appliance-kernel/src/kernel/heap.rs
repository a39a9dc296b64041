//! The kernel heap: the largest RAM region above the kernel image, from the PVH memory map,
//! handed to a linked-list allocator. DMA buffers come from the same heap (identity map).

use super::boot::Region;
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

unsafe extern "C" {
    static __kernel_end: u8;
}

/// Used when the loader gave no memory map: 1 MiB past the kernel, 32 MiB long.
const FALLBACK_LEN: u64 = 32 << 20;

/// Picks the heap region and initialises the allocator. Returns the region used.
pub fn init(ram: &[Region]) -> Region {
    let kernel_end = core::ptr::addr_of!(__kernel_end) as u64;
    let floor = (kernel_end + 0xfff) & !0xfff;
    let mut best = Region { start: 0, len: 0 };
    for r in ram {
        let end = r.start.saturating_add(r.len);
        let start = r.start.max(floor);
        if end > start && end - start > best.len {
            best = Region {
                start,
                len: end - start,
            };
        }
    }
    if best.len == 0 {
        best = Region {
            start: floor + (1 << 20),
            len: FALLBACK_LEN,
        };
    }
    // SAFETY: the region is RAM per the memory map, above the kernel image and its stack
    // (both below __kernel_end), identity mapped, and used by nothing else; init runs once.
    unsafe { HEAP.lock().init(best.start as *mut u8, best.len as usize) };
    best
}
