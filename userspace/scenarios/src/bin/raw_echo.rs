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
    decode_receive_response, decode_status, short_receive_reply, ExchangeRegisters, ReceiveRequest,
    SendRequest, Syscall, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::{CapHandle, KernelError};
use pandagen_rt::syscall::{raw_in_registers, raw_syscall};
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
    let exchange = ExchangeRegisters {
        send: replies,
        receive: requests,
        timeout_nanos: None,
        consume_send: false,
    };
    let len = call(Syscall::Receive, &receive, &mut buffers[0])?;
    let [first, second] = &mut buffers;
    if reply_and_wait {
        return call_echo(&exchange, first, second, len);
    }
    send_echo(replies, &receive, first, len)
}

/// The echo by `Send` and `Receive`: each message (`len` bytes of
/// response in `received`) sent back on `replies`, and the next one
/// received with the encoded `receive` into the same buffer, until an
/// empty message. Out of line: each echo's loop compiled on its own.
#[inline(never)]
fn send_echo(
    replies: CapHandle,
    receive: &[u8],
    received: &mut [u8],
    mut len: usize,
) -> Result<(), KernelError> {
    let mut request = vec![0u8; RESPONSE_BUFFER_BYTES];
    let mut send_response = [0u8; 64];
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
        len = call(Syscall::Receive, receive, received)?;
    }
}

/// `call_echo`'s loop: each message (`len` bytes of response in
/// `received`) echoed and the next one awaited in one `Exchange`, which
/// receives into the other buffer (the message is read from the one
/// received into while the next arrives in the other), until an empty
/// message. Each reply is decoded and each status checked, as any server
/// must. The short replies are echoed by [`echo_short`], whose loop makes
/// no call; any other reply comes back here to the general reader. Out
/// of line, as [`send_echo`] is: each echo's loop compiled on its own.
#[inline(never)]
fn call_echo<'b>(
    exchange: &ExchangeRegisters,
    mut received: &'b mut [u8],
    mut next: &'b mut [u8],
    mut len: usize,
) -> Result<(), KernelError> {
    let registers = exchange.to_registers();
    loop {
        let reply = decode_receive_response(received.get(..len).ok_or_else(malformed)?)?;
        if reply.message.is_empty() {
            return Ok(());
        }
        len = echo(registers, reply.message, next).map_err(failed)?;
        let in_received;
        (in_received, len) = match echo_short(registers, next, received, len) {
            Ok(answer) => answer,
            Err(status) => return Err(failed(status)),
        };
        // `echo_short` took `next` as the buffer received into.
        if in_received {
            (received, next) = (next, received);
        }
    }
}

/// [`call_echo`]'s loop while the replies are short ones (read by
/// [`short_receive_reply`]), not empty: from `len` bytes received in
/// `received`, with `next` the other buffer, until the first other
/// reply, which it leaves for the general reader: it returns whether
/// that reply is in `received` (else in `next`) and its length, or the
/// status of a call that failed (for [`failed`]). Out of line, so that
/// its loop, which makes no call, keeps `Exchange`'s registers
/// (`registers`, not read through a reference the call might have
/// written) loaded where the call takes them; unrolled once, so that the
/// buffers take turns without being swapped. Its answer fits two
/// registers (a flag and a length, not the two buffers), so that no
/// register of the loop keeps a pointer to an answer in memory.
#[inline(never)]
fn echo_short(
    registers: [u64; 4],
    received: &mut [u8],
    next: &mut [u8],
    len: usize,
) -> Result<(bool, usize), u64> {
    // Both of the runtime's size, as `main` makes them (a length the
    // loop need not keep); any others all through the general reader.
    if received.len() != RESPONSE_BUFFER_BYTES || next.len() != RESPONSE_BUFFER_BYTES {
        return Ok((true, len));
    }
    // Each call's status read first as a length: an error's (bit 63
    // set) is no buffer's length, so `short_message` refuses it as it
    // refuses a reply too long, and the status is decoded (checked) on
    // the way out, by `answer` (one range test in the loop for both).
    let mut status = len as u64;
    loop {
        let Some(message) = short_message(received, status as usize) else {
            return answer(true, status);
        };
        status = exchange(registers, message, next);
        let Some(message) = short_message(next, status as usize) else {
            return answer(false, status);
        };
        status = exchange(registers, message, received);
    }
}

/// [`echo_short`]'s answer for the `status` of its last call (a length
/// from its caller at first): whether the reply is in its `received`
/// (`in_received`) and its length, or the status if it is an error.
#[inline(always)]
fn answer(in_received: bool, status: u64) -> Result<(bool, usize), u64> {
    decode_status(status)
        .map(|len| (in_received, len))
        .map_err(|_| status)
}

/// The message of the `len` bytes of response in `buffer`, if they are a
/// short reply (see [`short_receive_reply`]) with a message.
#[inline(always)]
fn short_message(buffer: &[u8], len: usize) -> Option<&[u8]> {
    let bytes = buffer.get(..len)?;
    // A short reply is five bytes and its message: six at least for a
    // message that is not empty. Tested first, with the bounds' test
    // (one range), so that the test of the message's length below is
    // known true (the compiler drops it).
    if bytes.len() < 6 {
        return None;
    }
    let reply = short_receive_reply(bytes)?;
    (!reply.message.is_empty()).then_some(reply.message)
}

/// Echo `message` and wait for the next one in `next` (one `Exchange`
/// with `registers`); returns the response's length, or the status if
/// it is an error (for [`failed`]).
#[inline(always)]
fn echo(registers: [u64; 4], message: &[u8], next: &mut [u8]) -> Result<usize, u64> {
    let rax = exchange(registers, message, next);
    // A status (an error) decoded out of line, by the caller on its way
    // out: the loop's common path keeps no value for building the error
    // (the compiler took the error's spare bytes from a length it
    // spilled for it), and no path from the out-of-line call comes back
    // into the loop (one did, as a `Result` tested again, and the call's
    // clobbers cost the loop r8 and r9: reloaded before every call).
    decode_status(rax).map_err(|_| rax)
}

/// [`echo`]'s `Exchange`: its status, not yet decoded.
#[inline(always)]
fn exchange(registers: [u64; 4], message: &[u8], next: &mut [u8]) -> u64 {
    // SAFETY: the message (in the buffer just received into) and `next`
    // are live, distinct buffers for the call.
    unsafe {
        raw_in_registers(
            Syscall::Exchange,
            registers,
            message.as_ptr(),
            message.len(),
            next.as_mut_ptr(),
            next.len(),
        )
    }
}

/// The error of the status `rax` [`echo`]'s call returned (one
/// `decode_status` found an error).
#[cold]
#[inline(never)]
fn failed(rax: u64) -> KernelError {
    match decode_status(rax) {
        Err(error) => error,
        // Not reached: the status was an error a moment ago.
        Ok(_) => malformed(),
    }
}
