//! The simulator takes the real kernel's IPC shortcuts: a send to a task
//! blocked receiving is handed to it (the core's `send_or_hand_off`), and a
//! call to a waiting server switches straight to it (the core's
//! `send_receive_fast`). Scenarios show it in the trace and in
//! `ipc_counts`; faults, capability transfers and outranking ready tasks
//! take the general path, as in the kernel.

use std::cell::Cell;
use std::rc::Rc;

use pandagen_abi::{
    Cap, ChannelId, Duration, ExitReason, Instant, KernelApi, KernelError, MessageEnvelope,
    MessagePayload, Rights, SchemaVersion, ServiceId, TaskDescriptor,
};
use pandagen_sim::{
    FaultPlan, LossReason, Scenario, SimulatedKernel, StepOutcome, StopReason, TraceEvent,
};

const ECHO: ServiceId = ServiceId::from_raw(7);
const ROUNDS: u32 = 5;

fn request(n: u32) -> MessageEnvelope {
    MessageEnvelope::new(
        ECHO,
        "echo",
        SchemaVersion::new(1, 0),
        MessagePayload::new(&n).unwrap(),
    )
}

fn count(kernel: &SimulatedKernel, event: fn(&TraceEvent) -> bool) -> usize {
    kernel.trace().count(event)
}

/// An echo server and a client over two channels set up by the root task:
/// the server receives on `requests` and answers on `replies`. The client
/// sends each request with `send_then_receive` when `call` is set, else
/// with a send, and polls `replies` for the answer. Returns the scenario
/// and the number of answers the client saw.
fn echo_pair(kernel: SimulatedKernel, call: bool) -> (Scenario, Rc<Cell<u32>>) {
    let mut scenario = Scenario::new(kernel);
    let k = scenario.kernel_mut();
    let requests = k.create_channel().unwrap();
    let replies = k.create_channel().unwrap();
    let grant = |k: &mut SimulatedKernel, ch: ChannelId, rights: Rights| {
        k.clone_capability(&Cap::from(ch), rights | Rights::TRANSFER)
            .unwrap()
    };
    let server_receives = grant(k, requests, Rights::RECEIVE);
    let server_answers = grant(k, replies, Rights::SEND);
    let client_sends = grant(k, requests, Rights::SEND);
    let client_receives = grant(k, replies, Rights::RECEIVE);

    let server = TaskDescriptor::new("echo".into())
        .with_capability(server_receives)
        .with_capability(server_answers);
    scenario
        .spawn(server, |_, startup| {
            let receive = ChannelId::from_handle(startup.capabilities[0]);
            let answer = ChannelId::from_handle(startup.capabilities[1]);
            Ok(move |k: &mut SimulatedKernel| {
                match k.receive_message(receive, Some(Duration::ZERO)) {
                    Ok(request) => {
                        let reply = MessageEnvelope::reply_to(
                            &request,
                            "echo.reply",
                            request.payload.clone(),
                        );
                        k.send_message(answer, reply).unwrap();
                        StepOutcome::Progress
                    }
                    Err(KernelError::Timeout) => StepOutcome::Idle,
                    Err(e) => panic!("server: {e}"),
                }
            })
        })
        .unwrap();

    let answers = Rc::new(Cell::new(0));
    let seen = Rc::clone(&answers);
    let client = TaskDescriptor::new("client".into())
        .with_capability(client_sends)
        .with_capability(client_receives);
    let mut sent = 0;
    let mut waiting = false;
    scenario
        .spawn(client, move |_, startup| {
            let send = ChannelId::from_handle(startup.capabilities[0]);
            let receive = ChannelId::from_handle(startup.capabilities[1]);
            Ok(move |k: &mut SimulatedKernel| {
                if waiting {
                    return match k.receive_message(receive, Some(Duration::ZERO)) {
                        Ok(answer) => {
                            assert_eq!(answer.payload.decode::<u32>(), Ok(sent));
                            seen.set(seen.get() + 1);
                            waiting = false;
                            StepOutcome::Progress
                        }
                        Err(KernelError::Timeout) => StepOutcome::Idle,
                        Err(e) => panic!("client: {e}"),
                    };
                }
                if sent == ROUNDS {
                    return StepOutcome::Exit(ExitReason::Normal);
                }
                sent += 1;
                waiting = true;
                if call {
                    // The answer cannot come before the server runs.
                    let early = k.send_then_receive(send, request(sent), receive, None);
                    assert_eq!(early.unwrap_err(), KernelError::Timeout);
                } else {
                    k.send_message(send, request(sent)).unwrap();
                }
                StepOutcome::Progress
            })
        })
        .unwrap();
    (scenario, answers)
}

