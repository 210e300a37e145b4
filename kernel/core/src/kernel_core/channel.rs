//! Channels and messages: create, send (direct or parked for fault
//! injection), receive, and the queries and hooks the simulator needs.
//!
//! The send and receive paths are O(1) apart from the byte copy the caller
//! already made (the bytes arrive as a `Vec` and leave as the same `Vec`)
//! and O(k) in the k ≤ `max_caps_per_message` capabilities carried. A
//! message without capabilities allocates nothing beyond queue growth.

use alloc::vec::Vec;
use pandagen_abi::error::{ChannelError, ReceiveError, Resource, SendError};
use pandagen_abi::{Badge, Budget, CapHandle, CapKind, Instant, KernelError, Rights, TaskId};

use super::{check_channel_cap, KernelCore};
use crate::audit::{CapabilityEvent, InvalidationReason};
use crate::budget::{
    message_cost, AccountId, BudgetUsage, CAP_COST, CHANNEL_COST, EXIT_ROUTE_COST,
};
use crate::cap_table::{Capability, Holder, InvalidUse, ObjectRef};
use crate::channel::{Body, Channel, ChannelRef, Delivered, Message};
use crate::task::WakeReason;

/// A message the kernel has accepted but not yet queued: the handle for
/// fault injection (delay, drop). Its capabilities are in kernel custody.
/// It must be given back to [`KernelCore::enqueue`] or
/// [`KernelCore::discard`]; it is deliberately not `Clone`, so it can be
/// consumed once. One that is lost stays in custody (its capabilities
/// remain counted and visible to `check_invariants` via `parked_count`).
#[must_use = "a parked message must be enqueued or discarded"]
#[derive(Debug, PartialEq, Eq)]
pub struct ParkedMessage {
    token: u64,
    channel: ChannelRef,
}

impl ParkedMessage {
    /// The channel the message was sent on.
    pub fn channel(&self) -> ChannelRef {
        self.channel
    }
}

/// What became of a message sent with [`KernelCore::send_or_hand_off`]
/// on `channel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued, with this sequence number.
    Queued { channel: ChannelRef, seq: u64 },
    /// Delivered straight to `receiver`, which was blocked receiving.
    HandedOff {
        channel: ChannelRef,
        receiver: TaskId,
        seq: u64,
    },
}

impl Sent {
    /// The channel the message went to.
    pub fn channel(&self) -> ChannelRef {
        match *self {
            Sent::Queued { channel, .. } | Sent::HandedOff { channel, .. } => channel,
        }
    }

    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        match *self {
            Sent::Queued { seq, .. } | Sent::HandedOff { seq, .. } => seq,
        }
    }
}

/// A message offered to a blocked receiver (see
/// [`KernelCore::send_or_hand_off`]).
#[derive(Debug)]
pub struct Offer<'a> {
    pub receiver: TaskId,
    /// The sender, as the kernel stamps it.
    pub sender: TaskId,
    pub seq: u64,
    /// The message bytes (empty for a [`Body::Kept`] message, whose
    /// contents the embedder carries).
    pub bytes: &'a [u8],
    /// The stamp of a message sent through an object capability (see
    /// [`KernelCore::send_to_object`]); `None` for a channel send.
    pub badge: Option<Badge>,
}

/// The sender of a checked send, as its message is stamped and charged:
/// read with its capability, so the send looks its task up once.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sender {
    pub(super) domain: u16,
    pub(super) account: AccountId,
    /// What the message costs the sender while it is queued, as
    /// [`KernelCore::check_delivery`] found it can pay (0 until then).
    pub(super) charge: u64,
}

impl Message {
    /// The message of a checked send by `caller`, carrying the
    /// capabilities `moved` into kernel custody, `sender` charged for it.
    #[inline]
    pub(super) fn sealed(
        caller: TaskId,
        sender: &Sender,
        seq: u64,
        body: Body<'_>,
        moved: Vec<Capability>,
    ) -> Message {
        Message {
            seq,
            sender: caller,
            sender_domain: sender.domain,
            // `check_delivery` refused a charge that does not fit.
            charge: sender.charge as u32,
            bytes: body.into_queued(),
            caps: moved,
            badge: None,
            reserved: false,
            payer: Some(sender.account),
        }
    }
}

impl KernelCore {
    /// Create a channel with the default queue bound and give the caller a
    /// capability with `SEND | RECEIVE | GRANT | TRANSFER` (audited as
    /// `Granted { from: None }`). Cost: O(1).
    pub fn create_channel(
        &mut self,
        caller: TaskId,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let capacity = self.config.default_queue_capacity;
        self.create_channel_with_capacity(caller, capacity, now)
    }

