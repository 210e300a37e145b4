//! PandaGen hardware abstraction layer.
//!
//! Three layers live here:
//!
//! * **Traits** ([`CpuHal`], [`MemoryHal`], [`InterruptHal`], [`TimerHal`],
//!   [`SerialHal`]) that portable code is written against. Block devices
//!   are not here: their trait, `pandagen_abi::BlockDevice`, is shared with
//!   ring-3 code that must not depend on this crate.
//! * **Portable bookkeeping** that has no hardware in it and is unit-tested on
//!   the host: the physical [`frame`] allocator and the [`boot_config`] parser.
//! * **The x86_64 implementation** ([`x86_64`]): serial port, PIC, PIT/TSC,
//!   CPU helpers and the 4-level page-table code. It compiles on any x86_64
//!   host (so `cargo test` builds it), but the port and control-register
//!   helpers only make sense in ring 0 on bare metal; the page-table code is
//!   pure memory manipulation and is tested on the host over fake memory.
#![cfg_attr(not(test), no_std)]

pub mod acpi_sleep;
pub mod boot_config;
pub mod cpu;
pub mod frame;
pub mod interrupt;
pub mod memory;
pub mod serial;
pub mod timer;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use cpu::CpuHal;
pub use frame::{FrameBitmap, FrameError, PhysRange};
pub use interrupt::{InterruptError, InterruptHal};
pub use memory::{MemoryError, MemoryHal};
pub use serial::SerialHal;
pub use timer::TimerHal;
