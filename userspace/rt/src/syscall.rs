//! The raw system call and the typed call on top of it.
//!
//! Register use follows `pandagen_abi::syscall`: number in `rax`, request
//! pointer/length in `rdi`/`rsi`, response pointer/capacity in `rdx`/`r10`,
//! and the response length (or a transport status) back in `rax`. The
//! `syscall` instruction itself clobbers `rcx` and `r11`.

use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    decode_receive_response, decode_status, DebugWriteRequest, ExchangeRegisters,
    ObjectCallRegisters, ReceiveReply, Syscall, TerminateRequest, MAX_DEBUG_WRITE,
};
use pandagen_abi::text::truncate;
use pandagen_abi::{ExitReason, KernelError, TaskId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Enter the kernel.
///
/// # Safety
/// The pointers must describe memory the caller owns: `request` readable for
/// `request_len` bytes, `response` writable for `response_len` bytes. (The
/// kernel checks them anyway; this contract is about Rust aliasing, since
/// the kernel writes into `response`.)
#[cfg(target_os = "none")]
pub unsafe fn raw_syscall(
    number: u64,
    request: *const u8,
    request_len: usize,
    response: *mut u8,
    response_len: usize,
) -> u64 {
    let rax: u64;
    // SAFETY: the caller upholds the buffer contract above; the kernel
    // preserves every register except rax (result), rcx and r11 (used by
    // syscall/sysret), which are declared clobbered.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => rax,
            in("rdi") request,
            in("rsi") request_len,
            in("rdx") response,
            in("r10") response_len,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rax
}

/// On the host there is no kernel to enter; every call fails cleanly, so
/// code that links the runtime for host tests cannot pretend to work.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the bare-metal signature.
#[cfg(not(target_os = "none"))]
pub unsafe fn raw_syscall(number: u64, _: *const u8, _: usize, _: *mut u8, _: usize) -> u64 {
    let _ = number;
    pandagen_abi::syscall::STATUS_BAD_RESPONSE_BUFFER
}

/// RFLAGS.NT: set by ring 3 and not masked on `syscall`, the kernel's
/// `iretq` back would be a task return and raise #GP in ring 0.
pub const RFLAGS_NT: u64 = 1 << 14;
/// RFLAGS.DF: a kernel copying with DF set would copy backwards.
pub const RFLAGS_DF: u64 = 1 << 10;

/// A hostile entry for the tests of the kernel's entry path: system call
/// `number` made with the RFLAGS bits `set` (at most NT, DF and AC) set
/// around the `syscall` instruction. Returns the status and the flags
/// ring 3 sees right after it (which the kernel must restore as they
/// were). The bits are cleared again before any compiled code runs.
#[cfg(target_os = "none")]
pub fn syscall_with_flags_set(
    number: u64,
    set: u64,
    request: &[u8],
    response: &mut [u8],
) -> (u64, u64) {
    const SETTABLE: u64 = RFLAGS_NT | RFLAGS_DF | (1 << 18);
    let set = set & SETTABLE;
    let rax: u64;
    let flags_after: u64;
    // SAFETY: the buffers are the caller's own (the kernel checks them
    // too); the flags are set only around the `syscall` and cleared before
    // any compiler-generated code runs, which assumes DF clear.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], {set}",
            "popfq",
            "syscall",
            "pushfq",
            "pop {flags}",
            "pushfq",
            "and qword ptr [rsp], {clear}",
            "popfq",
            set = in(reg) set,
            clear = in(reg) !set,
            flags = out(reg) flags_after,
            inlateout("rax") number => rax,
            in("rdi") request.as_ptr(),
            in("rsi") request.len(),
            in("rdx") response.as_mut_ptr(),
            in("r10") response.len(),
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    (rax, flags_after)
}

/// On the host there is no kernel to enter (see [`raw_syscall`]).
#[cfg(not(target_os = "none"))]
pub fn syscall_with_flags_set(number: u64, set: u64, _: &[u8], _: &mut [u8]) -> (u64, u64) {
    let _ = (number, set);
    (pandagen_abi::syscall::STATUS_BAD_RESPONSE_BUFFER, 0)
}

/// Issue `call` with `request` encoded into `scratch`, and decode its
/// `Result<Reply, KernelError>` from `response`. The reply may borrow from
/// `response`.
pub fn call<'r, Req: Serialize, Reply: serde::Deserialize<'r>>(
    call: Syscall,
    request: &Req,
    scratch: &mut [u8],
    response: &'r mut [u8],
) -> Result<Reply, KernelError> {
    let encoded = postcard::to_slice(request, scratch)
        .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))?;
    let (ptr, len) = (encoded.as_ptr(), encoded.len());
    // SAFETY: `encoded` and `response` are live, distinct buffers of the
    // given lengths for the duration of the call.
    let rax = unsafe { raw_syscall(call as u64, ptr, len, response.as_mut_ptr(), response.len()) };
    decode_response(rax, response)
}

