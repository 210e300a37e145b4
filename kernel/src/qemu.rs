//! QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
//!
//! Writing `v` to port 0xf4 makes QEMU exit with status `(v << 1) | 1`:
//! 0x10 gives 33 (pass), 0x11 gives 35 (fail). On a machine without the
//! device the write does nothing and the CPU halts instead.

use x86_64::instructions::port::Port;

/// The verdict handed to the exit device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    Success = 0x10,
    Failure = 0x11,
}

const EXIT_PORT: u16 = 0xf4;

/// Ends the QEMU run with `code`, or halts forever without the device.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device in our QEMU profiles and
    // unassigned on PC hardware; writing it has no other effect.
    unsafe { Port::<u32>::new(EXIT_PORT).write(code as u32) };
    crate::arch::halt_forever()
}
