use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use proptest::prelude::*;

use super::*;
use crate::memory::{ApplyFault, MemoryBackend};

type Shared = Rc<RefCell<MemoryBackend>>;

fn shared() -> Shared {
    Rc::new(RefCell::new(MemoryBackend::new([3; 16])))
}

fn store() -> ObjectStore<MemoryBackend> {
    ObjectStore::open(MemoryBackend::new([3; 16])).unwrap().0
}

fn reopen(backend: &Shared) -> ObjectStore<Shared> {
    ObjectStore::open(backend.clone()).unwrap().0
}

fn blob_bytes<B: StorageBackend>(
    s: &mut ObjectStore<B>,
    o: ObjectId,
    at: Option<VersionId>,
) -> Vec<u8> {
    let mut tx = s.begin_transaction().unwrap();
    let bytes = s.read_blob(&tx, o, at, 0, usize::MAX).unwrap().bytes;
    s.rollback(&mut tx).unwrap();
    bytes
}

#[test]
fn blob_writes_create_new_versions_and_old_ones_stay_readable() {
    let mut s = store();
    let (b, v0) = s.create(ObjectKind::Blob).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    let v1 = s.write(&mut tx, b, b"first").unwrap();
    s.commit(&mut tx).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    let v2 = s.write(&mut tx, b, b"second").unwrap();
    s.commit(&mut tx).unwrap();
    assert!(v0 < v1 && v1 < v2);
    assert_eq!(s.versions(b, None, 10).unwrap(), vec![v0, v1, v2]);
    assert_eq!(blob_bytes(&mut s, b, None), b"second");
    assert_eq!(blob_bytes(&mut s, b, Some(v1)), b"first");
    assert_eq!(blob_bytes(&mut s, b, Some(v0)), b"");
    assert_eq!(s.versions(b, Some(v0), 1).unwrap(), vec![v1]);
}

#[test]
fn blob_ranges_and_pieces() {
    let mut s = store();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.write_blob(&mut tx, b, b"hello ").unwrap();
    let v = s.extend_blob(&mut tx, b, b"world").unwrap();
    let read = s.read_blob(&tx, b, None, 6, 3).unwrap();
    assert_eq!(
        (read.version, read.total_len, &read.bytes[..]),
        (v, 11, &b"wor"[..])
    );
    s.commit(&mut tx).unwrap();
    // Extending in a later transaction starts from the committed content.
    let mut tx = s.begin_transaction().unwrap();
    s.extend_blob(&mut tx, b, b"!").unwrap();
    s.commit(&mut tx).unwrap();
    assert_eq!(blob_bytes(&mut s, b, None), b"hello world!");
    assert_eq!(blob_bytes(&mut s, b, Some(v)), b"hello world");
    let tx = s.begin_transaction().unwrap();
    assert_eq!(
        s.read_blob(&tx, b, None, 13, 1),
        Err(StorageError::InvalidRange)
    );
    assert_eq!(s.read_blob(&tx, b, None, 12, 1).unwrap().bytes, b"");
}

