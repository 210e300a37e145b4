//! The supervisor: starts the manifest's services in dependency order,
//! watches its children, and applies their restart policies.
//!
//! It is event driven and never busy-waits. All input arrives on one
//! channel — its registered service channel, to which a kernel channel is
//! bound that is the `exit_channel` of every child it spawns (only the
//! kernel can queue there, so a task flooding the service channel delays
//! an exit notification by at most a queue's length and never loses it)
//! — and [`Supervisor::step`]
//! blocks on it with a receive timeout that ends at the next due timer
//! (a restart, a readiness poll, a liveness check, a stop deadline). A
//! crash loop therefore costs one spawn per restart delay and never
//! delays requests or other services' restarts.
//!
//! Supervision is by parenthood: an exit notification is acted on only if
//! the kernel sent it (no sender task) and it names the execution id of an
//! instance this supervisor spawned and still considers live. Anything
//! else is logged and ignored.
//!
//! Registration is bound to the instance: the manifest's `registry`
//! capability is a `ServiceRegistration` for the service's own id, minted
//! for each spawn and moved into that instance alone, and a service counts
//! as ready only when the kernel reports that *that instance's task* holds
//! the registration (`service_registrant`), never merely because a lookup
//! succeeds.
//!
//! Lost exit notifications: the kernel queues them on a channel no task
//! can send on, in room kept for them, so they are lost only to injected
//! faults (the simulator) or a closed channel. The kernel removes a dead task's service registrations,
//! so every `liveness_interval` the supervisor asks who holds each running
//! service's registration; if it is no longer the instance, it first takes
//! the notifications queued on the exit route itself (one may wait behind
//! a flood of older messages on the public channel), and only if the
//! instance's is not there is the instance handled as an
//! [`InstanceEnd::Vanished`] failure. A send that fails with a closed
//! channel (when stopping a service) is treated the same way. If the lost
//! notification turns up later, its execution id is retired and it is
//! ignored. Services with `ready = spawned` have no registration, so a lost
//! notification for one of them goes unnoticed; the manifest docs say so.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::cap::kinds;
use pandagen_abi::error::SendError;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, ExecutionId, ExitNotification, Instant, KernelApi, KernelError,
    MessageEnvelope, MessagePayload, ReceivedMessage, Rights, ServiceId, TaskDescriptor, TaskId,
};

use crate::boot_caps::{BootCapabilities, BOOT_FILES_RIGHTS, CHILD_RIGHTS, DRIVER_RIGHTS};
use crate::config::SupervisorConfig;
use crate::descriptor::{CapabilityName, Readiness};
use crate::devices::{driver_resources, PciDevice};
use crate::events::{EventLog, SupervisorEvent};
use crate::lifecycle::LifecycleState;
use crate::policy::{ExitClass, RestartDecision, STABLE_RUN};
use crate::protocol::{
    InstanceEnd, ServiceInfo, CHILD_CONTROL_RIGHTS, CONTROL_BADGE, SCHEMA, SHUTDOWN_ACTION,
};
use crate::record::{Instance, Record};
use crate::refusals::{RefusalLimiter, RefusalVerdict};
use crate::validate::Manifest;

/// The sender the kernel stamps on messages it originates. Task ids start at
/// 1, so this never names a task. A runtime should present it as
/// `source == None`; both forms are accepted.
const KERNEL_SOURCE: TaskId = TaskId::from_raw(0);

/// The rights of a driver's served capability as its clients get it: use
/// it and have it moved to them at spawn.
const SERVED_RIGHTS: Rights =
    Rights::from_bits(Rights::READ.bits() | Rights::WRITE.bits() | Rights::TRANSFER.bits());

/// How many events the log keeps.
const EVENT_LOG_CAPACITY: usize = 512;

/// Who holds a service's registration, as the supervisor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registrant {
    /// The instance this supervisor started.
    Instance,
    /// Some other task.
    Foreign(TaskId),
    /// Nobody.
    Nobody,
}

/// What [`Supervisor::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// It handled a message (or a failed receive); poll again.
    Handled,
    /// Nothing to do until a message arrives or, if given, until then.
    Waiting(Option<Instant>),
}

/// Why the supervisor could not come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    CreateChannel(KernelError),
    Register(KernelError),
    /// The kernel channel for exit notifications could not be bound.
    BindExits(KernelError),
}

