//! The benchmark's raw echo server: returns every message it receives on
//! its first capability, byte for byte, on its second, through raw system
//! calls. It measures the kernel's IPC path, not envelope handling. An
//! empty message ends it.
//!
//! Spawned under the name `call_echo` it answers with `SendReceive`
//! (reply, then wait for the next request, in one entry — seL4's
//! `ReplyRecv`); under any other name with a `Send` and then a `Receive`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    decode_status, MessageBytes, ReceiveReply, ReceiveRequest, SendReceivePrefix, SendRequest,
    Syscall, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::KernelError;
use pandagen_rt::syscall::raw_syscall;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn malformed() -> KernelError {
    KernelError::Syscall(SyscallError::MalformedRequest)
}

/// One raw call with an encoded request; returns the response length.
fn call(number: Syscall, request: &[u8], response: &mut [u8]) -> Result<usize, KernelError> {
    // SAFETY: both buffers are ours and live across the call.
    let rax = unsafe {
        raw_syscall(
            number as u64,
            request.as_ptr(),
            request.len(),
            response.as_mut_ptr(),
            response.len(),
        )
    };
    decode_status(rax)
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let (requests, replies) = match info.capabilities.as_slice() {
        [requests, replies, ..] => (*requests, *replies),
        _ => return Err(KernelError::InvalidCapability),
    };
    let reply_and_wait = info.name.as_str() == "call_echo";
    let receive = postcard::to_allocvec(&ReceiveRequest {
        channel: requests,
        timeout_nanos: None,
    })
    .map_err(|_| malformed())?;
    // Two response buffers: the message just received stays readable in
    // one while the echo's request is encoded from it and the next
    // message arrives in the other.
    let mut buffers = [
        vec![0u8; RESPONSE_BUFFER_BYTES],
        vec![0u8; RESPONSE_BUFFER_BYTES],
    ];
    let mut request = vec![0u8; RESPONSE_BUFFER_BYTES];
    let prefix = postcard::to_slice(
        &SendReceivePrefix {
            send: replies,
            receive: requests,
            timeout_nanos: None,
            consume_send: false,
        },
        &mut request,
    )
    .map_err(|_| malformed())?
    .len();
    let mut send_response = [0u8; 64];
    let mut len = call(Syscall::Receive, &receive, &mut buffers[0])?;
    let mut current = 0;
    loop {
        let [a, b] = &mut buffers;
        let (received, next) = if current == 0 { (a, b) } else { (b, a) };
        let reply: ReceiveReply<'_> =
            postcard::from_bytes::<Result<ReceiveReply<'_>, KernelError>>(&received[..len])
                .map_err(|_| malformed())??;
        if reply.message.is_empty() {
            return Ok(());
        }
        if reply_and_wait {
            // Like the client, encode the constant part of the request
            // once (`prefix`, written at the start of `request` before the
            // loop) and only the message each time.
            let tail = postcard::to_slice(&MessageBytes(reply.message), &mut request[prefix..])
                .map_err(|_| malformed())?
                .len();
            len = call(Syscall::SendReceive, &request[..prefix + tail], next)?;
            current ^= 1;
        } else {
            let encoded = postcard::to_slice(
                &SendRequest {
                    channel: replies,
                    message: reply.message,
                    capabilities: heapless::Vec::new(),
                },
                &mut request,
            )
            .map_err(|_| malformed())?;
            call(Syscall::Send, encoded, &mut send_response)?;
            len = call(Syscall::Receive, &receive, received)?;
        }
    }
}
