//! A pipeline scenario on the SimulatedKernel: the transformer and the
//! pipeline executor service each run as their own task, stepped by the
//! scenario runner, and a client task submits one pipeline through the
//! typed client and keeps the result.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::services::{PIPELINE_EXECUTOR, TRANSFORMER};
use pandagen_abi::{Cap, CapKind, Duration, KernelApi, TaskDescriptor, TaskId};
use pandagen_pipeline_executor::{
    ClientError, PipelineClient, PipelineService, PipelineSpec, PipelineSubmission, RetryPolicy,
    ServiceStep, StageSpec, TypedPayload,
};
use pandagen_sim::{ChannelServer, FaultPlan, RunReport, Scenario, SimulatedKernel, StepOutcome};
use pandagen_transformer::{schemas, Action, FailureMode, Transformer};

pub type Outcome = Rc<RefCell<Option<Result<PipelineSubmission, ClientError>>>>;

pub struct World {
    pub scenario: Scenario,
    pub transformer: Rc<RefCell<Transformer>>,
    pub transformer_task: TaskId,
    pub executor_task: TaskId,
    pub client_task: TaskId,
    pub outcome: Outcome,
    pub report: RunReport,
}

pub struct Setup {
    pub plan: FaultPlan,
    pub failures: FailureMode,
    pub stage_timeout: Duration,
    pub client_timeout: Duration,
    /// Initial capabilities the client creates (fresh channels), by label.
    pub initial_tokens: Vec<u64>,
    /// Crash the transformer once it has handled this many messages.
    pub crash_transformer_after: Option<u32>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            plan: FaultPlan::new(),
            failures: FailureMode::none(),
            stage_timeout: Duration::from_millis(500),
            client_timeout: Duration::from_secs(60),
            initial_tokens: Vec::new(),
            crash_transformer_after: None,
        }
    }
}

fn outcome_of(step: ServiceStep) -> StepOutcome {
    match step {
        ServiceStep::Progress => StepOutcome::Progress,
        ServiceStep::Idle => StepOutcome::Idle,
        ServiceStep::WaitUntil(t) => StepOutcome::WaitUntil(t),
    }
}

/// Build the world, submit `pipeline` with `input`, and run to quiescence
/// (or two virtual minutes).
pub fn run(setup: Setup, pipeline: PipelineSpec, input: TypedPayload) -> World {
    let mut scenario = Scenario::new(SimulatedKernel::with_fault_plan(setup.plan.clone()));

    let transformer = Rc::new(RefCell::new(
        Transformer::new().with_failures(setup.failures),
    ));
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    let server_state = transformer.clone();
    let transformer_task = scenario
        .spawn(
            TaskDescriptor::new("transformer".into()).with_capability(registry),
            move |k, _| {
                let channel = server_state.borrow().register(k)?;
                Ok(ChannelServer::new(
                    channel,
                    move |k: &mut SimulatedKernel, request| {
                        server_state.borrow_mut().handle(k, request);
                        Ok(())
                    },
                ))
            },
        )
        .unwrap()
        .task_id;
    if let Some(count) = setup.crash_transformer_after {
        let plan = setup
            .plan
            .clone()
            .crash_after_messages(transformer_task, count);
        scenario.kernel_mut().set_fault_plan(plan);
    }

    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    let stage_timeout = setup.stage_timeout;
    let executor_task = scenario
        .spawn(
            TaskDescriptor::new("pipeline-executor".into()).with_capability(registry),
            move |k, _| {
                let channel = PipelineService::register(k)?;
                let mut service = PipelineService::new().with_stage_timeout(stage_timeout);
                Ok(move |k: &mut SimulatedKernel| outcome_of(service.step(k, channel)))
            },
        )
        .unwrap()
        .task_id;

    let outcome: Outcome = Rc::new(RefCell::new(None));
    let sink = outcome.clone();
    let client_timeout = setup.client_timeout;
    let tokens = setup.initial_tokens;
    let client_task = scenario
        .spawn(TaskDescriptor::new("client".into()), move |k, _| {
            let client = PipelineClient::connect(k)?.with_timeout(client_timeout);
            let mut initial = Vec::new();
            for label in tokens {
                initial.push((label, Cap::from(k.create_channel()?)));
            }
            let pending = client.send(k, &pipeline, input, initial);
            Ok(move |k: &mut SimulatedKernel| {
                if sink.borrow().is_some() {
                    return StepOutcome::Idle;
                }
                let polled = match &pending {
                    Ok(pending) => client.poll(k, pending),
                    Err(e) => Err(e.clone()),
                };
                match polled {
                    Ok(None) => match &pending {
                        Ok(p) => StepOutcome::WaitUntil(p.deadline),
                        Err(_) => StepOutcome::Idle,
                    },
                    Ok(Some(result)) => {
                        *sink.borrow_mut() = Some(Ok(result));
                        StepOutcome::Progress
                    }
                    Err(e) => {
                        *sink.borrow_mut() = Some(Err(e));
                        StepOutcome::Progress
                    }
                }
            })
        })
        .unwrap()
        .task_id;

    let report = scenario.run_for(Duration::from_secs(120));
    World {
        scenario,
        transformer,
        transformer_task,
        executor_task,
        client_task,
        outcome,
        report,
    }
}

