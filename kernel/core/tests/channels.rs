//! Channel contracts: FIFO, bounded queues, capability transfer in
//! messages, close semantics, fault-injection hooks.

mod common;

use common::*;
use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{CapKind, ExitReason, KernelError, Rights, TrustDomain};
use pandagen_core::{
    Body, CapabilityEvent, CoreConfig, InvalidationReason, KernelCore, Mintable, ObjectRef, Offer,
    Sent,
};

fn chan_ref(
    k: &mut KernelCore,
    t: pandagen_abi::TaskId,
    h: pandagen_abi::CapHandle,
) -> pandagen_core::ChannelRef {
    k.channel_of(t, h, T0).unwrap()
}

#[test]
fn messages_arrive_in_fifo_order_with_the_sender_stamped() {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let h = k.create_channel(server, T0).unwrap();
    let send_only = k.clone_cap(server, h, Rights::SEND, T0).unwrap();
    let to_server = k.delegate(server, send_only, client, T0).unwrap_err();
    // A SEND-only clone has no TRANSFER: it cannot be moved. Grant instead.
    assert_eq!(to_server, KernelError::InsufficientAuthority);
    authorise(&mut k, server, client);
    let to_server = k.grant(server, h, client, T0).unwrap();
    let mut seqs = Vec::new();
    for i in 0..5u8 {
        seqs.push(k.send(client, to_server, vec![i; 3], &[], T0).unwrap());
    }
    for i in 0..5u8 {
        let m = k.receive(server, h, T0).unwrap().unwrap();
        assert_eq!(m.bytes, vec![i; 3]);
        assert_eq!(m.sender, client);
        assert_eq!(m.seq, seqs[i as usize]);
        assert!(m.caps.is_empty());
    }
    assert_eq!(
        k.receive(server, h, T0),
        Ok(None),
        "each message is delivered once"
    );
}

#[test]
fn a_full_queue_rejects_sends_without_blocking() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel_with_capacity(t, 2, T0).unwrap();
    let ch = chan_ref(&mut k, t, h);
    assert_eq!(k.queue_capacity(ch), Some(2));
    let cap = k.mint(t, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    k.send(t, h, vec![1], &[], T0).unwrap();
    k.send(t, h, vec![2], &[], T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![3], &[cap], T0),
        Err(KernelError::SendFailed(SendError::QueueFull))
    );
    assert!(
        k.inspect(t, cap).is_some(),
        "a failed send keeps the sender's capabilities"
    );
    assert_eq!(k.queue_len(ch), Some(2));
    k.receive(t, h, T0).unwrap().unwrap();
    k.send(t, h, vec![3], &[], T0).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn size_and_capability_count_are_bounded() {
    let mut k = KernelCore::new(CoreConfig {
        max_message_bytes: 16,
        max_caps_per_message: 1,
        ..CoreConfig::default()
    });
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![0; 17], &[], T0),
        Err(KernelError::SendFailed(SendError::MessageTooLarge {
            len: 17,
            max: 16
        }))
    );
    let a = k.mint(t, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    let b = k.mint(t, Mintable::BootImage, Rights::ALL, T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![], &[a, b], T0),
        Err(KernelError::SendFailed(SendError::TooManyCapabilities))
    );
    assert_eq!(k.cap_count(t), 3);
}

