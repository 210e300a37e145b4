//! Send and receive in the simulator: the core's message path, with the
//! fault plan applied between "accepted" and "queued", and virtual-time
//! waiting on the receive side.
//!
//! Without faults a send is the core's `send`. With a fault plan, the
//! message is accepted with `prepare_send` (validated, capabilities moved
//! into kernel custody), and the injector decides: queue it now, discard
//! it (the core invalidates and audits its capabilities), or hold it for a
//! delay or a reordering. Every held message leaves the holding buffer
//! exactly once, so no fault can duplicate a message.
//!
//! The simulator mirrors each channel's queue as a list of sequence
//! numbers so the trace can say which message was delivered or lost,
//! including messages lost when a channel closes.

use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{
    Cap, CapHandle, CapKind, ChannelId, Duration, KernelError, MessageEnvelope, ReceivedMessage,
    Rights, TaskId,
};
use pandagen_core::channel::KERNEL_SENDER;
use pandagen_core::{ChannelRef, Delivered};

use crate::fault::{ChannelKey, MessageFault};
use crate::kernel::{InFlight, Queued, SimulatedKernel};
use crate::trace::{LossReason, TraceEvent};

/// What a send goes through.
#[derive(Clone, Copy)]
enum Target {
    Channel(CapHandle),
    Object(CapHandle),
}

impl SimulatedKernel {
    /// `send_with_capabilities` acting as `task`.
    pub(crate) fn send_as(
        &mut self,
        task: TaskId,
        channel: ChannelId,
        message: &MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_through(
            task,
            Target::Channel(channel.handle()),
            message,
            capabilities,
        )
    }

    /// `send_to_object` acting as `task`: the same path as a channel send,
    /// fault plan included, with the core's object-capability calls.
    pub(crate) fn send_to_object_as(
        &mut self,
        task: TaskId,
        object: CapHandle,
        message: &MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_through(task, Target::Object(object), message, capabilities)
    }

    fn send_through(
        &mut self,
        task: TaskId,
        target: Target,
        message: &MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        let now = self.clock_now();
        let bytes = message.encode()?;
        let ch = match target {
            Target::Channel(handle) => self.core.channel_of(task, handle, now)?,
            Target::Object(handle) => self.core.object_channel(task, handle, now)?,
        };
        let key = ChannelKey::from(ch);
        let handles: Vec<CapHandle> = capabilities.iter().map(Cap::handle).collect();
        let caps = handles.len();

        if !self.faults_active {
            let core_seq = match target {
                Target::Channel(handle) => self.core.send(task, handle, bytes, &handles, now)?,
                Target::Object(handle) => self
                    .core
                    .send_to_object(task, handle, bytes, &handles, now)?,
            };
            let seq = self.new_seq();
            self.record_sent(seq, message, task, key, caps);
            self.push_queued(key, core_seq, seq, caps);
            if !self.held.is_empty() {
                self.release_overtaken(key);
            }
            return Ok(());
        }

        if self.injector.send_should_fail(task) {
            self.record(TraceEvent::SendFailed {
                from: task,
                action: message.action.clone(),
            });
            return Err(KernelError::SendFailed(SendError::InjectedFault));
        }
        let parked = match target {
            Target::Channel(handle) => {
                self.core.prepare_send(task, handle, bytes, &handles, now)?
            }
            Target::Object(handle) => self
                .core
                .prepare_send_to_object(task, handle, bytes, &handles, now)?,
        };
        let seq = self.new_seq();
        self.record_sent(seq, message, task, key, caps);
        let in_flight = InFlight { parked, caps };
        match self.injector.message_fault(key, &message.action, task) {
            None => self.enqueue(seq, key, in_flight),
            Some(MessageFault::Drop) => self.lose(seq, in_flight, LossReason::InjectedDrop),
            Some(MessageFault::Delay(delay)) if delay > Duration::ZERO => {
                let until = now.saturating_add(delay);
                self.record(TraceEvent::Delayed { seq, until });
                self.held.hold_delayed(until, seq, key, in_flight);
            }
            Some(MessageFault::Delay(_)) => self.enqueue(seq, key, in_flight),
            // A message hit while another is held on its channel is the
            // one that overtakes: holding both would keep their order.
            Some(MessageFault::Reorder { .. }) if self.held.has_reordered(key) => {
                self.enqueue(seq, key, in_flight)
            }
            Some(MessageFault::Reorder { window }) => match self.injector.overtakes(window) {
                0 => self.enqueue(seq, key, in_flight),
                overtakes => {
                    self.record(TraceEvent::HeldForReorder { seq, overtakes });
                    self.held.hold_reordered(key, seq, overtakes, in_flight);
                }
            },
        }
        self.count_operation(task);
        Ok(())
    }

