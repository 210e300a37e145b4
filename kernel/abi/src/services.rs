//! Well-known service ids of the system services, so that a manifest, a
//! client and a server agree without a global namespace of paths.

use crate::ids::ServiceId;

pub const PROCESS_MANAGER: ServiceId = ServiceId::from_raw(1);
pub const STORAGE: ServiceId = ServiceId::from_raw(2);
pub const PIPELINE_EXECUTOR: ServiceId = ServiceId::from_raw(3);
/// The demo stage handler that transforms blobs in pipelines.
pub const TRANSFORMER: ServiceId = ServiceId::from_raw(4);
pub const CONSOLE: ServiceId = ServiceId::from_raw(5);
/// The PS/2 keyboard driver (userspace/drivers/ps2_keyboard).
pub const KEYBOARD: ServiceId = ServiceId::from_raw(6);
/// The PCI bus service (`userspace/drivers/pci`).
pub const PCI: ServiceId = ServiceId::from_raw(20);
/// The virtio-blk disk driver (`userspace/drivers/virtio_blk`).
pub const VIRTIO_BLK: ServiceId = ServiceId::from_raw(21);
