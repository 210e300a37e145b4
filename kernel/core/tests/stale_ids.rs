//! Stale identities: a task id or channel reference whose slot was freed
//! and reused must never reach the new occupant.

mod common;

use common::*;
use pandagen_abi::error::SendError;
use pandagen_abi::{ExitReason, KernelError, Priority};
use pandagen_core::{slot_index, SpawnArgs, TaskSpec};

#[test]
fn a_dead_task_id_cannot_act_on_the_task_that_reuses_its_slot() {
    let mut k = kernel();
    let old = spawn(&mut k, "old");
    let old_exec = k.task_identity(old).unwrap();
    k.terminate(old, ExitReason::Normal, T0).unwrap();
    let new = spawn_at(&mut k, "new", Priority::IDLE);
    assert_eq!(slot_index(new), slot_index(old), "the slot is reused");
    assert_ne!(new, old);
    let chan = k.create_channel(new, T0).unwrap();
    let before = k.cap_count(new);

    assert!(!k.is_alive(old));
    assert_eq!(k.task_state(old), None);
    assert_eq!(k.task_info(old), None);
    assert_eq!(k.trust_domain(old), None);
    assert_eq!(k.cap_count(old), 0);
    assert_eq!(k.task_identity(old), Some(old_exec), "its own identity");
    assert_ne!(k.task_identity(new), Some(old_exec));

    // Nothing done in the old id's name touches the new task.
    assert_eq!(
        k.create_channel(old, T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.send(old, chan, b"x".to_vec(), &[], T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.receive(old, chan, T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.drop_cap(old, chan, T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.set_priority(old, Priority::HIGH),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(k.task_info(new).unwrap().priority, Priority::IDLE);
    assert!(!k.yield_task(old));
    assert_eq!(
        k.sleep_until(old, at(10), T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(k.take_wake_reason(old), None);
    assert_eq!(
        k.terminate(old, ExitReason::Normal, T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.create_task(Some(old), TaskSpec::new("orphan"), T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.spawn(
            old,
            SpawnArgs {
                spec: TaskSpec::new("orphan"),
                with_image: false,
                capabilities: &[],
                exit_channel: None,
                frames: 0,
            },
            T0,
        ),
        Err(KernelError::TaskNotFound(old))
    );
    assert!(k.is_alive(new));
    assert_eq!(k.cap_count(new), before);
    assert_eq!(k.task_count(), 1);
    k.check_invariants().unwrap();
}

#[test]
fn a_destroyed_channel_reference_never_names_the_channel_in_its_slot() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let first = k.create_channel(t, T0).unwrap();
    let old = k.channel_of(t, first, T0).unwrap();
    // A message accepted for the old channel but not yet delivered.
    let parked = k.prepare_send(t, first, b"late".to_vec(), &[], T0).unwrap();
    k.drop_cap(t, first, T0).unwrap();
    assert!(!k.channel_exists(old));

    let second = k.create_channel(t, T0).unwrap();
    let new = k.channel_of(t, second, T0).unwrap();
    assert_eq!(new.index(), old.index(), "the slot is reused");
    assert_ne!(new.generation(), old.generation());
    k.send(t, second, b"a".to_vec(), &[], T0).unwrap();
    k.send(t, second, b"b".to_vec(), &[], T0).unwrap();

    assert!(!k.channel_exists(old));
    assert!(k.is_channel_closed(old));
    assert!(!k.is_channel_closed(new));
    assert_eq!(k.queue_len(old), None);
    assert_eq!(k.queue_capacity(old), None);
    assert!(
        !k.swap_queued(old, 0, 1),
        "no reordering through the old ref"
    );
    assert_eq!(
        k.send_from_kernel(old, b"lost".to_vec(), t, T0),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    assert_eq!(
        k.enqueue(parked, T0),
        Err(KernelError::SendFailed(SendError::ChannelClosed)),
        "the late message is not delivered to the successor"
    );
    assert_eq!(k.queue_len(new), Some(2));
    let got: Vec<Vec<u8>> = (0..2)
        .map(|_| k.receive(t, second, T0).unwrap().unwrap().bytes)
        .collect();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    k.check_invariants().unwrap();
}

#[test]
fn an_exit_route_to_a_destroyed_channel_does_not_reach_its_successor() {
    let mut k = kernel();
    let root = k.create_root_task("root", T0).unwrap().task;
    let exits = k.create_channel(root, T0).unwrap();
    let old = k.channel_of(root, exits, T0).unwrap();
    let child = spawn_routed(&mut k, root, exits);
    assert_eq!(k.exit_route(child), Some(old));
    k.drop_cap(root, exits, T0).unwrap();
    let successor = k.create_channel(root, T0).unwrap();
    let new = k.channel_of(root, successor, T0).unwrap();
    assert_eq!(new.index(), old.index());
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.queue_len(new), Some(0));
    assert_eq!(k.receive(root, successor, T0), Ok(None));
    // The notification is still recorded for supervisors.
    assert_eq!(
        k.exit_notifications().last().map(|n| n.task_id),
        Some(Some(child))
    );
    k.check_invariants().unwrap();
}

#[test]
fn a_grant_to_a_dead_task_id_does_not_reach_the_slot_successor() {
    let mut k = kernel();
    let giver = spawn(&mut k, "giver");
    let old = spawn(&mut k, "old");
    // Authority over the old task, obtained while it lived.
    authorise(&mut k, giver, old);
    k.terminate(old, ExitReason::Normal, T0).unwrap();
    let new = spawn(&mut k, "new");
    assert_eq!(slot_index(new), slot_index(old));
    let chan = k.create_channel(giver, T0).unwrap();
    assert_eq!(
        k.grant(giver, chan, new, T0),
        Err(KernelError::InsufficientAuthority),
        "authority over the old task is none over its successor"
    );
    assert_eq!(
        k.grant(giver, chan, old, T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(
        k.delegate(giver, chan, old, T0),
        Err(KernelError::TaskNotFound(old))
    );
    assert_eq!(k.cap_count(new), 0);
    assert!(k.inspect(giver, chan).is_some(), "the giver keeps it");
    k.check_invariants().unwrap();
}