#[test]
fn a_send_that_may_hand_off_refuses_as_send_does_and_changes_nothing() {
    let mut k = KernelCore::new(CoreConfig {
        max_message_bytes: 16,
        ..CoreConfig::default()
    });
    let t = spawn(&mut k, "t");
    let h = k.create_channel_with_capacity(t, 1, T0).unwrap();
    let ch = chan_ref(&mut k, t, h);
    let no_receiver = |_: &Offer<'_>| -> bool { panic!("nobody waits") };
    let too_large = Err(KernelError::SendFailed(SendError::MessageTooLarge {
        len: 17,
        max: 16,
    }));
    assert_eq!(k.send(t, h, vec![0; 17], &[], T0).map(|_| ()), too_large);
    let refused = k.send_or_hand_off(t, h, &[0; 17], &[], T0, no_receiver);
    assert_eq!(refused.map(|_| ()), too_large);
    let first = k.send_or_hand_off(t, h, &[1], &[], T0, no_receiver);
    let Ok(Sent::Queued { seq, .. }) = first else {
        panic!("queued: {first:?}");
    };
    let full = Err(KernelError::SendFailed(SendError::QueueFull));
    assert_eq!(k.send(t, h, vec![2], &[], T0).map(|_| ()), full);
    let refused = k.send_or_hand_off(t, h, &[2], &[], T0, no_receiver);
    assert_eq!(refused.map(|_| ()), full);
    assert_eq!(k.queue_len(ch), Some(1));
    // Refusals took no sequence number: the next message has the next one.
    assert_eq!(k.receive(t, h, T0).unwrap().unwrap().seq, seq);
    let next = k.send_or_hand_off(t, h, &[3], &[], T0, no_receiver);
    assert!(matches!(next, Ok(Sent::Queued { seq: s, .. }) if s == seq + 1));
    k.check_invariants().unwrap();
    // A closed channel: its receiver gone.
    let send_only = k.clone_cap(t, h, Rights::SEND, T0).unwrap();
    k.drop_cap(t, h, T0).unwrap();
    let closed = Err(KernelError::SendFailed(SendError::ChannelClosed));
    let refused = k.send_or_hand_off(t, send_only, &[4], &[], T0, no_receiver);
    assert_eq!(refused.map(|_| ()), closed);
    assert_eq!(k.send(t, send_only, vec![4], &[], T0).map(|_| ()), closed);
    // A capability without SEND is refused before the channel is looked at.
    let receive_only = {
        let h = k.create_channel(t, T0).unwrap();
        k.clone_cap(t, h, Rights::RECEIVE, T0).unwrap()
    };
    let refused = k.send_or_hand_off(t, receive_only, &[5], &[], T0, no_receiver);
    assert_eq!(refused.map(|_| ()), Err(KernelError::InsufficientAuthority));
    k.check_invariants().unwrap();
}

#[test]
fn a_message_whose_charge_does_not_fit_its_queue_entry_is_too_large() {
    // Only a configuration allowing messages of gigabytes gets there: the
    // queue keeps a message's charge in 32 bits.
    let mut k = KernelCore::new(CoreConfig {
        max_message_bytes: usize::MAX,
        ..CoreConfig::default()
    });
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let ch = chan_ref(&mut k, t, h);
    let len = u32::MAX as usize - 64;
    assert_eq!(
        k.send(t, h, Body::Kept(len), &[], T0),
        Err(KernelError::SendFailed(SendError::MessageTooLarge {
            len: len as u32,
            max: u32::MAX
        }))
    );
    assert_eq!(k.queue_len(ch), Some(0));
    // A charge that fits goes on to the budget check.
    assert!(!matches!(
        k.send(t, h, Body::Kept(1 << 30), &[], T0),
        Err(KernelError::SendFailed(SendError::MessageTooLarge { .. }))
    ));
    k.check_invariants().unwrap();
}

