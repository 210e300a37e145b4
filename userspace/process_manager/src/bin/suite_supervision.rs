//! QEMU suite `supervision`: the root task runs the process manager's
//! supervisor (the same library code the host tests drive on the
//! SimulatedKernel) over `manifests/suite-supervision.manifest`, lets the
//! crasher fail and be restarted under its backoff policy until the policy
//! gives up, pings the steady service all along, while a separate client
//! task (`pm_client`) follows the crasher through a restart, and another
//! (`pm_intruder`), which holds no control capability, is refused every
//! state-changing request. It reports one `[TEST]` line per check and
//! `[SUITE] DONE` (see `qemu/README.md`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use pandagen_process_manager::demo::{ping, CRASHER, STEADY};
use pandagen_process_manager::policy::backoff_delay;
use pandagen_process_manager::{
    parse_manifest, BootCapabilities, LifecycleState, PmError, Supervisor, SupervisorConfig,
    SupervisorEvent,
};
use pandagen_rt::abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_rt::abi::{
    ChannelId, ExitNotification, ExitReason, Instant, KernelApi, KernelError, ServiceId,
    TaskDescriptor, TaskId,
};
use pandagen_rt::{println, Kernel};

const MANIFEST: &[u8] = include_bytes!("../../manifests/suite-supervision.manifest");
/// The whole scenario takes about 2.2 s of kernel time.
const DEADLINE: Duration = Duration::from_secs(20);
const PING_EVERY: Duration = Duration::from_millis(100);
/// Short, so a ping never holds up supervision long enough to skew the
/// measured backoff delays.
const PING_TIMEOUT: Duration = Duration::from_millis(200);

pandagen_rt::entry!(main);

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, name: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("[TEST] PASS {name}");
            }
            Err(reason) => {
                self.failed += 1;
                println!("[TEST] FAIL {name}: {reason}");
            }
        }
    }
}

fn times(events: &[(Instant, SupervisorEvent)], service: ServiceId, spawned: bool) -> Vec<Instant> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            SupervisorEvent::Spawned { service: s, .. } if spawned && *s == service => Some(*at),
            SupervisorEvent::Ended { service: s, .. } if !spawned && *s == service => Some(*at),
            _ => None,
        })
        .collect()
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let mut tally = Tally {
        passed: 0,
        failed: 0,
    };
    let manifest = match parse_manifest(MANIFEST) {
        Ok(manifest) => manifest,
        Err(error) => {
            tally.check("manifest", Err(alloc::format!("{error}")));
            return finish(kernel, tally);
        }
    };
    let config = SupervisorConfig {
        liveness_interval: Duration::from_millis(200),
        ..SupervisorConfig::default()
    };
    let caps = BootCapabilities::from_root_handles(&startup.capabilities);
    let mut supervisor = Supervisor::new(manifest, caps, config);
    supervisor.boot(kernel)?;
    let client_exits = match spawn(kernel, "pm_client") {
        Ok((_, exits)) => Some(exits),
        Err(error) => {
            println!("supervision: cannot spawn pm_client: {error}");
            None
        }
    };
    let intruder = match spawn(kernel, "pm_intruder") {
        Ok(spawned) => Some(spawned),
        Err(error) => {
            println!("supervision: cannot spawn pm_intruder: {error}");
            None
        }
    };

    let start = kernel.now();
    let mut events: Vec<(Instant, SupervisorEvent)> = Vec::new();
    let (mut pings, mut ping_failures) = (0u32, 0u32);
    let mut last_ping = start;
    loop {
        let _ = supervisor.step(kernel);
        for (at, event) in supervisor.events_mut().drain() {
            println!("supervision: [{} ms] {event:?}", at.as_millis());
            events.push((at, event));
        }
        let now = kernel.now();
        let steady_up = supervisor
            .service(STEADY)
            .is_some_and(|s| s.state == LifecycleState::Running);
        if steady_up && now.saturating_duration_since(last_ping) >= PING_EVERY {
            last_ping = now;
            pings += 1;
            if let Err(error) = ping(kernel, STEADY, PING_TIMEOUT) {
                ping_failures += 1;
                println!("supervision: ping failed: {error}");
            }
        }
        let crasher = supervisor.service(CRASHER);
        if crasher.as_ref().is_some_and(|c| c.gave_up) {
            break;
        }
        if now.saturating_duration_since(start) > DEADLINE {
            println!("supervision: deadline passed");
            break;
        }
    }

    let spawned_steady = times(&events, STEADY, true);
    let spawned = times(&events, CRASHER, true);
    let ended = times(&events, CRASHER, false);
    tally.check(
        "dependency order",
        match (spawned_steady.first(), spawned.first()) {
            (Some(s), Some(c)) if s <= c => Ok(()),
            other => Err(alloc::format!("steady/crasher first spawns {other:?}")),
        },
    );
    let crasher = supervisor.service(CRASHER);
    tally.check(
        "crasher restarted three times, then given up",
        match &crasher {
            Some(c) if c.restart_count == 3 && c.gave_up && c.state == LifecycleState::Failed => {
                Ok(())
            }
            other => Err(alloc::format!("{other:?}")),
        },
    );
    let identities: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            SupervisorEvent::Spawned {
                service, execution, ..
            } if *service == CRASHER => Some(*execution),
            _ => None,
        })
        .collect();
    let mut distinct = identities.clone();
    distinct.sort();
    distinct.dedup();
    tally.check(
        "every restart is a fresh identity",
        if identities.len() == 4 && distinct.len() == 4 {
            Ok(())
        } else {
            Err(alloc::format!("{identities:?}"))
        },
    );
    let mut waits = Ok(());
    for i in 0..3 {
        match (ended.get(i), spawned.get(i + 1)) {
            (Some(end), Some(next)) => {
                let waited = next.saturating_duration_since(*end);
                let expected = backoff_delay(i as u32 + 1);
                // Never early; late by at most a generous scheduling margin.
                if waited < expected || waited > expected * 2 + Duration::from_millis(100) {
                    waits = Err(alloc::format!(
                        "wait {i}: {waited:?}, expected {expected:?}"
                    ));
                }
            }
            _ => waits = Err(alloc::format!("missing restart {i}")),
        }
    }
    tally.check("backoff delays 100/200/400 ms on the kernel clock", waits);
    tally.check(
        "a client of the restarted crasher gets a closed channel, then finds the new instance",
        client_verdict(kernel, client_exits, "pm_client"),
    );
    tally.check(
        "a task without the control capability is refused stop/restart/crash/start, and nothing changes",
        intruder_verdict(kernel, intruder, &events),
    );
    let steady = supervisor.service(STEADY);
    tally.check(
        "the steady service kept serving",
        match &steady {
            Some(s)
                if s.state == LifecycleState::Running
                    && s.restart_count == 0
                    && pings >= 10
                    && ping_failures == 0 =>
            {
                Ok(())
            }
            other => Err(alloc::format!(
                "{pings} pings, {ping_failures} failed, {other:?}"
            )),
        },
    );
    finish(kernel, tally)
}

