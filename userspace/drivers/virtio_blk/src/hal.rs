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

/// A HAL that never lets the device at the driver's own buffers.
///
/// # Safety
///
/// `share` must hand the device memory of the HAL's own holding a copy of
/// the buffer (a bounce copy), never the buffer itself, and memory shared
/// and never unshared must stay allocated and go to no one else. A request
/// the driver abandons because the device broke the virtqueue protocol
/// (see [`crate::disk`]) is then never unshared: however late the device
/// writes, it writes into memory that is still its own, never into the
/// caller's buffer or the driver's stack.
pub unsafe trait Bouncing: Hal {}

// SAFETY: `share` copies into bounce pages allocated from the DMA pool and
// returns their physical address; the pages go back to the pool only in
// `unshare`.
unsafe impl Bouncing for CapabilityHal {}

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
        } else {
            // Cleared: a device that reports success without writing the
            // whole buffer must not hand the reader the bytes of an
            // earlier request that went through these pages.
            // SAFETY: the bounce pages are ours and at least `len` long.
            unsafe { core::ptr::write_bytes(virt as *mut u8, 0, len) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const REGION_PHYS: u64 = 0x20_0000;
    const PAGES: usize = 8;

    /// The region as the device sees it, read through this task's mapping.
    fn page_bytes(region: &[u8], phys: u64, len: usize) -> &[u8] {
        let offset = (phys - REGION_PHYS) as usize;
        &region[offset..offset + len]
    }

    /// One test for the whole HAL: its region and windows are process-wide.
    #[test]
    fn dma_is_zeroed_bounced_by_direction_and_given_back_once() {
        let mut region = vec![0xaau8; PAGES * PAGE];
        let virt = region.as_mut_ptr() as u64;
        install(
            DmaPool::new(virt, REGION_PHYS, (PAGES * PAGE) as u64),
            vec![
                Window {
                    phys: 0xfe00_0000,
                    len: 0x4000,
                    virt: 0x7000_0000,
                },
                Window {
                    phys: 0xfebd_1000,
                    len: 0x1000,
                    virt: 0x7100_0000,
                },
            ],
        );
        assert_eq!(free_dma_pages(), PAGES);

        // Queue memory: zeroed (the device must not see stale bytes).
        let (queue, queue_virt) = CapabilityHal::dma_alloc(2, BufferDirection::Both);
        assert_eq!((queue, queue_virt.as_ptr() as u64), (REGION_PHYS, virt));
        assert!(page_bytes(&region, queue, 2 * PAGE).iter().all(|&b| b == 0));
        assert_eq!(free_dma_pages(), PAGES - 2);

        // A write request's data is copied in for the device; a
        // 5000-byte buffer takes two bounce pages.
        let mut data = vec![7u8; 5000];
        let shared = NonNull::from(&mut data[..]);
        // SAFETY: `data` is valid for the whole call and not otherwise
        // used until `unshare`.
        let bounce = unsafe { CapabilityHal::share(shared, BufferDirection::DriverToDevice) };
        assert_eq!(free_dma_pages(), PAGES - 4);
        assert!(page_bytes(&region, bounce, 5000).iter().all(|&b| b == 7));
        // What the device may have left there never reaches the driver's
        // buffer for a write.
        let offset = (bounce - REGION_PHYS) as usize;
        region[offset] = 1;
        // SAFETY: as for `share`; the device is done with the buffer.
        unsafe { CapabilityHal::unshare(bounce, shared, BufferDirection::DriverToDevice) };
        assert_eq!(data[0], 7);
        assert_eq!(free_dma_pages(), PAGES - 2);

        // A read request: nothing copied in (the driver's bytes are not
        // the device's business), the device's answer copied out.
        let mut answer = [5u8; 16];
        let shared = NonNull::from(&mut answer[..]);
        // SAFETY: `answer` outlives the share and is not used meanwhile.
        let bounce = unsafe { CapabilityHal::share(shared, BufferDirection::DeviceToDriver) };
        assert_eq!(
            bounce,
            REGION_PHYS + 2 * PAGE as u64,
            "the write's bounce page, reused"
        );
        // Cleared: neither the driver's bytes nor the earlier write's
        // reach the device, nor come back if the device writes nothing.
        assert!(page_bytes(&region, bounce, 16).iter().all(|&b| b == 0));
        let offset = (bounce - REGION_PHYS) as usize;
        region[offset..offset + 16].copy_from_slice(&[9; 16]);
        // SAFETY: as above; the device is done.
        unsafe { CapabilityHal::unshare(bounce, shared, BufferDirection::DeviceToDriver) };
        assert_eq!(answer, [9; 16]);
        assert_eq!(free_dma_pages(), PAGES - 2);

        // An empty buffer still takes a page, and gives it back.
        let mut empty: [u8; 0] = [];
        let shared = NonNull::from(&mut empty[..]);
        // SAFETY: a zero-length buffer; nothing is read or written.
        let bounce = unsafe { CapabilityHal::share(shared, BufferDirection::Both) };
        assert_eq!(free_dma_pages(), PAGES - 3);
        // SAFETY: as above.
        unsafe { CapabilityHal::unshare(bounce, shared, BufferDirection::Both) };
        assert_eq!(free_dma_pages(), PAGES - 2);

        // Queue memory goes back once; a second release is refused.
        // SAFETY: `queue` came from `dma_alloc` and is no longer used.
        assert_eq!(
            unsafe { CapabilityHal::dma_dealloc(queue, queue_virt, 2) },
            0
        );
        // SAFETY: as above (refused: nothing is touched).
        assert_eq!(
            unsafe { CapabilityHal::dma_dealloc(queue, queue_virt, 2) },
            -1
        );
        assert_eq!(free_dma_pages(), PAGES);

        // Registers: translated within the window that holds them, to its
        // last byte.
        // SAFETY: only the address is computed; nothing is accessed.
        let at =
            |phys, size| unsafe { CapabilityHal::mmio_phys_to_virt(phys, size) }.as_ptr() as u64;
        assert_eq!(at(0xfe00_0000, 4), 0x7000_0000);
        assert_eq!(at(0xfe00_3ffc, 4), 0x7000_3ffc);
        assert_eq!(at(0xfebd_1010, 4), 0x7100_0010);
        let straddling = std::panic::catch_unwind(|| at(0xfe00_3ffe, 4));
        assert!(straddling.is_err(), "a register past the BAR is refused");
    }
}
