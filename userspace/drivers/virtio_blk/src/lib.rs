//! # pandagen-virtio-blk
//!
//! A ring-3 virtio-blk driver and the block protocol it serves.
//!
//! * [`protocol`] — requests and answers over channels, the block badge
//!   (in the ABI crate, shared with clients);
//! * [`server`] — serving the protocol for any `BlockDevice`;
//! * [`config`] — the device's configuration space from the `pci`
//!   service's snapshot, for the `virtio-drivers` PCI transport;
//! * [`pool`] and [`hal`] — the crate's HAL over the driver's DMA and
//!   device-memory capabilities;
//! * [`disk`] — the device as a `BlockDevice`.
//!
//! The ring-3 program (`src/bin/virtio_blk.rs`) wires them up.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod config;
pub mod disk;
pub mod hal;
pub mod pool;
pub use pandagen_abi::block_protocol as protocol;
pub mod server;
