//! The interface description's storage examples in the project's form:
//! a transaction bound to its storage that is modified and then committed
//! or rolled back (`let mut tx = storage.transaction()?; tx.modify(id,
//! data)?; tx.commit()?;`). Object and version ids come from the store,
//! not from `ObjectId::new()` (docs/interfaces.md says why).

use pandagen_storage::{
    MemoryBackend, ObjectKind, ObjectStore, StorageError, TransactionalStorage, TxState,
};

fn store() -> ObjectStore<MemoryBackend> {
    ObjectStore::open(MemoryBackend::new([7; 16])).unwrap().0
}

fn content(
    storage: &mut ObjectStore<MemoryBackend>,
    object: pandagen_storage::ObjectId,
) -> Vec<u8> {
    let tx = storage.begin_transaction().unwrap();
    let read = storage.read_blob(&tx, object, None, 0, 64).unwrap();
    read.bytes
}

#[test]
fn a_transaction_is_modified_then_committed_and_every_version_stays() -> Result<(), StorageError> {
    let mut storage = store();
    let (object_id, created) = storage.create(ObjectKind::Blob)?;

    let mut tx = storage.transaction()?;
    assert_eq!(tx.handle().state(), TxState::Active);
    let first = tx.modify(object_id, b"first")?;
    assert_eq!(
        tx.read(object_id)?,
        first,
        "reads see the transaction's own writes"
    );
    tx.commit()?;

    let mut tx = storage.transaction()?;
    let second = tx.modify(object_id, b"second")?;
    tx.commit()?;

    assert_eq!(content(&mut storage, object_id), b"second");
    // Every modification made a new version; the old ones stay readable.
    assert_eq!(
        storage.versions(object_id, None, 8)?,
        vec![created, first, second]
    );
    let tx = storage.begin_transaction()?;
    let old = storage.read_blob(&tx, object_id, Some(first), 0, 64)?;
    assert_eq!(old.bytes, b"first");
    Ok(())
}

#[test]
fn a_rolled_back_or_abandoned_transaction_changes_nothing() -> Result<(), StorageError> {
    let mut storage = store();
    let (object_id, created) = storage.create(ObjectKind::Blob)?;

    let mut tx = storage.transaction()?;
    tx.modify(object_id, b"discarded")?;
    tx.rollback()?;

    {
        let mut abandoned = storage.transaction()?;
        abandoned.modify(object_id, b"never committed")?;
        // Dropped while active: rolled back.
    }
    assert_eq!(storage.active_transactions(), 0);
    assert_eq!(storage.versions(object_id, None, 8)?, vec![created]);
    assert!(content(&mut storage, object_id).is_empty());
    Ok(())
}

#[test]
fn a_conflicting_commit_fails_and_applies_nothing() -> Result<(), StorageError> {
    let mut storage = store();
    let (object_id, _) = storage.create(ObjectKind::Blob)?;
    let mut early = storage.begin_transaction()?;
    storage.write(&mut early, object_id, b"early")?;

    let mut tx = storage.transaction()?;
    tx.modify(object_id, b"later")?;
    tx.commit()?;

    assert_eq!(
        storage.commit(&mut early),
        Err(StorageError::Conflict { object: object_id })
    );
    assert_eq!(content(&mut storage, object_id), b"later");
    Ok(())
}
