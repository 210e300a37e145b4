//! QEMU suite `soak`: kernel memory accounting under load and attack.
//!
//! The root runs the process manager's supervisor over
//! `userspace/process_manager/manifests/suite-soak.manifest` (one service, `steady`, restarted
//! whenever it dies) and reads the kernel's heap and frame counts through
//! its `KernelInfo` capability (`InfoRequest::Memory`) before and after
//! each phase:
//!
//! 1. **spawn/exit**: 10,000 tasks (`soak_child`) spawned and reaped;
//! 2. **crash/restart**: the `steady` service killed 1,000 times, each time
//!    restarted by the supervisor;
//! 3. **heap attack** (`attack_heap_cycles`, issue 13 finding 3): a task
//!    with one send right fills channel pairs whose queues hold each
//!    other's receive right. It must stop at its own budget
//!    (`ResourceExhausted(MemoryBudget)`), everyone else must keep working
//!    meanwhile (channels, IPC to the service, spawning), and once it is
//!    killed the counts must be back exactly.
//!
//! Every phase must end with the kernel heap's used bytes and the free
//! frame count exactly where they started. The audit ring's records carry
//! trust-domain names, so its heap share depends on which events it holds;
//! before each reading the suite fills it with one kind of event
//! ([`settle_audit`]), so that two readings compare like with like. Before
//! that it sleeps ([`QUIESCE`]), so that every other task runs until it
//! blocks: `steady` drops the reply capability of the suite's last ping
//! only after its answer has woken the suite, and a reading taken while it
//! still holds that capability counts the reply channel as live.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use pandagen_process_manager::demo::{ping, STEADY};
use pandagen_process_manager::{
    parse_manifest, BootCapabilities, LifecycleState, Supervisor, SupervisorConfig,
};
use pandagen_rt::abi::info::{InfoReply, InfoRequest, MemorySummary};
use pandagen_rt::abi::{
    Cap, CapHandle, ChannelId, ExitReason, KernelApi, KernelError, Rights, TaskDescriptor,
};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{wait_exit, AttackReport, Tally, ATTACK_REPORT_ACTION};

const MANIFEST: &[u8] = include_bytes!("../../../process_manager/manifests/suite-soak.manifest");
const SPAWN_CYCLES: u32 = 10_000;
const CRASH_CYCLES: u32 = 1_000;
/// Cycles run before a baseline is taken, so that tables that grow to a
/// working size (task slots, the kernel's free lists) have done so.
const WARM_UP: u32 = 32;
/// More than the kernel's audit ring holds (4096 records).
const AUDIT_FILL: u32 = 2_100;
/// Long enough for `steady` to finish handling a ping under TCG (it needs
/// microseconds) and block receiving again.
const QUIESCE: Duration = Duration::from_millis(50);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const RESTART_TIMEOUT: Duration = Duration::from_secs(5);

pandagen_rt::entry!(main);

/// The two counts every phase must return to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    heap_used: u64,
    frames_free: u64,
}

impl Reading {
    fn of(summary: MemorySummary) -> Self {
        Reading {
            heap_used: summary.heap_used,
            frames_free: summary.frames_free,
        }
    }
}

struct Soak {
    info: CapHandle,
    supervisor: Supervisor,
    exits: ChannelId,
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let mut tally = Tally::default();
    let manifest = match parse_manifest(MANIFEST) {
        Ok(manifest) => manifest,
        Err(error) => {
            tally.check("soak/manifest", Err(format!("{error}")));
            tally.finish(kernel)
        }
    };
    let caps = BootCapabilities::from_root_handles(&startup.capabilities);
    let Some(info) = caps.kernel_info.as_ref().map(Cap::handle) else {
        tally.check("soak/kernel_info", Err("no KernelInfo capability".into()));
        tally.finish(kernel)
    };
    let mut supervisor = Supervisor::new(manifest, caps, SupervisorConfig::default());
    supervisor.boot(kernel)?;
    let exits = kernel.create_channel()?;
    let mut soak = Soak {
        info,
        supervisor,
        exits,
    };
    tally.check("soak/steady_started", soak.until_restarted(kernel, None));

    let outcome = soak.spawn_exit_phase(kernel);
    tally.check("soak/spawn_exit_10000_back_to_baseline", outcome);
    let outcome = soak.crash_restart_phase(kernel);
    tally.check("soak/crash_restart_1000_back_to_baseline", outcome);
    soak.attack_phase(kernel, &mut tally);
    tally.finish(kernel)
}

