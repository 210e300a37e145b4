//! Pipeline and stage specifications, and their validation.
//!
//! A pipeline is a list of stages; each stage is a request (`action` plus a
//! typed payload) to the service `handler`. `validate` checks, before
//! anything runs:
//! 1. there is at least one stage ([`PipelineError::EmptyPipeline`]);
//! 2. the first stage reads the pipeline's input schema;
//! 3. each stage's output schema is the next stage's input schema;
//! 4. the last stage writes the pipeline's output schema.
//!
//! Checks 2–4 fail with [`PipelineError::SchemaMismatch`]. Validation also
//! enforces the executor's bounds (stage count, retry policy, action length,
//! unique stage ids), each with its own error.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use pandagen_abi::envelope::MAX_ACTION_LEN;
use pandagen_abi::ServiceId;
use serde::{Deserialize, Serialize};

use crate::ids::{PipelineId, StageId};
use crate::payload::PayloadSchemaId;
use crate::retry::RetryPolicy;

/// The most stages one pipeline may have.
pub const MAX_STAGES: usize = 32;
/// The most capabilities one stage may require.
pub const MAX_STAGE_CAPABILITIES: usize = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub id: StageId,
    pub name: String,
    pub handler: ServiceId,
    pub action: String,
    pub input_schema: PayloadSchemaId,
    pub output_schema: PayloadSchemaId,
    pub retry_policy: RetryPolicy,
    /// Labels of pool capabilities the stage needs (see the crate docs).
    pub required_capabilities: Vec<u64>,
}

impl StageSpec {
    /// A stage with a fresh id, no required capabilities and no retries.
    pub fn new(
        name: &str,
        handler: ServiceId,
        action: &str,
        input_schema: PayloadSchemaId,
        output_schema: PayloadSchemaId,
    ) -> Self {
        StageSpec {
            id: StageId::new(),
            name: name.into(),
            handler,
            action: action.into(),
            input_schema,
            output_schema,
            retry_policy: RetryPolicy::none(),
            required_capabilities: Vec::new(),
        }
    }

    pub fn with_capabilities(mut self, capabilities: Vec<u64>) -> Self {
        self.required_capabilities = capabilities;
        self
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    pub fn with_id(mut self, id: StageId) -> Self {
        self.id = id;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    pub id: PipelineId,
    pub name: String,
    pub stages: Vec<StageSpec>,
    pub initial_input_schema: PayloadSchemaId,
    pub final_output_schema: PayloadSchemaId,
}

impl PipelineSpec {
    /// An empty pipeline with a fresh id.
    pub fn new(
        name: &str,
        initial_input_schema: PayloadSchemaId,
        final_output_schema: PayloadSchemaId,
    ) -> Self {
        PipelineSpec {
            id: PipelineId::new(),
            name: name.into(),
            stages: Vec::new(),
            initial_input_schema,
            final_output_schema,
        }
    }

    pub fn add_stage(mut self, stage: StageSpec) -> Self {
        self.stages.push(stage);
        self
    }

    pub fn with_id(mut self, id: PipelineId) -> Self {
        self.id = id;
        self
    }

    /// Check the pipeline before execution (see the module docs).
    pub fn validate(&self) -> Result<(), PipelineError> {
        let (first, last) = match (self.stages.first(), self.stages.last()) {
            (Some(first), Some(last)) => (first, last),
            _ => return Err(PipelineError::EmptyPipeline),
        };
        if self.stages.len() > MAX_STAGES {
            return Err(PipelineError::TooManyStages {
                count: self.stages.len() as u32,
                max: MAX_STAGES as u32,
            });
        }
        for (index, stage) in self.stages.iter().enumerate() {
            if self.stages[..index].iter().any(|s| s.id == stage.id) {
                return Err(PipelineError::DuplicateStageId(stage.id));
            }
            if !stage.retry_policy.is_bounded() {
                return Err(PipelineError::UnboundedRetryPolicy(stage.id));
            }
            if stage.action.is_empty() || stage.action.len() > MAX_ACTION_LEN {
                return Err(PipelineError::InvalidAction(stage.id));
            }
            if stage.required_capabilities.len() > MAX_STAGE_CAPABILITIES {
                return Err(PipelineError::TooManyCapabilities(stage.id));
            }
        }
        if first.input_schema != self.initial_input_schema {
            return Err(PipelineError::SchemaMismatch {
                link: SchemaLink::PipelineInput { stage: first.id },
                expected: self.initial_input_schema.clone(),
                found: first.input_schema.clone(),
            });
        }
        for pair in self.stages.windows(2) {
            if pair[0].output_schema != pair[1].input_schema {
                return Err(PipelineError::SchemaMismatch {
                    link: SchemaLink::Between {
                        from: pair[0].id,
                        to: pair[1].id,
                    },
                    expected: pair[0].output_schema.clone(),
                    found: pair[1].input_schema.clone(),
                });
            }
        }
        if last.output_schema != self.final_output_schema {
            return Err(PipelineError::SchemaMismatch {
                link: SchemaLink::PipelineOutput { stage: last.id },
                expected: self.final_output_schema.clone(),
                found: last.output_schema.clone(),
            });
        }
        Ok(())
    }
}

/// Where in the chain two schemas disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaLink {
    /// The pipeline's input feeds the first stage.
    PipelineInput { stage: StageId },
    /// One stage's output feeds the next stage.
    Between { from: StageId, to: StageId },
    /// The last stage's output is the pipeline's output.
    PipelineOutput { stage: StageId },
}

/// Why a pipeline is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineError {
    /// The pipeline has no stages.
    EmptyPipeline,
    /// `found` is not the schema the chain provides (`expected`) at `link`.
    SchemaMismatch {
        link: SchemaLink,
        expected: PayloadSchemaId,
        found: PayloadSchemaId,
    },
    TooManyStages {
        count: u32,
        max: u32,
    },
    /// Two stages share an id, so the trace could not tell them apart.
    DuplicateStageId(StageId),
    /// The stage's retry policy exceeds the executor's bounds.
    UnboundedRetryPolicy(StageId),
    /// The stage's action is empty or longer than an envelope allows.
    InvalidAction(StageId),
    /// The stage requires more than [`MAX_STAGE_CAPABILITIES`] capabilities.
    TooManyCapabilities(StageId),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::EmptyPipeline => f.write_str("pipeline has no stages"),
            PipelineError::SchemaMismatch {
                link,
                expected,
                found,
            } => write!(
                f,
                "schema mismatch at {link:?}: expected {expected}, found {found}"
            ),
            PipelineError::TooManyStages { count, max } => {
                write!(f, "{count} stages exceed the limit of {max}")
            }
            PipelineError::DuplicateStageId(id) => write!(f, "{id} appears twice"),
            PipelineError::UnboundedRetryPolicy(id) => {
                write!(f, "{id} has an out-of-bounds retry policy")
            }
            PipelineError::InvalidAction(id) => write!(f, "{id} has an invalid action name"),
            PipelineError::TooManyCapabilities(id) => {
                write!(f, "{id} requires too many capabilities")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str) -> PayloadSchemaId {
        PayloadSchemaId::new(name)
    }

