//! Kernel-memory budgets and the collection of unreachable channels: no
//! ring-3 behaviour exhausts the kernel for others, and a task's death
//! returns everything it made that nobody can reach.

mod common;

use common::T0;
use pandagen_abi::error::Resource;
use pandagen_abi::{Budget, CapHandle, ExitReason, KernelError, Rights, TaskId};
use pandagen_core::budget::{message_cost, CAP_COST, CHANNEL_COST, TASK_COST};
use pandagen_core::{Body, KernelCore, Mintable, Sent, SpawnArgs, TaskSpec};
use proptest::prelude::*;

const OUT_OF_BUDGET: KernelError = KernelError::ResourceExhausted(Resource::MemoryBudget);

fn root(k: &mut KernelCore) -> TaskId {
    k.create_root_task("root", T0).unwrap().task
}

fn child(k: &mut KernelCore, parent: TaskId, name: &str, budget: Option<Budget>) -> TaskId {
    let mut spec = TaskSpec::new(name);
    spec.budget = budget;
    k.spawn(
        parent,
        SpawnArgs {
            spec,
            with_image: false,
            capabilities: &[],
            exit_channel: None,
            frames: 0,
        },
        T0,
    )
    .unwrap()
    .task
}

/// A spawn of an image-less child named "leaf" with `budget`, whose
/// address space took `frames`.
fn leaf_args(budget: Budget, frames: u64) -> SpawnArgs<'static> {
    SpawnArgs {
        spec: TaskSpec::new("leaf").budget(budget),
        with_image: false,
        capabilities: &[],
        exit_channel: None,
        frames,
    }
}

/// Give `from` authority to put capabilities into `to` (a `Task`
/// capability naming it, with `SEND`), which grant and delegate need.
fn authorise(k: &mut KernelCore, from: TaskId, to: TaskId) {
    k.mint(from, Mintable::Task(to), Rights::SEND, T0).unwrap();
}

fn used(k: &KernelCore, task: TaskId) -> Budget {
    k.budget(task).unwrap().used
}

/// The attack of issue 13: one task builds channel pairs whose queues hold
/// each other's receive capability, queuing as many bytes as it can.
/// Returns how many pairs it built before the kernel refused.
fn build_cycles(k: &mut KernelCore, attacker: TaskId, bytes: usize) -> (usize, KernelError) {
    let mut pairs = 0;
    loop {
        match build_filled_cycle(k, attacker, bytes, 4) {
            Ok(()) => pairs += 1,
            Err(e) => return (pairs, e),
        }
    }
}

/// Two channels, `fill` messages of `bytes` queued on each, then each
/// channel's only receive right queued on the other; the maker keeps no
/// handle to either.
fn build_filled_cycle(
    k: &mut KernelCore,
    maker: TaskId,
    bytes: usize,
    fill: usize,
) -> Result<(), KernelError> {
    let a = k.create_channel(maker, T0)?;
    let b = k.create_channel(maker, T0)?;
    let a_send = k.clone_cap(maker, a, Rights::SEND, T0)?;
    let b_send = k.clone_cap(maker, b, Rights::SEND, T0)?;
    for _ in 0..fill {
        k.send(maker, a_send, vec![0xAA; bytes], &[], T0)?;
        k.send(maker, b_send, vec![0xBB; bytes], &[], T0)?;
    }
    k.send(maker, a_send, vec![1], &[b], T0)?;
    k.send(maker, b_send, vec![2], &[a], T0)?;
    k.drop_cap(maker, a_send, T0)?;
    k.drop_cap(maker, b_send, T0)?;
    Ok(())
}

fn build_one_cycle(k: &mut KernelCore, maker: TaskId) -> Result<(), KernelError> {
    build_filled_cycle(k, maker, 100, 1)
}