#[test]
fn log_is_append_only_and_read_by_ranges() {
    let mut s = store();
    let (l, _) = s.create(ObjectKind::Log).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    assert_eq!(s.append(&mut tx, l, b"a").unwrap().1, 0);
    let (v1, i) = s.append(&mut tx, l, b"b").unwrap();
    assert_eq!(i, 1);
    s.commit(&mut tx).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    // `write` on a log appends: it can never overwrite a record.
    let v2 = s.write(&mut tx, l, b"c").unwrap();
    // Read-your-writes: the pending record is visible to its transaction.
    let all = s.read_log(&tx, l, None, 0, 10).unwrap();
    assert_eq!(
        all.records,
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(all.version, v2);
    s.commit(&mut tx).unwrap();
    let tx = s.begin_transaction().unwrap();
    let mid = s.read_log(&tx, l, None, 1, 1).unwrap();
    assert_eq!(
        (mid.total, mid.start, mid.records.clone()),
        (3, 1, vec![b"b".to_vec()])
    );
    let old = s.read_log(&tx, l, Some(v1), 0, 10).unwrap();
    assert_eq!(old.records, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(old.total, 2);
    assert_eq!(
        s.read_log(&tx, l, None, 4, 1),
        Err(StorageError::InvalidRange)
    );
    assert_eq!(
        s.read_log(&tx, l, None, 0, 0),
        Err(StorageError::InvalidRange)
    );
}

#[test]
fn log_reads_are_bounded_but_always_progress() {
    let mut s = store();
    let (l, _) = s.create(ObjectKind::Log).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    for _ in 0..4 {
        s.append(&mut tx, l, &[7u8; limits::MAX_VALUE_BYTES])
            .unwrap();
    }
    s.commit(&mut tx).unwrap();
    let tx = s.begin_transaction().unwrap();
    let page = s.read_log(&tx, l, None, 0, 100).unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.total, 4);
}

#[test]
fn map_put_get_delete_list_with_versions() {
    let mut s = store();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, m, b"b", b"2").unwrap();
    let v1 = s.put(&mut tx, m, b"a", b"1").unwrap();
    s.commit(&mut tx).unwrap();

    let mut tx = s.begin_transaction().unwrap();
    let d = s.delete(&mut tx, m, b"a").unwrap();
    assert!(d.existed);
    s.put(&mut tx, m, b"c", b"3").unwrap();
    // The transaction sees its overlay merged with the snapshot.
    let keys = s.list(&tx, m, None, None, 10).unwrap();
    assert_eq!(keys.keys, vec![b"b".to_vec(), b"c".to_vec()]);
    let v2 = s.commit_versions(&mut tx).unwrap()[0].1;
    assert_eq!(v2, d.version);

    let mut tx = s.begin_transaction().unwrap();
    assert_eq!(s.get(&tx, m, b"a", None).unwrap().value, None);
    assert_eq!(
        s.get(&tx, m, b"a", Some(v1)).unwrap().value,
        Some(b"1".to_vec())
    );
    assert_eq!(s.get(&tx, m, b"c", Some(v1)).unwrap().value, None);
    let old = s.list(&tx, m, Some(v1), None, 10).unwrap();
    assert_eq!(old.keys, vec![b"a".to_vec(), b"b".to_vec()]);
    let page = s.list(&tx, m, None, Some(b"b"), 10).unwrap();
    assert_eq!((page.keys, page.more), (vec![b"c".to_vec()], false));
    let page = s.list(&tx, m, None, None, 1).unwrap();
    assert_eq!((page.keys, page.more), (vec![b"b".to_vec()], true));
    // Deleting an absent key is not a modification: no new version.
    let d = s.delete(&mut tx, m, b"zzz").unwrap();
    assert!(!d.existed);
    assert_eq!(d.version, v2);
    assert!(s.commit_versions(&mut tx).unwrap().is_empty());
    assert_eq!(s.versions(m, None, 10).unwrap().len(), 3);
}

#[test]
fn kinds_are_enforced() {
    let mut s = store();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let (l, _) = s.create(ObjectKind::Log).unwrap();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    let wrong = |object, expected, found| StorageError::WrongKind {
        object,
        expected,
        found,
    };
    assert_eq!(
        s.write(&mut tx, m, b"x"),
        Err(wrong(m, ObjectKind::Blob, ObjectKind::Map))
    );
    assert_eq!(
        s.put(&mut tx, b, b"k", b"v"),
        Err(wrong(b, ObjectKind::Map, ObjectKind::Blob))
    );
    assert_eq!(
        s.append(&mut tx, m, b"r").map(|_| ()),
        Err(wrong(m, ObjectKind::Log, ObjectKind::Map))
    );
    assert_eq!(
        s.write_blob(&mut tx, l, b"x"),
        Err(wrong(l, ObjectKind::Blob, ObjectKind::Log))
    );
    assert_eq!(
        s.read_log(&tx, b, None, 0, 1).map(|_| ()),
        Err(wrong(b, ObjectKind::Log, ObjectKind::Blob))
    );
    assert_eq!(
        s.get(&tx, l, b"k", None).map(|_| ()),
        Err(wrong(l, ObjectKind::Map, ObjectKind::Log))
    );
    // Nothing was buffered by the refused operations.
    assert!(s.commit_versions(&mut tx).unwrap().is_empty());
}

