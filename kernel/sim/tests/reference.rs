//! The interface description's own examples, written with its names (see
//! docs/interfaces.md for where PandaGen's form differs), plus
//! the Kernel API contracts around them.

use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{
    Cap, ChannelId, Compatibility, Duration, ExitReason, IdentityKind, IdentityMetadata, KernelApi,
    KernelError, MessageEnvelope, MessagePayload, Rights, SchemaVersion, ServiceId, TaskDescriptor,
    TaskId, TrustDomain, VersionPolicy,
};
use pandagen_core::CapabilityEvent;
use pandagen_sim::SimulatedKernel;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct MyPayload {
    field: String,
}

fn create_test_message(destination: ServiceId) -> MessageEnvelope {
    let payload = MessagePayload::new(&MyPayload {
        field: "value".to_string(),
    })
    .unwrap();
    MessageEnvelope::new(
        destination,
        "action.name".to_string(),
        SchemaVersion::new(1, 0),
        payload,
    )
}

#[test]
fn test_service_communication() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();

    // Setup
    let channel = kernel.create_channel()?;
    let service_id = ServiceId::new();
    kernel.register_service(service_id, channel)?;

    // Test
    let message = create_test_message(service_id);
    kernel.send_message(channel, message.clone())?;
    let received = kernel.receive_message(channel, None)?;

    // Assert
    assert_eq!(received.id, message.id);
    assert_eq!(received.action, "action.name");
    assert_eq!(received.source, Some(kernel.root_task()));
    let payload: MyPayload = received.payload.decode().unwrap();
    assert_eq!(payload.field, "value");
    Ok(())
}

#[test]
fn test_reject_too_old_version() {
    let policy = VersionPolicy::current(3, 0).with_min_major(2);
    let old_version = SchemaVersion::new(1, 9);

    assert_eq!(
        policy.check_compatibility(&old_version),
        Compatibility::Unsupported
    );
}

#[test]
fn receiver_checks_the_version_before_decoding() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let service = ServiceId::new();
    let mut message = create_test_message(service);
    message.schema_version = SchemaVersion::new(4, 0);
    kernel.send_message(channel, message)?;
    let received = kernel.receive_message(channel, Some(Duration::ZERO))?;
    let policy = VersionPolicy::current(3, 1).with_min_major(2);
    let err = received
        .decode_payload::<MyPayload>(&policy, service)
        .unwrap_err();
    match err {
        pandagen_abi::EnvelopeError::SchemaMismatch(mismatch) => {
            assert_eq!(mismatch.service(), service);
            assert_eq!(mismatch.received(), SchemaVersion::new(4, 0));
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    Ok(())
}

#[test]
fn correlation_ids_match_responses_to_requests() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let service_id = ServiceId::new();
    let registry = kernel.registry_capability_for_child()?;
    let server =
        kernel.spawn_task(TaskDescriptor::new("server".to_string()).with_capability(registry))?;
    let server_channel = kernel.as_task(server.task_id, |k| {
        let ch = k.create_channel()?;
        k.register_service(service_id, ch)?;
        Ok::<_, KernelError>(ch)
    })?;

    // Client (the root task): a reply channel, and a send-only copy of it
    // attached to the request.
    let to_server = kernel.lookup_service(service_id)?;
    let reply_channel = kernel.create_channel()?;
    let reply_cap =
        kernel.clone_capability(&Cap::from(reply_channel), Rights::SEND | Rights::TRANSFER)?;
    let request = create_test_message(service_id);
    let request_id = request.id;
    kernel.send_with_capabilities(to_server, request, vec![reply_cap])?;

    // Server: answer on the reply capability with the request's id.
    kernel.as_task(server.task_id, |k| {
        let received = k.receive_with_capabilities(server_channel, Some(Duration::ZERO))?;
        assert_eq!(received.capabilities.len(), 1);
        let reply_cap = received.capabilities.into_iter().next().unwrap();
        let response = MessageEnvelope::new(
            service_id,
            "action.reply",
            SchemaVersion::new(1, 0),
            MessagePayload::empty(),
        )
        .with_correlation(received.envelope.id);
        k.send_message(ChannelId::from_handle(reply_cap.handle()), response)?;
        KernelApi::drop_capability(k, reply_cap)
    })?;

    let response = kernel.receive_message(reply_channel, Some(Duration::ZERO))?;
    assert_eq!(response.correlation_id, Some(request_id));
    assert_eq!(response.source, Some(server.task_id));
    Ok(())
}

