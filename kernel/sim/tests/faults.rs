//! Fault Injection Semantics 1–5 and the Safety Properties Under Faults,
//! (docs/interfaces.md, "The kernel API").

use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{
    Cap, ChannelId, Duration, ExitReason, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    Rights, SchemaVersion, ServiceId, TaskDescriptor,
};
use pandagen_core::{CapabilityEvent, InvalidationReason};
use pandagen_sim::{
    FaultPlan, LifecycleFault, LifecycleRule, LossReason, SimulatedKernel, TraceEvent,
};

fn message(action: &str, n: u32) -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(42),
        action,
        SchemaVersion::new(1, 0),
        MessagePayload::new(&n).unwrap(),
    )
}

fn number(envelope: &MessageEnvelope) -> u32 {
    envelope.payload.decode().unwrap()
}

fn poll(kernel: &mut SimulatedKernel, channel: ChannelId) -> Result<MessageEnvelope, KernelError> {
    kernel.receive_message(channel, Some(Duration::ZERO))
}

/// Receive everything currently receivable, as payload numbers.
fn drain(kernel: &mut SimulatedKernel, channel: ChannelId) -> Vec<u32> {
    let mut out = Vec::new();
    while let Ok(m) = poll(kernel, channel) {
        out.push(number(&m));
    }
    out
}

// ---- 1. Drop -----------------------------------------------------------------

#[test]
fn drop_is_silent_for_the_sender_and_invisible_to_the_receiver() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().drop_next(1));
    let ch = kernel.create_channel().unwrap();
    assert_eq!(kernel.send_message(ch, message("a", 1)), Ok(()));
    assert_eq!(kernel.send_message(ch, message("a", 2)), Ok(()));
    assert_eq!(drain(&mut kernel, ch), vec![2]);
    let lost = kernel.trace().count(|e| {
        matches!(
            e,
            TraceEvent::Lost {
                reason: LossReason::InjectedDrop,
                ..
            }
        )
    });
    assert_eq!(lost, 1);
    kernel.check_invariants().unwrap();
}

#[test]
fn drop_on_a_channel_spares_other_channels() {
    let mut kernel = SimulatedKernel::new();
    let doomed = kernel.create_channel().unwrap();
    let fine = kernel.create_channel().unwrap();
    let key = kernel.channel_key(doomed).unwrap();
    kernel.set_fault_plan(FaultPlan::new().drop_on_channel(key));
    for n in 0..3 {
        kernel.send_message(doomed, message("x", n)).unwrap();
        kernel.send_message(fine, message("x", n)).unwrap();
    }
    assert_eq!(drain(&mut kernel, doomed), Vec::<u32>::new());
    assert_eq!(drain(&mut kernel, fine), vec![0, 1, 2]);
}

#[test]
fn drop_matching_an_action_spares_other_actions() {
    let mut kernel =
        SimulatedKernel::with_fault_plan(FaultPlan::new().drop_matching_action("storage.write"));
    let ch = kernel.create_channel().unwrap();
    kernel
        .send_message(ch, message("storage.write", 1))
        .unwrap();
    kernel.send_message(ch, message("storage.read", 2)).unwrap();
    kernel
        .send_message(ch, message("storage.write", 3))
        .unwrap();
    assert_eq!(drain(&mut kernel, ch), vec![2]);
}

#[test]
fn capabilities_in_a_dropped_message_are_invalidated_and_audited() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().drop_next(1));
    let ch = kernel.create_channel().unwrap();
    let carried = kernel.create_channel().unwrap();
    let carried_cap = kernel
        .clone_capability(&Cap::from(carried), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    let carried_handle = carried_cap.handle();
    kernel
        .send_with_capabilities(ch, message("with-cap", 1), vec![carried_cap])
        .unwrap();
    // Gone from the sender, never delivered, invalidated in custody.
    assert!(kernel
        .capabilities_of(kernel.root_task())
        .iter()
        .all(|(h, _)| *h != carried_handle));
    assert_eq!(poll(&mut kernel, ch), Err(KernelError::Timeout));
    assert!(kernel.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated {
            holder: None,
            reason: InvalidationReason::MessageDiscarded,
            ..
        }
    )));
    kernel.check_invariants().unwrap();
    assert_eq!(kernel.core().parked_count(), 0);
}