#[test]
fn the_heap_cycle_attack_hits_the_attackers_budget_and_death_returns_everything() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let bystander = child(&mut k, root, "bystander", None);
    let inbox = k.create_channel(bystander, T0).unwrap();
    let baseline_channels = k.channel_count();
    let baseline_root = used(&k, root);

    let attacker = child(&mut k, root, "attacker", None);
    let (pairs, error) = build_cycles(&mut k, attacker, 2000);
    assert_eq!(error, OUT_OF_BUDGET, "the attacker stops at its own budget");
    assert!(pairs > 5, "the budget allows real work ({pairs} pairs)");
    let budget = k.budget(attacker).unwrap();
    assert!(budget.used.fits_in(&budget.limit));
    k.check_invariants().unwrap();

    // Everyone else keeps working.
    let more = k.create_channel(bystander, T0).unwrap();
    k.send(bystander, inbox, vec![7; 4000], &[more], T0)
        .unwrap();
    let got = k.receive(bystander, inbox, T0).unwrap().unwrap();
    assert_eq!(got.bytes.len(), 4000);
    k.drop_cap(bystander, got.caps[0], T0).unwrap();

    k.terminate(attacker, ExitReason::Timeout, T0).unwrap();
    assert_eq!(
        k.channel_count(),
        baseline_channels,
        "no cycle outlives its maker"
    );
    assert_eq!(
        used(&k, root),
        baseline_root,
        "the parent got the whole budget back"
    );
    assert_eq!(k.account_count(), 2, "root and bystander only");
    k.check_invariants().unwrap();
}

#[test]
fn a_cycle_of_receive_rights_is_collected_when_its_maker_dies() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let baseline = used(&k, root);
    let maker = child(&mut k, root, "maker", None);
    let a = k.create_channel(maker, T0).unwrap();
    let b = k.create_channel(maker, T0).unwrap();
    let a_send = k.clone_cap(maker, a, Rights::SEND, T0).unwrap();
    let b_send = k.clone_cap(maker, b, Rights::SEND, T0).unwrap();
    // Each channel's only receive right goes into the other's queue.
    k.send(maker, a_send, vec![1], &[b], T0).unwrap();
    k.send(maker, b_send, vec![2], &[a], T0).unwrap();
    // Reference counting alone cannot free them: dropping every handle
    // the maker holds leaves both alive.
    k.drop_cap(maker, a_send, T0).unwrap();
    k.drop_cap(maker, b_send, T0).unwrap();
    assert_eq!(k.channel_count(), 2);
    k.terminate(maker, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.channel_count(), 0);
    assert_eq!(used(&k, root), baseline);
    assert_eq!(k.account_count(), 1);
    k.check_invariants().unwrap();
}

#[test]
fn collection_keeps_everything_a_live_task_can_still_reach() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let baseline = used(&k, root);
    let keeper = child(&mut k, root, "keeper", None);
    let maker = child(&mut k, root, "maker", None);
    let outer = k.create_channel(keeper, T0).unwrap();
    let outer_send = k
        .clone_cap(keeper, outer, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    authorise(&mut k, keeper, maker);
    k.delegate(keeper, outer_send, maker, T0).unwrap();
    let outer_send = k.list_caps(maker).unwrap()[0].0;
    // The maker parks a channel (with a message) in the keeper's queue.
    let inner = k.create_channel(maker, T0).unwrap();
    let inner_send = k.clone_cap(maker, inner, Rights::SEND, T0).unwrap();
    k.send(maker, inner_send, b"kept".to_vec(), &[], T0)
        .unwrap();
    k.send(maker, outer_send, vec![], &[inner], T0).unwrap();
    k.terminate(maker, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.channel_count(), 2, "the keeper can still receive both");
    // What the dead maker made stays charged to it, so its parent does not
    // get those bytes back until the keeper is done with them.
    let keeper_budget = k.budget(keeper).unwrap().limit;
    let pending = CHANNEL_COST + CAP_COST + message_cost(4, 0) + message_cost(0, 1);
    assert_eq!(
        used(&k, root).memory,
        baseline.memory + keeper_budget.memory + pending
    );
    let delivered = k.receive(keeper, outer, T0).unwrap().unwrap();
    let inner = delivered.caps[0];
    let msg = k.receive(keeper, inner, T0).unwrap().unwrap();
    assert_eq!(msg.bytes, b"kept");
    k.drop_cap(keeper, inner, T0).unwrap();
    k.check_invariants().unwrap();
    k.terminate(keeper, ExitReason::Normal, T0).unwrap();
    assert_eq!(used(&k, root), baseline);
    assert_eq!(k.account_count(), 1);
    k.check_invariants().unwrap();
}

