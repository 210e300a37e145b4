//! The IPC fast path: a send-then-receive that hands the CPU straight to
//! the receiver, like seL4's `Call`/`ReplyRecv` fastpath.
//!
//! A client's call (request out, wait for the reply) and a server's
//! reply-and-wait (reply out, wait for the next request) are one
//! operation: send on one channel, then block receiving on another. In the
//! common case — someone is already blocked receiving on the send channel,
//! nothing is queued anywhere, and that receiver is who the scheduler
//! would run next once the caller blocks — the message goes straight into
//! the receiver's buffer and the receiver becomes the running task, with
//! no queueing, no allocation, no trip through the ready lists and no
//! second receive when it resumes.
//!
//! The fast path only ever *declines*: it changes and audits nothing
//! unless every condition holds, and then its outcome is exactly what
//! the general path (`send_or_hand_off`, `receive_or_block`, `pick_next`)
//! would have produced. Errors, capability transfers, full or closed
//! channels and every other case take the general path, which reports
//! them.

use pandagen_abi::{CapHandle, Instant, TaskId};

use super::KernelCore;
use crate::cap_table::{CapSpace, KeyedRight};
use crate::channel::{Body, ChannelRef};
use crate::registry::Registry;
use crate::sched::{BlockedOn, DirectSwitch};
use crate::task::TaskTable;

use super::channel::Offer;

/// What the fast path did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switched {
    /// The channel the message was sent on.
    pub channel: ChannelRef,
    /// The task that received the message and is now running.
    pub receiver: TaskId,
    /// The message's sequence number.
    pub seq: u64,
}

/// What [`FastCall::commit`] did: the message's channel and sequence
/// number (the receiver is the task at [`FastCall::slots`]' second slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The channel the message was sent on.
    pub channel: ChannelRef,
    /// The message's sequence number.
    pub seq: u64,
}

/// A call the fast path has checked and will take: every condition held
/// and nothing observable has changed yet (the check wrote the caller's
/// coming wait where nothing reads it while the caller runs, see
/// `Scheduler::check_direct`). It holds the core borrowed, so nothing
/// else can change it before [`FastCall::commit`] switches; dropped
/// instead, it leaves everything as it was (the embedder's half of the
/// hand-off declined). The embedder writes [`FastCall::offer`]'s message
/// into the receiver's buffer between the two.
///
/// It holds the scheduler's checked switch ([`DirectSwitch`], which only
/// the scheduler's check makes), with the wait lists of the two channels
/// the check found, so the commit changes them in place without looking
/// them up or checking the two tasks' states again. The two tasks' wake
/// reasons are in their scheduler entries, which the switch writes
/// anyway: the commit touches no task record.
///
/// The check finds the receiver's slot, not its id: an embedder that keeps
/// its own per-task records in a table parallel to the core's (indexed by
/// [`crate::slot_index`]) finds the receiver's record, and its id, by
/// [`FastCall::slots`], so that neither looks the task up twice;
/// [`FastCall::receiver`] looks the id up in the core.
#[must_use = "a checked call changes nothing until it is committed"]
pub struct FastCall<'k> {
    caller: TaskId,
    tasks: &'k TaskTable,
    /// The switch, on the wait lists of the channel sent on and of the one
    /// received on (the same list when it is the same channel).
    switch: DirectSwitch<'k>,
    next_seq: &'k mut u64,
    to: ChannelRef,
}

