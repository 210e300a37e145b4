use alloc::rc::Rc;
use alloc::string::ToString;
use alloc::vec;
use core::cell::RefCell;
use pandagen_abi::{SchemaMismatchError, SchemaVersion, TaskId};

use super::*;
use crate::backend::BackendError;
use crate::cap::{ObjectToken, OBJECT_RIGHTS};
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

/// The stamp the kernel puts on a request sent through a capability minted
/// for `grant` and attenuated to `rights`.
fn stamp(grant: &ObjectGrant, rights: Rights) -> Option<Badge> {
    Some(Badge {
        value: grant.badge().encode().unwrap(),
        rights: grant.rights.attenuate(rights),
    })
}

fn full(grant: &ObjectGrant) -> Option<Badge> {
    stamp(grant, Rights::ALL)
}

fn answer_via(
    s: &mut StorageServer<Shared>,
    request: &MessageEnvelope,
    badge: Option<Badge>,
) -> Response {
    let answer = s.respond(request, badge, Instant::from_nanos(2));
    assert_eq!(answer.envelope.correlation_id, Some(request.id));
    assert_eq!(answer.envelope.action, actions::REPLY);
    let response: Response = answer.response().unwrap();
    assert_eq!(
        answer.grant,
        response.as_ref().ok().and_then(Reply::grant),
        "the answer's grant is the reply's"
    );
    response
}

fn answer(s: &mut StorageServer<Shared>, request: &MessageEnvelope) -> Response {
    answer_via(s, request, None)
}

fn ask(s: &mut StorageServer<Shared>, source: u64, request: Request) -> Response {
    answer(s, &envelope(source, &request))
}

fn ask_via(
    s: &mut StorageServer<Shared>,
    source: u64,
    badge: Option<Badge>,
    request: Request,
) -> Response {
    answer_via(s, &envelope(source, &request), badge)
}

fn create(s: &mut StorageServer<Shared>, kind: ObjectKind) -> ObjectGrant {
    match ask(s, ALICE, Request::Create { kind }) {
        Ok(Reply::Created { grant, .. }) => grant,
        other => panic!("create: {other:?}"),
    }
}

fn one(
    s: &mut StorageServer<Shared>,
    source: u64,
    badge: Option<Badge>,
    op: Op,
) -> Result<OpResult, StorageError> {
    match ask_via(s, source, badge, Request::Transact { ops: vec![op] })? {
        Reply::Transacted { mut results, .. } => Ok(results.pop().unwrap()),
        other => panic!("transact: {other:?}"),
    }
}

fn put(key: &[u8], value: &[u8]) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn get(key: &[u8]) -> Op {
    Op::Get {
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

#[test]
fn create_grants_a_full_capability_that_reads_and_writes() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    assert_eq!(map.rights, OBJECT_CAP_RIGHTS);
    assert_eq!(map.epoch, 0);
    assert!(matches!(
        one(&mut s, ALICE, full(&map), put(b"k", b"v")),
        Ok(OpResult::Written(_))
    ));
    assert_eq!(
        value(one(&mut s, ALICE, full(&map), get(b"k"))),
        Some(b"v".to_vec())
    );
}

#[test]
fn a_read_only_stamp_reads_but_cannot_write() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    one(&mut s, ALICE, full(&map), put(b"k", b"v")).unwrap();
    let ro = stamp(&map, Rights::READ);
    assert_eq!(value(one(&mut s, BOB, ro, get(b"k"))), Some(b"v".to_vec()));
    assert_eq!(
        one(&mut s, BOB, ro, put(b"k", b"evil")),
        Err(StorageError::MissingRights {
            object: map.object,
            required: Rights::WRITE,
            held: Rights::READ
        })
    );
    // A transaction's rights are checked for every op before any runs.
    assert!(matches!(
        ask_via(
            &mut s,
            BOB,
            ro,
            Request::Transact {
                ops: vec![get(b"k"), put(b"k", b"evil")]
            }
        ),
        Err(StorageError::MissingRights { .. })
    ));
    assert_eq!(
        value(one(&mut s, ALICE, full(&map), get(b"k"))),
        Some(b"v".to_vec())
    );
}

#[test]
fn object_requests_need_a_capability_for_a_live_object() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    // On the service channel (no stamp), an object request is refused.
    assert_eq!(
        ask(
            &mut s,
            BOB,
            Request::Transact {
                ops: vec![get(b"k")]
            }
        ),
        Err(StorageError::CapabilityRequired)
    );
    let unstamped = [
        Request::Versions {
            after: None,
            limit: 1,
        },
        Request::Revoke,
        Request::Export,
    ];
    for request in unstamped {
        assert_eq!(
            ask(&mut s, BOB, request),
            Err(StorageError::CapabilityRequired)
        );
    }
    // A badge naming no object (the service never minted one, but the
    // server does not rely on that).
    let ghost = ObjectGrant {
        object: ObjectId::from_raw(999),
        epoch: 0,
        rights: OBJECT_CAP_RIGHTS,
    };
    assert_eq!(
        one(&mut s, BOB, full(&ghost), get(b"k")),
        Err(StorageError::UnknownObject(ObjectId::from_raw(999)))
    );
    // A badge under a future epoch is not current either.
    let future = ObjectGrant { epoch: 1, ..map };
    assert_eq!(
        one(&mut s, BOB, full(&future), get(b"k")),
        Err(StorageError::InvalidCapability(map.object))
    );
}

