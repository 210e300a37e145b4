//! QEMU suite `adversary`: hostile ring-3 programs against the whole
//! system. The image boots as `cargo xtask run` does — the process manager
//! as root, supervising storage, the transformer, the pipeline executor and
//! the console — plus this program, a service of
//! `manifests/suite-adversary.manifest` holding a registration for its own
//! id, the boot image (to spawn attackers) and kernel introspection.
//!
//! For every entry of [`ATTACKS`] it spawns the attack program (its child,
//! so it can kill it), lets it run until it has reported or died, and then
//! checks:
//! * the attacker's authority did not work — its own report, and the
//!   suite's own view of what the attack aimed at ([`Aim`]);
//! * once the attacker is killed, the kernel is up and every service
//!   answers (process manager, storage, transformer and pipeline executor
//!   a request each, from the same instance as before the attack: none was
//!   brought down and restarted; the console is alive);
//! * the kernel's heap in use and its free frames are exactly what they
//!   were before the attacker was spawned.
//!
//! The attacks run twice. The first round lets the kernel's tables (task
//! and channel slots, free lists) grow to what the attacks need, which they
//! keep as capacity; the second round must then leave heap and frames
//! exactly as it found them. Frames are compared in both rounds.
//!
//! Adding an attack: write `userspace/scenarios/src/bin/attack_<name>.rs`
//! (see [`pandagen_scenarios::adversary`] for the report it sends), add a
//! `[[bin]]` for it, one [`Attack`] line below, and its name to the
//! `adversary-bios` programs in `xtask/src/suites.rs`.
//!
//! Output: one `[TEST]` line per check and `[SUITE] DONE`; then the suite
//! powers the machine off (QEMU exits 33; the verdict is the DONE line).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::identity::MAX_EXIT_REASON_TEXT;
use pandagen_abi::info::{InfoReply, InfoRequest, MemorySummary, TaskRunState, MAX_AUDIT_ENTRIES};
use pandagen_abi::services::{PIPELINE_EXECUTOR, PROCESS_MANAGER, STORAGE, TRANSFORMER};
use pandagen_abi::{
    identity::CpuFault, Cap, CapHandle, ChannelId, Duration, ExitNotification, ExitReason,
    FailureCause, IdentityKind, KernelApi, KernelError, MessageEnvelope, MessagePayload, Priority,
    Rights, ServiceId, TaskDescriptor, TaskId, TrustDomain,
};
use pandagen_process_manager::demo::ping;
use pandagen_rt::device::Ports;
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::adversary::{
    AUDIT_FLOOD, DEVICE_ATTACKER_BUDGET, READY_ACTION, REFUSALS_KEPT_PER_TASK, REPORT_ACTION,
    REPORT_SCHEMA,
};
use pandagen_scenarios::{AttackReport, Tally, ATTACK_REPORT_ACTION};

pandagen_rt::entry!(main, heap = 2 << 20);

/// The services that must answer after every attack.
const SERVICES: [ServiceId; 4] = [PROCESS_MANAGER, STORAGE, TRANSFORMER, PIPELINE_EXECUTOR];
/// Attackers run above every service (the process manager runs at
/// `HIGH`): an attack runs to its end before any service reacts, which is
/// the harshest schedule for the services and makes what the attack leaves
/// queued — and so the kernel's queue capacities — the same every round.
const ATTACKER_PRIORITY: Priority = Priority(Priority::HIGH.0 + 1);
/// How long an attacker may run before it must have reported or died.
const ATTACK_TIME: Duration = Duration::from_secs(30);
/// How long a service may take to answer.
const ANSWER_TIME: Duration = Duration::from_secs(5);

/// What an attack aims at, which the suite checks itself after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// The system services' ids (finding 2): afterwards each is still
    /// registered by the same task as before.
    ServiceIds,
    /// Other tasks' capability spaces (findings 4 and 6): afterwards no
    /// service holds more capabilities than before.
    CapabilitySpaces,
    /// The kernel itself (findings 1, 3, 5 and 8): the kernel stays up,
    /// which every check after the attack needs, and the memory check
    /// finds its heap and frames back.
    Kernel,
    /// Its own exit notification (finding 7): it must arrive, its reason
    /// bounded, although the attacker filled the channel its parent
    /// receives on (whose bound kernel channel is the exit route).
    ExitNotification,
    /// The audit log (finding 8): read back after the attack, the
    /// attacker's flood of refusals is folded into at most
    /// `REFUSALS_KEPT_PER_TASK` records that still count every refusal,
    /// and its real actions before and after the flood (a clone each) are
    /// still there.
    AuditLog,
    /// A service's supervision (finding 7, under QEMU): the attacker
    /// floods the process manager's public channel while a service it
    /// supervises ends, and watches the new instance appear; the service
    /// ids are checked as for `ServiceIds`.
    RestartsAService,
    /// The suite's own port window (device calls): the suite opens its
    /// ports and calls the attacker, which the kernel switches to
    /// directly; the attacker's `in` on those ports must fault (a
    /// general-protection fault in its exit notification).
    ForeignPortWindow,
}

