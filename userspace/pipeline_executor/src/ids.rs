//! Pipeline and stage identifiers.
//!
//! Ids name a pipeline or stage in traces and replies; they confer no
//! authority. Fresh ids come from a process-wide counter, so two specs built
//! in one task never share an id; `from_raw` exists for tests and for ids that
//! arrive over IPC.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

macro_rules! pipeline_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(u64);

        impl $name {
            /// An id not handed out before in this process.
            pub fn new() -> Self {
                $name(NEXT_ID.fetch_add(1, Ordering::Relaxed))
            }

            pub const fn from_raw(raw: u64) -> Self {
                $name(raw)
            }

            pub const fn as_raw(&self) -> u64 {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

pipeline_id!(
    /// One pipeline definition.
    PipelineId,
    "pipeline#"
);
pipeline_id!(
    /// One stage of a pipeline.
    StageId,
    "stage#"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(PipelineId::new(), PipelineId::new());
        assert_ne!(StageId::new(), StageId::new());
        assert_eq!(StageId::from_raw(9).as_raw(), 9);
    }
}