#[test]
fn sizes_are_bounded() {
    let mut s = store();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    let big_key = vec![0u8; limits::MAX_KEY_BYTES + 1];
    assert!(matches!(
        s.put(&mut tx, m, &big_key, b"v"),
        Err(StorageError::KeyTooLarge { .. })
    ));
    let big_value = vec![0u8; limits::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        s.put(&mut tx, m, b"k", &big_value),
        Err(StorageError::ValueTooLarge { .. })
    ));
    let huge = vec![0u8; limits::MAX_BLOB_BYTES + 1];
    assert!(matches!(
        s.write_blob(&mut tx, b, &huge),
        Err(StorageError::ValueTooLarge { .. })
    ));
    let max = vec![0u8; limits::MAX_BLOB_BYTES];
    s.write_blob(&mut tx, b, &max).unwrap();
    s.write_blob(&mut tx, b, &max).unwrap();
    assert!(matches!(
        s.write_blob(&mut tx, b, &max),
        Err(StorageError::TransactionTooLarge { .. })
    ));
    assert!(matches!(
        s.extend_blob(&mut tx, b, b"x"),
        Err(StorageError::ValueTooLarge { .. })
    ));
}

#[test]
fn unknown_objects_and_versions_are_typed_errors() {
    let mut s = store();
    let ghost = ObjectId::from_raw(999);
    let mut tx = s.begin_transaction().unwrap();
    assert_eq!(s.read(&tx, ghost), Err(StorageError::UnknownObject(ghost)));
    assert_eq!(
        s.write(&mut tx, ghost, b"x"),
        Err(StorageError::UnknownObject(ghost))
    );
    // An object created after the snapshot is not visible to it.
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    assert_eq!(s.read(&tx, b), Err(StorageError::UnknownObject(b)));
    let tx = s.begin_transaction().unwrap();
    let bogus = VersionId::from_raw(12345);
    assert_eq!(
        s.read_blob(&tx, b, Some(bogus), 0, 1),
        Err(StorageError::UnknownVersion {
            object: b,
            version: bogus
        })
    );
}

#[test]
fn no_modification_after_commit_or_rollback() {
    let mut s = store();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.write(&mut tx, b, b"x").unwrap();
    s.commit(&mut tx).unwrap();
    assert_eq!(tx.state(), TxState::Committed);
    let id = tx.id();
    assert_eq!(s.write(&mut tx, b, b"y"), Err(StorageError::NotActive(id)));
    assert_eq!(s.commit(&mut tx), Err(StorageError::NotActive(id)));
    assert_eq!(s.rollback(&mut tx), Err(StorageError::NotActive(id)));
    assert_eq!(s.read(&tx, b), Err(StorageError::NotActive(id)));

    let mut tx = s.begin_transaction().unwrap();
    s.write(&mut tx, b, b"discarded").unwrap();
    s.rollback(&mut tx).unwrap();
    assert_eq!(tx.state(), TxState::RolledBack);
    assert_eq!(
        s.write(&mut tx, b, b"y"),
        Err(StorageError::NotActive(tx.id()))
    );
    assert_eq!(blob_bytes(&mut s, b, None), b"x");
    // A copy of a finished handle that still claims Active is refused too.
    let mut forged = Transaction::new(id, CommitSeq::ZERO);
    assert_eq!(
        s.write(&mut forged, b, b"z"),
        Err(StorageError::NotActive(id))
    );
    assert_eq!(s.active_transactions(), 0);
}

#[test]
fn multi_object_commit_is_atomic_and_isolated() {
    let mut s = store();
    let (a, _) = s.create(ObjectKind::Map).unwrap();
    let (b, _) = s.create(ObjectKind::Log).unwrap();
    let reader = s.begin_transaction().unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, a, b"k", b"v").unwrap();
    s.append(&mut tx, b, b"r").unwrap();
    // Before commit, other transactions see neither change.
    let other = s.begin_transaction().unwrap();
    assert_eq!(s.get(&other, a, b"k", None).unwrap().value, None);
    let before = s.last_commit();
    let versions = s.commit_versions(&mut tx).unwrap();
    assert_eq!(
        s.last_commit(),
        before.next(),
        "one commit for both objects"
    );
    assert_eq!(versions.len(), 2);
    // A snapshot taken before the commit still sees neither...
    assert_eq!(s.get(&reader, a, b"k", None).unwrap().value, None);
    assert_eq!(s.read_log(&reader, b, None, 0, 1).unwrap().total, 0);
    // ...and a new one sees both.
    let after = s.begin_transaction().unwrap();
    assert_eq!(
        s.get(&after, a, b"k", None).unwrap().value,
        Some(b"v".to_vec())
    );
    assert_eq!(s.read_log(&after, b, None, 0, 1).unwrap().total, 1);
}

