//! The object store: objects, their versions, and the transactions that
//! change them, over a [`StorageBackend`].
//!
//! This is trusted, in-process logic: it checks kinds, sizes, transaction
//! states and conflicts, but not capabilities — the [`server`](crate::server)
//! checks those before it calls in. The typed operations per kind live in
//! the submodules (`blob`, `log`, `map`); here are creation,
//! transaction life and commit.
//!
//! Committed state is rebuilt from the backend's records by the same
//! function that applies a fresh commit (`Catalog::apply`), so a recovered
//! store cannot differ from the one that wrote the records.

mod answers;
mod blob;
mod footprint;
mod log;
mod map;

pub use blob::BlobRead;
pub use log::LogRead;
pub use map::{Deleted, KeyList, MapValue};

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::backend::{BackendError, RecoveryReport, StorageBackend};
use crate::error::StorageError;
use crate::ids::{CommitSeq, ObjectId, TxId, VersionId};
use crate::limits;
use crate::object::{Object, ObjectKind, VersionStamp};
use crate::record::{Change, CommitRecord, MapUpdate, Origin};
use crate::siphash::siphash24;
use crate::transaction::{
    Pending, PendingObject, Transaction, TransactionalStorage, TxRecord, TxState, TxTable,
};
use answers::Answers;

/// How many recent commits' answers the store remembers (see [`Origin`]).
pub const DURABLE_ANSWERS: usize = 256;

/// Committed state: what recovery rebuilds.
#[derive(Debug)]
struct Catalog {
    objects: BTreeMap<ObjectId, Object>,
    last_seq: CommitSeq,
    next_object: u64,
    next_version: u64,
    /// (task, message) -> answer, for the last [`DURABLE_ANSWERS`] commits
    /// that carried an origin.
    answers: Answers,
    /// The last instance that opened the store (see `Change::Open`).
    instance: u32,
    /// The heap bytes all of the above holds, bounded from above (see
    /// [`footprint`]). Replay recomputes it with the same function that
    /// charges a fresh commit, so it is the same after a restart.
    bytes: u64,
}

impl Catalog {
    /// An empty catalog; `seed` keys the hash of its answers' index.
    fn new(seed: u64) -> Self {
        Catalog {
            objects: BTreeMap::new(),
            last_seq: CommitSeq::ZERO,
            next_object: 1,
            next_version: 1,
            answers: Answers::new(seed),
            instance: 0,
            bytes: 0,
        }
    }

    /// What applying `record` would add to and free from [`Catalog::bytes`].
    fn footprint_change(&self, record: &CommitRecord) -> (u64, u64) {
        let mut added = 0u64;
        for change in &record.changes {
            added = added.saturating_add(match change {
                Change::Create { .. } => footprint::create(),
                Change::Blob { bytes, .. } => footprint::version() + footprint::blob(bytes.len()),
                Change::LogAppend { records, .. } => {
                    records.iter().fold(footprint::version(), |sum, r| {
                        sum.saturating_add(footprint::log_record(r.len()))
                    })
                }
                Change::Map {
                    object, updates, ..
                } => {
                    let existing = self.objects.get(object);
                    updates
                        .iter()
                        .fold(footprint::version(), |sum, (key, value)| {
                            let known = existing.is_some_and(|o| o.map_has_key(key));
                            let new_key = (!known).then_some(key.len());
                            let value = value.as_ref().map_or(0, Vec::len);
                            sum.saturating_add(footprint::map_update(new_key, value))
                        })
                }
                Change::Revoke { .. } | Change::Open { .. } => 0,
            });
        }
        let (kept, freed) = self.origin_charge(record.origin.as_ref());
        (added.saturating_add(kept), freed)
    }

