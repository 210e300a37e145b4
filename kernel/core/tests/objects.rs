//! Service-minted object capabilities: minting, invoking (badge stamping),
//! moving, attenuating, and what a service restart does to them.

mod common;

use common::*;
use pandagen_abi::cap::{INVOKE_RIGHTS, OBJECT_CAP_RIGHTS};
use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{
    Badge, Budget, CapHandle, CapKind, ExitReason, Instant, KernelError, Priority, Rights,
    ServiceId, TaskId,
};
use pandagen_core::{
    BlockedOn, CapabilityEvent, ChannelRef, KernelCore, ObjectCalled, ObjectRef, Offer,
    RecvOutcome, SchedState, Sent, ServiceObject, Switched, TaskSpec, WakeReason,
};
use proptest::prelude::*;

const SVC: ServiceId = ServiceId::from_raw(40);
const FULL: Rights = OBJECT_CAP_RIGHTS;

/// A server task registered as `SVC`, its receive channel, and a client.
struct World {
    k: KernelCore,
    server: TaskId,
    chan: CapHandle,
    client: TaskId,
}

fn world() -> World {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let chan = serve(&mut k, server, SVC);
    World {
        k,
        server,
        chan,
        client,
    }
}

/// Register `task` as `SVC` on a new channel.
#[test]
fn only_the_registration_holder_may_mint() {
    let mut w = world();
    assert_eq!(
        w.k.mint_object_cap(w.client, SVC, 1, FULL, T0),
        Err(KernelError::InsufficientAuthority)
    );
    let other = ServiceId::from_raw(41);
    assert_eq!(
        w.k.mint_object_cap(w.server, other, 1, FULL, T0),
        Err(KernelError::ServiceNotFound(other))
    );
    let h = w.k.mint_object_cap(w.server, SVC, 7, FULL, T0).unwrap();
    let info = w.k.inspect(w.server, h).unwrap();
    assert_eq!(info.kind(), CapKind::StorageObject);
    assert_eq!(
        info.object,
        ObjectRef::StorageObject(ServiceObject::new(SVC, 7))
    );
    assert!(w.k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Granted { kind: CapKind::StorageObject, from: Some(f), to, source: None, .. }
            if *f == w.server && *to == w.server
    )));
    w.k.check_invariants().unwrap();
}

#[test]
fn minted_rights_are_restricted_to_object_rights() {
    let mut w = world();
    let h =
        w.k.mint_object_cap(w.server, SVC, 1, Rights::ALL, T0)
            .unwrap();
    assert_eq!(w.k.inspect(w.server, h).unwrap().rights, OBJECT_CAP_RIGHTS);
    assert!(!OBJECT_CAP_RIGHTS.contains(Rights::SEND));
    assert!(!OBJECT_CAP_RIGHTS.contains(Rights::REGISTER));
}

#[test]
fn a_send_through_the_capability_carries_its_badge_and_rights() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 99, FULL, T0).unwrap();
    authorise(&mut w.k, w.server, w.client);
    let moved = w.k.delegate(w.server, full, w.client, T0).unwrap();
    let ro = w.k.clone_cap(w.client, moved, Rights::READ, T0).unwrap();
    w.k.send_to_object(w.client, ro, b"read".to_vec(), &[], T0)
        .unwrap();
    w.k.send_to_object(w.client, moved, b"write".to_vec(), &[], T0)
        .unwrap();
    let first = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!(first.sender, w.client);
    assert_eq!(first.bytes, b"read");
    assert_eq!(
        first.badge,
        Some(Badge {
            value: 99,
            rights: Rights::READ
        })
    );
    let second = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!(
        second.badge,
        Some(Badge {
            value: 99,
            rights: FULL
        })
    );
    // A plain channel send carries no badge.
    let to_server = w.k.lookup_service(w.client, SVC, T0).unwrap();
    w.k.send(w.client, to_server, b"plain".to_vec(), &[], T0)
        .unwrap();
    assert_eq!(
        w.k.receive(w.server, w.chan, T0).unwrap().unwrap().badge,
        None
    );
    w.k.check_invariants().unwrap();
}

