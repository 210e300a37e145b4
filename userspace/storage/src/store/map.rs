//! Map operations: put, get, delete and ordered listing, over a
//! multi-version map (see [`object`](crate::object)).

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::iter::Peekable;
use core::ops::Bound;

use super::{too_large, ObjectStore, View};
use crate::backend::StorageBackend;
use crate::error::StorageError;
use crate::ids::{ObjectId, VersionId};
use crate::limits;
use crate::object::{Object, ObjectKind};
use crate::record::Origin;
use crate::transaction::{MapOverlay, Pending, Transaction};

/// A map value at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapValue {
    pub version: VersionId,
    /// `None` if the key is absent at that version.
    pub value: Option<Vec<u8>>,
}

/// The outcome of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The version the map will have at commit (if the key existed), or
    /// the version the transaction sees (if not: nothing changed).
    pub version: VersionId,
    pub existed: bool,
}

/// A page of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyList {
    pub version: VersionId,
    pub keys: Vec<Vec<u8>>,
    /// More keys follow the last one returned.
    pub more: bool,
}

fn check_key(key: &[u8]) -> Result<(), StorageError> {
    if key.len() > limits::MAX_KEY_BYTES {
        let (len, max) = too_large(key.len(), limits::MAX_KEY_BYTES);
        return Err(StorageError::KeyTooLarge { len, max });
    }
    Ok(())
}

impl<B: StorageBackend> ObjectStore<B> {
    fn map_overlay(
        &self,
        tx: &Transaction,
        object: ObjectId,
    ) -> Result<Option<&MapOverlay>, StorageError> {
        Ok(
            match self.record(tx)?.writes.get(&object).map(|p| &p.change) {
                Some(Pending::Map(overlay)) => Some(overlay),
                _ => None,
            },
        )
    }

