//! Demo service for the supervision suite: registers as `demo::CRASHER`,
//! serves for 300 ms, then fails on purpose.
#![no_std]
#![no_main]

use core::time::Duration;

use pandagen_process_manager::demo::{DemoService, CRASHER};
use pandagen_rt::abi::KernelError;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut service = DemoService::start(kernel, CRASHER, Some(Duration::from_millis(300)))?;
    let reason = service.run(kernel);
    kernel.exit(reason)
}