#[test]
fn invoking_needs_an_object_capability_with_an_invoke_right() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 1, FULL, T0).unwrap();
    let only_transfer = w.k.clone_cap(w.server, full, Rights::TRANSFER, T0).unwrap();
    let before = invalid_uses(&w.k);
    assert_eq!(
        w.k.send_to_object(w.server, only_transfer, b"x".to_vec(), &[], T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert!(matches!(
        w.k.send_to_object(w.server, w.chan, b"x".to_vec(), &[], T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::StorageObject,
            found: CapKind::Channel
        })
    ));
    // A guessed handle, and a forged one built from a live handle's slot.
    assert_eq!(
        w.k.send_to_object(w.client, CapHandle::new(3, 1), b"x".to_vec(), &[], T0),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!(
        w.k.send_to_object(w.client, full, b"x".to_vec(), &[], T0),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!(invalid_uses(&w.k), before + 4);
    // Sending on an object capability as if it were a channel is refused.
    assert!(matches!(
        w.k.send(w.server, full, b"x".to_vec(), &[], T0),
        Err(KernelError::WrongCapabilityKind { .. })
    ));
    let ch = w.k.channel_of(w.server, w.chan, T0).unwrap();
    assert_eq!(w.k.queue_len(ch), Some(0));
    assert!(INVOKE_RIGHTS.contains(Rights::READ | Rights::WRITE | Rights::CONTROL));
}

#[test]
fn delegating_in_a_message_moves_the_capability() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 5, FULL, T0).unwrap();
    let inbox = w.k.create_channel(w.client, T0).unwrap();
    let to_client =
        w.k.clone_cap(w.client, inbox, Rights::SEND | Rights::TRANSFER, T0)
            .unwrap();
    authorise(&mut w.k, w.client, w.server);
    let to_client = w.k.delegate(w.client, to_client, w.server, T0).unwrap();
    w.k.send(w.server, to_client, b"here".to_vec(), &[full], T0)
        .unwrap();
    // The sender lost it.
    assert_eq!(
        w.k.send_to_object(w.server, full, b"x".to_vec(), &[], T0),
        Err(KernelError::InvalidCapability)
    );
    let got = w.k.receive(w.client, inbox, T0).unwrap().unwrap();
    let cap = got.caps[0];
    w.k.send_to_object(w.client, cap, b"use".to_vec(), &[], T0)
        .unwrap();
    let used = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!(used.sender, w.client);
    assert_eq!(used.badge.map(|b| b.value), Some(5));
    // A capability without TRANSFER cannot be attached to a message.
    let fixed = w.k.clone_cap(w.client, cap, Rights::READ, T0).unwrap();
    let back = w.k.lookup_service(w.client, SVC, T0).unwrap();
    assert_eq!(
        w.k.send(w.client, back, b"x".to_vec(), &[fixed], T0),
        Err(KernelError::InsufficientAuthority)
    );
    w.k.check_invariants().unwrap();
}

#[test]
fn capabilities_reach_the_service_again_after_it_re_registers() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 3, FULL, T0).unwrap();
    authorise(&mut w.k, w.server, w.client);
    let held = w.k.delegate(w.server, full, w.client, T0).unwrap();
    w.k.terminate(w.server, ExitReason::Normal, T0).unwrap();
    // Between instances nobody serves the object.
    assert_eq!(
        w.k.send_to_object(w.client, held, b"x".to_vec(), &[], T0),
        Err(KernelError::ServiceNotFound(SVC))
    );
    let successor = spawn(&mut w.k, "server-2");
    let chan = serve(&mut w.k, successor, SVC);
    w.k.send_to_object(w.client, held, b"again".to_vec(), &[], T0)
        .unwrap();
    let got = w.k.receive(successor, chan, T0).unwrap().unwrap();
    assert_eq!(got.badge.map(|b| (b.value, b.rights)), Some((3, FULL)));
    w.k.check_invariants().unwrap();
}

#[test]
fn object_capabilities_die_with_their_holder() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 3, FULL, T0).unwrap();
    authorise(&mut w.k, w.server, w.client);
    let held = w.k.delegate(w.server, full, w.client, T0).unwrap();
    let id = w.k.inspect(w.client, held).unwrap().id;
    w.k.terminate(w.client, ExitReason::Normal, T0).unwrap();
    assert!(w.k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated { cap, kind: CapKind::StorageObject, .. } if *cap == id
    )));
    w.k.check_invariants().unwrap();
}

#[test]
fn a_full_queue_or_an_oversized_message_refuses_the_send_and_keeps_the_caps() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 3, FULL, T0).unwrap();
    let carried = w.k.mint_object_cap(w.server, SVC, 4, FULL, T0).unwrap();
    let ch = w.k.channel_of(w.server, w.chan, T0).unwrap();
    let capacity = w.k.queue_capacity(ch).unwrap();
    for _ in 0..capacity {
        w.k.send_to_object(w.server, full, Vec::new(), &[], T0)
            .unwrap();
    }
    assert_eq!(
        w.k.send_to_object(w.server, full, Vec::new(), &[carried], T0),
        Err(KernelError::SendFailed(SendError::QueueFull))
    );
    assert!(w.k.inspect(w.server, carried).is_some());
    w.k.check_invariants().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever rights are asked for and however a holder attenuates, the
    /// stamp never carries a right the capability used does not hold, nor
    /// one outside the object rights; and only the registrant mints.
    #[test]
    fn stamps_never_exceed_the_capability_used(
        asked in 0u32..(1 << 9),
        mask in 0u32..(1 << 9),
        badge in any::<u64>(),
        minter_is_server in any::<bool>(),
    ) {
        let mut w = world();
        let minter = if minter_is_server { w.server } else { w.client };
        let minted = w.k.mint_object_cap(minter, SVC, badge, Rights::from_bits(asked), T0);
        if !minter_is_server {
            prop_assert_eq!(minted, Err(KernelError::InsufficientAuthority));
            return Ok(());
        }
        let h = minted.unwrap();
        let held = w.k.inspect(w.server, h).unwrap().rights;
        prop_assert_eq!(held, Rights::from_bits(asked).attenuate(OBJECT_CAP_RIGHTS));
        let used = if held.contains(Rights::GRANT) {
            w.k.clone_cap(w.server, h, Rights::from_bits(mask), T0).unwrap()
        } else {
            h
        };
        let rights = w.k.inspect(w.server, used).unwrap().rights;
        let sent = w.k.send_to_object(w.server, used, b"m".to_vec(), &[], T0);
        if rights.attenuate(INVOKE_RIGHTS) == Rights::NONE {
            prop_assert_eq!(sent, Err(KernelError::InsufficientAuthority));
        } else {
            prop_assert!(sent.is_ok());
            let got = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
            let stamp = got.badge.unwrap();
            prop_assert_eq!(stamp.value, badge);
            prop_assert_eq!(stamp.rights, rights);
            prop_assert!(held.contains(stamp.rights));
            prop_assert!(OBJECT_CAP_RIGHTS.contains(stamp.rights));
        }
        w.k.check_invariants().unwrap();
    }
}

