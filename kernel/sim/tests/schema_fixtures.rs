//! The messages the kernel itself sends, as version 1.0 wrote them:
//! exit notifications (to supervisors) and console input (to the console),
//! committed under `tests/fixtures/v1.0/` and decoded by this version (see
//! `pandagen_sim::fixtures`). A supervisor or console built against an
//! older ABI reads what a newer kernel sends only while these hold.

use std::path::PathBuf;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::identity::CpuFault;
use pandagen_abi::syscall::CONSOLE_INPUT_ACTION;
use pandagen_abi::{
    ExecutionId, ExitNotification, ExitReason, FailureCause, MessageEnvelope, MessageId,
    MessagePayload, SchemaVersion, TaskId,
};
use pandagen_sim::fixtures::committed;
use pandagen_sim::{EXIT_NOTIFICATION_SCHEMA, KERNEL_SERVICE};

const WRITTEN_AT: SchemaVersion = SchemaVersion::new(1, 0);

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.0")
}

fn kernel_message(action: &str, payload: MessagePayload) -> MessageEnvelope {
    let mut envelope = MessageEnvelope::new(KERNEL_SERVICE, action, WRITTEN_AT, payload);
    envelope.id = MessageId::from_raw(1);
    envelope
}

#[test]
fn exit_notifications_written_at_v1_0_decode() {
    assert!(EXIT_NOTIFICATION_SCHEMA.is_compatible_with(&WRITTEN_AT));
    let cases = [
        ExitReason::Normal,
        ExitReason::Failure {
            error: FailureCause::Fault(CpuFault::PageFault {
                address: 0xdead_0000,
                error_code: 6,
            }),
        },
        ExitReason::Failure {
            error: FailureCause::Panic,
        },
        ExitReason::Cancelled {
            reason: "stopped".into(),
        },
        ExitReason::Timeout,
    ];
    for (i, reason) in cases.into_iter().enumerate() {
        let notification = ExitNotification {
            execution_id: ExecutionId::from_raw(40 + i as u64),
            task_id: Some(TaskId::from_raw(9)),
            reason,
            terminated_at_nanos: 123_456_789,
        };
        let name = format!("exit-notification-{i}.bin");
        let bytes = committed(&dir(), &name, || {
            kernel_message(
                EXIT_NOTIFICATION_ACTION,
                MessagePayload::new(&notification).unwrap(),
            )
            .encode()
            .unwrap()
        });
        let envelope = MessageEnvelope::decode(&bytes).unwrap();
        assert_eq!(envelope.schema_version, WRITTEN_AT);
        assert_eq!(envelope.payload.decode(), Ok(notification), "{name}");
    }
}

#[test]
fn console_input_written_at_v1_0_decodes() {
    let typed = b"pipeline run retry_path\r".to_vec();
    let bytes = committed(&dir(), "console-input.bin", || {
        kernel_message(CONSOLE_INPUT_ACTION, MessagePayload::new(&typed).unwrap())
            .encode()
            .unwrap()
    });
    let envelope = MessageEnvelope::decode(&bytes).unwrap();
    assert_eq!(envelope.action, CONSOLE_INPUT_ACTION);
    assert_eq!(envelope.payload.decode::<Vec<u8>>(), Ok(typed));
}