#[test]
fn lookup_of_an_unknown_service_is_a_typed_error() {
    let mut kernel = SimulatedKernel::new();
    let unknown = ServiceId::new();
    assert_eq!(
        kernel.lookup_service(unknown),
        Err(KernelError::ServiceNotFound(unknown))
    );
}

#[test]
fn registering_twice_is_refused() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let a = kernel.create_channel()?;
    let b = kernel.create_channel()?;
    let id = ServiceId::new();
    kernel.register_service(id, a)?;
    assert_eq!(
        kernel.register_service(id, b),
        Err(KernelError::ServiceAlreadyRegistered(id))
    );
    Ok(())
}

#[test]
fn registration_requires_the_registry_capability() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let task = kernel.spawn_task(TaskDescriptor::new("no-authority".to_string()))?;
    let result = kernel.as_task(task.task_id, |k| {
        let ch = k.create_channel()?;
        k.register_service(ServiceId::new(), ch)
    });
    assert!(
        result.is_err(),
        "a task without the registry cap registered a service"
    );
    Ok(())
}

#[test]
fn spawned_tasks_hold_only_their_granted_capabilities() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let handle = kernel
        .spawn_task(TaskDescriptor::new("child".to_string()).with_capability(Cap::from(channel)))?;
    // The capability moved: the spawner no longer has it.
    assert_eq!(
        kernel.send_message(channel, create_test_message(ServiceId::new())),
        Err(KernelError::InvalidCapability)
    );
    let startup = kernel.as_task(handle.task_id, |k| k.startup())?;
    assert_eq!(startup.task, handle.task_id);
    assert_eq!(startup.execution, handle.execution_id);
    assert_eq!(startup.capabilities.len(), 1);
    assert_eq!(kernel.capabilities_of(handle.task_id).len(), 1);
    // A fresh task id each time.
    let other = kernel.spawn_task(TaskDescriptor::new("other".to_string()))?;
    assert_ne!(other.task_id, handle.task_id);
    assert!(kernel.capabilities_of(other.task_id).is_empty());
    Ok(())
}

#[test]
fn time_is_virtual_and_only_moves_when_told() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let t0 = kernel.now();
    assert_eq!(kernel.now(), t0);
    kernel.sleep(Duration::from_secs(1))?;
    assert_eq!(kernel.now() - t0, Duration::from_secs(1));
    kernel.advance_time(Duration::from_millis(5));
    assert_eq!(kernel.now() - t0, Duration::from_millis(1005));
    Ok(())
}

#[test]
fn receive_timeout_advances_virtual_time_to_the_deadline() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let t0 = kernel.now();
    assert_eq!(
        kernel.receive_message(channel, Some(Duration::from_millis(250))),
        Err(KernelError::Timeout)
    );
    assert_eq!(kernel.now() - t0, Duration::from_millis(250));
    // A zero timeout polls without moving the clock.
    assert_eq!(
        kernel.receive_message(channel, Some(Duration::ZERO)),
        Err(KernelError::Timeout)
    );
    assert_eq!(kernel.now() - t0, Duration::from_millis(250));
    Ok(())
}

#[test]
fn messages_are_fifo_per_channel() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let service = ServiceId::new();
    let sent: Vec<_> = (0..10).map(|_| create_test_message(service)).collect();
    for m in &sent {
        kernel.send_message(channel, m.clone())?;
    }
    for m in &sent {
        assert_eq!(kernel.receive_message(channel, None)?.id, m.id);
    }
    Ok(())
}

#[test]
fn send_on_a_foreign_or_unknown_channel_fails() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let other = kernel.spawn_task(TaskDescriptor::new("other".to_string()))?;
    // The root's handle means nothing in the other task's space.
    let result = kernel.as_task(other.task_id, |k| {
        k.send_message(channel, create_test_message(ServiceId::new()))
    });
    assert_eq!(result, Err(KernelError::InvalidCapability));
    Ok(())
}

#[test]
fn oversized_messages_are_a_typed_send_error() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let mut message = create_test_message(ServiceId::new());
    message.action = "x".repeat(pandagen_abi::envelope::MAX_ACTION_LEN + 1);
    assert!(matches!(
        kernel.send_message(channel, message),
        Err(KernelError::Envelope(_))
    ));
    assert_eq!(
        kernel.receive_message(channel, Some(Duration::ZERO)),
        Err(KernelError::Timeout)
    );
    Ok(())
}

