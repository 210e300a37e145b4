//! Pipeline suite: the transformer, a flaky transformer and the pipeline
//! executor run as ring-3 services; this root task submits the demo
//! pipelines (`pandagen_transformer::demo`, the same ones the simulator
//! tests run) through real system calls and checks each outcome.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec;
use pandagen_abi::services::{PIPELINE_EXECUTOR, TRANSFORMER};
use pandagen_abi::{Duration, KernelApi, KernelError};
use pandagen_pipeline_executor::PipelineClient;
use pandagen_rt::Kernel;
use pandagen_scenarios::{spawn, startup_caps, wait_registered, Tally};
use pandagen_transformer::demo::scenarios;
use pandagen_transformer::FLAKY_TRANSFORMER;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let root_caps = startup_caps(&info);
    let mut tally = Tally::default();
    let exits = kernel.create_channel()?;

    let services = [
        ("transformer", TRANSFORMER),
        ("flaky_transformer", FLAKY_TRANSFORMER),
        ("pipeline_executor", PIPELINE_EXECUTOR),
    ];
    for (image, service) in services {
        // Each service gets a registration for its own id, and nothing
        // else.
        let started = kernel
            .mint_registration_capability(&root_caps[0], service)
            .and_then(|registry| spawn(kernel, image, image, vec![registry.erase()], exits))
            .and_then(|_| wait_registered(kernel, service))
            .map_err(|e| format!("{image} did not start and register: {e}"));
        tally.check(&format!("pipeline/{image}_starts"), started);
    }

    match PipelineClient::connect(kernel) {
        Ok(client) => {
            let client = client.with_timeout(Duration::from_secs(30));
            for demo in scenarios() {
                let verdict = client
                    .submit(kernel, &demo.pipeline, demo.input.clone(), vec![])
                    .map_err(|e| format!("submission failed: {e:?}"))
                    .and_then(|result| {
                        let verdict = (demo.check)(&demo.pipeline, &result);
                        for (_, capability) in result.capabilities {
                            let _ = kernel.drop_capability(capability);
                        }
                        verdict
                    });
                tally.check(demo.name, verdict);
            }
        }
        Err(e) => tally.check("pipeline/connect", Err(format!("{e}"))),
    }
    tally.finish(kernel)
}
