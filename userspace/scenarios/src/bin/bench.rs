//! Kernel cost benchmarks, in instructions. Run by `cargo xtask bench`
//! under QEMU TCG with `-icount shift=0`, where `rdtsc` advances exactly
//! once per executed instruction, so the figures are exact and repeatable.
//! Each figure is the median over several batches.
//!
//! Three IPC round trips are measured (client send, server receive,
//! server send, client receive, across two address spaces), each with an
//! empty and a 64-byte payload:
//! - `ipc_call_round_trip_*`: the kernel's IPC path with one entry per
//!   side: the client's `Exchange` (send the request, wait for the reply)
//!   and the server's (send the reply, wait for the next request), through
//!   raw system calls with the request in registers — the shape of seL4's
//!   `Call` + `ReplyRecv`, and the figure for the bar. The server is
//!   `raw_echo` as `call_echo`.
//! - `ipc_round_trip_raw_*`: the same through four entries: the client's
//!   `Send` then `Receive`, and `raw_echo`'s.
//! - `ipc_round_trip_*`: the whole stack a service uses — building,
//!   encoding and decoding `MessageEnvelope`s through `KernelApi`'s
//!   `send_then_receive` (one `Exchange` per side), and `ipc_echo`'s
//!   dispatch on the action.
//!
//! Two refusals show that authority is checked before work: `refused_grant`
//! (a grant of a forged handle) and `refused_spawn` (a spawn of a real
//! program that moves a forged handle). A refused spawn must cost about
//! what a refused grant does, not the loading of the image it names.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{
    decode_status, ExchangeRegisters, ReceiveRequest, SendRequest, SpawnRequest, Syscall,
    TransferRequest, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::{
    CapHandle, ChannelId, Duration, IdentityKind, KernelApi, KernelError, MessageEnvelope,
    MessagePayload, Priority, Rights,
};
use pandagen_rt::syscall::{null, raw_exchange, raw_syscall};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{
    open_echo_session, rdtsc, spawn, spawn_raw_echo, startup_caps, ECHO, ECHO_VERSION,
};

pandagen_rt::entry!(main);

const BATCHES: usize = 7;
const PER_BATCH: u64 = 200;

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Instructions per iteration of `body`, less the cost of an empty loop.
fn measure(mut body: impl FnMut() -> Result<(), KernelError>) -> Result<u64, KernelError> {
    let mut empty = Vec::new();
    let mut full = Vec::new();
    for _ in 0..BATCHES {
        let start = rdtsc();
        for _ in 0..PER_BATCH {
            core::hint::black_box(());
        }
        empty.push(rdtsc() - start);
        let start = rdtsc();
        for _ in 0..PER_BATCH {
            body()?;
        }
        full.push(rdtsc() - start);
    }
    Ok(median(full).saturating_sub(median(empty)) / PER_BATCH)
}

fn round_trip(
    kernel: &mut Kernel,
    echo: ChannelId,
    reply: ChannelId,
    payload: &MessagePayload,
) -> Result<(), KernelError> {
    let request = MessageEnvelope::new(ECHO, "echo.raw", ECHO_VERSION, payload.clone());
    kernel.send_then_receive(echo, request, reply, Some(Duration::from_secs(10)))?;
    Ok(())
}

/// Requests encoded once, and the buffers for their responses.
struct RawClient {
    send: Vec<u8>,
    receive: Vec<u8>,
    /// The `Exchange` request (in registers) and its message.
    exchange: ExchangeRegisters,
    envelope: Vec<u8>,
    response: Vec<u8>,
}

impl RawClient {
    fn new(
        to_server: pandagen_abi::CapHandle,
        from_server: pandagen_abi::CapHandle,
        envelope: &[u8],
    ) -> Result<Self, KernelError> {
        let malformed = |_| KernelError::Syscall(SyscallError::MalformedRequest);
        Ok(RawClient {
            send: postcard::to_allocvec(&SendRequest {
                channel: to_server,
                message: envelope,
                capabilities: heapless::Vec::new(),
            })
            .map_err(malformed)?,
            receive: postcard::to_allocvec(&ReceiveRequest {
                channel: from_server,
                timeout_nanos: None,
            })
            .map_err(malformed)?,
            exchange: ExchangeRegisters {
                send: to_server,
                receive: from_server,
                timeout_nanos: None,
                consume_send: false,
            },
            envelope: envelope.to_vec(),
            response: vec![0; RESPONSE_BUFFER_BYTES],
        })
    }

    fn call(&mut self, number: Syscall, request: &[u8]) -> Result<usize, KernelError> {
        // SAFETY: both buffers are ours and live across the call.
        let rax = unsafe {
            raw_syscall(
                number as u64,
                request.as_ptr(),
                request.len(),
                self.response.as_mut_ptr(),
                self.response.len(),
            )
        };
        decode_status(rax)
    }

    fn round_trip(&mut self) -> Result<(), KernelError> {
        let send = core::mem::take(&mut self.send);
        let sent = self.call(Syscall::Send, &send);
        self.send = send;
        sent?;
        let receive = core::mem::take(&mut self.receive);
        let received = self.call(Syscall::Receive, &receive);
        self.receive = receive;
        self.check_reply(received)
    }

    /// The round trip as one `Exchange`.
    fn call_round_trip(&mut self) -> Result<(), KernelError> {
        // SAFETY: both buffers are ours and live across the call.
        let rax = unsafe {
            raw_exchange(
                &self.exchange,
                self.envelope.as_ptr(),
                self.envelope.len(),
                self.response.as_mut_ptr(),
                self.response.len(),
            )
        };
        self.check_reply(decode_status(rax))
    }

