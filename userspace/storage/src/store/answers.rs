//! The answers kept with the last [`DURABLE_ANSWERS`](super::DURABLE_ANSWERS)
//! commits that carried an origin, oldest first, found by their key
//! (task, message) through a hash index.
//!
//! A put looks its key up for a re-send, for the memory charge, then keeps
//! its answer and drops the oldest: in a `BTreeMap` of 256 entries each of
//! those was a search of two or three nodes by tuple comparisons, about
//! 200 instructions, five of them per put. Here the answers sit in a queue
//! in the order they were kept (the oldest, the one evicted, is its front:
//! no search), and an open-addressing table with linear probing maps a key
//! to its place in the queue: a look-up hashes the key and usually
//! compares one entry. Each slot also holds sixteen more bits of its key's
//! hash, so a probe past another key's slot, and a look-up of a key not
//! kept (a put's usual case), rarely reads the queue at all.
//!
//! The hash multiplies by a secret odd number (derived from the store's
//! capability key), so a client that picks its message ids cannot aim
//! them at one run of the table; even so, a look-up compares at most as
//! many entries as are kept. The product is then folded and multiplied by
//! a fixed odd number: with the secret multiplier alone, about one boot in
//! a few hundred drew one that put counted message ids in long runs (a
//! look-up reading over a hundred slots; the storage benchmark's figures
//! moved by hundreds of instructions from boot to boot).
//!
//! Heap use per answer stays within what the store charges for one
//! ([`footprint::answer`](super::footprint::answer), worked out for a
//! `BTreeMap` entry and a place in a queue of keys): the queue's element
//! (key and answer) and at most four table slots of four bytes, see
//! `the_index_fits_in_the_charge_of_an_answer`.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;

/// A kept answer.
#[derive(Debug)]
struct Kept {
    key: (u64, u64),
    answer: Vec<u8>,
}

/// A table slot that holds no answer.
const EMPTY: u32 = u32::MAX;
/// Serial numbers count modulo this (more than are ever kept at once, see
/// [`MAX_KEPT`]); a slot holds one in its low sixteen bits, whose top bit
/// is then clear, so that no slot in use is [`EMPTY`].
const SERIALS: u32 = 1 << 15;
/// The low sixteen bits of a slot: the serial number.
const SERIAL_BITS: u32 = 0xffff;
/// The most answers kept at once, whatever bound `insert` is given: below
/// [`SERIALS`], so that no two kept answers share a serial number.
const MAX_KEPT: usize = SERIALS as usize / 2;
const _: () = assert!(super::DURABLE_ANSWERS <= MAX_KEPT);
/// The table's first size (slots, a power of two).
const FIRST_SLOTS: usize = 8;

/// Answers by (task, message), oldest first (see the module docs).
#[derive(Debug)]
pub(super) struct Answers {
    /// Oldest first; `kept[i]` has serial number `first + i` (modulo
    /// [`SERIALS`]).
    kept: VecDeque<Kept>,
    first: u32,
    /// Each slot is [`EMPTY`] or the serial number of an answer in `kept`
    /// (low sixteen bits) and sixteen other bits of its key's hash, its tag
    /// (high sixteen bits); a key's answer is in the first slot at or
    /// after its hash's that holds it, with no empty slot between. A power
    /// of two in length, at least twice as long as `kept` (empty while
    /// nothing is kept).
    slots: Vec<u32>,
    /// The hash's multiplier (odd).
    multiplier: u64,
    /// Counts the changes to the set (every `insert`).
    changes: u64,
    /// The last key a look-up did not find and the count of changes
    /// then: a put looks its key up three times (for a re-send, for the
    /// memory charge, to insert it) with no change in between, and the
    /// second and third need no search.
    missed: Cell<Option<((u64, u64), u64)>>,
    /// The largest message id of any key ever inserted (never lowered):
    /// a key with a larger one is not kept, and its look-up needs no
    /// search. Clients count their message ids up, so a request's id is
    /// usually past every kept one (a get after puts, a put's re-send
    /// look-up); a client choosing a large id only makes the others'
    /// look-ups search, as they all did before.
    newest_message: u64,
}

