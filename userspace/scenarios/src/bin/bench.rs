//! Kernel cost benchmarks, in instructions. Run by `cargo xtask bench`
//! under QEMU TCG with `-icount shift=0`, where `rdtsc` advances exactly
//! once per executed instruction, so the figures are exact and repeatable.
//! Each figure is the median over several batches.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::{
    ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
};
use pandagen_rt::syscall::null;
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{open_echo_session, rdtsc, spawn, startup_caps, ECHO, ECHO_VERSION};

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
    kernel.send_message(echo, request)?;
    kernel.receive_message(reply, Some(Duration::from_secs(10)))?;
    Ok(())
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let root_caps = startup_caps(&info);
    let exits = kernel.create_channel()?;
    let registry = kernel.clone_capability(&root_caps[0], Rights::REGISTER | Rights::TRANSFER)?;
    spawn(kernel, "ipc_echo", "ipc_echo", vec![registry], exits)?;
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

    println!("[SUITE] DONE passed=1 failed=0");
    Ok(())
}