#[test]
fn a_full_queue_refuses_sends_without_blocking() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let service = ServiceId::new();
    let mut accepted = 0;
    let error = loop {
        match kernel.send_message(channel, create_test_message(service)) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100_000, "the queue is unbounded");
    };
    assert_eq!(error, KernelError::SendFailed(SendError::QueueFull));
    assert!(accepted > 0);
    Ok(())
}

// ---- Capabilities: grant, delegate, drop, audit ----------------------------

fn spawn_in_domain(kernel: &mut SimulatedKernel, name: &str, domain: TrustDomain) -> TaskId {
    kernel
        .spawn_task(
            TaskDescriptor::new(name.to_string()).with_identity(IdentityKind::Service, domain),
        )
        .unwrap()
        .task_id
}

#[test]
fn trust_boundary_delegation_is_allowed_and_audited() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    // Same trust domain - delegation proceeds normally
    let task1 = spawn_in_domain(&mut kernel, "t1", TrustDomain::core());
    let task2 = spawn_in_domain(&mut kernel, "t2", TrustDomain::core());
    let task3 = spawn_in_domain(&mut kernel, "t3", TrustDomain::user());
    let first = kernel.as_task(task1, |k| k.create_channel())?;
    let second = kernel.as_task(task1, |k| k.create_channel())?;

    let cap_id = first.handle();
    kernel.delegate_capability(cap_id, task1, task2)?;
    // No special audit event
    assert!(!kernel
        .audit_log()
        .has_event(|e| matches!(e, CapabilityEvent::CrossDomainDelegation { .. })));

    // Cross trust domain - delegation proceeds but is audited
    let cap_id = second.handle();
    kernel.delegate_capability(cap_id, task1, task3)?;

    // Tests can verify trust boundary behavior
    let audit = kernel.audit_log();
    assert!(audit.has_event(|e| matches!(
        e,
        CapabilityEvent::CrossDomainDelegation {
            from_domain, to_domain, ..
        } if from_domain == "core" && to_domain == "user"
    )));
    Ok(())
}

#[test]
fn delegation_moves_the_capability() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let task1 = spawn_in_domain(&mut kernel, "t1", TrustDomain::user());
    let task2 = spawn_in_domain(&mut kernel, "t2", TrustDomain::user());
    let channel = kernel.as_task(task1, |k| k.create_channel())?;
    let moved = kernel.delegate_capability(channel.handle(), task1, task2)?;
    // task1 can no longer use it; a second delegation of it fails.
    let message = create_test_message(ServiceId::new());
    assert_eq!(
        kernel.as_task(task1, |k| k.send_message(channel, message.clone())),
        Err(KernelError::InvalidCapability)
    );
    assert!(kernel
        .delegate_capability(channel.handle(), task1, task2)
        .is_err());
    // task2 holds it now.
    kernel.as_task(task2, |k| {
        k.send_message(ChannelId::from_handle(moved), message.clone())
    })?;
    let audit = kernel.audit_log();
    assert!(audit.has_event(|e| matches!(
        e,
        CapabilityEvent::Delegated { from, to, .. } if *from == task1 && *to == task2
    )));
    assert!(audit.has_event(
        |e| matches!(e, CapabilityEvent::InvalidUseAttempt { task, .. } if *task == task1)
    ));
    Ok(())
}

#[test]
fn delegating_to_a_missing_task_fails_and_keeps_the_capability() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let root = kernel.root_task();
    let ghost = TaskId::from_raw(9999);
    assert!(kernel
        .delegate_capability(channel.handle(), root, ghost)
        .is_err());
    kernel.send_message(channel, create_test_message(ServiceId::new()))?;
    Ok(())
}

#[test]
fn dropping_invalidates_and_is_audited() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let root = kernel.root_task();
    kernel.drop_capability(channel.handle(), root)?;
    assert_eq!(
        kernel.send_message(channel, create_test_message(ServiceId::new())),
        Err(KernelError::InvalidCapability)
    );
    assert!(kernel
        .audit_log()
        .has_event(|e| matches!(e, CapabilityEvent::Dropped { owner, .. } if *owner == root)));
    Ok(())
}