#[test]
fn each_bad_request_gets_its_own_typed_error() {
    let b = backend(1);
    let mut s = server(&b);
    let log = create(&mut s, ObjectKind::Log);
    let map = create(&mut s, ObjectKind::Map);
    assert_eq!(
        one(&mut s, ALICE, full(&log), put(b"k", b"v")),
        Err(StorageError::WrongKind {
            object: log.object,
            expected: ObjectKind::Map,
            found: ObjectKind::Log
        })
    );
    let big = vec![0u8; limits::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        one(&mut s, ALICE, full(&map), put(b"k", &big)),
        Err(StorageError::ValueTooLarge { .. })
    ));
    // Malformed payload.
    let mut bad = envelope(ALICE, &Request::Begin);
    bad.payload = MessagePayload::from_bytes(vec![0xff, 0xff, 0xff]).unwrap();
    assert_eq!(answer(&mut s, &bad), Err(StorageError::MalformedPayload));
    // An operation of a newer version (`Op` variant 99 of `Request::Op`,
    // variant 2) is an unknown action, not a broken payload.
    let mut newer = envelope(ALICE, &Request::Begin);
    newer.action = actions::OP.to_string();
    newer.payload = MessagePayload::from_bytes(vec![2, 1, 99]).unwrap();
    assert_eq!(answer(&mut s, &newer), Err(StorageError::UnknownAction));
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
    let ops = vec![get(b"k"); limits::MAX_OPS_PER_REQUEST + 1];
    assert!(matches!(
        ask_via(&mut s, ALICE, full(&map), Request::Transact { ops }),
        Err(StorageError::TooManyOps { .. })
    ));
}

#[test]
fn the_schema_version_is_checked_before_decoding() {
    let b = backend(1);
    let mut s = server(&b);
    // v1 (bearer tokens in the payload) is refused like any other version
    // outside the window.
    for version in [
        SchemaVersion::new(3, 0),
        SchemaVersion::new(1, 0),
        SchemaVersion::new(0, 9),
    ] {
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
    newer_minor.schema_version = SchemaVersion::new(2, 7);
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

fn op_in(
    s: &mut StorageServer<Shared>,
    who: u64,
    tx: TxId,
    badge: Option<Badge>,
    op: Op,
) -> Response {
    ask_via(s, who, badge, Request::Op { tx, op })
}

#[test]
fn interactive_transactions_conflict_first_committer_wins() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    let log = create(&mut s, ObjectKind::Log);
    let t1 = begin(&mut s, ALICE);
    let t2 = begin(&mut s, BOB);
    op_in(&mut s, ALICE, t1, full(&map), put(b"a", b"1")).unwrap();
    let append = Op::Append {
        record: b"bob".to_vec(),
    };
    op_in(&mut s, BOB, t2, full(&log), append).unwrap();
    op_in(&mut s, BOB, t2, full(&map), put(b"b", b"2")).unwrap();
    // An op in a transaction still needs the object's capability.
    assert_eq!(
        ask(
            &mut s,
            BOB,
            Request::Op {
                tx: t2,
                op: put(b"c", b"3")
            }
        ),
        Err(StorageError::CapabilityRequired)
    );
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
        Err(StorageError::Conflict { object: map.object })
    );
    // Nothing of Bob's transaction is visible: not the put, not the append.
    assert_eq!(value(one(&mut s, ALICE, full(&map), get(b"b"))), None);
    let read = Op::ReadLog {
        at: None,
        start: 0,
        max: 10,
    };
    assert!(matches!(
        one(&mut s, ALICE, full(&log), read),
        Ok(OpResult::Records { total: 0, .. })
    ));
    // A finished transaction accepts nothing more.
    assert_eq!(
        op_in(&mut s, ALICE, t1, full(&map), put(b"c", b"3")),
        Err(StorageError::NotActive(t1))
    );
    assert_eq!(
        ask(&mut s, BOB, Request::Rollback { tx: t2 }),
        Err(StorageError::NotActive(t2))
    );
}

fn read_all() -> Op {
    Op::ReadLog {
        at: None,
        start: 0,
        max: 10,
    }
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
                record: b"once".to_vec(),
            }],
        },
    );
    let first = answer_via(&mut s, &append, full(&log));
    let second = answer_via(&mut s, &append, full(&log));
    assert_eq!(first, second);
    assert!(matches!(
        one(&mut s, ALICE, full(&log), read_all()),
        Ok(OpResult::Records { total: 1, .. })
    ));
    // The same id from another task is another request.
    let mut from_bob = append.clone();
    from_bob.source = Some(TaskId::from_raw(BOB));
    answer_via(&mut s, &from_bob, full(&log)).unwrap();
    assert!(matches!(
        one(&mut s, ALICE, full(&log), read_all()),
        Ok(OpResult::Records { total: 2, .. })
    ));
}

#[test]
fn revocation_voids_old_capabilities_and_needs_control() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    let rw = stamp(&map, Rights::READ | Rights::WRITE);
    assert!(matches!(
        ask_via(&mut s, BOB, rw, Request::Revoke),
        Err(StorageError::MissingRights { .. })
    ));
    let fresh = match ask_via(&mut s, ALICE, full(&map), Request::Revoke) {
        Ok(Reply::Cap(grant)) => grant,
        other => panic!("{other:?}"),
    };
    assert_eq!(fresh.object, map.object);
    assert_eq!(fresh.epoch, 1);
    assert_eq!(fresh.rights, OBJECT_CAP_RIGHTS);
    for old in [full(&map), rw] {
        assert_eq!(
            one(&mut s, BOB, old, get(b"k")),
            Err(StorageError::InvalidCapability(map.object))
        );
    }
    assert_eq!(value(one(&mut s, ALICE, full(&fresh), get(b"k"))), None);
}