impl Soak {
    fn memory(&self, kernel: &mut Kernel) -> Result<Reading, String> {
        match kernel.kernel_info(self.info, InfoRequest::Memory) {
            Ok(InfoReply::Memory(summary)) => Ok(Reading::of(summary)),
            Ok(other) => Err(format!("unexpected info reply {other:?}")),
            Err(error) => Err(format!("kernel info: {error}")),
        }
    }

    /// A reading taken once every other task has blocked, with the audit
    /// ring full of one kind of record.
    fn settled_reading(&self, kernel: &mut Kernel) -> Result<Reading, String> {
        kernel
            .sleep(QUIESCE)
            .map_err(|e| format!("sleeping until the others block: {e}"))?;
        settle_audit(kernel).map_err(|e| format!("filling the audit ring: {e}"))?;
        self.memory(kernel)
    }

    fn spawn_and_reap(&mut self, kernel: &mut Kernel) -> Result<(), String> {
        let descriptor = TaskDescriptor::new("soak-child".into())
            .with_image("soak_child")
            .with_exit_channel(self.exits);
        kernel
            .spawn_task(descriptor)
            .map_err(|e| format!("spawn: {e}"))?;
        match wait_exit(kernel, self.exits, EXIT_TIMEOUT)?.reason {
            ExitReason::Normal => Ok(()),
            other => Err(format!("soak_child ended {other:?}")),
        }
    }

    fn spawn_exit_phase(&mut self, kernel: &mut Kernel) -> Result<(), String> {
        for _ in 0..WARM_UP {
            self.spawn_and_reap(kernel)?;
        }
        let before = self.settled_reading(kernel)?;
        let started = kernel.now();
        for cycle in 0..SPAWN_CYCLES {
            self.spawn_and_reap(kernel)
                .map_err(|e| format!("cycle {cycle}: {e}"))?;
        }
        let took = kernel.now().saturating_duration_since(started);
        let after = self.settled_reading(kernel)?;
        print_phase("spawn/exit", SPAWN_CYCLES, took, before, after);
        same(before, after)
    }

    /// Step the supervisor until `steady` runs an instance other than
    /// `previous` (any instance if `None`).
    fn until_restarted(
        &mut self,
        kernel: &mut Kernel,
        previous: Option<pandagen_rt::abi::TaskId>,
    ) -> Result<(), String> {
        let started = kernel.now();
        loop {
            let _ = self.supervisor.step(kernel);
            self.supervisor.events_mut().drain().for_each(drop);
            if let Some(s) = self.supervisor.service(STEADY) {
                if s.state == LifecycleState::Running
                    && s.task_id.is_some()
                    && s.task_id != previous
                {
                    return Ok(());
                }
            }
            if kernel.now().saturating_duration_since(started) > RESTART_TIMEOUT {
                return Err(format!(
                    "steady not running again: {:?}",
                    self.supervisor.service(STEADY)
                ));
            }
        }
    }

    fn crash_once(&mut self, kernel: &mut Kernel) -> Result<(), String> {
        let task = self
            .supervisor
            .service(STEADY)
            .and_then(|s| s.task_id)
            .ok_or_else(|| String::from("steady has no instance"))?;
        let reason = ExitReason::Failure {
            error: "crashed by the soak".into(),
        };
        kernel
            .terminate(task, reason)
            .map_err(|e| format!("terminate: {e}"))?;
        self.until_restarted(kernel, Some(task))
    }

    fn crash_restart_phase(&mut self, kernel: &mut Kernel) -> Result<(), String> {
        for _ in 0..WARM_UP / 8 {
            self.crash_once(kernel)?;
        }
        ping(kernel, STEADY, Duration::from_secs(1))
            .map_err(|e| format!("steady does not answer: {e}"))?;
        let before = self.settled_reading(kernel)?;
        let started = kernel.now();
        for cycle in 0..CRASH_CYCLES {
            self.crash_once(kernel)
                .map_err(|e| format!("cycle {cycle}: {e}"))?;
        }
        let took = kernel.now().saturating_duration_since(started);
        ping(kernel, STEADY, Duration::from_secs(1))
            .map_err(|e| format!("steady does not answer after the soak: {e}"))?;
        let after = self.settled_reading(kernel)?;
        print_phase("crash/restart", CRASH_CYCLES, took, before, after);
        same(before, after)
    }

