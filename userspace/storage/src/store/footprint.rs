//! How many heap bytes the committed state holds, bounded from above.
//!
//! The store keeps every object and every version in memory, and a
//! restart rebuilds all of it by replaying the journal. A commit is
//! acknowledged only if the state after it stays under the store's memory
//! limit, so that whatever was acknowledged can be rebuilt in the heap a
//! restarted instance has. The figures here are upper bounds on what the
//! allocator serves, never estimates that could fall short:
//!
//! * a byte string costs its block as the heap serves it ([`heap_bytes`]);
//! * an element of a growing `Vec` costs four times its size: a vector's
//!   capacity is at most twice its length (or the minimum capacity of
//!   four, charged once per vector as [`vec_base`]), and the heap rounds a
//!   block up to at most twice its size;
//! * an entry of a `BTreeMap` costs its share of a leaf node holding the
//!   fewest entries a non-root node may hold (five), plus the share of an
//!   internal node, of which there is at most one per five leaves.

use core::mem::size_of;

use crate::ids::{CommitSeq, ObjectId};
use crate::object::{MapKey, Object, VersionStamp};

/// The largest block the heap serves from a power-of-two size class
/// (`pandagen_heap::MAX_CLASS_SIZE`); larger blocks come from its
/// linked-list heap in 16-byte granules with a 16-byte header.
const LARGEST_CLASS: usize = 2048;

/// The heap bytes an allocation of `bytes` occupies (the rule of the
/// kernel's and ring 3's heap, `pandagen_core::budget::allocation`; a
/// test checks the two agree).
pub(crate) const fn heap_bytes(bytes: usize) -> u64 {
    if bytes == 0 {
        0
    } else if bytes <= LARGEST_CLASS {
        if bytes < 16 {
            16
        } else {
            bytes.next_power_of_two() as u64
        }
    } else {
        (bytes as u64).div_ceil(16) * 16 + 16
    }
}

/// The charge for one element of a growing `Vec<T>` (see the module docs).
pub(crate) const fn vec_element<T>() -> u64 {
    4 * size_of::<T>() as u64
}

/// The charge for a `Vec<T>` that holds anything at all: its minimum
/// capacity of four elements, rounded up, and an allocator granule.
pub(crate) const fn vec_base<T>() -> u64 {
    8 * size_of::<T>() as u64 + 32
}

/// The fewest entries a `BTreeMap` node other than the root holds.
const BTREE_MIN_ENTRIES: u64 = 5;
/// The most entries a `BTreeMap` node holds.
const BTREE_CAPACITY: usize = 11;

/// The charge for one entry of a `BTreeMap<K, V>` (see the module docs).
pub(crate) const fn btree_entry<K, V>() -> u64 {
    // Parent pointer, parent index and length, then the keys and values.
    let leaf = 16 + BTREE_CAPACITY * (size_of::<K>() + size_of::<V>());
    let internal = leaf + (BTREE_CAPACITY + 1) * size_of::<usize>();
    let internal_share = heap_bytes(internal).div_ceil(BTREE_MIN_ENTRIES);
    (heap_bytes(leaf) + internal_share).div_ceil(BTREE_MIN_ENTRIES)
}

/// One map key's history entry and one log record, as `Object` keeps them.
type KeyHistoryEntry = (CommitSeq, Option<alloc::vec::Vec<u8>>);
type LogEntry = (CommitSeq, alloc::vec::Vec<u8>);

/// The charge for creating an object: its catalog entry and the vectors a
/// fresh object of its kind starts with.
pub(crate) const fn create() -> u64 {
    btree_entry::<ObjectId, Object>()
        + vec_base::<VersionStamp>()
        + vec_base::<alloc::vec::Vec<u8>>()
}

/// The charge for one more version of an object.
pub(crate) const fn version() -> u64 {
    vec_element::<VersionStamp>()
}

/// The charge for one more blob content of `len` bytes.
pub(crate) const fn blob(len: usize) -> u64 {
    vec_element::<alloc::vec::Vec<u8>>() + heap_bytes(len)
}

/// The charge for one more log record of `len` bytes.
pub(crate) const fn log_record(len: usize) -> u64 {
    vec_element::<LogEntry>() + heap_bytes(len)
}

/// The charge for a map update whose value is `value` bytes (0 for a
/// delete); a key the map has never held also costs its entry and its
/// history's first allocation.
pub(crate) const fn map_update(new_key: Option<usize>, value: usize) -> u64 {
    let key = match new_key {
        Some(len) => {
            btree_entry::<MapKey, alloc::vec::Vec<KeyHistoryEntry>>()
                + heap_bytes(len)
                + vec_base::<KeyHistoryEntry>()
        }
        None => 0,
    };
    key + vec_element::<KeyHistoryEntry>() + heap_bytes(value)
}

/// The charge for one remembered answer of `len` bytes: its entry in the
/// answer map, its place in the eviction queue and its bytes.
pub(crate) const fn answer(len: usize) -> u64 {
    btree_entry::<(u64, u64), alloc::vec::Vec<u8>>() + vec_element::<(u64, u64)>() + heap_bytes(len)
}
