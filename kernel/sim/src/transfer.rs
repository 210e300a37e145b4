//! A capability move described before it is made.
//!
//! [`CapabilityTransfer`] names a capability, the task that holds it and the
//! task that is to receive it; [`CapabilityTransfer::complete`] makes the
//! move through the kernel, with every check and audit record of
//! [`SimulatedKernel::delegate_capability`]: `from` must hold the capability
//! with `TRANSFER`, `to` must be alive, and afterwards only `to` can use it.
//! The typed [`Cap<T>`] keeps its kind across the move, so a transfer
//! cannot turn a `Cap<Channel>` into a `Cap<StorageObject>`.

use pandagen_abi::{Cap, KernelError, TaskId};

use crate::kernel::SimulatedKernel;

/// A pending move of `cap` from `from` to `to` (see the module docs).
#[must_use = "a transfer does nothing until it is completed"]
#[derive(Debug)]
pub struct CapabilityTransfer<T> {
    cap: Cap<T>,
    from: TaskId,
    to: TaskId,
}

impl<T> CapabilityTransfer<T> {
    pub fn new(cap: Cap<T>, from: TaskId, to: TaskId) -> Self {
        CapabilityTransfer { cap, from, to }
    }

    pub fn from_task(&self) -> TaskId {
        self.from
    }

    pub fn to_task(&self) -> TaskId {
        self.to
    }

    /// Move the capability; returns it as `to` now names it. On an error
    /// nothing moved and `from` still holds it.
    pub fn complete(self, kernel: &mut SimulatedKernel) -> Result<Cap<T>, KernelError> {
        let handle = kernel.delegate_capability(&self.cap, self.from, self.to)?;
        Ok(Cap::from_handle(handle).assume_kind())
    }
}