/// The server of `w` blocked receiving on its channel, the client holding
/// an object capability stamped `badge` with `rights`.
fn blocked_server_and_object_cap(w: &mut World, badge: u64, rights: Rights) -> CapHandle {
    let full = w.k.mint_object_cap(w.server, SVC, badge, FULL, T0).unwrap();
    authorise(&mut w.k, w.server, w.client);
    let moved = w.k.delegate(w.server, full, w.client, T0).unwrap();
    let cap = w.k.clone_cap(w.client, moved, rights, T0).unwrap();
    while w.k.pick_next() != Some(w.server) {}
    w.k.receive_or_block(w.server, w.chan, None, T0).unwrap();
    assert!(matches!(
        w.k.task_state(w.server),
        Some(SchedState::Blocked(BlockedOn::Receive { .. }))
    ));
    cap
}

#[test]
fn an_object_send_hands_its_badge_to_a_blocked_server_or_queues_it() {
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 77, Rights::READ);
    let stamp = Some(Badge {
        value: 77,
        rights: Rights::READ,
    });
    let mut offered = None;
    let sent =
        w.k.send_to_object_or_hand_off(w.client, cap, b"get", &[], T0, |o| {
            offered = Some((o.receiver, o.sender, o.bytes.to_vec(), o.badge));
            true
        });
    assert!(matches!(sent, Ok(Sent::HandedOff { receiver, .. }) if receiver == w.server));
    assert_eq!(
        offered,
        Some((w.server, w.client, b"get".to_vec(), stamp)),
        "the offer carries the capability's stamp"
    );
    assert_eq!(w.k.take_wake_reason(w.server), Some(WakeReason::HandedOff));
    let ch = w.k.channel_of(w.server, w.chan, T0).unwrap();
    assert_eq!(w.k.queue_len(ch), Some(0), "nothing queued");

    // Declined: queued with the same stamp, the server woken to take it.
    w.k.receive_or_block(w.server, w.chan, None, T0).unwrap();
    let sent =
        w.k.send_to_object_or_hand_off(w.client, cap, b"put", &[], T0, |_| false);
    assert!(matches!(sent, Ok(Sent::Queued { .. })));
    assert_eq!(
        w.k.take_wake_reason(w.server),
        Some(WakeReason::MessageArrived)
    );
    let got = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!((got.bytes.as_slice(), got.sender), (&b"put"[..], w.client));
    assert_eq!(got.badge, stamp);
    w.k.check_invariants().unwrap();
}

#[test]
fn an_object_send_is_checked_before_any_offer_and_carried_caps_are_queued() {
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 5, FULL);
    let only_transfer = w.k.clone_cap(w.client, cap, Rights::TRANSFER, T0).unwrap();
    let own_channel = w.k.create_channel(w.client, T0).unwrap();
    let before = invalid_uses(&w.k);
    for refused in [only_transfer, own_channel, CapHandle::new(3, 9)] {
        assert!(w
            .k
            .send_to_object_or_hand_off(w.client, refused, b"x", &[], T0, |_| panic!("offered"))
            .is_err());
    }
    assert_eq!(invalid_uses(&w.k), before + 3);
    let ch = w.k.channel_of(w.server, w.chan, T0).unwrap();
    assert_eq!(w.k.queue_len(ch), Some(0));

    // A message carrying a capability is never handed off; it is queued
    // stamped, and the capability moves with it.
    let extra = w.k.create_channel(w.client, T0).unwrap();
    let sent =
        w.k.send_to_object_or_hand_off(w.client, cap, b"m", &[extra], T0, |_| panic!("offered"));
    assert!(matches!(sent, Ok(Sent::Queued { .. })));
    let got = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!(got.caps.len(), 1);
    assert_eq!(got.badge.map(|b| b.value), Some(5));
    assert!(w.k.inspect(w.client, extra).is_none(), "moved out");
    w.k.check_invariants().unwrap();
}

