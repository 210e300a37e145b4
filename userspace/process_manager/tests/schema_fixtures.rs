//! Bytes written by version 1.0 of the process manager's protocol,
//! committed under `tests/fixtures/v1.0/`, decoded by this version (see
//! `pandagen_sim::fixtures`). A change that breaks one of them breaks the
//! console and every other client in the field: that needs version 2.

use std::path::PathBuf;

use pandagen_abi::envelope::MessagePayload;
use pandagen_abi::{
    EnvelopeError, ExecutionId, ExitReason, Instant, KernelError, Rights, ServiceId, TaskId,
    TrustDomain,
};
use pandagen_process_manager::protocol::{PmResponse, POLICY, SCHEMA};
use pandagen_process_manager::{
    IllegalTransition, InstanceEnd, LifecycleState, PmError, PmReply, RestartPolicy, ServiceInfo,
    ServiceRef,
};
use pandagen_sim::fixtures::assert_decodes_to;
use serde::de::DeserializeOwned;
use serde::Serialize;

const WRITTEN_AT: pandagen_abi::SchemaVersion = pandagen_abi::SchemaVersion::new(1, 0);

fn decodes_to<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: T) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.0");
    assert_decodes_to(&dir, name, value);
}

fn info() -> ServiceInfo {
    ServiceInfo {
        service_id: ServiceId::from_raw(101),
        name: "storage".into(),
        image: "bin/storage".into(),
        state: LifecycleState::Restarting,
        restart_policy: RestartPolicy::ExponentialBackoff { max_attempts: 5 },
        restart_count: 2,
        consecutive_restarts: 1,
        gave_up: false,
        wanted: true,
        execution_id: Some(ExecutionId::from_raw(12)),
        task_id: Some(TaskId::from_raw(7)),
        trust_domain: TrustDomain::core(),
        last_end: Some(InstanceEnd::Exited(ExitReason::Failure {
            error: "disk gone".into(),
        })),
        next_restart_at: Some(Instant::from_nanos(1_500_000_000)),
    }
}

#[test]
fn the_fixtures_are_inside_the_current_version_window() {
    assert!(POLICY.check(ServiceId::from_raw(0), WRITTEN_AT).is_ok());
    assert!(SCHEMA.is_compatible_with(&WRITTEN_AT));
}

#[test]
fn request_payloads_written_at_v1_0_decode() {
    decodes_to("request-list.bin", ());
    decodes_to(
        "request-status-by-name.bin",
        ServiceRef::Name("storage".into()),
    );
    decodes_to(
        "request-crash-by-id.bin",
        ServiceRef::Id(ServiceId::from_raw(101)),
    );
}

#[test]
fn responses_written_at_v1_0_decode() {
    let stopped = ServiceInfo {
        state: LifecycleState::Stopped,
        last_end: Some(InstanceEnd::SpawnFailed(KernelError::BootFileNotFound)),
        execution_id: None,
        task_id: None,
        next_restart_at: None,
        ..info()
    };
    let cases: [(&str, PmResponse); 5] = [
        (
            "response-services.bin",
            Ok(PmReply::Services(vec![info(), stopped])),
        ),
        ("response-service.bin", Ok(PmReply::Service(info()))),
        (
            "response-illegal-transition.bin",
            Err(PmError::IllegalTransition(IllegalTransition {
                from: LifecycleState::Stopped,
                to: LifecycleState::Stopping,
            })),
        ),
        (
            "response-missing-rights.bin",
            Err(PmError::MissingRights {
                required: Rights::CONTROL,
                held: Rights::TRANSFER,
            }),
        ),
        (
            "response-unknown-service.bin",
            Err(PmError::UnknownService(ServiceRef::Name("nope".into()))),
        ),
    ];
    for (name, response) in cases {
        decodes_to(name, response);
    }
}

#[test]
fn an_error_this_version_does_not_know_is_unrecognized_not_malformed() {
    // `Err`, an error variant index past the last one this version has,
    // then that variant's fields.
    let payload = MessagePayload::from_bytes(vec![1, 40, 2, 2]).unwrap();
    assert_eq!(
        payload.decode_answer::<PmResponse>(),
        Ok(Err(PmError::Unrecognized { variant: 40 }))
    );
    assert_eq!(
        payload.decode::<PmResponse>(),
        Err(EnvelopeError::UnknownVariant { variant: 40 })
    );
}

#[test]
fn a_service_handle_names_the_live_instance_only() {
    use pandagen_process_manager::ServiceHandle;
    let running = ServiceInfo {
        state: LifecycleState::Running,
        ..info()
    };
    assert_eq!(
        running.handle(),
        Some(ServiceHandle {
            task_id: TaskId::from_raw(7),
            state: LifecycleState::Running,
        })
    );
    let stopped = ServiceInfo {
        state: LifecycleState::Stopped,
        task_id: None,
        ..info()
    };
    assert_eq!(stopped.handle(), None);
}
