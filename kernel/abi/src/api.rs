//! The `KernelApi` trait: the one interface services are written against.
//!
//! Both kernels implement it — `pandagen-sim`'s `SimulatedKernel` on the
//! host and `pandagen-rt`'s syscall client in ring 3 — so service logic
//! compiles unchanged against either.
//!
//! Semantics shared by both implementations:
//! * Every call acts as the calling task, with that task's capabilities.
//! * `ChannelId`s are handles in the caller's capability space.
//! * `send_message` never blocks: a full queue is `SendFailed(QueueFull)`.
//! * `receive_message` blocks until a message arrives or the timeout passes
//!   (`None` waits forever; a zero timeout polls).
//! * `grant_capability` issues a *copy* of a capability the caller holds with
//!   the `GRANT` right (audited as Granted); `delegate_capability` *moves*
//!   one the caller holds with `TRANSFER` (audited as Delegated): the caller
//!   loses it. Both put a capability into another task, which needs
//!   authority over that task: a `Task` capability naming it with `SEND`
//!   (a task id alone is a guessable number and confers nothing). Moving
//!   capabilities in a message needs only `SEND` on a channel the other
//!   task receives on.
//! * `register_service` needs a capability naming the id — a
//!   `ServiceRegistration` for exactly that id (what the process manager
//!   gives each service it starts) or the whole `ServiceRegistry` (the
//!   process manager's own) — with `REGISTER`, and the `RECEIVE` right on
//!   the channel being registered. `lookup_service` installs a new
//!   send-only capability for the service's channel in the caller's space
//!   on every call; the caller drops it when done. It takes `&mut self` for
//!   that reason (docs/interfaces.md lists this difference from the
//!   interface description).
//! * A message can carry capabilities. They are *moved* out of the sender's
//!   space when the send succeeds, held by the kernel while in flight, and
//!   installed in the receiver's space on delivery. A message that is
//!   dropped or never delivered takes its capabilities with it: they are
//!   invalidated (and audited), never leaked.
//! * Request/response convention: a request attaches, as its first
//!   capability, a send-only capability for the client's reply channel
//!   (made with `clone_capability(&reply, Rights::SEND | Rights::TRANSFER)`:
//!   moving a capability into a message needs `TRANSFER`, so a plain
//!   `SEND` copy cannot be attached); the server answers there with the
//!   request's id as correlation id, then drops that capability.
//! * Object capabilities (kind `StorageObject`) are minted by a service for
//!   its own objects (`mint_object_capability`, only by the task holding the
//!   service's registration) and used by sending *through* them
//!   (`send_to_object`): the kernel delivers on the service's current
//!   channel and stamps the message with the capability's badge and rights
//!   (`ReceivedMessage::badge`). They move, attenuate (`clone_capability`)
//!   and die with their holder like any other capability.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::cap::{kinds, Badge, Cap, CapHandle, Rights};
use crate::envelope::{EncodedEnvelope, EnvelopeRef, MessageEnvelope};
use crate::error::{KernelError, SyscallError};
use crate::identity::{IdentityKind, TrustDomain};
use crate::ids::{ChannelId, ExecutionId, ServiceId, TaskId};
use crate::syscall::{BlockInfo, Syscall};
use crate::time::{Duration, Instant};

/// Bounds the kernel enforces on task creation.
pub mod limits {
    /// The longest task or image name.
    pub const MAX_TASK_NAME: usize = 32;
    /// The most capabilities a task may receive at spawn.
    pub const MAX_SPAWN_CAPS: usize = 16;
}

/// Scheduling priority: higher runs first; equal priorities round-robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Priority(pub u8);

