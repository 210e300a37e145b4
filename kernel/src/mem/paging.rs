//! The kernel's address space and fresh user address spaces.
//!
//! At boot the kernel adopts the bootloader's page table, gives every empty
//! kernel-half top-level entry a table (so kernel mappings made later are
//! shared by every address space), and removes the bootloader's leftover
//! identity mappings from the lower half, which from then on belongs to
//! user address spaces only.

use super::frame::GlobalFrames;
use crate::layout;
use core::sync::atomic::{AtomicU64, Ordering};
use pandagen_hal::memory::MemoryError;
use pandagen_hal::x86_64::paging::{AddressSpace, PageFlags, PhysWindow};
use spin::Once;
use x86_64::registers::control::Cr3;

static KERNEL_SPACE: Once<AddressSpace> = Once::new();

/// The CR3 flag bits (PWT, PCD) the bootloader's table was loaded with:
/// every later load keeps them (see [`load`]).
static CR3_FLAGS: AtomicU64 = AtomicU64::new(0);

/// What [`init`] found and changed.
#[derive(Debug, Clone, Copy)]
pub struct PagingReport {
    pub kernel_tables_added: usize,
    pub lower_half_entries_removed: usize,
}

/// Adopts the active page table as the kernel address space.
pub fn init(window: PhysWindow) -> Result<PagingReport, MemoryError> {
    let (frame, flags) = Cr3::read();
    CR3_FLAGS.store(flags.bits(), Ordering::Relaxed);
    // SAFETY: CR3 holds the bootloader-built PML4; all physical memory is
    // mapped through `window`, and from now on only this module edits it.
    let space = unsafe { AddressSpace::from_root(frame.start_address().as_u64(), window) };
    let kernel_tables_added = space.populate_kernel_half(&mut GlobalFrames)?;
    let lower_half_entries_removed = space.user_half_entries();
    space.forget_user_half();
    x86_64::instructions::tlb::flush_all();
    KERNEL_SPACE.call_once(|| space);
    Ok(PagingReport {
        kernel_tables_added,
        lower_half_entries_removed,
    })
}

/// The kernel address space (the one the kernel half of every space
/// comes from).
pub fn kernel_space() -> AddressSpace {
    *KERNEL_SPACE.get().expect("paging not initialised")
}

/// A new address space: empty user half, shared kernel half.
pub fn new_user_space() -> Result<AddressSpace, MemoryError> {
    AddressSpace::new_sharing_kernel_half(&kernel_space(), &mut GlobalFrames)
}

/// Maps one kernel-half page (shared by every address space).
pub fn map_kernel_page(virt: u64, phys: u64, flags: PageFlags) -> Result<(), MemoryError> {
    debug_assert!(virt >= layout::KERNEL_HALF_START);
    kernel_space().map(&mut GlobalFrames, virt, phys, flags)
}

/// Removes one kernel-half page, flushes it, and returns its frame.
pub fn unmap_kernel_page(virt: u64) -> Result<u64, MemoryError> {
    let phys = kernel_space().unmap(virt)?;
    // A kernel page may be cached in the TLB whatever space is active.
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(virt));
    Ok(phys)
}

/// Loads `space` into CR3 and returns the root that was active.
///
/// # Safety
/// `space` must share the kernel half (come from [`new_user_space`] or be
/// the kernel space), or the running code disappears under itself.
pub unsafe fn switch_to(space: &AddressSpace) -> u64 {
    let (old, flags) = Cr3::read();
    let frame = x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(
        space.root(),
    ));
    // SAFETY: forwarded to the caller: the kernel half, and with it this
    // code, its stack and its data, is mapped identically in `space`.
    unsafe { Cr3::write(frame, flags) };
    old.start_address().as_u64()
}

/// The CR3 value that loads `space`: its root with the flags the kernel's
/// table was loaded with (a task keeps its own, [`crate::usermem::UserMemory::cr3`],
/// so that a switch loads it without computing it).
#[inline(always)]
pub fn cr3_of(space: &AddressSpace) -> u64 {
    space.root() | CR3_FLAGS.load(Ordering::Relaxed)
}

/// Loads `cr3`, a value [`cr3_of`] gave for an address space: [`switch_to`]
/// without reading CR3 first (the task switch, which knows the active
/// value already: `KernelState::active_cr3`), with the flags the kernel's
/// table was loaded with. Inline: every direct `Exchange` loads its
/// receiver's space here.
///
/// # Safety
/// As [`switch_to`]: the space `cr3` loads must share the kernel half.
#[inline(always)]
pub unsafe fn load_cr3(cr3: u64) {
    // SAFETY: forwarded to the caller, as in `switch_to`; the root is a
    // page-aligned table address (what `AddressSpace` holds), so with the
    // flags it is a valid CR3 value.
    unsafe {
        core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags));
    }
}
