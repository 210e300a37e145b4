//! Task lifecycle and execution identity.

use alloc::string::String;
use alloc::vec::Vec;
use pandagen_abi::api::limits::MAX_TASK_NAME;
use pandagen_abi::error::{Resource, SpawnError};
use pandagen_abi::{
    Budget, ExecutionId, ExitNotification, ExitReason, IdentityKind, IdentityMetadata, Instant,
    KernelError, Priority, TaskId, TrustDomain,
};

use super::KernelCore;
use crate::audit::{CapabilityEvent, InvalidationReason};
use crate::budget::{AccountId, BudgetUsage, TASK_COST};
use crate::cap_table::CapSpace;
use crate::sched::{BlockedOn, SchedState};
use crate::task::{Task, TaskSpec};

/// A live task, for listings (the console's `ps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: TaskId,
    pub execution: ExecutionId,
    pub parent: Option<ExecutionId>,
    pub name: String,
    pub kind: IdentityKind,
    pub trust_domain: TrustDomain,
    pub priority: Priority,
    pub state: SchedState,
    /// Capabilities installed in its space.
    pub caps: usize,
    /// Its budget and what is charged to it.
    pub budget: BudgetUsage,
}

impl KernelCore {
    /// Create a task and its execution identity. The task starts with an
    /// empty capability space and is ready to run at `spec.priority`.
    ///
    /// `parent`, if given, must be alive; it becomes both the parent and
    /// the creator of the new identity (structural facts for supervision,
    /// never authority). Errors: `TaskNotFound(parent)`,
    /// `SpawnFailed(InvalidName)` for an empty name or one longer than
    /// `limits::MAX_TASK_NAME`, `ResourceExhausted(Tasks)`.
    ///
    /// Cost: O(log n) (identity table insert).
    pub fn create_task(
        &mut self,
        parent: Option<TaskId>,
        spec: TaskSpec,
        now: Instant,
    ) -> Result<(TaskId, ExecutionId), KernelError> {
        let parent_exec = match parent {
            Some(p) => Some(
                self.tasks
                    .get(p)
                    .map(|t| t.execution)
                    .ok_or(KernelError::TaskNotFound(p))?,
            ),
            None => None,
        };
        let (parent_id, creator_id) = spec.lineage.unwrap_or((parent_exec, parent_exec));
        let parent_account = match parent {
            Some(p) => Some(self.account_of(p)?),
            None => None,
        };
        self.create_task_in(spec, parent_account, parent_id, creator_id, now)
    }

    /// [`KernelCore::create_task`] with the lineage of the new identity
    /// given explicitly as execution ids (`spawn_task_with_identity` in
    /// docs/interfaces.md): a supervisor may spawn on behalf of an
    /// execution that is not itself a live task, and parent and creator may
    /// differ. Lineage is structural, never authority, but it must name
    /// executions this kernel issued and still records (every one, unless
    /// `keep_ended_identities` is off), so that lineage built
    /// from ids always names the executions it claims. No live task pays
    /// for it: it gets a root budget. Errors as for `create_task`, and
    /// `UnknownExecution` for a parent or creator id this kernel never
    /// issued.
    pub fn create_task_with_lineage(
        &mut self,
        spec: TaskSpec,
        parent_exec: Option<ExecutionId>,
        creator_exec: Option<ExecutionId>,
        now: Instant,
    ) -> Result<(TaskId, ExecutionId), KernelError> {
        self.create_task_in(spec, None, parent_exec, creator_exec, now)
    }

    /// The budget a task created under `parent_account` with `spec` gets:
    /// the one it names, or by default `default_child_budget` but at most
    /// half of what the parent has left in each dimension (so that a child
    /// with a default budget can itself spawn with defaults).
    pub(super) fn budget_for(&self, spec: &TaskSpec, parent_account: Option<AccountId>) -> Budget {
        match (spec.budget, parent_account) {
            (Some(budget), _) => budget,
            (None, Some(parent)) => {
                let left = self.accounts.usage(parent).available();
                let default = self.config.default_child_budget;
                Budget::new(
                    default.memory.min(left.memory / 2),
                    default.frames.min(left.frames / 2),
                )
            }
            (None, None) => self.config.root_budget,
        }
    }

