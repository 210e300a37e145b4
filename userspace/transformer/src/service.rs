//! The transformer as a stage-handler service.
//!
//! It speaks only the pipeline stage protocol
//! (`pandagen_pipeline_executor::stage`), on a channel registered as
//! [`TRANSFORMER`]. `create_blob` returns the blob's *handle*: a fresh
//! channel capability standing for the blob, labelled
//! [`blob_cap_label`](crate::schemas::blob_cap_label)`(name)`; later stages
//! must be lent it to transform that blob (see [`crate::transform`]). The
//! transformer keeps no capability after a request.
//!
//! For retry and failure tests, a [`FailureMode`] makes chosen actions fail
//! — transiently for their first N requests, or permanently.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::vec::Vec;
use pandagen_abi::services::TRANSFORMER;
use pandagen_abi::{Cap, ChannelId, KernelApi, KernelError, ReceivedMessage, ServiceId};
use pandagen_pipeline_executor::stage::{handle_stage_request, serve_stages, StageHandled};
use pandagen_pipeline_executor::{PipelineId, StageCall, StageHandler, StageId, StageOutcome};

use crate::transform::{apply, Action};

/// Injected failures, per action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureMode {
    /// Requests still to fail with a retryable error, per action.
    transient: BTreeMap<Action, u32>,
    /// Per action: every stage's attempts below this number fail with a
    /// retryable error (a failure that each pipeline run meets afresh).
    failing_attempts: BTreeMap<Action, u32>,
    /// Actions that always fail permanently.
    permanent: Vec<Action>,
}

impl FailureMode {
    pub fn none() -> Self {
        FailureMode::default()
    }

    /// The next `count` requests for `action` fail transiently.
    pub fn transient(mut self, action: Action, count: u32) -> Self {
        self.transient.insert(action, count);
        self
    }

    /// The first `count` attempts (attempt numbers `0..count`) of every
    /// stage running `action` fail transiently; later retries run.
    pub fn transient_attempts(mut self, action: Action, count: u32) -> Self {
        self.failing_attempts.insert(action, count);
        self
    }

    /// The flaky instance's mode: the first two attempts of every
    /// `uppercase` stage fail transiently, so the retry demo succeeds on
    /// its second retry however often it runs.
    pub fn flaky() -> Self {
        FailureMode::none().transient_attempts(Action::Uppercase, 2)
    }

    /// Every request for `action` fails permanently.
    pub fn permanent(mut self, action: Action) -> Self {
        self.permanent.push(action);
        self
    }

    /// Decide (and use up) the injected failure for attempt `attempt` of
    /// a stage running `action`.
    fn take(&mut self, action: Action, attempt: u32) -> Option<StageOutcome> {
        if self.permanent.contains(&action) {
            return Some(StageOutcome::Failure {
                error: format!("{} is configured to fail", action.name()),
            });
        }
        if self
            .failing_attempts
            .get(&action)
            .is_some_and(|&count| attempt < count)
        {
            return Some(StageOutcome::Retryable {
                error: format!("{} transiently unavailable", action.name()),
            });
        }
        match self.transient.get_mut(&action) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Some(StageOutcome::Retryable {
                    error: format!("{} transiently unavailable", action.name()),
                })
            }
            _ => None,
        }
    }
}

/// One stage execution the transformer saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execution {
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub attempt: u32,
    pub action: Option<Action>,
}

/// A test-only second instance: the transformer with
/// [`FailureMode::flaky`], registered under its own id so that retry
/// scenarios can run beside the regular transformer (in QEMU as the
/// `flaky_transformer` program).
pub const FLAKY_TRANSFORMER: ServiceId = ServiceId::from_raw(104);

/// How many recent executions the transformer remembers (for tests and
/// duplicate detection); older ones are forgotten so a long-running
/// service does not grow without bound.
pub const RECORDED_EXECUTIONS: usize = 1024;

/// The service state.
pub struct Transformer {
    service: ServiceId,
    failures: FailureMode,
    executions: VecDeque<Execution>,
}

impl Default for Transformer {
    fn default() -> Self {
        Self::new()
    }
}

impl Transformer {
    /// The transformer, serving as [`TRANSFORMER`].
    pub fn new() -> Self {
        Transformer {
            service: TRANSFORMER,
            failures: FailureMode::none(),
            executions: VecDeque::new(),
        }
    }

    /// Serve under another service id (for a second instance).
    pub fn with_service_id(mut self, service: ServiceId) -> Self {
        self.service = service;
        self
    }

    pub fn service_id(&self) -> ServiceId {
        self.service
    }

    pub fn with_failures(mut self, failures: FailureMode) -> Self {
        self.failures = failures;
        self
    }