/// The client of `w`'s reply channel, and a send capability for it in the
/// server's space (as a session's reply capability).
fn reply_channel(w: &mut World) -> (CapHandle, CapHandle) {
    let inbox = w.k.create_channel(w.client, T0).unwrap();
    let for_server =
        w.k.clone_cap(w.client, inbox, Rights::SEND | Rights::TRANSFER, T0)
            .unwrap();
    authorise(&mut w.k, w.client, w.server);
    let reply = w.k.delegate(w.client, for_server, w.server, T0).unwrap();
    (inbox, reply)
}

#[test]
fn an_object_call_hands_its_stamped_request_off_then_waits_for_the_answer() {
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 42, Rights::WRITE);
    let (inbox, reply) = reply_channel(&mut w);
    let deadline = Some(at(5_000));
    let mut offered = None;
    let outcome =
        w.k.call_object(w.client, cap, b"put", inbox, deadline, T0, |o| {
            offered = Some((o.receiver, o.sender, o.bytes.to_vec(), o.badge));
            true
        });
    // Nothing else is ready: the server is who `pick_next` would run, and
    // the core has made it the running task.
    assert_eq!(outcome, Ok(ObjectCalled::SwitchedTo(w.server)));
    assert_eq!(w.k.task_state(w.server), Some(SchedState::Running));
    assert_eq!(w.k.pick_next(), None);
    let stamp = Some(Badge {
        value: 42,
        rights: Rights::WRITE,
    });
    assert_eq!(offered, Some((w.server, w.client, b"put".to_vec(), stamp)));
    assert_eq!(w.k.take_wake_reason(w.server), Some(WakeReason::HandedOff));
    let inbox_ch = w.k.channel_of(w.client, inbox, T0).unwrap();
    assert_eq!(
        w.k.task_state(w.client),
        Some(SchedState::Blocked(BlockedOn::Receive {
            channel: inbox_ch,
            deadline
        }))
    );
    // The answer goes straight to the client's pending receive.
    let mut answered_to = None;
    let sent =
        w.k.send_or_hand_off(w.server, reply, b"done", &[], T0, |o| {
            answered_to = Some(o.receiver);
            true
        });
    assert!(matches!(sent, Ok(Sent::HandedOff { .. })));
    assert_eq!(answered_to, Some(w.client));
    assert_eq!(w.k.take_wake_reason(w.client), Some(WakeReason::HandedOff));
    w.k.check_invariants().unwrap();
}

#[test]
fn an_object_call_queues_and_charges_like_send_to_object_and_takes_a_waiting_answer() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 8, FULL, T0).unwrap();
    authorise(&mut w.k, w.server, w.client);
    let cap = w.k.delegate(w.server, full, w.client, T0).unwrap();
    let (inbox, reply) = reply_channel(&mut w);
    w.k.send(w.server, reply, b"earlier".to_vec(), &[], T0)
        .unwrap();
    let used = |w: &World| w.k.budget(w.client).unwrap().used.memory;
    let before = used(&w);
    // The server is not waiting: the request is queued, charged to the
    // client, and the answer already waiting is taken at once.
    let outcome =
        w.k.call_object(w.client, cap, b"get", inbox, None, T0, |_| {
            panic!("offered")
        });
    match outcome {
        Ok(ObjectCalled::Received(RecvOutcome::Message(m))) => assert_eq!(m.bytes, b"earlier"),
        other => panic!("{other:?}"),
    }
    let charged = used(&w) - before;
    let got = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!((got.bytes.as_slice(), got.sender), (&b"get"[..], w.client));
    assert_eq!(
        got.badge,
        Some(Badge {
            value: 8,
            rights: FULL
        })
    );
    assert_eq!(used(&w), before, "the charge ends with the delivery");
    assert!(charged > 0, "the queued request was charged to its sender");
    // The same request through `send_to_object` costs the same.
    w.k.send_to_object(w.client, cap, b"get".to_vec(), &[], T0)
        .unwrap();
    assert_eq!(used(&w) - before, charged);
    w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    // A deadline already passed: sent all the same, then `TimedOut`.
    let outcome =
        w.k.call_object(w.client, cap, b"late", inbox, Some(T0), T0, |_| false);
    assert_eq!(outcome, Ok(ObjectCalled::Received(RecvOutcome::TimedOut)));
    let got = w.k.receive(w.server, w.chan, T0).unwrap().unwrap();
    assert_eq!(got.bytes, b"late");
    w.k.check_invariants().unwrap();
}