#[test]
fn first_committer_wins_and_the_loser_applies_nothing() {
    let mut s = store();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let (l, _) = s.create(ObjectKind::Log).unwrap();
    let mut t1 = s.begin_transaction().unwrap();
    let mut t2 = s.begin_transaction().unwrap();
    s.put(&mut t1, m, b"x", b"1").unwrap();
    s.append(&mut t2, l, b"from t2").unwrap();
    s.put(&mut t2, m, b"y", b"2").unwrap(); // another key, same object
    s.commit(&mut t1).unwrap();
    assert_eq!(s.commit(&mut t2), Err(StorageError::Conflict { object: m }));
    assert_eq!(t2.state(), TxState::RolledBack);
    let tx = s.begin_transaction().unwrap();
    assert_eq!(s.get(&tx, m, b"y", None).unwrap().value, None);
    assert_eq!(
        s.read_log(&tx, l, None, 0, 1).unwrap().total,
        0,
        "not half-applied"
    );
    assert_eq!(s.commit(&mut t2), Err(StorageError::NotActive(t2.id())));
}

#[test]
fn a_write_after_a_conflicting_commit_fails_at_once() {
    let mut s = store();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut t1 = s.begin_transaction().unwrap();
    let mut t2 = s.begin_transaction().unwrap();
    s.write(&mut t1, b, b"1").unwrap();
    s.commit(&mut t1).unwrap();
    assert_eq!(
        s.write(&mut t2, b, b"2"),
        Err(StorageError::Conflict { object: b })
    );
    assert_eq!(t2.state(), TxState::RolledBack);
    assert_eq!(s.active_transactions(), 0);
}

#[test]
fn disjoint_writers_both_commit_write_skew_is_possible() {
    // Documented behaviour of snapshot isolation.
    let mut s = store();
    let (a, _) = s.create(ObjectKind::Blob).unwrap();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut t1 = s.begin_transaction().unwrap();
    let mut t2 = s.begin_transaction().unwrap();
    s.read(&t1, b).unwrap();
    s.write(&mut t1, a, b"t1").unwrap();
    s.read(&t2, a).unwrap();
    s.write(&mut t2, b, b"t2").unwrap();
    s.commit(&mut t1).unwrap();
    s.commit(&mut t2).unwrap();
}

#[test]
fn expect_version_guards_against_lost_updates() {
    let mut s = store();
    let (b, v0) = s.create(ObjectKind::Blob).unwrap();
    let tx = s.begin_transaction().unwrap();
    s.expect_version(&tx, b, v0).unwrap();
    let other = VersionId::from_raw(v0.as_raw() + 100);
    assert_eq!(
        s.expect_version(&tx, b, other),
        Err(StorageError::VersionMismatch {
            object: b,
            expected: other,
            found: v0
        })
    );
}

/// Clients opening many large transactions cannot make the service hold
/// more uncommitted bytes than its memory keeps room for: past it, a write
/// is refused, typed, and changes nothing.
#[test]
fn open_transactions_together_hold_at_most_the_pending_room() {
    let mut s = store();
    let max = limits::MAX_PENDING_BYTES;
    let (a, _) = s.create(ObjectKind::Blob).unwrap();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let (c, _) = s.create(ObjectKind::Blob).unwrap();
    let half = vec![7u8; max / 2];
    let mut first = s.begin_owned(Some(1), 0).unwrap();
    let mut second = s.begin_owned(Some(2), 0).unwrap();
    let mut third = s.begin_owned(Some(3), 0).unwrap();
    s.write_blob(&mut first, a, &half).unwrap();
    s.write_blob(&mut second, b, &half).unwrap();
    // Full to the byte: one more byte, from a third client, is refused.
    assert_eq!(
        s.write_blob(&mut third, c, b"x"),
        Err(StorageError::PendingFull {
            pending: max as u64,
            needed: 1,
            max: max as u64,
        })
    );
    // The refused transaction is still active, and writes once another
    // transaction has ended.
    s.rollback(&mut first).unwrap();
    s.write_blob(&mut third, c, b"x").unwrap();
    s.commit(&mut third).unwrap();
    s.commit(&mut second).unwrap();
    assert_eq!(blob_bytes(&mut s, c, None), b"x");
    assert_eq!(blob_bytes(&mut s, b, None), half[..limits::MAX_READ_BYTES]);
    assert!(blob_bytes(&mut s, a, None).is_empty(), "rolled back");
}

