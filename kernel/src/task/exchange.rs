//! `Exchange`'s direct path: one call that sends to a task already
//! blocked receiving, parks the caller in its own receive and leaves the
//! kernel as the receiver, without the general dispatcher.
//!
//! Every precondition is checked before anything changes: the caller is
//! the current task, its registers decode, no port window is open (the
//! general path keeps the I/O bitmap right across the switch), and then
//! the core's check of its fast path (`KernelCore::check_fast`: both
//! capabilities, the waiting receiver, empty queues, no deadline due, the
//! scheduler's choice), which changes nothing until the call is
//! committed. The kernel's half of the hand-off, between the check and
//! the commit, also declines for a receiver with
//! port windows, a caller's response buffer that is not writable (checked
//! there, where the caller's record is at hand), a message outside one
//! page of the caller's readable memory, or
//! a receiver whose buffer cannot hold the reply. A declined call has
//! changed nothing, and the dispatcher's general path runs it and reports
//! any error exactly as `SendReceive` does.
//!
//! Taken, it costs one copy of the message (from the caller's page
//! straight into the receiver's buffer, with the reply's framing), and no
//! copy of registers (the entry stub saved the caller's in its record,
//! and the kernel leaves through the receiver's), allocation, postcard or
//! request buffer. The clock is read only when a deadline is
//! involved (the call's own, another blocked task's) or a released reply
//! capability's audit record needs the time, and then once.

use core::cell::OnceCell;

use pandagen_abi::syscall::{ExchangeRegisters, RESPONSE_BUFFER_BYTES};
use pandagen_abi::{CapHandle, Duration, Instant, TaskId};

use super::{now, schedule, KernelState, Pending, UserBuffer, UserRange, UserTask, UserTasks};
use crate::arch::x86_64::trap::TrapFrame;
use crate::syscall::{reply, CallRegisters};
use crate::usermem::UserMemory;

/// What [`KernelState::exchange_direct`] did.
pub enum Exchanged {
    /// Nothing changed: run the call on the general path.
    Declined,
    /// Taken: leave the kernel through this frame (the receiver's record).
    Resume(*mut TrapFrame),
}

impl KernelState {
    /// Run the current task's `Exchange`, whose registers are `frame`
    /// (read out of its record, where the entry stub saved them), if every
    /// condition of the direct path holds (see the module docs). Taken,
    /// the caller's registers stay in its record.
    #[inline(always)]
    pub fn exchange_direct(&mut self, frame: &CallRegisters) -> Exchanged {
        let Some(caller) = self.current else {
            return Exchanged::Declined;
        };
        let Ok(request) =
            ExchangeRegisters::from_registers(frame.r8, frame.r9, frame.r12, frame.r13)
        else {
            return Exchanged::Declined;
        };
        let Ok(len) = usize::try_from(frame.rsi) else {
            return Exchanged::Declined;
        };
        if self.ports_open() {
            return Exchanged::Declined;
        }
        let KernelState {
            core,
            tasks,
            current,
            slice_left,
            active_space,
            ..
        } = self;
        let time = OnceCell::new();
        let clock = || *time.get_or_init(now);
        let deadline = request
            .timeout_nanos
            .map(|n| clock().saturating_add(Duration::from_nanos(n)));
        let Some(call) =
            core.check_fast(caller, request.send, len, request.receive, deadline, clock)
        else {
            return Exchanged::Declined;
        };
        // `Body::Kept`: the core sees the message's length only; the bytes
        // go from the caller's page straight into the receiver's buffer.
        // The receiver's record, and its id, are found by the slot the
        // core's check named.
        let parked = Parked {
            channel: request.receive,
            deadline,
        };
        let deliver = reply::deliver_message;
        let Some((receiver_id, receiver)) =
            hand_over(tasks, caller, call.slots(), len, parked, deliver)
        else {
            return Exchanged::Declined;
        };
        // The kernel's records are indexed by the core's slots (see
        // `UserTasks`): the task in the receiver's slot is the core's.
        debug_assert_eq!(call.receiver(), Some(receiver_id));
        call.commit();
        if request.consume_send {
            // Sent: released before the receive, as `SendReceive` does.
            // Already gone if this fails, which is the goal anyway.
            let _ = core.drop_cap(caller, request.send, clock());
        }
        // The receiver runs, its record already at hand. The I/O bitmap
        // stays as it is: it opens nothing (checked above), and the
        // receiver has no windows (`hand_over` declines one that has).
        Exchanged::Resume(schedule::enter(
            receiver,
            receiver_id,
            current,
            slice_left,
            active_space,
        ))
    }
}

/// The receive a direct call parks its caller in (its response buffer is
/// the one the caller's registers name).
#[derive(Clone, Copy)]
pub(super) struct Parked {
    pub channel: CapHandle,
    pub deadline: Option<Instant>,
}

/// The kernel's half of the direct path's hand-off: the caller's message
/// (`len` bytes at its `rdi`) straight from its memory into the
/// receiver's pending receive buffer, and the caller's own receive
/// (`parked`, into its response buffer at `rdx`, `r10` bytes) into its
/// record. The caller's registers are read from its record, where the
/// entry stub saved them (so they are not carried across the core's
/// check), and stay there. Declines — having written nothing — if either
/// record is missing, the receiver is not blocked in a receive, has port
/// windows (the general path's switch brings the bitmap to them), or
/// cannot take the reply, the sender's own response buffer is not
/// writable, or the message is not within one page of the sender's
/// readable memory. Called between the core's check of the call and its
/// commit, and inlined there, with the core's `slots` of the sender
/// (`sender_id`) and of the receiver. `deliver` writes the reply's framing
/// and the message into the receiver's buffer (`reply::deliver_message`,
/// or a stamped delivery for an object call), returning the receiver's
/// `rax` or `None` — having written nothing — if the buffer cannot hold
/// it. Returns the receiver's id and record.
#[inline(always)]
pub(super) fn hand_over(
    tasks: &mut UserTasks,
    sender_id: TaskId,
    slots: (u32, u32),
    len: usize,
    parked: Parked,
    deliver: impl FnOnce(&mut UserMemory, UserBuffer, TaskId, &[u8]) -> Option<u64>,
) -> Option<(TaskId, &mut UserTask)> {
    let (sender, receiver_id, receiver) = tasks.pair_at_mut(&sender_id, slots)?;
    let Some(Pending::Receive {
        response: receiver_response,
        ..
    }) = receiver.pending
    else {
        return None;
    };
    if !receiver.ports.is_empty() {
        return None;
    }
    let message = UserRange {
        ptr: sender.frame.rdi,
        len,
    };
    let response = UserBuffer {
        ptr: sender.frame.rdx,
        capacity: sender.frame.r10,
    };
    // The caller's response buffer must be writable, as every receive
    // checks; here, with the caller's record already at hand.
    let checked = response.capacity.min(RESPONSE_BUFFER_BYTES as u64);
    if sender.memory.check_writable(response.ptr, checked).is_err() {
        return None;
    }
    let bytes = sender.memory.readable_in_page(message.ptr, message.len)?;
    let rax = deliver(&mut receiver.memory, receiver_response, sender_id, bytes)?;
    receiver.frame.rax = rax;
    receiver.pending = None;
    sender.pending = Some(Pending::Receive {
        channel: parked.channel,
        deadline: parked.deadline,
        response,
    });
    Some((receiver_id, receiver))
}
