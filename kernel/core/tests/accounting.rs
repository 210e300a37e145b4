//! Accounting: the counts and records the kernel keeps about its objects
//! are exact — what dies is removed, nothing else is, and what is pushed
//! out is counted.

mod common;

use common::*;
use pandagen_abi::{ExitReason, KernelError, Priority, Rights, ServiceId};
use pandagen_core::{CapabilityEvent, CoreConfig, KernelCore, Mintable, TaskSpec};

/// A new task serving `services`, all on one channel.
fn server(k: &mut KernelCore, name: &str, services: &[u64]) -> pandagen_abi::TaskId {
    let t = spawn(k, name);
    let chan = k.create_channel(t, T0).unwrap();
    for &s in services {
        register(k, t, ServiceId::from_raw(s), chan);
    }
    t
}

fn registered(k: &KernelCore) -> Vec<u64> {
    k.services().iter().map(|r| r.service.as_raw()).collect()
}

#[test]
fn a_dying_task_loses_its_registrations_and_nobody_else_does() {
    let mut k = kernel();
    let a = server(&mut k, "a", &[1, 3]);
    let b = server(&mut k, "b", &[2, 4]);
    assert_eq!(registered(&k), [1, 2, 3, 4]);
    k.terminate(a, ExitReason::Normal, T0).unwrap();
    assert_eq!(registered(&k), [2, 4]);
    for gone in [1, 3] {
        assert_eq!(k.service(ServiceId::from_raw(gone)), None);
    }
    let client = spawn(&mut k, "client");
    assert_eq!(
        k.lookup_service(client, ServiceId::from_raw(1), T0),
        Err(KernelError::ServiceNotFound(ServiceId::from_raw(1)))
    );
    let to_b = k
        .lookup_service(client, ServiceId::from_raw(4), T0)
        .unwrap();
    k.send(client, to_b, b"still here".to_vec(), &[], T0)
        .unwrap();
    assert_eq!(k.service(ServiceId::from_raw(2)).unwrap().owner, b);
    k.check_invariants().unwrap();
    // The freed ids can be registered again.
    server(&mut k, "a2", &[1, 3]);
    assert_eq!(registered(&k), [1, 2, 3, 4]);
    k.check_invariants().unwrap();
}

#[test]
fn only_the_owner_may_withdraw_a_registration() {
    let mut k = kernel();
    let a = server(&mut k, "a", &[1]);
    let b = spawn(&mut k, "b");
    let svc = ServiceId::from_raw(1);
    assert_eq!(
        k.unregister_service(b, svc),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.unregister_service(a, ServiceId::from_raw(2)),
        Err(KernelError::ServiceNotFound(ServiceId::from_raw(2)))
    );
    k.terminate(b, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.unregister_service(b, svc),
        Err(KernelError::TaskNotFound(b))
    );
    assert_eq!(registered(&k), [1]);
    k.unregister_service(a, svc).unwrap();
    assert!(registered(&k).is_empty());
    k.check_invariants().unwrap();
}

#[test]
fn closing_a_registered_channel_removes_exactly_its_registrations() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let reg = k
        .mint(a, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let doomed = k.create_channel(a, T0).unwrap();
    let kept = k.create_channel(a, T0).unwrap();
    for (s, chan) in [(1, doomed), (2, kept), (3, doomed)] {
        k.register_service(a, reg, ServiceId::from_raw(s), chan, T0)
            .unwrap();
    }
    // Another task can still send to the doomed channel: it outlives its
    // receive right, closed.
    let b = spawn(&mut k, "b");
    authorise(&mut k, a, b);
    let to_doomed = k.grant(a, doomed, b, T0).unwrap();
    let to_doomed = {
        let weak = k
            .clone_cap(b, to_doomed, Rights::SEND | Rights::TRANSFER, T0)
            .unwrap();
        let full = to_doomed;
        k.drop_cap(b, full, T0).unwrap();
        weak
    };
    k.drop_cap(a, doomed, T0).unwrap();
    assert_eq!(registered(&k), [2]);
    assert_eq!(k.channel_count(), 2);
    assert_eq!(
        k.send(b, to_doomed, vec![], &[], T0),
        Err(KernelError::SendFailed(
            pandagen_abi::error::SendError::ChannelClosed
        ))
    );
    k.check_invariants().unwrap();
    k.drop_cap(b, to_doomed, T0).unwrap();
    assert_eq!(k.channel_count(), 1);
    k.check_invariants().unwrap();
}

