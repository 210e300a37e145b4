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

use pandagen_abi::{CapHandle, Instant, Rights, TaskId};

use super::KernelCore;
use crate::cap_table::{CapSpace, ObjectRef};
use crate::channel::{Body, Channel, ChannelRef};
use crate::sched::{BlockedOn, SchedState, Scheduler};

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

/// A call the fast path has checked and will take: every condition held
/// and nothing has changed yet. It holds the core borrowed, so nothing
/// else can change it before [`FastCall::commit`] switches; dropped
/// instead, it leaves everything as it was (the embedder's half of the
/// hand-off declined). The embedder writes [`FastCall::offer`]'s message
/// into the receiver's buffer between the two.
///
/// It holds the two channels the check found, so the commit changes their
/// wait lists in place without looking them up again. The two tasks'
/// wake reasons are in their scheduler entries, which the switch writes
/// anyway: the commit touches no task record.
#[must_use = "a checked call changes nothing until it is committed"]
pub struct FastCall<'k> {
    caller: TaskId,
    receiver: TaskId,
    /// The channel sent on, and the one received on unless it is the same.
    sent_on: &'k mut Channel,
    receive_on: Option<&'k mut Channel>,
    sched: &'k mut Scheduler,
    next_seq: &'k mut u64,
    caller_slot: u32,
    receiver_slot: u32,
    to: ChannelRef,
    from: ChannelRef,
    deadline: Option<Instant>,
}

impl FastCall<'_> {
    /// What the receiver is handed: the message's `bytes`, its sender and
    /// the sequence number it gets if the call is committed (none is used
    /// up by a call that is not).
    #[inline(always)]
    pub fn offer<'b>(&self, bytes: &'b [u8]) -> Offer<'b> {
        Offer {
            receiver: self.receiver,
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
    pub fn commit(self) -> Switched {
        let FastCall {
            receiver,
            sent_on,
            receive_on,
            sched,
            next_seq,
            caller_slot,
            receiver_slot,
            to,
            from,
            deadline,
            ..
        } = self;
        let seq = *next_seq;
        *next_seq += 1;
        let on = BlockedOn::Receive {
            channel: from,
            deadline,
        };
        // The wait lists are changed in place, in the channels `check_fast`
        // found; when the caller receives on the channel it sent on, they
        // are one list. The two wake reasons are written in the same
        // scheduler entries.
        sched.switch_direct(
            caller_slot,
            receiver_slot,
            on,
            &mut sent_on.waiters,
            receive_on.map(|r| &mut r.waiters),
        );
        Switched {
            channel: to,
            receiver,
            seq,
        }
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
        let call = self.check_fast(caller, send, body.len(), receive, deadline, now)?;
        if !hand_off(&call.offer(body.as_slice())) {
            return None;
        }
        Some(call.commit())
    }

    /// Check every condition of the fast path for a send of `len` bytes
    /// (no capabilities) on `send`, then a receive on `receive` until
    /// `deadline`, changing nothing: the caller is running; `send` is a
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
    #[inline(always)]
    pub fn check_fast(
        &mut self,
        caller: TaskId,
        send: CapHandle,
        len: usize,
        receive: CapHandle,
        deadline: Option<Instant>,
        now: impl FnOnce() -> Instant,
    ) -> Option<FastCall<'_>> {
        let KernelCore {
            config,
            tasks,
            channels,
            sched,
            next_seq,
            ..
        } = self;
        let (caller_slot, caller_task) = tasks.slot_and_task(caller)?;
        if sched.state(caller_slot) != SchedState::Running || len > config.max_message_bytes {
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
        let to = fast_channel(space, send, Rights::SEND)?;
        let from = fast_channel(space, receive, Rights::RECEIVE)?;
        // The two channels are borrowed once, here, for the checks and for
        // the commit, which changes their wait lists in place (the core
        // stays borrowed until then, so they hold the same channels). The
        // binding's answer comes with them: a channel bound to no kernel
        // channel (the common case) costs one test.
        let (sent_on, receive_on, kernel_waiting) = channels.live_pair_mut(to, from)?;
        let receiver_slot = match (sent_on.is_closed(), sent_on.queue.is_empty()) {
            (false, true) => sent_on.waiters.head()?,
            _ => return None,
        };
        let r = receive_on.as_deref().unwrap_or(sent_on);
        if !r.queue.is_empty() || r.is_drained() || kernel_waiting {
            return None;
        }
        if !sched.can_run_directly(receiver_slot) {
            return None;
        }
        let receiver = tasks.by_slot(receiver_slot)?.id;
        Some(FastCall {
            caller,
            receiver,
            sent_on,
            receive_on,
            sched,
            next_seq,
            caller_slot,
            receiver_slot,
            to,
            from,
            deadline,
        })
    }
}

/// The channel a valid channel capability with `required` in `space`
/// names, or `None` (not audited: the general path repeats the check and
/// audits the refusal).
#[inline]
fn fast_channel(space: &CapSpace, handle: CapHandle, required: Rights) -> Option<ChannelRef> {
    let cap = space.live(handle)?;
    match cap.object() {
        ObjectRef::Channel(ch) if cap.rights().contains(required) => Some(ch),
        _ => None,
    }
}
