//! The process manager's IPC interface, version 1.0.
//!
//! A request is an envelope to [`PROCESS_MANAGER`] whose action names the
//! operation and whose payload is that operation's argument:
//!
//! | action        | payload        | reply                       |
//! |---------------|----------------|-----------------------------|
//! | `pm.list`     | `()`           | `PmReply::Services`         |
//! | `pm.status`   | [`ServiceRef`] | `PmReply::Service`          |
//! | `pm.start`    | [`ServiceRef`] | `PmReply::Service`          |
//! | `pm.stop`     | [`ServiceRef`] | `PmReply::Service`          |
//! | `pm.restart`  | [`ServiceRef`] | `PmReply::Service`          |
//! | `pm.crash`    | [`ServiceRef`] | `PmReply::Service`          |
//!
//! `pm.crash` ends the live instance with a `Failure` exit (through the
//! kernel's terminate-a-child call), so that an operator can watch the
//! restart policy act; it needs a supervisor built
//! [`with_terminator`](crate::Supervisor::with_terminator).
//!
//! As every PandaGen request, it carries a send capability for the
//! client's reply channel as its first capability. The answer is an
//! envelope with action [`RESPONSE_ACTION`], schema [`SCHEMA`], the
//! request's id as correlation id, and a [`PmResponse`] payload. Every bad
//! request gets a typed [`PmError`]. The version is checked before the
//! payload is decoded.
//!
//! `start`, `stop` and `restart` answer as soon as the transition has begun
//! (the reply shows the new state, e.g. `Stopping`); poll `pm.status` or
//! `pm.list` to see it finish.
//!
//! ## Authority
//!
//! `pm.list` and `pm.status` are read-only and answered to anyone who can
//! look the process manager up. The state-changing requests — `pm.start`,
//! `pm.stop`, `pm.restart`, `pm.crash` — must be sent *through* the
//! process manager's control capability: a kernel object capability
//! (`StorageObject` kind) naming `(PROCESS_MANAGER, CONTROL_BADGE)` that
//! only the task holding the process manager's registration can mint
//! (`mint_object_capability`), used with `send_to_object`. The kernel
//! stamps such a request with the badge and the capability's rights; the
//! process manager acts only on the stamp [`CONTROL_BADGE`] with
//! [`CONTROL_RIGHT`]. Anything else is refused before the payload is read
//! and changes nothing: a plain send on the channel gets
//! [`PmError::ControlCapabilityRequired`], a badge it never minted
//! [`PmError::UnknownBadge`], a copy attenuated below `CONTROL`
//! [`PmError::MissingRights`].
//!
//! The process manager hands the capability out by name: a manifest entry
//! listing `pm-control` receives a fresh one (rights
//! [`CHILD_CONTROL_RIGHTS`]) at every spawn. A host that runs the
//! supervisor in its own task (the QEMU suites' roots) mints one with
//! [`Supervisor::control_capability`](crate::Supervisor::control_capability).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    ExecutionId, ExitReason, ExtensibleError, Instant, KernelError, Rights, SchemaMismatchError,
    SchemaVersion, ServiceId, TaskId, TrustDomain, VersionPolicy,
};

use crate::lifecycle::{IllegalTransition, LifecycleState};
use crate::policy::RestartPolicy;

/// The version this crate speaks.
pub const SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);
/// What the server accepts: the current major version. When a version 2
/// appears it will also accept 1 (current + previous major).
pub const POLICY: VersionPolicy = VersionPolicy::current(SCHEMA.major, SCHEMA.minor);

pub const LIST_ACTION: &str = "pm.list";
pub const STATUS_ACTION: &str = "pm.status";
pub const START_ACTION: &str = "pm.start";
pub const STOP_ACTION: &str = "pm.stop";
pub const RESTART_ACTION: &str = "pm.restart";
pub const CRASH_ACTION: &str = "pm.crash";
pub const RESPONSE_ACTION: &str = "pm.response";

/// The badge of the process manager's control capability (the only badge
/// it mints): "pm control" in ASCII.
pub const CONTROL_BADGE: u64 = u64::from_be_bytes(*b"pmctrl\0\x01");
/// The right a control request's capability must carry.
pub const CONTROL_RIGHT: Rights = Rights::CONTROL;
/// The rights of the control capability a service named `pm-control` in
/// the manifest receives: `CONTROL` to use it and `TRANSFER` so that it can
/// be moved (at spawn, and on to another task), but no `GRANT`: it cannot
/// be copied.
pub const CHILD_CONTROL_RIGHTS: Rights =
    Rights::from_bits(Rights::CONTROL.bits() | Rights::TRANSFER.bits());

/// The action the process manager sends to a service it stops. A service
/// should exit with `ExitReason::Normal` when it receives it from the task
/// that spawned it. (The kernel API has no way to terminate another task,
/// so stopping is cooperative; see the crate docs.)
pub const SHUTDOWN_ACTION: &str = "lifecycle.shutdown";

/// The service a request is about: by id or by manifest name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceRef {
    Id(ServiceId),
    Name(String),
}

impl From<ServiceId> for ServiceRef {
    fn from(id: ServiceId) -> Self {
        ServiceRef::Id(id)
    }
}

impl From<&str> for ServiceRef {
    fn from(name: &str) -> Self {
        ServiceRef::Name(name.into())
    }
}

/// A request, as the client builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PmRequest {
    List,
    Status(ServiceRef),
    Start(ServiceRef),
    Stop(ServiceRef),
    Restart(ServiceRef),
    Crash(ServiceRef),
}

