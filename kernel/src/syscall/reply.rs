//! Encoding responses and writing them into a task's response buffer.

use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    receive_reply_header_len, status_response_too_large, write_receive_reply_header, ReceiveReply,
    MAX_MESSAGE_CAPS, RESPONSE_BUFFER_BYTES, STATUS_BAD_RESPONSE_BUFFER,
};
use pandagen_abi::{KernelError, TaskId};
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

/// Write the response to a receive of `message` from `sender`, with
/// `trailer` after it (see
/// [`pandagen_abi::syscall::write_receive_reply_trailer`]: the badge of a
/// message sent through an object capability, or none), into the task's
/// response buffer without staging it: the framing, then the message
/// bytes straight from where they are, then the trailer. Returns the
/// `rax` the task sees, as [`deliver`] does, or `None` — having written
/// nothing — if the buffer is too small.
pub fn deliver_stamped_message(
    memory: &mut UserMemory,
    to: UserBuffer,
    sender: TaskId,
    message: &[u8],
    trailer: &[u8],
) -> Option<u64> {
    deliver_framed(memory, to, sender, message, trailer)
}

/// The body of [`deliver_stamped_message`]: `None` — having written
/// nothing — if `to` cannot hold the reply ([`reply_fits`]), else
/// [`write_reply`].
#[inline(always)]
fn deliver_framed(
    memory: &mut UserMemory,
    to: UserBuffer,
    sender: TaskId,
    message: &[u8],
    trailer: &[u8],
) -> Option<u64> {
    if !reply_fits(to, sender, message.len(), trailer.len()) {
        return None;
    }
    Some(write_reply(memory, to, sender, message, trailer))
}

/// Whether `to` can hold the response to a receive of a `len`-byte
/// message from `sender` with a `trailer_len`-byte trailer (the framing,
/// the message and the trailer). What [`deliver_framed`] tests before it
/// writes; a caller that must change its own state before the write (and
/// have nothing carried across it, see `task::exchange::hand_over`) tests
/// it first and then calls [`write_reply`].
#[inline(always)]
pub fn reply_fits(to: UserBuffer, sender: TaskId, len: usize, trailer_len: usize) -> bool {
    reply_fits_framed(
        to,
        short_header(sender, len).is_some(),
        sender,
        len,
        trailer_len,
    )
}

/// [`reply_fits`] with whether the reply's header is the short one
/// (`short`, which must be `short_header(sender, len).is_some()`) already
/// told: a caller that branches on it once (`task::exchange::hand_over`)
/// has each branch's test and write ([`write_reply_framed`]) know it,
/// rather than test it twice.
#[inline(always)]
pub fn reply_fits_framed(
    to: UserBuffer,
    short: bool,
    sender: TaskId,
    len: usize,
    trailer_len: usize,
) -> bool {
    debug_assert_eq!(short, short_header(sender, len).is_some());
    let head = if short {
        SHORT_HEADER_LEN
    } else {
        receive_reply_header_len(sender, len)
    };
    (head + len + trailer_len) as u64 <= to.capacity
}

/// Write the response to a receive of `message` from `sender`, with
/// `trailer`, into `to`, which can hold it ([`reply_fits`]); returns the
/// `rax` the task sees, as [`deliver`] does. The common reply — a short
/// header (see [`short_header`]) within the first page of the buffer its
/// receive checked — is written here, without a lookup or a call; any
/// other goes out of line ([`write_reply_general`], which writes it as
/// this would have).
#[inline(always)]
pub fn write_reply(
    memory: &mut UserMemory,
    to: UserBuffer,
    sender: TaskId,
    message: &[u8],
    trailer: &[u8],
) -> u64 {
    let short = short_header(sender, message.len()).is_some();
    write_reply_framed(memory, to, short, sender, message, trailer)
}

/// [`write_reply`] with whether the reply's header is the short one
/// (`short`, which must be `short_header(sender, message.len()).is_some()`)
/// already told (see [`reply_fits_framed`]).
#[inline(always)]
pub fn write_reply_framed(
    memory: &mut UserMemory,
    to: UserBuffer,
    short: bool,
    sender: TaskId,
    message: &[u8],
    trailer: &[u8],
) -> u64 {
    debug_assert_eq!(short, short_header(sender, message.len()).is_some());
    if short {
        // Built here from the two values, not carried from the test as
        // bytes (which the compiler packs into one register to unpack).
        let header = short_header_bytes(sender, message.len());
        let len = header.len() + message.len() + trailer.len();
        if let Some(out) = memory.writable_where_checked(to.ptr, len) {
            let (head, rest) = out.split_at_mut(header.len());
            head.copy_from_slice(&header);
            let (body, tail) = rest.split_at_mut(message.len());
            copy_message(body, message);
            tail.copy_from_slice(trailer);
            return len as u64;
        }
    }
    write_reply_general(memory, to, sender, message, trailer)
}

