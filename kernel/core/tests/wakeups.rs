//! Wake-ups: a blocked receiver is woken when, and only when, something
//! happened that concerns it — with the reason it can act on.

mod common;

use common::*;
use pandagen_abi::error::ReceiveError;
use pandagen_abi::{CapHandle, KernelError, Rights, ServiceId, TaskId};
use pandagen_core::{KernelCore, Mintable, RecvOutcome, SchedState, WakeReason};

/// An owner with a receive-only handle on a channel of which `receivers`
/// other tasks hold receive-only copies and `senders` tasks hold send-only
/// copies; the owner's full capability is gone.
struct Fanout {
    k: KernelCore,
    owner: TaskId,
    owner_rx: CapHandle,
    rx: Vec<(TaskId, CapHandle)>,
    tx: Vec<(TaskId, CapHandle)>,
}

fn fanout(receivers: usize, senders: usize) -> Fanout {
    let mut k = kernel();
    let owner = spawn(&mut k, "owner");
    let full = k.create_channel(owner, T0).unwrap();
    let copy = |k: &mut KernelCore, rights: Rights, name: &str| {
        let t = spawn(k, name);
        let over = authorise(k, owner, t);
        let h = k
            .clone_cap(owner, full, rights | Rights::TRANSFER, T0)
            .unwrap();
        let moved = k.delegate(owner, h, t, T0).unwrap();
        k.drop_cap(owner, over, T0).unwrap();
        (t, moved)
    };
    let rx = (0..receivers)
        .map(|_| copy(&mut k, Rights::RECEIVE, "rx"))
        .collect();
    let tx = (0..senders)
        .map(|_| copy(&mut k, Rights::SEND, "tx"))
        .collect();
    let owner_rx = k.clone_cap(owner, full, Rights::RECEIVE, T0).unwrap();
    k.drop_cap(owner, full, T0).unwrap();
    Fanout {
        k,
        owner,
        owner_rx,
        rx,
        tx,
    }
}

/// [`fanout`] with the owner and every other receiver blocked receiving.
fn all_blocked(receivers: usize, senders: usize) -> Fanout {
    let mut f = fanout(receivers, senders);
    block(&mut f.k, f.owner, f.owner_rx);
    for &(t, h) in &f.rx {
        block(&mut f.k, t, h);
    }
    f
}

fn block(k: &mut KernelCore, task: TaskId, h: CapHandle) {
    assert_eq!(
        k.receive_or_block(task, h, None, T0),
        Ok(RecvOutcome::Blocked)
    );
}

fn still_blocked(k: &mut KernelCore, task: TaskId) -> bool {
    matches!(k.task_state(task), Some(SchedState::Blocked(_))) && k.take_wake_reason(task).is_none()
}

#[test]
fn taking_the_last_message_of_a_drained_channel_wakes_the_other_receivers_closed() {
    let Fanout {
        mut k,
        owner,
        owner_rx,
        rx,
        tx,
    } = all_blocked(2, 1);
    let (sender, to) = tx[0];
    k.send(sender, to, b"last".to_vec(), &[], T0).unwrap();
    assert_eq!(k.take_wake_reason(owner), Some(WakeReason::MessageArrived));
    // The only sender goes: the channel is drained once the queue is.
    k.drop_cap(sender, to, T0).unwrap();
    for &(t, _) in &rx {
        assert!(still_blocked(&mut k, t), "a message is still queued");
    }
    let got = k.receive_or_block(owner, owner_rx, None, T0).unwrap();
    assert!(matches!(got, RecvOutcome::Message(m) if m.bytes == b"last"));
    for &(t, h) in &rx {
        assert_eq!(k.task_state(t), Some(SchedState::Ready));
        assert_eq!(k.take_wake_reason(t), Some(WakeReason::ChannelClosed));
        assert_eq!(
            k.receive_or_block(t, h, None, T0),
            Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed))
        );
    }
    k.check_invariants().unwrap();
}

#[test]
fn taking_a_message_while_a_sender_remains_wakes_nobody_else() {
    let Fanout {
        mut k,
        owner,
        owner_rx,
        rx,
        tx,
    } = all_blocked(2, 1);
    let (sender, to) = tx[0];
    k.send(sender, to, b"one".to_vec(), &[], T0).unwrap();
    k.receive_or_block(owner, owner_rx, None, T0).unwrap();
    for &(t, _) in &rx {
        assert!(still_blocked(&mut k, t));
    }
    k.check_invariants().unwrap();
}

