//! Host throughput of the simulated kernel's message path.
//!
//! `cargo bench -p pandagen-sim --bench sim_bench` (also run by `cargo xtask bench`
//! once listed in its host benchmarks).
//!
//! Each line is `[BENCH] <name> <value> <unit>`: the median of repeated
//! runs, measured with the host's monotonic clock (the simulation itself
//! never reads it). The throughput runs switch the trace off, to measure
//! the message path alone.
//!
//! It also checks that memory stays flat over ten million messages with
//! the trace on (its default): the resident set may not grow by more than
//! [`FLAT_SLACK_KB`] between the first million messages and the tenth
//! (Linux only; it reads `/proc/self/status`). The bench fails otherwise.

use std::time::Instant as HostInstant;

use pandagen_abi::{
    Duration, KernelApi, MessageEnvelope, MessagePayload, SchemaVersion, ServiceId,
};
use pandagen_sim::{FaultPlan, SimulatedKernel};

const MESSAGES: u32 = 200_000;
const RUNS: usize = 9;

/// Messages of the memory check, and when it takes its first reading.
const FLAT_MESSAGES: u64 = 10_000_000;
const FLAT_BASELINE_AT: u64 = 1_000_000;
/// Growth the memory check tolerates: the allocator's slack, far below
/// what a trace growing by one record per message would take (hundreds of
/// megabytes).
const FLAT_SLACK_KB: u64 = 2 * 1024;

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

/// A field of `/proc/self/status`, in kB (`None` off Linux).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Ten million send+receive pairs with the trace on: the resident set
/// after the first million against the largest one read after each later
/// million, and the trace's own bounds (its length never above its
/// capacity). Runs first, before the other runs raise the process's
/// footprint.
fn memory_stays_flat() -> bool {
    let mut kernel = SimulatedKernel::new();
    assert!(kernel.trace().is_enabled());
    let channel = kernel.create_channel().expect("channel");
    let message = envelope();
    let mut baseline = None;
    let mut peak = None;
    for i in 0..FLAT_MESSAGES {
        if i == FLAT_BASELINE_AT {
            baseline = status_kb("VmRSS:");
        }
        if i > FLAT_BASELINE_AT && i % FLAT_BASELINE_AT == 0 {
            peak = peak.max(status_kb("VmRSS:"));
        }
        kernel
            .send_message(channel, message.clone())
            .expect("room in the queue");
        kernel
            .receive_message(channel, Some(Duration::ZERO))
            .expect("the message just sent");
    }
    let trace = kernel.trace();
    assert!(trace.len() <= trace.capacity());
    assert_eq!(
        trace.dropped() + trace.len() as u64,
        2 * FLAT_MESSAGES,
        "every send and delivery was recorded"
    );
    let (Some(baseline), Some(peak)) = (baseline, peak.max(status_kb("VmRSS:"))) else {
        println!("memory check skipped: no /proc/self/status");
        return true;
    };
    let growth = peak.saturating_sub(baseline);
    println!("[BENCH] sim_traced_memory_growth_1m_to_10m_messages {growth} kB");
    if growth > FLAT_SLACK_KB {
        println!(
            "memory grew by {growth} kB between 1 and 10 million traced messages \
             (limit {FLAT_SLACK_KB} kB)"
        );
        return false;
    }
    true
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // Warm up allocator and caches.
    if !memory_stays_flat() {
        std::process::exit(1);
    }
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