    /// What a task costs the kernel before it does anything.
    pub(super) fn task_cost(&self) -> u64 {
        TASK_COST + self.config.task_overhead
    }

    /// Create a task whose account is carved out of `parent_account` (a
    /// root account without one) and charge the task to it. Errors also
    /// `ResourceExhausted(MemoryBudget | FrameBudget)` when the parent
    /// cannot grant the budget or the budget cannot hold the task.
    fn create_task_in(
        &mut self,
        spec: TaskSpec,
        parent_account: Option<AccountId>,
        parent_exec: Option<ExecutionId>,
        creator_exec: Option<ExecutionId>,
        now: Instant,
    ) -> Result<(TaskId, ExecutionId), KernelError> {
        if spec.name.is_empty() || spec.name.len() > MAX_TASK_NAME {
            return Err(KernelError::SpawnFailed(SpawnError::InvalidName));
        }
        self.check_lineage(parent_exec, creator_exec)?;
        let id = self
            .tasks
            .next_id()
            .ok_or(KernelError::ResourceExhausted(Resource::Tasks))?;
        let budget = self.budget_for(&spec, parent_account);
        let own_charge = Budget::memory(self.task_cost());
        if !own_charge.fits_in(&budget) {
            return Err(KernelError::ResourceExhausted(Resource::MemoryBudget));
        }
        let account = self.accounts.open(parent_account, budget)?;
        if self.accounts.charge(account, own_charge).is_err() {
            unreachable!("a fresh account holds its own task (checked above)");
        }
        let execution = self.identities.allocate();
        let domain = self.intern_domain(spec.trust_domain.clone());
        self.identities.insert(IdentityMetadata {
            execution_id: execution,
            kind: spec.kind,
            task_id: Some(id),
            parent_id: parent_exec,
            creator_id: creator_exec,
            created_at_nanos: now.as_nanos(),
            trust_domain: spec.trust_domain,
            name: spec.name,
        });
        let slot = self.tasks.insert(Task {
            id,
            execution,
            domain,
            space: CapSpace::new(self.config.max_caps_per_task),
            account,
            own_charge,
        });
        self.sched.activate(slot, spec.priority);
        Ok((id, execution))
    }

