//! Service-minted object capabilities, in the style of seL4's badged
//! endpoints.
//!
//! A service keeps objects the kernel knows nothing about (the storage
//! service's blobs, logs and maps). To hand out authority over one of them
//! as a *kernel* capability, the service mints a capability of kind
//! `StorageObject` whose object is [`ServiceObject`]: the service's id and
//! a 64-bit badge that only the service interprets. From then on it is an
//! ordinary capability: the kernel moves it in messages (`TRANSFER`),
//! copies it with attenuated rights (`clone_cap`, `GRANT`), audits every
//! step, and invalidates it when its holder dies.
//!
//! Using it is *sending through it*: [`KernelCore::send_to_object`]
//! delivers the message on the channel the service has registered at that
//! moment, stamped with the badge and with the rights of the capability
//! used. The service trusts both, because only it could have minted a
//! capability with that badge and only the kernel writes the stamp.
//!
//! The capability names the *service*, not its channel: after the service
//! restarts and registers the same id again, old capabilities reach the
//! new instance, which decides from the badge (for storage: object and
//! revocation epoch, kept on its disk) whether it still honours them.
//! Whoever holds a service's registration can mint for it and receives what
//! is sent through its capabilities, which is why registering needs the
//! `REGISTER` right.

use pandagen_abi::cap::{INVOKE_RIGHTS, OBJECT_CAP_RIGHTS};
use pandagen_abi::error::MissingRights;
use pandagen_abi::{Badge, CapHandle, CapKind, Instant, KernelError, Rights, ServiceId, TaskId};

use super::channel::{Offer, Sender, Sent};
use super::fastpath::SendTarget;
use super::{FastCall, KernelCore, ParkedMessage, RecvOutcome};
use crate::audit::CapabilityEvent;
use crate::cap_table::{CapSpace, InvalidUse, ObjectRef, ServiceObject};
use crate::channel::{Body, ChannelRef, Message};
use crate::registry::Registry;

/// How a [`KernelCore::call_object`] that was not refused left its caller.
#[derive(Debug, PartialEq, Eq)]
pub enum ObjectCalled {
    /// As [`KernelCore::receive_or_block`] left it.
    Received(RecvOutcome),
    /// Blocked receiving, as `receive_or_block` blocks it, and the server
    /// the request was handed to is now the running task, picked as
    /// [`KernelCore::pick_next`] would have picked it.
    SwitchedTo(TaskId),
}

