//! A sweep over many random fault plans: a request/response system with
//! capability transfer runs under each, and at-most-once delivery and the
//! absence of capability leaks are checked on the complete record.

use std::collections::BTreeSet;

use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, ExitReason, Instant, KernelApi, KernelError,
    MessageEnvelope, MessagePayload, Rights, SchemaVersion, ServiceId, TaskDescriptor, TaskId,
};
use pandagen_core::{CapabilityEvent, CoreConfig};
use pandagen_sim::{
    ChannelServer, FaultPlan, Scenario, SimulatedKernel, StepOutcome, StopReason, TraceEvent,
};

const ECHO: ServiceId = ServiceId::from_raw(0x5EED);
/// A service that never reads: its queue is still full of messages (and
/// the capabilities they carry) when everything shuts down.
const SINK: ServiceId = ServiceId::from_raw(0x5111C);
const REQUESTS: u32 = 12;
const SEEDS: u64 = 200;

/// A client: sends `REQUESTS` requests, each with a reply capability and
/// every third with a fresh channel as a gift, and counts the answers.
struct Client {
    sent: u32,
    answered: u32,
    replies: Option<ChannelId>,
    give_up_at: Option<Instant>,
}

impl Client {
    fn new() -> Self {
        Client {
            sent: 0,
            answered: 0,
            replies: None,
            give_up_at: None,
        }
    }

    fn step(&mut self, k: &mut SimulatedKernel) -> StepOutcome {
        let replies = match self.replies {
            Some(ch) => ch,
            None => match k.create_channel() {
                Ok(ch) => *self.replies.insert(ch),
                Err(e) => return failure(e),
            },
        };
        match k.receive_message(replies, Some(Duration::ZERO)) {
            Ok(reply) => {
                assert!(reply.correlation_id.is_some());
                self.answered += 1;
                return StepOutcome::Progress;
            }
            Err(KernelError::Timeout) => {}
            Err(KernelError::ReceiveFailed(_)) => return StepOutcome::Progress,
            Err(e) => return failure(e),
        }
        if self.sent < REQUESTS {
            let Ok(to_echo) = k.lookup_service(ECHO) else {
                return StepOutcome::WaitUntil(k.now() + Duration::from_millis(1));
            };
            let mut handles: Vec<CapHandle> = Vec::new();
            match k.clone_capability(&Cap::from(replies), Rights::SEND | Rights::TRANSFER) {
                Ok(cap) => handles.push(cap.handle()),
                Err(e) => return failure(e),
            }
            if self.sent.is_multiple_of(3) {
                match k.create_channel() {
                    Ok(gift) => handles.push(gift.handle()),
                    Err(e) => return failure(e),
                }
            }
            let request = MessageEnvelope::new(
                ECHO,
                "echo",
                SchemaVersion::new(1, 0),
                MessagePayload::new(&self.sent).unwrap(),
            );
            let caps = handles.iter().copied().map(Cap::from_handle).collect();
            self.sent += 1;
            if k.send_with_capabilities(to_echo, request, caps).is_err() {
                // A failed send leaves the capabilities with us.
                for handle in handles {
                    KernelApi::drop_capability(k, Cap::from_handle(handle)).unwrap();
                }
            }
            self.log_to_sink(k);
            return StepOutcome::Progress;
        }
        let now = k.now();
        let give_up_at = *self
            .give_up_at
            .get_or_insert(now + Duration::from_millis(50));
        if self.answered == REQUESTS || now >= give_up_at {
            StepOutcome::Exit(ExitReason::Normal)
        } else {
            StepOutcome::WaitUntil(give_up_at)
        }
    }
}

impl Client {
    fn log_to_sink(&mut self, k: &mut SimulatedKernel) {
        let Ok(sink) = k.lookup_service(SINK) else {
            return;
        };
        let mut caps = Vec::new();
        if self.sent % 4 == 1 {
            if let Ok(gift) = k.create_channel() {
                caps.push(gift.handle());
            }
        }
        let note = MessageEnvelope::new(
            SINK,
            "log",
            SchemaVersion::new(1, 0),
            MessagePayload::new(&self.sent).unwrap(),
        );
        let attached = caps.iter().copied().map(Cap::from_handle).collect();
        if k.send_with_capabilities(sink, note, attached).is_err() {
            for handle in caps {
                KernelApi::drop_capability(k, Cap::from_handle(handle)).unwrap();
            }
        }
    }
}

fn failure(error: KernelError) -> StepOutcome {
    StepOutcome::Exit(ExitReason::Failure {
        error: format!("{error}").into(),
    })
}

fn echo_handler(
    k: &mut SimulatedKernel,
    request: pandagen_abi::ReceivedMessage,
) -> Result<(), KernelError> {
    let mut caps = request.capabilities.into_iter();
    let Some(reply_cap) = caps.next() else {
        return Ok(());
    };
    // Gifts stay in the server's space until it ends.
    let reply = MessageEnvelope::reply_to(
        &request.envelope,
        "echo.reply",
        request.envelope.payload.clone(),
    );
    let sent = k.send_message(ChannelId::from_handle(reply_cap.handle()), reply);
    KernelApi::drop_capability(k, reply_cap)?;
    sent
}

struct Outcome {
    kernel: SimulatedKernel,
    report: pandagen_sim::RunReport,
}