/// Encode `request` into `scratch`; its length.
pub fn encode_request<Req: Serialize>(
    request: &Req,
    scratch: &mut [u8],
) -> Result<usize, KernelError> {
    postcard::to_slice(request, scratch)
        .map(|encoded| encoded.len())
        .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))
}

/// Issue `call` with `request` already encoded, and decode its
/// `Result<(), KernelError>` from `response`.
pub fn call_encoded(call: Syscall, request: &[u8], response: &mut [u8]) -> Result<(), KernelError> {
    // SAFETY: `request` and `response` are live, distinct buffers of the
    // given lengths for the duration of the call.
    let rax = unsafe {
        raw_syscall(
            call as u64,
            request.as_ptr(),
            request.len(),
            response.as_mut_ptr(),
            response.len(),
        )
    };
    decode_response(rax, response)
}

/// [`call`] for a call that receives a message (`Receive`), its reply
/// read by [`decode_receive_response`].
pub fn call_receiving<'r, Req: Serialize>(
    call: Syscall,
    request: &Req,
    scratch: &mut [u8],
    response: &'r mut [u8],
) -> Result<ReceiveReply<'r>, KernelError> {
    let encoded = postcard::to_slice(request, scratch)
        .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))?;
    let (ptr, len) = (encoded.as_ptr(), encoded.len());
    // SAFETY: as in `call`.
    let rax = unsafe { raw_syscall(call as u64, ptr, len, response.as_mut_ptr(), response.len()) };
    received_in(rax, response)
}

/// The reply of a receive that returned `rax`, from `response`. Out of
/// line: every receiving call shares it, with the reply's inline reader
/// (`decode_receive_response`) in it once.
#[inline(never)]
fn received_in(rax: u64, response: &[u8]) -> Result<ReceiveReply<'_>, KernelError> {
    decode_receive_response(written(rax, response)?)
}

/// The `Result<Reply, KernelError>` a call left in `response`, given the
/// `rax` it returned.
fn decode_response<'r, Reply: serde::Deserialize<'r>>(
    rax: u64,
    response: &'r [u8],
) -> Result<Reply, KernelError> {
    postcard::from_bytes::<Result<Reply, KernelError>>(written(rax, response)?)
        .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))?
}

/// The bytes of `response` a call that returned `rax` wrote.
fn written(rax: u64, response: &[u8]) -> Result<&[u8], KernelError> {
    let len = decode_status(rax)?;
    response
        .get(..len)
        .ok_or(KernelError::Syscall(SyscallError::MalformedRequest))
}

/// Enter the kernel with `call`, whose request is in registers (as
/// [`Syscall::Exchange`] and [`Syscall::CallObject`] take it): the message
/// in `rdi`/`rsi`, the response buffer in `rdx`/`r10`, and `registers` in
/// `r8`, `r9`, `r12`, `r13`. Returns `rax` (the response length, or a
/// transport status).
///
/// # Safety
/// `message` must be readable for `message_len` bytes and `response`
/// writable for `response_len` bytes, as for [`raw_syscall`].
#[cfg(target_os = "none")]
pub unsafe fn raw_in_registers(
    call: Syscall,
    [r8, r9, r12, r13]: [u64; 4],
    message: *const u8,
    message_len: usize,
    response: *mut u8,
    response_len: usize,
) -> u64 {
    let rax: u64;
    // SAFETY: as for `raw_syscall`; r8, r9, r12 and r13 are inputs the
    // kernel preserves.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call as u64 => rax,
            in("rdi") message,
            in("rsi") message_len,
            in("rdx") response,
            in("r10") response_len,
            in("r8") r8,
            in("r9") r9,
            in("r12") r12,
            in("r13") r13,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rax
}

/// On the host, as [`raw_syscall`]: there is no kernel to enter.
///
/// # Safety
/// Always safe to call; `unsafe` only to match the bare-metal signature.
#[cfg(not(target_os = "none"))]
pub unsafe fn raw_in_registers(
    _: Syscall,
    _: [u64; 4],
    _: *const u8,
    _: usize,
    _: *mut u8,
    _: usize,
) -> u64 {
    pandagen_abi::syscall::STATUS_BAD_RESPONSE_BUFFER
}

