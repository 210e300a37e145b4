//! Kernel introspection and operator controls, for the console and the
//! process manager. Reading needs a `KernelInfo` capability with `READ`;
//! shutting the machine down needs `CONTROL` on it.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::api::Priority;
use crate::cap::{CapHandle, CapKind, Rights};
use crate::identity::IdentityKind;
use crate::ids::{ExecutionId, ServiceId, TaskId};

/// The longest name or domain reported.
pub const MAX_INFO_NAME: usize = 32;
/// The longest rendered audit line.
pub const MAX_AUDIT_LINE: usize = 120;
/// The most audit entries one request returns.
pub const MAX_AUDIT_ENTRIES: u16 = 64;

/// What to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InfoRequest {
    /// Every live task.
    Tasks,
    /// The capabilities one task holds.
    Capabilities { task: TaskId },
    /// The newest `last` audit entries (at most [`MAX_AUDIT_ENTRIES`]).
    Audit { last: u16 },
    /// Frame and heap usage.
    Memory,
    /// The service registry.
    Services,
    /// Run the object model's invariant check.
    CheckInvariants,
}

/// How a task stands with the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskRunState {
    Running,
    Ready,
    Blocked,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub task: TaskId,
    pub execution: ExecutionId,
    pub parent: Option<TaskId>,
    pub name: heapless::String<MAX_INFO_NAME>,
    pub kind: IdentityKind,
    pub trust_domain: heapless::String<MAX_INFO_NAME>,
    pub priority: Priority,
    pub state: TaskRunState,
    pub capabilities: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSummary {
    pub handle: CapHandle,
    pub kind: CapKind,
    pub rights: Rights,
}

/// One audit record, rendered for display. The typed events live in the
/// kernel core's audit log, where tests assert on them; the operator only
/// reads them, so the ABI carries the rendered line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub sequence: u64,
    pub time_nanos: u64,
    pub line: heapless::String<MAX_AUDIT_LINE>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySummary {
    pub frames_total: u64,
    pub frames_free: u64,
    pub heap_bytes: u64,
    pub heap_used: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub service: ServiceId,
    pub task: TaskId,
}

/// The answer to an [`InfoRequest`], variant for variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InfoReply {
    Tasks(Vec<TaskSummary>),
    Capabilities(Vec<CapSummary>),
    Audit {
        entries: Vec<AuditEntry>,
        dropped: u64,
    },
    Memory(MemorySummary),
    Services(Vec<ServiceSummary>),
    /// `Ok` or the first violated invariant, by number.
    Invariants(Result<(), u32>),
}