impl PmRequest {
    pub fn action(&self) -> &'static str {
        match self {
            PmRequest::List => LIST_ACTION,
            PmRequest::Status(_) => STATUS_ACTION,
            PmRequest::Start(_) => START_ACTION,
            PmRequest::Stop(_) => STOP_ACTION,
            PmRequest::Restart(_) => RESTART_ACTION,
            PmRequest::Crash(_) => CRASH_ACTION,
        }
    }

    pub fn target(&self) -> Option<&ServiceRef> {
        match self {
            PmRequest::List => None,
            PmRequest::Status(s)
            | PmRequest::Start(s)
            | PmRequest::Stop(s)
            | PmRequest::Restart(s)
            | PmRequest::Crash(s) => Some(s),
        }
    }

    /// Whether the request changes state (and so needs the control
    /// capability; see the module docs).
    pub fn is_control(&self) -> bool {
        is_control_action(self.action())
    }
}

/// Whether `action` is a state-changing request: `pm.start`, `pm.stop`,
/// `pm.restart` or `pm.crash`.
pub fn is_control_action(action: &str) -> bool {
    matches!(
        action,
        START_ACTION | STOP_ACTION | RESTART_ACTION | CRASH_ACTION
    )
}

/// How the last instance of a service ended, as the supervisor observed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceEnd {
    /// The kernel's exit notification arrived.
    Exited(ExitReason),
    /// No notification arrived, but the service's registration vanished
    /// (the kernel removes it when the owner dies): the notification was
    /// lost. Treated as a failure, since the reason is unknown.
    Vanished,
    /// It did not register within the startup timeout.
    NeverReady,
    /// The kernel refused to spawn it.
    SpawnFailed(KernelError),
}

/// One service, as `pm.list` and `pm.status` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub service_id: ServiceId,
    pub name: String,
    pub image: String,
    pub state: LifecycleState,
    pub restart_policy: RestartPolicy,
    /// Restarts performed since boot (not counting the first start).
    pub restart_count: u32,
    /// Restarts since the last stable run (what backoff counts).
    pub consecutive_restarts: u32,
    /// The supervisor stopped retrying — the policy ran out of attempts, or
    /// the service cannot be spawned at all — and the service stays
    /// `Failed` until an operator starts it.
    pub gave_up: bool,
    /// Whether the supervisor is trying to keep it running.
    pub wanted: bool,
    /// The current (or last) instance's identity.
    pub execution_id: Option<ExecutionId>,
    pub task_id: Option<TaskId>,
    pub trust_domain: TrustDomain,
    pub last_end: Option<InstanceEnd>,
    /// When a pending restart is due (in `Restarting`).
    pub next_restart_at: Option<Instant>,
}

impl ServiceInfo {
    /// The live instance's task and the service's state, if an instance
    /// is alive.
    pub fn handle(&self) -> Option<ServiceHandle> {
        self.task_id.map(|task_id| ServiceHandle {
            task_id,
            state: self.state,
        })
    }
}

/// A service instance as the process manager supervises it: its task and
/// the service's lifecycle state. [`ServiceInfo`] is the full record the
/// process manager reports; this is the part that names the running task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceHandle {
    pub task_id: TaskId,
    pub state: LifecycleState,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PmReply {
    Services(Vec<ServiceInfo>),
    Service(ServiceInfo),
    /// `pm.devices-found`: the indices of the reported devices a driver
    /// was bound to.
    Bound(Vec<u16>),
    /// `pm.devices`: every device found and its driver.
    Devices(Vec<crate::devices::DeviceEntry>),
    /// `pm.driver-ready`: the asking driver's device.
    Device(crate::devices::PciDevice),
}

/// Every way a request can be refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PmError {
    /// The action is not one of this interface's.
    UnknownAction,
    /// The schema version is outside what the server accepts.
    SchemaMismatch(SchemaMismatchError),
    /// The payload is not the action's argument type.
    MalformedPayload,
    /// No service by that id or name in the manifest.
    UnknownService(ServiceRef),
    /// The operation does not apply in the service's current state (e.g.
    /// stopping a stopped service).
    IllegalTransition(IllegalTransition),
    /// `pm.crash` of a service with no live instance.
    NotRunning,
    /// `pm.crash`: this supervisor cannot terminate tasks, or the kernel
    /// refused.
    CannotTerminate(Option<KernelError>),
    /// A state-changing request sent on the channel rather than through
    /// the control capability: the sender holds no authority to control
    /// services. Nothing was done.
    ControlCapabilityRequired,
    /// A state-changing request sent through an object capability for the
    /// process manager whose badge is not [`CONTROL_BADGE`] (one it never
    /// minted, or minted for something else). Nothing was done.
    UnknownBadge(u64),
    /// A state-changing request sent through the control capability, but
    /// through a copy without the `required` rights (attenuated): `held`
    /// is what the kernel stamped. Nothing was done.
    MissingRights { required: Rights, held: Rights },
    /// Never sent: an error of a newer process manager that this version
    /// does not know, with its variant index (see
    /// [`pandagen_abi::evolve`]).
    Unrecognized { variant: u32 },
    /// `pm.devices-found` from a task that is not the live instance of the
    /// service holding the configuration-space ports
    /// ([`crate::devices::CONFIG_PORTS`]). Nothing was done.
    NotTheBusService,
    /// `pm.devices-found` a second time: drivers are bound once per boot.
    DevicesAlreadyReported,
    /// `pm.driver-ready` from a task that is not the live instance of a
    /// driver bound to a device, or without the capability to hand over.
    NotADriver,
}

impl ExtensibleError for PmError {
    fn unrecognized(variant: u32) -> Self {
        PmError::Unrecognized { variant }
    }
}

/// The payload of every response.
pub type PmResponse = Result<PmReply, PmError>;

/// The service id requests are addressed to.
pub const DESTINATION: ServiceId = PROCESS_MANAGER;