#[test]
fn a_dropped_receive_right_closes_its_channel() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().drop_next(1));
    let ch = kernel.create_channel().unwrap();
    let inner = kernel.create_channel().unwrap();
    let inner_key = kernel.channel_key(inner).unwrap();
    let send_copy = kernel
        .clone_capability(&Cap::from(inner), Rights::SEND)
        .unwrap();
    // Move the only receive right away in a message that will be dropped.
    kernel
        .send_with_capabilities(ch, message("move", 1), vec![Cap::from(inner)])
        .unwrap();
    assert!(kernel.core().is_channel_closed(inner_key.into()));
    assert_eq!(
        kernel.send_message(ChannelId::from_handle(send_copy.handle()), message("x", 2)),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    kernel.check_invariants().unwrap();
}

// ---- 2. Delay ----------------------------------------------------------------

#[test]
fn delay_delivers_after_virtual_time_advances() {
    let delay = Duration::from_millis(10);
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().delay_next(1, delay));
    let ch = kernel.create_channel().unwrap();
    let t0 = kernel.now();
    kernel.send_message(ch, message("slow", 1)).unwrap();
    assert_eq!(poll(&mut kernel, ch), Err(KernelError::Timeout));
    assert_eq!(
        kernel.receive_message(ch, Some(Duration::from_millis(5))),
        Err(KernelError::Timeout)
    );
    assert_eq!(kernel.now() - t0, Duration::from_millis(5));
    // Waiting longer returns at the delivery, not at the deadline.
    let m = kernel
        .receive_message(ch, Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(number(&m), 1);
    assert_eq!(kernel.now() - t0, delay);
    // Exactly once.
    assert_eq!(poll(&mut kernel, ch), Err(KernelError::Timeout));
}

#[test]
fn a_receive_without_timeout_waits_for_a_delayed_message() {
    let mut kernel =
        SimulatedKernel::with_fault_plan(FaultPlan::new().delay_next(1, Duration::from_secs(2)));
    let ch = kernel.create_channel().unwrap();
    kernel.send_message(ch, message("slow", 7)).unwrap();
    assert_eq!(number(&kernel.receive_message(ch, None).unwrap()), 7);
    assert_eq!(kernel.now().as_millis(), 2_000);
    // Nothing else can arrive: an unbounded wait reports Timeout at once.
    assert_eq!(kernel.receive_message(ch, None), Err(KernelError::Timeout));
    assert_eq!(kernel.now().as_millis(), 2_000);
}

#[test]
fn advancing_time_releases_delayed_messages_in_due_order() {
    let plan = FaultPlan::new()
        .delay_matching_action("late", Duration::from_millis(30))
        .delay_matching_action("sooner", Duration::from_millis(10));
    let mut kernel = SimulatedKernel::with_fault_plan(plan);
    let ch = kernel.create_channel().unwrap();
    kernel.send_message(ch, message("late", 1)).unwrap();
    kernel.send_message(ch, message("sooner", 2)).unwrap();
    kernel.send_message(ch, message("now", 3)).unwrap();
    assert_eq!(drain(&mut kernel, ch), vec![3]);
    kernel.advance_time(Duration::from_millis(10));
    assert_eq!(kernel.held_count(), 1);
    kernel.advance_time(Duration::from_millis(25));
    assert_eq!(drain(&mut kernel, ch), vec![2, 1]);
}

#[test]
fn a_delayed_message_to_a_dead_receiver_is_lost_with_its_capabilities() {
    let mut kernel =
        SimulatedKernel::with_fault_plan(FaultPlan::new().delay_next(1, Duration::from_secs(1)));
    let receiver = kernel
        .spawn_task(TaskDescriptor::new("receiver".to_string()))
        .unwrap();
    let inbox = kernel
        .as_task(receiver.task_id, |k| k.create_channel())
        .unwrap();
    let send = kernel
        .as_task(receiver.task_id, |k| {
            k.clone_capability(&Cap::from(inbox), Rights::SEND | Rights::TRANSFER)
        })
        .unwrap();
    let to_inbox = kernel
        .delegate_capability(send.handle(), receiver.task_id, kernel.root_task())
        .unwrap();
    let carried = kernel.create_channel().unwrap();
    kernel
        .send_with_capabilities(
            ChannelId::from_handle(to_inbox),
            message("late", 1),
            vec![Cap::from(carried)],
        )
        .unwrap();
    assert_eq!(kernel.held_count(), 1);
    kernel.terminate_task_with_reason(receiver.task_id, ExitReason::Normal);
    // The channel closed: the held message is discarded right away.
    assert_eq!(kernel.held_count(), 0);
    assert!(kernel.trace().events().any(|e| matches!(
        e,
        TraceEvent::Lost {
            reason: LossReason::ChannelClosed,
            capabilities: 1,
            ..
        }
    )));
    kernel.check_invariants().unwrap();
}

// ---- 3. Reorder ------------------------------------------------------------

