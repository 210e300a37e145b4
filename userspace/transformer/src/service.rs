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

use alloc::collections::BTreeMap;
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

    /// The flaky instance's mode: the first two `uppercase` requests fail
    /// transiently.
    pub fn flaky() -> Self {
        FailureMode::none().transient(Action::Uppercase, 2)
    }

    /// Every request for `action` fails permanently.
    pub fn permanent(mut self, action: Action) -> Self {
        self.permanent.push(action);
        self
    }

    /// Decide (and use up) the injected failure for one request.
    fn take(&mut self, action: Action) -> Option<StageOutcome> {
        if self.permanent.contains(&action) {
            return Some(StageOutcome::Failure {
                error: format!("{} is configured to fail", action.name()),
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

/// The service state.
pub struct Transformer {
    service: ServiceId,
    failures: FailureMode,
    executions: Vec<Execution>,
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
            executions: Vec::new(),
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

    /// Every stage request handled, in order.
    pub fn executions(&self) -> &[Execution] {
        &self.executions
    }

    /// How many times the same `(pipeline, stage, attempt)` was executed
    /// more than once. Each attempt is one request, so this stays 0 unless
    /// a request was duplicated on the way.
    pub fn duplicate_executions(&self) -> usize {
        self.executions
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                self.executions[..*i].iter().any(|p| {
                    (p.pipeline_id, p.stage_id, p.attempt) == (e.pipeline_id, e.stage_id, e.attempt)
                })
            })
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
        self.executions.push(Execution {
            pipeline_id: call.pipeline_id,
            stage_id: call.stage_id,
            attempt: call.attempt,
            action,
        });
        let Some(action) = action else {
            return StageOutcome::UnknownAction;
        };
        if let Some(injected) = self.failures.take(action) {
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
