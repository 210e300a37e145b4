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

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    ExecutionId, ExitReason, Instant, KernelError, SchemaMismatchError, SchemaVersion, ServiceId,
    TaskId, TrustDomain, VersionPolicy,
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

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PmReply {
    Services(Vec<ServiceInfo>),
    Service(ServiceInfo),
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
}

/// The payload of every response.
pub type PmResponse = Result<PmReply, PmError>;

/// The service id requests are addressed to.
pub const DESTINATION: ServiceId = PROCESS_MANAGER;
