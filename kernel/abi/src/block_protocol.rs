//! The block protocol a ring-3 disk driver serves over channels (the
//! virtio-blk driver in `userspace/drivers/virtio_blk`; the storage
//! service is its client).
//!
//! A client holds the driver's block capability: an object capability
//! for the driver's service with badge [`BLOCK_BADGE`], which the process
//! manager hands to the services whose manifest names `driver:NAME`. It
//! sends a [`BlockRequest`] through it (`send_to_object`) with action
//! [`REQUEST_ACTION`] and a reply channel as the message's first
//! capability; the driver answers a [`BlockResponse`] with action
//! [`RESPONSE_ACTION`] and the request's id as correlation id. A request
//! that did not come through the block capability (sent on the driver's
//! channel directly, or with another badge) or lacks the right is refused
//! with `BlockError::NotPermitted` before the device is touched: reads
//! need `READ`, writes and flushes `WRITE`.
//!
//! A write is on the device's media only after a later `Flush` has been
//! answered `Ok` (the device may cache writes); `Batch` runs its requests
//! in order and stops at the first failure.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::syscall::BlockInfo;
use crate::{BlockError, SchemaVersion};

/// The action of every request.
pub const REQUEST_ACTION: &str = "block.request";
/// The action of every answer.
pub const RESPONSE_ACTION: &str = "block.response";
/// The protocol's schema version.
pub const SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);
/// The badge of the block capability.
pub const BLOCK_BADGE: u64 = 0x626c_6b00;
/// The most data one request (or one whole batch) moves: a message
/// payload holds 16 KiB, less room for the encoding.
pub const MAX_TRANSFER: usize = 12 * 1024;
/// The most requests in one batch.
pub const MAX_BATCH: usize = 32;

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockRequest {
    /// The geometry.
    Info,
    /// `count` blocks from block `first`.
    Read { first: u64, count: u32 },
    /// Whole blocks from block `first`.
    Write {
        first: u64,
        #[serde(with = "serde_bytes_compat")]
        bytes: Vec<u8>,
    },
    /// Every write answered before it is on the media.
    Flush,
    /// These, in order, up to the first failure.
    Batch(Vec<BlockRequest>),
}

impl BlockRequest {
    /// Data bytes the request moves (both ways).
    pub fn transfer_bytes(&self, block_size: u32) -> u64 {
        match self {
            BlockRequest::Info | BlockRequest::Flush => 0,
            BlockRequest::Read { count, .. } => u64::from(*count) * u64::from(block_size),
            BlockRequest::Write { bytes, .. } => bytes.len() as u64,
            BlockRequest::Batch(requests) => {
                requests.iter().map(|r| r.transfer_bytes(block_size)).sum()
            }
        }
    }

    /// Whether it writes or flushes (and so needs `WRITE`).
    pub fn mutates(&self) -> bool {
        match self {
            BlockRequest::Info | BlockRequest::Read { .. } => false,
            BlockRequest::Write { .. } | BlockRequest::Flush => true,
            BlockRequest::Batch(requests) => requests.iter().any(BlockRequest::mutates),
        }
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockReply {
    Info(BlockInfo),
    Data(#[serde(with = "serde_bytes_compat")] Vec<u8>),
    Done,
    /// One answer per request run; shorter than the batch if one failed
    /// (its error is the last entry).
    Batch(Vec<BlockResponse>),
}

/// Every answer.
pub type BlockResponse = Result<BlockReply, BlockError>;

/// Byte vectors as postcard's compact byte strings.
mod serde_bytes_compat {
    use alloc::vec::Vec;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}
