//! The capability audit log.
//!
//! Every lifecycle operation on a capability is recorded. Memory is
//! bounded: the log is a ring buffer of the most recent events, and the
//! number of events pushed out is counted. Per-variant totals are kept
//! separately and never drop, so "audit counts match the operations
//! performed" can be checked even after the ring has wrapped.

use alloc::collections::VecDeque;
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
    /// `task` tried to use `handle` and was refused.
    InvalidUseAttempt {
        task: TaskId,
        handle: CapHandle,
        reason: InvalidUse,
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

/// The bounded audit log.
pub struct AuditLog {
    ring: VecDeque<AuditRecord>,
    capacity: usize,
    next_seq: u64,
    totals: [u64; 7],
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
        }
    }

    /// Append an event, pushing out the oldest one if the ring is full.
    /// O(1).
    pub(crate) fn record(&mut self, at: Instant, event: CapabilityEvent) {
        self.totals[event.counter()] += 1;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(AuditRecord {
            seq: self.next_seq,
            at,
            event,
        });
        self.next_seq += 1;
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
}
