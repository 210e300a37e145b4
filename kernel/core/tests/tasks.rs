//! Task lifecycle, identity and exit-notification contracts.

mod common;

use std::collections::BTreeSet;

use common::*;
use pandagen_abi::error::SpawnError;
use pandagen_abi::{
    CapKind, ExitReason, IdentityKind, KernelError, Priority, Rights, TaskId, TrustDomain,
};
use pandagen_core::{
    CapabilityEvent, InvalidationReason, KernelCore, Mintable, SchedState, TaskSpec,
};

#[test]
fn identities_record_lineage_domain_and_creation_time() {
    let mut k = kernel();
    let (pm, pm_exec) = k
        .create_task(
            None,
            TaskSpec::new("pm")
                .kind(IdentityKind::System)
                .trust_domain(TrustDomain::core()),
            at(1),
        )
        .unwrap();
    let (child, child_exec) = k
        .create_task(Some(pm), TaskSpec::new("worker"), at(42))
        .unwrap();
    let id = k.identity(child_exec).unwrap();
    assert_eq!(id.task_id, Some(child));
    assert_eq!(id.parent_id, Some(pm_exec));
    assert_eq!(id.creator_id, Some(pm_exec));
    assert!(id.is_child_of(pm_exec));
    assert_eq!(id.created_at_nanos, 42);
    assert_eq!(id.name, "worker");
    assert_eq!(id.kind, IdentityKind::Component);
    assert!(!id.same_domain(k.identity(pm_exec).unwrap()));
    assert_eq!(k.task_identity(child), Some(child_exec));
    assert_eq!(k.trust_domain(pm), Some(&TrustDomain::core()));
    let listed = k.tasks();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].name, "worker");
    assert_eq!(listed[1].parent, Some(pm_exec));
    assert_eq!(listed[1].state, SchedState::Ready);
}

#[test]
fn bad_names_and_dead_parents_are_rejected() {
    let mut k = kernel();
    assert_eq!(
        k.create_task(None, TaskSpec::new(""), T0),
        Err(KernelError::SpawnFailed(SpawnError::InvalidName))
    );
    assert_eq!(
        k.create_task(None, TaskSpec::new("x".repeat(33)), T0),
        Err(KernelError::SpawnFailed(SpawnError::InvalidName))
    );
    let p = spawn(&mut k, "p");
    k.terminate(p, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.create_task(Some(p), TaskSpec::new("orphan"), T0),
        Err(KernelError::TaskNotFound(p))
    );
    assert_eq!(k.task_count(), 0);
}

#[test]
fn task_and_execution_ids_are_never_reused() {
    let mut k = kernel();
    let mut tasks = BTreeSet::new();
    let mut execs = BTreeSet::new();
    for round in 0..200 {
        let (t, e) = k
            .create_task(None, TaskSpec::new("churn"), at(round))
            .unwrap();
        assert!(tasks.insert(t), "task id {t} reused");
        assert!(execs.insert(e), "execution id {e} reused");
        if round % 3 != 0 {
            k.terminate(t, ExitReason::Normal, at(round)).unwrap();
        }
    }
    assert_eq!(k.identity_count(), 200);
    // Dead ids stay dead even though their slots were reused.
    let first = *tasks.iter().nth(1).unwrap();
    assert!(!k.is_alive(first));
    assert!(
        k.task_identity(first).is_some(),
        "identity outlives the task"
    );
}

#[test]
fn every_exit_reason_produces_one_notification() {
    let mut k = kernel();
    let reasons = [
        ExitReason::Normal,
        ExitReason::Failure {
            error: "crashed".into(),
        },
        ExitReason::Cancelled {
            reason: "shutdown".into(),
        },
        ExitReason::Timeout,
    ];
    let mut expected = Vec::new();
    for (i, reason) in reasons.iter().enumerate() {
        let (t, e) = k.create_task(None, TaskSpec::new("t"), T0).unwrap();
        let n = k.terminate(t, reason.clone(), at(i as u64 + 1)).unwrap();
        assert_eq!((n.task_id, n.execution_id), (Some(t), e));
        assert_eq!(n.reason, *reason);
        assert_eq!(n.terminated_at_nanos, i as u64 + 1);
        expected.push(n);
    }
    assert_eq!(k.exit_notifications(), expected.as_slice());
    k.clear_exit_notifications();
    assert!(k.exit_notifications().is_empty());
}