#[test]
fn capabilities_travel_by_move_and_are_installed_on_delivery() {
    let mut k = kernel();
    let a = spawn_in(&mut k, "a", TrustDomain::core());
    let b = spawn_in(&mut k, "b", TrustDomain::user());
    let h = k.create_channel(b, T0).unwrap();
    authorise(&mut k, b, a);
    let to_b = k.grant(b, h, a, T0).unwrap();
    let gift = k
        .mint(
            a,
            Mintable::StorageObject(pandagen_core::ServiceObject::new(
                pandagen_abi::ServiceId::from_raw(0),
                4,
            )),
            Rights::READ | Rights::TRANSFER,
            T0,
        )
        .unwrap();
    let id = k.inspect(a, gift).unwrap().id;
    k.send(a, to_b, b"take this".to_vec(), &[gift], T0).unwrap();
    // In flight: the sender has lost it and nobody can use it.
    assert!(k.inspect(a, gift).is_none());
    assert_eq!(
        k.cap_count(b),
        2,
        "its channel and its task capability for a"
    );
    k.check_invariants().unwrap();
    let m = k.receive(b, h, T0).unwrap().unwrap();
    assert_eq!(m.caps.len(), 1);
    let info = k
        .lookup(b, m.caps[0], CapKind::StorageObject, Rights::READ, T0)
        .unwrap();
    assert_eq!(info.id, id);
    assert_eq!(
        info.object,
        ObjectRef::StorageObject(pandagen_core::ServiceObject::new(
            pandagen_abi::ServiceId::from_raw(0),
            4
        ))
    );
    let ch = chan_ref(&mut k, b, h);
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Delegated { cap, from, to, via: Some(v), .. }
            if *cap == id && *from == a && *to == b && *v == ch
    )));
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::CrossDomainDelegation { cap, .. } if *cap == id
    )));
    k.check_invariants().unwrap();
}

#[test]
fn attached_capabilities_need_transfer_and_may_not_repeat() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let read_only = k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![], &[read_only], T0),
        Err(KernelError::InsufficientAuthority)
    );
    let movable = k
        .mint(t, Mintable::KernelInfo, Rights::TRANSFER, T0)
        .unwrap();
    assert_eq!(
        k.send(t, h, vec![], &[movable, movable], T0),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!(k.cap_count(t), 3);
    let ch = chan_ref(&mut k, t, h);
    assert_eq!(k.queue_len(ch), Some(0));
}

#[test]
fn a_channel_cannot_carry_its_own_receive_right() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![], &[h], T0),
        Err(KernelError::SendFailed(SendError::ReceiveRightOnOwnChannel))
    );
    // A send-only (transferable) clone of itself is fine.
    let c = k
        .clone_cap(t, h, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    k.send(t, h, vec![], &[c], T0).unwrap();
    let m = k.receive(t, h, T0).unwrap().unwrap();
    assert_eq!(
        k.inspect(t, m.caps[0]).unwrap().rights,
        Rights::SEND | Rights::TRANSFER
    );
    k.check_invariants().unwrap();
}

#[test]
fn a_receiver_without_room_loses_that_message_and_the_queue_moves_on() {
    let mut k = KernelCore::new(CoreConfig {
        max_caps_per_task: 3,
        ..CoreConfig::default()
    });
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    let h = k.create_channel(b, T0).unwrap();
    authorise(&mut k, b, a);
    let to_b = k.grant(b, h, a, T0).unwrap();
    let x = k
        .mint(a, Mintable::KernelInfo, Rights::TRANSFER, T0)
        .unwrap();
    let x_id = k.inspect(a, x).unwrap().id;
    k.send(a, to_b, vec![7], &[x], T0).unwrap();
    k.send(a, to_b, vec![8], &[], T0).unwrap();
    k.mint(b, Mintable::KernelInfo, Rights::READ, T0).unwrap(); // b is now full
    let ch = chan_ref(&mut k, b, h);
    assert_eq!(
        k.receive(b, h, T0),
        Err(KernelError::ReceiveFailed(
            ReceiveError::NoRoomForCapabilities { carried: 1 }
        ))
    );
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated {
            cap,
            reason: InvalidationReason::ReceiverFull,
            ..
        } if *cap == x_id
    )));
    // The message behind it is not held up.
    let next = k.receive(b, h, T0).unwrap().unwrap();
    assert_eq!(next.bytes, vec![8]);
    assert_eq!(k.queue_len(ch), Some(0));
    assert_eq!(k.cap_count(b), 3, "nothing was installed");
    k.check_invariants().unwrap();
}