#[test]
fn dropping_an_unrelated_capability_wakes_nobody() {
    let Fanout {
        mut k,
        owner,
        owner_rx,
        rx,
        tx,
    } = fanout(1, 2);
    block(&mut k, owner, owner_rx);
    let (rx_task, rx_h) = rx[0];
    block(&mut k, rx_task, rx_h);
    // Capabilities of other kinds, of other channels, and one of two
    // senders: none of it can end the wait.
    let info = k
        .mint(owner, Mintable::KernelInfo, Rights::READ, T0)
        .unwrap();
    k.drop_cap(owner, info, T0).unwrap();
    let other = k.create_channel(tx[0].0, T0).unwrap();
    k.drop_cap(tx[0].0, other, T0).unwrap();
    let (first, first_h) = tx[0];
    k.drop_cap(first, first_h, T0).unwrap();
    assert!(still_blocked(&mut k, owner));
    assert!(still_blocked(&mut k, rx_task));
    // The last sender goes: every waiter learns the channel is closed.
    let (last, last_h) = tx[1];
    k.drop_cap(last, last_h, T0).unwrap();
    for t in [owner, rx_task] {
        assert_eq!(k.take_wake_reason(t), Some(WakeReason::ChannelClosed));
    }
    k.check_invariants().unwrap();
}

#[test]
fn a_registration_keeps_waiters_waiting_until_the_last_one_goes() {
    let Fanout {
        mut k,
        owner,
        owner_rx,
        tx,
        ..
    } = fanout(0, 1);
    let reg = k
        .mint(owner, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let (a, b) = (ServiceId::from_raw(1), ServiceId::from_raw(2));
    k.register_service(owner, reg, a, owner_rx, T0).unwrap();
    k.register_service(owner, reg, b, owner_rx, T0).unwrap();
    let waiter = spawn(&mut k, "waiter");
    block(&mut k, owner, owner_rx);
    // No sender left, but a lookup could still make one.
    let (sender, to) = tx[0];
    k.drop_cap(sender, to, T0).unwrap();
    assert!(still_blocked(&mut k, owner));
    k.unregister_service(owner, a).unwrap();
    assert!(still_blocked(&mut k, owner), "one registration remains");
    // A lookup through it still reaches the owner.
    let via = k.lookup_service(waiter, b, T0).unwrap();
    k.send(waiter, via, b"hi".to_vec(), &[], T0).unwrap();
    assert_eq!(k.take_wake_reason(owner), Some(WakeReason::MessageArrived));
    assert!(matches!(
        k.receive_or_block(owner, owner_rx, None, T0),
        Ok(RecvOutcome::Message(_))
    ));
    k.drop_cap(waiter, via, T0).unwrap();
    block(&mut k, owner, owner_rx);
    k.unregister_service(owner, b).unwrap();
    assert_eq!(k.take_wake_reason(owner), Some(WakeReason::ChannelClosed));
    k.check_invariants().unwrap();
}

#[test]
fn closing_a_channel_wakes_every_waiter() {
    let Fanout {
        mut k,
        owner,
        owner_rx,
        rx,
        tx,
    } = fanout(3, 1);
    for &(t, h) in &rx {
        block(&mut k, t, h);
    }
    // Every receive right goes, the owner's last: only then is the
    // channel closed.
    for &(t, h) in &rx {
        k.drop_cap(t, h, T0).unwrap();
    }
    for &(t, _) in &rx {
        assert!(still_blocked(&mut k, t));
    }
    let ready = k.ready_count();
    k.drop_cap(owner, owner_rx, T0).unwrap();
    assert_eq!(k.ready_count(), ready + rx.len(), "each woke exactly once");
    for &(t, _) in &rx {
        assert_eq!(k.take_wake_reason(t), Some(WakeReason::ChannelClosed));
    }
    assert_eq!(k.channel_count(), 1, "the sender still references it");
    let (sender, to) = tx[0];
    assert!(k.send(sender, to, vec![], &[], T0).is_err());
    k.drop_cap(sender, to, T0).unwrap();
    assert_eq!(k.channel_count(), 0, "nothing references it any more");
    k.check_invariants().unwrap();
}

#[test]
fn a_receive_clears_the_wake_reason_and_a_refused_one_leaves_it() {
    let scene = || {
        let mut f = all_blocked(0, 1);
        let (sender, tx) = f.tx[0];
        f.k.send(sender, tx, vec![1], &[], T0).unwrap();
        // The owner's receive handle of a later generation: stale.
        let stale = CapHandle::new(f.owner_rx.index(), f.owner_rx.generation() + 1);
        (f, stale)
    };

    let (mut f, stale) = scene();
    assert!(f.k.receive_or_block(f.owner, stale, None, T0).is_err());
    assert_eq!(
        f.k.take_wake_reason(f.owner),
        Some(WakeReason::MessageArrived),
        "a refused receive leaves the reason to read"
    );

    let (mut f, stale) = scene();
    assert!(f.k.receive_or_block(f.owner, stale, None, T0).is_err());
    assert!(matches!(
        f.k.receive_or_block(f.owner, f.owner_rx, None, T0),
        Ok(RecvOutcome::Message(_))
    ));
    assert_eq!(f.k.take_wake_reason(f.owner), None, "a receive clears it");
}
