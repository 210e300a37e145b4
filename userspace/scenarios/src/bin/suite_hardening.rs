//! Syscall hardening suite: every malformed system call gets its defined,
//! typed error; then a seeded storm of random system calls leaves the
//! kernel up and consistent.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::error::{BlockError, Resource, SendError, SyscallError, UserMemoryError};
use pandagen_abi::syscall::{
    decode_receive_response, decode_status, BlockReadRequest, BlockWriteRequest, ExchangeRegisters,
    ObjectCallRegisters, ReceiveRequest, SendRequest, Syscall, MAX_BLOCK_TRANSFER,
    ROOT_CAPABILITIES, STATUS_BAD_RESPONSE_BUFFER, SYSCALL_COUNT,
};
use pandagen_abi::{
    Cap, CapHandle, CapKind, ChannelId, Duration, ExitReason, KernelApi, KernelError,
    MessageEnvelope, MessagePayload, Rights, SchemaVersion, ServiceId,
};
use pandagen_rt::syscall::{
    raw_in_registers, raw_syscall, syscall_with_flags_set, RFLAGS_DF, RFLAGS_NT,
};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{rdtsc, spawn, spawn_raw_echo, wait_exit, Tally};

pandagen_rt::entry!(main);

const KERNEL_ADDRESS: u64 = 0xffff_8000_0000_0000;
const UNMAPPED_USER_ADDRESS: u64 = 0x1000;
static READ_ONLY_BUFFER: [u8; 256] = [0; 256];
/// Read-only and large enough for a one-block read's response.
static READ_ONLY_BLOCK_BUFFER: [u8; 1024] = [0; 1024];

/// Issue a raw system call and decode the response as `Result<(), KernelError>`
/// (every error response has that shape whatever the call's reply type).
fn raw(
    number: u64,
    request: (u64, u64),
    response: (u64, u64),
) -> Result<Result<(), KernelError>, u64> {
    // SAFETY: the kernel validates every pointer; a bad one is the point of
    // the test and can only produce an error for this task.
    let rax = unsafe {
        raw_syscall(
            number,
            request.0 as *const u8,
            request.1 as usize,
            response.0 as *mut u8,
            response.1 as usize,
        )
    };
    match decode_status(rax) {
        Ok(len) => {
            // SAFETY: a successful status means the kernel wrote `len`
            // bytes into our own response buffer.
            let bytes = unsafe { core::slice::from_raw_parts(response.0 as *const u8, len) };
            Ok(postcard::from_bytes::<Result<(), KernelError>>(bytes).unwrap_or(Ok(())))
        }
        Err(_) => Err(rax),
    }
}

fn expect_error(
    result: Result<Result<(), KernelError>, u64>,
    expected: KernelError,
) -> Result<(), String> {
    match result {
        Ok(Err(e)) if e == expected => Ok(()),
        other => Err(alloc::format!("expected {expected:?}, got {other:?}")),
    }
}

fn syscall_error(e: SyscallError) -> KernelError {
    KernelError::Syscall(e)
}

