//! The supervisor's record of one service.

use pandagen_abi::{Cap, ChannelId, ExecutionId, Instant, TaskId};

use crate::descriptor::ServiceDescriptor;
use crate::devices::DriverBinding;
use crate::lifecycle::{Lifecycle, LifecycleState};
use crate::protocol::{InstanceEnd, ServiceInfo};

/// A spawned instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Instance {
    pub task_id: TaskId,
    pub execution_id: ExecutionId,
    pub spawned_at: Instant,
    pub ready_at: Option<Instant>,
    /// The supervisor's send capability for the instance's registered
    /// channel, once it registered.
    pub channel: Option<ChannelId>,
}

pub(crate) struct Record {
    pub descriptor: ServiceDescriptor,
    pub lifecycle: Lifecycle,
    pub instance: Option<Instance>,
    /// The last instance, kept for reporting after it ended.
    pub last_identity: Option<(TaskId, ExecutionId)>,
    pub restart_count: u32,
    pub consecutive_restarts: u32,
    pub gave_up: bool,
    /// The supervisor should keep this service running.
    pub wanted: bool,
    /// An operator restart is in progress: start again once stopped.
    pub restart_after_stop: bool,
    pub last_end: Option<InstanceEnd>,
    /// The next time something is due for this service; what it means
    /// depends on the state (restart due, readiness poll, liveness check,
    /// stop deadline).
    pub timer: Option<Instant>,
    /// When a starting instance must have become ready.
    pub startup_deadline: Option<Instant>,
    /// For a driver section: its device, once the `pci` service reported.
    pub binding: Option<DriverBinding>,
    /// For a driver: the capability it serves its clients through, handed
    /// over with `pm.driver-ready`. It names the service, not an instance,
    /// so it stays valid across the driver's restarts.
    pub served: Option<Cap<()>>,
}

impl Record {
    pub fn new(descriptor: ServiceDescriptor) -> Self {
        let binding = descriptor.driver.as_ref().map(|_| DriverBinding::Waiting);
        Record {
            binding,
            served: None,
            descriptor,
            lifecycle: Lifecycle::new(),
            instance: None,
            last_identity: None,
            restart_count: 0,
            consecutive_restarts: 0,
            gave_up: false,
            wanted: false,
            restart_after_stop: false,
            last_end: None,
            timer: None,
            startup_deadline: None,
        }
    }

    /// The device this driver is bound to.
    pub fn device(&self) -> Option<&crate::devices::PciDevice> {
        match &self.binding {
            Some(DriverBinding::Bound(device)) => Some(device),
            _ => None,
        }
    }

    /// A driver section that will never start this boot: no device.
    pub fn is_absent_driver(&self) -> bool {
        self.binding == Some(DriverBinding::Absent)
    }

    pub fn state(&self) -> LifecycleState {
        self.lifecycle.state()
    }

    pub fn info(&self) -> ServiceInfo {
        let identity = self
            .instance
            .map(|i| (i.task_id, i.execution_id))
            .or(self.last_identity);
        ServiceInfo {
            service_id: self.descriptor.service_id,
            name: self.descriptor.name.clone(),
            image: self.descriptor.image.clone(),
            state: self.state(),
            restart_policy: self.descriptor.restart_policy,
            restart_count: self.restart_count,
            consecutive_restarts: self.consecutive_restarts,
            gave_up: self.gave_up,
            wanted: self.wanted,
            execution_id: identity.map(|(_, e)| e),
            task_id: identity.map(|(t, _)| t),
            trust_domain: self.descriptor.trust_domain.clone(),
            last_end: self.last_end.clone(),
            next_restart_at: match self.state() {
                LifecycleState::Restarting => self.timer,
                _ => None,
            },
        }
    }
}
