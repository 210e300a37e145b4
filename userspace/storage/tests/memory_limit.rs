//! The store's memory limit: a store filled until it refuses a commit with
//! `StoreFull` reopens (replays its journal) within the same limit, with
//! every acknowledged commit present, and the bytes it counts bound what
//! the heap really serves its state.
//!
//! Allocations are counted per thread, rounded as the kernel's and ring
//! 3's heap rounds them (`pandagen_core::budget::allocation`), so this file
//! is its own test binary with one test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use pandagen_core::budget::allocation;
use pandagen_storage::{
    MemoryBackend, ObjectId, ObjectKind, ObjectStore, StorageError, TransactionalStorage,
};

thread_local! {
    /// Heap bytes this thread holds, as the ring-3 heap would serve them
    /// from an arbitrary origin: a thread may free what another allocated,
    /// so only differences are meaningful.
    static LIVE: Cell<u64> = const { Cell::new(1 << 62) };
    /// The most `LIVE` has been since the last `reset_peak`.
    static PEAK: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are const-initialised thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|live| {
            live.set(live.get().wrapping_add(allocation(layout.size())));
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(allocation(layout.size()))));
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> u64 {
    LIVE.with(Cell::get)
}

fn reset_peak() -> u64 {
    let now = live();
    PEAK.with(|p| p.set(now));
    now
}

fn peak() -> u64 {
    PEAK.with(Cell::get)
}

/// Record `i`: like the power-cut writer's, 40 to about 1,500 bytes.
fn record(i: u64) -> Vec<u8> {
    let len = 40 + (i.wrapping_mul(2_654_435_761) % 1500) as usize;
    (0..len)
        .map(|j| b'a' + ((i as usize + j) % 26) as u8)
        .collect()
}

fn key(i: u64) -> Vec<u8> {
    format!("rec-{i}").into_bytes()
}

type Shared = Rc<RefCell<MemoryBackend>>;

/// Commit record `i` as the power-cut writer does (the record and the new
/// count in one transaction), plus, every tenth commit, a log record and a
/// new blob content, so that every kind's charge is exercised.
fn commit(
    store: &mut ObjectStore<Shared>,
    (map, log, blob): (ObjectId, ObjectId, ObjectId),
    i: u64,
) -> Result<(), StorageError> {
    let mut tx = store.begin_transaction()?;
    store.put(&mut tx, map, &key(i), &record(i))?;
    store.put(&mut tx, map, b"count", format!("{}", i + 1).as_bytes())?;
    if i.is_multiple_of(10) {
        store.append(&mut tx, log, &record(i + 1))?;
        store.write_blob(&mut tx, blob, &record(i + 2))?;
        store.extend_blob(&mut tx, blob, &record(i + 3))?;
    }
    store.commit(&mut tx)
}

fn map_value(store: &mut ObjectStore<Shared>, map: ObjectId, key: &[u8]) -> Option<Vec<u8>> {
    let mut tx = store.begin_transaction().unwrap();
    let value = store.get(&tx, map, key, None).unwrap().value;
    store.rollback(&mut tx).unwrap();
    value
}

/// What the store's state holds on the heap: what dropping it frees (the
/// backend, handed back, is kept).
fn state_bytes(store: ObjectStore<Shared>) -> u64 {
    let before = live();
    drop(store.into_backend());
    before.wrapping_sub(live())
}

#[test]
fn a_full_store_refuses_commits_and_reopens_within_its_limit() {
    const LIMIT: u64 = 1 << 20;
    let backend: Shared = Rc::new(RefCell::new(MemoryBackend::new([7; 16])));
    let mut store = ObjectStore::open(backend.clone())
        .unwrap()
        .0
        .with_memory_limit(LIMIT);
    let objects = (
        store.create(ObjectKind::Map).unwrap().0,
        store.create(ObjectKind::Log).unwrap().0,
        store.create(ObjectKind::Blob).unwrap().0,
    );

    let mut acknowledged = 0;
    let refusal = loop {
        assert!(acknowledged < 100_000, "the store never refused a commit");
        match commit(&mut store, objects, acknowledged) {
            Ok(()) => acknowledged += 1,
            Err(e) => break e,
        }
    };
    let StorageError::StoreFull {
        used,
        needed,
        limit,
    } = refusal
    else {
        panic!("expected StoreFull, got {refusal:?}");
    };
    assert_eq!(limit, LIMIT);
    assert!(used <= LIMIT && used + needed > LIMIT);
    assert!(acknowledged > 100, "only {acknowledged} commits fit");

    // The refused commit changed nothing, and the store still serves reads
    // and refuses the same growth again.
    let last = store.last_commit();
    assert_eq!(store.memory_used(), used);
    assert_eq!(map_value(&mut store, objects.0, &key(acknowledged)), None);
    assert!(matches!(
        commit(&mut store, objects, acknowledged),
        Err(StorageError::StoreFull { .. })
    ));
    assert_eq!(store.last_commit(), last);
    // Every version is kept, so a delete frees nothing: it adds a
    // tombstone, which fits in what the refused commit left.
    let mut tx = store.begin_transaction().unwrap();
    store.delete(&mut tx, objects.0, &key(0)).unwrap();
    store.commit(&mut tx).unwrap();
    assert!(store.memory_used() > used && store.memory_used() <= LIMIT);

    // What the store counts bounds what the heap serves it.
    let counted = store.memory_used();
    let held = state_bytes(store);
    assert!(
        held <= counted,
        "the state holds {held} heap bytes, the store counted {counted}"
    );

    // Replay rebuilds the same state within the limit: its peak is the
    // rebuilt state plus the record being decoded, never more than the
    // limit and one largest record's worth.
    let before = reset_peak();
    let reopened = ObjectStore::open(backend.clone()).unwrap().0;
    let replay_peak = peak().wrapping_sub(before);
    let mut store = reopened.with_memory_limit(LIMIT);
    assert_eq!(store.memory_used(), counted);
    let largest_record = 16 * 1024;
    assert!(
        replay_peak <= LIMIT + largest_record,
        "replay peaked at {replay_peak} bytes over a limit of {LIMIT}"
    );

    // Every acknowledged commit is present.
    assert_eq!(
        map_value(&mut store, objects.0, b"count"),
        Some(format!("{acknowledged}").into_bytes())
    );
    assert_eq!(map_value(&mut store, objects.0, &key(0)), None);
    for i in 1..acknowledged {
        assert_eq!(map_value(&mut store, objects.0, &key(i)), Some(record(i)));
    }
    assert_eq!(map_value(&mut store, objects.0, &key(acknowledged)), None);
    println!(
        "{acknowledged} commits fit in {LIMIT} bytes: counted {counted}, held {held}, replay peak {replay_peak}"
    );
}
