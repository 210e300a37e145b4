//! Scheduling and blocking contracts: priorities, round-robin, blocking
//! receive with deadlines, sleep, wake-ups.

mod common;

use common::*;
use pandagen_abi::error::ReceiveError;
use pandagen_abi::{ExitReason, KernelError, Priority, Rights};
use pandagen_core::{BlockedOn, RecvOutcome, SchedState, WakeReason};

#[test]
fn higher_priorities_run_first_and_equal_ones_round_robin() {
    let mut k = kernel();
    let low = spawn_at(&mut k, "low", Priority::IDLE);
    let a = spawn_at(&mut k, "a", Priority::NORMAL);
    let b = spawn_at(&mut k, "b", Priority::NORMAL);
    let c = spawn_at(&mut k, "c", Priority::NORMAL);
    let mut order = Vec::new();
    for _ in 0..6 {
        let t = k.pick_next().unwrap();
        order.push(t);
        assert!(k.yield_task(t));
    }
    assert_eq!(
        order,
        [a, b, c, a, b, c],
        "idle never runs while others are ready"
    );
    let hi = spawn_at(&mut k, "hi", Priority::HIGH);
    assert_eq!(k.pick_next(), Some(hi));
    assert_eq!(k.task_state(hi), Some(SchedState::Running));
    assert!(!k.yield_task(low), "only a running task can yield");
    k.set_priority(low, Priority(31)).unwrap();
    assert_eq!(k.pick_next(), Some(low));
    k.check_invariants().unwrap();
}

#[test]
fn a_blocked_receiver_wakes_when_a_message_arrives() {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let h = k.create_channel(server, T0).unwrap();
    authorise(&mut k, server, client);
    let to_server = k.grant(server, h, client, T0).unwrap();
    assert_eq!(
        k.receive_or_block(server, h, None, T0),
        Ok(RecvOutcome::Blocked)
    );
    assert!(matches!(
        k.task_state(server),
        Some(SchedState::Blocked(BlockedOn::Receive {
            deadline: None,
            ..
        }))
    ));
    assert_eq!(k.pick_next(), Some(client), "a blocked task is not picked");
    k.check_invariants().unwrap();
    k.send(client, to_server, vec![5], &[], at(10)).unwrap();
    assert_eq!(k.task_state(server), Some(SchedState::Ready));
    assert_eq!(k.take_wake_reason(server), Some(WakeReason::MessageArrived));
    match k.receive_or_block(server, h, None, at(11)).unwrap() {
        RecvOutcome::Message(m) => assert_eq!(m.bytes, vec![5]),
        other => panic!("expected a message, got {other:?}"),
    }
    k.check_invariants().unwrap();
}

#[test]
fn a_blocked_receive_times_out_at_its_deadline() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let deadline = Some(at(100));
    assert_eq!(
        k.receive_or_block(t, h, deadline, T0),
        Ok(RecvOutcome::Blocked)
    );
    assert_eq!(k.next_deadline(), Some(at(100)));
    assert_eq!(k.expire_deadlines(at(99)), 0);
    assert_eq!(k.expire_deadlines(at(100)), 1);
    assert_eq!(k.take_wake_reason(t), Some(WakeReason::DeadlineReached));
    assert_eq!(
        k.receive_or_block(t, h, deadline, at(100)),
        Ok(RecvOutcome::TimedOut)
    );
    assert_eq!(k.next_deadline(), None);
    // A deadline already past times out without blocking.
    assert_eq!(
        k.receive_or_block(t, h, Some(at(50)), at(100)),
        Ok(RecvOutcome::TimedOut)
    );
    assert_eq!(k.task_state(t), Some(SchedState::Ready));
    k.check_invariants().unwrap();
}

#[test]
fn a_message_before_the_deadline_cancels_the_timeout() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let s = spawn(&mut k, "s");
    authorise(&mut k, t, s);
    let to_t = k.grant(t, h, s, T0).unwrap();
    k.receive_or_block(t, h, Some(at(100)), T0).unwrap();
    k.send(s, to_t, vec![1], &[], at(10)).unwrap();
    assert_eq!(k.next_deadline(), None, "the deadline left the index");
    assert_eq!(k.expire_deadlines(at(1000)), 0);
    k.check_invariants().unwrap();
}