/// A spawn failure that no retry can fix: the image is missing or not a
/// program, the descriptor is malformed, or the process manager lacks a
/// capability the manifest names.
pub fn spawn_error_is_permanent(error: &KernelError) -> bool {
    matches!(
        error,
        KernelError::SpawnFailed(_)
            | KernelError::InvalidCapability
            | KernelError::InsufficientAuthority
            | KernelError::WrongCapabilityKind { .. }
    )
}

impl From<BootError> for KernelError {
    fn from(error: BootError) -> Self {
        match error {
            BootError::CreateChannel(e) | BootError::Register(e) | BootError::BindExits(e) => e,
        }
    }
}

/// Ends one of the supervisor's children (in ring 3, the kernel's
/// terminate-a-child call). The kernel API has no such operation, so a host
/// that has one hands it over with [`Supervisor::with_terminator`].
pub type Terminator = fn(TaskId, pandagen_abi::ExitReason) -> Result<(), KernelError>;

pub struct Supervisor {
    /// In start order.
    pub(crate) records: Vec<Record>,
    /// Live instances this supervisor spawned, by execution id.
    children: BTreeMap<ExecutionId, usize>,
    /// Instances given up as lost or never ready whose exit notification
    /// has not arrived yet.
    retired: BTreeSet<ExecutionId>,
    caps: BootCapabilities,
    config: SupervisorConfig,
    channel: Option<ChannelId>,
    /// The kernel channel bound to `channel`: every child's exit route.
    /// Only the kernel can queue on it, so no task can crowd out an exit
    /// notification; a receive on `channel` takes its messages too.
    exits: Option<ChannelId>,
    pub(crate) events: EventLog,
    /// Which refused messages are logged in full; the rest are counted.
    refusals: RefusalLimiter,
    pub(crate) terminator: Option<Terminator>,
    /// What the `pci` service reported (empty until it has).
    pub(crate) devices: Vec<PciDevice>,
    pub(crate) devices_reported: bool,
}

impl Supervisor {
    pub fn new(manifest: Manifest, caps: BootCapabilities, config: SupervisorConfig) -> Self {
        Supervisor {
            records: manifest
                .start_order()
                .iter()
                .cloned()
                .map(Record::new)
                .collect(),
            children: BTreeMap::new(),
            retired: BTreeSet::new(),
            caps,
            config,
            channel: None,
            exits: None,
            events: EventLog::new(EVENT_LOG_CAPACITY),
            refusals: RefusalLimiter::default(),
            terminator: None,
            devices: Vec::new(),
            devices_reported: false,
        }
    }

    /// Let operators crash a service (`pm.crash`) through `terminate`.
    pub fn with_terminator(mut self, terminate: Terminator) -> Self {
        self.terminator = Some(terminate);
        self
    }

    /// Create and register the process manager's channel, then start every
    /// service whose dependencies are met (the rest follow as their
    /// dependencies become ready).
    pub fn boot<K: KernelApi>(&mut self, kernel: &mut K) -> Result<ChannelId, BootError> {
        let channel = kernel.create_channel().map_err(BootError::CreateChannel)?;
        kernel
            .register_service(PROCESS_MANAGER, channel)
            .map_err(BootError::Register)?;
        let exits = kernel
            .bind_kernel_channel(channel)
            .map_err(BootError::BindExits)?;
        self.channel = Some(channel);
        self.exits = Some(exits);
        for record in &mut self.records {
            // A driver is wanted once its device is found.
            record.wanted = record.binding.is_none();
        }
        self.tick(kernel);
        Ok(channel)
    }

    /// The channel requests and exit notifications arrive on.
    pub fn channel(&self) -> Option<ChannelId> {
        self.channel
    }

