//! Channels: bounded FIFO queues of messages.
//!
//! A message is the sender's `TaskId` (stamped by the kernel, so it cannot
//! be forged), opaque bytes (the kernel never decodes them), and the
//! capability records the sender moved into it. While a message is queued
//! its capabilities are in kernel custody: nobody can use them.
//!
//! ## Lifetime and close semantics
//!
//! A channel has no owner. It is referenced by capability records, wherever
//! they are (in a task's space or in transit), and counts them: all of
//! them, those with `SEND`, those with `RECEIVE`.
//!
//! * **Closed** — when the last capability with `RECEIVE` goes away (dropped,
//!   invalidated by its owner's death, or discarded in transit). Nobody can
//!   ever receive again (a `RECEIVE` right can only be copied from an
//!   existing one), so this is permanent. At that moment every queued
//!   message is discarded and the capabilities it carried are invalidated
//!   and audited (`Invalidated { reason: ChannelClosed }`), service
//!   registrations naming the channel are removed, and later sends fail with
//!   `SendFailed(ChannelClosed)`. Discarding may release the last capability
//!   of another channel, which then closes too; the kernel core processes
//!   such cascades iteratively.
//! * **Drained** — when no capability with `SEND` exists, no service
//!   registration names the channel (a lookup could make a new sender), and
//!   the queue is empty. Receivers then get `ReceiveFailed(ChannelClosed)`
//!   instead of waiting forever, and blocked receivers are woken.
//! * **Destroyed** — when no capability references it at all. Its slot is
//!   reused with a new generation, so a stale [`ChannelRef`] never names the
//!   successor.
//!
//! A message may not carry a `RECEIVE` capability for the very channel it is
//! sent on: that would make a channel that keeps itself open with nobody
//! able to receive. Longer cycles (two channels each carrying the other's
//! only receive capability) are possible; reference counts alone would keep
//! them alive forever. When a task dies the core collects them: every
//! channel that no live task's capability space (nor a registration or a
//! parked message) reaches, directly or through the queues of reachable
//! channels, has its queue discarded, which closes and destroys the whole
//! unreachable set (see `KernelCore::collect_unreachable`).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use pandagen_abi::{Badge, CapHandle, TaskId};

use crate::budget::AccountId;
use crate::cap_table::Capability;
use crate::sched::WaitList;

/// A channel object, by slot index and generation. Kernel-internal naming:
/// tasks name channels by capability handles, never by `ChannelRef`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelRef {
    index: u32,
    generation: u32,
}

impl ChannelRef {
    pub const fn from_parts(index: u32, generation: u32) -> Self {
        ChannelRef { index, generation }
    }

    pub const fn index(&self) -> u32 {
        self.index
    }

    pub const fn generation(&self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ch{}g{}", self.index, self.generation)
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The sender stamped on messages the kernel itself originates (exit
/// notifications and console input, see
/// [`KernelCore::send_exit_from_kernel`](crate::KernelCore::send_exit_from_kernel)).
/// Task ids start at 1, so it never names a task; a receiving runtime
/// presents it as `MessageEnvelope::source == None`.
pub const KERNEL_SENDER: TaskId = pandagen_abi::ids::KERNEL_TASK;

/// What a sender hands the core to carry.
///
/// The real kernel passes the message bytes. An embedder that carries the
/// contents itself, beside the core's queue, passes only their length
/// ([`Body::Kept`]): the simulator moves each `MessageEnvelope` as a value
/// and never encodes it. The core's checks (size limit, queue room,
/// capabilities) see the same length either way; a kept message is queued
/// and delivered with empty bytes, and the embedder matches it to its
/// contents by sequence number.
// A tag of its own, not a niche in the vector's capacity: each match on
// the body reads one byte instead of decoding the niche.
#[derive(Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Body<'a> {
    /// Bytes to copy: into the queue, or straight to a waiting receiver.
    Borrowed(&'a [u8]),
    /// Bytes to move into the queue without a copy.
    Owned(Vec<u8>),
    /// Contents the embedder keeps, of this encoded length.
    Kept(usize),
}

impl Body<'_> {
    /// The encoded length every size check uses.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Body::Borrowed(bytes) => bytes.len(),
            Body::Owned(bytes) => bytes.len(),
            Body::Kept(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes a receiver can be handed in place (empty for kept ones).
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Body::Borrowed(bytes) => bytes,
            Body::Owned(bytes) => bytes,
            Body::Kept(_) => &[],
        }
    }

    /// The bytes to queue (empty for kept ones).
    #[inline(always)]
    pub(crate) fn into_queued(self) -> Vec<u8> {
        match self {
            Body::Borrowed(bytes) => Vec::from(bytes),
            Body::Owned(bytes) => bytes,
            Body::Kept(_) => Vec::new(),
        }
    }
}

impl<'a> From<&'a [u8]> for Body<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Body::Borrowed(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Body<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Body::Borrowed(bytes)
    }
}

