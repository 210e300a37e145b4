//! Blob operations: whole-content versions, read by byte ranges.

use alloc::vec::Vec;

use super::{too_large, ObjectStore, View};
use crate::backend::StorageBackend;
use crate::error::StorageError;
use crate::ids::{ObjectId, VersionId};
use crate::limits;
use crate::object::ObjectKind;
use crate::transaction::{Pending, Transaction};

/// A range of one blob version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRead {
    pub version: VersionId,
    /// The length of the whole blob at this version.
    pub total_len: u64,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl<B: StorageBackend> ObjectStore<B> {
    fn blob_content(
        &self,
        tx: &Transaction,
        object: ObjectId,
        view: View,
    ) -> Result<&[u8], StorageError> {
        if view.is_pending() {
            if let Some(Pending::Blob(bytes)) =
                self.record(tx)?.writes.get(&object).map(|p| &p.change)
            {
                return Ok(bytes);
            }
        }
        let obj = self.object(object)?;
        obj.blob_at(view.seq()).ok_or(StorageError::WrongKind {
            object,
            expected: ObjectKind::Blob,
            found: obj.kind(),
        })
    }

    /// Up to `max_len` bytes (and at most [`limits::MAX_READ_BYTES`]) of the
    /// blob from `offset`, at version `at` or as `tx` sees it.
    pub fn read_blob(
        &self,
        tx: &Transaction,
        object: ObjectId,
        at: Option<VersionId>,
        offset: u64,
        max_len: usize,
    ) -> Result<BlobRead, StorageError> {
        Self::check_kind(self.object(object)?, ObjectKind::Blob)?;
        let view = self.view(tx, object, at)?;
        let content = self.blob_content(tx, object, view)?;
        let total_len = content.len() as u64;
        if offset > total_len || max_len == 0 {
            return Err(StorageError::InvalidRange);
        }
        let start = offset as usize;
        let len = max_len
            .min(limits::MAX_READ_BYTES)
            .min(content.len() - start);
        Ok(BlobRead {
            version: view.version(),
            total_len,
            offset,
            bytes: content[start..start + len].to_vec(),
        })
    }

    /// Replace the blob's content: at commit, a new immutable version.
    pub fn write_blob(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        bytes: &[u8],
    ) -> Result<VersionId, StorageError> {
        if bytes.len() > limits::MAX_BLOB_BYTES {
            let (len, max) = too_large(bytes.len(), limits::MAX_BLOB_BYTES);
            return Err(StorageError::ValueTooLarge { len, max });
        }
        let pending = self.pending(tx, object, ObjectKind::Blob, bytes.len())?;
        pending.change = Pending::Blob(bytes.to_vec());
        Ok(pending.version)
    }

    /// Append `bytes` to the blob's next version (starting from the content
    /// `tx` sees), so a blob larger than one message can be built in pieces.
    /// Committed versions are never modified.
    pub fn extend_blob(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        bytes: &[u8],
    ) -> Result<VersionId, StorageError> {
        Self::check_kind(self.object(object)?, ObjectKind::Blob)?;
        let view = self.view(tx, object, None)?;
        let base_len = self.blob_content(tx, object, view)?.len();
        let new_len = base_len.saturating_add(bytes.len());
        if new_len > limits::MAX_BLOB_BYTES {
            let (len, max) = too_large(new_len, limits::MAX_BLOB_BYTES);
            return Err(StorageError::ValueTooLarge { len, max });
        }
        let base = if view.is_pending() {
            None
        } else {
            Some(self.blob_content(tx, object, view)?.to_vec())
        };
        let pending = self.pending(tx, object, ObjectKind::Blob, bytes.len())?;
        if let Pending::Blob(content) = &mut pending.change {
            if let Some(base) = base {
                *content = base;
            }
            content.extend_from_slice(bytes);
        }
        Ok(pending.version)
    }
}
