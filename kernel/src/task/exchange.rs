//! The direct path of `Exchange` and of `CallObject`: one call that
//! sends to a task already blocked receiving, parks the caller in its own
//! receive and leaves the kernel as the receiver, without the general
//! dispatcher. The two calls share it ([`KernelState::direct_call`]) and
//! differ only in what their registers decode to ([`SendTo`]): the core's
//! check (`Exchange`'s through a channel capability, `CallObject`'s
//! through an object capability, see `object_call.rs`), the delivery (an
//! object call's request carries its stamp) and what follows the commit
//! (`Exchange` may release its send capability).
//!
//! Every precondition is checked before anything changes: the caller is
//! the current task, its registers decode, no port window is open (the
//! general path keeps the I/O bitmap right across the switch), and then
//! the core's check of its fast path (`KernelCore::check_fast` or
//! `KernelCore::check_object_call`: the capabilities, the waiting
//! receiver, empty queues, no deadline due, the scheduler's choice),
//! which changes nothing until the call is committed. The kernel's half
//! of the hand-off, between the check and the commit, also declines for
//! a receiver with port windows, a caller's response buffer that is not
//! writable (checked there, where the caller's record is at hand), a
//! message outside one page of the caller's readable memory, or a
//! receiver whose buffer cannot hold the reply. A declined call has
//! changed nothing, and the dispatcher's general path runs it and reports
//! any error exactly as `SendReceive` (or `call_object`) does.
//!
//! Taken, it costs one copy of the message (from the caller's page
//! straight into the receiver's buffer, with the reply's framing), and no
//! copy of registers (the entry stub saved the caller's in its record,
//! and the kernel leaves through the receiver's), allocation, postcard or
//! request buffer. The clock is read only when a deadline is
//! involved (the call's own, another blocked task's) or a released reply
//! capability's audit record needs the time, and then once.

use core::cell::OnceCell;