#[test]
fn a_queued_message_is_paid_by_its_sender_until_received_even_after_the_sender_dies() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let server = child(&mut k, root, "server", None);
    let sender = child(&mut k, root, "sender", None);
    let inbox = k.create_channel(server, T0).unwrap();
    let send = k
        .clone_cap(server, inbox, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    authorise(&mut k, server, sender);
    let send = k.delegate(server, send, sender, T0).unwrap();
    let server_before = used(&k, server);
    let sender_before = used(&k, sender);
    k.send(sender, send, vec![9; 1000], &[], T0).unwrap();
    assert_eq!(used(&k, server), server_before, "the receiver pays nothing");
    assert_eq!(
        used(&k, sender).memory,
        sender_before.memory + message_cost(1000, 0)
    );
    let root_before = used(&k, root);
    k.terminate(sender, ExitReason::Timeout, T0).unwrap();
    // The dead sender's unused budget is back; the queued message is not.
    let default = k.config().default_child_budget;
    assert_eq!(
        used(&k, root).memory,
        root_before.memory - default.memory + message_cost(1000, 0)
    );
    assert_eq!(
        k.receive(server, inbox, T0).unwrap().unwrap().bytes.len(),
        1000
    );
    assert_eq!(used(&k, root).memory, root_before.memory - default.memory);
    k.check_invariants().unwrap();
}

#[test]
fn a_message_whose_contents_the_simulator_keeps_costs_what_the_same_bytes_cost() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let server = child(&mut k, root, "server", None);
    let inbox = k.create_channel(server, T0).unwrap();
    let send = k.clone_cap(server, inbox, Rights::SEND, T0).unwrap();
    let before = used(&k, server).memory;
    k.send(server, send, vec![9; 1000], &[], T0).unwrap();
    let for_bytes = used(&k, server).memory - before;
    k.send(server, send, Body::Kept(1000), &[], T0).unwrap();
    assert_eq!(used(&k, server).memory - before, 2 * for_bytes);
    assert_eq!(for_bytes, message_cost(1000, 0));
    k.check_invariants().unwrap();
    // Receiving either returns exactly its charge.
    k.receive(server, inbox, T0).unwrap().unwrap();
    assert_eq!(used(&k, server).memory - before, for_bytes);
    k.receive(server, inbox, T0).unwrap().unwrap();
    assert_eq!(used(&k, server).memory, before);
    k.check_invariants().unwrap();
}

#[test]
fn a_receiver_that_never_receives_costs_its_senders_only_their_own_budget() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let sink = child(&mut k, root, "sink", None);
    let inbox = k.create_channel_with_capacity(sink, 4096, T0).unwrap();
    let mut senders = Vec::new();
    for i in 0..3 {
        let s = child(&mut k, root, &format!("sender{i}"), None);
        let cap = k
            .clone_cap(sink, inbox, Rights::SEND | Rights::TRANSFER, T0)
            .unwrap();
        authorise(&mut k, sink, s);
        let cap = k.delegate(sink, cap, s, T0).unwrap();
        senders.push((s, cap));
    }
    for &(s, cap) in &senders {
        let mut sent = 0;
        let err = loop {
            match k.send(s, cap, vec![0; 4096], &[], T0) {
                Ok(_) => sent += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, OUT_OF_BUDGET);
        assert!(sent > 10);
    }
    // The sink itself can still make channels: its budget is untouched.
    k.create_channel(sink, T0).unwrap();
    k.terminate(sink, ExitReason::Normal, T0).unwrap();
    for &(s, _) in &senders {
        let b = k.budget(s).unwrap();
        // Its send capability was made (and is paid for) by the sink.
        assert_eq!(b.used.memory, TASK_COST, "the closed queue returned it");
    }
    k.check_invariants().unwrap();
}

