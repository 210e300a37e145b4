//! Device capabilities, the hardware side: interrupt lines delivered to
//! the channels drivers bound them to, device memory and DMA memory mapped
//! into drivers. Every decision (may this task, is this range device
//! memory, is the line bound) is the core's (`pandagen_core`'s device
//! module); this module only touches the PIC and the page tables.
//!
//! Interrupts: every line a driver may bind has a handler from boot on and
//! starts masked. When a line fires, its handler masks it at once (so a
//! device that keeps asserting it cannot storm the CPU) and marks it
//! pending; the pending lines are delivered when the kernel state is free
//! (in the same interrupt, or at the next timer tick). Delivery moves the
//! notification the binding prepared into the channel: nothing is built in
//! the interrupt path. The line stays masked until its holder acknowledges
//! (or, if nobody holds it, until someone binds it).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, Ordering};
use pandagen_abi::device::{DeviceError, PhysRange, INTERRUPT_LINES, KERNEL_INTERRUPT_LINES};
use pandagen_abi::error::Resource;
use pandagen_abi::memory::{PAGE_SIZE, USER_END};
use pandagen_abi::KernelError;
use pandagen_core::device_window::DeviceWindow;
use pandagen_core::InterruptOutcome;
use pandagen_hal::interrupt::InterruptHal;
use pandagen_hal::x86_64::paging::{AddressSpace, PageFlags};
use pandagen_hal::x86_64::{pic, X86Interrupts};
use spin::Once;

use crate::mem::frame::{self, GlobalFrames};
use crate::task::{KernelState, KERNEL};
use pandagen_hal::frame::FrameError;
use pandagen_hal::x86_64::paging::FrameSource;

/// Where the kernel places mappings whose address the driver left to it:
/// 1 TiB from 64 TiB up (see [`DeviceWindow`] for the search).
const DEVICE_MAPPINGS: DeviceWindow = DeviceWindow {
    start: 0x0000_4000_0000_0000,
    end: 0x0000_4000_0000_0000 + (1 << 40),
};

/// Lines that fired and are not yet delivered, one bit per line.
static PENDING: AtomicU16 = AtomicU16::new(0);

/// The physical ranges that are never device memory, set once at boot.
static RESERVED: Once<Vec<PhysRange>> = Once::new();

/// Record the ranges that are never device memory: every region of the
/// firmware's memory map (RAM, whatever it is used for, and the ranges the
/// firmware reserves). The framebuffer is refused as `Memory` too, by the
/// core, which knows its pages: only its own capability maps it.
pub fn set_reserved(ranges: Vec<PhysRange>) {
    RESERVED.call_once(|| ranges);
}

/// The reserved ranges, for the core (see [`set_reserved`]).
pub fn reserved() -> Vec<PhysRange> {
    RESERVED.get().cloned().unwrap_or_default()
}

/// Give every line a driver may bind its handler, masked.
pub fn init() {
    for line in 0..INTERRUPT_LINES {
        if KERNEL_INTERRUPT_LINES.contains(&line) {
            continue;
        }
        let handler = LINE_HANDLERS[line as usize];
        match X86Interrupts.register_handler(pic::IRQ_BASE + line, handler) {
            // SAFETY: ring 0; registering unmasked the line, which stays
            // closed until a driver binds it.
            Ok(()) => unsafe { pic::mask(line) },
            Err(e) => log::warn!("interrupt line {line} unavailable to drivers: {e:?}"),
        }
    }
}

/// One handler per line (the HAL calls handlers without an argument).
const LINE_HANDLERS: [fn(); INTERRUPT_LINES as usize] = [
    on_line::<0>,
    on_line::<1>,
    on_line::<2>,
    on_line::<3>,
    on_line::<4>,
    on_line::<5>,
    on_line::<6>,
    on_line::<7>,
    on_line::<8>,
    on_line::<9>,
    on_line::<10>,
    on_line::<11>,
    on_line::<12>,
    on_line::<13>,
    on_line::<14>,
    on_line::<15>,
];