fn export(s: &mut StorageServer<Shared>, badge: Option<Badge>) -> ObjectToken {
    match ask_via(s, ALICE, badge, Request::Export) {
        Ok(Reply::Token(token)) => token,
        other => panic!("export: {other:?}"),
    }
}

fn import(s: &mut StorageServer<Shared>, token: &ObjectToken) -> Response {
    ask(
        s,
        BOB,
        Request::Import {
            token: token.clone(),
        },
    )
}

#[test]
fn exported_tokens_import_with_their_rights_and_forgeries_do_not() {
    let b = backend(1);
    let mut s = server(&b);
    let map = create(&mut s, ObjectKind::Map);
    // Exporting makes a copyable token: it needs GRANT.
    assert!(matches!(
        ask_via(&mut s, ALICE, stamp(&map, Rights::READ), Request::Export),
        Err(StorageError::MissingRights { .. })
    ));
    let ro = export(&mut s, stamp(&map, Rights::READ | Rights::GRANT));
    assert_eq!(ro.rights(), Rights::READ | Rights::GRANT);
    match import(&mut s, &ro) {
        Ok(Reply::Cap(grant)) => {
            let rights = ro.rights() | Rights::TRANSFER;
            assert_eq!(grant, ObjectGrant { rights, ..map });
        }
        other => panic!("import: {other:?}"),
    }
    let amplified = ObjectToken::from_parts(ro.object(), OBJECT_CAP_RIGHTS, ro.tag());
    assert_eq!(
        import(&mut s, &amplified),
        Err(StorageError::InvalidCapability(map.object))
    );
    let other = create(&mut s, ObjectKind::Map);
    let retargeted = ObjectToken::from_parts(other.object, ro.rights(), ro.tag());
    assert_eq!(
        import(&mut s, &retargeted),
        Err(StorageError::InvalidCapability(other.object))
    );
    let ghost = ObjectToken::from_parts(ObjectId::from_raw(999), OBJECT_RIGHTS, 0);
    assert_eq!(
        import(&mut s, &ghost),
        Err(StorageError::UnknownObject(ObjectId::from_raw(999)))
    );
    // A revocation voids tokens too.
    ask_via(&mut s, ALICE, full(&map), Request::Revoke).unwrap();
    assert_eq!(
        import(&mut s, &ro),
        Err(StorageError::InvalidCapability(map.object))
    );
}

