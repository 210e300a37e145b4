//! The task table and the identity table.
//!
//! A [`TaskId`] packs a slot index (low 16 bits, 1-based) and the slot's
//! generation (high 48 bits). Slots are reused in FIFO order with a new
//! generation, so a TaskId is never reused and looking a task up by id is
//! O(1). The first tasks of a fresh kernel are simply `task#1`, `task#2`, …
//!
//! Identities ([`IdentityMetadata`]) outlive their tasks: the identity table
//! keeps every execution ever created, so supervisors can look up the
//! lineage of an execution that has already ended. Execution ids come from
//! a counter owned by the table and are never reused.

use alloc::collections::VecDeque;

use crate::sorted_map::SortedMap;
use alloc::string::String;
use alloc::vec::Vec;
use pandagen_abi::{
    Budget, ExecutionId, IdentityKind, IdentityMetadata, Priority, TaskId, TrustDomain,
};

use crate::budget::AccountId;
use crate::cap_table::CapSpace;
use pandagen_abi::ids::KERNEL_TASK;

/// Largest number of live tasks (slot indices are 16 bits, 0 unused).
pub const MAX_TASKS: usize = 0xFFFF;

const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// What a new task is. The kernels fill it from a `TaskDescriptor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    pub name: String,
    pub kind: IdentityKind,
    pub trust_domain: TrustDomain,
    pub priority: Priority,
    /// Parent and creator execution ids to record instead of "child of
    /// the spawner" (`spawn_task_with_identity`). Lineage is structural,
    /// never authority; the kernel checks only that it issued the ids.
    pub lineage: Option<(Option<ExecutionId>, Option<ExecutionId>)>,
    /// The budget the new task gets, carved out of its parent's; `None`
    /// takes [`CoreConfig::default_child_budget`](crate::CoreConfig::default_child_budget)
    /// (or `root_budget` for a task without a parent).
    pub budget: Option<Budget>,
}

impl TaskSpec {
    pub fn new(name: impl Into<String>) -> Self {
        TaskSpec {
            name: name.into(),
            kind: IdentityKind::Component,
            trust_domain: TrustDomain::user(),
            priority: Priority::NORMAL,
            lineage: None,
            budget: None,
        }
    }

    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn lineage(mut self, parent: Option<ExecutionId>, creator: Option<ExecutionId>) -> Self {
        self.lineage = Some((parent, creator));
        self
    }

    pub fn kind(mut self, kind: IdentityKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn trust_domain(mut self, domain: TrustDomain) -> Self {
        self.trust_domain = domain;
        self
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// Why a woken task was woken (see `KernelCore::take_wake_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeReason {
    /// A message arrived on the channel it was receiving on.
    MessageArrived,
    /// Its deadline (receive timeout or sleep) passed.
    DeadlineReached,
    /// The channel it was receiving on can never deliver again.
    ChannelClosed,
    /// A sender handed it a message directly (see
    /// `KernelCore::send_or_hand_off`): its receive has completed.
    HandedOff,
}

pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) execution: ExecutionId,
    pub(crate) domain: u16,
    pub(crate) space: CapSpace,
    /// The task's account (see [`crate::budget`]).
    pub(crate) account: AccountId,
    /// What is charged to `account` for the task itself: its records and
    /// the frames of its address space.
    pub(crate) own_charge: Budget,
}

impl Task {
    /// What a free slot of the table holds: no task. Its id is
    /// [`KERNEL_TASK`], which names no task (a task id's slot part is at
    /// least 1), and its capability space is empty and holds nothing.
    fn vacant() -> Task {
        Task {
            id: KERNEL_TASK,
            execution: ExecutionId::UNASSIGNED,
            domain: 0,
            space: CapSpace::new(0),
            account: AccountId::from_index(0),
            own_charge: Budget::ZERO,
        }
    }

    /// Whether this is a free slot's placeholder.
    #[inline]
    fn is_vacant(&self) -> bool {
        self.id == KERNEL_TASK
    }
}

/// A slot of the task table: a task, or a free slot's placeholder
/// ([`Task::vacant`]) instead of an `Option`, so that the IPC fast path's
/// [`TaskTable::task_at`] finds its caller with the id compare alone.
struct TaskSlot {
    generation: u64,
    task: Task,
}