    fn check_reply(&self, received: Result<usize, KernelError>) -> Result<(), KernelError> {
        // A non-empty response that is a `Result::Err` starts with 1.
        match received? {
            n if n > 0 && self.response[0] == 0 => Ok(()),
            _ => Err(KernelError::Syscall(SyscallError::MalformedRequest)),
        }
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let root_caps = startup_caps(&info);
    let exits = kernel.create_channel()?;
    let registry = kernel.mint_registration_capability(&root_caps[0], ECHO)?;
    spawn(
        kernel,
        "ipc_echo",
        "ipc_echo",
        vec![registry.erase()],
        exits,
    )?;
    let (echo, reply) = open_echo_session(kernel)?;

    let null_cost = measure(|| {
        core::hint::black_box(null());
        Ok(())
    })?;
    println!("[BENCH] null_syscall {null_cost} instructions");

    let empty = MessagePayload::empty();
    let small = measure(|| round_trip(kernel, echo, reply, &empty))?;
    println!("[BENCH] ipc_round_trip_empty_payload {small} instructions");

    let bytes = MessagePayload::from_bytes(vec![0xa5; 64])?;
    let with_64 = measure(|| round_trip(kernel, echo, reply, &bytes))?;
    println!("[BENCH] ipc_round_trip_64_byte_payload {with_64} instructions");

    // The raw paths: each echo server gets the receive side of its
    // `requests` and a send-only capability for its `replies`.
    let raw = [
        (
            "raw_echo",
            "ipc_round_trip_raw",
            RawClient::round_trip as fn(&mut RawClient) -> _,
        ),
        (
            "call_echo",
            "ipc_call_round_trip",
            RawClient::call_round_trip,
        ),
    ];
    for (server, figure, round_trip) in raw {
        let (to_server, replies) = spawn_raw_echo(kernel, server, exits)?;
        for (name, payload) in [("empty_payload", &empty), ("64_byte_payload", &bytes)] {
            let envelope =
                MessageEnvelope::new(ECHO, "echo.raw", ECHO_VERSION, payload.clone()).encode()?;
            let mut client = RawClient::new(to_server.handle(), replies.handle(), &envelope)?;
            let cost = measure(|| round_trip(&mut client))?;
            println!("[BENCH] {figure}_{name} {cost} instructions");
        }
        let mut stop = RawClient::new(to_server.handle(), replies.handle(), &[])?;
        let send = core::mem::take(&mut stop.send);
        stop.call(Syscall::Send, &send)?;
    }

    let forged = CapHandle::new(4000, 7);
    let grant = TransferRequest {
        capability: forged,
        task: info.task,
    };
    let refused_grant = measure(|| refused(Syscall::Grant, &grant))?;
    println!("[BENCH] refused_grant {refused_grant} instructions");
    let spawn_request = SpawnRequest {
        name: "refused",
        image: "ipc_echo",
        capabilities: heapless::Vec::from_slice(&[forged]).map_err(|_| refusal_missing())?,
        priority: Priority::NORMAL,
        kind: IdentityKind::Service,
        trust_domain: "user",
        exit_channel: None,
        budget: None,
    };
    let refused_spawn = measure(|| refused(Syscall::Spawn, &spawn_request))?;
    println!("[BENCH] refused_spawn {refused_spawn} instructions");

    // A checked port read (`PortRead` on the CMOS RTC's data port): the
    // cost a driver pays per `in` with checked calls instead of the TSS
    // I/O permission bitmap (docs/architecture.md, "Port I/O").
    let all_ports = info.capabilities[5];
    let rtc = pandagen_rt::device::mint(
        all_ports,
        pandagen_abi::device::DeviceResource::Ports(pandagen_abi::device::PortRange::new(
            0x70, 0x71,
        )),
        Rights::READ | Rights::WRITE,
    )?;
    let ports = pandagen_rt::device::Ports::new(rtc);
    let port_read = measure(|| ports.read8(0x71).map(drop))?;
    println!("[BENCH] port_read_checked_call {port_read} instructions");

    // The same read through a port window (the TSS I/O permission
    // bitmap), and what holding a window costs the task's other calls
    // (each is followed by a check of its windows) and its switches (the
    // bitmap changes at each switch to or from it).
    let now = || {
        core::hint::black_box(kernel.now());
        Ok::<(), KernelError>(())
    };
    let now_call = measure(now)?;
    let window = ports.open()?;
    let port_read_window = measure(|| window.read8(0x71).map(drop))?;
    println!("[BENCH] port_read_window {port_read_window} instructions");
    let now_with_window = measure(now)?;
    println!("[BENCH] now_syscall {now_call} instructions");
    println!("[BENCH] now_syscall_with_port_window {now_with_window} instructions");
    let round_trip_with_window = measure(|| round_trip(kernel, echo, reply, &empty))?;
    println!(
        "[BENCH] ipc_round_trip_empty_payload_with_port_window {round_trip_with_window} instructions"
    );

    println!("[SUITE] DONE passed=1 failed=0");
    Ok(())
}

fn refusal_missing() -> KernelError {
    KernelError::Syscall(SyscallError::MalformedRequest)
}

/// Make `call`, which must be refused with `InvalidCapability`.
fn refused<R: serde::Serialize>(call: Syscall, request: &R) -> Result<(), KernelError> {
    let mut scratch = [0u8; 256];
    let mut response = [0u8; 64];
    match pandagen_rt::syscall::call::<_, ()>(call, request, &mut scratch, &mut response) {
        Err(KernelError::InvalidCapability) => Ok(()),
        _ => Err(refusal_missing()),
    }
}
