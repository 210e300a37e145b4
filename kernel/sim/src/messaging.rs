//! Send and receive in the simulator: the core's message path, with the
//! fault plan applied between "accepted" and "queued", and virtual-time
//! waiting on the receive side.
//!
//! # Envelopes move; the core checks
//!
//! The simulator never encodes an envelope. It measures the length the
//! encoding would have ([`MessageEnvelope::encoded_len`], which applies
//! the wire's limits), gives the core that length as a [`Body::Kept`], and
//! keeps the envelope itself beside the core's queue, in a mirror that
//! also holds the trace's sequence number. The core does everything else
//! exactly as for the real kernel: one capability check, the channel's
//! size limit and room, capability transfer, ordering, waking. On delivery
//! the core names the message by its sequence number and the simulator
//! hands over the envelope it kept, stamped with the sender the core saw.
//!
//! # The shortcuts of the real kernel
//!
//! A receive that finds the queue empty leaves the task blocked on that
//! channel in the core, as the real kernel's would. A send without
//! capabilities goes through the core's `send_or_hand_off`: if a task is
//! blocked receiving on the channel, the message is handed to it directly
//! (nothing is queued) and waits for it in the simulator's hand-off slot
//! until its next receive on that channel. `send_then_receive` tries the
//! core's fast path, `send_receive_fast`, first: the receiver is handed the
//! message and becomes the running task, and the caller is left blocked on
//! its receive channel. The trace records both (`HandedOff`, `SwitchedTo`).
//!
//! # Faults
//!
//! With a fault plan, the message is accepted with `prepare_send`
//! (validated, capabilities moved into kernel custody), and the injector
//! decides: queue it now, discard it (the core invalidates and audits its
//! capabilities), or hold it for a delay or a reordering. Every held
//! message leaves the holding buffer exactly once, so no fault can
//! duplicate a message. Fault plans apply to queued messages, so a send
//! under a plan never takes a shortcut.

use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{
    Badge, Cap, CapHandle, CapKind, ChannelId, Duration, Instant, KernelApi, KernelError,
    MessageEnvelope, ReceivedMessage, Rights, TaskId,
};
use pandagen_core::channel::KERNEL_SENDER;
use pandagen_core::{Body, ChannelRef, Delivered, RecvOutcome, Sent};

use crate::fault::{ChannelKey, MessageFault};
use crate::kernel::{Handed, InFlight, Queued, SimulatedKernel};
use crate::mirror::SlotTaken;
use crate::trace::{LossReason, TraceEvent};

/// The shape a receive hands a delivered message back in, built where the
/// envelope leaves the mirror (so the envelope is not moved once more per
/// layer on its way out): the whole [`ReceivedMessage`]
/// (`receive_with_capabilities`), or only its envelope (`receive_message`,
/// which drops the capabilities the message carried, as `KernelApi`'s
/// default does, once the delivery is recorded).
pub(crate) trait Receipt: Sized {
    /// The receipt of `envelope`, delivered with the capability handles
    /// `caps` (now in the receiver's space; taken) and `badge`.
    fn delivered(
        kernel: &mut SimulatedKernel,
        envelope: MessageEnvelope,
        caps: &mut Vec<CapHandle>,
        badge: Option<Badge>,
    ) -> Self;
}

impl Receipt for ReceivedMessage {
    #[inline(always)]
    fn delivered(
        _: &mut SimulatedKernel,
        envelope: MessageEnvelope,
        caps: &mut Vec<CapHandle>,
        badge: Option<Badge>,
    ) -> Self {
        let capabilities: Vec<Cap<()>> = match caps.is_empty() {
            true => Vec::new(),
            false => std::mem::take(caps)
                .into_iter()
                .map(Cap::from_handle)
                .collect(),
        };
        ReceivedMessage {
            envelope,
            capabilities,
            badge,
        }
    }
}

impl Receipt for MessageEnvelope {
    #[inline(always)]
    fn delivered(
        kernel: &mut SimulatedKernel,
        envelope: MessageEnvelope,
        caps: &mut Vec<CapHandle>,
        _: Option<Badge>,
    ) -> Self {
        if !caps.is_empty() {
            drop_received(kernel, std::mem::take(caps));
        }
        envelope
    }
}

