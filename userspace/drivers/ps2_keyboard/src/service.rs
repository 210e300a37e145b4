//! The driver's loop: interrupt notifications and subscriptions arrive on
//! one channel; typed bytes leave for the subscriber.

use alloc::vec::Vec;
use core::time::Duration;

use pandagen_abi::device::INTERRUPT_ACTION;
use pandagen_abi::{
    Cap, ChannelId, KernelApi, KernelError, MessageEnvelope, MessagePayload, ReceivedMessage,
    TaskId,
};

use crate::controller::{Controller, PortIo};
use crate::keymap::Decoder;
use crate::protocol::{INPUT_ACTION, KEYBOARD, SCHEMA, SUBSCRIBE_ACTION};

/// Typed bytes kept while nobody takes them; beyond this the oldest are
/// dropped (and counted), so a console that never reads cannot make the
/// driver grow without bound.
pub const PENDING_LIMIT: usize = 4096;
/// The most bytes one input message carries.
const CHUNK_BYTES: usize = 256;
/// While bytes wait for room in the subscriber's queue, the driver tries
/// again this often.
const RETRY: Duration = Duration::from_millis(10);

/// The interrupt line the driver holds: acknowledging unmasks it.
pub trait InterruptLine {
    fn acknowledge(&mut self) -> Result<(), KernelError>;
}

/// Where typed bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Subscriber {
    channel: ChannelId,
    task: Option<TaskId>,
}

pub struct Driver<P> {
    controller: Controller<P>,
    decoder: Decoder,
    /// Decoded bytes not yet sent, oldest first.
    pending: Vec<u8>,
    subscriber: Option<Subscriber>,
    /// Bytes dropped because `pending` was full.
    dropped: u64,
    scancodes: Vec<u8>,
}

impl<P: PortIo<Error = KernelError>> Driver<P> {
    /// A driver for an initialised controller.
    pub fn new(controller: Controller<P>, decoder: Decoder) -> Self {
        Driver {
            controller,
            decoder,
            pending: Vec::new(),
            subscriber: None,
            dropped: 0,
            scancodes: Vec::new(),
        }
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Bytes lost to a full buffer since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// IRQ 1 fired: take every byte, unmask, take what came meanwhile.
    pub fn on_interrupt(&mut self, line: &mut impl InterruptLine) -> Result<(), KernelError> {
        self.scancodes.clear();
        self.controller.drain(&mut self.scancodes)?;
        line.acknowledge()?;
        self.controller.drain(&mut self.scancodes)?;
        let mut typed = Vec::new();
        for &code in &self.scancodes {
            self.decoder.feed(code, &mut typed);
        }
        self.queue(&typed);
        Ok(())
    }

    fn queue(&mut self, typed: &[u8]) {
        self.pending.extend_from_slice(typed);
        if self.pending.len() > PENDING_LIMIT {
            let excess = self.pending.len() - PENDING_LIMIT;
            self.pending.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// A subscription: the attached capability becomes the destination.
    /// Anything else attached is released. A request without exactly one
    /// capability is ignored.
    pub fn subscribe<K: KernelApi>(&mut self, kernel: &mut K, received: ReceivedMessage) {
        let mut capabilities = received.capabilities;
        if capabilities.len() != 1 {
            for cap in capabilities {
                let _ = kernel.drop_capability(cap);
            }
            return;
        }
        let channel = ChannelId::from_handle(capabilities.remove(0).handle());
        if let Some(old) = self.subscriber.take() {
            let _ = kernel.drop_capability(Cap::from(old.channel));
        }
        self.subscriber = Some(Subscriber {
            channel,
            task: received.envelope.source,
        });
    }

    /// Send what is pending, in order, while the subscriber's queue takes
    /// it. A subscriber whose channel is gone is forgotten (its bytes wait
    /// for the next one).
    pub fn deliver<K: KernelApi>(&mut self, kernel: &mut K) {
        let Some(subscriber) = self.subscriber else {
            return;
        };
        while !self.pending.is_empty() {
            let n = self.pending.len().min(CHUNK_BYTES);
            let Ok(payload) = MessagePayload::new(&self.pending[..n].to_vec()) else {
                // A bounded chunk always fits; never stall on it.
                self.pending.drain(..n);
                continue;
            };
            let message = MessageEnvelope::new(KEYBOARD, INPUT_ACTION, SCHEMA, payload);
            match kernel.send_message(subscriber.channel, message) {
                Ok(()) => {
                    self.pending.drain(..n);
                }
                Err(KernelError::SendFailed(pandagen_abi::error::SendError::QueueFull)) => return,
                Err(_) => {
                    let _ = kernel.drop_capability(Cap::from(subscriber.channel));
                    self.subscriber = None;
                    return;
                }
            }
        }
    }

    /// The subscriber's task, if any (for the log).
    pub fn subscriber_task(&self) -> Option<TaskId> {
        self.subscriber.and_then(|s| s.task)
    }

    /// One message from the driver's channel.
    pub fn handle<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        line: &mut impl InterruptLine,
        received: ReceivedMessage,
    ) -> Result<(), KernelError> {
        let from_kernel = received.envelope.source.is_none();
        if from_kernel && received.envelope.action == INTERRUPT_ACTION {
            self.on_interrupt(line)?;
        } else if received.envelope.action == SUBSCRIBE_ACTION {
            self.subscribe(kernel, received);
        } else {
            for cap in received.capabilities {
                let _ = kernel.drop_capability(cap);
            }
        }
        self.deliver(kernel);
        Ok(())
    }

    /// Serve `channel` (bound to the interrupt and registered as
    /// [`KEYBOARD`]) until a system call fails.
    pub fn run<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        line: &mut impl InterruptLine,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        loop {
            let waiting = !self.pending.is_empty() && self.subscriber.is_some();
            let timeout = waiting.then_some(RETRY);
            match kernel.receive_with_capabilities(channel, timeout) {
                Ok(received) => self.handle(kernel, line, received)?,
                Err(KernelError::Timeout) => self.deliver(kernel),
                Err(e) => return Err(e),
            }
        }
    }
}