#[test]
fn reorder_swaps_deterministically_without_duplicating() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().reorder_next(1, 2));
    let ch = kernel.create_channel().unwrap();
    kernel.send_message(ch, message("m", 1)).unwrap();
    kernel.send_message(ch, message("m", 2)).unwrap();
    kernel.send_message(ch, message("m", 3)).unwrap();
    assert_eq!(drain(&mut kernel, ch), vec![2, 1, 3]);
}

#[test]
fn reordering_within_a_window_keeps_every_message_exactly_once() {
    let mut kernel = SimulatedKernel::new();
    let ch = kernel.create_channel().unwrap();
    let key = kernel.channel_key(ch).unwrap();
    kernel.set_fault_plan(FaultPlan::new().with_seed(9).reorder_on_channel(key, 4));
    let mut received = Vec::new();
    for n in 0..40 {
        kernel.send_message(ch, message("m", n)).unwrap();
        if n % 5 == 4 {
            received.extend(drain(&mut kernel, ch));
        }
    }
    received.extend(drain(&mut kernel, ch));
    assert_ne!(
        received,
        (0..40).collect::<Vec<_>>(),
        "nothing was reordered"
    );
    // Each message is overtaken by at most window - 1 later ones.
    for (i, n) in received.iter().enumerate() {
        let overtaken_by = received[..i].iter().filter(|m| *m > n).count();
        assert!(overtaken_by <= 3, "{n} overtaken by {overtaken_by}");
    }
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..40).collect::<Vec<_>>());
    kernel.check_invariants().unwrap();
}

#[test]
fn a_held_message_is_released_when_the_receiver_finds_the_queue_empty() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().reorder_next(1, 5));
    let ch = kernel.create_channel().unwrap();
    kernel.send_message(ch, message("m", 1)).unwrap();
    assert_eq!(drain(&mut kernel, ch), vec![1]);
}

// ---- 4. Crash on send --------------------------------------------------------

#[test]
fn crash_on_send_fails_and_enqueues_nothing() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().crash_on_send(1));
    let ch = kernel.create_channel().unwrap();
    let carried = kernel.create_channel().unwrap();
    assert_eq!(
        kernel.send_with_capabilities(ch, message("a", 1), vec![Cap::from(carried)]),
        Err(KernelError::SendFailed(SendError::InjectedFault))
    );
    assert_eq!(poll(&mut kernel, ch), Err(KernelError::Timeout));
    // The sender kept its capability: it can still use it.
    kernel.send_message(carried, message("b", 2)).unwrap();
    assert_eq!(drain(&mut kernel, carried), vec![2]);
    // The plan's budget is spent: the next send succeeds.
    kernel.send_message(ch, message("a", 3)).unwrap();
    assert_eq!(drain(&mut kernel, ch), vec![3]);
    assert!(!kernel
        .audit_log()
        .has_event(|e| matches!(e, CapabilityEvent::Invalidated { .. })));
}

// ---- 5. Crash on receive ---------------------------------------------------

#[test]
fn crash_on_receive_fails_and_leaves_the_message_queued() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().crash_on_receive(1));
    let ch = kernel.create_channel().unwrap();
    kernel.send_message(ch, message("a", 1)).unwrap();
    assert_eq!(
        poll(&mut kernel, ch),
        Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault))
    );
    assert_eq!(drain(&mut kernel, ch), vec![1]);
}

#[test]
fn a_consuming_receive_crash_loses_the_message_and_its_capabilities() {
    let plan = FaultPlan::new().with_lifecycle_rule(
        LifecycleRule::new(None, LifecycleFault::CrashOnReceive { consume: true }).times(1),
    );
    let mut kernel = SimulatedKernel::with_fault_plan(plan);
    let ch = kernel.create_channel().unwrap();
    let carried = kernel.create_channel().unwrap();
    kernel
        .send_with_capabilities(ch, message("a", 1), vec![Cap::from(carried)])
        .unwrap();
    kernel.send_message(ch, message("a", 2)).unwrap();
    assert_eq!(
        poll(&mut kernel, ch),
        Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault))
    );
    assert_eq!(drain(&mut kernel, ch), vec![2]);
    assert!(kernel.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated {
            reason: InvalidationReason::MessageDiscarded,
            ..
        }
    )));
    assert!(kernel.trace().events().any(|e| matches!(
        e,
        TraceEvent::ReceiveFailed {
            consumed: Some(_),
            ..
        }
    )));
    kernel.check_invariants().unwrap();
}

