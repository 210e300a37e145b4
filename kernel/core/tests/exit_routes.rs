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
    let route = k.take_exit_route(child).unwrap();
    assert_eq!(route.channel(), ch);
    assert_eq!(k.exit_route(child), None);
    assert!(k.take_exit_route(child).is_none());
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.queue_len(ch), Some(0), "terminate sent nothing");
    assert_eq!(k.exit_notifications().len(), 1, "but recorded it");
    // The taken route still holds its reservation until it is forgotten.
    assert!(k.check_invariants().is_err());
    k.forget_exit_route(route);
    k.check_invariants().unwrap();
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
                frames: 0,
            },
            T0,
        );
        assert_eq!(refused, Err(expected));
    }
    assert_eq!(k.task_count(), 1, "no child was created");
}

/// A service channel with a kernel channel bound to it, the route of one
/// child's exit, and an attacker holding a send right on the service
/// channel: the process manager's situation.
struct Bound {
    k: pandagen_core::KernelCore,
    parent: pandagen_abi::TaskId,
    service: pandagen_abi::CapHandle,
    kernel_channel: pandagen_abi::CapHandle,
    attacker: pandagen_abi::TaskId,
    attacker_send: pandagen_abi::CapHandle,
    /// The parent's `ServiceRegistry` capability.
    registry: pandagen_abi::CapHandle,
}

fn bound_service(capacity: u32) -> Bound {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let attacker = spawn(&mut k, "attacker");
    let service = k
        .create_channel_with_capacity(parent, capacity, T0)
        .unwrap();
    let kernel_channel = k.bind_kernel_channel(parent, service, T0).unwrap();
    let registry = k
        .mint(
            parent,
            pandagen_core::Mintable::ServiceRegistry,
            Rights::REGISTER,
            T0,
        )
        .unwrap();
    let id = pandagen_abi::ServiceId::from_raw(77);
    k.register_service(parent, registry, id, service, T0)
        .unwrap();
    let attacker_send = k.lookup_service(attacker, id, T0).unwrap();
    Bound {
        k,
        parent,
        service,
        kernel_channel,
        attacker,
        attacker_send,
        registry,
    }
}

#[test]
fn a_flooded_service_channel_still_delivers_exits_through_its_kernel_channel() {
    let Bound {
        mut k,
        parent,
        service,
        kernel_channel,
        attacker,
        attacker_send,
        ..
    } = bound_service(2);
    let children: Vec<_> = (0..3)
        .map(|_| spawn_routed(&mut k, parent, kernel_channel))
        .collect();
    while k
        .send(attacker, attacker_send, b"flood".to_vec(), &[], T0)
        .is_ok()
    {}
    for &child in &children {
        k.terminate(child, ExitReason::Normal, T0).unwrap();
    }
    // Nothing but the kernel wrote to the kernel channel; the service
    // channel's queue is still full of the attacker's messages.
    let kernel_ch = k.channel_of(parent, kernel_channel, T0).unwrap();
    assert_eq!(k.queue_len(kernel_ch), Some(3));
    let mut exits = Vec::new();
    let mut floods = 0;
    let mut last_seq = 0;
    // Bounded: an attacker refilling the queue must not keep the exits
    // out for more than what was queued before them.
    for _ in 0..children.len() + 2 {
        let got = k.receive(parent, service, T0).unwrap().unwrap();
        assert!(got.seq > last_seq || last_seq == 0, "in send order");
        last_seq = got.seq;
        if got.bytes == b"flood" {
            floods += 1;
            // The attacker keeps the queue full while the parent reads.
            let _ = k.send(attacker, attacker_send, b"flood".to_vec(), &[], T0);
        } else {
            assert_eq!(got.sender, pandagen_abi::ids::KERNEL_TASK);
            exits.push(notification(&got.bytes).task_id.unwrap());
        }
    }
    assert_eq!(exits, children, "every exit, in order, none lost");
    assert_eq!(floods, 2, "behind only what was queued before them");
    k.check_invariants().unwrap();
}

#[test]
fn a_receiver_blocked_on_the_service_channel_wakes_for_a_kernel_message() {
    let Bound {
        mut k,
        parent,
        service,
        kernel_channel,
        ..
    } = bound_service(4);
    let child = spawn_routed(&mut k, parent, kernel_channel);
    assert_eq!(
        k.receive_or_block(parent, service, None, T0),
        Ok(pandagen_core::RecvOutcome::Blocked)
    );
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.take_wake_reason(parent),
        Some(pandagen_core::WakeReason::MessageArrived)
    );
    let pandagen_core::RecvOutcome::Message(got) =
        k.receive_or_block(parent, service, None, T0).unwrap()
    else {
        panic!("the exit notification is waiting");
    };
    assert_eq!(notification(&got.bytes).task_id, Some(child));
    k.check_invariants().unwrap();
}

