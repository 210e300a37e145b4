//! Log operations: append records, read index ranges. A log never loses or
//! rewrites a record; version *v* of a log is a prefix of every later one.

use alloc::vec::Vec;

use super::{too_large, ObjectStore};
use crate::backend::StorageBackend;
use crate::error::StorageError;
use crate::ids::{ObjectId, VersionId};
use crate::limits;
use crate::object::ObjectKind;
use crate::transaction::{Pending, Transaction};

/// A range of records of one log version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    pub version: VersionId,
    /// How many records the log holds at this version.
    pub total: u64,
    /// The index of `records[0]`.
    pub start: u64,
    pub records: Vec<Vec<u8>>,
}

impl<B: StorageBackend> ObjectStore<B> {
    /// Append `record`; returns the log's next version and the record's
    /// index (as this transaction sees the log).
    pub fn append(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        record: &[u8],
    ) -> Result<(VersionId, u64), StorageError> {
        if record.len() > limits::MAX_VALUE_BYTES {
            let (len, max) = too_large(record.len(), limits::MAX_VALUE_BYTES);
            return Err(StorageError::ValueTooLarge { len, max });
        }
        let snapshot = self.record(tx)?.snapshot;
        let committed = match self.object(object)?.log_at(snapshot) {
            Some(records) => records.len() as u64,
            None => 0, // not a log: `pending` reports the kind
        };
        let pending = self.pending(tx, object, ObjectKind::Log, record.len())?;
        match &mut pending.change {
            Pending::Log(appended) => {
                appended.push(record.to_vec());
                Ok((pending.version, committed + appended.len() as u64 - 1))
            }
            _ => Err(StorageError::NotActive(tx.id())),
        }
    }

    /// Up to `max` records from index `start`, at version `at` or as `tx`
    /// sees the log; at most [`limits::MAX_READ_BYTES`] of record data, but
    /// always at least one record when one exists.
    pub fn read_log(
        &self,
        tx: &Transaction,
        object: ObjectId,
        at: Option<VersionId>,
        start: u64,
        max: usize,
    ) -> Result<LogRead, StorageError> {
        let obj = self.object(object)?;
        Self::check_kind(obj, ObjectKind::Log)?;
        let view = self.view(tx, object, at)?;
        let committed = obj.log_at(view.seq()).unwrap_or(&[]);
        let appended: &[Vec<u8>] = match self.record(tx)?.writes.get(&object) {
            Some(p) if view.is_pending() => match &p.change {
                Pending::Log(a) => a,
                _ => &[],
            },
            _ => &[],
        };
        let total = (committed.len() + appended.len()) as u64;
        if start > total || max == 0 {
            return Err(StorageError::InvalidRange);
        }
        let all = committed
            .iter()
            .map(|(_, r)| r)
            .chain(appended.iter())
            .skip(start as usize);
        let mut records = Vec::new();
        let mut bytes = 0;
        for r in all.take(max) {
            if !records.is_empty() && bytes + r.len() > limits::MAX_READ_BYTES {
                break;
            }
            bytes += r.len();
            records.push(r.clone());
        }
        Ok(LogRead {
            version: view.version(),
            total,
            start,
            records,
        })
    }
}
