//! The storage service's errors. Every failure a client can see is a typed
//! variant, so clients match on causes instead of parsing text.

use core::fmt;
use pandagen_abi::{EnvelopeError, ExtensibleError, KernelError, Rights, SchemaMismatchError};
use serde::{Deserialize, Serialize};

use crate::backend::BackendError;
use crate::ids::{ObjectId, TxId, VersionId};
use crate::object::ObjectKind;

/// Everything that can go wrong in a storage operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageError {
    /// No object has this id (or it is not visible in the transaction's
    /// snapshot because it was created after the transaction began).
    UnknownObject(ObjectId),
    /// The object has no committed version with this id visible here.
    UnknownVersion {
        object: ObjectId,
        version: VersionId,
    },
    /// The operation does not apply to this kind of object.
    WrongKind {
        object: ObjectId,
        expected: ObjectKind,
        found: ObjectKind,
    },
    /// The capability was revoked (its badge's epoch is not the object's
    /// current one), or a token's tag does not verify (forged, altered,
    /// revoked, or from another backend).
    InvalidCapability(ObjectId),
    /// The capability is valid but lacks a right the operation needs.
    MissingRights {
        object: ObjectId,
        required: Rights,
        held: Rights,
    },
    /// A value (blob, log record or map value) is larger than allowed.
    ValueTooLarge { len: u32, max: u32 },
    /// A map key is longer than allowed.
    KeyTooLarge { len: u32, max: u32 },
    /// The transaction's pending writes would exceed the per-transaction
    /// bound.
    TransactionTooLarge { len: u32, max: u32 },
    /// A request carried more operations than one message may.
    TooManyOps { len: u32, max: u32 },
    /// An `Expect` operation found another version than the client expected.
    VersionMismatch {
        object: ObjectId,
        expected: VersionId,
        found: VersionId,
    },
    /// First-committer-wins: another transaction committed a change to this
    /// object after this transaction's snapshot. This transaction was rolled
    /// back; nothing of it was applied. Retry it from `begin`.
    Conflict { object: ObjectId },
    /// The transaction is not active: committed, rolled back, aborted by a
    /// conflict or a failure, expired, lost in a restart, or never begun by
    /// the caller.
    NotActive(TxId),
    /// Too many transactions are active at once.
    TooManyTransactions { max: u32 },
    /// The request's payload is not a valid encoding of a request.
    MalformedPayload,
    /// The request's schema version is outside the service's window.
    SchemaMismatch(SchemaMismatchError),
    /// The envelope's action is not one this service knows.
    UnknownAction,
    /// The envelope's action does not match the request it carries.
    ActionMismatch,
    /// A list or range request asked for zero items or an offset past the end.
    InvalidRange,
    /// The answer would not fit in one message (too many reads in one
    /// `Transact`); the transaction was rolled back. Split the request.
    ReplyTooLarge,
    /// The backend could not make a commit durable. Nothing of it was
    /// applied; the transaction is rolled back. With
    /// [`BackendError::OutcomeUnknown`] the commit may still show up
    /// after a restart (see there).
    Backend(BackendError),
    /// A request about one object was not sent through an object
    /// capability (it came on the service channel).
    CapabilityRequired,
    /// The object has been revoked as often as a badge can count; it can
    /// be revoked no more.
    RevocationsExhausted(ObjectId),
    /// The answer's capability could not be minted (the kernel refused:
    /// the service lost its registration, or the space is full). Whatever
    /// the request did stands; re-send it under the same id to get the
    /// capability.
    MintRefused(KernelError),
    /// The store's memory is full: the commit would grow its in-memory
    /// state (`used` heap bytes, growing by `needed`) past `limit`, beyond
    /// what a restarted service could rebuild from its journal. Nothing of
    /// the commit was applied; the transaction is rolled back. Every
    /// version is kept, so deleting does not make room: what is stored
    /// stays readable, and the store takes no more growth.
    StoreFull { used: u64, needed: u64, limit: u64 },
    /// The open transactions together already hold `pending` bytes of
    /// uncommitted writes, and this write of `needed` more would take them
    /// past `max` (the room the service's memory keeps for them). Nothing
    /// was written; the transaction stays active. Commit or roll back, or
    /// retry once other transactions have ended (idle ones expire).
    PendingFull { pending: u64, needed: u64, max: u64 },
    /// Never sent: an error of a newer service version that this version
    /// does not know, with its variant index (see
    /// [`pandagen_abi::evolve`]).
    Unrecognized { variant: u32 },
}

