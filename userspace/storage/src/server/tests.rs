use alloc::rc::Rc;
use alloc::string::ToString;
use alloc::vec;
use core::cell::RefCell;
use pandagen_abi::{SchemaMismatchError, SchemaVersion, TaskId};

use super::*;
use crate::backend::BackendError;
use crate::ids::TxId;
use crate::memory::{ApplyFault, MemoryBackend};
use crate::object::ObjectKind;
use crate::protocol::SCHEMA;

type Shared = Rc<RefCell<MemoryBackend>>;

const ALICE: u64 = 10;
const BOB: u64 = 11;

fn backend(seed: u8) -> Shared {
    Rc::new(RefCell::new(MemoryBackend::new([seed; 16])))
}

fn server(b: &Shared) -> StorageServer<Shared> {
    StorageServer::open(b.clone()).unwrap().0
}

fn envelope(source: u64, request: &Request) -> MessageEnvelope {
    let mut e = MessageEnvelope::new(
        STORAGE,
        request.action(),
        SCHEMA,
        MessagePayload::new(request).unwrap(),
    );
    e.source = Some(TaskId::from_raw(source));
    e
}

fn answer(s: &mut StorageServer<Shared>, request: &MessageEnvelope) -> Response {
    let reply = s.respond(request, Instant::from_nanos(2));
    assert_eq!(reply.correlation_id, Some(request.id));
    assert_eq!(reply.action, actions::REPLY);
    reply.payload.decode().unwrap()
}

fn ask(s: &mut StorageServer<Shared>, source: u64, request: Request) -> Response {
    answer(s, &envelope(source, &request))
}

fn create(s: &mut StorageServer<Shared>, kind: ObjectKind) -> ObjectCap {
    match ask(s, ALICE, Request::Create { kind }) {
        Ok(Reply::Created { cap, .. }) => cap,
        other => panic!("create: {other:?}"),
    }
}

fn one(s: &mut StorageServer<Shared>, source: u64, op: Op) -> Result<OpResult, StorageError> {
    match ask(s, source, Request::Transact { ops: vec![op] })? {
        Reply::Transacted { mut results, .. } => Ok(results.pop().unwrap()),
        other => panic!("transact: {other:?}"),
    }
}

