//! The IPC fast path and hand-offs: a message given straight to a blocked
//! receiver must leave the core exactly as the general path would, and
//! every case the fast path does not cover must leave it untouched.

mod common;

use common::*;
use pandagen_abi::error::SendError;
use pandagen_abi::{CapHandle, ExitReason, KernelError, Priority, TaskId};
use pandagen_core::budget::message_cost;
use pandagen_core::{slot_index, BlockedOn, Body, KernelCore, SchedState, Sent, WakeReason};

/// A server blocked receiving on its request channel and a running
/// client, each holding a send capability for the other's channel.
struct Pair {
    k: KernelCore,
    server: TaskId,
    client: TaskId,
    requests: CapHandle,
    to_server: CapHandle,
    replies: CapHandle,
    to_client: CapHandle,
}

fn pair() -> Pair {
    pair_in(kernel())
}

/// [`pair`] in `k`, which may hold other tasks (or have held them).
fn pair_in(mut k: KernelCore) -> Pair {
    let server = spawn(&mut k, "server");
    let client = spawn(&mut k, "client");
    let requests = k.create_channel(server, T0).unwrap();
    authorise(&mut k, server, client);
    let to_server = k.grant(server, requests, client, T0).unwrap();
    let replies = k.create_channel(client, T0).unwrap();
    authorise(&mut k, client, server);
    let to_client = k.grant(client, replies, server, T0).unwrap();
    assert_eq!(k.pick_next(), Some(server));
    k.receive_or_block(server, requests, None, T0).unwrap();
    assert_eq!(k.pick_next(), Some(client));
    Pair {
        k,
        server,
        client,
        requests,
        to_server,
        replies,
        to_client,
    }
}

/// A change to the set-up that must make the fast path decline.
type Prepare = Box<dyn Fn(&mut Pair)>;

fn blocked_on_receive(k: &KernelCore, task: TaskId) -> bool {
    matches!(
        k.task_state(task),
        Some(SchedState::Blocked(BlockedOn::Receive { .. }))
    )
}