#[test]
fn terminating_twice_is_an_error() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    k.terminate(t, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.terminate(t, ExitReason::Normal, T0),
        Err(KernelError::TaskNotFound(t))
    );
    assert_eq!(k.take_exit_notifications().len(), 1);
    assert_eq!(
        k.terminate(TaskId::from_raw(0), ExitReason::Normal, T0),
        Err(KernelError::TaskNotFound(TaskId::from_raw(0)))
    );
}

#[test]
fn termination_invalidates_every_capability_of_the_task() {
    let mut k = kernel();
    let root = spawn(&mut k, "root");
    let (child, _) = spawn_child(&mut k, root, "child");
    let h = k.mint(root, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    authorise(&mut k, root, child);
    let copy = k.grant(root, h, child, T0).unwrap();
    let chan = k.create_channel(child, T0).unwrap();
    let ids = [
        k.inspect(child, copy).unwrap().id,
        k.inspect(child, chan).unwrap().id,
    ];
    k.terminate(
        child,
        ExitReason::Failure {
            error: "fault".into(),
        },
        at(3),
    )
    .unwrap();
    for id in ids {
        assert!(k.audit_log().has_event(|e| matches!(
            e,
            CapabilityEvent::Invalidated { cap, holder: Some(h), reason: InvalidationReason::OwnerTerminated, .. }
                if *cap == id && *h == child
        )));
    }
    assert_eq!(
        k.lookup(child, copy, CapKind::KernelInfo, Rights::NONE, T0),
        Err(KernelError::TaskNotFound(child))
    );
    assert!(
        k.inspect(root, h).is_some(),
        "the granter's copy is unaffected"
    );
    assert_eq!(k.channel_count(), 0);
    k.check_invariants().unwrap();
}

#[test]
fn the_task_table_is_bounded() {
    let mut k = kernel();
    for _ in 0..pandagen_core::MAX_TASKS {
        spawn(&mut k, "t");
    }
    assert_eq!(
        k.create_task(None, TaskSpec::new("one-too-many"), T0),
        Err(KernelError::ResourceExhausted(
            pandagen_abi::error::Resource::Tasks
        ))
    );
    let last = k.tasks().last().unwrap().id;
    k.terminate(last, ExitReason::Normal, T0).unwrap();
    let (again, _) = k.create_task(None, TaskSpec::new("again"), T0).unwrap();
    assert_ne!(again, last);
}

#[test]
fn created_tasks_are_ready_at_their_priority() {
    let mut k = kernel();
    let t = spawn_at(&mut k, "t", Priority::HIGH);
    assert_eq!(k.task_info(t).unwrap().priority, Priority::HIGH);
    assert_eq!(k.task_state(t), Some(SchedState::Ready));
    assert_eq!(k.ready_count(), 1);
}

#[test]
fn free_standing_identities_get_fresh_ids_and_never_hijack_a_task() {
    let mut k = kernel();
    let (t, e) = k.create_task(None, TaskSpec::new("t"), T0).unwrap();
    let meta = pandagen_abi::IdentityMetadata::new(
        IdentityKind::PipelineStage,
        TrustDomain::sandbox(),
        "stage",
        7,
    )
    .with_task_id(t)
    .with_parent(e);
    let stage = k.create_identity(meta).unwrap();
    assert_ne!(stage, e);
    assert_eq!(k.identity(stage).unwrap().execution_id, stage);
    assert!(k.identity(stage).unwrap().is_child_of(e));
    assert_eq!(k.task_identity(t), Some(e));
    k.terminate(t, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.task_identity(t), Some(e), "still the execution it ran as");
    let (_, next) = k.create_task(None, TaskSpec::new("u"), T0).unwrap();
    assert!(next != stage && next != e);
}

#[test]
fn explicit_lineage_is_recorded_as_given() {
    let mut k = kernel();
    let (_, sup) = k.create_task(None, TaskSpec::new("sup"), T0).unwrap();
    let (_, creator) = k.create_task(None, TaskSpec::new("creator"), T0).unwrap();
    let (_, child) = k
        .create_task_with_lineage(TaskSpec::new("child"), Some(sup), Some(creator), at(3))
        .unwrap();
    let id = k.identity(child).unwrap();
    assert_eq!((id.parent_id, id.creator_id), (Some(sup), Some(creator)));
}

#[test]
fn lineage_must_name_executions_the_kernel_issued() {
    let mut k = kernel();
    let (_, real) = k.create_task(None, TaskSpec::new("real"), T0).unwrap();
    let never_issued = pandagen_abi::ExecutionId::from_raw(real.as_raw() + 1000);
    let tasks_before = k.task_count();
    assert_eq!(
        k.create_task_with_lineage(TaskSpec::new("orphan"), Some(never_issued), None, T0),
        Err(KernelError::UnknownExecution(never_issued))
    );
    assert_eq!(
        k.create_task_with_lineage(TaskSpec::new("orphan"), Some(real), Some(never_issued), T0),
        Err(KernelError::UnknownExecution(never_issued))
    );
    assert_eq!(k.task_count(), tasks_before, "nothing was created");
    // An identity a caller built but no kernel recorded has no id to be
    // anyone's parent.
    let unrecorded =
        pandagen_abi::IdentityMetadata::new(IdentityKind::Service, TrustDomain::core(), "x", 0);
    let child = pandagen_abi::IdentityMetadata::new(
        IdentityKind::PipelineStage,
        TrustDomain::sandbox(),
        "stage",
        0,
    )
    .with_parent(unrecorded.execution_id);
    assert_eq!(
        k.create_identity(child),
        Err(KernelError::UnknownExecution(
            pandagen_abi::ExecutionId::UNASSIGNED
        ))
    );
}

#[test]
fn ids_the_kernel_returns_build_lineage_that_names_the_right_executions() {
    let mut k = kernel();
    let (_, spawned) = k.create_task(None, TaskSpec::new("spawned"), T0).unwrap();
    let meta = |name: &str| {
        pandagen_abi::IdentityMetadata::new(IdentityKind::Component, TrustDomain::user(), name, 0)
    };
    let supervisor = k.create_identity(meta("supervisor")).unwrap();
    let worker = k
        .create_identity(meta("worker").with_parent(supervisor).with_creator(spawned))
        .unwrap();
    let (_, grandchild) = k
        .create_task_with_lineage(TaskSpec::new("grandchild"), Some(worker), None, T0)
        .unwrap();
    // Every id answers with the identity it was issued for, and the ids
    // from create_identity and create_task come from one sequence.
    let ids = [spawned, supervisor, worker, grandchild];
    for (i, a) in ids.iter().enumerate() {
        assert!(a.is_assigned());
        assert!(ids[i + 1..].iter().all(|b| b != a), "{a} issued twice");
    }
    assert_eq!(k.identity(supervisor).unwrap().name, "supervisor");
    let worker_meta = k.identity(worker).unwrap();
    assert_eq!(worker_meta.execution_id, worker);
    assert!(worker_meta.is_child_of(supervisor));
    assert_eq!(worker_meta.creator_id, Some(spawned));
    assert_eq!(k.identity(spawned).unwrap().name, "spawned");
    let grandchild_meta = k.identity(grandchild).unwrap();
    assert!(grandchild_meta.is_child_of(worker));
    assert_eq!(
        k.identity(grandchild_meta.parent_id.unwrap()).unwrap().name,
        "worker"
    );
}

#[test]
fn an_identity_may_name_only_a_task_the_kernel_created() {
    let mut k = kernel();
    let ghost = pandagen_abi::TaskId::from_raw(4242);
    let meta =
        pandagen_abi::IdentityMetadata::new(IdentityKind::Service, TrustDomain::core(), "g", 0)
            .with_task_id(ghost);
    assert_eq!(
        k.create_identity(meta),
        Err(KernelError::TaskNotFound(ghost))
    );
}

fn spawn_routed(
    k: &mut KernelCore,
    parent: TaskId,
    exit_channel: pandagen_abi::CapHandle,
) -> Result<TaskId, KernelError> {
    k.spawn(
        parent,
        pandagen_core::SpawnArgs {
            spec: TaskSpec::new("child"),
            with_image: false,
            capabilities: &[],
            exit_channel: Some(exit_channel),
        },
        T0,
    )
    .map(|s| s.task)
}

/// The exit notification of every child arrives, however full other tasks
/// keep the exit channel and however long the exit reason: it is bounded
/// and goes into room tasks' sends cannot take.
#[test]
fn exit_notifications_survive_a_flooded_channel_and_an_oversized_reason() {
    let mut k = KernelCore::new(pandagen_core::CoreConfig {
        default_queue_capacity: 2,
        ..pandagen_core::CoreConfig::default()
    });
    let parent = spawn(&mut k, "parent");
    let flooder = spawn(&mut k, "flooder");
    let exits = k.create_channel(parent, T0).unwrap();
    let public = k
        .clone_cap(parent, exits, Rights::SEND | Rights::GRANT, T0)
        .unwrap();
    authorise(&mut k, parent, flooder);
    let to_parent = k.grant(parent, public, flooder, T0).unwrap();
    let children: Vec<TaskId> = (0..3)
        .map(|_| spawn_routed(&mut k, parent, exits).unwrap())
        .collect();
    while k.send(flooder, to_parent, vec![0; 8], &[], T0).is_ok() {}
    let huge = "x".repeat(pandagen_abi::envelope::MAX_MESSAGE_BYTES * 2);
    for &child in &children {
        let reason = ExitReason::Failure {
            error: huge.clone().into(),
        };
        k.terminate(child, reason, T0).unwrap();
    }
    // The notifications did not make room for the flooder.
    assert_eq!(
        k.send(flooder, to_parent, vec![0; 8], &[], T0),
        Err(KernelError::SendFailed(
            pandagen_abi::error::SendError::QueueFull
        ))
    );
    k.check_invariants().unwrap();
    let mut notified = Vec::new();
    while let Ok(Some(m)) = k.receive(parent, exits, T0) {
        if m.sender != pandagen_core::channel::KERNEL_SENDER {
            continue;
        }
        let envelope = pandagen_abi::MessageEnvelope::decode(&m.bytes).unwrap();
        let n: pandagen_abi::ExitNotification = envelope.payload.decode().unwrap();
        let ExitReason::Failure {
            error: pandagen_abi::FailureCause::Described(text),
        } = n.reason
        else {
            panic!("reason changed kind");
        };
        assert_eq!(text.len(), pandagen_abi::identity::MAX_EXIT_REASON_TEXT);
        notified.push(n.task_id.unwrap());
    }
    assert_eq!(notified, children);
    k.check_invariants().unwrap();
}

/// A spawner can only route a child's exit to a channel it receives on:
/// otherwise notifications (which bypass the queue bound) could be aimed
/// at someone else's queue.
#[test]
fn an_exit_route_needs_the_receive_right() {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let victim = spawn(&mut k, "victim");
    let theirs = k.create_channel(victim, T0).unwrap();
    let send_only = k
        .clone_cap(victim, theirs, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    authorise(&mut k, victim, parent);
    let held = k.delegate(victim, send_only, parent, T0).unwrap();
    let tasks = k.task_count();
    assert_eq!(
        spawn_routed(&mut k, parent, held),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(k.task_count(), tasks);
}

/// A kernel configured to keep nothing about ended tasks forgets the
/// identity of each as it dies, so a task's death gives back everything it
/// cost; by default (a host supervisor's record) identities stay.
#[test]
fn an_ended_tasks_identity_is_forgotten_unless_kept() {
    for keep in [true, false] {
        let mut k = KernelCore::new(pandagen_core::CoreConfig {
            keep_ended_identities: keep,
            ..pandagen_core::CoreConfig::default()
        });
        let root = spawn(&mut k, "root");
        let before = k.identity_count();
        let (child, execution) = spawn_child(&mut k, root, "child");
        k.terminate(child, ExitReason::Normal, T0).unwrap();
        assert_eq!(k.identity(execution).is_some(), keep);
        assert_eq!(k.task_identity(child).is_some(), keep);
        let expected = if keep { before + 1 } else { before };
        assert_eq!(k.identity_count(), expected);
        assert!(k.task_identity(root).is_some());
    }
}
