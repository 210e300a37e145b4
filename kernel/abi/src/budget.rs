//! Kernel-memory budgets: what a task may make the kernel hold.
//!
//! Whoever makes a kernel object pays for it. Every task has a budget,
//! granted by its spawner out of the spawner's own (so the budgets of all
//! live tasks never add up to more than the root task was given), and
//! every kernel object it makes is charged to it: channels, capability
//! records, queued messages (their bytes and the capabilities they carry,
//! charged to the sender until received), and the task itself with the
//! frames of its address space. A charge beyond the budget fails with
//! [`ResourceExhausted(MemoryBudget)`](crate::error::Resource::MemoryBudget)
//! (or `FrameBudget`); a task's death returns everything charged to it, and
//! the unused rest of its budget goes back to its spawner.

use serde::{Deserialize, Serialize};

/// Bytes of frames, in 4 KiB pages.
pub const FRAME_BYTES: u64 = 4096;

/// An amount of kernel memory: a budget's limit, or what is charged.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Budget {
    /// Kernel heap bytes: task records, capability records, channels and
    /// queued messages, as the kernel's cost model counts them.
    pub memory: u64,
    /// Physical frames (4 KiB each): address spaces, their page tables and
    /// mapped pages.
    pub frames: u64,
}

impl Budget {
    pub const ZERO: Budget = Budget {
        memory: 0,
        frames: 0,
    };

    pub const fn new(memory: u64, frames: u64) -> Self {
        Budget { memory, frames }
    }

    /// Bytes of kernel memory only.
    pub const fn memory(memory: u64) -> Self {
        Budget { memory, frames: 0 }
    }

    /// Whether `self` is at most `other` in both dimensions.
    pub const fn fits_in(&self, other: &Budget) -> bool {
        self.memory <= other.memory && self.frames <= other.frames
    }

    pub const fn saturating_add(self, other: Budget) -> Budget {
        Budget {
            memory: self.memory.saturating_add(other.memory),
            frames: self.frames.saturating_add(other.frames),
        }
    }

    pub const fn saturating_sub(self, other: Budget) -> Budget {
        Budget {
            memory: self.memory.saturating_sub(other.memory),
            frames: self.frames.saturating_sub(other.frames),
        }
    }
}
