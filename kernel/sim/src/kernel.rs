//! [`SimulatedKernel`]: the kernel object model of `pandagen-core`, driven
//! on the host by a virtual clock and a [`FaultPlan`].
//!
//! The simulator owns one [`KernelCore`] and adds only what a host
//! simulation needs: a notion of the *acting task* (every `KernelApi`
//! call acts as it), virtual time, fault injection, and a [`Trace`].
//! Capabilities, channels, tasks, identities, the registry and the audit
//! log are the core's — the same code the real kernel runs. The public
//! description is on [`SimulatedKernel`].

use std::collections::{BTreeMap, BTreeSet};

use pandagen_abi::syscall::StartupInfo;
use pandagen_abi::{
    CapHandle, CapKind, Duration, ExecutionId, ExitNotification, ExitReason, FailureCause,
    IdentityKind, IdentityMetadata, Instant, KernelError, MessageEnvelope, Rights, TaskDescriptor,
    TaskHandle, TaskId, TrustDomain,
};
use pandagen_core::{
    AuditLog, ChannelRef, CoreConfig, KernelCore, Mintable, ParkedMessage, VecDisk,
};

use crate::clock::VirtualClock;
use crate::fault::{ChannelKey, FaultPlan};
use crate::held::Held;
use crate::injector::FaultInjector;
use crate::mirror::Mirror;
use crate::trace::{Trace, TraceEvent};

/// A message held back by a fault: the core's handle, the number of
/// capabilities it carries (for the trace) and the envelope.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) parked: ParkedMessage,
    pub(crate) caps: usize,
    pub(crate) envelope: MessageEnvelope,
}

/// A message queued in a channel, as the simulator tracks it: the core's
/// sequence number, the trace's, its capability count, and the envelope
/// itself (the core holds only its length; see `messaging`).
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) core_seq: u64,
    pub(crate) seq: u64,
    pub(crate) caps: usize,
    pub(crate) envelope: MessageEnvelope,
}

/// A message the core handed straight to `receiver`, which was blocked
/// receiving on its channel, kept until that task receives on it.
#[derive(Debug)]
pub(crate) struct Handed {
    pub(crate) receiver: TaskId,
    pub(crate) key: ChannelKey,
    pub(crate) seq: u64,
    pub(crate) sender: TaskId,
    pub(crate) envelope: MessageEnvelope,
}

/// How the messages sent so far travelled: through a queue, handed to a
/// blocked receiver (the core's `send_or_hand_off`), or through the core's
/// fast path (`send_receive_fast`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcCounts {
    pub queued: u64,
    pub handed_off: u64,
    pub switched: u64,
}

/// A task spawned with an image, waiting for the scenario runner to start
/// its service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub name: String,
    pub image: String,
    pub startup: StartupInfo,
}

/// Anything that names a capability of a task: a [`CapHandle`], a
/// [`ChannelId`](pandagen_abi::ChannelId), a [`Cap`](pandagen_abi::Cap),
/// the raw `u64` id of a `Cap` (`Cap::id()`) — all handles in that task's
/// space — or the core's [`CapId`](pandagen_core::CapId) from the audit
/// log. Used by the calls that name their tasks (docs/interfaces.md).
pub trait CapRef {
    /// The handle naming it in `task`'s space. A name that matches nothing
    /// yields a handle the core refuses (and audits) as invalid.
    fn handle_in(&self, kernel: &SimulatedKernel, task: TaskId) -> CapHandle;
}

impl CapRef for CapHandle {
    fn handle_in(&self, _: &SimulatedKernel, _: TaskId) -> CapHandle {
        *self
    }
}

impl CapRef for u64 {
    fn handle_in(&self, _: &SimulatedKernel, _: TaskId) -> CapHandle {
        CapHandle::from_raw(*self)
    }
}

impl CapRef for pandagen_abi::ChannelId {
    fn handle_in(&self, _: &SimulatedKernel, _: TaskId) -> CapHandle {
        self.handle()
    }
}

impl<T> CapRef for pandagen_abi::Cap<T> {
    fn handle_in(&self, _: &SimulatedKernel, _: TaskId) -> CapHandle {
        self.handle()
    }
}