struct Buffers {
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Buffers {
    fn req(&self, len: usize) -> (u64, u64) {
        (self.request.as_ptr() as u64, len as u64)
    }
    fn resp(&mut self) -> (u64, u64) {
        (
            self.response.as_mut_ptr() as u64,
            self.response.len() as u64,
        )
    }
}

/// xorshift64*: small, seedable, good enough to pick random inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The calls the random storm replaces with unknown numbers: they would
/// end or park this task or the machine, allocate kernel objects, or print
/// or rebind the console or the screen.
const STORM_EXCLUDED: [Syscall; 16] = [
    Syscall::Exit,
    Syscall::Spawn,
    Syscall::CreateChannel,
    Syscall::Receive,
    Syscall::Sleep,
    Syscall::Clone,
    Syscall::DebugWrite,
    Syscall::ConsoleWrite,
    Syscall::BindConsoleInput,
    Syscall::Terminate,
    Syscall::Shutdown,
    Syscall::Reboot,
    Syscall::SendReceive,
    Syscall::Exchange,
    Syscall::TakeOverScreen,
    Syscall::CallObject,
];

/// Service-minted object capabilities: only the registrant mints; forged,
/// wrong-kind, rightless and stale ones are refused; a genuine one
/// delivers its badge and rights.
fn object_capabilities(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    const SERVICE: ServiceId = ServiceId::from_raw(0x4a11);
    let minted = kernel.mint_object_capability(SERVICE, 7, Rights::READ);
    tally.check(
        "hardening/mint_without_registration_refused",
        match minted {
            Err(KernelError::ServiceNotFound(s)) if s == SERVICE => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    let served = kernel.create_channel()?;
    kernel.register_service(SERVICE, served)?;
    let rights = Rights::READ | Rights::GRANT | Rights::TRANSFER | Rights::REGISTER;
    let cap = kernel.mint_object_capability(SERVICE, 7, rights)?;
    let message = || {
        MessageEnvelope::new(
            SERVICE,
            "object",
            SchemaVersion::new(1, 0),
            MessagePayload::default(),
        )
    };
    kernel.send_to_object(&cap, message(), vec![])?;
    let stamped = kernel.receive_with_capabilities(served, Some(Duration::ZERO));
    tally.check(
        "hardening/object_send_is_stamped_with_badge_and_rights",
        match stamped {
            // REGISTER is not an object right: the kernel minted without it.
            Ok(m)
                if m.badge
                    == Some(pandagen_abi::Badge {
                        value: 7,
                        rights: Rights::READ | Rights::GRANT | Rights::TRANSFER,
                    }) =>
            {
                Ok(())
            }
            other => Err(alloc::format!("{other:?}")),
        },
    );
    let guessed: Cap<pandagen_abi::cap::kinds::StorageObject> =
        Cap::from_handle(CapHandle::new(999, 1)).assume_kind();
    let channel_as_object: Cap<pandagen_abi::cap::kinds::StorageObject> =
        Cap::from_handle(served.handle()).assume_kind();
    let rightless = kernel
        .clone_capability(&Cap::from_handle(cap.handle()), Rights::TRANSFER)?
        .assume_kind();
    let refusals = [
        (
            kernel.send_to_object(&guessed, message(), vec![]),
            KernelError::InvalidCapability,
        ),
        (
            kernel.send_to_object(&channel_as_object, message(), vec![]),
            KernelError::WrongCapabilityKind {
                expected: pandagen_abi::CapKind::StorageObject,
                found: pandagen_abi::CapKind::Channel,
            },
        ),
        (
            kernel.send_to_object(&rightless, message(), vec![]),
            KernelError::InsufficientAuthority,
        ),
    ];
    let mut forged = Ok(());
    for (i, (got, expected)) in refusals.into_iter().enumerate() {
        if got != Err(expected) {
            forged = Err(alloc::format!("case {i}: {got:?}, expected {expected:?}"));
        }
    }
    tally.check("hardening/forged_object_capabilities_refused", forged);
    // Closing the channel ends the registration: minting stops, and the
    // capability minted before reaches nobody until someone registers.
    let stale_handle = rightless.handle();
    kernel.drop_capability(rightless.erase())?;
    kernel.drop_capability(Cap::from(served))?;
    let after_close = (
        kernel
            .mint_object_capability(SERVICE, 8, Rights::READ)
            .err(),
        kernel.send_to_object(&cap, message(), vec![]).err(),
        kernel
            .send_to_object(
                &Cap::from_handle(stale_handle).assume_kind(),
                message(),
                vec![],
            )
            .err(),
    );
    tally.check(
        "hardening/stale_object_capabilities_refused",
        match after_close {
            (
                Some(KernelError::ServiceNotFound(a)),
                Some(KernelError::ServiceNotFound(b)),
                Some(KernelError::InvalidCapability),
            ) if a == SERVICE && b == SERVICE => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    kernel.drop_capability(cap.erase())
}

/// Ring 3 enters the kernel with NT and DF set: the kernel must mask them
/// (FMASK), answer normally, and hand ring 3 its own flags back.
fn hostile_rflags(_kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let mut response = [0u8; 256];
    let (status, flags) =
        syscall_with_flags_set(SYSCALL_COUNT, RFLAGS_NT | RFLAGS_DF, &[], &mut response);
    let answered = match decode_status(status) {
        Ok(len) => match postcard::from_bytes::<Result<(), KernelError>>(&response[..len]) {
            Ok(Err(KernelError::Syscall(SyscallError::UnknownSyscall(n))))
                if n == SYSCALL_COUNT =>
            {
                Ok(())
            }
            other => Err(alloc::format!("unexpected answer {other:?}")),
        },
        Err(_) => Err(alloc::format!("status {status:#x}")),
    };
    let flags_kept = if flags & (RFLAGS_NT | RFLAGS_DF) == RFLAGS_NT | RFLAGS_DF {
        Ok(())
    } else {
        Err(alloc::format!("ring 3 got RFLAGS {flags:#x} back"))
    };
    tally.check(
        "hardening/syscall_with_nt_and_df_set",
        answered.and(flags_kept),
    );
    Ok(())
}

/// Every check, in the order they run. Each reports through the tally;
/// an `Err` is a call the check needed that failed, which ends the suite.
const CHECKS: &[Check] = &[
    hostile_rflags,
    unknown_numbers,
    malformed_postcard,
    kernel_half_pointers,
    unmapped_pointers,
    huge_lengths,
    forged_and_stale_handles,
    send_receive_refusals,
    timed_exchange_pointers,
    untimed_exchange_pointers,
    object_call_refusals,
    reply_capability_is_used_once,
    another_tasks_handle,
    service_log_lines,
    boot_files,
    object_capabilities,
    block_device,
    send_to_closed_channel,
    queue_flood,
    random_storm,
];

/// What every check shares: the tally, scratch buffers, and a channel of
/// this task for requests that need a valid handle.
struct Shared {
    tally: Tally,
    buffers: Buffers,
    channel: ChannelId,
}

type Check = fn(&mut Kernel, &mut Shared) -> Result<(), KernelError>;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    // The random storm could otherwise drive real ports (a reset through
    // port 0x92) with the root's device capabilities: this suite gives
    // them up first, so the device calls take part only as refusals. The
    // `devices` suite tests them.
    let info = kernel.startup()?;
    for (kind, handle) in ROOT_CAPABILITIES.iter().zip(&info.capabilities) {
        if matches!(
            kind,
            CapKind::IoPorts | CapKind::DeviceMemory | CapKind::Interrupt | CapKind::DmaMemory
        ) {
            kernel.drop_capability(Cap::from_handle(*handle))?;
        }
    }
    let mut shared = Shared {
        tally: Tally::default(),
        buffers: Buffers {
            request: vec![0; 4096],
            response: vec![0; 4096],
        },
        channel: kernel.create_channel()?,
    };
    for check in CHECKS {
        check(kernel, &mut shared)?;
    }
    shared.tally.finish(kernel)
}

/// A message that carries nothing, for sends whose refusal is the point.
fn probe() -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(0),
        "probe",
        SchemaVersion::new(1, 0),
        MessagePayload::empty(),
    )
}

/// Unknown system call numbers.
fn unknown_numbers(_kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared { tally, buffers, .. } = shared;
    for number in [SYSCALL_COUNT, 64, 255, 1 << 32, u64::MAX] {
        let resp = buffers.resp();
        let result = raw(number, buffers.req(0), resp);
        tally.check(
            &alloc::format!("hardening/unknown_syscall_{number:#x}"),
            expect_error(result, syscall_error(SyscallError::UnknownSyscall(number))),
        );
    }
    Ok(())
}

/// Garbage and truncated postcard.
fn malformed_postcard(_kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared {
        tally,
        buffers,
        channel,
    } = shared;
    let valid = postcard::to_allocvec(&SendRequest {
        channel: channel.handle(),
        message: &[1, 2, 3, 4, 5, 6, 7, 8],
        capabilities: heapless::Vec::new(),
    })
    .unwrap();
    let mut garbage_ok = Ok(());
    for cut in 0..valid.len() {
        buffers.request[..cut].copy_from_slice(&valid[..cut]);
        let resp = buffers.resp();
        if let Err(e) = expect_error(
            raw(Syscall::Send as u64, buffers.req(cut), resp),
            syscall_error(SyscallError::MalformedRequest),
        ) {
            garbage_ok = Err(alloc::format!("truncated at {cut}: {e}"));
        }
    }
    tally.check("hardening/truncated_postcard", garbage_ok);
    buffers.request[..8].copy_from_slice(&[0xff; 8]);
    let resp = buffers.resp();
    tally.check(
        "hardening/garbage_postcard",
        expect_error(
            raw(Syscall::Receive as u64, buffers.req(8), resp),
            syscall_error(SyscallError::MalformedRequest),
        ),
    );
    Ok(())
}

/// Pointers into the kernel half.
fn kernel_half_pointers(_kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared { tally, buffers, .. } = shared;
    let resp = buffers.resp();
    tally.check(
        "hardening/request_in_kernel_half",
        expect_error(
            raw(Syscall::Send as u64, (KERNEL_ADDRESS, 16), resp),
            syscall_error(SyscallError::BadUserMemory(UserMemoryError::NotUserAddress)),
        ),
    );
    let kernel_resp = raw(Syscall::Now as u64, buffers.req(0), (KERNEL_ADDRESS, 64));
    tally.check(
        "hardening/response_in_kernel_half",
        if kernel_resp == Err(STATUS_BAD_RESPONSE_BUFFER) {
            Ok(())
        } else {
            Err(alloc::format!("{kernel_resp:?}"))
        },
    );
    let straddle = raw(
        Syscall::Send as u64,
        (0x0000_7fff_ffff_fff0, 64),
        buffers.resp(),
    );
    tally.check(
        "hardening/request_straddles_user_end",
        expect_error(
            straddle,
            syscall_error(SyscallError::BadUserMemory(UserMemoryError::NotUserAddress)),
        ),
    );
    Ok(())
}

/// Unmapped and read-only user pointers.
fn unmapped_pointers(_kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared { tally, buffers, .. } = shared;
    let resp = buffers.resp();
    tally.check(
        "hardening/unmapped_request",
        expect_error(
            raw(Syscall::Send as u64, (UNMAPPED_USER_ADDRESS, 16), resp),
            syscall_error(SyscallError::BadUserMemory(UserMemoryError::Unmapped)),
        ),
    );
    let unmapped_resp = raw(
        Syscall::Now as u64,
        buffers.req(0),
        (UNMAPPED_USER_ADDRESS, 64),
    );
    tally.check(
        "hardening/unmapped_response",
        if unmapped_resp == Err(STATUS_BAD_RESPONSE_BUFFER) {
            Ok(())
        } else {
            Err(alloc::format!("{unmapped_resp:?}"))
        },
    );
    let ro = raw(
        Syscall::Now as u64,
        buffers.req(0),
        (READ_ONLY_BUFFER.as_ptr() as u64, 256),
    );
    tally.check(
        "hardening/read_only_response",
        if ro == Err(STATUS_BAD_RESPONSE_BUFFER) {
            Ok(())
        } else {
            Err(alloc::format!("{ro:?}"))
        },
    );
    Ok(())
}

/// Huge lengths and wrapping ranges.
fn huge_lengths(_kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared { tally, buffers, .. } = shared;
    let base = buffers.request.as_ptr() as u64;
    let resp = buffers.resp();
    let wrap = raw(Syscall::Send as u64, (u64::MAX - 8, 64), resp);
    tally.check(
        "hardening/wrapping_range",
        expect_error(
            wrap,
            syscall_error(SyscallError::BadUserMemory(UserMemoryError::Overflow)),
        ),
    );
    let resp = buffers.resp();
    let huge = raw(Syscall::Send as u64, (base, 1 << 40), resp);
    let huge_ok = matches!(
        huge,
        Ok(Err(KernelError::Syscall(
            SyscallError::RequestTooLarge { .. }
        )))
    );
    tally.check(
        "hardening/huge_length",
        if huge_ok {
            Ok(())
        } else {
            Err(alloc::format!("{huge:?}"))
        },
    );
    let resp = buffers.resp();
    let max = raw(Syscall::Send as u64, (base, u64::MAX), resp);
    let max_ok = matches!(
        max,
        Ok(Err(KernelError::Syscall(
            SyscallError::RequestTooLarge { .. }
                | SyscallError::BadUserMemory(UserMemoryError::Overflow)
        )))
    );
    tally.check(
        "hardening/max_length",
        if max_ok {
            Ok(())
        } else {
            Err(alloc::format!("{max:?}"))
        },
    );
    Ok(())
}

/// Forged and stale handles.
fn forged_and_stale_handles(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared { tally, channel, .. } = shared;
    let forged = kernel.send_message(ChannelId::from_handle(CapHandle::new(999, 0)), probe());
    tally.check(
        "hardening/forged_handle",
        if forged == Err(KernelError::InvalidCapability) {
            Ok(())
        } else {
            Err(alloc::format!("{forged:?}"))
        },
    );
    let wrong_generation = CapHandle::new(
        channel.handle().index(),
        channel.handle().generation().wrapping_add(7),
    );
    let forged_gen = kernel.send_message(ChannelId::from_handle(wrong_generation), probe());
    tally.check(
        "hardening/wrong_generation",
        if forged_gen == Err(KernelError::InvalidCapability) {
            Ok(())
        } else {
            Err(alloc::format!("{forged_gen:?}"))
        },
    );
    let doomed = kernel.create_channel()?;
    kernel.drop_capability(Cap::from(doomed))?;
    let _reuses_slot = kernel.create_channel()?;
    let stale = kernel.send_message(doomed, probe());
    tally.check(
        "hardening/stale_handle",
        if stale == Err(KernelError::InvalidCapability) {
            Ok(())
        } else {
            Err(alloc::format!("{stale:?}"))
        },
    );
    Ok(())
}

/// SendReceive: a refused receive capability means nothing was sent; a
/// refused send means nothing was received; and a forged handle on either
/// side is a typed error, not a hang.
fn send_receive_refusals(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let target = kernel.create_channel()?;
    let forged_receive = kernel.send_then_receive(
        target,
        probe(),
        ChannelId::from_handle(CapHandle::new(999, 0)),
        None,
    );
    let nothing_sent = kernel.receive_message(target, Some(Duration::ZERO));
    tally.check(
        "hardening/send_receive_bad_receive_sends_nothing",
        match (&forged_receive, &nothing_sent) {
            (Err(KernelError::InvalidCapability), Err(KernelError::Timeout)) => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    let send_only = kernel.clone_capability(&Cap::from(target), Rights::SEND)?;
    let waiting = kernel.send_message(target, probe());
    let forged_send = kernel.send_then_receive(
        ChannelId::from_handle(CapHandle::new(999, 0)),
        probe(),
        target,
        Some(Duration::ZERO),
    );
    let not_received = kernel.receive_message(target, Some(Duration::ZERO));
    let receive_on_send_only = kernel.send_then_receive(
        target,
        probe(),
        ChannelId::from_handle(send_only.handle()),
        Some(Duration::ZERO),
    );
    tally.check(
        "hardening/send_receive_refusals_are_typed",
        match (&waiting, &forged_send, &not_received, &receive_on_send_only) {
            (
                Ok(()),
                Err(KernelError::InvalidCapability),
                Ok(_),
                Err(KernelError::InsufficientAuthority),
            ) => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    kernel.drop_capability(Cap::from(target))?;
    Ok(())
}

/// Make `call` with its request in `registers` (see
/// `pandagen_rt::syscall::raw_in_registers`), `message` and `response` as
/// (address, length); the received message's bytes, or the error (a
/// transport status as "status ...").
fn call_in_registers(
    call: Syscall,
    registers: [u64; 4],
    message: (u64, u64),
    response: (u64, u64),
) -> Result<Vec<u8>, String> {
    // SAFETY: the kernel validates every pointer; a bad one is the point
    // of the check and can only produce an error for this task.
    let rax = unsafe {
        raw_in_registers(
            call,
            registers,
            message.0 as *const u8,
            message.1 as usize,
            response.0 as *mut u8,
            response.1 as usize,
        )
    };
    let len = decode_status(rax).map_err(|e| alloc::format!("status {e:?}"))?;
    // SAFETY: the kernel wrote `len` bytes into the response buffer.
    let bytes = unsafe { core::slice::from_raw_parts(response.0 as *const u8, len) };
    decode_receive_response(bytes)
        .map(|reply| reply.message.to_vec())
        .map_err(|e| alloc::format!("{e:?}"))
}

/// `Exchange` takes its request in registers, and its fast path copies
/// the message straight out of the caller's memory into a waiting
/// receiver's buffer. Every pointer and length must still be checked with
/// a server blocked receiving (the fast path's case): a bad message is a
/// typed error with nothing delivered (else the server would answer it,
/// or end on an empty message), a bad response buffer is a transport
/// status, and a message across a page boundary arrives intact. The
/// server is `raw_echo` as `call_echo`, which answers every message with
/// the same bytes.
///
/// The kernel's direct path has two bodies: one for the common call (no
/// timeout, nothing released once sent) and one for every other call.
/// The checks run once through each, so that neither can be broken
/// behind the other: `timed` (a 5-second timeout, the general body) and
/// `untimed` (no timeout, the common one; its check names say so).
fn exchange_pointers(
    kernel: &mut Kernel,
    shared: &mut Shared,
    timeout: Option<Duration>,
) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let name = |check: &str| match timeout {
        Some(_) => alloc::format!("hardening/exchange_{check}"),
        None => alloc::format!("hardening/untimed_exchange_{check}"),
    };
    let exits = kernel.create_channel()?;
    let (to_server, replies) = spawn_raw_echo(kernel, "call_echo", exits)?;
    let request = ExchangeRegisters {
        send: to_server.handle(),
        receive: replies.handle(),
        timeout_nanos: timeout.map(|t| t.as_nanos() as u64),
        consume_send: false,
    };
    let mut response = vec![0u8; 4096];
    // Two pages, so that a message can straddle the boundary between them.
    let mut pages = vec![0u8; 3 * 4096];
    let boundary = (pages.as_ptr() as u64 + 4096) & !4095;
    let exchange = |message: (u64, u64), response: (u64, u64)| {
        call_in_registers(Syscall::Exchange, request.to_registers(), message, response)
    };
    let response_at = (response.as_mut_ptr() as u64, response.len() as u64);
    // A first round trip leaves the server blocked receiving.
    let hello = b"hello".to_vec();
    let first = exchange((hello.as_ptr() as u64, 5), response_at);
    tally.check(&name("round_trip"), check_eq(first, Ok(hello)));
    let kernel_message = exchange((KERNEL_ADDRESS, 16), response_at);
    let unmapped_message = exchange((UNMAPPED_USER_ADDRESS, 16), response_at);
    let huge_message = exchange((pages.as_ptr() as u64, 1 << 40), response_at);
    let error = |e: SyscallError| Err(alloc::format!("{:?}", syscall_error(e)));
    let too_large = matches!(&huge_message, Err(e) if e.contains("RequestTooLarge"));
    tally.check(
        &name("bad_messages_are_typed"),
        check_eq(
            (kernel_message, unmapped_message, too_large),
            (
                error(SyscallError::BadUserMemory(UserMemoryError::NotUserAddress)),
                error(SyscallError::BadUserMemory(UserMemoryError::Unmapped)),
                true,
            ),
        ),
    );
    // An empty message would end the server: if this one got through, the
    // straddling message below would find no server.
    let read_only = exchange(
        (pages.as_ptr() as u64, 0),
        (READ_ONLY_BUFFER.as_ptr() as u64, 256),
    );
    tally.check(
        &name("read_only_response_is_refused"),
        check_eq(read_only.map_err(|e| e.starts_with("status")), Err(true)),
    );
    // Nothing reached the server: the next answer echoes the next message.
    // (A message straddling two pages is copied in by the general path.)
    let straddling: Vec<u8> = (0..64u8).collect();
    let at = (boundary - 32 - pages.as_ptr() as u64) as usize;
    pages[at..at + 64].copy_from_slice(&straddling);
    let echoed = exchange((boundary - 32, 64), response_at);
    tally.check(
        &name("straddling_message_arrives_intact"),
        check_eq(echoed, Ok(straddling)),
    );
    // A send capability the call consumes is gone once sent, also when the
    // call is taken directly (a consuming call runs the general body).
    let once = kernel.clone_capability(&to_server, Rights::SEND)?;
    let consuming = ExchangeRegisters {
        send: once.handle(),
        consume_send: true,
        ..request
    };
    let last = b"once".to_vec();
    let consumed = exchange_bytes(consuming, &last, response_at);
    let released = kernel.drop_capability(once);
    tally.check(
        &name("consumed_send_is_released"),
        match (consumed, released) {
            (Ok(echo), Err(KernelError::InvalidCapability)) if echo == last => Ok(()),
            other => Err(alloc::format!("answer and drop: {other:?}")),
        },
    );
    // A timed call taken directly (the server is blocked receiving) still
    // ends at its deadline: it receives on a channel nobody sends on, and
    // the server's answer goes to `replies`, where nobody reads it.
    if timeout.is_some() {
        let silent = kernel.create_channel()?;
        let unanswered = ExchangeRegisters {
            receive: silent.handle(),
            timeout_nanos: Some(Duration::from_millis(50).as_nanos() as u64),
            ..request
        };
        let timed_out = exchange_bytes(unanswered, b"late", response_at);
        tally.check(
            &name("direct_call_times_out"),
            match timed_out {
                Err(e) if e.contains("Timeout") => Ok(()),
                other => Err(alloc::format!("expected a timeout, got {other:?}")),
            },
        );
        kernel.drop_capability(Cap::from(silent))?;
    }
    // An empty message ends the server.
    let stop = postcard::to_allocvec(&SendRequest {
        channel: to_server.handle(),
        message: &[],
        capabilities: heapless::Vec::new(),
    })
    .map_err(|_| syscall_error(SyscallError::MalformedRequest))?;
    let stopped = raw(
        Syscall::Send as u64,
        (stop.as_ptr() as u64, stop.len() as u64),
        response_at,
    );
    tally.check(&name("server_stopped"), check_eq(stopped, Ok(Ok(()))));
    wait_exit(kernel, exits, Duration::from_secs(5)).map_err(|_| KernelError::Timeout)?;
    Ok(())
}

/// An `Exchange` with `registers` that sends `message` and receives into
/// `response` (address, length).
fn exchange_bytes(
    registers: ExchangeRegisters,
    message: &[u8],
    response: (u64, u64),
) -> Result<Vec<u8>, String> {
    let message = (message.as_ptr() as u64, message.len() as u64);
    call_in_registers(
        Syscall::Exchange,
        registers.to_registers(),
        message,
        response,
    )
}

fn timed_exchange_pointers(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    exchange_pointers(kernel, shared, Some(Duration::from_secs(5)))
}

fn untimed_exchange_pointers(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    exchange_pointers(kernel, shared, None)
}

/// `CallObject` (a send through an object capability, then a receive, its
/// request in registers): every bad pointer, length, buffer and handle is
/// refused with nothing sent through the object and nothing received (an
/// answer left waiting on the receive channel stays there); a good call
/// sends the stamped request and takes the answer; after the send, only
/// the receive's errors remain (`Timeout`).
fn object_call_refusals(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    const SERVICE: ServiceId = ServiceId::from_raw(0x4a12);
    let served = kernel.create_channel()?;
    kernel.register_service(SERVICE, served)?;
    let object = kernel.mint_object_capability(SERVICE, 9, Rights::READ)?;
    let answers = kernel.create_channel()?;
    let send_only = kernel.clone_capability(&Cap::from(answers), Rights::SEND)?;
    let request = probe().encode().map_err(KernelError::from)?;
    let message = (request.as_ptr() as u64, request.len() as u64);
    let mut response = vec![0u8; 4096];
    let response_at = (response.as_mut_ptr() as u64, response.len() as u64);
    let registers =
        |object: CapHandle, receive: CapHandle, timeout: Option<Duration>| ObjectCallRegisters {
            object,
            receive,
            timeout_nanos: timeout.map(|t| t.as_nanos() as u64),
        };
    let good = registers(object.handle(), answers.handle(), Some(Duration::ZERO));
    let call = |request: ObjectCallRegisters, message: (u64, u64), response: (u64, u64)| {
        call_in_registers(
            Syscall::CallObject,
            request.to_registers(),
            message,
            response,
        )
    };
    // An answer waiting: a good call sends its request, stamped, and takes
    // the answer.
    let waiting = probe();
    let answer = waiting.encode().map_err(KernelError::from)?;
    kernel.send_message(answers, waiting)?;
    let answered = call(good, message, response_at);
    let stamped = kernel
        .receive_with_capabilities(served, Some(Duration::ZERO))
        .map(|m| m.badge);
    tally.check(
        "hardening/object_call_round_trip",
        check_eq(
            (answered, stamped),
            (
                Ok(answer),
                Ok(Some(pandagen_abi::Badge {
                    value: 9,
                    rights: Rights::READ,
                })),
            ),
        ),
    );
    // Refusals, with an answer waiting that none of them may take.
    kernel.send_message(answers, probe())?;
    let forged = CapHandle::new(999, 0);
    let error = |e: KernelError| Err::<Vec<u8>, String>(alloc::format!("{e:?}"));
    let memory = |e: UserMemoryError| error(syscall_error(SyscallError::BadUserMemory(e)));
    let huge = call(good, (request.as_ptr() as u64, 1 << 40), response_at);
    let cases = [
        (
            call(good, (KERNEL_ADDRESS, 16), response_at),
            memory(UserMemoryError::NotUserAddress),
        ),
        (
            call(good, (UNMAPPED_USER_ADDRESS, 16), response_at),
            memory(UserMemoryError::Unmapped),
        ),
        (
            huge.map_err(|e| {
                String::from(if e.contains("RequestTooLarge") {
                    "too large"
                } else {
                    "other"
                })
            }),
            Err(String::from("too large")),
        ),
        (
            call(good, message, (READ_ONLY_BUFFER.as_ptr() as u64, 256)).map_err(|e| {
                String::from(if e.starts_with("status") {
                    "status"
                } else {
                    "other"
                })
            }),
            Err(String::from("status")),
        ),
        (
            call(
                registers(forged, answers.handle(), None),
                message,
                response_at,
            ),
            error(KernelError::InvalidCapability),
        ),
        (
            call(
                registers(served.handle(), answers.handle(), None),
                message,
                response_at,
            ),
            error(KernelError::WrongCapabilityKind {
                expected: CapKind::StorageObject,
                found: CapKind::Channel,
            }),
        ),
        (
            call(
                registers(object.handle(), forged, None),
                message,
                response_at,
            ),
            error(KernelError::InvalidCapability),
        ),
        (
            call(
                registers(object.handle(), send_only.handle(), None),
                message,
                response_at,
            ),
            error(KernelError::InsufficientAuthority),
        ),
    ];
    let mut refused = Ok(());
    for (i, (got, expected)) in cases.into_iter().enumerate() {
        if got != expected {
            refused = Err(alloc::format!("case {i}: {got:?}, expected {expected:?}"));
        }
    }
    tally.check("hardening/object_call_refusals_are_typed", refused);
    let nothing_sent = kernel.receive_with_capabilities(served, Some(Duration::ZERO));
    let still_waiting = kernel.receive_with_capabilities(answers, Some(Duration::ZERO));
    tally.check(
        "hardening/refused_object_calls_send_and_receive_nothing",
        match (&nothing_sent, &still_waiting) {
            (Err(KernelError::Timeout), Ok(_)) => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    // Nothing waiting: sent, then the receive's own error.
    let timed_out = call(good, message, response_at);
    let sent = kernel.receive_with_capabilities(served, Some(Duration::ZERO));
    tally.check(
        "hardening/object_call_sends_then_times_out",
        match (&timed_out, &sent) {
            (Err(e), Ok(m))
                if *e == alloc::format!("{:?}", KernelError::Timeout) && m.badge.is_some() =>
            {
                Ok(())
            }
            other => Err(alloc::format!("{other:?}")),
        },
    );
    // No service registered: refused, and the waiting answer stays.
    kernel.drop_capability(Cap::from(served))?;
    kernel.send_message(answers, probe())?;
    let unregistered = call(good, message, response_at);
    let kept = kernel.receive_with_capabilities(answers, Some(Duration::ZERO));
    tally.check(
        "hardening/object_call_to_an_absent_service_receives_nothing",
        match (&unregistered, &kept) {
            (Err(e), Ok(_))
                if *e == alloc::format!("{:?}", KernelError::ServiceNotFound(SERVICE)) =>
            {
                Ok(())
            }
            other => Err(alloc::format!("{other:?}")),
        },
    );
    kernel.drop_capability(send_only)?;
    kernel.drop_capability(Cap::from(answers))?;
    kernel.drop_capability(object.erase())
}

/// A reply capability used through `reply_then_receive` is released by the
/// kernel between the send and the receive: the answer arrives, the handle
/// is dead afterwards, and the next capability the task receives takes the
/// slot it left (a server's space does not creep by one slot per request).
/// It is released even when the call is refused.
fn reply_capability_is_used_once(
    kernel: &mut Kernel,
    shared: &mut Shared,
) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let answers = kernel.create_channel()?;
    let requests = kernel.create_channel()?;
    let reply = kernel.clone_capability(&Cap::from(answers), Rights::SEND)?;
    let reply_handle = reply.handle();
    let reply_slot = reply_handle.index();
    // The next request, carrying a fresh reply capability, is already
    // queued: the receive installs it right after the release.
    let next_reply =
        kernel.clone_capability(&Cap::from(answers), Rights::SEND | Rights::TRANSFER)?;
    kernel.send_with_capabilities(requests, probe(), alloc::vec![next_reply])?;
    let next = kernel.reply_then_receive(reply, probe(), requests, Some(Duration::ZERO));
    let answered = kernel.receive_message(answers, Some(Duration::ZERO));
    let dead = kernel.drop_capability(Cap::from_handle(reply_handle));
    let installed_at = next
        .as_ref()
        .ok()
        .and_then(|m| m.capabilities.first())
        .map(|c| c.handle().index());
    tally.check(
        "hardening/reply_capability_is_used_once",
        match (&answered, &dead, installed_at) {
            (Ok(_), Err(KernelError::InvalidCapability), Some(slot)) if slot == reply_slot => {
                Ok(())
            }
            other => Err(alloc::format!(
                "{other:?}, reply slot {reply_slot}; next {:?}",
                next.as_ref().map(|m| m.capabilities.len())
            )),
        },
    );
    if let Ok(next) = next {
        for cap in next.capabilities {
            kernel.drop_capability(cap)?;
        }
    }
    // Refused (forged receive): nothing sent, and the reply still released.
    let reply = kernel.clone_capability(&Cap::from(answers), Rights::SEND)?;
    let handle = reply.handle();
    let refused = kernel.reply_then_receive(
        reply,
        probe(),
        ChannelId::from_handle(CapHandle::new(999, 0)),
        None,
    );
    let released = kernel.drop_capability(Cap::from_handle(handle));
    tally.check(
        "hardening/refused_reply_still_releases_the_capability",
        match (&refused, &released) {
            (Err(KernelError::InvalidCapability), Err(KernelError::InvalidCapability)) => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    kernel.drop_capability(Cap::from(answers))?;
    kernel.drop_capability(Cap::from(requests))?;
    Ok(())
}

/// Another task's handles are meaningless in this task's space.
fn another_tasks_handle(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let exits = kernel.create_channel()?;
    let inbox = kernel.create_channel()?;
    let inbox_receive =
        kernel.clone_capability(&Cap::from(inbox), Rights::RECEIVE | Rights::TRANSFER)?;
    let secret = kernel.create_channel()?;
    let thief = spawn(
        kernel,
        "handle_thief",
        "handle_thief",
        vec![inbox_receive],
        exits,
    )?;
    let tip = MessageEnvelope::new(
        ServiceId::from_raw(0),
        "tip",
        SchemaVersion::new(1, 0),
        MessagePayload::new(&secret.handle().as_raw())?,
    );
    kernel.send_message(inbox, tip)?;
    let thief_outcome = wait_exit(kernel, exits, Duration::from_secs(30)).and_then(|n| {
        if n.task_id == Some(thief.task_id) && n.reason == ExitReason::Normal {
            Ok(())
        } else {
            Err(alloc::format!("{n:?}"))
        }
    });
    tally.check("hardening/another_tasks_handle", thief_outcome);
    Ok(())
}

/// A service's log lines cannot pass for verdicts or the console: the
/// spoofer prints forged `[TEST]`/`[SUITE]` lines and escape sequences;
/// the kernel tags and escapes them, so the harness counts none (if it
/// did, this suite's DONE counts would not match and the suite fails).
fn service_log_lines(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let exits = kernel.create_channel()?;
    let spoofer = spawn(kernel, "console_spoofer", "console_spoofer", vec![], exits)?;
    let spoofer_outcome = wait_exit(kernel, exits, Duration::from_secs(30)).and_then(|n| {
        if n.task_id == Some(spoofer.task_id) && n.reason == ExitReason::Normal {
            Ok(())
        } else {
            Err(alloc::format!("{n:?}"))
        }
    });
    tally.check("hardening/service_log_lines_are_tagged", spoofer_outcome);
    Ok(())
}

/// Boot files: data files are readable with the boot-image capability;
/// programs and paths are not, and nothing is readable without it.
fn boot_files(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let info = kernel.startup()?;
    let boot_image = info.capabilities[1];
    let boot_cfg = kernel.read_boot_file(boot_image, "boot.cfg");
    tally.check(
        "hardening/boot_file_readable_with_capability",
        match boot_cfg {
            Ok(bytes) if bytes.windows(10).any(|w| w == b"mode=suite") => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    let mut refused = Ok(());
    for name in ["bin/faulter", "../boot.cfg", "", "no-such-file"] {
        match kernel.read_boot_file(boot_image, name) {
            Err(KernelError::BootFileNotFound) => {}
            other => refused = Err(alloc::format!("{name:?}: {other:?}")),
        }
    }
    tally.check("hardening/boot_file_paths_refused", refused);
    let forged_read = kernel.read_boot_file(CapHandle::new(999, 0), "boot.cfg");
    tally.check(
        "hardening/boot_file_needs_capability",
        if forged_read == Err(KernelError::InvalidCapability) {
            Ok(())
        } else {
            Err(alloc::format!("{forged_read:?}"))
        },
    );
    Ok(())
}

/// Sending to a closed channel: the only receiving capability is dropped.
fn send_to_closed_channel(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let closing = kernel.create_channel()?;
    let send_only = kernel.clone_capability(&Cap::from(closing), Rights::SEND)?;
    kernel.drop_capability(Cap::from(closing))?;
    let closed = kernel.send_message(ChannelId::from_handle(send_only.handle()), probe());
    tally.check(
        "hardening/send_to_closed_channel",
        if closed == Err(KernelError::SendFailed(SendError::ChannelClosed)) {
            Ok(())
        } else {
            Err(alloc::format!("{closed:?}"))
        },
    );
    Ok(())
}

/// Flooding channels nobody drains: queued messages live in kernel memory,
/// charged to their sender, so the kernel refuses sends when the sender's
/// budget is spent (long before the kernel heap runs out), and gets the
/// memory back when the channels close.
fn queue_flood(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let tally = &mut shared.tally;
    let big = MessagePayload::from_bytes(vec![0x5a; 16_000])?;
    let mut flooded = Vec::new();
    let mut refusal = None;
    'flood: for _ in 0..32 {
        let sink = kernel.create_channel()?;
        flooded.push(sink);
        for _ in 0..64 {
            let message = MessageEnvelope::new(
                ServiceId::from_raw(0),
                "flood",
                SchemaVersion::new(1, 0),
                big.clone(),
            );
            match kernel.send_message(sink, message) {
                Ok(()) => {}
                Err(KernelError::SendFailed(SendError::QueueFull)) => break,
                Err(e) => {
                    refusal = Some(e);
                    break 'flood;
                }
            }
        }
    }
    for sink in flooded {
        kernel.drop_capability(Cap::from(sink))?;
    }
    let recovered = kernel.create_channel().and_then(|c| {
        let message = MessageEnvelope::new(
            ServiceId::from_raw(0),
            "after-flood",
            SchemaVersion::new(1, 0),
            big.clone(),
        );
        kernel.send_message(c, message)?;
        kernel.receive_message(c, Some(Duration::ZERO))?;
        kernel.drop_capability(Cap::from(c))
    });
    tally.check(
        "hardening/queue_flood_refused_then_recovered",
        match (refusal, recovered) {
            (Some(KernelError::ResourceExhausted(Resource::MemoryBudget)), Ok(())) => Ok(()),
            other => Err(alloc::format!("refusal and recovery: {other:?}")),
        },
    );
    Ok(())
}

/// A seeded storm of random system calls. Calls that could end or park this
/// task or the machine (Exit, Sleep, Receive, SendReceive, Terminate,
/// Shutdown, Reboot), that allocate kernel objects (Spawn, CreateChannel, Clone: a
/// storm of valid ones would only test resource limits), or that print or
/// rebind the console or the screen (DebugWrite, ConsoleWrite,
/// BindConsoleInput, TakeOverScreen) become
/// unknown numbers (see [`STORM_EXCLUDED`]). The object-capability calls
/// and the block-device calls take part: nothing else in this suite uses
/// the device.
fn random_storm(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared {
        tally,
        buffers,
        channel,
    } = shared;
    let base = buffers.request.as_ptr() as u64;
    let seed = rdtsc() | 1;
    println!("hardening: random syscall storm, seed {seed:#x}");
    let mut rng = Rng(seed);
    let valid_request = postcard::to_allocvec(&ReceiveRequest {
        channel: channel.handle(),
        timeout_nanos: Some(0),
    })
    .unwrap();
    let mut survived = 0u32;
    for _ in 0..100_000 {
        let number = rng.next() % SYSCALL_COUNT;
        let number = match Syscall::from_number(number) {
            Ok(call) if STORM_EXCLUDED.contains(&call) => SYSCALL_COUNT + rng.next() % 1000,
            _ => number,
        };
        let request = match rng.next() % 6 {
            0 => (KERNEL_ADDRESS + (rng.next() % 4096), rng.next() % 512),
            1 => (rng.next() & 0x0000_7fff_ffff_ffff, rng.next() % 512),
            2 => (base, 0),
            3 => {
                let len = valid_request.len();
                buffers.request[..len].copy_from_slice(&valid_request);
                let flip = (rng.next() as usize) % len;
                buffers.request[flip] ^= rng.next() as u8;
                (base, len as u64)
            }
            _ => {
                let len = (rng.next() % 256) as usize;
                for byte in &mut buffers.request[..len] {
                    *byte = rng.next() as u8;
                }
                (base, len as u64)
            }
        };
        let response = match rng.next() % 5 {
            0 => (KERNEL_ADDRESS, 64),
            1 => (rng.next(), rng.next() % 8192),
            _ => buffers.resp(),
        };
        let _ = raw(number, request, response);
        survived += 1;
    }
    let after = kernel.create_channel().and_then(|c| {
        kernel.send_message(c, probe())?;
        kernel.receive_message(c, Some(Duration::ZERO)).map(|_| ())
    });
    tally.check(
        "hardening/100000_random_syscalls",
        match after {
            Ok(()) if survived == 100_000 => Ok(()),
            other => Err(alloc::format!("after {survived} calls: {other:?}")),
        },
    );
    Ok(())
}

fn check_eq<T: PartialEq + core::fmt::Debug>(got: T, expected: T) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(alloc::format!("expected {expected:?}, got {got:?}"))
    }
}

/// The block-device calls: typed errors for blocks off the device, wrong
/// lengths, missing or wrong capabilities and bad user buffers, and a
/// refused call changes nothing.
fn block_device(kernel: &mut Kernel, shared: &mut Shared) -> Result<(), KernelError> {
    let Shared { tally, buffers, .. } = shared;
    let device = kernel.startup()?.capabilities[4];
    let info = kernel.block_info(device);
    tally.check(
        "hardening/block_info",
        match info {
            Ok(i) if i.block_size == 512 && i.block_count == 4096 => Ok(()),
            other => Err(alloc::format!("{other:?}")),
        },
    );
    let blocks = info.map_or(0, |i| i.block_count);
    let block = 512usize;

    let last = blocks.saturating_sub(1);
    kernel.block_write(device, last, &[0x77; 512])?;
    let mut off_device = Ok(());
    for (first, count) in [(blocks, 1u32), (last, 2), (u64::MAX, 1)] {
        let expected = Err(KernelError::Block(BlockError::OutOfRange {
            first,
            count: u64::from(count),
            blocks,
        }));
        if let Err(e) = check_eq(kernel.block_read(device, first, count), expected.clone()) {
            off_device = Err(alloc::format!("read {first}+{count}: {e}"));
        }
        let data = vec![0x11; count as usize * block];
        if let Err(e) = check_eq(
            kernel.block_write(device, first, &data),
            expected.map(|_: Vec<u8>| ()),
        ) {
            off_device = Err(alloc::format!("write {first}+{count}: {e}"));
        }
    }
    if let Err(e) = check_eq(kernel.block_read(device, last, 1), Ok(vec![0x77; 512])) {
        off_device = Err(alloc::format!("the last block changed: {e}"));
    }
    tally.check("hardening/block_out_of_range", off_device);

    let bad_length = |len: u64| {
        Err(KernelError::Block(BlockError::BadLength {
            len,
            block_size: 512,
        }))
    };
    let too_large = MAX_BLOCK_TRANSFER + block;
    tally.check(
        "hardening/block_wrong_sizes",
        check_eq(kernel.block_write(device, 0, &[1; 100]), bad_length(100))
            .and_then(|()| check_eq(kernel.block_write(device, 0, &[]), bad_length(0)))
            .and_then(|()| check_eq(kernel.block_read(device, 0, 0).map(|_| ()), bad_length(0)))
            .and_then(|()| {
                check_eq(
                    kernel.block_write(device, 0, &vec![1; too_large]),
                    Err(KernelError::Block(BlockError::TooLarge {
                        len: too_large as u64,
                        max: MAX_BLOCK_TRANSFER as u32,
                    })),
                )
            })
            .and_then(|()| match kernel.block_read(device, 0, u32::MAX) {
                Err(KernelError::Block(BlockError::TooLarge { .. })) => Ok(()),
                other => Err(alloc::format!(
                    "u32::MAX blocks: {:?}",
                    other.map(|b| b.len())
                )),
            }),
    );

    let read_only = kernel.clone_capability(&Cap::from_handle(device), Rights::READ)?;
    let channel = kernel.create_channel()?;
    tally.check(
        "hardening/block_needs_the_capability_and_its_rights",
        check_eq(
            kernel.block_read(CapHandle::new(999, 0), 0, 1),
            Err(KernelError::InvalidCapability),
        )
        .and_then(|()| {
            check_eq(
                kernel.block_info(channel.handle()).map(|_| ()),
                Err(KernelError::WrongCapabilityKind {
                    expected: pandagen_abi::CapKind::BlockDevice,
                    found: pandagen_abi::CapKind::Channel,
                }),
            )
        })
        .and_then(|()| {
            check_eq(
                kernel.block_write(read_only.handle(), last, &[0; 512]),
                Err(KernelError::InsufficientAuthority),
            )
        })
        .and_then(|()| {
            check_eq(
                kernel.block_read(read_only.handle(), last, 1),
                Ok(vec![0x77; 512]),
            )
        }),
    );
    kernel.drop_capability(read_only)?;
    kernel.drop_capability(Cap::from(channel))?;

    // Bad user buffers: the request (which carries a write's data) and the
    // response (which carries a read's).
    let read = postcard::to_allocvec(&BlockReadRequest {
        capability: device,
        first: 0,
        count: 1,
    })
    .unwrap();
    buffers.request[..read.len()].copy_from_slice(&read);
    let read_req = buffers.req(read.len());
    let mut user_memory = Ok(());
    for (name, response) in [
        ("kernel-half", (KERNEL_ADDRESS, 4096)),
        ("unmapped", (UNMAPPED_USER_ADDRESS, 4096)),
        ("read-only", (READ_ONLY_BLOCK_BUFFER.as_ptr() as u64, 1024)),
    ] {
        let result = raw(Syscall::BlockRead as u64, read_req, response);
        if result != Err(STATUS_BAD_RESPONSE_BUFFER) {
            user_memory = Err(alloc::format!("{name} response: {result:?}"));
        }
    }
    let whole = postcard::to_allocvec(&BlockReadRequest {
        capability: device,
        first: 0,
        count: (MAX_BLOCK_TRANSFER / block) as u32,
    })
    .unwrap();
    buffers.request[..whole.len()].copy_from_slice(&whole);
    let small = (buffers.response.as_mut_ptr() as u64, 1024);
    match raw(Syscall::BlockRead as u64, buffers.req(whole.len()), small) {
        Err(rax)
            if matches!(
                decode_status(rax),
                Err(KernelError::Syscall(SyscallError::ResponseTooLarge { .. }))
            ) => {}
        other => user_memory = Err(alloc::format!("small response: {other:?}")),
    }
    for (name, request, expected) in [
        (
            "kernel-half",
            (KERNEL_ADDRESS, 600),
            UserMemoryError::NotUserAddress,
        ),
        (
            "unmapped",
            (UNMAPPED_USER_ADDRESS, 600),
            UserMemoryError::Unmapped,
        ),
    ] {
        let resp = buffers.resp();
        if let Err(e) = expect_error(
            raw(Syscall::BlockWrite as u64, request, resp),
            syscall_error(SyscallError::BadUserMemory(expected)),
        ) {
            user_memory = Err(alloc::format!("{name} request: {e}"));
        }
    }
    let write = postcard::to_allocvec(&BlockWriteRequest {
        capability: device,
        first: last,
        bytes: &[0x99; 512],
    })
    .unwrap();
    buffers.request[..write.len()].copy_from_slice(&write);
    let resp = buffers.resp();
    if let Err(e) = expect_error(
        raw(
            Syscall::BlockWrite as u64,
            buffers.req(write.len() - 1),
            resp,
        ),
        syscall_error(SyscallError::MalformedRequest),
    ) {
        user_memory = Err(alloc::format!("truncated write: {e}"));
    }
    if let Err(e) = check_eq(kernel.block_read(device, last, 1), Ok(vec![0x77; 512])) {
        user_memory = Err(alloc::format!("the last block changed: {e}"));
    }
    tally.check("hardening/block_bad_user_buffers", user_memory);
    Ok(())
}
