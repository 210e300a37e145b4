//! The capability audit log.
//!
//! Every lifecycle operation on a capability is recorded. Memory is
//! bounded: the log is a ring buffer of the most recent events, and the
//! number of events pushed out is counted. Per-variant totals are kept
//! separately and never drop, so "audit counts match the operations
//! performed" can be checked even after the ring has wrapped.
//!
//! Refusals cost the refused task nothing, so a task could otherwise flood
//! the ring with them and push out the record of what it (and everyone
//! else) actually did. Each task therefore keeps at most
//! [`REFUSALS_KEPT_PER_TASK`] refusal records in the ring; further
//! refusals are folded into its newest one (`repeats` counts them) until
//! older ones age out. Totals still count every refusal.

use alloc::collections::VecDeque;

use crate::sorted_map::SortedMap;
use alloc::vec::Vec;
use pandagen_abi::{CapHandle, CapKind, Instant, Rights, TaskId, TrustDomain};

use crate::cap_table::{CapId, InvalidUse};
use crate::channel::ChannelRef;

/// Why a capability was invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidationReason {
    /// Its owner terminated.
    OwnerTerminated,
    /// It was in a message queued on a channel that closed.
    ChannelClosed,
    /// It was in a message that was dropped or could not be delivered.
    MessageDiscarded,
    /// It was in a message queued on a channel no live task could reach
    /// any more (see `KernelCore::collect_unreachable`).
    Unreachable,
    /// It was in a message whose receiver had no room for the
    /// capabilities the message carried.
    ReceiverFull,
}

/// One capability event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapabilityEvent {
    /// A capability was issued to `to`: by the kernel (`from == None`:
    /// minting, channel creation, service lookup) or as a copy of
    /// `source` granted by task `from`.
    Granted {
        cap: CapId,
        kind: CapKind,
        rights: Rights,
        from: Option<TaskId>,
        to: TaskId,
        source: Option<CapId>,
    },
    /// A capability moved from `from` to `to`, directly (`via == None`)
    /// or in a message on channel `via`. `from` no longer holds it.
    Delegated {
        cap: CapId,
        kind: CapKind,
        from: TaskId,
        to: TaskId,
        via: Option<ChannelRef>,
    },
    /// `owner` made an explicit copy `cap` of its capability `source`.
    Cloned {
        cap: CapId,
        source: CapId,
        owner: TaskId,
        rights: Rights,
    },
    /// `owner` released `cap`.
    Dropped { cap: CapId, owner: TaskId },
    /// `task` tried to use `handle` and was refused; `repeats` more
    /// refusals of the same task were folded into this record (see the
    /// module docs).
    InvalidUseAttempt {
        task: TaskId,
        handle: CapHandle,
        reason: InvalidUse,
        repeats: u64,
    },
    /// `cap` stopped existing without its holder's action. `holder` is
    /// the task that held it, or `None` if it was in kernel custody.
    Invalidated {
        cap: CapId,
        kind: CapKind,
        holder: Option<TaskId>,
        reason: InvalidationReason,
    },
    /// A grant or delegation crossed trust domains (recorded in addition
    /// to the `Granted` / `Delegated` event).
    CrossDomainDelegation {
        cap: CapId,
        from: TaskId,
        to: TaskId,
        from_domain: TrustDomain,
        to_domain: TrustDomain,
    },
}

impl CapabilityEvent {
    /// The capability the event is about (`None` for a refused use, which
    /// names a handle rather than a capability).
    pub fn cap(&self) -> Option<CapId> {
        match self {
            CapabilityEvent::Granted { cap, .. }
            | CapabilityEvent::Delegated { cap, .. }
            | CapabilityEvent::Cloned { cap, .. }
            | CapabilityEvent::Dropped { cap, .. }
            | CapabilityEvent::Invalidated { cap, .. }
            | CapabilityEvent::CrossDomainDelegation { cap, .. } => Some(*cap),
            CapabilityEvent::InvalidUseAttempt { .. } => None,
        }
    }