/// Table bytes one task takes here: its slot and free-list entry, its
/// identity and the index from its task id (see [`crate::budget::TASK_COST`]).
pub(crate) const TASK_TABLE_BYTES: usize = size_of::<TaskSlot>()
    + size_of::<u32>()
    + size_of::<(ExecutionId, IdentityMetadata)>()
    + size_of::<(TaskId, ExecutionId)>();

pub(crate) struct TaskTable {
    slots: Vec<TaskSlot>,
    free: VecDeque<u32>,
    live: usize,
}

impl TaskTable {
    pub(crate) fn new() -> Self {
        TaskTable {
            slots: Vec::new(),
            free: VecDeque::new(),
            live: 0,
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The slot (0-based, for the scheduler) a task id names, if live.
    pub(crate) fn slot_of(&self, id: TaskId) -> Option<u32> {
        let raw = id.as_raw();
        let index = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get(index.wrapping_sub(1))?;
        (slot.generation == raw >> INDEX_BITS && !slot.task.is_vacant()).then_some(index as u32 - 1)
    }

    /// The slot a task id names and its task, if live: [`Self::slot_of`]
    /// and [`Self::by_slot`] in one lookup.
    #[inline]
    pub(crate) fn slot_and_task(&self, id: TaskId) -> Option<(u32, &Task)> {
        let raw = id.as_raw();
        let index = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get(index.wrapping_sub(1))?;
        if slot.generation != raw >> INDEX_BITS {
            return None;
        }
        let task = &slot.task;
        (!task.is_vacant()).then_some((index as u32 - 1, task))
    }

    /// The task `id` names if it is live in slot `slot` (0-based, as
    /// [`slot_index`] gives it), with that slot: [`Self::slot_and_task`]
    /// for an embedder that already knows the slot. An id names one slot
    /// only and a live task's id is unique, so a task in `slot` whose id is
    /// `id` is the one `id` names: the answer is `slot_and_task(id)`'s, or
    /// `None` when `slot` is not `id`'s (a wrong slot finds another task,
    /// or none, and never acts on it). The id compare is the only test of
    /// the slot: a free slot's placeholder has the id [`KERNEL_TASK`],
    /// which no task has, so only that id finds it, and then finds a task
    /// that holds no capability (every lookup in its space fails).
    #[inline]
    pub(crate) fn task_at(&self, id: TaskId, slot: usize) -> Option<(u32, &Task)> {
        let task = &self.slots.get(slot)?.task;
        (task.id == id).then_some((slot as u32, task))
    }

    pub(crate) fn get(&self, id: TaskId) -> Option<&Task> {
        let raw = id.as_raw();
        let index = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get(index.wrapping_sub(1))?;
        if slot.generation != raw >> INDEX_BITS || slot.task.is_vacant() {
            return None;
        }
        Some(&slot.task)
    }

    pub(crate) fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        let raw = id.as_raw();
        let index = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get_mut(index.wrapping_sub(1))?;
        if slot.generation != raw >> INDEX_BITS || slot.task.is_vacant() {
            return None;
        }
        Some(&mut slot.task)
    }

    pub(crate) fn by_slot(&self, slot: u32) -> Option<&Task> {
        let task = &self.slots.get(slot as usize)?.task;
        (!task.is_vacant()).then_some(task)
    }

    pub(crate) fn by_slot_mut(&mut self, slot: u32) -> Option<&mut Task> {
        let task = &mut self.slots.get_mut(slot as usize)?.task;
        (!task.is_vacant()).then_some(task)
    }

    /// The id the next `insert` will use, or `None` if the table is full.
    pub(crate) fn next_id(&self) -> Option<TaskId> {
        match self.free.front() {
            Some(&slot) => {
                let generation = self.slots[slot as usize].generation;
                Some(pack(slot, generation))
            }
            None if self.slots.len() < MAX_TASKS => Some(pack(self.slots.len() as u32, 0)),
            None => None,
        }
    }

    /// Insert a task whose id was taken from `next_id`. Returns its slot.
    pub(crate) fn insert(&mut self, task: Task) -> u32 {
        let slot = match self.free.pop_front() {
            Some(s) => s,
            None => {
                self.slots.push(TaskSlot {
                    generation: 0,
                    task: Task::vacant(),
                });
                (self.slots.len() - 1) as u32
            }
        };
        debug_assert_eq!(pack(slot, self.slots[slot as usize].generation), task.id);
        debug_assert!(!task.is_vacant());
        self.slots[slot as usize].task = task;
        self.live += 1;
        slot
    }

    /// Remove a task; its slot will come back with a new generation.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Task> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.task.is_vacant() {
            return None;
        }
        let task = core::mem::replace(&mut s.task, Task::vacant());
        self.live -= 1;
        // 48-bit generations: a slot is retired before its ids could wrap.
        if s.generation < (u64::MAX >> INDEX_BITS) {
            s.generation += 1;
            self.free.push_back(slot);
        }
        Some(task)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Task)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| (!s.task.is_vacant()).then_some((i as u32, &s.task)))
    }
}