impl CapRef for pandagen_core::CapId {
    fn handle_in(&self, kernel: &SimulatedKernel, task: TaskId) -> CapHandle {
        kernel
            .capabilities_of(task)
            .into_iter()
            .find(|(_, info)| info.id == *self)
            .map_or(CapHandle::from_raw(u64::MAX), |(handle, _)| handle)
    }
}

impl<T: CapRef + ?Sized> CapRef for &T {
    fn handle_in(&self, kernel: &SimulatedKernel, task: TaskId) -> CapHandle {
        (**self).handle_in(kernel, task)
    }
}

impl From<ChannelRef> for ChannelKey {
    fn from(ch: ChannelRef) -> Self {
        ChannelKey(u64::from(ch.generation()) << 32 | u64::from(ch.index()))
    }
}

impl From<ChannelKey> for ChannelRef {
    fn from(key: ChannelKey) -> Self {
        ChannelRef::from_parts(key.0 as u32, (key.0 >> 32) as u32)
    }
}

/// The simulated kernel: `pandagen-core`'s object model behind
/// [`KernelApi`](pandagen_abi::KernelApi), with an acting task, virtual
/// time, fault injection and a trace.
///
/// # The acting task
///
/// A fresh kernel has one task, the *root task* (`IdentityKind::System`,
/// trust domain `core`), holding the root capabilities in the order of
/// [`ROOT_CAPABILITIES`](pandagen_abi::syscall::ROOT_CAPABILITIES):
/// the service registry, the boot image, kernel info, serial input and the
/// block device (see [`crate::blockdev`]). It
/// is the acting task until [`SimulatedKernel::set_current_task`] or
/// [`SimulatedKernel::as_task`] says otherwise, so the single-actor
/// examples of docs/interfaces.md (create a channel, register a service, send,
/// receive) work as written.
///
/// # Choices docs/interfaces.md leaves open
///
/// * A receive that finds the queue empty waits in virtual time: the clock
///   moves to the deadline, or to the moment a delayed message for that
///   channel comes due if that is earlier. With no timeout and nothing in
///   flight for the channel, nothing could ever arrive (the simulation has
///   no other thread), so it returns `Timeout` at once and leaves the clock.
/// * Spawning a task *from an image* needs a `BootImage` capability with
///   `SPAWN`; a task without an image (driven by host code) needs none.
/// * Exit notifications go, besides the kernel-wide list, to the
///   `exit_channel` named at spawn, as an envelope with action
///   [`EXIT_NOTIFICATION_ACTION`](pandagen_abi::api::EXIT_NOTIFICATION_ACTION),
///   schema v1.0, destination `ServiceId(0)` and no source (the kernel sent
///   it). Drop faults apply to them; delay and reorder faults do not.
/// * The inherent forms `delegate_capability(cap, from, to)` and
///   `drop_capability(cap, task)` shadow the [`KernelApi`](pandagen_abi::KernelApi) methods of the
///   same names on a `SimulatedKernel` value; generic service code (`K:
///   KernelApi`) always gets the trait's. Call the trait's explicitly with
///   `KernelApi::drop_capability(&mut kernel, cap)`.
pub struct SimulatedKernel {
    pub(crate) core: KernelCore,
    clock: VirtualClock,
    pub(crate) current: TaskId,
    root: TaskId,
    root_caps: Vec<CapHandle>,
    pub(crate) injector: FaultInjector,
    pub(crate) faults_active: bool,
    pub(crate) held: Held<InFlight>,
    pub(crate) trace: Trace,
    next_seq: u64,
    pub(crate) queued: Mirror,
    pub(crate) handed: Vec<Handed>,
    /// The task the core has marked running, once the simulator chose one
    /// (see `make_running`).
    pub(crate) running: Option<TaskId>,
    pub(crate) ipc: IpcCounts,
    activity: u64,
    pub(crate) known_images: Option<BTreeSet<String>>,
    pub(crate) launches: Vec<Launch>,
    pub(crate) startups: BTreeMap<TaskId, StartupInfo>,
    /// The block device, created on first use (see [`crate::blockdev`]).
    pub(crate) disk: Option<VecDisk>,
}

impl Default for SimulatedKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedKernel {
    /// A kernel with the default core configuration and no faults.
    pub fn new() -> Self {
        Self::with_config(CoreConfig::default())
    }

