//! The benchmark's raw echo server: returns every message it receives on
//! its first capability, byte for byte, on its second, through raw system
//! calls. It measures the kernel's IPC path, not envelope handling. An
//! empty message ends it.
//!
//! Spawned under the name `call_echo` it answers with `Exchange` (reply,
//! then wait for the next request, in one entry with the request in
//! registers — seL4's `ReplyRecv`); under any other name with a `Send` and
//! then a `Receive`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    decode_receive_response, decode_status, ExchangeRegisters, ReceiveRequest, SendRequest,
    Syscall, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::KernelError;
use pandagen_rt::syscall::{raw_exchange, raw_syscall};
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
    let exchange = ExchangeRegisters {
        send: replies,
        receive: requests,
        timeout_nanos: None,
        consume_send: false,
    };
    let mut send_response = [0u8; 64];
    let len = call(Syscall::Receive, &receive, &mut buffers[0])?;
    let [first, second] = &mut buffers;
    if reply_and_wait {
        return call_echo(&exchange, first, second, len);
    }
    let mut len = len;
    let received = first;
    loop {
        let reply = decode_receive_response(received.get(..len).ok_or_else(malformed)?)?;
        if reply.message.is_empty() {
            return Ok(());
        }
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

/// `call_echo`'s loop: each message (`len` bytes of response in
/// `received`) echoed and the next one awaited in one `Exchange`, which
/// receives into the other buffer (the message is read from the one
/// received into while the next arrives in the other), until an empty
/// message. Each reply is decoded and each status checked, as any server
/// must; the two buffers swap places instead of being picked by an index
/// on every call.
fn call_echo<'b>(
    exchange: &ExchangeRegisters,
    mut received: &'b mut [u8],
    mut next: &'b mut [u8],
    mut len: usize,
) -> Result<(), KernelError> {
    loop {
        let reply = decode_receive_response(received.get(..len).ok_or_else(malformed)?)?;
        if reply.message.is_empty() {
            return Ok(());
        }
        // SAFETY: the message (in the buffer just received into) and
        // `next` are live, distinct buffers for the call.
        let rax = unsafe {
            raw_exchange(
                exchange,
                reply.message.as_ptr(),
                reply.message.len(),
                next.as_mut_ptr(),
                next.len(),
            )
        };
        len = decode_status(rax)?;
        core::mem::swap(&mut received, &mut next);
    }
}
