//! Objects and their committed history.
//!
//! Each kind keeps its history in the shape its semantics need, so that
//! every committed version stays readable without copying whole objects on
//! every write:
//!
//! * a **Blob** keeps one immutable byte string per version;
//! * a **Log** keeps its records in append order, each stamped with the
//!   commit that appended it, so version *v* is a prefix of the records;
//! * a **Map** keeps, per key, the list of (commit, value-or-deleted) —
//!   a multi-version map, so any version's view is one binary search per key.
//!
//! Visibility is by [`CommitSeq`]: a reader at snapshot *s* sees exactly the
//! commits numbered `<= s`.

use alloc::collections::btree_map;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;
use serde::{Deserialize, Serialize};

use crate::ids::{CommitSeq, ObjectId, VersionId};

/// What an object is, which fixes the operations it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// Immutable bytes: a write replaces the whole content with a new version.
    Blob,
    /// Append-only records, read by index ranges.
    Log,
    /// Keys to values: put, get, delete, list.
    Map,
}

/// A committed version of an object and the commit that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStamp {
    pub version: VersionId,
    pub seq: CommitSeq,
}

/// One map key's values over time: (commit, value or deleted), ascending.
type KeyHistory = Vec<(CommitSeq, Option<Vec<u8>>)>;

/// How many leading bytes of a map key [`MapKey`] keeps as a number.
const KEY_HEAD_BYTES: usize = 8;

/// A map key as the committed map orders it: its first eight bytes as a
/// big-endian number (zero-padded), how many of those there are, and the
/// rest. Comparing the fields in that order is the byte strings'
/// lexicographic order (with equal heads, a shorter head is a prefix of
/// the longer key; with full heads, the tails decide), but keys that differ
/// in their first eight bytes, the common case, are told apart by one
/// integer comparison instead of a `memcmp` call per B-tree step. A key of
/// at most eight bytes is held without a heap block, so a look-up builds
/// its probe without allocating.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MapKey {
    head: u64,
    head_len: u8,
    tail: Vec<u8>,
}

impl MapKey {
    fn split_head(bytes: &[u8]) -> (u64, u8) {
        let len = bytes.len().min(KEY_HEAD_BYTES);
        let mut head = [0u8; KEY_HEAD_BYTES];
        head[..len].copy_from_slice(&bytes[..len]);
        (u64::from_be_bytes(head), len as u8)
    }

    /// The key `bytes`, for a look-up (a tail only past eight bytes).
    pub(crate) fn probe(bytes: &[u8]) -> Self {
        let (head, head_len) = Self::split_head(bytes);
        let tail = bytes
            .get(KEY_HEAD_BYTES..)
            .map_or_else(Vec::new, <[u8]>::to_vec);
        MapKey {
            head,
            head_len,
            tail,
        }
    }

    /// The key `bytes`, keeping a longer key's block for its tail.
    fn from_vec(mut bytes: Vec<u8>) -> Self {
        let (head, head_len) = Self::split_head(&bytes);
        if bytes.len() > KEY_HEAD_BYTES {
            bytes.drain(..KEY_HEAD_BYTES);
        } else {
            bytes = Vec::new();
        }
        MapKey {
            head,
            head_len,
            tail: bytes,
        }
    }

    /// The key's bytes.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(usize::from(self.head_len) + self.tail.len());
        bytes.extend_from_slice(&self.head.to_be_bytes()[..usize::from(self.head_len)]);
        bytes.extend_from_slice(&self.tail);
        bytes
    }
}

#[derive(Debug)]
enum History {
    /// `contents[i]` is the content of `versions[i]`.
    Blob(Vec<Vec<u8>>),
    Log(Vec<(CommitSeq, Vec<u8>)>),
    Map(BTreeMap<MapKey, KeyHistory>),
}

/// One object: its kind, its versions, its history and its capability epoch.
#[derive(Debug)]
pub struct Object {
    id: ObjectId,
    kind: ObjectKind,
    /// Capability tags are computed over this; bumping it revokes every
    /// capability issued before.
    cap_epoch: u32,
    /// Ascending by `seq` (and, per object, by `version`). Never empty: the
    /// creation is the first version.
    versions: Vec<VersionStamp>,
    history: History,
}

impl Object {
    pub(crate) fn new(id: ObjectId, kind: ObjectKind, created: VersionStamp) -> Self {
        let history = match kind {
            ObjectKind::Blob => History::Blob(alloc::vec![Vec::new()]),
            ObjectKind::Log => History::Log(Vec::new()),
            ObjectKind::Map => History::Map(BTreeMap::new()),
        };
        Object {
            id,
            kind,
            cap_epoch: 0,
            versions: alloc::vec![created],
            history,
        }
    }

