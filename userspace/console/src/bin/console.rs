//! The console as a ring-3 program: bind the serial input, wait for the
//! services, announce "system ready" and serve the shell.
#![no_std]
#![no_main]

use pandagen_console::shell::READY_TIMEOUT;
use pandagen_console::{ConsoleCaps, Shell};
use pandagen_rt::abi::KernelError;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let caps = ConsoleCaps::from_startup(&startup.capabilities)
        .ok_or(KernelError::InsufficientAuthority)?;
    let mut shell = Shell::new(caps, startup.task);
    // Bind first, so that input typed while the services come up waits in
    // the channel instead of being lost.
    shell.bind(kernel)?;
    let pending = shell.wait_for_services(kernel, READY_TIMEOUT);
    shell.announce(kernel, &pending);
    shell.run(kernel)
}
