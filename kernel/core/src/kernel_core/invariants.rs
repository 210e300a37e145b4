//! A full consistency check of the object model, for tests and for the
//! real kernel's self-test after a syscall fuzz run. O(everything).

use alloc::collections::{BTreeMap, BTreeSet};
use pandagen_abi::{Rights, ServiceId, TaskId};

use super::KernelCore;
use crate::cap_table::{CapId, Capability, Holder, ObjectRef};
use crate::channel::ChannelRef;
use crate::sched::{BlockedOn, SchedState};

/// The first inconsistency `check_invariants` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantViolation {
    /// Two records share an id: a capability with two owners.
    DuplicateCapability(CapId),
    /// A record's holder field disagrees with where it is stored.
    HolderMismatch(CapId),
    /// A record designates a channel object that no longer exists.
    DanglingChannel(CapId),
    /// A channel's reference, sender, receiver or registration counts
    /// disagree with the records and registrations that exist.
    ChannelCounts(ChannelRef),
    /// A channel exists that nothing references.
    UnreferencedChannel(ChannelRef),
    /// A queue holds more messages than its bound.
    QueueOverCapacity(ChannelRef),
    /// A closed channel still holds messages.
    ClosedChannelNotEmpty(ChannelRef),
    /// A registration names a dead owner or a closed or missing channel.
    StaleRegistration(ServiceId),
    /// A live task is not scheduled, or a blocked task is in the wrong
    /// wait list.
    TaskState(TaskId),
    /// The ready lists, bitmap or deadline index are inconsistent.
    Scheduler,
    /// A channel's wait list holds a task not blocked on it.
    WaitList(ChannelRef),
}

#[derive(Default, PartialEq, Eq, Debug)]
struct Counts {
    refs: u32,
    senders: u32,
    receivers: u32,
    registrations: u32,
}

impl KernelCore {
    /// Check every structural invariant:
    /// * every capability record exists in exactly one place, and its
    ///   holder says where (so every valid capability has one owner);
    /// * every channel's counts match the records referencing it, no
    ///   channel is unreferenced, queues respect their bounds, closed
    ///   channels are empty;
    /// * registrations name live owners and open channels;
    /// * every live task is scheduled, each blocked receiver is in exactly
    ///   its channel's wait list, and the scheduler's lists are consistent.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut seen = BTreeSet::new();
        let mut counts: BTreeMap<ChannelRef, Counts> = BTreeMap::new();
        let mut visit = |cap: &Capability, expected: Holder| -> Result<(), InvariantViolation> {
            if !seen.insert(cap.id()) {
                return Err(InvariantViolation::DuplicateCapability(cap.id()));
            }
            if cap.holder() != expected {
                return Err(InvariantViolation::HolderMismatch(cap.id()));
            }
            if let ObjectRef::Channel(ch) = cap.object() {
                let c = counts.entry(ch).or_default();
                c.refs += 1;
                c.senders += cap.rights().contains(Rights::SEND) as u32;
                c.receivers += cap.rights().contains(Rights::RECEIVE) as u32;
            }
            Ok(())
        };
        for (_, task) in self.tasks.iter() {
            for (_, cap) in task.space.iter() {
                visit(cap, Holder::Task(task.id))?;
            }
        }
        for (ch, c) in self.channels.iter() {
            for msg in &c.queue {
                for cap in &msg.caps {
                    visit(cap, Holder::Queued(ch))?;
                }
            }
        }
        for (_, msg) in self.parked.values() {
            for cap in &msg.caps {
                visit(cap, Holder::Parked)?;
            }
        }
        for r in self.registry.iter() {
            counts.entry(r.channel).or_default().registrations += 1;
            let open = self.channels.get(r.channel).is_some_and(|c| !c.is_closed());
            if !open || !self.is_alive(r.owner) {
                return Err(InvariantViolation::StaleRegistration(r.service));
            }
        }
        for (&ch, expected) in &counts {
            let Some(c) = self.channels.get(ch) else {
                return Err(InvariantViolation::ChannelCounts(ch));
            };
            let actual = Counts {
                refs: c.refs,
                senders: c.senders,
                receivers: c.receivers,
                registrations: c.registrations,
            };
            if actual != *expected {
                return Err(InvariantViolation::ChannelCounts(ch));
            }
        }
        for (ch, c) in self.channels.iter() {
            if !counts.contains_key(&ch) || c.refs == 0 {
                return Err(InvariantViolation::UnreferencedChannel(ch));
            }
            if c.bounded_len() > c.capacity as usize {
                return Err(InvariantViolation::QueueOverCapacity(ch));
            }
            if c.is_closed() && !c.queue.is_empty() {
                return Err(InvariantViolation::ClosedChannelNotEmpty(ch));
            }
            for slot in self.sched.iter_list(c.waiters) {
                let blocked_here = matches!(
                    self.sched.state(slot),
                    SchedState::Blocked(BlockedOn::Receive { channel, .. }) if channel == ch
                );
                if !blocked_here || self.tasks.by_slot(slot).is_none() {
                    return Err(InvariantViolation::WaitList(ch));
                }
            }
        }
        for (slot, task) in self.tasks.iter() {
            match self.sched.state(slot) {
                SchedState::Inactive => return Err(InvariantViolation::TaskState(task.id)),
                SchedState::Blocked(BlockedOn::Receive { channel, .. }) => {
                    let listed = self
                        .channels
                        .get(channel)
                        .is_some_and(|c| self.sched.iter_list(c.waiters).any(|s| s == slot));
                    if !listed {
                        return Err(InvariantViolation::TaskState(task.id));
                    }
                }
                _ => {}
            }
        }
        if !self.sched.consistent() {
            return Err(InvariantViolation::Scheduler);
        }
        Ok(())
    }
}