    fn stage(name: &str, input: &str, output: &str) -> StageSpec {
        StageSpec::new(
            name,
            ServiceId::from_raw(4),
            "act",
            schema(input),
            schema(output),
        )
    }

    fn chain() -> PipelineSpec {
        PipelineSpec::new("p", schema("a"), schema("c"))
            .add_stage(stage("one", "a", "b"))
            .add_stage(stage("two", "b", "c"))
    }

    #[test]
    fn a_well_chained_pipeline_validates() {
        assert_eq!(chain().validate(), Ok(()));
    }

    #[test]
    fn an_empty_pipeline_is_its_own_error() {
        let empty = PipelineSpec::new("p", schema("a"), schema("a"));
        assert_eq!(empty.validate(), Err(PipelineError::EmptyPipeline));
    }

    #[test]
    fn first_stage_must_read_the_pipeline_input() {
        let mut p = chain();
        p.initial_input_schema = schema("a@v2");
        let first = p.stages[0].id;
        assert_eq!(
            p.validate(),
            Err(PipelineError::SchemaMismatch {
                link: SchemaLink::PipelineInput { stage: first },
                expected: schema("a@v2"),
                found: schema("a"),
            })
        );
    }

    #[test]
    fn adjacent_stages_must_chain() {
        let mut p = chain();
        p.stages[1].input_schema = schema("x");
        let (from, to) = (p.stages[0].id, p.stages[1].id);
        assert_eq!(
            p.validate(),
            Err(PipelineError::SchemaMismatch {
                link: SchemaLink::Between { from, to },
                expected: schema("b"),
                found: schema("x"),
            })
        );
    }

    #[test]
    fn last_stage_must_write_the_pipeline_output() {
        let mut p = chain();
        p.final_output_schema = schema("z");
        let last = p.stages[1].id;
        assert!(matches!(
            p.validate(),
            Err(PipelineError::SchemaMismatch {
                link: SchemaLink::PipelineOutput { stage },
                ..
            }) if stage == last
        ));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut p = PipelineSpec::new("p", schema("a"), schema("a"));
        for _ in 0..=MAX_STAGES {
            p = p.add_stage(stage("s", "a", "a"));
        }
        assert!(matches!(
            p.validate(),
            Err(PipelineError::TooManyStages { .. })
        ));

        let mut p = chain();
        p.stages[1].retry_policy = RetryPolicy::fixed_retries(RetryPolicy::MAX_RETRIES + 1, 1);
        assert_eq!(
            p.validate(),
            Err(PipelineError::UnboundedRetryPolicy(p.stages[1].id))
        );

        let mut p = chain();
        p.stages[1].id = p.stages[0].id;
        assert_eq!(
            p.validate(),
            Err(PipelineError::DuplicateStageId(p.stages[0].id))
        );

        let mut p = chain();
        p.stages[0].action.clear();
        assert_eq!(
            p.validate(),
            Err(PipelineError::InvalidAction(p.stages[0].id))
        );

        let p = chain().add_stage(stage("three", "c", "c").with_capabilities((0..9).collect()));
        assert!(matches!(
            p.validate(),
            Err(PipelineError::TooManyCapabilities(_))
        ));
    }

    #[test]
    fn builders_set_capabilities_and_retries() {
        let s = stage("s", "a", "b")
            .with_capabilities(alloc::vec![7, 9])
            .with_retry_policy(RetryPolicy::fixed_retries(2, 50));
        assert_eq!(s.required_capabilities, [7, 9]);
        assert_eq!(s.retry_policy, RetryPolicy::fixed_retries(2, 50));
    }
}
