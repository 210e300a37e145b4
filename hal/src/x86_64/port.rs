//! `in` and `out` of 1, 2 or 4 bytes, for ring-3 drivers' checked port
//! calls (the kernel checks the caller's I/O-port capability first).

use x86_64::instructions::port::Port;

/// Reads `width` bytes (1, 2 or 4; anything else reads nothing and returns
/// 0) from `port`.
///
/// # Safety
/// Ring 0; `port` must be one a device capability allows (reading a port
/// can have side effects on its device).
pub unsafe fn read(port: u16, width: u8) -> u32 {
    // SAFETY: forwarded to the caller.
    unsafe {
        match width {
            1 => u32::from(Port::<u8>::new(port).read()),
            2 => u32::from(Port::<u16>::new(port).read()),
            4 => Port::<u32>::new(port).read(),
            _ => 0,
        }
    }
}

/// Writes the low `width` bytes (1, 2 or 4; anything else writes nothing)
/// of `value` to `port`.
///
/// # Safety
/// Ring 0; `port` must be one a device capability allows.
pub unsafe fn write(port: u16, width: u8, value: u32) {
    // SAFETY: forwarded to the caller.
    unsafe {
        match width {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            4 => Port::<u32>::new(port).write(value),
            _ => {}
        }
    }
}