fn on_line<const LINE: u8>() {
    // SAFETY: ring 0, in the line's own handler.
    unsafe { pic::mask(LINE) };
    PENDING.fetch_or(1 << LINE, Ordering::AcqRel);
    if let Some(mut guard) = KERNEL.try_lock() {
        if let Some(k) = guard.as_mut() {
            deliver(k);
        }
    }
}

/// Each timer tick: deliver lines that fired while the kernel state was
/// in use.
pub fn on_tick() {
    if PENDING.load(Ordering::Acquire) != 0 {
        if let Some(mut guard) = KERNEL.try_lock() {
            if let Some(k) = guard.as_mut() {
                deliver(k);
            }
        }
    }
}

/// Hand every pending line to the core. A line whose notification is
/// queued, or whose fire was coalesced into one already queued, stays
/// masked until acknowledged; an unbound one stays masked until bound.
pub fn deliver(k: &mut KernelState) {
    let pending = PENDING.swap(0, Ordering::AcqRel);
    for line in 0..INTERRUPT_LINES {
        if pending & (1 << line) != 0 {
            // A queued notification wakes the channel's receiver; every
            // outcome leaves the line masked.
            let _: InterruptOutcome = k.core_mut().interrupt_fired(line);
        }
    }
}

/// Open `line` (after a binding, or its holder's acknowledgement).
pub fn unmask(line: u8) {
    if line < INTERRUPT_LINES && !KERNEL_INTERRUPT_LINES.contains(&line) {
        // SAFETY: ring 0; the line has a handler (see `init`).
        unsafe { pic::unmask(line) };
    }
}

/// Whether `len` bytes from `virt` are page-aligned, in the user half and
/// unmapped in `space`.
fn is_free(space: &AddressSpace, virt: u64, len: u64) -> bool {
    virt.is_multiple_of(PAGE_SIZE)
        && virt != 0
        && virt.checked_add(len).is_some_and(|end| end <= USER_END)
        && (0..len / PAGE_SIZE).all(|i| space.translate(virt + i * PAGE_SIZE).is_none())
}

/// Where to map `len` bytes: `at` if the caller named it (and it is free),
/// else a free run in the kernel's device-mapping window, searched from
/// `next`, where the kernel's last placement in this space ended (see
/// [`DeviceWindow::place`]), so that the search costs the new mapping's
/// pages and not every page mapped before.
fn place(space: &AddressSpace, next: u64, at: Option<u64>, len: u64) -> Result<u64, KernelError> {
    if let Some(address) = at {
        return if is_free(space, address, len) {
            Ok(address)
        } else {
            Err(KernelError::Device(DeviceError::BadMappingAddress {
                address,
            }))
        };
    }
    DEVICE_MAPPINGS
        .place(next, len, |page| space.translate(page).is_some())
        .ok_or(KernelError::ResourceExhausted(Resource::Memory))
}

/// The kernel's next placement in `space` starts its search where the one
/// at `virt` of `len` bytes ended (a mapping at an address the driver
/// named leaves it where it was).
fn placed(next: &mut u64, at: Option<u64>, virt: u64, len: u64) {
    if at.is_none() {
        *next = virt.saturating_add(len);
    }
}

/// The most page-table frames a mapping of `pages` contiguous pages can
/// add to an address space: a run of pages touches at most
/// `pages / 512 + 1` page tables (rounded up), as many page directories
/// per 512² pages, and page-directory-pointer tables per 512³ (the
/// top-level table exists already).
pub fn table_frames_bound(pages: u64) -> u64 {
    [512u64, 512 * 512, 512 * 512 * 512]
        .iter()
        .map(|span| pages.div_ceil(*span) + 1)
        .sum()
}

/// The global frame allocator, counting the page-table frames it hands
/// out, so that a mapping's tables are charged exactly.
#[derive(Default)]
pub struct CountedFrames {
    pub taken: u64,
}