fn run(scenario: &mut Scenario) {
    let report = scenario.run_until(Instant::ZERO + Duration::from_secs(1));
    assert_eq!(report.stop, StopReason::Quiescent, "{report:?}");
    scenario.kernel().check_invariants().unwrap();
}

#[test]
fn answers_to_a_waiting_client_are_handed_off() {
    let (mut scenario, answers) = echo_pair(SimulatedKernel::new(), false);
    run(&mut scenario);
    assert_eq!(answers.get(), ROUNDS);
    let kernel = scenario.kernel();
    // Every answer found the client blocked on its reply channel.
    assert_eq!(kernel.ipc_counts().handed_off, u64::from(ROUNDS));
    let handed = count(kernel, |e| matches!(e, TraceEvent::HandedOff { .. }));
    assert_eq!(handed, ROUNDS as usize);
    assert!(kernel.in_flight().is_empty());
}

#[test]
fn calls_to_a_waiting_server_take_the_fast_path() {
    let (mut scenario, answers) = echo_pair(SimulatedKernel::new(), true);
    run(&mut scenario);
    assert_eq!(answers.get(), ROUNDS);
    let kernel = scenario.kernel();
    let counts = kernel.ipc_counts();
    // The server (stepped first) was blocked on its request channel before
    // every call, and no ready task outranked it.
    assert_eq!(counts.switched, u64::from(ROUNDS));
    let switched = count(kernel, |e| matches!(e, TraceEvent::SwitchedTo { .. }));
    assert_eq!(switched, ROUNDS as usize);
    assert_eq!(counts.queued, 0);
    // Each answer went to the client, blocked by its call.
    assert_eq!(counts.handed_off, u64::from(ROUNDS));
    assert!(kernel.in_flight().is_empty());
}

#[test]
fn a_ready_task_that_outranks_the_receiver_keeps_the_general_path() {
    let (mut scenario, answers) = echo_pair(SimulatedKernel::new(), true);
    // A third task at the root's priority, always ready: the fast path must
    // not switch past it.
    let busy = TaskDescriptor::new("busy".into()).with_priority(pandagen_abi::Priority::HIGH);
    scenario
        .spawn(busy, |_, _| Ok(|_: &mut SimulatedKernel| StepOutcome::Idle))
        .unwrap();
    run(&mut scenario);
    assert_eq!(answers.get(), ROUNDS);
    let counts = scenario.kernel().ipc_counts();
    assert_eq!(counts.switched, 0);
    // The requests went to a blocked server all the same: handed off.
    assert_eq!(counts.handed_off, 2 * u64::from(ROUNDS));
}

#[test]
fn a_fault_plan_keeps_every_message_on_the_queue() {
    let plan = FaultPlan::new().delay_next(1, Duration::from_millis(1));
    let (mut scenario, answers) = echo_pair(SimulatedKernel::with_fault_plan(plan), true);
    run(&mut scenario);
    assert_eq!(answers.get(), ROUNDS);
    let counts = scenario.kernel().ipc_counts();
    assert_eq!((counts.switched, counts.handed_off), (0, 0));
    assert!(counts.queued >= 2 * u64::from(ROUNDS));
}

