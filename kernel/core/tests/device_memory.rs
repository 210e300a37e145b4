//! Kernel memory under a driver that restarts forever: each restart binds
//! the interrupt line again to the same long-lived channel and dies. The
//! heap the core holds must not grow with the number of restarts (a
//! growth here would be kernel memory no budget pays for).
//!
//! One test in its own binary: it counts every allocation of its thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use pandagen_abi::device::{DeviceResource, InterruptLines, PhysRange};
use pandagen_abi::ExitReason;
use pandagen_core::{CoreConfig, KernelCore, DEVICE_RIGHTS, ROOT_DEVICE_CAPS};

struct Counting;

thread_local! {
    /// Heap bytes this thread holds. Counted per thread because the test
    /// harness's own thread may allocate while the test runs (its progress
    /// reports on a slow machine), which is not the core's memory; only
    /// differences are meaningful, since a thread may free what another
    /// allocated.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add_live(delta: isize) {
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get().wrapping_add(delta)));
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add_live(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add_live(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Restarts before measuring: every table at its steady size, the audit
/// ring and the exit notifications full.
const WARMUP: usize = 8;

#[test]
fn a_driver_restarting_on_the_same_channel_grows_no_kernel_memory() {
    // The stores that grow by design are held to small bounds, reached
    // during the warm-up: the audit ring, the exit notifications; ended
    // identities are not kept.
    let mut k = KernelCore::new(CoreConfig {
        audit_capacity: 16,
        exit_notification_capacity: 4,
        keep_ended_identities: false,
        ..CoreConfig::default()
    });
    k.set_reserved_physical(vec![PhysRange::new(0, 0x800_0000)]);
    let supervisor = spawn(&mut k, "supervisor");
    let irqs = k
        .mint(supervisor, ROOT_DEVICE_CAPS[2].0, ROOT_DEVICE_CAPS[2].1, T0)
        .unwrap();
    let line = k
        .mint_device(
            supervisor,
            irqs,
            DeviceResource::Interrupts(InterruptLines::one(11)),
            DEVICE_RIGHTS,
            T0,
        )
        .unwrap();
    // The channel the supervisor keeps and every incarnation binds to.
    let channel = k.create_channel(supervisor, T0).unwrap();
    let restart = |k: &mut KernelCore| {
        let driver = spawn(k, "driver");
        let authority = authorise(k, supervisor, driver);
        let driver_line = k.grant(supervisor, line, driver, T0).unwrap();
        let driver_channel = k.grant(supervisor, channel, driver, T0).unwrap();
        k.drop_cap(supervisor, authority, T0).unwrap();
        k.bind_interrupt(driver, driver_line, 11, driver_channel, T0)
            .unwrap();
        k.terminate(driver, ExitReason::Normal, T0).unwrap();
    };
    for _ in 0..WARMUP {
        restart(&mut k);
    }
    k.check_invariants().unwrap();
    let steady = live_bytes();
    for _ in 0..64 {
        restart(&mut k);
    }
    k.check_invariants().unwrap();
    assert_eq!(live_bytes(), steady, "kernel heap after 64 more restarts");
}