/// The client's fast path with the usual arguments: `x` to the server,
/// then a receive on its replies, no deadline of its own, at `T0`.
fn call_x(
    p: &mut Pair,
    hand_off: impl FnOnce(&pandagen_core::Offer<'_>) -> bool,
) -> Option<pandagen_core::Switched> {
    p.k.send_receive_fast(
        p.client,
        p.to_server,
        b"x",
        p.replies,
        None,
        || T0,
        hand_off,
    )
}

#[test]
fn a_call_and_its_reply_switch_straight_between_the_two_tasks() {
    let Pair {
        mut k,
        server,
        client,
        requests,
        to_server,
        replies,
        to_client,
    } = pair();
    let mut offered = None;
    let call = k.send_receive_fast(
        client,
        to_server,
        b"ping",
        replies,
        None,
        || T0,
        |o| {
            offered = Some((o.receiver, o.sender, o.bytes.to_vec()));
            true
        },
    );
    assert_eq!(call.map(|s| s.receiver), Some(server));
    assert_eq!(offered, Some((server, client, b"ping".to_vec())));
    assert_eq!(k.task_state(server), Some(SchedState::Running));
    assert!(blocked_on_receive(&k, client));
    assert_eq!(k.take_wake_reason(server), Some(WakeReason::HandedOff));
    let request_channel = k.channel_of(server, requests, T0).unwrap();
    assert_eq!(k.queue_len(request_channel), Some(0), "nothing was queued");
    k.check_invariants().unwrap();

    let reply = k.send_receive_fast(
        server,
        to_client,
        b"pong",
        requests,
        None,
        || T0,
        |o| o.receiver == client && o.bytes == b"pong",
    );
    assert_eq!(reply.map(|s| s.receiver), Some(client));
    assert!(call.unwrap().seq < reply.unwrap().seq);
    assert_eq!(k.task_state(client), Some(SchedState::Running));
    assert!(blocked_on_receive(&k, server));
    k.check_invariants().unwrap();
}

/// [`pair`] in slots two ended tasks left, `first` and `second` (the
/// client takes `first`'s, the server `second`'s), with their old ids.
fn pair_in_ended_slots() -> (Pair, TaskId, TaskId) {
    let mut k = kernel();
    let first = spawn(&mut k, "first");
    let second = spawn(&mut k, "second");
    k.terminate(second, ExitReason::Normal, T0).unwrap();
    k.terminate(first, ExitReason::Normal, T0).unwrap();
    (pair_in(k), first, second)
}

/// The check names the two tasks by their slots in the core's task table
/// (those of `slot_index`, which an embedder's parallel table uses), and
/// the receiver's id is the one of the task in its slot, generation
/// included: here the two tasks took ended tasks' slots, the server the
/// higher one.
#[test]
fn a_checked_call_names_the_caller_s_and_the_receiver_s_slots() {
    let (mut p, first, second) = pair_in_ended_slots();
    assert_eq!(slot_index(p.server), slot_index(second));
    assert_eq!(slot_index(p.client), slot_index(first));
    assert_ne!(p.server, second, "a new generation");
    let call =
        p.k.check_fast(
            p.client,
            slot_index(p.client),
            p.to_server,
            1,
            p.replies,
            None,
            || T0,
        )
        .expect("every condition holds");
    let slots = (slot_index(p.client) as u32, slot_index(p.server) as u32);
    assert_eq!(call.slots(), slots);
    assert_eq!(call.receiver(), Some(p.server));
    let offer = call.offer(p.server, b"x");
    assert_eq!((offer.receiver, offer.sender), (p.server, p.client));
    let seq = offer.seq;
    assert_eq!(call.commit().seq, seq);
    assert_eq!(p.k.task_state(p.server), Some(SchedState::Running));
    assert!(blocked_on_receive(&p.k, p.client));
    p.k.check_invariants().unwrap();
}

/// The embedder names the caller's slot as well as its id; a slot that is
/// not the id's declines and changes nothing, even where the task in it
/// would pass every other check: the running client's slot given with the
/// blocked server's id, or with the id of the ended task whose slot the
/// client took; an ended task's empty slot, or one beyond the table, with
/// the client's id; an empty slot with the kernel's id, which no task has
/// (an empty slot holds a placeholder with that id and no capability).
#[test]
fn a_caller_slot_that_is_not_the_caller_s_declines_and_changes_nothing() {
    let (mut p, first, _) = pair_in_ended_slots();
    let client_slot = slot_index(p.client);
    assert_eq!(client_slot, slot_index(first), "the client took its slot");
    let ended = spawn(&mut p.k, "ended");
    p.k.terminate(ended, ExitReason::Normal, T0).unwrap();
    let cases = [
        (
            "the server's id in the client's slot",
            p.server,
            client_slot,
        ),
        ("the stale id of the client's slot", first, client_slot),
        (
            "the client's id in an empty slot",
            p.client,
            slot_index(ended),
        ),
        ("the client's id beyond the table", p.client, usize::MAX),
        (
            "the kernel's id (no task's) in an empty slot",
            pandagen_abi::ids::KERNEL_TASK,
            slot_index(ended),
        ),
        (
            "the client's id in the server's slot",
            p.client,
            slot_index(p.server),
        ),
    ];
    for (name, caller, slot) in cases {
        let before = invalid_uses(&p.k);
        let call =
            p.k.check_fast(caller, slot, p.to_server, 1, p.replies, None, || T0);
        assert!(call.is_none(), "{name}");
        assert_eq!(
            p.k.task_state(p.client),
            Some(SchedState::Running),
            "{name}"
        );
        assert!(blocked_on_receive(&p.k, p.server), "{name}");
        assert_eq!(invalid_uses(&p.k), before, "{name}");
        p.k.check_invariants().unwrap();
    }
    let call = call_x(&mut p, |_| true);
    assert_eq!(
        call.map(|s| s.receiver),
        Some(p.server),
        "the right slot still calls"
    );
}

/// The wake reasons a call and its reply leave, as the general path's
/// hand-off and receive would: the task handed the message was woken by
/// the hand-off, the task that now waits has none (even one it never
/// took from before).
#[test]
fn a_direct_switch_leaves_the_wake_reasons_of_a_hand_off_and_a_receive() {
    let mut p = pair();
    assert!(call_x(&mut p, |_| true).is_some());
    // The server does not take its reason before it replies.
    let reply = p.k.send_receive_fast(
        p.server,
        p.to_client,
        b"y",
        p.requests,
        None,
        || T0,
        |_| true,
    );
    assert_eq!(reply.map(|s| s.receiver), Some(p.client));
    assert_eq!(p.k.take_wake_reason(p.client), Some(WakeReason::HandedOff));
    assert_eq!(
        p.k.take_wake_reason(p.server),
        None,
        "waiting again, the server's old reason is gone"
    );
    p.k.check_invariants().unwrap();
}

#[test]
fn the_fast_path_declines_and_changes_nothing_when_a_condition_fails() {
    let p = pair();
    let bogus = CapHandle::new(999, 0);
    let cases: Vec<(&str, Prepare)> = vec![
        (
            "a ready task of the receiver's priority",
            Box::new(|p: &mut Pair| {
                spawn(&mut p.k, "other");
            }),
        ),
        (
            "the reply channel already holds a message",
            Box::new(|p: &mut Pair| {
                authorise(&mut p.k, p.client, p.server);
                let own = p.k.grant(p.client, p.replies, p.server, T0).unwrap();
                p.k.send(p.server, own, vec![1], &[], T0).unwrap();
            }),
        ),
        (
            "the reply channel's kernel channel holds an exit notification",
            Box::new(|p: &mut Pair| {
                let exits = p.k.bind_kernel_channel(p.client, p.replies, T0).unwrap();
                let child = spawn_routed(&mut p.k, p.client, exits);
                p.k.terminate(child, pandagen_abi::ExitReason::Normal, T0)
                    .unwrap();
            }),
        ),
        (
            "the reply channel can never deliver (no sender, no registration)",
            Box::new(|p: &mut Pair| {
                let mine = p.k.create_channel(p.client, T0).unwrap();
                let receive_only = pandagen_abi::Rights::RECEIVE;
                p.replies = p.k.clone_cap(p.client, mine, receive_only, T0).unwrap();
                p.k.drop_cap(p.client, mine, T0).unwrap();
            }),
        ),
        (
            "no receiver waits on the send channel",
            Box::new(|p: &mut Pair| {
                p.to_server = p.k.create_channel(p.client, T0).unwrap();
            }),
        ),
        (
            "a forged send handle",
            Box::new(move |p: &mut Pair| p.to_server = bogus),
        ),
        (
            "a forged receive handle",
            Box::new(move |p: &mut Pair| p.replies = bogus),
        ),
        (
            "a send capability without SEND",
            Box::new(|p: &mut Pair| {
                p.to_server =
                    p.k.clone_cap(p.client, p.to_server, pandagen_abi::Rights::TRANSFER, T0)
                        .unwrap();
            }),
        ),
    ];
    drop(p);
    for (name, prepare) in cases {
        let mut p = pair();
        prepare(&mut p);
        let before = invalid_uses(&p.k);
        let mut asked = false;
        let result = call_x(&mut p, |_| {
            asked = true;
            true
        });
        assert_eq!(result, None, "{name}");
        assert!(!asked, "{name}: no offer is made");
        assert_eq!(
            p.k.task_state(p.client),
            Some(SchedState::Running),
            "{name}"
        );
        assert!(blocked_on_receive(&p.k, p.server), "{name}");
        assert_eq!(
            invalid_uses(&p.k),
            before,
            "{name}: the general path audits"
        );
        p.k.check_invariants().unwrap();
    }
}

#[test]
fn a_reply_channel_bound_to_an_empty_kernel_channel_still_takes_the_fast_path() {
    // Only a kernel message waiting makes the call decline (the case in
    // the test above); a bound kernel channel with nothing in it does not.
    let mut p = pair();
    p.k.bind_kernel_channel(p.client, p.replies, T0).unwrap();
    let call = call_x(&mut p, |_| true);
    assert_eq!(call.map(|s| s.receiver), Some(p.server));
    assert!(blocked_on_receive(&p.k, p.client));
    p.k.check_invariants().unwrap();
}

#[test]
fn a_declined_offer_or_a_passed_deadline_leaves_everything_as_it_was() {
    let mut p = pair();
    let declined = call_x(&mut p, |_| false);
    assert_eq!(declined, None);
    let expired = p.k.send_receive_fast(
        p.client,
        p.to_server,
        b"x",
        p.replies,
        Some(T0),
        || at(5),
        |_| true,
    );
    assert_eq!(expired, None, "a receive that would time out at once");
    assert_eq!(p.k.task_state(p.client), Some(SchedState::Running));
    assert!(blocked_on_receive(&p.k, p.server));
    let ch = p.k.channel_of(p.server, p.requests, T0).unwrap();
    assert_eq!(p.k.queue_len(ch), Some(0));
    p.k.check_invariants().unwrap();
}

#[test]
fn a_declined_offer_uses_up_no_sequence_number() {
    let mut p = pair();
    let mut offered = None;
    let declined = call_x(&mut p, |o| {
        offered = Some(o.seq);
        false
    });
    assert_eq!(declined, None);
    let mut offered_again = None;
    let taken = call_x(&mut p, |o| {
        offered_again = Some(o.seq);
        true
    })
    .expect("the same call, accepted, is taken");
    assert_eq!(
        offered_again, offered,
        "the declined number is offered again"
    );
    assert_eq!(Some(taken.seq), offered, "and is the message's");
    p.k.check_invariants().unwrap();
}

#[test]
fn a_receiver_that_outranks_every_ready_task_is_switched_to() {
    let mut p = pair();
    let low = spawn_at(&mut p.k, "low", Priority::IDLE);
    assert_eq!(p.k.task_state(low), Some(SchedState::Ready));
    let call = call_x(&mut p, |_| true);
    assert_eq!(call.map(|s| s.receiver), Some(p.server));
    assert_eq!(
        p.k.task_state(low),
        Some(SchedState::Ready),
        "still waiting its turn"
    );
    p.k.check_invariants().unwrap();
}

#[test]
fn a_send_hands_off_to_a_blocked_receiver_or_queues() {
    let Pair {
        mut k,
        server,
        client,
        requests,
        to_server,
        ..
    } = pair();
    let paid = |k: &KernelCore| k.budget(client).unwrap().used.memory;
    let before = paid(&k);
    let mut offered = None;
    let handed = k.send_or_hand_off(client, to_server, b"a", &[], T0, |o| {
        offered = Some(o.seq);
        o.receiver == server
    });
    assert!(matches!(handed, Ok(Sent::HandedOff { receiver, .. }) if receiver == server));
    let handed_seq = handed.unwrap().seq();
    assert_eq!(
        Some(handed_seq),
        offered,
        "the sender learns the seq it offered"
    );
    assert_eq!(k.task_state(server), Some(SchedState::Ready));
    assert_eq!(k.take_wake_reason(server), Some(WakeReason::HandedOff));
    let ch = k.channel_of(server, requests, T0).unwrap();
    assert_eq!(k.queue_len(ch), Some(0));
    assert_eq!(paid(&k), before, "a message handed off is not charged");

    // Nobody waits now: the message is queued, and no offer is made.
    let queued = k.send_or_hand_off(client, to_server, b"b", &[], T0, |_| panic!("no waiter"));
    assert!(matches!(queued, Ok(Sent::Queued { .. })));
    assert_eq!(k.queue_len(ch), Some(1));
    assert_eq!(
        paid(&k),
        before + message_cost(1, 0),
        "a queued one is, once"
    );
    let queued_seq = queued.unwrap().seq();
    assert!(queued_seq > handed_seq, "sequence numbers grow");
    let delivered = k.receive(server, requests, T0).unwrap().unwrap();
    assert_eq!(
        delivered.seq, queued_seq,
        "the receiver sees the sender's seq"
    );
    k.check_invariants().unwrap();
}

#[test]
fn a_declined_hand_off_queues_the_message_and_wakes_the_receiver() {
    let Pair {
        mut k,
        server,
        client,
        requests,
        to_server,
        ..
    } = pair();
    let sent = k.send_or_hand_off(client, to_server, b"a", &[], T0, |_| false);
    assert!(matches!(sent, Ok(Sent::Queued { .. })));
    assert_eq!(k.take_wake_reason(server), Some(WakeReason::MessageArrived));
    let got = k.receive(server, requests, T0).unwrap().unwrap();
    assert_eq!(got.bytes, b"a");
    assert_eq!(got.sender, client);
    k.check_invariants().unwrap();
}

#[test]
fn a_message_carrying_capabilities_is_never_handed_off() {
    let Pair {
        mut k,
        server,
        client,
        requests,
        to_server,
        ..
    } = pair();
    let extra = k.create_channel(client, T0).unwrap();
    let sent = k.send_or_hand_off(client, to_server, b"a", &[extra], T0, |_| panic!("offered"));
    assert!(matches!(sent, Ok(Sent::Queued { .. })));
    let got = k.receive(server, requests, T0).unwrap().unwrap();
    assert_eq!(got.caps.len(), 1);
    k.check_invariants().unwrap();
}

#[test]
fn a_kept_body_is_checked_by_its_length_and_delivered_without_bytes() {
    let Pair {
        mut k,
        server,
        client,
        requests,
        to_server,
        ..
    } = pair();
    let max = k.config().max_message_bytes;
    let too_long = k.send_or_hand_off(client, to_server, Body::Kept(max + 1), &[], T0, |_| {
        panic!("a refused message is never offered")
    });
    assert!(matches!(
        too_long,
        Err(KernelError::SendFailed(SendError::MessageTooLarge { .. }))
    ));
    // The server is still blocked: the offer carries no bytes, and the
    // embedder that kept them recognises the message by its number.
    let handed = k.send_or_hand_off(client, to_server, Body::Kept(max), &[], T0, |o| {
        o.bytes.is_empty()
    });
    let Ok(Sent::HandedOff { seq, channel, .. }) = handed else {
        panic!("{handed:?}");
    };
    // Queued, it is delivered with empty bytes under the same numbering.
    let queued = k.send(client, to_server, Body::Kept(max), &[], T0).unwrap();
    let got = k.receive(server, requests, T0).unwrap().unwrap();
    assert_eq!(
        (got.seq, got.bytes.len(), got.channel),
        (queued, 0, channel)
    );
    assert!(queued > seq);
    k.check_invariants().unwrap();
}

/// Whether the fast path switches for this pair after `prepare`, checking
/// that a decline left the caller running and the server waiting.
fn switches(
    mut p: Pair,
    bytes: &[u8],
    deadline: Option<pandagen_abi::Instant>,
    now: pandagen_abi::Instant,
) -> bool {
    let result = p.k.send_receive_fast(
        p.client,
        p.to_server,
        bytes,
        p.replies,
        deadline,
        || now,
        |_| true,
    );
    if result.is_none() {
        assert!(blocked_on_receive(&p.k, p.server));
        let ch = p.k.channel_of(p.server, p.requests, now).unwrap();
        assert_eq!(p.k.queue_len(ch), Some(0), "a decline queues nothing");
    }
    p.k.check_invariants().unwrap();
    result.is_some()
}

#[test]
fn the_fast_path_takes_the_largest_message_and_declines_one_byte_more() {
    let max = kernel().config().max_message_bytes;
    assert!(switches(pair(), &vec![7; max], None, T0));
    assert!(!switches(pair(), &vec![7; max + 1], None, T0));
    // The general path reports the oversized message.
    let mut p = pair();
    assert!(matches!(
        p.k.send(p.client, p.to_server, vec![7; max + 1], &[], T0),
        Err(pandagen_abi::KernelError::SendFailed(
            pandagen_abi::error::SendError::MessageTooLarge { .. }
        ))
    ));
}

#[test]
fn the_fast_path_declines_for_a_caller_that_is_not_running() {
    let mut p = pair();
    // The client gives up the CPU: it is ready, not running, and below
    // the server's priority, so nothing else stands in the way.
    p.k.set_priority(p.client, Priority::IDLE).unwrap();
    assert!(p.k.yield_task(p.client));
    assert_eq!(p.k.task_state(p.client), Some(SchedState::Ready));
    let result = call_x(&mut p, |_| true);
    assert_eq!(result, None);
    assert_eq!(p.k.task_state(p.client), Some(SchedState::Ready));
    assert!(blocked_on_receive(&p.k, p.server));
    p.k.check_invariants().unwrap();
}

#[test]
fn the_fast_path_declines_a_deadline_that_is_now_and_takes_one_just_after() {
    assert!(!switches(pair(), b"x", Some(at(5)), at(5)));
    assert!(switches(pair(), b"x", Some(at(6)), at(5)));
}

#[test]
fn the_fast_path_declines_while_another_deadline_is_due() {
    // A sleeper whose deadline is exactly now must be woken first, by the
    // general path; one due later does not stand in the way.
    for (due, expected) in [(5, false), (6, true)] {
        let mut p = pair();
        let sleeper = spawn_at(&mut p.k, "sleeper", Priority::IDLE);
        assert!(p.k.sleep_until(sleeper, at(due), T0).unwrap());
        assert_eq!(switches(p, b"x", None, at(5)), expected, "due at {due}");
    }
}

#[test]
fn the_fast_path_reads_the_clock_only_when_a_deadline_is_involved() {
    use core::cell::Cell;
    let reads = Cell::new(0);
    let clock = || {
        reads.set(reads.get() + 1);
        at(5)
    };
    let call = |p: &mut Pair, deadline| {
        p.k.send_receive_fast(
            p.client,
            p.to_server,
            b"x",
            p.replies,
            deadline,
            clock,
            |_| true,
        )
    };
    assert!(call(&mut pair(), None).is_some());
    assert_eq!(
        reads.get(),
        0,
        "no deadline anywhere: the clock is not read"
    );

    // The call's own deadline, then another task's: each needs the time.
    assert!(call(&mut pair(), Some(at(6))).is_some());
    assert_eq!(reads.get(), 1);
    let mut p = pair();
    let sleeper = spawn_at(&mut p.k, "sleeper", Priority::IDLE);
    assert!(p.k.sleep_until(sleeper, at(5), T0).unwrap());
    assert_eq!(
        call(&mut p, None),
        None,
        "the sleeper is due and must be woken first"
    );
    assert_eq!(reads.get(), 2);
}

#[test]
fn a_call_that_receives_where_it_sent_takes_the_receivers_place_in_line() {
    let Pair {
        mut k,
        server,
        client,
        requests,
        to_server,
        ..
    } = pair();
    let channel = k.channel_of(server, requests, T0).unwrap();
    let call = k.send_receive_fast(client, to_server, b"x", to_server, None, || T0, |_| true);
    assert_eq!(
        call.map(|s| (s.receiver, s.channel)),
        Some((server, channel))
    );
    assert_eq!(k.task_state(server), Some(SchedState::Running));
    assert_eq!(
        k.task_state(client),
        Some(SchedState::Blocked(BlockedOn::Receive {
            channel,
            deadline: None
        }))
    );
    k.check_invariants().unwrap();
    // The server answers on the same channel: the client, now its only
    // waiter, is handed the reply and the server waits in its place.
    let reply = k.send_receive_fast(
        server,
        requests,
        b"y",
        requests,
        None,
        || T0,
        |o| o.receiver == client,
    );
    assert_eq!(reply.map(|s| s.receiver), Some(client));
    assert_eq!(k.task_state(client), Some(SchedState::Running));
    assert!(blocked_on_receive(&k, server));
    assert_eq!(k.queue_len(channel), Some(0));
    k.check_invariants().unwrap();
}

#[test]
fn a_dead_callers_id_declines_for_the_task_that_reuses_its_slot() {
    let mut k = kernel();
    let server = spawn(&mut k, "server");
    let old = spawn(&mut k, "old");
    k.terminate(old, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    let client = spawn(&mut k, "client");
    assert_eq!(
        pandagen_core::slot_index(client),
        pandagen_core::slot_index(old)
    );
    let requests = k.create_channel(server, T0).unwrap();
    authorise(&mut k, server, client);
    let to_server = k.grant(server, requests, client, T0).unwrap();
    let replies = k.create_channel(client, T0).unwrap();
    assert_eq!(k.pick_next(), Some(server));
    k.receive_or_block(server, requests, None, T0).unwrap();
    assert_eq!(k.pick_next(), Some(client));
    // The slot's task is running and holds both capabilities: only the
    // id's generation tells the dead caller from it.
    let mut asked = false;
    let result = k.send_receive_fast(
        old,
        to_server,
        b"x",
        replies,
        None,
        || T0,
        |_| {
            asked = true;
            true
        },
    );
    assert_eq!(result, None);
    assert!(!asked);
    assert_eq!(k.task_state(client), Some(SchedState::Running));
    assert!(blocked_on_receive(&k, server));
    // The same call in the live id's name is taken.
    assert!(k
        .send_receive_fast(client, to_server, b"x", replies, None, || T0, |_| true)
        .is_some());
    k.check_invariants().unwrap();
}

#[test]
fn a_declined_hand_off_leaves_the_caller_running_and_its_next_wait_its_own() {
    let mut p = pair();
    let later = pandagen_abi::Instant::from_nanos(1_000);
    // Checked (the caller's wait, with a deadline, staged), then declined
    // by the embedder.
    let declined = p.k.send_receive_fast(
        p.client,
        p.to_server,
        b"x",
        p.replies,
        Some(later),
        || T0,
        |_| false,
    );
    assert_eq!(declined, None);
    assert_eq!(p.k.task_state(p.client), Some(SchedState::Running));
    assert_eq!(
        p.k.next_deadline(),
        None,
        "no deadline of the declined call"
    );
    p.k.check_invariants().unwrap();
    // The caller's own receive, without a deadline, is what it waits for.
    p.k.receive_or_block(p.client, p.replies, None, T0).unwrap();
    let replies = p.k.channel_of(p.client, p.replies, T0).unwrap();
    assert_eq!(
        p.k.task_state(p.client),
        Some(SchedState::Blocked(BlockedOn::Receive {
            channel: replies,
            deadline: None
        }))
    );
    assert_eq!(p.k.next_deadline(), None);
    p.k.check_invariants().unwrap();
}