#[test]
fn a_refused_object_call_sends_and_receives_nothing() {
    let mut w = world();
    let full = w.k.mint_object_cap(w.server, SVC, 8, FULL, T0).unwrap();
    authorise(&mut w.k, w.server, w.client);
    let cap = w.k.delegate(w.server, full, w.client, T0).unwrap();
    let rightless = w.k.clone_cap(w.client, cap, Rights::TRANSFER, T0).unwrap();
    let (inbox, reply) = reply_channel(&mut w);
    let send_only = w.k.clone_cap(w.client, inbox, Rights::SEND, T0).unwrap();
    // An answer waits on the reply channel: no refused call may take it.
    w.k.send(w.server, reply, b"waiting".to_vec(), &[], T0)
        .unwrap();
    let forged = CapHandle::new(3, 9);
    let cases = [
        // (object, receive, error, audited refusals)
        (cap, forged, KernelError::InvalidCapability, 1),
        (cap, send_only, KernelError::InsufficientAuthority, 1),
        (
            cap,
            cap,
            KernelError::WrongCapabilityKind {
                expected: CapKind::Channel,
                found: CapKind::StorageObject,
            },
            1,
        ),
        // The receive capability is checked first: one refusal audited.
        (forged, forged, KernelError::InvalidCapability, 1),
        (forged, inbox, KernelError::InvalidCapability, 1),
        (
            inbox,
            inbox,
            KernelError::WrongCapabilityKind {
                expected: CapKind::StorageObject,
                found: CapKind::Channel,
            },
            1,
        ),
        (rightless, inbox, KernelError::InsufficientAuthority, 1),
    ];
    let server_ch = w.k.channel_of(w.server, w.chan, T0).unwrap();
    let inbox_ch = w.k.channel_of(w.client, inbox, T0).unwrap();
    for (i, (object, receive, error, audited)) in cases.into_iter().enumerate() {
        let before = invalid_uses(&w.k);
        let outcome =
            w.k.call_object(w.client, object, b"x", receive, None, T0, |_| {
                panic!("offered")
            });
        assert_eq!(outcome, Err(error), "case {i}");
        assert_eq!(invalid_uses(&w.k) - before, audited, "case {i}");
        assert_eq!(w.k.queue_len(server_ch), Some(0), "case {i}: sent");
        assert_eq!(w.k.queue_len(inbox_ch), Some(1), "case {i}: received");
    }
    // While the service is not registered: `ServiceNotFound`, nothing
    // received.
    w.k.drop_cap(w.server, w.chan, T0).unwrap();
    assert_eq!(
        w.k.call_object(w.client, cap, b"x", inbox, None, T0, |_| panic!("offered")),
        Err(KernelError::ServiceNotFound(SVC))
    );
    assert_eq!(w.k.queue_len(inbox_ch), Some(1));
    w.k.check_invariants().unwrap();
}

/// A client blocked in an object call when the only task that could
/// answer ends learns it as a client blocked in `Receive` does.
#[test]
fn a_server_ending_during_an_object_call_wakes_the_client_as_for_a_receive() {
    let outcome = |one_call: bool| {
        let mut w = world();
        let cap = blocked_server_and_object_cap(&mut w, 1, Rights::READ);
        let (inbox, _reply) = reply_channel(&mut w);
        // The client keeps only the right to receive: the server's
        // capability is the channel's last sender.
        let receive_only = w.k.clone_cap(w.client, inbox, Rights::RECEIVE, T0).unwrap();
        w.k.drop_cap(w.client, inbox, T0).unwrap();
        if one_call {
            let called =
                w.k.call_object(w.client, cap, b"get", receive_only, None, T0, |_| true);
            assert_eq!(called, Ok(ObjectCalled::SwitchedTo(w.server)));
        } else {
            w.k.send_to_object_or_hand_off(w.client, cap, b"get", &[], T0, |_| true)
                .unwrap();
            assert_eq!(
                w.k.receive_or_block(w.client, receive_only, None, T0),
                Ok(RecvOutcome::Blocked)
            );
            assert_eq!(w.k.pick_next(), Some(w.server));
        }
        w.k.terminate(w.server, ExitReason::Normal, T0).unwrap();
        let woken = w.k.take_wake_reason(w.client);
        let again = w.k.receive_or_block(w.client, receive_only, None, T0);
        w.k.check_invariants().unwrap();
        (woken, again)
    };
    let two_calls = outcome(false);
    assert_eq!(
        two_calls,
        (
            Some(WakeReason::ChannelClosed),
            Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed))
        )
    );
    assert_eq!(outcome(true), two_calls);
}

