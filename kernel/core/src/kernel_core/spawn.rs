//! Spawning with initial capabilities, the root task, and exit routing:
//! what both kernels do when a task is born or dies, so it exists once.
//!
//! A spawner names, besides the new task's spec, the capabilities it moves
//! into the child (all or nothing) and optionally an *exit channel*: when
//! the child terminates, the kernel itself enqueues an envelope with action
//! [`EXIT_NOTIFICATION_ACTION`] carrying the [`ExitNotification`] on that
//! channel. The route is a channel reference, not a capability: the spawner
//! proved `RECEIVE` on it at spawn time (it is the spawner's own channel,
//! so nobody can aim a child's notifications at a third party's queue).
//!
//! The notification is paid for: recording a route charges the spawner
//! [`EXIT_ROUTE_COST`] (the largest notification's queued message), which
//! becomes the queued message's charge when the child dies — so delivery
//! never needs memory nobody paid for — and is returned when the message
//! is received or discarded, or at once if the route's channel has closed.
//!
//! Exit notifications are never lost while their channel is open:
//! * the reason is bounded ([`ExitReason::bounded`]), so the envelope
//!   always fits one message;
//! * it is queued in room the kernel keeps for it
//!   ([`KernelCore::send_exit_from_kernel`]), outside the queue bound that
//!   tasks' sends are held to, so no task can crowd it out by filling the
//!   channel (the parent's public service channel may be its exit route);
//! * only the kernel queues into that room: its messages carry the kernel
//!   sender, which no task can stamp.
//!
//! A channel that has closed since loses the notification (nobody could
//! receive it); it is still recorded in [`KernelCore::exit_notifications`].

use alloc::string::String;
use alloc::vec::Vec;
use pandagen_abi::api::{limits, EXIT_NOTIFICATION_ACTION};
use pandagen_abi::error::{Resource, SpawnError};
use pandagen_abi::{
    Budget, CapHandle, CapKind, ExecutionId, ExitNotification, ExitReason, FailureCause,
    IdentityKind, Instant, KernelError, MessageEnvelope, MessagePayload, Priority, Rights,
    SchemaVersion, ServiceId, TaskId, TrustDomain,
};

use super::device::{DEVICE_RIGHTS, ROOT_DEVICE_CAPS};
use super::KernelCore;
use crate::budget::{AccountId, EXIT_ROUTE_COST};
use crate::cap_table::{Mintable, ObjectRef};
use crate::channel::ChannelRef;
use crate::task::TaskSpec;
use pandagen_abi::device::DeviceResource;

/// The schema version of the kernel's exit-notification messages.
pub const EXIT_NOTIFICATION_SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);
/// The destination written on the kernel's own messages.
pub const KERNEL_SERVICE: ServiceId = ServiceId::from_raw(0);

/// What a spawner asks for.
#[derive(Clone, Debug)]
pub struct SpawnArgs<'a> {
    pub spec: TaskSpec,
    /// Whether the child runs an image (then the spawner needs a
    /// `BootImage` capability with `SPAWN`).
    pub with_image: bool,
    /// Capabilities moved from the spawner into the child, in order.
    pub capabilities: &'a [CapHandle],
    /// Where the child's exit notification goes (needs `RECEIVE` on it).
    pub exit_channel: Option<CapHandle>,
    /// Frames the embedding kernel allocated for the child's address space
    /// (0 in the simulator), charged to the child's budget. Before loading,
    /// for [`KernelCore::authorize_spawn`]: the least the image will take.
    pub frames: u64,
}

/// A task [`KernelCore::spawn`] created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spawned {
    pub task: TaskId,
    pub execution: ExecutionId,
    /// The moved capabilities' handles in the child's space, in order.
    pub capabilities: Vec<CapHandle>,
}