#[test]
fn a_message_its_sender_cannot_pay_for_is_handed_off_but_never_queued() {
    // Whoever makes a kernel object pays for it: a message handed straight
    // to a waiting receiver makes none, so the general path asks no budget
    // for it, as the fast path never did; a queued one must be paid for.
    let mut k = KernelCore::default();
    let sink = k.create_task(None, TaskSpec::new("sink"), T0).unwrap().0;
    let spec = TaskSpec::new("broke").budget(Budget::new(TASK_COST, 0));
    let broke = k.create_task(None, spec, T0).unwrap().0;
    let inbox = k.create_channel(sink, T0).unwrap();
    authorise(&mut k, sink, broke);
    let to_sink = k.grant(sink, inbox, broke, T0).unwrap();
    assert_eq!(
        used(&k, broke).memory,
        TASK_COST,
        "nothing left to pay with"
    );
    let send = |k: &mut KernelCore, accept: bool| {
        k.send_or_hand_off(broke, to_sink, &b"x"[..], &[], T0, |_| accept)
    };
    let inbox_channel = k.channel_of(sink, inbox, T0).unwrap();

    // Nobody waits: it would be queued, and is refused.
    assert_eq!(send(&mut k, true), Err(OUT_OF_BUDGET));
    assert_eq!(k.queue_len(inbox_channel), Some(0));

    // The sink waits: handed off, nothing charged.
    assert!(k.run_task(sink));
    k.receive_or_block(sink, inbox, None, T0).unwrap();
    assert!(k.run_task(broke));
    let first = match send(&mut k, true) {
        Ok(Sent::HandedOff { seq, .. }) => seq,
        other => panic!("expected a hand-off, got {other:?}"),
    };
    assert_eq!(used(&k, broke).memory, TASK_COST);

    // The sink waits again, but the embedder declines the offer: the
    // message would be queued, which the sender cannot pay for. Refused,
    // the sink still waits, and the refused message used no number.
    assert!(k.run_task(sink));
    k.receive_or_block(sink, inbox, None, T0).unwrap();
    assert!(k.run_task(broke));
    assert_eq!(send(&mut k, false), Err(OUT_OF_BUDGET));
    assert_eq!(k.queue_len(inbox_channel), Some(0));
    match send(&mut k, true) {
        Ok(Sent::HandedOff { seq, .. }) => assert_eq!(seq, first + 1),
        other => panic!("expected a hand-off, got {other:?}"),
    }
    assert_eq!(used(&k, broke).memory, TASK_COST);
    k.check_invariants().unwrap();
}

#[test]
fn a_child_budget_is_carved_from_the_parents_and_cannot_exceed_it() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let baseline = used(&k, root);
    let mid = child(&mut k, root, "mid", Some(Budget::new(100_000, 10)));
    let spawn = |k: &mut KernelCore, budget: Budget, frames: u64| {
        k.spawn(mid, leaf_args(budget, frames), T0)
    };
    assert_eq!(
        spawn(&mut k, Budget::new(200_000, 0), 0).map(|s| s.task),
        Err(OUT_OF_BUDGET)
    );
    assert_eq!(
        spawn(&mut k, Budget::new(10_000, 11), 0).map(|s| s.task),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget))
    );
    assert_eq!(
        spawn(&mut k, Budget::new(10_000, 4), 5).map(|s| s.task),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget)),
        "the child's own address space must fit its budget"
    );
    let leaf = spawn(&mut k, Budget::new(50_000, 4), 3).unwrap().task;
    assert_eq!(used(&k, mid), Budget::new(TASK_COST + 50_000, 4));
    assert_eq!(used(&k, leaf), Budget::new(TASK_COST, 3));
    k.terminate(leaf, ExitReason::Normal, T0).unwrap();
    assert_eq!(used(&k, mid), Budget::memory(TASK_COST));
    // A parent's death does not free what its living child was granted.
    let leaf = spawn(&mut k, Budget::new(50_000, 4), 0).unwrap().task;
    let root_before = used(&k, root);
    k.terminate(mid, ExitReason::Normal, T0).unwrap();
    assert_eq!(used(&k, root).memory, root_before.memory - 100_000 + 50_000);
    k.create_channel(leaf, T0).unwrap();
    k.terminate(leaf, ExitReason::Normal, T0).unwrap();
    assert_eq!(used(&k, root), baseline);
    k.check_invariants().unwrap();
}

