//! Transactions: the only way objects change.
//!
//! # Isolation: snapshot isolation, first committer wins
//!
//! A transaction reads from a snapshot: the committed state as of the last
//! commit before it began, plus its own pending writes (read-your-writes).
//! Commits by others after that point are invisible to it. Writes are
//! buffered in the transaction and applied, all together, at commit.
//!
//! Two transactions *conflict* when both modify the same object and their
//! lifetimes overlap. The first to commit wins; the other's commit (or its
//! next write to that object, whichever comes first) fails with
//! [`StorageError::Conflict`](crate::error::StorageError::Conflict), and it
//! is rolled back as a whole. Nothing is ever merged silently — not even
//! appends to one log or puts of different keys in one map: conflicts are
//! detected per object.
//!
//! Snapshot isolation is not serializability: two transactions that each
//! read what the other writes, and write disjoint objects, can both commit
//! (write skew). A client that needs to exclude that can write, in its
//! transaction, an object that every such transaction writes, or use an
//! `Expect` check on the version it read.
//!
//! One commit creates at most one new version per object it changed, and
//! all of a commit's changes become visible together.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::error::TransactionError;
use crate::ids::{CommitSeq, ObjectId, TxId, VersionId};

/// Where a transaction is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxState {
    /// Operations are accepted.
    Active,
    /// Its changes are durable and visible.
    Committed,
    /// Its changes were discarded (explicitly, or because its commit failed).
    RolledBack,
}

/// A client's handle on a transaction. The store keeps the authoritative
/// record; a handle whose transaction the store no longer holds as active
/// gets [`NotActive`](crate::error::StorageError::NotActive), whatever the
/// handle's own state says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    id: TxId,
    snapshot: CommitSeq,
    state: TxState,
}

impl Transaction {
    pub(crate) fn new(id: TxId, snapshot: CommitSeq) -> Self {
        Transaction {
            id,
            snapshot,
            state: TxState::Active,
        }
    }

    pub fn id(&self) -> TxId {
        self.id
    }

    /// The last commit this transaction sees.
    pub fn snapshot(&self) -> CommitSeq {
        self.snapshot
    }

    pub fn state(&self) -> TxState {
        self.state
    }

    pub fn is_active(&self) -> bool {
        self.state == TxState::Active
    }

    pub(crate) fn finish(&mut self, state: TxState) {
        self.state = state;
    }
}

/// The transactional interface (docs/interfaces.md, "Storage").
///
/// `read` returns the version of the object this transaction sees (its own
/// pending version if it wrote the object). `write` stores `data` as the
/// object's next content in the way its kind allows: a Blob's bytes are
/// replaced (a new immutable version); a Log gets `data` appended as one
/// record — a log cannot be overwritten; a Map has no unkeyed content and
/// answers `WrongKind` (use the keyed map operations). `write` returns the
/// version the object will have if the transaction commits.
pub trait TransactionalStorage {
    fn begin_transaction(&mut self) -> Result<Transaction, TransactionError>;
    fn read(&self, tx: &Transaction, object_id: ObjectId) -> Result<VersionId, TransactionError>;
    fn write(
        &mut self,
        tx: &mut Transaction,
        object_id: ObjectId,
        data: &[u8],
    ) -> Result<VersionId, TransactionError>;
    fn commit(&mut self, tx: &mut Transaction) -> Result<(), TransactionError>;
    fn rollback(&mut self, tx: &mut Transaction) -> Result<(), TransactionError>;

    /// Begin a transaction bound to this storage: modify it, then
    /// `commit()` or `rollback()` it, each of which consumes it, so a
    /// finished transaction cannot be modified (the type system says so).
    /// Dropped while active, it is rolled back.
    fn transaction(&mut self) -> Result<BoundTransaction<'_, Self>, TransactionError>
    where
        Self: Sized,
    {
        let tx = self.begin_transaction()?;
        Ok(BoundTransaction { storage: self, tx })
    }
}

/// A transaction together with the storage it runs on (see
/// [`TransactionalStorage::transaction`]).
pub struct BoundTransaction<'s, S: TransactionalStorage> {
    storage: &'s mut S,
    tx: Transaction,
}

impl<S: TransactionalStorage> BoundTransaction<'_, S> {
    /// The version of `object_id` this transaction sees.
    pub fn read(&self, object_id: ObjectId) -> Result<VersionId, TransactionError> {
        self.storage.read(&self.tx, object_id)
    }

    /// Modify `object_id`: its next content is `data` (see
    /// [`TransactionalStorage::write`] for what that means per kind).
    /// Returns the version it gets if the transaction commits.
    pub fn modify(
        &mut self,
        object_id: ObjectId,
        data: &[u8],
    ) -> Result<VersionId, TransactionError> {
        self.storage.write(&mut self.tx, object_id, data)
    }

    /// Make every modification durable and visible, all or none.
    pub fn commit(mut self) -> Result<(), TransactionError> {
        self.storage.commit(&mut self.tx)
    }

    /// Discard every modification.
    pub fn rollback(mut self) -> Result<(), TransactionError> {
        self.storage.rollback(&mut self.tx)
    }

    /// The transaction itself (its id, snapshot and state).
    pub fn handle(&self) -> &Transaction {
        &self.tx
    }
}

