//! The interface description's examples that use names added for it:
//! `SimKernel`, `CapabilityTransfer`, the minor-version evolution of a
//! payload, and version negotiation with `upgrade_required`/`unsupported`.
//! Where the project's form differs from the description's text, the
//! difference and its reason are in docs/interfaces.md.

use pandagen_abi::cap::kinds::Channel;
use pandagen_abi::{
    Cap, Compatibility, Duration, IdentityKind, KernelApi, KernelError, MessageEnvelope,
    MessagePayload, SchemaMismatchError, SchemaVersion, ServiceId, TaskDescriptor, TaskId,
    TrustDomain, VersionPolicy,
};
use pandagen_core::CapabilityEvent;
use pandagen_sim::{CapabilityTransfer, SimKernel};
use serde::{Deserialize, Serialize};

fn spawn(kernel: &mut SimKernel, name: &str) -> TaskId {
    kernel
        .spawn_task(
            TaskDescriptor::new(name.to_string())
                .with_identity(IdentityKind::Service, TrustDomain::user()),
        )
        .unwrap()
        .task_id
}

#[test]
fn capability_transfer_moves_the_capability_through_the_kernel() -> Result<(), KernelError> {
    let mut kernel = SimKernel::new();
    let from_task = spawn(&mut kernel, "sender");
    let to_task = spawn(&mut kernel, "receiver");
    let channel = kernel.as_task(from_task, |k| k.create_channel())?;
    let cap: Cap<Channel> = Cap::from(channel);

    let transfer = CapabilityTransfer::new(cap, from_task, to_task);
    assert_eq!(
        (transfer.from_task(), transfer.to_task()),
        (from_task, to_task)
    );
    let transferred: Cap<Channel> = transfer.complete(&mut kernel)?;

    // Move semantics: the sender lost it, the receiver can use it.
    let message = MessageEnvelope::new(
        ServiceId::new(),
        "ping",
        SchemaVersion::new(1, 0),
        MessagePayload::empty(),
    );
    assert_eq!(
        kernel.as_task(from_task, |k| k.send_message(channel, message.clone())),
        Err(KernelError::InvalidCapability)
    );
    let as_channel = pandagen_abi::ChannelId::from_handle(transferred.handle());
    kernel.as_task(to_task, |k| k.send_message(as_channel, message))?;
    assert!(kernel.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Delegated { from, to, .. } if *from == from_task && *to == to_task
    )));
    // `Cap` is move-only, so `cap` is gone; naming the old handle again
    // and transferring what the sender no longer holds fails.
    let stale: Cap<Channel> = Cap::from(channel);
    assert!(CapabilityTransfer::new(stale, from_task, to_task)
        .complete(&mut kernel)
        .is_err());
    Ok(())
}

// "v1.0: Original payload" and "v1.1: Added optional field (non-breaking)".
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct RequestV1 {
    name: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct RequestV1_1 {
    name: String,
    #[serde(default)]
    timeout: Option<Duration>,
}

#[test]
fn a_v1_0_sender_reaches_a_v1_1_receiver_over_the_kernel() -> Result<(), KernelError> {
    let mut kernel = SimKernel::new();
    let channel = kernel.create_channel()?;
    let service = ServiceId::new();
    let old_request = MessageEnvelope::new(
        service,
        "blob.create",
        SchemaVersion::new(1, 0),
        MessagePayload::new(&RequestV1 {
            name: "report".into(),
        })
        .unwrap(),
    );
    kernel.send_message(channel, old_request)?;
    let received = kernel.receive_message(channel, None)?;
    let policy = VersionPolicy::current(1, 1);
    let request: RequestV1_1 = received.decode_payload(&policy, service).unwrap();
    assert_eq!(
        request,
        RequestV1_1 {
            name: "report".into(),
            timeout: None
        }
    );
    Ok(())
}

/// The description's version negotiation, with its error constructors.
fn negotiate(
    policy: &VersionPolicy,
    service: ServiceId,
    incoming: SchemaVersion,
) -> Result<(), SchemaMismatchError> {
    match policy.check_compatibility(&incoming) {
        Compatibility::Compatible => Ok(()),
        Compatibility::UpgradeRequired => Err(policy.upgrade_required(service, incoming)),
        Compatibility::Unsupported => Err(policy.unsupported(service, incoming)),
    }
}

#[test]
fn version_negotiation_returns_explicit_errors() {
    let service = ServiceId::from_raw(7);
    let policy = VersionPolicy::new(3, 2).with_min_major(2).with_min_minor(1);
    assert_eq!(
        negotiate(&policy, service, SchemaVersion::new(3, 5)),
        Ok(())
    );
    assert_eq!(
        negotiate(&policy, service, SchemaVersion::new(2, 0)),
        Ok(())
    );
    let too_old_minor = negotiate(&policy, service, SchemaVersion::new(3, 0)).unwrap_err();
    assert_eq!(
        too_old_minor,
        SchemaMismatchError::upgrade_required(
            service,
            SchemaVersion::new(3, 1),
            SchemaVersion::new(3, 0)
        )
    );
    assert_eq!(
        too_old_minor,
        SchemaMismatchError::UpgradeRequired {
            service,
            expected_min: SchemaVersion::new(3, 1),
            received: SchemaVersion::new(3, 0),
        }
    );
    let too_new = negotiate(&policy, service, SchemaVersion::new(4, 0)).unwrap_err();
    assert_eq!(
        too_new,
        SchemaMismatchError::unsupported(
            service,
            policy.supported_range(),
            SchemaVersion::new(4, 0)
        )
    );
    assert_eq!(
        too_new,
        SchemaMismatchError::Unsupported {
            service,
            supported_range: (SchemaVersion::new(2, 0), SchemaVersion::new(3, 2)),
            received: SchemaVersion::new(4, 0),
        }
    );
    // The same answers as the policy's own check.
    assert_eq!(
        policy.check(service, SchemaVersion::new(4, 0)),
        Err(too_new)
    );
    assert_eq!(
        policy.check(service, SchemaVersion::new(3, 0)),
        Err(too_old_minor)
    );
}