    /// `receive_with_capabilities` acting as `task`.
    pub(crate) fn receive_as(
        &mut self,
        task: TaskId,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        let handle = channel.handle();
        let start = self.clock_now();
        let ch = self.core.channel_of(task, handle, start)?;
        let key = ChannelKey::from(ch);

        if self.faults_active {
            if let Some(crash) = self.injector.receive_should_fail(task) {
                // A receive that would be refused anyway is refused as such.
                self.core
                    .lookup(task, handle, CapKind::Channel, Rights::RECEIVE, start)?;
                let consumed = if crash.consume {
                    self.consume_head(task, handle, key)?
                } else {
                    None
                };
                self.record(TraceEvent::ReceiveFailed {
                    task,
                    channel: key,
                    consumed,
                });
                return Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault));
            }
        }

        let deadline = timeout.map(|t| start.saturating_add(t));
        loop {
            if self.held.has_reordered(key) && self.core.queue_len(ch) == Some(0) {
                // Nothing else will overtake them while the queue is empty.
                for (seq, in_flight) in self.held.release_reordered(key) {
                    self.release(seq, key, in_flight);
                }
            }
            let now = self.clock_now();
            if let Some(delivered) = self.core.receive(task, handle, now)? {
                return self.deliver(task, key, delivered);
            }
            let next_due = self.held.next_due(Some(key));
            match (next_due, deadline) {
                (Some(due), Some(deadline)) if due <= deadline => self.advance_time_to(due),
                (Some(due), None) => self.advance_time_to(due),
                (_, Some(deadline)) => {
                    if deadline > now {
                        self.advance_time_to(deadline);
                        self.record(TraceEvent::Waited {
                            task,
                            until: deadline,
                        });
                    }
                    return Err(KernelError::Timeout);
                }
                // Nothing can ever arrive: see the module docs of `kernel`.
                (None, None) => return Err(KernelError::Timeout),
            }
        }
    }

    /// Hand a message the core delivered to `task` over as a
    /// `ReceivedMessage`, with the sender stamped as its source.
    fn deliver(
        &mut self,
        task: TaskId,
        key: ChannelKey,
        delivered: Delivered,
    ) -> Result<ReceivedMessage, KernelError> {
        let seq = match self.take_queued(key, delivered.seq) {
            Some(q) => q.seq,
            None => self.new_seq(),
        };
        let capabilities: Vec<Cap<()>> = delivered
            .caps
            .iter()
            .copied()
            .map(Cap::from_handle)
            .collect();
        let mut envelope = match MessageEnvelope::decode(&delivered.bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                // Only the simulator encodes messages, so this is a bug in
                // it; still, never leave the carried capabilities behind.
                let now = self.clock_now();
                for handle in delivered.caps {
                    let _ = self.core.drop_cap(task, handle, now);
                }
                return Err(KernelError::Envelope(error));
            }
        };
        envelope.source = (delivered.sender != KERNEL_SENDER).then_some(delivered.sender);
        self.record(TraceEvent::Delivered {
            seq,
            id: envelope.id,
            to: task,
            channel: key,
        });
        self.bump_activity();
        self.count_operation(task);
        Ok(ReceivedMessage {
            envelope,
            capabilities,
            badge: delivered.badge,
        })
    }

    /// A failing receive that consumes the head of the queue.
    fn consume_head(
        &mut self,
        task: TaskId,
        handle: CapHandle,
        key: ChannelKey,
    ) -> Result<Option<u64>, KernelError> {
        let now = self.clock_now();
        if !self.core.discard_next(task, handle, now)? {
            return Ok(None);
        }
        let lost = self.queued.get_mut(&key).and_then(|q| q.pop_front());
        let (seq, caps) = match lost {
            Some(q) => (q.seq, q.caps),
            None => (self.new_seq(), 0),
        };
        self.record(TraceEvent::Lost {
            seq,
            reason: LossReason::InjectedReceiveCrash,
            capabilities: caps,
        });
        self.bump_activity();
        self.reap_closed();
        Ok(Some(seq))
    }

    /// Queue a message the fault plan let through (or that came due).
    fn enqueue(&mut self, seq: u64, key: ChannelKey, in_flight: InFlight) {
        let now = self.clock_now();
        let InFlight { parked, caps } = in_flight;
        match self.core.enqueue(parked, now) {
            Ok(core_seq) => {
                self.push_queued(key, core_seq, seq, caps);
                self.release_overtaken(key);
            }
            Err(error) => {
                let reason = match error {
                    KernelError::SendFailed(SendError::QueueFull) => LossReason::QueueFull,
                    _ => LossReason::ChannelClosed,
                };
                // The core discarded it and invalidated its capabilities.
                self.record(TraceEvent::Lost {
                    seq,
                    reason,
                    capabilities: caps,
                });
                self.bump_activity();
                self.reap_closed();
            }
        }
    }

    /// A held message leaves the holding buffer for its queue.
    pub(crate) fn release(&mut self, seq: u64, key: ChannelKey, in_flight: InFlight) {
        self.record(TraceEvent::Released { seq });
        self.enqueue(seq, key, in_flight);
    }

    /// A message was queued on `key`: messages held for reordering there
    /// have been overtaken once more.
    fn release_overtaken(&mut self, key: ChannelKey) {
        for (seq, in_flight) in self.held.overtaken(key) {
            self.release(seq, key, in_flight);
        }
    }

    /// Discard an accepted message (its capabilities are invalidated and
    /// audited by the core).
    pub(crate) fn lose(&mut self, seq: u64, in_flight: InFlight, reason: LossReason) {
        let now = self.clock_now();
        let InFlight { parked, caps } = in_flight;
        self.core.discard(parked, now);
        self.record(TraceEvent::Lost {
            seq,
            reason,
            capabilities: caps,
        });
        self.bump_activity();
        self.reap_closed();
    }

    fn record_sent(
        &mut self,
        seq: u64,
        message: &MessageEnvelope,
        from: TaskId,
        channel: ChannelKey,
        capabilities: usize,
    ) {
        self.bump_activity();
        if self.trace.is_enabled() {
            self.record(TraceEvent::Sent {
                seq,
                id: message.id,
                from,
                channel,
                action: message.action.clone(),
                capabilities,
            });
        }
    }

    pub(crate) fn push_queued(&mut self, key: ChannelKey, core_seq: u64, seq: u64, caps: usize) {
        self.queued.entry(key).or_default().push_back(Queued {
            core_seq,
            seq,
            caps,
        });
    }

    /// Forget the queued message with the core's sequence number `core_seq`
    /// (normally the head of the mirror).
    fn take_queued(&mut self, key: ChannelKey, core_seq: u64) -> Option<Queued> {
        let queue = self.queued.get_mut(&key)?;
        let position = if queue.front()?.core_seq == core_seq {
            0
        } else {
            queue.iter().position(|q| q.core_seq == core_seq)?
        };
        queue.remove(position)
    }

    /// Count a completed message operation for crash-after-messages faults.
    fn count_operation(&mut self, task: TaskId) {
        if !self.faults_active {
            return;
        }
        if let Some(after) = self.injector.count_operation(task) {
            self.crash(task, after);
        }
    }

    /// After an operation that may have closed channels (a drop, a
    /// termination, a discarded message carrying receive rights): record
    /// the messages the core discarded with them, and discard the held
    /// messages bound for them.
    pub(crate) fn reap_closed(&mut self) {
        let now = self.clock_now();
        let closed: Vec<ChannelKey> = self
            .queued
            .keys()
            .copied()
            .filter(|key| self.core.is_channel_closed(ChannelRef::from(*key)))
            .collect();
        for key in closed {
            for q in self.queued.remove(&key).unwrap_or_default() {
                self.trace.push(
                    now,
                    TraceEvent::Lost {
                        seq: q.seq,
                        reason: LossReason::ChannelClosed,
                        capabilities: q.caps,
                    },
                );
            }
        }
        if self.held.is_empty() {
            return;
        }
        for key in self.held.channels() {
            if !self.core.is_channel_closed(ChannelRef::from(key)) {
                continue;
            }
            for (seq, in_flight) in self.held.take_channel(key) {
                self.lose(seq, in_flight, LossReason::ChannelClosed);
            }
        }
    }
}