fn put(cap: &ObjectCap, key: &[u8], value: &[u8]) -> Op {
    Op::Put {
        cap: cap.clone(),
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn get(cap: &ObjectCap, key: &[u8]) -> Op {
    Op::Get {
        cap: cap.clone(),
        key: key.to_vec(),
        at: None,
    }
}

fn value(r: Result<OpResult, StorageError>) -> Option<Vec<u8>> {
    match r {
        Ok(OpResult::Value { value, .. }) => value,
        other => panic!("get: {other:?}"),
    }
}

fn attenuate(s: &mut StorageServer<Shared>, cap: &ObjectCap, rights: Rights) -> ObjectCap {
    match ask(
        s,
        ALICE,
        Request::Attenuate {
            cap: cap.clone(),
            rights,
        },
    ) {
        Ok(Reply::Cap(c)) => c,
        other => panic!("attenuate: {other:?}"),
    }
}

#[test]
fn create_returns_a_full_capability_that_reads_and_writes() {
    let b = backend(1);
    let mut s = server(&b);
    let cap = create(&mut s, ObjectKind::Map);
    assert_eq!(cap.rights(), OBJECT_RIGHTS);
    assert!(matches!(
        one(&mut s, ALICE, put(&cap, b"k", b"v")),
        Ok(OpResult::Written(_))
    ));
    assert_eq!(
        value(one(&mut s, ALICE, get(&cap, b"k"))),
        Some(b"v".to_vec())
    );
}

#[test]
fn a_read_only_capability_reads_but_cannot_write() {
    let b = backend(1);
    let mut s = server(&b);
    let cap = create(&mut s, ObjectKind::Map);
    one(&mut s, ALICE, put(&cap, b"k", b"v")).unwrap();
    let ro = attenuate(&mut s, &cap, Rights::READ);
    assert_eq!(ro.rights(), Rights::READ);
    assert_eq!(value(one(&mut s, BOB, get(&ro, b"k"))), Some(b"v".to_vec()));
    assert_eq!(
        one(&mut s, BOB, put(&ro, b"k", b"evil")),
        Err(StorageError::MissingRights {
            object: cap.object(),
            required: Rights::WRITE,
            held: Rights::READ
        })
    );
    // Attenuation never adds rights back.
    let still_ro = attenuate(&mut s, &ro, Rights::READ | Rights::WRITE);
    assert_eq!(still_ro.rights(), Rights::READ);
    assert_eq!(
        value(one(&mut s, ALICE, get(&cap, b"k"))),
        Some(b"v".to_vec())
    );
}

#[test]
fn forged_or_amplified_capabilities_are_refused() {
    let b = backend(1);
    let mut s = server(&b);
    let cap = create(&mut s, ObjectKind::Map);
    let ro = attenuate(&mut s, &cap, Rights::READ);
    let amplified = ObjectCap::from_parts(ro.object(), OBJECT_RIGHTS, ro.tag());
    assert_eq!(
        one(&mut s, BOB, put(&amplified, b"k", b"v")),
        Err(StorageError::InvalidCapability(cap.object()))
    );
    let other = create(&mut s, ObjectKind::Map);
    let retargeted = ObjectCap::from_parts(other.object(), cap.rights(), cap.tag());
    assert_eq!(
        one(&mut s, BOB, get(&retargeted, b"k")),
        Err(StorageError::InvalidCapability(other.object()))
    );
    let ghost = ObjectCap::from_parts(ObjectId::from_raw(999), OBJECT_RIGHTS, 0);
    assert_eq!(
        one(&mut s, BOB, get(&ghost, b"k")),
        Err(StorageError::UnknownObject(ObjectId::from_raw(999)))
    );
}

#[test]
fn each_bad_request_gets_its_own_typed_error() {
    let b = backend(1);
    let mut s = server(&b);
    let log = create(&mut s, ObjectKind::Log);
    let map = create(&mut s, ObjectKind::Map);
    assert_eq!(
        one(&mut s, ALICE, put(&log, b"k", b"v")),
        Err(StorageError::WrongKind {
            object: log.object(),
            expected: ObjectKind::Map,
            found: ObjectKind::Log
        })
    );
    let big = vec![0u8; limits::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        one(&mut s, ALICE, put(&map, b"k", &big)),
        Err(StorageError::ValueTooLarge { .. })
    ));
    // Malformed payload.
    let mut bad = envelope(ALICE, &Request::Begin);
    bad.payload = MessagePayload::from_bytes(vec![0xff, 0xff, 0xff]).unwrap();
    assert_eq!(answer(&mut s, &bad), Err(StorageError::MalformedPayload));
    // Unknown action, and an action that does not match the payload.
    let mut unknown = envelope(ALICE, &Request::Begin);
    unknown.action = "storage.format_disk".to_string();
    assert_eq!(answer(&mut s, &unknown), Err(StorageError::UnknownAction));
    let mut mismatched = envelope(ALICE, &Request::Begin);
    mismatched.action = actions::COMMIT.to_string();
    assert_eq!(
        answer(&mut s, &mismatched),
        Err(StorageError::ActionMismatch)
    );
    // Too many operations.
    let ops = vec![get(&map, b"k"); limits::MAX_OPS_PER_REQUEST + 1];
    assert!(matches!(
        ask(&mut s, ALICE, Request::Transact { ops }),
        Err(StorageError::TooManyOps { .. })
    ));
}

#[test]
fn the_schema_version_is_checked_before_decoding() {
    let b = backend(1);
    let mut s = server(&b);
    for version in [SchemaVersion::new(2, 0), SchemaVersion::new(0, 9)] {
        let mut e = envelope(ALICE, &Request::Begin);
        e.schema_version = version;
        // Garbage payload: the version error must win.
        e.payload = MessagePayload::from_bytes(vec![0xff; 8]).unwrap();
        match answer(&mut s, &e) {
            Err(StorageError::SchemaMismatch(SchemaMismatchError::Unsupported {
                service,
                received,
                ..
            })) => {
                assert_eq!(service, STORAGE);
                assert_eq!(received, version);
            }
            other => panic!("{version}: {other:?}"),
        }
    }
    let mut newer_minor = envelope(ALICE, &Request::Begin);
    newer_minor.schema_version = SchemaVersion::new(1, 7);
    assert!(matches!(
        answer(&mut s, &newer_minor),
        Ok(Reply::Begun { .. })
    ));
}

fn begin(s: &mut StorageServer<Shared>, who: u64) -> TxId {
    match ask(s, who, Request::Begin) {
        Ok(Reply::Begun { tx, .. }) => tx,
        other => panic!("begin: {other:?}"),
    }
}

#[test]
fn interactive_transactions_conflict_first_committer_wins() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    let log = create(&mut s, ObjectKind::Log);
    let t1 = begin(&mut s, ALICE);
    let t2 = begin(&mut s, BOB);
    ask(
        &mut s,
        ALICE,
        Request::Op {
            tx: t1,
            op: put(&map, b"a", b"1"),
        },
    )
    .unwrap();
    let append = Op::Append {
        cap: log.clone(),
        record: b"bob".to_vec(),
    };
    ask(&mut s, BOB, Request::Op { tx: t2, op: append }).unwrap();
    ask(
        &mut s,
        BOB,
        Request::Op {
            tx: t2,
            op: put(&map, b"b", b"2"),
        },
    )
    .unwrap();
    // Bob cannot touch Alice's transaction.
    assert_eq!(
        ask(&mut s, BOB, Request::Commit { tx: t1 }),
        Err(StorageError::NotActive(t1))
    );
    assert!(matches!(
        ask(&mut s, ALICE, Request::Commit { tx: t1 }),
        Ok(Reply::Committed { .. })
    ));
    assert_eq!(
        ask(&mut s, BOB, Request::Commit { tx: t2 }),
        Err(StorageError::Conflict {
            object: map.object()
        })
    );
    // Nothing of Bob's transaction is visible: not the put, not the append.
    assert_eq!(value(one(&mut s, ALICE, get(&map, b"b"))), None);
    let read = Op::ReadLog {
        cap: log.clone(),
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, read),
        Ok(OpResult::Records { total: 0, .. })
    ));
    // A finished transaction accepts nothing more.
    assert_eq!(
        ask(
            &mut s,
            ALICE,
            Request::Op {
                tx: t1,
                op: put(&map, b"c", b"3")
            }
        ),
        Err(StorageError::NotActive(t1))
    );
    assert_eq!(
        ask(&mut s, BOB, Request::Rollback { tx: t2 }),
        Err(StorageError::NotActive(t2))
    );
}

