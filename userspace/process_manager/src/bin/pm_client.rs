//! Client task for the supervision suite: follows the crasher through a
//! restart from its own capability table (see `demo::observe_restart`) and
//! exits `Normal` if it saw what a client must see, else with the first
//! deviation as its failure.
#![no_std]
#![no_main]

use core::time::Duration;

use pandagen_process_manager::demo::{observe_restart, CRASHER};
use pandagen_rt::abi::{ExitReason, FailureCause, KernelError};
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    match observe_restart(kernel, CRASHER, Duration::from_secs(10)) {
        Ok(()) => kernel.exit(ExitReason::Normal),
        Err(deviation) => kernel.exit(ExitReason::Failure {
            error: FailureCause::Described(deviation),
        }),
    }
}