#[test]
fn active_transactions_are_bounded_and_idle_ones_expire() {
    let mut s = store();
    let per = limits::MAX_TRANSACTIONS_PER_CLIENT;
    for i in 0..per {
        s.begin_owned(Some(1), i as u64).unwrap();
    }
    // One client cannot take every slot...
    assert_eq!(
        s.begin_owned(Some(1), 0),
        Err(StorageError::TooManyTransactions { max: per as u32 })
    );
    // ...but all of them together can.
    for i in per..limits::MAX_ACTIVE_TRANSACTIONS {
        s.begin_owned(Some(100 + i as u64), i as u64).unwrap();
    }
    assert!(matches!(
        s.begin_transaction(),
        Err(StorageError::TooManyTransactions { .. })
    ));
    assert_eq!(s.expire_idle(10), 10);
    let tx = s.begin_owned(Some(2), 100).unwrap();
    // Only its owner can name it.
    assert_eq!(s.transaction_of(tx.id(), Some(2)).unwrap().id(), tx.id());
    assert_eq!(
        s.transaction_of(tx.id(), Some(1)),
        Err(StorageError::NotActive(tx.id()))
    );
}

#[test]
fn restart_on_the_same_backend_recovers_everything_committed() {
    let backend = shared();
    let (b, m, v1) = {
        let mut s = reopen(&backend);
        let (b, _) = s.create(ObjectKind::Blob).unwrap();
        let (m, _) = s.create(ObjectKind::Map).unwrap();
        let mut tx = s.begin_transaction().unwrap();
        let v1 = s.write(&mut tx, b, b"one").unwrap();
        s.put(&mut tx, m, b"k", b"v").unwrap();
        s.commit(&mut tx).unwrap();
        let mut tx = s.begin_transaction().unwrap();
        s.write(&mut tx, b, b"two").unwrap();
        s.commit(&mut tx).unwrap();
        // An uncommitted transaction dies with the instance.
        let mut open = s.begin_transaction().unwrap();
        s.put(&mut open, m, b"lost", b"x").unwrap();
        (b, m, v1)
    };
    let mut s = reopen(&backend);
    assert_eq!(blob_bytes(&mut s, b, None), b"two");
    assert_eq!(blob_bytes(&mut s, b, Some(v1)), b"one");
    let tx = s.begin_transaction().unwrap();
    assert_eq!(
        s.get(&tx, m, b"k", None).unwrap().value,
        Some(b"v".to_vec())
    );
    assert_eq!(s.get(&tx, m, b"lost", None).unwrap().value, None);
    // New ids never collide with recovered ones.
    let (c, vc) = s.create(ObjectKind::Log).unwrap();
    assert!(c > m);
    assert!(vc > *s.versions(b, None, 10).unwrap().last().unwrap());
}

#[test]
fn a_transaction_id_from_before_a_restart_names_nothing_after_it() {
    let backend = shared();
    let (old, owner) = {
        let mut s = reopen(&backend);
        assert_eq!(s.instance(), 1);
        (s.begin_owned(Some(7), 0).unwrap(), Some(7))
    };
    // No time passes and nothing else is committed before the restart.
    let mut s = reopen(&backend);
    assert_eq!(s.instance(), 2);
    let new = s.begin_owned(owner, 0).unwrap();
    assert_ne!(new.id(), old.id());
    assert_eq!(
        s.transaction_of(old.id(), owner),
        Err(StorageError::NotActive(old.id()))
    );
}

#[test]
fn crash_during_commit_leaves_nothing_half_applied() {
    let backend = shared();
    let (a, l) = {
        let mut s = reopen(&backend);
        let (a, _) = s.create(ObjectKind::Map).unwrap();
        let (l, _) = s.create(ObjectKind::Log).unwrap();
        let mut tx = s.begin_transaction().unwrap();
        s.put(&mut tx, a, b"k", b"v").unwrap();
        s.append(&mut tx, l, b"r").unwrap();
        backend
            .borrow_mut()
            .inject(ApplyFault::TornWrite { keep: 20 });
        assert_eq!(
            s.commit(&mut tx),
            Err(StorageError::Backend(BackendError::Crashed))
        );
        assert_eq!(tx.state(), TxState::RolledBack);
        // The dying instance applied nothing in memory either.
        let probe = s.begin_transaction().unwrap();
        assert_eq!(s.get(&probe, a, b"k", None).unwrap().value, None);
        (a, l)
    };
    let (mut s, report) = ObjectStore::open(backend.clone()).unwrap();
    assert_eq!(report.discarded_bytes, 20);
    let tx = s.begin_transaction().unwrap();
    assert_eq!(s.get(&tx, a, b"k", None).unwrap().value, None);
    assert_eq!(s.read_log(&tx, l, None, 0, 1).unwrap().total, 0);
    assert_eq!(s.versions(a, None, 10).unwrap().len(), 1);
    // And the recovered store commits normally.
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, a, b"k", b"again").unwrap();
    s.commit(&mut tx).unwrap();
    let s = reopen(&backend);
    assert_eq!(s.versions(a, None, 10).unwrap().len(), 2);
}

