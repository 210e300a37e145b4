//! Console input: COM1 receive interrupts (IRQ 4) feed a fixed ring
//! buffer, and the kernel delivers its bytes as kernel messages (action
//! `CONSOLE_INPUT_ACTION`, a `Vec<u8>` payload) on the channel a task bound
//! with `BindConsoleInput`. There is no polling loop: the UART interrupt
//! reads the bytes, and delivery happens in the same interrupt when the
//! kernel state is free.
//!
//! Nothing typed is lost while it fits the ring buffer: bytes stay in it
//! until delivered. When the bound channel's queue is full (the receiver
//! is busy running a command), bytes wait for the next interrupt or timer
//! tick, which retries; bytes beyond the buffer are counted and reported. Bytes typed before any
//! task bound the console wait for the first binding.
//!
//! The ring buffer is a fixed array, so the interrupt handler never
//! allocates; messages are built only once the kernel lock is held (and so
//! no other kernel code, the allocator included, is mid-operation).

use alloc::vec::Vec;
use pandagen_abi::error::SendError;
use pandagen_abi::syscall::CONSOLE_INPUT_ACTION;
use pandagen_abi::{KernelError, MessageEnvelope, MessagePayload, SchemaVersion, TaskId};
use pandagen_core::{ChannelRef, KERNEL_SERVICE};
use pandagen_hal::interrupt::InterruptHal;
use pandagen_hal::x86_64::{pic, X86Interrupts};
use spin::Mutex;

use crate::task::{self, KernelState, KERNEL};

/// COM1's legacy interrupt line.
const COM1_IRQ: u8 = 4;
/// Bytes held while nobody reads them.
const BUFFER_BYTES: usize = 8192;
/// The most bytes one message carries.
const CHUNK_BYTES: usize = 512;
/// The schema of console-input messages.
const INPUT_SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);

struct Input {
    ring: [u8; BUFFER_BYTES],
    head: usize,
    len: usize,
    /// Bytes that arrived while the buffer was full.
    overflowed: u64,
    /// The channel input goes to, and the task that bound it, which pays
    /// for each message until it is received.
    bound: Option<(ChannelRef, TaskId)>,
}

impl Input {
    fn push(&mut self, byte: u8) {
        if self.len == BUFFER_BYTES {
            self.overflowed += 1;
            return;
        }
        self.ring[(self.head + self.len) % BUFFER_BYTES] = byte;
        self.len += 1;
    }

    /// Up to `max` of the oldest bytes, without removing them.
    fn peek(&self, max: usize) -> Vec<u8> {
        let n = self.len.min(max);
        (0..n)
            .map(|i| self.ring[(self.head + i) % BUFFER_BYTES])
            .collect()
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % BUFFER_BYTES;
        self.len -= n;
    }
}

/// Taken only with interrupts off (in the IRQ handler, the timer tick and
/// system calls), so it can never be contended on this CPU.
static INPUT: Mutex<Input> = Mutex::new(Input {
    ring: [0; BUFFER_BYTES],
    head: 0,
    len: 0,
    overflowed: 0,
    bound: None,
});

/// Route COM1's receive interrupt here. The UART driver already enables
/// its receive-data interrupt (and OUT2, which gates it to the PIC).
pub fn init() {
    if let Err(e) = X86Interrupts.register_handler(pic::IRQ_BASE + COM1_IRQ, on_receive) {
        log::warn!("console input unavailable: IRQ {COM1_IRQ}: {e:?}");
    }
}

/// IRQ 4: take every byte the UART holds, then deliver what can be.
fn on_receive() {
    drain_uart();
    deliver_if_free();
}

/// Each timer tick: retry delivery held back by a full queue, and pick up
/// bytes whose interrupt was not serviced (a full buffer).
pub fn on_tick() {
    if INPUT.lock().len > 0 {
        drain_uart();
        deliver_if_free();
    }
}

fn drain_uart() {
    let mut input = INPUT.lock();
    while input.len < BUFFER_BYTES {
        match crate::console::read_byte() {
            Some(byte) => input.push(byte),
            None => break,
        }
    }
}

/// Deliver unless the kernel state is in use (then the code using it
/// delivers, or the next tick does).
fn deliver_if_free() {
    if let Some(mut guard) = KERNEL.try_lock() {
        if let Some(k) = guard.as_mut() {
            deliver(k);
        }
    }
}

/// Send buffered bytes to the bound channel, a chunk per message, while
/// its queue has room.
pub fn deliver(k: &mut KernelState) {
    let mut input = INPUT.lock();
    let Some((channel, binder)) = input.bound else {
        return;
    };
    if input.overflowed > 0 {
        log::warn!(
            "console input: {} bytes lost while the buffer was full",
            input.overflowed
        );
        input.overflowed = 0;
    }
    let now = task::now();
    while input.len > 0 {
        let chunk = input.peek(CHUNK_BYTES);
        let Some(bytes) = encode(&chunk) else {
            // Cannot happen for a bounded chunk; drop it rather than stall.
            input.consume(chunk.len());
            continue;
        };
        match k.core_mut().send_from_kernel(channel, bytes, binder, now) {
            Ok(_) => input.consume(chunk.len()),
            // Full, or the binder's budget is: the bytes wait for the
            // receiver to take what is queued.
            Err(KernelError::SendFailed(SendError::QueueFull))
            | Err(KernelError::ResourceExhausted(_)) => break,
            Err(_) => {
                // The channel closed or the binder ended: keep the bytes
                // for the next task that binds the console.
                input.bound = None;
                break;
            }
        }
    }
}

fn encode(chunk: &[u8]) -> Option<Vec<u8>> {
    let payload = MessagePayload::new(&chunk.to_vec()).ok()?;
    MessageEnvelope::new(KERNEL_SERVICE, CONSOLE_INPUT_ACTION, INPUT_SCHEMA, payload)
        .encode()
        .ok()
}

/// Deliver console input on `channel` from now on. A new binding replaces
/// the old one (a restarted console takes over); bytes already typed go to
/// it at once.
pub fn bind(k: &mut KernelState, channel: ChannelRef, binder: TaskId) {
    INPUT.lock().bound = Some((channel, binder));
    drain_uart();
    deliver(k);
}
