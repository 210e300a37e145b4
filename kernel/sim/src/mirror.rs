//! The simulator's mirror of the core's queues: the envelope (and the
//! trace's sequence number) of every message the core holds queued, in
//! queue order, found by the channel's slot index as the core's own
//! channel table finds a channel.
//!
//! A slot remembers the channel (slot and generation) whose messages it
//! holds. A channel's messages leave it when they are delivered or lost,
//! and a closed channel's are taken by `SimulatedKernel::reap_closed`; a
//! slot whose channel has gone is taken over by the next channel the core
//! puts in that slot only once it holds nothing.

use std::collections::VecDeque;

use crate::fault::ChannelKey;
use crate::kernel::Queued;

struct Slot {
    /// The channel whose messages the slot holds, or [`VACANT`].
    key: ChannelKey,
    queue: VecDeque<Queued>,
}

/// The key of no channel: a channel's generation is never 0 (the core's
/// channel table starts every slot at 1 or above), so neither is its key.
/// A slot's key is compared in one step, not as an `Option`'s.
const VACANT: ChannelKey = ChannelKey(0);

impl Default for Slot {
    fn default() -> Self {
        Slot {
            key: VACANT,
            queue: VecDeque::new(),
        }
    }
}

/// Queued envelopes by channel slot.
#[derive(Default)]
pub(crate) struct Mirror {
    slots: Vec<Slot>,
}

/// The slot a channel's messages go in still holds messages of a channel
/// that is gone (`SimulatedKernel::reap_closed` records their loss).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SlotTaken;

impl Mirror {
    #[inline(always)]
    fn index(key: ChannelKey) -> usize {
        key.0 as u32 as usize
    }

    /// The messages mirrored for `key`, if it has any slot.
    #[inline(always)]
    pub(crate) fn queue_mut(&mut self, key: ChannelKey) -> Option<&mut VecDeque<Queued>> {
        match self.slots.get_mut(Self::index(key)) {
            Some(slot) if slot.key == key => Some(&mut slot.queue),
            _ => None,
        }
    }

    /// The queue to append `key`'s messages to, its slot claimed if
    /// another channel (with nothing left mirrored) had it.
    #[inline(always)]
    pub(crate) fn queue_for(
        &mut self,
        key: ChannelKey,
    ) -> Result<&mut VecDeque<Queued>, SlotTaken> {
        let index = Self::index(key);
        match self.slots.get(index) {
            Some(slot) if slot.key == key => Ok(&mut self.slots[index].queue),
            _ => self.claim(key),
        }
    }

    /// [`Mirror::queue_for`] a channel the mirror has no slot for yet.
    #[cold]
    fn claim(&mut self, key: ChannelKey) -> Result<&mut VecDeque<Queued>, SlotTaken> {
        debug_assert_ne!(key, VACANT, "no channel has generation 0");
        let index = Self::index(key);
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let slot = &mut self.slots[index];
        if slot.key != key && !slot.queue.is_empty() {
            return Err(SlotTaken);
        }
        slot.key = key;
        Ok(&mut slot.queue)
    }

    /// Take the message with the core's sequence number `core_seq` from
    /// `key`'s queue (normally its head).
    #[inline(always)]
    pub(crate) fn take(&mut self, key: ChannelKey, core_seq: u64) -> Option<Queued> {
        let queue = self.queue_mut(key)?;
        if queue.front()?.core_seq == core_seq {
            return queue.pop_front();
        }
        let position = queue.iter().position(|q| q.core_seq == core_seq)?;
        queue.remove(position)
    }

    /// The head of `key`'s queue, taken.
    pub(crate) fn pop_front(&mut self, key: ChannelKey) -> Option<Queued> {
        self.queue_mut(key)?.pop_front()
    }

    /// The channels with messages mirrored, in key order.
    pub(crate) fn keys(&self) -> Vec<ChannelKey> {
        let mut keys: Vec<ChannelKey> = self
            .slots
            .iter()
            .filter(|slot| !slot.queue.is_empty())
            .map(|slot| slot.key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Take every message mirrored for `key` (its channel closed), giving
    /// the slot's buffer back.
    pub(crate) fn take_all(&mut self, key: ChannelKey) -> VecDeque<Queued> {
        match self.slots.get_mut(Self::index(key)) {
            Some(slot) if slot.key == key => {
                slot.key = VACANT;
                std::mem::take(&mut slot.queue)
            }
            _ => VecDeque::new(),
        }
    }

    /// Every message mirrored, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.slots.iter().flat_map(|slot| slot.queue.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(core_seq: u64) -> Queued {
        Queued {
            core_seq,
            seq: core_seq + 100,
            caps: 0,
            envelope: pandagen_abi::MessageEnvelope::new(
                pandagen_abi::ServiceId::from_raw(1),
                "t",
                pandagen_abi::SchemaVersion::new(1, 0),
                pandagen_abi::MessagePayload::empty(),
            ),
        }
    }

    fn key(index: u32, generation: u32) -> ChannelKey {
        ChannelKey(u64::from(generation) << 32 | u64::from(index))
    }

    #[test]
    fn a_slot_holds_one_channel_at_a_time() {
        let mut mirror = Mirror::default();
        let old = key(3, 1);
        let new = key(3, 2);
        mirror.queue_for(old).unwrap().push_back(queued(1));
        assert!(mirror.pop_front(new).is_none(), "the generation is checked");
        assert_eq!(mirror.queue_for(new).err(), Some(SlotTaken));
        assert_eq!(mirror.keys(), [old]);
        assert_eq!(mirror.take_all(old).len(), 1);
        mirror.queue_for(new).unwrap().push_back(queued(2));
        assert_eq!(mirror.take(new, 2).map(|q| q.seq), Some(102));
        assert!(mirror.keys().is_empty());
    }

    #[test]
    fn take_finds_a_message_behind_the_head_and_keys_are_sorted() {
        let mut mirror = Mirror::default();
        for core_seq in 1..=3 {
            mirror
                .queue_for(key(5, 1))
                .unwrap()
                .push_back(queued(core_seq));
        }
        mirror.queue_for(key(0, 7)).unwrap().push_back(queued(9));
        assert_eq!(mirror.take(key(5, 1), 2).map(|q| q.seq), Some(102));
        assert!(mirror.take(key(5, 1), 2).is_none());
        assert_eq!(mirror.keys(), [key(5, 1), key(0, 7)]);
        let mut left: Vec<u64> = mirror.iter().map(|q| q.core_seq).collect();
        left.sort_unstable();
        assert_eq!(left, [1, 3, 9]);
    }
}
