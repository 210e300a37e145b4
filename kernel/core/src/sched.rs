//! Scheduling policy: who runs next, who is blocked on what, and who wakes
//! when. Context switching is not here; the real kernel does it, and the
//! simulator does not need it.
//!
//! Tasks are named by their slot index in the task table (`u32`). Every
//! task is in exactly one state: not scheduled (`Inactive`), `Ready` (in
//! the ready list of its priority), `Running` (picked, in no list) or
//! `Blocked` (possibly in one channel's wait list and possibly in the
//! deadline index). A task is never in two lists at once, so one
//! `prev`/`next` pair per task serves both the ready lists and the channel
//! wait lists: the lists are intrusive and need no allocation.
//!
//! Costs (n = number of tasks):
//!
//! | operation                 | cost                       |
//! |---------------------------|----------------------------|
//! | `make_ready`              | O(1)                       |
//! | `pick_next`               | O(1) (bitmap of non-empty levels + list head) |
//! | `yield_running`           | O(1)                       |
//! | `block` without deadline  | O(1)                       |
//! | `block` with deadline     | O(n) (sorted insert, no allocation) |
//! | `wake` / `deactivate`     | O(1), or O(log n) if a deadline is removed |
//! | `next_deadline`           | O(log n)                   |
//! | `pop_expired`             | O(log n) per woken task    |
//! | `set_priority`            | O(1)                       |

use alloc::collections::BTreeSet;
use core::cell::Cell;

use crate::sorted_map::SortedMap;
use alloc::vec::Vec;
use pandagen_abi::{Instant, Priority};

use crate::channel::ChannelRef;
use crate::task::WakeReason;

/// The "no task" link value.
pub(crate) const NIL: u32 = u32::MAX;

/// Number of priority levels, fixed by the ABI.
const LEVELS: usize = Priority::LEVELS;

/// A FIFO of task slots threaded through the scheduler's links. It keeps
/// no count: nothing needs one but the tests, and every change of a list
/// (the IPC fast path's two among them) would update it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskList {
    head: u32,
    tail: u32,
}

impl TaskList {
    pub(crate) const EMPTY: TaskList = TaskList {
        head: NIL,
        tail: NIL,
    };

    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    pub(crate) fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }
}

/// A channel's wait list. A [`Cell`], so that the IPC fast path's switch
/// can hold the list it sends on and the one it receives on as two shared
/// references that may name the same list (a call that receives where it
/// sent), instead of one mutable borrow and an `Option` for the second;
/// everything else changes it through [`Cell::get_mut`].
pub(crate) type WaitList = Cell<TaskList>;

impl Default for TaskList {
    fn default() -> Self {
        TaskList::EMPTY
    }
}

/// What a blocked task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedOn {
    /// A message on `channel`, until `deadline` (`None`: forever).
    Receive {
        channel: ChannelRef,
        deadline: Option<Instant>,
    },
    /// Nothing but time.
    Sleep { until: Instant },
}

impl BlockedOn {
    /// Whether the wait has a deadline (`deadline().is_some()`, without
    /// reading the deadline itself: the direct switch tests two waits at
    /// once with it).
    #[inline(always)]
    fn timed(&self) -> bool {
        !matches!(self, BlockedOn::Receive { deadline: None, .. })
    }

    pub fn deadline(&self) -> Option<Instant> {
        match *self {
            BlockedOn::Receive { deadline, .. } => deadline,
            BlockedOn::Sleep { until } => Some(until),
        }
    }
}

/// A task's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedState {
    /// Not scheduled: the slot is free or the task has terminated.
    Inactive,
    /// Waiting in its priority's ready list.
    Ready,
    /// Picked by `pick_next` and not yet put back.
    Running,
    /// Waiting for a message or a time.
    Blocked(BlockedOn),
}

#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

/// A task's scheduling state without what it waits for (see
/// [`Entry::on`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inactive,
    Ready,
    Running,
    Blocked,
}

#[derive(Clone, Copy)]
struct Entry {
    link: Link,
    /// The state is `kind`, with `on` when it is `Blocked` (see
    /// [`Entry::state`]). `on` means nothing in any other state, so the
    /// IPC fast path's check may write the caller's coming wait there
    /// while the caller runs (see [`Scheduler::check_direct`]): the commit
    /// then blocks it by writing the kind alone.
    kind: Kind,
    on: BlockedOn,
    priority: u8,
    /// The bits of [`Scheduler::nonempty`] of the levels at or above
    /// `priority` (`u32::MAX << priority`, [`Entry::set_priority`] writes
    /// both): a ready task has this task's priority or a higher one iff
    /// `nonempty & outranked_by != 0`, one test for the IPC fast path's
    /// check (the shift by the priority took three instructions more).
    outranked_by: u32,
    /// Why the task was last woken, until it is taken or the task waits
    /// again (see `KernelCore::take_wake_reason`). Kept here, beside the
    /// state every wake changes, so that waking a task touches one record.
    wake: Option<WakeReason>,
}