#[test]
fn crash_after_messages_ends_the_task_with_a_failure() {
    let mut kernel = SimulatedKernel::new();
    let worker = kernel
        .spawn_task(TaskDescriptor::new("worker".to_string()))
        .unwrap();
    kernel.set_fault_plan(FaultPlan::new().crash_after_messages(worker.task_id, 2));
    let ch = kernel
        .as_task(worker.task_id, |k| k.create_channel())
        .unwrap();
    kernel
        .as_task(worker.task_id, |k| k.send_message(ch, message("a", 1)))
        .unwrap();
    assert!(kernel.task_is_alive(worker.task_id));
    // The second operation completes, then the task crashes.
    let m = kernel
        .as_task(worker.task_id, |k| {
            k.receive_message(ch, Some(Duration::ZERO))
        })
        .unwrap();
    assert_eq!(number(&m), 1);
    assert!(!kernel.task_is_alive(worker.task_id));
    let notification = kernel
        .exit_notifications()
        .iter()
        .find(|n| n.task_id == Some(worker.task_id))
        .unwrap();
    assert!(notification.reason.is_failure());
    assert_eq!(
        kernel.as_task(worker.task_id, |k| k.create_channel()),
        Err(KernelError::TaskNotFound(worker.task_id))
    );
    kernel.check_invariants().unwrap();
}

#[test]
fn lifecycle_faults_can_target_one_task() {
    let mut kernel = SimulatedKernel::new();
    let victim = kernel
        .spawn_task(TaskDescriptor::new("victim".to_string()))
        .unwrap()
        .task_id;
    kernel.set_fault_plan(FaultPlan::new().with_lifecycle_rule(LifecycleRule::new(
        Some(victim),
        LifecycleFault::CrashOnSend,
    )));
    let ch = kernel.create_channel().unwrap();
    kernel.send_message(ch, message("root", 1)).unwrap();
    let victim_ch = kernel.as_task(victim, |k| k.create_channel()).unwrap();
    assert_eq!(
        kernel.as_task(victim, |k| k.send_message(victim_ch, message("v", 2))),
        Err(KernelError::SendFailed(SendError::InjectedFault))
    );
}

// ---- Safety properties -------------------------------------------------------

fn faulty_run(plan: FaultPlan) -> String {
    let mut kernel = SimulatedKernel::with_fault_plan(plan);
    let a = kernel.create_channel().unwrap();
    let b = kernel.create_channel().unwrap();
    for n in 0..50 {
        let ch = if n % 3 == 0 { b } else { a };
        let _ = kernel.send_message(ch, message(if n % 2 == 0 { "even" } else { "odd" }, n));
        if n % 7 == 0 {
            let _ = kernel.receive_message(a, Some(Duration::from_millis(3)));
        }
    }
    while kernel.receive_message(a, None).is_ok() || kernel.receive_message(b, None).is_ok() {}
    kernel.trace().render()
}

#[test]
fn the_same_plan_and_seed_give_the_same_trace() {
    for seed in [1, 2, 3, 99] {
        let first = faulty_run(FaultPlan::random(seed));
        assert_eq!(first, faulty_run(FaultPlan::random(seed)), "seed {seed}");
        assert!(first.contains("sent #"));
    }
    assert_ne!(
        faulty_run(FaultPlan::random(1)),
        faulty_run(FaultPlan::random(2))
    );
}

#[test]
fn a_failed_send_changes_nothing() {
    let mut kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().crash_on_send(1));
    let ch = kernel.create_channel().unwrap();
    let before = kernel.audit_log().total();
    let caps_before = kernel.capabilities_of(kernel.root_task()).len();
    assert!(kernel.send_message(ch, message("a", 1)).is_err());
    assert_eq!(kernel.audit_log().total(), before);
    assert_eq!(
        kernel.capabilities_of(kernel.root_task()).len(),
        caps_before
    );
    kernel.check_invariants().unwrap();
}

#[test]
fn faults_can_target_a_registered_service() {
    let mut kernel = SimulatedKernel::new();
    let service = ServiceId::from_raw(31);
    let inbox = kernel.create_channel().unwrap();
    kernel.register_service(service, inbox).unwrap();
    let other = kernel.create_channel().unwrap();
    let key = kernel.service_channel(service).unwrap();
    assert_eq!(Some(key), kernel.channel_key(inbox));
    assert_eq!(Some(key), kernel.channel_key_in(kernel.root_task(), inbox));
    kernel.set_fault_plan(FaultPlan::new().drop_on_channel(key));
    let to_service = kernel.lookup_service(service).unwrap();
    kernel.send_message(to_service, message("req", 1)).unwrap();
    kernel.send_message(other, message("req", 2)).unwrap();
    assert_eq!(drain(&mut kernel, inbox), Vec::<u32>::new());
    assert_eq!(drain(&mut kernel, other), vec![2]);
    assert_eq!(kernel.service_channel(ServiceId::from_raw(32)), None);
}