#[test]
fn granting_issues_an_audited_copy() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let task = spawn_in_domain(&mut kernel, "t", TrustDomain::user());
    let channel = kernel.create_channel()?;
    let copy = kernel.clone_capability(&Cap::from(channel), Rights::SEND | Rights::GRANT)?;
    // A task id alone is no authority over the task.
    assert_eq!(
        kernel.grant_capability(task, Cap::from_handle(copy.handle())),
        Err(KernelError::InsufficientAuthority)
    );
    kernel.task_capability(task)?;
    kernel.grant_capability(task, copy)?;
    assert!(kernel.audit_log().has_event(
        |e| matches!(e, CapabilityEvent::Granted { to, from: Some(_), .. } if *to == task)
    ));
    assert_eq!(kernel.capabilities_of(task).len(), 1);
    Ok(())
}

// ---- Execution identity and supervision -------------------------------------

#[test]
fn supervision_example_flow() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let (_supervisor, supervisor_exec_id) = kernel.spawn_task_with_identity(
        TaskDescriptor::new("supervisor".to_string()),
        IdentityKind::Service,
        TrustDomain::core(),
        None,
        None,
    )?;

    // Supervisor spawns child
    let (child_handle, child_exec_id) = kernel.spawn_task_with_identity(
        TaskDescriptor::new("worker".to_string()),
        IdentityKind::Component,
        TrustDomain::user(),
        Some(supervisor_exec_id), // Parent
        Some(supervisor_exec_id), // Creator
    )?;
    assert_eq!(
        kernel.task_identity(child_handle.task_id),
        Some(child_exec_id)
    );
    let identity = kernel.identity(child_exec_id).unwrap();
    assert!(identity.is_child_of(supervisor_exec_id));
    assert_eq!(identity.creator_id, Some(supervisor_exec_id));
    assert_eq!(identity.kind, IdentityKind::Component);
    assert_eq!(identity.trust_domain, TrustDomain::user());
    assert_eq!(identity.name, "worker");
    assert_eq!(identity.task_id, Some(child_handle.task_id));

    kernel.advance_time(Duration::from_millis(3));
    kernel.terminate_task_with_reason(
        child_handle.task_id,
        ExitReason::Failure {
            error: "worker crashed".into(),
        },
    );

    // Later, check for child termination
    let mut saw_failure = false;
    let notifications = kernel.exit_notifications();
    for notif in notifications {
        if notif.execution_id == child_exec_id {
            match &notif.reason {
                ExitReason::Normal => panic!("the child failed"),
                ExitReason::Failure { error } => {
                    assert_eq!(error.to_string(), "worker crashed");
                    saw_failure = true;
                }
                ExitReason::Timeout | ExitReason::Cancelled { .. } => panic!("wrong reason"),
            }
            assert_eq!(notif.task_id, Some(child_handle.task_id));
            assert_eq!(notif.terminated_at_nanos, 3_000_000);
        }
    }
    assert!(saw_failure);
    kernel.clear_exit_notifications();
    assert!(kernel.exit_notifications().is_empty());
    // The identity outlives the task; the task is gone.
    assert!(kernel.identity(child_exec_id).is_some());
    assert!(!kernel.task_is_alive(child_handle.task_id));
    Ok(())
}

#[test]
fn termination_invalidates_the_tasks_capabilities() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let task = spawn_in_domain(&mut kernel, "doomed", TrustDomain::user());
    let channel = kernel.as_task(task, |k| k.create_channel())?;
    let _ = channel;
    kernel.terminate_task_with_reason(task, ExitReason::Normal);
    assert!(kernel.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated { holder: Some(h), .. } if *h == task
    )));
    assert!(kernel.capabilities_of(task).is_empty());
    kernel.check_invariants().unwrap();
    Ok(())
}

#[test]
fn every_termination_produces_one_notification() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let tasks: Vec<TaskId> = (0..4)
        .map(|i| spawn_in_domain(&mut kernel, &format!("t{i}"), TrustDomain::user()))
        .collect();
    kernel.terminate_task_with_reason(tasks[0], ExitReason::Normal);
    kernel.terminate_task_with_reason(tasks[1], ExitReason::Timeout);
    kernel.terminate_task_with_reason(
        tasks[2],
        ExitReason::Cancelled {
            reason: "shutdown".into(),
        },
    );
    // Terminating a task twice does not notify twice.
    kernel.terminate_task_with_reason(tasks[0], ExitReason::Normal);
    let reasons: Vec<_> = kernel
        .exit_notifications()
        .iter()
        .map(|n| (n.task_id, n.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 3);
    assert_eq!(reasons[0], (Some(tasks[0]), ExitReason::Normal));
    assert_eq!(reasons[1], (Some(tasks[1]), ExitReason::Timeout));
    Ok(())
}