    /// End a task. In order: it stops being scheduled (leaving any wait
    /// list), its service registrations are removed, every capability in
    /// its space is invalidated (audited `Invalidated { OwnerTerminated }`)
    /// — which closes channels it held the last receive right for,
    /// discarding their queued messages and invalidating the capabilities
    /// those carried, and wakes receivers of channels it was the last
    /// possible sender on — and an [`ExitNotification`] (its reason cut to
    /// [`MAX_EXIT_REASON_TEXT`](pandagen_abi::identity::MAX_EXIT_REASON_TEXT)
    /// bytes of text) is recorded,
    /// sent on the task's exit route if [`KernelCore::spawn`] recorded one,
    /// and returned. Errors: `TaskNotFound` if it is not alive.
    ///
    /// Then everything charged to the task's account that no live task can
    /// reach any more is collected (see [`KernelCore::collect_unreachable`])
    /// and the account is closed: the unused rest of its budget returns to
    /// its parent at once, the rest as the objects still charged to it go.
    /// A DMA holder that could program a device leaves its DMA frames
    /// quarantined, still charged to its closed account, until the device
    /// is reset (see [`KernelCore::release_dma_quarantine`]).
    ///
    /// Cost: O(c + r) for c capabilities and r registrations, plus the
    /// messages discarded, plus one collection (O(every capability and
    /// queued message)).
    pub fn terminate(
        &mut self,
        task: TaskId,
        reason: ExitReason,
        now: Instant,
    ) -> Result<ExitNotification, KernelError> {
        let slot = self
            .tasks
            .slot_of(task)
            .ok_or(KernelError::TaskNotFound(task))?;
        match self.sched.state(slot) {
            SchedState::Blocked(BlockedOn::Receive { channel, .. }) => {
                let waiters = self.channels.get_mut(channel).map(|c| c.waiters.get_mut());
                self.sched.deactivate(slot, waiters);
            }
            _ => self.sched.deactivate(slot, None),
        }
        self.unregister_owner(task);
        // Before its capabilities go: they say whether it could program a
        // device, and so whether its DMA frames must wait for a reset.
        let quarantined = self.quarantine_dma(task);
        self.release_devices(task);
        let caps = match self.tasks.by_slot_mut(slot) {
            Some(t) => t.space.drain(),
            None => Vec::new(),
        };
        for cap in caps {
            self.audit.record(
                now,
                CapabilityEvent::Invalidated {
                    cap: cap.id(),
                    kind: cap.kind(),
                    holder: Some(task),
                    reason: InvalidationReason::OwnerTerminated,
                },
            );
            self.retire(cap, now);
        }
        let removed = self.tasks.remove(slot);
        if let Some(t) = &removed {
            // The task's own records and frames go now; what it made that
            // nothing live can reach goes with the collection below; what
            // others still reach stays charged to the closed account, and
            // returns to the parent as it goes.
            self.accounts
                .release(t.account, t.own_charge.saturating_sub(quarantined));
            self.collect_unreachable(now);
            self.accounts.close(t.account);
        }
        let execution = removed.map(|t| t.execution).unwrap_or_else(|| {
            self.identities
                .of_task(task)
                .unwrap_or(ExecutionId::UNASSIGNED)
        });
        let notification = ExitNotification {
            execution_id: execution,
            task_id: Some(task),
            reason: reason.bounded(),
            terminated_at_nanos: now.as_nanos(),
        };
        if self.exits.len() >= self.config.exit_notification_capacity.max(1) {
            self.exits.remove(0);
            self.exits_dropped += 1;
        }
        self.exits.push(notification.clone());
        self.route_exit(&notification);
        if !self.config.keep_ended_identities {
            self.identities.forget_task(task);
        }
        Ok(notification)
    }

    /// Record an identity that no task was created with (a pipeline stage,
    /// a supervisor's own record) and return the execution id the kernel
    /// issued for it. The kernel is the one source of execution ids: the
    /// id in `metadata` (normally [`ExecutionId::UNASSIGNED`]) is replaced,
    /// so ids stay unique across identities made here and by
    /// `create_task`. Its lineage must name executions this kernel issued
    /// (`UnknownExecution` otherwise), and its `task_id`, if any, a task
    /// this kernel created (`TaskNotFound`). O(log n).
    pub fn create_identity(
        &mut self,
        mut metadata: IdentityMetadata,
    ) -> Result<ExecutionId, KernelError> {
        self.check_lineage(metadata.parent_id, metadata.creator_id)?;
        if let Some(task) = metadata.task_id {
            self.identities
                .of_task(task)
                .ok_or(KernelError::TaskNotFound(task))?;
        }
        let execution = self.identities.allocate();
        metadata.execution_id = execution;
        self.identities.insert(metadata);
        Ok(execution)
    }

    /// `UnknownExecution` unless each given id names an execution this
    /// kernel issued.
    fn check_lineage(
        &self,
        parent: Option<ExecutionId>,
        creator: Option<ExecutionId>,
    ) -> Result<(), KernelError> {
        for id in [parent, creator].into_iter().flatten() {
            if self.identities.get(id).is_none() {
                return Err(KernelError::UnknownExecution(id));
            }
        }
        Ok(())
    }

    /// The budget of a live task and what is charged to it. O(1).
    pub fn budget(&self, task: TaskId) -> Option<BudgetUsage> {
        self.tasks.get(task).map(|t| self.accounts.usage(t.account))
    }