impl<S: TransactionalStorage> Drop for BoundTransaction<'_, S> {
    fn drop(&mut self) {
        if self.tx.is_active() {
            let _ = self.storage.rollback(&mut self.tx);
        }
    }
}

/// A transaction's buffered change to one object.
#[derive(Debug)]
pub(crate) enum Pending {
    Blob(Vec<u8>),
    Log(Vec<Vec<u8>>),
    Map(MapOverlay),
}

/// A transaction's pending map puts (`Some`) and deletes (`None`).
pub(crate) type MapOverlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug)]
pub(crate) struct PendingObject {
    pub version: VersionId,
    pub change: Pending,
}

/// The store's record of an active transaction.
#[derive(Debug)]
pub(crate) struct TxRecord {
    pub snapshot: CommitSeq,
    pub writes: BTreeMap<ObjectId, PendingObject>,
    /// Bytes written by the transaction's operations so far (an upper bound
    /// on what its commit record will hold).
    pub bytes: usize,
    /// Who began it (the server's notion of a client); `None` in-process.
    pub owner: Option<u64>,
    /// When it was last used, in the owner's clock (nanoseconds).
    pub last_active: u64,
}

/// The store's active transactions by id. There are at most
/// `limits::MAX_ACTIVE_TRANSACTIONS`, so a vector searched by id serves;
/// unlike a `BTreeMap` it keeps its block while it empties and fills
/// again, so a one-message `Transact` (begun and ended in one request)
/// allocates and frees nothing here.
#[derive(Debug, Default)]
pub(crate) struct TxTable(Vec<(TxId, TxRecord)>);

impl TxTable {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &TxRecord> {
        self.0.iter().map(|(_, record)| record)
    }

    /// Add `record` as `id`, replacing a record already kept under it.
    pub fn insert(&mut self, id: TxId, record: TxRecord) {
        match self.get_mut(&id) {
            Some(kept) => *kept = record,
            None => self.0.push((id, record)),
        }
    }

    pub fn get(&self, id: &TxId) -> Option<&TxRecord> {
        self.0.iter().find(|(kept, _)| kept == id).map(|(_, r)| r)
    }

    pub fn get_mut(&mut self, id: &TxId) -> Option<&mut TxRecord> {
        self.0
            .iter_mut()
            .find(|(kept, _)| kept == id)
            .map(|(_, r)| r)
    }

    pub fn remove(&mut self, id: &TxId) -> Option<TxRecord> {
        let at = self.0.iter().position(|(kept, _)| kept == id)?;
        Some(self.0.swap_remove(at).1)
    }

    /// Keep only the records `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&TxRecord) -> bool) {
        self.0.retain(|(_, record)| keep(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: usize) -> TxRecord {
        TxRecord {
            snapshot: CommitSeq::ZERO,
            writes: BTreeMap::new(),
            bytes,
            owner: None,
            last_active: bytes as u64,
        }
    }

    #[test]
    fn the_table_finds_replaces_removes_and_retains_by_id() {
        let mut table = TxTable::default();
        for raw in 1..=4 {
            table.insert(TxId::from_raw(raw), record(raw as usize));
        }
        table.insert(TxId::from_raw(2), record(20));
        assert_eq!(table.len(), 4);
        assert_eq!(table.get(&TxId::from_raw(2)).map(|r| r.bytes), Some(20));
        assert_eq!(table.remove(&TxId::from_raw(1)).map(|r| r.bytes), Some(1));
        assert!(table.remove(&TxId::from_raw(1)).is_none());
        // The others are still found under their own ids after the removal
        // moved the last one into the gap.
        for (raw, bytes) in [(2, 20), (3, 3), (4, 4)] {
            assert_eq!(
                table.get(&TxId::from_raw(raw)).map(|r| r.bytes),
                Some(bytes)
            );
        }
        if let Some(r) = table.get_mut(&TxId::from_raw(4)) {
            r.bytes = 40;
        }
        table.retain(|r| r.bytes != 3);
        let mut left: Vec<usize> = table.values().map(|r| r.bytes).collect();
        left.sort_unstable();
        assert_eq!(left, [20, 40]);
        assert!(table.get(&TxId::from_raw(3)).is_none());
    }
}