impl Entry {
    /// Set the task's priority level, and what outranks it.
    fn set_priority(&mut self, level: u8) {
        self.priority = level;
        self.outranked_by = u32::MAX << level;
    }

    #[inline]
    fn state(&self) -> SchedState {
        match self.kind {
            Kind::Inactive => SchedState::Inactive,
            Kind::Ready => SchedState::Ready,
            Kind::Running => SchedState::Running,
            Kind::Blocked => SchedState::Blocked(self.on),
        }
    }
}

/// Table bytes one task takes in the scheduler: its entry and the deadline
/// room kept for it (see [`crate::budget::TASK_COST`]).
pub(crate) const SCHEDULER_BYTES: usize = size_of::<Entry>() + size_of::<((Instant, u32), ())>();

/// The scheduler's per-task bookkeeping and ready lists.
pub(crate) struct Scheduler {
    entries: Vec<Entry>,
    ready: [TaskList; LEVELS],
    /// Bit `p` is set iff `ready[p]` is non-empty.
    nonempty: u32,
    /// Blocked tasks by deadline (a set: the values are unit), with room
    /// reserved for every task slot.
    deadlines: SortedMap<(Instant, u32), ()>,
}

impl Scheduler {
    pub(crate) fn new() -> Self {
        Scheduler {
            entries: Vec::new(),
            ready: [TaskList::EMPTY; LEVELS],
            nonempty: 0,
            deadlines: SortedMap::new(),
        }
    }

    fn entry(&mut self, slot: u32) -> &mut Entry {
        let i = slot as usize;
        if i >= self.entries.len() {
            self.entries.resize(
                i + 1,
                Entry {
                    link: Link {
                        prev: NIL,
                        next: NIL,
                    },
                    kind: Kind::Inactive,
                    on: BlockedOn::Sleep {
                        until: Instant::from_nanos(0),
                    },
                    priority: 0,
                    outranked_by: u32::MAX,
                    wake: None,
                },
            );
            // Every task could sleep at once: room for all of them, so
            // kernel memory does not change with how many happen to be
            // sleeping when someone looks.
            self.deadlines.reserve(self.entries.len());
        }
        &mut self.entries[i]
    }

    pub(crate) fn state(&self, slot: u32) -> SchedState {
        self.entries
            .get(slot as usize)
            .map_or(SchedState::Inactive, Entry::state)
    }

    pub(crate) fn priority(&self, slot: u32) -> Priority {
        Priority(self.entries.get(slot as usize).map_or(0, |e| e.priority))
    }

    /// Record why `slot` was woken (`None`: it is waiting again, or
    /// running without having been woken). No effect on an unknown slot.
    #[inline]
    pub(crate) fn set_wake(&mut self, slot: u32, reason: Option<WakeReason>) {
        if let Some(e) = self.entries.get_mut(slot as usize) {
            e.wake = reason;
        }
    }

    /// Why `slot` was last woken, clearing it.
    pub(crate) fn take_wake(&mut self, slot: u32) -> Option<WakeReason> {
        self.entries.get_mut(slot as usize)?.wake.take()
    }

    /// Start scheduling a new task: it joins the tail of its ready list.
    pub(crate) fn activate(&mut self, slot: u32, priority: Priority) {
        let level = clamp(priority);
        let e = self.entry(slot);
        e.set_priority(level);
        e.kind = Kind::Inactive;
        e.wake = None;
        self.make_ready(slot);
    }

    /// Put a task at the tail of its ready list. No effect if it is
    /// already ready; a blocked task is woken (its wait list and deadline
    /// are the caller's to clear first: use [`Scheduler::wake`]).
    fn make_ready(&mut self, slot: u32) {
        let level = self.entry(slot).priority as usize;
        self.entries[slot as usize].kind = Kind::Ready;
        let mut list = self.ready[level];
        self.push_back(&mut list, slot);
        self.ready[level] = list;
        self.nonempty |= 1 << level;
    }

    fn unready(&mut self, slot: u32) {
        let level = self.entries[slot as usize].priority as usize;
        let mut list = self.ready[level];
        self.unlink(&mut list, slot);
        self.ready[level] = list;
        if list.is_empty() {
            self.nonempty &= !(1 << level);
        }
    }

    /// The highest-priority ready task, removed from its list and marked
    /// running. Equal priorities come out in FIFO order, which with
    /// [`Scheduler::yield_running`] gives round-robin.
    pub(crate) fn pick_next(&mut self) -> Option<u32> {
        if self.nonempty == 0 {
            return None;
        }
        let level = 31 - self.nonempty.leading_zeros() as usize;
        let mut list = self.ready[level];
        let slot = list.head;
        self.unlink(&mut list, slot);
        self.ready[level] = list;
        if list.is_empty() {
            self.nonempty &= !(1 << level);
        }
        self.entries[slot as usize].kind = Kind::Running;
        Some(slot)
    }

