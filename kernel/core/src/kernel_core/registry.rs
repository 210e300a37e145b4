//! Service registration and lookup.

use alloc::vec::Vec;
use pandagen_abi::error::Resource;
use pandagen_abi::{CapHandle, CapKind, Instant, KernelError, Rights, ServiceId, TaskId};

use super::KernelCore;
use crate::audit::CapabilityEvent;
use crate::cap_table::ObjectRef;
use crate::channel::ChannelRef;
use crate::registry::Registration;

impl KernelCore {
    /// Register `service` as served by the channel `channel` names.
    /// Needs a `ServiceRegistry` capability with `REGISTER` (`registry`)
    /// and `RECEIVE` on the channel: only a task that can serve a channel
    /// can advertise it. The entry belongs to `caller` and is removed when
    /// it terminates or the channel closes.
    ///
    /// Errors: refusals as for `lookup` (on either handle);
    /// `ServiceAlreadyRegistered(service)`; `ResourceExhausted(ServiceSlots)`.
    /// Cost: O(log s) for s services.
    pub fn register_service(
        &mut self,
        caller: TaskId,
        registry: CapHandle,
        service: ServiceId,
        channel: CapHandle,
        now: Instant,
    ) -> Result<(), KernelError> {
        self.validate(
            caller,
            registry,
            Some(CapKind::ServiceRegistry),
            Rights::REGISTER,
            now,
        )?;
        let ch = self.receivable(caller, channel, now)?;
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

    /// Find `service` and return a send-only capability for its channel in
    /// the caller's space. If the caller already holds a capability for
    /// that channel with exactly `SEND`, that handle is returned and no
    /// slot is used; otherwise one is issued (audited as
    /// `Granted { from: None }`). Needs no capability: a lookup confers
    /// only the right to send requests, which the server validates.
    ///
    /// Errors: `TaskNotFound(caller)`, `ServiceNotFound(service)`,
    /// `ResourceExhausted(CapabilitySlots)`. Cost: O(log s + slots).
    pub fn lookup_service(
        &mut self,
        caller: TaskId,
        service: ServiceId,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let task = self
            .tasks
            .get(caller)
            .ok_or(KernelError::TaskNotFound(caller))?;
        let ch = self
            .registry
            .get(service)
            .map(|r| r.channel)
            .ok_or(KernelError::ServiceNotFound(service))?;
        let object = ObjectRef::Channel(ch);
        if let Some((h, _)) = task
            .space
            .iter()
            .find(|(_, c)| c.object() == object && c.rights() == Rights::SEND)
        {
            return Ok(h);
        }
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
            }
        }
    }

    fn release_registration(&mut self, ch: ChannelRef) {
        if let Some(c) = self.channels.get_mut(ch) {
            c.registrations -= 1;
        }
        self.settle_channel(ch);
    }
}