#[test]
fn a_refused_commit_changes_nothing_and_the_store_goes_on() {
    let mut s = store();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.write(&mut tx, b, b"x").unwrap();
    s.backend_mut().inject(ApplyFault::Fail(BackendError::Full));
    assert_eq!(
        s.commit(&mut tx),
        Err(StorageError::Backend(BackendError::Full))
    );
    assert_eq!(blob_bytes(&mut s, b, None), b"");
    let mut tx = s.begin_transaction().unwrap();
    s.write(&mut tx, b, b"y").unwrap();
    s.commit(&mut tx).unwrap();
    assert_eq!(blob_bytes(&mut s, b, None), b"y");
}

#[derive(Clone, Debug)]
enum MapStep {
    Put(u8, u8),
    Delete(u8),
    Commit,
    Rollback,
}

fn map_step() -> impl Strategy<Value = MapStep> {
    prop_oneof![
        4 => (0u8..8, any::<u8>()).prop_map(|(k, v)| MapStep::Put(k, v)),
        2 => (0u8..8).prop_map(MapStep::Delete),
        2 => Just(MapStep::Commit),
        1 => Just(MapStep::Rollback),
    ]
}

proptest! {
    /// A map driven by random puts, deletes, commits and rollbacks matches
    /// a model after every commit, every old version reads back as the model
    /// was at that commit, and a restart reproduces all of it.
    #[test]
    fn map_matches_a_model_across_versions_and_restarts(steps in proptest::collection::vec(map_step(), 1..60)) {
        let backend = shared();
        let mut s = reopen(&backend);
        let (m, v0) = s.create(ObjectKind::Map).unwrap();
        let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut working = committed.clone();
        let mut history = vec![(v0, committed.clone())];
        let mut tx = s.begin_transaction().unwrap();
        for step in steps {
            match step {
                MapStep::Put(k, v) => {
                    s.put(&mut tx, m, &[k], &[v]).unwrap();
                    working.insert(vec![k], vec![v]);
                }
                MapStep::Delete(k) => {
                    let d = s.delete(&mut tx, m, &[k]).unwrap();
                    prop_assert_eq!(d.existed, working.remove(&vec![k]).is_some());
                }
                MapStep::Commit => {
                    let versions = s.commit_versions(&mut tx).unwrap();
                    if let Some((_, v)) = versions.first() {
                        history.push((*v, working.clone()));
                    }
                    committed = working.clone();
                    tx = s.begin_transaction().unwrap();
                }
                MapStep::Rollback => {
                    s.rollback(&mut tx).unwrap();
                    working = committed.clone();
                    tx = s.begin_transaction().unwrap();
                }
            }
            let listed = s.list(&tx, m, None, None, 100).unwrap().keys;
            prop_assert_eq!(listed, working.keys().cloned().collect::<Vec<_>>());
        }
        drop(s);
        let s = reopen(&backend);
        let tx = s.transaction_of(TxId::from_raw(0), None).err();
        prop_assert!(tx.is_some());
        let mut s = s;
        let probe = s.begin_transaction().unwrap();
        prop_assert_eq!(s.versions(m, None, 1000).unwrap(), history.iter().map(|(v, _)| *v).collect::<Vec<_>>());
        for (version, model) in &history {
            let keys = s.list(&probe, m, Some(*version), None, 100).unwrap().keys;
            prop_assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>());
            for (k, v) in model {
                prop_assert_eq!(s.get(&probe, m, k, Some(*version)).unwrap().value, Some(v.clone()));
            }
        }
    }
}

#[derive(Clone, Debug)]
enum TxStep {
    Begin(usize),
    Put(usize, usize, u8, u8),
    Get(usize, usize, u8),
    Commit(usize),
    Rollback(usize),
}

