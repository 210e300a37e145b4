//! Messages the fault injector holds back from their channel: delayed ones
//! (until a virtual instant) and reordered ones (until later messages on
//! the same channel have overtaken them).
//!
//! A held message is still in the kernel's custody — its capabilities are
//! neither the sender's nor the receiver's — and leaves this buffer exactly
//! once: into its channel's queue, or to the kernel's discard path. That is
//! what keeps delay and reorder faults at-most-once.

use std::collections::{BTreeMap, VecDeque};

use pandagen_abi::Instant;

use crate::fault::ChannelKey;

/// A message held for reordering.
#[derive(Debug)]
struct Reordered<M> {
    seq: u64,
    overtakes_left: u32,
    message: M,
}

/// The held messages, generic over the kernel's in-flight message type.
#[derive(Debug)]
pub(crate) struct Held<M> {
    /// Keyed by (due time, seq): iteration order is delivery order.
    delayed: BTreeMap<(Instant, u64), (ChannelKey, M)>,
    /// Per channel, in the order the messages were held.
    reordered: BTreeMap<ChannelKey, VecDeque<Reordered<M>>>,
    /// Held messages per channel (delayed and reordered), so the channels
    /// with held messages are known without scanning every message.
    per_channel: BTreeMap<ChannelKey, usize>,
}

impl<M> Default for Held<M> {
    fn default() -> Self {
        Held {
            delayed: BTreeMap::new(),
            reordered: BTreeMap::new(),
            per_channel: BTreeMap::new(),
        }
    }
}

impl<M> Held<M> {
    fn count_in(&mut self, channel: ChannelKey) {
        *self.per_channel.entry(channel).or_insert(0) += 1;
    }

