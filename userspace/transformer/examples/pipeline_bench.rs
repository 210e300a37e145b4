//! Host throughput of whole pipelines on the simulated kernel: the
//! transformer and the pipeline executor service as separate tasks, a
//! client submitting the 3-stage blob pipeline (create_blob -> uppercase ->
//! checksum) back to back. Each pipeline is 8 messages: request and
//! response to the executor, request and reply per stage.
//!
//! `cargo run --release -p pandagen-transformer --example pipeline_bench`
//!
//! Each line is `[BENCH] <name> <value> <unit>`, the median of repeated
//! runs, measured with the host clock (the simulation never reads it).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant as HostInstant;

use pandagen_abi::{Duration, TaskDescriptor};
use pandagen_pipeline_executor::{PipelineClient, PipelineService, ServiceStep};
use pandagen_sim::{ChannelServer, Scenario, SimulatedKernel, StepOutcome, StopReason};
use pandagen_transformer::demo::scenarios;
use pandagen_transformer::Transformer;

const PIPELINES: u32 = 2_000;
const RUNS: usize = 7;

/// Pipelines per second for one run of `PIPELINES` submissions.
fn run() -> f64 {
    let mut kernel = SimulatedKernel::new();
    kernel.trace_mut().set_enabled(false);
    let mut scenario = Scenario::new(kernel);

    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .expect("registry");
    scenario
        .spawn(
            TaskDescriptor::new("transformer".into()).with_capability(registry),
            |k, _| {
                let mut transformer = Transformer::new();
                let channel = transformer.register(k)?;
                Ok(ChannelServer::new(
                    channel,
                    move |k: &mut SimulatedKernel, request| {
                        transformer.handle(k, request);
                        Ok(())
                    },
                ))
            },
        )
        .expect("transformer");
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .expect("registry");
    scenario
        .spawn(
            TaskDescriptor::new("pipeline-executor".into()).with_capability(registry),
            |k, _| {
                let channel = PipelineService::register(k)?;
                let mut service = PipelineService::new();
                Ok(
                    move |k: &mut SimulatedKernel| match service.step(k, channel) {
                        ServiceStep::Progress => StepOutcome::Progress,
                        ServiceStep::Idle => StepOutcome::Idle,
                        ServiceStep::WaitUntil(t) => StepOutcome::WaitUntil(t),
                    },
                )
            },
        )
        .expect("executor");

    let happy = scenarios()
        .into_iter()
        .next()
        .expect("the happy path comes first");
    let done = Rc::new(Cell::new(0u32));
    let counter = done.clone();
    scenario
        .spawn(TaskDescriptor::new("client".into()), move |k, _| {
            let client = PipelineClient::connect(k)?;
            let mut pending = None;
            Ok(move |k: &mut SimulatedKernel| {
                if counter.get() == PIPELINES {
                    return StepOutcome::Idle;
                }
                match pending.take() {
                    None => {
                        let sent = client.send(k, &happy.pipeline, happy.input.clone(), Vec::new());
                        pending = Some(sent.expect("submission sent"));
                    }
                    Some(p) => match client.poll(k, &p).expect("no faults, no errors") {
                        Some(result) => {
                            assert!((happy.check)(&happy.pipeline, &result).is_ok());
                            for (_, cap) in result.capabilities {
                                let _ = pandagen_abi::KernelApi::drop_capability(k, cap);
                            }
                            counter.set(counter.get() + 1);
                        }
                        None => pending = Some(p),
                    },
                }
                StepOutcome::Progress
            })
        })
        .expect("client");

    let start = HostInstant::now();
    let report = scenario.run_for(Duration::from_secs(3600));
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(report.stop, StopReason::Quiescent);
    assert_eq!(done.get(), PIPELINES);
    f64::from(PIPELINES) / elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    run();
    let rate = median((0..RUNS).map(|_| run()).collect());
    println!("[BENCH] sim_pipeline_3_stages {rate:.0} pipelines/s");
    println!(
        "[BENCH] sim_pipeline_3_stages_messages {:.0} msgs/s",
        rate * 8.0
    );
}
