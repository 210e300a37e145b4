//! The kernel-heap attack of issue 13, finding 3: with nothing but the one
//! send right it was born with (a channel to report on), build channel
//! pairs whose queues are full of large messages and hold each other's
//! only receive capability, keeping no handle to either, until the kernel
//! refuses. Before budgets this filled the kernel heap for everyone and
//! the cycles outlived the attacker; now the attacker hits its own budget.
//!
//! Reports `AttackReport` on its channel, then waits to be killed (so that
//! the suite can check that everyone else still works while it is alive).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::{
    Cap, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::{AttackReport, ATTACK_REPORT_ACTION, SOAK_SCHEMA};

pandagen_rt::entry!(main);

/// Bytes of each queued message's payload: near the envelope limit.
const FILLER: usize = 3000;
/// Messages queued on each channel of a pair before the cycle is closed.
const FILL: usize = 8;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let report = ChannelId::from_handle(info.capabilities[0]);
    let mut tally = AttackReport::default();
    let error = loop {
        match build_pair(kernel, &mut tally) {
            Ok(()) => tally.pairs += 1,
            Err(error) => break error,
        }
    };
    tally.refusal = alloc::format!("{error:?}");
    let envelope = MessageEnvelope::new(
        pandagen_abi::ServiceId::from_raw(0),
        ATTACK_REPORT_ACTION,
        SOAK_SCHEMA,
        MessagePayload::new(&tally)?,
    );
    kernel.send_message(report, envelope)?;
    loop {
        kernel.sleep(Duration::from_secs(60))?;
    }
}

/// One pair: two channels filled with messages, each then carrying the
/// other's receive capability; every handle to either is given away or
/// dropped.
fn build_pair(kernel: &mut Kernel, tally: &mut AttackReport) -> Result<(), KernelError> {
    let a = kernel.create_channel()?;
    let b = kernel.create_channel()?;
    let a_send = kernel.clone_capability(&Cap::from(a), Rights::SEND)?;
    let b_send = kernel.clone_capability(&Cap::from(b), Rights::SEND)?;
    let a_send = ChannelId::from_handle(a_send.handle());
    let b_send = ChannelId::from_handle(b_send.handle());
    for _ in 0..FILL {
        for channel in [a_send, b_send] {
            kernel.send_message(channel, filler()?)?;
            tally.bytes_queued += FILLER as u64;
        }
    }
    kernel.send_with_capabilities(a_send, filler()?, vec![Cap::from(b)])?;
    kernel.send_with_capabilities(b_send, filler()?, vec![Cap::from(a)])?;
    kernel.drop_capability(Cap::from(a_send))?;
    kernel.drop_capability(Cap::from(b_send))?;
    Ok(())
}

fn filler() -> Result<MessageEnvelope, KernelError> {
    let bytes = vec![0xA5u8; FILLER];
    Ok(MessageEnvelope::new(
        pandagen_abi::ServiceId::from_raw(0),
        "attack.filler",
        SOAK_SCHEMA,
        MessagePayload::new(&bytes)?,
    ))
}