#[test]
fn dropping_the_last_receive_right_closes_the_channel_and_invalidates_queued_caps() {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let h = k.create_channel(server, T0).unwrap();
    let ch = chan_ref(&mut k, server, h);
    let send_clone = k.clone_cap(server, h, Rights::SEND, T0).unwrap();
    assert_eq!(
        k.grant(server, send_clone, client, T0),
        Err(KernelError::InsufficientAuthority)
    );
    k.drop_cap(server, send_clone, T0).unwrap();
    authorise(&mut k, server, client);
    let to_server = k.grant(server, h, client, T0).unwrap();
    // The client's copy has RECEIVE too (a grant copies rights); attenuate
    // it to send-only and drop the full one.
    let send_only = k.clone_cap(client, to_server, Rights::SEND, T0).unwrap();
    k.drop_cap(client, to_server, T0).unwrap();
    let carried = k
        .mint(
            client,
            Mintable::StorageObject(pandagen_core::ServiceObject::new(
                pandagen_abi::ServiceId::from_raw(0),
                1,
            )),
            Rights::TRANSFER,
            T0,
        )
        .unwrap();
    let carried_id = k.inspect(client, carried).unwrap().id;
    k.send(client, send_only, vec![1], &[carried], T0).unwrap();
    k.drop_cap(server, h, T0).unwrap();
    assert!(k.is_channel_closed(ch));
    assert_eq!(k.queue_len(ch), Some(0), "queued messages were discarded");
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated { cap, holder: None, reason: InvalidationReason::ChannelClosed, .. }
            if *cap == carried_id
    )));
    assert_eq!(
        k.send(client, send_only, vec![2], &[], T0),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    k.check_invariants().unwrap();
    k.drop_cap(client, send_only, T0).unwrap();
    assert!(
        !k.channel_exists(ch),
        "destroyed once nothing references it"
    );
    k.check_invariants().unwrap();
}

#[test]
fn receivers_see_closed_once_no_sender_can_exist() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let recv_only = k.clone_cap(t, h, Rights::RECEIVE, T0).unwrap();
    k.send(t, h, vec![1], &[], T0).unwrap();
    k.drop_cap(t, h, T0).unwrap();
    // The queued message is still delivered…
    assert_eq!(k.receive(t, recv_only, T0).unwrap().unwrap().bytes, vec![1]);
    // …then the channel reports closed instead of waiting forever.
    assert_eq!(
        k.receive(t, recv_only, T0),
        Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed))
    );
}

