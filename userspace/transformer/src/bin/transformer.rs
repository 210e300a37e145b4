//! The transformer as a ring-3 program: register as
//! `services::TRANSFORMER` and run stage requests until the channel goes
//! away.
#![no_std]
#![no_main]

use pandagen_rt::abi::KernelError;
use pandagen_rt::Kernel;
use pandagen_transformer::Transformer;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut transformer = Transformer::new();
    let channel = transformer.register(kernel)?;
    kernel.debug("transformer: serving");
    Err(transformer.serve(kernel, channel))
}
