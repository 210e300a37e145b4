//! Demo service for the supervision suite: registers as `demo::STEADY` and
//! answers until the process manager asks it to shut down.
#![no_std]
#![no_main]

use pandagen_process_manager::demo::{DemoService, STEADY};
use pandagen_rt::abi::KernelError;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut service = DemoService::start(kernel, STEADY, None)?;
    let reason = service.run(kernel);
    kernel.exit(reason)
}