/// The task-table slot `id` names (an id is a slot plus a generation), for
/// a kernel that keeps its own per-task state in a table parallel to the
/// core's. Two live tasks never share a slot; a stale id maps to its old
/// slot, so such a table must compare the full id too. Ids from outside
/// the table (0, or a huge slot) map to an index no table reaches.
pub fn slot_index(id: TaskId) -> usize {
    ((id.as_raw() & INDEX_MASK) as usize).wrapping_sub(1)
}

fn pack(slot: u32, generation: u64) -> TaskId {
    TaskId::from_raw((generation << INDEX_BITS) | (slot as u64 + 1))
}

/// Every execution ever created, by id, and the task each one ran as.
pub(crate) struct IdentityTable {
    identities: SortedMap<ExecutionId, IdentityMetadata>,
    by_task: SortedMap<TaskId, ExecutionId>,
    next: u64,
}

impl IdentityTable {
    pub(crate) fn new() -> Self {
        IdentityTable {
            identities: SortedMap::new(),
            by_task: SortedMap::new(),
            next: 1,
        }
    }

    /// A fresh execution id: never handed out before by this table.
    pub(crate) fn allocate(&mut self) -> ExecutionId {
        let id = ExecutionId::from_raw(self.next);
        self.next += 1;
        id
    }

    pub(crate) fn insert(&mut self, metadata: IdentityMetadata) {
        // The first identity recorded for a task id is the one it runs as;
        // a later free-standing identity naming the same task (see
        // `KernelCore::create_identity`) must not replace it.
        if let Some(task) = metadata.task_id {
            self.by_task.get_or_insert(task, metadata.execution_id);
        }
        self.identities.insert(metadata.execution_id, metadata);
    }

    pub(crate) fn get(&self, id: ExecutionId) -> Option<&IdentityMetadata> {
        self.identities.get(&id)
    }

    pub(crate) fn of_task(&self, task: TaskId) -> Option<ExecutionId> {
        self.by_task.get(&task).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.identities.len()
    }