    /// Mint, in the calling task's space, a control capability for this
    /// process manager with `rights` (the kernel keeps only the object
    /// rights and `GRANT`/`TRANSFER`): what `pm.start`, `pm.stop`,
    /// `pm.restart` and `pm.crash` must be sent through (see
    /// [`crate::protocol`]). Only the task that booted the supervisor (and
    /// so holds the registration) may; it is how a host running the
    /// supervisor in its own task — a test root — gives itself or a task
    /// it spawns the authority. Manifest services get theirs by naming
    /// `pm-control`.
    ///
    /// Errors: `ServiceNotFound` before [`Supervisor::boot`], and the
    /// kernel's refusals of `mint_object_capability`.
    pub fn control_capability<K: KernelApi>(
        &self,
        kernel: &mut K,
        rights: Rights,
    ) -> Result<Cap<kinds::StorageObject>, KernelError> {
        if self.channel.is_none() {
            return Err(KernelError::ServiceNotFound(PROCESS_MANAGER));
        }
        kernel.mint_object_capability(PROCESS_MANAGER, CONTROL_BADGE, rights)
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    /// Every service, in start order.
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.records.iter().map(Record::info).collect()
    }

    pub fn service(&self, service: ServiceId) -> Option<ServiceInfo> {
        self.index_of(service).map(|i| self.records[i].info())
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub fn events_mut(&mut self) -> &mut EventLog {
        &mut self.events
    }

    /// The earliest time something is due, if anything is (a summary of
    /// counted refusals included).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.records
            .iter()
            .filter_map(|r| r.timer)
            .chain(self.refusals.summary_due())
            .min()
    }

    /// Wait for one message or the next deadline, handle it, then run
    /// whatever became due. Never spins: with nothing due it blocks until a
    /// message arrives. `Err` only when the channel can no longer deliver
    /// (`KernelError::ends_receiving`); any other failed receive is logged.
    pub fn step<K: KernelApi>(&mut self, kernel: &mut K) -> Result<(), KernelError> {
        let channel = self.channel.ok_or(KernelError::InvalidCapability)?;
        let timeout = self
            .next_deadline()
            .map(|due| due.saturating_duration_since(kernel.now()));
        let result = match kernel.receive_with_capabilities(channel, timeout) {
            Ok(message) => {
                self.handle(kernel, message);
                Ok(())
            }
            Err(KernelError::Timeout) => Ok(()),
            // A message that is not an envelope (or whose capabilities did
            // not fit) is lost and logged; the next one is served at once,
            // so a client sending garbage costs the process manager no
            // more than the garbage.
            Err(error) if error.ends_receiving() => {
                self.log(kernel, SupervisorEvent::ReceiveFailed(error));
                Err(error)
            }
            Err(error) => {
                self.log_refusal(kernel, None, SupervisorEvent::ReceiveFailed(error));
                Ok(())
            }
        };
        self.tick(kernel);
        result
    }

    /// One non-blocking turn, for step-driven hosts such as the
    /// simulator's scenario runner: run what is due, take at most one
    /// message without waiting, run what became due. Returns what to wait
    /// for next.
    pub fn poll<K: KernelApi>(&mut self, kernel: &mut K) -> Activity {
        self.tick(kernel);
        let Some(channel) = self.channel else {
            return Activity::Waiting(None);
        };
        match kernel.receive_with_capabilities(channel, Some(core::time::Duration::ZERO)) {
            Ok(message) => {
                self.handle(kernel, message);
                self.tick(kernel);
                Activity::Handled
            }
            Err(KernelError::Timeout) => Activity::Waiting(self.next_deadline()),
            Err(error) if error.ends_receiving() => {
                self.log(kernel, SupervisorEvent::ReceiveFailed(error));
                Activity::Handled
            }
            Err(error) => {
                self.log_refusal(kernel, None, SupervisorEvent::ReceiveFailed(error));
                Activity::Handled
            }
        }
    }

    /// Serve forever.
    pub fn serve<K: KernelApi>(&mut self, kernel: &mut K) -> ! {
        loop {
            if self.step(kernel).is_err() {
                // The channel can no longer deliver; yield so that this
                // cannot spin.
                let _ = kernel.sleep(self.config.ready_poll);
            }
        }
    }

    /// Handle one message from the process manager's channel.
    pub fn handle<K: KernelApi>(&mut self, kernel: &mut K, message: ReceivedMessage) {
        if message.envelope.action == EXIT_NOTIFICATION_ACTION {
            for capability in message.capabilities {
                let _ = kernel.drop_capability(capability);
            }
            self.on_exit_notification(kernel, &message.envelope);
        } else {
            self.on_request(kernel, message);
        }
    }