impl Answers {
    /// An empty set whose hash is keyed by `seed`.
    pub(super) fn new(seed: u64) -> Self {
        Answers {
            kept: VecDeque::new(),
            first: 0,
            slots: Vec::new(),
            multiplier: seed | 1,
            changes: 0,
            missed: Cell::new(None),
            newest_message: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.kept.len()
    }

    /// The answer kept for `key`.
    pub(super) fn get(&self, key: (u64, u64)) -> Option<&[u8]> {
        let (_, at) = self.find(key)?;
        Some(&self.kept[at].answer)
    }

    /// The oldest answer: the next one evicted.
    pub(super) fn oldest(&self) -> Option<&[u8]> {
        self.kept.front().map(|k| k.answer.as_slice())
    }

    /// Keep `answer` for `key`, replacing the one kept for it, if any (in
    /// its place: it is evicted as early as it would have been); a new key
    /// evicts the oldest answer first if `max` are kept. Returns whether
    /// `key` is new.
    pub(super) fn insert(&mut self, key: (u64, u64), answer: Vec<u8>, max: usize) -> bool {
        let found = self.find(key);
        self.changes = self.changes.wrapping_add(1);
        if let Some((_, at)) = found {
            self.kept[at].answer = answer;
            return false;
        }
        while self.kept.len() >= max.clamp(1, MAX_KEPT) {
            self.evict_oldest();
        }
        if (self.kept.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let serial = self.serial_at(self.kept.len());
        self.newest_message = self.newest_message.max(key.1);
        self.kept.push_back(Kept { key, answer });
        let mask = self.slots.len() - 1;
        let (mut slot, tag) = self.hash(key);
        while self.slots[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = tag | serial;
        true
    }

    /// Forget the oldest answer.
    fn evict_oldest(&mut self) {
        let Some(oldest) = self.kept.front() else {
            return;
        };
        if let Some((slot, _)) = self.find(oldest.key) {
            self.vacate(slot);
        }
        self.kept.pop_front();
        self.first = (self.first + 1) % SERIALS;
    }

    /// The serial number of `kept[at]`.
    fn serial_at(&self, at: usize) -> u32 {
        // `at` is below the number kept, far below `SERIALS`.
        (self.first + at as u32) % SERIALS
    }

    /// Where the answer of slot value `serial` (its serial number and
    /// tag) is in `kept`.
    fn position(&self, serial: u32) -> usize {
        (((serial & SERIAL_BITS) + SERIALS - self.first) % SERIALS) as usize
    }

    /// The slot `key` hashes to, and its tag (in a slot's high bits).
    fn hash(&self, (task, message): (u64, u64)) -> (usize, u32) {
        let secret = (task.rotate_left(32) ^ message).wrapping_mul(self.multiplier);
        // The product's top bits depend on every bit of its input, but for
        // keys in arithmetic progression (message ids counting up) and a
        // multiplier close to a fraction of small denominator times 2^64,
        // they fall into a few runs: folding the low half in and
        // multiplying by the golden ratio's spreads them whatever the
        // secret.
        let mixed = (secret ^ secret >> 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let bits = self.slots.len().trailing_zeros();
        // The slot is the top `bits`, the tag the sixteen below them (the
        // table never has 2^48 slots).
        let slot = (mixed >> (64 - bits)) as usize;
        let tag = ((mixed >> (48 - bits)) as u32) << 16;
        (slot, tag)
    }

    /// The slot holding `key` and its position in `kept`.
    fn find(&self, key: (u64, u64)) -> Option<(usize, usize)> {
        if self.slots.is_empty()
            || key.1 > self.newest_message
            || self.missed.get() == Some((key, self.changes))
        {
            return None;
        }
        let mask = self.slots.len() - 1;
        let (mut slot, tag) = self.hash(key);
        loop {
            let serial = self.slots[slot];
            if serial == EMPTY {
                self.missed.set(Some((key, self.changes)));
                return None;
            }
            // Another tag is another key: the queue is read only on a
            // match.
            if serial & !SERIAL_BITS == tag {
                let at = self.position(serial);
                if self.kept[at].key == key {
                    return Some((slot, at));
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Empty `slot`, moving back the entries after it that would
    /// otherwise be cut off from their hash's slot by the gap.
    fn vacate(&mut self, mut slot: usize) {
        let mask = self.slots.len() - 1;
        self.slots[slot] = EMPTY;
        let mut next = slot;
        loop {
            next = (next + 1) & mask;
            let serial = self.slots[next];
            if serial == EMPTY {
                return;
            }
            let (home, _) = self.hash(self.kept[self.position(serial)].key);
            // The entry stays if its home is cyclically in (slot, next].
            let stays = if slot < next {
                slot < home && home <= next
            } else {
                slot < home || home <= next
            };
            if !stays {
                self.slots[slot] = serial;
                self.slots[next] = EMPTY;
                slot = next;
            }
        }
    }

    /// Double the table (or make its first), placing every kept answer
    /// again.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(FIRST_SLOTS);
        self.slots = vec![EMPTY; len];
        let mask = len - 1;
        for at in 0..self.kept.len() {
            let (mut slot, tag) = self.hash(self.kept[at].key);
            while self.slots[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = tag | self.serial_at(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::footprint;
    use super::*;
    use alloc::collections::{BTreeMap, VecDeque};
    use core::mem::size_of;
    use proptest::prelude::*;

    /// The map and queue this replaces, as the reference.
    #[derive(Default)]
    struct Reference {
        answers: BTreeMap<(u64, u64), Vec<u8>>,
        order: VecDeque<(u64, u64)>,
    }

    /// What the store did before: insert, then evict the oldest while
    /// more than `max` are kept.
    fn remember(reference: &mut Reference, key: (u64, u64), answer: Vec<u8>, max: usize) -> bool {
        let new = reference.answers.insert(key, answer).is_none();
        if new {
            reference.order.push_back(key);
        }
        while reference.order.len() > max {
            if let Some(old) = reference.order.pop_front() {
                reference.answers.remove(&old);
            }
        }
        new
    }

    fn check(answers: &Answers, reference: &Reference) -> Result<(), TestCaseError> {
        prop_assert_eq!(answers.len(), reference.order.len());
        for task in 0..3 {
            for message in 0..40 {
                let key = (task, message);
                prop_assert_eq!(
                    answers.get(key),
                    reference.answers.get(&key).map(Vec::as_slice),
                    "{:?}",
                    key
                );
            }
        }
        let oldest = reference
            .order
            .front()
            .map(|k| reference.answers[k].as_slice());
        prop_assert_eq!(answers.oldest(), oldest);
        Ok(())
    }

    proptest! {
        /// Any sequence of answers (new keys and kept ones, from a small
        /// set so that they repeat and collide) leaves the same answers,
        /// in the same order, as the map and queue this replaces, with
        /// any bound; with any seed, including one that sends many keys
        /// to the same slot.
        #[test]
        fn answers_are_kept_and_evicted_as_by_a_map_and_a_queue(
            steps in prop::collection::vec((0u64..3, 0u64..40, any::<u8>()), 0..300),
            max in 1usize..50,
            seed in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            let mut answers = Answers::new(seed);
            let mut reference = Reference::default();
            for (task, message, byte) in steps {
                let key = (task, message);
                // Looked up just before it is kept and just after (a
                // put's order), as well as among the others.
                prop_assert_eq!(answers.get(key), reference.answers.get(&key).map(Vec::as_slice));
                let new = remember(&mut reference, key, vec![byte], max);
                prop_assert_eq!(answers.insert(key, vec![byte], max), new);
                prop_assert_eq!(answers.get(key), Some(&[byte][..]));
                check(&answers, &reference)?;
            }
        }
    }

    /// A look-up past the largest message id ever kept is a miss without a
    /// search; any kept key is still found, whichever task's ids are
    /// larger, and a key evicted leaves the bound where it was.
    #[test]
    fn a_message_id_past_every_kept_one_is_not_kept() {
        let mut answers = Answers::new(5);
        assert_eq!(answers.get((1, 0)), None);
        answers.insert((1, 40), vec![1], 2);
        answers.insert((2, 7), vec![2], 2);
        assert_eq!(answers.newest_message, 40);
        assert_eq!(answers.get((1, 40)), Some(&[1][..]));
        assert_eq!(answers.get((2, 7)), Some(&[2][..]));
        assert_eq!(answers.get((1, 41)), None);
        assert_eq!(answers.get((2, 40)), None);
        // (1, 40) is evicted; the bound stays, (2, 7) and (3, 9) are found.
        answers.insert((3, 9), vec![3], 2);
        assert_eq!(answers.get((1, 40)), None);
        assert_eq!(answers.get((2, 7)), Some(&[2][..]));
        assert_eq!(answers.get((3, 9)), Some(&[3][..]));
        answers.insert((4, u64::MAX), vec![4], 2);
        assert_eq!(answers.get((4, u64::MAX)), Some(&[4][..]));
        assert_eq!(answers.get((3, 9)), Some(&[3][..]));
    }

    /// However large the bound, no more answers are kept than have serial
    /// numbers of their own: each look-up still finds its own answer.
    #[test]
    fn the_bound_is_capped_below_the_serial_numbers() {
        let mut answers = Answers::new(11);
        let count = u64::from(SERIALS) + 100;
        for message in 0..count {
            answers.insert((2, message), message.to_le_bytes().to_vec(), usize::MAX);
        }
        assert_eq!(answers.len(), MAX_KEPT);
        for message in 0..count {
            let kept = message >= count - MAX_KEPT as u64;
            let expected = kept.then(|| message.to_le_bytes().to_vec());
            assert_eq!(answers.get((2, message)).map(<[u8]>::to_vec), expected);
        }
    }

    /// How many slots a look-up of `key`, not kept, reads.
    fn probes(answers: &Answers, key: (u64, u64)) -> usize {
        let mask = answers.slots.len() - 1;
        let (mut slot, _) = answers.hash(key);
        let mut read = 1;
        while answers.slots[slot] != EMPTY {
            slot = (slot + 1) & mask;
            read += 1;
        }
        read
    }

    /// Message ids counting up (a client's) spread over the table for any
    /// secret: with the multiplier alone, some seeds (one in a few
    /// hundred) put them in long runs, a look-up then reading well over
    /// a hundred slots.
    #[test]
    fn counted_message_ids_spread_whatever_the_seed() {
        let mut seed: u64 = 0x1234_5678;
        for _ in 0..1000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for step in [1, 2] {
                let mut answers = Answers::new(seed);
                let task = 0x5555_0003_0000_0007;
                for message in 0..600u64 {
                    answers.insert((task, 1000 + step * message), Vec::new(), 256);
                }
                let read: usize = (600..800u64)
                    .map(|message| probes(&answers, (task, 1000 + step * message)))
                    .sum();
                assert!(read <= 8 * 200, "seed {seed:#x}, step {step}: {read}");
            }
        }
    }

    /// Serial numbers wrap without ever reading as an empty slot.
    #[test]
    fn serial_numbers_wrap() {
        let mut answers = Answers::new(7);
        answers.first = SERIALS - 3;
        for message in 0..10 {
            answers.insert((1, message), vec![message as u8], 6);
        }
        assert_eq!(answers.first, 1);
        for message in 0..10 {
            let expected = (message >= 4).then(|| vec![message as u8]);
            assert_eq!(answers.get((1, message)).map(<[u8]>::to_vec), expected);
        }
    }

    /// The queue's element (charged as a growing `Vec`'s, see
    /// `footprint`) and up to four slots per answer (the table is at most
    /// four times as long as the queue once it holds a few; a power of
    /// two, so the heap serves it exactly) cost no more than the store
    /// charges per answer beyond its bytes.
    #[test]
    fn the_index_fits_in_the_charge_of_an_answer() {
        let per_answer = footprint::vec_element::<Kept>() + 4 * size_of::<u32>() as u64;
        assert!(per_answer <= footprint::answer(0), "{per_answer}");
        let mut answers = Answers::new(1);
        for message in 0..2 * super::super::DURABLE_ANSWERS as u64 {
            answers.insert((1, message), Vec::new(), super::super::DURABLE_ANSWERS);
            assert!(answers.slots.len() <= 4 * answers.len().max(FIRST_SLOTS / 4));
        }
    }
}
