//! Spawning and exit notifications in the simulator.
//!
//! Tasks, identities and capability moves are the core's; this file turns
//! a `TaskDescriptor` into core calls, remembers what a task was born with
//! (for `startup`), and routes exit notifications to the `exit_channel` a
//! spawner named.

use pandagen_abi::api::{limits, EXIT_NOTIFICATION_ACTION};
use pandagen_abi::error::SpawnError;
use pandagen_abi::{
    CapHandle, CapKind, ExecutionId, ExitNotification, ExitReason, FailureCause, KernelError,
    MessageEnvelope, MessagePayload, Rights, SchemaVersion, ServiceId, TaskDescriptor, TaskHandle,
    TaskId,
};
use pandagen_core::channel::KERNEL_SENDER;
use pandagen_core::{ChannelRef, ObjectRef, TaskSpec};

use crate::fault::{ChannelKey, MessageFault};
use crate::kernel::{startup_info, Launch, SimulatedKernel};
use crate::trace::{LossReason, TraceEvent};

/// The schema version of the kernel's exit-notification messages.
pub const EXIT_NOTIFICATION_SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);
/// The destination written on the kernel's own messages.
pub const KERNEL_SERVICE: ServiceId = ServiceId::from_raw(0);

type Lineage = (Option<ExecutionId>, Option<ExecutionId>);

impl SimulatedKernel {
    /// Spawn a task as `spawner`. With `lineage`, the new identity's parent
    /// and creator are as given; otherwise both are the spawner.
    pub(crate) fn spawn_as(
        &mut self,
        spawner: TaskId,
        descriptor: TaskDescriptor,
        lineage: Option<Lineage>,
    ) -> Result<TaskHandle, KernelError> {
        let now = self.clock_now();
        if !self.core.is_alive(spawner) {
            return Err(KernelError::TaskNotFound(spawner));
        }
        if descriptor.capabilities.len() > limits::MAX_SPAWN_CAPS {
            return Err(KernelError::SpawnFailed(SpawnError::TooManyCapabilities));
        }
        if let Some(image) = &descriptor.image {
            if let Some(known) = &self.known_images {
                if !known.contains(image) {
                    return Err(KernelError::SpawnFailed(SpawnError::ImageNotFound));
                }
            }
            let boot_image = self
                .core
                .find_cap(spawner, CapKind::BootImage, Rights::SPAWN)
                .ok_or(KernelError::InsufficientAuthority)?;
            self.core
                .lookup(spawner, boot_image, CapKind::BootImage, Rights::SPAWN, now)?;
        }
        let handles: Vec<CapHandle> = descriptor.capabilities.iter().map(|c| c.handle()).collect();
        // Validate every move before creating anything, so a refused spawn
        // leaves no half-made task behind. Refusals are audited.
        for (i, &handle) in handles.iter().enumerate() {
            if handles[..i].contains(&handle) {
                return Err(KernelError::InvalidCapability);
            }
            let kind = self
                .core
                .inspect(spawner, handle)
                .map_or(CapKind::Channel, |info| info.kind());
            self.core
                .lookup(spawner, handle, kind, Rights::TRANSFER, now)?;
        }
        let exit_route = match descriptor.exit_channel {
            Some(channel) => {
                let info = self.core.lookup(
                    spawner,
                    channel.handle(),
                    CapKind::Channel,
                    Rights::SEND,
                    now,
                )?;
                match info.object {
                    ObjectRef::Channel(ch) => Some(ch),
                    _ => return Err(KernelError::InvalidCapability),
                }
            }
            None => None,
        };
        let spec = TaskSpec::new(descriptor.name.clone())
            .kind(descriptor.kind)
            .trust_domain(descriptor.trust_domain.clone())
            .priority(descriptor.priority);
        let (task, execution) = match lineage {
            None => self.core.create_task(Some(spawner), spec, now)?,
            Some((parent, creator)) => self
                .core
                .create_task_with_lineage(spec, parent, creator, now)?,
        };
        let child_caps = if handles.is_empty() {
            Vec::new()
        } else {
            match self.core.delegate_all(spawner, &handles, task, now) {
                Ok(moved) => moved,
                Err(error) => {
                    let reason = ExitReason::Failure {
                        error: FailureCause::Described(format!("spawn failed: {error}")),
                    };
                    let _ = self.core.terminate(task, reason, now);
                    return Err(error);
                }
            }
        };
        self.bump_activity();
        let startup = startup_info(task, execution, &descriptor.name, &child_caps);
        // Only a scenario runner (which registers images) starts services
        // for spawned images; without one there is nobody to hand them to.
        if let (Some(image), Some(_)) = (descriptor.image, &self.known_images) {
            self.launches.push(Launch {
                name: descriptor.name,
                image,
                startup: startup.clone(),
            });
        }
        self.startups.insert(task, startup);
        if let Some(ch) = exit_route {
            self.exit_routes.insert(task, ch);
        }
        Ok(TaskHandle {
            task_id: task,
            execution_id: execution,
        })
    }

    /// Send `notification` to a parent's exit channel, as the kernel.
    pub(crate) fn send_exit_notification(
        &mut self,
        channel: ChannelRef,
        notification: &ExitNotification,
    ) {
        let Ok(payload) = MessagePayload::new(notification) else {
            return;
        };
        let envelope = MessageEnvelope::new(
            KERNEL_SERVICE,
            EXIT_NOTIFICATION_ACTION,
            EXIT_NOTIFICATION_SCHEMA,
            payload,
        );
        let Ok(bytes) = envelope.encode() else {
            return;
        };
        let key = ChannelKey::from(channel);
        let seq = self.new_seq();
        self.record(TraceEvent::Sent {
            seq,
            id: envelope.id,
            from: KERNEL_SENDER,
            channel: key,
            action: envelope.action.clone(),
            capabilities: 0,
        });
        self.bump_activity();
        let dropped = self.faults_active
            && self
                .injector
                .message_fault(key, &envelope.action, KERNEL_SENDER)
                == Some(MessageFault::Drop);
        if dropped {
            self.record(TraceEvent::Lost {
                seq,
                reason: LossReason::InjectedDrop,
                capabilities: 0,
            });
            return;
        }
        let now = self.clock_now();
        match self.core.send_from_kernel(channel, bytes, now) {
            Ok(core_seq) => self.push_queued(key, core_seq, seq, 0),
            Err(error) => {
                let reason = match error {
                    KernelError::SendFailed(pandagen_abi::error::SendError::QueueFull) => {
                        LossReason::QueueFull
                    }
                    _ => LossReason::ChannelClosed,
                };
                self.record(TraceEvent::Lost {
                    seq,
                    reason,
                    capabilities: 0,
                });
            }
        }
    }
}
