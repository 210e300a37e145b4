//! The panic handler.
//!
//! A panic prints where and why. In the test modes (`ktest`, `suite`,
//! `bench`) it then ends the QEMU run with the failure code, so a harness
//! sees the failure at once instead of waiting for its timeout. In `system`
//! mode it halts with interrupts off, leaving the machine as it was for a
//! debugger (`cargo xtask run --gdb`) and the message on the console.

use crate::{boot_mode, qemu};
use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    match info.location() {
        Some(loc) => crate::console::emergency(format_args!(
            "\nKERNEL PANIC at {}:{}:{}: {}\n",
            loc.file(),
            loc.line(),
            loc.column(),
            info.message()
        )),
        None => crate::console::emergency(format_args!("\nKERNEL PANIC: {}\n", info.message())),
    }
    stop_after_fatal_error()
}

/// The common end of every fatal error (panic or unexpected exception).
pub fn stop_after_fatal_error() -> ! {
    if boot_mode::is_test() {
        crate::console::emergency(format_args!(
            "fatal kernel error in test mode: exiting QEMU with failure\n"
        ));
        qemu::exit(qemu::ExitCode::Failure)
    }
    crate::arch::halt_forever()
}
