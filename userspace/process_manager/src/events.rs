//! What the supervisor did and saw, for operators and tests. The log is
//! bounded: the oldest entries go first.

use alloc::collections::VecDeque;
use core::time::Duration;

use pandagen_abi::{ExecutionId, Instant, KernelError, ServiceId, TaskId};

use crate::lifecycle::{IllegalTransition, LifecycleState};
use crate::protocol::{InstanceEnd, PmError};
use crate::refusals::RefusalSummary;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A new instance was spawned.
    Spawned {
        service: ServiceId,
        task: TaskId,
        execution: ExecutionId,
    },
    /// A lifecycle transition happened.
    Transition {
        service: ServiceId,
        from: LifecycleState,
        to: LifecycleState,
    },
    /// An instance ended.
    Ended {
        service: ServiceId,
        end: InstanceEnd,
    },
    /// A restart will happen at `at`, after `delay`.
    RestartScheduled {
        service: ServiceId,
        attempt: u32,
        delay: Duration,
        at: Instant,
    },
    /// The restart policy ran out of attempts.
    GaveUp { service: ServiceId, attempts: u32 },
    /// The service cannot be spawned at all (missing image, missing
    /// capability, ...), so it is not retried; see
    /// [`spawn_error_is_permanent`](crate::supervisor::spawn_error_is_permanent).
    Unstartable {
        service: ServiceId,
        error: KernelError,
    },
    /// An exit notification for an instance this supervisor retired (it was
    /// already given up as lost or never ready).
    StaleNotification { execution: ExecutionId },
    /// An exit notification that is not about a child of this supervisor,
    /// or is not from the kernel. Ignored.
    ForeignNotification { execution: Option<ExecutionId> },
    /// A service's id is registered by a task that is not the instance
    /// this supervisor started: not counted as ready (or as alive).
    ForeignRegistrant { service: ServiceId, task: TaskId },
    /// A capability a child needed could not be minted or found.
    CapabilityUnavailable {
        service: ServiceId,
        capability: crate::descriptor::CapabilityName,
        error: KernelError,
    },
    /// A stop was asked for, the instance has not exited yet, and it is
    /// still registered.
    StopOverdue { service: ServiceId },
    /// The supervisor tried a transition the table forbids (a bug guard:
    /// it is logged and the state is left unchanged).
    Refused(IllegalTransition),
    /// A request arrived without a reply capability; it cannot be answered.
    UnanswerableRequest,
    /// A state-changing request without the control capability (or with a
    /// wrong or attenuated one) was refused; `from` is the sender the
    /// kernel stamped.
    ControlRefused {
        from: Option<TaskId>,
        refusal: PmError,
    },
    /// The process manager's own receive failed (e.g. an injected fault,
    /// or bytes that are no envelope).
    ReceiveFailed(KernelError),
    /// Refusals (`UnanswerableRequest`, `ControlRefused`, `ReceiveFailed`)
    /// past the few an interval logs in full, counted per sender (see
    /// [`crate::refusals`]).
    RefusalsCounted(RefusalSummary),
}

/// A bounded event log.
#[derive(Debug)]
pub struct EventLog {
    entries: VecDeque<(Instant, SupervisorEvent)>,
    capacity: usize,
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        EventLog {
            entries: VecDeque::new(),
            capacity,
        }
    }

    pub fn push(&mut self, at: Instant, event: SupervisorEvent) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((at, event));
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Instant, SupervisorEvent)> {
        self.entries.iter()
    }

    /// Remove and return everything logged so far.
    pub fn drain(&mut self) -> impl Iterator<Item = (Instant, SupervisorEvent)> + '_ {
        self.entries.drain(..)
    }
}
