//! # pandagen-storage — versioned objects behind capabilities
//!
//! The storage service holds objects of three kinds, each with its semantics
//! enforced ([`ObjectKind`]): immutable **Blobs** (a write makes a new
//! version), append-only **Logs** (read by index ranges) and key-value
//! **Maps** (put, get, delete, ordered list). Objects are named by
//! [`ObjectId`] — no paths, no hierarchy. Every committed modification
//! creates a new [`VersionId`], and every old version stays readable.
//!
//! * [`transaction`] — all changes go through transactions: the
//!   [`TransactionalStorage`] trait plus typed per-kind operations.
//!   Isolation is **snapshot isolation, first committer wins**: a commit
//!   that overlaps another's write to the same object fails with
//!   [`StorageError::Conflict`] and applies nothing.
//! * [`store`] — the engine: objects, versions, transactions.
//! * [`backend`] — where commits go. A commit's whole write-set is one
//!   [`CommitRecord`](record::CommitRecord) the backend makes durable
//!   atomically; recovery replays records. [`memory`] keeps a framed
//!   journal in memory; [`journal`] is the crash-consistent block-device
//!   version, and [`device`] puts it on the kernel's block device (the
//!   ring-3 service does when it is given one, so its objects survive a
//!   restart). A crash never leaves part of a transaction applied.
//! * [`cap`] — an [`ObjectCap`] is a *kernel* capability the service
//!   mints for an object (badge = object + revocation epoch); clients send
//!   requests through it, the kernel moves and attenuates it, the service
//!   revokes by bumping the epoch, and it survives restarts of the service
//!   on the same backend. [`ObjectToken`] is its sealed, storable form
//!   (SipHash-2-4 MAC under the backend's key), good only for `Import`.
//! * [`protocol`] — the versioned IPC protocol (schema v1, "current +
//!   previous major" policy, one action per request, typed errors).
//! * [`server`] — `serve` loop, single-step `handle`, pure `respond`;
//!   idempotent retries (answers remembered, and journaled with commits so
//!   they survive restarts).
//! * [`client`] — the typed client over any `KernelApi`, blocking (`call`
//!   with timeout and same-id retries) or not (`start` / `poll`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod backend;
pub mod cap;
pub mod client;
pub mod device;
pub mod driver_disk;
pub mod error;
pub mod ids;
pub mod journal;
pub mod memory;
pub mod object;
pub mod protocol;
pub mod record;
pub mod server;
/// SipHash-2-4, shared with the kernel (which keys its entropy pool with it).
pub use pandagen_abi::siphash;
pub mod store;
pub mod transaction;
mod wire_bytes;

pub use backend::{BackendError, StorageBackend};
pub use cap::{ObjectCap, ObjectToken};
pub use client::{ClientError, StorageClient};
pub use device::BlockCallClient;
pub use driver_disk::DriverBlockClient;
pub use error::{StorageError, TransactionError};
pub use ids::{CommitSeq, ObjectId, TxId, VersionId};
pub use journal::JournalBackend;
pub use memory::MemoryBackend;
pub use object::ObjectKind;
pub use protocol::{Op, OpResult, Reply, Request, StorageInfo};
pub use server::{Answer, StorageServer};
pub use store::ObjectStore;
pub use transaction::{BoundTransaction, Transaction, TransactionalStorage, TxState};

/// Bounds the service enforces, chosen so that any single value, and any
/// read reply, fits in one message payload.
pub mod limits {
    /// The largest map value or log record.
    pub const MAX_VALUE_BYTES: usize = 8 * 1024;
    /// The longest map key.
    pub const MAX_KEY_BYTES: usize = 256;
    /// The largest blob. Blobs larger than one message are written in
    /// pieces (`WriteBlob` then `ExtendBlob`s, inside one transaction) and
    /// read by ranges.
    pub const MAX_BLOB_BYTES: usize = 1024 * 1024;
    /// The most bytes one transaction may write before it commits.
    pub const MAX_TX_BYTES: usize = 2 * 1024 * 1024;
    /// The most bytes all open transactions together may hold in
    /// uncommitted writes: the service's memory keeps room for this much
    /// (besides its committed state), so clients opening many large
    /// transactions get `PendingFull`, never an out-of-memory service.
    pub const MAX_PENDING_BYTES: usize = MAX_TX_BYTES;
    /// The most transactions active at once.
    pub const MAX_ACTIVE_TRANSACTIONS: usize = 64;
    /// The most transactions one client may have active at once, so that
    /// one client cannot take every slot.
    pub const MAX_TRANSACTIONS_PER_CLIENT: usize = 16;
    /// The most operations in one request.
    pub const MAX_OPS_PER_REQUEST: usize = 32;
    /// The most data bytes one read reply carries (log records, list keys,
    /// a blob range); replies say when there is more.
    pub const MAX_READ_BYTES: usize = 12 * 1024;
}
