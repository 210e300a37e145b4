//! The storage service's IPC protocol, schema v1.
//!
//! A request is a [`Request`] in a `MessageEnvelope` whose action is
//! [`Request::action`] and whose schema version is [`SCHEMA`]; its first
//! attached capability is a send-only capability for the client's reply
//! channel. The answer is one envelope with action [`actions::REPLY`],
//! correlated to the request, whose payload is a [`Response`]: the reply or
//! the typed error. Every request gets exactly one answer, bad ones
//! included.
//!
//! Versioning follows the "current + previous major" window: the service
//! accepts [`VERSION_POLICY`]. v1 is the first schema, so today the window
//! holds v1 alone; when v2 ships, v1's types move to a `v1` module and the
//! policy becomes `current(2, _).with_min_major(1)`.
//!
//! Retries are idempotent: a request re-sent with the same message id gets
//! the answer of its first execution, not a second execution (see
//! [`server`](crate::server)).

use alloc::vec::Vec;
use pandagen_abi::{Rights, SchemaVersion, VersionPolicy};
use serde::{Deserialize, Serialize};

use crate::cap::ObjectCap;
use crate::error::StorageError;
use crate::ids::{CommitSeq, ObjectId, TxId, VersionId};
use crate::object::ObjectKind;

/// The schema version clients send.
pub const SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);

/// The versions the service accepts: the current major and the previous one
/// (v1 being the first, the window is v1.x).
pub const VERSION_POLICY: VersionPolicy = VersionPolicy::current(1, 0).with_min_major(1);

/// Action names, one per request, plus the reply's.
pub mod actions {
    pub const CREATE: &str = "storage.create";
    pub const BEGIN: &str = "storage.begin";
    pub const OP: &str = "storage.op";
    pub const COMMIT: &str = "storage.commit";
    pub const ROLLBACK: &str = "storage.rollback";
    pub const TRANSACT: &str = "storage.transact";
    pub const VERSIONS: &str = "storage.versions";
    pub const ATTENUATE: &str = "storage.attenuate";
    pub const REVOKE: &str = "storage.revoke";
    pub const REPLY: &str = "storage.reply";
    /// Not a request: the action clients use when they hand an
    /// [`ObjectCap`](crate::cap::ObjectCap) to each other.
    pub const CAP_DELEGATION: &str = "storage.cap";

    /// Every request action.
    pub const REQUESTS: [&str; 9] = [
        CREATE, BEGIN, OP, COMMIT, ROLLBACK, TRANSACT, VERSIONS, ATTENUATE, REVOKE,
    ];
}

/// One operation on one object, inside a transaction.
///
/// `at: None` reads what the transaction sees (its snapshot plus its own
/// writes); `at: Some(v)` reads committed version `v`, which must be visible
/// in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The version of the object the transaction sees (`READ`).
    Version { cap: ObjectCap },
    /// Fail with `VersionMismatch` unless the transaction sees `version`
    /// (`READ`).
    Expect { cap: ObjectCap, version: VersionId },
    /// A byte range of a blob (`READ`).
    ReadBlob {
        cap: ObjectCap,
        at: Option<VersionId>,
        offset: u64,
        max_len: u32,
    },
    /// Replace a blob's content (`WRITE`).
    WriteBlob { cap: ObjectCap, bytes: Vec<u8> },
    /// Append to the blob's next version, to build large blobs (`WRITE`).
    ExtendBlob { cap: ObjectCap, bytes: Vec<u8> },
    /// Append a record to a log (`WRITE`).
    Append { cap: ObjectCap, record: Vec<u8> },
    /// Records `start..` of a log (`READ`).
    ReadLog {
        cap: ObjectCap,
        at: Option<VersionId>,
        start: u64,
        max: u32,
    },
    /// Set a map key (`WRITE`).
    Put {
        cap: ObjectCap,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Read a map key (`READ`).
    Get {
        cap: ObjectCap,
        key: Vec<u8>,
        at: Option<VersionId>,
    },
    /// Remove a map key (`WRITE`).
    Delete { cap: ObjectCap, key: Vec<u8> },
    /// Map keys after `start_after`, in order (`READ`).
    List {
        cap: ObjectCap,
        at: Option<VersionId>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    },
}

