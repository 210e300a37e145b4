//! The simulator's cost per message, in instructions, for callgrind.
//!
//! `cargo xtask bench` runs this under
//! `valgrind --tool=callgrind --toggle-collect=*send_and_receive*`, so only
//! [`send_and_receive`] is counted: one `send_message` and one
//! `receive_message` of a 64-byte envelope, as the root task, with the
//! trace on (the default). Building the envelope and dropping the one
//! received are the caller's, outside the count. A warm-up first fills the
//! trace to its capacity; xtask runs the program with two message counts
//! and divides the difference of the two instruction counts by the
//! difference of the message counts, which leaves out the warm-up and
//! every one-time cost.
//!
//! Usage: `sim_message_cost [MESSAGES]` (default 100,000).

use std::hint::black_box;

use pandagen_abi::{
    ChannelId, Duration, KernelApi, MessageEnvelope, MessagePayload, SchemaVersion, ServiceId,
};
use pandagen_sim::SimulatedKernel;

const DEFAULT_MESSAGES: u64 = 100_000;

/// One send and one receive of `message` on `channel`: the measured unit.
#[inline(never)]
fn send_and_receive(
    kernel: &mut SimulatedKernel,
    channel: ChannelId,
    message: MessageEnvelope,
) -> MessageEnvelope {
    kernel
        .send_message(channel, message)
        .expect("the queue has room");
    kernel
        .receive_message(channel, Some(Duration::ZERO))
        .expect("the message just sent")
}

fn main() {
    let messages = std::env::args()
        .nth(1)
        .map(|n| n.parse::<u64>().expect("MESSAGES is a number"))
        .unwrap_or(DEFAULT_MESSAGES);
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel().expect("channel");
    let message = MessageEnvelope::new(
        ServiceId::from_raw(1),
        "bench.echo",
        SchemaVersion::new(1, 0),
        MessagePayload::from_bytes(vec![0xAB; 64]).expect("64 bytes fit"),
    );
    let warm_up = kernel.trace().capacity() as u64 + 1_000;
    for _ in 0..warm_up {
        black_box(send_and_receive(&mut kernel, channel, message.clone()));
    }
    for _ in 0..messages {
        black_box(send_and_receive(&mut kernel, channel, message.clone()));
    }
}