    fn count_out(&mut self, channel: ChannelKey, n: usize) {
        if let Some(count) = self.per_channel.get_mut(&channel) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.per_channel.remove(&channel);
            }
        }
    }

    pub(crate) fn hold_delayed(&mut self, due: Instant, seq: u64, channel: ChannelKey, message: M) {
        self.count_in(channel);
        self.delayed.insert((due, seq), (channel, message));
    }

    pub(crate) fn hold_reordered(
        &mut self,
        channel: ChannelKey,
        seq: u64,
        overtakes: u32,
        message: M,
    ) {
        self.count_in(channel);
        self.reordered
            .entry(channel)
            .or_default()
            .push_back(Reordered {
                seq,
                overtakes_left: overtakes.max(1),
                message,
            });
    }

    /// The earliest instant a delayed message comes due, on `channel` or on
    /// any channel.
    pub(crate) fn next_due(&self, channel: Option<ChannelKey>) -> Option<Instant> {
        self.delayed
            .iter()
            .find(|(_, (c, _))| channel.is_none_or(|want| *c == want))
            .map(|((due, _), _)| *due)
    }

    /// Remove and return, in delivery order, every delayed message due at
    /// or before `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(u64, ChannelKey, M)> {
        let mut out = Vec::new();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, seq), (channel, message)) = entry.remove_entry();
            self.count_out(channel, 1);
            out.push((seq, channel, message));
        }
        out
    }

    /// A message was just enqueued on `channel`: it overtook every message
    /// held for reordering there. Return those whose overtakes are used up,
    /// in hold order, to be enqueued behind it.
    pub(crate) fn overtaken(&mut self, channel: ChannelKey) -> Vec<(u64, M)> {
        let Some(queue) = self.reordered.get_mut(&channel) else {
            return Vec::new();
        };
        let mut released = Vec::new();
        let mut kept = VecDeque::with_capacity(queue.len());
        for mut held in queue.drain(..) {
            held.overtakes_left -= 1;
            if held.overtakes_left == 0 {
                released.push((held.seq, held.message));
            } else {
                kept.push_back(held);
            }
        }
        if kept.is_empty() {
            self.reordered.remove(&channel);
        } else {
            *queue = kept;
        }
        self.count_out(channel, released.len());
        released
    }

    /// Everything held for reordering on `channel`, in hold order (the
    /// receiver found the queue empty, so nothing else will overtake them).
    pub(crate) fn release_reordered(&mut self, channel: ChannelKey) -> Vec<(u64, M)> {
        let released: Vec<(u64, M)> = self
            .reordered
            .remove(&channel)
            .map(|q| q.into_iter().map(|h| (h.seq, h.message)).collect())
            .unwrap_or_default();
        self.count_out(channel, released.len());
        released
    }

    pub(crate) fn has_reordered(&self, channel: ChannelKey) -> bool {
        self.reordered.contains_key(&channel)
    }

    /// Remove every message held for `channel` (it closed), delayed ones
    /// first in delivery order.
    pub(crate) fn take_channel(&mut self, channel: ChannelKey) -> Vec<(u64, M)> {
        if !self.per_channel.contains_key(&channel) {
            return Vec::new();
        }
        let due: Vec<(Instant, u64)> = self
            .delayed
            .iter()
            .filter(|(_, (c, _))| *c == channel)
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<(u64, M)> = due
            .into_iter()
            .filter_map(|k| self.delayed.remove(&k).map(|(_, m)| (k.1, m)))
            .collect();
        self.count_out(channel, out.len());
        out.extend(self.release_reordered(channel));
        out
    }

    /// The channels some held message is waiting for, in key order.
    pub(crate) fn channels(&self) -> Vec<ChannelKey> {
        self.per_channel.keys().copied().collect()
    }

    /// The sequence numbers of every held message.
    pub(crate) fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.delayed
            .keys()
            .map(|(_, seq)| *seq)
            .chain(self.reordered.values().flatten().map(|h| h.seq))
    }

    /// Nothing is held: read from the per-channel counts, one map instead
    /// of two (every hold and release keeps them; debug builds check that
    /// they agree with the two maps).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        let empty = self.per_channel.is_empty();
        debug_assert_eq!(
            empty,
            self.delayed.is_empty() && self.reordered.is_empty(),
            "the per-channel counts agree with what is held"
        );
        empty
    }

    /// Every held message, delayed ones first in delivery order.
    pub(crate) fn drain(&mut self) -> Vec<(u64, ChannelKey, M)> {
        self.per_channel.clear();
        let mut out: Vec<_> = std::mem::take(&mut self.delayed)
            .into_iter()
            .map(|((_, seq), (channel, message))| (seq, channel, message))
            .collect();
        for (channel, queue) in std::mem::take(&mut self.reordered) {
            out.extend(queue.into_iter().map(|h| (h.seq, channel, h.message)));
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.per_channel.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ChannelKey = ChannelKey(1);
    const B: ChannelKey = ChannelKey(2);

    #[test]
    fn delayed_messages_come_due_in_time_then_seq_order() {
        let mut held = Held::default();
        held.hold_delayed(Instant::from_nanos(20), 1, A, "late");
        held.hold_delayed(Instant::from_nanos(10), 3, B, "early-b");
        held.hold_delayed(Instant::from_nanos(10), 2, A, "early-a");
        assert_eq!(held.next_due(None), Some(Instant::from_nanos(10)));
        assert_eq!(held.next_due(Some(B)), Some(Instant::from_nanos(10)));
        assert!(held.take_due(Instant::from_nanos(9)).is_empty());
        let due = held.take_due(Instant::from_nanos(10));
        assert_eq!(due, vec![(2, A, "early-a"), (3, B, "early-b")]);
        assert_eq!(held.len(), 1);
        assert_eq!(
            held.take_due(Instant::from_nanos(100)),
            vec![(1, A, "late")]
        );
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn reordered_messages_wait_for_their_overtakes() {
        let mut held = Held::default();
        held.hold_reordered(A, 1, 2, "x");
        held.hold_reordered(A, 2, 1, "y");
        assert_eq!(held.overtaken(B), vec![]);
        assert_eq!(held.overtaken(A), vec![(2, "y")]);
        assert!(held.has_reordered(A));
        assert_eq!(held.overtaken(A), vec![(1, "x")]);
        assert!(!held.has_reordered(A));
    }

    #[test]
    fn an_empty_queue_releases_everything_held_for_reordering() {
        let mut held = Held::default();
        held.hold_reordered(A, 1, 3, "x");
        held.hold_reordered(A, 2, 3, "y");
        assert_eq!(held.release_reordered(A), vec![(1, "x"), (2, "y")]);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn drain_returns_each_message_once() {
        let mut held = Held::default();
        held.hold_delayed(Instant::from_nanos(5), 1, A, 1);
        held.hold_reordered(B, 2, 1, 2);
        assert_eq!(held.len(), 2);
        assert_eq!(held.channels(), vec![A, B]);
        held.hold_delayed(Instant::from_nanos(9), 3, B, 3);
        assert_eq!(held.take_channel(B), vec![(3, 3), (2, 2)]);
        held.hold_reordered(B, 2, 1, 2);
        let all = held.drain();
        assert_eq!(all.len(), 2);
        assert!(held.drain().is_empty());
    }
}
