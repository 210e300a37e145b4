//! [`MemoryHal`] over one address space and the frame allocator.

use super::paging::{is_user_half, AddressSpace, FrameSource, PageFlags};
use crate::memory::{MemoryError, MemoryHal};

/// Maps pages into `space`, taking page-table frames from `frames`.
pub struct X86Memory<'f, F: FrameSource> {
    space: AddressSpace,
    frames: &'f mut F,
    /// Whether `space` is loaded in CR3 (then unmaps flush the TLB entry).
    active: bool,
}

impl<'f, F: FrameSource> X86Memory<'f, F> {
    pub fn new(space: AddressSpace, frames: &'f mut F, active: bool) -> Self {
        Self {
            space,
            frames,
            active,
        }
    }
}

impl<F: FrameSource> MemoryHal for X86Memory<'_, F> {
    fn allocate_page(&mut self) -> Result<usize, MemoryError> {
        self.frames
            .allocate_frame()
            .map(|f| f as usize)
            .ok_or(MemoryError::OutOfMemory)
    }

    fn free_page(&mut self, address: usize) -> Result<(), MemoryError> {
        self.frames
            .free_frame(address as u64)
            .map_err(|_| MemoryError::InvalidFrame)
    }

    fn map_page(
        &mut self,
        virtual_addr: usize,
        physical_addr: usize,
        writable: bool,
        executable: bool,
    ) -> Result<(), MemoryError> {
        let virt = virtual_addr as u64;
        let flags = PageFlags {
            writable,
            user: is_user_half(virt),
            executable,
            uncached: false,
        };
        self.space
            .map(self.frames, virt, physical_addr as u64, flags)
    }

    fn unmap_page(&mut self, virtual_addr: usize) -> Result<(), MemoryError> {
        self.space.unmap(virtual_addr as u64)?;
        if self.active {
            flush(virtual_addr as u64);
        }
        Ok(())
    }
}

/// Drops the TLB entry for `virt` on this CPU.
#[cfg(target_os = "none")]
pub fn flush(virt: u64) {
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(virt));
}

/// On a hosted build there is no TLB this code may touch.
#[cfg(not(target_os = "none"))]
pub fn flush(_virt: u64) {}
