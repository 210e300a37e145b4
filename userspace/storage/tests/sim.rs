//! The storage service under the SimulatedKernel: real (simulated) IPC,
//! object capabilities minted by the service and enforced and moved by the
//! kernel, and injected faults.

mod support;

use pandagen_abi::{Cap, CapKind, ChannelId, Duration, KernelApi, KernelError, Rights, TaskId};
use pandagen_core::CapabilityEvent;
use pandagen_sim::{FaultPlan, MessageFault, MessageFilter, MessageRule};
use pandagen_storage::cap::OBJECT_CAP_RIGHTS;
use pandagen_storage::client::{attenuate, delegate, received_cap};
use pandagen_storage::protocol::actions;
use pandagen_storage::{
    ClientError, ObjectCap, ObjectKind, ObjectToken, Op, OpResult, StorageClient, StorageError,
    TxId,
};
use support::Harness;

fn drop_replies(times: Option<u32>) -> FaultPlan {
    let rule = MessageRule::new(
        MessageFilter::with_action(actions::REPLY),
        MessageFault::Drop,
    );
    FaultPlan::new().with_message_rule(match times {
        Some(n) => rule.times(n),
        None => rule,
    })
}

fn setup() -> (Harness, TaskId, StorageClient) {
    let mut h = Harness::new(FaultPlan::new());
    h.start_storage();
    let (alice, client) = h.connect_client("alice");
    (h, alice, client)
}

fn log_total(h: &mut Harness, task: TaskId, c: &mut StorageClient, log: &ObjectCap) -> u64 {
    let op = Op::ReadLog {
        at: None,
        start: 0,
        max: 1,
    };
    match c
        .transact(&mut h.as_client(task), log, vec![op])
        .unwrap()
        .0
        .pop()
    {
        Some(OpResult::Records { total, .. }) => total,
        other => panic!("{other:?}"),
    }
}

/// Move `cap` from `from` to `to` in a message, as two clients would: `to`
/// makes an inbox and hands `from` a send capability for it.
fn hand_over(h: &mut Harness, from: TaskId, to: TaskId, cap: ObjectCap) -> ObjectCap {
    let inbox = h.as_client(to).create_channel().unwrap();
    let send = h
        .as_client(to)
        .clone_capability(&Cap::from(inbox), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    let at_from = h.kernel.delegate_capability(&send, to, from).unwrap();
    delegate(&mut h.as_client(from), ChannelId::from_handle(at_from), cap).unwrap();
    let message = h
        .as_client(to)
        .receive_with_capabilities(inbox, Some(Duration::ZERO))
        .unwrap();
    assert_eq!(message.envelope.source, Some(from));
    received_cap(&mut h.as_client(to), message).unwrap()
}

/// What the kernel says `task` holds under `cap`.
fn kernel_view(h: &Harness, task: TaskId, cap: &ObjectCap) -> Option<(CapKind, Rights)> {
    h.kernel
        .capabilities_of(task)
        .into_iter()
        .find(|(handle, _)| *handle == cap.handle())
        .map(|(_, info)| (info.kind(), info.rights))
}

#[test]
fn creating_an_object_returns_a_kernel_capability() {
    let (mut h, alice, mut a) = setup();
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    assert_eq!(
        kernel_view(&h, alice, &map),
        Some((CapKind::StorageObject, OBJECT_CAP_RIGHTS))
    );
    // The storage task minted it (audited) and kept nothing.
    let storage = h.storage_task().unwrap();
    assert!(h.kernel.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Granted { kind: CapKind::StorageObject, from: Some(f), source: None, .. }
            if *f == storage
    )));
    assert!(h
        .kernel
        .capabilities_of(storage)
        .iter()
        .all(|(_, info)| info.kind() != CapKind::StorageObject));
    a.put(&mut h.as_client(alice), &map, b"k", b"v").unwrap();
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    h.kernel.check_invariants().unwrap();
}