impl<'a> From<&'a Vec<u8>> for Body<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Body::Borrowed(bytes)
    }
}

impl From<Vec<u8>> for Body<'static> {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Owned(bytes)
    }
}

/// A message in kernel custody.
pub(crate) struct Message {
    pub(crate) seq: u64,
    pub(crate) sender: TaskId,
    pub(crate) sender_domain: u16,
    /// What `payer` was charged for the message
    /// ([`message_cost`](crate::budget::message_cost) of its encoded
    /// length, `bytes.len()` or a [`Body::Kept`] message's length, and of
    /// its capabilities), kept so that the release returns exactly it.
    pub(crate) charge: u32,
    pub(crate) bytes: Vec<u8>,
    pub(crate) caps: Vec<Capability>,
    /// Set when the message was sent through an object capability.
    pub(crate) badge: Option<Badge>,
    /// The sender's account, charged [`message_cost`](crate::budget::message_cost)
    /// until the message is received or discarded; `None` for the kernel's
    /// own messages.
    pub(crate) payer: Option<AccountId>,
    /// An exit notification queued in the room the kernel keeps for each
    /// child's notification: it does not count against the queue bound,
    /// so no task's sends can ever crowd it out.
    pub(crate) reserved: bool,
}

/// A message handed to its receiver.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The channel it was received from.
    pub channel: ChannelRef,
    /// The sending task, as the kernel saw it.
    pub sender: TaskId,
    /// The message bytes, exactly as sent.
    pub bytes: Vec<u8>,
    /// The capabilities the message carried, now installed in the
    /// receiver's space, in the order the sender attached them.
    pub caps: Vec<CapHandle>,
    /// The kernel-wide send sequence number of the message: increasing in
    /// send order, so a receiver seeing a smaller number after a larger one
    /// on the same channel observed a reordering.
    pub seq: u64,
    /// The badge and rights of the object capability the message was sent
    /// through ([`KernelCore::send_to_object`](crate::KernelCore::send_to_object));
    /// `None` for a message sent on a channel.
    pub badge: Option<Badge>,
}

pub(crate) struct Channel {
    pub(crate) queue: VecDeque<Message>,
    pub(crate) capacity: u32,
    /// Capability records referencing the channel, anywhere.
    pub(crate) refs: u32,
    pub(crate) senders: u32,
    pub(crate) receivers: u32,
    /// Service registrations naming the channel.
    pub(crate) registrations: u32,
    /// Tasks blocked receiving, in arrival order.
    pub(crate) waiters: WaitList,
    /// The creator's account, charged [`CHANNEL_COST`](crate::budget::CHANNEL_COST).
    pub(crate) payer: AccountId,
    /// Queued messages that are `reserved` (exit notifications).
    pub(crate) reserved_queued: u32,
    /// Interrupt lines bound to this channel. The queue's buffer always
    /// has an entry free for each bound line whose notification is not
    /// queued, so that the interrupt path never allocates: an ordinary
    /// push makes room for them first, a pop never shrinks below them.
    pub(crate) kernel_room: u32,
    /// On a service channel: the kernel-only channel bound to it, whose
    /// messages a receive on this channel also takes (see
    /// `KernelCore::bind_kernel_channel`).
    pub(crate) bound: Option<ChannelRef>,
    /// On a kernel-only channel: the service channel it is bound to.
    /// Nobody holds a `SEND` capability for it, and it cannot be
    /// registered, so only the kernel queues messages on it.
    pub(crate) bound_to: Option<ChannelRef>,
    /// What keeps the IPC fast path off the channel, in one word
    /// ([`Channel::summary`] of the fields above: [`Channel::QUEUED`],
    /// [`Channel::CLOSED`], [`Channel::SILENT`], [`Channel::BOUND`]), so
    /// that it tests a channel with one compare. Every change of a field
    /// it summarizes writes it again ([`Channel::resync`]; the queue's own
    /// methods do it themselves), and `check_invariants` compares it with
    /// the fields.
    pub(crate) blocks: u8,
}

