//! `CallObject`'s direct path: a client's call through an object
//! capability to a server already blocked receiving, in the shape of
//! `Exchange`'s (`exchange.rs`): the request goes from the caller's page
//! straight into the server's receive buffer with its stamp (the badge and
//! rights of the capability used), the caller waits in its receive, and
//! the kernel leaves as the server.
//!
//! Every precondition is checked before anything changes: the caller is
//! the current task, its registers decode (`r13` is 0), no port window is
//! open, then the core's check (`KernelCore::check_object_call`: the
//! object capability's kind and invoke rights, the service registered,
//! its channel open with an empty queue and a waiting task, the receive
//! capability and its channel, deadlines, the scheduler's choice), which
//! changes nothing, then the kernel's half of the hand-off (`hand_over`,
//! shared with `Exchange`: the caller's response buffer writable, the
//! message within one page of its readable memory, the server blocked in
//! a receive without port windows and with room for the stamped reply).
//! A declined call has changed nothing, and the dispatcher's general path
//! (`syscall::object_call`) runs it and reports every error.
//!
//! Taken, nothing is copied into the kernel, nothing is queued, and so
//! nothing is allocated or charged (the general path checks its heap
//! reserve only because it may queue; `Exchange`'s direct path skips it
//! for the same reason). The clock is read only when a deadline is
//! involved, and then once.

use core::cell::OnceCell;

use pandagen_abi::syscall::{
    write_receive_reply_trailer, ObjectCallRegisters, RECEIVE_REPLY_TRAILER_MAX,
};
use pandagen_abi::Duration;

use super::exchange::{hand_over, Parked};
use super::{now, schedule, Exchanged, KernelState};
use crate::syscall::{reply, CallRegisters};

impl KernelState {
    /// Run the current task's `CallObject`, whose registers are `frame`
    /// (read out of its record, where the entry stub saved them), if every
    /// condition of the direct path holds (see the module docs); otherwise
    /// decline, having changed nothing. Taken, the caller's registers stay
    /// in its record.
    #[inline(always)]
    pub fn object_call_direct(&mut self, frame: &CallRegisters) -> Exchanged {
        let Some(caller) = self.current else {
            return Exchanged::Declined;
        };
        let Ok(request) =
            ObjectCallRegisters::from_registers(frame.r8, frame.r9, frame.r12, frame.r13)
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
        let parked = Parked {
            channel: request.receive,
            deadline,
        };
        let Some((call, badge)) = core.check_object_call(
            caller,
            request.object,
            len,
            request.receive,
            deadline,
            clock,
        ) else {
            return Exchanged::Declined;
        };
        // The stamp after the message, as `accept_offer` writes it for the
        // general path's hand-off.
        let stamped = |memory: &mut _, to, sender, bytes: &[u8]| {
            let mut trailer = [0u8; RECEIVE_REPLY_TRAILER_MAX];
            let n = write_receive_reply_trailer(Some(badge), &mut trailer);
            reply::deliver_stamped_message(memory, to, sender, bytes, &trailer[..n])
        };
        let Some((server_id, server)) =
            hand_over(tasks, caller, call.slots(), len, parked, stamped)
        else {
            return Exchanged::Declined;
        };
        // The kernel's records are indexed by the core's slots: the task
        // in the server's slot is the core's.
        debug_assert_eq!(call.receiver(), Some(server_id));
        call.commit();
        // The server runs, its record at hand; the I/O bitmap stays as it
        // is (nothing is open, and `hand_over` declines a server with
        // windows).
        Exchanged::Resume(schedule::enter(
            server,
            server_id,
            current,
            slice_left,
            active_space,
        ))
    }
}