    /// Whether [`Scheduler::pick_next`] would choose `slot` now: it heads
    /// the highest-priority ready list that is not empty.
    pub(crate) fn would_pick(&self, slot: u32) -> bool {
        if self.nonempty == 0 {
            return false;
        }
        let level = 31 - self.nonempty.leading_zeros() as usize;
        self.ready[level].head == slot
    }

    /// A running task gives up the CPU (time slice over or voluntary
    /// yield): it goes to the tail of its ready list. Returns false if the
    /// task was not running.
    pub(crate) fn yield_running(&mut self, slot: u32) -> bool {
        if self.state(slot) != SchedState::Running {
            return false;
        }
        self.make_ready(slot);
        true
    }

    /// Block a ready or running task. If `wait_list` is given the task
    /// joins its tail; a deadline enters the deadline index.
    pub(crate) fn block(&mut self, slot: u32, on: BlockedOn, wait_list: Option<&mut TaskList>) {
        match self.state(slot) {
            SchedState::Ready => self.unready(slot),
            SchedState::Running => {}
            // Blocking an inactive or already blocked task is a caller bug;
            // the kernel core never does it (checked by the invariants).
            SchedState::Inactive | SchedState::Blocked(_) => return,
        }
        let e = &mut self.entries[slot as usize];
        e.kind = Kind::Blocked;
        e.on = on;
        if let Some(list) = wait_list {
            self.push_back(list, slot);
        }
        if let Some(deadline) = on.deadline() {
            self.deadlines.insert((deadline, slot), ());
        }
    }

    /// Wake a blocked task: remove it from `wait_list` (the list it waits
    /// in, if any) and the deadline index, and make it ready.
    pub(crate) fn wake(&mut self, slot: u32, wait_list: Option<&mut TaskList>) {
        if let SchedState::Blocked(on) = self.state(slot) {
            self.stop_waiting(slot, on, wait_list);
            self.make_ready(slot);
        }
    }

    /// Take a blocked task out of `wait_list` and the deadline index.
    fn stop_waiting(&mut self, slot: u32, on: BlockedOn, wait_list: Option<&mut TaskList>) {
        if let Some(list) = wait_list {
            self.unlink(list, slot);
        }
        if let Some(deadline) = on.deadline() {
            self.deadlines.remove(&(deadline, slot));
        }
    }

    /// Run a blocked task directly, without passing through the ready
    /// lists (the IPC fast path): remove it from `wait_list` and the
    /// deadline index and mark it running. The task that was running must
    /// block or yield in the same step. No effect unless it is blocked.
    pub(crate) fn run_blocked(&mut self, slot: u32, wait_list: Option<&mut TaskList>) {
        if let SchedState::Blocked(on) = self.state(slot) {
            self.stop_waiting(slot, on, wait_list);
            self.entries[slot as usize].kind = Kind::Running;
        }
    }

