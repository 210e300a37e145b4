//! Encoding responses and writing them into a task's response buffer.

use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    status_response_too_large, ReceiveReply, MAX_MESSAGE_CAPS, RESPONSE_BUFFER_BYTES,
    STATUS_BAD_RESPONSE_BUFFER,
};
use pandagen_abi::KernelError;
use pandagen_core::Delivered;
use serde::Serialize;

use crate::task::UserBuffer;
use crate::usermem::UserMemory;

/// Encode `result` into `buf`; returns the length. A reply too large for
/// the kernel's buffer (none is, by construction of the ABI limits) turns
/// into `ResponseTooLarge`.
pub fn encode<T: Serialize>(buf: &mut [u8], result: &Result<T, KernelError>) -> usize {
    match postcard::to_slice(result, buf) {
        Ok(bytes) => bytes.len(),
        Err(_) => {
            let too_large: Result<(), KernelError> =
                Err(KernelError::Syscall(SyscallError::ResponseTooLarge {
                    needed: RESPONSE_BUFFER_BYTES as u32 + 1,
                }));
            postcard::to_slice(&too_large, buf).map_or(0, |b| b.len())
        }
    }
}

/// Encode a delivered message as a `ReceiveReply`.
pub fn encode_receive(buf: &mut [u8], delivered: &Delivered) -> usize {
    let mut capabilities = heapless::Vec::<_, MAX_MESSAGE_CAPS>::new();
    for &h in delivered.caps.iter().take(MAX_MESSAGE_CAPS) {
        // Cannot fail: at most MAX_MESSAGE_CAPS are taken, and the core
        // never attaches more than that to one message.
        let _ = capabilities.push(h);
    }
    let reply = ReceiveReply {
        sender: delivered.sender,
        message: &delivered.bytes,
        capabilities,
        badge: delivered.badge,
    };
    encode(buf, &Ok(reply))
}

/// Write `bytes` into the task's response buffer; returns the `rax` the
/// task sees: the length, or a transport status.
pub fn deliver(memory: &mut UserMemory, to: UserBuffer, bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    if len > to.capacity {
        return status_response_too_large(len as u32);
    }
    match memory.copy_out(to.ptr, bytes) {
        Ok(()) => len,
        Err(_) => STATUS_BAD_RESPONSE_BUFFER,
    }
}
