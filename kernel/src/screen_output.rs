//! The screen's output after the hand-over: what the kernel would have
//! drawn (everything written to the serial console, in that order, with
//! its colour) waits in a fixed ring buffer and is delivered as
//! `screen.output` messages on the channel the display service named in
//! `TakeOverScreen`.
//!
//! Writes come from anywhere (log lines in interrupt handlers included), so
//! the buffer is a fixed array and a write never allocates or takes the
//! kernel lock; delivery builds the messages once the kernel lock is held:
//! right after a write when the lock is free, at the end of a
//! `ConsoleWrite`, and at each timer tick. A full channel queue keeps the
//! bytes for the next try; a full buffer drops the oldest bytes and the
//! next message says how many. Output written while no display service
//! runs (it died, and its restart has not taken over yet) waits for the
//! next one. Each message is charged to the task that took the screen
//! over until it reads it; when that budget is spent, the bytes wait as
//! they do for a full queue.

use alloc::vec::Vec;
use pandagen_abi::error::SendError;
use pandagen_abi::screen::{ScreenColour, ScreenOutput, MAX_SCREEN_OUTPUT, SCREEN_OUTPUT_ACTION};
use pandagen_abi::{KernelError, MessageEnvelope, MessagePayload, SchemaVersion, TaskId};
use pandagen_core::{ChannelRef, KERNEL_SERVICE};
use spin::Mutex;
use x86_64::instructions::interrupts;

use crate::task::{self, KernelState, KERNEL};

/// Bytes held for the display service.
const BUFFER_BYTES: usize = 16 * 1024;
/// The schema of screen-output messages.
const OUTPUT_SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);

/// One byte and its colour (the colour's index in the high byte).
type Entry = u16;

struct Output {
    ring: [Entry; BUFFER_BYTES],
    head: usize,
    len: usize,
    /// Oldest bytes dropped for room since the last delivery.
    dropped: u64,
    /// The display service's channel, and the task that took the screen
    /// over, which pays for the messages queued there until it reads them.
    bound: Option<(ChannelRef, TaskId)>,
}

const COLOURS: [ScreenColour; 4] = [
    ScreenColour::Text,
    ScreenColour::Error,
    ScreenColour::Warn,
    ScreenColour::Debug,
];

fn colour_index(colour: ScreenColour) -> u16 {
    match colour {
        ScreenColour::Text => 0,
        ScreenColour::Error => 1,
        ScreenColour::Warn => 2,
        ScreenColour::Debug => 3,
    }
}

impl Output {
    fn push(&mut self, byte: u8, colour: u16) {
        if self.len == BUFFER_BYTES {
            self.head = (self.head + 1) % BUFFER_BYTES;
            self.len -= 1;
            self.dropped += 1;
        }
        self.ring[(self.head + self.len) % BUFFER_BYTES] = colour << 8 | u16::from(byte);
        self.len += 1;
    }

    /// The oldest run of one colour, at most `MAX_SCREEN_OUTPUT` bytes,
    /// without removing it.
    fn peek_run(&self) -> Option<(ScreenColour, Vec<u8>)> {
        let first = *self.ring.get(self.head).filter(|_| self.len > 0)?;
        let colour = first >> 8;
        let bytes = (0..self.len.min(MAX_SCREEN_OUTPUT))
            .map(|i| self.ring[(self.head + i) % BUFFER_BYTES])
            .take_while(|entry| entry >> 8 == colour)
            .map(|entry| entry as u8)
            .collect();
        Some((COLOURS[usize::from(colour)], bytes))
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % BUFFER_BYTES;
        self.len -= n;
    }
}

/// Taken only with interrupts off, and never held while anything that
/// could log runs.
static OUTPUT: Mutex<Output> = Mutex::new(Output {
    ring: [0; BUFFER_BYTES],
    head: 0,
    len: 0,
    dropped: 0,
    bound: None,
});

/// Queue `bytes` for the display service (the serial console's lock is
/// held: one order for both).
pub fn push(bytes: &[u8], colour: ScreenColour) {
    let colour = colour_index(colour);
    interrupts::without_interrupts(|| {
        let mut output = OUTPUT.lock();
        for &b in bytes {
            output.push(b, colour);
        }
    });
}

/// Send to `channel` from now on (a restarted display service replaces
/// the binding), and send what waits at once.
pub fn bind(k: &mut KernelState, channel: ChannelRef, payer: TaskId) {
    interrupts::without_interrupts(|| OUTPUT.lock().bound = Some((channel, payer)));
    deliver(k);
}

/// Deliver unless the kernel state is in use (then whoever holds it
/// delivers, or the next tick does).
pub fn deliver_if_free() {
    if let Some(mut guard) = KERNEL.try_lock() {
        if let Some(k) = guard.as_mut() {
            deliver(k);
        }
    }
}

/// Each timer tick: deliver what a full queue or a busy kernel held back.
pub fn on_tick() {
    let waiting = interrupts::without_interrupts(|| {
        let output = OUTPUT.lock();
        output.len > 0 && output.bound.is_some()
    });
    if waiting {
        deliver_if_free();
    }
}

/// Send waiting output to the bound channel, a run of one colour per
/// message, while its queue has room. The buffer's lock is not held while
/// sending (sending may log, and a log line comes back here).
pub fn deliver(k: &mut KernelState) {
    let now = task::now();
    loop {
        let taken = interrupts::without_interrupts(|| {
            let mut output = OUTPUT.lock();
            let (channel, payer) = output.bound?;
            let (colour, bytes) = output.peek_run()?;
            let dropped = core::mem::take(&mut output.dropped);
            Some(((channel, payer), colour, bytes, dropped))
        });
        let Some(((channel, payer), colour, bytes, dropped)) = taken else {
            return;
        };
        let len = bytes.len();
        let message = encode(ScreenOutput {
            colour,
            bytes,
            dropped,
        });
        let sent = match message {
            Some(message) => k.core_mut().send_from_kernel(channel, message, payer, now),
            // Cannot happen for a bounded run: drop it rather than stall.
            None => Ok(0),
        };
        let stop = interrupts::without_interrupts(|| {
            let mut output = OUTPUT.lock();
            match sent {
                Ok(_) => {
                    output.consume(len);
                    false
                }
                Err(e) => {
                    output.dropped += dropped;
                    let retry_later = matches!(
                        e,
                        KernelError::SendFailed(SendError::QueueFull)
                            | KernelError::ResourceExhausted(_)
                    );
                    if !retry_later {
                        // The display service ended: keep the bytes for
                        // its next instance.
                        output.bound = None;
                    }
                    true
                }
            }
        });
        if stop {
            return;
        }
    }
}

fn encode(output: ScreenOutput) -> Option<Vec<u8>> {
    let payload = MessagePayload::new(&output).ok()?;
    MessageEnvelope::new(KERNEL_SERVICE, SCREEN_OUTPUT_ACTION, OUTPUT_SCHEMA, payload)
        .encode()
        .ok()
}