    /// What keeping `origin`'s answer adds to and frees from
    /// [`Catalog::bytes`] (part of [`footprint_change`](Self::footprint_change)).
    fn origin_charge(&self, origin: Option<&Origin>) -> (u64, u64) {
        let Some(origin) = origin else {
            return (0, 0);
        };
        match self.answers.get((origin.task, origin.message)) {
            Some(old) => (
                footprint::heap_bytes(origin.answer.len()),
                footprint::heap_bytes(old.len()),
            ),
            None => {
                let mut freed = 0;
                if self.answers.len() >= DURABLE_ANSWERS {
                    let evicted = self.answers.oldest();
                    freed += evicted.map_or(0, |a| footprint::answer(a.len()));
                }
                (footprint::answer(origin.answer.len()), freed)
            }
        }
    }

    fn remember(&mut self, origin: Origin) {
        let key = (origin.task, origin.message);
        self.answers.insert(key, origin.answer, DURABLE_ANSWERS);
    }

    /// Apply one durable record. Fails only on records no correct store
    /// writes (out of order, naming unknown objects, kind mismatches):
    /// that is a corrupt medium.
    fn apply(&mut self, record: CommitRecord) -> Result<(), StorageError> {
        let charge = self.footprint_change(&record);
        self.apply_charged(record, charge)
    }

    /// [`apply`](Self::apply) with `charge`, the record's
    /// [`footprint_change`](Self::footprint_change) in this state, already
    /// known (a fresh commit computed it to check the memory limit).
    fn apply_charged(
        &mut self,
        record: CommitRecord,
        (added, freed): (u64, u64),
    ) -> Result<(), StorageError> {
        let corrupt = StorageError::Backend(BackendError::Corrupt);
        if record.seq <= self.last_seq {
            return Err(corrupt);
        }
        let seq = record.seq;
        for change in record.changes {
            if let Some(version) = change.version() {
                self.next_version = self.next_version.max(version.as_raw() + 1);
            }
            if let Change::Open { instance } = change {
                self.instance = self.instance.max(instance);
                continue;
            }
            if let Change::Create {
                object,
                kind,
                version,
            } = change
            {
                if self.objects.contains_key(&object) {
                    return Err(corrupt);
                }
                self.next_object = self.next_object.max(object.as_raw() + 1);
                let stamp = VersionStamp { version, seq };
                self.objects
                    .insert(object, Object::new(object, kind, stamp));
                continue;
            }
            let target = change
                .object()
                .and_then(|o| self.objects.get_mut(&o))
                .ok_or(corrupt.clone())?;
            let expected = match &change {
                Change::Blob { .. } => Some(ObjectKind::Blob),
                Change::LogAppend { .. } => Some(ObjectKind::Log),
                Change::Map { .. } => Some(ObjectKind::Map),
                _ => None,
            };
            if expected.is_some_and(|k| k != target.kind()) {
                return Err(corrupt);
            }
            match change {
                Change::Blob { version, bytes, .. } => {
                    target.commit_blob(VersionStamp { version, seq }, bytes)
                }
                Change::LogAppend {
                    version, records, ..
                } => target.commit_log(VersionStamp { version, seq }, records),
                Change::Map {
                    version, updates, ..
                } => target.commit_map(VersionStamp { version, seq }, updates),
                Change::Revoke { epoch, .. } => target.set_cap_epoch(epoch),
                Change::Create { .. } | Change::Open { .. } => {}
            }
        }
        self.close(seq, record.origin, (added, freed));
        Ok(())
    }

    /// The end of applying commit `seq`: its origin kept, it is the last
    /// commit, its charge counted.
    fn close(&mut self, seq: CommitSeq, origin: Option<Origin>, (added, freed): (u64, u64)) {
        if let Some(origin) = origin {
            self.remember(origin);
        }
        self.last_seq = seq;
        self.bytes = self.bytes.saturating_add(added).saturating_sub(freed);
    }
}