impl KernelCore {
    /// Every check [`spawn`](Self::spawn) makes before it creates
    /// anything, with the same errors, and the exit route it would record:
    /// authority, then budget (the spawner can grant the child's budget,
    /// which holds the child's task record and `args.frames`). A kernel
    /// calls this before it loads the child's image, so that a refused
    /// spawn costs no allocation, zeroing or copying.
    pub fn authorize_spawn(
        &mut self,
        spawner: TaskId,
        args: &SpawnArgs<'_>,
        now: Instant,
    ) -> Result<Option<ChannelRef>, KernelError> {
        if !self.is_alive(spawner) {
            return Err(KernelError::TaskNotFound(spawner));
        }
        if args.capabilities.len() > limits::MAX_SPAWN_CAPS {
            return Err(KernelError::SpawnFailed(SpawnError::TooManyCapabilities));
        }
        if args.with_image {
            let boot_image = self
                .find_cap(spawner, CapKind::BootImage, Rights::SPAWN)
                .ok_or(KernelError::InsufficientAuthority)?;
            self.lookup(spawner, boot_image, CapKind::BootImage, Rights::SPAWN, now)?;
        }
        let handles = args.capabilities;
        for (i, &handle) in handles.iter().enumerate() {
            if handles[..i].contains(&handle) {
                return Err(KernelError::InvalidCapability);
            }
            let kind = self
                .inspect(spawner, handle)
                .map_or(CapKind::Channel, |info| info.kind());
            self.lookup(spawner, handle, kind, Rights::TRANSFER, now)?;
        }
        let exit_route = match args.exit_channel {
            Some(channel) => {
                let info = self.lookup(spawner, channel, CapKind::Channel, Rights::RECEIVE, now)?;
                match info.object {
                    ObjectRef::Channel(ch) => Some(ch),
                    _ => return Err(KernelError::InvalidCapability),
                }
            }
            None => None,
        };
        self.authorize_child_budget(spawner, args)?;
        if exit_route.is_some() {
            // The child's budget and the route's reservation, together.
            let account = self.account_of(spawner)?;
            let budget = self.budget_for(&args.spec, Some(account));
            let both = budget.saturating_add(Budget::memory(EXIT_ROUTE_COST));
            self.accounts.check(account, both)?;
        }
        Ok(exit_route)
    }

    /// The budget checks of a spawn: the child's budget holds its task
    /// record and `args.frames`, and the spawner's account can grant it.
    /// Part of [`authorize_spawn`](Self::authorize_spawn); a kernel calls
    /// it again once it knows how many frames the image needs at least.
    pub fn authorize_child_budget(
        &self,
        spawner: TaskId,
        args: &SpawnArgs<'_>,
    ) -> Result<(), KernelError> {
        let account = self.account_of(spawner)?;
        let budget = self.budget_for(&args.spec, Some(account));
        if !Budget::memory(self.task_cost()).fits_in(&budget) {
            return Err(KernelError::ResourceExhausted(Resource::MemoryBudget));
        }
        if budget.frames < args.frames {
            return Err(KernelError::ResourceExhausted(Resource::FrameBudget));
        }
        self.accounts.check(account, budget)
    }

    /// Create a task on behalf of `spawner`, moving `args.capabilities`
    /// into it and recording its exit route. Everything is validated before
    /// anything is created, so a refused spawn changes nothing (refusals of
    /// capability uses are audited).
    ///
    /// Errors: `TaskNotFound(spawner)`;
    /// `SpawnFailed(TooManyCapabilities)` beyond `limits::MAX_SPAWN_CAPS`;
    /// `InsufficientAuthority` for an image spawn without a `BootImage`
    /// capability carrying `SPAWN`; `InvalidCapability` for a repeated or
    /// unknown handle; the refusals of `lookup` for a capability without
    /// `TRANSFER` or an exit channel without `RECEIVE`;
    /// `ResourceExhausted(FrameBudget)` when the child's budget cannot hold
    /// `args.frames`; the errors of `create_task` (among them
    /// `ResourceExhausted(MemoryBudget | FrameBudget)` when the spawner's
    /// budget cannot grant the child's).
    pub fn spawn(
        &mut self,
        spawner: TaskId,
        args: SpawnArgs<'_>,
        now: Instant,
    ) -> Result<Spawned, KernelError> {
        let exit_route = self.authorize_spawn(spawner, &args, now)?;
        let handles = args.capabilities;
        let (task, execution) = self.create_task(Some(spawner), args.spec, now)?;
        // The charge cannot fail (the child's budget was checked to cover
        // the frames), but if it did, the child is undone, not the kernel.
        let moved = self.charge_frames(task, args.frames).and_then(|()| {
            if handles.is_empty() {
                Ok(Vec::new())
            } else {
                self.delegate_all(spawner, handles, task, now)
            }
        });
        let moved = match (moved, exit_route) {
            (Ok(moved), Some(channel)) => self.pay(spawner, EXIT_ROUTE_COST).map(|payer| {
                self.exit_routes.insert(task, ExitRoute { channel, payer });
                moved
            }),
            (moved, _) => moved,
        };
        let capabilities = match moved {
            Ok(moved) => moved,
            Err(error) => {
                let reason = ExitReason::Failure {
                    error: FailureCause::Described(alloc::format!("spawn failed: {error}")),
                };
                let _ = self.terminate(task, reason, now);
                return Err(error);
            }
        };
        Ok(Spawned {
            task,
            execution,
            capabilities,
        })
    }