impl World {
    pub fn kernel(&self) -> &SimulatedKernel {
        self.scenario.kernel()
    }

    pub fn submission(&self) -> std::cell::Ref<'_, PipelineSubmission> {
        std::cell::Ref::map(self.outcome.borrow(), |o| match o {
            Some(Ok(s)) => s,
            other => panic!("no pipeline result: {other:?}"),
        })
    }

    /// Capabilities `task` holds, by kind.
    pub fn caps_of(&self, task: TaskId) -> Vec<CapKind> {
        self.kernel()
            .capabilities_of(task)
            .into_iter()
            .map(|(_, info)| info.kind())
            .collect()
    }

    /// The transformer's baseline: its registry capability and its service
    /// channel. Anything more would be authority kept from a request.
    pub fn assert_transformer_holds_nothing_extra(&self) {
        let mut caps = self.caps_of(self.transformer_task);
        caps.sort_by_key(|k| format!("{k}"));
        assert_eq!(
            caps,
            [CapKind::Channel, CapKind::ServiceRegistry],
            "transformer capabilities"
        );
    }

    /// The executor's baseline: registry, service channel, and the cached
    /// lookup of the transformer (if it ever sent a stage request). No
    /// reply channels, no lent or returned capabilities.
    pub fn assert_executor_holds_nothing_extra(&self) {
        let caps = self.caps_of(self.executor_task);
        let channels = caps.iter().filter(|k| **k == CapKind::Channel).count();
        assert!(caps.contains(&CapKind::ServiceRegistry));
        assert!(channels <= 2, "executor holds {caps:?}");
        assert_eq!(caps.len(), channels + 1, "executor holds {caps:?}");
    }
}

pub fn stage(name: &str, action: Action) -> StageSpec {
    let (input, output) = match action {
        Action::CreateBlob => (schemas::blob_params(), schemas::blob()),
        Action::Uppercase | Action::Reverse => (schemas::blob(), schemas::blob()),
        Action::Checksum => (schemas::blob(), schemas::checksum()),
    };
    StageSpec::new(name, TRANSFORMER, action.name(), input, output)
}

pub fn pipeline(name: &str, stages: Vec<StageSpec>) -> PipelineSpec {
    let input = stages[0].input_schema.clone();
    let output = stages.last().unwrap().output_schema.clone();
    stages.into_iter().fold(
        PipelineSpec::new(name, input, output),
        PipelineSpec::add_stage,
    )
}

pub fn with_retries(stage: StageSpec, policy: RetryPolicy) -> StageSpec {
    stage.with_retry_policy(policy)
}

pub const EXECUTOR: pandagen_abi::ServiceId = PIPELINE_EXECUTOR;
