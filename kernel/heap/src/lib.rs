//! The heap allocator of the kernel and of ring-3 programs: size classes
//! for small blocks in front of a first-fit linked-list heap for large
//! ones. Its own crate, so that ring-3 programs (through the runtime) use
//! it without depending on the ring-0 HAL.
//!
//! The IPC path allocates and frees a few small blocks per message (the
//! message bytes, queue nodes, decoded strings). A linked-list heap keeps
//! its free list sorted by address, so each free walks that list: its cost
//! grows with fragmentation. Here a block of at most [`MAX_CLASS_SIZE`]
//! bytes comes from one of eight power-of-two free lists (16 .. 2048
//! bytes) in O(1) and returns there in O(1). A class with an empty list
//! carves a 4 KiB page-aligned chunk from the large heap; a class block
//! is aligned to its size, so any alignment up to the size is honoured.
//! Class blocks are never given back to the large heap, which bounds the
//! memory each class holds by its peak use.

#![cfg_attr(not(test), no_std)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use linked_list_allocator::Heap;
use spin::Mutex;

/// The largest block served by a size class.
pub const MAX_CLASS_SIZE: usize = 2048;
const MIN_CLASS_SIZE: usize = 16;
const CLASSES: usize = 8;
const CHUNK: usize = 4096;

/// Which class serves `layout`, if any.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(MIN_CLASS_SIZE);
    if size > MAX_CLASS_SIZE {
        return None;
    }
    Some(
        size.next_power_of_two().trailing_zeros() as usize
            - MIN_CLASS_SIZE.trailing_zeros() as usize,
    )
}

const fn class_size(class: usize) -> usize {
    MIN_CLASS_SIZE << class
}

/// The allocator state (not locked; see [`LockedHeap`]).
pub struct SizeClassHeap {
    /// Head of each class's free list; each free block stores the next.
    free: [*mut u8; CLASSES],
    /// Bytes sitting on the class free lists.
    class_free_bytes: usize,
    large: Heap,
}

// SAFETY: the raw pointers point into the heap's own memory, which moves
// with the heap's owner; all access goes through `&mut self`.
unsafe impl Send for SizeClassHeap {}

impl SizeClassHeap {
    pub const fn empty() -> Self {
        SizeClassHeap {
            free: [ptr::null_mut(); CLASSES],
            class_free_bytes: 0,
            large: Heap::empty(),
        }
    }

    /// # Safety
    /// `[start, start + size)` must be valid, writable memory used by
    /// nothing else for as long as the heap exists; call once.
    pub unsafe fn init(&mut self, start: *mut u8, size: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.large.init(start, size) }
    }

    pub fn allocate(&mut self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return self
                .large
                .allocate_first_fit(layout)
                .map_or(ptr::null_mut(), NonNull::as_ptr);
        };
        if self.free[class].is_null() && !self.refill(class) {
            return ptr::null_mut();
        }
        let block = self.free[class];
        // SAFETY: a block on a free list is at least 16 bytes, aligned to
        // its class size, and holds the next pointer written by `push`.
        self.free[class] = unsafe { block.cast::<*mut u8>().read() };
        self.class_free_bytes -= class_size(class);
        block
    }

    /// # Safety
    /// `block` came from [`SizeClassHeap::allocate`] with this `layout`.
    pub unsafe fn deallocate(&mut self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            // SAFETY: the block is a free class block now.
            Some(class) => unsafe { self.push(class, block) },
            // SAFETY: forwarded: the block came from the large heap.
            None => unsafe { self.large.deallocate(NonNull::new_unchecked(block), layout) },
        }
    }

    /// # Safety
    /// `block` is an unused block of `class`.
    unsafe fn push(&mut self, class: usize, block: *mut u8) {
        // SAFETY: the block is at least 16 bytes and suitably aligned.
        unsafe { block.cast::<*mut u8>().write(self.free[class]) };
        self.free[class] = block;
        self.class_free_bytes += class_size(class);
    }

    /// Split a fresh chunk into blocks of `class`.
    fn refill(&mut self, class: usize) -> bool {
        let Ok(chunk_layout) = Layout::from_size_align(CHUNK, CHUNK) else {
            return false;
        };
        let Ok(chunk) = self.large.allocate_first_fit(chunk_layout) else {
            return false;
        };
        let size = class_size(class);
        for i in (0..CHUNK / size).rev() {
            // SAFETY: the chunk is CHUNK bytes of memory we own, and each
            // block lies inside it, aligned to `size`.
            unsafe { self.push(class, chunk.as_ptr().add(i * size)) };
        }
        true
    }

    /// Bytes in live allocations (small ones counted at their class
    /// size): returns to the same value once everything allocated since is
    /// freed.
    pub fn used(&self) -> usize {
        self.large.used() - self.class_free_bytes
    }

    /// Bytes available: free in the large heap or on a class list.
    pub fn free(&self) -> usize {
        self.large.free() + self.class_free_bytes
    }
}

