//! The kernel's virtual address layout.
//!
//! ```text
//! 0x0000_0000_0000_0000 ..= 0x0000_7FFF_FFFF_FFFF  user half: one per address space,
//!                                                    empty in the kernel's own table
//! 0xFFFF_8000_0000_0000 ..= 0xFFFF_BFFF_FFFF_FFFF  placed by the bootloader (PML4 256..384):
//!                                                    kernel image, kernel stack, boot info,
//!                                                    physical-memory map, framebuffer, ramdisk
//! 0xFFFF_C000_0000_0000 ..                          managed by the kernel (PML4 384..512):
//!     KERNEL_HEAP_START   kernel heap
//!     KERNEL_STACKS_START per-task kernel stacks (reserved for the scheduler)
//! ```
//!
//! Every top-level entry of the kernel half is filled at boot, so all these
//! regions are shared by every address space.

/// Lowest address the bootloader may place anything at.
pub const BOOTLOADER_RANGE_START: u64 = 0xFFFF_8000_0000_0000;
/// Highest page the bootloader may place anything at.
pub const BOOTLOADER_RANGE_END: u64 = 0xFFFF_BFFF_FFFF_F000;

/// Start of the kernel heap.
pub const KERNEL_HEAP_START: u64 = 0xFFFF_C000_0000_0000;
/// Size of the kernel heap.
pub const KERNEL_HEAP_SIZE: u64 = 8 << 20;

/// Start of the region reserved for per-task kernel stacks.
#[cfg(feature = "test-harness")]
pub const KERNEL_STACKS_START: u64 = 0xFFFF_C080_0000_0000;

/// Start of the kernel half.
pub const KERNEL_HALF_START: u64 = pandagen_hal::x86_64::paging::KERNEL_HALF_START;

/// Whether `addr` lies where the bootloader was told to place its mappings.
pub fn in_bootloader_range(addr: u64) -> bool {
    (BOOTLOADER_RANGE_START..=BOOTLOADER_RANGE_END + 0xFFF).contains(&addr)
}