/// Objects, versions and transactions over a backend.
#[derive(Debug)]
pub struct ObjectStore<B: StorageBackend> {
    backend: B,
    catalog: Catalog,
    txs: TxTable,
    next_tx: u64,
    /// The last `apply` failed other than for room: the backend must be
    /// recovered before it takes another record.
    backend_failed: bool,
    /// The most heap bytes the committed state may hold (see
    /// [`with_memory_limit`](Self::with_memory_limit)).
    memory_limit: u64,
}

impl<B: StorageBackend> ObjectStore<B> {
    /// Open `backend`: replay its records, then record this instance's
    /// opening (one small durable record). Transaction ids are prefixed
    /// with the instance number, so a transaction id handed out before a
    /// restart never names a transaction of the new instance.
    pub fn open(mut backend: B) -> Result<(Self, RecoveryReport), StorageError> {
        // Keyed by the capability key, which clients do not know, so
        // that they cannot pick message ids that collide in the index.
        let mut catalog = Catalog::new(siphash24(&backend.cap_key(), b"durable answers"));
        let mut failure = None;
        let report = backend.replay(&mut |record| {
            if failure.is_none() {
                failure = catalog.apply(record).err();
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let instance = catalog
            .instance
            .checked_add(1)
            .ok_or(StorageError::Backend(BackendError::Full))?;
        let mut store = ObjectStore {
            backend,
            catalog,
            txs: TxTable::default(),
            next_tx: u64::from(instance) << 32 | 1,
            backend_failed: false,
            memory_limit: u64::MAX,
        };
        store.commit_record(alloc::vec![Change::Open { instance }], None)?;
        Ok((store, report))
    }

    /// Refuse, with [`StorageError::StoreFull`], every commit after which
    /// the committed state would hold more than `limit` heap bytes (as
    /// [`memory_used`](Self::memory_used) counts them). The store keeps
    /// every version in memory and a restart rebuilds all of it, so the
    /// limit is what keeps every acknowledged commit recoverable in the
    /// heap of the next instance. Replay never refuses: a store opened
    /// over a limit (a smaller one than it was filled under) serves reads
    /// and refuses growth. Unlimited unless set.
    pub fn with_memory_limit(mut self, limit: u64) -> Self {
        self.memory_limit = limit;
        self
    }

    /// The heap bytes the committed state holds, bounded from above: every
    /// object, version, map key, value and remembered answer, as the heap
    /// serves their blocks.
    pub fn memory_used(&self) -> u64 {
        self.catalog.bytes
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// The number of this instance of the store (1 for the first open of a
    /// backend, then one more per restart).
    pub fn instance(&self) -> u32 {
        self.catalog.instance
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Stop, handing back the backend. Active transactions are discarded.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// The last commit.
    pub fn last_commit(&self) -> CommitSeq {
        self.catalog.last_seq
    }

    /// An object's committed state.
    pub fn object(&self, id: ObjectId) -> Result<&Object, StorageError> {
        self.catalog
            .objects
            .get(&id)
            .ok_or(StorageError::UnknownObject(id))
    }

    /// The lowest id of an object of `kind`.
    pub fn first_of_kind(&self, kind: ObjectKind) -> Option<ObjectId> {
        self.catalog
            .objects
            .iter()
            .find(|(_, object)| object.kind() == kind)
            .map(|(id, _)| *id)
    }

    pub fn object_count(&self) -> usize {
        self.catalog.objects.len()
    }

    pub fn active_transactions(&self) -> usize {
        self.txs.len()
    }

    /// Make `record` durable, then apply it. Nothing is applied if the
    /// backend refuses it. After a failed write (the medium went away, as
    /// when a disk driver dies mid-request) the backend is recovered in
    /// place first, so that the store carries on once the medium is back;
    /// while it is not, every commit fails with the recovery's error.
    fn commit_record(
        &mut self,
        changes: Vec<Change>,
        origin: Option<Origin>,
    ) -> Result<CommitSeq, StorageError> {
        let record = CommitRecord {
            seq: self.catalog.last_seq.next(),
            changes,
            origin,
        };
        let (added, freed) = self.catalog.footprint_change(&record);
        check_room(self.catalog.bytes, self.memory_limit, (added, freed))?;
        let last = self.catalog.last_seq;
        write(&mut self.backend, &mut self.backend_failed, last, |b| {
            b.apply(&record)
        })?;
        let seq = record.seq;
        // Nothing changed the catalog since the charge was computed.
        self.catalog.apply_charged(record, (added, freed))?;
        Ok(seq)
    }

    /// [`commit_record`](Self::commit_record) of one update of map
    /// `object` to `version`, `key` to `value`: the same record, charge,
    /// checks and state after, but the map's keys are searched once, for
    /// the charge and the update alike, and the record is written from
    /// its parts ([`MapUpdate`]) without being built.
    fn commit_map_update(
        &mut self,
        object: ObjectId,
        version: VersionId,
        key: &[u8],
        value: Option<Vec<u8>>,
        origin: Option<Origin>,
    ) -> Result<CommitSeq, StorageError> {
        let last = self.catalog.last_seq;
        let seq = last.next();
        let (kept, freed) = self.catalog.origin_charge(origin.as_ref());
        let used = self.catalog.bytes;
        let slot = self
            .catalog
            .objects
            .get_mut(&object)
            .and_then(|o| o.map_slot(key))
            .ok_or(StorageError::Backend(BackendError::Corrupt))?;
        let new_key = (!slot.is_known()).then_some(key.len());
        let value_len = value.as_ref().map_or(0, Vec::len);
        let added = footprint::version()
            .saturating_add(footprint::map_update(new_key, value_len))
            .saturating_add(kept);
        check_room(used, self.memory_limit, (added, freed))?;
        let update = MapUpdate {
            seq,
            object,
            version,
            key,
            value: value.as_deref(),
            origin: origin.as_ref(),
        };
        write(&mut self.backend, &mut self.backend_failed, last, |b| {
            b.apply_map_update(&update)
        })?;
        slot.commit(VersionStamp { version, seq }, value);
        let catalog = &mut self.catalog;
        catalog.next_version = catalog.next_version.max(version.as_raw() + 1);
        catalog.close(seq, origin, (added, freed));
        Ok(seq)
    }

    fn allocate_version(&mut self) -> VersionId {
        let v = VersionId::from_raw(self.catalog.next_version);
        self.catalog.next_version += 1;
        v
    }

    /// Create an empty object of `kind`. Creation commits on its own and is
    /// durable when this returns.
    pub fn create(&mut self, kind: ObjectKind) -> Result<(ObjectId, VersionId), StorageError> {
        self.create_with_origin(kind, |_, _| None)
    }

    /// [`create`](Self::create), recording the origin `origin` builds from
    /// the new object's id and first version.
    pub fn create_with_origin(
        &mut self,
        kind: ObjectKind,
        origin: impl FnOnce(ObjectId, VersionId) -> Option<Origin>,
    ) -> Result<(ObjectId, VersionId), StorageError> {
        let object = ObjectId::from_raw(self.catalog.next_object);
        let version = VersionId::from_raw(self.catalog.next_version);
        let change = Change::Create {
            object,
            kind,
            version,
        };
        self.commit_record(alloc::vec![change], origin(object, version))?;
        Ok((object, version))
    }

    /// Void every capability issued for `object` so far; returns the new
    /// capability epoch. Durable when this returns.
    pub fn revoke(&mut self, object: ObjectId) -> Result<u32, StorageError> {
        self.revoke_with_origin(object, |_| None)
    }

    /// [`revoke`](Self::revoke), recording the origin `origin` builds from
    /// the new epoch.
    pub fn revoke_with_origin(
        &mut self,
        object: ObjectId,
        origin: impl FnOnce(u32) -> Option<Origin>,
    ) -> Result<u32, StorageError> {
        let epoch = self.object(object)?.cap_epoch().wrapping_add(1);
        self.commit_record(alloc::vec![Change::Revoke { object, epoch }], origin(epoch))?;
        Ok(epoch)
    }

    /// The answer recorded with a recent commit caused by message `message`
    /// of task `task`, if any.
    pub fn durable_answer(&self, task: u64, message: u64) -> Option<&[u8]> {
        self.catalog.answers.get((task, message))
    }

    /// Committed versions of `object` newer than `after`, oldest first, at
    /// most `limit` of them.
    pub fn versions(
        &self,
        object: ObjectId,
        after: Option<VersionId>,
        limit: usize,
    ) -> Result<Vec<VersionId>, StorageError> {
        let obj = self.object(object)?;
        Ok(obj
            .versions()
            .iter()
            .map(|s| s.version)
            .filter(|v| after.is_none_or(|a| *v > a))
            .take(limit)
            .collect())
    }

    /// Begin a transaction on behalf of `owner` (any number that identifies
    /// the client to the caller), stamped with the caller's clock `now`.
    pub fn begin_owned(
        &mut self,
        owner: Option<u64>,
        now: u64,
    ) -> Result<Transaction, StorageError> {
        let id = self.next_tx_id(owner)?;
        let snapshot = self.catalog.last_seq;
        self.txs.insert(
            id,
            TxRecord {
                snapshot,
                writes: BTreeMap::new(),
                bytes: 0,
                owner,
                last_active: now,
            },
        );
        Ok(Transaction::new(id, snapshot))
    }

    /// The id of a transaction `owner` begins now, after the checks that
    /// bound the table: at most [`limits::MAX_ACTIVE_TRANSACTIONS`] open,
    /// [`limits::MAX_TRANSACTIONS_PER_CLIENT`] of them `owner`'s.
    fn next_tx_id(&mut self, owner: Option<u64>) -> Result<TxId, StorageError> {
        Self::take_tx_id(&mut self.next_tx, &self.txs, owner)
    }

    /// [`Self::next_tx_id`] on the two fields it reads, so that a caller
    /// may hold an object of the catalog meanwhile.
    fn take_tx_id(
        next_tx: &mut u64,
        txs: &TxTable,
        owner: Option<u64>,
    ) -> Result<TxId, StorageError> {
        // The low 32 bits of a transaction id count within the instance.
        let exhausted = *next_tx & 0xffff_ffff == 0;
        if txs.len() >= limits::MAX_ACTIVE_TRANSACTIONS || exhausted {
            return Err(StorageError::TooManyTransactions {
                max: limits::MAX_ACTIVE_TRANSACTIONS as u32,
            });
        }
        if owner.is_some()
            && txs.values().filter(|r| r.owner == owner).count()
                >= limits::MAX_TRANSACTIONS_PER_CLIENT
        {
            return Err(StorageError::TooManyTransactions {
                max: limits::MAX_TRANSACTIONS_PER_CLIENT as u32,
            });
        }
        let id = TxId::from_raw(*next_tx);
        *next_tx += 1;
        Ok(id)
    }

    /// The handle of active transaction `id` if `owner` began it.
    pub fn transaction_of(
        &self,
        id: TxId,
        owner: Option<u64>,
    ) -> Result<Transaction, StorageError> {
        match self.txs.get(&id) {
            Some(r) if r.owner == owner => Ok(Transaction::new(id, r.snapshot)),
            _ => Err(StorageError::NotActive(id)),
        }
    }

    /// Note that `tx` was used at `now`.
    pub fn touch(&mut self, tx: &Transaction, now: u64) {
        if let Some(r) = self.txs.get_mut(&tx.id()) {
            r.last_active = r.last_active.max(now);
        }
    }

    /// Roll back every transaction last used before `deadline`; returns how
    /// many. Clients that vanish mid-transaction cannot pin the table.
    pub fn expire_idle(&mut self, deadline: u64) -> usize {
        let before = self.txs.len();
        self.txs.retain(|r| r.last_active >= deadline);
        before - self.txs.len()
    }

    /// The store's record of `tx`, if it is active.
    fn record(&self, tx: &Transaction) -> Result<&TxRecord, StorageError> {
        if !tx.is_active() {
            return Err(StorageError::NotActive(tx.id()));
        }
        self.txs
            .get(&tx.id())
            .ok_or(StorageError::NotActive(tx.id()))
    }

    /// `object` as `tx` sees it: it must exist in the snapshot.
    fn visible(&self, tx: &Transaction, object: ObjectId) -> Result<&Object, StorageError> {
        let snapshot = self.record(tx)?.snapshot;
        let obj = self.object(object)?;
        Self::check_visible(obj, snapshot)?;
        Ok(obj)
    }

    /// `obj` must exist in `snapshot`.
    fn check_visible(obj: &Object, snapshot: CommitSeq) -> Result<(), StorageError> {
        if obj.stamp_at(snapshot).is_none() {
            return Err(StorageError::UnknownObject(obj.id()));
        }
        Ok(())
    }

    fn check_kind(obj: &Object, expected: ObjectKind) -> Result<(), StorageError> {
        if obj.kind() != expected {
            return Err(StorageError::WrongKind {
                object: obj.id(),
                expected,
                found: obj.kind(),
            });
        }
        Ok(())
    }

    /// The version of `object` that `tx` sees, and the commit it reads at:
    /// its pending version if it wrote it, otherwise the newest committed
    /// version in its snapshot. `at` selects an older committed version.
    fn view(
        &self,
        tx: &Transaction,
        object: ObjectId,
        at: Option<VersionId>,
    ) -> Result<View, StorageError> {
        let record = self.record(tx)?;
        let obj = self.visible(tx, object)?;
        let pending = record.writes.get(&object);
        match (at, pending) {
            (None, Some(p)) => Ok(View::Pending(p.version, record.snapshot)),
            (Some(v), Some(p)) if v == p.version => Ok(View::Pending(p.version, record.snapshot)),
            _ => Self::committed_view(obj, record.snapshot, at),
        }
    }

    /// The committed version of `obj` a reader at `snapshot` sees: the
    /// newest, or `at`.
    fn committed_view(
        obj: &Object,
        snapshot: CommitSeq,
        at: Option<VersionId>,
    ) -> Result<View, StorageError> {
        let object = obj.id();
        match at {
            None => obj
                .stamp_at(snapshot)
                .map(View::Committed)
                .ok_or(StorageError::UnknownObject(object)),
            Some(v) => obj
                .find_version(v, snapshot)
                .map(View::Committed)
                .ok_or(StorageError::UnknownVersion { object, version: v }),
        }
    }

    /// The pending change of `tx` to `object` (created on first write),
    /// after checking the kind, the transaction's byte budget and that no
    /// one committed to the object since the snapshot. A conflict aborts
    /// the transaction.
    fn pending(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        kind: ObjectKind,
        bytes: usize,
    ) -> Result<&mut PendingObject, StorageError> {
        let obj = self.visible(tx, object)?;
        Self::check_kind(obj, kind)?;
        let latest = obj.latest().seq;
        let record = self.record(tx)?;
        if latest > record.snapshot {
            self.abort(tx);
            return Err(StorageError::Conflict { object });
        }
        let total = self.write_budget(record.bytes, bytes)?;
        let version = if record.writes.contains_key(&object) {
            None
        } else {
            Some(self.allocate_version())
        };
        let record = self
            .txs
            .get_mut(&tx.id())
            .ok_or(StorageError::NotActive(tx.id()))?;
        record.bytes = total;
        match version {
            Some(version) => {
                let change = match kind {
                    ObjectKind::Blob => Pending::Blob(Vec::new()),
                    ObjectKind::Log => Pending::Log(Vec::new()),
                    ObjectKind::Map => Pending::Map(BTreeMap::new()),
                };
                Ok(record
                    .writes
                    .entry(object)
                    .or_insert(PendingObject { version, change }))
            }
            None => record
                .writes
                .get_mut(&object)
                .ok_or(StorageError::NotActive(tx.id())),
        }
    }

    /// A transaction that wrote `written` bytes so far may write `bytes`
    /// more: within its own bound and within what all open transactions
    /// may hold. Returns its new total.
    fn write_budget(&self, written: usize, bytes: usize) -> Result<usize, StorageError> {
        let total = written.saturating_add(bytes);
        if total > limits::MAX_TX_BYTES {
            return Err(StorageError::TransactionTooLarge {
                len: u32::try_from(total).unwrap_or(u32::MAX),
                max: limits::MAX_TX_BYTES as u32,
            });
        }
        let pending = self.pending_bytes();
        if pending.saturating_add(bytes) > limits::MAX_PENDING_BYTES {
            return Err(StorageError::PendingFull {
                pending: pending as u64,
                needed: bytes as u64,
                max: limits::MAX_PENDING_BYTES as u64,
            });
        }
        Ok(total)
    }

    /// Bytes of uncommitted writes all open transactions hold (at most
    /// `MAX_ACTIVE_TRANSACTIONS` to add up).
    fn pending_bytes(&self) -> usize {
        self.txs.values().map(|r| r.bytes).sum()
    }

    /// Discard `tx` (conflict or failure); its handle becomes RolledBack.
    fn abort(&mut self, tx: &mut Transaction) {
        self.txs.remove(&tx.id());
        tx.finish(TxState::RolledBack);
    }

    /// Fail with `VersionMismatch` unless `tx` sees `expected` as the
    /// version of `object`.
    pub fn expect_version(
        &self,
        tx: &Transaction,
        object: ObjectId,
        expected: VersionId,
    ) -> Result<(), StorageError> {
        let found = self.read(tx, object)?;
        if found != expected {
            return Err(StorageError::VersionMismatch {
                object,
                expected,
                found,
            });
        }
        Ok(())
    }

    /// The version each object `tx` changed will have if it commits, in
    /// object order (what [`commit_versions`](Self::commit_versions) returns).
    pub fn pending_versions(
        &self,
        tx: &Transaction,
    ) -> Result<Vec<(ObjectId, VersionId)>, StorageError> {
        Ok(self
            .record(tx)?
            .writes
            .iter()
            .map(|(o, p)| (*o, p.version))
            .collect())
    }

    /// Commit `tx`: check for conflicts, make the whole write-set durable in
    /// one record, apply it. Returns the new version of every object it
    /// changed. On any error the transaction is rolled back and nothing of
    /// it is applied.
    pub fn commit_versions(
        &mut self,
        tx: &mut Transaction,
    ) -> Result<Vec<(ObjectId, VersionId)>, StorageError> {
        self.commit_with_origin(tx, None)
    }

    /// [`commit_versions`](Self::commit_versions), recording `origin` with
    /// the commit. A transaction that changed nothing writes no record, so
    /// its origin is not kept.
    pub fn commit_with_origin(
        &mut self,
        tx: &mut Transaction,
        origin: Option<Origin>,
    ) -> Result<Vec<(ObjectId, VersionId)>, StorageError> {
        self.record(tx)?;
        let record = self
            .txs
            .remove(&tx.id())
            .ok_or(StorageError::NotActive(tx.id()))?;
        tx.finish(TxState::RolledBack);
        for object in record.writes.keys() {
            let latest = self.object(*object)?.latest().seq;
            if latest > record.snapshot {
                return Err(StorageError::Conflict { object: *object });
            }
        }
        let mut versions = Vec::with_capacity(record.writes.len());
        let mut changes = Vec::with_capacity(record.writes.len());
        for (object, pending) in record.writes {
            let version = pending.version;
            versions.push((object, version));
            changes.push(match pending.change {
                Pending::Blob(bytes) => Change::Blob {
                    object,
                    version,
                    bytes,
                },
                Pending::Log(records) => Change::LogAppend {
                    object,
                    version,
                    records,
                },
                Pending::Map(updates) => Change::Map {
                    object,
                    version,
                    updates: updates.into_iter().collect(),
                },
            });
        }
        if !changes.is_empty() {
            self.commit_record(changes, origin)?;
        }
        tx.finish(TxState::Committed);
        Ok(versions)
    }
}

/// Refuse, with [`StorageError::StoreFull`], a commit charged `added` and
/// `freed` that would take the committed state from `used` heap bytes
/// past `limit`. A record that adds nothing (a restart's `Open`) always
/// passes, so that a full store can still be reopened.
fn check_room(used: u64, limit: u64, (added, freed): (u64, u64)) -> Result<(), StorageError> {
    let after = used.saturating_add(added).saturating_sub(freed);
    if added > freed && after > limit {
        return Err(StorageError::StoreFull {
            used,
            needed: added - freed,
            limit,
        });
    }
    Ok(())
}

/// Make a record durable on `backend` (`apply` writes it), whose last
/// acknowledged commit is `last`. Nothing is applied if the backend
/// refuses it. After a failed write (the medium went away, as when a disk
/// driver dies mid-request) the backend is recovered in place first, so
/// that the store carries on once the medium is back; while it is not,
/// every commit fails with the recovery's error. `failed` is the store's
/// note of that.
fn write<B: StorageBackend>(
    backend: &mut B,
    failed: &mut bool,
    last: CommitSeq,
    apply: impl FnOnce(&mut B) -> Result<(), BackendError>,
) -> Result<(), StorageError> {
    if *failed {
        backend.recover(last)?;
        *failed = false;
    }
    if let Err(error) = apply(backend) {
        *failed = error != BackendError::Full;
        return Err(error.into());
    }
    Ok(())
}

/// What a read inside a transaction looks at.
#[derive(Clone, Copy, Debug)]
enum View {
    /// The transaction's own pending version, over its snapshot.
    Pending(VersionId, CommitSeq),
    /// A committed version.
    Committed(VersionStamp),
}

impl View {
    fn version(&self) -> VersionId {
        match self {
            View::Pending(v, _) => *v,
            View::Committed(s) => s.version,
        }
    }

    /// The commit the committed part of the view is read at.
    fn seq(&self) -> CommitSeq {
        match self {
            View::Pending(_, seq) => *seq,
            View::Committed(s) => s.seq,
        }
    }

    fn is_pending(&self) -> bool {
        matches!(self, View::Pending(..))
    }
}

impl<B: StorageBackend> TransactionalStorage for ObjectStore<B> {
    fn begin_transaction(&mut self) -> Result<Transaction, StorageError> {
        self.begin_owned(None, 0)
    }

    fn read(&self, tx: &Transaction, object_id: ObjectId) -> Result<VersionId, StorageError> {
        Ok(self.view(tx, object_id, None)?.version())
    }

    fn write(
        &mut self,
        tx: &mut Transaction,
        object_id: ObjectId,
        data: &[u8],
    ) -> Result<VersionId, StorageError> {
        match self.object(object_id)?.kind() {
            ObjectKind::Blob => self.write_blob(tx, object_id, data),
            ObjectKind::Log => self.append(tx, object_id, data).map(|(v, _)| v),
            found @ ObjectKind::Map => Err(StorageError::WrongKind {
                object: object_id,
                expected: ObjectKind::Blob,
                found,
            }),
        }
    }

    fn commit(&mut self, tx: &mut Transaction) -> Result<(), StorageError> {
        self.commit_versions(tx).map(|_| ())
    }

    fn rollback(&mut self, tx: &mut Transaction) -> Result<(), StorageError> {
        self.record(tx)?;
        self.abort(tx);
        Ok(())
    }
}

fn too_large(len: usize, max: usize) -> (u32, u32) {
    (u32::try_from(len).unwrap_or(u32::MAX), max as u32)
}

#[cfg(test)]
mod tests;