/// [`raw_in_registers`] of live buffers, its reply decoded from `response`.
fn in_registers<'r>(
    call: Syscall,
    registers: [u64; 4],
    message: &[u8],
    response: &'r mut [u8],
) -> Result<ReceiveReply<'r>, KernelError> {
    // SAFETY: `message` and `response` are live, distinct buffers of the
    // given lengths for the duration of the call.
    let rax = unsafe {
        raw_in_registers(
            call,
            registers,
            message.as_ptr(),
            message.len(),
            response.as_mut_ptr(),
            response.len(),
        )
    };
    received_in(rax, response)
}

/// Enter the kernel with [`Syscall::Exchange`]: `message` out on
/// `request.send`, then a receive on `request.receive` into `response`.
/// Returns `rax` (the response length, or a transport status).
///
/// # Safety
/// `message` must be readable for `message_len` bytes and `response`
/// writable for `response_len` bytes, as for [`raw_syscall`].
pub unsafe fn raw_exchange(
    request: &ExchangeRegisters,
    message: *const u8,
    message_len: usize,
    response: *mut u8,
    response_len: usize,
) -> u64 {
    let registers = request.to_registers();
    // SAFETY: the caller upholds the buffer contract above.
    unsafe {
        raw_in_registers(
            Syscall::Exchange,
            registers,
            message,
            message_len,
            response,
            response_len,
        )
    }
}

/// Send `message` on `request.send`, then receive on `request.receive`
/// (one [`Syscall::Exchange`]), and decode the reply from `response`.
pub fn exchange<'r>(
    request: &ExchangeRegisters,
    message: &[u8],
    response: &'r mut [u8],
) -> Result<ReceiveReply<'r>, KernelError> {
    in_registers(Syscall::Exchange, request.to_registers(), message, response)
}

/// Send `message` through `request.object`, then receive on
/// `request.receive` (one [`Syscall::CallObject`]), and decode the reply
/// from `response`. Which half an error came from:
/// [`object_call_sent`](pandagen_abi::syscall::object_call_sent).
pub fn call_object<'r>(
    request: &ObjectCallRegisters,
    message: &[u8],
    response: &'r mut [u8],
) -> Result<ReceiveReply<'r>, KernelError> {
    in_registers(
        Syscall::CallObject,
        request.to_registers(),
        message,
        response,
    )
}

/// A call with a small fixed-size reply, using stack buffers.
pub fn call_small<Req: Serialize, Reply: DeserializeOwned>(
    number: Syscall,
    request: &Req,
) -> Result<Reply, KernelError> {
    let mut scratch = [0u8; 128];
    let mut response = [0u8; 128];
    call(number, request, &mut scratch, &mut response)
}

/// The cheapest round trip into the kernel and back: the null call reads
/// no argument register, so only `rax` is set.
#[cfg(target_os = "none")]
pub fn null() -> u64 {
    let rax: u64;
    // SAFETY: the null call touches no memory and changes no register but
    // rax (its result) and the rcx and r11 that `syscall` itself clobbers.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") Syscall::Null as u64 => rax,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, nomem),
        );
    }
    rax
}

/// On the host, as [`raw_syscall`]: there is no kernel to enter.
#[cfg(not(target_os = "none"))]
pub fn null() -> u64 {
    // SAFETY: the host stub touches nothing.
    unsafe {
        raw_syscall(
            Syscall::Null as u64,
            core::ptr::null(),
            0,
            core::ptr::null_mut(),
            0,
        )
    }
}

/// Write a line to the kernel log (truncated to the kernel's limit on a
/// character boundary).
pub fn debug_write(text: &str) {
    let mut scratch = [0u8; MAX_DEBUG_WRITE + 16];
    let mut response = [0u8; 32];
    let request = DebugWriteRequest {
        text: truncate(text, MAX_DEBUG_WRITE),
    };
    // Logging must never fail the program; a lost log line is acceptable.
    let _: Result<(), KernelError> =
        call(Syscall::DebugWrite, &request, &mut scratch, &mut response);
}

/// End one of the caller's own children with `reason` (only a task's
/// parent may). A free function, so that code holding no
/// [`Kernel`](crate::Kernel) — a supervisor's hook — can use it.
pub fn terminate(task: TaskId, reason: ExitReason) -> Result<(), KernelError> {
    let mut scratch = [0u8; 512];
    let mut response = [0u8; 128];
    call(
        Syscall::Terminate,
        &TerminateRequest { task, reason },
        &mut scratch,
        &mut response,
    )
}

/// 32 fresh random bytes from the kernel's entropy pool, and the source
/// the pool was seeded from.
pub fn random() -> Result<pandagen_abi::syscall::RandomReply, KernelError> {
    call_small(Syscall::Random, &())
}

/// The kernel's secret for the program image this task runs, for this
/// boot (see `Syscall::ProgramSecret`).
pub fn program_secret() -> Result<pandagen_abi::syscall::ProgramSecretReply, KernelError> {
    call_small(Syscall::ProgramSecret, &())
}
