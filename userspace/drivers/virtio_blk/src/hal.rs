//! The `virtio-drivers` HAL over the driver's capabilities: DMA memory from
//! one region allocated with its `DmaMemory` capability (whose physical
//! address the kernel returned), device registers through the BAR windows
//! mapped with its `DeviceMemory` capability.
//!
//! The crate's HAL has no receiver, so the region and the windows are
//! process-wide, installed once by [`install`] before the device is
//! opened. The driver's heap has no known physical address, so data the
//! crate shares with the device is bounced through DMA pages (copied in
//! before, out after). A HAL call that cannot be satisfied (the region is
//! exhausted, an address outside every window) panics: the driver ends,
//! and its supervisor restarts it.

use alloc::vec::Vec;
use core::ptr::NonNull;

use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::pool::{DmaPool, PAGE};

/// A device-memory window: physical `[phys, phys + len)` mapped at `virt`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub phys: u64,
    pub len: u64,
    pub virt: u64,
}

static POOL: Mutex<Option<DmaPool>> = Mutex::new(None);
static WINDOWS: Mutex<Vec<Window>> = Mutex::new(Vec::new());

/// Make `pool` and `windows` what [`CapabilityHal`] hands out.
pub fn install(pool: DmaPool, windows: Vec<Window>) {
    *POOL.lock() = Some(pool);
    *WINDOWS.lock() = windows;
}

/// Pages of the DMA region still free (for diagnostics).
pub fn free_dma_pages() -> usize {
    POOL.lock().as_ref().map_or(0, DmaPool::free_pages)
}

fn allocate(pages: usize) -> (u64, u64) {
    POOL.lock()
        .as_mut()
        .and_then(|pool| pool.allocate(pages))
        .expect("virtio-blk: DMA region exhausted")
}

fn release(phys: u64, pages: usize) -> bool {
    POOL.lock()
        .as_mut()
        .is_some_and(|pool| pool.free(phys, pages))
}

fn pages_for(len: usize) -> usize {
    len.div_ceil(PAGE).max(1)
}

pub struct CapabilityHal;

// SAFETY: `dma_alloc` returns page-aligned, zeroed, exclusively owned pages
// of a DMA region that stays mapped for the life of the task (the kernel
// frees it only at death), with the physical address the kernel reported
// for them; `mmio_phys_to_virt` returns addresses inside windows mapped by
// the kernel for exactly those physical ranges; `share` hands the device
// bounce pages it owns until `unshare`.
unsafe impl Hal for CapabilityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let (phys, virt) = allocate(pages);
        // SAFETY: `virt` starts `pages` pages of the installed DMA region,
        // mapped writable in this task and handed to no one else.
        unsafe { core::ptr::write_bytes(virt as *mut u8, 0, pages * PAGE) };
        (
            phys,
            NonNull::new(virt as *mut u8).expect("DMA mapped at 0"),
        )
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        if release(paddr, pages) {
            0
        } else {
            -1
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let windows = WINDOWS.lock();
        let window = windows
            .iter()
            .find(|w| paddr >= w.phys && paddr + size as u64 <= w.phys + w.len)
            .expect("virtio-blk: register outside the device's BARs");
        NonNull::new((window.virt + (paddr - window.phys)) as *mut u8).expect("window at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let (phys, virt) = allocate(pages_for(len));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid for reads of
            // `len` bytes; the bounce pages are ours and at least as long.
            unsafe {
                core::ptr::copy_nonoverlapping(buffer.as_ptr() as *const u8, virt as *mut u8, len)
            };
        }
        phys
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        if direction != BufferDirection::DriverToDevice {
            let virt = POOL.lock().as_ref().and_then(|p| p.virtual_of(paddr));
            if let Some(virt) = virt {
                // SAFETY: `virt` is the bounce copy `share` made for this
                // buffer (`len` bytes); the caller guarantees `buffer` is
                // valid for writes of `len` bytes and the device is done.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        virt as *const u8,
                        buffer.as_ptr() as *mut u8,
                        len,
                    )
                };
            }
        }
        release(paddr, pages_for(len));
    }
}
