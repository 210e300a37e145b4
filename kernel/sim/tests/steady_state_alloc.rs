//! In steady state, a message through the simulator allocates nothing:
//! neither the core's send and receive, nor the mirror that keeps the
//! envelope, nor the trace (a full ring whose records share the action's
//! name). Both paths are counted: a message queued and then received, and
//! one handed straight to a task already blocked receiving.
//!
//! One binary of its own with one test, because it counts every
//! allocation of the process (libtest's other threads would be counted
//! too). The envelopes are built before counting starts: making one
//! allocates its action and payload, which is the sender's business.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pandagen_abi::{
    Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, SchemaVersion, ServiceId,
};
use pandagen_sim::SimulatedKernel;

struct CountingAllocator;

/// Whether allocations are being counted.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations (and reallocations) made while counting.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note_allocation() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter only observes that an allocation happened.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Messages of each counted run.
const MESSAGES: usize = 5_000;

fn envelopes(n: usize) -> Vec<MessageEnvelope> {
    let message = MessageEnvelope::new(
        ServiceId::from_raw(1),
        "bench.echo",
        SchemaVersion::new(1, 0),
        MessagePayload::from_bytes(vec![0xAB; 64]).expect("64 bytes fit"),
    );
    vec![message; n]
}

/// Allocations made by `run`.
fn allocations_of(run: impl FnOnce()) -> u64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    run();
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Send each envelope, then receive it from the queue.
fn queued(
    kernel: &mut SimulatedKernel,
    channel: pandagen_abi::ChannelId,
    batch: Vec<MessageEnvelope>,
) {
    for message in batch {
        kernel.send_message(channel, message).expect("room");
        let received = kernel
            .receive_message(channel, Some(Duration::ZERO))
            .expect("the message just sent");
        drop(received);
    }
}

/// Block receiving on an empty channel, then send: the core hands the
/// message to the blocked task, whose next receive takes it.
fn handed(
    kernel: &mut SimulatedKernel,
    channel: pandagen_abi::ChannelId,
    batch: Vec<MessageEnvelope>,
) {
    for message in batch {
        assert_eq!(
            kernel
                .receive_message(channel, Some(Duration::ZERO))
                .map(|_| ()),
            Err(KernelError::Timeout)
        );
        kernel.send_message(channel, message).expect("room");
        let received = kernel
            .receive_message(channel, Some(Duration::ZERO))
            .expect("the message handed over");
        drop(received);
    }
}

#[test]
fn steady_state_messages_allocate_nothing() {
    let mut kernel = SimulatedKernel::new();
    assert!(kernel.trace().is_enabled());
    let channel = kernel.create_channel().expect("channel");
    // Warm up: fill the trace's ring, and let every buffer reach its
    // steady size.
    let warm_up = kernel.trace().capacity() / 2 + 1_000;
    queued(&mut kernel, channel, envelopes(warm_up));
    handed(&mut kernel, channel, envelopes(1_000));
    assert!(kernel.trace().dropped() > 0, "the ring is full");

    let batch = envelopes(MESSAGES);
    let allocations = allocations_of(|| queued(&mut kernel, channel, batch));
    assert_eq!(allocations, 0, "queued messages allocated");

    let before = kernel.ipc_counts();
    let batch = envelopes(MESSAGES);
    let allocations = allocations_of(|| handed(&mut kernel, channel, batch));
    assert_eq!(allocations, 0, "handed-off messages allocated");
    let after = kernel.ipc_counts();
    assert_eq!(
        after.handed_off - before.handed_off,
        MESSAGES as u64,
        "every message was handed off"
    );
}