/// How `pm_intruder` ended (it checks the answers it got), and whether
/// the supervisor logged each of its five requests as refused. That
/// nothing changed is what the other checks show: the crasher restarted
/// exactly three times, the steady service never.
fn intruder_verdict(
    kernel: &mut Kernel,
    intruder: Option<(TaskId, ChannelId)>,
    events: &[(Instant, SupervisorEvent)],
) -> Result<(), String> {
    let (task, exits) = intruder.ok_or_else(|| String::from("pm_intruder could not be spawned"))?;
    client_verdict(kernel, Some(exits), "pm_intruder")?;
    let refused = events
        .iter()
        .filter(|(_, e)| {
            *e == SupervisorEvent::ControlRefused {
                from: Some(task),
                refusal: PmError::ControlCapabilityRequired,
            }
        })
        .count();
    if refused == 5 {
        Ok(())
    } else {
        Err(alloc::format!("{refused} refusals logged, expected 5"))
    }
}

/// How a client task (`pm_client`, see `demo::observe_restart`, or
/// `pm_intruder`) ended: it has long finished by the time the crasher has
/// been given up.
fn client_verdict(kernel: &mut Kernel, exits: Option<ChannelId>, name: &str) -> Result<(), String> {
    let exits = exits.ok_or_else(|| alloc::format!("{name} could not be spawned"))?;
    let envelope = kernel
        .receive_message(exits, Some(Duration::from_secs(10)))
        .map_err(|e| alloc::format!("no exit notification from {name}: {e}"))?;
    if envelope.action != EXIT_NOTIFICATION_ACTION {
        return Err(alloc::format!("unexpected {:?}", envelope.action));
    }
    let notification: ExitNotification = envelope
        .payload
        .decode()
        .map_err(|e| alloc::format!("bad exit notification: {e}"))?;
    match notification.reason {
        ExitReason::Normal => Ok(()),
        other => Err(alloc::format!("{name}: {other:?}")),
    }
}

/// Spawn a client task from `image`, with no capabilities and its exit
/// notification sent to a channel of its own (not the supervisor's).
fn spawn(kernel: &mut Kernel, image: &str) -> Result<(TaskId, ChannelId), KernelError> {
    let exits = kernel.create_channel()?;
    let descriptor = TaskDescriptor::new(image.into())
        .with_image(image)
        .with_exit_channel(exits);
    let handle = kernel.spawn_task(descriptor)?;
    Ok((handle.task_id, exits))
}

fn finish(kernel: &mut Kernel, tally: Tally) -> Result<(), KernelError> {
    println!(
        "[SUITE] DONE passed={} failed={}",
        tally.passed, tally.failed
    );
    if tally.failed == 0 {
        kernel.exit(ExitReason::Normal)
    } else {
        kernel.exit(ExitReason::Failure {
            error: alloc::format!("{} checks failed", tally.failed).into(),
        })
    }
}
