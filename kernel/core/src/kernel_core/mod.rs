//! [`KernelCore`]: the object model both kernels drive.
//!
//! Every operation names the calling task explicitly and receives the
//! current time when it needs one; the core reads no clock and keeps no
//! "current task". The real kernel wraps one `KernelCore` in a lock and
//! calls it from its syscall dispatcher; the simulator owns one directly.
//!
//! The `impl` is split by concern, and a file here has the name of the
//! crate-level module whose data it operates on: `task` (lifecycle and
//! identity), `cap_table` (capability operations), `channel` (channels and
//! messages), `registry` (service registration and lookup), `sched`
//! (scheduling and waits), `block` (the block calls); and, with no data
//! module of their own, `spawn`, `objects` (service-minted object
//! capabilities), `fastpath` and `invariants`.

mod block;
mod cap_table;
mod channel;
mod collect;
mod device;
mod dma_quarantine;
mod fastpath;
mod invariants;
mod objects;
mod registry;
mod sched;
mod spawn;
mod task;

pub use channel::{Offer, ParkedMessage, Sent};
pub use collect::Collected;
pub use device::{
    binding_cost, Devices, InterruptOutcome, DEVICE_RIGHTS, INTERRUPT_SCHEMA, ROOT_DEVICE_CAPS,
};
pub use fastpath::{Committed, FastCall, Switched};
pub use invariants::InvariantViolation;
pub use objects::ObjectCalled;
pub use sched::RecvOutcome;
pub use spawn::{
    exit_notification_bytes, ExitRoute, SpawnArgs, Spawned, EXIT_NOTIFICATION_SCHEMA,
    KERNEL_SERVICE,
};
pub use task::TaskInfo;

use crate::sorted_map::SortedMap;
use alloc::vec::Vec;
use pandagen_abi::envelope::MAX_MESSAGE_BYTES;
use pandagen_abi::error::Resource;
use pandagen_abi::{
    Budget, CapHandle, CapKind, ExitNotification, Instant, KernelError, Rights, TaskId, TrustDomain,
};

use crate::audit::{AuditLog, CapabilityEvent, InvalidationReason};
use crate::budget::{AccountId, Accounts, CAP_COST, CHANNEL_COST};
use crate::cap_table::{CapId, CapInfo, Capability, Holder, InvalidUse, ObjectRef};
use crate::channel::{ChannelRef, ChannelTable, Message};
use crate::registry::Registry;
use crate::sched::Scheduler;
use crate::task::{IdentityTable, Task, TaskTable, WakeReason};

/// Kernel memory a child gets when its spawner names no budget: room for a
/// few hundred channels, or a full default queue of maximal messages.
pub const DEFAULT_CHILD_MEMORY: u64 = 256 << 10;
/// Frames a child gets when its spawner names no budget (16 MiB): a
/// service image with its stack and page tables, with room to spare.
pub const DEFAULT_CHILD_FRAMES: u64 = 4096;

/// Bounds and defaults. Everything the kernel stores is bounded by one of
/// these or by the budgets, except the identity table (one entry per
/// execution ever created, kept for supervision, unless
/// `keep_ended_identities` is off) and the parked-message set (fault
/// injection only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// Audit events kept in the ring buffer.
    pub audit_capacity: usize,
    /// Queue bound of a channel made by `create_channel`.
    pub default_queue_capacity: u32,
    /// Largest queue bound `create_channel_with_capacity` accepts.
    pub max_queue_capacity: u32,
    /// Capability slots per task.
    pub max_caps_per_task: u32,
    /// Largest message, in bytes.
    pub max_message_bytes: usize,
    /// Most capabilities one message may carry.
    pub max_caps_per_message: usize,
    /// Most live channels.
    pub max_channels: usize,
    /// Most registered services.
    pub max_services: usize,
    /// Exit notifications kept until cleared (the oldest is pushed out
    /// beyond this; see `exit_notifications_dropped`).
    pub exit_notification_capacity: usize,
    /// The budget of a task created without a parent (see
    /// [`crate::budget`]).
    pub root_budget: Budget,
    /// The budget a spawner grants a child when it names none (at most
    /// half of what the spawner has left).
    pub default_child_budget: Budget,
    /// Bytes the embedding kernel keeps per task beside the core's records
    /// (the real kernel's saved registers and address-space handle),
    /// charged to each task with [`budget::TASK_COST`](crate::budget::TASK_COST).
    pub task_overhead: u64,
    /// Whether the identity of an ended task stays in the identity table
    /// (`identity`, `task_identity` keep answering for it). A host
    /// supervisor's record of past executions needs it; a kernel that must
    /// give back everything a task cost when it dies does not keep it
    /// (its parent learns the identity from the exit notification).
    pub keep_ended_identities: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            audit_capacity: 4096,
            default_queue_capacity: 64,
            max_queue_capacity: 4096,
            max_caps_per_task: 1024,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_caps_per_message: 8,
            max_channels: 1 << 16,
            max_services: 256,
            exit_notification_capacity: 1024,
            root_budget: Budget::new(64 << 20, 1 << 20),
            default_child_budget: Budget::new(DEFAULT_CHILD_MEMORY, DEFAULT_CHILD_FRAMES),
            task_overhead: 0,
            keep_ended_identities: true,
        }
    }
}

