//! The serial console and the kernel log: `DebugWrite`, `ConsoleWrite`,
//! `BindConsoleInput`. The input side's buffering and delivery are the
//! console-input driver's (`crate::console_input`).

use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    BindConsoleInputRequest, ConsoleCall, ConsoleWriteRequest, DebugWriteRequest, MAX_DEBUG_WRITE,
};
use pandagen_abi::{CapKind, KernelError, Rights};
use pandagen_core::ObjectRef;

use super::{decode, Ctx, Handler, Step};

pub(super) fn handler(call: ConsoleCall) -> Handler {
    match call {
        ConsoleCall::DebugWrite => debug_write,
        ConsoleCall::ConsoleWrite => write,
        ConsoleCall::BindConsoleInput => bind_input,
    }
}

/// The text goes to the serial log through `debug_output` (tagged with the
/// task and escaped unless it comes from the root task). Longer than
/// `MAX_DEBUG_WRITE` is `MalformedRequest` (the runtime truncates first).
fn debug_write(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: DebugWriteRequest<'_> = decode(request)?;
    if request.text.len() > MAX_DEBUG_WRITE {
        return Err(KernelError::Syscall(SyscallError::MalformedRequest));
    }
    crate::debug_output::write(cx.k, cx.caller, request.text);
    crate::screen_output::deliver(cx.k);
    cx.reply(())
}

/// Raw bytes to COM1, with the `SerialInput` capability's `WRITE`.
fn write(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ConsoleWriteRequest<'_> = decode(request)?;
    cx.require(request.capability, CapKind::SerialInput, Rights::WRITE)?;
    crate::console::write_bytes(request.bytes);
    // The kernel lock is ours: the screen's copy goes now, not at the tick.
    crate::screen_output::deliver(cx.k);
    cx.reply(())
}

/// The caller's `SerialInput` capability with `READ` and `SEND` on the
/// channel; the binding replaces any earlier one.
fn bind_input(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: BindConsoleInputRequest = decode(request)?;
    cx.require(request.capability, CapKind::SerialInput, Rights::READ)?;
    let info = cx.require(request.channel, CapKind::Channel, Rights::SEND)?;
    let ObjectRef::Channel(channel) = info.object else {
        return Err(KernelError::InvalidCapability);
    };
    crate::console_input::bind(cx.k, channel, cx.caller);
    cx.reply(())
}