/// The core switches to the server only when `pick_next` would have
/// chosen it: not past a due deadline, nor ahead of a task of its
/// priority or a higher one that is ready.
#[test]
fn an_object_call_switches_to_the_server_only_as_pick_next_would() {
    // A task of higher priority is ready.
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 1, Rights::READ);
    let (inbox, _) = reply_channel(&mut w);
    let urgent = spawn_at(&mut w.k, "urgent", Priority::HIGH);
    let called =
        w.k.call_object(w.client, cap, b"a", inbox, None, T0, |_| true);
    assert_eq!(called, Ok(ObjectCalled::Received(RecvOutcome::Blocked)));
    assert_eq!(w.k.task_state(w.server), Some(SchedState::Ready));
    assert_eq!(w.k.pick_next(), Some(urgent));
    w.k.check_invariants().unwrap();

    // A task of the server's priority is ready ahead of it.
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 1, Rights::READ);
    let (inbox, _) = reply_channel(&mut w);
    let peer = spawn(&mut w.k, "peer");
    let called =
        w.k.call_object(w.client, cap, b"b", inbox, None, T0, |_| true);
    assert_eq!(called, Ok(ObjectCalled::Received(RecvOutcome::Blocked)));
    assert_eq!(w.k.pick_next(), Some(peer));
    assert_eq!(w.k.pick_next(), Some(w.server));

    // Another task's deadline is due: it is woken first by the scheduler.
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 1, Rights::READ);
    let (inbox, _) = reply_channel(&mut w);
    let sleeper = spawn(&mut w.k, "sleeper");
    while w.k.pick_next() != Some(sleeper) {}
    assert_eq!(w.k.sleep_until(sleeper, at(10), T0), Ok(true));
    let called =
        w.k.call_object(w.client, cap, b"c", inbox, None, at(10), |_| true);
    assert_eq!(called, Ok(ObjectCalled::Received(RecvOutcome::Blocked)));
    assert_eq!(w.k.task_state(w.server), Some(SchedState::Ready));

    // Not handed off (the kernel declined): queued, nobody switched to.
    let mut w = world();
    let cap = blocked_server_and_object_cap(&mut w, 1, Rights::READ);
    let (inbox, _) = reply_channel(&mut w);
    let called =
        w.k.call_object(w.client, cap, b"d", inbox, None, T0, |_| false);
    assert_eq!(called, Ok(ObjectCalled::Received(RecvOutcome::Blocked)));
    assert_eq!(
        w.k.take_wake_reason(w.server),
        Some(WakeReason::MessageArrived)
    );
    w.k.check_invariants().unwrap();
}

/// What an offer said: receiver, sender, sequence number, stamp.
type Seen = (TaskId, TaskId, u64, Option<Badge>);

fn seen(o: &Offer<'_>) -> Seen {
    (o.receiver, o.sender, o.seq, o.badge)
}

/// A client's object call, set up for the direct path: the server blocked
/// on its channel, the client running with an object capability and a
/// reply channel whose send capability the server holds.
struct Call {
    w: World,
    cap: CapHandle,
    inbox: CapHandle,
    reply: CapHandle,
    server_ch: ChannelRef,
    inbox_ch: ChannelRef,
}

fn call_world(client_budget: Option<Budget>, badge: u64, rights: Rights) -> Call {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let mut spec = TaskSpec::new("client");
    spec.budget = client_budget;
    let client = k.create_task(None, spec, T0).unwrap().0;
    let chan = serve(&mut k, server, SVC);
    let mut w = World {
        k,
        server,
        chan,
        client,
    };
    let cap = blocked_server_and_object_cap(&mut w, badge, rights);
    let (inbox, reply) = reply_channel(&mut w);
    assert_eq!(w.k.pick_next(), Some(w.client));
    let server_ch = w.k.channel_of(w.server, w.chan, T0).unwrap();
    let inbox_ch = w.k.channel_of(w.client, inbox, T0).unwrap();
    Call {
        w,
        cap,
        inbox,
        reply,
        server_ch,
        inbox_ch,
    }
}

/// What the core holds of the call: both tasks' states, the client's
/// memory charge, the audited refusals, both queues, and who runs next.
type State = (
    Option<SchedState>,
    Option<SchedState>,
    u64,
    usize,
    Option<usize>,
    Option<usize>,
);

fn state(c: &Call) -> State {
    let k = &c.w.k;
    (
        k.task_state(c.w.server),
        k.task_state(c.w.client),
        k.budget(c.w.client).unwrap().used.memory,
        invalid_uses(k),
        k.queue_len(c.server_ch),
        k.queue_len(c.inbox_ch),
    )
}

/// The direct path's check and commit of `c`'s call of `len` bytes
/// through `object`, answered on `receive`: the offer it made and the
/// switch, or `None` (declined).
fn direct(
    c: &mut Call,
    object: CapHandle,
    receive: CapHandle,
    len: usize,
    deadline: Option<Instant>,
    now: Instant,
) -> Option<(Seen, Switched)> {
    let (call, badge) = c.w.k.check_object_call(
        c.w.client,
        pandagen_core::slot_index(c.w.client),
        object,
        len,
        receive,
        deadline,
        || now,
    )?;
    let receiver = call.receiver()?;
    let offer = call.offer(receiver, &[]);
    assert_eq!(offer.badge, None, "the stamp comes beside the call");
    let offered = (offer.receiver, offer.sender, offer.seq, Some(badge));
    let committed = call.commit();
    let switched = Switched {
        channel: committed.channel,
        receiver,
        seq: committed.seq,
    };
    Some((offered, switched))
}

