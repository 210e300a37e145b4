//! Host throughput of the simulated kernel's message path.
//!
//! `cargo bench -p pandagen-sim --bench sim_bench` (also run by `cargo xtask bench`
//! once listed in its host benchmarks).
//!
//! Each line is `[BENCH] <name> <value> <unit>`: the median of repeated
//! runs, measured with the host's monotonic clock (the simulation itself
//! never reads it). The trace is switched off, as a long benchmark would
//! otherwise measure trace growth.

use std::time::Instant as HostInstant;

use pandagen_abi::{
    Duration, KernelApi, MessageEnvelope, MessagePayload, SchemaVersion, ServiceId,
};
use pandagen_sim::{FaultPlan, SimulatedKernel};

const MESSAGES: u32 = 200_000;
const RUNS: usize = 9;

fn envelope() -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(1),
        "bench.echo",
        SchemaVersion::new(1, 0),
        MessagePayload::from_bytes(vec![0xAB; 64]).expect("64 bytes fit"),
    )
}

/// Messages per second for one run of `MESSAGES` send+receive pairs.
fn run(plan: Option<FaultPlan>) -> f64 {
    let mut kernel = match plan {
        Some(plan) => SimulatedKernel::with_fault_plan(plan),
        None => SimulatedKernel::new(),
    };
    kernel.trace_mut().set_enabled(false);
    let channel = kernel.create_channel().expect("channel");
    let message = envelope();
    let start = HostInstant::now();
    let mut received = 0u32;
    for _ in 0..MESSAGES {
        // Sending may fail under a fault plan; receiving may find nothing.
        let _ = kernel.send_message(channel, message.clone());
        if kernel
            .receive_message(channel, Some(Duration::ZERO))
            .is_ok()
        {
            received += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(received > 0);
    f64::from(MESSAGES) / elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // Warm up allocator and caches.
    run(None);
    let plain = median((0..RUNS).map(|_| run(None)).collect());
    println!("[BENCH] sim_send_receive_64b {plain:.0} msgs/s");
    let faulty = median(
        (0..RUNS)
            .map(|i| run(Some(FaultPlan::random(i as u64))))
            .collect(),
    );
    println!("[BENCH] sim_send_receive_64b_random_faults {faulty:.0} msgs/s");
}