impl Priority {
    pub const IDLE: Priority = Priority(0);
    pub const NORMAL: Priority = Priority(8);
    pub const HIGH: Priority = Priority(16);
    /// Number of distinct levels; valid priorities are `0..LEVELS`.
    pub const LEVELS: usize = 32;
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

/// Everything needed to build a task. Nothing is inherited from the
/// spawner: the new task holds exactly the capabilities listed here, which
/// are *moved* out of the spawner's space.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDescriptor {
    pub name: String,
    /// The program in the boot image to run. `None` in the simulator, where
    /// a task is driven by host code rather than loaded from an image.
    pub image: Option<String>,
    pub capabilities: Vec<Cap<()>>,
    pub priority: Priority,
    pub kind: IdentityKind,
    pub trust_domain: TrustDomain,
    /// Where the kernel reports this task's exit: a channel in the
    /// spawner's space on which it holds `RECEIVE` (its own channel: a
    /// spawner cannot aim notifications at someone else's queue). When the
    /// task terminates, the kernel enqueues an envelope with action
    /// [`EXIT_NOTIFICATION_ACTION`] whose payload is the
    /// [`ExitNotification`](crate::identity::ExitNotification). The
    /// notification never competes with tasks' messages for room: it goes
    /// into room the kernel reserved for that child at spawn, which no send
    /// can take, and its reason is bounded
    /// ([`MAX_EXIT_REASON_TEXT`](crate::identity::MAX_EXIT_REASON_TEXT)), so
    /// it is never lost while the channel is open. This is how a parent —
    /// and only the parent — supervises its children.
    pub exit_channel: Option<ChannelId>,
    /// The kernel memory the task may hold, carved out of the spawner's
    /// budget (see [`crate::budget`]); `None` grants the kernel's default
    /// child budget.
    pub budget: Option<Budget>,
}

/// The action of the kernel's exit-notification messages.
pub const EXIT_NOTIFICATION_ACTION: &str = "kernel.task_exited";

impl TaskDescriptor {
    pub fn new(name: String) -> Self {
        TaskDescriptor {
            name,
            image: None,
            capabilities: Vec::new(),
            priority: Priority::default(),
            kind: IdentityKind::Component,
            trust_domain: TrustDomain::user(),
            exit_channel: None,
            budget: None,
        }
    }

    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn with_exit_channel(mut self, channel: ChannelId) -> Self {
        self.exit_channel = Some(channel);
        self
    }

    pub fn with_capability(mut self, capability: Cap<()>) -> Self {
        self.capabilities.push(capability);
        self
    }

    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_identity(mut self, kind: IdentityKind, trust_domain: TrustDomain) -> Self {
        self.kind = kind;
        self.trust_domain = trust_domain;
        self
    }
}

/// What the spawner gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskHandle {
    pub task_id: TaskId,
    pub execution_id: ExecutionId,
}

/// A delivered message and the capabilities it carried, now installed in
/// the receiver's space.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub envelope: MessageEnvelope,
    pub capabilities: Vec<Cap<()>>,
    /// The badge and rights of the object capability the message was sent
    /// through (`send_to_object`), stamped by the kernel; `None` for a
    /// message sent on a channel.
    pub badge: Option<Badge>,
}

/// A delivered message that carried no capabilities, read in place (see
/// [`KernelApi::call_object_in_place`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedRef<'a> {
    /// Its envelope, `source` stamped as [`ReceivedMessage::envelope`]'s.
    pub envelope: EnvelopeRef<'a>,
    /// As [`ReceivedMessage::badge`].
    pub badge: Option<Badge>,
}

/// How [`KernelApi::call_object_in_place`] took its answer.
#[derive(Debug, PartialEq, Eq)]
pub enum InPlace<T> {
    /// Read in place: what the reader made of it.
    Read(T),
    /// The answer as [`KernelApi::call_object`] returns it: the reader
    /// declined it, or it could not be offered (it carried capabilities,
    /// or only the general decode reads it). Boxed: an answer read in
    /// place, the usual outcome, then moves as a small value through its
    /// caller's `Result`s (a `ReceivedMessage` is some 150 bytes).
    Owned(Box<ReceivedMessage>),
}

impl ReceivedMessage {
    /// Offer this message to `read` in place if it carries no
    /// capabilities (a reader cannot take them from a borrowed view);
    /// the message itself if it carries some or `read` declines it.
    pub fn read_in_place<T>(self, read: impl FnOnce(&ReceivedRef<'_>) -> Option<T>) -> InPlace<T> {
        if self.capabilities.is_empty() {
            let view = ReceivedRef {
                envelope: self.envelope.borrowed(),
                badge: self.badge,
            };
            if let Some(value) = read(&view) {
                return InPlace::Read(value);
            }
        }
        InPlace::Owned(Box::new(self))
    }
}

/// The answer of a kernel that does not offer `call`: what the real kernel
/// answers for a number it does not know, and the default body of every
/// [`KernelApi`] method added after the first set.
pub const fn unsupported(call: Syscall) -> KernelError {
    KernelError::Syscall(SyscallError::UnknownSyscall(call as u64))
}

/// Which half of a [`KernelApi::call_object`] failed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectCallError {
    /// The message was not sent, and nothing was received.
    NotSent(KernelError),
    /// The message was sent; the receive failed (`Timeout` among others).
    Unanswered(KernelError),
}