/// The reply header of a `len`-byte message from `sender` when it is the
/// ABI's short one (see [`receive_reply_header_len`]: both varints one
/// byte, the sender and the length below 128): `Ok`'s tag, the sender and
/// the length, three bytes. (The ktest
/// `short_reply_header_is_the_abis` checks it against
/// [`write_receive_reply_header`].)
#[inline(always)]
pub fn short_header(sender: TaskId, len: usize) -> Option<[u8; 3]> {
    ((sender.as_raw() | len as u64) < 0x80).then_some(short_header_bytes(sender, len))
}

/// The length of [`short_header`]'s header.
const SHORT_HEADER_LEN: usize = 3;

/// The bytes of [`short_header`]'s header, for a `sender` and a `len`
/// that have one: `Ok`'s tag, the sender and the length.
#[inline(always)]
fn short_header_bytes(sender: TaskId, len: usize) -> [u8; SHORT_HEADER_LEN] {
    [0, sender.as_raw() as u8, len as u8]
}

/// [`write_reply`] for any reply (`to` can hold it, see [`reply_fits`]):
/// written in place if it lies in one page (the buffer's first page as
/// its receive's check found it, or any other page looked up), or copied
/// out in parts.
#[inline(never)]
fn write_reply_general(
    memory: &mut UserMemory,
    to: UserBuffer,
    sender: TaskId,
    message: &[u8],
    trailer: &[u8],
) -> u64 {
    let head = receive_reply_header_len(sender, message.len());
    let len = head + message.len() + trailer.len();
    debug_assert!(len as u64 <= to.capacity, "a reply its buffer cannot hold");
    if let Some(out) = memory.writable_where_checked(to.ptr, len) {
        write_framed(out, head, sender, message, trailer);
        return len as u64;
    }
    if let Some(out) = memory.writable_in_page(to.ptr, len) {
        write_framed(out, head, sender, message, trailer);
        return len as u64;
    }
    let mut header = [0u8; 32];
    let head = write_receive_reply_header(sender, message.len(), &mut header);
    match memory.copy_out_parts(to.ptr, &[&header[..head], message, trailer]) {
        Ok(()) => len as u64,
        Err(_) => STATUS_BAD_RESPONSE_BUFFER,
    }
}

/// The reply's framing (`head` bytes of header), the message and the
/// trailer into `out`, which is exactly as long as the three.
#[inline(always)]
fn write_framed(out: &mut [u8], head: usize, sender: TaskId, message: &[u8], trailer: &[u8]) {
    let (header, rest) = out.split_at_mut(head);
    write_receive_reply_header(sender, message.len(), header);
    let (body, rest_trailer) = rest.split_at_mut(message.len());
    copy_message(body, message);
    rest_trailer.copy_from_slice(trailer);
}

/// `dst.copy_from_slice(src)` (`dst` is as long as `src`), with a message
/// of 8 to 32 bytes copied in two moves of overlapping chunks (the first
/// and last 8 or 16 bytes) and a longer one with one `rep movsq` and a
/// last 8-byte move (`copy_by_words`): no call into `memcpy`, whose
/// byte-wise alignment of the destination (after a 3-byte header, never
/// aligned) and byte-wise tail cost up to 14 single-byte moves on a short
/// message. (Chunks of 32 and 64 bytes for up to 128 bytes, before, took
/// 30 instructions a 64-byte round trip more.) Shorter messages are
/// copied inline too: 4 to 7 bytes as two overlapping 4-byte moves, 1 to
/// 3 as their first, middle and last bytes (through `memcpy`, the
/// envelope of the empty call's 3 or so bytes cost about 14 instructions
/// a call).
#[inline(always)]
pub fn copy_message(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if dst.len() != n {
        // Not a message copy's shape: the general copy (which panics
        // exactly as `copy_from_slice` does).
        dst.copy_from_slice(src);
        return;
    }
    // From the longest down, one compare each: a message's envelope is
    // rarely shorter than 16 bytes (the empty call's is about 20), so
    // the common lengths are two compares from here, not five.
    if n > 32 {
        crate::arch::x86_64::copy::copy_by_words(dst, src);
    } else if n >= 16 {
        copy_ends::<16>(dst, src);
    } else if n >= 8 {
        copy_ends::<8>(dst, src);
    } else if n >= 4 {
        copy_ends::<4>(dst, src);
    } else if n > 0 {
        // The first, middle and last bytes: together all of 1 to 3.
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

/// The first and the last `CHUNK` bytes of `src` (at least `CHUNK` and at
/// most twice that long, as long as `dst`) into `dst`: the two chunks
/// overlap or meet, so together they are all of it.
#[inline(always)]
fn copy_ends<const CHUNK: usize>(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    dst[..CHUNK].copy_from_slice(&src[..CHUNK]);
    dst[n - CHUNK..].copy_from_slice(&src[n - CHUNK..]);
}