fn run(seed: u64) -> Outcome {
    let config = CoreConfig {
        audit_capacity: 1 << 16,
        ..CoreConfig::default()
    };
    let mut scenario = Scenario::new(SimulatedKernel::with_config(config));
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    scenario
        .spawn(
            TaskDescriptor::new("echo".into()).with_capability(registry),
            |k, _| {
                let channel = k.create_channel()?;
                k.register_service(ECHO, channel)?;
                Ok(ChannelServer::new(channel, echo_handler))
            },
        )
        .unwrap();
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    scenario
        .spawn(
            TaskDescriptor::new("sink".into()).with_capability(registry),
            |k, _| {
                let channel = k.create_channel()?;
                k.register_service(SINK, channel)?;
                Ok(())
            },
        )
        .unwrap();
    let mut clients: Vec<TaskId> = Vec::new();
    for i in 0..3 {
        let handle = scenario
            .spawn(TaskDescriptor::new(format!("client{i}")), |_, _| {
                let mut client = Client::new();
                Ok(move |k: &mut SimulatedKernel| client.step(k))
            })
            .unwrap();
        clients.push(handle.task_id);
    }
    let mut plan = FaultPlan::random(seed);
    if seed.is_multiple_of(4) {
        let victim = clients[(seed / 4 % 3) as usize];
        plan = plan.crash_after_messages(victim, 1 + (seed % 17) as u32);
    }
    scenario.kernel_mut().set_fault_plan(plan);
    let report = scenario.run_for(Duration::from_secs(10));
    Outcome {
        kernel: scenario.into_kernel(),
        report,
    }
}

/// End every task, then discard whatever faults still hold: afterwards no
/// capability may exist anywhere.
fn shut_down(kernel: &mut SimulatedKernel) {
    let tasks: Vec<TaskId> = kernel.core().tasks().iter().map(|t| t.id).collect();
    for task in tasks {
        kernel.terminate_task_with_reason(task, ExitReason::Normal);
    }
    kernel.discard_held();
}

fn check(seed: u64, outcome: &mut Outcome) {
    assert_ne!(outcome.report.stop, StopReason::StepLimit, "seed {seed}");
    let kernel = &mut outcome.kernel;
    shut_down(kernel);
    kernel.check_invariants().unwrap();

    let trace = kernel.trace();
    let sent: BTreeSet<u64> = trace
        .events()
        .filter_map(|e| match e {
            TraceEvent::Sent { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    let delivered = trace.delivered();
    let lost = trace.lost();
    let delivered_set: BTreeSet<u64> = delivered.iter().copied().collect();
    let lost_set: BTreeSet<u64> = lost.iter().copied().collect();
    // At most once: nothing delivered twice, lost twice, or both.
    assert_eq!(
        delivered.len(),
        delivered_set.len(),
        "seed {seed}: duplicate delivery"
    );
    assert_eq!(lost.len(), lost_set.len(), "seed {seed}: lost twice");
    assert!(delivered_set.is_disjoint(&lost_set), "seed {seed}");
    // Every message sent ended one way or the other.
    let ended: BTreeSet<u64> = delivered_set.union(&lost_set).copied().collect();
    assert_eq!(ended, sent, "seed {seed}: a message vanished unaccounted");
    // Envelope ids are delivered at most once too.
    let ids: Vec<_> = trace
        .events()
        .filter_map(|e| match e {
            TraceEvent::Delivered { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let unique_ids: BTreeSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), unique_ids.len(), "seed {seed}");

    // No leaks: nothing is left anywhere, and every capability that was in
    // a lost message was invalidated (and audited) in custody.
    let core = kernel.core();
    assert_eq!(core.task_count(), 0);
    assert_eq!(
        core.channel_count(),
        0,
        "seed {seed}: a channel outlived every task"
    );
    assert_eq!(core.parked_count(), 0);
    let audit = kernel.audit_log();
    assert_eq!(audit.dropped(), 0, "audit ring too small for the check");
    let lost_caps: usize = trace
        .events()
        .map(|e| match e {
            TraceEvent::Lost { capabilities, .. } => *capabilities,
            _ => 0,
        })
        .sum();
    let invalidated_in_custody =
        audit.count_events(|e| matches!(e, CapabilityEvent::Invalidated { holder: None, .. }));
    assert_eq!(lost_caps, invalidated_in_custody, "seed {seed}");
}

#[test]
fn random_fault_plans_preserve_at_most_once_and_leak_nothing() {
    let mut faults_seen = 0;
    let mut delivered = 0;
    for seed in 0..SEEDS {
        let mut outcome = run(seed);
        faults_seen += outcome.kernel.trace().lost().len();
        delivered += outcome.kernel.trace().delivered().len();
        check(seed, &mut outcome);
    }
    eprintln!("sweep: {faults_seen} lost, {delivered} delivered");
    // The sweep is only meaningful if faults actually happened.
    assert!(faults_seen > SEEDS as usize, "only {faults_seen} losses");
    assert!(delivered > SEEDS as usize * 10);
}

#[test]
fn each_seed_reproduces_its_trace() {
    for seed in (0..SEEDS).step_by(25) {
        let a = run(seed).kernel.trace().render();
        let b = run(seed).kernel.trace().render();
        assert_eq!(a, b, "seed {seed}");
    }
}