    fn counter(&self) -> usize {
        match self {
            CapabilityEvent::Granted { .. } => 0,
            CapabilityEvent::Delegated { .. } => 1,
            CapabilityEvent::Cloned { .. } => 2,
            CapabilityEvent::Dropped { .. } => 3,
            CapabilityEvent::InvalidUseAttempt { .. } => 4,
            CapabilityEvent::Invalidated { .. } => 5,
            CapabilityEvent::CrossDomainDelegation { .. } => 6,
        }
    }
}

/// An event with its place in the log and the time it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log since creation; gaps never occur, so
    /// `seq` of the oldest retained record equals `dropped()`.
    pub seq: u64,
    pub at: Instant,
    pub event: CapabilityEvent,
}

/// Totals per event variant since the log was created (never dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditCounts {
    pub granted: u64,
    pub delegated: u64,
    pub cloned: u64,
    pub dropped: u64,
    pub invalid_use_attempts: u64,
    pub invalidated: u64,
    pub cross_domain: u64,
}

/// Refusal records one task may have in the ring at once.
pub const REFUSALS_KEPT_PER_TASK: usize = 8;

/// A task's refusal records in the ring.
#[derive(Clone, Copy, Debug)]
struct KeptRefusals {
    /// How many of the task's refusal records are in the ring.
    count: usize,
    /// The sequence number of the newest one.
    newest: u64,
}

/// The bounded audit log.
pub struct AuditLog {
    ring: VecDeque<AuditRecord>,
    capacity: usize,
    next_seq: u64,
    totals: [u64; 7],
    /// Per task with refusal records in the ring: never more entries than
    /// the ring has records, so room for `capacity` is reserved once and
    /// the log's heap never changes with who was refused.
    refusals: SortedMap<TaskId, KeptRefusals>,
    folded: u64,
}

impl AuditLog {
    /// A log keeping the `capacity` most recent events (at least one).
    pub fn new(capacity: usize) -> Self {
        // Allocated once, in full: recording then never allocates, so the
        // log's cost does not depend on how many events it has seen.
        AuditLog {
            ring: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            next_seq: 0,
            totals: [0; 7],
            refusals: SortedMap::with_reserved(capacity.max(1)),
            folded: 0,
        }
    }

    /// Append an event, pushing out the oldest one if the ring is full.
    /// O(1).
    /// A refusal by a task that already has [`REFUSALS_KEPT_PER_TASK`]
    /// refusal records in the ring is folded into its newest one instead.
    pub(crate) fn record(&mut self, at: Instant, event: CapabilityEvent) {
        self.totals[event.counter()] += 1;
        if let CapabilityEvent::InvalidUseAttempt { task, .. } = event {
            if self.fold_refusal(task) {
                return;
            }
        }
        if self.ring.len() == self.capacity {
            if let Some(oldest) = self.ring.pop_front() {
                self.forget_refusal(&oldest.event);
            }
        }
        if let CapabilityEvent::InvalidUseAttempt { task, .. } = event {
            let kept = self.refusals.get_or_insert(
                task,
                KeptRefusals {
                    count: 0,
                    newest: 0,
                },
            );
            kept.count += 1;
            kept.newest = self.next_seq;
        }
        self.ring.push_back(AuditRecord {
            seq: self.next_seq,
            at,
            event,
        });
        self.next_seq += 1;
    }

    /// Fold a refusal of `task` into its newest record if the task has
    /// used up its share of the ring.
    fn fold_refusal(&mut self, task: TaskId) -> bool {
        let Some(&kept) = self.refusals.get(&task) else {
            return false;
        };
        if kept.count < REFUSALS_KEPT_PER_TASK {
            return false;
        }
        let index = kept.newest - self.dropped();
        let Some(record) = usize::try_from(index)
            .ok()
            .and_then(|i| self.ring.get_mut(i))
        else {
            return false;
        };
        if let CapabilityEvent::InvalidUseAttempt { repeats, .. } = &mut record.event {
            *repeats += 1;
            self.folded += 1;
            return true;
        }
        false
    }

