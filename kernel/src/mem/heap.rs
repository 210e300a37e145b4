//! The kernel heap: the HAL's size-class allocator (O(1) small blocks in
//! front of a linked-list heap) over pages mapped at [`KERNEL_HEAP_START`].
//!
//! Allocation takes a spin lock: interrupt handlers must not allocate.

use super::{frame, paging};
use crate::layout::{KERNEL_HEAP_SIZE, KERNEL_HEAP_START};
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_hal::memory::MemoryError;
use pandagen_hal::x86_64::paging::PageFlags;
use pandagen_heap::LockedHeap;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Maps the heap's pages and hands them to the allocator.
pub fn init() -> Result<(), MemoryError> {
    let mut virt = KERNEL_HEAP_START;
    while virt < KERNEL_HEAP_START + KERNEL_HEAP_SIZE {
        let phys = frame::allocate().ok_or(MemoryError::OutOfMemory)?;
        paging::map_kernel_page(virt, phys, PageFlags::KERNEL_DATA)?;
        virt += PAGE_SIZE;
    }
    // SAFETY: the range was just mapped read-write, is used by nothing
    // else, and `init` runs once.
    unsafe {
        ALLOCATOR
            .lock()
            .init(KERNEL_HEAP_START as *mut u8, KERNEL_HEAP_SIZE as usize)
    };
    Ok(())
}

/// Whether `bytes` more could be allocated (roughly: the free space may be
/// fragmented).
pub fn has_room(bytes: usize) -> bool {
    ALLOCATOR.lock().free() >= bytes
}

/// `(used, free)` heap bytes.
pub fn usage() -> (usize, usize) {
    let heap = ALLOCATOR.lock();
    (heap.used(), heap.free())
}
