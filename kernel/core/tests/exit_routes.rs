//! Exit routes: a spawner names where its child's exit notification goes;
//! the kernel sends it there once (in room kept for it, so a full channel
//! still takes it), or hands the route to a kernel that delivers it
//! itself; a closed route loses only the message.

mod common;

use common::*;
use pandagen_abi::{ExitNotification, ExitReason, KernelError, MessageEnvelope, Rights};
use pandagen_core::{SpawnArgs, TaskSpec};

fn notification(bytes: &[u8]) -> ExitNotification {
    MessageEnvelope::decode(bytes)
        .unwrap()
        .payload
        .decode()
        .unwrap()
}

#[test]
fn the_notification_goes_to_the_route_once() {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let exits = k.create_channel(parent, T0).unwrap();
    let child = spawn_routed(&mut k, parent, exits);
    let ch = k.channel_of(parent, exits, T0).unwrap();
    assert_eq!(k.exit_route(child), Some(ch));
    k.terminate(child, ExitReason::Normal, at(4)).unwrap();
    let got = k.receive(parent, exits, T0).unwrap().unwrap();
    let n = notification(&got.bytes);
    assert_eq!((n.task_id, n.terminated_at_nanos), (Some(child), 4));
    assert_eq!(k.exit_route(child), None);
    assert_eq!(k.receive(parent, exits, T0), Ok(None), "only once");
}

#[test]
fn a_kernel_that_takes_the_route_delivers_it_itself() {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let exits = k.create_channel(parent, T0).unwrap();
    let child = spawn_routed(&mut k, parent, exits);
    let ch = k.channel_of(parent, exits, T0).unwrap();
    assert_eq!(k.take_exit_route(child), Some(ch));
    assert_eq!(k.exit_route(child), None);
    assert_eq!(k.take_exit_route(child), None);
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.queue_len(ch), Some(0), "terminate sent nothing");
    assert_eq!(k.exit_notifications().len(), 1, "but recorded it");
}

#[test]
fn a_full_route_still_takes_the_notification() {
    // The kernel keeps room for exit notifications beyond the queue
    // bound: a parent whose channel is full still learns of the exit.
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let exits = k.create_channel_with_capacity(parent, 1, T0).unwrap();
    let child = spawn_routed(&mut k, parent, exits);
    k.send(parent, exits, b"filler".to_vec(), &[], T0).unwrap();
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.receive(parent, exits, T0).unwrap().unwrap().bytes,
        b"filler"
    );
    let n = notification(&k.receive(parent, exits, T0).unwrap().unwrap().bytes);
    assert_eq!(n.task_id, Some(child));
    assert_eq!(k.receive(parent, exits, T0), Ok(None));
    k.check_invariants().unwrap();
}

#[test]
fn a_closed_route_loses_the_message_but_not_the_record() {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let exits = k.create_channel(parent, T0).unwrap();
    let child = spawn_routed(&mut k, parent, exits);
    k.drop_cap(parent, exits, T0).unwrap();
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.exit_notifications().last().and_then(|n| n.task_id),
        Some(child)
    );
    assert_eq!(k.channel_count(), 0);
    k.check_invariants().unwrap();
}

#[test]
fn a_route_needs_receive_on_a_channel() {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let exits = k.create_channel(parent, T0).unwrap();
    // A route is a channel the spawner itself receives on.
    let send_only = k.clone_cap(parent, exits, Rights::SEND, T0).unwrap();
    let info = k
        .mint(parent, pandagen_core::Mintable::KernelInfo, Rights::ALL, T0)
        .unwrap();
    for (route, expected) in [
        (send_only, KernelError::InsufficientAuthority),
        (
            info,
            KernelError::WrongCapabilityKind {
                expected: pandagen_abi::CapKind::Channel,
                found: pandagen_abi::CapKind::KernelInfo,
            },
        ),
    ] {
        let refused = k.spawn(
            parent,
            SpawnArgs {
                spec: TaskSpec::new("child"),
                with_image: false,
                capabilities: &[],
                exit_channel: Some(route),
            },
            T0,
        );
        assert_eq!(refused, Err(expected));
    }
    assert_eq!(k.task_count(), 1, "no child was created");
}
