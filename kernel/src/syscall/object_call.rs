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
//! The entry stub sends `CallObject` to [`object_call_entry`] first, the
//! direct path (`KernelState::object_call_direct`), which hands what it
//! declines, having changed nothing, to the dispatcher and so to
//! [`call_object`].

use pandagen_abi::syscall::ObjectCallRegisters;
use pandagen_abi::KernelError;
use pandagen_core::ObjectCalled;

use super::ipc::{deadline, received};
use super::{syscall_dispatch, CallRegisters, Ctx, Step};
use crate::arch::x86_64::trap::TrapFrame;
use crate::task::{Exchanged, Pending, KERNEL};

/// Called by the entry stub for `Syscall::CallObject` with the caller's
/// record, where the stub saved its registers; returns the frame to
/// resume: the direct path's, or, for a call it declined having changed
/// nothing, the dispatcher's (as `exchange_entry` does for `Exchange`).
pub extern "C" fn object_call_entry(frame: *mut TrapFrame) -> *mut TrapFrame {
    // SAFETY: the stub's argument, read before the kernel state is locked.
    let registers = unsafe { CallRegisters::read(frame) };
    let mut guard = KERNEL.lock();
    let taken = match guard.as_mut() {
        Some(k) => {
            debug_assert!(
                k.current()
                    .is_some_and(|caller| k.is_record_of(caller, frame)),
                "the syscall entry saved a CallObject's registers outside its caller's record"
            );
            k.object_call_direct(&registers)
        }
        None => Exchanged::Declined,
    };
    match taken {
        Exchanged::Resume(next) => next,
        Exchanged::Declined => {
            drop(guard);
            // The record is as the stub left it: the general path reads
            // the registers again.
            syscall_dispatch(frame)
        }
    }
}

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