/// One attack program and what it is given.
struct Attack {
    /// The program in the boot image (`bin/<image>`).
    image: &'static str,
    aim: Aim,
    /// Lend the attacker this suite's registration (it hands it back with
    /// its report).
    lend_registration: bool,
    /// Lend the attacker this suite's device capabilities (ports, device
    /// memory, interrupt line, DMA; handed back with its report), and run
    /// it with [`DEVICE_ATTACKER_BUDGET`] instead of [`ATTACKER_BUDGET`].
    lend_devices: bool,
    /// Lend the attacker the framebuffer's capability (handed back with
    /// its report).
    lend_framebuffer: bool,
}

const ATTACKS: &[Attack] = &[
    Attack {
        image: "attack_squat",
        aim: Aim::ServiceIds,
        lend_registration: true,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_grant_flood",
        aim: Aim::CapabilitySpaces,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_garbage_caps",
        aim: Aim::CapabilitySpaces,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_exit_flood",
        aim: Aim::ExitNotification,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_kernel_channel",
        aim: Aim::ServiceIds,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_entry",
        aim: Aim::Kernel,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_heap_cycles",
        aim: Aim::Kernel,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_console",
        aim: Aim::AuditLog,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_storage_key",
        aim: Aim::CapabilitySpaces,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_pm_flood",
        aim: Aim::RestartsAService,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_port_window",
        aim: Aim::ForeignPortWindow,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_devices",
        aim: Aim::Kernel,
        lend_registration: false,
        lend_devices: true,
        lend_framebuffer: false,
    },
    Attack {
        image: "attack_screen",
        aim: Aim::Kernel,
        lend_registration: false,
        lend_devices: false,
        lend_framebuffer: true,
    },
];

/// This task's authority (its manifest entry: `registry, boot-image,
/// kernel-info, framebuffer`, then the RTC's ports, device memory, the
/// RTC's line and a DMA allowance).
struct Suite {
    registration: Option<Cap<()>>,
    /// The framebuffer (while not lent).
    framebuffer: Option<Cap<()>>,
    /// Ports, device memory, interrupt line, DMA (while not lent).
    devices: Option<[Cap<()>; 4]>,
    info: CapHandle,
    /// Reports arrive here; a receive on it also takes the exit
    /// notifications of `exits`.
    inbox: ChannelId,
    /// The kernel channel bound to `inbox`, every attacker's exit route
    /// (as the process manager's is for its children): no task can send
    /// on it.
    exits: ChannelId,
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let caps = &startup.capabilities;
    let (Some(&registration), Some(&info), Some(&framebuffer)) =
        (caps.first(), caps.get(2), caps.get(3))
    else {
        return Err(KernelError::InvalidCapability);
    };
    let devices = match caps.get(4..8) {
        Some(&[ports, memory, line, dma]) => [ports, memory, line, dma].map(Cap::from_handle),
        _ => return Err(KernelError::InvalidCapability),
    };
    let inbox = kernel.create_channel()?;
    let mut suite = Suite {
        registration: Some(Cap::from_handle(registration)),
        framebuffer: Some(Cap::from_handle(framebuffer)),
        devices: Some(devices),
        info,
        inbox,
        exits: kernel.bind_kernel_channel(inbox)?,
    };
    let mut tally = Tally::default();
    for round in ["warm", "measured"] {
        for attack in ATTACKS {
            run(kernel, &mut suite, &mut tally, attack, round);
        }
    }
    let all_passed = tally.report();
    println!("adversary: done (all passed: {all_passed})");
    kernel.shutdown(suite.info)
}

