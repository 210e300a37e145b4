//! `CallObject`: a client's call to a service object in one entry, its
//! request in registers (see `Syscall::CallObject` and
//! `ObjectCallRegisters` in `pandagen_abi::syscall`).
//!
//! The dispatcher has checked the response buffer (the call `receives`)
//! and copied the message in as the request, its length checked like any
//! request's, before this runs: a bad buffer, pointer or length has sent
//! nothing. The rest is `KernelCore::call_object`: the receive capability,
//! then `SendToObject`'s checks and send (the same heap reserve first),
//! then `Receive`'s receive or block, whose outcome the caller sees as a
//! `Receive` would. When the core has made the server it handed the
//! request to the running task (`ObjectCalled::SwitchedTo`), the kernel
//! switches straight to it instead of through `schedule`.
//!
//! The entry stub sends `CallObject` to `direct_entry` first, the direct
//! path (`KernelState::direct_call`, `Exchange`'s), which hands what it
//! declines, having changed nothing, to the dispatcher and so to
//! [`call_object`].

use pandagen_abi::syscall::ObjectCallRegisters;
use pandagen_abi::KernelError;
use pandagen_core::ObjectCalled;

use super::ipc::{deadline, received};
use super::{Ctx, Step};
use crate::task::Pending;

/// The handler of `Syscall::CallObject`; `message` is the request.
pub(super) fn call_object(cx: &mut Ctx<'_>, message: &[u8]) -> Result<Step, KernelError> {
    let registers = cx.registers;
    let request = ObjectCallRegisters::from_registers(
        registers.r8,
        registers.r9,
        registers.r12,
        registers.r13,
    )?;
    cx.ensure_heap_room(message.len())?;
    let deadline = deadline(cx, request.timeout_nanos);
    let called = cx.k.call_object(
        cx.caller,
        request.object,
        message,
        request.receive,
        deadline,
        cx.now,
    )?;
    match called {
        ObjectCalled::Received(outcome) => received(cx, outcome, request.receive, deadline),
        // The server took the request and runs now: the caller waits in
        // its receive as `received` would block it.
        ObjectCalled::SwitchedTo(task) => Ok(Step::SwitchTo {
            task,
            pending: Pending::Receive {
                channel: request.receive,
                deadline,
                response: cx.response,
            },
        }),
    }
}