/// The kernel's object model: tasks and identities, capability spaces,
/// channels, the service registry, scheduling state and the audit log.
pub struct KernelCore {
    config: CoreConfig,
    tasks: TaskTable,
    identities: IdentityTable,
    /// Interned trust domains; tasks and messages store an index.
    domains: Vec<TrustDomain>,
    channels: ChannelTable,
    /// Who pays for what (see [`crate::budget`]).
    accounts: Accounts,
    registry: Registry,
    sched: Scheduler,
    audit: AuditLog,
    exits: Vec<ExitNotification>,
    exits_dropped: u64,
    parked: SortedMap<u64, (ChannelRef, Message)>,
    /// Where each spawned task's exit notification goes.
    exit_routes: SortedMap<TaskId, ExitRoute>,
    next_cap: u64,
    next_seq: u64,
    next_parked: u64,
    /// Interrupt bindings, the physical ranges that are never device
    /// memory, the DMA charges.
    devices: Devices,
}

impl Default for KernelCore {
    fn default() -> Self {
        Self::new(CoreConfig::default())
    }
}

impl KernelCore {
    /// Set the root task's budget before the root task exists (false, and
    /// nothing changed, once any task does): for a kernel that measures its
    /// free memory after the core's own fixed structures (the audit ring
    /// and its index) are allocated, so that budgets never promise memory
    /// those structures took.
    pub fn set_root_budget(&mut self, budget: Budget) -> bool {
        if self.task_count() > 0 {
            return false;
        }
        self.config.root_budget = budget;
        true
    }