#[test]
fn exit_notifications_reach_the_parents_exit_channel() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let exits = kernel.create_channel()?;
    let child =
        kernel.spawn_task(TaskDescriptor::new("child".to_string()).with_exit_channel(exits))?;
    kernel.terminate_task_with_reason(child.task_id, ExitReason::Normal);
    let message = kernel.receive_message(exits, Some(Duration::ZERO))?;
    assert_eq!(message.action, pandagen_abi::api::EXIT_NOTIFICATION_ACTION);
    let notification: pandagen_abi::ExitNotification = message.payload.decode().unwrap();
    assert_eq!(notification.execution_id, child.execution_id);
    assert_eq!(notification.reason, ExitReason::Normal);
    Ok(())
}

#[test]
fn created_identities_are_kept_and_never_reused() {
    let mut kernel = SimulatedKernel::new();
    let a = kernel
        .create_identity(IdentityMetadata::new(
            IdentityKind::PipelineStage,
            TrustDomain::sandbox(),
            "stage-1",
            kernel.now().as_nanos(),
        ))
        .unwrap();
    let b = kernel
        .create_identity(IdentityMetadata::new(
            IdentityKind::PipelineStage,
            TrustDomain::sandbox(),
            "stage-2",
            kernel.now().as_nanos(),
        ))
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(kernel.identity(a).unwrap().name, "stage-1");
    assert_eq!(
        kernel.identity(b).unwrap().trust_domain,
        TrustDomain::sandbox()
    );
}

#[test]
fn receive_failures_have_typed_causes() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel()?;
    let send_only = kernel.clone_capability(&Cap::from(channel), Rights::SEND)?;
    let send_only = ChannelId::from_handle(send_only.handle());
    assert!(matches!(
        kernel.receive_message(send_only, Some(Duration::ZERO)),
        Err(KernelError::InsufficientAuthority)
    ));
    let _ = ReceiveError::ChannelClosed;
    Ok(())
}

#[test]
fn channels_are_unique_and_bidirectional() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let a = kernel.create_channel()?;
    let b = kernel.create_channel()?;
    assert_ne!(a, b);
    assert_ne!(kernel.channel_key(a), kernel.channel_key(b));
    // Two tasks holding the same channel both send and receive on it.
    let peer = kernel.spawn_task(TaskDescriptor::new("peer".to_string()))?;
    let copy = kernel.clone_capability(
        &Cap::from(a),
        Rights::SEND | Rights::RECEIVE | Rights::GRANT,
    )?;
    kernel.task_capability(peer.task_id)?;
    kernel.grant_capability(peer.task_id, copy)?;
    let (peer_handle, _) = kernel.capabilities_of(peer.task_id)[0];
    let peer_channel = ChannelId::from_handle(peer_handle);
    kernel.send_message(a, create_test_message(ServiceId::new()))?;
    let got = kernel.as_task(peer.task_id, |k| k.receive_message(peer_channel, None))?;
    assert_eq!(got.source, Some(kernel.root_task()));
    kernel.as_task(peer.task_id, |k| {
        k.send_message(peer_channel, create_test_message(ServiceId::new()))
    })?;
    assert_eq!(kernel.receive_message(a, None)?.source, Some(peer.task_id));
    Ok(())
}

#[test]
fn granting_requires_holding_the_capability() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let task = spawn_in_domain(&mut kernel, "t", TrustDomain::user());
    let root = kernel.root_task();
    let channel = kernel.create_channel()?;
    kernel.drop_capability(channel, root)?;
    // The handle is stale now: the root no longer holds that capability.
    assert_eq!(
        kernel.grant_capability(task, Cap::from(channel)),
        Err(KernelError::InvalidCapability)
    );
    assert!(kernel.audit_log().has_event(
        |e| matches!(e, CapabilityEvent::InvalidUseAttempt { task, .. } if *task == root)
    ));
    assert!(kernel.capabilities_of(task).is_empty());
    Ok(())
}

