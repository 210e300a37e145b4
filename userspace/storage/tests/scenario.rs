//! The storage service as one task among others in the simulator's
//! scenario runner: it is stepped by `ChannelServer` with the server's own
//! `handle`, and the clients are state machines over the non-blocking
//! client calls (`start` / `poll`), so nothing blocks the single thread.

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::{
    Duration, ExitReason, Instant, KernelApi, KernelError, Rights, ServiceId, TaskDescriptor,
};
use pandagen_sim::{
    ChannelServer, FaultPlan, MessageFault, MessageFilter, MessageRule, Scenario, SimulatedKernel,
    StepOutcome, StopReason,
};
use pandagen_storage::client::{attenuate, delegate, received_cap, PendingCall};
use pandagen_storage::protocol::actions;
use pandagen_storage::server::HandleError;
use pandagen_storage::{
    ClientError, MemoryBackend, ObjectCap, ObjectKind, Op, OpResult, Reply, Request, StorageClient,
    StorageError, StorageServer,
};

/// Bob's inbox, where Alice sends him a capability.
const BOB_INBOX: ServiceId = ServiceId::from_raw(0x1b0b);

fn spawn_storage(scenario: &mut Scenario) {
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    let descriptor = TaskDescriptor::new("storage".into()).with_capability(registry);
    scenario
        .spawn(descriptor, |k, _| {
            let channel = StorageServer::<MemoryBackend>::register(k)?;
            let backend = MemoryBackend::new(*b"scenario-key-123");
            let (mut server, _) =
                StorageServer::open(backend).map_err(|_| KernelError::InvalidCapability)?;
            Ok(ChannelServer::new(
                channel,
                move |k: &mut SimulatedKernel, request| {
                    server.handle(k, request).map_err(|e| match e {
                        HandleError::Send(e) => e,
                        HandleError::NoReplyChannel => KernelError::InvalidCapability,
                    })
                },
            ))
        })
        .unwrap();
}

/// Wait for `call`: the reply, or the outcome the runner should see.
fn wait(
    client: &mut StorageClient,
    k: &mut SimulatedKernel,
    call: &mut PendingCall,
) -> Result<Reply, StepOutcome> {
    match client.poll(k, call) {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(StepOutcome::WaitUntil(call.deadline())),
        Err(e) => panic!("storage call failed: {e:?}"),
    }
}

fn transact(ops: Vec<Op>) -> Request {
    Request::Transact { ops }
}

/// The rights of the copy Alice moves to Bob: read, and move (it travels
/// in a message).
const READ_ONLY: Rights = Rights::from_bits(Rights::READ.bits() | Rights::TRANSFER.bits());

/// What Bob saw.
#[derive(Debug, Default)]
struct Seen {
    read: Option<Option<Vec<u8>>>,
    write: Option<ClientError>,
}

