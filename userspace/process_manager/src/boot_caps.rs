//! The initial authority the kernel mints for the root task.

use pandagen_abi::device::DeviceResource;
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
    /// The whole of each device resource, from which each driver's
    /// narrower capabilities are minted.
    pub ports: Option<Cap<()>>,
    pub device_memory: Option<Cap<()>>,
    pub interrupts: Option<Cap<()>>,
    pub dma: Option<Cap<()>>,
    /// The framebuffer's own device memory, on a machine with one: the only
    /// capability that maps it, for the service whose manifest entry lists
    /// `framebuffer`.
    pub framebuffer: Option<Cap<()>>,
}

/// The rights of a driver's device capability: use it (`READ`, `WRITE`,
/// `RECEIVE` for interrupts) and have it moved to it at spawn, never mint
/// from it.
pub const DRIVER_RIGHTS: Rights = Rights::from_bits(
    Rights::READ.bits() | Rights::WRITE.bits() | Rights::RECEIVE.bits() | Rights::TRANSFER.bits(),
);

/// The rights of a `boot-files` capability: read the boot image's data
/// files, never spawn from it.
pub const BOOT_FILES_RIGHTS: Rights =
    Rights::from_bits(Rights::READ.bits() | Rights::TRANSFER.bits());

/// The rights a child's copy keeps: everything the original has except
/// `GRANT`, so a child can use its capability and have it moved to it at
/// spawn, but cannot mint copies for others.
pub const CHILD_RIGHTS: Rights = Rights::from_bits(Rights::ALL.bits() & !Rights::GRANT.bits());

impl BootCapabilities {
    /// From the root task's start-up capabilities, which come in the order
    /// of `pandagen_abi::syscall::ROOT_CAPABILITIES`: registry, boot image,
    /// kernel info, serial input, block device, then ports, device memory,
    /// interrupts and DMA, then the framebuffer where there is one.
    pub fn from_root_handles(handles: &[CapHandle]) -> Self {
        let cap = |i: usize| handles.get(i).map(|h| Cap::from_handle(*h));
        BootCapabilities {
            registry: cap(0),
            boot_image: cap(1),
            kernel_info: cap(2),
            serial_input: cap(3),
            block_device: cap(4),
            ports: cap(5),
            device_memory: cap(6),
            interrupts: cap(7),
            dma: cap(8),
            framebuffer: cap(9),
        }
    }

    /// The root capability a device resource of this kind is minted from.
    pub fn device_root(&self, resource: &DeviceResource) -> Option<&Cap<()>> {
        match resource {
            DeviceResource::Ports(_) => self.ports.as_ref(),
            DeviceResource::Memory(_) => self.device_memory.as_ref(),
            DeviceResource::Interrupts(_) => self.interrupts.as_ref(),
            DeviceResource::Dma { .. } => self.dma.as_ref(),
            // Never cut from a root capability: the kernel made exactly one.
            DeviceResource::Framebuffer(_) => None,
        }
    }

    /// The original behind a named boot capability, if the process manager
    /// received it. `pm-control` has none: it is not a boot capability
    /// but minted by the process manager itself.
    pub fn original(&self, name: &CapabilityName) -> Option<&Cap<()>> {
        match name {
            CapabilityName::Registry => self.registry.as_ref(),
            CapabilityName::BootImage | CapabilityName::BootFiles => self.boot_image.as_ref(),
            CapabilityName::KernelInfo => self.kernel_info.as_ref(),
            CapabilityName::SerialInput => self.serial_input.as_ref(),
            CapabilityName::BlockDevice => self.block_device.as_ref(),
            CapabilityName::Framebuffer => self.framebuffer.as_ref(),
            CapabilityName::PmControl | CapabilityName::Device(_) | CapabilityName::Driver(_) => {
                None
            }
        }
    }
}