#[test]
fn capabilities_and_tokens_survive_a_restart_on_the_same_backend_only() {
    let b = backend(1);
    let (map, token) = {
        let mut s = server(&b);
        let map = create(&mut s, ObjectKind::Map);
        one(&mut s, ALICE, full(&map), put(b"k", b"v")).unwrap();
        let token = export(&mut s, stamp(&map, Rights::READ | Rights::GRANT));
        (map, token)
    };
    let mut s = StorageServer::open(b.clone()).unwrap().0;
    let ro = stamp(&map, Rights::READ);
    assert_eq!(value(one(&mut s, BOB, ro, get(b"k"))), Some(b"v".to_vec()));
    assert!(matches!(
        one(&mut s, BOB, ro, put(b"k", b"x")),
        Err(StorageError::MissingRights { .. })
    ));
    one(&mut s, ALICE, full(&map), put(b"k", b"w")).unwrap();
    assert!(matches!(import(&mut s, &token), Ok(Reply::Cap(_))));
    // A backend with another key (another disk) accepts no token of this one.
    let other = backend(2);
    let mut s2 = server(&other);
    create(&mut s2, ObjectKind::Map);
    assert_eq!(
        import(&mut s2, &token),
        Err(StorageError::InvalidCapability(map.object))
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
        op_in(&mut s, ALICE, tx, full(&map), put(b"k", b"v")).unwrap();
        let append = Op::Append {
            record: b"r".to_vec(),
        };
        op_in(&mut s, ALICE, tx, full(&log), append).unwrap();
        (map, log, tx)
        // The server is dropped here: the storage task died between begin
        // and commit.
    };
    let mut s = StorageServer::open(b.clone()).unwrap().0;
    assert_eq!(
        ask(&mut s, ALICE, Request::Commit { tx }),
        Err(StorageError::NotActive(tx))
    );
    assert_eq!(value(one(&mut s, ALICE, full(&map), get(b"k"))), None);
    assert!(matches!(
        one(&mut s, ALICE, full(&log), read_all()),
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
        let tx = begin(&mut s, ALICE);
        op_in(&mut s, ALICE, tx, full(&map), put(b"k", b"v")).unwrap();
        let append = Op::Append {
            record: b"r".to_vec(),
        };
        op_in(&mut s, ALICE, tx, full(&log), append).unwrap();
        b.borrow_mut().inject(ApplyFault::TornWrite { keep: 17 });
        assert_eq!(
            ask(&mut s, ALICE, Request::Commit { tx }),
            Err(StorageError::Backend(BackendError::Crashed))
        );
        (map, log)
    };
    let (mut s, report) = StorageServer::open(b.clone()).unwrap();
    assert_eq!(report.discarded_bytes, 17);
    assert_eq!(value(one(&mut s, ALICE, full(&map), get(b"k"))), None);
    assert!(matches!(
        one(&mut s, ALICE, full(&log), read_all()),
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
            record: record.clone(),
        };
        one(&mut s, ALICE, full(&log), op).unwrap();
    }
    let read = |start| Op::ReadLog {
        at: None,
        start,
        max: 1,
    };
    let ops = vec![
        read(0),
        read(1),
        Op::Append {
            record: b"x".to_vec(),
        },
    ];
    assert_eq!(
        ask_via(&mut s, ALICE, full(&log), Request::Transact { ops }),
        Err(StorageError::ReplyTooLarge)
    );
    assert!(matches!(
        one(&mut s, ALICE, full(&log), read(0)),
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
            op: put(b"k", b"v"),
        },
    );
    let reply: Response = s.respond(&e, full(&map), late).response().unwrap();
    assert_eq!(reply, Err(StorageError::NotActive(tx)));
    assert_eq!(s.store().active_transactions(), 0);
}

#[test]
fn an_idle_transaction_expires_at_whatever_request_comes_next() {
    let late = Instant::from_nanos(5_000_000_000);
    // A one-operation put by its own path, and a commit: neither needs the
    // clock for itself, but an open transaction makes every request read
    // it and roll back what has been idle too long.
    let one_op_put = |s: &mut StorageServer<Shared>, map: &ObjectGrant| {
        let e = envelope(
            BOB,
            &Request::Transact {
                ops: vec![put(b"other", b"v")],
            },
        );
        let reply: Response = s.respond(&e, full(map), late).response().unwrap();
        assert!(reply.is_ok(), "{reply:?}");
    };
    for by_put in [true, false] {
        let b = backend(1);
        let mut s = server(&b).with_tx_timeout(Duration::from_secs(1));
        let map = create(&mut s, ObjectKind::Map);
        let tx = begin(&mut s, ALICE);
        if by_put {
            one_op_put(&mut s, &map);
            assert_eq!(s.store().active_transactions(), 0);
        }
        let e = envelope(ALICE, &Request::Commit { tx });
        let reply: Response = s.respond(&e, None, late).response().unwrap();
        assert_eq!(reply, Err(StorageError::NotActive(tx)), "by_put: {by_put}");
        assert_eq!(s.store().active_transactions(), 0);
    }
}

#[test]
fn versions_are_listed_and_old_ones_read() {
    let b = backend(1);
    let mut s = server(&b);
    let blob = create(&mut s, ObjectKind::Blob);
    let write = |bytes: &[u8]| Op::WriteBlob {
        bytes: bytes.to_vec(),
    };
    let v1 = match one(&mut s, ALICE, full(&blob), write(b"one")) {
        Ok(OpResult::Written(v)) => v,
        other => panic!("{other:?}"),
    };
    one(&mut s, ALICE, full(&blob), write(b"two")).unwrap();
    let request = Request::Versions {
        after: None,
        limit: 10,
    };
    let versions = match ask_via(&mut s, ALICE, stamp(&blob, Rights::READ), request) {
        Ok(Reply::Versions(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[1], v1);
    let read = Op::ReadBlob {
        at: Some(v1),
        offset: 0,
        max_len: 100,
    };
    assert!(
        matches!(one(&mut s, ALICE, full(&blob), read), Ok(OpResult::Blob { ref bytes, .. }) if bytes == b"one")
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
                record: b"once".to_vec(),
            }],
        },
    );
    let tx = begin(&mut s, ALICE);
    let op = Op::Append {
        record: b"in tx".to_vec(),
    };
    op_in(&mut s, ALICE, tx, full(&log), op).unwrap();
    let commit_req = envelope(ALICE, &Request::Commit { tx });
    let revoke_req = envelope(ALICE, &Request::Revoke);
    let requests = [
        (&create_req, None),
        (&commit_req, None),
        (&append_req, full(&log)),
        (&revoke_req, full(&log)),
    ];
    let first: Vec<Answer> = requests
        .iter()
        .map(|(r, badge)| s.respond(r, *badge, Instant::from_nanos(2)))
        .collect();
    assert!(
        first.iter().all(|a| matches!(a.response(), Ok(Ok(_)))),
        "{first:?}"
    );
    drop(s);

    let mut s = StorageServer::open(b.clone()).unwrap().0;
    let objects = s.store().object_count();
    // The answers come from the journal, capabilities to mint included —
    // so the re-sent revoke is not refused for its now-stale badge.
    let again: Vec<Answer> = requests
        .iter()
        .map(|(r, badge)| s.respond(r, *badge, Instant::from_nanos(3)))
        .collect();
    let outcome = |a: &Answer| (a.response().unwrap(), a.grant);
    assert_eq!(
        again.iter().map(outcome).collect::<Vec<_>>(),
        first.iter().map(outcome).collect::<Vec<_>>()
    );
    assert_eq!(s.store().object_count(), objects, "create ran twice");
    let fresh = first[3].grant.unwrap();
    assert_eq!(fresh.epoch, 1);
    assert!(matches!(
        one(&mut s, ALICE, full(&fresh), read_all()),
        Ok(OpResult::Records { total: 2, .. })
    ));
    // The same message id from another task is another request, and the
    // old badge is revoked.
    let mut from_bob = append_req.clone();
    from_bob.source = Some(TaskId::from_raw(BOB));
    assert!(matches!(
        answer_via(&mut s, &from_bob, full(&log)),
        Err(StorageError::InvalidCapability(_))
    ));
}

