//! A test-only transformer for retry scenarios: registers as
//! `FLAKY_TRANSFORMER`, and the first two attempts of every `uppercase`
//! stage fail transiently.
#![no_std]
#![no_main]

use pandagen_rt::abi::KernelError;
use pandagen_rt::Kernel;
use pandagen_transformer::{FailureMode, Transformer, FLAKY_TRANSFORMER};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut transformer = Transformer::new()
        .with_service_id(FLAKY_TRANSFORMER)
        .with_failures(FailureMode::flaky());
    let channel = transformer.register(kernel)?;
    kernel.debug("flaky-transformer: serving");
    Err(transformer.serve(kernel, channel))
}