/// The general path's `call_object` of the same call, its offer accepted.
fn general(
    c: &mut Call,
    object: CapHandle,
    receive: CapHandle,
    len: usize,
    deadline: Option<Instant>,
    now: Instant,
) -> (Option<Seen>, Result<ObjectCalled, KernelError>) {
    let mut offered = None;
    let body = vec![7u8; len];
    let called =
        c.w.k
            .call_object(c.w.client, object, body, receive, deadline, now, |o| {
                offered = Some(seen(o));
                true
            });
    (offered, called)
}

/// The direct path, taken, leaves the core exactly as the general path's
/// hand-off and switch do: the same offer (receiver, sender, sequence
/// number, stamp of the capability used), the server running with its
/// receive complete, the client blocked on its reply channel until the
/// deadline, nothing queued or charged, and the answer handed back alike.
/// Also for a client at its memory budget (a request handed off is never
/// queued, so neither path charges it), and through a capability with
/// any one invoke right.
#[test]
fn the_direct_object_call_leaves_the_core_as_the_general_path_does() {
    // The client's charge once set up, to give a client exactly that
    // budget: then no queued request could be paid for.
    let setup_charge = {
        let c = call_world(None, 1, FULL);
        c.w.k.budget(c.w.client).unwrap().used.memory
    };
    let budgets = [None, Some(Budget::memory(setup_charge))];
    for (budget, rights) in budgets.into_iter().flat_map(|b| {
        [
            FULL,
            Rights::READ,
            Rights::WRITE,
            Rights::CONTROL | Rights::GRANT,
        ]
        .into_iter()
        .map(move |r| (b, r))
    }) {
        let case = format!("{budget:?} {rights:?}");
        let deadline = Some(at(9_000));
        let mut fast = call_world(budget, 0xb0d9e, rights);
        let mut slow = call_world(budget, 0xb0d9e, rights);
        assert_eq!(state(&fast), state(&slow), "{case}");
        let before = state(&fast);
        let (cap, inbox) = (fast.cap, fast.inbox);
        let (offered, switched) = direct(&mut fast, cap, inbox, 24, deadline, T0).expect(&case);
        let (general_offer, called) = general(&mut slow, cap, inbox, 24, deadline, T0);
        assert_eq!(
            called,
            Ok(ObjectCalled::SwitchedTo(slow.w.server)),
            "{case}"
        );
        assert_eq!(Some(offered), general_offer, "{case}");
        assert_eq!(
            offered,
            (
                fast.w.server,
                fast.w.client,
                switched.seq,
                Some(Badge {
                    value: 0xb0d9e,
                    rights
                })
            ),
            "{case}"
        );
        assert_eq!(
            (switched.receiver, switched.channel),
            (fast.w.server, fast.server_ch),
            "{case}"
        );
        assert_eq!(state(&fast), state(&slow), "{case}");
        assert_eq!(state(&fast).2, before.2, "{case}: nothing charged");
        assert_eq!(
            state(&fast).1,
            Some(SchedState::Blocked(BlockedOn::Receive {
                channel: fast.inbox_ch,
                deadline
            })),
            "{case}"
        );
        for c in [&mut fast, &mut slow] {
            assert_eq!(c.w.k.task_state(c.w.server), Some(SchedState::Running));
            assert_eq!(
                c.w.k.take_wake_reason(c.w.server),
                Some(WakeReason::HandedOff)
            );
            assert_eq!(c.w.k.take_wake_reason(c.w.client), None);
            assert_eq!(c.w.k.pick_next(), None, "{case}: nothing else ready");
            c.w.k.check_invariants().unwrap();
        }
        // The answer: handed to the waiting client, with the same number.
        let answer = |c: &mut Call| {
            let mut to = None;
            let sent =
                c.w.k
                    .send_or_hand_off(c.w.server, c.reply, b"ok", &[], T0, |o| {
                        to = Some(seen(o));
                        true
                    });
            (sent, to, c.w.k.take_wake_reason(c.w.client))
        };
        assert_eq!(answer(&mut fast), answer(&mut slow), "{case}");
        assert_eq!(state(&fast), state(&slow), "{case}");
    }
}