/// Run one attack and check its aftermath.
fn run(kernel: &mut Kernel, suite: &mut Suite, tally: &mut Tally, attack: &Attack, round: &str) {
    let name = |check: &str| alloc::format!("adversary/{round}/{}/{check}", attack.image);
    let before = settled_memory(kernel, suite.info);
    let registrants = registrants_now(kernel);
    let held = service_caps(kernel, suite.info);
    let outcome = attack_once(kernel, suite, attack);
    let refused = match (&outcome, attack.aim) {
        (Err(e), _) => Err(e.clone()),
        (Ok(seen), Aim::ExitNotification) => match &seen.notification {
            Some(n) => bounded_failure(n),
            None => Err("its exit notification never arrived".into()),
        },
        (Ok(seen), Aim::ForeignPortWindow) => match (&seen.report, &seen.notification) {
            (Some(text), _) => Err(alloc::format!("got through: {text}")),
            (None, Some(n)) => protection_fault(n),
            (None, None) => Err("it neither reported nor ended".into()),
        },
        (Ok(seen), _) => match &seen.report {
            Some(text) if text.is_empty() => Ok(()),
            Some(text) => Err(alloc::format!("got through: {text}")),
            None => Err("no report".into()),
        },
    };
    tally.check(&name("authority_refused"), refused);
    let aimed = match attack.aim {
        Aim::ServiceIds | Aim::RestartsAService => {
            same(&registrants, &registrants_now(kernel), "registrants")
        }
        Aim::CapabilitySpaces => no_growth(&held, &service_caps(kernel, suite.info)),
        Aim::AuditLog => match &outcome {
            Ok(seen) => audit_folded(kernel, suite.info, seen.attacker),
            Err(_) => Ok(()),
        },
        Aim::ExitNotification | Aim::Kernel | Aim::ForeignPortWindow => Ok(()),
    };
    tally.check(&name("targets_untouched"), aimed);
    let answer = services_answer(kernel, suite.info)
        .and_then(|()| same(&registrants, &registrants_now(kernel), "registrants"));
    tally.check(&name("services_answer"), answer);
    let after = settled_memory(kernel, suite.info);
    let memory = match (before, after) {
        (Ok(b), Ok(a)) if round == "warm" => same(b.frames_free, a.frames_free, "free frames"),
        // The attack restarts a supervised service: a new task, identity
        // and execution, for which the kernel's tables are laid out
        // again. More heap afterwards would be a leak; less is their fit.
        (Ok(b), Ok(a)) if attack.aim == Aim::RestartsAService => same(
            (b.heap_used.max(a.heap_used), b.frames_free),
            (b.heap_used, a.frames_free),
            "(heap bytes in use, at most as before; free frames)",
        ),
        (Ok(b), Ok(a)) => same(
            (b.heap_used, b.frames_free),
            (a.heap_used, a.frames_free),
            "(heap bytes in use, free frames)",
        ),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    tally.check(&name("memory_returned"), memory);
}

/// What the suite saw of one attacker.
struct Seen {
    attacker: TaskId,
    /// Its report's text (empty: everything was refused).
    report: Option<String>,
    /// Its exit notification.
    notification: Option<ExitNotification>,
}

/// What each attacker may make the kernel hold: enough kernel memory to
/// fill a whole capability space with channels (the grant-flood attack
/// must reach a full space), and frames for its image and the children the
/// exit-flood attack spawns.
const ATTACKER_BUDGET: pandagen_abi::Budget = pandagen_abi::Budget::new(1 << 20, 8192);
/// How long the suite waits for a port-window attacker's ready message,
/// and then for its answer (it never answers: it reports or faults).
const CALL_TIME: Duration = Duration::from_millis(500);

/// Spawn the attacker, wait until it has reported or died, kill it if it
/// still lives, and collect what it sent. Everything made for it is gone
/// when this returns.
fn attack_once(kernel: &mut Kernel, suite: &mut Suite, attack: &Attack) -> Result<Seen, String> {
    let to_inbox = kernel
        .clone_capability(&Cap::from(suite.inbox), Rights::SEND | Rights::TRANSFER)
        .map_err(|e| alloc::format!("inbox capability: {e}"))?;
    let mut gifts = vec![to_inbox];
    if attack.lend_registration {
        gifts.extend(suite.registration.take());
    }
    let mut budget = ATTACKER_BUDGET;
    if attack.lend_devices {
        let lent = suite
            .devices
            .take()
            .ok_or("the device capabilities are lent already")?;
        gifts.extend(lent);
        budget = DEVICE_ATTACKER_BUDGET;
    }
    if attack.lend_framebuffer {
        let lent = suite
            .framebuffer
            .take()
            .ok_or("the framebuffer is lent already")?;
        gifts.push(lent);
    }
    let descriptor = TaskDescriptor::new(attack.image.into())
        .with_image(attack.image)
        .with_identity(IdentityKind::Component, TrustDomain::user())
        .with_priority(ATTACKER_PRIORITY)
        .with_exit_channel(suite.exits)
        .with_budget(budget);
    let descriptor = gifts
        .into_iter()
        .fold(descriptor, |d, cap| d.with_capability(cap));
    let child = kernel
        .spawn_task(descriptor)
        .map_err(|e| alloc::format!("spawn {}: {e}", attack.image))?;
    let attacker = child.task_id;
    // A failure here is reported once the attacker is gone.
    let called = match attack.aim {
        Aim::ForeignPortWindow => call_with_ports_open(kernel, suite, attacker),
        _ => Ok(()),
    };
    // The attacker runs undisturbed (nothing is received meanwhile, so it
    // can fill the inbox) until it waits for good or has ended.
    let deadline = kernel.now() + ATTACK_TIME;
    while !settled(kernel, suite.info, attacker) {
        if kernel.now() >= deadline {
            break;
        }
        let _ = kernel.sleep(Duration::from_millis(20));
    }
    let mut seen = Seen {
        attacker,
        report: None,
        notification: None,
    };
    drain(kernel, suite, attacker, &mut seen, Duration::ZERO);
    if seen.notification.is_none() {
        let reason = ExitReason::Cancelled {
            reason: "killed by the adversary suite".into(),
        };
        kernel
            .terminate(attacker, reason)
            .map_err(|e| alloc::format!("kill: {e}"))?;
        drain(kernel, suite, attacker, &mut seen, ANSWER_TIME);
    }
    if attack.lend_registration && suite.registration.is_none() {
        return Err("the lent registration did not come back".into());
    }
    if attack.lend_devices && suite.devices.is_none() {
        return Err("the lent device capabilities did not come back".into());
    }
    if attack.lend_framebuffer && suite.framebuffer.is_none() {
        return Err("the lent framebuffer did not come back".into());
    }
    called?;
    Ok(seen)
}

/// The port-window attack: take the attacker's ready message (a send right
/// to its channel), open this suite's ports to its own `in` and `out`, and
/// call the attacker, which waits on that channel, so that the kernel
/// switches to it straight from this task.
fn call_with_ports_open(
    kernel: &mut Kernel,
    suite: &mut Suite,
    attacker: TaskId,
) -> Result<(), String> {
    let ports = suite
        .devices
        .as_ref()
        .map(|[ports, ..]| Ports::new(ports.handle()))
        .ok_or("the device capabilities are lent")?;
    ports
        .open()
        .map_err(|e| alloc::format!("open the suite's own ports: {e}"))?;
    let ready = kernel
        .receive_with_capabilities(suite.inbox, Some(ANSWER_TIME))
        .map_err(|e| alloc::format!("no ready message: {e}"))?;
    let mut capabilities = ready.capabilities.into_iter();
    let expected = ready.envelope.action == READY_ACTION && ready.envelope.source == Some(attacker);
    let called = match (expected, capabilities.next()) {
        (true, Some(to_attacker)) => {
            call_once(kernel, ChannelId::from_handle(to_attacker.handle()));
            let _ = kernel.drop_capability(to_attacker);
            Ok(())
        }
        _ => Err(alloc::format!(
            "expected its ready message, got {}",
            ready.envelope.action
        )),
    };
    for extra in capabilities {
        let _ = kernel.drop_capability(extra);
    }
    called
}

/// Send on `channel` and wait (briefly) for an answer on a channel made
/// for it: the attacker waits on `channel`, so the kernel switches to it
/// directly. It never answers: it reports a breach, or faults.
fn call_once(kernel: &mut Kernel, channel: ChannelId) {
    let Ok(reply) = kernel.create_channel() else {
        return;
    };
    let call = MessageEnvelope::new(
        ServiceId::from_raw(0),
        "adversary.call",
        REPORT_SCHEMA,
        MessagePayload::empty(),
    );
    let _ = kernel.send_then_receive(channel, call, reply, Some(CALL_TIME));
    let _ = kernel.drop_capability(Cap::<()>::from_handle(reply.handle()));
}

/// The audit log's newest records, read back after `attacker` flooded it
/// with refusals between two clones of its own (see `attack_console`):
/// its refusals are in at most `REFUSALS_KEPT_PER_TASK` records whose
/// counts add up to the whole flood, and both clones are recorded, one
/// before its refusal records and one after.
fn audit_folded(kernel: &mut Kernel, info: CapHandle, attacker: TaskId) -> Result<(), String> {
    let entries = match kernel.kernel_info(
        info,
        InfoRequest::Audit {
            last: MAX_AUDIT_ENTRIES,
        },
    ) {
        Ok(InfoReply::Audit { entries, .. }) => entries,
        other => return Err(alloc::format!("audit: {other:?}")),
    };
    let who = alloc::format!("TaskId({})", attacker.as_raw());
    let refusal = alloc::format!("InvalidUseAttempt {{ task: {who},");
    let clone = alloc::format!("owner: {who},");
    let mut refusal_records = 0;
    let mut refusals = 0u64;
    let mut clones_before = 0;
    let mut clones_after = 0;
    for entry in &entries {
        let line = entry.line.as_str();
        if line.starts_with(refusal.as_str()) {
            refusal_records += 1;
            let repeats = line
                .split("repeats: ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches(" }").parse::<u64>().ok())
                .ok_or_else(|| alloc::format!("a refusal record without its count: {line}"))?;
            refusals += 1 + repeats;
        } else if line.starts_with("Cloned {") && line.contains(clone.as_str()) {
            if refusal_records == 0 {
                clones_before += 1;
            } else {
                clones_after += 1;
            }
        }
    }
    if refusal_records == 0 || refusal_records > REFUSALS_KEPT_PER_TASK {
        return Err(alloc::format!(
            "{refusal_records} refusal records of the attacker (at most {REFUSALS_KEPT_PER_TASK} kept)"
        ));
    }
    if refusals < u64::from(AUDIT_FLOOD) {
        return Err(alloc::format!(
            "its refusal records count {refusals} refusals, it made more than {AUDIT_FLOOD}"
        ));
    }
    if clones_before == 0 || clones_after == 0 {
        return Err(alloc::format!(
            "its clones before and after the flood: {clones_before} and {clones_after} recorded"
        ));
    }
    Ok(())
}

/// The attacker ended on a general-protection fault (its `in` without a
/// window of its own).
fn protection_fault(n: &ExitNotification) -> Result<(), String> {
    match &n.reason {
        ExitReason::Failure {
            error: FailureCause::Fault(CpuFault::GeneralProtection { .. }),
        } => Ok(()),
        other => Err(alloc::format!(
            "expected a general-protection fault, it ended with {other:?}"
        )),
    }
}

/// Has `task` ended, or is it blocked for good (parked)?
fn settled(kernel: &mut Kernel, info: CapHandle, task: TaskId) -> bool {
    match kernel.kernel_info(info, InfoRequest::Tasks) {
        Ok(InfoReply::Tasks(tasks)) => tasks
            .iter()
            .find(|t| t.task == task)
            .is_none_or(|t| t.state == TaskRunState::Blocked),
        _ => false,
    }
}

/// Take everything waiting in the inbox (waiting up to `wait` for the
/// attacker's exit notification): the attacker's report and the
/// registration it hands back, and its exit notification. Other messages
/// (an attacker's noise) are dropped with what they carry.
fn drain(
    kernel: &mut Kernel,
    suite: &mut Suite,
    attacker: TaskId,
    seen: &mut Seen,
    wait: Duration,
) {
    let deadline = kernel.now() + wait;
    loop {
        let left = deadline.saturating_duration_since(kernel.now());
        let Ok(message) = kernel.receive_with_capabilities(suite.inbox, Some(left)) else {
            return;
        };
        let mut capabilities = message.capabilities.into_iter();
        let envelope = message.envelope;
        if envelope.action == ATTACK_REPORT_ACTION && envelope.source == Some(attacker) {
            seen.report = Some(heap_attack_breach(envelope.payload.decode()));
        } else if envelope.action == REPORT_ACTION && envelope.source == Some(attacker) {
            seen.report = Some(envelope.payload.decode().unwrap_or_default());
            if suite.registration.is_none() {
                suite.registration = capabilities.next();
            } else if suite.devices.is_none() {
                let back: Vec<Cap<()>> = capabilities.by_ref().take(4).collect();
                suite.devices = back.try_into().ok();
            } else if suite.framebuffer.is_none() {
                suite.framebuffer = capabilities.next();
            }
        } else if envelope.action == EXIT_NOTIFICATION_ACTION && envelope.source.is_none() {
            if let Ok(n) = envelope.payload.decode::<ExitNotification>() {
                if n.task_id == Some(attacker) {
                    seen.notification = Some(n);
                }
            }
        }
        for extra in capabilities {
            let _ = kernel.drop_capability(extra);
        }
        if seen.notification.is_some() && kernel.now() >= deadline {
            return;
        }
    }
}

/// The heap-cycle attack (`attack_heap_cycles`, shared with the soak
/// suite) reports what it built; it must have been stopped by its own
/// budget, not by the kernel's heap running out for everyone.
fn heap_attack_breach(report: Result<AttackReport, pandagen_abi::EnvelopeError>) -> String {
    match report {
        Ok(r) if r.refusal.contains("MemoryBudget") => String::new(),
        Ok(r) => alloc::format!(
            "{} channel pairs ({} bytes) stopped by {}, not its budget",
            r.pairs,
            r.bytes_queued,
            r.refusal
        ),
        Err(e) => alloc::format!("undecodable report: {e:?}"),
    }
}

/// The notification reports a failure whose text was cut to the bound.
fn bounded_failure(n: &ExitNotification) -> Result<(), String> {
    match &n.reason {
        ExitReason::Failure {
            error: FailureCause::Described(text),
        } if text.len() == MAX_EXIT_REASON_TEXT => Ok(()),
        other => Err(alloc::format!(
            "expected a failure cut to {MAX_EXIT_REASON_TEXT} bytes, got {} bytes of {:?}",
            alloc::format!("{other:?}").len(),
            core::mem::discriminant(other)
        )),
    }
}

/// Who holds each service's registration now.
fn registrants_now(kernel: &mut Kernel) -> Vec<Result<TaskId, KernelError>> {
    SERVICES
        .iter()
        .map(|s| kernel.service_registrant(*s))
        .collect()
}

/// How many capabilities each service's task holds, by service.
fn service_caps(kernel: &mut Kernel, info: CapHandle) -> Vec<(ServiceId, Option<usize>)> {
    SERVICES
        .iter()
        .map(|&service| {
            let count = kernel.service_registrant(service).ok().and_then(|task| {
                match kernel.kernel_info(info, InfoRequest::Capabilities { task }) {
                    Ok(InfoReply::Capabilities(caps)) => Some(caps.len()),
                    _ => None,
                }
            });
            (service, count)
        })
        .collect()
}

fn no_growth(
    before: &[(ServiceId, Option<usize>)],
    after: &[(ServiceId, Option<usize>)],
) -> Result<(), String> {
    for ((service, was), (_, now)) in before.iter().zip(after) {
        match (was, now) {
            (Some(was), Some(now)) if now <= was => {}
            _ => {
                return Err(alloc::format!(
                    "service {service} held {was:?} capabilities before, {now:?} after"
                ))
            }
        }
    }
    Ok(())
}

fn same<T: PartialEq + core::fmt::Debug>(before: T, after: T, what: &str) -> Result<(), String> {
    if before == after {
        Ok(())
    } else {
        Err(alloc::format!("{what}: {before:?} before, {after:?} after"))
    }
}

/// Every service answers a request, and the console still runs.
fn services_answer(kernel: &mut Kernel, info: CapHandle) -> Result<(), String> {
    for service in SERVICES {
        ping(kernel, service, ANSWER_TIME)
            .map_err(|e| alloc::format!("service {service} did not answer: {e}"))?;
    }
    match kernel.kernel_info(info, InfoRequest::Tasks) {
        Ok(InfoReply::Tasks(tasks)) if tasks.iter().any(|t| t.name.as_str() == "console") => Ok(()),
        other => Err(alloc::format!("the console is not running: {other:?}")),
    }
}

/// The kernel's memory use once the system is quiet: two readings 20 ms
/// apart that agree.
fn settled_memory(kernel: &mut Kernel, info: CapHandle) -> Result<MemorySummary, String> {
    let mut last = None;
    for _ in 0..100 {
        let reading = match kernel.kernel_info(info, InfoRequest::Memory) {
            Ok(InfoReply::Memory(memory)) => memory,
            other => return Err(alloc::format!("memory: {other:?}")),
        };
        if last == Some(reading) {
            return Ok(reading);
        }
        last = Some(reading);
        let _ = kernel.sleep(Duration::from_millis(20));
    }
    Err("kernel memory use never settled".into())
}