    /// The most recent stage requests handled (up to
    /// [`RECORDED_EXECUTIONS`]), oldest first.
    pub fn executions(&self) -> Vec<Execution> {
        self.executions.iter().copied().collect()
    }

    /// How many times the same `(pipeline, stage, attempt)` was executed
    /// more than once. Each attempt is one request, so this stays 0 unless
    /// a request was duplicated on the way.
    pub fn duplicate_executions(&self) -> usize {
        let key = |e: &Execution| (e.pipeline_id, e.stage_id, e.attempt);
        self.executions
            .iter()
            .enumerate()
            .filter(|(i, e)| self.executions.range(..*i).any(|p| key(p) == key(e)))
            .count()
    }

    /// Create the service channel and register it under this instance's
    /// service id.
    pub fn register<K: KernelApi>(&self, kernel: &mut K) -> Result<ChannelId, KernelError> {
        let channel = kernel.create_channel()?;
        kernel.register_service(self.service, channel)?;
        Ok(channel)
    }

    /// Handle one received stage request.
    pub fn handle<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: ReceivedMessage,
    ) -> StageHandled {
        let service = self.service;
        handle_stage_request(kernel, service, self, request)
    }

    /// Serve stage requests on `channel` until it can no longer deliver.
    pub fn serve<K: KernelApi>(&mut self, kernel: &mut K, channel: ChannelId) -> KernelError {
        let service = self.service;
        serve_stages(kernel, service, channel, self)
    }
}

impl StageHandler for Transformer {
    fn run_stage<K: KernelApi>(&mut self, kernel: &mut K, call: &StageCall) -> StageOutcome {
        let action = Action::parse(&call.action);
        if self.executions.len() == RECORDED_EXECUTIONS {
            self.executions.pop_front();
        }
        self.executions.push_back(Execution {
            pipeline_id: call.pipeline_id,
            stage_id: call.stage_id,
            attempt: call.attempt,
            action,
        });
        let Some(action) = action else {
            return StageOutcome::UnknownAction;
        };
        if let Some(injected) = self.failures.take(action, call.attempt) {
            return injected;
        }
        let lent: Vec<u64> = call.capabilities.iter().map(|(label, _)| *label).collect();
        let transformed = match apply(action, &call.input, &lent) {
            Ok(transformed) => transformed,
            Err(error) => {
                return StageOutcome::Failure {
                    error: format!("{error}"),
                }
            }
        };
        let mut capabilities = Vec::new();
        if let Some(label) = transformed.issue_handle {
            match kernel.create_channel() {
                Ok(handle) => capabilities.push((label, Cap::from(handle))),
                // Out of channels is a resource shortage: worth a retry.
                Err(error) => {
                    return StageOutcome::Retryable {
                        error: format!("cannot issue the blob handle: {error}"),
                    }
                }
            }
        }
        StageOutcome::Success {
            output: transformed.output,
            capabilities,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::blob_payload;
    use pandagen_sim::SimulatedKernel;

    fn call(attempt: u32) -> StageCall {
        StageCall {
            action: "uppercase".into(),
            source: None,
            pipeline_id: PipelineId::from_raw(1),
            stage_id: StageId::from_raw(1),
            attempt,
            input: blob_payload("b", b"x").unwrap(),
            capabilities: Vec::new(),
        }
    }

    #[test]
    fn injected_failures_are_used_up_in_order() {
        let mut kernel = SimulatedKernel::new();
        let mut t = Transformer::new().with_failures(FailureMode::flaky());
        let outcomes: Vec<bool> = (0..3)
            .map(|a| {
                matches!(
                    t.run_stage(&mut kernel, &call(a)),
                    StageOutcome::Retryable { .. }
                )
            })
            .collect();
        assert_eq!(outcomes, [true, true, false]);
        let mut p =
            Transformer::new().with_failures(FailureMode::none().permanent(Action::Uppercase));
        assert!(matches!(
            p.run_stage(&mut kernel, &call(0)),
            StageOutcome::Failure { .. }
        ));
    }

    #[test]
    fn the_execution_record_is_bounded_and_sees_duplicates() {
        let mut kernel = SimulatedKernel::new();
        let mut t = Transformer::new();
        for attempt in 0..RECORDED_EXECUTIONS as u32 + 10 {
            t.run_stage(&mut kernel, &call(attempt));
        }
        assert_eq!(t.executions().len(), RECORDED_EXECUTIONS);
        assert_eq!(t.executions()[0].attempt, 10, "the oldest were forgotten");
        assert_eq!(t.duplicate_executions(), 0);
        t.run_stage(&mut kernel, &call(500));
        assert_eq!(t.duplicate_executions(), 1);
    }
}