#[test]
fn owner_death_closes_its_channels_and_invalidates_caps_in_flight() {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let h = k.create_channel(server, T0).unwrap();
    let ch = chan_ref(&mut k, server, h);
    authorise(&mut k, server, client);
    let full = k.grant(server, h, client, T0).unwrap();
    let to_server = k.clone_cap(client, full, Rights::SEND, T0).unwrap();
    k.drop_cap(client, full, T0).unwrap();
    // The client sends its reply channel's send right and a storage cap.
    let reply = k.create_channel(client, T0).unwrap();
    let reply_ch = chan_ref(&mut k, client, reply);
    let reply_send = k
        .clone_cap(client, reply, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    let obj = k
        .mint(
            client,
            Mintable::StorageObject(pandagen_core::ServiceObject::new(
                pandagen_abi::ServiceId::from_raw(0),
                3,
            )),
            Rights::TRANSFER,
            T0,
        )
        .unwrap();
    let ids = [
        k.inspect(client, reply_send).unwrap().id,
        k.inspect(client, obj).unwrap().id,
    ];
    k.send(client, to_server, vec![9], &[reply_send, obj], T0)
        .unwrap();

    let n = k
        .terminate(
            server,
            ExitReason::Failure {
                error: "boom".into(),
            },
            at(5),
        )
        .unwrap();
    assert_eq!(n.task_id, Some(server));
    assert!(k.is_channel_closed(ch));
    for id in ids {
        assert!(k.audit_log().has_event(|e| matches!(
            e,
            CapabilityEvent::Invalidated { cap, reason: InvalidationReason::ChannelClosed, .. } if *cap == id
        )));
    }
    assert_eq!(
        k.send(client, to_server, vec![], &[], at(6)),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    // The reply channel lost the in-flight sender but is otherwise intact.
    assert!(!k.is_channel_closed(reply_ch));
    k.check_invariants().unwrap();
}

#[test]
fn closing_cascades_through_caps_carried_in_queues() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let outer = k.create_channel(t, T0).unwrap();
    let inner = k.create_channel(t, T0).unwrap();
    let inner_ch = chan_ref(&mut k, t, inner);
    let outer_ch = chan_ref(&mut k, t, outer);
    // inner's only receive right travels in outer's queue.
    k.send(t, outer, vec![], &[inner], T0).unwrap();
    k.check_invariants().unwrap();
    assert!(
        !k.is_channel_closed(inner_ch),
        "a receive right in transit keeps it open"
    );
    k.drop_cap(t, outer, T0).unwrap();
    assert!(!k.channel_exists(outer_ch));
    assert!(
        !k.channel_exists(inner_ch),
        "the cascade released inner too"
    );
    assert_eq!(k.channel_count(), 0);
    k.check_invariants().unwrap();
}

#[test]
fn parked_messages_can_be_delivered_late_or_lost_without_leaks() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let ch = chan_ref(&mut k, t, h);
    let x = k
        .mint(t, Mintable::KernelInfo, Rights::TRANSFER, T0)
        .unwrap();
    let x_id = k.inspect(t, x).unwrap().id;
    let late = k.prepare_send(t, h, vec![1], &[x], T0).unwrap();
    assert_eq!(late.channel(), ch);
    assert!(k.inspect(t, x).is_none(), "moved into custody at send time");
    k.send(t, h, vec![2], &[], T0).unwrap();
    k.check_invariants().unwrap();
    k.enqueue(late, at(10)).unwrap();
    assert_eq!(k.receive(t, h, at(10)).unwrap().unwrap().bytes, vec![2]);
    let m = k.receive(t, h, at(10)).unwrap().unwrap();
    assert_eq!((m.bytes, m.caps.len()), (vec![1], 1));

    let lost = k.prepare_send(t, h, vec![3], &m.caps, at(11)).unwrap();
    k.discard(lost, at(12));
    assert_eq!(k.parked_count(), 0);
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Invalidated { cap, reason: InvalidationReason::MessageDiscarded, .. } if *cap == x_id
    )));
    assert_eq!(k.receive(t, h, at(12)), Ok(None));
    k.check_invariants().unwrap();
}

#[test]
fn a_parked_message_for_a_closed_channel_is_discarded_on_enqueue() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let send = k.clone_cap(t, h, Rights::SEND, T0).unwrap();
    let x = k
        .mint(t, Mintable::KernelInfo, Rights::TRANSFER, T0)
        .unwrap();
    let parked = k.prepare_send(t, send, vec![], &[x], T0).unwrap();
    k.drop_cap(t, h, T0).unwrap();
    assert_eq!(
        k.enqueue(parked, T0),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    assert_eq!(k.audit_log().counts().invalidated, 1);
    k.check_invariants().unwrap();
}

#[test]
fn swap_reorders_deterministically_without_duplicating() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let ch = chan_ref(&mut k, t, h);
    for i in 0..3u8 {
        k.send(t, h, vec![i], &[], T0).unwrap();
    }
    assert!(k.swap_queued(ch, 0, 2));
    assert!(!k.swap_queued(ch, 0, 3));
    let got: Vec<u8> = (0..3)
        .map(|_| k.receive(t, h, T0).unwrap().unwrap().bytes[0])
        .collect();
    assert_eq!(got, [2, 1, 0]);
    assert_eq!(k.receive(t, h, T0), Ok(None));
}

