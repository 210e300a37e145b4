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

struct TaskSlot {
    generation: u64,
    task: Option<Task>,
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
        (slot.generation == raw >> INDEX_BITS && slot.task.is_some()).then_some(index as u32 - 1)
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
        Some((index as u32 - 1, slot.task.as_ref()?))
    }

    pub(crate) fn get(&self, id: TaskId) -> Option<&Task> {
        let raw = id.as_raw();
        let index = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get(index.wrapping_sub(1))?;
        if slot.generation != raw >> INDEX_BITS {
            return None;
        }
        slot.task.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        let raw = id.as_raw();
        let index = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get_mut(index.wrapping_sub(1))?;
        if slot.generation != raw >> INDEX_BITS {
            return None;
        }
        slot.task.as_mut()
    }

    pub(crate) fn by_slot(&self, slot: u32) -> Option<&Task> {
        self.slots.get(slot as usize)?.task.as_ref()
    }

    pub(crate) fn by_slot_mut(&mut self, slot: u32) -> Option<&mut Task> {
        self.slots.get_mut(slot as usize)?.task.as_mut()
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
                    task: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        debug_assert_eq!(pack(slot, self.slots[slot as usize].generation), task.id);
        self.slots[slot as usize].task = Some(task);
        self.live += 1;
        slot
    }

    /// Remove a task; its slot will come back with a new generation.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Task> {
        let s = self.slots.get_mut(slot as usize)?;
        let task = s.task.take()?;
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
            .filter_map(|(i, s)| s.task.as_ref().map(|t| (i as u32, t)))
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

    #[test]
    fn a_slot_at_the_last_generation_is_retired_not_wrapped() {
        let last = u64::MAX >> INDEX_BITS;
        let mut table = TaskTable::new();
        let a = table.next_id().unwrap();
        let slot = table.insert(task(a));
        table.slots[slot as usize].generation = last - 1;
        let b = pack(slot, last - 1);
        table.slots[slot as usize].task = Some(task(b));
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