    fn map_update(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<VersionId, StorageError> {
        let size = key.len() + value.as_ref().map_or(0, Vec::len);
        let pending = self.pending(tx, object, ObjectKind::Map, size)?;
        if let Pending::Map(overlay) = &mut pending.change {
            overlay.insert(key, value);
        }
        Ok(pending.version)
    }

    /// Set `key` to `value`.
    pub fn put(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        key: &[u8],
        value: &[u8],
    ) -> Result<VersionId, StorageError> {
        Self::check_put(key, value)?;
        self.map_update(tx, object, key.to_vec(), Some(value.to_vec()))
    }

    /// [`put`](Self::put) of a key and value the caller hands over (a
    /// decoded request's), kept without copying them.
    pub fn put_owned(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<VersionId, StorageError> {
        Self::check_put(&key, &value)?;
        self.map_update(tx, object, key, Some(value))
    }

    fn check_put(key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        if value.len() > limits::MAX_VALUE_BYTES {
            let (len, max) = too_large(value.len(), limits::MAX_VALUE_BYTES);
            return Err(StorageError::ValueTooLarge { len, max });
        }
        Ok(())
    }

    /// The value of `key` at version `at` or as `tx` sees the map.
    pub fn get(
        &self,
        tx: &Transaction,
        object: ObjectId,
        key: &[u8],
        at: Option<VersionId>,
    ) -> Result<MapValue, StorageError> {
        check_key(key)?;
        let obj = self.object(object)?;
        Self::check_kind(obj, ObjectKind::Map)?;
        let view = self.view(tx, object, at)?;
        if view.is_pending() {
            if let Some(value) = self.map_overlay(tx, object)?.and_then(|o| o.get(key)) {
                return Ok(MapValue {
                    version: view.version(),
                    value: value.clone(),
                });
            }
        }
        Ok(Self::map_value(obj, key, view))
    }

    /// The committed value of `key` in the map `obj` in `view`.
    fn map_value(obj: &Object, key: &[u8], view: View) -> MapValue {
        let value = obj
            .map_get_at(key, view.seq())
            .flatten()
            .map(<[u8]>::to_vec);
        MapValue {
            version: view.version(),
            value,
        }
    }

    /// [`get`](Self::get) in a transaction of its own that `owner` begins
    /// and commits at once (a one-operation `Transact`): the same checks,
    /// errors and outcome, and the transaction id it would have used is
    /// used up, but no transaction record is made. It reads at the last
    /// commit and writes nothing, so its commit writes no record. The
    /// value is lent, not copied: the version read and the value there.
    ///
    /// `authorize` checks the object first (the server's capability
    /// check, which would otherwise look it up once more): its error, or
    /// `UnknownObject`, comes before any of the transaction's.
    pub fn get_alone(
        &mut self,
        owner: Option<u64>,
        object: ObjectId,
        key: &[u8],
        at: Option<VersionId>,
        authorize: impl FnOnce(&Object) -> Result<(), StorageError>,
    ) -> Result<(VersionId, Option<&[u8]>), StorageError> {
        // The field, not `Self::object`: `obj` is held across the
        // transaction id's update.
        let obj = self
            .catalog
            .objects
            .get(&object)
            .ok_or(StorageError::UnknownObject(object))?;
        authorize(obj)?;
        Self::take_tx_id(&mut self.next_tx, &self.txs, owner)?;
        check_key(key)?;
        Self::check_kind(obj, ObjectKind::Map)?;
        let snapshot = self.catalog.last_seq;
        Self::check_visible(obj, snapshot)?;
        let view = Self::committed_view(obj, snapshot, at)?;
        Ok((view.version(), obj.map_get_at(key, view.seq()).flatten()))
    }

    /// [`put_owned`](Self::put_owned) in a transaction of its own that
    /// `owner` begins and commits at once (a one-operation `Transact`),
    /// recording the origin `origin` builds from the new version. The same
    /// checks, errors, commit record and outcome as begin, put, commit
    /// (the transaction id and the version are used up as they would be),
    /// but the commit record is built directly, without a transaction
    /// record and its overlay. Durable when this returns `Ok`.
    pub fn put_alone(
        &mut self,
        owner: Option<u64>,
        object: ObjectId,
        key: &[u8],
        value: Vec<u8>,
        origin: impl FnOnce(VersionId) -> Option<Origin>,
    ) -> Result<VersionId, StorageError> {
        self.next_tx_id(owner)?;
        Self::check_put(key, &value)?;
        let obj = self.object(object)?;
        // Its snapshot is the last commit: the object is visible and no
        // commit since can conflict.
        Self::check_visible(obj, self.catalog.last_seq)?;
        Self::check_kind(obj, ObjectKind::Map)?;
        self.write_budget(0, key.len() + value.len())?;
        let version = self.allocate_version();
        self.commit_map_update(object, version, key, Some(value), origin(version))?;
        Ok(version)
    }

    /// Remove `key`. Removing an absent key changes nothing and creates no
    /// version.
    pub fn delete(
        &mut self,
        tx: &mut Transaction,
        object: ObjectId,
        key: &[u8],
    ) -> Result<Deleted, StorageError> {
        let current = self.get(tx, object, key, None)?;
        if current.value.is_none() {
            return Ok(Deleted {
                version: current.version,
                existed: false,
            });
        }
        let version = self.map_update(tx, object, key.to_vec(), None)?;
        Ok(Deleted {
            version,
            existed: true,
        })
    }

    /// Up to `limit` keys after `start_after`, in key order, at version `at`
    /// or as `tx` sees the map; at most [`limits::MAX_READ_BYTES`] of keys.
    pub fn list(
        &self,
        tx: &Transaction,
        object: ObjectId,
        at: Option<VersionId>,
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyList, StorageError> {
        if limit == 0 {
            return Err(StorageError::InvalidRange);
        }
        let obj = self.object(object)?;
        Self::check_kind(obj, ObjectKind::Map)?;
        let view = self.view(tx, object, at)?;
        let overlay = if view.is_pending() {
            self.map_overlay(tx, object)?
        } else {
            None
        };
        let lower = match start_after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let committed = obj.map_keys_at(start_after, view.seq()).peekable();
        let pending = overlay
            .into_iter()
            .flat_map(|o| o.range::<[u8], _>((lower, Bound::Unbounded)))
            .peekable();
        let mut keys = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for key in (Merged { committed, pending }) {
            if keys.len() == limit || bytes + key.len() > limits::MAX_READ_BYTES {
                more = true;
                break;
            }
            bytes += key.len();
            keys.push(key.into_owned());
        }
        Ok(KeyList {
            version: view.version(),
            keys,
            more,
        })
    }
}

/// Committed live keys merged with a transaction's overlay, in key order:
/// the overlay wins, and its deletes hide committed keys.
struct Merged<'a, C, P>
where
    C: Iterator<Item = Vec<u8>>,
    P: Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>,
{
    committed: Peekable<C>,
    pending: Peekable<P>,
}

impl<'a, C, P> Iterator for Merged<'a, C, P>
where
    C: Iterator<Item = Vec<u8>>,
    P: Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>,
{
    type Item = Cow<'a, [u8]>;

    fn next(&mut self) -> Option<Cow<'a, [u8]>> {
        loop {
            let order = match (self.committed.peek(), self.pending.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(c), Some((p, _))) => c.as_slice().cmp(p.as_slice()),
            };
            if order != Ordering::Greater {
                let key = self.committed.next();
                if order == Ordering::Less {
                    return key.map(Cow::Owned);
                }
            }
            if let Some((key, value)) = self.pending.next() {
                if value.is_some() {
                    return Some(Cow::Borrowed(key));
                }
            }
        }
    }
}
