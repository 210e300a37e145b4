//! The block-device calls of [`KernelApi`](pandagen_abi::KernelApi) over
//! system calls, in the caller's buffers.

use alloc::vec::Vec;

use pandagen_abi::syscall::{
    BlockInfo, BlockInfoRequest, BlockReadReply, BlockReadRequest, BlockWriteRequest, Syscall,
};
use pandagen_abi::{CapHandle, KernelError};

use crate::syscall::call;

pub(crate) fn info(
    scratch: &mut [u8],
    response: &mut [u8],
    capability: CapHandle,
) -> Result<BlockInfo, KernelError> {
    call(
        Syscall::BlockInfo,
        &BlockInfoRequest { capability },
        scratch,
        response,
    )
}

pub(crate) fn read(
    scratch: &mut [u8],
    response: &mut [u8],
    capability: CapHandle,
    first: u64,
    count: u32,
) -> Result<Vec<u8>, KernelError> {
    let request = BlockReadRequest {
        capability,
        first,
        count,
    };
    let reply: BlockReadReply<'_> = call(Syscall::BlockRead, &request, scratch, response)?;
    Ok(reply.bytes.to_vec())
}

pub(crate) fn write(
    scratch: &mut [u8],
    response: &mut [u8],
    capability: CapHandle,
    first: u64,
    bytes: &[u8],
) -> Result<(), KernelError> {
    let request = BlockWriteRequest {
        capability,
        first,
        bytes,
    };
    call(Syscall::BlockWrite, &request, scratch, response)
}