#[test]
fn the_audit_trail_follows_one_capability_through_its_life() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let task1 = spawn_in_domain(&mut kernel, "t1", TrustDomain::user());
    let task2 = spawn_in_domain(&mut kernel, "t2", TrustDomain::user());
    let channel = kernel.as_task(task1, |k| k.create_channel())?;
    let cap_id = kernel.capabilities_of(task1)[0].1.id;
    let moved = kernel.delegate_capability(channel, task1, task2)?;
    kernel.drop_capability(moved, task2)?;

    let audit = kernel.audit_log();
    let events = audit.events_for_cap(cap_id);
    assert!(matches!(events[0], CapabilityEvent::Granted { .. }));
    assert!(matches!(events[1], CapabilityEvent::Delegated { .. }));
    assert!(matches!(events[2], CapabilityEvent::Dropped { owner, .. } if *owner == task2));
    assert_eq!(events.len(), 3);
    let grant_count = audit.count_events(|e| matches!(e, CapabilityEvent::Granted { .. }));
    assert!(grant_count >= 1);
    // Verify no leaks
    assert!(!audit.has_event(|e| matches!(e, CapabilityEvent::InvalidUseAttempt { .. })));
    Ok(())
}

#[test]
fn task_and_execution_ids_are_never_reused() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let first = kernel.spawn_task(TaskDescriptor::new("w".to_string()))?;
    kernel.terminate_task_with_reason(first.task_id, ExitReason::Normal);
    let second = kernel.spawn_task(TaskDescriptor::new("w".to_string()))?;
    assert_ne!(first.task_id, second.task_id);
    assert_ne!(first.execution_id, second.execution_id);
    assert_eq!(
        kernel.task_identity(first.task_id),
        Some(first.execution_id)
    );
    // Identity is not authority: the identity of the root grants nothing to
    // a task that merely knows it.
    let root_exec = kernel.task_identity(kernel.root_task()).unwrap();
    assert!(kernel.identity(root_exec).is_some());
    Ok(())
}

#[test]
fn a_dead_acting_task_can_do_nothing() {
    let mut kernel = SimulatedKernel::new();
    let task = spawn_in_domain(&mut kernel, "t", TrustDomain::user());
    kernel.terminate_task_with_reason(task, ExitReason::Normal);
    assert_eq!(
        kernel.set_current_task(task),
        Err(KernelError::TaskNotFound(task))
    );
    assert_eq!(
        kernel.as_task(task, |k| k.create_channel()),
        Err(KernelError::TaskNotFound(task))
    );
    assert_eq!(
        kernel.as_task(task, |k| k.sleep(Duration::from_secs(1))),
        Err(KernelError::TaskNotFound(task))
    );
}

#[test]
fn reference_forms_accept_every_way_of_naming_a_capability() -> Result<(), KernelError> {
    let mut kernel = SimulatedKernel::new();
    let t1 = spawn_in_domain(&mut kernel, "t1", TrustDomain::user());
    let t2 = spawn_in_domain(&mut kernel, "t2", TrustDomain::user());
    let a = kernel.as_task(t1, |k| k.create_channel())?;
    let b = kernel.as_task(t1, |k| k.create_channel())?;
    let c = kernel.as_task(t1, |k| k.create_channel())?;
    // A ChannelId, a raw Cap id, and the core's CapId from the audit log.
    kernel.delegate_capability(a, t1, t2)?;
    kernel.delegate_capability(Cap::<()>::from(b).id(), t1, t2)?;
    let c_id = kernel
        .capabilities_of(t1)
        .into_iter()
        .find(|(h, _)| *h == c.handle())
        .unwrap()
        .1
        .id;
    kernel.delegate_capability(c_id, t1, t2)?;
    assert!(kernel.capabilities_of(t1).is_empty());
    assert_eq!(kernel.capabilities_of(t2).len(), 3);
    // The CapId stays the same across the move, so it names it in t2 too.
    kernel.drop_capability(c_id, t2)?;
    assert_eq!(kernel.capabilities_of(t2).len(), 2);
    // A CapId that t2 does not hold is refused.
    assert_eq!(
        kernel.drop_capability(c_id, t2),
        Err(KernelError::InvalidCapability)
    );
    Ok(())
}
