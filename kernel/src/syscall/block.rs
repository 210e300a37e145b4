//! The kernel's block device: `BlockInfo`, `BlockRead`, `BlockWrite`. The
//! checks are the core's; the device is `crate::blockdev`. User memory is
//! never touched here: the request bytes were copied in by the dispatcher,
//! and the reply is copied out by it.

use pandagen_abi::syscall::{
    BlockCall, BlockInfoRequest, BlockReadReply, BlockReadRequest, BlockWriteRequest,
};
use pandagen_abi::KernelError;

use super::{decode, Ctx, Handler, Step};
use crate::blockdev::with_disk;

pub(super) fn handler(call: BlockCall) -> Handler {
    match call {
        BlockCall::BlockInfo => info,
        BlockCall::BlockRead => read,
        BlockCall::BlockWrite => write,
    }
}

fn info(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: BlockInfoRequest = decode(request)?;
    let info = with_disk(|disk| {
        cx.k.core_mut()
            .block_info(cx.caller, request.capability, disk, cx.now)
    })?;
    cx.reply(info)
}

fn read(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: BlockReadRequest = decode(request)?;
    let bytes = with_disk(|disk| {
        cx.k.core_mut().block_read(
            cx.caller,
            request.capability,
            disk,
            request.first,
            request.count,
            cx.now,
        )
    })?;
    cx.reply(BlockReadReply { bytes: &bytes })
}

fn write(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: BlockWriteRequest<'_> = decode(request)?;
    with_disk(|disk| {
        cx.k.core_mut().block_write(
            cx.caller,
            request.capability,
            disk,
            request.first,
            request.bytes,
            cx.now,
        )
    })?;
    cx.reply(())
}