fn tx_step() -> impl Strategy<Value = TxStep> {
    let slot = 0usize..3;
    let object = 0usize..2;
    prop_oneof![
        2 => slot.clone().prop_map(TxStep::Begin),
        4 => (slot.clone(), object.clone(), 0u8..4, any::<u8>())
            .prop_map(|(s, o, k, v)| TxStep::Put(s, o, k, v)),
        3 => (slot.clone(), object, 0u8..4).prop_map(|(s, o, k)| TxStep::Get(s, o, k)),
        2 => slot.clone().prop_map(TxStep::Commit),
        1 => slot.prop_map(TxStep::Rollback),
    ]
}

/// One model transaction: the model commit it began after, its writes.
struct ModelTx {
    handle: Transaction,
    snapshot: usize,
    writes: BTreeMap<(usize, u8), u8>,
}

proptest! {
    /// Interleaved transactions against a model of snapshot isolation with
    /// first-committer-wins: every read sees the committed state as of the
    /// transaction's begin plus its own writes; a write or commit fails
    /// with a conflict exactly when another transaction committed to the
    /// same object since that begin; committed state is the committed
    /// write-sets applied in commit order.
    #[test]
    fn interleaved_transactions_follow_snapshot_isolation(steps in proptest::collection::vec(tx_step(), 1..80)) {
        let mut s = store();
        let maps = [s.create(ObjectKind::Map).unwrap().0, s.create(ObjectKind::Map).unwrap().0];
        // states[i] = committed state after i model commits; last[o] = the
        // model commit that last changed object o.
        let mut states: Vec<BTreeMap<(usize, u8), u8>> = vec![BTreeMap::new()];
        let mut last = [0usize; 2];
        let mut slots: [Option<ModelTx>; 3] = [None, None, None];
        for step in steps {
            match step {
                TxStep::Begin(i) => {
                    if slots[i].is_none() {
                        let handle = s.begin_transaction().unwrap();
                        slots[i] = Some(ModelTx { handle, snapshot: states.len() - 1, writes: BTreeMap::new() });
                    }
                }
                TxStep::Put(i, o, k, v) => {
                    let Some(t) = slots[i].as_mut() else { continue };
                    let result = s.put(&mut t.handle, maps[o], &[k], &[v]);
                    if last[o] > t.snapshot {
                        prop_assert_eq!(result, Err(StorageError::Conflict { object: maps[o] }));
                        slots[i] = None;
                    } else {
                        prop_assert!(result.is_ok());
                        t.writes.insert((o, k), v);
                    }
                }
                TxStep::Get(i, o, k) => {
                    let Some(t) = slots[i].as_ref() else { continue };
                    let expected = t.writes.get(&(o, k)).or_else(|| states[t.snapshot].get(&(o, k)));
                    let got = s.get(&t.handle, maps[o], &[k], None).unwrap().value;
                    prop_assert_eq!(got, expected.map(|v| vec![*v]));
                }
                TxStep::Commit(i) => {
                    let Some(mut t) = slots[i].take() else { continue };
                    let written: Vec<usize> = t.writes.keys().map(|(o, _)| *o).collect();
                    let conflict = written.iter().find(|o| last[**o] > t.snapshot);
                    let result = s.commit(&mut t.handle);
                    match conflict {
                        Some(o) => prop_assert_eq!(result, Err(StorageError::Conflict { object: maps[*o] })),
                        None => {
                            prop_assert!(result.is_ok());
                            if !t.writes.is_empty() {
                                let mut next = states.last().unwrap().clone();
                                next.extend(t.writes.iter().map(|(k, v)| (*k, *v)));
                                states.push(next);
                                for o in written {
                                    last[o] = states.len() - 1;
                                }
                            }
                        }
                    }
                }
                TxStep::Rollback(i) => {
                    if let Some(mut t) = slots[i].take() {
                        s.rollback(&mut t.handle).unwrap();
                    }
                }
            }
        }
        // The committed state, read fresh, is the model's.
        let probe = s.begin_transaction().unwrap();
        let model = states.last().unwrap();
        for (o, map) in maps.iter().enumerate() {
            for k in 0u8..4 {
                let got = s.get(&probe, *map, &[k], None).unwrap().value;
                prop_assert_eq!(got, model.get(&(o, k)).map(|v| vec![*v]));
            }
        }
    }
}