impl KernelCore {
    /// Mint, for `caller`, a capability for the object `badge` of
    /// `service`, with `rights` restricted to
    /// [`OBJECT_CAP_RIGHTS`](pandagen_abi::cap::OBJECT_CAP_RIGHTS). Only the
    /// task that currently holds `service`'s registration may. Audited as
    /// `Granted { from: Some(caller), source: None }`: issued by a task,
    /// copied from no capability.
    ///
    /// Errors: `TaskNotFound(caller)`; `ServiceNotFound(service)` if
    /// nobody has registered it; `InsufficientAuthority` if another task
    /// has; `ResourceExhausted(CapabilitySlots)`. Cost: O(log s).
    pub fn mint_object_cap(
        &mut self,
        caller: TaskId,
        service: ServiceId,
        badge: u64,
        rights: Rights,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        if !self.is_alive(caller) {
            return Err(KernelError::TaskNotFound(caller));
        }
        match self.registry.get(service) {
            None => return Err(KernelError::ServiceNotFound(service)),
            Some(r) if r.owner != caller => return Err(KernelError::InsufficientAuthority),
            Some(_) => {}
        }
        self.require_room(caller, 1)?;
        let payer = self.pay(caller, crate::budget::CAP_COST)?;
        let rights = rights.attenuate(OBJECT_CAP_RIGHTS);
        let object = ObjectRef::StorageObject(ServiceObject::new(service, badge));
        let cap = self.new_record(object, rights, caller, payer);
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: cap.id(),
                kind: CapKind::StorageObject,
                rights,
                from: Some(caller),
                to: caller,
                source: None,
            },
        );
        Ok(self.install(caller, cap))
    }

    /// The channel a send through the object capability `handle` would
    /// reach now, validated as [`KernelCore::send_to_object`] validates it
    /// (refusals audited). Errors: refusals as for `lookup`,
    /// `InsufficientAuthority` without any of the invoke rights,
    /// `ServiceNotFound`.
    pub fn object_channel(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<ChannelRef, KernelError> {
        self.invoke_target(caller, handle, now).map(|(ch, _, _)| ch)
    }

    /// Send `bytes` through the object capability `handle`, moving the
    /// capabilities `caps` into the message exactly as
    /// [`KernelCore::send`] does. The capability needs at least one of
    /// [`INVOKE_RIGHTS`](pandagen_abi::cap::INVOKE_RIGHTS) and stays with
    /// the caller (unless it is itself among `caps`). The message goes to
    /// the channel `service` is registered with now and carries
    /// `Badge { value: badge, rights }` of the capability used. Returns the
    /// channel it was queued on and its sequence number. Nothing changes on
    /// error.
    ///
    /// Errors: refusals as for `lookup` (`WrongCapabilityKind` for a
    /// channel capability); `InsufficientAuthority` without an invoke
    /// right; `ServiceNotFound(service)` while the service is not
    /// registered; the `SendFailed` causes of `send`. Cost: as `send`, plus
    /// O(log s) for the registry.
    pub fn send_to_object<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<(ChannelRef, u64), KernelError> {
        let (ch, msg) = self.accept_for_object(caller, handle, body.into(), caps, now)?;
        Ok((ch, self.push(ch, msg)))
    }

    /// [`KernelCore::send_to_object`], with [`KernelCore::send_or_hand_off`]'s
    /// fast path: a message without capabilities, sent while the service's
    /// queue is empty and a task is blocked receiving on it, is offered
    /// (its stamp in [`Offer::badge`]) to that task through `hand_off`, and
    /// if accepted is delivered without being queued. Otherwise, and for
    /// a message carrying capabilities, it is queued exactly as
    /// `send_to_object` queues it. Validation and errors are
    /// `send_to_object`'s, and on error nothing changed.
    pub fn send_to_object_or_hand_off<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        caps: &[CapHandle],
        now: Instant,
        hand_off: impl FnOnce(&Offer<'_>) -> bool,
    ) -> Result<Sent, KernelError> {
        let body = body.into();
        if caps.is_empty() {
            let (ch, badge, sender) = self.invoke_target(caller, handle, now)?;
            return self.hand_off_or_queue(caller, ch, sender, Some(badge), body, hand_off);
        }
        let (channel, seq) = self.send_to_object(caller, handle, body, caps, now)?;
        Ok(Sent::Queued { channel, seq })
    }

    /// A client's call through the object capability `handle` in one step
    /// (`Syscall::CallObject`): `SendToObject` of `body` (no capabilities)
    /// followed by `Receive` on `receive` until `deadline`. `caller` must
    /// be able to receive on `receive` (checked first, as `SendReceive`
    /// checks it: a call that could never take its answer sends nothing);
    /// then the send is [`KernelCore::send_to_object_or_hand_off`]'s, with
    /// its checks, stamp, charge and hand-off; then the receive is
    /// [`KernelCore::receive_or_block`]'s. An error before the send leaves
    /// everything as it was (nothing sent, nothing received); once the
    /// message is sent the only errors are the receive's: `Timeout` (as
    /// [`RecvOutcome::TimedOut`]) and `ReceiveFailed`, which no refused send
    /// returns.
    ///
    /// When the request was handed to a waiting server and the caller
    /// blocked, and no deadline is due at `now` and that server is who
    /// [`KernelCore::pick_next`] would choose, the core picks it: it is the
    /// running task ([`ObjectCalled::SwitchedTo`]), exactly as the next
    /// `pick_next` would have made it, and the embedder switches straight
    /// to it.
    ///
    /// Errors: `check_receive`'s refusals, then `send_to_object`'s, then
    /// `receive_or_block`'s. Cost: `send_to_object_or_hand_off` and
    /// `receive_or_block`.
    #[allow(clippy::too_many_arguments)]
    pub fn call_object<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        receive: CapHandle,
        deadline: Option<Instant>,
        now: Instant,
        hand_off: impl FnOnce(&Offer<'_>) -> bool,
    ) -> Result<ObjectCalled, KernelError> {
        let from = self.receivable(caller, receive, now)?;
        let sent = self.send_to_object_or_hand_off(caller, handle, body, &[], now, hand_off)?;
        // A send without capabilities moved none of the caller's: `from`
        // is still its to receive on.
        let outcome = self.receive_or_block_on(caller, from, deadline, now)?;
        if let (Sent::HandedOff { receiver, .. }, RecvOutcome::Blocked) = (sent, &outcome) {
            if self.pick_if_next(receiver, now) {
                return Ok(ObjectCalled::SwitchedTo(receiver));
            }
        }
        Ok(ObjectCalled::Received(outcome))
    }

    /// Check every condition of [`KernelCore::call_object`]'s direct
    /// switch for a request of `len` bytes through the object capability
    /// `handle`, answered on `receive` until `deadline`, changing nothing
    /// and auditing nothing: the object capability is live, of kind
    /// `StorageObject`, with one of the invoke rights, and its service is
    /// registered; that service's channel is open, its queue empty, and a
    /// task waits on it; and every condition of [`KernelCore::check_fast`]
    /// on the rest (the caller running, the size limit, the receive
    /// capability and its channel, deadlines, the scheduler's choice).
    /// `Some` is the call and the request's stamp (the capability's badge
    /// and rights, which the embedder delivers with it: the call's
    /// [`FastCall::offer`] carries none); the call's [`FastCall::commit`]
    /// leaves the core exactly as `call_object` leaves it when it hands
    /// the request off and switches ([`ObjectCalled::SwitchedTo`]).
    /// `None`: `call_object` decides, refusing and auditing what it
    /// refuses.
    ///
    /// Nothing is charged in either path: a request handed to a waiting
    /// server is never queued (the queue bound, at least one message, is
    /// never reached by an empty queue).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn check_object_call(
        &mut self,
        caller: TaskId,
        caller_slot: usize,
        handle: CapHandle,
        len: usize,
        receive: CapHandle,
        deadline: Option<Instant>,
        now: impl FnOnce() -> Instant,
    ) -> Option<(FastCall<'_>, Badge)> {
        self.check_fast_via(
            caller,
            caller_slot,
            len,
            receive,
            deadline,
            now,
            ObjectSend(handle),
        )
    }

    /// Make `task` the running task if no deadline is due at `now` and it
    /// is who [`KernelCore::pick_next`] would choose; whether it did.
    fn pick_if_next(&mut self, task: TaskId, now: Instant) -> bool {
        if self.sched.next_deadline().is_some_and(|d| d <= now) {
            return false;
        }
        match self.tasks.slot_of(task) {
            Some(slot) if self.sched.would_pick(slot) => self.sched.pick_next() == Some(slot),
            _ => false,
        }
    }

    /// [`KernelCore::send_to_object`] held back for fault injection, like
    /// [`KernelCore::prepare_send`]: finish with `enqueue` or `discard`.
    pub fn prepare_send_to_object<'b>(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: impl Into<Body<'b>>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<ParkedMessage, KernelError> {
        let (ch, msg) = self.accept_for_object(caller, handle, body.into(), caps, now)?;
        Ok(self.park(ch, msg))
    }

    /// Validate an invocation of `handle`: the channel it reaches and the
    /// stamp it gives.
    fn invoke_target(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<(ChannelRef, Badge, Sender), KernelError> {
        let checked = self
            .check_in(caller, handle, Some(CapKind::StorageObject), Rights::NONE)
            .map(|(task, cap)| {
                let sender = Sender {
                    domain: task.domain,
                    account: task.account,
                    charge: 0,
                };
                (cap.object(), cap.rights(), sender)
            });
        let (object, rights, sender) = match checked {
            Ok(found) => found,
            Err(reason) => return Err(self.refuse(caller, handle, reason, now)),
        };
        if rights.attenuate(INVOKE_RIGHTS) == Rights::NONE {
            let reason = InvalidUse::MissingRights(MissingRights {
                required: INVOKE_RIGHTS,
                held: rights,
            });
            return Err(self.refuse(caller, handle, reason, now));
        }
        let ObjectRef::StorageObject(target) = object else {
            unreachable!("kind checked");
        };
        let ch = self
            .registry
            .get(target.service)
            .map(|r| r.channel)
            .ok_or(KernelError::ServiceNotFound(target.service))?;
        let badge = Badge {
            value: target.badge,
            rights,
        };
        Ok((ch, badge, sender))
    }

    /// Validate an invocation and build its message, moving the carried
    /// capabilities out of the caller's space. Nothing changes on error.
    fn accept_for_object(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        body: Body<'_>,
        caps: &[CapHandle],
        now: Instant,
    ) -> Result<(ChannelRef, Message), KernelError> {
        let (ch, badge, sender) = self.invoke_target(caller, handle, now)?;
        let sender = Sender {
            charge: self.check_delivery(caller, sender.account, ch, body.len(), caps, now)?,
            ..sender
        };
        let seq = self.next_seq();
        let mut msg = self.seal(caller, sender, ch, seq, body, caps);
        msg.badge = Some(badge);
        Ok((ch, msg))
    }
}

/// An object capability with an invoke right, whose service is
/// registered: its channel and the stamp (as [`KernelCore::invoke_target`]
/// finds them, without auditing a refusal).
struct ObjectSend(CapHandle);

impl SendTarget for ObjectSend {
    type Found = Badge;

    #[inline(always)]
    fn find(self, space: &CapSpace, registry: &Registry) -> Option<(ChannelRef, Badge)> {
        let cap = space.live(self.0)?;
        let rights = cap.rights();
        match cap.object() {
            ObjectRef::StorageObject(target) if rights.attenuate(INVOKE_RIGHTS) != Rights::NONE => {
                let channel = registry.get(target.service)?.channel;
                let badge = Badge {
                    value: target.badge,
                    rights,
                };
                Some((channel, badge))
            }
            _ => None,
        }
    }
}
