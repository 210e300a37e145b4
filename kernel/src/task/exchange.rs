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
use pandagen_abi::Duration;
use pandagen_core::Offer;

use super::{now, schedule, KernelState, Pending, UserBuffer, UserRange, UserTask, UserTasks};
use crate::arch::x86_64::trap::TrapFrame;
use crate::syscall::{reply, CallRegisters};

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
        let message = UserRange {
            ptr: frame.rdi,
            len,
        };
        let response = UserBuffer {
            ptr: frame.rdx,
            capacity: frame.r10,
        };
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
        let parked = Pending::Receive {
            channel: request.receive,
            deadline,
            response,
        };
        let Some(call) =
            core.check_fast(caller, request.send, len, request.receive, deadline, clock)
        else {
            return Exchanged::Declined;
        };
        // `Body::Kept`: the core sees the message's length only; the bytes
        // go from the caller's page straight into the receiver's buffer.
        let Some(receiver) = hand_over(tasks, message, response, &call.offer(&[]), parked) else {
            return Exchanged::Declined;
        };
        let switched = call.commit();
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
            switched.receiver,
            current,
            slice_left,
            active_space,
        ))
    }
}

/// The kernel's half of the direct path's hand-off: the message from
/// `message` in the sender's memory straight into the receiver's pending
/// receive buffer, and the sender's own receive (`parked`) into its
/// record (its registers are there already: the entry stub saved them
/// there). Declines — having written nothing —
/// if either record is missing, the receiver is not blocked in a receive,
/// has port windows (the general path's switch brings the bitmap to them),
/// or cannot take the reply, the sender's own `response` buffer is not
/// writable, or the message is not within one page of the sender's
/// readable memory. Called between the core's check of the call and its
/// commit, and inlined there. Returns the receiver's record.
#[inline(always)]
fn hand_over<'t>(
    tasks: &'t mut UserTasks,
    message: UserRange,
    response: UserBuffer,
    offer: &Offer<'_>,
    parked: Pending,
) -> Option<&'t mut UserTask> {
    let (sender, receiver) = tasks.pair_mut(&offer.sender, &offer.receiver)?;
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
    // The caller's response buffer must be writable, as every receive
    // checks; here, with the caller's record already at hand.
    let checked = response.capacity.min(RESPONSE_BUFFER_BYTES as u64);
    if sender.memory.check_writable(response.ptr, checked).is_err() {
        return None;
    }
    let bytes = sender.memory.readable_in_page(message.ptr, message.len)?;
    let rax = reply::deliver_message(&mut receiver.memory, receiver_response, offer.sender, bytes)?;
    receiver.frame.rax = rax;
    receiver.pending = None;
    sender.pending = Some(parked);
    Some(receiver)
}