fn run(plan: FaultPlan) -> (Scenario, Rc<RefCell<Seen>>) {
    let mut scenario = Scenario::new(SimulatedKernel::with_fault_plan(plan));
    spawn_storage(&mut scenario);
    let retry = (Duration::from_millis(50), 4);

    // Alice creates a map, writes it, and moves a read-only copy of its
    // capability to Bob.
    scenario
        .spawn(TaskDescriptor::new("alice".into()), move |k, _| {
            let mut client = StorageClient::connect(k)
                .map_err(|_| KernelError::InvalidCapability)?
                .with_retry(retry.0, retry.1);
            let mut call = client
                .start(
                    k,
                    &Request::Create {
                        kind: ObjectKind::Map,
                    },
                )
                .unwrap();
            let mut map: Option<ObjectCap> = None;
            let mut stage = 0;
            Ok(move |k: &mut SimulatedKernel| {
                let reply = match wait(&mut client, k, &mut call) {
                    Ok(reply) => reply,
                    Err(outcome) => return outcome,
                };
                stage += 1;
                match (stage, reply) {
                    (1, Reply::Created { .. }) => {
                        let cap = call.take_granted().expect("created grants a capability");
                        let put = Op::Put {
                            key: b"greeting".to_vec(),
                            value: b"hello".to_vec(),
                        };
                        call = client.start_on(k, &cap, &transact(vec![put])).unwrap();
                        map = Some(cap);
                    }
                    (2, Reply::Transacted { .. }) => {
                        let map = map.as_ref().unwrap();
                        let read_only = attenuate(k, map, READ_ONLY).unwrap();
                        let inbox = k.lookup_service(BOB_INBOX).unwrap();
                        delegate(k, inbox, read_only).unwrap();
                        return StepOutcome::Exit(ExitReason::Normal);
                    }
                    (stage, other) => panic!("alice, stage {stage}: {other:?}"),
                }
                StepOutcome::Progress
            })
        })
        .unwrap();

    // Bob waits for a capability, reads with it, and tries to write.
    let seen = Rc::new(RefCell::new(Seen::default()));
    let bob_seen = seen.clone();
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    let bob = TaskDescriptor::new("bob".into()).with_capability(registry);
    scenario
        .spawn(bob, move |k, _| {
            let inbox = k.create_channel()?;
            k.register_service(BOB_INBOX, inbox)?;
            let mut client = StorageClient::connect(k)
                .map_err(|_| KernelError::InvalidCapability)?
                .with_retry(retry.0, retry.1);
            let mut token: Option<ObjectCap> = None;
            let mut call: Option<PendingCall> = None;
            Ok(move |k: &mut SimulatedKernel| {
                let Some(cap) = token.as_ref() else {
                    return match k.receive_with_capabilities(inbox, Some(Duration::ZERO)) {
                        Ok(message) => {
                            let cap = received_cap(k, message).unwrap();
                            let get = Op::Get {
                                key: b"greeting".to_vec(),
                                at: None,
                            };
                            call = Some(client.start_on(k, &cap, &transact(vec![get])).unwrap());
                            token = Some(cap);
                            StepOutcome::Progress
                        }
                        Err(_) => StepOutcome::Idle,
                    };
                };
                let pending = call.as_mut().unwrap();
                if bob_seen.borrow().read.is_none() {
                    let reply = match wait(&mut client, k, pending) {
                        Ok(reply) => reply,
                        Err(outcome) => return outcome,
                    };
                    let Reply::Transacted { mut results, .. } = reply else {
                        panic!("bob: {reply:?}");
                    };
                    let Some(OpResult::Value { value, .. }) = results.pop() else {
                        panic!("bob: no value");
                    };
                    bob_seen.borrow_mut().read = Some(value);
                    let put = Op::Put {
                        key: b"greeting".to_vec(),
                        value: b"defaced".to_vec(),
                    };
                    call = Some(client.start_on(k, cap, &transact(vec![put])).unwrap());
                    return StepOutcome::Progress;
                }
                match client.poll(k, pending) {
                    Ok(None) => StepOutcome::WaitUntil(pending.deadline()),
                    Ok(Some(reply)) => panic!("bob wrote with a read-only capability: {reply:?}"),
                    Err(e) => {
                        bob_seen.borrow_mut().write = Some(e);
                        StepOutcome::Exit(ExitReason::Normal)
                    }
                }
            })
        })
        .unwrap();

    let report = scenario.run_until(Instant::ZERO.saturating_add(Duration::from_secs(5)));
    assert_eq!(report.stop, StopReason::Quiescent, "{report:?}");
    (scenario, seen)
}

fn check(scenario: &Scenario, seen: &Seen) {
    assert_eq!(seen.read, Some(Some(b"hello".to_vec())));
    match &seen.write {
        Some(ClientError::Storage(StorageError::MissingRights { required, held, .. })) => {
            assert_eq!(*required, Rights::WRITE);
            assert_eq!(*held, READ_ONLY);
        }
        other => panic!("bob's write: {other:?}"),
    }
    assert!(scenario.task_of("alice").is_none(), "alice finished");
    assert!(scenario.task_of("bob").is_none(), "bob finished");
    scenario.kernel().check_invariants().unwrap();
}

#[test]
fn read_only_delegation_under_the_scenario_runner() {
    let (scenario, seen) = run(FaultPlan::new());
    check(&scenario, &seen.borrow());
}

#[test]
fn read_only_delegation_survives_lost_replies() {
    // Every other storage answer, up to four, is lost; the clients re-send.
    let rule = MessageRule::new(
        MessageFilter::with_action(actions::REPLY),
        MessageFault::Drop,
    )
    .with_chance(500)
    .times(4);
    let (scenario, seen) = run(FaultPlan::new().with_seed(7).with_message_rule(rule));
    check(&scenario, &seen.borrow());
    assert!(!scenario.kernel().trace().lost().is_empty());
}
