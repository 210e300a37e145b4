//! Property tests: validation agrees with the chaining rule, backoff stays
//! within its bounds, and specs survive the wire.

use pandagen_abi::ServiceId;
use pandagen_pipeline_executor::{
    PayloadSchemaId, PipelineError, PipelineSpec, RetryPolicy, StageSpec,
};
use proptest::prelude::*;

fn schema(i: u8) -> PayloadSchemaId {
    PayloadSchemaId::versioned(["a", "b", "c"][usize::from(i % 3)], u32::from(i / 3))
}

prop_compose! {
    fn chain()(
        input in 0u8..6,
        output in 0u8..6,
        stages in prop::collection::vec((0u8..6, 0u8..6), 0..6),
    ) -> PipelineSpec {
        stages.into_iter().fold(
            PipelineSpec::new("p", schema(input), schema(output)),
            |p, (i, o)| p.add_stage(StageSpec::new("s", ServiceId::from_raw(4), "act", schema(i), schema(o))),
        )
    }
}

proptest! {
    #[test]
    fn validate_accepts_exactly_the_well_chained_pipelines(p in chain()) {
        let chained = !p.stages.is_empty()
            && p.stages[0].input_schema == p.initial_input_schema
            && p.stages.windows(2).all(|w| w[0].output_schema == w[1].input_schema)
            && p.stages.last().unwrap().output_schema == p.final_output_schema;
        match p.validate() {
            Ok(()) => prop_assert!(chained),
            Err(PipelineError::EmptyPipeline) => prop_assert!(p.stages.is_empty()),
            Err(PipelineError::SchemaMismatch { expected, found, .. }) => {
                prop_assert!(!chained);
                prop_assert_ne!(expected, found);
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn specs_round_trip_through_postcard(p in chain()) {
        let bytes = postcard::to_allocvec(&p).unwrap();
        let back: PipelineSpec = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn backoff_grows_monotonically_up_to_its_cap(
        initial in 0u64..100_000,
        multiplier in 1.0f64..8.0,
        attempt in 0u32..40,
    ) {
        let policy = RetryPolicy { max_retries: 3, initial_backoff_ms: initial, backoff_multiplier: multiplier };
        let this = policy.backoff_duration(attempt).as_millis() as u64;
        let next = policy.backoff_duration(attempt + 1).as_millis() as u64;
        prop_assert!(this <= next);
        prop_assert!(next <= RetryPolicy::MAX_BACKOFF_MS);
        prop_assert_eq!(
            policy.backoff_duration(0).as_millis() as u64,
            initial.min(RetryPolicy::MAX_BACKOFF_MS)
        );
    }
}
