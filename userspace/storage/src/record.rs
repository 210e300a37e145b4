//! Commit records: the unit of durability.
//!
//! A commit record holds the whole write-set of one committed transaction
//! (or one object creation or revocation). The backend makes a record
//! durable atomically — all of it or none of it — and recovery rebuilds the
//! store by replaying records in commit order. Nothing else is ever written,
//! so a crash can never leave part of a transaction applied.
//!
//! Byte fields are written as byte strings ([`wire_bytes`](crate::wire_bytes)):
//! one copy each, in the same bytes as the sequences of `u8` the journal's
//! format was defined with.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::ids::{CommitSeq, ObjectId, VersionId};
use crate::object::ObjectKind;

/// One change to one object inside a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A new, empty object; `version` is its first version.
    Create {
        object: ObjectId,
        kind: ObjectKind,
        version: VersionId,
    },
    /// A blob's new content.
    Blob {
        object: ObjectId,
        version: VersionId,
        #[serde(with = "crate::wire_bytes")]
        bytes: Vec<u8>,
    },
    /// Records appended to a log.
    LogAppend {
        object: ObjectId,
        version: VersionId,
        #[serde(with = "crate::wire_bytes::list")]
        records: Vec<Vec<u8>>,
    },
    /// Map puts (`Some`) and deletes (`None`), in key order.
    Map {
        object: ObjectId,
        version: VersionId,
        #[serde(with = "crate::wire_bytes::updates")]
        updates: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    },
    /// Every capability for `object` issued under an older epoch is void.
    Revoke { object: ObjectId, epoch: u32 },
    /// An instance of the service opened the store. Instance numbers
    /// prefix transaction ids, so that an id handed out by one instance
    /// never names a transaction of a later one.
    Open { instance: u32 },
}

impl Change {
    /// The object changed, if the change is to an object.
    pub fn object(&self) -> Option<ObjectId> {
        match self {
            Change::Create { object, .. }
            | Change::Blob { object, .. }
            | Change::LogAppend { object, .. }
            | Change::Map { object, .. }
            | Change::Revoke { object, .. } => Some(*object),
            Change::Open { .. } => None,
        }
    }

    /// The version this change creates, if it creates one.
    pub fn version(&self) -> Option<VersionId> {
        match self {
            Change::Create { version, .. }
            | Change::Blob { version, .. }
            | Change::LogAppend { version, .. }
            | Change::Map { version, .. } => Some(*version),
            Change::Revoke { .. } | Change::Open { .. } => None,
        }
    }
}

/// The request that caused a commit and the answer it was given, kept with
/// the commit so that the same request re-sent after a restart of the
/// service (its first answer lost with the old instance) is answered again
/// instead of being executed twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The requesting task, as the kernel stamped it.
    pub task: u64,
    /// The request's message id.
    pub message: u64,
    /// The encoded answer payload.
    #[serde(with = "crate::wire_bytes")]
    pub answer: Vec<u8>,
}

/// Everything one commit changed, applied atomically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub seq: CommitSeq,
    pub changes: Vec<Change>,
    pub origin: Option<Origin>,
}