impl ExtensibleError for StorageError {
    fn unrecognized(variant: u32) -> Self {
        StorageError::Unrecognized { variant }
    }
}

/// The name docs/interfaces.md uses for the error type of [`TransactionalStorage`](crate::transaction::TransactionalStorage).
pub type TransactionError = StorageError;

impl From<BackendError> for StorageError {
    fn from(e: BackendError) -> Self {
        StorageError::Backend(e)
    }
}

impl From<EnvelopeError> for StorageError {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::SchemaMismatch(m) => StorageError::SchemaMismatch(m),
            _ => StorageError::MalformedPayload,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::UnknownObject(o) => write!(f, "unknown object {o}"),
            StorageError::UnknownVersion { object, version } => {
                write!(f, "{object} has no visible version {version}")
            }
            StorageError::WrongKind {
                object,
                expected,
                found,
            } => write!(
                f,
                "{object} is a {found:?}, the operation needs a {expected:?}"
            ),
            StorageError::InvalidCapability(o) => write!(f, "invalid capability for {o}"),
            StorageError::MissingRights {
                object,
                required,
                held,
            } => write!(f, "capability for {object} holds {held}, needs {required}"),
            StorageError::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds {max}")
            }
            StorageError::KeyTooLarge { len, max } => write!(f, "key of {len} bytes exceeds {max}"),
            StorageError::TransactionTooLarge { len, max } => {
                write!(f, "transaction of {len} bytes exceeds {max}")
            }
            StorageError::TooManyOps { len, max } => {
                write!(f, "{len} operations in one request, at most {max}")
            }
            StorageError::VersionMismatch {
                object,
                expected,
                found,
            } => write!(f, "{object} is at {found}, expected {expected}"),
            StorageError::Conflict { object } => {
                write!(f, "conflict on {object}: a concurrent commit won")
            }
            StorageError::NotActive(tx) => write!(f, "{tx} is not active"),
            StorageError::TooManyTransactions { max } => {
                write!(f, "more than {max} active transactions")
            }
            StorageError::MalformedPayload => f.write_str("malformed request payload"),
            StorageError::SchemaMismatch(e) => write!(f, "{e}"),
            StorageError::UnknownAction => f.write_str("unknown action"),
            StorageError::ActionMismatch => f.write_str("action does not match the request"),
            StorageError::InvalidRange => f.write_str("invalid range"),
            StorageError::ReplyTooLarge => f.write_str("reply too large for one message"),
            StorageError::Backend(e) => write!(f, "backend: {e:?}"),
            StorageError::CapabilityRequired => {
                f.write_str("the request must be sent through an object capability")
            }
            StorageError::RevocationsExhausted(o) => write!(f, "{o} cannot be revoked again"),
            StorageError::MintRefused(e) => write!(f, "capability not issued: {e}"),
            StorageError::StoreFull {
                used,
                needed,
                limit,
            } => write!(
                f,
                "store full: {used} bytes held, the commit needs {needed} more, limit {limit}"
            ),
            StorageError::PendingFull {
                pending,
                needed,
                max,
            } => write!(
                f,
                "open transactions hold {pending} bytes of writes, {needed} more would pass {max}"
            ),
            StorageError::Unrecognized { variant } => {
                write!(f, "error {variant} of a newer storage version")
            }
        }
    }
}

impl core::error::Error for StorageError {}
