//! Moving, copying and dropping capabilities: `Grant`, `Delegate`, `Drop`,
//! `Clone`, `MintObjectCap`.

use pandagen_abi::syscall::{
    CapCall, CapRequest, CloneRequest, MintObjectCapRequest, TransferRequest,
};
use pandagen_abi::KernelError;

use super::{decode, Ctx, Handler, Step};

pub(super) fn handler(call: CapCall) -> Handler {
    match call {
        CapCall::Grant => grant,
        CapCall::Delegate => delegate,
        CapCall::Drop => drop_cap,
        CapCall::Clone => clone_cap,
        CapCall::MintObjectCap => mint_object_cap,
    }
}

fn grant(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TransferRequest = decode(request)?;
    cx.k.core_mut()
        .grant(cx.caller, request.capability, request.task, cx.now)?;
    cx.reply(())
}

fn delegate(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TransferRequest = decode(request)?;
    cx.k.core_mut()
        .delegate(cx.caller, request.capability, request.task, cx.now)?;
    cx.reply(())
}

fn drop_cap(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: CapRequest = decode(request)?;
    cx.k.core_mut()
        .drop_cap(cx.caller, request.capability, cx.now)?;
    cx.reply(())
}

fn clone_cap(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: CloneRequest = decode(request)?;
    let handle =
        cx.k.core_mut()
            .clone_cap(cx.caller, request.capability, request.rights, cx.now)?;
    cx.reply(handle)
}

/// A service mints a capability for one of its objects (the core checks
/// that the caller holds the service's registration).
fn mint_object_cap(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: MintObjectCapRequest = decode(request)?;
    let handle = cx.k.core_mut().mint_object_cap(
        cx.caller,
        request.service,
        request.badge,
        request.rights,
        cx.now,
    )?;
    cx.reply(handle)
}