impl FastCall<'_> {
    /// The caller's slot and the receiver's, in the core's task table (see
    /// [`crate::slot_index`]): two different live tasks.
    #[inline(always)]
    pub fn slots(&self) -> (u32, u32) {
        self.switch.slots()
    }

    /// The receiver's id, from the core's task table.
    #[inline(always)]
    pub fn receiver(&self) -> Option<TaskId> {
        Some(self.tasks.by_slot(self.switch.slots().1)?.id)
    }

    /// What the receiver (`receiver`, the task at the receiver's slot) is
    /// handed: the message's `bytes`, its sender and the sequence number
    /// it gets if the call is committed (none is used up by a call that is
    /// not).
    #[inline(always)]
    pub fn offer<'b>(&self, receiver: TaskId, bytes: &'b [u8]) -> Offer<'b> {
        Offer {
            receiver,
            sender: self.caller,
            seq: *self.next_seq,
            bytes,
            badge: None,
        }
    }

    /// Take the call: the receiver runs with its receive complete
    /// ([`WakeReason::HandedOff`]) and the caller is blocked on its receive
    /// channel exactly as after `receive_or_block`.
    #[inline(always)]
    pub fn commit(self) -> Committed {
        let FastCall {
            switch,
            next_seq,
            to,
            ..
        } = self;
        let seq = *next_seq;
        *next_seq += 1;
        // The wait lists are changed in place, in the channels `check_fast`
        // found; when the caller receives on the channel it sent on, they
        // are one list (and one cell). The two wake reasons are written in the same
        // scheduler entries, and the caller's wait is there already (the
        // check put it where nothing reads it while the caller runs).
        switch.commit();
        Committed { channel: to, seq }
    }
}

impl KernelCore {
    /// Send `bytes` (no capabilities) on `send`, then block receiving on
    /// `receive` until `deadline`, switching straight to the task blocked
    /// on `send` — if every condition of the fast path holds (see
    /// [`KernelCore::check_fast`]) and `hand_off` accepts the offer (the
    /// embedder wrote the message into the receiver's buffer).
    ///
    /// On `Some`, the receiver is running with its receive complete
    /// ([`WakeReason::HandedOff`]) and the caller is blocked on `receive`
    /// exactly as after `receive_or_block`. On `None` nothing changed.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn send_receive_fast<'b>(
        &mut self,
        caller: TaskId,
        send: CapHandle,
        body: impl Into<Body<'b>>,
        receive: CapHandle,
        deadline: Option<Instant>,
        now: impl FnOnce() -> Instant,
        hand_off: impl FnOnce(&Offer<'_>) -> bool,
    ) -> Option<Switched> {
        let body = body.into();
        let slot = crate::slot_index(caller);
        let call = self.check_fast(caller, slot, send, body.len(), receive, deadline, now)?;
        let receiver = call.receiver()?;
        if !hand_off(&call.offer(receiver, body.as_slice())) {
            return None;
        }
        let Committed { channel, seq } = call.commit();
        Some(Switched {
            channel,
            receiver,
            seq,
        })
    }

