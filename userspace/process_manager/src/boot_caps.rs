//! The initial authority the kernel mints for the root task.

use pandagen_abi::{Cap, CapHandle, Rights};

use crate::descriptor::CapabilityName;

/// The capabilities the process manager received at boot, from which it
/// mints each child's copies. A missing one makes every spawn that names it
/// fail (reported, never silently skipped).
#[derive(Debug, Default)]
pub struct BootCapabilities {
    pub registry: Option<Cap<()>>,
    pub boot_image: Option<Cap<()>>,
    pub kernel_info: Option<Cap<()>>,
    pub serial_input: Option<Cap<()>>,
    pub block_device: Option<Cap<()>>,
}

/// The rights a child's copy keeps: everything the original has except
/// `GRANT`, so a child can use its capability and have it moved to it at
/// spawn, but cannot mint copies for others.
pub const CHILD_RIGHTS: Rights = Rights::from_bits(Rights::ALL.bits() & !Rights::GRANT.bits());

impl BootCapabilities {
    /// From the root task's start-up capabilities, which come in the order
    /// of `pandagen_abi::syscall::ROOT_CAPABILITIES`: registry, boot image,
    /// kernel info, serial input, block device.
    pub fn from_root_handles(handles: &[CapHandle]) -> Self {
        let cap = |i: usize| handles.get(i).map(|h| Cap::from_handle(*h));
        BootCapabilities {
            registry: cap(0),
            boot_image: cap(1),
            kernel_info: cap(2),
            serial_input: cap(3),
            block_device: cap(4),
        }
    }

    /// The original behind a named boot capability, if the process manager
    /// received it. `pm-control` has none: it is not a boot capability
    /// but minted by the process manager itself.
    pub fn original(&self, name: &CapabilityName) -> Option<&Cap<()>> {
        match name {
            CapabilityName::Registry => self.registry.as_ref(),
            CapabilityName::BootImage => self.boot_image.as_ref(),
            CapabilityName::KernelInfo => self.kernel_info.as_ref(),
            CapabilityName::SerialInput => self.serial_input.as_ref(),
            CapabilityName::BlockDevice => self.block_device.as_ref(),
            CapabilityName::PmControl => None,
        }
    }
}
