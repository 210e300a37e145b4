//! Where committed state lives.
//!
//! The store keeps its indexes in memory and hands the backend one
//! [`CommitRecord`] per commit. The contract is small on purpose, so that a
//! journaled block-device backend can replace the in-memory one without the
//! service or its protocol changing:
//!
//! * [`StorageBackend::apply`] makes a whole record durable atomically. `Ok`
//!   means it will be replayed after any later crash; `Err` means it will
//!   not be, and the store applies nothing of it. (If the process dies in
//!   the middle of `apply`, no caller ever sees the outcome, and recovery
//!   replays the record exactly if all of it reached the medium.)
//! * [`StorageBackend::replay`] hands back every durable record in commit
//!   order. A record torn by a crash during `apply` is discarded here —
//!   which is why `apply` is all-or-nothing.
//! * The backend owns the secret key that capability tags are computed
//!   with, so capabilities stay valid exactly as long as the data does: a
//!   restarted service on the same backend accepts the tokens it issued
//!   before, and a fresh backend accepts none of them.

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::cell::RefCell;
use serde::{Deserialize, Serialize};

use crate::ids::CommitSeq;
use crate::record::{CommitRecord, MapUpdate};
use crate::siphash::SipKey;

/// Why a backend could not make a record durable or read its records back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendError {
    /// The medium is full.
    Full,
    /// The medium failed to write or read.
    Io,
    /// The backend was interrupted mid-write (a crash, or injected as one)
    /// and accepts nothing until it is recovered by `replay`.
    Crashed,
    /// A durable record does not decode: the medium holds corrupt data
    /// before its end (a torn *tail* is not corruption; it is discarded).
    Corrupt,
    /// The medium failed mid-write and what may have reached it could not
    /// be voided (the device is gone: its driver died, say). The commit is
    /// not applied in this run, and the backend voids it once the device
    /// is back; but if the service or the machine stops first, the next
    /// start may find it durable. The caller cannot know which, so it must
    /// look rather than assume either.
    OutcomeUnknown,
}

/// What recovery found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records replayed.
    pub records: u64,
    /// Bytes of a torn final record that were discarded.
    pub discarded_bytes: u64,
}

/// A durable home for commit records.
pub trait StorageBackend {
    /// The key capability tags are computed with. It must be secret (never
    /// leave the storage service) and stable for the life of the data.
    fn cap_key(&self) -> SipKey;

    /// Make `record` durable, all of it or nothing.
    fn apply(&mut self, record: &CommitRecord) -> Result<(), BackendError>;

    /// [`apply`](Self::apply) of `update`'s record (the same bytes). A
    /// backend that can write it without building the record overrides
    /// this.
    fn apply_map_update(&mut self, update: &MapUpdate<'_>) -> Result<(), BackendError> {
        self.apply(&update.to_record())
    }

    /// Recover: feed every durable record to `visit`, in commit order, and
    /// discard any torn tail so that later `apply`s follow the last good
    /// record.
    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError>;

    /// How many compactions of the durable history have completed over
    /// the life of the data (they survive restarts). A backend that never
    /// compacts answers 0.
    fn compactions(&self) -> u64;

    /// Take the backend back into service after a failed `apply`, without
    /// a restart of its user: the medium went away mid-write and is back
    /// (a disk driver crashed and was restarted). Whatever the failed
    /// write left on the medium is made unreplayable first (its commit was
    /// reported as failed), then the durable history is found again and
    /// must end at `last`, the user's last acknowledged commit (`Corrupt`
    /// if not). Until this succeeds, `apply` stays refused.
    fn recover(&mut self, last: CommitSeq) -> Result<(), BackendError>;
}

impl<B: StorageBackend + ?Sized> StorageBackend for Box<B> {
    fn cap_key(&self) -> SipKey {
        (**self).cap_key()
    }

    fn apply(&mut self, record: &CommitRecord) -> Result<(), BackendError> {
        (**self).apply(record)
    }

    fn apply_map_update(&mut self, update: &MapUpdate<'_>) -> Result<(), BackendError> {
        (**self).apply_map_update(update)
    }

    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError> {
        (**self).replay(visit)
    }

    fn compactions(&self) -> u64 {
        (**self).compactions()
    }

    fn recover(&mut self, last: CommitSeq) -> Result<(), BackendError> {
        (**self).recover(last)
    }
}

/// A backend shared between successive instances of the service — how
/// tests model "the storage task died and was restarted on the same disk":
/// the old instance is dropped mid-flight and a new one opens the same
/// backend.
impl<B: StorageBackend> StorageBackend for Rc<RefCell<B>> {
    fn cap_key(&self) -> SipKey {
        self.borrow().cap_key()
    }

    fn apply(&mut self, record: &CommitRecord) -> Result<(), BackendError> {
        self.borrow_mut().apply(record)
    }

    fn apply_map_update(&mut self, update: &MapUpdate<'_>) -> Result<(), BackendError> {
        self.borrow_mut().apply_map_update(update)
    }

    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError> {
        self.borrow_mut().replay(visit)
    }

    fn compactions(&self) -> u64 {
        self.borrow().compactions()
    }

    fn recover(&mut self, last: CommitSeq) -> Result<(), BackendError> {
        self.borrow_mut().recover(last)
    }
}