/// `receive_message`'s release of the capabilities a message carried (as
/// `KernelApi::receive_message` does: a capability that cannot be dropped
/// is already invalid, which is the goal anyway).
#[cold]
fn drop_received(kernel: &mut SimulatedKernel, caps: Vec<CapHandle>) {
    for handle in caps {
        let _ = KernelApi::drop_capability(kernel, Cap::from_handle(handle));
    }
}

/// What a send goes through.
#[derive(Clone, Copy)]
enum Target {
    Channel(CapHandle),
    Object(CapHandle),
}

impl SimulatedKernel {
    /// `send_with_capabilities` acting as `task`.
    #[inline]
    pub(crate) fn send_as(
        &mut self,
        task: TaskId,
        channel: ChannelId,
        message: MessageEnvelope,
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
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_through(task, Target::Object(object), message, capabilities)
    }

    /// `send_then_receive` acting as `task`: the core's fast path when the
    /// receiver is waiting and would run next (see the module docs), else
    /// a receive check, a send and a receive, as the real kernel does.
    pub(crate) fn send_then_receive_as(
        &mut self,
        task: TaskId,
        send: ChannelId,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        if !self.faults_active && self.core.is_alive(task) {
            let len = message.encoded_len()?;
            let now = self.clock_now();
            self.make_running(task);
            // The simulator keeps receive deadlines itself (in virtual
            // time), so the core is given none.
            let switched = self.core.send_receive_fast(
                task,
                send.handle(),
                Body::Kept(len),
                receive.handle(),
                None,
                || now,
                |_| true,
            );
            if let Some(switched) = switched {
                let key = ChannelKey::from(switched.channel);
                let seq = self.new_seq();
                self.record_sent(seq, &message, task, key, 0);
                self.record(TraceEvent::SwitchedTo {
                    seq,
                    to: switched.receiver,
                });
                self.ipc.switched += 1;
                self.running = Some(switched.receiver);
                self.hand(switched.receiver, key, seq, task, message);
                return self.receive_as(task, receive, timeout);
            }
        }
        let now = self.clock_now();
        self.core.check_receive(task, receive.handle(), now)?;
        self.send_as(task, send, message, Vec::new())?;
        self.receive_as(task, receive, timeout)
    }

    /// Make `task` the core's running task (the simulator decides who
    /// runs): the task that was running goes back to its ready list, unless
    /// it has blocked since; `task` stops waiting if it blocked since it
    /// last ran.
    pub(crate) fn make_running(&mut self, task: TaskId) {
        if let Some(previous) = self.running.take() {
            if previous != task {
                self.core.yield_task(previous);
            }
        }
        if self.core.run_task(task) {
            self.running = Some(task);
        }
    }

    #[inline(always)]
    fn send_through(
        &mut self,
        task: TaskId,
        target: Target,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        let now = self.clock_now();
        let len = message.encoded_len()?;
        // Most messages carry no capabilities: no vector for their handles.
        let handles: Vec<CapHandle> = match capabilities.is_empty() {
            true => Vec::new(),
            false => capabilities.iter().map(Cap::handle).collect(),
        };
        let caps = handles.len();

        if !self.faults_active {
            let body = Body::Kept(len);
            let sent = match target {
                Target::Channel(handle) => {
                    self.core
                        .send_or_hand_off(task, handle, body, &handles, now, |_| true)?
                }
                Target::Object(handle) => {
                    let (channel, seq) = self
                        .core
                        .send_to_object(task, handle, body, &handles, now)?;
                    Sent::Queued { channel, seq }
                }
            };
            let key = ChannelKey::from(sent.channel());
            let seq = self.new_seq();
            self.record_sent(seq, &message, task, key, caps);
            match sent {
                Sent::Queued { seq: core_seq, .. } => {
                    self.push_queued(key, core_seq, seq, caps, message);
                    if !self.held.is_empty() {
                        self.release_overtaken(key);
                    }
                }
                Sent::HandedOff { receiver, .. } => {
                    self.record(TraceEvent::HandedOff { seq, to: receiver });
                    self.ipc.handed_off += 1;
                    self.hand(receiver, key, seq, task, message);
                }
            }
            return Ok(());
        }
        self.send_under_plan(task, target, message, len, &handles, now)
    }

