//! The smallest task: it starts and exits normally at once. The leak soak
//! spawns it thousands of times.
#![no_std]
#![no_main]

use pandagen_abi::KernelError;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(_kernel: &mut Kernel) -> Result<(), KernelError> {
    Ok(())
}