impl Channel {
    /// In [`Channel::blocks`]: messages are queued.
    pub(crate) const QUEUED: u8 = 1;
    /// In [`Channel::blocks`]: closed (no receiver).
    pub(crate) const CLOSED: u8 = 2;
    /// In [`Channel::blocks`]: no sender, no registration and no binding,
    /// so that once its queue is empty the channel is drained.
    pub(crate) const SILENT: u8 = 4;
    /// In [`Channel::blocks`]: bound to a kernel channel, whose messages a
    /// receive here also takes.
    pub(crate) const BOUND: u8 = 8;
    /// In [`Channel::blocks`]: no channel at all, the placeholder a free
    /// slot holds ([`Channel::vacant`]).
    pub(crate) const VACANT: u8 = 16;
    /// A placeholder's summary: what its fields say (closed, silent), and
    /// `VACANT`.
    const PLACEHOLDER: u8 = Self::VACANT | Self::CLOSED | Self::SILENT;
    /// What keeps the fast path from sending on the channel
    /// ([`Channel::takes_direct`]).
    const NOT_TO: u8 = Self::QUEUED | Self::CLOSED | Self::VACANT;
    /// What keeps the fast path's caller from waiting on the channel
    /// whatever its binding ([`Channel::waits_direct`]).
    const NOT_FROM: u8 = Self::QUEUED | Self::SILENT | Self::VACANT;
    /// [`Channel::NOT_FROM`], or a binding, whose kernel channel is then
    /// asked ([`Channel::waits_direct`]).
    const NOT_FROM_OR_BOUND: u8 = Self::NOT_FROM | Self::BOUND;

    /// What a free slot of the table holds: no channel (`VACANT`, and
    /// closed and silent as well), owning no memory.
    const fn vacant() -> Channel {
        Channel {
            queue: VecDeque::new(),
            capacity: 0,
            refs: 0,
            senders: 0,
            receivers: 0,
            registrations: 0,
            waiters: Cell::new(crate::sched::TaskList::EMPTY),
            payer: AccountId::from_index(0),
            reserved_queued: 0,
            kernel_room: 0,
            bound: None,
            bound_to: None,
            blocks: Self::PLACEHOLDER,
        }
    }

    /// Whether this is a free slot's placeholder.
    #[inline]
    fn is_vacant(&self) -> bool {
        self.blocks & Self::VACANT != 0
    }

    /// [`Channel::blocks`] as the fields say it is (and `VACANT` as it
    /// was: no field says it).
    pub(crate) fn summary(&self) -> u8 {
        let mut bits = self.blocks & Self::VACANT;
        if !self.queue.is_empty() {
            bits |= Self::QUEUED;
        }
        if self.is_closed() {
            bits |= Self::CLOSED;
        }
        if self.senders == 0
            && self.registrations == 0
            && self.bound.is_none()
            && self.bound_to.is_none()
        {
            bits |= Self::SILENT;
        }
        if self.bound.is_some() {
            bits |= Self::BOUND;
        }
        bits
    }

    /// Write [`Channel::blocks`] again after a change of the counts, the
    /// binding or the queue.
    #[inline]
    pub(crate) fn resync(&mut self) {
        self.blocks = self.summary();
    }

    /// Whether the IPC fast path may hand a message on this channel
    /// straight to its first waiter: it is a channel, open, and nothing is
    /// queued (`!is_closed() && queue.is_empty()`, one test).
    #[inline(always)]
    pub(crate) fn takes_direct(&self) -> bool {
        self.blocks & Self::NOT_TO == 0
    }