use pandagen_abi::syscall::{
    write_receive_reply_trailer, ExchangeRegisters, Syscall, RECEIVE_REPLY_TRAILER,
    RECEIVE_REPLY_TRAILER_MAX, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::{Badge, CapHandle, Duration, Instant, KernelError, TaskId};
use pandagen_core::slot_index;

use super::{now, schedule, KernelState, Pending, UserBuffer, UserRange, UserTask, UserTasks};
use crate::arch::x86_64::trap::TrapFrame;
use crate::syscall::{reply, CallRegisters};

/// What [`KernelState::direct_call`] did.
pub enum Exchanged {
    /// Nothing changed: run the call on the general path.
    Declined,
    /// Taken: leave the kernel through this frame (the receiver's record).
    Resume(*mut TrapFrame),
}

/// A direct call's registers, decoded: what it sends to, and the receive
/// its caller parks in.
#[derive(Clone, Copy)]
pub struct Direct {
    pub to: SendTo,
    pub receive: CapHandle,
    pub timeout_nanos: Option<u64>,
}

/// What a direct call sends to, which decides the core's check, the
/// delivery and what follows the commit.
#[derive(Clone, Copy)]
pub enum SendTo {
    /// `Exchange`'s channel capability, released once sent if `consume`.
    Channel { send: CapHandle, consume: bool },
    /// `CallObject`'s object capability, whose badge and rights the
    /// request carries (its stamp).
    Object(CapHandle),
}

/// A call with a direct path: `Exchange` (`ExchangeRegisters`) and
/// `CallObject` (`ObjectCallRegisters`, in `object_call.rs`). Each
/// decodes to one variant of [`SendTo`], and [`KernelState::direct_call`]
/// and its entry, inlined for each, keep only that variant's code.
pub trait DirectCall {
    /// The call, for the entry's debug check.
    const NAME: &'static str;
    /// Its number, which the entry stub does not save in the record (see
    /// `syscall_entry::save_direct_call`): a declined call writes it
    /// there for the general path.
    const NUMBER: Syscall;
    /// The call's registers (`r8`, `r9`, `r12`, `r13`).
    fn decode(frame: &CallRegisters) -> Result<Direct, KernelError>;

    /// Whether the call is the common one, read from its raw registers
    /// before they are decoded: no timeout (`r12` is
    /// [`ExchangeRegisters::WAIT_FOREVER`]) and `r13` zero (nothing
    /// released once sent; an object call's reserved register). Exactly
    /// the registers that decode (both calls accept an `r13` of 0) to no
    /// timeout and, for `Exchange`, no release.
    #[inline(always)]
    fn plain(frame: &CallRegisters) -> bool {
        // One test for both: `WAIT_FOREVER` is `u64::MAX`, the one value
        // whose successor wraps to 0.
        const _: () = assert!(ExchangeRegisters::WAIT_FOREVER == u64::MAX);
        frame.r12.wrapping_add(1) | frame.r13 == 0
    }
}

impl DirectCall for ExchangeRegisters {
    const NAME: &'static str = "an Exchange";
    const NUMBER: Syscall = Syscall::Exchange;

    #[inline(always)]
    fn decode(frame: &CallRegisters) -> Result<Direct, KernelError> {
        let request = Self::from_registers(frame.r8, frame.r9, frame.r12, frame.r13)?;
        let to = SendTo::Channel {
            send: request.send,
            consume: request.consume_send,
        };
        Ok(Direct {
            to,
            receive: request.receive,
            timeout_nanos: request.timeout_nanos,
        })
    }
}

impl KernelState {
    /// Run the current task's call `C` (`Exchange` or `CallObject`),
    /// whose registers are `frame` (read out of its record, where the
    /// entry stub saved them), if every condition of the direct path holds
    /// (see the module docs); otherwise decline, having changed nothing.
    /// Taken, the caller's registers stay in its record.
    #[inline(always)]
    pub fn direct_call<C: DirectCall>(&mut self, frame: &CallRegisters) -> Exchanged {
        let Some(caller) = self.current.get() else {
            return Exchanged::Declined;
        };
        let Ok(len) = usize::try_from(frame.rsi) else {
            return Exchanged::Declined;
        };
        if self.ports_open() {
            return Exchanged::Declined;
        }
        // The common call (no timeout, nothing released once sent) has a
        // body of its own, in which the compiler knows both: no deadline
        // is carried across the core's check and the hand-over, and no
        // release follows the commit. It is told from the raw registers
        // (`DirectCall::plain`), which then decode without a test. Every
        // other call takes the same body with both read from its
        // registers.
        if C::plain(frame) {
            // Infallible for these registers: no test is left.
            let Ok(request) = C::decode(frame) else {
                return Exchanged::Declined;
            };
            debug_assert!(
                request.timeout_nanos.is_none()
                    && !matches!(request.to, SendTo::Channel { consume: true, .. }),
                "{} with a timeout or a release taken as plain",
                C::NAME
            );
            self.direct_call_as::<true>(caller, request, len)
        } else {
            let Ok(request) = C::decode(frame) else {
                return Exchanged::Declined;
            };
            self.direct_call_as::<false>(caller, request, len)
        }
    }

    /// [`KernelState::direct_call`] once its registers are decoded: with
    /// `PLAIN`, for a call without a timeout that releases nothing (its
    /// caller checked this), whose deadline and release are constants
    /// here.
    #[inline(always)]
    fn direct_call_as<const PLAIN: bool>(
        &mut self,
        caller: TaskId,
        request: Direct,
        len: usize,
    ) -> Exchanged {
        let request = if PLAIN {
            Direct {
                to: match request.to {
                    SendTo::Channel { send, .. } => SendTo::Channel {
                        send,
                        consume: false,
                    },
                    object => object,
                },
                receive: request.receive,
                timeout_nanos: None,
            }
        } else {
            request
        };
        let KernelState {
            core,
            tasks,
            current,
            slice_left,
            active_cr3,
            ..
        } = self;
        let time = OnceCell::new();
        let clock = || *time.get_or_init(now);
        // The caller's slot, the index of its record here too (see
        // `UserTasks`): the core checks that the task there is `caller`.
        let caller_slot = slot_index(caller);
        let deadline = request
            .timeout_nanos
            .map(|n| clock().saturating_add(Duration::from_nanos(n)));
        let checked = match request.to {
            SendTo::Channel { send, .. } => core
                .check_fast(
                    caller,
                    caller_slot,
                    send,
                    len,
                    request.receive,
                    deadline,
                    clock,
                )
                .map(|call| (call, None)),
            SendTo::Object(object) => core
                .check_object_call(
                    caller,
                    caller_slot,
                    object,
                    len,
                    request.receive,
                    deadline,
                    clock,
                )
                .map(|(call, badge)| (call, Some(badge))),
        };
        let Some((call, badge)) = checked else {
            return Exchanged::Declined;
        };
        // The receiver's record, and its id, are found by the slot the
        // core's check named.
        let parked = Parked {
            channel: request.receive,
            deadline,
            len,
        };
        // `Body::Kept`: the core sees the message's length only; the bytes
        // go from the caller's page straight into the receiver's buffer,
        // an object call's with its stamp after them, as `accept_offer`
        // writes it for the general path's hand-off (each monomorph knows
        // its own trailer).
        let slots = call.slots();
        let handed = hand_over(tasks, caller, slots, parked, badge);
        let Some((receiver_id, receiver)) = handed else {
            return Exchanged::Declined;
        };
        // The kernel's records are indexed by the core's slots (see
        // `UserTasks`): the task in the receiver's slot is the core's.
        debug_assert_eq!(call.receiver(), Some(*receiver_id));
        call.commit();
        if let SendTo::Channel {
            send,
            consume: true,
        } = request.to
        {
            // Sent: released before the receive, as `SendReceive` does.
            // Already gone if this fails, which is the goal anyway.
            let _ = core.drop_cap(caller, send, clock());
        }
        // The receiver runs, its record already at hand. The I/O bitmap
        // stays as it is: it opens nothing (checked above), and the
        // receiver has no windows (`hand_over` declines one that has).
        // (The receiver's id read here, from its slot, at its one use
        // after the check: not carried across the commit.)
        // Its receiver is never its caller: another task, another space.
        Exchanged::Resume(schedule::enter(
            receiver,
            *receiver_id,
            current,
            slice_left,
            active_cr3,
            true,
        ))
    }
}

/// The receive a direct call parks its caller in (its response buffer is
/// the one the caller's registers name).
#[derive(Clone, Copy)]
///
/// `channel` and `len` are what the call's registers decoded to, which
/// [`hand_over`] reads again from the caller's record, where they are
/// (`r9`, `rsi`), rather than carry them across the core's check: they
/// are here for its debug checks only, and the release build drops them.
pub(super) struct Parked {
    pub channel: CapHandle,
    pub deadline: Option<Instant>,
    pub len: usize,
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
/// (`sender_id`) and of the receiver. The reply (its framing, the message
/// and a trailer: an object call's stamp `badge`, or none) is written
/// into the receiver's buffer last, once nothing can decline
/// (`reply::reply_fits`, then `reply::write_reply`, the receiver's
/// `rax`). Returns the receiver's id and record.
#[inline(always)]
pub(super) fn hand_over(
    tasks: &mut UserTasks,
    sender_id: TaskId,
    slots: (u32, u32),
    parked: Parked,
    badge: Option<Badge>,
) -> Option<(&TaskId, &mut UserTask)> {
    let (sender, receiver_id, receiver) = tasks.pair_at_mut(&sender_id, slots)?;
    // A receiver with port windows first (it declines every time, and
    // the check is one compare); then the sender's side, and the
    // receiver's pending buffer last (nothing changes before the
    // delivery, so the order is free): fewer values live across the
    // range check.
    if !receiver.ports.is_empty() {
        return None;
    }
    // The message's length and the receive channel, as the call's
    // registers decoded them (both calls' decodes: `rsi` as it is, the
    // receive handle `CapHandle::from_raw(r9)`), read again here where
    // the record is at hand: the record has not changed since.
    let len = sender.frame.rsi as usize;
    debug_assert_eq!(len, parked.len, "the record's rsi is not the length");
    debug_assert!(
        CapHandle::from_raw(sender.frame.r9) == parked.channel,
        "the record's r9 is not the receive"
    );
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
    // Both found without a walk (no call here, across which the values
    // of the core's check and of this hand-over would be spilled): a
    // range or a page not met before declines, and the general path
    // walks it, answers the call and keeps it for the next.
    if !sender
        .memory
        .writable_as_checked_before(response.ptr, checked)
    {
        return None;
    }
    let bytes = sender
        .memory
        .readable_in_cached_page(message.ptr, message.len)?;
    let Some(Pending::Receive { response: to, .. }) = receiver.pending else {
        return None;
    };
    // The reply's trailer: the stamp of an object call (as `accept_offer`
    // writes it), or `Exchange`'s constant one. Each monomorph knows
    // which.
    let mut stamp = [0u8; RECEIVE_REPLY_TRAILER_MAX];
    let trailer: &[u8] = match badge {
        None => &RECEIVE_REPLY_TRAILER,
        Some(badge) => {
            let n = write_receive_reply_trailer(Some(badge), &mut stamp);
            &stamp[..n]
        }
    };
    // The reply's framing told once: each branch's fit test and write
    // know it (`deliver`, inlined twice), rather than test it twice.
    let delivery = Delivery {
        sender: (&sender.frame, &mut sender.pending),
        receiver: &mut *receiver,
        sender_id,
        to,
        parked,
        bytes,
        trailer,
    };
    let delivered = if reply::short_header(sender_id, len).is_some() {
        delivery.deliver(true)
    } else {
        delivery.deliver(false)
    };
    if !delivered {
        return None;
    }
    Some((receiver_id, receiver))
}

/// The end of [`hand_over`], once nothing but the fit can decline: the
/// sender (its frame, its registers, and its pending state; its memory is
/// lent to `bytes`), the receiver, the receiver's buffer `to` and the
/// sender's `parked` receive.
struct Delivery<'a> {
    sender: (&'a TrapFrame, &'a mut Option<Pending>),
    receiver: &'a mut UserTask,
    sender_id: TaskId,
    to: UserBuffer,
    parked: Parked,
    bytes: &'a [u8],
    trailer: &'a [u8],
}

impl Delivery<'_> {
    /// With the reply's framing `short` told (a constant in each of
    /// `hand_over`'s two calls): `false`, having written nothing, if the
    /// receiver's buffer cannot hold the reply
    /// (`reply::reply_fits_framed`); else the two records' states and
    /// then the reply, written last, so that only the receiver's record is
    /// carried across a write that goes out of line.
    #[inline(always)]
    fn deliver(self, short: bool) -> bool {
        let Delivery {
            sender: (sender_frame, sender_pending),
            receiver,
            sender_id,
            to,
            parked,
            bytes,
            trailer,
        } = self;
        if !reply::reply_fits_framed(to, short, sender_id, bytes.len(), trailer.len()) {
            return false;
        }
        receiver.pending = None;
        *sender_pending = Some(Pending::Receive {
            // The receive handle read here, at its one use.
            channel: CapHandle::from_raw(sender_frame.r9),
            deadline: parked.deadline,
            response: UserBuffer {
                ptr: sender_frame.rdx,
                capacity: sender_frame.r10,
            },
        });
        receiver.frame.rax =
            reply::write_reply_framed(&mut receiver.memory, to, short, sender_id, bytes, trailer);
        true
    }
}
