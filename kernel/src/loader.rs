//! Loading a ring-3 program (a static ELF executable) into a fresh address
//! space.
//!
//! Only `PT_LOAD` segments are mapped. Each must lie in the user half and
//! must not be both writable and executable (W^X); pages are user pages,
//! no-execute unless the segment is executable, writable only if it is
//! writable, and zero beyond the file bytes (`.bss`). Two segments may not
//! share a page (the runtime's linker script aligns them). The stack is
//! [`USER_STACK_SIZE`] bytes below [`USER_STACK_TOP`], NX, with
//! [`STACK_GUARD_SIZE`] bytes left unmapped below it so that an overflow
//! faults (and is reported as a stack overflow, see [`in_stack_guard`]).
//!
//! Loading runs inside the `Spawn` system call, with interrupts off. An
//! image may ask for up to [`MAX_IMAGE_MEMORY`], so every
//! [`PAGES_PER_STEP`] pages the loader lets pending interrupts in
//! ([`let_interrupts_in`]): the timer and input are late by at most one
//! step's zeroing and copying, whatever the image's size.

use pandagen_abi::error::{Resource, SpawnError};
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_abi::KernelError;
use pandagen_core::program_image::{parse_program, ImageSegment, ProgramImage};
use pandagen_hal::memory::MemoryError;
use pandagen_hal::x86_64::paging::{AddressSpace, PageFlags};

use crate::arch::x86_64::let_interrupts_in;
use crate::mem::frame::{self, GlobalFrames};
use crate::mem::paging;

/// One past the highest stack address.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Bytes of user stack.
pub const USER_STACK_SIZE: u64 = 64 * 1024;
/// Unmapped bytes below the stack.
pub const STACK_GUARD_SIZE: u64 = 1024 * 1024;
/// The most memory one image may ask for (all segments together).
const MAX_IMAGE_MEMORY: u64 = 64 << 20;
/// Pages mapped, zeroed and filled between two interrupt windows (64 KiB).
const PAGES_PER_STEP: u32 = 16;

/// Counts mapped pages and opens an interrupt window every
/// [`PAGES_PER_STEP`] of them.
struct Pacer(u32);

impl Pacer {
    fn page_done(&mut self) {
        self.0 += 1;
        if self.0.is_multiple_of(PAGES_PER_STEP) {
            let_interrupts_in();
        }
    }
}

/// Whether a fault at `address` hit the guard region below the stack.
pub fn in_stack_guard(address: u64) -> bool {
    let bottom = USER_STACK_TOP - USER_STACK_SIZE;
    (bottom - STACK_GUARD_SIZE..bottom).contains(&address)
}

/// A program ready to run.
pub struct Loaded {
    pub space: AddressSpace,
    pub entry: u64,
    pub stack_top: u64,
}

fn invalid() -> KernelError {
    KernelError::SpawnFailed(SpawnError::InvalidImage)
}

fn memory(e: MemoryError) -> KernelError {
    match e {
        MemoryError::OutOfMemory => KernelError::ResourceExhausted(Resource::Memory),
        // Anything else is a mapping the image asked for that cannot be
        // made (overlapping segments, say).
        _ => invalid(),
    }
}

/// Parse and validate `image` without allocating anything but the list
/// of its segments (the checks are the core's, shared with the fuzzer).
fn segments(image: &[u8]) -> Result<ProgramImage<'_>, KernelError> {
    let limit = USER_STACK_TOP - USER_STACK_SIZE - STACK_GUARD_SIZE;
    parse_program(image, limit, MAX_IMAGE_MEMORY).map_err(|_| invalid())
}

/// Frames loading `image` takes at the least (its segments' pages and the
/// stack's), known without allocating: what a spawn's budget must cover
/// before the kernel spends time zeroing and copying.
pub fn frames_at_least(image: &[u8]) -> Result<u64, KernelError> {
    let program = segments(image)?;
    let pages = |start: u64, len: u64| {
        let first = start / PAGE_SIZE;
        let end = start.saturating_add(len).div_ceil(PAGE_SIZE);
        end - first
    };
    let segment_pages: u64 = program
        .segments
        .iter()
        .map(|s| pages(s.vaddr, s.memsz))
        .sum();
    Ok(segment_pages + USER_STACK_SIZE / PAGE_SIZE)
}

fn flags(segment: &ImageSegment<'_>) -> PageFlags {
    PageFlags {
        writable: segment.writable,
        user: true,
        executable: segment.executable,
        uncached: false,
    }
}

/// Map one zeroed page at `virt` and return its kernel-window address.
fn map_zeroed(space: &AddressSpace, virt: u64, flags: PageFlags) -> Result<u64, KernelError> {
    let phys = frame::allocate().ok_or(KernelError::ResourceExhausted(Resource::Memory))?;
    space.window().zero_frame(phys);
    if let Err(e) = space.map(&mut GlobalFrames, virt, phys, flags) {
        let _ = frame::free(phys);
        return Err(memory(e));
    }
    Ok(space.window().virt(phys))
}

fn map_segment(
    space: &AddressSpace,
    seg: &ImageSegment<'_>,
    pacer: &mut Pacer,
) -> Result<(), KernelError> {
    let first = seg.vaddr & !(PAGE_SIZE - 1);
    let end = seg.vaddr + seg.memsz;
    let mut page = first;
    while page < end {
        let dst = map_zeroed(space, page, flags(seg))?;
        // The file bytes that fall into this page.
        let from = page.max(seg.vaddr);
        let to = (page + PAGE_SIZE).min(seg.vaddr + seg.bytes.len() as u64);
        if from < to {
            let src = &seg.bytes[(from - seg.vaddr) as usize..(to - seg.vaddr) as usize];
            // SAFETY: `dst` is the window address of the frame just mapped
            // (4 KiB, owned by this new space); `from - page + src.len()` is
            // at most one page.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    (dst + (from - page)) as *mut u8,
                    src.len(),
                )
            };
        }
        page += PAGE_SIZE;
        pacer.page_done();
    }
    Ok(())
}

/// Load `image` into a new address space with a stack.
pub fn load(image: &[u8]) -> Result<Loaded, KernelError> {
    let ProgramImage { entry, segments } = segments(image)?;
    let space = paging::new_user_space().map_err(memory)?;
    let mut pacer = Pacer(0);
    let mapped = segments
        .iter()
        .try_for_each(|seg| map_segment(&space, seg, &mut pacer))
        .and_then(|()| {
            let mut page = USER_STACK_TOP - USER_STACK_SIZE;
            while page < USER_STACK_TOP {
                map_zeroed(&space, page, PageFlags::USER_DATA)?;
                page += PAGE_SIZE;
                pacer.page_done();
            }
            Ok(())
        });
    match mapped {
        Ok(()) => Ok(Loaded {
            space,
            entry,
            stack_top: USER_STACK_TOP,
        }),
        Err(e) => {
            destroy(space);
            Err(e)
        }
    }
}

/// Free an address space that is not active, with every page it maps.
pub fn destroy(space: AddressSpace) {
    destroy_keeping(space, &[]);
}

/// Free an address space that is not active, with every page it maps
/// except those inside `kept` (quarantined DMA frames, which stay
/// allocated).
pub fn destroy_keeping(space: AddressSpace, kept: &[pandagen_abi::device::PhysRange]) {
    let freed = space.destroy(&mut GlobalFrames, |leaf| {
        let in_kept = kept.iter().any(|r| leaf >= r.base && leaf - r.base < r.len);
        if !in_kept {
            let _ = frame::free(leaf);
        }
    });
    if let Err(e) = freed {
        log::error!("freeing an address space: {e:?}");
    }
}