    /// Create the root task (`IdentityKind::System`, trust domain `core`,
    /// `Priority::HIGH`) holding the root capabilities in the order of
    /// [`ROOT_CAPABILITIES`](pandagen_abi::syscall::ROOT_CAPABILITIES), each
    /// transferable, then, if the kernel set a framebuffer
    /// ([`KernelCore::set_framebuffer`]), the one capability for it.
    /// Errors: those of `create_task` and `mint`.
    pub fn create_root_task(
        &mut self,
        name: impl Into<String>,
        now: Instant,
    ) -> Result<Spawned, KernelError> {
        let spec = TaskSpec::new(name)
            .kind(IdentityKind::System)
            .trust_domain(TrustDomain::core())
            .priority(Priority::HIGH);
        let (task, execution) = self.create_task(None, spec, now)?;
        let transferable = Rights::GRANT | Rights::TRANSFER;
        let minted = [
            (Mintable::ServiceRegistry, Rights::REGISTER | transferable),
            (
                Mintable::BootImage,
                Rights::SPAWN | Rights::READ | transferable,
            ),
            // CONTROL: shutting the machine down (`Syscall::Shutdown`).
            (
                Mintable::KernelInfo,
                Rights::READ | Rights::CONTROL | transferable,
            ),
            // WRITE: output to the console (`Syscall::ConsoleWrite`).
            (
                Mintable::SerialInput,
                Rights::READ | Rights::WRITE | Rights::RECEIVE | transferable,
            ),
            // READ: info and reads; WRITE: writes (`Syscall::BlockWrite`).
            (
                Mintable::BlockDevice,
                Rights::READ | Rights::WRITE | transferable,
            ),
        ];
        let mut capabilities = Vec::with_capacity(minted.len() + ROOT_DEVICE_CAPS.len());
        // Last, where the machine has one: the framebuffer.
        let framebuffer = self.framebuffer().map(|range| {
            (
                Mintable::Device(DeviceResource::Framebuffer(range)),
                DEVICE_RIGHTS,
            )
        });
        for (object, rights) in minted
            .into_iter()
            .chain(ROOT_DEVICE_CAPS)
            .chain(framebuffer)
        {
            capabilities.push(self.mint(task, object, rights, now)?);
        }
        Ok(Spawned {
            task,
            execution,
            capabilities,
        })
    }

    /// The exit channel recorded for `task` by [`KernelCore::spawn`].
    pub fn exit_route(&self, task: TaskId) -> Option<ChannelRef> {
        self.exit_routes.get(&task).map(|route| route.channel)
    }

    /// Remove `task`'s exit route and return it, so that the caller
    /// delivers the notification itself after `terminate` (the simulator
    /// does, to apply its fault plan to it). The route still holds its
    /// reservation: give it back to
    /// [`send_exit_from_kernel`](Self::send_exit_from_kernel) or
    /// [`forget_exit_route`](Self::forget_exit_route).
    pub fn take_exit_route(&mut self, task: TaskId) -> Option<ExitRoute> {
        self.exit_routes.remove(&task)
    }

    /// Give up a taken route without a notification (one lost to an
    /// injected fault): its reservation is returned.
    pub fn forget_exit_route(&mut self, route: ExitRoute) {
        self.accounts.release_memory(route.payer, EXIT_ROUTE_COST);
    }

    /// What the exit routes of live tasks hold in reservations, by payer
    /// (for `check_invariants`).
    pub(super) fn exit_route_charges(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.exit_routes.values().map(|route| route.payer)
    }

    /// Deliver `notification` on the exit route its task was spawned with
    /// (forgetting the route), in the room kept for it. Called by
    /// `terminate`. Returns whether a notification was queued; only a
    /// closed channel loses it.
    pub(super) fn route_exit(&mut self, notification: &ExitNotification) -> bool {
        let Some(task) = notification.task_id else {
            return false;
        };
        let Some(route) = self.exit_routes.remove(&task) else {
            return false;
        };
        let Ok(bytes) = exit_notification_bytes(notification) else {
            self.forget_exit_route(route);
            return false;
        };
        self.send_exit_from_kernel(route, bytes).is_ok()
    }
}

/// Where a task's exit notification goes, and who paid for it
/// ([`EXIT_ROUTE_COST`], reserved when the route was recorded). Not
/// `Clone`: it is delivered or forgotten once.
#[must_use = "an exit route holds a reservation: send on it or forget it"]
#[derive(Debug, PartialEq, Eq)]
pub struct ExitRoute {
    channel: ChannelRef,
    payer: AccountId,
}

impl ExitRoute {
    /// The channel the notification goes to.
    pub fn channel(&self) -> ChannelRef {
        self.channel
    }

    /// The account the notification is charged to.
    pub(crate) fn payer(&self) -> AccountId {
        self.payer
    }
}