    /// A record left the ring: if it was a refusal, its task has room for
    /// one more.
    fn forget_refusal(&mut self, event: &CapabilityEvent) {
        if let CapabilityEvent::InvalidUseAttempt { task, .. } = event {
            if let Some(kept) = self.refusals.get_mut(task) {
                kept.count -= 1;
                if kept.count == 0 {
                    self.refusals.remove(task);
                }
            }
        }
    }

    /// Refusals folded into an earlier record rather than given their own
    /// (counted in [`counts`](Self::counts) all the same).
    pub fn folded_refusals(&self) -> u64 {
        self.folded
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of retained events.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Events pushed out of the ring so far.
    pub fn dropped(&self) -> u64 {
        self.next_seq - self.ring.len() as u64
    }

    /// Events recorded since creation, retained or not.
    pub fn total(&self) -> u64 {
        self.next_seq
    }

    pub fn counts(&self) -> AuditCounts {
        let t = self.totals;
        AuditCounts {
            granted: t[0],
            delegated: t[1],
            cloned: t[2],
            dropped: t[3],
            invalid_use_attempts: t[4],
            invalidated: t[5],
            cross_domain: t[6],
        }
    }

    /// Retained records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &AuditRecord> {
        self.ring.iter()
    }

    /// Retained events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &CapabilityEvent> {
        self.ring.iter().map(|r| &r.event)
    }

    /// Retained events about `cap`, oldest first.
    pub fn events_for_cap(&self, cap: CapId) -> Vec<&CapabilityEvent> {
        self.events().filter(|e| e.cap() == Some(cap)).collect()
    }

    /// Number of retained events matching `predicate`.
    pub fn count_events(&self, predicate: impl Fn(&CapabilityEvent) -> bool) -> usize {
        self.events().filter(|e| predicate(e)).count()
    }

    /// Whether any retained event matches `predicate`.
    pub fn has_event(&self, predicate: impl Fn(&CapabilityEvent) -> bool) -> bool {
        self.events().any(predicate)
    }

    /// Forget the retained events (totals and sequence numbers continue).
    pub fn clear(&mut self) {
        self.ring.clear();
        self.refusals.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(cap: u64) -> CapabilityEvent {
        CapabilityEvent::Dropped {
            cap: CapId::from_raw(cap),
            owner: TaskId::from_raw(1),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_events_and_counts_the_rest() {
        let mut log = AuditLog::new(3);
        for cap in 0..5 {
            log.record(Instant::from_nanos(cap), dropped(cap));
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.dropped(), 2);
        assert_eq!(log.total(), 5);
        assert_eq!(log.counts().dropped, 5);
        assert_eq!(log.records().next().unwrap().seq, 2);
        assert!(log.events_for_cap(CapId::from_raw(1)).is_empty());
        assert_eq!(log.events_for_cap(CapId::from_raw(4)).len(), 1);
        assert_eq!(
            log.count_events(|e| matches!(e, CapabilityEvent::Dropped { .. })),
            3
        );
        assert!(!log.has_event(|e| matches!(e, CapabilityEvent::Granted { .. })));
    }

    fn refused(task: u64, handle: u64) -> CapabilityEvent {
        CapabilityEvent::InvalidUseAttempt {
            task: TaskId::from_raw(task),
            handle: CapHandle::from_raw(handle),
            reason: InvalidUse::NoSuchCapability,
            repeats: 0,
        }
    }

    fn refusals_of(log: &AuditLog, who: u64) -> (usize, u64) {
        let mut records = 0;
        let mut repeats_total = 0;
        for event in log.events() {
            if let CapabilityEvent::InvalidUseAttempt { task, repeats, .. } = event {
                if *task == TaskId::from_raw(who) {
                    records += 1;
                    repeats_total += 1 + repeats;
                }
            }
        }
        (records, repeats_total)
    }

    #[test]
    fn a_task_flooding_refusals_cannot_push_out_what_others_did() {
        let mut log = AuditLog::new(64);
        // What the victim did: 20 events.
        for cap in 0..20 {
            log.record(Instant::from_nanos(cap), dropped(cap));
        }
        // The attacker is refused 100 000 times.
        for attempt in 0..100_000 {
            log.record(Instant::from_nanos(100 + attempt), refused(7, attempt));
        }
        for cap in 0..20 {
            assert_eq!(
                log.events_for_cap(CapId::from_raw(cap)).len(),
                1,
                "event {cap} is still in the log"
            );
        }
        let (records, total) = refusals_of(&log, 7);
        assert_eq!(records, REFUSALS_KEPT_PER_TASK);
        assert_eq!(total, 100_000, "every refusal is accounted for");
        assert_eq!(log.counts().invalid_use_attempts, 100_000);
        assert_eq!(
            log.folded_refusals(),
            100_000 - REFUSALS_KEPT_PER_TASK as u64
        );
        assert_eq!(log.len(), 20 + REFUSALS_KEPT_PER_TASK);
    }

    #[test]
    fn a_flood_after_the_ring_has_wrapped_is_still_folded() {
        // A long-running system: the ring has already dropped its oldest
        // records, so ring positions and sequence numbers differ.
        let mut log = AuditLog::new(32);
        for cap in 0..100 {
            log.record(Instant::from_nanos(cap), dropped(cap));
        }
        assert_eq!(log.dropped(), 68);
        for attempt in 0..1_000 {
            log.record(Instant::from_nanos(200 + attempt), refused(7, attempt));
        }
        let (records, total) = refusals_of(&log, 7);
        assert_eq!(records, REFUSALS_KEPT_PER_TASK);
        assert_eq!(total, 1_000, "every refusal is accounted for");
        // What others did most recently is still there.
        for cap in 100 - (32 - REFUSALS_KEPT_PER_TASK as u64)..100 {
            assert_eq!(
                log.events_for_cap(CapId::from_raw(cap)).len(),
                1,
                "event {cap}"
            );
        }
    }

    #[test]
    fn a_task_regains_room_for_refusals_as_its_old_ones_age_out() {
        let mut log = AuditLog::new(10);
        for attempt in 0..REFUSALS_KEPT_PER_TASK as u64 {
            log.record(Instant::from_nanos(attempt), refused(3, attempt));
        }
        // Other events age the refusals out of the ring.
        for cap in 0..10 {
            log.record(Instant::from_nanos(100 + cap), dropped(cap));
        }
        assert_eq!(refusals_of(&log, 3), (0, 0));
        log.record(Instant::from_nanos(200), refused(3, 99));
        assert_eq!(refusals_of(&log, 3), (1, 1), "a fresh record, not a fold");
        assert_eq!(log.folded_refusals(), 0);
    }

    #[test]
    fn refusals_from_many_tasks_are_counted_per_task_as_they_age_out() {
        let mut log = AuditLog::new(16);
        let index_room = log.refusals.capacity();
        // Tasks refused in an order that is not sorted, each several times,
        // with other events interleaved so records age out in between.
        for round in 0..40u64 {
            for task in [9u64, 2, 31, 5, 17, 2, 40 + round] {
                log.record(Instant::from_nanos(round), refused(task, round));
            }
            log.record(Instant::from_nanos(round), dropped(round));
        }
        // The index agrees with the ring: each task's count is its number of
        // records in the ring, and tasks with none have no entry.
        for task in [9u64, 2, 31, 5, 17, 79, 40] {
            let (records, _) = refusals_of(&log, task);
            let kept = log
                .refusals
                .get(&TaskId::from_raw(task))
                .map_or(0, |k| k.count);
            assert_eq!(kept, records, "task {task}");
        }
        assert!(log.refusals.len() <= log.len());
        assert_eq!(
            log.refusals.capacity(),
            index_room,
            "the log's heap does not change with who was refused"
        );
        assert_eq!(log.counts().invalid_use_attempts, 40 * 7);
    }
}
