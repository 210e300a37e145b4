//! The budgets charge what the kernel heap really takes: `allocation`,
//! which every charge for a buffer is built from, against the kernel's own
//! allocator. A charge below the real size is kernel memory nobody pays
//! for; one above it refuses work a budget could afford.

use std::alloc::Layout;

use pandagen_core::budget::allocation;
use pandagen_heap::SizeClassHeap;

/// The bytes `heap` counts as used for one allocation of `bytes`.
fn taken(heap: &mut SizeClassHeap, bytes: usize) -> u64 {
    let before = heap.used();
    let block = heap.allocate(Layout::from_size_align(bytes, 8).unwrap());
    assert!(!block.is_null(), "{bytes} bytes");
    (heap.used() - before) as u64
}

#[test]
fn a_buffer_is_charged_what_the_kernel_heap_takes_for_it() {
    // The heap's memory: leaked, as the kernel's lives for ever.
    let arena: &'static mut [u8] = Box::leak(vec![0u8; 4 << 20].into_boxed_slice());
    let mut heap = SizeClassHeap::empty();
    // SAFETY: `arena` is valid, writable, and used by nothing else for
    // the rest of the process.
    unsafe { heap.init(arena.as_mut_ptr(), arena.len()) };
    assert_eq!(allocation(0), 0, "no buffer, no charge");
    for bytes in [1, 8, 15, 16, 17, 31, 100, 1024, 1025, 2047, 2048] {
        assert_eq!(allocation(bytes), taken(&mut heap, bytes), "{bytes} bytes");
    }
    // Above the largest size class, the charge covers the block and its
    // alignment with less than two 16-byte granules to spare.
    for bytes in [2049, 3000, 4096, 10_000, 65_537] {
        let real = taken(&mut heap, bytes);
        let charged = allocation(bytes);
        assert!(
            (real..real + 32).contains(&charged),
            "{bytes} bytes: charged {charged}, taken {real}"
        );
    }
}