/// The encoded envelope the kernel sends for `notification`.
pub fn exit_notification_bytes(notification: &ExitNotification) -> Result<Vec<u8>, KernelError> {
    let payload = MessagePayload::new(notification).map_err(KernelError::Envelope)?;
    let envelope = MessageEnvelope::new(
        KERNEL_SERVICE,
        EXIT_NOTIFICATION_ACTION,
        EXIT_NOTIFICATION_SCHEMA,
        payload,
    );
    envelope.encode().map_err(KernelError::Envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pandagen_abi::Rights;

    fn t0() -> Instant {
        Instant::ZERO
    }

    #[test]
    fn spawn_moves_capabilities_and_routes_the_exit_notification() {
        let mut k = KernelCore::default();
        let root = k.create_root_task("root", t0()).unwrap();
        let exits = k.create_channel(root.task, t0()).unwrap();
        let gift = k.create_channel(root.task, t0()).unwrap();
        let child = k
            .spawn(
                root.task,
                SpawnArgs {
                    spec: TaskSpec::new("child"),
                    with_image: true,
                    capabilities: &[gift],
                    exit_channel: Some(exits),
                    frames: 0,
                },
                t0(),
            )
            .unwrap();
        assert_eq!(child.capabilities.len(), 1);
        assert!(k.inspect(root.task, gift).is_none(), "the gift moved");
        assert!(k.inspect(child.task, child.capabilities[0]).is_some());
        k.terminate(child.task, ExitReason::Normal, t0()).unwrap();
        let delivered = k.receive(root.task, exits, t0()).unwrap().unwrap();
        let envelope = MessageEnvelope::decode(&delivered.bytes).unwrap();
        assert_eq!(envelope.action, EXIT_NOTIFICATION_ACTION);
        let n: ExitNotification = envelope.payload.decode().unwrap();
        assert_eq!(n.task_id, Some(child.task));
        assert_eq!(n.reason, ExitReason::Normal);
        assert_eq!(k.exit_route(child.task), None);
        k.check_invariants().unwrap();
    }

    #[test]
    fn authorizing_a_spawn_checks_authority_and_creates_nothing() {
        let mut k = KernelCore::default();
        let root = k.create_root_task("root", t0()).unwrap();
        let plain = |name: &str| SpawnArgs {
            spec: TaskSpec::new(name),
            with_image: true,
            capabilities: &[],
            exit_channel: None,
            frames: 0,
        };
        let child = k.spawn(root.task, plain("child"), t0()).unwrap();
        let tasks = k.task_count();
        assert_eq!(
            k.authorize_spawn(child.task, &plain("grandchild"), t0()),
            Err(KernelError::InsufficientAuthority),
            "no BootImage capability"
        );
        assert_eq!(
            k.authorize_spawn(root.task, &plain("sibling"), t0()),
            Ok(None)
        );
        assert_eq!(k.task_count(), tasks, "authorizing creates nothing");
        k.check_invariants().unwrap();
    }

    #[test]
    fn refused_spawn_changes_nothing() {
        let mut k = KernelCore::default();
        let root = k.create_root_task("root", t0()).unwrap();
        let ch = k.create_channel(root.task, t0()).unwrap();
        let no_transfer = k.clone_cap(root.task, ch, Rights::SEND, t0()).unwrap();
        let tasks = k.task_count();
        let refused = k.spawn(
            root.task,
            SpawnArgs {
                spec: TaskSpec::new("child"),
                with_image: true,
                capabilities: &[ch, ch],
                exit_channel: None,
                frames: 0,
            },
            t0(),
        );
        assert_eq!(refused, Err(KernelError::InvalidCapability));
        let refused = k.spawn(
            root.task,
            SpawnArgs {
                spec: TaskSpec::new("child"),
                with_image: true,
                capabilities: &[no_transfer],
                exit_channel: None,
                frames: 0,
            },
            t0(),
        );
        assert!(refused.is_err());
        assert_eq!(k.task_count(), tasks);
        assert!(k.inspect(root.task, ch).is_some());
    }

    #[test]
    fn image_spawn_needs_the_boot_image_capability() {
        let mut k = KernelCore::default();
        let root = k.create_root_task("root", t0()).unwrap();
        let child = k
            .spawn(
                root.task,
                SpawnArgs {
                    spec: TaskSpec::new("child"),
                    with_image: false,
                    capabilities: &[],
                    exit_channel: None,
                    frames: 0,
                },
                t0(),
            )
            .unwrap();
        let refused = k.spawn(
            child.task,
            SpawnArgs {
                spec: TaskSpec::new("grandchild"),
                with_image: true,
                capabilities: &[],
                exit_channel: None,
                frames: 0,
            },
            t0(),
        );
        assert_eq!(refused, Err(KernelError::InsufficientAuthority));
    }
}