#[test]
fn a_request_of_a_later_boot_is_not_taken_for_a_retry_of_an_earlier_one() {
    let b = backend(1);
    let request = envelope(
        ALICE,
        &Request::Create {
            kind: ObjectKind::Map,
        },
    );
    let mut first_boot = server(&b).with_boot(7);
    let first = first_boot.respond(&request, None, Instant::from_nanos(1));
    // The same instance of the boot after a restart: a retry, answered.
    let mut restarted = server(&b).with_boot(7);
    let again = restarted.respond(&request, None, Instant::from_nanos(2));
    assert_eq!(again.response(), first.response());
    // The next boot: task and message ids start over, so the same ids are
    // a new request, executed anew.
    let mut next_boot = server(&b).with_boot(8);
    let fresh = next_boot.respond(&request, None, Instant::from_nanos(3));
    assert_ne!(fresh.response(), first.response());
    assert!(matches!(fresh.response(), Ok(Ok(Reply::Created { .. }))));
}

#[test]
fn the_home_map_is_the_first_map_at_every_start_and_never_grants() {
    let b = backend(1);
    let mut s = server(&b);
    create(&mut s, ObjectKind::Log);
    let home = match ask(&mut s, ALICE, Request::Home) {
        Ok(Reply::Cap(grant)) => grant,
        other => panic!("{other:?}"),
    };
    assert_eq!(home.rights, HOME_RIGHTS);
    assert!(!home.rights.contains(Rights::GRANT) && !home.rights.contains(Rights::CONTROL));
    one(
        &mut s,
        ALICE,
        stamp(&home, Rights::WRITE),
        put(b"greeting", b"hello"),
    )
    .unwrap();
    create(&mut s, ObjectKind::Map);
    let mut restarted = server(&b);
    let again = match ask(&mut restarted, BOB, Request::Home) {
        Ok(Reply::Cap(grant)) => grant,
        other => panic!("{other:?}"),
    };
    assert_eq!(again.object, home.object);
    assert_eq!(
        value(one(
            &mut restarted,
            BOB,
            stamp(&again, Rights::READ),
            get(b"greeting")
        )),
        Some(b"hello".to_vec())
    );
}

/// Three servers on twin backends: the first answers one-operation
/// `Transact`s of a put or a get by their own path, the second by the
/// general one, the third by their own path as `serve` sends them (see
/// [`served`]).
fn twins(limit: u64) -> [(Shared, StorageServer<Shared>); 3] {
    [false, true, false].map(|general_only| {
        let b = backend(1);
        let mut s = server(&b).with_memory_limit(limit);
        s.general_only = general_only;
        (b, s)
    })
}

/// A kernel for [`StorageServer::answer_and_wait`]: it records what the
/// server sends, mints object capabilities, drops any, and has no next
/// request (its receive fails, which ends the combined call).
#[derive(Default)]
struct Recorder {
    sent: Vec<(ChannelId, MessageEnvelope, usize)>,
    minted: u64,
}