    /// Check the IPC fast path's switch, changing nothing observable: `caller` is
    /// running, the task at the head of `sent_on` is blocked, and
    /// `pick_next` would choose it if it were made ready now (no ready
    /// task has its priority or a higher one). `receive_on` is the list
    /// the caller will wait in, which may be `sent_on` itself (the caller
    /// receives where it sent).
    ///
    /// The answer is the only way to the switch: it holds the scheduler
    /// borrowed, and the embedder holds the core (and so both lists)
    /// borrowed until [`DirectSwitch::commit`], so nothing changes what
    /// was checked before it, which therefore checks none of it again.
    ///
    /// `on` is what the caller will wait for. Once the caller is known to
    /// be running, the check writes it into the caller's entry (first, so
    /// that it is not held across the receiver's checks), where nothing
    /// reads it while the caller runs ([`Scheduler::state`] reads a task's
    /// wait only when it is blocked, and blocking writes a new one), so
    /// that the commit, after the embedder's hand-over, blocks the caller
    /// by writing its state's kind alone: the check changes nothing anyone
    /// can observe, passed or declined, dropped or committed.
    #[inline(always)]
    pub(crate) fn check_direct<'k>(
        &'k mut self,
        caller: u32,
        sent_on: &'k WaitList,
        receive_on: &'k WaitList,
        on: BlockedOn,
    ) -> Option<DirectSwitch<'k>> {
        let c = self.entries.get_mut(caller as usize)?;
        if c.kind != Kind::Running {
            return None;
        }
        c.on = on;
        // An empty list's head is `NIL`, which is no entry's slot (the
        // entries could not fill memory up to it): the lookup declines it.
        let receiver = sent_on.get().head;
        let r = self.entries.get(receiver as usize)?;
        if r.kind != Kind::Blocked || self.nonempty & r.outranked_by != 0 {
            return None;
        }
        Some(DirectSwitch {
            sched: self,
            sent_on,
            receive_on,
            caller,
        })
    }

    /// Run a ready or blocked task because the embedder chose it (the
    /// simulator steps tasks in its own order): it leaves its ready list,
    /// or stops waiting (`wait_list` is the list it waits in, if any), and
    /// is marked running. The task that was running must have been put
    /// back first. No effect on a running or inactive task.
    pub(crate) fn run(&mut self, slot: u32, wait_list: Option<&mut TaskList>) {
        match self.state(slot) {
            SchedState::Ready => {
                self.unready(slot);
                self.entries[slot as usize].kind = Kind::Running;
            }
            SchedState::Blocked(_) => self.run_blocked(slot, wait_list),
            SchedState::Running | SchedState::Inactive => {}
        }
    }

    /// Stop scheduling a task (it terminated), whatever its state.
    pub(crate) fn deactivate(&mut self, slot: u32, wait_list: Option<&mut TaskList>) {
        match self.state(slot) {
            SchedState::Ready => self.unready(slot),
            SchedState::Blocked(on) => self.stop_waiting(slot, on, wait_list),
            SchedState::Running | SchedState::Inactive => {}
        }
        let e = &mut self.entries[slot as usize];
        e.kind = Kind::Inactive;
        e.wake = None;
    }

    /// Change a task's priority; a ready task moves to the tail of its new
    /// level.
    pub(crate) fn set_priority(&mut self, slot: u32, priority: Priority) {
        let ready = self.state(slot) == SchedState::Ready;
        if ready {
            self.unready(slot);
        }
        self.entry(slot).set_priority(clamp(priority));
        if ready {
            self.make_ready(slot);
        }
    }

    /// The earliest deadline of any blocked task.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(&(at, _), _)| at)
    }

    /// The blocked task with the earliest deadline at or before `now`, if
    /// any. It is not woken; the caller does that (it knows the wait list).
    pub(crate) fn first_expired(&self, now: Instant) -> Option<u32> {
        match self.deadlines.first() {
            Some((&(at, slot), _)) if at <= now => Some(slot),
            _ => None,
        }
    }

    /// How many tasks are ready (a walk of the ready lists).
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.iter().map(|l| self.iter_list(*l).count()).sum()
    }

    /// The slots in `list`, front to back.
    pub(crate) fn iter_list(&self, list: TaskList) -> ListIter<'_> {
        ListIter {
            sched: self,
            next: list.head,
        }
    }

    fn push_back(&mut self, list: &mut TaskList, slot: u32) {
        let tail = list.tail;
        {
            let e = self.entry(slot);
            e.link = Link {
                prev: tail,
                next: NIL,
            };
        }
        if tail == NIL {
            list.head = slot;
        } else {
            self.entries[tail as usize].link.next = slot;
        }
        list.tail = slot;
    }

    fn unlink(&mut self, list: &mut TaskList, slot: u32) {
        let Link { prev, next } = self.entries[slot as usize].link;
        if prev == NIL {
            list.head = next;
        } else {
            self.entries[prev as usize].link.next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.entries[next as usize].link.prev = prev;
        }
        self.entries[slot as usize].link = Link {
            prev: NIL,
            next: NIL,
        };
    }

    /// Check the lists against the states (for `check_invariants`):
    /// returns false on any inconsistency.
    pub(crate) fn consistent(&self) -> bool {
        let mut ready_seen = 0usize;
        for (level, list) in self.ready.iter().enumerate() {
            if (self.nonempty >> level) & 1 != !list.is_empty() as u32 {
                return false;
            }
            let mut count = 0u32;
            let mut prev = NIL;
            for slot in self.iter_list(*list) {
                let e = &self.entries[slot as usize];
                if e.kind != Kind::Ready || e.priority as usize != level || e.link.prev != prev {
                    return false;
                }
                prev = slot;
                count += 1;
                if count as usize > self.entries.len() {
                    return false;
                }
            }
            if list.tail != prev {
                return false;
            }
            ready_seen += count as usize;
        }
        let ready_states = self
            .entries
            .iter()
            .filter(|e| e.kind == Kind::Ready)
            .count();
        if ready_states != ready_seen {
            return false;
        }
        if self
            .entries
            .iter()
            .any(|e| e.outranked_by != u32::MAX << e.priority)
        {
            return false;
        }
        let with_deadline = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.state() {
                SchedState::Blocked(on) => on.deadline().map(|d| (d, i as u32)),
                _ => None,
            })
            .collect::<BTreeSet<_>>();
        with_deadline.len() == self.deadlines.len()
            && with_deadline
                .iter()
                .zip(self.deadlines.iter())
                .all(|(expected, (held, ()))| expected == held)
    }
}

/// The IPC fast path's switch, checked by [`Scheduler::check_direct`] and
/// made by nothing else: the caller is running, the receiver blocked at
/// the head of `sent_on` and would run next. It holds the scheduler and
/// both wait lists (which may be one list) borrowed until
/// [`DirectSwitch::commit`], so what the check saw still holds there;
/// dropped, it leaves everything as it was.
#[must_use = "a checked switch changes nothing until it is committed"]
pub(crate) struct DirectSwitch<'k> {
    sched: &'k mut Scheduler,
    sent_on: &'k WaitList,
    receive_on: &'k WaitList,
    /// The caller's slot. The receiver's is the head of `sent_on`, read
    /// where it is needed rather than carried across the embedder's
    /// hand-over (the list is borrowed, so its head is the one checked).
    caller: u32,
}