impl FrameSource for CountedFrames {
    fn allocate_frame(&mut self) -> Option<u64> {
        let frame = GlobalFrames.allocate_frame();
        self.taken += u64::from(frame.is_some());
        frame
    }

    fn free_frame(&mut self, phys: u64) -> Result<(), FrameError> {
        GlobalFrames.free_frame(phys)
    }
}

/// Map `len` bytes of physical memory from `phys` at `virt` (page by page;
/// on failure the pages mapped so far are unmapped again, leaving the
/// frames to the caller; the page tables made stay, counted in `tables`).
fn map_run(
    space: &AddressSpace,
    virt: u64,
    phys: u64,
    len: u64,
    flags: PageFlags,
    tables: &mut CountedFrames,
) -> Result<(), KernelError> {
    for i in 0..len / PAGE_SIZE {
        if space
            .map(tables, virt + i * PAGE_SIZE, phys + i * PAGE_SIZE, flags)
            .is_err()
        {
            for j in 0..i {
                let _ = space.unmap(virt + j * PAGE_SIZE);
            }
            return Err(KernelError::ResourceExhausted(Resource::Memory));
        }
    }
    Ok(())
}

/// Map the device range `range` (checked by the core) uncached into
/// `space`. Its pages are never freed as RAM: the frame allocator does not
/// manage them, so the address space's teardown leaves them alone. Kernel
/// copies to or from user memory refuse uncached pages (see `usermem`).
pub fn map_device_memory(
    (space, next): (&AddressSpace, &mut u64),
    range: PhysRange,
    writable: bool,
    at: Option<u64>,
    tables: &mut CountedFrames,
) -> Result<u64, KernelError> {
    let virt = place(space, *next, at, range.len)?;
    let flags = PageFlags {
        writable,
        ..PageFlags::USER_DEVICE
    };
    map_run(space, virt, range.base, range.len, flags, tables)?;
    placed(next, at, virt, range.len);
    Ok(virt)
}

/// Allocate `bytes` of contiguous zeroed frames and map them into `space`
/// (cached: x86 DMA is cache-coherent). Returns `(virtual, physical)`. The
/// frames belong to the address space from now on and are freed with it,
/// unless the core quarantines them at the holder's death (see
/// [`free_dma_regions`]).
pub fn allocate_dma(
    (space, next): (&AddressSpace, &mut u64),
    bytes: u64,
    at: Option<u64>,
    tables: &mut CountedFrames,
) -> Result<(u64, u64), KernelError> {
    let frames = bytes / PAGE_SIZE;
    let virt = place(space, *next, at, bytes)?;
    let phys = frame::allocate_contiguous(frames).ok_or(KernelError::Device(
        DeviceError::NoContiguousMemory { bytes },
    ))?;
    for i in 0..frames {
        space.window().zero_frame(phys + i * PAGE_SIZE);
    }
    if let Err(e) = map_run(space, virt, phys, bytes, PageFlags::USER_DATA, tables) {
        for i in 0..frames {
            let _ = frame::free(phys + i * PAGE_SIZE);
        }
        return Err(e);
    }
    placed(next, at, virt, bytes);
    Ok((virt, phys))
}

/// Free the frames of DMA regions the core released from quarantine (a
/// device reset since its driver died). Returns the frames freed: every
/// frame of the regions, which stayed allocated since the driver's death
/// (a frame found free is logged as the broken promise it would be).
pub fn free_dma_regions(regions: &[PhysRange]) -> u64 {
    let mut freed = 0;
    for region in regions {
        for i in 0..region.len / PAGE_SIZE {
            let phys = region.base + i * PAGE_SIZE;
            if !frame::is_allocated(phys) {
                log::error!("dma quarantine: frame {phys:#x} was free before its release");
            } else if frame::free(phys).is_ok() {
                freed += 1;
            }
        }
    }
    freed
}