    /// Whether the IPC fast path's caller may wait on this channel,
    /// leaving the rest to `bound_waiting` (whether the bound kernel
    /// channel holds messages, asked only for a bound channel): it is a
    /// channel, nothing is queued, it is not drained, and no kernel
    /// message waits for it (`queue.is_empty() && !is_drained() &&
    /// !bound_waiting()`, one test when it is not bound).
    #[inline(always)]
    pub(crate) fn waits_direct(&self, bound_waiting: impl FnOnce(&Channel) -> bool) -> bool {
        self.blocks & Self::NOT_FROM_OR_BOUND == 0 || self.waits_when_bound(bound_waiting)
    }

    /// [`Channel::waits_direct`] for a channel that is bound, or will not
    /// do: out of line, so that the common test reads the word once.
    #[cold]
    #[inline(never)]
    fn waits_when_bound(&self, bound_waiting: impl FnOnce(&Channel) -> bool) -> bool {
        self.blocks & Self::NOT_FROM == 0 && !bound_waiting(self)
    }

    /// Messages counted against the queue bound: everything but the
    /// kernel's reserved exit notifications.
    pub(crate) fn bounded_len(&self) -> usize {
        self.queue.len() - self.reserved_queued as usize
    }

    /// Append a message, counting a reserved one, keeping the buffer
    /// entries of the bound interrupt lines free.
    #[inline(always)]
    pub(crate) fn push_back(&mut self, msg: Message) {
        self.reserved_queued += u32::from(msg.reserved);
        if self.kernel_room > 0 {
            self.queue.reserve(1 + self.kernel_room as usize);
        }
        self.queue.push_back(msg);
        self.blocks |= Self::QUEUED;
    }

    /// The channel whose first waiter a message just queued on this one
    /// (`ch`) wakes: this one's, or, when nobody waits on a kernel channel
    /// directly, the service channel it is bound to.
    #[inline]
    pub(crate) fn woken_by_push(&self, ch: ChannelRef) -> Option<ChannelRef> {
        match (self.waiters.get().head(), self.bound_to) {
            (Some(_), _) => Some(ch),
            (None, Some(service)) => Some(service),
            (None, None) => None,
        }
    }

    /// Append an interrupt notification into one of the entries kept free
    /// for it (see [`Channel::kernel_room`]): never allocates.
    pub(crate) fn push_into_room(&mut self, msg: Message) {
        debug_assert!(self.queue.len() < self.queue.capacity(), "room kept");
        self.reserved_queued += u32::from(msg.reserved);
        self.queue.push_back(msg);
        self.blocks |= Self::QUEUED;
    }

    /// Keep `extra` more (or, negative, fewer) buffer entries free for
    /// interrupt notifications.
    pub(crate) fn adjust_kernel_room(&mut self, extra: i32) {
        self.kernel_room = self.kernel_room.saturating_add_signed(extra);
        self.queue.reserve(self.kernel_room as usize);
        crate::slab::fit_queue(&mut self.queue, self.kernel_room as usize);
    }

    /// Take the next message, uncounting a reserved one, and give back
    /// queue buffer the queue no longer needs (see `slab::fit_queue`).
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<Message> {
        let msg = self.queue.pop_front()?;
        if self.queue.is_empty() {
            self.blocks &= !Self::QUEUED;
        }
        self.reserved_queued -= u32::from(msg.reserved);
        crate::slab::fit_queue(&mut self.queue, self.kernel_room as usize);
        Some(msg)
    }

    /// Take the whole queue (the channel is closing).
    pub(crate) fn take_queue(&mut self) -> alloc::collections::VecDeque<Message> {
        self.reserved_queued = 0;
        self.blocks &= !Self::QUEUED;
        core::mem::take(&mut self.queue)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.receivers == 0
    }

    /// No message can ever arrive: no sender, no registration, nothing
    /// queued, and no binding (while bound, either end may still receive
    /// the kernel's messages).
    pub(crate) fn is_drained(&self) -> bool {
        self.senders == 0
            && self.registrations == 0
            && self.queue.is_empty()
            && self.bound.is_none()
            && self.bound_to.is_none()
    }
}