#[test]
fn service_and_kernel_messages_are_received_in_send_order() {
    let Bound {
        mut k,
        parent,
        service,
        kernel_channel,
        attacker,
        attacker_send,
        ..
    } = bound_service(8);
    let first = spawn_routed(&mut k, parent, kernel_channel);
    let second = spawn_routed(&mut k, parent, kernel_channel);
    k.send(attacker, attacker_send, b"a".to_vec(), &[], T0)
        .unwrap();
    k.terminate(first, ExitReason::Normal, T0).unwrap();
    k.send(attacker, attacker_send, b"b".to_vec(), &[], T0)
        .unwrap();
    k.terminate(second, ExitReason::Normal, T0).unwrap();
    k.send(attacker, attacker_send, b"c".to_vec(), &[], T0)
        .unwrap();
    let mut order = Vec::new();
    while let Some(got) = k.receive(parent, service, T0).unwrap() {
        order.push(if got.sender == pandagen_abi::ids::KERNEL_TASK {
            alloc_name(notification(&got.bytes).task_id == Some(first))
        } else {
            String::from_utf8(got.bytes).unwrap()
        });
    }
    assert_eq!(order, ["a", "first", "b", "second", "c"]);
}

fn alloc_name(first: bool) -> String {
    String::from(if first { "first" } else { "second" })
}

#[test]
fn only_a_receiver_binds_and_nobody_can_send_on_a_kernel_channel() {
    let Bound {
        mut k,
        parent,
        service,
        kernel_channel,
        attacker,
        attacker_send,
        registry,
    } = bound_service(4);
    use pandagen_abi::error::ChannelError;
    assert_eq!(
        k.bind_kernel_channel(attacker, attacker_send, T0),
        Err(KernelError::InsufficientAuthority),
        "a sender cannot bind"
    );
    assert_eq!(
        k.bind_kernel_channel(parent, service, T0),
        Err(KernelError::ChannelError(ChannelError::AlreadyBound))
    );
    assert_eq!(
        k.bind_kernel_channel(parent, kernel_channel, T0),
        Err(KernelError::ChannelError(ChannelError::KernelOnly))
    );
    let info = k.inspect(parent, kernel_channel).unwrap();
    assert_eq!(info.rights, Rights::RECEIVE, "no send right exists");
    assert!(k
        .send(parent, kernel_channel, b"x".to_vec(), &[], T0)
        .is_err());
    // Registering it would let a lookup make a sender.
    assert_eq!(
        k.register_service(
            parent,
            registry,
            pandagen_abi::ServiceId::from_raw(78),
            kernel_channel,
            T0
        ),
        Err(KernelError::ChannelError(ChannelError::KernelOnly))
    );
    k.check_invariants().unwrap();
}

#[test]
fn the_binder_pays_and_either_end_closing_ends_the_binding() {
    use pandagen_core::budget::{CAP_COST, CHANNEL_COST};
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let service = k.create_channel(parent, T0).unwrap();
    let before = k.budget(parent).unwrap().used;
    let kernel_channel = k.bind_kernel_channel(parent, service, T0).unwrap();
    assert_eq!(
        k.budget(parent).unwrap().used.memory,
        before.memory + CHANNEL_COST + CAP_COST
    );
    // The kernel channel's end goes: its charge comes back, and the
    // service channel can be bound again.
    k.drop_cap(parent, kernel_channel, T0).unwrap();
    assert_eq!(k.budget(parent).unwrap().used, before);
    assert_eq!(k.channel_count(), 1);
    let kernel_channel = k.bind_kernel_channel(parent, service, T0).unwrap();
    // The service channel's end goes first: the kernel channel still
    // delivers the exits routed to it, through its own capability.
    let child = spawn_routed(&mut k, parent, kernel_channel);
    k.drop_cap(parent, service, T0).unwrap();
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    let got = k.receive(parent, kernel_channel, T0).unwrap().unwrap();
    assert_eq!(notification(&got.bytes).task_id, Some(child));
    k.check_invariants().unwrap();
    k.drop_cap(parent, kernel_channel, T0).unwrap();
    assert_eq!(k.channel_count(), 0);
    assert_eq!(
        k.budget(parent).unwrap().used.memory,
        before.memory - CHANNEL_COST - CAP_COST
    );
    k.check_invariants().unwrap();
}

/// The spawner pays for the kernel's notification of its child's exit:
/// reserved when the route is recorded, the queued message's charge once
/// the child dies, returned when it is received.
#[test]
fn the_spawner_pays_for_the_exit_notification_from_spawn_to_receipt() {
    use pandagen_core::budget::{message_cost, EXIT_ROUTE_COST};
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let exits = k.create_channel(parent, T0).unwrap();
    let before = k.budget(parent).unwrap().used.memory;
    let unrouted = spawn_child_with_route(&mut k, parent, None);
    let with_child = k.budget(parent).unwrap().used.memory;
    let routed = spawn_child_with_route(&mut k, parent, Some(exits));
    let grant = with_child - before;
    assert_eq!(
        k.budget(parent).unwrap().used.memory,
        with_child + grant + EXIT_ROUTE_COST,
        "the route's reservation on top of the child's grant"
    );
    k.check_invariants().unwrap();
    k.terminate(routed, ExitReason::Normal, T0).unwrap();
    let ch = k.channel_of(parent, exits, T0).unwrap();
    assert_eq!(k.queue_len(ch), Some(1));
    k.check_invariants().unwrap();
    let got = k.receive(parent, exits, T0).unwrap().unwrap();
    assert!(message_cost(got.bytes.len(), 0) <= EXIT_ROUTE_COST);
    assert_eq!(k.budget(parent).unwrap().used.memory, with_child);
    k.terminate(unrouted, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.budget(parent).unwrap().used.memory, before);
    k.check_invariants().unwrap();
}