impl DirectSwitch<'_> {
    /// The caller's slot and the receiver's: two different tasks (one
    /// running, one blocked), both in the scheduler.
    #[inline(always)]
    pub(crate) fn slots(&self) -> (u32, u32) {
        (self.caller, self.sent_on.get().head)
    }

    /// Switch, in one step and without the ready lists: the receiver
    /// leaves the head of `sent_on` and runs, and the caller blocks on the
    /// wait the check was given at the tail of `receive_on` (which may be
    /// `sent_on`: the caller receives where it sent, and takes the
    /// receiver's place in line). Both leave and enter the deadline
    /// index as their waits say; the receiver was woken by a hand-off
    /// ([`WakeReason::HandedOff`]) and the caller, waiting again, has no
    /// wake reason.
    #[inline(always)]
    pub(crate) fn commit(self) {
        let DirectSwitch {
            sched,
            sent_on,
            receive_on,
            caller,
        } = self;
        let receiver = sent_on.get().head;
        // One borrow of the entries as a slice: its length stays in a
        // register, so the writes below do not reload it for their bounds
        // checks (through `sched.entries[..]` each one did).
        let entries = sched.entries.as_mut_slice();
        // The receiver leaves the head of its wait list.
        let r = &mut entries[receiver as usize];
        // The deadline it waited with, if any, leaves the index (below).
        let waited = r.on.timed();
        // Its link is left as it was: a link is read only while its task
        // is in a list (by `unlink`, `iter_list` and `consistent`, all
        // through a list's head or a listed task), and `push_back` writes
        // both halves when the task joins one again.
        let next = r.link.next;
        r.kind = Kind::Running;
        r.wake = Some(WakeReason::HandedOff);
        // The receiver alone in line leaves the list empty: one store of
        // the empty list (the head and the tail written apart took a
        // register and two stores).
        if next == NIL {
            sent_on.set(TaskList::EMPTY);
        } else {
            entries[next as usize].link.prev = NIL;
            let mut sent = sent_on.get();
            sent.head = next;
            sent_on.set(sent);
        }
        // The caller joins the tail of the list it receives on, read after
        // the write above (it is that list when the caller receives where
        // it sent). This is `push_back` written out with the state change
        // through one borrow of the entry: through `push_back` (and its
        // `entry` growth check) the round trip measured 8 instructions
        // more.
        let tail = receive_on.get().tail;
        let c = &mut entries[caller as usize];
        // Its wait is in its entry already (see `check_direct`).
        c.kind = Kind::Blocked;
        let timed = c.on.timed();
        c.wake = None;
        // Written apart for the two cases, so that the common one (the
        // caller alone in line) stores constants and the caller's slot
        // without reading the list's head: the caller's link is both
        // halves `NIL`, and the list is the caller alone (its head is read
        // only when it has one).
        if tail == NIL {
            c.link = Link {
                prev: NIL,
                next: NIL,
            };
            receive_on.set(TaskList {
                head: caller,
                tail: caller,
            });
        } else {
            c.link = Link {
                prev: tail,
                next: NIL,
            };
            entries[tail as usize].link.next = caller;
            let head = receive_on.get().head;
            receive_on.set(TaskList { head, tail: caller });
        }
        // One test for the two waits (neither has a deadline, in the
        // common call); their deadlines are read only when one has.
        if waited | timed {
            if let Some(deadline) = entries[receiver as usize].on.deadline() {
                sched.deadlines.remove(&(deadline, receiver));
            }
            if let Some(deadline) = entries[caller as usize].on.deadline() {
                sched.deadlines.insert((deadline, caller), ());
            }
        }
    }
}

pub(crate) struct ListIter<'a> {
    sched: &'a Scheduler,
    next: u32,
}

impl Iterator for ListIter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.next == NIL {
            return None;
        }
        let slot = self.next;
        self.next = self.sched.entries[slot as usize].link.next;
        Some(slot)
    }
}