    pub fn id(&self) -> ObjectId {
        self.id
    }

    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    pub fn cap_epoch(&self) -> u32 {
        self.cap_epoch
    }

    pub(crate) fn set_cap_epoch(&mut self, epoch: u32) {
        self.cap_epoch = epoch;
    }

    /// The newest committed version.
    pub fn latest(&self) -> VersionStamp {
        // `versions` is never empty (see the field's invariant).
        self.versions[self.versions.len() - 1]
    }

    /// Every committed version, oldest first.
    pub fn versions(&self) -> &[VersionStamp] {
        &self.versions
    }

    /// How many versions are visible at `snapshot`.
    fn visible_count(&self, snapshot: CommitSeq) -> usize {
        // A read usually sees the newest version (its snapshot is the last
        // commit): that needs no search through the whole history.
        if self.latest().seq <= snapshot {
            return self.versions.len();
        }
        self.versions.partition_point(|v| v.seq <= snapshot)
    }

    /// The newest version visible at `snapshot`, or `None` if the object was
    /// created after it.
    pub fn stamp_at(&self, snapshot: CommitSeq) -> Option<VersionStamp> {
        self.visible_count(snapshot)
            .checked_sub(1)
            .map(|i| self.versions[i])
    }

    /// The stamp of `version`, if it is a committed version of this object
    /// visible at `snapshot`.
    pub fn find_version(&self, version: VersionId, snapshot: CommitSeq) -> Option<VersionStamp> {
        let visible = &self.versions[..self.visible_count(snapshot)];
        visible
            .binary_search_by_key(&version, |v| v.version)
            .ok()
            .map(|i| visible[i])
    }

    fn push_version(&mut self, stamp: VersionStamp) {
        debug_assert!(stamp.seq > self.latest().seq);
        self.versions.push(stamp);
    }

    /// The blob's bytes as of commit `at`.
    pub fn blob_at(&self, at: CommitSeq) -> Option<&[u8]> {
        match &self.history {
            History::Blob(contents) => {
                let i = self.visible_count(at).checked_sub(1)?;
                Some(&contents[i])
            }
            _ => None,
        }
    }

    /// The log's records as of commit `at`.
    pub fn log_at(&self, at: CommitSeq) -> Option<&[(CommitSeq, Vec<u8>)]> {
        match &self.history {
            History::Log(records) => {
                let n = records.partition_point(|(seq, _)| *seq <= at);
                Some(&records[..n])
            }
            _ => None,
        }
    }

    /// A map value as of commit `at` (`None` inside if absent or deleted).
    pub fn map_get_at(&self, key: &[u8], at: CommitSeq) -> Option<Option<&[u8]>> {
        match &self.history {
            History::Map(entries) => Some(
                entries
                    .get(&MapKey::probe(key))
                    .and_then(|h| value_at(h, at)),
            ),
            _ => None,
        }
    }

    /// The map's live keys after `start_after` as of commit `at`, in order.
    pub fn map_keys_at<'a>(
        &'a self,
        start_after: Option<&[u8]>,
        at: CommitSeq,
    ) -> impl Iterator<Item = Vec<u8>> + 'a {
        let entries = match &self.history {
            History::Map(entries) => Some(entries),
            _ => None,
        };
        let lower = match start_after {
            Some(k) => Bound::Excluded(MapKey::probe(k)),
            None => Bound::Unbounded,
        };
        entries
            .into_iter()
            .flat_map(move |e| e.range((lower.clone(), Bound::Unbounded)))
            .filter(move |(_, h)| value_at(h, at).is_some())
            .map(|(k, _)| k.to_vec())
    }

    /// Whether the map has ever held `key` (its history is kept even after
    /// a delete).
    pub(crate) fn map_has_key(&self, key: &[u8]) -> bool {
        matches!(&self.history, History::Map(entries) if entries.contains_key(&MapKey::probe(key)))
    }

    pub(crate) fn commit_blob(&mut self, stamp: VersionStamp, mut bytes: Vec<u8>) {
        if let History::Blob(contents) = &mut self.history {
            // A blob written in pieces grew by doubling; the store's
            // footprint charges only its length.
            bytes.shrink_to_fit();
            contents.push(bytes);
            self.push_version(stamp);
        }
    }

    pub(crate) fn commit_log(&mut self, stamp: VersionStamp, appended: Vec<Vec<u8>>) {
        if let History::Log(records) = &mut self.history {
            records.extend(appended.into_iter().map(|r| (stamp.seq, r)));
            self.push_version(stamp);
        }
    }

    pub(crate) fn commit_map(
        &mut self,
        stamp: VersionStamp,
        updates: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) {
        if let History::Map(entries) = &mut self.history {
            for (key, value) in updates {
                entries
                    .entry(MapKey::from_vec(key))
                    .or_default()
                    .push((stamp.seq, value));
            }
            self.push_version(stamp);
        }
    }
}