    /// Charge `frames` more frames to `task`'s budget for its address space
    /// (the embedding kernel allocated them); they are returned when the
    /// task dies. `ResourceExhausted(FrameBudget)` changes nothing.
    pub fn charge_frames(&mut self, task: TaskId, frames: u64) -> Result<(), KernelError> {
        let account = self.account_of(task)?;
        let amount = Budget::new(0, frames);
        self.accounts.charge(account, amount)?;
        let t = self
            .tasks
            .get_mut(task)
            .expect("alive: its account was found");
        t.own_charge = t.own_charge.saturating_add(amount);
        Ok(())
    }

    /// Return `frames` that [`KernelCore::charge_frames`] charged to
    /// `task` and the kernel did not use after all (a bound charged before
    /// the work, less what the work took). Does nothing for a dead task
    /// (its charge went back at its death) and never returns more than the
    /// task's own charge holds.
    pub fn release_frames(&mut self, task: TaskId, frames: u64) {
        let Some(t) = self.tasks.get_mut(task) else {
            return;
        };
        let amount = Budget::new(0, frames.min(t.own_charge.frames));
        t.own_charge = t.own_charge.saturating_sub(amount);
        let account = t.account;
        self.accounts.release(account, amount);
    }

    /// Accounts in existence: one per live task, plus one per dead task
    /// that still pays for objects others reach.
    pub fn account_count(&self) -> usize {
        self.accounts.live()
    }

    /// Whether `task` exists and has not terminated. O(1).
    pub fn is_alive(&self, task: TaskId) -> bool {
        self.tasks.get(task).is_some()
    }

    /// Exit notifications recorded since the last clear, oldest first.
    pub fn exit_notifications(&self) -> &[ExitNotification] {
        &self.exits
    }

    /// Forget the recorded exit notifications.
    pub fn clear_exit_notifications(&mut self) {
        self.exits.clear();
    }

    /// Take the recorded exit notifications, leaving none.
    pub fn take_exit_notifications(&mut self) -> Vec<ExitNotification> {
        core::mem::take(&mut self.exits)
    }

    /// Notifications pushed out because nobody cleared them in time.
    pub fn exit_notifications_dropped(&self) -> u64 {
        self.exits_dropped
    }

    /// The identity of any execution ever created, alive or not.
    /// O(log n).
    pub fn identity(&self, execution: ExecutionId) -> Option<&IdentityMetadata> {
        self.identities.get(execution)
    }

    /// The execution a task id ran as (also after it terminated). O(1) for
    /// a live task, O(log n) otherwise.
    pub fn task_identity(&self, task: TaskId) -> Option<ExecutionId> {
        match self.tasks.get(task) {
            Some(t) => Some(t.execution),
            None => self.identities.of_task(task),
        }
    }

    /// The trust domain of a live task.
    pub fn trust_domain(&self, task: TaskId) -> Option<&TrustDomain> {
        self.domain_of(task).map(|d| self.domain(d))
    }

    /// Number of live tasks.
    pub fn task_count(&self) -> usize {
        self.tasks.live()
    }

    /// Number of identities ever created.
    pub fn identity_count(&self) -> usize {
        self.identities.len()
    }

    /// A description of a live task.
    pub fn task_info(&self, task: TaskId) -> Option<TaskInfo> {
        let slot = self.tasks.slot_of(task)?;
        self.info_of(slot)
    }

    /// The ids of the live tasks, in slot order (without building their
    /// descriptions, as [`KernelCore::tasks`] does). O(slots).
    pub fn task_ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks.iter().map(|(_, t)| t.id)
    }

    /// Every live task, in slot order.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.tasks
            .iter()
            .filter_map(|(slot, _)| self.info_of(slot))
            .collect()
    }

    fn info_of(&self, slot: u32) -> Option<TaskInfo> {
        let t = self.tasks.by_slot(slot)?;
        let identity = self.identities.get(t.execution)?;
        Some(TaskInfo {
            id: t.id,
            execution: t.execution,
            parent: identity.parent_id,
            name: identity.name.clone(),
            kind: identity.kind,
            trust_domain: identity.trust_domain.clone(),
            priority: self.sched.priority(slot),
            state: self.sched.state(slot),
            caps: t.space.len(),
            budget: self.accounts.usage(t.account),
        })
    }
}