    /// Check every condition of the fast path for a send of `len` bytes
    /// (no capabilities) on `send`, then a receive on `receive` until
    /// `deadline`, changing nothing observable: the caller is running; `send` is a
    /// channel capability with `SEND` on an open channel with an empty
    /// queue and a blocked receiver; the message is within the size limit;
    /// `receive` is a channel capability with `RECEIVE` whose queue is
    /// empty and which can still deliver; `deadline` is in the future; no
    /// other deadline has passed; and no ready task has the receiver's
    /// priority or a higher one. `Some` is the call, to commit once the
    /// message is in the receiver's buffer.
    ///
    /// `now` is asked for the time only when a deadline is involved (the
    /// call's or another blocked task's): reading a clock costs more than
    /// the rest of the checks, and without a deadline the answer does not
    /// depend on it.
    ///
    /// `caller_slot` is the caller's slot ([`crate::slot_index`] of
    /// `caller`), which an embedder indexing its own records by slot has
    /// at hand: the check finds the caller there and requires its id to
    /// be `caller`, so a wrong slot declines (it never acts on the task
    /// in it).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn check_fast(
        &mut self,
        caller: TaskId,
        caller_slot: usize,
        send: CapHandle,
        len: usize,
        receive: CapHandle,
        deadline: Option<Instant>,
        now: impl FnOnce() -> Instant,
    ) -> Option<FastCall<'_>> {
        let checked = self.check_fast_via(
            caller,
            caller_slot,
            len,
            receive,
            deadline,
            now,
            ChannelSend(send),
        );
        checked.map(|(call, ())| call)
    }

    /// [`KernelCore::check_fast`] with the channel sent on found by
    /// `target` in the caller's space (and the service registry) instead
    /// of from a channel capability, with what else `target` found (an
    /// object call's stamp): the conditions on that channel and on the
    /// rest are the same.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn check_fast_via<T: SendTarget>(
        &mut self,
        caller: TaskId,
        caller_slot: usize,
        len: usize,
        receive: CapHandle,
        deadline: Option<Instant>,
        now: impl FnOnce() -> Instant,
        target: T,
    ) -> Option<(FastCall<'_>, T::Found)> {
        let KernelCore {
            config,
            tasks,
            channels,
            sched,
            next_seq,
            registry,
            ..
        } = self;
        let (caller_slot, caller_task) = tasks.task_at(caller, caller_slot)?;
        if len > config.max_message_bytes {
            return None;
        }
        let earliest = match (deadline, sched.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if earliest.is_some_and(|d| d <= now()) {
            return None;
        }
        let space = &caller_task.space;
        let (to, found) = target.find(space, registry)?;
        // The two channels, each read once, here, for the checks (the
        // channel sent on checked before the receive capability and its
        // channel are looked up, so that fewer values are live at once); the commit changes their wait
        // lists in place, through their cells (the core stays borrowed
        // until then, so they hold the same channels). When the caller
        // receives where it sent they are one channel, and one list, with
        // no test for it. A receive channel bound to no kernel channel
        // (the common case) costs one test for the binding.
        // Each channel's state is one test of its summary word
        // (`Channel::blocks`).
        let sent_on = channels.live_channel(to)?;
        if !sent_on.takes_direct() {
            return None;
        }
        let from = fast_channel(space, receive, KeyedRight::Receive)?;
        let receive_on = channels.live_channel(from)?;
        if !receive_on.waits_direct(|c| channels.kernel_messages_waiting(c)) {
            return None;
        }
        // The caller is running and the task first in line on the channel
        // sent on is blocked and would run next; the switch checked here
        // is the only one the commit can make.
        let on = BlockedOn::Receive {
            channel: from,
            deadline,
        };
        let switch = sched.check_direct(caller_slot, &sent_on.waiters, &receive_on.waiters, on)?;
        let call = FastCall {
            caller,
            tasks,
            switch,
            next_seq,
            to,
        };
        Some((call, found))
    }
}

/// Where a call on the fast path sends, found in the caller's space `space`
/// (and `registry`): the channel, and what else the send needs (an object
/// call's stamp), or `None` (not audited: the general path repeats the
/// check and audits the refusal). A trait rather than a closure: its
/// `find` is inlined for certain, and a closure the compiler left out of
/// line cost `Exchange` 32 instructions a round trip.
pub(super) trait SendTarget {
    type Found;
    fn find(self, space: &CapSpace, registry: &Registry) -> Option<(ChannelRef, Self::Found)>;
}

/// A channel capability with `SEND`.
struct ChannelSend(CapHandle);

impl SendTarget for ChannelSend {
    type Found = ();

    #[inline(always)]
    fn find(self, space: &CapSpace, _: &Registry) -> Option<(ChannelRef, ())> {
        Some((fast_channel(space, self.0, KeyedRight::Send)?, ()))
    }
}

/// The channel a valid channel capability with `right` in `space`
/// names, or `None` (not audited: the general path repeats the check and
/// audits the refusal).
#[inline(always)]
fn fast_channel(space: &CapSpace, handle: CapHandle, right: KeyedRight) -> Option<ChannelRef> {
    space.live_channel(handle, right)
}