impl Object {
    /// The map's place for `key`, searched once: whether the map has held
    /// the key, then its update ([`MapSlot::commit`]). `None` if this is
    /// not a map.
    pub(crate) fn map_slot(&mut self, key: &[u8]) -> Option<MapSlot<'_>> {
        let Object {
            versions, history, ..
        } = self;
        match history {
            History::Map(entries) => Some(MapSlot {
                entry: entries.entry(MapKey::probe(key)),
                versions,
            }),
            _ => None,
        }
    }
}

/// One key's place in a map and the map's versions (see
/// [`Object::map_slot`]).
pub(crate) struct MapSlot<'a> {
    entry: btree_map::Entry<'a, MapKey, KeyHistory>,
    versions: &'a mut Vec<VersionStamp>,
}

impl MapSlot<'_> {
    /// Whether the map has ever held the key (see [`Object::map_has_key`]).
    pub(crate) fn is_known(&self) -> bool {
        matches!(self.entry, btree_map::Entry::Occupied(_))
    }

    /// [`Object::commit_map`] of this key alone: `value` at `stamp`.
    pub(crate) fn commit(self, stamp: VersionStamp, value: Option<Vec<u8>>) {
        debug_assert!(self.versions.last().is_none_or(|v| stamp.seq > v.seq));
        self.entry.or_default().push((stamp.seq, value));
        self.versions.push(stamp);
    }
}

fn value_at(history: &[(CommitSeq, Option<Vec<u8>>)], at: CommitSeq) -> Option<&[u8]> {
    let n = history.partition_point(|(seq, _)| *seq <= at);
    n.checked_sub(1).and_then(|i| history[i].1.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys around the eight-byte head: short ones, ones with trailing
    /// zeros (which pad like a shorter key's head), long ones sharing a
    /// head.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff]), 0..20)
    }

    /// A key of at most eight bytes lives in its head: the map entry holds
    /// no tail block (the footprint charges a key's bytes once, not a
    /// second, empty block).
    #[test]
    fn a_short_key_holds_no_tail_block() {
        for len in 0..=KEY_HEAD_BYTES {
            assert_eq!(
                MapKey::from_vec(vec![7; len]).tail.capacity(),
                0,
                "{len} bytes"
            );
        }
        assert_eq!(MapKey::from_vec(vec![7; KEY_HEAD_BYTES + 1]).tail, [7]);
    }

    proptest! {
        /// `MapKey` orders and equates keys exactly as their bytes do, so
        /// the committed map's iteration order (listing) is unchanged.
        #[test]
        fn map_key_order_is_the_bytes_order(a in key(), b in key()) {
            let (ka, kb) = (MapKey::probe(&a), MapKey::probe(&b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            prop_assert_eq!(ka.to_vec(), a.clone());
            prop_assert_eq!(MapKey::from_vec(a.clone()), ka);
        }
    }

    /// The newest visible version, checked against a plain scan for every
    /// snapshot: before the object, at and between its commits, at its
    /// newest commit and after it.
    #[test]
    fn the_stamp_at_a_snapshot_is_the_newest_committed_by_then() {
        let stamp = |version, seq| VersionStamp {
            version: VersionId::from_raw(version),
            seq: CommitSeq::from_raw(seq),
        };
        let mut object = Object::new(ObjectId::from_raw(1), ObjectKind::Blob, stamp(1, 2));
        for (version, seq) in [(2, 4), (3, 5), (4, 9)] {
            object.commit_blob(stamp(version, seq), vec![version as u8]);
        }
        let versions = object.versions().to_vec();
        for snapshot in 0..12 {
            let at = CommitSeq::from_raw(snapshot);
            let expected = versions.iter().rev().find(|v| v.seq <= at).copied();
            assert_eq!(object.stamp_at(at), expected, "snapshot {snapshot}");
            // The created version is empty; each later one holds its number.
            let content = expected.map(|v| match v.version.as_raw() {
                1 => Vec::new(),
                later => vec![later as u8],
            });
            assert_eq!(object.blob_at(at).map(<[u8]>::to_vec), content);
        }
    }

    #[test]
    fn a_key_and_its_zero_extension_differ() {
        let short = MapKey::probe(&[1]);
        let padded = MapKey::probe(&[1, 0]);
        let full = MapKey::probe(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let longer = MapKey::probe(&[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(short < padded && padded < full && full < longer);
    }
}
