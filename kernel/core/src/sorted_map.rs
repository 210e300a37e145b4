//! An ordered map whose heap is a function of how many entries it holds.
//!
//! The standard `BTreeMap` allocates and frees nodes as entries come and
//! go, and the nodes it holds for a given set of keys depend on the order
//! of the inserts and removals that led there: the same six live tasks
//! can sit in one leaf or in a root with two leaves. The kernel's per-task
//! maps (identities, exit routes, parked messages, sleepers, the service
//! registry) then make kernel memory swing with history, and "a death
//! gives back exactly what the task grew" cannot be checked exactly.
//!
//! `SortedMap` keeps its entries in one sorted vector whose capacity is
//! always [`capacity_for`] of its length, so two maps with the same number
//! of entries hold the same heap, whatever happened before. Lookups are a
//! binary search; inserts and removals move the entries after the
//! position, which for the kernel's table sizes (at most a few thousand
//! entries) costs less than a B-tree's node allocations.

use alloc::vec::Vec;

use crate::slab::capacity_for;

#[derive(Clone, Debug)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
    /// Capacity held whatever the length (see [`SortedMap::with_reserved`]).
    reserved: usize,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            entries: Vec::new(),
            reserved: 0,
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub const fn new() -> Self {
        SortedMap {
            entries: Vec::new(),
            reserved: 0,
        }
    }

    /// A map that holds room for `reserved` entries from the start and
    /// never gives it back: up to that many entries, its heap is constant,
    /// for a map whose number of entries follows what ring 3 does (the
    /// audit log's index of refused tasks).
    pub fn with_reserved(reserved: usize) -> Self {
        SortedMap {
            entries: Vec::with_capacity(reserved),
            reserved,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Hold room for at least `reserved` entries from now on (never
    /// lowered), as [`SortedMap::with_reserved`] does.
    pub fn reserve(&mut self, reserved: usize) {
        if reserved > self.reserved {
            self.reserved = reserved;
            let len = self.entries.len();
            if self.entries.capacity() < reserved {
                self.entries.reserve_exact(reserved - len);
            }
        }
    }

    /// Entries it has room for without allocating.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let i = self.position(key).ok()?;
        Some(&self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.position(key).ok()?;
        Some(&mut self.entries[i].1)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.position(key).is_ok()
    }

    /// Insert or replace; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(i) => Some(core::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.grow();
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Insert `value` unless `key` is present; returns the value now held.
    pub fn get_or_insert(&mut self, key: K, value: V) -> &mut V {
        let i = match self.position(&key) {
            Ok(i) => i,
            Err(i) => {
                self.grow();
                self.entries.insert(i, (key, value));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.position(key).ok()?;
        let (_, value) = self.entries.remove(i);
        self.fit();
        Some(value)
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Option<(&K, &V)> {
        self.entries.first().map(|(k, v)| (k, v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.fit();
    }

    /// Room for one more entry, growing to exactly `capacity_for` of the
    /// new length (whatever the entry size), so that capacity is always a
    /// function of length.
    fn grow(&mut self) {
        let len = self.entries.len();
        if len == self.entries.capacity() {
            let target = capacity_for(len + 1).max(self.reserved);
            self.entries.reserve_exact(target - len);
        }
    }

    /// Give back capacity beyond what growth to this length reaches.
    fn fit(&mut self) {
        let fit = capacity_for(self.entries.len()).max(self.reserved);
        if self.entries.capacity() > fit {
            self.entries.shrink_to(fit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_ordered_map() {
        let mut m = SortedMap::new();
        assert_eq!(m.insert(5, "e"), None);
        assert_eq!(m.insert(1, "a"), None);
        assert_eq!(m.insert(3, "c"), None);
        assert_eq!(m.insert(3, "C"), Some("c"));
        assert_eq!(m.len(), 3);
        assert!(!m.is_empty());
        assert_eq!(m.get(&3), Some(&"C"));
        assert_eq!(m.get(&4), None);
        assert!(m.contains_key(&1) && !m.contains_key(&2));
        assert_eq!(m.first(), Some((&1, &"a")));
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [1, 3, 5]);
        *m.get_or_insert(7, "g") = "G";
        assert_eq!(*m.get_or_insert(7, "x"), "G", "present: kept");
        assert_eq!(m.remove(&1), Some("a"));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["C", "e", "G"]);
        if let Some(v) = m.get_mut(&5) {
            *v = "E";
        }
        assert_eq!(m.get(&5), Some(&"E"));
        m.clear();
        assert!(m.is_empty());
    }

    #[test]
    fn a_reserved_map_keeps_its_room_whatever_it_holds() {
        let mut m = SortedMap::with_reserved(10);
        let room = m.entries.capacity();
        assert!(room >= 10);
        for k in 0..10 {
            m.insert(k, k);
        }
        for k in 0..10 {
            m.remove(&k);
        }
        m.insert(3, 3);
        m.clear();
        assert_eq!(m.entries.capacity(), room);
        let mut grown = SortedMap::new();
        grown.insert(1, 1);
        grown.reserve(12);
        let room = grown.capacity();
        assert!(room >= 12);
        grown.remove(&1);
        assert_eq!(grown.capacity(), room, "reserved room stays");
        for k in 0..11 {
            m.insert(k, k);
        }
        assert_eq!(m.len(), 11, "and grows beyond it like any map");
    }

    #[test]
    fn heap_depends_on_the_number_of_entries_not_on_history() {
        // A grown map, emptied down to `live` entries, holds what a map
        // that only ever held `live` entries holds.
        for live in [0usize, 1, 3, 4, 5, 6, 9, 17] {
            let mut fresh = SortedMap::new();
            let mut fresh_large = SortedMap::new();
            for k in 0..live {
                fresh.insert(k, [0u8; 24]);
                fresh_large.insert(k, [0u8; 2000]);
            }
            let mut churned_large = SortedMap::new();
            for k in 0..40 {
                churned_large.insert(1000 + k, [0u8; 2000]);
            }
            for k in 0..live {
                churned_large.insert(k, [0u8; 2000]);
            }
            for k in 0..40 {
                churned_large.remove(&(1000 + k));
            }
            assert_eq!(
                churned_large.entries.capacity(),
                fresh_large.entries.capacity(),
                "{live} live entries of 2000 bytes"
            );
            let mut churned = SortedMap::new();
            for k in (0..200).rev() {
                churned.insert(1000 + k, [0u8; 24]);
            }
            for k in 0..live {
                churned.insert(k, [0u8; 24]);
            }
            for k in 0..200 {
                churned.remove(&(1000 + k));
            }
            assert_eq!(churned.len(), live);
            assert_eq!(
                churned.entries.capacity(),
                fresh.entries.capacity(),
                "{live} live entries"
            );
        }
    }
}
