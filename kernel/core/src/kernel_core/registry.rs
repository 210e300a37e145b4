//! Service registration and lookup.
//!
//! Registering an id needs a capability that names it: a
//! `ServiceRegistration` for exactly that id, which the holder of the
//! whole `ServiceRegistry` (the process manager) mints for each service it
//! starts ([`KernelCore::mint_registration`]), or the `ServiceRegistry`
//! itself. A task holding only its own registration cannot take another
//! service's id, and so cannot receive that service's requests or mint its
//! object capabilities.

use alloc::vec::Vec;
use pandagen_abi::error::{ChannelError, Resource};
use pandagen_abi::{CapHandle, CapKind, Instant, KernelError, Rights, ServiceId, TaskId};

use super::KernelCore;
use crate::audit::CapabilityEvent;
use crate::cap_table::{InvalidUse, Mintable, ObjectRef};
use crate::channel::ChannelRef;
use crate::registry::Registration;

/// The rights of a minted `ServiceRegistration`: register, and be moved
/// into the task that will serve the id (not copied).
const REGISTRATION_RIGHTS: Rights =
    Rights::from_bits(Rights::REGISTER.bits() | Rights::TRANSFER.bits());

impl KernelCore {
    /// Register `service` as served by the channel `channel` names.
    /// `authority` must name the id: a `ServiceRegistration` for `service`
    /// or the `ServiceRegistry`, with `REGISTER`. The caller also needs
    /// `RECEIVE` on the channel: only a task that can serve a channel can
    /// advertise it. The entry belongs to `caller` and is removed when it
    /// terminates or the channel closes.
    ///
    /// Errors: refusals as for `lookup` (on either handle), and
    /// `InsufficientAuthority` for a registration naming another id (all
    /// audited); `ServiceAlreadyRegistered(service)`;
    /// `ResourceExhausted(ServiceSlots)`. Cost: O(log s) for s services.
    pub fn register_service(
        &mut self,
        caller: TaskId,
        authority: CapHandle,
        service: ServiceId,
        channel: CapHandle,
        now: Instant,
    ) -> Result<(), KernelError> {
        let info = self.validate(caller, authority, None, Rights::REGISTER, now)?;
        match info.object {
            ObjectRef::ServiceRegistry => {}
            ObjectRef::ServiceRegistration(named) if named == service => {}
            ObjectRef::ServiceRegistration(named) => {
                let reason = InvalidUse::NamesOtherService(named);
                return Err(self.refuse(caller, authority, reason, now));
            }
            other => {
                let reason = InvalidUse::WrongKind {
                    expected: CapKind::ServiceRegistration,
                    found: other.kind(),
                };
                return Err(self.refuse(caller, authority, reason, now));
            }
        }
        let ch = self.receivable(caller, channel, now)?;
        if self.channels.get(ch).is_some_and(|c| c.bound_to.is_some()) {
            // A lookup would make a sender of a channel only the kernel
            // may write to.
            return Err(KernelError::ChannelError(ChannelError::KernelOnly));
        }
        if self.registry.get(service).is_some() {
            return Err(KernelError::ServiceAlreadyRegistered(service));
        }
        if self.registry.len() >= self.config.max_services {
            return Err(KernelError::ResourceExhausted(Resource::ServiceSlots));
        }
        self.registry.insert(Registration {
            service,
            channel: ch,
            owner: caller,
            registered_at: now,
        });
        if let Some(c) = self.channels.get_mut(ch) {
            c.registrations += 1;
            c.resync();
        }
        Ok(())
    }

    /// Withdraw a registration. Only the task that registered it may.
    /// Errors: `TaskNotFound(caller)`, `ServiceNotFound(service)`,
    /// `InsufficientAuthority` (someone else's registration).
    pub fn unregister_service(
        &mut self,
        caller: TaskId,
        service: ServiceId,
    ) -> Result<(), KernelError> {
        if !self.is_alive(caller) {
            return Err(KernelError::TaskNotFound(caller));
        }
        match self.registry.get(service) {
            None => Err(KernelError::ServiceNotFound(service)),
            Some(r) if r.owner != caller => Err(KernelError::InsufficientAuthority),
            Some(_) => {
                if let Some(r) = self.registry.remove(service) {
                    self.release_registration(r.channel);
                }
                Ok(())
            }
        }
    }

