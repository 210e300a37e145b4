//! Sizing the kernel's slot tables so that their memory depends on what
//! they hold now, not on their history.
//!
//! A table of generation-checked slots (capability spaces, the channel
//! table) grows by pushing slots and reuses freed ones through a free
//! list. Left alone, both vectors keep their peak size forever: memory
//! that a task's budget paid for while the objects existed, but that
//! stays allocated after they are gone. [`trim`] drops trailing free slots
//! and sizes both vectors to `capacity_for` of their length, the capacity
//! that growth by pushing one at a time reaches, so the heap a table
//! occupies is a function of its live objects' positions alone, and a
//! task's death gives back exactly what its objects grew.
//!
//! Truncated slots lose their generations; a table keeps the highest one
//! it dropped as a *floor* that new slots start from, so a handle to a
//! truncated slot never names a later object.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// The capacity a vector grown one element at a time has at length `len`
/// (for elements of 2..=1024 bytes, the standard library starts at 4 and
/// doubles).
#[inline]
pub(crate) fn capacity_for(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.next_power_of_two().max(4)
    }
}

/// Shrink a free list to the capacity its length implies.
pub(crate) fn fit_free_list(free: &mut Vec<u32>) {
    let fit = capacity_for(free.len());
    if free.capacity() > fit {
        free.shrink_to(fit);
    }
}

/// Drop trailing slots for which `is_free` holds, remove them from the
/// free list, size both vectors by their length, and return the highest
/// `generation` among the dropped slots (0 if none).
pub(crate) fn trim<S>(
    slots: &mut Vec<S>,
    free: &mut Vec<u32>,
    is_free: impl Fn(&S) -> bool,
    generation: impl Fn(&S) -> u32,
) -> u32 {
    let mut highest = 0;
    let mut len = slots.len();
    while len > 0 && is_free(&slots[len - 1]) {
        highest = highest.max(generation(&slots[len - 1]));
        len -= 1;
    }
    if len < slots.len() {
        slots.truncate(len);
        free.retain(|&i| (i as usize) < len);
        let fit = capacity_for(len);
        if slots.capacity() > fit {
            slots.shrink_to(fit);
        }
    }
    fit_free_list(free);
    highest
}

/// The entries of the queue buffer every channel keeps from its creation
/// on, so that a channel used for one message at a time never reallocates.
pub(crate) const MIN_QUEUE_BUFFER: usize = 4;

/// After taking from a message queue: give back a buffer more than twice
/// what the queue holds plus the `room` entries kept for interrupt
/// notifications (never below [`MIN_QUEUE_BUFFER`] entries). A queue's
/// buffer is then at most `max(4, 2 × (len + room))` entries, which the
/// channel's, the queued messages' and the interrupt bindings' charges
/// cover.
#[inline]
pub(crate) fn fit_queue<T>(queue: &mut VecDeque<T>, room: usize) {
    let fit = capacity_for(queue.len() + room).max(MIN_QUEUE_BUFFER);
    if queue.capacity() > fit {
        queue.shrink_to(fit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_match_growth_by_push() {
        let mut v: Vec<u64> = Vec::new();
        for len in 1..100usize {
            v.push(0);
            assert_eq!(v.capacity(), capacity_for(len), "len {len}");
        }
    }

    #[test]
    fn trimming_returns_to_the_size_of_a_table_that_never_grew() {
        let mut slots: Vec<Option<u32>> = Vec::new();
        for i in 0..5 {
            slots.push(Some(i));
        }
        let mut free = Vec::new();
        let reference = (slots.capacity(), free.capacity());
        for i in 5..40 {
            slots.push(Some(i));
        }
        for i in (5..40).rev() {
            slots[i as usize] = None;
            free.push(i);
        }
        let highest = trim(&mut slots, &mut free, |s| s.is_none(), |_| 7);
        assert_eq!(highest, 7);
        assert_eq!((slots.capacity(), free.capacity()), reference);
    }

    #[test]
    fn a_drained_queue_gives_back_all_but_twice_its_messages_and_room() {
        // A queue that once held 40 messages, now holding `len`, with
        // `room` entries kept for interrupt notifications: its buffer is
        // what growth to `len + room` reaches, and never below four.
        for (len, room, buffer) in [(4usize, 1usize, 8usize), (3, 2, 8), (3, 1, 4), (0, 0, 4)] {
            let mut queue: VecDeque<u64> = VecDeque::new();
            queue.extend(0..40);
            while queue.len() > len {
                queue.pop_front();
            }
            fit_queue(&mut queue, room);
            assert_eq!(queue.capacity(), buffer, "{len} queued, room for {room}");
            assert_eq!(queue.len(), len, "nothing queued is lost");
        }
        // A buffer already within bounds is left alone.
        let mut queue: VecDeque<u64> = VecDeque::with_capacity(4);
        queue.extend(0..4);
        let before = queue.capacity();
        fit_queue(&mut queue, 1);
        assert_eq!(queue.capacity(), before);
    }
}
