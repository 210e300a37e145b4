//! What the console needs from its kernel beyond [`KernelApi`]: the
//! introspection and serial-console system calls. Each call names the
//! capability that authorises it, so the console uses exactly the authority
//! it was granted.

use pandagen_abi::info::{InfoReply, InfoRequest};
use pandagen_abi::{CapHandle, ChannelId, KernelApi, KernelError};

pub trait ConsoleHost: KernelApi {
    /// Kernel introspection; `capability` is `KernelInfo` with `READ`.
    fn kernel_info(
        &mut self,
        capability: CapHandle,
        request: InfoRequest,
    ) -> Result<InfoReply, KernelError>;
    /// Raw bytes to the terminal; `capability` is `SerialInput` with `WRITE`.
    fn console_write(&mut self, capability: CapHandle, bytes: &[u8]) -> Result<(), KernelError>;
    /// Route typed bytes to `channel`; `capability` is `SerialInput` with
    /// `READ`.
    fn bind_console_input(
        &mut self,
        capability: CapHandle,
        channel: ChannelId,
    ) -> Result<(), KernelError>;
    /// Power off; `capability` is `KernelInfo` with `CONTROL`. Returns only
    /// if refused.
    fn shutdown(&mut self, capability: CapHandle) -> Result<(), KernelError>;
    /// Reset the machine; `capability` is `KernelInfo` with `CONTROL`.
    /// Returns only if refused.
    fn reboot(&mut self, capability: CapHandle) -> Result<(), KernelError>;
}

#[cfg(feature = "ring3")]
impl ConsoleHost for pandagen_rt::Kernel {
    fn kernel_info(
        &mut self,
        capability: CapHandle,
        request: InfoRequest,
    ) -> Result<InfoReply, KernelError> {
        pandagen_rt::Kernel::kernel_info(self, capability, request)
    }

    fn console_write(&mut self, capability: CapHandle, bytes: &[u8]) -> Result<(), KernelError> {
        pandagen_rt::Kernel::console_write(self, capability, bytes)
    }

    fn bind_console_input(
        &mut self,
        capability: CapHandle,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        pandagen_rt::Kernel::bind_console_input(self, capability, channel)
    }

    fn shutdown(&mut self, capability: CapHandle) -> Result<(), KernelError> {
        pandagen_rt::Kernel::shutdown(self, capability)
    }

    fn reboot(&mut self, capability: CapHandle) -> Result<(), KernelError> {
        pandagen_rt::Kernel::reboot(self, capability)
    }
}