    /// Create a channel whose queue holds at most `capacity` messages
    /// (clamped to `1..=max_queue_capacity`). The caller pays
    /// [`CHANNEL_COST`] + [`CAP_COST`] from its budget until the channel and
    /// the capability are gone; `ResourceExhausted(MemoryBudget)` if it
    /// cannot.
    pub fn create_channel_with_capacity(
        &mut self,
        caller: TaskId,
        capacity: u32,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let capacity = capacity.clamp(1, self.config.max_queue_capacity.max(1));
        let rights = Rights::SEND | Rights::RECEIVE | Rights::GRANT | Rights::TRANSFER;
        let (_, handle) = self.new_channel(caller, capacity, rights, None, now)?;
        Ok(handle)
    }

    /// Bind a new *kernel channel* to the service channel `service`
    /// (needing `RECEIVE` on it) and give the caller a capability with
    /// only `RECEIVE` for it, like seL4's bound notification: without
    /// `GRANT` or `TRANSFER` it is never copied or moved, so it is the
    /// channel's one record. Nobody ever holds a `SEND` capability for a
    /// kernel channel (rights only attenuate) and it cannot be registered,
    /// so only the kernel queues on it: exit notifications of the children it is the exit route of,
    /// interrupts and console input bound to it.
    ///
    /// A receive on `service` also takes the kernel channel's messages: of
    /// the two heads, the older by sequence number goes first, so both are
    /// served in send order and neither can starve the other; a kernel
    /// message wakes a task blocked receiving on `service`.
    ///
    /// The caller pays [`CHANNEL_COST`] + [`CAP_COST`] until the kernel
    /// channel is gone. When its capability goes (dropped, or its holder
    /// dies) it closes as any channel does and the service channel can be
    /// bound again; when the service channel closes first, the kernel
    /// channel stays receivable through its own capability.
    ///
    /// Errors: refusals as for `lookup`; `ChannelError(KernelOnly)` if
    /// `service` is itself a kernel channel; `ChannelError(AlreadyBound)`;
    /// `ResourceExhausted(CapabilitySlots | Channels | MemoryBudget)`.
    pub fn bind_kernel_channel(
        &mut self,
        caller: TaskId,
        service: CapHandle,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let svc = self.receivable(caller, service, now)?;
        let c = self
            .channels
            .get(svc)
            .expect("a valid capability keeps its channel alive");
        if c.bound_to.is_some() {
            return Err(KernelError::ChannelError(ChannelError::KernelOnly));
        }
        if c.bound.is_some() {
            return Err(KernelError::ChannelError(ChannelError::AlreadyBound));
        }
        let (bound, handle) = self.new_channel(caller, 1, Rights::RECEIVE, Some(svc), now)?;
        if let Some(c) = self.channels.get_mut(svc) {
            c.bound = Some(bound);
            c.resync();
        }
        Ok(handle)
    }