#[test]
fn exit_notifications_pushed_out_are_counted() {
    let mut k = KernelCore::new(CoreConfig {
        exit_notification_capacity: 2,
        ..CoreConfig::default()
    });
    let tasks: Vec<_> = (0..5).map(|_| spawn(&mut k, "t")).collect();
    for (n, &t) in tasks.iter().enumerate() {
        k.terminate(t, ExitReason::Normal, at(n as u64)).unwrap();
    }
    assert_eq!(k.exit_notifications_dropped(), 3);
    let kept: Vec<_> = k
        .exit_notifications()
        .iter()
        .map(|n| n.task_id.unwrap())
        .collect();
    assert_eq!(kept, tasks[3..], "the newest stay, oldest first");
    assert_eq!(k.take_exit_notifications().len(), 2);
    assert!(k.exit_notifications().is_empty());
    // Room again: nothing more is dropped until the ring is full.
    let t = spawn(&mut k, "t");
    k.terminate(t, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.exit_notifications_dropped(), 3);
    k.clear_exit_notifications();
    assert!(k.exit_notifications().is_empty());

    // A capacity of zero still keeps the newest one.
    let mut k = KernelCore::new(CoreConfig {
        exit_notification_capacity: 0,
        ..CoreConfig::default()
    });
    let (a, b) = (spawn(&mut k, "a"), spawn(&mut k, "b"));
    k.terminate(a, ExitReason::Normal, T0).unwrap();
    k.terminate(b, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.exit_notifications().len(), 1);
    assert_eq!(k.exit_notifications()[0].task_id, Some(b));
    assert_eq!(k.exit_notifications_dropped(), 1);
}

#[test]
fn live_task_channel_and_ready_counts_follow_every_change() {
    let mut k = kernel();
    assert_eq!(
        (k.task_count(), k.channel_count(), k.ready_count()),
        (0, 0, 0)
    );
    let a = spawn(&mut k, "a");
    let b = spawn_at(&mut k, "b", Priority::HIGH);
    assert_eq!((k.task_count(), k.ready_count()), (2, 2));
    let ch = k.create_channel(a, T0).unwrap();
    k.create_channel(b, T0).unwrap();
    assert_eq!(k.channel_count(), 2);
    assert_eq!(k.pick_next(), Some(b));
    assert_eq!(k.ready_count(), 1, "running is not ready");
    assert!(k.yield_task(b));
    assert_eq!(k.ready_count(), 2);
    assert!(k.sleep_until(a, at(10), T0).unwrap());
    assert_eq!(k.ready_count(), 1);
    assert_eq!(k.expire_deadlines(at(10)), 1);
    assert_eq!(k.ready_count(), 2);
    k.drop_cap(a, ch, T0).unwrap();
    assert_eq!(k.channel_count(), 1);
    k.terminate(b, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        (k.task_count(), k.channel_count(), k.ready_count()),
        (1, 0, 1)
    );
    assert_eq!(k.identity_count(), 2, "identities outlive tasks");
    let info = k.tasks();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].id, a);
    assert_eq!(info[0].caps, 0);
}

#[test]
fn the_audit_log_keeps_its_capacity_and_clears_without_losing_totals() {
    let mut k = KernelCore::new(CoreConfig {
        audit_capacity: 3,
        ..CoreConfig::default()
    });
    assert_eq!(k.audit_log().capacity(), 3);
    assert!(k.audit_log().is_empty());
    assert_eq!(k.audit_log().len(), 0);
    let t = spawn(&mut k, "t");
    for _ in 0..2 {
        k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    }
    assert!(!k.audit_log().is_empty());
    assert_eq!(k.audit_log().len(), 2);
    for _ in 0..3 {
        k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    }
    assert_eq!(k.audit_log().len(), 3, "bounded by its capacity");
    assert_eq!(k.audit_log().dropped(), 2);
    k.audit_log_mut().clear();
    assert!(k.audit_log().is_empty());
    assert_eq!(k.audit_log().len(), 0);
    assert_eq!(k.audit_log().total(), 5, "totals go on");
    assert_eq!(k.audit_log().counts().granted, 5);
    assert_eq!(k.audit_log().capacity(), 3);
    let h = k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    k.drop_cap(t, h, T0).unwrap();
    let seqs: Vec<u64> = k.audit_log().records().map(|r| r.seq).collect();
    assert_eq!(seqs, [5, 6], "sequence numbers continue after a clear");
    assert!(matches!(
        k.audit_log().events().last(),
        Some(CapabilityEvent::Dropped { .. })
    ));

    // A capacity of zero keeps the newest event.
    let mut k = KernelCore::new(CoreConfig {
        audit_capacity: 0,
        ..CoreConfig::default()
    });
    let t = k.create_task(None, TaskSpec::new("t"), T0).unwrap().0;
    k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    k.mint(t, Mintable::BootImage, Rights::READ, T0).unwrap();
    assert_eq!(k.audit_log().capacity(), 1);
    assert_eq!(k.audit_log().len(), 1);
}
