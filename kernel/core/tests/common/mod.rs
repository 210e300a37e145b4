//! Shared fixtures for the contract tests.
#![allow(dead_code)]

use pandagen_abi::{
    CapHandle, ExecutionId, IdentityKind, Instant, Priority, Rights, ServiceId, TaskId, TrustDomain,
};
use pandagen_core::{CapabilityEvent, KernelCore, Mintable, TaskSpec};

pub const T0: Instant = Instant::ZERO;

pub fn at(nanos: u64) -> Instant {
    Instant::from_nanos(nanos)
}

pub fn kernel() -> KernelCore {
    KernelCore::default()
}

pub fn spawn(k: &mut KernelCore, name: &str) -> TaskId {
    k.create_task(None, TaskSpec::new(name), T0).unwrap().0
}

pub fn spawn_in(k: &mut KernelCore, name: &str, domain: TrustDomain) -> TaskId {
    k.create_task(None, TaskSpec::new(name).trust_domain(domain), T0)
        .unwrap()
        .0
}

pub fn spawn_child(k: &mut KernelCore, parent: TaskId, name: &str) -> (TaskId, ExecutionId) {
    k.create_task(
        Some(parent),
        TaskSpec::new(name).kind(IdentityKind::Service),
        T0,
    )
    .unwrap()
}

pub fn spawn_at(k: &mut KernelCore, name: &str, priority: Priority) -> TaskId {
    k.create_task(None, TaskSpec::new(name).priority(priority), T0)
        .unwrap()
        .0
}

pub fn invalid_uses(k: &KernelCore) -> usize {
    k.audit_log()
        .count_events(|e| matches!(e, CapabilityEvent::InvalidUseAttempt { .. }))
}

/// A registry capability with `REGISTER`, minted for `task`.
pub fn registry_cap(k: &mut KernelCore, task: TaskId) -> CapHandle {
    k.mint(task, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap()
}

/// `task` registers `service` on `channel` (a handle with `RECEIVE`).
pub fn register(k: &mut KernelCore, task: TaskId, service: ServiceId, channel: CapHandle) {
    let registry = registry_cap(k, task);
    k.register_service(task, registry, service, channel, T0)
        .unwrap();
}

/// `task` serves `service` on a channel of its own; returns its handle.
pub fn serve(k: &mut KernelCore, task: TaskId, service: ServiceId) -> CapHandle {
    let channel = k.create_channel(task, T0).unwrap();
    register(k, task, service, channel);
    channel
}

/// Give `from` authority to put capabilities into `to` (a `Task`
/// capability naming it with `SEND`), as grant and delegate require.
pub fn authorise(k: &mut KernelCore, from: TaskId, to: TaskId) -> pandagen_abi::CapHandle {
    k.mint(
        from,
        pandagen_core::Mintable::Task(to),
        pandagen_abi::Rights::SEND,
        T0,
    )
    .unwrap()
}

/// A child of `parent` whose exit notification goes to `exits` (a channel
/// `parent` receives on).
pub fn spawn_routed(k: &mut KernelCore, parent: TaskId, exits: CapHandle) -> TaskId {
    k.spawn(
        parent,
        pandagen_core::SpawnArgs {
            spec: TaskSpec::new("child"),
            with_image: false,
            capabilities: &[],
            exit_channel: Some(exits),
            frames: 0,
        },
        T0,
    )
    .unwrap()
    .task
}

/// Spawn an image-less child of `parent` from `spec`, its exits routed to
/// `exit_channel` if given.
pub fn spawn_under(
    k: &mut KernelCore,
    parent: TaskId,
    spec: TaskSpec,
    exit_channel: Option<CapHandle>,
) -> Result<TaskId, pandagen_abi::KernelError> {
    let args = pandagen_core::SpawnArgs {
        spec,
        with_image: false,
        capabilities: &[],
        exit_channel,
        frames: 0,
    };
    k.spawn(parent, args, T0).map(|spawned| spawned.task)
}
