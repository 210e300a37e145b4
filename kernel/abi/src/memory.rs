//! Facts about memory that the kernel, its HAL and ring 3 share
//! (x86_64, 4-level paging).

/// The size of a page of virtual memory and of a frame of physical memory:
/// every mapping, and every frame the allocator hands out, is this size.
pub const PAGE_SIZE: u64 = 4096;

/// One past the last address of the user half. Ring 3 owns
/// `[0, USER_END)` of its address space; every pointer it hands the
/// kernel must lie there.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