    fn attack_phase(&mut self, kernel: &mut Kernel, tally: &mut Tally) {
        let outcome = (|| -> Result<(Reading, ChannelId, ChannelId), String> {
            let report = kernel.create_channel().map_err(|e| format!("{e}"))?;
            let attack_exits = kernel.create_channel().map_err(|e| format!("{e}"))?;
            let before = self.settled_reading(kernel)?;
            Ok((before, report, attack_exits))
        })();
        let (before, report, attack_exits) = match outcome {
            Ok(set_up) => set_up,
            Err(error) => return tally.check("soak/attack_setup", Err(error)),
        };
        let attacker = (|| -> Result<_, KernelError> {
            let send =
                kernel.clone_capability(&Cap::from(report), Rights::SEND | Rights::TRANSFER)?;
            let descriptor = TaskDescriptor::new("attacker".into())
                .with_image("attack_heap_cycles")
                .with_exit_channel(attack_exits)
                .with_capability(send);
            kernel.spawn_task(descriptor)
        })();
        let attacker = match attacker {
            Ok(handle) => handle.task_id,
            Err(error) => return tally.check("soak/attack_spawn", Err(format!("{error}"))),
        };
        let stopped = (|| -> Result<(), String> {
            let message = kernel
                .receive_message(report, Some(Duration::from_secs(60)))
                .map_err(|e| format!("no report from the attacker: {e}"))?;
            if message.action != ATTACK_REPORT_ACTION {
                return Err(format!("unexpected {:?}", message.action));
            }
            let outcome: AttackReport = message
                .payload
                .decode()
                .map_err(|e| format!("bad report: {e}"))?;
            println!(
                "soak: the attacker built {} channel pairs, queued {} bytes, then got {}",
                outcome.pairs, outcome.bytes_queued, outcome.refusal
            );
            if outcome.refusal.contains("MemoryBudget") {
                Ok(())
            } else {
                Err(format!("stopped by {}, not its budget", outcome.refusal))
            }
        })();
        tally.check("soak/attack_stops_at_its_own_budget", stopped);
        let others = (|| -> Result<(), String> {
            let channel = kernel
                .create_channel()
                .map_err(|e| format!("create_channel: {e}"))?;
            kernel
                .drop_capability(Cap::from(channel))
                .map_err(|e| format!("drop: {e}"))?;
            ping(kernel, STEADY, Duration::from_secs(1)).map_err(|e| format!("IPC: {e}"))?;
            self.spawn_and_reap(kernel)
        })();
        tally.check("soak/others_work_during_the_attack", others);
        let killed = (|| -> Result<Reading, String> {
            kernel
                .terminate(
                    attacker,
                    ExitReason::Failure {
                        error: "killed by the soak".into(),
                    },
                )
                .map_err(|e| format!("terminate: {e}"))?;
            wait_exit(kernel, attack_exits, EXIT_TIMEOUT)?;
            self.settled_reading(kernel)
        })();
        let outcome = killed.and_then(|after| {
            print_phase("heap attack", 1, Duration::ZERO, before, after);
            same(before, after)
        });
        tally.check("soak/attack_memory_back_to_baseline", outcome);
        for channel in [report, attack_exits] {
            let _ = kernel.drop_capability(Cap::from(channel));
        }
    }
}

/// Fill the kernel's audit ring with records of one kind (a clone and its
/// drop, over and over), so that its heap share is the same at every
/// reading.
fn settle_audit(kernel: &mut Kernel) -> Result<(), KernelError> {
    let channel = Cap::from(kernel.create_channel()?);
    for _ in 0..AUDIT_FILL {
        let copy = kernel.clone_capability(&channel, Rights::SEND)?;
        kernel.drop_capability(copy)?;
    }
    kernel.drop_capability(channel)
}

fn same(before: Reading, after: Reading) -> Result<(), String> {
    if before == after {
        Ok(())
    } else {
        Err(format!("before {before:?}, after {after:?}"))
    }
}

fn print_phase(phase: &str, cycles: u32, took: Duration, before: Reading, after: Reading) {
    println!(
        "soak: {phase}: {cycles} cycles in {} ms; heap used {} -> {} bytes, frames free {} -> {}",
        took.as_millis(),
        before.heap_used,
        after.heap_used,
        before.frames_free,
        after.frames_free
    );
}