impl ObjectCallError {
    /// The error, whichever half it came from.
    pub fn error(self) -> KernelError {
        match self {
            ObjectCallError::NotSent(e) | ObjectCallError::Unanswered(e) => e,
        }
    }
}

/// The kernel interface (docs/interfaces.md, "The kernel API"), plus
/// capability transfer in messages, the capability `clone`, `delegate`
/// and `drop` operations, and the block-device calls.
///
/// The methods without a body are the ones every implementation needs;
/// every method added after them has a default body that answers as a
/// kernel without that call would ([`unsupported`], or for the block
/// calls, no handle names a device), so that a test fake need not change
/// when a call is added, and implements only what its tests use. Both
/// kernels override every default.
pub trait KernelApi {
    fn spawn_task(&mut self, descriptor: TaskDescriptor) -> Result<TaskHandle, KernelError>;
    fn create_channel(&mut self) -> Result<ChannelId, KernelError>;

    /// Send `message`, moving `capabilities` into it. Never blocks. On error
    /// nothing is enqueued and the caller keeps its capabilities.
    fn send_with_capabilities(
        &mut self,
        channel: ChannelId,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError>;

    /// Receive the next message and the capabilities it carried.
    fn receive_with_capabilities(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError>;

    /// Send without capabilities.
    fn send_message(
        &mut self,
        channel: ChannelId,
        message: MessageEnvelope,
    ) -> Result<(), KernelError> {
        self.send_with_capabilities(channel, message, Vec::new())
    }

    /// Receive, releasing any capabilities the message carried (so an
    /// unexpected capability never lingers in the caller's space).
    fn receive_message(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<MessageEnvelope, KernelError> {
        let received = self.receive_with_capabilities(channel, timeout)?;
        for capability in received.capabilities {
            // The message is already delivered; a capability that cannot be
            // dropped is already invalid, which is the goal anyway.
            let _ = self.drop_capability(capability);
        }
        Ok(received.envelope)
    }

    /// Send `message` (no capabilities) on `send`, then receive on
    /// `receive`: a client's call (request out, wait for the reply) or a
    /// server's reply-and-wait. The ring-3 runtime makes this one system
    /// call, `SendReceive`, which checks the receive capability before
    /// sending and which the kernel completes with a direct switch when the
    /// other side is already waiting; this default is the two calls.
    fn send_then_receive(
        &mut self,
        send: ChannelId,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.send_message(send, message)?;
        self.receive_with_capabilities(receive, timeout)
    }

    /// Answer on `reply` (a request's reply capability, used once) and wait
    /// for the next request on `receive`. The ring-3 runtime makes this one
    /// `SendReceive` that releases `reply` after sending and before
    /// receiving, so the next request's reply capability reuses its slot.
    /// If the send is refused, `reply` is released all the same (it names
    /// a client that cannot be answered) and the error returned.
    fn reply_then_receive(
        &mut self,
        reply: Cap<()>,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        let sent = self.send_message(ChannelId::from_handle(reply.handle()), message);
        let _ = self.drop_capability(reply);
        sent?;
        self.receive_with_capabilities(receive, timeout)
    }

    /// [`send_then_receive`](Self::send_then_receive) on `send` (with
    /// `consume_send` false) or [`reply_then_receive`](Self::reply_then_receive)
    /// on the reply capability `send` (true) of a message already encoded:
    /// `bytes`, as [`MessageEnvelope::encode`] writes an envelope (a
    /// server frames its answer in place, without an envelope to encode).
    /// `spare` is an envelope the caller is done with; the ring-3 runtime
    /// decodes the message received into its allocations. This default
    /// decodes `bytes` and makes the call with the envelope (bytes that do
    /// not decode are refused as `decode` refuses them, `send` released
    /// all the same when it is consumed).
    fn send_encoded_then_receive(
        &mut self,
        send: CapHandle,
        consume_send: bool,
        bytes: &[u8],
        spare: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        drop(spare);
        let message = match MessageEnvelope::decode(bytes) {
            Ok(message) => message,
            Err(e) => {
                if consume_send {
                    let _ = self.drop_capability(Cap::from_handle(send));
                }
                return Err(e.into());
            }
        };
        if consume_send {
            self.reply_then_receive(Cap::from_handle(send), message, receive, timeout)
        } else {
            self.send_then_receive(ChannelId::from_handle(send), message, receive, timeout)
        }
    }

    fn now(&self) -> Instant;
    fn sleep(&mut self, duration: Duration) -> Result<(), KernelError>;
    fn grant_capability(&mut self, task: TaskId, capability: Cap<()>) -> Result<(), KernelError>;
    fn register_service(
        &mut self,
        service_id: ServiceId,
        channel: ChannelId,
    ) -> Result<(), KernelError>;
    /// A new send-only capability for the channel `service_id` is
    /// registered with (one slot per call: drop it when done).
    fn lookup_service(&mut self, service_id: ServiceId) -> Result<ChannelId, KernelError>;
    /// Mint, from the caller's device capability `parent` (needing
    /// `GRANT`), a capability for the narrower `resource` with `rights`
    /// cut to the parent's: how a supervisor gives a driver exactly its
    /// device (see [`crate::device`]).
    fn mint_device_capability(
        &mut self,
        parent: &Cap<()>,
        resource: crate::device::DeviceResource,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError> {
        let _ = (parent, resource, rights);
        Err(unsupported(Syscall::MintDevice))
    }
    /// Mint, from the caller's `ServiceRegistry` capability `registry`
    /// (needing `REGISTER | GRANT`), a `ServiceRegistration` capability for
    /// `service` alone, with `REGISTER | TRANSFER`: what a supervisor moves
    /// into the service it starts.
    fn mint_registration_capability(
        &mut self,
        registry: &Cap<()>,
        service: ServiceId,
    ) -> Result<Cap<kinds::ServiceRegistration>, KernelError> {
        let _ = (registry, service);
        Err(unsupported(Syscall::MintRegistration))
    }
    /// Bind a new kernel channel to `channel` (needing `RECEIVE` on it):
    /// a channel only the kernel writes to, whose messages a receive on
    /// `channel` also takes (see
    /// [`Syscall::BindKernelChannel`](crate::syscall::Syscall::BindKernelChannel)).
    /// The answer's capability has `RECEIVE` only; name it as the exit
    /// channel of a spawn so that no task can crowd out the notification.
    fn bind_kernel_channel(&mut self, channel: ChannelId) -> Result<ChannelId, KernelError> {
        let _ = channel;
        Err(unsupported(Syscall::BindKernelChannel))
    }
    /// The task holding `service`'s registration now (`ServiceNotFound` if
    /// nobody does). Needs no capability.
    fn service_registrant(&mut self, service: ServiceId) -> Result<TaskId, KernelError> {
        let _ = service;
        Err(unsupported(Syscall::ServiceRegistrant))
    }
    /// Move `capability` from the caller to `to`; the caller loses it.
    fn delegate_capability(&mut self, capability: Cap<()>, to: TaskId) -> Result<(), KernelError> {
        let _ = (capability, to);
        Err(unsupported(Syscall::Delegate))
    }
    /// Release `capability`; it becomes invalid.
    fn drop_capability(&mut self, capability: Cap<()>) -> Result<(), KernelError>;
    /// An explicit, audited copy of `capability` in the caller's own space,
    /// with its rights attenuated to `rights` (rights can only shrink).
    fn clone_capability(
        &mut self,
        capability: &Cap<()>,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError>;

    /// Mint a capability for one of the caller's own service objects: kind
    /// `StorageObject`, naming `(service, badge)`, with `rights` restricted
    /// to [`OBJECT_CAP_RIGHTS`](crate::cap::OBJECT_CAP_RIGHTS). Only the
    /// task holding `service`'s registration may (`ServiceNotFound` if it
    /// is not registered, `InsufficientAuthority` if another task holds
    /// it). The capability names the *service*, not its channel, so it
    /// stays usable across a restart of the service that re-registers the
    /// same id; the service decides, from the badge, what it still honours.
    fn mint_object_capability(
        &mut self,
        service: ServiceId,
        badge: u64,
        rights: Rights,
    ) -> Result<Cap<kinds::StorageObject>, KernelError> {
        let _ = (service, badge, rights);
        Err(unsupported(Syscall::MintObjectCap))
    }

    /// Send `message` through the object capability `object` (which needs
    /// one of [`INVOKE_RIGHTS`](crate::cap::INVOKE_RIGHTS)) to the channel
    /// its service has registered now, moving `capabilities` into it as
    /// `send_with_capabilities` does. The receiver gets the capability's
    /// badge and rights in [`ReceivedMessage::badge`]. The caller keeps
    /// `object`. Errors: as for a send, plus `ServiceNotFound` when the
    /// service is not registered at the moment.
    fn send_to_object(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        let _ = (object, message, capabilities);
        Err(unsupported(Syscall::SendToObject))
    }

    /// [`send_to_object`](Self::send_to_object) of a message the caller
    /// keeps (a client that may have to send it again): a carrier that
    /// encodes the envelope for the wire need not copy it first. The
    /// default sends a copy.
    fn send_to_object_ref(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_to_object(object, message.clone(), capabilities)
    }

    /// A client's call through `object`: send `message` (no capabilities)
    /// as [`send_to_object_ref`](Self::send_to_object_ref) does, then
    /// receive on `receive` as
    /// [`receive_with_capabilities`](Self::receive_with_capabilities) does
    /// with `timeout`. The error says which half failed: `NotSent` (nothing
    /// was sent or received) or `Unanswered` (sent; the receive failed).
    /// The ring-3 runtime makes it one system call,
    /// [`CallObject`](crate::syscall::Syscall::CallObject), which also
    /// refuses, before sending, a `receive` it could not receive on; this
    /// default is the two calls.
    fn call_object(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, ObjectCallError> {
        self.send_to_object_ref(object, message, Vec::new())
            .map_err(ObjectCallError::NotSent)?;
        self.receive_with_capabilities(receive, timeout)
            .map_err(ObjectCallError::Unanswered)
    }

    /// [`call_object`](Self::call_object), its answer offered to `read` in
    /// place first: an answer without capabilities that `read` takes
    /// (`Some`) is `InPlace::Read`, and any other the `ReceivedMessage`
    /// `call_object` returns. The outcome and the errors are
    /// `call_object`'s. A carrier that decodes answers from a buffer of
    /// its own (the ring-3 runtime) reads the answer there, without
    /// allocating its action and payload; this default reads the decoded
    /// message.
    fn call_object_in_place<T>(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
        read: impl FnOnce(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<InPlace<T>, ObjectCallError>
    where
        Self: Sized,
    {
        let answer = self.call_object(object, message, receive, timeout)?;
        Ok(answer.read_in_place(read))
    }

    /// [`call_object_in_place`](Self::call_object_in_place) of a request
    /// its caller has encoded itself ([`EncodedEnvelope`], the bytes of
    /// `encode` of the envelope `message.decode()` gives), expecting an
    /// answer with the action `answer` (an answer with another is read
    /// all the same: see [`EnvelopeRef::decode_expecting`]). The outcome
    /// and the errors are `call_object_in_place`'s for that envelope. A
    /// carrier that sends encoded bytes (the ring-3 runtime) sends these
    /// as they are, neither decoded nor encoded again; this default
    /// decodes them (`NotSent` if that fails, which
    /// [`EnvelopeHead::write`](crate::envelope::EnvelopeHead::write)'s
    /// bytes never do).
    fn call_object_encoded<T>(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &EncodedEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
        answer: &'static str,
        read: impl FnOnce(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<InPlace<T>, ObjectCallError>
    where
        Self: Sized,
    {
        let _ = answer;
        let envelope = message
            .decode()
            .map_err(|e| ObjectCallError::NotSent(e.into()))?;
        self.call_object_in_place(object, &envelope, receive, timeout, read)
    }

    /// The geometry of the block device `device` names (a `BlockDevice`
    /// capability with `READ`). The three block calls share these rules:
    /// a capability of another kind, or without the right, is refused
    /// (`InvalidCapability`, `WrongCapabilityKind`,
    /// `InsufficientAuthority`) and nothing is read or written; a transfer
    /// is a positive whole number of blocks, at most
    /// [`MAX_BLOCK_TRANSFER`](crate::syscall::MAX_BLOCK_TRANSFER) bytes,
    /// all on the device, else `KernelError::Block` says why. The device
    /// belongs to the kernel, not to a task: what a task wrote is still
    /// there after it ends, for the next holder of a capability to it.
    ///
    /// A kernel without a block device refuses every handle, which is what
    /// these defaults do.
    fn block_info(&mut self, device: CapHandle) -> Result<BlockInfo, KernelError> {
        let _ = device;
        Err(KernelError::InvalidCapability)
    }

    /// `count` blocks from block `first` (needs `READ`; see
    /// [`KernelApi::block_info`]).
    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError> {
        let _ = (device, first, count);
        Err(KernelError::InvalidCapability)
    }

    /// Write `bytes`, a whole number of blocks, from block `first` on
    /// (needs `WRITE`; see [`KernelApi::block_info`]).
    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        let _ = (device, first, bytes);
        Err(KernelError::InvalidCapability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message without capabilities is offered in place, with its
    /// fields; one the reader declines, or one carrying capabilities
    /// (never offered), comes back whole.
    #[test]
    fn a_received_message_is_read_in_place_only_without_capabilities() {
        let message = |caps: Vec<Cap<()>>| ReceivedMessage {
            envelope: MessageEnvelope::new(
                ServiceId::from_raw(2),
                "answer",
                crate::SchemaVersion::new(1, 0),
                crate::MessagePayload::from_bytes(alloc::vec![1, 2, 3]).unwrap(),
            ),
            capabilities: caps,
            badge: Some(Badge {
                value: 7,
                rights: Rights::READ,
            }),
        };
        let plain = message(Vec::new());
        let expected = (plain.envelope.id, plain.badge);
        let read = plain.read_in_place(|r| {
            assert_eq!(r.envelope.action, "answer");
            assert_eq!(r.envelope.payload, &[1, 2, 3]);
            Some((r.envelope.id, r.badge))
        });
        assert_eq!(read, InPlace::Read(expected));
        let plain = message(Vec::new());
        let kept = alloc::format!("{plain:?}");
        match plain.read_in_place(|_| None::<()>) {
            InPlace::Owned(m) => assert_eq!(alloc::format!("{m:?}"), kept),
            InPlace::Read(()) => panic!("declined"),
        }
        let carrying = message(alloc::vec![Cap::from_handle(CapHandle::new(4, 1))]);
        match carrying.read_in_place(|_| -> Option<()> { panic!("offered") }) {
            InPlace::Owned(m) => assert_eq!(m.capabilities.len(), 1),
            InPlace::Read(()) => panic!("read"),
        }
    }

    /// A fake that writes only the methods without a default body,
    /// recording what is sent and dropped; its receive times out.
    #[derive(Default)]
    struct Recording {
        sent: Vec<(CapHandle, MessageEnvelope)>,
        dropped: Vec<CapHandle>,
    }

    impl KernelApi for Recording {
        fn spawn_task(&mut self, _: TaskDescriptor) -> Result<TaskHandle, KernelError> {
            Err(KernelError::InsufficientAuthority)
        }
        fn create_channel(&mut self) -> Result<ChannelId, KernelError> {
            Err(KernelError::InsufficientAuthority)
        }
        fn send_with_capabilities(
            &mut self,
            channel: ChannelId,
            message: MessageEnvelope,
            _: Vec<Cap<()>>,
        ) -> Result<(), KernelError> {
            self.sent.push((channel.handle(), message));
            Ok(())
        }
        fn receive_with_capabilities(
            &mut self,
            _: ChannelId,
            _: Option<Duration>,
        ) -> Result<ReceivedMessage, KernelError> {
            Err(KernelError::Timeout)
        }
        fn now(&self) -> Instant {
            Instant::ZERO
        }
        fn sleep(&mut self, _: Duration) -> Result<(), KernelError> {
            Ok(())
        }
        fn grant_capability(&mut self, _: TaskId, _: Cap<()>) -> Result<(), KernelError> {
            Ok(())
        }
        fn register_service(&mut self, _: ServiceId, _: ChannelId) -> Result<(), KernelError> {
            Ok(())
        }
        fn lookup_service(&mut self, service: ServiceId) -> Result<ChannelId, KernelError> {
            Err(KernelError::ServiceNotFound(service))
        }
        fn drop_capability(&mut self, capability: Cap<()>) -> Result<(), KernelError> {
            self.dropped.push(capability.handle());
            Ok(())
        }
        fn clone_capability(&mut self, c: &Cap<()>, _: Rights) -> Result<Cap<()>, KernelError> {
            Ok(Cap::from_handle(c.handle()))
        }
    }

    /// The default of an encoded send is the envelope's: sent decoded on
    /// `send`, which is released when consumed (also when the bytes do
    /// not decode, which sends nothing and fails as `decode` fails).
    #[test]
    fn an_encoded_send_is_sent_as_its_envelope_by_default() {
        let message = MessageEnvelope::new(
            ServiceId::from_raw(9),
            "reply",
            crate::schema::SchemaVersion::new(2, 1),
            crate::envelope::MessagePayload::from_bytes(alloc::vec![4, 5]).unwrap(),
        )
        .with_correlation(crate::ids::MessageId::from_raw(300));
        let bytes = message.encode().unwrap();
        let send = CapHandle::new(3, 1);
        let receive = ChannelId::from_handle(CapHandle::new(1, 0));
        let spare = || message.clone();
        for consume in [false, true] {
            let mut kernel = Recording::default();
            let got =
                kernel.send_encoded_then_receive(send, consume, &bytes, spare(), receive, None);
            assert_eq!(got.err(), Some(KernelError::Timeout));
            assert_eq!(kernel.sent, alloc::vec![(send, message.clone())]);
            let dropped: &[CapHandle] = if consume { &[send] } else { &[] };
            assert_eq!(kernel.dropped, dropped);
            let mut kernel = Recording::default();
            let cut = &bytes[..bytes.len() - 1];
            let got = kernel.send_encoded_then_receive(send, consume, cut, spare(), receive, None);
            assert_eq!(
                got.err(),
                Some(KernelError::from(MessageEnvelope::decode(cut).unwrap_err()))
            );
            assert!(kernel.sent.is_empty());
            assert_eq!(kernel.dropped, dropped);
        }
    }

    #[test]
    fn calls_a_fake_leaves_out_answer_as_from_a_kernel_without_them() {
        let mut kernel = Recording::default();
        let cap = Cap::from_handle(CapHandle::new(2, 0));
        assert_eq!(
            kernel.delegate_capability(cap, TaskId::from_raw(3)),
            Err(KernelError::Syscall(SyscallError::UnknownSyscall(
                Syscall::Delegate as u64
            )))
        );
        let minted = kernel.mint_object_capability(ServiceId::from_raw(1), 7, Rights::READ);
        assert_eq!(minted.err(), Some(unsupported(Syscall::MintObjectCap)));
        let device = kernel.mint_device_capability(
            &Cap::from_handle(CapHandle::new(6, 0)),
            crate::device::DeviceResource::Dma { bytes: 4096 },
            Rights::WRITE,
        );
        assert_eq!(device.err(), Some(unsupported(Syscall::MintDevice)));
        let object = Cap::from_handle(CapHandle::new(4, 0)).assume_kind();
        let message = MessageEnvelope::new(
            ServiceId::from_raw(1),
            "x",
            crate::schema::SchemaVersion::new(1, 0),
            crate::envelope::MessagePayload::new(&0u8).unwrap(),
        );
        // The default object call is the two calls: a send refused says
        // so, and the receive is not tried.
        let reply = ChannelId::from_handle(CapHandle::new(1, 0));
        assert_eq!(
            kernel.call_object(&object, &message, reply, None),
            Err(ObjectCallError::NotSent(unsupported(Syscall::SendToObject)))
        );
        assert_eq!(
            kernel.send_to_object(&object, message, Vec::new()),
            Err(unsupported(Syscall::SendToObject))
        );
        assert_eq!(
            kernel
                .mint_registration_capability(
                    &Cap::from_handle(CapHandle::new(6, 0)),
                    ServiceId::from_raw(1)
                )
                .err(),
            Some(unsupported(Syscall::MintRegistration))
        );
        assert_eq!(
            kernel.service_registrant(ServiceId::from_raw(1)),
            Err(unsupported(Syscall::ServiceRegistrant))
        );
        let device = CapHandle::new(5, 0);
        assert_eq!(
            kernel.block_info(device),
            Err(KernelError::InvalidCapability)
        );
        assert_eq!(
            kernel.block_read(device, 0, 1),
            Err(KernelError::InvalidCapability)
        );
        assert_eq!(
            kernel.block_write(device, 0, &[0; 512]),
            Err(KernelError::InvalidCapability)
        );
    }
}