/// Every case the direct path must not take declines having changed and
/// audited nothing (no offer is possible: the check makes none), and the
/// general path then gives the call's outcome exactly as without the
/// check: a refusal (audited), a queued request, a waiting answer taken,
/// or a hand-off without the switch (or, for a caller the core does not
/// see running, with it: the kernel only ever runs its current task).
#[test]
fn the_direct_object_call_declines_having_changed_nothing() {
    type Prepare = Box<dyn Fn(&mut Call) -> (CapHandle, CapHandle, usize, Option<Instant>)>;
    let max = KernelCore::default().config().max_message_bytes;
    let cases: Vec<(&str, Prepare)> = vec![
        (
            "an object capability without an invoke right",
            Box::new(|c: &mut Call| {
                let only = c.w.k.clone_cap(c.w.client, c.cap, Rights::TRANSFER, T0);
                (only.unwrap(), c.inbox, 8, None)
            }),
        ),
        (
            "a channel capability as the object",
            Box::new(|c: &mut Call| (c.inbox, c.inbox, 8, None)),
        ),
        (
            "a forged object handle",
            Box::new(|c: &mut Call| (CapHandle::new(99, 3), c.inbox, 8, None)),
        ),
        (
            "a dropped object capability",
            Box::new(|c: &mut Call| {
                let copy = c.w.k.clone_cap(c.w.client, c.cap, Rights::READ, T0);
                let copy = copy.unwrap();
                c.w.k.drop_cap(c.w.client, copy, T0).unwrap();
                (copy, c.inbox, 8, None)
            }),
        ),
        (
            "a receive capability without RECEIVE",
            Box::new(|c: &mut Call| {
                let send_only = c.w.k.clone_cap(c.w.client, c.inbox, Rights::SEND, T0);
                (c.cap, send_only.unwrap(), 8, None)
            }),
        ),
        (
            "the object capability as the receive capability",
            Box::new(|c: &mut Call| (c.cap, c.cap, 8, None)),
        ),
        (
            "the service not registered",
            Box::new(|c: &mut Call| {
                c.w.k.drop_cap(c.w.server, c.w.chan, T0).unwrap();
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "the server dead",
            Box::new(|c: &mut Call| {
                c.w.k.terminate(c.w.server, ExitReason::Normal, T0).unwrap();
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "the server not waiting, its queue full",
            Box::new(|c: &mut Call| {
                // The server stops waiting: it takes a request and runs.
                let other = c.w.k.mint_object_cap(c.w.server, SVC, 2, FULL, T0).unwrap();
                c.w.k
                    .send_to_object(c.w.server, other, vec![], &[], T0)
                    .unwrap();
                let capacity = c.w.k.queue_capacity(c.server_ch).unwrap();
                for _ in 1..capacity {
                    c.w.k
                        .send_to_object(c.w.server, other, vec![], &[], T0)
                        .unwrap();
                }
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "the server not waiting, a request queued for it",
            Box::new(|c: &mut Call| {
                let other = c.w.k.mint_object_cap(c.w.server, SVC, 2, FULL, T0).unwrap();
                c.w.k
                    .send_to_object(c.w.server, other, vec![1], &[], T0)
                    .unwrap();
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "an answer already waiting for the client",
            Box::new(|c: &mut Call| {
                c.w.k.send(c.w.server, c.reply, vec![1], &[], T0).unwrap();
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "a request over the size limit",
            Box::new(move |c: &mut Call| (c.cap, c.inbox, max + 1, None)),
        ),
        (
            "the call's deadline already passed",
            Box::new(|c: &mut Call| (c.cap, c.inbox, 8, Some(NOW))),
        ),
        (
            "another task's deadline due",
            Box::new(|c: &mut Call| {
                let sleeper = spawn(&mut c.w.k, "sleeper");
                c.w.k.yield_task(c.w.client);
                assert_eq!(c.w.k.pick_next(), Some(sleeper));
                assert_eq!(c.w.k.sleep_until(sleeper, NOW, T0), Ok(true));
                assert_eq!(c.w.k.pick_next(), Some(c.w.client));
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "a ready task of the server's priority",
            Box::new(|c: &mut Call| {
                spawn(&mut c.w.k, "peer");
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "a ready task of higher priority",
            Box::new(|c: &mut Call| {
                spawn_at(&mut c.w.k, "urgent", Priority::HIGH);
                (c.cap, c.inbox, 8, None)
            }),
        ),
        (
            "a caller that is not running",
            Box::new(|c: &mut Call| {
                c.w.k.yield_task(c.w.client);
                (c.cap, c.inbox, 8, None)
            }),
        ),
    ];
    // The time of the calls; set-up runs at `T0`.
    const NOW: Instant = Instant::from_nanos(10);
    for (name, prepare) in cases {
        let mut fast = call_world(None, 3, FULL);
        let mut slow = call_world(None, 3, FULL);
        let (object, receive, len, deadline) = prepare(&mut fast);
        assert_eq!(
            prepare(&mut slow),
            (object, receive, len, deadline),
            "{name}"
        );
        let before = state(&fast);
        assert!(
            direct(&mut fast, object, receive, len, deadline, NOW).is_none(),
            "{name}"
        );
        assert_eq!(state(&fast), before, "{name}: changed nothing");
        fast.w.k.check_invariants().unwrap();
        // The general path runs the same call in the same state, as it
        // would have without the check.
        let after_check = general(&mut fast, object, receive, len, deadline, NOW);
        let without = general(&mut slow, object, receive, len, deadline, NOW);
        assert_eq!(after_check, without, "{name}");
        assert_eq!(state(&fast), state(&slow), "{name}");
        fast.w.k.check_invariants().unwrap();
    }
}