/// A [`SizeClassHeap`] behind a spin lock, usable as `#[global_allocator]`.
/// Interrupt handlers must not allocate (they would deadlock on the lock).
pub struct LockedHeap(Mutex<SizeClassHeap>);

impl LockedHeap {
    pub const fn empty() -> Self {
        LockedHeap(Mutex::new(SizeClassHeap::empty()))
    }

    pub fn lock(&self) -> spin::MutexGuard<'_, SizeClassHeap> {
        self.0.lock()
    }
}

// SAFETY: allocation is delegated to SizeClassHeap under the lock, which
// returns either null or a block of at least `layout.size()` bytes aligned
// to `layout.align()` that nothing else uses until it is freed.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate(layout)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded from GlobalAlloc's contract.
        unsafe { self.0.lock().deallocate(block, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[repr(C, align(4096))]
    struct Arena([u8; 256 * 1024]);

    fn heap() -> (std::boxed::Box<Arena>, SizeClassHeap) {
        let mut arena = std::boxed::Box::new(Arena([0; 256 * 1024]));
        let mut heap = SizeClassHeap::empty();
        // SAFETY: the arena outlives the heap in every test.
        unsafe { heap.init(arena.0.as_mut_ptr(), arena.0.len()) };
        (arena, heap)
    }

    #[test]
    fn classes_cover_sizes_and_alignments() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(1, 1)), Some(0));
        assert_eq!(class_of(l(16, 8)), Some(0));
        assert_eq!(class_of(l(17, 1)), Some(1));
        assert_eq!(class_of(l(8, 64)), Some(2));
        assert_eq!(class_of(l(2048, 8)), Some(7));
        assert_eq!(class_of(l(2049, 8)), None);
        assert_eq!(class_of(l(8, 4096)), None);
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused() {
        let (_arena, mut heap) = heap();
        let mut blocks = Vec::new();
        for (i, size) in [1usize, 24, 100, 700, 2048, 3000, 16, 64]
            .iter()
            .cycle()
            .take(80)
            .enumerate()
        {
            let layout = Layout::from_size_align(*size, 8 << (i % 3)).unwrap();
            let p = heap.allocate(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % layout.align(), 0);
            // SAFETY: the block is ours, `size` bytes long.
            unsafe { ptr::write_bytes(p, i as u8, *size) };
            blocks.push((p, layout, i as u8));
        }
        for &(p, layout, fill) in &blocks {
            // SAFETY: still allocated; nobody else wrote it.
            let bytes = unsafe { core::slice::from_raw_parts(p, layout.size()) };
            assert!(bytes.iter().all(|&b| b == fill), "overlapping blocks");
        }
        let used = heap.used();
        let (p, layout, _) = blocks.pop().unwrap();
        // SAFETY: allocated above with this layout.
        unsafe { heap.deallocate(p, layout) };
        assert_eq!(heap.allocate(layout), p, "a freed block is reused first");
        assert_eq!(heap.used(), used);
        // SAFETY: allocated above with this layout.
        unsafe { heap.deallocate(p, layout) };
        for (p, layout, _) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { heap.deallocate(p, layout) };
        }
        assert_eq!(heap.used(), 0, "everything freed is accounted free");
    }

    #[test]
    fn exhaustion_is_null_not_a_crash() {
        let (_arena, mut heap) = heap();
        let big = Layout::from_size_align(200 * 1024, 8).unwrap();
        assert!(!heap.allocate(big).is_null());
        let mut n = 0;
        while !heap
            .allocate(Layout::from_size_align(2048, 8).unwrap())
            .is_null()
        {
            n += 1;
            assert!(n < 1000);
        }
        assert!(heap
            .allocate(Layout::from_size_align(100 * 1024, 8).unwrap())
            .is_null());
    }
}
