//! What the process manager knows about one service before it runs: the
//! `ServiceDescriptor` of docs/interfaces.md, with the capabilities named rather than
//! held (the process manager mints a fresh copy of each for every instance it
//! spawns, so a restart never depends on the previous instance's handles).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use pandagen_abi::device::DeviceResource;
use pandagen_abi::{Budget, IdentityKind, Priority, ServiceId, TrustDomain};

use crate::policy::RestartPolicy;

/// A capability a service's descriptor asks for, by name. The process
/// manager holds the originals (minted by the kernel at boot) and moves a
/// per-instance copy into the child at spawn — except `pm-control`, which
/// is the process manager's own object capability and is minted fresh for
/// each instance.
///
/// There is no "channel to another service" capability: looking a service
/// up needs no authority (the registry hands out send-only capabilities,
/// which cannot be copied or moved on), so a service finds its
/// dependencies with `lookup_service` once the process manager has started
/// them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CapabilityName {
    /// `registry`: register this service's own id, and no other (a
    /// `ServiceRegistration` minted for each instance).
    Registry,
    /// `boot-image`: read and spawn programs from the boot image.
    BootImage,
    /// `boot-files`: read the boot image's data files (`boot.cfg`, the
    /// manifest) and nothing else: the boot image with `READ` alone, so no
    /// program can be spawned with it.
    BootFiles,
    /// `serial-input`: read the serial console.
    SerialInput,
    /// `kernel-info`: kernel introspection (task list, audit log).
    KernelInfo,
    /// `block-device`: the kernel's block device (a RAM disk that outlives
    /// tasks; read and write), where the storage service keeps its journal.
    BlockDevice,
    /// `framebuffer`: the framebuffer's device memory (the kernel's one
    /// capability for it; read and write), for the display service that
    /// takes the screen over from the kernel's early console.
    Framebuffer,
    /// `pm-control`: the process manager's control capability (rights
    /// `CONTROL | TRANSFER`), needed for `pm.start`, `pm.stop`,
    /// `pm.restart` and `pm.crash` (see [`crate::protocol`]).
    PmControl,
    /// A device capability cut from the process manager's root one for
    /// this resource: manifest keys `ports`, `device-memory`, `irq`, `dma`
    /// (see [`crate::manifest`]).
    Device(DeviceResource),
    /// `driver:NAME`: the capability the driver section `NAME` serves its
    /// clients through (handed to the process manager with
    /// `pm.driver-ready`). Left out, with no slot, when the driver has no
    /// device: the service then works without it.
    Driver(ServiceId),
}

impl fmt::Display for CapabilityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityName::Registry => f.write_str("registry"),
            CapabilityName::BootImage => f.write_str("boot-image"),
            CapabilityName::BootFiles => f.write_str("boot-files"),
            CapabilityName::SerialInput => f.write_str("serial-input"),
            CapabilityName::KernelInfo => f.write_str("kernel-info"),
            CapabilityName::BlockDevice => f.write_str("block-device"),
            CapabilityName::Framebuffer => f.write_str("framebuffer"),
            CapabilityName::PmControl => f.write_str("pm-control"),
            CapabilityName::Device(DeviceResource::Ports(r)) => {
                write!(f, "ports {:#x}-{:#x}", r.first, r.last)
            }
            CapabilityName::Device(DeviceResource::Memory(r)) => {
                write!(f, "device-memory {:#x}+{:#x}", r.base, r.len)
            }
            CapabilityName::Device(DeviceResource::Interrupts(l)) => {
                write!(f, "irq {}-{}", l.first, l.last)
            }
            CapabilityName::Device(DeviceResource::Dma { bytes }) => write!(f, "dma {bytes}"),
            CapabilityName::Device(DeviceResource::Framebuffer(r)) => {
                write!(f, "framebuffer {:#x}+{:#x}", r.base, r.len)
            }
            CapabilityName::Driver(service) => write!(f, "driver {service}"),
        }
    }
}

/// When a freshly spawned instance counts as `Running`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Readiness {
    /// Once its service id is registered (`lookup_service` succeeds). The
    /// default: a service is useful to its dependents only when they can
    /// find it.
    Registered,
    /// As soon as the spawn succeeds (for workers that serve no channel).
    Spawned,
}

/// One service of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescriptor {
    pub service_id: ServiceId,
    pub name: String,
    /// The program in the boot image (`bin/<image>` in the ramdisk).
    pub image: String,
    pub restart_policy: RestartPolicy,
    /// Exactly the capabilities the service receives, in this order.
    pub capabilities: Vec<CapabilityName>,
    /// Services that must be `Running` before this one starts.
    pub dependencies: Vec<ServiceId>,
    pub trust_domain: TrustDomain,
    pub kind: IdentityKind,
    pub priority: Priority,
    pub readiness: Readiness,
    /// The kernel memory and frames each instance is granted, out of the
    /// process manager's own budget (manifest keys `memory` and `frames`).
    pub budget: Budget,
    /// For a driver section (manifest key `pci`): the devices it drives
    /// and the DMA allowance it gets with each.
    pub driver: Option<DriverSpec>,
}

/// What a driver section drives (see [`crate::devices`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverSpec {
    /// Any of these (manifest `pci = 1af4:1001, class:01:00`).
    pub matches: Vec<crate::devices::DeviceMatch>,
    /// The section's `dma` key: given after the device's BARs and line.
    pub dma: Option<u64>,
}