#[test]
fn the_footprint_rounds_allocations_as_the_heap_does() {
    for bytes in (0..5000).chain([1 << 16, (1 << 20) + 3, limits::MAX_TX_BYTES]) {
        assert_eq!(
            footprint::heap_bytes(bytes),
            pandagen_core::budget::allocation(bytes),
            "{bytes} bytes"
        );
    }
}

#[test]
fn a_refusal_names_the_limit_and_replay_counts_the_same() {
    let backend = shared();
    let mut s = reopen(&backend);
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, m, b"k", &[1; 100]).unwrap();
    s.commit(&mut tx).unwrap();
    let used = s.memory_used();
    let mut s = s.with_memory_limit(used);
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, m, b"k", &[2; 100]).unwrap();
    assert!(matches!(
        s.commit(&mut tx),
        Err(StorageError::StoreFull { used: u, limit, .. }) if u == used && limit == used
    ));
    drop(s);
    // A restart rebuilds exactly the count the refused commit was judged by.
    let s = reopen(&backend).with_memory_limit(used);
    assert_eq!(s.memory_used(), used);
    assert_eq!(s.instance(), 2);
}

/// A fresh commit applies the charge it was judged by; a restart computes
/// it again from the journal. The two must agree, also when a commit frees
/// what an earlier one held (a re-recorded answer).
#[test]
fn a_commit_charges_what_replay_charges() {
    let backend = shared();
    let mut s = reopen(&backend);
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let answers: [&[u8]; 3] = [&[7; 40], &[8; 300], &[9; 2]];
    for (i, answer) in answers.into_iter().enumerate() {
        let mut tx = s.begin_transaction().unwrap();
        s.put(&mut tx, m, &[i as u8; 12], &[1; 20]).unwrap();
        s.put(&mut tx, m, b"shared", &[i as u8; 30]).unwrap();
        let origin = Origin {
            task: 1,
            message: 1,
            answer: answer.to_vec(),
        };
        s.commit_with_origin(&mut tx, Some(origin)).unwrap();
        let live = s.memory_used();
        drop(s);
        s = reopen(&backend);
        assert_eq!(s.memory_used(), live, "after commit {i}");
    }
}

/// A map key is charged when the map first holds it; writing it again
/// pays for the new value and its history entry, not for the key again.
#[test]
fn rewriting_a_key_charges_its_value_not_the_key_again() {
    let mut s = store();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let mut put = |key: &[u8]| {
        let before = s.memory_used();
        let mut tx = s.begin_transaction().unwrap();
        s.put(&mut tx, m, key, &[1; 20]).unwrap();
        s.commit(&mut tx).unwrap();
        s.memory_used() - before
    };
    let key = [5; 40];
    let first = put(&key);
    let again = put(&key);
    let version = footprint::version();
    assert_eq!(first, version + footprint::map_update(Some(key.len()), 20));
    assert_eq!(again, version + footprint::map_update(None, 20));
}

/// A transaction's size counts each put's key and value bytes: the
/// refusal names the size the transaction would have reached.
#[test]
fn a_puts_key_and_value_both_count_toward_the_transactions_size() {
    let mut s = store();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let (b, _) = s.create(ObjectKind::Blob).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    let max = vec![0u8; limits::MAX_BLOB_BYTES];
    s.write_blob(&mut tx, b, &max).unwrap();
    s.write_blob(&mut tx, b, &max).unwrap();
    assert_eq!(2 * limits::MAX_BLOB_BYTES, limits::MAX_TX_BYTES);
    assert_eq!(
        s.put(&mut tx, m, &[1; 3], &[2; 5]),
        Err(StorageError::TransactionTooLarge {
            len: (limits::MAX_TX_BYTES + 8) as u32,
            max: limits::MAX_TX_BYTES as u32,
        })
    );
}

/// A listing stops at the read limit's bytes of keys, whatever the count
/// asked for, and says there is more.
#[test]
fn a_listing_stops_at_the_read_limit_in_key_bytes() {
    let mut s = store();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    let key = |i: usize| vec![i as u8; limits::MAX_KEY_BYTES];
    let fit = limits::MAX_READ_BYTES / limits::MAX_KEY_BYTES;
    for i in 0..fit + 10 {
        s.put(&mut tx, m, &key(i), b"v").unwrap();
    }
    s.commit(&mut tx).unwrap();
    let tx = s.begin_transaction().unwrap();
    let page = s.list(&tx, m, None, None, 1000).unwrap();
    assert_eq!(page.keys, (0..fit).map(key).collect::<Vec<_>>());
    assert!(page.more);
}