impl Op {
    pub fn cap(&self) -> &ObjectCap {
        match self {
            Op::Version { cap }
            | Op::Expect { cap, .. }
            | Op::ReadBlob { cap, .. }
            | Op::WriteBlob { cap, .. }
            | Op::ExtendBlob { cap, .. }
            | Op::Append { cap, .. }
            | Op::ReadLog { cap, .. }
            | Op::Put { cap, .. }
            | Op::Get { cap, .. }
            | Op::Delete { cap, .. }
            | Op::List { cap, .. } => cap,
        }
    }

    /// The rights the capability must hold.
    pub fn required_rights(&self) -> Rights {
        match self {
            Op::WriteBlob { .. }
            | Op::ExtendBlob { .. }
            | Op::Append { .. }
            | Op::Put { .. }
            | Op::Delete { .. } => Rights::WRITE,
            _ => Rights::READ,
        }
    }
}

/// The result of one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// `Version`.
    Version(VersionId),
    /// `Expect` held.
    Matched,
    /// `WriteBlob`, `ExtendBlob`, `Put`: the version the object gets at
    /// commit.
    Written(VersionId),
    /// `Append`: the version at commit and the record's index.
    Appended { version: VersionId, index: u64 },
    /// `ReadBlob`.
    Blob {
        version: VersionId,
        total_len: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// `ReadLog`.
    Records {
        version: VersionId,
        total: u64,
        start: u64,
        records: Vec<Vec<u8>>,
    },
    /// `Get`.
    Value {
        version: VersionId,
        value: Option<Vec<u8>>,
    },
    /// `Delete`.
    Deleted { version: VersionId, existed: bool },
    /// `List`.
    Keys {
        version: VersionId,
        keys: Vec<Vec<u8>>,
        more: bool,
    },
}

/// A request to the storage service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create an empty object; answers `Created` with a full capability.
    Create { kind: ObjectKind },
    /// Begin a transaction owned by the sending task.
    Begin,
    /// One operation in an active transaction of the sender's.
    Op { tx: TxId, op: Op },
    /// Commit; answers the new version of every object changed.
    Commit { tx: TxId },
    /// Discard the transaction.
    Rollback { tx: TxId },
    /// Begin, run `ops` in order, commit — in one message. If any op fails,
    /// the whole transaction is rolled back and the error returned.
    Transact { ops: Vec<Op> },
    /// Committed versions of an object after `after`, oldest first (`READ`).
    Versions {
        cap: ObjectCap,
        after: Option<VersionId>,
        limit: u32,
    },
    /// A new token for the same object with `cap`'s rights restricted to
    /// `rights`.
    Attenuate { cap: ObjectCap, rights: Rights },
    /// Void every token for the object and get a fresh full one (`CONTROL`).
    Revoke { cap: ObjectCap },
}

impl Request {
    /// The envelope action for this request.
    pub fn action(&self) -> &'static str {
        match self {
            Request::Create { .. } => actions::CREATE,
            Request::Begin => actions::BEGIN,
            Request::Op { .. } => actions::OP,
            Request::Commit { .. } => actions::COMMIT,
            Request::Rollback { .. } => actions::ROLLBACK,
            Request::Transact { .. } => actions::TRANSACT,
            Request::Versions { .. } => actions::VERSIONS,
            Request::Attenuate { .. } => actions::ATTENUATE,
            Request::Revoke { .. } => actions::REVOKE,
        }
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Created {
        cap: ObjectCap,
        version: VersionId,
    },
    Begun {
        tx: TxId,
        snapshot: CommitSeq,
    },
    Op(OpResult),
    Committed {
        versions: Vec<(ObjectId, VersionId)>,
    },
    RolledBack,
    Transacted {
        results: Vec<OpResult>,
        versions: NewVersions,
    },
    Versions(Vec<VersionId>),
    Cap(ObjectCap),
}

/// The new version of each object a commit changed.
pub type NewVersions = Vec<(ObjectId, VersionId)>;

/// The payload of every answer.
pub type Response = Result<Reply, StorageError>;

/// The most versions one `Versions` answer lists.
pub const MAX_VERSIONS_PER_REPLY: usize = 512;