#[test]
fn a_read_only_copy_reads_but_cannot_write() {
    let (mut h, alice, mut a) = setup();
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    a.put(&mut h.as_client(alice), &map, b"k", b"v").unwrap();
    let ro = attenuate(&mut h.as_client(alice), &map, Rights::READ).unwrap();
    assert_eq!(
        kernel_view(&h, alice, &ro),
        Some((CapKind::StorageObject, Rights::READ))
    );
    assert_eq!(
        a.get(&mut h.as_client(alice), &ro, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    assert!(matches!(
        a.put(&mut h.as_client(alice), &ro, b"k", b"evil"),
        Err(ClientError::Storage(StorageError::MissingRights {
            required: Rights::WRITE,
            held: Rights::READ,
            ..
        }))
    ));
    // A read-only copy has no GRANT: it cannot be copied or exported.
    assert!(matches!(
        attenuate(&mut h.as_client(alice), &ro, Rights::READ),
        Err(ClientError::Kernel(KernelError::InsufficientAuthority))
    ));
    assert!(matches!(
        a.export(&mut h.as_client(alice), &ro),
        Err(ClientError::Storage(StorageError::MissingRights { .. }))
    ));
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    h.kernel.check_invariants().unwrap();
}

#[test]
fn delegation_moves_the_capability_to_the_receiver() {
    let (mut h, alice, mut a) = setup();
    let (bob, mut b) = h.connect_client("bob");
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    a.put(&mut h.as_client(alice), &map, b"greeting", b"hello")
        .unwrap();
    let ro = attenuate(
        &mut h.as_client(alice),
        &map,
        Rights::READ | Rights::TRANSFER,
    )
    .unwrap();
    let ro_handle = ro.handle();
    let at_bob = hand_over(&mut h, alice, bob, ro);

    // Alice no longer holds it: the kernel refuses her use of the handle.
    let gone: ObjectCap = Cap::from_handle(ro_handle).assume_kind();
    assert_eq!(
        a.get(&mut h.as_client(alice), &gone, b"greeting"),
        Err(ClientError::Kernel(KernelError::InvalidCapability))
    );
    assert!(h.kernel.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Delegated { kind: CapKind::StorageObject, from, to, via: Some(_), .. }
            if *from == alice && *to == bob
    )));
    // Bob reads with it, and cannot write.
    assert_eq!(
        b.get(&mut h.as_client(bob), &at_bob, b"greeting").unwrap(),
        Some(b"hello".to_vec())
    );
    assert!(matches!(
        b.put(&mut h.as_client(bob), &at_bob, b"greeting", b"defaced"),
        Err(ClientError::Storage(StorageError::MissingRights { .. }))
    ));
    // A capability without TRANSFER cannot be passed on at all.
    let fixed = attenuate(&mut h.as_client(alice), &map, Rights::READ).unwrap();
    let inbox = h.as_client(bob).create_channel().unwrap();
    let send = h
        .as_client(bob)
        .clone_capability(&Cap::from(inbox), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    let at_alice = h.kernel.delegate_capability(&send, bob, alice).unwrap();
    assert_eq!(
        delegate(
            &mut h.as_client(alice),
            ChannelId::from_handle(at_alice),
            fixed
        ),
        Err(ClientError::Kernel(KernelError::InsufficientAuthority))
    );
    h.kernel.check_invariants().unwrap();
}

#[test]
fn forged_handles_and_unstamped_requests_are_refused() {
    let (mut h, alice, mut a) = setup();
    let (mallory, mut m) = h.connect_client("mallory");
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    a.put(&mut h.as_client(alice), &map, b"k", b"secret")
        .unwrap();
    // Alice's handle number means nothing in Mallory's space.
    let copied: ObjectCap = Cap::from_handle(map.handle()).assume_kind();
    assert!(matches!(
        m.get(&mut h.as_client(mallory), &copied, b"k"),
        Err(ClientError::Kernel(
            KernelError::InvalidCapability | KernelError::WrongCapabilityKind { .. }
        ))
    ));
    // Her channel capability is not an object capability.
    let service = h
        .as_client(mallory)
        .lookup_service(pandagen_abi::services::STORAGE)
        .unwrap();
    let channel_as_object: ObjectCap = Cap::from_handle(service.handle()).assume_kind();
    assert!(matches!(
        m.get(&mut h.as_client(mallory), &channel_as_object, b"k"),
        Err(ClientError::Kernel(KernelError::WrongCapabilityKind {
            expected: CapKind::StorageObject,
            found: CapKind::Channel
        }))
    ));
    // An object request on the plain service channel names no object.
    let request = pandagen_storage::Request::Transact {
        ops: vec![Op::Get {
            key: b"k".to_vec(),
            at: None,
        }],
    };
    assert_eq!(
        m.call(&mut h.as_client(mallory), &request),
        Err(ClientError::Storage(StorageError::CapabilityRequired))
    );
    // A forged token does not import.
    let forged = ObjectToken::from_parts(
        pandagen_storage::ObjectId::from_raw(1),
        OBJECT_CAP_RIGHTS,
        42,
    );
    assert!(matches!(
        m.import(&mut h.as_client(mallory), &forged),
        Err(ClientError::Storage(StorageError::InvalidCapability(_)))
    ));
    h.kernel.check_invariants().unwrap();
}

#[test]
fn revocation_voids_every_capability_for_the_object() {
    let (mut h, alice, mut a) = setup();
    let (bob, mut b) = h.connect_client("bob");
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let rw = attenuate(
        &mut h.as_client(alice),
        &map,
        Rights::READ | Rights::WRITE | Rights::TRANSFER,
    )
    .unwrap();
    let at_bob = hand_over(&mut h, alice, bob, rw);
    b.put(&mut h.as_client(bob), &at_bob, b"k", b"bob").unwrap();
    // Bob lacks CONTROL.
    assert!(matches!(
        b.revoke(&mut h.as_client(bob), &at_bob),
        Err(ClientError::Storage(StorageError::MissingRights { .. }))
    ));
    let fresh = a.revoke(&mut h.as_client(alice), &map).unwrap();
    for (task, client, cap) in [(bob, &mut b, &at_bob), (alice, &mut a, &map)] {
        assert!(matches!(
            client.get(&mut h.as_client(task), cap, b"k"),
            Err(ClientError::Storage(StorageError::InvalidCapability(_)))
        ));
    }
    assert_eq!(
        a.get(&mut h.as_client(alice), &fresh, b"k").unwrap(),
        Some(b"bob".to_vec())
    );
    h.kernel.check_invariants().unwrap();
}

#[test]
fn capabilities_survive_a_storage_restart_on_the_same_backend() {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(Duration::from_millis(100), 2);
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    a.put(&mut h.as_client(alice), &map, b"k", b"v").unwrap();
    let ro = attenuate(&mut h.as_client(alice), &map, Rights::READ | Rights::GRANT).unwrap();
    let token = a.export(&mut h.as_client(alice), &ro).unwrap();
    let first = h.storage_task().unwrap();
    h.kill_storage();
    // While no storage task is registered, a send through the capability
    // has nowhere to go: the client waits and gives up.
    assert!(matches!(
        a.get(&mut h.as_client(alice), &ro, b"k"),
        Err(ClientError::Timeout { .. })
    ));
    let second = h.start_storage();
    assert_ne!(first, second);
    // The same kernel capabilities reach the new instance and keep their
    // rights; the token imports there too.
    assert_eq!(
        a.get(&mut h.as_client(alice), &ro, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    assert!(matches!(
        a.put(&mut h.as_client(alice), &ro, b"k", b"x"),
        Err(ClientError::Storage(StorageError::MissingRights { .. }))
    ));
    a.put(&mut h.as_client(alice), &map, b"k", b"w").unwrap();
    let imported = a.import(&mut h.as_client(alice), &token).unwrap();
    assert_eq!(
        kernel_view(&h, alice, &imported),
        Some((
            CapKind::StorageObject,
            Rights::READ | Rights::GRANT | Rights::TRANSFER
        ))
    );
    assert_eq!(
        a.get(&mut h.as_client(alice), &imported, b"k").unwrap(),
        Some(b"w".to_vec())
    );
    h.kernel.check_invariants().unwrap();
}

#[test]
fn dropped_replies_are_retried_and_each_request_runs_once() {
    let (mut h, alice, mut a) = setup();
    // The reply to `create` and the reply to its first retry are lost.
    h.kernel.set_fault_plan(drop_replies(Some(2)));
    let (log, _) = a.create(&mut h.as_client(alice), ObjectKind::Log).unwrap();
    assert_eq!(h.server().unwrap().store().object_count(), 1);
    assert_eq!(h.kernel.trace().lost().len(), 2);
    // The capabilities minted for the lost answers died with them: Alice
    // holds exactly one object capability.
    let held = h
        .kernel
        .capabilities_of(alice)
        .iter()
        .filter(|(_, info)| info.kind() == CapKind::StorageObject)
        .count();
    assert_eq!(held, 1);

    // An append whose reply is lost is not appended twice.
    h.kernel.set_fault_plan(drop_replies(Some(1)));
    assert_eq!(a.append(&mut h.as_client(alice), &log, b"once").unwrap(), 0);
    h.kernel.set_fault_plan(FaultPlan::new());
    assert_eq!(log_total(&mut h, alice, &mut a, &log), 1);
    h.kernel.check_invariants().unwrap();
}

/// A call driven with `start` and `poll` whose answers are all lost is
/// re-sent at each deadline while attempts are left, then reported as a
/// timeout, as `call` reports it: no sooner than the attempts' timeouts,
/// and not later than the polling that follows them.
#[test]
fn polling_a_call_whose_answers_are_lost_times_out_after_its_attempts() {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(Duration::from_millis(200), 3);
    a.info(&mut h.as_client(alice)).unwrap();
    h.kernel.set_fault_plan(drop_replies(None));
    let started = h.kernel.now();
    let mut call = a
        .start(&mut h.as_client(alice), &pandagen_storage::Request::Info)
        .unwrap();
    let outcome = loop {
        match a.poll(&mut h.as_client(alice), &mut call) {
            Ok(None) => h.as_client(alice).sleep(Duration::from_millis(50)).unwrap(),
            other => break other,
        }
        let waited = h.kernel.now().saturating_duration_since(started);
        assert!(
            waited < Duration::from_secs(2),
            "still polling at {waited:?}"
        );
    };
    assert!(
        matches!(outcome, Err(ClientError::Timeout { attempts: 3, .. })),
        "{outcome:?}"
    );
    let waited = h.kernel.now().saturating_duration_since(started);
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    h.kernel.check_invariants().unwrap();
}

#[test]
fn when_every_reply_is_lost_the_client_reports_a_timeout() {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(Duration::from_millis(200), 3);
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    h.kernel.set_fault_plan(drop_replies(None));
    let started = h.kernel.now();
    assert!(matches!(
        a.put(&mut h.as_client(alice), &map, b"k", b"v"),
        Err(ClientError::Timeout { attempts: 3, .. })
    ));
    assert!(h.kernel.now().saturating_duration_since(started) >= Duration::from_millis(600));
    h.kernel.set_fault_plan(FaultPlan::new());
    // The put ran exactly once: one version beyond the creation.
    assert_eq!(a.versions(&mut h.as_client(alice), &map).unwrap().len(), 2);
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    h.kernel.check_invariants().unwrap();
}

fn begin_put_append(
    h: &mut Harness,
    task: TaskId,
    c: &mut StorageClient,
    map: &ObjectCap,
    log: &ObjectCap,
) -> Result<TxId, ClientError> {
    let tx = c.begin(&mut h.as_client(task))?;
    let put = Op::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    c.op(&mut h.as_client(task), tx, map, put)?;
    let append = Op::Append {
        record: b"r".to_vec(),
    };
    c.op(&mut h.as_client(task), tx, log, append)?;
    Ok(tx)
}

#[test]
fn a_storage_crash_between_begin_and_commit_applies_nothing() {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(Duration::from_millis(100), 2);
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let (log, _) = a.create(&mut h.as_client(alice), ObjectKind::Log).unwrap();
    let tx = begin_put_append(&mut h, alice, &mut a, &map, &log).unwrap();

    h.kill_storage();
    // Nobody answers while the service is down.
    assert!(matches!(
        a.commit(&mut h.as_client(alice), tx),
        Err(ClientError::Timeout { attempts: 2, .. })
    ));

    // The supervisor restarts it on the same backend; the client finds the
    // new channel by itself.
    h.start_storage();
    assert_eq!(
        a.commit(&mut h.as_client(alice), tx),
        Err(ClientError::Storage(StorageError::NotActive(tx)))
    );
    // Nothing of the transaction was applied, and the capabilities issued
    // before the crash still work: they are durable.
    assert_eq!(a.get(&mut h.as_client(alice), &map, b"k").unwrap(), None);
    assert_eq!(log_total(&mut h, alice, &mut a, &log), 0);
    let tx = begin_put_append(&mut h, alice, &mut a, &map, &log).unwrap();
    assert_eq!(a.commit(&mut h.as_client(alice), tx).unwrap().len(), 2);
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(log_total(&mut h, alice, &mut a, &log), 1);
    h.kernel.check_invariants().unwrap();
}

#[test]
fn a_commit_whose_answer_died_with_the_service_is_answered_after_restart() {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(Duration::from_millis(100), 3);
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let (log, _) = a.create(&mut h.as_client(alice), ObjectKind::Log).unwrap();
    let tx = begin_put_append(&mut h, alice, &mut a, &map, &log).unwrap();
    // The commit becomes durable, then the task dies before answering.
    h.crash_before_next_answer = true;
    let id = match a.commit(&mut h.as_client(alice), tx) {
        Err(ClientError::Timeout {
            attempts: 3,
            request,
        }) => request,
        other => panic!("{other:?}"),
    };
    assert!(!h.storage_alive());
    h.start_storage();
    // Re-sending the same request under the same id gets the commit's
    // answer from the journal: the commit is neither lost nor repeated.
    let request = pandagen_storage::Request::Commit { tx };
    match a.call_as(&mut h.as_client(alice), None, &request, id) {
        Ok(pandagen_storage::Reply::Committed { versions }) => assert_eq!(versions.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"k").unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(log_total(&mut h, alice, &mut a, &log), 1);
    h.kernel.check_invariants().unwrap();
}

#[test]
fn a_crash_at_any_message_of_a_transaction_is_all_or_nothing() {
    // The storage task handles 8 messages in begin/op/op/commit (a receive
    // and a send each); crash it after each of them in turn.
    for crash_after in 1..=9 {
        let (mut h, alice, a) = setup();
        let mut a = a.with_retry(Duration::from_millis(50), 1);
        let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
        let (log, _) = a.create(&mut h.as_client(alice), ObjectKind::Log).unwrap();
        let storage = h.storage_task().unwrap();
        h.kernel
            .set_fault_plan(FaultPlan::new().crash_after_messages(storage, crash_after));

        let outcome = begin_put_append(&mut h, alice, &mut a, &map, &log)
            .and_then(|tx| a.commit(&mut h.as_client(alice), tx));

        h.kernel.set_fault_plan(FaultPlan::new());
        assert_eq!(
            h.storage_alive(),
            crash_after > 8,
            "crash_after={crash_after}"
        );
        if !h.storage_alive() {
            h.start_storage();
            // The new instance keeps no session for this client: its first
            // request goes unanswered, and the re-send after the session
            // probe, which carries the reply capability again, re-opens
            // the session within the one attempt.
            a = a.with_retry(Duration::from_secs(1), 1);
        }
        let put_seen = a
            .get(&mut h.as_client(alice), &map, b"k")
            .unwrap()
            .is_some();
        let append_seen = log_total(&mut h, alice, &mut a, &log) == 1;
        assert_eq!(
            put_seen, append_seen,
            "half-applied at crash_after={crash_after}"
        );
        if outcome.is_ok() {
            assert!(
                put_seen,
                "commit acknowledged but lost at crash_after={crash_after}"
            );
        }
        // The commit request is the storage task's 7th message: crashing
        // on its delivery or earlier commits nothing; crashing after the
        // 8th (the commit's answer) leaves it committed.
        assert_eq!(put_seen, crash_after >= 8, "crash_after={crash_after}");
        h.kernel.check_invariants().unwrap();
    }
}

#[test]
fn random_faults_never_half_apply_or_repeat_a_transaction() {
    let mut lost = 0;
    let mut unacknowledged = 0;
    for seed in 1..=24u64 {
        let (mut h, alice, a) = setup();
        let mut a = a.with_retry(Duration::from_millis(100), 6);
        let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
        let (log, _) = a.create(&mut h.as_client(alice), ObjectKind::Log).unwrap();
        h.kernel.set_fault_plan(FaultPlan::random(seed));
        let mut acknowledged = Vec::new();
        for i in 0u8..12 {
            // One transaction over both objects: each op travels through
            // its object's capability.
            let outcome = (|| {
                let mut k = h.as_client(alice);
                let tx = a.begin(&mut k)?;
                a.op(&mut k, tx, &log, Op::Append { record: vec![i] })?;
                let put = Op::Put {
                    key: vec![i],
                    value: vec![i],
                };
                a.op(&mut k, tx, &map, put)?;
                a.commit(&mut k, tx)
            })();
            match outcome {
                Ok(_) => acknowledged.push(i),
                Err(ClientError::Timeout { .. }) => {}
                Err(ClientError::Kernel(KernelError::SendFailed(_))) => {}
                Err(e) => panic!("seed {seed}, request {i}: {e:?}"),
            }
        }
        unacknowledged += 12 - acknowledged.len();
        h.kernel.set_fault_plan(FaultPlan::new());
        h.kernel.discard_held();
        lost += h.kernel.trace().lost().len();
        assert!(h.storage_alive());
        let read = Op::ReadLog {
            at: None,
            start: 0,
            max: 100,
        };
        let records = match a
            .transact(&mut h.as_client(alice), &log, vec![read])
            .unwrap()
            .0
            .pop()
        {
            Some(OpResult::Records { records, .. }) => records,
            other => panic!("{other:?}"),
        };
        let appended: Vec<u8> = records.iter().map(|r| r[0]).collect();
        let mut unique = appended.clone();
        unique.dedup();
        assert_eq!(unique, appended, "seed {seed}: a request ran twice");
        for i in 0u8..12 {
            let in_map = a
                .get(&mut h.as_client(alice), &map, &[i])
                .unwrap()
                .is_some();
            assert_eq!(
                in_map,
                appended.contains(&i),
                "seed {seed}: request {i} half-applied"
            );
            if acknowledged.contains(&i) {
                assert!(in_map, "seed {seed}: acknowledged request {i} lost");
            }
        }
        h.kernel.check_invariants().unwrap();
    }
    // The sweep did exercise the faults.
    assert!(lost > 20, "only {lost} messages lost");
    eprintln!("{lost} messages lost, {unacknowledged} requests unacknowledged");
}

#[test]
fn requests_in_an_unsupported_schema_get_a_typed_error_over_ipc() {
    use pandagen_abi::services::STORAGE;
    use pandagen_abi::{MessageEnvelope, MessagePayload, SchemaVersion};
    use pandagen_storage::protocol::Response;
    let (mut h, alice, _) = setup();
    {
        let mut k = h.as_client(alice);
        let service = k.lookup_service(STORAGE).unwrap();
        let replies = k.create_channel().unwrap();
        let reply_cap = k
            .clone_capability(&Cap::from(replies), Rights::SEND | Rights::TRANSFER)
            .unwrap();
        let request = MessageEnvelope::new(
            STORAGE,
            actions::BEGIN,
            SchemaVersion::new(3, 0),
            MessagePayload::from_bytes(vec![0xde, 0xad]).unwrap(),
        );
        k.send_with_capabilities(service, request.clone(), vec![reply_cap])
            .unwrap();
        let answer = k
            .receive_message(replies, Some(Duration::from_millis(10)))
            .unwrap();
        assert_eq!(answer.correlation_id, Some(request.id));
        let response: Response = answer.payload.decode().unwrap();
        assert!(matches!(response, Err(StorageError::SchemaMismatch(_))));
    }
    // The server dropped the reply capability it was given.
    h.kernel.check_invariants().unwrap();
}

#[test]
fn answers_reach_the_waiting_client_through_the_kernels_hand_off() {
    let (mut h, alice, mut client) = setup();
    let (map, _) = client
        .create(&mut h.as_client(alice), ObjectKind::Map)
        .unwrap();
    let before = h.kernel.ipc_counts();
    for i in 0u8..4 {
        client
            .put(&mut h.as_client(alice), &map, &[i], b"v")
            .unwrap();
        let value = client.get(&mut h.as_client(alice), &map, &[i]).unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
    }
    let after = h.kernel.ipc_counts();
    // Each request carries its reply capability, so it is queued; each
    // answer finds the client blocked on its reply channel and is handed
    // to it, as the real kernel's `send_or_hand_off` does.
    assert_eq!(after.queued - before.queued, 8);
    assert_eq!(after.handed_off - before.handed_off, 8);
    h.kernel.check_invariants().unwrap();
}

/// How many of `task`'s messages so far carried capabilities.
fn sends_with_capabilities(h: &Harness, task: TaskId) -> usize {
    h.kernel
        .trace()
        .events()
        .filter(|e| {
            matches!(e, pandagen_sim::TraceEvent::Sent { from, capabilities, .. }
                if *from == task && *capabilities > 0)
        })
        .count()
}

#[test]
fn a_client_attaches_its_reply_capability_once_per_session() {
    let (mut h, alice, mut a) = setup();
    let storage = h.storage_task().unwrap();
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let opened = sends_with_capabilities(&h, alice);
    assert_eq!(opened, 1, "the first request opens the session");
    let held = h.kernel.capabilities_of(storage).len();
    for i in 0..5u8 {
        a.put(&mut h.as_client(alice), &map, &[i], b"v").unwrap();
        assert_eq!(
            a.get(&mut h.as_client(alice), &map, &[i]).unwrap(),
            Some(b"v".to_vec())
        );
    }
    assert_eq!(
        sends_with_capabilities(&h, alice),
        opened,
        "later requests carry no capability"
    );
    assert_eq!(
        h.kernel.capabilities_of(storage).len(),
        held,
        "storage keeps one reply capability for the session, not one per request"
    );
}

#[test]
fn a_lost_answer_is_re_sent_with_the_reply_capability() {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(Duration::from_millis(50), 3);
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let opened = sends_with_capabilities(&h, alice);
    h.kernel.set_fault_plan(drop_replies(Some(1)));
    a.put(&mut h.as_client(alice), &map, b"k", b"v").unwrap();
    assert_eq!(
        sends_with_capabilities(&h, alice),
        opened + 1,
        "the re-send carried the reply capability"
    );
}

/// A request envelope in session `session`, as a client encodes it.
fn session_request(
    request: &pandagen_storage::Request,
    session: impl Into<Option<u32>>,
) -> pandagen_abi::MessageEnvelope {
    use pandagen_abi::{MessageEnvelope, MessagePayload};
    use pandagen_storage::protocol::{RequestPayloadRef, SCHEMA};
    let payload = RequestPayloadRef {
        request,
        session: session.into(),
    };
    MessageEnvelope::new(
        pandagen_abi::services::STORAGE,
        request.action(),
        SCHEMA,
        MessagePayload::new(&payload).unwrap(),
    )
}

/// A put of `key` = "v" in a transaction of its own.
fn put_request(key: &[u8]) -> pandagen_storage::Request {
    pandagen_storage::Request::Transact {
        ops: vec![Op::Put {
            key: key.to_vec(),
            value: b"v".to_vec(),
        }],
    }
}

/// Alice's map, and Bob's capability for it: Bob may write it too, so
/// only the reply channels are at stake.
fn alice_and_bob_share_a_map() -> (
    Harness,
    StorageClient,
    (TaskId, ObjectCap),
    (TaskId, ObjectCap),
) {
    let (mut h, alice, mut a) = setup();
    let (bob, _) = h.connect_client("bob");
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let for_bob = attenuate(&mut h.as_client(alice), &map, OBJECT_CAP_RIGHTS).unwrap();
    let bobs_map = hand_over(&mut h, alice, bob, for_bob);
    (h, a, (alice, map), (bob, bobs_map))
}

/// `task` opens `session` on a reply channel of its own with a put on
/// `map`, and sees it answered there. Returns the channel.
fn open_session(h: &mut Harness, task: TaskId, map: &ObjectCap, session: u32) -> ChannelId {
    let inbox = h.as_client(task).create_channel().unwrap();
    let reply = h
        .as_client(task)
        .clone_capability(&Cap::from(inbox), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    h.as_client(task)
        .send_to_object(
            map,
            session_request(&put_request(b"a"), session),
            vec![reply],
        )
        .unwrap();
    h.pump();
    assert!(h
        .as_client(task)
        .receive_with_capabilities(inbox, Some(Duration::ZERO))
        .is_ok());
    inbox
}

#[test]
fn a_session_is_the_senders_own_and_a_request_without_one_is_not_executed() {
    let (mut h, mut a, (alice, map), (bob, bobs_map)) = alice_and_bob_share_a_map();
    // Alice opens session 0x5e55 on her own reply channel.
    let session = 0x5e55;
    let inbox = open_session(&mut h, alice, &map, session);
    // Bob names the same session number without a capability: his task
    // has no such session, so nothing is executed and nothing answered
    // (least of all on Alice's channel).
    h.as_client(bob)
        .send_to_object(
            &bobs_map,
            session_request(&put_request(b"b"), session),
            vec![],
        )
        .unwrap();
    h.pump();
    assert_eq!(
        h.as_client(alice)
            .receive_with_capabilities(inbox, Some(Duration::ZERO))
            .err(),
        Some(KernelError::Timeout)
    );
    assert_eq!(a.get(&mut h.as_client(alice), &map, b"b").unwrap(), None);
    // Alice's own session still answers her requests without a capability.
    h.as_client(alice)
        .send_to_object(&map, session_request(&put_request(b"c"), session), vec![])
        .unwrap();
    h.pump();
    assert!(h
        .as_client(alice)
        .receive_with_capabilities(inbox, Some(Duration::ZERO))
        .is_ok());
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"c").unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn one_task_opening_many_sessions_closes_only_its_own() {
    let (mut h, _, (alice, map), (bob, bobs_map)) = alice_and_bob_share_a_map();
    let alices = open_session(&mut h, alice, &map, 1);
    // Bob opens as many sessions as the server keeps for everyone.
    for session in 0..pandagen_storage::server::MAX_SESSIONS as u32 {
        open_session(&mut h, bob, &bobs_map, session);
    }
    // Alice's session still answers her without a capability.
    h.as_client(alice)
        .send_to_object(&map, session_request(&put_request(b"k"), 1), vec![])
        .unwrap();
    h.pump();
    assert!(h
        .as_client(alice)
        .receive_with_capabilities(alices, Some(Duration::ZERO))
        .is_ok());
}

/// How long a put takes to give up when every answer to it is lost, with
/// a client whose per-attempt timeout is `timeout`, over `attempts`
/// attempts, on an open session; if `late`, the first answer to the put
/// before it comes that late, and so arrives during it.
fn time_to_give_up(timeout: Duration, attempts: u32, late: Option<Duration>) -> Duration {
    let (mut h, alice, a) = setup();
    let mut a = a.with_retry(timeout, attempts);
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    if let Some(late) = late {
        // The client re-sends that put after the session probe, and the
        // re-send's answer completes it while the late one is still on
        // its way.
        let delay = MessageRule::new(
            MessageFilter::with_action(actions::REPLY),
            MessageFault::Delay(late),
        )
        .times(1);
        h.kernel
            .set_fault_plan(FaultPlan::new().with_message_rule(delay));
        a.put(&mut h.as_client(alice), &map, b"k", b"1").unwrap();
    }
    h.kernel.set_fault_plan(drop_replies(None));
    let started = h.kernel.now();
    assert!(matches!(
        a.put(&mut h.as_client(alice), &map, b"k", b"2"),
        Err(ClientError::Timeout { .. })
    ));
    h.kernel.now().saturating_duration_since(started)
}

#[test]
fn a_client_gives_up_after_its_timeouts_and_the_one_session_probe() {
    use pandagen_storage::client::SESSION_PROBE;
    // On an open session the first attempt waits only SESSION_PROBE before
    // re-sending with the reply capability (the service may have lost
    // the session), then the whole timeout; each later attempt is such a
    // re-send and waits its timeout once. Nothing waits twice.
    let timeout = Duration::from_millis(200);
    assert_eq!(
        time_to_give_up(timeout, 3, None),
        SESSION_PROBE.saturating_add(Duration::from_millis(600))
    );
    // A timeout no longer than the probe leaves no room for one: each
    // attempt waits exactly its timeout.
    assert_eq!(
        time_to_give_up(SESSION_PROBE, 3, None),
        Duration::from_millis(300)
    );
}

#[test]
fn a_late_answer_arriving_during_a_call_does_not_lengthen_its_wait() {
    use pandagen_storage::client::SESSION_PROBE;
    let timeout = Duration::from_millis(200);
    let unhindered = SESSION_PROBE.saturating_add(timeout);
    // The late answer arrives 50 ms into the object call's probe wait, or
    // 50 ms into the wait after the re-send: either wait still ends when
    // it would have without it.
    for late in [150, 250] {
        assert_eq!(
            time_to_give_up(timeout, 1, Some(Duration::from_millis(late))),
            unhindered,
            "answer {late} ms late"
        );
    }
}

#[test]
fn a_tasks_sessions_are_told_apart_and_a_request_naming_none_is_not_executed() {
    let (mut h, mut a, (alice, map), _) = alice_and_bob_share_a_map();
    let first = open_session(&mut h, alice, &map, 1);
    let second = open_session(&mut h, alice, &map, 2);
    // Each request without a capability is answered on the channel of the
    // session it names, and only there.
    for (session, on, other, key) in [(1, first, second, b"x"), (2, second, first, b"y")] {
        h.as_client(alice)
            .send_to_object(&map, session_request(&put_request(key), session), vec![])
            .unwrap();
        h.pump();
        assert!(h
            .as_client(alice)
            .receive_with_capabilities(on, Some(Duration::ZERO))
            .is_ok());
        assert_eq!(
            h.as_client(alice)
                .receive_with_capabilities(other, Some(Duration::ZERO))
                .err(),
            Some(KernelError::Timeout),
            "session {session}'s answer went to another session's channel"
        );
    }
    // A request that names no session and carries no capability cannot be
    // answered, so it is not executed, though its sender has sessions.
    h.as_client(alice)
        .send_to_object(&map, session_request(&put_request(b"z"), None), vec![])
        .unwrap();
    h.pump();
    for inbox in [first, second] {
        assert_eq!(
            h.as_client(alice)
                .receive_with_capabilities(inbox, Some(Duration::ZERO))
                .err(),
            Some(KernelError::Timeout)
        );
    }
    assert_eq!(a.get(&mut h.as_client(alice), &map, b"z").unwrap(), None);
    assert_eq!(
        a.get(&mut h.as_client(alice), &map, b"y").unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn a_one_operation_put_runs_only_under_the_current_schema_and_its_own_action() {
    use pandagen_abi::{MessageEnvelope, MessagePayload, SchemaVersion};
    use pandagen_storage::protocol::{RequestPayloadRef, Response, SCHEMA};
    let (mut h, alice, mut a) = setup();
    let (map, _) = a.create(&mut h.as_client(alice), ObjectKind::Map).unwrap();
    let put = put_request(b"k");
    let payload = RequestPayloadRef {
        request: &put,
        session: None,
    };
    // A put's own payload, under a schema the service does not speak, and
    // under the current schema but another action's name.
    let cases = [
        (actions::TRANSACT, SchemaVersion::new(3, 0), "schema"),
        (actions::BEGIN, SCHEMA, "action"),
    ];
    for (action, schema, case) in cases {
        let request = MessageEnvelope::new(
            pandagen_abi::services::STORAGE,
            action,
            schema,
            MessagePayload::new(&payload).unwrap(),
        );
        let mut k = h.as_client(alice);
        let replies = k.create_channel().unwrap();
        let reply_cap = k
            .clone_capability(&Cap::from(replies), Rights::SEND | Rights::TRANSFER)
            .unwrap();
        k.send_to_object(&map, request.clone(), vec![reply_cap])
            .unwrap();
        h.pump();
        let answer = h
            .as_client(alice)
            .receive_message(replies, Some(Duration::ZERO))
            .unwrap();
        assert_eq!(answer.correlation_id, Some(request.id));
        let response: Response = answer.payload.decode().unwrap();
        match case {
            "schema" => assert!(
                matches!(response, Err(StorageError::SchemaMismatch(_))),
                "{response:?}"
            ),
            _ => assert_eq!(response.err(), Some(StorageError::ActionMismatch)),
        }
        assert_eq!(
            a.get(&mut h.as_client(alice), &map, b"k").unwrap(),
            None,
            "the {case} mismatch's put ran"
        );
    }
}