    /// Create a channel (bound to `bound_to`, if given) and give the
    /// caller its first capability with `rights`, charging both to it.
    fn new_channel(
        &mut self,
        caller: TaskId,
        capacity: u32,
        rights: Rights,
        bound_to: Option<ChannelRef>,
        now: Instant,
    ) -> Result<(ChannelRef, CapHandle), KernelError> {
        self.require_room(caller, 1)?;
        if self.channels.live() >= self.config.max_channels {
            return Err(KernelError::ResourceExhausted(Resource::Channels));
        }
        let payer = self.pay(caller, CHANNEL_COST + CAP_COST)?;
        let ch = self.channels.create(capacity, payer);
        if let Some(c) = self.channels.get_mut(ch) {
            c.bound_to = bound_to;
            c.resync();
        }
        // The creator's capability record is charged with the channel.
        let cap = self.new_record(ObjectRef::Channel(ch), rights, caller, payer);
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: cap.id(),
                kind: CapKind::Channel,
                rights,
                from: None,
                to: caller,
                source: None,
            },
        );
        Ok((ch, self.install(caller, cap)))
    }

    /// Where a receive on `ch` takes its next message: `ch`, or its bound
    /// kernel channel when that one's head is older (or `ch` is empty).
    fn receive_source(&self, ch: ChannelRef) -> ChannelRef {
        let Some(c) = self.channels.get(ch) else {
            return ch;
        };
        let Some(bound) = c.bound else {
            return ch;
        };
        let kernel_head = self
            .channels
            .get(bound)
            .and_then(|b| b.queue.front())
            .map(|m| m.seq);
        match (c.queue.front().map(|m| m.seq), kernel_head) {
            (None, Some(_)) => bound,
            (Some(own), Some(kernel)) if kernel < own => bound,
            _ => ch,
        }
    }

    /// The channel object a channel capability designates (validated like
    /// a use with no required rights; refusals are audited).
    pub fn channel_of(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<ChannelRef, KernelError> {
        self.channel_with(caller, handle, Rights::NONE, now)
    }

    /// Validate a use of channel capability `handle` needing `required`,
    /// returning the channel it designates.
    #[inline(always)]
    pub(super) fn channel_with(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        required: Rights,
        now: Instant,
    ) -> Result<ChannelRef, KernelError> {
        match self.check_channel_in(caller, handle, required) {
            Ok((_, ch)) => Ok(ch),
            Err(reason) => Err(self.refuse(caller, handle, reason, now)),
        }
    }

    /// Send `bytes` and move the capabilities `caps` (each needing
    /// `TRANSFER`, none repeated, none a `RECEIVE` capability for this same
    /// channel) on the channel `handle` names (needing `SEND`). Never
    /// blocks. On success the message is queued, the longest-waiting
    /// receiver (if any) is woken, and the message's sequence number is
    /// returned. On error nothing changed: the caller keeps its
    /// capabilities.
    ///
    /// Errors: refusals as for `lookup`; `SendFailed(ChannelClosed |
    /// QueueFull | MessageTooLarge | TooManyCapabilities |
    /// ReceiveRightOnOwnChannel)`.
    pub fn send<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<u64, KernelError> {
        let (ch, msg) = self.accept(caller, handle, body.into(), caps, now)?;
        Ok(self.push(ch, msg))
    }

    /// `send`, with a fast path for the common case of a receiver already
    /// waiting: if the message carries no capabilities, the queue is empty
    /// and a task is blocked receiving on the channel, the message is
    /// offered to the first such task through `hand_off`, which the kernel
    /// implements by writing it straight into that task's pending receive
    /// buffer. If `hand_off` accepts (returns true) the message is
    /// delivered: the receiver is woken with [`WakeReason::HandedOff`]
    /// (its receive is complete; it must not re-issue it), and nothing is
    /// queued or allocated. Otherwise — or without a waiting receiver —
    /// the bytes are copied and queued exactly as `send` does. Validation
    /// and errors are `send`'s, and on error nothing changed.
    #[inline]
    pub fn send_or_hand_off<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        caps: &[CapHandle],
        now: Instant,
        hand_off: impl FnOnce(&Offer<'_>) -> bool,
    ) -> Result<Sent, KernelError> {
        let body = body.into();
        if caps.is_empty() {
            // `check_send`'s checks, in its order, on the channel looked up
            // once for them, the hand-off and the queue.
            let (ch, sender) = self.check_sender(caller, handle, now)?;
            return self.hand_off_or_queue(caller, ch, sender, None, body, hand_off);
        }
        self.send_carrying(caller, handle, body, caps, now)
    }

    /// The rest of a capability-free send on `ch` (its sender's capability
    /// checked, stamped `badge` if it went through an object capability):
    /// the channel's room and the size, in `check_send`'s order; then
    /// straight to the first waiting receiver through `hand_off` if the
    /// queue is empty, else queued, which is when the sender's budget is
    /// checked and charged. A message handed off makes no kernel object,
    /// so it needs no budget, as on the fast path (whoever makes an
    /// object pays for it). See [`KernelCore::send_or_hand_off`].
    #[inline(always)]
    pub(super) fn hand_off_or_queue(
        &mut self,
        caller: TaskId,
        ch: ChannelRef,
        sender: Sender,
        badge: Option<Badge>,
        body: Body<'_>,
        hand_off: impl FnOnce(&Offer<'_>) -> bool,
    ) -> Result<Sent, KernelError> {
        let len = body.len();
        let max_len = self.config.max_message_bytes;
        let c = self.channels.get_mut(ch);
        let c = match refusal_of(c.as_deref()) {
            Some(e) => return Err(KernelError::SendFailed(e)),
            None => c.expect("a destroyed channel is refused"),
        };
        size_check(len, max_len)?;
        let charge = message_cost(len, 0);
        storable_charge(charge, len, max_len)?;
        let sender = Sender { charge, ..sender };
        // `next_seq`, on the field: `c` borrows the channel table.
        let seq = self.next_seq;
        self.next_seq += 1;
        if let (true, Some(slot)) = (c.queue.is_empty(), c.waiters.get().head()) {
            if let Some(receiver) = self.tasks.by_slot(slot).map(|t| t.id) {
                let offer = Offer {
                    receiver,
                    sender: caller,
                    seq,
                    bytes: body.as_slice(),
                    badge,
                };
                if hand_off(&offer) {
                    self.sched.wake(slot, Some(c.waiters.get_mut()));
                    self.sched.set_wake(slot, Some(WakeReason::HandedOff));
                    return Ok(Sent::HandedOff {
                        channel: ch,
                        receiver,
                        seq,
                    });
                }
            }
        }
        // Queued into the channel already looked up: a message without
        // capabilities only charges the sender (what `seal` does for it),
        // if it can pay; the account is found once, for the check and the
        // charge.
        let payer = self.accounts.usage_mut(sender.account);
        if let Err(refused) = payer.check(Budget::memory(charge)) {
            // Nothing is sent, so the number goes back.
            self.next_seq = seq;
            return Err(refused);
        }
        payer.charge_checked_memory(sender.charge);
        let mut msg = Message::sealed(caller, &sender, seq, body, Vec::new());
        msg.badge = badge;
        c.push_back(msg);
        if let Some(woken) = c.woken_by_push(ch) {
            self.wake_one(woken, WakeReason::MessageArrived);
        }
        Ok(Sent::Queued { channel: ch, seq })
    }

    /// [`KernelCore::send_or_hand_off`] of a message carrying `caps`
    /// (never handed off): `send`.
    #[inline(never)]
    fn send_carrying(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: Body<'_>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<Sent, KernelError> {
        let (ch, msg) = self.accept(caller, handle, body, caps, now)?;
        let seq = self.push(ch, msg);
        Ok(Sent::Queued { channel: ch, seq })
    }

    /// The first half of `send`, for fault injection: validate exactly as
    /// `send` does (including the queue-full and closed checks, so the
    /// sender sees the same errors), move the capabilities into kernel
    /// custody, and hold the message back. Finish with
    /// [`KernelCore::enqueue`] (deliver late) or [`KernelCore::discard`]
    /// (lose it).
    pub fn prepare_send<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<ParkedMessage, KernelError> {
        let (ch, msg) = self.accept(caller, handle, body.into(), caps, now)?;
        Ok(self.park(ch, msg))
    }

    /// Queue a parked message now. If its channel has closed (or been
    /// destroyed) or its queue is full, the message is discarded instead —
    /// its capabilities invalidated and audited as
    /// `Invalidated { MessageDiscarded }` — and the error says why. Returns
    /// the sequence number on success.
    pub fn enqueue(&mut self, parked: ParkedMessage, now: Instant) -> Result<u64, KernelError> {
        let Some((ch, msg)) = self.parked.remove(&parked.token) else {
            // Tokens are unique and consumed by value; this is unreachable
            // unless a token was forged, which the API does not allow.
            return Err(KernelError::SendFailed(SendError::ChannelClosed));
        };
        match self.channel_refusal(ch) {
            Some(e) => {
                self.discard_message(msg, InvalidationReason::MessageDiscarded, now);
                Err(KernelError::SendFailed(e))
            }
            None => Ok(self.push(ch, msg)),
        }
    }

    /// Lose a parked message: its capabilities are invalidated and audited
    /// as `Invalidated { MessageDiscarded }`.
    pub fn discard(&mut self, parked: ParkedMessage, now: Instant) {
        if let Some((_, msg)) = self.parked.remove(&parked.token) {
            self.discard_message(msg, InvalidationReason::MessageDiscarded, now);
        }
    }

    /// Queue a message the kernel itself originates (console input) on
    /// `ch`, with sender [`KERNEL_SENDER`](crate::channel::KERNEL_SENDER)
    /// and no capabilities, within the queue bound, charged to `payer`
    /// (the task that bound the input to `ch`) until it is received. Needs
    /// no capability: the kernel decides where its own messages go.
    /// Errors: `SendFailed(ChannelClosed | QueueFull | MessageTooLarge)`;
    /// `TaskNotFound(payer)`; `ResourceExhausted(MemoryBudget)` when the
    /// payer cannot pay (the caller keeps the input and retries, as for a
    /// full queue). Returns the sequence number. Cost: O(1).
    pub fn send_from_kernel(
        &mut self,
        ch: ChannelRef,
        bytes: Vec<u8>,
        payer: TaskId,
        _now: Instant,
    ) -> Result<u64, KernelError> {
        self.check_room(ch, bytes.len())?;
        let cost = message_cost(bytes.len(), 0);
        let charge = storable_charge(cost, bytes.len(), self.config.max_message_bytes)?;
        let account = self.pay(payer, cost)?;
        let mut msg = self.kernel_message(bytes, false, charge);
        msg.payer = Some(account);
        Ok(self.push(ch, msg))
    }

    /// Queue the exit notification `bytes` on `route`'s channel in the
    /// room the kernel keeps for it: it is not counted against the queue
    /// bound, so a full queue never loses it (the count of such messages
    /// is bounded by the receiver's children, each notified once). The
    /// route's reservation pays for it until it is received (what it does
    /// not need is returned now). Only a closed or destroyed channel
    /// refuses it (`SendFailed(ChannelClosed)`), returning the whole
    /// reservation. Returns the sequence number.
    pub fn send_exit_from_kernel(
        &mut self,
        route: crate::ExitRoute,
        bytes: Vec<u8>,
    ) -> Result<u64, KernelError> {
        let (ch, payer) = (route.channel(), route.payer());
        let cost = message_cost(bytes.len(), 0);
        if self.channels.get(ch).is_none_or(|c| c.is_closed()) || cost > EXIT_ROUTE_COST {
            self.forget_exit_route(route);
            return Err(KernelError::SendFailed(SendError::ChannelClosed));
        }
        self.accounts.release_memory(payer, EXIT_ROUTE_COST - cost);
        // At most `EXIT_ROUTE_COST`, which fits (asserted above).
        let mut msg = self.kernel_message(bytes, true, cost as u32);
        msg.payer = Some(payer);
        Ok(self.push(ch, msg))
    }

    /// Queue the kernel message `bytes` (an interrupt notification) on `ch`
    /// beside the queue bound, as [`KernelCore::send_exit_from_kernel`],
    /// into the buffer entry the line's binding keeps free (see
    /// [`KernelCore::adjust_kernel_room`]): allocates nothing. The message
    /// is charged to `payer`, which has already paid `message_cost` of it
    /// (the binding's charge for its prepared notification moves to the
    /// message, and returns when the message is received or discarded).
    /// Errors: `SendFailed(ChannelClosed)`.
    pub(super) fn send_into_kernel_room(
        &mut self,
        ch: ChannelRef,
        bytes: Vec<u8>,
        payer: AccountId,
    ) -> Result<u64, KernelError> {
        if self.channels.get(ch).is_none_or(|c| c.is_closed()) {
            return Err(KernelError::SendFailed(SendError::ChannelClosed));
        }
        let len = bytes.len();
        let charge = storable_charge(message_cost(len, 0), len, self.config.max_message_bytes)?;
        let mut msg = self.kernel_message(bytes, true, charge);
        msg.payer = Some(payer);
        Ok(self.push_as(ch, msg, true))
    }

    /// Keep `extra` more (negative: fewer) entries of `ch`'s queue buffer
    /// free for interrupt notifications, one per line bound to it.
    pub(super) fn adjust_kernel_room(&mut self, ch: ChannelRef, extra: i32) {
        if let Some(c) = self.channels.get_mut(ch) {
            c.adjust_kernel_room(extra);
        }
    }

    /// A message from the kernel itself (its payer set by the caller).
    fn kernel_message(&mut self, bytes: Vec<u8>, reserved: bool, charge: u32) -> Message {
        Message {
            seq: self.next_seq(),
            sender: crate::channel::KERNEL_SENDER,
            sender_domain: 0,
            charge,
            bytes,
            caps: Vec::new(),
            badge: None,
            reserved,
            payer: None,
        }
    }

    /// Messages currently parked.
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// Take the next message from the channel `handle` names (needing
    /// `RECEIVE`) without blocking: `Ok(None)` if the queue is empty. The
    /// carried capabilities are installed in the caller's space, each
    /// audited as `Delegated { from: sender, via: Some(channel) }` (plus
    /// `CrossDomainDelegation` across domains).
    ///
    /// Errors: refusals as for `lookup`; `ReceiveFailed(ChannelClosed)` if
    /// the queue is empty and no message can ever arrive (see
    /// [`crate::channel`]); `ReceiveFailed(NoRoomForCapabilities)` if the
    /// caller has no room for the carried capabilities: that message is
    /// discarded (its capabilities invalidated and audited as
    /// `ReceiverFull`) and the next receive gets the one after it.
    pub fn receive(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<Option<Delivered>, KernelError> {
        let ch = self.receivable(caller, handle, now)?;
        self.take(caller, ch, now)
    }

    /// Check that `caller` may receive on `handle` (a live channel
    /// capability with `RECEIVE`), changing nothing but the audit of a
    /// refusal.
    pub fn check_receive(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<(), KernelError> {
        self.receivable(caller, handle, now).map(|_| ())
    }

    /// [`KernelCore::receivable`] for a receive that takes a message or
    /// blocks now: the caller's wake reason is cleared (as
    /// `receive_or_block` must) in the scheduler entry of the slot the
    /// capability check found, not looked up again. A refused receive
    /// clears nothing.
    #[inline(always)]
    pub(super) fn receivable_awake(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<ChannelRef, KernelError> {
        let checked = match self.tasks.slot_and_task(caller) {
            None => Err(InvalidUse::CallerNotAlive),
            Some((slot, task)) => match check_channel_cap(task, handle, Rights::RECEIVE) {
                Ok(ch) => {
                    self.sched.set_wake(slot, None);
                    Ok(ch)
                }
                Err(reason) => Err(reason),
            },
        };
        checked.map_err(|reason| self.refuse(caller, handle, reason, now))
    }

    /// Validate a receive on `handle`, returning the channel.
    #[inline]
    pub(super) fn receivable(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<ChannelRef, KernelError> {
        self.channel_with(caller, handle, Rights::RECEIVE, now)
    }

    /// Deliver the head of `ch`'s queue, or of its bound kernel channel
    /// (see [`KernelCore::bind_kernel_channel`]), to `caller` (already
    /// validated).
    #[inline(always)]
    pub(super) fn take(
        &mut self,
        caller: TaskId,
        ch: ChannelRef,
        now: Instant,
    ) -> Result<Option<Delivered>, KernelError> {
        let mut ch = ch;
        let mut c = self
            .channels
            .get_mut(ch)
            .expect("a valid channel capability keeps its channel alive");
        // Looked up once unless the channel has a kernel channel bound to it.
        if c.bound.is_some() {
            ch = self.receive_source(ch);
            c = self
                .channels
                .get_mut(ch)
                .expect("a valid channel capability keeps its channel alive");
        }
        let Some(head) = c.queue.front() else {
            return if c.is_drained() {
                Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed))
            } else {
                Ok(None)
            };
        };
        // Only a message carrying capabilities needs room in the caller's
        // space.
        if !head.caps.is_empty()
            && head.caps.len()
                > self
                    .tasks
                    .get(caller)
                    .ok_or(KernelError::TaskNotFound(caller))?
                    .space
                    .room()
        {
            // Left at the head, the message would be refused to every
            // receive and block the channel for good: it is discarded
            // instead (its capabilities invalidated and audited), and the
            // receiver learns what it lost.
            let carried = u8::try_from(head.caps.len()).unwrap_or(u8::MAX);
            let msg = c.pop_front().expect("head checked above");
            self.discard_message(msg, InvalidationReason::ReceiverFull, now);
            self.settle_channel(ch);
            return Err(KernelError::ReceiveFailed(
                ReceiveError::NoRoomForCapabilities { carried },
            ));
        }
        let msg = c.pop_front().expect("head checked above");
        let now_drained = c.is_drained() && !c.waiters.get().is_empty();
        self.release_message(&msg);
        let Message {
            seq,
            sender,
            sender_domain,
            bytes,
            caps,
            badge,
            charge: _,
            reserved: _,
            payer: _,
        } = msg;
        // Most messages carry none: installing them is out of line.
        let handles = match caps.is_empty() {
            true => Vec::new(),
            false => self.install_carried(caller, caps, (sender, sender_domain), ch, now),
        };
        if now_drained {
            // The last message of a channel nobody can send on any more:
            // the other receivers must not wait for a successor.
            self.wake_all(ch, WakeReason::ChannelClosed);
        }
        Ok(Some(Delivered {
            channel: ch,
            sender,
            bytes,
            caps: handles,
            seq,
            badge,
        }))
    }

    /// Install the capabilities `caps` a message from `sender` (of trust
    /// domain `domain`) carried on `ch` in `caller`'s space, each audited
    /// as delegated; their handles, in order.
    #[inline(never)]
    fn install_carried(
        &mut self,
        caller: TaskId,
        caps: Vec<Capability>,
        (sender, domain): (TaskId, u16),
        ch: ChannelRef,
        now: Instant,
    ) -> Vec<CapHandle> {
        let mut handles = Vec::with_capacity(caps.len());
        for cap in caps {
            let (id, kind) = (cap.id(), cap.kind());
            handles.push(self.install(caller, cap));
            self.audit.record(
                now,
                CapabilityEvent::Delegated {
                    cap: id,
                    kind,
                    from: sender,
                    to: caller,
                    via: Some(ch),
                },
            );
            self.audit_domains(id, sender, domain, caller, now);
        }
        handles
    }

    /// Remove the next message from the channel `handle` names (needing
    /// `RECEIVE`) without delivering it: a message lost in the kernel, for
    /// fault injection. Its capabilities are invalidated and audited.
    /// Returns whether there was a message.
    pub fn discard_next(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<bool, KernelError> {
        let ch = self.receivable(caller, handle, now)?;
        let Some(msg) = self.channels.get_mut(ch).and_then(|c| c.pop_front()) else {
            return Ok(false);
        };
        self.discard_message(msg, InvalidationReason::MessageDiscarded, now);
        self.settle_channel(ch);
        Ok(true)
    }

    /// Fault injection: swap the queued messages at positions `i` and `j`
    /// (0 = next to be received). Returns false (and changes nothing) if
    /// either position is out of range or the channel does not exist.
    pub fn swap_queued(&mut self, ch: ChannelRef, i: usize, j: usize) -> bool {
        match self.channels.get_mut(ch) {
            Some(c) if i < c.queue.len() && j < c.queue.len() => {
                c.queue.swap(i, j);
                true
            }
            _ => false,
        }
    }

    /// Messages queued on `ch` (`None` if it does not exist).
    pub fn queue_len(&self, ch: ChannelRef) -> Option<usize> {
        self.channels.get(ch).map(|c| c.queue.len())
    }

    /// The queue bound of `ch`.
    pub fn queue_capacity(&self, ch: ChannelRef) -> Option<usize> {
        self.channels.get(ch).map(|c| c.capacity as usize)
    }

    /// Whether `ch` is closed (no receive capability left). A destroyed
    /// channel reads as closed.
    pub fn is_channel_closed(&self, ch: ChannelRef) -> bool {
        self.channels.get(ch).is_none_or(|c| c.is_closed())
    }

    /// Whether `ch` exists (some capability still references it).
    pub fn channel_exists(&self, ch: ChannelRef) -> bool {
        self.channels.get(ch).is_some()
    }

    /// Number of live channel objects.
    pub fn channel_count(&self) -> usize {
        self.channels.live()
    }

    /// Validate a send and build the message, moving the capabilities out
    /// of the caller's space. Nothing changes on error.
    fn accept(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: Body<'_>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<(ChannelRef, Message), KernelError> {
        let (ch, sender) = self.check_send(caller, handle, body.len(), caps, now)?;
        let seq = self.next_seq();
        let msg = self.seal(caller, sender, ch, seq, body, caps);
        Ok((ch, msg))
    }

    /// Every check of a send of `len` bytes carrying `caps` on `handle`,
    /// changing nothing (refused uses are audited). Returns the channel and
    /// the sender.
    #[inline]
    fn check_send(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        len: usize,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<(ChannelRef, Sender), KernelError> {
        let (ch, sender) = self.check_sender(caller, handle, now)?;
        let sender = Sender {
            charge: self.check_delivery(caller, sender.account, ch, len, caps, now)?,
            ..sender
        };
        Ok((ch, sender))
    }

    /// The capability check of a send: `handle` is a channel capability
    /// of `caller` with `SEND` (a refusal is audited). Returns the channel
    /// and the sender, its charge not yet known.
    #[inline(always)]
    fn check_sender(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<(ChannelRef, Sender), KernelError> {
        match self.check_channel_in(caller, handle, Rights::SEND) {
            Ok((task, ch)) => Ok((
                ch,
                Sender {
                    domain: task.domain,
                    account: task.account,
                    charge: 0,
                },
            )),
            Err(reason) => Err(self.refuse(caller, handle, reason, now)),
        }
    }

    /// Why `ch` cannot take one more message now (closed, gone, or its
    /// queue full), if it cannot.
    #[inline]
    fn channel_refusal(&self, ch: ChannelRef) -> Option<SendError> {
        refusal_of(self.channels.get(ch))
    }

    /// `ch` can take a `len`-byte message now: open, not full, and the
    /// message within the size limit.
    #[inline]
    fn check_room(&self, ch: ChannelRef, len: usize) -> Result<(), KernelError> {
        if let Some(e) = self.channel_refusal(ch) {
            return Err(KernelError::SendFailed(e));
        }
        size_check(len, self.config.max_message_bytes)
    }

    /// The checks of a send that come after the capability it goes
    /// through (a channel capability, or an object capability naming a
    /// service's channel): the channel can take a `len`-byte message
    /// carrying `caps`, and the caller (whose `account` the capability
    /// check read) may move them and pay for the message. Changes nothing.
    /// Returns what the message will cost the sender while it is queued.
    #[inline]
    pub(super) fn check_delivery(
        &mut self,
        caller: TaskId,
        account: AccountId,
        ch: ChannelRef,
        len: usize,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<u64, KernelError> {
        self.check_room(ch, len)?;
        let (max_caps, max_len) = (
            self.config.max_caps_per_message,
            self.config.max_message_bytes,
        );
        let payer = self.accounts.usage_mut(account);
        let charge = affordable(payer, len, caps.len(), max_caps, max_len)?;
        if !caps.is_empty() {
            self.validate_moves(caller, caps, now)?;
            let task = self.tasks.get(caller).expect("caller validated");
            for &h in caps {
                let cap = task.space.get(h).expect("handle validated");
                if cap.object() == ObjectRef::Channel(ch) && cap.rights().contains(Rights::RECEIVE)
                {
                    return Err(KernelError::SendFailed(SendError::ReceiveRightOnOwnChannel));
                }
            }
        }
        Ok(charge)
    }

    /// Build the message of a checked send, moving `caps` out of the
    /// caller's space into kernel custody.
    #[inline]
    pub(super) fn seal(
        &mut self,
        caller: TaskId,
        sender: Sender,
        ch: ChannelRef,
        seq: u64,
        body: Body<'_>,
        caps: &[CapHandle],
    ) -> Message {
        let mut moved = Vec::new();
        let payer = sender.account;
        let len = body.len();
        // Every caller checked that the sender can pay this
        // (`check_delivery`) and charged nothing since.
        debug_assert_eq!(sender.charge, message_cost(len, caps.len()));
        self.accounts.charge_checked_memory(payer, sender.charge);
        if !caps.is_empty() {
            moved.reserve_exact(caps.len());
            let task = self.tasks.get_mut(caller).expect("caller validated");
            for &h in caps {
                let mut cap = task.space.remove(h).expect("handle validated");
                cap.set_holder(Holder::Queued(ch));
                moved.push(cap);
            }
        }
        Message::sealed(caller, &sender, seq, body, moved)
    }

    /// Hold an accepted message back in kernel custody (fault injection).
    pub(super) fn park(&mut self, ch: ChannelRef, mut msg: Message) -> ParkedMessage {
        for cap in &mut msg.caps {
            cap.set_holder(Holder::Parked);
        }
        let token = self.next_parked;
        self.next_parked += 1;
        self.parked.insert(token, (ch, msg));
        ParkedMessage { token, channel: ch }
    }

    /// Append an accepted message to `ch` (room and openness checked) and
    /// wake one waiting receiver.
    #[inline]
    pub(super) fn push(&mut self, ch: ChannelRef, msg: Message) -> u64 {
        self.push_as(ch, msg, false)
    }

    /// Queue `msg` (an interrupt notification into its kept entry if
    /// `into_room`) and wake the first receiver waiting.
    #[inline]
    fn push_as(&mut self, ch: ChannelRef, mut msg: Message, into_room: bool) -> u64 {
        for cap in &mut msg.caps {
            cap.set_holder(Holder::Queued(ch));
        }
        let seq = msg.seq;
        let c = self.channels.get_mut(ch).expect("checked by the caller");
        if into_room {
            c.push_into_room(msg);
        } else {
            c.push_back(msg);
        }
        if let Some(woken) = c.woken_by_push(ch) {
            self.wake_one(woken, WakeReason::MessageArrived);
        }
        seq
    }
}

/// A message's charge as its queue entry keeps it, if it fits: only a
/// configuration allowing messages of gigabytes makes one that does not,
/// and such a message is refused as too large.
fn storable_charge(charge: u64, len: usize, max: usize) -> Result<u32, KernelError> {
    u32::try_from(charge).map_err(|_| too_large(len, max))
}

/// Why a channel (`None`: destroyed) cannot take one more message now
/// (closed, gone, or its queue full), if it cannot.
#[inline]
fn refusal_of(c: Option<&Channel>) -> Option<SendError> {
    match c {
        None => Some(SendError::ChannelClosed),
        Some(c) if c.is_closed() => Some(SendError::ChannelClosed),
        Some(c) if c.bounded_len() >= c.capacity as usize => Some(SendError::QueueFull),
        Some(_) => None,
    }
}

/// A `len`-byte message is within the size limit `max`.
#[inline]
fn size_check(len: usize, max: usize) -> Result<(), KernelError> {
    if len > max {
        return Err(too_large(len, max));
    }
    Ok(())
}

/// The budget checks of a send of a `len`-byte message carrying `caps`
/// capabilities (at most `max_caps`): the account whose figures are
/// `payer` can pay for it while it is queued. Returns that charge.
#[inline(always)]
fn affordable(
    payer: &BudgetUsage,
    len: usize,
    caps: usize,
    max_caps: usize,
    max_len: usize,
) -> Result<u64, KernelError> {
    if caps > max_caps {
        return Err(KernelError::SendFailed(SendError::TooManyCapabilities));
    }
    // The sender pays for the message while it is queued.
    let charge = message_cost(len, caps);
    storable_charge(charge, len, max_len)?;
    payer.check(Budget::memory(charge))?;
    Ok(charge)
}

/// The refusal of a `len`-byte message where at most `max` bytes fit.
fn too_large(len: usize, max: usize) -> KernelError {
    KernelError::SendFailed(SendError::MessageTooLarge {
        len: u32::try_from(len).unwrap_or(u32::MAX),
        max: u32::try_from(max).unwrap_or(u32::MAX),
    })
}

// An exit notification's charge is at most this, so it always fits.
const _: () = assert!(EXIT_ROUTE_COST <= u32::MAX as u64);