    /// The capability in `caller`'s space that lets it register `service`:
    /// the first `ServiceRegistration` naming `service`, else the first
    /// `ServiceRegistry`, holding `REGISTER`. For calls whose ABI does not
    /// name the capability (`register_service` in docs/interfaces.md). O(slots).
    pub fn find_registration(&self, caller: TaskId, service: ServiceId) -> Option<CapHandle> {
        let space = &self.tasks.get(caller)?.space;
        let with = |object: ObjectRef| {
            space
                .iter()
                .find(|(_, c)| c.object() == object && c.rights().contains(Rights::REGISTER))
                .map(|(h, _)| h)
        };
        with(ObjectRef::ServiceRegistration(service)).or_else(|| with(ObjectRef::ServiceRegistry))
    }

    /// Mint, from `caller`'s `ServiceRegistry` capability `registry`
    /// (needing `REGISTER | GRANT`: it issues authority), a
    /// `ServiceRegistration` capability for `service` alone, with
    /// `REGISTER | TRANSFER`, in the caller's space. Audited as
    /// `Granted { from: Some(caller), source }`.
    ///
    /// Errors: refusals as for `lookup`; `ResourceExhausted(CapabilitySlots |
    /// MemoryBudget)`. Cost: O(1).
    pub fn mint_registration(
        &mut self,
        caller: TaskId,
        registry: CapHandle,
        service: ServiceId,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let required = Rights::REGISTER | Rights::GRANT;
        let info = self.validate(
            caller,
            registry,
            Some(CapKind::ServiceRegistry),
            required,
            now,
        )?;
        self.require_room(caller, 1)?;
        let payer = self.pay(caller, crate::budget::CAP_COST)?;
        let object = Mintable::ServiceRegistration(service).into();
        let cap = self.new_record(object, REGISTRATION_RIGHTS, caller, payer);
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: cap.id(),
                kind: CapKind::ServiceRegistration,
                rights: REGISTRATION_RIGHTS,
                from: Some(caller),
                to: caller,
                source: Some(info.id),
            },
        );
        Ok(self.install(caller, cap))
    }

    /// The task holding `service`'s registration. Needs no capability.
    /// Errors: `ServiceNotFound(service)`. O(log s).
    pub fn service_registrant(&self, service: ServiceId) -> Result<TaskId, KernelError> {
        self.registry
            .get(service)
            .map(|r| r.owner)
            .ok_or(KernelError::ServiceNotFound(service))
    }

    /// Find `service` and issue a new send-only capability for its channel
    /// in the caller's space (audited as `Granted { from: None }`). Every
    /// lookup makes its own capability, so that dropping one never takes
    /// away a capability some other part of the caller still uses; callers
    /// drop what they no longer need. Needs no capability: a lookup confers
    /// only the right to send requests, which the server validates.
    ///
    /// Errors: `TaskNotFound(caller)`, `ServiceNotFound(service)`,
    /// `ResourceExhausted(CapabilitySlots)`. Cost: O(log s).
    pub fn lookup_service(
        &mut self,
        caller: TaskId,
        service: ServiceId,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        if !self.is_alive(caller) {
            return Err(KernelError::TaskNotFound(caller));
        }
        let ch = self
            .registry
            .get(service)
            .map(|r| r.channel)
            .ok_or(KernelError::ServiceNotFound(service))?;
        let object = ObjectRef::Channel(ch);
        self.require_room(caller, 1)?;
        let payer = self.pay(caller, crate::budget::CAP_COST)?;
        let cap = self.new_record(object, Rights::SEND, caller, payer);
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: cap.id(),
                kind: CapKind::Channel,
                rights: Rights::SEND,
                from: None,
                to: caller,
                source: None,
            },
        );
        Ok(self.install(caller, cap))
    }

    /// The registration of `service`, if any. O(log s).
    pub fn service(&self, service: ServiceId) -> Option<Registration> {
        self.registry.get(service).copied()
    }

    /// Every registration, in service-id order.
    pub fn services(&self) -> Vec<Registration> {
        self.registry.iter().copied().collect()
    }

    /// Remove the registrations owned by `task` (it is terminating).
    pub(super) fn unregister_owner(&mut self, task: TaskId) {
        for r in self.registry.remove_where(|r| r.owner == task) {
            self.release_registration(r.channel);
        }
    }

    /// Remove the registrations naming `ch` (it closed).
    pub(super) fn unregister_channel(&mut self, ch: ChannelRef) {
        if self.channels.get(ch).is_none_or(|c| c.registrations == 0) {
            return;
        }
        for r in self.registry.remove_where(|r| r.channel == ch) {
            if let Some(c) = self.channels.get_mut(r.channel) {
                c.registrations -= 1;
                c.resync();
            }
        }
    }

    fn release_registration(&mut self, ch: ChannelRef) {
        if let Some(c) = self.channels.get_mut(ch) {
            c.registrations -= 1;
            c.resync();
        }
        self.settle_channel(ch);
    }
}