    /// Run everything that is due: start services whose dependencies are
    /// running, spawn due restarts, poll readiness, check liveness and stop
    /// deadlines. Services are visited in start order, so a chain of
    /// `ready = spawned` services comes up in one pass.
    pub fn tick<K: KernelApi>(&mut self, kernel: &mut K) {
        if let Some(summary) = self.refusals.close_if_over(kernel.now()) {
            self.log(kernel, SupervisorEvent::RefusalsCounted(summary));
        }
        for index in 0..self.records.len() {
            let now = kernel.now();
            let record = &self.records[index];
            let (state, wanted, timer) = (record.state(), record.wanted, record.timer);
            let due = timer.is_some_and(|t| t <= now);
            match state {
                LifecycleState::Stopped
                    if wanted
                        && self.dependencies_running(index)
                        && self.transition(kernel, index, LifecycleState::Starting) =>
                {
                    self.spawn(kernel, index);
                }
                LifecycleState::Restarting if due || timer.is_none() => {
                    if self.dependencies_running(index) {
                        if self.transition(kernel, index, LifecycleState::Starting) {
                            let record = &mut self.records[index];
                            record.restart_count = record.restart_count.saturating_add(1);
                            record.consecutive_restarts =
                                record.consecutive_restarts.saturating_add(1);
                            self.spawn(kernel, index);
                        }
                    } else {
                        // Due, but waiting for a dependency: no timer, so
                        // the wait costs nothing until the dependency runs.
                        self.records[index].timer = None;
                    }
                }
                LifecycleState::Starting if due => self.poll_ready(kernel, index),
                LifecycleState::Running if due => self.check_alive(kernel, index),
                LifecycleState::Stopping if due => self.check_stopped(kernel, index),
                _ => {}
            }
        }
    }