    pub fn new(config: CoreConfig) -> Self {
        KernelCore {
            config,
            tasks: TaskTable::new(),
            identities: IdentityTable::new(),
            domains: Vec::new(),
            channels: ChannelTable::new(),
            accounts: Accounts::new(),
            registry: Registry::new(),
            sched: Scheduler::new(),
            audit: AuditLog::new(config.audit_capacity),
            exits: Vec::new(),
            exits_dropped: 0,
            parked: SortedMap::new(),
            exit_routes: SortedMap::new(),
            next_cap: 1,
            next_seq: 1,
            next_parked: 1,
            devices: Devices::default(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The capability audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit log, to clear it.
    pub fn audit_log_mut(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    // ---- shared helpers -------------------------------------------------

    fn new_cap_id(&mut self) -> CapId {
        let id = CapId::from_raw(self.next_cap);
        self.next_cap += 1;
        id
    }

    fn intern_domain(&mut self, domain: TrustDomain) -> u16 {
        if let Some(i) = self.domains.iter().position(|d| *d == domain) {
            return i as u16;
        }
        self.domains.push(domain);
        (self.domains.len() - 1) as u16
    }

    fn domain(&self, index: u16) -> &TrustDomain {
        &self.domains[index as usize]
    }

    fn domain_of(&self, task: TaskId) -> Option<u16> {
        self.tasks.get(task).map(|t| t.domain)
    }

    /// Read-only validation of a use of `handle` by `caller`.
    fn check(
        &self,
        caller: TaskId,
        handle: CapHandle,
        kind: Option<CapKind>,
        required: Rights,
    ) -> Result<&Capability, InvalidUse> {
        self.check_in(caller, handle, kind, required)
            .map(|(_, cap)| cap)
    }

    /// [`KernelCore::check_in`] of a channel capability
    /// ([`check_channel_cap`]): the caller's task entry and the channel.
    #[inline(always)]
    fn check_channel_in(
        &self,
        caller: TaskId,
        handle: CapHandle,
        required: Rights,
    ) -> Result<(&Task, ChannelRef), InvalidUse> {
        let task = self.tasks.get(caller).ok_or(InvalidUse::CallerNotAlive)?;
        Ok((task, check_channel_cap(task, handle, required)?))
    }

    /// [`KernelCore::check`], also returning the caller's task entry.
    #[inline(always)]
    fn check_in(
        &self,
        caller: TaskId,
        handle: CapHandle,
        kind: Option<CapKind>,
        required: Rights,
    ) -> Result<(&Task, &Capability), InvalidUse> {
        let task = self.tasks.get(caller).ok_or(InvalidUse::CallerNotAlive)?;
        let cap = task.space.get(handle)?;
        if let Some(expected) = kind {
            if cap.kind() != expected {
                return Err(InvalidUse::WrongKind {
                    expected,
                    found: cap.kind(),
                });
            }
        }
        check_rights(cap, required)?;
        Ok((task, cap))
    }

    /// Validate a use; a refusal is audited as `InvalidUseAttempt`.
    fn validate(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        kind: Option<CapKind>,
        required: Rights,
        now: Instant,
    ) -> Result<CapInfo, KernelError> {
        match self.check(caller, handle, kind, required) {
            Ok(cap) => Ok(cap.info()),
            Err(reason) => Err(self.refuse(caller, handle, reason, now)),
        }
    }

    fn refuse(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        reason: InvalidUse,
        now: Instant,
    ) -> KernelError {
        self.audit.record(
            now,
            CapabilityEvent::InvalidUseAttempt {
                task: caller,
                handle,
                reason,
                repeats: 0,
            },
        );
        match reason {
            InvalidUse::CallerNotAlive => KernelError::TaskNotFound(caller),
            InvalidUse::NoSuchCapability
            | InvalidUse::StaleHandle
            | InvalidUse::DuplicateHandle => KernelError::InvalidCapability,
            InvalidUse::WrongKind { expected, found } => {
                KernelError::WrongCapabilityKind { expected, found }
            }
            InvalidUse::MissingRights(_)
            | InvalidUse::NamesOtherService(_)
            | InvalidUse::NoAuthorityOver(_) => KernelError::InsufficientAuthority,
        }
    }

    /// The account of a live task.
    fn account_of(&self, task: TaskId) -> Result<AccountId, KernelError> {
        self.tasks
            .get(task)
            .map(|t| t.account)
            .ok_or(KernelError::TaskNotFound(task))
    }

    /// Charge `bytes` of kernel memory to `task`'s account, returning the
    /// account; `ResourceExhausted(MemoryBudget)` changes nothing.
    fn pay(&mut self, task: TaskId, bytes: u64) -> Result<AccountId, KernelError> {
        let account = self.account_of(task)?;
        self.accounts.charge_memory(account, bytes)?;
        Ok(account)
    }

    /// Create a new record for `owner` (not yet installed), paid for by
    /// `payer` (already charged [`CAP_COST`]), and account for it in its
    /// object's reference counts.
    fn new_record(
        &mut self,
        object: ObjectRef,
        rights: Rights,
        owner: TaskId,
        payer: AccountId,
    ) -> Capability {
        if let ObjectRef::Channel(ch) = object {
            if let Some(c) = self.channels.get_mut(ch) {
                c.refs += 1;
                if rights.contains(Rights::SEND) {
                    c.senders += 1;
                }
                if rights.contains(Rights::RECEIVE) {
                    c.receivers += 1;
                }
                c.resync();
            }
        }
        let id = self.new_cap_id();
        Capability::new(id, object, rights, Holder::Task(owner), payer)
    }

    /// Install a record in a live task's space (the caller checked room).
    fn install(&mut self, owner: TaskId, mut cap: Capability) -> CapHandle {
        cap.set_holder(Holder::Task(owner));
        let task = self
            .tasks
            .get_mut(owner)
            .expect("install target checked alive by the caller");
        match task.space.install(cap) {
            Ok(h) => h,
            Err(_) => unreachable!("install target room checked by the caller"),
        }
    }

    fn room(&self, task: TaskId) -> Result<usize, KernelError> {
        self.tasks
            .get(task)
            .map(|t| t.space.room())
            .ok_or(KernelError::TaskNotFound(task))
    }

    fn require_room(&self, task: TaskId, needed: usize) -> Result<(), KernelError> {
        if self.room(task)? < needed {
            return Err(KernelError::ResourceExhausted(Resource::CapabilitySlots));
        }
        Ok(())
    }

    /// Audit a cross-domain move or copy of `cap` from `from` to `to`.
    fn audit_domains(
        &mut self,
        cap: CapId,
        from: TaskId,
        from_domain: u16,
        to: TaskId,
        now: Instant,
    ) {
        let Some(to_domain) = self.domain_of(to) else {
            return;
        };
        if from_domain != to_domain {
            let event = CapabilityEvent::CrossDomainDelegation {
                cap,
                from,
                to,
                from_domain: self.domain(from_domain).clone(),
                to_domain: self.domain(to_domain).clone(),
            };
            self.audit.record(now, event);
        }
    }

    /// Invalidate every capability carried by `msg` (audited), then
    /// release them.
    fn discard_message(&mut self, msg: Message, reason: InvalidationReason, now: Instant) {
        self.release_message(&msg);
        for cap in msg.caps {
            self.audit.record(
                now,
                CapabilityEvent::Invalidated {
                    cap: cap.id(),
                    kind: cap.kind(),
                    holder: None,
                    reason,
                },
            );
            self.retire(cap, now);
        }
    }

    /// Return a message's charge to its sender's account (the message has
    /// left the kernel, or is being discarded).
    #[inline(always)]
    fn release_message(&mut self, msg: &Message) {
        if let Some(payer) = msg.payer {
            self.accounts.release_memory(payer, u64::from(msg.charge));
        }
    }

    /// A record has stopped existing (its event is already audited):
    /// release its references. Closing a channel discards its queue, which
    /// may release further records and close further channels; that cascade
    /// is handled here with an explicit work list, never by recursion.
    fn retire(&mut self, first: Capability, now: Instant) {
        let mut work: Vec<Capability> = Vec::new();
        let mut next = Some(first);
        while let Some(cap) = next.take().or_else(|| work.pop()) {
            self.accounts.release_memory(cap.payer(), CAP_COST);
            let ObjectRef::Channel(ch) = cap.object() else {
                continue;
            };
            let rights = cap.rights();
            let Some(c) = self.channels.get_mut(ch) else {
                continue;
            };
            c.refs -= 1;
            if rights.contains(Rights::SEND) {
                c.senders -= 1;
            }
            let closing = rights.contains(Rights::RECEIVE) && {
                c.receivers -= 1;
                c.receivers == 0
            };
            c.resync();
            if closing {
                let queue = c.take_queue();
                let service = c.bound_to;
                self.unregister_channel(ch);
                self.unbind_kernel_channel(ch, service);
                self.wake_all(ch, WakeReason::ChannelClosed);
                for msg in queue {
                    self.release_message(&msg);
                    for carried in msg.caps {
                        self.audit.record(
                            now,
                            CapabilityEvent::Invalidated {
                                cap: carried.id(),
                                kind: carried.kind(),
                                holder: None,
                                reason: InvalidationReason::ChannelClosed,
                            },
                        );
                        work.push(carried);
                    }
                }
            }
            self.settle_channel(ch);
        }
    }

    /// A kernel channel `ch` bound to `service` has closed: the service
    /// channel may be bound again, and may now be drained.
    fn unbind_kernel_channel(&mut self, ch: ChannelRef, service: Option<ChannelRef>) {
        let Some(service) = service else {
            return;
        };
        if let Some(c) = self.channels.get_mut(service) {
            if c.bound == Some(ch) {
                c.bound = None;
                c.resync();
                self.settle_channel(service);
            }
        }
    }

    /// After a channel's counts changed: wake receivers if it can never
    /// deliver again, destroy it if nothing references it.
    fn settle_channel(&mut self, ch: ChannelRef) {
        let Some(c) = self.channels.get(ch) else {
            return;
        };
        if c.refs == 0 {
            debug_assert!(c.queue.is_empty() && c.waiters.get().is_empty());
            let payer = c.payer;
            self.channels.destroy(ch);
            self.accounts.release_memory(payer, CHANNEL_COST);
        } else if c.is_drained() && !c.waiters.get().is_empty() {
            self.wake_all(ch, WakeReason::ChannelClosed);
        }
    }

    /// Wake every task blocked receiving on `ch`.
    fn wake_all(&mut self, ch: ChannelRef, reason: WakeReason) {
        while self.wake_one(ch, reason) {}
    }

    /// Wake the longest-waiting receiver on `ch`, if any.
    fn wake_one(&mut self, ch: ChannelRef, reason: WakeReason) -> bool {
        let Some(c) = self.channels.get_mut(ch) else {
            return false;
        };
        let Some(slot) = c.waiters.get().head() else {
            return false;
        };
        self.sched.wake(slot, Some(c.waiters.get_mut()));
        self.sched.set_wake(slot, Some(reason));
        true
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }
}

/// [`KernelCore::check_in`]'s capability check of a channel capability,
/// in the same order (the kind, then the rights): the channel is told by the object's variant, not by
/// mapping every variant to its kind. Returns the channel.
#[inline(always)]
pub(super) fn check_channel_cap(
    task: &Task,
    handle: CapHandle,
    required: Rights,
) -> Result<ChannelRef, InvalidUse> {
    let cap = task.space.get(handle)?;
    let ObjectRef::Channel(ch) = cap.object() else {
        return Err(InvalidUse::WrongKind {
            expected: CapKind::Channel,
            found: cap.kind(),
        });
    };
    check_rights(cap, required)?;
    Ok(ch)
}

/// `cap` has the rights `required`.
#[inline(always)]
fn check_rights(cap: &Capability, required: Rights) -> Result<(), InvalidUse> {
    if !cap.rights().contains(required) {
        return Err(InvalidUse::MissingRights(
            pandagen_abi::error::MissingRights {
                required,
                held: cap.rights(),
            },
        ));
    }
    Ok(())
}