    /// A send while a fault plan is active: the message is accepted and
    /// parked, and the injector decides whether it is queued now, lost or
    /// held (see the module docs).
    #[inline(never)]
    fn send_under_plan(
        &mut self,
        task: TaskId,
        target: Target,
        message: MessageEnvelope,
        len: usize,
        handles: &[CapHandle],
        now: Instant,
    ) -> Result<(), KernelError> {
        let caps = handles.len();
        // Refusals come before injected failures, as without a plan.
        let ch = match target {
            Target::Channel(handle) => self.core.channel_of(task, handle, now)?,
            Target::Object(handle) => self.core.object_channel(task, handle, now)?,
        };
        let key = ChannelKey::from(ch);
        if self.injector.send_should_fail(task) {
            let action = self.trace.intern(&message.action);
            self.record(TraceEvent::SendFailed { from: task, action });
            return Err(KernelError::SendFailed(SendError::InjectedFault));
        }
        let body = Body::Kept(len);
        let parked = match target {
            Target::Channel(handle) => self.core.prepare_send(task, handle, body, handles, now)?,
            Target::Object(handle) => self
                .core
                .prepare_send_to_object(task, handle, body, handles, now)?,
        };
        let seq = self.new_seq();
        self.record_sent(seq, &message, task, key, caps);
        let fault = self.injector.message_fault(key, &message.action, task);
        let in_flight = InFlight {
            parked,
            caps,
            envelope: message,
        };
        match fault {
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

    /// Keep a message the core handed to `receiver` until it receives on
    /// that channel.
    fn hand(
        &mut self,
        receiver: TaskId,
        key: ChannelKey,
        seq: u64,
        sender: TaskId,
        envelope: MessageEnvelope,
    ) {
        self.handed.push(Handed {
            receiver,
            key,
            seq,
            sender,
            envelope,
        });
    }

    /// The message handed to `task` on the channel `handle` names, if any
    /// (the receive it completes was checked when the task blocked; the
    /// handle is checked again, as any receive's).
    fn take_handed<R: Receipt>(
        &mut self,
        task: TaskId,
        handle: CapHandle,
    ) -> Result<Option<R>, KernelError> {
        if !self.handed.iter().any(|h| h.receiver == task) {
            return Ok(None);
        }
        let now = self.clock_now();
        let info = self
            .core
            .lookup(task, handle, CapKind::Channel, Rights::RECEIVE, now)?;
        let pandagen_core::ObjectRef::Channel(ch) = info.object else {
            return Ok(None);
        };
        let key = ChannelKey::from(ch);
        let Some(i) = self
            .handed
            .iter()
            .position(|h| h.receiver == task && h.key == key)
        else {
            return Ok(None);
        };
        let Handed {
            seq,
            sender,
            mut envelope,
            ..
        } = self.handed.remove(i);
        envelope.source = Some(sender);
        self.record(TraceEvent::Delivered {
            seq,
            id: envelope.id,
            to: task,
            channel: key,
        });
        self.bump_activity();
        Ok(Some(R::delivered(self, envelope, &mut Vec::new(), None)))
    }

    /// Messages handed to `task` that it will never take now that it has
    /// ended.
    pub(crate) fn lose_handed_to(&mut self, task: TaskId) {
        if !self.handed.iter().any(|h| h.receiver == task) {
            return;
        }
        let (lost, kept) = std::mem::take(&mut self.handed)
            .into_iter()
            .partition(|h| h.receiver == task);
        self.handed = kept;
        for Handed { seq, .. } in lost {
            self.record(TraceEvent::Lost {
                seq,
                reason: LossReason::ReceiverExited,
                capabilities: 0,
            });
            self.bump_activity();
        }
    }

    /// `receive_with_capabilities` (or, as `R`, `receive_message`) acting
    /// as `task`.
    #[inline(always)]
    pub(crate) fn receive_as<R: Receipt>(
        &mut self,
        task: TaskId,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<R, KernelError> {
        if self.handed.is_empty() && !self.faults_active && self.held.is_empty() {
            return self.receive_queued(task, channel.handle(), timeout);
        }
        self.receive_any(task, channel, timeout)
    }

    /// A receive when nothing can arrive later on its own (no fault plan,
    /// nothing held): take what is queued, or stay blocked in the core for
    /// a hand-off.
    #[inline(always)]
    fn receive_queued<R: Receipt>(
        &mut self,
        task: TaskId,
        handle: CapHandle,
        timeout: Option<Duration>,
    ) -> Result<R, KernelError> {
        let start = self.clock_now();
        // The core's result is read in place, not moved out of the
        // `Result` (nor the `Delivered` out of the outcome).
        match self.receive_or_block(task, handle, start) {
            Ok(RecvOutcome::Message(delivered)) => self.deliver(task, delivered),
            Ok(_) => self.wait_from(task, start, timeout),
            Err(error) => Err(error),
        }
    }

    /// [`Self::wait_in_vain`] until `timeout` after `start`, out of line:
    /// the deadline's arithmetic (an inlined saturating addition) kept in
    /// [`Self::receive_queued`], where nothing waits when a message is
    /// queued, cost every receive there 39 instructions through the
    /// compiler's inlining of the rest (`sim_send_receive_64b_instructions`
    /// 630 -> 669 when `Instant::saturating_add` became inline).
    #[inline(never)]
    fn wait_from<R>(
        &mut self,
        task: TaskId,
        start: Instant,
        timeout: Option<Duration>,
    ) -> Result<R, KernelError> {
        self.wait_in_vain(task, timeout.map(|t| start.saturating_add(t)))
    }

    /// [`Self::receive_as`] in every case: a message handed to `task`,
    /// held messages that come due while it waits, and the fault plan's
    /// receive failures.
    #[inline(never)]
    fn receive_any<R: Receipt>(
        &mut self,
        task: TaskId,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<R, KernelError> {
        let handle = channel.handle();
        if !self.handed.is_empty() {
            if let Some(message) = self.take_handed(task, handle)? {
                return Ok(message);
            }
        }
        if !self.faults_active && self.held.is_empty() {
            return self.receive_queued(task, handle, timeout);
        }
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
            if let RecvOutcome::Message(delivered) = self.receive_or_block(task, handle, now)? {
                return self.deliver(task, delivered);
            }
            let next_due = self.held.next_due(Some(key));
            match (next_due, deadline) {
                (Some(due), Some(deadline)) if due <= deadline => self.advance_time_to(due),
                (Some(due), None) => self.advance_time_to(due),
                _ => return self.wait_in_vain(task, deadline),
            }
        }
    }

    /// The core's receive, blocking `task` in the core if nothing is queued.
    /// The simulator keeps receive deadlines itself (in virtual time), so
    /// the core is given none. A head message whose capabilities do not
    /// fit in `task`'s space is discarded by the core; its envelope leaves
    /// the mirror with it, and the trace records the loss.
    #[inline(always)]
    fn receive_or_block(
        &mut self,
        task: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<RecvOutcome, KernelError> {
        let received = self.core.receive_or_block(task, handle, None, now);
        if let Err(KernelError::ReceiveFailed(ReceiveError::NoRoomForCapabilities { .. })) =
            received
        {
            if let Ok(ch) = self.core.channel_of(task, handle, now) {
                let key = ChannelKey::from(ch);
                if let Some(lost) = self.queued.pop_front(key) {
                    self.record(TraceEvent::Lost {
                        seq: lost.seq,
                        reason: LossReason::ReceiverFull,
                        capabilities: lost.caps,
                    });
                    self.bump_activity();
                }
            }
            self.reap_closed();
        }
        received
    }

    /// A receive that nothing will satisfy before its timeout: the clock
    /// moves to the deadline (see the module docs of `kernel`), and the
    /// task stays blocked in the core, where a later send can hand it a
    /// message.
    fn wait_in_vain<R>(
        &mut self,
        task: TaskId,
        deadline: Option<Instant>,
    ) -> Result<R, KernelError> {
        let now = self.clock_now();
        if let Some(deadline) = deadline {
            if deadline > now {
                self.advance_time_to(deadline);
                self.record(TraceEvent::Waited {
                    task,
                    until: deadline,
                });
            }
        }
        Err(KernelError::Timeout)
    }

    /// Hand a message the core delivered to `task` over as a
    /// `ReceivedMessage`: the envelope the simulator kept for it, stamped
    /// with the sender the core saw.
    #[inline(always)]
    fn deliver<R: Receipt>(
        &mut self,
        task: TaskId,
        delivered: Delivered,
    ) -> Result<R, KernelError> {
        // Taken apart at once, so that its fields need not be kept together
        // in memory.
        let Delivered {
            channel,
            sender,
            bytes,
            caps,
            seq: core_seq,
            badge,
        } = delivered;
        let key = ChannelKey::from(channel);
        // The kept envelope goes straight into the `ReceivedMessage`: the
        // rare decoded one takes a path of its own rather than meeting it
        // in a shared local, which would cost the common one a copy.
        match self.take_queued(key, core_seq) {
            Some(q) => self.stamped(task, (sender, caps, badge), key, q.seq, q.envelope),
            None => {
                let (seq, envelope) = self.unmirrored(task, &bytes, &caps)?;
                self.stamped(task, (sender, caps, badge), key, seq, envelope)
            }
        }
    }

    /// [`Self::deliver`]'s `ReceivedMessage`: `envelope` stamped with the
    /// sender the core saw, and the delivery recorded.
    #[inline(always)]
    fn stamped<R: Receipt>(
        &mut self,
        task: TaskId,
        (sender, mut caps, badge): (TaskId, Vec<CapHandle>, Option<Badge>),
        key: ChannelKey,
        seq: u64,
        mut envelope: MessageEnvelope,
    ) -> Result<R, KernelError> {
        envelope.source = (sender != KERNEL_SENDER).then_some(sender);
        self.record(TraceEvent::Delivered {
            seq,
            id: envelope.id,
            to: task,
            channel: key,
        });
        self.bump_activity();
        self.count_operation(task);
        Ok(R::delivered(self, envelope, &mut caps, badge))
    }

    /// The envelope of a message the core delivered that the simulator
    /// kept none for, and a new trace number for it. Only messages the
    /// simulator queued reach a receiver, so this is a bug in it; still,
    /// its bytes are decoded, and if they do not decode, the capabilities
    /// it carried are not left behind.
    #[cold]
    fn unmirrored(
        &mut self,
        task: TaskId,
        bytes: &[u8],
        caps: &[CapHandle],
    ) -> Result<(u64, MessageEnvelope), KernelError> {
        match MessageEnvelope::decode(bytes) {
            Ok(envelope) => Ok((self.new_seq(), envelope)),
            Err(error) => {
                let now = self.clock_now();
                for &handle in caps {
                    let _ = self.core.drop_cap(task, handle, now);
                }
                Err(KernelError::Envelope(error))
            }
        }
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
        let lost = self.queued.pop_front(key);
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
        let InFlight {
            parked,
            caps,
            envelope,
        } = in_flight;
        match self.core.enqueue(parked, now) {
            Ok(core_seq) => {
                self.push_queued(key, core_seq, seq, caps, envelope);
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
        let InFlight { parked, caps, .. } = in_flight;
        self.core.discard(parked, now);
        self.record(TraceEvent::Lost {
            seq,
            reason,
            capabilities: caps,
        });
        self.bump_activity();
        self.reap_closed();
    }

    #[inline]
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
            let action = self.trace.intern(&message.action);
            self.record(TraceEvent::Sent {
                seq,
                id: message.id,
                from,
                channel,
                action,
                capabilities,
            });
        }
    }

    #[inline]
    pub(crate) fn push_queued(
        &mut self,
        key: ChannelKey,
        core_seq: u64,
        seq: u64,
        caps: usize,
        envelope: MessageEnvelope,
    ) {
        self.ipc.queued += 1;
        let queued = Queued {
            core_seq,
            seq,
            caps,
            envelope,
        };
        match self.queued.queue_for(key) {
            Ok(queue) => queue.push_back(queued),
            Err(SlotTaken) => {
                // The channel that had this slot is gone: its messages are
                // recorded lost (as they would be at the next reap), which
                // frees the slot.
                self.reap_closed();
                match self.queued.queue_for(key) {
                    Ok(queue) => queue.push_back(queued),
                    Err(SlotTaken) => unreachable!("reaping frees a destroyed channel's slot"),
                }
            }
        }
    }

    /// Forget the queued message with the core's sequence number `core_seq`
    /// (normally the head of the mirror).
    #[inline]
    fn take_queued(&mut self, key: ChannelKey, core_seq: u64) -> Option<Queued> {
        self.queued.take(key, core_seq)
    }

    /// Count a completed message operation for crash-after-messages faults.
    #[inline]
    fn count_operation(&mut self, task: TaskId) {
        if self.faults_active {
            self.count_under_plan(task);
        }
    }

    /// [`Self::count_operation`] while a fault plan is active.
    #[inline(never)]
    fn count_under_plan(&mut self, task: TaskId) {
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
        let mut closed = self.queued.keys();
        closed.retain(|key| self.core.is_channel_closed(ChannelRef::from(*key)));
        for key in closed {
            for q in self.queued.take_all(key) {
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
