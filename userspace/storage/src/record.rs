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
use crate::wire_bytes::{push_bytes, push_varint};

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

/// The index of [`Change::Map`] among the changes' variants.
const CHANGE_MAP: u64 = 3;

/// The commit record of one update of one map, borrowing its key, value
/// and origin: the record [`to_record`](Self::to_record) builds, written
/// by [`encode_into`](Self::encode_into) without building it.
#[derive(Clone, Copy, Debug)]
pub struct MapUpdate<'a> {
    pub seq: CommitSeq,
    pub object: ObjectId,
    pub version: VersionId,
    pub key: &'a [u8],
    /// `None` for a delete.
    pub value: Option<&'a [u8]>,
    pub origin: Option<&'a Origin>,
}

impl MapUpdate<'_> {
    /// The record: one `Change::Map` of one update, and the origin.
    pub fn to_record(&self) -> CommitRecord {
        CommitRecord {
            seq: self.seq,
            changes: alloc::vec![Change::Map {
                object: self.object,
                version: self.version,
                updates: alloc::vec![(self.key.to_vec(), self.value.map(<[u8]>::to_vec))],
            }],
            origin: self.origin.cloned(),
        }
    }

    /// The most bytes [`encode_into`](Self::encode_into) pushes: every
    /// varint at its widest (counted without looking at the numbers).
    pub fn max_encoded_len(&self) -> usize {
        const VARINT: usize = 10;
        let bytes = |b: &[u8]| VARINT + b.len();
        let fixed = 6 * VARINT + bytes(self.key) + 2;
        let value = self.value.map_or(0, bytes);
        let origin = self.origin.map_or(0, |o| 2 * VARINT + bytes(&o.answer));
        fixed + value + origin
    }

    /// Push the record's encoding onto `out`: the bytes postcard writes
    /// for [`to_record`](Self::to_record)'s record, field by field.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        push_varint(out, self.seq.as_raw());
        // One change, a map's, of one update.
        push_varint(out, 1);
        push_varint(out, CHANGE_MAP);
        push_varint(out, self.object.as_raw());
        push_varint(out, self.version.as_raw());
        push_varint(out, 1);
        push_bytes(out, self.key);
        match self.value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                push_bytes(out, value);
            }
        }
        match self.origin {
            None => out.push(0),
            Some(origin) => {
                out.push(1);
                push_varint(out, origin.task);
                push_varint(out, origin.message);
                push_bytes(out, &origin.answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn numbers() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..300, any::<u64>()]
    }

    proptest! {
        /// A map update's record written by hand is the record postcard
        /// writes, and decodes back to it.
        #[test]
        fn a_map_update_encodes_as_its_record(
            (seq, object, version) in (numbers(), numbers(), numbers()),
            key in prop::collection::vec(any::<u8>(), 0..300),
            value in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
            origin in prop::option::of((numbers(), numbers(), prop::collection::vec(any::<u8>(), 0..40))),
        ) {
            let origin = origin.map(|(task, message, answer)| Origin { task, message, answer });
            let update = MapUpdate {
                seq: CommitSeq::from_raw(seq),
                object: ObjectId::from_raw(object),
                version: VersionId::from_raw(version),
                key: &key,
                value: value.as_deref(),
                origin: origin.as_ref(),
            };
            let record = update.to_record();
            let mut out = alloc::vec![0xee];
            update.encode_into(&mut out);
            prop_assert!(out.len() - 1 <= update.max_encoded_len());
            prop_assert_eq!(&out, &postcard::to_extend(&record, alloc::vec![0xee]).unwrap());
            prop_assert_eq!(postcard::from_bytes::<CommitRecord>(&out[1..]).unwrap(), record);
        }
    }
}