#[test]
fn a_repeated_request_is_answered_not_executed_again() {
    let b = backend(1);
    let mut s = server(&b);
    let log = create(&mut s, ObjectKind::Log);
    let append = envelope(
        ALICE,
        &Request::Transact {
            ops: vec![Op::Append {
                cap: log.clone(),
                record: b"once".to_vec(),
            }],
        },
    );
    let first = answer(&mut s, &append);
    let second = answer(&mut s, &append);
    assert_eq!(first, second);
    let read = Op::ReadLog {
        cap: log.clone(),
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, read),
        Ok(OpResult::Records { total: 1, .. })
    ));
    // The same id from another task is another request.
    let mut from_bob = append.clone();
    from_bob.source = Some(TaskId::from_raw(BOB));
    answer(&mut s, &from_bob).unwrap();
    let read = Op::ReadLog {
        cap: log,
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, read),
        Ok(OpResult::Records { total: 2, .. })
    ));
}

#[test]
fn revocation_voids_old_tokens_and_needs_control() {
    let b = backend(1);
    let mut s = server(&b);
    let cap = create(&mut s, ObjectKind::Map);
    let rw = attenuate(&mut s, &cap, Rights::READ | Rights::WRITE);
    assert!(matches!(
        ask(&mut s, BOB, Request::Revoke { cap: rw.clone() }),
        Err(StorageError::MissingRights { .. })
    ));
    let fresh = match ask(&mut s, ALICE, Request::Revoke { cap: cap.clone() }) {
        Ok(Reply::Cap(c)) => c,
        other => panic!("{other:?}"),
    };
    for old in [&cap, &rw] {
        assert_eq!(
            one(&mut s, BOB, get(old, b"k")),
            Err(StorageError::InvalidCapability(cap.object()))
        );
    }
    assert_eq!(value(one(&mut s, ALICE, get(&fresh, b"k"))), None);
}

