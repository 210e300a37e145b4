//! The x86_64 implementation of the HAL.
//!
//! [`paging`] is plain memory manipulation and is unit-tested on the host.
//! The rest touches I/O ports, control registers or privileged instructions:
//! it compiles everywhere but may only run in ring 0.

pub mod clock;
pub mod cpu;
pub mod interrupts;
pub mod memory;
pub mod paging;
pub mod pic;
pub mod pit;
pub mod port;
pub mod serial;

pub use clock::X86Timer;
pub use cpu::X86Cpu;
pub use interrupts::X86Interrupts;
pub use memory::X86Memory;
pub use paging::{AddressSpace, FrameSource, PageFlags, PhysWindow, Translation};
pub use serial::Com1;
