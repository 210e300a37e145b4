//! Physical frames, page tables and the kernel heap.

pub mod frame;
pub mod heap;
pub mod paging;