#[test]
fn a_spawner_that_cannot_pay_for_the_notification_gets_no_routed_child() {
    use pandagen_abi::error::Resource;
    use pandagen_abi::Budget;
    use pandagen_core::budget::{CAP_COST, CHANNEL_COST, EXIT_ROUTE_COST, TASK_COST};
    let mut k = kernel();
    let root = spawn(&mut k, "root");
    let child_budget = Budget::memory(TASK_COST + 4096);
    // Room for its own task, a channel, and one child's grant: not for
    // the grant and a route's reservation together.
    let limit = TASK_COST + CHANNEL_COST + CAP_COST + child_budget.memory + EXIT_ROUTE_COST - 1;
    let parent = spawn_under(
        &mut k,
        root,
        TaskSpec::new("parent").budget(Budget::memory(limit)),
        None,
    )
    .unwrap();
    let exits = k.create_channel(parent, T0).unwrap();
    let tasks = k.task_count();
    let child = || TaskSpec::new("child").budget(child_budget);
    assert_eq!(
        spawn_under(&mut k, parent, child(), Some(exits)),
        Err(KernelError::ResourceExhausted(Resource::MemoryBudget))
    );
    assert_eq!(k.task_count(), tasks, "nothing was created");
    k.check_invariants().unwrap();
    // Without a route the same child fits.
    spawn_under(&mut k, parent, child(), None).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn a_closed_route_returns_the_reservation() {
    let mut k = kernel();
    let parent = spawn(&mut k, "parent");
    let base = k.budget(parent).unwrap().used;
    let exits = k.create_channel(parent, T0).unwrap();
    let child = spawn_child_with_route(&mut k, parent, Some(exits));
    k.drop_cap(parent, exits, T0).unwrap();
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.budget(parent).unwrap().used, base);
    k.check_invariants().unwrap();
}

#[test]
fn the_largest_exit_notification_fits_its_reservation() {
    use pandagen_abi::identity::MAX_EXIT_REASON_TEXT;
    use pandagen_abi::{ExecutionId, FailureCause, TaskId};
    use pandagen_core::budget::EXIT_NOTIFICATION_BYTES;
    let long = "\u{10FFFF}".repeat(MAX_EXIT_REASON_TEXT);
    for reason in [
        ExitReason::Normal,
        ExitReason::Timeout,
        ExitReason::Cancelled {
            reason: long.clone(),
        },
        ExitReason::Failure {
            error: FailureCause::Described(long.clone()),
        },
    ] {
        let n = ExitNotification {
            execution_id: ExecutionId::from_raw(u64::MAX),
            task_id: Some(TaskId::from_raw(u64::MAX)),
            reason: reason.bounded(),
            terminated_at_nanos: u64::MAX,
        };
        let bytes = pandagen_core::exit_notification_bytes(&n).unwrap();
        assert!(
            bytes.len() <= EXIT_NOTIFICATION_BYTES,
            "{} bytes",
            bytes.len()
        );
    }
}

fn spawn_child_with_route(
    k: &mut pandagen_core::KernelCore,
    parent: pandagen_abi::TaskId,
    route: Option<pandagen_abi::CapHandle>,
) -> pandagen_abi::TaskId {
    spawn_under(k, parent, TaskSpec::new("child"), route).unwrap()
}

/// A spawner that dies before its child leaves the reservation on its
/// closed account; the child's death (its route now closed) returns it,
/// and everything comes back to the spawner's own parent.
#[test]
fn a_spawner_dying_first_gets_its_reservation_back_at_the_childs_death() {
    let mut k = kernel();
    let root = spawn(&mut k, "root");
    let base = k.budget(root).unwrap().used;
    let parent = spawn_under(&mut k, root, TaskSpec::new("parent"), None).unwrap();
    let exits = k.create_channel(parent, T0).unwrap();
    let kernel_channel = k.bind_kernel_channel(parent, exits, T0).unwrap();
    let child = spawn_child_with_route(&mut k, parent, Some(kernel_channel));
    k.terminate(parent, ExitReason::Normal, T0).unwrap();
    k.check_invariants().unwrap();
    assert_ne!(
        k.budget(root).unwrap().used,
        base,
        "the route is still held"
    );
    k.terminate(child, ExitReason::Normal, T0).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.budget(root).unwrap().used, base);
    assert_eq!(k.channel_count(), 0);
}