#[test]
fn discard_next_loses_one_message_and_its_caps() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let x = k
        .mint(t, Mintable::KernelInfo, Rights::TRANSFER, T0)
        .unwrap();
    k.send(t, h, vec![1], &[x], T0).unwrap();
    k.send(t, h, vec![2], &[], T0).unwrap();
    assert_eq!(k.discard_next(t, h, T0), Ok(true));
    assert_eq!(k.receive(t, h, T0).unwrap().unwrap().bytes, vec![2]);
    assert_eq!(k.discard_next(t, h, T0), Ok(false));
    assert_eq!(k.audit_log().counts().invalidated, 1);
    k.check_invariants().unwrap();
}

#[test]
fn send_and_receive_need_their_rights() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let recv_only = k.clone_cap(t, h, Rights::RECEIVE, T0).unwrap();
    let send_only = k.clone_cap(t, h, Rights::SEND, T0).unwrap();
    assert_eq!(
        k.send(t, recv_only, vec![], &[], T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.receive(t, send_only, T0),
        Err(KernelError::InsufficientAuthority)
    );
    let not_a_channel = k.mint(t, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    assert!(matches!(
        k.send(t, not_a_channel, vec![], &[], T0),
        Err(KernelError::WrongCapabilityKind { .. })
    ));
    assert_eq!(invalid_uses(&k), 3);
}

#[test]
fn kernel_messages_carry_the_kernel_sender_and_respect_bounds() {
    use pandagen_core::channel::KERNEL_SENDER;
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    assert_ne!(t, KERNEL_SENDER, "no task is ever the kernel");
    let h = k.create_channel_with_capacity(t, 1, T0).unwrap();
    let ch = chan_ref(&mut k, t, h);
    let before = k.budget(t).unwrap().used.memory;
    k.send_from_kernel(ch, vec![1, 2], t, T0).unwrap();
    assert_eq!(
        k.budget(t).unwrap().used.memory,
        before + pandagen_core::budget::message_cost(2, 0),
        "the binder pays for the kernel's message while it is queued"
    );
    assert_eq!(
        k.send_from_kernel(ch, vec![3], t, T0),
        Err(KernelError::SendFailed(SendError::QueueFull))
    );
    let m = k.receive(t, h, T0).unwrap().unwrap();
    assert_eq!((m.sender, m.bytes), (KERNEL_SENDER, vec![1, 2]));
    assert_eq!(
        k.budget(t).unwrap().used.memory,
        before,
        "returned on receipt"
    );
    k.check_invariants().unwrap();
    k.drop_cap(t, h, T0).unwrap();
    assert_eq!(
        k.send_from_kernel(ch, vec![4], t, T0),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    k.check_invariants().unwrap();
}

#[test]
fn a_message_body_knows_its_length_however_it_is_held() {
    let bytes = [1u8, 2, 3];
    let empty: [u8; 0] = [];
    let cases = [
        (Body::from(&bytes), 3),
        (Body::from(vec![7u8; 5]), 5),
        (Body::Kept(4), 4),
        (Body::from(&empty), 0),
        (Body::from(Vec::new()), 0),
        (Body::Kept(0), 0),
    ];
    for (body, len) in cases {
        assert_eq!(body.len(), len, "{body:?}");
        assert_eq!(body.is_empty(), len == 0, "{body:?}");
    }
}

#[test]
fn a_kernel_message_its_payer_cannot_afford_is_refused_and_not_queued() {
    use pandagen_abi::error::Resource;
    use pandagen_abi::Budget;
    let mut k = kernel();
    let root = spawn(&mut k, "root");
    let cost = pandagen_core::budget::TASK_COST
        + pandagen_core::budget::CHANNEL_COST
        + pandagen_core::budget::CAP_COST;
    let spec = pandagen_core::TaskSpec::new("poor").budget(Budget::memory(cost));
    let poor = spawn_under(&mut k, root, spec, None).unwrap();
    let h = k.create_channel(poor, T0).unwrap();
    let ch = chan_ref(&mut k, poor, h);
    assert_eq!(
        k.send_from_kernel(ch, vec![7; 64], poor, T0),
        Err(KernelError::ResourceExhausted(Resource::MemoryBudget))
    );
    assert_eq!(k.queue_len(ch), Some(0));
    k.check_invariants().unwrap();
}