#[test]
fn a_spawn_beyond_budget_is_refused_before_the_image_is_loaded() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let mid = child(&mut k, root, "mid", Some(Budget::new(100_000, 10)));
    let tasks_before = k.task_count();
    let used_before = used(&k, mid);
    let authorize = |k: &mut KernelCore, budget: Budget, frames: u64| {
        k.authorize_spawn(mid, &leaf_args(budget, frames), T0)
    };
    // What spawn itself would refuse, authorize_spawn refuses first, so the
    // kernel never loads an image for a child that cannot be paid for.
    assert_eq!(
        authorize(&mut k, Budget::new(200_000, 0), 0),
        Err(OUT_OF_BUDGET)
    );
    assert_eq!(
        authorize(&mut k, Budget::new(10_000, 11), 0),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget))
    );
    assert_eq!(
        authorize(&mut k, Budget::new(10_000, 4), 5),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget)),
        "the image's least frames must fit the child's budget"
    );
    assert_eq!(
        authorize(&mut k, Budget::new(TASK_COST - 1, 4), 0),
        Err(OUT_OF_BUDGET),
        "the child's budget must hold its own task record"
    );
    assert_eq!(authorize(&mut k, Budget::new(50_000, 4), 4), Ok(None));
    assert_eq!(k.task_count(), tasks_before, "authorizing creates nothing");
    assert_eq!(used(&k, mid), used_before, "and charges nothing");
}

#[test]
fn grants_and_clones_are_paid_by_the_task_that_makes_them() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    // Room for the task, a channel, the Task capability naming `other`,
    // and one copy.
    let tiny = TASK_COST + CHANNEL_COST + 3 * CAP_COST;
    let granter = child(&mut k, root, "granter", Some(Budget::memory(tiny)));
    let other = child(&mut k, root, "other", None);
    authorise(&mut k, granter, other);
    let ch = k.create_channel(granter, T0).unwrap();
    let other_before = used(&k, other);
    k.grant(granter, ch, other, T0).unwrap();
    assert_eq!(used(&k, other), other_before, "the target pays nothing");
    assert_eq!(k.grant(granter, ch, other, T0), Err(OUT_OF_BUDGET));
    assert_eq!(
        k.clone_cap(granter, ch, Rights::SEND, T0),
        Err(OUT_OF_BUDGET)
    );
    assert_eq!(k.create_channel(granter, T0), Err(OUT_OF_BUDGET));
    k.check_invariants().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    CreateChannel(usize),
    Send {
        task: usize,
        cap: usize,
        len: usize,
        carry: Option<usize>,
    },
    Receive {
        task: usize,
        cap: usize,
    },
    Grant {
        task: usize,
        cap: usize,
        to: usize,
    },
    Clone {
        task: usize,
        cap: usize,
    },
    Drop {
        task: usize,
        cap: usize,
    },
    Spawn {
        task: usize,
        memory: u32,
    },
    /// Two new channels, each queued the other's only receive right.
    Cycle(usize),
    Kill(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..16;
    prop_oneof![
        i.clone().prop_map(Op::CreateChannel),
        (
            i.clone(),
            i.clone(),
            0usize..3000,
            prop::option::of(i.clone())
        )
            .prop_map(|(task, cap, len, carry)| Op::Send {
                task,
                cap,
                len,
                carry
            }),
        (i.clone(), i.clone()).prop_map(|(task, cap)| Op::Receive { task, cap }),
        (i.clone(), i.clone(), i.clone()).prop_map(|(task, cap, to)| Op::Grant { task, cap, to }),
        (i.clone(), i.clone()).prop_map(|(task, cap)| Op::Clone { task, cap }),
        (i.clone(), i.clone()).prop_map(|(task, cap)| Op::Drop { task, cap }),
        (i.clone(), 1_000u32..200_000).prop_map(|(task, memory)| Op::Spawn { task, memory }),
        i.clone().prop_map(Op::Cycle),
        i.prop_map(Op::Kill),
    ]
}

fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()])
}

fn caps_of(k: &KernelCore, task: TaskId) -> Vec<CapHandle> {
    k.list_caps(task)
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of operations by several tasks, then killing them
    /// all, returns every budget to the root and leaves no channel.
    #[test]
    fn killing_every_task_returns_every_budget_and_leaves_no_channel(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        let mut k = KernelCore::default();
        let root = root(&mut k);
        let baseline = used(&k, root);
        let mut live: Vec<TaskId> = (0..4)
            .map(|i| child(&mut k, root, &format!("t{i}"), Some(Budget::memory(60_000))))
            .collect();
        for op in ops {
            let Some(task) = pick(&live, match op {
                Op::CreateChannel(t) | Op::Cycle(t) | Op::Kill(t) => t,
                Op::Send { task, .. } | Op::Receive { task, .. } | Op::Grant { task, .. }
                | Op::Clone { task, .. } | Op::Drop { task, .. } | Op::Spawn { task, .. } => task,
            }) else { break };
            let caps = caps_of(&k, task);
            match op {
                Op::CreateChannel(_) => { let _ = k.create_channel(task, T0); }
                Op::Send { cap, len, carry, .. } => {
                    if let Some(h) = pick(&caps, cap) {
                        let carried: Vec<_> = carry.and_then(|c| pick(&caps, c)).into_iter().collect();
                        let _ = k.send(task, h, vec![0; len], &carried, T0);
                    }
                }
                Op::Receive { cap, .. } => {
                    if let Some(h) = pick(&caps, cap) { let _ = k.receive(task, h, T0); }
                }
                Op::Grant { cap, to, .. } => {
                    if let (Some(h), Some(to)) = (pick(&caps, cap), pick(&live, to)) {
                        let _ = k.grant(task, h, to, T0);
                    }
                }
                Op::Clone { cap, .. } => {
                    if let Some(h) = pick(&caps, cap) { let _ = k.clone_cap(task, h, Rights::SEND, T0); }
                }
                Op::Drop { cap, .. } => {
                    if let Some(h) = pick(&caps, cap) { let _ = k.drop_cap(task, h, T0); }
                }
                Op::Spawn { memory, .. } => {
                    let spawned = k.spawn(task, SpawnArgs {
                        spec: TaskSpec::new("kid").budget(Budget::memory(u64::from(memory))),
                        with_image: false,
                        capabilities: &[],
                        exit_channel: None,
                        frames: 0,
                    }, T0);
                    if let Ok(s) = spawned { live.push(s.task); }
                }
                Op::Cycle(_) => {
                    let _ = build_one_cycle(&mut k, task);
                }
                Op::Kill(_) => {
                    k.terminate(task, ExitReason::Timeout, T0).unwrap();
                    live.retain(|&t| t != task);
                }
            }
            prop_assert_eq!(k.check_invariants(), Ok(()));
        }
        for task in live {
            k.terminate(task, ExitReason::Timeout, T0).unwrap();
        }
        prop_assert_eq!(k.channel_count(), 0);
        prop_assert_eq!(used(&k, root), baseline);
        prop_assert_eq!(k.account_count(), 1);
        prop_assert_eq!(k.check_invariants(), Ok(()));
    }
}

