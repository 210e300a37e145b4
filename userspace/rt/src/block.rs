//! The block-device calls ([`BlockApi`]) over system calls.
//!
//! [`Kernel`](crate::Kernel) implements them with its own buffers. A
//! [`BlockPort`] is the same calls with buffers of its own, for code that
//! must reach the device while the program's `Kernel` is borrowed
//! elsewhere — the storage service's journal, which writes from inside the
//! server's request loop.

use alloc::vec;
use alloc::vec::Vec;

use pandagen_abi::syscall::{
    BlockInfo, BlockInfoRequest, BlockReadReply, BlockReadRequest, BlockWriteRequest, Syscall,
    MAX_BLOCK_TRANSFER,
};
use pandagen_abi::{BlockApi, CapHandle, KernelError};

use crate::syscall::call;

/// Request and response buffers big enough for a full transfer.
const BUFFER_BYTES: usize = MAX_BLOCK_TRANSFER + 128;

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

/// The block-device calls with buffers of their own (see the module docs).
pub struct BlockPort {
    scratch: Vec<u8>,
    response: Vec<u8>,
}

impl Default for BlockPort {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockPort {
    pub fn new() -> Self {
        BlockPort {
            scratch: vec![0; BUFFER_BYTES],
            response: vec![0; BUFFER_BYTES],
        }
    }
}

impl BlockApi for BlockPort {
    fn block_info(&mut self, device: CapHandle) -> Result<BlockInfo, KernelError> {
        info(&mut self.scratch, &mut self.response, device)
    }

    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError> {
        read(&mut self.scratch, &mut self.response, device, first, count)
    }

    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        write(&mut self.scratch, &mut self.response, device, first, bytes)
    }
}
