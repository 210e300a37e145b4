//! Random operation sequences under random fault plans, with the kernel's
//! invariants checked after every single operation: whatever fails, fails
//! whole ("state remains consistent, no partial operations"), and nothing
//! panics.

use std::collections::BTreeSet;

use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, ExitReason, KernelApi, MessageEnvelope, MessagePayload,
    Rights, SchemaVersion, ServiceId, TaskDescriptor, TaskId,
};
use pandagen_sim::rng::SimRng;
use pandagen_sim::{FaultPlan, SimulatedKernel, TraceEvent};

const SEEDS: u64 = 100;
const OPS: usize = 300;

fn message(n: u64) -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(1),
        if n.is_multiple_of(2) { "even" } else { "odd" },
        SchemaVersion::new(1, 0),
        MessagePayload::new(&n).unwrap(),
    )
}

fn pick<T: Copy>(rng: &mut SimRng, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[rng.below(items.len() as u64) as usize])
    }
}

/// Handles a task holds, any kind.
fn handles(kernel: &SimulatedKernel, task: TaskId) -> Vec<CapHandle> {
    kernel
        .capabilities_of(task)
        .into_iter()
        .map(|(h, _)| h)
        .collect()
}

fn run(seed: u64) {
    let mut rng = SimRng::new(seed);
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::random(seed));
    let mut tasks = vec![kernel.root_task()];
    for op in 0..OPS {
        let live: Vec<TaskId> = tasks
            .iter()
            .copied()
            .filter(|t| kernel.task_is_alive(*t))
            .collect();
        let Some(actor) = pick(&mut rng, &live) else {
            break;
        };
        let caps = handles(&kernel, actor);
        let n = op as u64;
        kernel.as_task(actor, |k| {
            match rng.below(10) {
                0 => {
                    let _ = k.create_channel();
                }
                1..=3 => {
                    if let Some(ch) = pick(&mut rng, &caps) {
                        let attached: Vec<Cap<()>> = (0..rng.below(3))
                            .filter_map(|_| pick(&mut rng, &caps))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .filter(|h| *h != ch)
                            .map(Cap::from_handle)
                            .collect();
                        let _ = k.send_with_capabilities(
                            ChannelId::from_handle(ch),
                            message(n),
                            attached,
                        );
                    }
                }
                4 | 5 => {
                    if let Some(ch) = pick(&mut rng, &caps) {
                        let timeout = Duration::from_millis(rng.below(20));
                        if let Ok(received) =
                            k.receive_with_capabilities(ChannelId::from_handle(ch), Some(timeout))
                        {
                            // Keep some of what arrived, release the rest.
                            for cap in received.capabilities {
                                if rng.chance(500) {
                                    let _ = KernelApi::drop_capability(k, cap);
                                }
                            }
                        }
                    }
                }
                6 => {
                    if let Some(h) = pick(&mut rng, &caps) {
                        let rights = Rights::from_bits(rng.next_u64() as u32);
                        let _ = k.clone_capability(&Cap::from_handle(h), rights);
                    }
                }
                7 => {
                    if let (Some(h), Some(to)) = (pick(&mut rng, &caps), pick(&mut rng, &live)) {
                        if rng.chance(500) {
                            let _ = KernelApi::delegate_capability(k, Cap::from_handle(h), to);
                        } else {
                            let _ = k.grant_capability(to, Cap::from_handle(h));
                        }
                    }
                }
                8 => {
                    if let Some(h) = pick(&mut rng, &caps) {
                        let _ = KernelApi::drop_capability(k, Cap::from_handle(h));
                    }
                }
                _ => {
                    let mut descriptor = TaskDescriptor::new(format!("t{op}"));
                    if let Some(h) = pick(&mut rng, &caps) {
                        descriptor = descriptor.with_capability(Cap::from_handle(h));
                    }
                    if let Some(h) = pick(&mut rng, &caps) {
                        descriptor = descriptor.with_exit_channel(ChannelId::from_handle(h));
                    }
                    if let Ok(handle) = k.spawn_task(descriptor) {
                        tasks.push(handle.task_id);
                    }
                }
            }
        });
        if rng.chance(30) {
            if let Some(victim) = pick(&mut rng, &live) {
                if victim != kernel.root_task() {
                    kernel.terminate_task_with_reason(victim, ExitReason::Normal);
                }
            }
        }
        if rng.chance(50) {
            kernel.advance_time(Duration::from_millis(rng.below(30)));
        }
        if let Err(violation) = kernel.check_invariants() {
            panic!("seed {seed}, op {op}: {violation:?}");
        }
    }

    // Shut everything down: every message must have ended exactly once and
    // no capability may survive.
    for task in kernel
        .core()
        .tasks()
        .iter()
        .map(|t| t.id)
        .collect::<Vec<_>>()
    {
        kernel.terminate_task_with_reason(task, ExitReason::Normal);
    }
    kernel.discard_held();
    kernel.check_invariants().unwrap();
    let trace = kernel.trace();
    let sent: BTreeSet<u64> = trace
        .events()
        .filter_map(|e| match e {
            TraceEvent::Sent { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    // Messages still in flight after every task ended can only be in a
    // cycle of channels whose receive rights travel in each other's queues
    // (the core keeps such cycles, like SCM_RIGHTS cycles; they confer no
    // authority since no task can ever receive them).
    let in_flight = kernel.in_flight();
    assert!(
        kernel.core().channel_count() == 0 || !in_flight.is_empty(),
        "seed {seed}: channels outlived every task with nothing in them"
    );
    let mut ended: Vec<u64> = trace
        .delivered()
        .into_iter()
        .chain(trace.lost())
        .chain(in_flight)
        .collect();
    ended.sort_unstable();
    let unique: BTreeSet<u64> = ended.iter().copied().collect();
    assert_eq!(
        ended.len(),
        unique.len(),
        "seed {seed}: a message ended twice"
    );
    assert_eq!(unique, sent, "seed {seed}: a message vanished unaccounted");
}

#[test]
fn random_operations_keep_every_invariant_after_every_step() {
    for seed in 0..SEEDS {
        run(seed);
    }
}
