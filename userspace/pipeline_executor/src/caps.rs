//! Small capability helpers shared by the executor, the stage adapter, the
//! service and the client.

use pandagen_abi::error::ReceiveError;
use pandagen_abi::{Cap, KernelApi, KernelError, Rights};

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

/// True if a receive error means the channel can never deliver again, so a
/// serve loop should stop; timeouts and injected faults are transient.
pub(crate) fn is_fatal_receive_error(error: &KernelError) -> bool {
    matches!(
        error,
        KernelError::ReceiveFailed(ReceiveError::ChannelClosed)
            | KernelError::ChannelError(_)
            | KernelError::InvalidCapability
            | KernelError::InsufficientAuthority
            | KernelError::WrongCapabilityKind { .. }
    )
}

/// The rights of the reply capability a request carries: send only, plus
/// `TRANSFER`, without which the kernel refuses to move a capability in a
/// message.
pub(crate) const REPLY_RIGHTS: Rights =
    Rights::from_bits(Rights::SEND.bits() | Rights::TRANSFER.bits());