    /// A kernel that injects the faults of `plan`.
    pub fn with_fault_plan(plan: FaultPlan) -> Self {
        let mut kernel = Self::new();
        kernel.set_fault_plan(plan);
        kernel
    }

    /// A kernel over a core with the given bounds.
    pub fn with_config(config: CoreConfig) -> Self {
        let t0 = Instant::ZERO;
        let mut core = KernelCore::new(config);
        let root = core
            .create_root_task("root", t0)
            .expect("a fresh core has room for the root task");
        let mut startups = BTreeMap::new();
        startups.insert(
            root.task,
            StartupInfo::new(root.task, root.execution, "root", &root.capabilities),
        );
        SimulatedKernel {
            core,
            clock: VirtualClock::new(),
            current: root.task,
            root: root.task,
            root_caps: root.capabilities,
            injector: FaultInjector::disabled(),
            faults_active: false,
            held: Held::default(),
            trace: Trace::new(),
            next_seq: 1,
            queued: Mirror::default(),
            handed: Vec::new(),
            running: None,
            ipc: IpcCounts::default(),
            activity: 0,
            known_images: None,
            launches: Vec::new(),
            startups,
            disk: None,
        }
    }

    /// Replace the fault plan (budgets and the generator start afresh).
    /// Messages already held by the previous plan stay held.
    pub fn set_fault_plan(&mut self, plan: FaultPlan) {
        self.faults_active = !plan.is_empty();
        self.injector = FaultInjector::new(plan);
    }

    pub fn fault_plan(&self) -> &FaultPlan {
        self.injector.plan()
    }

    // ---- the acting task --------------------------------------------------

    /// The task created with the kernel, holding the root capabilities.
    pub fn root_task(&self) -> TaskId {
        self.root
    }

    /// The task every `KernelApi` call currently acts as.
    pub fn current_task(&self) -> TaskId {
        self.current
    }

    /// Act as `task` from now on. Errors: `TaskNotFound` if it is not alive.
    pub fn set_current_task(&mut self, task: TaskId) -> Result<(), KernelError> {
        if !self.core.is_alive(task) {
            return Err(KernelError::TaskNotFound(task));
        }
        self.current = task;
        Ok(())
    }

    /// Let `task` wait, in the core's scheduler, until it next acts: it is
    /// neither ready nor running, so it does not outrank the services of a
    /// scenario when the core decides whether its fast path may switch
    /// straight to a receiver. The scenario runner parks the root task,
    /// which drives the scenario from outside, while services run.
    pub fn park(&mut self, task: TaskId) {
        let now = self.clock.now();
        if self.running == Some(task) {
            self.running = None;
        }
        let _ = self
            .core
            .sleep_until(task, Instant::from_nanos(u64::MAX), now);
    }

    /// Run `f` acting as `task`, then restore the previous acting task.
    /// If `task` is not alive, calls inside `f` fail with `TaskNotFound`.
    pub fn as_task<R>(&mut self, task: TaskId, f: impl FnOnce(&mut Self) -> R) -> R {
        let previous = self.current;
        self.current = task;
        let result = f(self);
        self.current = previous;
        result
    }