#[test]
fn capabilities_survive_a_restart_on_the_same_backend_only() {
    let b = backend(1);
    let (cap, ro) = {
        let mut s = server(&b);
        let cap = create(&mut s, ObjectKind::Map);
        one(&mut s, ALICE, put(&cap, b"k", b"v")).unwrap();
        let ro = attenuate(&mut s, &cap, Rights::READ);
        (cap, ro)
    };
    let mut s = StorageServer::open(b.clone()).unwrap().0;
    assert_eq!(value(one(&mut s, BOB, get(&ro, b"k"))), Some(b"v".to_vec()));
    assert!(matches!(
        one(&mut s, BOB, put(&ro, b"k", b"x")),
        Err(StorageError::MissingRights { .. })
    ));
    one(&mut s, ALICE, put(&cap, b"k", b"w")).unwrap();
    // A backend with another key (another disk) accepts none of them.
    let other = backend(2);
    let mut s2 = server(&other);
    create(&mut s2, ObjectKind::Map);
    assert_eq!(
        one(&mut s2, ALICE, get(&cap, b"k")),
        Err(StorageError::InvalidCapability(cap.object()))
    );
}

#[test]
fn a_restart_mid_transaction_applies_nothing_of_it() {
    let b = backend(1);
    let (map, log, tx) = {
        let mut s = server(&b);
        let map = create(&mut s, ObjectKind::Map);
        let log = create(&mut s, ObjectKind::Log);
        let tx = begin(&mut s, ALICE);
        ask(
            &mut s,
            ALICE,
            Request::Op {
                tx,
                op: put(&map, b"k", b"v"),
            },
        )
        .unwrap();
        let append = Op::Append {
            cap: log.clone(),
            record: b"r".to_vec(),
        };
        ask(&mut s, ALICE, Request::Op { tx, op: append }).unwrap();
        (map, log, tx)
        // The server is dropped here: the storage task died between begin
        // and commit.
    };
    let mut s = StorageServer::open(b.clone()).unwrap().0;
    assert_eq!(
        ask(&mut s, ALICE, Request::Commit { tx }),
        Err(StorageError::NotActive(tx))
    );
    assert_eq!(value(one(&mut s, ALICE, get(&map, b"k"))), None);
    let read = Op::ReadLog {
        cap: log,
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, read),
        Ok(OpResult::Records { total: 0, .. })
    ));
    // A new transaction never reuses the dead instance's id.
    assert_ne!(begin(&mut s, ALICE), tx);
}

#[test]
fn a_crash_while_writing_the_commit_applies_nothing_of_it() {
    let b = backend(1);
    let (map, log) = {
        let mut s = server(&b);
        let map = create(&mut s, ObjectKind::Map);
        let log = create(&mut s, ObjectKind::Log);
        b.borrow_mut().inject(ApplyFault::TornWrite { keep: 17 });
        let ops = vec![
            put(&map, b"k", b"v"),
            Op::Append {
                cap: log.clone(),
                record: b"r".to_vec(),
            },
        ];
        assert_eq!(
            ask(&mut s, ALICE, Request::Transact { ops }),
            Err(StorageError::Backend(BackendError::Crashed))
        );
        (map, log)
    };
    let (mut s, report) = StorageServer::open(b.clone()).unwrap();
    assert_eq!(report.discarded_bytes, 17);
    assert_eq!(value(one(&mut s, ALICE, get(&map, b"k"))), None);
    let read = Op::ReadLog {
        cap: log,
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, read),
        Ok(OpResult::Records { total: 0, .. })
    ));
}

#[test]
fn a_transact_whose_answer_would_not_fit_commits_nothing() {
    let b = backend(1);
    let mut s = server(&b);
    let log = create(&mut s, ObjectKind::Log);
    let record = vec![1u8; limits::MAX_VALUE_BYTES];
    for _ in 0..2 {
        let op = Op::Append {
            cap: log.clone(),
            record: record.clone(),
        };
        one(&mut s, ALICE, op).unwrap();
    }
    let read = |start| Op::ReadLog {
        cap: log.clone(),
        at: None,
        start,
        max: 1,
    };
    let ops = vec![
        read(0),
        read(1),
        Op::Append {
            cap: log.clone(),
            record: b"x".to_vec(),
        },
    ];
    assert_eq!(
        ask(&mut s, ALICE, Request::Transact { ops }),
        Err(StorageError::ReplyTooLarge)
    );
    assert!(matches!(
        one(&mut s, ALICE, read(0)),
        Ok(OpResult::Records { total: 2, .. })
    ));
}

