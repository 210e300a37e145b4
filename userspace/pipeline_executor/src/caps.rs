//! Small capability helpers shared by the executor, the stage adapter, the
//! service and the client.

use pandagen_abi::{Cap, KernelApi, Rights};

/// Release capabilities this task holds. A capability that is already
/// invalid is gone, which is the goal, so errors are ignored.
pub(crate) fn drop_all<K: KernelApi>(
    kernel: &mut K,
    capabilities: impl IntoIterator<Item = Cap<()>>,
) {
    for capability in capabilities {
        let _ = kernel.drop_capability(capability);
    }
}

/// The rights of the reply capability a request carries: send only, plus
/// `TRANSFER`, without which the kernel refuses to move a capability in a
/// message.
pub(crate) const REPLY_RIGHTS: Rights =
    Rights::from_bits(Rights::SEND.bits() | Rights::TRANSFER.bits());