    pub(crate) fn index_of(&self, service: ServiceId) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.descriptor.service_id == service)
    }

    pub(crate) fn log<K: KernelApi>(&mut self, kernel: &K, event: SupervisorEvent) {
        self.events.push(kernel.now(), event);
    }

    /// Log the refusal of a message from `sender` if this interval still
    /// logs refusals in full; otherwise only count it (see
    /// [`crate::refusals`]).
    pub(crate) fn log_refusal<K: KernelApi>(
        &mut self,
        kernel: &K,
        sender: Option<TaskId>,
        event: SupervisorEvent,
    ) {
        let (ended, verdict) = self.refusals.refuse(kernel.now(), sender);
        if let Some(summary) = ended {
            self.log(kernel, SupervisorEvent::RefusalsCounted(summary));
        }
        if verdict == RefusalVerdict::Log {
            self.log(kernel, event);
        }
    }

    /// Apply a transition through the table, logging it (or the refusal).
    pub(crate) fn transition<K: KernelApi>(
        &mut self,
        kernel: &K,
        index: usize,
        to: LifecycleState,
    ) -> bool {
        let record = &mut self.records[index];
        let from = record.state();
        let service = record.descriptor.service_id;
        match record.lifecycle.transition(to) {
            Ok(()) => {
                self.log(kernel, SupervisorEvent::Transition { service, from, to });
                true
            }
            Err(refused) => {
                self.log(kernel, SupervisorEvent::Refused(refused));
                false
            }
        }
    }

    /// Every dependency runs, or is a driver with no device (which never
    /// will: its dependents start without it).
    fn dependencies_running(&self, index: usize) -> bool {
        self.records[index].descriptor.dependencies.iter().all(|d| {
            self.index_of(*d).is_some_and(|i| {
                let record = &self.records[i];
                record.state() == LifecycleState::Running || record.is_absent_driver()
            })
        })
    }

    /// Mint the child's copy of one named capability. `registry` becomes
    /// a registration for `service`'s own id and no other.
    fn mint<K: KernelApi>(
        &self,
        kernel: &mut K,
        service: ServiceId,
        name: &CapabilityName,
    ) -> Result<Cap<()>, KernelError> {
        if *name == CapabilityName::PmControl {
            return self
                .control_capability(kernel, CHILD_CONTROL_RIGHTS)
                .map(Cap::erase);
        }
        if let CapabilityName::Driver(driver) = name {
            let served = self
                .index_of(*driver)
                .and_then(|i| self.records[i].served.as_ref())
                .ok_or(KernelError::InvalidCapability)?;
            return kernel.clone_capability(served, SERVED_RIGHTS);
        }
        if let CapabilityName::Device(resource) = name {
            let root = self
                .caps
                .device_root(resource)
                .ok_or(KernelError::InvalidCapability)?;
            return kernel.mint_device_capability(root, *resource, DRIVER_RIGHTS);
        }
        if *name == CapabilityName::Registry {
            let registry = self
                .caps
                .registry
                .as_ref()
                .ok_or(KernelError::InvalidCapability)?;
            return kernel
                .mint_registration_capability(registry, service)
                .map(Cap::erase);
        }
        let original = self
            .caps
            .original(name)
            .ok_or(KernelError::InvalidCapability)?;
        let rights = match name {
            CapabilityName::BootFiles => BOOT_FILES_RIGHTS,
            _ => CHILD_RIGHTS,
        };
        kernel.clone_capability(original, rights)
    }

    /// What an instance of `index` receives, in order: its section's
    /// capabilities (less `driver:` ones whose driver has no device), then,
    /// for a driver, its device's. A driver without a device cannot start.
    fn capability_names(&self, index: usize) -> Result<Vec<CapabilityName>, KernelError> {
        let record = &self.records[index];
        let mut names: Vec<CapabilityName> = record
            .descriptor
            .capabilities
            .iter()
            .filter(|name| match name {
                CapabilityName::Driver(driver) => !self
                    .index_of(*driver)
                    .is_some_and(|i| self.records[i].is_absent_driver()),
                _ => true,
            })
            .cloned()
            .collect();
        if let Some(spec) = &record.descriptor.driver {
            let device = record.device().ok_or(KernelError::InvalidCapability)?;
            names.extend(
                driver_resources(device, spec.dma)
                    .into_iter()
                    .map(CapabilityName::Device),
            );
        }
        Ok(names)
    }

    /// Spawn a new instance of a service that is now `Starting`.
    fn spawn<K: KernelApi>(&mut self, kernel: &mut K, index: usize) {
        let now = kernel.now();
        let service = self.records[index].descriptor.service_id;
        let mut minted: Vec<Cap<()>> = Vec::new();
        let names = match self.capability_names(index) {
            Ok(names) => names,
            Err(error) => {
                self.instance_ended(kernel, index, InstanceEnd::SpawnFailed(error));
                return;
            }
        };
        for name in names {
            match self.mint(kernel, service, &name) {
                Ok(capability) => minted.push(capability),
                Err(error) => {
                    for capability in minted {
                        let _ = kernel.drop_capability(capability);
                    }
                    self.log(
                        kernel,
                        SupervisorEvent::CapabilityUnavailable {
                            service,
                            capability: name,
                            error,
                        },
                    );
                    self.instance_ended(kernel, index, InstanceEnd::SpawnFailed(error));
                    return;
                }
            }
        }
        let handles: Vec<CapHandle> = minted.iter().map(Cap::handle).collect();
        let descriptor = &self.records[index].descriptor;
        let mut task = TaskDescriptor::new(descriptor.name.clone())
            .with_image(descriptor.image.clone())
            .with_priority(descriptor.priority)
            .with_identity(descriptor.kind, descriptor.trust_domain.clone())
            .with_budget(descriptor.budget);
        task.capabilities = minted;
        if let Some(exits) = self.exits {
            task = task.with_exit_channel(exits);
        }
        let readiness = descriptor.readiness;
        match kernel.spawn_task(task) {
            Ok(handle) => {
                self.children.insert(handle.execution_id, index);
                let record = &mut self.records[index];
                record.instance = Some(Instance {
                    task_id: handle.task_id,
                    execution_id: handle.execution_id,
                    spawned_at: now,
                    ready_at: None,
                    channel: None,
                });
                record.last_identity = Some((handle.task_id, handle.execution_id));
                self.log(
                    kernel,
                    SupervisorEvent::Spawned {
                        service,
                        task: handle.task_id,
                        execution: handle.execution_id,
                    },
                );
                match readiness {
                    Readiness::Spawned => self.became_ready(kernel, index, None),
                    Readiness::Registered => {
                        let record = &mut self.records[index];
                        record.timer = Some(now + self.config.ready_poll);
                        record.startup_deadline = Some(now + self.config.startup_timeout);
                    }
                }
            }
            Err(error) => {
                // Whatever the kernel did with the copies, none may linger.
                for handle in handles {
                    let _ = kernel.drop_capability(Cap::from_handle(handle));
                }
                self.instance_ended(kernel, index, InstanceEnd::SpawnFailed(error));
            }
        }
    }

    fn became_ready<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        index: usize,
        channel: Option<ChannelId>,
    ) {
        let now = kernel.now();
        if !self.transition(kernel, index, LifecycleState::Running) {
            return;
        }
        let record = &mut self.records[index];
        if let Some(instance) = record.instance.as_mut() {
            instance.ready_at = Some(now);
            instance.channel = channel;
        }
        record.startup_deadline = None;
        record.timer = channel.map(|_| now + self.config.liveness_interval);
    }

    /// Ready when the instance this supervisor started holds the
    /// registration; then its channel is looked up once and kept (dropped
    /// when the instance ends).
    fn poll_ready<K: KernelApi>(&mut self, kernel: &mut K, index: usize) {
        let now = kernel.now();
        let service = self.records[index].descriptor.service_id;
        let handed_over =
            self.records[index].binding.is_none() || self.records[index].served.is_some();
        let ready = match self.registrant(kernel, index) {
            Registrant::Instance if handed_over => kernel.lookup_service(service).ok(),
            Registrant::Instance => None,
            Registrant::Foreign(task) => {
                self.log(kernel, SupervisorEvent::ForeignRegistrant { service, task });
                None
            }
            Registrant::Nobody => None,
        };
        match ready {
            Some(channel) => self.became_ready(kernel, index, Some(channel)),
            None => {
                let record = &mut self.records[index];
                if record.startup_deadline.is_some_and(|d| now >= d) {
                    // An instance given up on must not live on beside its
                    // replacement (two storage tasks on one disk): end it
                    // when the host can.
                    if let (Some(terminate), Some(instance)) = (self.terminator, record.instance) {
                        let reason = pandagen_abi::ExitReason::Failure {
                            error: pandagen_abi::FailureCause::Described(
                                "not ready in time; terminated by its supervisor".into(),
                            ),
                        };
                        let _ = terminate(instance.task_id, reason);
                    }
                    self.instance_ended(kernel, index, InstanceEnd::NeverReady);
                } else {
                    record.timer = Some(now + self.config.ready_poll);
                }
            }
        }
    }

    /// Who holds the registration of `index`'s service, compared with the
    /// instance this supervisor started.
    fn registrant<K: KernelApi>(&self, kernel: &mut K, index: usize) -> Registrant {
        let record = &self.records[index];
        match kernel.service_registrant(record.descriptor.service_id) {
            Ok(task) if record.instance.is_some_and(|i| i.task_id == task) => Registrant::Instance,
            Ok(task) => Registrant::Foreign(task),
            Err(_) => Registrant::Nobody,
        }
    }

    /// Has this instance stopped holding its registration? (See the module
    /// docs: this is how a lost exit notification is noticed.) Asks the
    /// kernel who the registrant is, so it holds no capability.
    /// Whether the current instance of `index` no longer holds its
    /// registration and has not ended by an exit notification either. The
    /// kernel removes a dead task's registration when it queues its exit
    /// notification, so a notification still waiting behind older messages
    /// on the public channel (a flood) is taken first, from the exit route
    /// itself: an instance is `Vanished` only if its notification is not
    /// there.
    fn registration_vanished<K: KernelApi>(&mut self, kernel: &mut K, index: usize) -> bool {
        if self.registrant(kernel, index) == Registrant::Instance {
            return false;
        }
        let Some(execution) = self.records[index].instance.map(|i| i.execution_id) else {
            return false;
        };
        self.take_queued_exits(kernel);
        self.records[index]
            .instance
            .is_some_and(|i| i.execution_id == execution)
    }

    /// Handle every exit notification queued on the exit route now, without
    /// waiting. The route holds at most one per child, so this ends.
    fn take_queued_exits<K: KernelApi>(&mut self, kernel: &mut K) {
        let Some(exits) = self.exits else {
            return;
        };
        while let Ok(message) =
            kernel.receive_with_capabilities(exits, Some(core::time::Duration::ZERO))
        {
            self.handle(kernel, message);
        }
    }

    fn check_alive<K: KernelApi>(&mut self, kernel: &mut K, index: usize) {
        if self.registration_vanished(kernel, index) {
            self.instance_ended(kernel, index, InstanceEnd::Vanished);
        } else if self.records[index].state() == LifecycleState::Running {
            // Still running (not ended by a notification taken just now).
            let now = kernel.now();
            self.records[index].timer = Some(now + self.config.liveness_interval);
        }
    }

    /// The stop deadline passed without an exit notification: either the
    /// instance is gone and the notification was lost (its registration
    /// vanished), or the shutdown request was lost or ignored. Messages are
    /// at-most-once, so the request is sent again.
    fn check_stopped<K: KernelApi>(&mut self, kernel: &mut K, index: usize) {
        let registered = self.records[index]
            .instance
            .is_some_and(|i| i.channel.is_some());
        if registered && self.registration_vanished(kernel, index) {
            self.instance_ended(kernel, index, InstanceEnd::Vanished);
            return;
        }
        if self.records[index].state() != LifecycleState::Stopping {
            // Its exit notification was taken just now: stopped.
            return;
        }
        let service = self.records[index].descriptor.service_id;
        self.log(kernel, SupervisorEvent::StopOverdue { service });
        let now = kernel.now();
        self.records[index].timer = Some(now + self.config.stop_timeout);
        // A service that ignores the shutdown request is ended by force
        // when the host can terminate children; its exit notification then
        // completes the stop.
        if let (Some(terminate), Some(instance)) = (self.terminator, self.records[index].instance) {
            let reason = pandagen_abi::ExitReason::Failure {
                error: pandagen_abi::FailureCause::Described(
                    "did not stop in time; terminated by its supervisor".into(),
                ),
            };
            if terminate(instance.task_id, reason).is_ok() {
                return;
            }
        }
        self.request_shutdown(kernel, index);
    }

    /// Begin stopping a live instance: `Starting`/`Running` → `Stopping`,
    /// then ask it to shut down.
    pub(crate) fn begin_stop<K: KernelApi>(&mut self, kernel: &mut K, index: usize) -> bool {
        if !self.transition(kernel, index, LifecycleState::Stopping) {
            return false;
        }
        let now = kernel.now();
        let record = &mut self.records[index];
        record.timer = Some(now + self.config.stop_timeout);
        record.startup_deadline = None;
        self.request_shutdown(kernel, index);
        true
    }

    /// Send the shutdown request to the instance's registered channel. An
    /// instance stopped while still starting may have registered since; it
    /// is looked up then. A closed channel means the instance is already
    /// gone.
    fn request_shutdown<K: KernelApi>(&mut self, kernel: &mut K, index: usize) {
        let record = &self.records[index];
        let service = record.descriptor.service_id;
        let Some(instance) = record.instance else {
            return;
        };
        let channel = match instance.channel {
            Some(channel) => channel,
            None if record.descriptor.readiness == Readiness::Registered => {
                match kernel.lookup_service(service) {
                    Ok(channel) => {
                        if let Some(instance) = self.records[index].instance.as_mut() {
                            instance.channel = Some(channel);
                        }
                        channel
                    }
                    Err(_) => return,
                }
            }
            None => return,
        };
        let request =
            MessageEnvelope::new(service, SHUTDOWN_ACTION, SCHEMA, MessagePayload::empty());
        if let Err(KernelError::SendFailed(SendError::ChannelClosed)) =
            kernel.send_message(channel, request)
        {
            self.instance_ended(kernel, index, InstanceEnd::Vanished);
        }
    }

    fn on_exit_notification<K: KernelApi>(&mut self, kernel: &mut K, envelope: &MessageEnvelope) {
        // Only the kernel sends these; a task claiming to is ignored.
        let from_kernel = matches!(envelope.source, None | Some(KERNEL_SOURCE));
        let notification = match (from_kernel, envelope.payload.decode::<ExitNotification>()) {
            (true, Ok(notification)) => notification,
            (_, decoded) => {
                let execution = decoded.ok().map(|n| n.execution_id);
                self.log(kernel, SupervisorEvent::ForeignNotification { execution });
                return;
            }
        };
        let execution = notification.execution_id;
        let Some(&index) = self.children.get(&execution) else {
            let event = if self.retired.remove(&execution) {
                SupervisorEvent::StaleNotification { execution }
            } else {
                SupervisorEvent::ForeignNotification {
                    execution: Some(execution),
                }
            };
            self.log(kernel, event);
            return;
        };
        let task_matches = match (notification.task_id, self.records[index].instance) {
            (Some(task), Some(instance)) => task == instance.task_id,
            _ => true,
        };
        if !task_matches {
            self.log(
                kernel,
                SupervisorEvent::ForeignNotification {
                    execution: Some(execution),
                },
            );
            return;
        }
        self.instance_ended(kernel, index, InstanceEnd::Exited(notification.reason));
    }

    /// The current instance of `index` is gone (or never came to be).
    fn instance_ended<K: KernelApi>(&mut self, kernel: &mut K, index: usize, end: InstanceEnd) {
        let now = kernel.now();
        let retire = matches!(end, InstanceEnd::Vanished | InstanceEnd::NeverReady);
        if let Some(instance) = self.records[index].instance.take() {
            self.children.remove(&instance.execution_id);
            if retire {
                self.retired.insert(instance.execution_id);
            }
            if let Some(channel) = instance.channel {
                let _ = kernel.drop_capability(Cap::from(channel));
            }
            if instance
                .ready_at
                .is_some_and(|ready| now.saturating_duration_since(ready) >= STABLE_RUN)
            {
                self.records[index].consecutive_restarts = 0;
            }
        }
        let class = match &end {
            InstanceEnd::Exited(reason) => ExitClass::of(reason),
            _ => ExitClass::Abnormal,
        };
        let permanent = match &end {
            InstanceEnd::SpawnFailed(error) if spawn_error_is_permanent(error) => Some(*error),
            _ => None,
        };
        let record = &mut self.records[index];
        let service = record.descriptor.service_id;
        record.last_end = Some(end.clone());
        record.timer = None;
        record.startup_deadline = None;
        self.log(kernel, SupervisorEvent::Ended { service, end });
        match self.records[index].state() {
            LifecycleState::Stopping => {
                self.transition(kernel, index, LifecycleState::Stopped);
                let record = &mut self.records[index];
                if core::mem::take(&mut record.restart_after_stop) {
                    record.wanted = true;
                    record.consecutive_restarts = 0;
                    record.gave_up = false;
                    if self.transition(kernel, index, LifecycleState::Restarting) {
                        self.records[index].timer = Some(now);
                    }
                }
            }
            LifecycleState::Starting => {
                self.transition(kernel, index, LifecycleState::Failed);
                match permanent {
                    Some(error) => {
                        // Retrying cannot help: the manifest or the boot
                        // image is wrong. Wait for an operator instead.
                        let record = &mut self.records[index];
                        record.wanted = false;
                        record.gave_up = true;
                        self.log(kernel, SupervisorEvent::Unstartable { service, error });
                        self.no_more_devices(index);
                    }
                    None => self.apply_policy(kernel, index, ExitClass::Abnormal),
                }
            }
            LifecycleState::Running => {
                let to = match class {
                    ExitClass::Clean => LifecycleState::Stopped,
                    ExitClass::Abnormal => LifecycleState::Failed,
                };
                self.transition(kernel, index, to);
                self.apply_policy(kernel, index, class);
            }
            _ => {}
        }
    }

    fn apply_policy<K: KernelApi>(&mut self, kernel: &mut K, index: usize, class: ExitClass) {
        let now = kernel.now();
        let record = &mut self.records[index];
        let service = record.descriptor.service_id;
        if !record.wanted {
            return;
        }
        match record
            .descriptor
            .restart_policy
            .decide(class, record.consecutive_restarts)
        {
            RestartDecision::Restart { delay, attempt } => {
                if self.transition(kernel, index, LifecycleState::Restarting) {
                    let at = now + delay;
                    self.records[index].timer = Some(at);
                    self.log(
                        kernel,
                        SupervisorEvent::RestartScheduled {
                            service,
                            attempt,
                            delay,
                            at,
                        },
                    );
                }
            }
            RestartDecision::DoNotRestart => record.wanted = false,
            RestartDecision::GiveUp { attempts } => {
                record.wanted = false;
                record.gave_up = true;
                self.log(kernel, SupervisorEvent::GaveUp { service, attempts });
                self.no_more_devices(index);
            }
        }
    }
}
