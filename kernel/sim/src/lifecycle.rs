//! Spawning and exit notifications in the simulator.
//!
//! Spawning, exit routes and the notification's encoding are the core's
//! (`KernelCore::spawn`, `exit_notification_bytes`); this file turns a
//! `TaskDescriptor` into a core spawn, remembers what a task was born with
//! (for `startup`) and which images the runner should start, and delivers
//! exit notifications itself so that the fault plan applies to them.

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::error::SpawnError;
use pandagen_abi::syscall::StartupInfo;
use pandagen_abi::{
    CapHandle, ExecutionId, ExitNotification, KernelError, MessageEnvelope, TaskDescriptor,
    TaskHandle, TaskId,
};
use pandagen_core::channel::KERNEL_SENDER;
use pandagen_core::{exit_notification_bytes, ExitRoute, SpawnArgs, TaskSpec};

use crate::fault::{ChannelKey, MessageFault};
use crate::kernel::{Launch, SimulatedKernel};
use crate::trace::{LossReason, TraceEvent};

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
        if let (Some(image), Some(known)) = (&descriptor.image, &self.known_images) {
            if !known.contains(image) {
                return Err(KernelError::SpawnFailed(SpawnError::ImageNotFound));
            }
        }
        let mut spec = TaskSpec::new(descriptor.name.clone())
            .kind(descriptor.kind)
            .trust_domain(descriptor.trust_domain.clone())
            .priority(descriptor.priority);
        spec.budget = descriptor.budget;
        if let Some((parent, creator)) = lineage {
            spec = spec.lineage(parent, creator);
        }
        let handles: Vec<CapHandle> = descriptor.capabilities.iter().map(|c| c.handle()).collect();
        let spawned = self.core.spawn(
            spawner,
            SpawnArgs {
                spec,
                with_image: descriptor.image.is_some(),
                capabilities: &handles,
                exit_channel: descriptor.exit_channel.map(|c| c.handle()),
                frames: 0,
            },
            now,
        )?;
        self.bump_activity();
        let startup = StartupInfo::new(
            spawned.task,
            spawned.execution,
            &descriptor.name,
            &spawned.capabilities,
        );
        // Only a scenario runner (which registers images) starts services
        // for spawned images; without one there is nobody to hand them to.
        if let (Some(image), Some(_)) = (descriptor.image, &self.known_images) {
            self.launches.push(Launch {
                name: descriptor.name,
                image,
                startup: startup.clone(),
            });
        }
        self.startups.insert(spawned.task, startup);
        Ok(TaskHandle {
            task_id: spawned.task,
            execution_id: spawned.execution,
        })
    }

    /// Send `notification` to a parent's exit channel, as the kernel.
    pub(crate) fn send_exit_notification(
        &mut self,
        route: ExitRoute,
        notification: &ExitNotification,
    ) {
        let envelope = exit_notification_bytes(notification)
            .ok()
            .and_then(|bytes| Some((MessageEnvelope::decode(&bytes).ok()?, bytes)));
        let Some((envelope, bytes)) = envelope else {
            self.core.forget_exit_route(route);
            return;
        };
        let channel = route.channel();
        let id = envelope.id;
        let key = ChannelKey::from(channel);
        let seq = self.new_seq();
        let action = self.trace.intern(EXIT_NOTIFICATION_ACTION);
        self.record(TraceEvent::Sent {
            seq,
            id,
            from: KERNEL_SENDER,
            channel: key,
            action,
            capabilities: 0,
        });
        self.bump_activity();
        let dropped = self.faults_active
            && self
                .injector
                .message_fault(key, EXIT_NOTIFICATION_ACTION, KERNEL_SENDER)
                == Some(MessageFault::Drop);
        if dropped {
            self.core.forget_exit_route(route);
            self.record(TraceEvent::Lost {
                seq,
                reason: LossReason::InjectedDrop,
                capabilities: 0,
            });
            return;
        }
        match self.core.send_exit_from_kernel(route, bytes) {
            Ok(core_seq) => self.push_queued(key, core_seq, seq, 0, envelope),
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