#[test]
fn idle_transactions_expire() {
    let b = backend(1);
    let mut s = server(&b).with_tx_timeout(Duration::from_secs(1));
    let map = create(&mut s, ObjectKind::Map);
    let tx = begin(&mut s, ALICE);
    let late = Instant::from_nanos(5_000_000_000);
    let e = envelope(
        ALICE,
        &Request::Op {
            tx,
            op: put(&map, b"k", b"v"),
        },
    );
    let reply: Response = s.respond(&e, late).payload.decode().unwrap();
    assert_eq!(reply, Err(StorageError::NotActive(tx)));
    assert_eq!(s.store().active_transactions(), 0);
}

#[test]
fn versions_are_listed_and_old_ones_read() {
    let b = backend(1);
    let mut s = server(&b);
    let blob = create(&mut s, ObjectKind::Blob);
    let write = |bytes: &[u8]| Op::WriteBlob {
        cap: blob.clone(),
        bytes: bytes.to_vec(),
    };
    let v1 = match one(&mut s, ALICE, write(b"one")) {
        Ok(OpResult::Written(v)) => v,
        other => panic!("{other:?}"),
    };
    one(&mut s, ALICE, write(b"two")).unwrap();
    let versions = match ask(
        &mut s,
        ALICE,
        Request::Versions {
            cap: blob.clone(),
            after: None,
            limit: 10,
        },
    ) {
        Ok(Reply::Versions(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[1], v1);
    let read = Op::ReadBlob {
        cap: blob.clone(),
        at: Some(v1),
        offset: 0,
        max_len: 100,
    };
    assert!(
        matches!(one(&mut s, ALICE, read), Ok(OpResult::Blob { ref bytes, .. }) if bytes == b"one")
    );
}

#[test]
fn a_committed_request_resent_after_a_restart_is_answered_not_repeated() {
    let b = backend(1);
    let mut s = server(&b);
    let log = create(&mut s, ObjectKind::Log);
    // Each of these commits, and its answer is lost with the instance.
    let create_req = envelope(
        ALICE,
        &Request::Create {
            kind: ObjectKind::Map,
        },
    );
    let append_req = envelope(
        ALICE,
        &Request::Transact {
            ops: vec![Op::Append {
                cap: log.clone(),
                record: b"once".to_vec(),
            }],
        },
    );
    let tx = begin(&mut s, ALICE);
    let op = Op::Append {
        cap: log.clone(),
        record: b"in tx".to_vec(),
    };
    ask(&mut s, ALICE, Request::Op { tx, op }).unwrap();
    let commit_req = envelope(ALICE, &Request::Commit { tx });
    let revoke_req = envelope(ALICE, &Request::Revoke { cap: log.clone() });
    let requests = [&create_req, &commit_req, &append_req, &revoke_req];
    let first: Vec<Response> = requests.iter().map(|r| answer(&mut s, r)).collect();
    assert!(first.iter().all(Result::is_ok), "{first:?}");
    drop(s);

    let mut s = StorageServer::open(b.clone()).unwrap().0;
    let objects = s.store().object_count();
    let again: Vec<Response> = requests.iter().map(|r| answer(&mut s, r)).collect();
    assert_eq!(again, first);
    assert_eq!(s.store().object_count(), objects, "create ran twice");
    let fresh = match &first[3] {
        Ok(Reply::Cap(c)) => c.clone(),
        other => panic!("{other:?}"),
    };
    let read = Op::ReadLog {
        cap: fresh.clone(),
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, read),
        Ok(OpResult::Records { total: 2, .. })
    ));
    // The same message id from another task is another request.
    let mut from_bob = append_req.clone();
    from_bob.source = Some(TaskId::from_raw(BOB));
    assert!(matches!(
        answer(&mut s, &from_bob),
        Err(StorageError::InvalidCapability(_))
    ));
}
