//! The pipeline executor as a ring-3 program: register as
//! `services::PIPELINE_EXECUTOR` and run submitted pipelines until the
//! channel goes away.
#![no_std]
#![no_main]

use pandagen_pipeline_executor::PipelineService;
use pandagen_rt::abi::KernelError;
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let channel = PipelineService::register(kernel)?;
    kernel.debug("pipeline-executor: serving");
    Err(PipelineService::new().serve(kernel, channel))
}