    /// Forget the identity `task` ran as (it has ended, and the kernel
    /// keeps no history of ended executions).
    pub(crate) fn forget_task(&mut self, task: TaskId) {
        if let Some(execution) = self.by_task.remove(&task) {
            self.identities.remove(&execution);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: TaskId) -> Task {
        Task {
            id,
            execution: ExecutionId::from_raw(1),
            domain: 0,
            space: CapSpace::new(4),
            account: AccountId::from_raw(0),
            own_charge: Budget::ZERO,
        }
    }

    /// A free slot holds a placeholder that every lookup refuses; only
    /// `task_at` with the kernel's id (no task's) reaches it, and finds
    /// no capability in it.
    #[test]
    fn a_free_slot_s_placeholder_is_no_task() {
        let mut table = TaskTable::new();
        let a = table.next_id().unwrap();
        let slot = table.insert(task(a));
        let b = table.next_id().unwrap();
        table.insert(task(b));
        assert!(table.remove(slot).is_some());
        assert!(table.remove(slot).is_none(), "removed once");
        assert!(table.get(a).is_none() && table.get_mut(a).is_none());
        assert!(table.slot_of(a).is_none() && table.slot_and_task(a).is_none());
        assert!(table.by_slot(slot).is_none() && table.by_slot_mut(slot).is_none());
        assert!(table.task_at(a, slot as usize).is_none());
        assert_eq!(
            table.iter().map(|(s, t)| (s, t.id)).collect::<Vec<_>>(),
            [(1, b)]
        );
        assert_eq!(table.live(), 1);
        // The slot taken again by another task: the old id still names
        // nothing.
        let c = table.next_id().unwrap();
        assert_eq!(table.insert(task(c)), slot);
        assert!(table.get(a).is_none() && table.get_mut(a).is_none());
        assert_eq!(table.get_mut(c).map(|t| t.id), Some(c));
        assert!(table.remove(slot).is_some());
        let (_, placeholder) = table.task_at(KERNEL_TASK, slot as usize).unwrap();
        assert_eq!(placeholder.space.len(), 0);
        let any = pandagen_abi::CapHandle::new(0, 1);
        assert!(placeholder.space.get(any).is_err());
        assert!(
            table.task_at(KERNEL_TASK, 1).is_none(),
            "a live task's slot"
        );
    }

    #[test]
    fn a_slot_at_the_last_generation_is_retired_not_wrapped() {
        let last = u64::MAX >> INDEX_BITS;
        let mut table = TaskTable::new();
        let a = table.next_id().unwrap();
        let slot = table.insert(task(a));
        table.slots[slot as usize].generation = last - 1;
        let b = pack(slot, last - 1);
        table.slots[slot as usize].task = task(b);
        table.remove(slot);
        // One below the maximum: the slot comes back with the last
        // generation.
        let c = table.next_id().unwrap();
        assert_eq!(c, pack(slot, last));
        assert_eq!(table.insert(task(c)), slot);
        assert!(table.get(b).is_none());
        // At the maximum it is retired: the next task gets a fresh slot
        // and the last id stays dead.
        table.remove(slot);
        let d = table.next_id().unwrap();
        assert_eq!(slot_index(d), slot as usize + 1);
        assert_eq!(table.insert(task(d)), slot + 1);
        assert!(table.get(c).is_none());
        // The retired slot keeps the last id's generation: only its
        // placeholder tells every lookup that the id names no task.
        assert!(table.slot_and_task(c).is_none() && table.slot_of(c).is_none());
        assert_eq!(table.slot_of(c), None);
        assert_eq!(table.live(), 1);
    }

    #[test]
    fn slot_index_names_each_live_task_s_own_slot_and_no_slot_for_strangers() {
        let mut table = TaskTable::new();
        for expected in 0..4u32 {
            let id = table.next_id().unwrap();
            assert_eq!(table.insert(task(id)), expected);
            assert_eq!(slot_index(id), expected as usize);
        }
        // Not ids the table made: an index no table reaches.
        assert_eq!(slot_index(TaskId::from_raw(0)), usize::MAX);
    }

    #[test]
    fn task_ids_start_small_and_are_never_reused() {
        let mut table = TaskTable::new();
        let a = table.next_id().unwrap();
        let slot_a = table.insert(task(a));
        assert_eq!(a, TaskId::from_raw(1));
        let b = table.next_id().unwrap();
        table.insert(task(b));
        assert_eq!(b, TaskId::from_raw(2));
        table.remove(slot_a);
        assert!(table.get(a).is_none());
        let c = table.next_id().unwrap();
        table.insert(task(c));
        assert_ne!(c, a);
        assert_eq!(table.slot_of(c), Some(slot_a));
        assert!(table.get(a).is_none(), "the old id stays dead");
        assert!(table.get(TaskId::from_raw(0)).is_none());
    }

    #[test]
    fn an_id_of_slot_index_zero_names_no_task_in_any_lookup() {
        let mut table = TaskTable::new();
        let a = table.next_id().unwrap();
        table.insert(task(a));
        // Index 0 at the generation of slot 0's task: not `a`, nor anyone.
        let zero = TaskId::from_raw(a.as_raw() & !INDEX_MASK);
        assert!(table.get(zero).is_none());
        assert!(table.get_mut(zero).is_none());
        assert_eq!(table.slot_of(zero), None);
        assert!(table.slot_and_task(zero).is_none());
        assert_eq!(
            table.slot_and_task(a).map(|(slot, t)| (slot, t.id)),
            Some((0, a))
        );
    }
}
