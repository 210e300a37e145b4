//! The service registry: `ServiceId` → the channel that serves it.
//!
//! Registering needs authority (checked by `KernelCore::register_service`);
//! looking up does not, but only yields a send-only capability. An entry
//! belongs to the task that registered it and disappears when that task
//! dies or the channel closes. Lookups are O(log n) in the number of
//! services (a [`SortedMap`]: deterministic iteration, no hashing, and
//! memory that depends only on how many services are registered).

use crate::sorted_map::SortedMap;
use alloc::vec::Vec;
use pandagen_abi::{Instant, ServiceId, TaskId};

use crate::channel::ChannelRef;

/// One registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    pub service: ServiceId,
    pub channel: ChannelRef,
    pub owner: TaskId,
    pub registered_at: Instant,
}

pub(crate) struct Registry {
    entries: SortedMap<ServiceId, Registration>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            entries: SortedMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, service: ServiceId) -> Option<&Registration> {
        self.entries.get(&service)
    }

    /// Insert unless taken; returns false if `service` is already there.
    pub(crate) fn insert(&mut self, reg: Registration) -> bool {
        if self.entries.contains_key(&reg.service) {
            return false;
        }
        self.entries.insert(reg.service, reg);
        true
    }

    pub(crate) fn remove(&mut self, service: ServiceId) -> Option<Registration> {
        self.entries.remove(&service)
    }

    /// Remove every entry matching `pred`, returning them (in id order).
    pub(crate) fn remove_where(
        &mut self,
        mut pred: impl FnMut(&Registration) -> bool,
    ) -> Vec<Registration> {
        let doomed: Vec<ServiceId> = self
            .entries
            .values()
            .filter(|r| pred(r))
            .map(|r| r.service)
            .collect();
        doomed
            .into_iter()
            .filter_map(|s| self.entries.remove(&s))
            .collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.entries.values()
    }
}