fn clamp(priority: Priority) -> u8 {
    priority.0.min(LEVELS as u8 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_runs_first_and_equal_priorities_round_robin() {
        let mut s = Scheduler::new();
        s.activate(0, Priority::NORMAL);
        s.activate(1, Priority::HIGH);
        s.activate(2, Priority::NORMAL);
        assert_eq!(s.pick_next(), Some(1));
        assert!(s.yield_running(1));
        // The high-priority task keeps the CPU while it is ready.
        assert_eq!(s.pick_next(), Some(1));
        s.block(
            1,
            BlockedOn::Sleep {
                until: Instant::from_nanos(10),
            },
            None,
        );
        assert_eq!(s.pick_next(), Some(0));
        assert!(s.yield_running(0));
        assert_eq!(s.pick_next(), Some(2));
        assert!(s.yield_running(2));
        assert_eq!(s.pick_next(), Some(0));
        assert!(s.consistent());
    }

    #[test]
    fn deadlines_come_out_earliest_first() {
        let mut s = Scheduler::new();
        for slot in 0..3 {
            s.activate(slot, Priority::NORMAL);
        }
        s.block(
            0,
            BlockedOn::Sleep {
                until: Instant::from_nanos(30),
            },
            None,
        );
        s.block(
            1,
            BlockedOn::Sleep {
                until: Instant::from_nanos(10),
            },
            None,
        );
        assert_eq!(s.next_deadline(), Some(Instant::from_nanos(10)));
        assert_eq!(s.first_expired(Instant::from_nanos(9)), None);
        assert_eq!(s.first_expired(Instant::from_nanos(30)), Some(1));
        s.wake(1, None);
        assert_eq!(s.first_expired(Instant::from_nanos(30)), Some(0));
        s.deactivate(0, None);
        assert_eq!(s.next_deadline(), None);
        assert!(s.consistent());
    }

    #[test]
    fn wait_lists_share_links_with_ready_lists() {
        let mut s = Scheduler::new();
        let mut waiters = TaskList::EMPTY;
        let on = BlockedOn::Receive {
            channel: ChannelRef::from_parts(0, 1),
            deadline: None,
        };
        for slot in 0..3 {
            s.activate(slot, Priority::NORMAL);
            s.block(slot, on, Some(&mut waiters));
        }
        assert_eq!(s.iter_list(waiters).collect::<Vec<_>>(), [0, 1, 2]);
        s.wake(1, Some(&mut waiters));
        assert_eq!(s.iter_list(waiters).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(s.pick_next(), Some(1));
        assert_eq!(s.pick_next(), None);
        assert!(s.consistent());
    }

    #[test]
    fn priority_change_moves_a_ready_task() {
        let mut s = Scheduler::new();
        s.activate(0, Priority::NORMAL);
        s.activate(1, Priority::NORMAL);
        s.set_priority(1, Priority::HIGH);
        assert_eq!(s.pick_next(), Some(1));
        assert_eq!(s.priority(1), Priority::HIGH);
        // Out-of-range priorities clamp to the top level.
        s.set_priority(0, Priority(200));
        assert_eq!(s.priority(0), Priority(31));
        assert!(s.consistent());
    }

    /// Three ready tasks at NORMAL, one blocked with a deadline, one
    /// blocked without: consistent.
    fn busy() -> Scheduler {
        let mut s = Scheduler::new();
        for slot in 0..5 {
            s.activate(slot, Priority::NORMAL);
        }
        s.block(
            3,
            BlockedOn::Sleep {
                until: Instant::from_nanos(5),
            },
            None,
        );
        s.block(
            4,
            BlockedOn::Receive {
                channel: ChannelRef::from_parts(0, 1),
                deadline: None,
            },
            None,
        );
        assert!(s.consistent());
        s
    }

    /// A named way of damaging a scheduler.
    type Damage = (&'static str, fn(&mut Scheduler));

    #[test]
    fn consistent_finds_each_kind_of_damage() {
        let normal = Priority::NORMAL.0 as usize;
        let cases: [Damage; 11] = [
            ("bitmap bit of a non-empty level cleared", |s| {
                s.nonempty &= !(1 << Priority::NORMAL.0)
            }),
            ("bitmap bit of an empty level set", |s| s.nonempty |= 1),
            ("a listed task not ready", |s| {
                s.entries[1].kind = Kind::Running
            }),
            ("a listed task of another priority", |s| {
                s.entries[1].priority = 0
            }),
            ("what outranks a task not its priority's", |s| {
                s.entries[4].outranked_by = u32::MAX << 1
            }),
            ("a broken back link", |s| s.entries[2].link.prev = 0),
            ("a cycle", |s| s.entries[2].link.next = 0),
            ("a head in the middle of its list", |s| {
                s.ready[Priority::NORMAL.0 as usize].head = 1
            }),
            ("a wrong tail", |s| {
                s.ready[Priority::NORMAL.0 as usize].tail = 1
            }),
            ("a ready task in no list", |s| {
                s.entries[4].kind = Kind::Ready
            }),
            ("a deadline nobody waits for", |s| {
                s.deadlines.insert((Instant::from_nanos(9), 4), ());
            }),
        ];
        for (what, damage) in cases {
            let mut s = busy();
            damage(&mut s);
            assert!(!s.consistent(), "{what}");
        }
        // A blocked task's deadline missing from the index.
        let mut s = busy();
        s.deadlines.clear();
        assert!(!s.consistent(), "a missing deadline");
        assert_eq!(busy().iter_list(busy().ready[normal]).count(), 3);
    }

    #[test]
    fn a_task_is_next_only_if_no_ready_task_has_its_priority_or_more() {
        let mut s = Scheduler::new();
        // The caller, running.
        s.activate(3, Priority::HIGH);
        assert_eq!(s.pick_next(), Some(3));
        s.activate(0, Priority::NORMAL);
        s.activate(1, Priority::HIGH);
        s.block(
            1,
            BlockedOn::Sleep {
                until: Instant::from_nanos(1),
            },
            None,
        );
        assert!(can_switch(&mut s, 3, 1), "it outranks the ready task");
        s.activate(2, Priority::HIGH);
        assert!(!can_switch(&mut s, 3, 1), "an equal ready task goes first");
        assert!(!can_switch(&mut s, 3, 0));
        assert_eq!(s.ready_len(), 2);
        assert_eq!(s.pick_next(), Some(2));
        assert_eq!(s.ready_len(), 1);
        assert!(can_switch(&mut s, 3, 1));
    }

    #[test]
    fn running_a_blocked_task_takes_it_out_of_every_list() {
        let mut s = Scheduler::new();
        let mut waiters = TaskList::EMPTY;
        let on = BlockedOn::Receive {
            channel: ChannelRef::from_parts(0, 1),
            deadline: Some(Instant::from_nanos(7)),
        };
        s.activate(0, Priority::NORMAL);
        s.block(0, on, Some(&mut waiters));
        s.run_blocked(0, Some(&mut waiters));
        assert_eq!(s.state(0), SchedState::Running);
        assert!(waiters.is_empty());
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.ready_len(), 0);
        // Not blocked: no effect.
        s.run_blocked(0, None);
        assert_eq!(s.state(0), SchedState::Running);
        assert!(!s.yield_running(1), "an unknown slot was not running");
        assert!(s.consistent());
    }

    fn receiving(index: u32, deadline: Option<u64>) -> BlockedOn {
        BlockedOn::Receive {
            channel: ChannelRef::from_parts(index, 1),
            deadline: deadline.map(Instant::from_nanos),
        }
    }

    #[test]
    fn a_direct_switch_runs_the_first_waiter_and_blocks_the_caller_elsewhere() {
        let mut s = Scheduler::new();
        let (mut sent_on, mut receive_on) = (WaitList::default(), WaitList::default());
        for slot in 0..4 {
            s.activate(slot, Priority::NORMAL);
        }
        s.block(1, receiving(0, Some(5)), Some(sent_on.get_mut()));
        s.block(2, receiving(0, None), Some(sent_on.get_mut()));
        s.block(3, receiving(1, None), Some(receive_on.get_mut()));
        assert_eq!(s.pick_next(), Some(0));
        let on = receiving(1, Some(9));
        let switch = s.check_direct(0, &sent_on, &receive_on, on);
        let switch = switch.expect("task 1 is first in line and would run");
        assert_eq!(switch.slots(), (0, 1));
        switch.commit();
        assert_eq!(s.state(1), SchedState::Running);
        assert_eq!(s.state(0), SchedState::Blocked(on));
        assert_eq!(s.iter_list(sent_on.get()).collect::<Vec<_>>(), [2]);
        assert_eq!((sent_on.get().head, sent_on.get().tail), (2, 2));
        assert_eq!(s.iter_list(receive_on.get()).collect::<Vec<_>>(), [3, 0]);
        assert_eq!((receive_on.get().head, receive_on.get().tail), (3, 0));
        assert_eq!(
            s.next_deadline(),
            Some(Instant::from_nanos(9)),
            "the receiver's deadline left, the caller's came"
        );
        assert!(s.consistent());
        // The caller, woken, leaves the list it joined cleanly.
        s.wake(0, Some(receive_on.get_mut()));
        assert_eq!(s.iter_list(receive_on.get()).collect::<Vec<_>>(), [3]);
        assert_eq!(s.next_deadline(), None);
        assert!(s.consistent());
    }

    #[test]
    fn a_direct_switch_on_one_channel_swaps_the_waiter_for_the_caller() {
        let mut s = Scheduler::new();
        let mut list = WaitList::default();
        s.activate(0, Priority::NORMAL);
        s.activate(1, Priority::NORMAL);
        s.block(1, receiving(0, None), Some(list.get_mut()));
        assert_eq!(s.pick_next(), Some(0));
        let switch = s.check_direct(0, &list, &list, receiving(0, None));
        let switch = switch.expect("task 1 waits");
        assert_eq!(switch.slots(), (0, 1));
        switch.commit();
        assert_eq!(s.state(1), SchedState::Running);
        assert_eq!(s.iter_list(list.get()).collect::<Vec<_>>(), [0]);
        assert_eq!((list.get().head(), list.get().tail), (Some(0), 0));
        assert_eq!(s.next_deadline(), None);
        assert!(s.consistent());
        // And back: the list holds the other task again.
        let switch = s.check_direct(1, &list, &list, receiving(0, Some(3)));
        let switch = switch.expect("task 0 waits");
        assert_eq!(switch.slots(), (1, 0));
        switch.commit();
        assert_eq!(s.state(1), SchedState::Blocked(receiving(0, Some(3))));
        assert_eq!(s.next_deadline(), Some(Instant::from_nanos(3)));
        assert_eq!(s.iter_list(list.get()).collect::<Vec<_>>(), [1]);
        assert_eq!(s.state(0), SchedState::Running);
        assert!(s.consistent());
        // With a third task waiting behind the receiver, the caller joins
        // the line behind it.
        s.activate(2, Priority::NORMAL);
        s.block(2, receiving(0, None), Some(list.get_mut()));
        let switch = s.check_direct(0, &list, &list, receiving(0, None));
        assert_eq!(
            switch.map(|c| {
                let slots = c.slots();
                c.commit();
                slots
            }),
            Some((0, 1))
        );
        assert_eq!(s.iter_list(list.get()).collect::<Vec<_>>(), [2, 0]);
        assert_eq!((list.get().head, list.get().tail), (2, 0));
        assert_eq!(s.state(1), SchedState::Running);
        assert_eq!(s.next_deadline(), None, "the receiver's deadline left");
        assert!(s.consistent());
        // The new head has no one before it: woken, it leaves the list
        // to the caller alone.
        s.wake(2, Some(list.get_mut()));
        assert_eq!(s.iter_list(list.get()).collect::<Vec<_>>(), [0]);
        assert_eq!((list.get().head, list.get().tail), (0, 0));
        assert!(s.consistent());
    }

    /// Whether the fast path's check lets the running `caller` switch to
    /// `receiver` were it first in a wait list (the list is made for the
    /// question: the check reads only its head).
    fn can_switch(s: &mut Scheduler, caller: u32, receiver: u32) -> bool {
        let list = WaitList::new(TaskList {
            head: receiver,
            tail: receiver,
        });
        s.check_direct(caller, &list, &list, receiving(0, None))
            .is_some()
    }

    #[test]
    fn a_direct_switch_out_of_its_preconditions_is_declined_by_its_check() {
        let mut s = Scheduler::new();
        let mut list = WaitList::default();
        // Only task 3, lowest, stays ready: the others would run next.
        for slot in 0..3 {
            s.activate(slot, Priority::HIGH);
        }
        s.activate(3, Priority::IDLE);
        let on = receiving(0, None);
        assert!(
            s.check_direct(0, &list, &list, on).is_none(),
            "nobody waits"
        );
        s.block(1, receiving(0, None), Some(list.get_mut()));
        s.block(2, receiving(0, None), Some(list.get_mut()));
        assert_eq!(s.pick_next(), Some(0));
        let cases: [(&str, u32, u32); 5] = [
            ("a caller that is not running", 3, 1),
            ("a receiver that is running: the caller", 0, 0),
            ("a receiver that is ready", 0, 3),
            ("an unknown caller", 9, 1),
            ("an unknown receiver", 0, 9),
        ];
        for (what, caller, receiver) in cases {
            assert!(!can_switch(&mut s, caller, receiver), "{what}");
        }
        assert!(can_switch(&mut s, 0, 1) && can_switch(&mut s, 0, 2));
        // The check takes the head of the list, and a declined or dropped
        // check changes nothing.
        let other = WaitList::default();
        let switch = s.check_direct(0, &list, &other, receiving(1, Some(4)));
        assert_eq!(switch.map(|c| c.slots()), Some((0, 1)));
        assert_eq!(s.iter_list(list.get()).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(other.get(), TaskList::EMPTY);
        assert_eq!(s.state(0), SchedState::Running);
        assert!(s.consistent());
        // The dropped check's wait is nowhere: the caller's next block
        // waits for what that block says.
        s.block(0, receiving(2, None), None);
        assert_eq!(s.state(0), SchedState::Blocked(receiving(2, None)));
        assert_eq!(s.next_deadline(), None);
        assert!(s.consistent());
    }

    #[test]
    fn only_a_blocked_task_that_would_run_next_can_run_directly() {
        let mut s = Scheduler::new();
        s.activate(3, Priority::HIGH);
        assert_eq!(s.pick_next(), Some(3));
        s.activate(0, Priority::NORMAL);
        s.activate(1, Priority::HIGH);
        s.activate(2, Priority::NORMAL);
        assert!(!can_switch(&mut s, 3, 1), "ready, not blocked");
        s.block(1, receiving(0, None), None);
        assert!(can_switch(&mut s, 3, 1), "it outranks the ready tasks");
        s.block(2, receiving(0, None), None);
        assert!(
            !can_switch(&mut s, 3, 2),
            "a ready task of its priority goes first"
        );
        assert_eq!(s.pick_next(), Some(0));
        assert!(can_switch(&mut s, 3, 2), "nobody ready");
        assert!(!can_switch(&mut s, 3, 0), "running");
        assert!(!can_switch(&mut s, 3, 7), "no such task");
    }
}
