//! The global physical frame allocator, built from the bootloader's memory
//! map (see [`pandagen_hal::frame`] for the bookkeeping itself).

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_hal::frame::{FrameBitmap, FrameError, PhysRange};
use pandagen_hal::x86_64::paging::{FrameSource, PhysWindow};
use spin::Mutex;

static FRAMES: Mutex<Option<FrameBitmap<'static>>> = Mutex::new(None);

/// Which firmware booted us, judged from the memory map: the bootloader
/// tags every region it does not understand with the firmware's own type
/// code (UEFI memory type or BIOS E820 type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
    Unknown,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
            Firmware::Unknown => "unknown firmware",
        }
    }
}

/// Identifies the firmware from the region kinds.
pub fn firmware(regions: &MemoryRegions) -> Firmware {
    for region in regions.iter() {
        match region.kind {
            MemoryRegionKind::UnknownUefi(_) => return Firmware::Uefi,
            MemoryRegionKind::UnknownBios(_) => return Firmware::Bios,
            _ => {}
        }
    }
    Firmware::Unknown
}

/// Builds the allocator over the usable regions. The bitmap lives in the
/// first usable range big enough for it, reached through `window`.
pub fn init(regions: &'static MemoryRegions, window: PhysWindow) -> Result<(), FrameError> {
    let usable = regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| PhysRange {
            start: r.start,
            end: r.end,
        });
    let words = FrameBitmap::storage_words(usable.clone());
    let at = FrameBitmap::find_storage(usable.clone(), words).ok_or(FrameError::StorageTooSmall)?;
    // SAFETY: [at, at + words * 8) is usable RAM (find_storage chose it from
    // the usable ranges), mapped through the window, and reserved below so
    // it is never handed out: this slice is its only user, forever.
    let storage: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut(window.virt(at) as *mut u64, words) };
    let mut bitmap = FrameBitmap::new(usable, storage)?;
    let bytes = (words as u64 * 8).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    bitmap.reserve(PhysRange {
        start: at,
        end: at + bytes,
    });
    *FRAMES.lock() = Some(bitmap);
    Ok(())
}

fn with<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> R {
    f(FRAMES
        .lock()
        .as_mut()
        .expect("frame allocator not initialised"))
}

/// A free frame's physical address.
pub fn allocate() -> Option<u64> {
    with(|b| b.allocate())
}

/// `count` physically contiguous free frames (DMA memory); the first one's
/// address.
pub fn allocate_contiguous(count: u64) -> Option<u64> {
    with(|b| b.allocate_contiguous(count))
}

/// Returns a frame.
pub fn free(phys: u64) -> Result<(), FrameError> {
    with(|b| b.free(phys))
}

/// Whether `phys` is currently handed out.
pub fn is_allocated(phys: u64) -> bool {
    with(|b| b.is_allocated(phys))
}

/// `(total, free)` frame counts.
pub fn counts() -> (u64, u64) {
    with(|b| (b.total_frames(), b.free_frames()))
}

/// The global allocator as a [`FrameSource`] for the page-table code.
/// It takes the lock per frame, so page-table edits never hold it long.
pub struct GlobalFrames;

impl FrameSource for GlobalFrames {
    fn allocate_frame(&mut self) -> Option<u64> {
        allocate()
    }

    fn free_frame(&mut self, phys: u64) -> Result<(), FrameError> {
        free(phys)
    }
}
