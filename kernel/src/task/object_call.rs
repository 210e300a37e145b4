//! `CallObject`'s direct path: a client's call through an object
//! capability to a server already blocked receiving, `Exchange`'s path
//! (`KernelState::direct_call` in `exchange.rs`, for `SendTo::Object`):
//! the request goes from the caller's page straight into the server's
//! receive buffer with its stamp (the badge and rights of the capability
//! used), the caller waits in its receive, and the kernel leaves as the
//! server.
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

use pandagen_abi::syscall::{ObjectCallRegisters, Syscall};
use pandagen_abi::KernelError;

use super::exchange::{Direct, DirectCall, SendTo};
use crate::syscall::CallRegisters;

impl DirectCall for ObjectCallRegisters {
    const NAME: &'static str = "a CallObject";
    const NUMBER: Syscall = Syscall::CallObject;

    #[inline(always)]
    fn decode(frame: &CallRegisters) -> Result<Direct, KernelError> {
        let request = Self::from_registers(frame.r8, frame.r9, frame.r12, frame.r13)?;
        Ok(Direct {
            to: SendTo::Object(request.object),
            receive: request.receive,
            timeout_nanos: request.timeout_nanos,
        })
    }
}
