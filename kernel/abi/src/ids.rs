//! Identifiers. None of them is authority: holding a `TaskId` or a
//! `ServiceId` lets a task *name* something, and the kernel still checks a
//! capability before anything happens.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

use crate::cap::CapHandle;

/// Define a plain identifier: a `u64` newtype with `from_raw`/`as_raw`,
/// ordering, serde, and a `Display` of `<prefix><number>`. Exported so that
/// services name their own objects the same way (storage's object and
/// version ids). The calling crate needs `serde` as a dependency.
#[macro_export]
macro_rules! plain_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        pub struct $name(u64);

        impl $name {
            pub const fn from_raw(raw: u64) -> Self {
                $name(raw)
            }

            pub const fn as_raw(&self) -> u64 {
                self.0
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::write!(f, ::core::concat!($prefix, "{}"), self.0)
            }
        }
    };
}

plain_id!(
    /// A task, as numbered by the kernel's task table. Never reused.
    TaskId,
    "task#"
);
plain_id!(
    /// One execution of a task (see `identity`). Never reused, even after
    /// the task terminates and a new one takes its place.
    ExecutionId,
    "exec#"
);
plain_id!(
    /// A message, for request/response correlation.
    MessageId,
    "msg#"
);
plain_id!(
    /// A service, named by identity rather than by path.
    ServiceId,
    "svc#"
);

/// The sender the kernel stamps on messages it originates itself (exit
/// notifications). No task ever has this id: task ids start at 1.
pub const KERNEL_TASK: TaskId = TaskId::from_raw(0);

/// Fresh message and service ids come from one process-wide counter. A
/// ring-3 runtime seeds it with a per-task base (see [`seed_id_counter`]) so
/// that ids from different tasks do not collide.
static NEXT_LOCAL_ID: AtomicU64 = AtomicU64::new(1);

/// Start this process's message/service id counter at `base` (used by the
/// ring-3 runtime with a base derived from its task id). Ids only ever grow:
/// a base below the current value is ignored.
pub fn seed_id_counter(base: u64) {
    NEXT_LOCAL_ID.fetch_max(base, Ordering::Relaxed);
}

fn next_local_id() -> u64 {
    NEXT_LOCAL_ID.fetch_add(1, Ordering::Relaxed)
}

impl MessageId {
    /// A message id not handed out before in this process.
    pub fn new() -> Self {
        MessageId(next_local_id())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceId {
    /// A service id not handed out before in this process. System services
    /// use fixed ids made with [`ServiceId::from_raw`] instead.
    pub fn new() -> Self {
        // The top bit keeps generated ids apart from the well-known ones.
        ServiceId(next_local_id() | 1 << 63)
    }
}

impl Default for ServiceId {
    fn default() -> Self {
        Self::new()
    }
}

impl ExecutionId {
    /// The id of an identity no kernel has recorded yet. Execution ids have
    /// one source, the kernel that records the identity (it issues them
    /// from 1, never reusing one), so an [`IdentityMetadata`] a caller
    /// builds carries this until `create_identity` answers with the real
    /// one.
    ///
    /// [`IdentityMetadata`]: crate::IdentityMetadata
    pub const UNASSIGNED: ExecutionId = ExecutionId(0);

    /// Whether a kernel issued this id (it is not [`Self::UNASSIGNED`]).
    pub const fn is_assigned(&self) -> bool {
        self.0 != 0
    }
}

/// A channel, as named by one task: the handle of the channel capability in
/// that task's capability space. The same channel has different `ChannelId`s
/// in different tasks, and a `ChannelId` means nothing in another task's
/// space — which is what makes it safe to be a plain number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelId(CapHandle);

impl ChannelId {
    pub const fn from_handle(handle: CapHandle) -> Self {
        ChannelId(handle)
    }

    pub const fn handle(&self) -> CapHandle {
        self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chan@{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_unique() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert_ne!(a, b);
        assert_ne!(ServiceId::new(), ServiceId::new());
        assert!(!ExecutionId::UNASSIGNED.is_assigned());
        assert!(ExecutionId::from_raw(1).is_assigned());
    }

    #[test]
    fn generated_service_ids_never_equal_well_known_ones() {
        let generated = ServiceId::new();
        assert!(generated.as_raw() >> 63 == 1);
        assert_ne!(
            generated,
            ServiceId::from_raw(generated.as_raw() & !(1 << 63))
        );
    }

    #[test]
    fn seeding_never_moves_the_counter_backwards() {
        let before = MessageId::new().as_raw();
        seed_id_counter(0);
        assert!(MessageId::new().as_raw() > before);
    }
}