impl KernelApi for Recorder {
    fn spawn_task(
        &mut self,
        _: pandagen_abi::TaskDescriptor,
    ) -> Result<pandagen_abi::TaskHandle, KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn create_channel(&mut self) -> Result<ChannelId, KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn send_with_capabilities(
        &mut self,
        channel: ChannelId,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.sent.push((channel, message, capabilities.len()));
        Ok(())
    }
    fn receive_with_capabilities(
        &mut self,
        _: ChannelId,
        _: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn now(&self) -> Instant {
        Instant::from_nanos(2)
    }
    fn sleep(&mut self, _: Duration) -> Result<(), KernelError> {
        Ok(())
    }
    fn grant_capability(&mut self, _: TaskId, _: Cap<()>) -> Result<(), KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn register_service(
        &mut self,
        _: pandagen_abi::ServiceId,
        _: ChannelId,
    ) -> Result<(), KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn lookup_service(&mut self, _: pandagen_abi::ServiceId) -> Result<ChannelId, KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn drop_capability(&mut self, _: Cap<()>) -> Result<(), KernelError> {
        Ok(())
    }
    fn clone_capability(&mut self, _: &Cap<()>, _: Rights) -> Result<Cap<()>, KernelError> {
        Err(KernelError::InvalidCapability)
    }
    fn mint_object_capability(
        &mut self,
        _: pandagen_abi::ServiceId,
        _: u64,
        _: Rights,
    ) -> Result<Cap<pandagen_abi::cap::kinds::StorageObject>, KernelError> {
        self.minted += 1;
        Ok(Cap::<()>::from_handle(CapHandle::from_raw(1000 + self.minted)).assume_kind())
    }
}

/// `request` answered as `serve` answers it (with a reply capability
/// attached, stamped with `badge`): the one message sent, on that
/// capability, without its fresh id, and how many capabilities it
/// carried.
fn served(
    server: &mut StorageServer<Shared>,
    request: &MessageEnvelope,
    badge: Option<Badge>,
) -> (MessageEnvelope, usize) {
    let reply = CapHandle::from_raw(900);
    let mut kernel = Recorder::default();
    let received = ReceivedMessage {
        envelope: request.clone(),
        capabilities: vec![Cap::from_handle(reply)],
        badge,
    };
    let channel = ChannelId::from_handle(CapHandle::from_raw(901));
    let next = server.answer_and_wait(&mut kernel, received, channel);
    assert!(!matches!(next, Some(Ok(_))), "{request:?}");
    assert_eq!(kernel.sent.len(), 1, "{request:?}");
    let (on, mut envelope, carried) = kernel.sent.pop().unwrap();
    assert_eq!(on.handle(), reply);
    envelope.id = MessageId::from_raw(0);
    (envelope, carried)
}

/// Send `request` to the three twins with `badge`; their answers must be
/// the same bytes, and so must their journals and their memory charge
/// after it. Returns the answer.
fn both(
    twins: &mut [(Shared, StorageServer<Shared>); 3],
    request: &MessageEnvelope,
    badge: Option<Badge>,
) -> Response {
    let [(fast_backend, fast), (general_backend, general), (served_backend, serving)] = twins;
    let (sent, carried) = served(serving, request, badge);
    let one_path = fast.respond(request, badge, Instant::from_nanos(2));
    let general_path = general.respond(request, badge, Instant::from_nanos(2));
    // Everything but the answer's own fresh message id.
    let unnumbered = |a: &Answer| {
        let mut e = a.envelope.clone();
        e.id = MessageId::from_raw(0);
        (e, a.grant)
    };
    assert_eq!(
        unnumbered(&one_path),
        unnumbered(&general_path),
        "{request:?}"
    );
    assert_eq!(
        fast_backend.borrow().journal_bytes(),
        general_backend.borrow().journal_bytes(),
        "{request:?}"
    );
    assert_eq!(fast.store().memory_used(), general.store().memory_used());
    // As sent by `serve`: the same answer, with the capability it grants.
    let (answer, grant) = unnumbered(&one_path);
    assert_eq!(sent, answer, "{request:?}");
    assert_eq!(carried, usize::from(grant.is_some()), "{request:?}");
    assert_eq!(
        fast_backend.borrow().journal_bytes(),
        served_backend.borrow().journal_bytes(),
        "{request:?}"
    );
    assert_eq!(fast.store().memory_used(), serving.store().memory_used());
    one_path.response().unwrap()
}

/// One-operation puts and gets take their own path: every answer, error
/// or not, every journal byte and the memory charge are those of the
/// general path, and so is the state after a restart on each journal.
#[test]
fn one_operation_puts_and_gets_answer_as_the_general_path() {
    // Room for the objects and a few puts only: the last puts are
    // refused for memory (and the version they took is used up).
    let mut t = twins(9_000);
    let make = |kind| envelope(ALICE, &Request::Create { kind });
    let map = match both(&mut t, &make(ObjectKind::Map), None) {
        Ok(Reply::Created { grant, .. }) => grant,
        other => panic!("{other:?}"),
    };
    let log = match both(&mut t, &make(ObjectKind::Log), None) {
        Ok(Reply::Created { grant, .. }) => grant,
        other => panic!("{other:?}"),
    };
    // As a client sends them: in a session (which a one-operation put or
    // get needs to be read in place).
    let transact = |who, op| {
        let request = Request::Transact { ops: vec![op] };
        let mut e = envelope(who, &request);
        let payload = crate::protocol::RequestPayloadRef {
            request: &request,
            session: Some(1),
        };
        e.payload = MessagePayload::new(&payload).unwrap();
        e
    };
    let at = |key: &[u8], version| Op::Get {
        key: key.to_vec(),
        at: Some(VersionId::from_raw(version)),
    };
    let long_key = [7u8; 20];
    let too_long_key = vec![1u8; limits::MAX_KEY_BYTES + 1];
    let too_big_value = vec![1u8; limits::MAX_VALUE_BYTES + 1];
    let ghost = ObjectGrant {
        object: ObjectId::from_raw(999),
        ..map
    };
    // Each step, and how its answer begins.
    let steps: Vec<(MessageEnvelope, Option<Badge>, &str)> = vec![
        (transact(ALICE, put(b"k", b"v1")), full(&map), "Ok(Transacted { results: [Written(VersionId(3))], versions: [(ObjectId(1), VersionId(3))]"),
        (transact(ALICE, put(b"", b"empty key")), full(&map), "Ok(Transacted { results: [Written(VersionId(4))]"),
        (transact(ALICE, put(&long_key, b"long")), full(&map), "Ok(Transacted { results: [Written(VersionId(5))]"),
        (transact(BOB, put(b"k", b"v2")), full(&map), "Ok(Transacted { results: [Written(VersionId(6))]"),
        (transact(ALICE, get(b"k")), full(&map), "Ok(Transacted { results: [Value { version: VersionId(6), value: Some([118, 50]) }], versions: [] })"),
        (transact(ALICE, get(&long_key)), full(&map), "Ok(Transacted { results: [Value { version: VersionId(6), value: Some([108, 111, 110, 103]) }]"),
        (transact(ALICE, get(b"missing")), full(&map), "Ok(Transacted { results: [Value { version: VersionId(6), value: None }]"),
        (transact(ALICE, at(b"k", 3)), full(&map), "Ok(Transacted { results: [Value { version: VersionId(3), value: Some([118, 49]) }]"),
        (transact(ALICE, at(b"k", 4)), full(&map), "Ok(Transacted { results: [Value { version: VersionId(4), value: Some([118, 49]) }]"),
        // A version of another object, and one that does not exist.
        (transact(ALICE, at(b"k", 2)), full(&map), "Err(UnknownVersion"),
        (transact(ALICE, at(b"k", 99)), full(&map), "Err(UnknownVersion"),
        (transact(ALICE, put(&too_long_key, b"v")), full(&map), "Err(KeyTooLarge"),
        (transact(ALICE, get(&too_long_key)), full(&map), "Err(KeyTooLarge"),
        (transact(ALICE, put(b"k", &too_big_value)), full(&map), "Err(ValueTooLarge"),
        (transact(ALICE, put(b"k", b"v")), full(&log), "Err(WrongKind"),
        (transact(ALICE, get(b"k")), full(&log), "Err(WrongKind"),
        (transact(ALICE, put(b"k", b"v")), full(&ghost), "Err(UnknownObject"),
        (transact(ALICE, get(b"k")), full(&ghost), "Err(UnknownObject"),
        (transact(BOB, put(b"k", b"v")), stamp(&map, Rights::READ), "Err(MissingRights"),
        (transact(BOB, get(b"k")), stamp(&map, Rights::WRITE), "Err(MissingRights"),
        (transact(BOB, get(b"k")), None, "Err(CapabilityRequired"),
    ];
    for (request, badge, expected) in &steps {
        let answer = alloc::format!("{:?}", both(&mut t, request, *badge));
        assert!(answer.starts_with(expected), "{answer}, not {expected}");
    }
    // A re-sent put is answered from its record, not run again.
    let (request, badge, _) = &steps[0];
    assert!(matches!(
        both(&mut t, request, *badge),
        Ok(Reply::Transacted { .. })
    ));
    // A re-sent get is run again (a read is not remembered): it sees a
    // later put.
    both(&mut t, &transact(BOB, put(b"k", b"v3")), full(&map)).unwrap();
    let (request, badge, _) = &steps[4];
    match both(&mut t, request, *badge) {
        Ok(Reply::Transacted { results, .. }) => assert_eq!(
            results[0],
            OpResult::Value {
                version: VersionId::from_raw(7),
                value: Some(b"v3".to_vec())
            }
        ),
        other => panic!("{other:?}"),
    }
    // A client with all its transactions open gets no more.
    for _ in 0..limits::MAX_TRANSACTIONS_PER_CLIENT {
        both(&mut t, &envelope(BOB, &Request::Begin), None).unwrap();
    }
    for op in [put(b"b", b"v"), get(b"k")] {
        assert!(matches!(
            both(&mut t, &transact(BOB, op), full(&map)),
            Err(StorageError::TooManyTransactions { .. })
        ));
    }
    // Open transactions hold all the pending bytes there may be.
    let tx = match both(&mut t, &envelope(ALICE, &Request::Begin), None) {
        Ok(Reply::Begun { tx, .. }) => tx,
        other => panic!("{other:?}"),
    };
    let chunk = vec![3u8; limits::MAX_VALUE_BYTES];
    let mut filled = 0;
    let mut n = 0u32;
    while filled + chunk.len() + 4 <= limits::MAX_PENDING_BYTES {
        let op = Request::Op {
            tx,
            op: put(&n.to_be_bytes(), &chunk),
        };
        both(&mut t, &envelope(ALICE, &op), full(&map)).unwrap();
        filled += chunk.len() + 4;
        n += 1;
    }
    let bulky = vec![5u8; limits::MAX_PENDING_BYTES - filled];
    assert!(matches!(
        both(&mut t, &transact(ALICE, put(b"p", &bulky)), full(&map)),
        Err(StorageError::PendingFull { .. })
    ));
    both(&mut t, &envelope(ALICE, &Request::Rollback { tx }), None).unwrap();
    // Puts until the memory limit refuses one, then one more refused.
    let mut refused = 0;
    for i in 0..64u32 {
        let request = transact(ALICE, put(&i.to_be_bytes(), b"sixteen byte val"));
        if let Err(e) = both(&mut t, &request, full(&map)) {
            assert!(matches!(e, StorageError::StoreFull { .. }), "{e:?}");
            refused += 1;
            if refused == 2 {
                break;
            }
        }
    }
    assert_eq!(refused, 2, "the memory limit was never reached");
    // The next transaction, version and object are the same on both.
    both(&mut t, &envelope(ALICE, &Request::Begin), None).unwrap();
    // After a restart on each journal, the same state answers the same
    // reads as before it.
    let reads: Vec<(MessageEnvelope, Option<Badge>)> = steps[4..11]
        .iter()
        .map(|(request, badge, _)| {
            let mut again = request.clone();
            again.id = MessageId::new();
            (again, *badge)
        })
        .collect();
    let before: Vec<Response> = reads.iter().map(|(r, b)| both(&mut t, r, *b)).collect();
    let [(fast_backend, fast), (general_backend, _), (served_backend, _)] = &t;
    let charged = fast.store().memory_used();
    let mut restarted = [fast_backend, general_backend, served_backend].map(|b| {
        let s = server(b).with_memory_limit(1 << 20);
        (b.clone(), s)
    });
    // Replay charges what the commits were charged.
    assert_eq!(restarted[0].1.store().memory_used(), charged);
    let after: Vec<Response> = reads
        .iter()
        .map(|(r, b)| both(&mut restarted, r, *b))
        .collect();
    assert_eq!(before, after);
    both(&mut restarted, &make(ObjectKind::Blob), None).unwrap();
}

/// An answer built in the request's place (its action string reused) is
/// the answer built beside it, but for its own fresh message id.
#[test]
fn an_answer_in_the_requests_place_is_the_same_answer() {
    let request = envelope(4, &Request::Info);
    let payload = MessagePayload::from_bytes(vec![0, 5, 1]).unwrap();
    let grant = Some(ObjectGrant {
        object: ObjectId::from_raw(3),
        epoch: 1,
        rights: Rights::READ,
    });
    let beside = Answer::new(&request, payload.clone(), grant);
    let mut replacing = Answer::replacing(request.clone(), payload, grant);
    assert_ne!(replacing.envelope.id, request.id);
    replacing.envelope.id = beside.envelope.id;
    assert_eq!(replacing, beside);
    assert_eq!(replacing.envelope.action, actions::REPLY);
    assert_eq!(replacing.envelope.correlation_id, Some(request.id));
}

/// A value stored under an older, larger value limit (written here straight
/// into the journal, as such a store would have) is read whole when its
/// answer fits in a message, and refused with `ReplyTooLarge` when it does
/// not: on the one-operation path exactly as on the general path.
#[test]
fn a_value_above_todays_limit_is_read_if_its_answer_fits_and_refused_if_not() {
    let mut t = twins(1 << 22);
    let map = match both(
        &mut t,
        &envelope(
            ALICE,
            &Request::Create {
                kind: ObjectKind::Map,
            },
        ),
        None,
    ) {
        Ok(Reply::Created { grant, .. }) => grant,
        other => panic!("{other:?}"),
    };
    let fits = vec![5u8; limits::MAX_VALUE_BYTES + 2_000];
    let too_big = vec![6u8; pandagen_abi::envelope::MAX_PAYLOAD_BYTES];
    for (backend, server_of_it) in t.iter_mut() {
        let mut seq = server_of_it.store().last_commit();
        for (n, (key, value)) in [(b"fits", &fits), (b"huge", &too_big)]
            .into_iter()
            .enumerate()
        {
            seq = seq.next();
            let update = crate::record::MapUpdate {
                seq,
                object: map.object,
                version: VersionId::from_raw(100 + n as u64),
                key,
                value: Some(value),
                origin: None,
            };
            backend.borrow_mut().apply_map_update(&update).unwrap();
        }
        let general_only = server_of_it.general_only;
        *server_of_it = server(backend).with_memory_limit(1 << 22);
        server_of_it.general_only = general_only;
    }
    let get_one = |key: &[u8]| {
        let request = Request::Transact {
            ops: vec![get(key)],
        };
        let mut e = envelope(ALICE, &request);
        let payload = crate::protocol::RequestPayloadRef {
            request: &request,
            session: Some(1),
        };
        e.payload = MessagePayload::new(&payload).unwrap();
        e
    };
    match both(&mut t, &get_one(b"fits"), full(&map)) {
        Ok(Reply::Transacted { results, .. }) => {
            assert_eq!(value(Ok(results.into_iter().next().unwrap())), Some(fits))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        both(&mut t, &get_one(b"huge"), full(&map)),
        Err(StorageError::ReplyTooLarge)
    );
}

/// The answer cache finds exactly what a map of every remembered answer
/// (less the evicted) finds, whatever the order of message ids and tasks:
/// a look-up past the largest id remembered skips the search, and must
/// never skip a remembered answer.
#[test]
fn the_answer_cache_skips_only_ids_past_every_remembered_one() {
    let mut cache = AnswerCache::default();
    let key = |task: u64, id: u64| (TaskId::from_raw(task), MessageId::from_raw(id));
    let payload = |byte: u8| MessagePayload::from_bytes(vec![byte]).unwrap();
    assert_eq!(cache.get(&key(1, 0)), None);
    cache.insert(key(1, 40), payload(1));
    // Another task's smaller id after a larger one: still found.
    cache.insert(key(2, 7), payload(2));
    assert_eq!(cache.get(&key(1, 40)), Some(&payload(1)));
    assert_eq!(cache.get(&key(2, 7)), Some(&payload(2)));
    assert_eq!(cache.get(&key(1, 41)), None);
    assert_eq!(cache.get(&key(2, 40)), None);
    cache.insert(key(3, u64::MAX), payload(3));
    assert_eq!(cache.get(&key(3, u64::MAX)), Some(&payload(3)));
    assert_eq!(cache.get(&key(1, 40)), Some(&payload(1)));
}

proptest::proptest! {
    #[test]
    fn the_answer_cache_is_a_bounded_map(
        steps in proptest::collection::vec((0u64..3, 0u64..200, proptest::bool::ANY), 0..300),
    ) {
        let mut cache = AnswerCache::default();
        let mut reference: alloc::collections::BTreeMap<(u64, u64), u8> = Default::default();
        let mut order = VecDeque::new();
        for (at, (task, id, insert)) in steps.into_iter().enumerate() {
            let key = (TaskId::from_raw(task), MessageId::from_raw(id));
            if insert {
                let byte = at as u8;
                cache.insert(key, MessagePayload::from_bytes(vec![byte]).unwrap());
                if reference.insert((task, id), byte).is_none() {
                    order.push_back((task, id));
                }
                while order.len() > ANSWER_CACHE {
                    let old = order.pop_front().unwrap();
                    reference.remove(&old);
                }
            }
            let expected = reference.get(&(task, id)).map(|b| vec![*b]);
            proptest::prop_assert_eq!(
                cache.get(&key).map(|p| p.as_bytes().to_vec()),
                expected
            );
        }
    }
}

proptest::proptest! {
    /// Whatever sessions open and close, a look-up finds what the map of
    /// open sessions holds: the one remembered from the last look-up is
    /// never stale.
    #[test]
    fn a_session_look_up_finds_what_the_sessions_hold(
        steps in proptest::collection::vec((0u8..3, 0u64..3, 0u32..3), 0..200),
    ) {
        let mut sessions = Sessions::default();
        for (at, (what, task, number)) in steps.into_iter().enumerate() {
            let key = (TaskId::from_raw(task), number);
            match what {
                0 => {
                    let reply = Cap::from_handle(CapHandle::from_raw(at as u64));
                    sessions.open(key, reply);
                }
                1 => {
                    sessions.close(&key);
                }
                _ => {}
            }
            for task in 0..3 {
                for number in 0..3 {
                    let key = (TaskId::from_raw(task), number);
                    proptest::prop_assert_eq!(
                        sessions.get(&key),
                        sessions.replies.get(&key).map(Cap::handle)
                    );
                }
            }
        }
    }
}
