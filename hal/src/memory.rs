//! Physical pages and the mapping of virtual pages onto them.

/// Why a memory operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryError {
    /// No free physical frame is left.
    OutOfMemory,
    /// An address was not aligned to the 4 KiB page size.
    NotAligned,
    /// A virtual address is not canonical (bits 63..48 must copy bit 47).
    NotCanonical,
    /// The virtual page is already mapped.
    AlreadyMapped,
    /// The virtual page is not mapped.
    NotMapped,
    /// The address lies inside a huge (2 MiB / 1 GiB) mapping that 4 KiB
    /// operations may not split.
    HugePage,
    /// A user-accessible mapping was requested in the kernel half.
    UserMappingInKernelHalf,
    /// A physical frame was freed that the allocator never handed out, or
    /// that lies outside managed memory.
    InvalidFrame,
}

/// Allocating physical pages and mapping them into an address space.
///
/// `map_page` derives user accessibility from the address: pages in the lower
/// (user) half are mapped user-accessible, pages in the upper (kernel) half
/// are supervisor-only. Non-executable pages get the NX bit.
pub trait MemoryHal {
    /// Hands out one free 4 KiB physical frame and returns its address.
    fn allocate_page(&mut self) -> Result<usize, MemoryError>;
    /// Returns a frame obtained from [`MemoryHal::allocate_page`].
    fn free_page(&mut self, address: usize) -> Result<(), MemoryError>;
    /// Maps the 4 KiB page at `virtual_addr` onto the frame at `physical_addr`.
    fn map_page(
        &mut self,
        virtual_addr: usize,
        physical_addr: usize,
        writable: bool,
        executable: bool,
    ) -> Result<(), MemoryError>;
    /// Removes the mapping of the 4 KiB page at `virtual_addr`. The frame is
    /// not freed: whoever mapped it owns it.
    fn unmap_page(&mut self, virtual_addr: usize) -> Result<(), MemoryError>;
}