    /// The root task's capability of `kind` (one of
    /// `ROOT_CAPABILITIES`), as a handle in the root task's space.
    pub fn root_capability(&self, kind: CapKind) -> Option<CapHandle> {
        pandagen_abi::syscall::ROOT_CAPABILITIES
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.root_caps.get(i).copied())
    }

    /// A copy of the root task's service-registry capability (rights
    /// `REGISTER | TRANSFER`), in the root task's space, to hand to a task
    /// at spawn so it can register a service.
    pub fn registry_capability_for_child(&mut self) -> Result<pandagen_abi::Cap<()>, KernelError> {
        self.root_copy(
            CapKind::ServiceRegistry,
            Rights::REGISTER | Rights::TRANSFER,
        )
    }

    /// Mint, in the acting task's space, a `Task` capability naming `task`
    /// with `SEND`: the authority `grant_capability` and
    /// `delegate_capability` need to put capabilities into `task` (the
    /// kernel gives it out only when building tasks; a host harness hands
    /// it out here).
    pub fn task_capability(&mut self, task: TaskId) -> Result<CapHandle, KernelError> {
        let now = self.clock.now();
        self.core
            .mint(self.current, Mintable::Task(task), Rights::SEND, now)
    }

    /// A `ServiceRegistration` for `service` alone, minted from the root's
    /// registry in the root task's space (moveable to a child at spawn):
    /// what the process manager gives a service it starts.
    pub fn registration_for_child(
        &mut self,
        service: pandagen_abi::ServiceId,
    ) -> Result<pandagen_abi::Cap<()>, KernelError> {
        let registry = self
            .root_capability(CapKind::ServiceRegistry)
            .ok_or(KernelError::InvalidCapability)?;
        let now = self.clock.now();
        self.core
            .mint_registration(self.root, registry, service, now)
            .map(pandagen_abi::Cap::from_handle)
    }

    /// A copy of the root capability of `kind`, attenuated to `rights`
    /// plus `TRANSFER` (so that it can be moved to a child at spawn), in
    /// the root task's space.
    pub fn root_copy(
        &mut self,
        kind: CapKind,
        rights: Rights,
    ) -> Result<pandagen_abi::Cap<()>, KernelError> {
        let rights = rights | Rights::TRANSFER;
        let handle = self
            .root_capability(kind)
            .ok_or(KernelError::InvalidCapability)?;
        let now = self.clock.now();
        self.core
            .clone_cap(self.root, handle, rights, now)
            .map(pandagen_abi::Cap::from_handle)
    }

    /// Who the acting task is and which capabilities it was born with (the
    /// simulator's answer to the `Startup` system call).
    pub fn startup(&self) -> Result<StartupInfo, KernelError> {
        let task = self.current;
        if !self.core.is_alive(task) {
            return Err(KernelError::TaskNotFound(task));
        }
        self.startups
            .get(&task)
            .cloned()
            .ok_or(KernelError::TaskNotFound(task))
    }

    // ---- time -------------------------------------------------------------

    /// Move virtual time forward by `duration`, delivering delayed messages
    /// that come due.
    pub fn advance_time(&mut self, duration: Duration) {
        let target = self.clock.now().saturating_add(duration);
        self.advance_time_to(target);
    }

    /// Move virtual time forward to `instant` (never backwards), delivering
    /// delayed messages as they come due, in due order.
    pub fn advance_time_to(&mut self, instant: Instant) {
        loop {
            match self.held.next_due(None) {
                Some(due) if due <= instant => {
                    self.clock.advance_to(due);
                    for (seq, key, message) in self.held.take_due(due) {
                        self.release(seq, key, message);
                    }
                }
                _ => break,
            }
        }
        self.clock.advance_to(instant);
    }

    /// Discard every message held back by a delay or reorder fault (their
    /// capabilities are invalidated and audited), e.g. at the end of a
    /// test that checks nothing leaked. Returns how many were discarded.
    pub fn discard_held(&mut self) -> usize {
        let held = self.held.drain();
        let count = held.len();
        for (seq, _, in_flight) in held {
            self.lose(seq, in_flight, crate::trace::LossReason::Discarded);
        }
        count
    }

    /// The earliest instant a delayed message comes due.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.held.next_due(None)
    }

    #[inline]
    pub(crate) fn clock_now(&self) -> Instant {
        self.clock.now()
    }

    // ---- identity and supervision (docs/interfaces.md) ----------------------
    // Named as Rust names accessors: the interface description's
    // `get_identity`, `get_task_identity` and `get_exit_notifications` are
    // `identity`, `task_identity` and `exit_notifications` here.

    /// Record an identity that no task was created with. The kernel issues
    /// its execution id (replacing [`ExecutionId::UNASSIGNED`] in
    /// `metadata`) and returns it; lineage must name executions this kernel
    /// issued (see `KernelCore::create_identity`).
    pub fn create_identity(
        &mut self,
        metadata: IdentityMetadata,
    ) -> Result<ExecutionId, KernelError> {
        self.core.create_identity(metadata)
    }

    /// The identity of any execution ever created, alive or not.
    pub fn identity(&self, execution_id: ExecutionId) -> Option<&IdentityMetadata> {
        self.core.identity(execution_id)
    }

    /// The execution a task runs (or ran) as.
    pub fn task_identity(&self, task_id: TaskId) -> Option<ExecutionId> {
        self.core.task_identity(task_id)
    }

    /// Spawn a task (acting as the current task, whose capabilities listed
    /// in `descriptor` move to the child) with its identity given in full:
    /// `kind` and `trust_domain` override the descriptor's, and the lineage
    /// is recorded as given if this kernel issued both ids
    /// (`UnknownExecution` otherwise).
    pub fn spawn_task_with_identity(
        &mut self,
        descriptor: TaskDescriptor,
        kind: IdentityKind,
        trust_domain: TrustDomain,
        parent_id: Option<ExecutionId>,
        creator_id: Option<ExecutionId>,
    ) -> Result<(TaskHandle, ExecutionId), KernelError> {
        let descriptor = descriptor.with_identity(kind, trust_domain);
        let handle = self.spawn_as(self.current, descriptor, Some((parent_id, creator_id)))?;
        Ok((handle, handle.execution_id))
    }

    /// End `task` with `reason`: its capabilities are invalidated (audited),
    /// its registrations removed, and an exit notification recorded (and
    /// sent to its exit channel, if it named one). A task that is not alive
    /// is left alone and no second notification is produced.
    pub fn terminate_task_with_reason(&mut self, task_id: TaskId, reason: ExitReason) {
        let _ = self.terminate(task_id, reason);
    }

    /// Exit notifications since the last clear, oldest first.
    pub fn exit_notifications(&self) -> &[ExitNotification] {
        self.core.exit_notifications()
    }

    pub fn clear_exit_notifications(&mut self) {
        self.core.clear_exit_notifications();
    }

    // ---- capabilities, naming their tasks (docs/interfaces.md) -------------

    /// Move the capability `cap` from `from` to `to` (audited `Delegated`,
    /// plus `CrossDomainDelegation` across trust domains). `from` must hold
    /// it with `TRANSFER`; `to` must be alive. Returns its handle in `to`'s
    /// space. This is the host harness acting as the kernel (it names both
    /// tasks), so it needs no authority over `to`; a task's own
    /// [`KernelApi::delegate_capability`](pandagen_abi::KernelApi::delegate_capability)
    /// does (a `Task` capability naming it with `SEND`).
    pub fn delegate_capability(
        &mut self,
        cap: impl CapRef,
        from: TaskId,
        to: TaskId,
    ) -> Result<CapHandle, KernelError> {
        let now = self.clock.now();
        let handle = cap.handle_in(self, from);
        let handle = self.core.delegate_all(from, &[handle], to, now)?[0];
        self.activity += 1;
        Ok(handle)
    }

    /// Release the capability `cap` held by `task` (audited `Dropped`).
    pub fn drop_capability(&mut self, cap: impl CapRef, task: TaskId) -> Result<(), KernelError> {
        let now = self.clock.now();
        let handle = cap.handle_in(self, task);
        self.core.drop_cap(task, handle, now)?;
        self.activity += 1;
        self.reap_closed();
        Ok(())
    }

    // ---- inspection -----------------------------------------------------

    /// The capability audit log (the core's).
    pub fn audit_log(&self) -> &AuditLog {
        self.core.audit_log()
    }

    /// The core's structural invariants (capability accounting, channel
    /// counts, registrations, scheduler state) plus the simulator's own:
    /// every message the core holds parked is one the simulator holds.
    pub fn check_invariants(&self) -> Result<(), SimInvariantViolation> {
        self.core
            .check_invariants()
            .map_err(SimInvariantViolation::Core)?;
        if self.core.parked_count() != self.held.len() {
            return Err(SimInvariantViolation::ParkedMismatch {
                core: self.core.parked_count(),
                held: self.held.len(),
            });
        }
        Ok(())
    }

    /// The capabilities in `task`'s space (empty if it is not alive).
    pub fn capabilities_of(&self, task: TaskId) -> Vec<(CapHandle, pandagen_core::CapInfo)> {
        self.core.list_caps(task).unwrap_or_default()
    }

    pub fn task_is_alive(&self, task: TaskId) -> bool {
        self.core.is_alive(task)
    }

    /// The channel a handle in the acting task's space names, as the whole
    /// kernel knows it (for fault plans that target one channel).
    pub fn channel_key(&self, channel: impl CapRef) -> Option<ChannelKey> {
        self.channel_key_in(self.current, channel)
    }

    /// The channel a handle in `task`'s space names (see
    /// [`Self::channel_key`]).
    pub fn channel_key_in(&self, task: TaskId, channel: impl CapRef) -> Option<ChannelKey> {
        let handle = channel.handle_in(self, task);
        match self.core.inspect(task, handle)?.object {
            pandagen_core::ObjectRef::Channel(ch) => Some(ch.into()),
            _ => None,
        }
    }

    /// The channel `service` is registered with, if it is registered (for
    /// fault plans that target a service's requests).
    pub fn service_channel(&self, service: pandagen_abi::ServiceId) -> Option<ChannelKey> {
        self.core.service(service).map(|r| r.channel.into())
    }

    /// Messages queued on `channel` (a key from [`Self::channel_key`]).
    pub fn queue_len(&self, channel: ChannelKey) -> usize {
        self.core.queue_len(channel.into()).unwrap_or(0)
    }

    /// Sequence numbers (as in the trace) of the messages sent but neither
    /// delivered nor lost yet: queued in a channel or held by a fault.
    pub fn in_flight(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .queued
            .iter()
            .map(|m| m.seq)
            .chain(self.held.seqs())
            .chain(self.handed.iter().map(|h| h.seq))
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// How the messages sent so far travelled (queued, handed off, or
    /// through the fast path).
    pub fn ipc_counts(&self) -> IpcCounts {
        self.ipc
    }

    /// Messages held back by delay and reorder faults.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// The object model itself, for assertions beyond this API.
    pub fn core(&self) -> &KernelCore {
        &self.core
    }

    /// The record of sends, deliveries, losses and fault decisions.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }

    /// A counter of kernel activity (messages sent, delivered or lost;
    /// tasks spawned or ended; capabilities moved or dropped). The scenario
    /// runner uses it to tell a quiet round from a busy one.
    pub fn activity(&self) -> u64 {
        self.activity
    }

    /// Append an event to the trace at the current virtual time.
    #[inline]
    pub fn record(&mut self, event: TraceEvent) {
        let now = self.clock.now();
        self.trace.push(now, event);
    }

    /// Record that a service's message handler returned an error.
    pub fn note_handler_error(&mut self, error: KernelError) {
        let task = self.current;
        self.record(TraceEvent::HandlerError { task, error });
    }

    // ---- images (for the scenario runner) ---------------------------------

    /// Accept spawns of `image`. Once any image is known, spawning an
    /// unknown one fails with `SpawnFailed(ImageNotFound)`.
    pub fn add_known_image(&mut self, image: impl Into<String>) {
        self.known_images
            .get_or_insert_with(BTreeSet::new)
            .insert(image.into());
    }

    /// Tasks spawned with an image since the last call, in spawn order.
    pub fn take_pending_launches(&mut self) -> Vec<Launch> {
        std::mem::take(&mut self.launches)
    }

    // ---- shared helpers ---------------------------------------------------

    #[inline]
    pub(crate) fn new_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    #[inline]
    pub(crate) fn bump_activity(&mut self) {
        self.activity += 1;
    }

    /// End a task (see [`Self::terminate_task_with_reason`]).
    pub(crate) fn terminate(
        &mut self,
        task: TaskId,
        reason: ExitReason,
    ) -> Result<(), KernelError> {
        let now = self.clock.now();
        // The simulator delivers the notification itself, so that the fault
        // plan applies to it; the core then finds no route to follow.
        let route = self.core.take_exit_route(task);
        let notification = self.core.terminate(task, reason.clone(), now)?;
        self.activity += 1;
        self.record(TraceEvent::Exited {
            task,
            reason: format!("{reason:?}"),
        });
        self.startups.remove(&task);
        if self.running == Some(task) {
            self.running = None;
        }
        self.lose_handed_to(task);
        if let Some(route) = route {
            self.send_exit_notification(route, &notification);
        }
        self.reap_closed();
        Ok(())
    }

    pub(crate) fn crash(&mut self, task: TaskId, after: u32) {
        self.record(TraceEvent::TaskCrashed { task, after });
        let reason = ExitReason::Failure {
            error: FailureCause::Described(format!("injected crash after {after} messages")),
        };
        let _ = self.terminate(task, reason);
    }
}

/// A broken invariant of the simulated kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimInvariantViolation {
    /// One of the core's invariants.
    Core(pandagen_core::InvariantViolation),
    /// The core parks a different number of messages than the simulator
    /// holds: a held message was lost track of.
    ParkedMismatch { core: usize, held: usize },
}