/// A slot of the channel table: a channel, or a free slot's placeholder
/// ([`Channel::vacant`], marked `VACANT` in its summary word) instead of
/// an `Option`, so that the fast path's lookup reaches the channel with
/// its generation compare alone and lets the summary's test, which
/// declines a placeholder, stand for the `Option`'s.
pub(crate) struct ChannelSlot {
    generation: u32,
    channel: Channel,
}

/// The table of channel objects (a slab with generations).
pub(crate) struct ChannelTable {
    slots: Vec<ChannelSlot>,
    free: Vec<u32>,
    live: usize,
    /// The generation new slots start at (see [`crate::slab`]).
    generation_floor: u32,
}

impl ChannelTable {
    pub(crate) fn new() -> Self {
        ChannelTable {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            generation_floor: 1,
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn create(&mut self, capacity: u32, payer: AccountId) -> ChannelRef {
        let mut channel = Channel {
            // The buffer a used channel keeps (see `slab::fit_queue`) is
            // made with the channel, as its charge assumes: otherwise a
            // channel's heap would depend on whether a message was ever
            // queued on it rather than handed straight to a waiting
            // receiver, which is a matter of timing.
            queue: VecDeque::with_capacity(crate::slab::MIN_QUEUE_BUFFER),
            capacity,
            refs: 0,
            senders: 0,
            receivers: 0,
            registrations: 0,
            waiters: WaitList::default(),
            payer,
            reserved_queued: 0,
            kernel_room: 0,
            bound: None,
            bound_to: None,
            blocks: 0,
        };
        channel.resync();
        let index = match self.free.pop() {
            Some(i) => {
                crate::slab::fit_free_list(&mut self.free);
                i
            }
            None => {
                self.slots.push(ChannelSlot {
                    generation: self.generation_floor,
                    channel: Channel::vacant(),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.channel = channel;
        self.live += 1;
        ChannelRef::from_parts(index, slot.generation)
    }

    pub(crate) fn get(&self, r: ChannelRef) -> Option<&Channel> {
        let slot = self.slots.get(r.index as usize)?;
        if slot.generation != r.generation || slot.channel.is_vacant() {
            return None;
        }
        Some(&slot.channel)
    }

    pub(crate) fn get_mut(&mut self, r: ChannelRef) -> Option<&mut Channel> {
        let slot = self.slots.get_mut(r.index as usize)?;
        if slot.generation != r.generation || slot.channel.is_vacant() {
            return None;
        }
        Some(&mut slot.channel)
    }

    /// What the slot `r` names holds, if its generation is `r`'s: the
    /// live channel `r` names, or a free slot's placeholder, which only
    /// the last reference to a retired slot can reach (freeing a slot
    /// moves its generation on otherwise) and which the fast path's tests
    /// of the summary word decline ([`Channel::takes_direct`],
    /// [`Channel::waits_direct`]). The fast path's lookup: [`Self::get`]
    /// without the test for a placeholder, inlined for certain.
    #[inline(always)]
    pub(crate) fn live_channel(&self, r: ChannelRef) -> Option<&Channel> {
        let slot = self.slots.get(r.index as usize)?;
        (slot.generation == r.generation).then_some(&slot.channel)
    }

    /// Whether `ch`'s bound kernel channel, if it has one, holds messages
    /// (which a receive on `ch` also takes).
    #[inline]
    pub(crate) fn kernel_messages_waiting(&self, ch: &Channel) -> bool {
        ch.bound
            .and_then(|b| self.get(b))
            .is_some_and(|b| !b.queue.is_empty())
    }

    /// Free the channel's slot (it must hold no references any more).
    pub(crate) fn destroy(&mut self, r: ChannelRef) {
        if let Some(slot) = self.slots.get_mut(r.index as usize) {
            if slot.generation == r.generation && !slot.channel.is_vacant() {
                // The channel (and its queue's buffer) goes.
                slot.channel = Channel::vacant();
                self.live -= 1;
                if slot.generation < u32::MAX {
                    slot.generation += 1;
                    self.free.push(r.index);
                }
                // A retired slot (at the last generation) is never trimmed:
                // a new slot would start at that generation and revive
                // the retired slot's last reference.
                let dropped = crate::slab::trim(
                    &mut self.slots,
                    &mut self.free,
                    |s| s.channel.is_vacant() && s.generation < u32::MAX,
                    |s| s.generation,
                );
                self.generation_floor = self.generation_floor.max(dropped);
            }
        }
    }

    /// One past the highest slot index in use so far.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ChannelRef, &Channel)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let c = &s.channel;
            (!c.is_vacant()).then(|| (ChannelRef::from_parts(i as u32, s.generation), c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty message from the kernel, charged to nobody.
    fn kernel_message() -> Message {
        Message {
            seq: 0,
            sender: KERNEL_SENDER,
            sender_domain: 0,
            charge: 0,
            bytes: Vec::new(),
            caps: Vec::new(),
            badge: None,
            payer: None,
            reserved: false,
        }
    }

    #[test]
    fn a_slot_at_the_last_generation_is_retired_not_wrapped() {
        let mut table = ChannelTable::new();
        let a = table.create(1, crate::budget::AccountId::from_raw(0));
        table.slots[a.index() as usize].generation = u32::MAX - 1;
        let b = ChannelRef::from_parts(a.index(), u32::MAX - 1);
        table.destroy(b);
        let c = table.create(1, crate::budget::AccountId::from_raw(0));
        assert_eq!(c, ChannelRef::from_parts(a.index(), u32::MAX));
        assert!(table.get(b).is_none());
        table.destroy(c);
        assert_eq!(table.live(), 0);
        // Retired: the next channel takes a new slot.
        let d = table.create(1, crate::budget::AccountId::from_raw(0));
        assert_ne!(d.index(), a.index());
        assert!(table.get(c).is_none());
        assert_eq!(table.iter().map(|(r, _)| r).collect::<Vec<_>>(), [d]);
    }

    #[test]
    fn destroying_the_newest_channels_returns_their_slots() {
        let mut table = ChannelTable::new();
        let payer = crate::budget::AccountId::from_raw(0);
        let made: Vec<_> = (0..5).map(|_| table.create(1, payer)).collect();
        for &r in made.iter().rev().take(3) {
            table.destroy(r);
        }
        assert_eq!(table.slots.len(), 2, "the three trailing free slots go");
        for &r in made.iter().take(2) {
            table.destroy(r);
        }
        assert!(table.slots.is_empty() && table.free.is_empty());
        assert_eq!(table.live(), 0);
    }

    #[test]
    fn a_live_channel_is_found_with_its_binding_and_a_stale_reference_gets_none() {
        let mut table = ChannelTable::new();
        let payer = crate::budget::AccountId::from_raw(0);
        let (a, b, kernel) = (
            table.create(1, payer),
            table.create(2, payer),
            table.create(3, payer),
        );
        // The fast path's two lookups and the receive side's binding.
        let capacities = |t: &mut ChannelTable, to, from| {
            let (s, r) = (t.live_channel(to)?, t.live_channel(from)?);
            Some((s.capacity, r.capacity, t.kernel_messages_waiting(r)))
        };
        assert_eq!(capacities(&mut table, a, b), Some((1, 2, false)));
        assert_eq!(capacities(&mut table, b, a), Some((2, 1, false)));
        assert_eq!(capacities(&mut table, a, a), Some((1, 1, false)));
        // The receive side's bound kernel channel: waiting only once it
        // holds a message.
        table.get_mut(b).unwrap().bound = Some(kernel);
        assert_eq!(capacities(&mut table, a, b), Some((1, 2, false)));
        table.get_mut(kernel).unwrap().push_back(kernel_message());
        assert_eq!(capacities(&mut table, a, b), Some((1, 2, true)));
        assert_eq!(capacities(&mut table, b, a), Some((2, 1, false)));
        // A destroyed channel's reference, and its slot's successor under
        // the old one, name nothing.
        table.destroy(a);
        assert_eq!(capacities(&mut table, a, b), None);
        assert_eq!(capacities(&mut table, b, a), None);
        let successor = table.create(4, payer);
        assert_eq!(successor.index(), a.index());
        assert_eq!(capacities(&mut table, a, b), None);
        assert_eq!(capacities(&mut table, b, a), None);
        assert_eq!(capacities(&mut table, successor, b), Some((4, 2, true)));
        // One slot, named once by its successor and once by the old
        // reference: still stale.
        assert_eq!(capacities(&mut table, successor, a), None);
        assert_eq!(capacities(&mut table, a, successor), None);
        assert_eq!(
            capacities(&mut table, successor, successor),
            Some((4, 4, false))
        );
    }

    /// The fast path's two one-word tests answer exactly what the
    /// channel's fields say, in every combination of them.
    #[test]
    fn the_summary_s_tests_agree_with_the_fields_in_every_state() {
        let mut table = ChannelTable::new();
        let payer = crate::budget::AccountId::from_raw(0);
        let (r, other) = (table.create(4, payer), table.create(1, payer));
        for case in 0u32..256 {
            let bit = |n: u32| case >> n & 1 == 1;
            // By its slot: a case marked as a placeholder is no channel to
            // `get_mut`.
            let c = &mut table.slots[r.index() as usize].channel;
            while c.pop_front().is_some() {}
            if bit(0) {
                c.push_back(kernel_message());
            }
            c.receivers = u32::from(bit(1));
            c.senders = u32::from(bit(2));
            c.registrations = u32::from(bit(3));
            c.bound = bit(4).then_some(other);
            c.bound_to = bit(5).then_some(other);
            // A placeholder's mark, with every field otherwise as given.
            c.blocks = if bit(7) { Channel::VACANT } else { 0 };
            c.resync();
            let waiting = bit(6);
            assert_eq!(c.blocks, c.summary());
            let vacant = bit(7);
            assert_eq!(
                c.takes_direct(),
                !vacant && !c.is_closed() && c.queue.is_empty(),
                "case {case:#b}"
            );
            let mut asked = false;
            let direct = c.waits_direct(|_| {
                asked = true;
                waiting
            });
            let kernel_message = c.bound.is_some() && waiting;
            let expected = !(vacant || !c.queue.is_empty() || c.is_drained() || kernel_message);
            assert_eq!(direct, expected, "case {case:#b}");
            assert!(!asked || c.bound.is_some(), "asked only when bound");
        }
    }

    /// A free slot holds a placeholder, which the table's lookups refuse
    /// and the fast path's lookup, which only compares generations, may
    /// reach by the last reference of a retired slot: its summary
    /// declines it in both of the fast path's tests.
    #[test]
    fn a_free_slot_s_placeholder_is_refused_or_declined() {
        let mut table = ChannelTable::new();
        let payer = crate::budget::AccountId::from_raw(0);
        let a = table.create(1, payer);
        table.slots[a.index() as usize].generation = u32::MAX;
        let last = ChannelRef::from_parts(a.index(), u32::MAX);
        let c = table.get_mut(last).expect("live at the last generation");
        (c.receivers, c.senders) = (1, 1);
        c.resync();
        assert!(c.takes_direct() && c.waits_direct(|_| false));
        table.destroy(last);
        assert!(table.get(last).is_none() && table.get_mut(last).is_none());
        assert_eq!(table.iter().count(), 0);
        let placeholder = table
            .live_channel(last)
            .expect("a retired slot keeps its generation");
        assert_eq!(placeholder.blocks, placeholder.summary(), "what it is");
        assert_ne!(placeholder.blocks & Channel::VACANT, 0);
        assert!(!placeholder.takes_direct());
        assert!(!placeholder.waits_direct(|_| false));
        // A slot freed below the last generation moves its generation on:
        // the old reference reaches nothing, not even the placeholder.
        let b = table.create(1, payer);
        let stale = table.create(1, payer);
        table.destroy(stale);
        assert!(table.live_channel(stale).is_none());
        assert!(table.get(b).is_some());
    }

    #[test]
    fn destroying_a_stale_reference_leaves_the_successor_alone() {
        let mut table = ChannelTable::new();
        let a = table.create(1, crate::budget::AccountId::from_raw(0));
        table.destroy(a);
        let b = table.create(1, crate::budget::AccountId::from_raw(0));
        assert_eq!(b.index(), a.index());
        table.destroy(a);
        assert!(table.get(b).is_some());
        assert!(table.get_mut(a).is_none());
        assert_eq!(table.live(), 1);
    }
}
