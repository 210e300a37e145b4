//! The benchmark's raw echo server: returns every message it receives on
//! its first capability, byte for byte, on its second, through raw system
//! calls with requests encoded once. It measures the kernel's IPC path,
//! not envelope handling. An empty message ends it.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    decode_status, ReceiveReply, ReceiveRequest, SendRequest, Syscall, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::KernelError;
use pandagen_rt::syscall::raw_syscall;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn malformed() -> KernelError {
    KernelError::Syscall(SyscallError::MalformedRequest)
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let (requests, replies) = match info.capabilities.as_slice() {
        [requests, replies, ..] => (*requests, *replies),
        _ => return Err(KernelError::InvalidCapability),
    };
    let receive = postcard::to_allocvec(&ReceiveRequest {
        channel: requests,
        timeout_nanos: None,
    })
    .map_err(|_| malformed())?;
    let mut response = vec![0u8; RESPONSE_BUFFER_BYTES];
    let mut send = vec![0u8; RESPONSE_BUFFER_BYTES];
    let mut send_response = [0u8; 64];
    loop {
        // SAFETY: both buffers are ours and live across the call.
        let rax = unsafe {
            raw_syscall(
                Syscall::Receive as u64,
                receive.as_ptr(),
                receive.len(),
                response.as_mut_ptr(),
                response.len(),
            )
        };
        let len = decode_status(rax)?;
        let reply: ReceiveReply<'_> =
            postcard::from_bytes::<Result<ReceiveReply<'_>, KernelError>>(&response[..len])
                .map_err(|_| malformed())??;
        if reply.message.is_empty() {
            return Ok(());
        }
        let request = SendRequest {
            channel: replies,
            message: reply.message,
            capabilities: heapless::Vec::new(),
        };
        let encoded = postcard::to_slice(&request, &mut send).map_err(|_| malformed())?;
        // SAFETY: as above.
        let rax = unsafe {
            raw_syscall(
                Syscall::Send as u64,
                encoded.as_ptr(),
                encoded.len(),
                send_response.as_mut_ptr(),
                send_response.len(),
            )
        };
        decode_status(rax)?;
    }
}