#[test]
fn a_caller_whose_last_call_was_declined_takes_the_fast_path_next_time() {
    let mut kernel = SimulatedKernel::new();
    let requests = kernel.create_channel().unwrap();
    let replies = kernel.create_channel().unwrap();
    let server_cap = kernel
        .clone_capability(&Cap::from(requests), Rights::RECEIVE | Rights::TRANSFER)
        .unwrap();
    let server = kernel
        .spawn_task(TaskDescriptor::new("server".into()).with_capability(server_cap))
        .unwrap()
        .task_id;
    let startup = kernel.as_task(server, |k| k.startup()).unwrap();
    let on = ChannelId::from_handle(startup.capabilities[0]);
    let root = kernel.root_task();
    for n in 0..3 {
        // The first call finds no server waiting: the general path queues
        // it, and the caller is left blocked on its reply channel. Later
        // calls find the server waiting and switch to it.
        if n > 0 {
            let waiting = kernel.as_task(server, |k| k.receive_message(on, Some(Duration::ZERO)));
            assert_eq!(waiting.unwrap_err(), KernelError::Timeout);
        }
        let early = kernel.send_then_receive(requests, request(n), replies, None);
        assert_eq!(early.unwrap_err(), KernelError::Timeout);
        assert_eq!(kernel.ipc_counts().switched, u64::from(n));
        let got = kernel.as_task(server, |k| k.receive_message(on, Some(Duration::ZERO)));
        assert_eq!(got.unwrap().source, Some(root));
    }
    kernel.check_invariants().unwrap();
}

#[test]
fn a_message_handed_to_a_task_that_ends_is_lost_not_leaked() {
    let mut kernel = SimulatedKernel::new();
    let channel = kernel.create_channel().unwrap();
    let receiver_cap = kernel
        .clone_capability(&Cap::from(channel), Rights::RECEIVE | Rights::TRANSFER)
        .unwrap();
    let receiver = kernel
        .spawn_task(TaskDescriptor::new("receiver".into()).with_capability(receiver_cap))
        .unwrap()
        .task_id;
    let startup = kernel.as_task(receiver, |k| k.startup()).unwrap();
    let on = ChannelId::from_handle(startup.capabilities[0]);
    let empty = kernel.as_task(receiver, |k| k.receive_message(on, Some(Duration::ZERO)));
    assert_eq!(empty.unwrap_err(), KernelError::Timeout);
    kernel.send_message(channel, request(1)).unwrap();
    assert_eq!(kernel.ipc_counts().handed_off, 1);
    assert_eq!(kernel.in_flight().len(), 1);
    kernel.terminate_task_with_reason(receiver, ExitReason::Normal);
    assert!(kernel.in_flight().is_empty());
    assert!(kernel.trace().events().any(|e| matches!(
        e,
        TraceEvent::Lost {
            reason: LossReason::ReceiverExited,
            ..
        }
    )));
    kernel.check_invariants().unwrap();
}

#[test]
fn a_message_whose_capabilities_do_not_fit_leaves_the_mirror_too() {
    // The root task holds its root capabilities and one channel: room for
    // one more capability, not for the two the first message carries.
    let fresh = SimulatedKernel::new();
    let held = fresh.capabilities_of(fresh.root_task()).len() as u32;
    let config = pandagen_core::CoreConfig {
        max_caps_per_task: held + 4,
        ..Default::default()
    };
    let mut kernel = SimulatedKernel::with_config(config);
    let channel = kernel.create_channel().unwrap();
    let a = kernel.create_channel().unwrap();
    let b = kernel.create_channel().unwrap();
    kernel
        .send_with_capabilities(channel, request(1), vec![Cap::from(a), Cap::from(b)])
        .unwrap();
    kernel.send_message(channel, request(2)).unwrap();
    // Fill the space so that the two carried capabilities cannot land.
    kernel.create_channel().unwrap();
    kernel.create_channel().unwrap();
    let refused = kernel.receive_with_capabilities(channel, Some(Duration::ZERO));
    assert!(matches!(
        refused,
        Err(KernelError::ReceiveFailed(
            pandagen_abi::error::ReceiveError::NoRoomForCapabilities { carried: 2 }
        ))
    ));
    assert!(kernel.trace().events().any(|e| matches!(
        e,
        TraceEvent::Lost {
            reason: LossReason::ReceiverFull,
            capabilities: 2,
            ..
        }
    )));
    let next = kernel
        .receive_message(channel, Some(Duration::ZERO))
        .unwrap();
    assert_eq!(next.payload.decode::<u32>(), Ok(2));
    assert!(kernel.in_flight().is_empty());
    kernel.check_invariants().unwrap();
}