#[test]
fn one_message_wakes_one_waiter_in_arrival_order() {
    let mut k = kernel();
    let owner = spawn(&mut k, "owner");
    let h = k.create_channel(owner, T0).unwrap();
    let w1 = spawn(&mut k, "w1");
    let w2 = spawn(&mut k, "w2");
    authorise(&mut k, owner, w1);
    let h1 = k.grant(owner, h, w1, T0).unwrap();
    authorise(&mut k, owner, w2);
    let h2 = k.grant(owner, h, w2, T0).unwrap();
    k.receive_or_block(w1, h1, None, T0).unwrap();
    k.receive_or_block(w2, h2, None, T0).unwrap();
    k.send(owner, h, vec![1], &[], T0).unwrap();
    assert_eq!(k.task_state(w1), Some(SchedState::Ready));
    assert!(matches!(k.task_state(w2), Some(SchedState::Blocked(_))));
    k.send(owner, h, vec![2], &[], T0).unwrap();
    assert_eq!(k.task_state(w2), Some(SchedState::Ready));
    k.check_invariants().unwrap();
}

#[test]
fn a_receiver_woken_too_late_blocks_again() {
    let mut k = kernel();
    let owner = spawn(&mut k, "owner");
    let h = k.create_channel(owner, T0).unwrap();
    let w = spawn(&mut k, "w");
    authorise(&mut k, owner, w);
    let hw = k.grant(owner, h, w, T0).unwrap();
    k.receive_or_block(w, hw, None, T0).unwrap();
    k.send(owner, h, vec![1], &[], T0).unwrap();
    // Someone else takes the message before the woken task runs.
    assert!(k.receive(owner, h, T0).unwrap().is_some());
    assert_eq!(
        k.receive_or_block(w, hw, None, T0),
        Ok(RecvOutcome::Blocked)
    );
    k.check_invariants().unwrap();
}

#[test]
fn sleep_until_blocks_until_the_deadline() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    assert_eq!(k.sleep_until(a, at(50), at(10)), Ok(true));
    assert_eq!(
        k.sleep_until(b, at(10), at(10)),
        Ok(false),
        "not in the future: no block"
    );
    assert_eq!(k.sleep_until(b, at(30), at(10)), Ok(true));
    assert_eq!(k.next_deadline(), Some(at(30)));
    assert_eq!(k.pick_next(), None);
    assert_eq!(k.expire_deadlines(at(40)), 1);
    assert_eq!(k.pick_next(), Some(b));
    assert_eq!(k.next_deadline(), Some(at(50)));
    assert_eq!(k.expire_deadlines(at(60)), 1);
    assert_eq!(k.take_wake_reason(a), Some(WakeReason::DeadlineReached));
    k.check_invariants().unwrap();
}

#[test]
fn terminating_a_blocked_task_leaves_no_trace_in_wait_lists() {
    let mut k = kernel();
    let owner = spawn(&mut k, "owner");
    let h = k.create_channel(owner, T0).unwrap();
    let w = spawn(&mut k, "w");
    authorise(&mut k, owner, w);
    let hw = k.grant(owner, h, w, T0).unwrap();
    k.receive_or_block(w, hw, Some(at(10)), T0).unwrap();
    k.terminate(
        w,
        ExitReason::Cancelled {
            reason: "stop".into(),
        },
        T0,
    )
    .unwrap();
    assert_eq!(k.next_deadline(), None);
    k.send(owner, h, vec![], &[], T0).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn the_death_of_the_last_possible_sender_wakes_receivers() {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let reply = k.create_channel(client, T0).unwrap();
    let send_right = k
        .clone_cap(client, reply, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    let recv_only = k.clone_cap(client, reply, Rights::RECEIVE, T0).unwrap();
    k.drop_cap(client, reply, T0).unwrap();
    authorise(&mut k, client, server);
    k.delegate(client, send_right, server, T0).unwrap();
    assert_eq!(
        k.receive_or_block(client, recv_only, None, T0),
        Ok(RecvOutcome::Blocked)
    );
    k.terminate(
        server,
        ExitReason::Failure {
            error: "died".into(),
        },
        at(1),
    )
    .unwrap();
    assert_eq!(k.task_state(client), Some(SchedState::Ready));
    assert_eq!(k.take_wake_reason(client), Some(WakeReason::ChannelClosed));
    assert_eq!(
        k.receive_or_block(client, recv_only, None, at(1)),
        Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed))
    );
    k.check_invariants().unwrap();
}

#[test]
fn re_blocking_a_blocked_task_moves_its_wait() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let a = k.create_channel(t, T0).unwrap();
    let b = k.create_channel(t, T0).unwrap();
    k.receive_or_block(t, a, Some(at(10)), T0).unwrap();
    // The kernel re-issues the wait on another channel without a wake-up.
    assert_eq!(
        k.receive_or_block(t, b, Some(at(20)), T0),
        Ok(RecvOutcome::Blocked)
    );
    assert_eq!(k.next_deadline(), Some(at(20)));
    k.check_invariants().unwrap();
    k.send(t, a, vec![], &[], T0).unwrap();
    assert!(
        matches!(k.task_state(t), Some(SchedState::Blocked(_))),
        "no longer waits on a"
    );
    assert_eq!(k.sleep_until(t, at(30), T0), Ok(true));
    k.send(t, b, vec![], &[], T0).unwrap();
    assert!(matches!(
        k.task_state(t),
        Some(SchedState::Blocked(BlockedOn::Sleep { .. }))
    ));
    k.check_invariants().unwrap();
}