#[test]
fn the_root_budget_is_set_before_the_first_task_and_never_after() {
    let mut k = common::kernel();
    let first = Budget::new(3 << 20, 1000);
    assert!(k.set_root_budget(first));
    let root = common::spawn(&mut k, "root");
    assert_eq!(k.budget(root).unwrap().limit, first);
    // Once a task exists, the budgets promised can no longer change.
    assert!(!k.set_root_budget(Budget::new(1 << 30, 1 << 20)));
    let second = common::spawn(&mut k, "second root");
    assert_eq!(k.budget(second).unwrap().limit, first);
}

#[test]
fn a_collection_reports_what_it_freed() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let maker = child(&mut k, root, "maker", None);
    let kept = k.create_channel(maker, T0).unwrap();
    // Two cycles of two channels, each with 3 messages queued on each
    // channel (two fillers and the other's receive right).
    build_filled_cycle(&mut k, maker, 10, 2).unwrap();
    build_filled_cycle(&mut k, maker, 10, 2).unwrap();
    let before = k.channel_count();
    assert_eq!(
        k.collect_unreachable(T0),
        pandagen_core::Collected {
            channels: 4,
            messages: 12
        }
    );
    assert_eq!(k.channel_count(), before - 4);
    assert_eq!(
        k.collect_unreachable(T0),
        pandagen_core::Collected::default(),
        "nothing left to free, and the reachable channel stays"
    );
    k.send(maker, kept, vec![1], &[], T0).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn a_default_child_gets_at_most_half_of_what_its_spawner_has_left() {
    let mut k = KernelCore::default();
    let root = root(&mut k);
    // A spawner with less than twice the default child budget.
    let small = Budget::new(100 << 10, 1000);
    let spawner = child(&mut k, root, "spawner", Some(small));
    let left = k.budget(spawner).unwrap().available();
    let kid = child(&mut k, spawner, "kid", None);
    assert_eq!(
        k.budget(kid).unwrap().limit,
        Budget::new(left.memory / 2, left.frames / 2)
    );
}

#[test]
fn a_task_costs_the_core_s_records_and_the_kernel_s_own_share() {
    let mut k = KernelCore::new(pandagen_core::CoreConfig {
        task_overhead: 3000,
        ..pandagen_core::CoreConfig::default()
    });
    let root = root(&mut k);
    let kid = child(&mut k, root, "kid", Some(Budget::memory(64 << 10)));
    assert_eq!(used(&k, kid), Budget::memory(TASK_COST + 3000));
}

#[test]
fn a_send_that_may_hand_off_stops_at_the_senders_budget_as_send_does() {
    // The kernel's call path sends through `send_or_hand_off`; with nobody
    // waiting, it queues, and the queued bytes are the sender's to pay for.
    let mut k = KernelCore::default();
    let root = root(&mut k);
    let sink = child(&mut k, root, "sink", None);
    let inbox = k.create_channel_with_capacity(sink, 4096, T0).unwrap();
    let sender = child(&mut k, root, "sender", None);
    let cap = k
        .clone_cap(sink, inbox, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    authorise(&mut k, sink, sender);
    let cap = k.delegate(sink, cap, sender, T0).unwrap();
    let nobody_waits = |_: &pandagen_core::Offer<'_>| -> bool { panic!("nobody waits") };
    let mut sent = 0;
    let err = loop {
        match k.send_or_hand_off(sender, cap, &[0; 4096], &[], T0, nobody_waits) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, OUT_OF_BUDGET);
    assert!(sent > 10, "the budget allows real work ({sent} messages)");
    let budget = k.budget(sender).unwrap();
    assert!(budget.used.fits_in(&budget.limit));
    assert_eq!(
        budget.used.memory,
        TASK_COST + sent * message_cost(4096, 0) as u64,
        "every queued message is charged, the refused one is not"
    );
    // The refusal changed nothing: `send` refuses the same message alike.
    assert_eq!(
        k.send(sender, cap, vec![0; 4096], &[], T0).map(|_| ()),
        Err(OUT_OF_BUDGET)
    );
    assert_eq!(k.budget(sender).unwrap().used, budget.used);
    k.check_invariants().unwrap();
}
