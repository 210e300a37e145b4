//! Capability operations: mint, lookup, grant, delegate, clone, drop.
//!
//! Every use is validated (the caller is alive, the handle names a record
//! in the caller's own space with the current generation, the kind and the
//! rights suffice) and every refusal is audited as `InvalidUseAttempt`.
//! All operations are atomic: on error nothing changed except the audit
//! record of the refusal.

use alloc::vec::Vec;
use pandagen_abi::{CapHandle, CapKind, Instant, KernelError, Rights, TaskId};

use super::KernelCore;
use crate::audit::CapabilityEvent;
use crate::cap_table::{CapInfo, InvalidUse, Mintable, ObjectRef};

impl KernelCore {
    /// Kernel only: create a capability out of nothing for `owner`. This is
    /// how the root task receives its initial authority (the service
    /// registry, the boot image, kernel info, the serial console) and how
    /// a spawner can be given a `Task` capability for its child. Audited as
    /// `Granted { from: None }`. Nothing reachable from ring 3 leads here:
    /// the syscall layer only calls it while building tasks.
    ///
    /// Errors: `TaskNotFound(owner)`, `ResourceExhausted(CapabilitySlots)`.
    /// Cost: O(1).
    pub fn mint(
        &mut self,
        owner: TaskId,
        object: Mintable,
        rights: Rights,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        self.require_room(owner, 1)?;
        let cap = self.new_record(object.into(), rights, owner);
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: cap.id(),
                kind: cap.kind(),
                rights,
                from: None,
                to: owner,
                source: None,
            },
        );
        Ok(self.install(owner, cap))
    }

    /// Validate that `caller` may use `handle` as a `expected` capability
    /// with at least `required` rights, and describe it. A refusal is
    /// audited as `InvalidUseAttempt` and returned as `TaskNotFound`,
    /// `InvalidCapability`, `WrongCapabilityKind` or
    /// `InsufficientAuthority`. Cost: O(1).
    pub fn lookup(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        expected: CapKind,
        required: Rights,
        now: Instant,
    ) -> Result<CapInfo, KernelError> {
        self.validate(caller, handle, Some(expected), required, now)
    }

    /// Describe `handle` in `task`'s space without checking rights and
    /// without auditing (for display and for kernel-internal decisions
    /// that are not uses). O(1).
    pub fn inspect(&self, task: TaskId, handle: CapHandle) -> Option<CapInfo> {
        self.tasks
            .get(task)?
            .space
            .get(handle)
            .ok()
            .map(|c| c.info())
    }

    /// The capabilities in `task`'s space, in slot order (the console's
    /// `caps` command). O(slots).
    pub fn list_caps(&self, task: TaskId) -> Result<Vec<(CapHandle, CapInfo)>, KernelError> {
        let t = self
            .tasks
            .get(task)
            .ok_or(KernelError::TaskNotFound(task))?;
        Ok(t.space.iter().map(|(h, c)| (h, c.info())).collect())
    }

    /// Number of capabilities in `task`'s space (0 if it is not alive).
    pub fn cap_count(&self, task: TaskId) -> usize {
        self.tasks.get(task).map_or(0, |t| t.space.len())
    }

    /// The first capability in `task`'s space of `kind` holding at least
    /// `required` rights. For calls whose ABI does not name the capability
    /// (`register_service` in docs/interfaces.md finds the caller's registry
    /// capability this way). O(slots).
    pub fn find_cap(&self, task: TaskId, kind: CapKind, required: Rights) -> Option<CapHandle> {
        self.tasks
            .get(task)?
            .space
            .iter()
            .find(|(_, c)| c.kind() == kind && c.rights().contains(required))
            .map(|(h, _)| h)
    }

    /// Check that `caller` may put capabilities into `target`: it is the
    /// caller itself, or the caller holds a `Task` capability naming
    /// `target` with `SEND`. A task id is a guessable number; without this
    /// rule any task could fill any other task's capability space. A
    /// refusal is audited as `InvalidUseAttempt` on `handle` (the
    /// capability being moved) with reason `NoAuthorityOver(target)`.
    /// O(slots).
    fn check_target(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        target: TaskId,
        now: Instant,
    ) -> Result<(), KernelError> {
        if caller == target {
            return Ok(());
        }
        let object = ObjectRef::Task(target);
        let authorised = self.tasks.get(caller).is_some_and(|t| {
            t.space
                .iter()
                .any(|(_, c)| c.object() == object && c.rights().contains(Rights::SEND))
        });
        if authorised {
            Ok(())
        } else {
            Err(self.refuse(caller, handle, InvalidUse::NoAuthorityOver(target), now))
        }
    }

    /// Give `target` a copy of the capability `handle` names, with the
    /// same rights. Needs `GRANT` on it, and authority over `target` (see
    /// `check_target`: a `Task` capability naming it with `SEND`). The
    /// caller keeps its capability.
    /// Audited as `Granted { from: Some(caller), source }`, plus
    /// `CrossDomainDelegation` if the two tasks are in different trust
    /// domains. Returns the copy's handle in `target`'s space.
    ///
    /// Errors: refusals as for [`KernelCore::lookup`], `InsufficientAuthority`
    /// without authority over `target`, `TaskNotFound(target)`,
    /// `ResourceExhausted(CapabilitySlots)`. Cost: O(slots).
    pub fn grant(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        target: TaskId,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let info = self.validate(caller, handle, None, Rights::GRANT, now)?;
        self.check_target(caller, handle, target, now)?;
        self.require_room(target, 1)?;
        let cap = self.new_record(info.object, info.rights, target);
        let id = cap.id();
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: id,
                kind: info.kind(),
                rights: info.rights,
                from: Some(caller),
                to: target,
                source: Some(info.id),
            },
        );
        if let Some(from_domain) = self.domain_of(caller) {
            self.audit_domains(id, caller, from_domain, target, now);
        }
        Ok(self.install(target, cap))
    }

    /// Move the capability `handle` names to `target`: the caller loses it
    /// (its handle goes stale) and `target` gets it with the same id and
    /// rights. Needs `TRANSFER`, and authority over `target` as for
    /// [`KernelCore::grant`]. Audited as `Delegated { via: None }`, plus
    /// `CrossDomainDelegation` across trust domains. Returns the handle in
    /// `target`'s space. Errors as for [`KernelCore::grant`]. Cost: O(slots).
    pub fn delegate(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        target: TaskId,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        self.validate(caller, handle, None, Rights::TRANSFER, now)?;
        self.check_target(caller, handle, target, now)?;
        self.delegate_all(caller, &[handle], target, now)
            .map(|handles| handles[0])
    }

    /// Move several capabilities from `caller` into `target` at once, all
    /// or nothing, *without* checking authority over `target`: the
    /// kernel's own move, for a spawner filling the task it is creating
    /// ([`KernelCore::spawn`]) and for a host harness acting as the kernel
    /// (the simulator's reference-form `delegate_capability`). No system
    /// call reaches it for an existing task; [`KernelCore::delegate`] is
    /// the checked form. Each capability needs `TRANSFER`; the same handle
    /// may not appear twice. Returns the new handles in order.
    /// Cost: O(k²) for k handles (duplicate check; k is small).
    pub fn delegate_all(
        &mut self,
        caller: TaskId,
        handles: &[CapHandle],
        target: TaskId,
        now: Instant,
    ) -> Result<Vec<CapHandle>, KernelError> {
        self.validate_moves(caller, handles, now)?;
        let needed = if caller == target { 0 } else { handles.len() };
        self.require_room(target, needed)?;
        let from_domain = self.domain_of(caller).unwrap_or(0);
        let mut out = Vec::with_capacity(handles.len());
        for &h in handles {
            let Some(cap) = self.tasks.get_mut(caller).and_then(|t| t.space.remove(h)) else {
                unreachable!("handles validated above");
            };
            let (id, kind) = (cap.id(), cap.kind());
            out.push(self.install(target, cap));
            self.audit.record(
                now,
                CapabilityEvent::Delegated {
                    cap: id,
                    kind,
                    from: caller,
                    to: target,
                    via: None,
                },
            );
            self.audit_domains(id, caller, from_domain, target, now);
        }
        Ok(out)
    }

    /// Check that every handle may be moved out of `caller`'s space
    /// (`TRANSFER`) and that none repeats. Refusals are audited.
    pub(super) fn validate_moves(
        &mut self,
        caller: TaskId,
        handles: &[CapHandle],
        now: Instant,
    ) -> Result<(), KernelError> {
        for (i, &h) in handles.iter().enumerate() {
            self.validate(caller, h, None, Rights::TRANSFER, now)?;
            if handles[..i].contains(&h) {
                return Err(self.refuse(caller, h, InvalidUse::DuplicateHandle, now));
            }
        }
        Ok(())
    }

    /// An explicit copy of the capability `handle` names, in the caller's
    /// own space, with rights attenuated to `rights` (the copy holds the
    /// intersection: rights only shrink). Needs `GRANT`, because a copy can
    /// then be delegated: without that requirement clone + delegate would
    /// be a grant. Audited as `Cloned`. Cost: O(1).
    pub fn clone_cap(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        rights: Rights,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let info = self.validate(caller, handle, None, Rights::GRANT, now)?;
        self.require_room(caller, 1)?;
        let attenuated = info.rights.attenuate(rights);
        let cap = self.new_record(info.object, attenuated, caller);
        self.audit.record(
            now,
            CapabilityEvent::Cloned {
                cap: cap.id(),
                source: info.id,
                owner: caller,
                rights: attenuated,
            },
        );
        Ok(self.install(caller, cap))
    }

    /// Release the capability `handle` names; it becomes invalid. Needs no
    /// right. Audited as `Dropped`. Dropping the last receive capability of
    /// a channel closes it (see [`crate::channel`]). Cost: O(1) plus any
    /// messages a closing channel discards.
    pub fn drop_cap(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<(), KernelError> {
        self.validate(caller, handle, None, Rights::NONE, now)?;
        let Some(cap) = self
            .tasks
            .get_mut(caller)
            .and_then(|t| t.space.remove(handle))
        else {
            unreachable!("handle validated above");
        };
        self.audit.record(
            now,
            CapabilityEvent::Dropped {
                cap: cap.id(),
                owner: caller,
            },
        );
        self.retire(cap, now);
        Ok(())
    }
}
