//! Memory as the fake device sees it, and the HAL that hands it out.
//!
//! Every DMA allocation and every bounce copy the driver shares lives in a
//! table of regions at made-up physical addresses. The device reaches
//! memory only through [`device_read`] and [`device_write`], which fail
//! the test unless the whole access lies inside one region the driver has
//! handed out and not taken back, and a write lands only in memory the
//! driver let the device write. One table serves every test (the device
//! may run on a thread of its own); each region remembers the thread that
//! shared it, so a test counts only its own.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::thread::ThreadId;

use pandagen_virtio_blk::hal::Bouncing;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// One region the driver handed to the device.
struct Region {
    virt: NonNull<u8>,
    len: usize,
    /// Whether the device may write it: queue memory and buffers shared
    /// for the device to fill.
    device_writes: bool,
    /// Whether the region is a bounce copy of a driver's buffer (not
    /// queue memory).
    bounced: bool,
    /// The thread whose driver allocated it.
    owner: ThreadId,
}

// SAFETY: a region's memory is reached only under the table's lock (by
// the device) or by the driver that owns it.
unsafe impl Send for Region {}

struct Memory {
    regions: BTreeMap<PhysAddr, Region>,
    next_phys: PhysAddr,
}

static MEMORY: Mutex<Memory> = Mutex::new(Memory {
    regions: BTreeMap::new(),
    next_phys: 0x4000_0000,
});

fn memory() -> std::sync::MutexGuard<'static, Memory> {
    // A test that failed while holding the lock leaves the table as it
    // was: the other tests' regions are still right.
    MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pages_for(len: usize) -> usize {
    len.div_ceil(PAGE_SIZE).max(1)
}

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap()
}

/// Zeroed pages at a fresh physical address, a guard page apart from the
/// last region so that no access can run from one into the next.
fn allocate(len: usize, device_writes: bool, bounced: bool) -> (PhysAddr, NonNull<u8>) {
    let pages = pages_for(len);
    // SAFETY: the layout has a non-zero size.
    let virt = NonNull::new(unsafe { alloc_zeroed(layout(pages)) }).expect("out of memory");
    let mut m = memory();
    let phys = m.next_phys;
    m.next_phys += ((pages + 1) * PAGE_SIZE) as PhysAddr;
    m.regions.insert(
        phys,
        Region {
            virt,
            len: pages * PAGE_SIZE,
            device_writes,
            bounced,
            owner: std::thread::current().id(),
        },
    );
    (phys, virt)
}

fn free(phys: PhysAddr) -> Region {
    let region = memory()
        .regions
        .remove(&phys)
        .unwrap_or_else(|| panic!("the driver gave back {phys:#x}, which it never had"));
    // SAFETY: allocated in `allocate` with this layout; removed from the
    // table, so the device can no longer reach it.
    unsafe { dealloc(region.virt.as_ptr(), layout(region.len / PAGE_SIZE)) };
    region
}

/// Bounce copies this thread's driver has shared and not yet taken back.
pub fn shared_buffers() -> usize {
    let me = std::thread::current().id();
    memory()
        .regions
        .values()
        .filter(|r| r.bounced && r.owner == me)
        .count()
}

/// Run `f` on the place in this process of `[phys, phys + len)`, under
/// the table's lock, if all of it is inside one region the device may
/// reach (and, for a write, may write): the test fails if not.
fn with_place<R>(phys: PhysAddr, len: usize, write: bool, f: impl FnOnce(*mut u8) -> R) -> R {
    let m = memory();
    let (&start, region) = m
        .regions
        .range(..=phys)
        .next_back()
        .unwrap_or_else(|| panic!("device access at {phys:#x}: no memory there"));
    let offset = (phys - start) as usize;
    assert!(
        offset.checked_add(len).is_some_and(|end| end <= region.len),
        "device access [{phys:#x}, +{len}) runs past the region at {start:#x}"
    );
    assert!(
        !write || region.device_writes,
        "device write at {phys:#x} into memory shared only for reading"
    );
    // SAFETY: `offset` is inside the region's allocation.
    f(unsafe { region.virt.as_ptr().add(offset) })
}

/// The device reads `len` bytes at `phys`.
pub fn device_read(phys: PhysAddr, len: usize) -> Vec<u8> {
    // SAFETY: `with_place` checked the range is inside a live allocation,
    // which stays allocated while the lock is held.
    with_place(phys, len, false, |at| unsafe {
        std::slice::from_raw_parts(at, len).to_vec()
    })
}

/// The device writes `bytes` at `phys`.
pub fn device_write(phys: PhysAddr, bytes: &[u8]) {
    // SAFETY: as in `device_read`; the region is one the device may write.
    with_place(phys, bytes.len(), true, |at| unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len())
    })
}

/// A HAL whose physical addresses are entries of the table above.
pub struct TestHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned
// pages that stay allocated until `dma_dealloc`; `share` copies the buffer
// into pages of its own (handed to the device instead of the buffer) and
// `unshare` copies them back for the device's buffers; MMIO is never used
// (the fake transport has no registers in memory).
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        allocate(pages * PAGE_SIZE, true, false)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        free(paddr);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("the fake device has no memory-mapped registers ({paddr:#x})")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let device_writes = direction != BufferDirection::DriverToDevice;
        let (phys, virt) = allocate(buffer.len(), device_writes, true);
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is readable; the copy
            // is at least as long.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buffer.as_ptr() as *const u8,
                    virt.as_ptr(),
                    buffer.len(),
                )
            };
        }
        phys
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let region = memory().regions[&paddr].virt;
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the caller guarantees `buffer` is writable and the
            // device is done; the copy is at least as long.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    region.as_ptr(),
                    buffer.as_ptr() as *mut u8,
                    buffer.len(),
                )
            };
        }
        free(paddr);
    }
}

// SAFETY: `share` hands the device a copy in pages of its own, which stay
// allocated until `unshare`.
unsafe impl Bouncing for TestHal {}