#[test]
fn every_deadline_due_at_once_wakes_and_is_counted() {
    let mut k = kernel();
    let sleepers: Vec<_> = (0..3).map(|_| spawn(&mut k, "s")).collect();
    let receiver = spawn(&mut k, "r");
    let h = k.create_channel(receiver, T0).unwrap();
    for (i, &s) in sleepers.iter().enumerate() {
        assert_eq!(k.sleep_until(s, at(10 + i as u64), T0), Ok(true));
    }
    assert_eq!(
        k.receive_or_block(receiver, h, Some(at(11)), T0),
        Ok(RecvOutcome::Blocked)
    );
    assert_eq!(k.expire_deadlines(at(9)), 0);
    // Two sleepers and the receiver are due by 11; the last sleeper is not.
    assert_eq!(k.expire_deadlines(at(11)), 3);
    for t in [sleepers[0], sleepers[1], receiver] {
        assert_eq!(k.take_wake_reason(t), Some(WakeReason::DeadlineReached));
    }
    assert!(matches!(
        k.task_state(sleepers[2]),
        Some(SchedState::Blocked(BlockedOn::Sleep { .. }))
    ));
    assert_eq!(k.next_deadline(), Some(at(12)));
    k.check_invariants().unwrap();
}

#[test]
fn a_sleeper_that_starts_receiving_stops_sleeping() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    assert_eq!(k.sleep_until(t, at(10), T0), Ok(true));
    // The kernel re-issues a wait for a task it did not wake: the sleep
    // is replaced, not kept beside the receive.
    assert_eq!(
        k.receive_or_block(t, h, None, at(1)),
        Ok(RecvOutcome::Blocked)
    );
    assert_eq!(k.next_deadline(), None);
    assert!(matches!(
        k.task_state(t),
        Some(SchedState::Blocked(BlockedOn::Receive { .. }))
    ));
    assert_eq!(k.expire_deadlines(at(10)), 0);
    // And a receiver that goes to sleep leaves the wait list.
    assert_eq!(k.sleep_until(t, at(20), at(2)), Ok(true));
    k.send(t, h, b"x".to_vec(), &[], at(3)).unwrap();
    assert_eq!(k.take_wake_reason(t), None, "not woken by the message");
    assert_eq!(k.expire_deadlines(at(20)), 1);
    k.check_invariants().unwrap();
}

#[test]
fn a_receive_whose_deadline_is_now_times_out_and_one_just_after_blocks() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    assert_eq!(
        k.receive_or_block(t, h, Some(at(5)), at(5)),
        Ok(RecvOutcome::TimedOut)
    );
    assert_eq!(k.task_state(t), Some(SchedState::Ready));
    assert_eq!(
        k.receive_or_block(t, h, Some(at(6)), at(5)),
        Ok(RecvOutcome::Blocked)
    );
    assert_eq!(k.next_deadline(), Some(at(6)));
    // Sleeping until now does not block; a moment later does.
    let s = spawn(&mut k, "s");
    assert_eq!(k.sleep_until(s, at(5), at(5)), Ok(false));
    assert_eq!(k.task_state(s), Some(SchedState::Ready));
    assert_eq!(k.sleep_until(s, at(6), at(5)), Ok(true));
    k.check_invariants().unwrap();
}

#[test]
fn a_task_the_embedder_chooses_runs_whether_ready_or_blocked() {
    // The simulator steps tasks in its own order (`run_task`), not by
    // `pick_next`.
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    assert!(k.run_task(b));
    assert_eq!(k.task_state(b), Some(SchedState::Running));
    assert!(k.yield_task(b));
    assert_eq!(k.pick_next(), Some(a), "b left the ready list's head");
    assert!(k.yield_task(a));
    // A blocked receiver stops waiting, with nothing arrived.
    let h = k.create_channel(a, T0).unwrap();
    assert_eq!(k.receive_or_block(a, h, None, T0), Ok(RecvOutcome::Blocked));
    assert!(k.run_task(a));
    assert_eq!(k.task_state(a), Some(SchedState::Running));
    k.check_invariants().unwrap();
    assert!(k.yield_task(a));
    k.terminate(a, ExitReason::Normal, T0).unwrap();
    assert!(!k.run_task(a), "a dead task does not run");
}
