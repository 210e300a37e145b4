//! Collecting channels nobody can reach: what reference counting alone
//! cannot free.
//!
//! A channel is kept alive by the capability records that reference it,
//! wherever they are, including in the queues of other channels. Two
//! channels whose queues each hold the other's only `RECEIVE` capability
//! keep each other alive with nobody able to receive from either: a cycle
//! that counts never bring to zero. [`KernelCore::collect_unreachable`]
//! finds them by marking from the roots (every live task's capability
//! space, the messages parked for fault injection, and the channels named
//! by service registrations) through the queues of marked channels; every
//! channel left unmarked is garbage. Discarding the garbage channels'
//! queues releases every record that referenced them (by definition all of
//! those were in those queues), so reference counting then destroys them,
//! and returns every charge they held to its account.

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::Instant;

use super::KernelCore;
use crate::audit::InvalidationReason;
use crate::cap_table::ObjectRef;
use crate::channel::{ChannelRef, Message};

/// What one collection freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Unreachable channels destroyed.
    pub channels: usize,
    /// Messages discarded from their queues.
    pub messages: usize,
}

impl KernelCore {
    /// Destroy every channel that no live task can reach (see the module
    /// documentation), discarding the messages queued on them; the
    /// capabilities those carried are invalidated and audited as
    /// `Invalidated { Unreachable }`. `terminate` runs it after every death,
    /// so nothing a dead task made outlives it unless a live task can still
    /// reach it. Cost: O(slots + capabilities + queued messages).
    pub fn collect_unreachable(&mut self, now: Instant) -> Collected {
        let reached = self.mark_reachable();
        let garbage: Vec<ChannelRef> = self
            .channels
            .iter()
            .filter(|(ch, _)| !reached[ch.index() as usize])
            .map(|(ch, _)| ch)
            .collect();
        let mut collected = Collected::default();
        let mut discarded: Vec<Message> = Vec::new();
        for &ch in &garbage {
            if let Some(c) = self.channels.get_mut(ch) {
                discarded.extend(c.take_queue());
            }
        }
        collected.messages = discarded.len();
        for msg in discarded {
            self.discard_message(msg, InvalidationReason::Unreachable, now);
        }
        collected.channels = garbage
            .iter()
            .filter(|&&ch| !self.channel_exists(ch))
            .count();
        collected
    }

    /// Which channel slots are reachable from the roots, indexed by slot.
    fn mark_reachable(&self) -> Vec<bool> {
        let mut reached = vec![false; self.channels.slot_count()];
        let mut work: Vec<ChannelRef> = Vec::new();
        let mut mark = |ch: ChannelRef, work: &mut Vec<ChannelRef>| {
            if let Some(seen) = reached.get_mut(ch.index() as usize) {
                if !*seen {
                    *seen = true;
                    work.push(ch);
                }
            }
        };
        for (_, task) in self.tasks.iter() {
            for (_, cap) in task.space.iter() {
                if let ObjectRef::Channel(ch) = cap.object() {
                    mark(ch, &mut work);
                }
            }
        }
        for (_, msg) in self.parked.values() {
            for cap in &msg.caps {
                if let ObjectRef::Channel(ch) = cap.object() {
                    mark(ch, &mut work);
                }
            }
        }
        for registration in self.registry.iter() {
            mark(registration.channel, &mut work);
        }
        while let Some(ch) = work.pop() {
            let Some(c) = self.channels.get(ch) else {
                continue;
            };
            for msg in &c.queue {
                for cap in &msg.caps {
                    if let ObjectRef::Channel(next) = cap.object() {
                        mark(next, &mut work);
                    }
                }
            }
        }
        reached
    }
}
