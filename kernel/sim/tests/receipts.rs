//! `receive_message` and `receive_with_capabilities` are one receive in the
//! simulator, built in the shape the caller asked for where the envelope
//! leaves the mirror (`messaging::Receipt`): the envelope alone, its
//! capabilities dropped as `KernelApi`'s default `receive_message` does, or
//! the whole `ReceivedMessage`. Both record the same trace.

use pandagen_abi::{
    Cap, CapHandle, Duration, KernelApi, MessageEnvelope, MessagePayload, Rights, SchemaVersion,
    ServiceId,
};
use pandagen_core::audit::CapabilityEvent;
use pandagen_sim::{SimulatedKernel, TraceEvent};

fn message(action: &str) -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(3),
        action,
        SchemaVersion::new(1, 0),
        MessagePayload::from_bytes(vec![5; 64]).unwrap(),
    )
}

fn root_handles(kernel: &SimulatedKernel) -> Vec<CapHandle> {
    let mut handles: Vec<CapHandle> = kernel
        .capabilities_of(kernel.root_task())
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    handles.sort_unstable();
    handles
}

fn dropped(kernel: &SimulatedKernel) -> usize {
    kernel
        .audit_log()
        .count_events(|e| matches!(e, CapabilityEvent::Dropped { .. }))
}

/// A kernel whose channel `ch` holds one message carrying a capability for
/// another channel, and the root task's handles before that capability was
/// made.
fn with_carried_capability() -> (SimulatedKernel, pandagen_abi::ChannelId, Vec<CapHandle>) {
    let mut kernel = SimulatedKernel::new();
    let ch = kernel.create_channel().unwrap();
    let other = kernel.create_channel().unwrap();
    let before = root_handles(&kernel);
    let carried = kernel
        .clone_capability(&Cap::from(other), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    kernel
        .send_with_capabilities(ch, message("carrying"), vec![carried])
        .unwrap();
    (kernel, ch, before)
}

#[test]
fn receive_message_drops_the_capabilities_a_message_carried() {
    let (mut kernel, ch, before) = with_carried_capability();
    let dropped_before = dropped(&kernel);
    let envelope = kernel.receive_message(ch, Some(Duration::ZERO)).unwrap();
    assert_eq!(envelope.action, "carrying");
    assert_eq!(envelope.source, Some(kernel.root_task()));
    assert_eq!(root_handles(&kernel), before, "the carried capability is gone");
    assert_eq!(dropped(&kernel), dropped_before + 1, "and its drop audited");
    kernel.check_invariants().unwrap();
}

#[test]
fn receive_with_capabilities_keeps_them_and_both_record_the_same_trace() {
    let (mut kept, ch, before) = with_carried_capability();
    let received = kept
        .receive_with_capabilities(ch, Some(Duration::ZERO))
        .unwrap();
    assert_eq!(received.capabilities.len(), 1);
    assert_eq!(received.badge, None);
    let mut handles = before.clone();
    handles.push(received.capabilities[0].handle());
    handles.sort_unstable();
    assert_eq!(root_handles(&kept), handles);

    let (mut dropping, ch, _) = with_carried_capability();
    let envelope = dropping
        .receive_message(ch, Some(Duration::ZERO))
        .unwrap();
    assert_eq!(envelope.payload, received.envelope.payload);
    assert_eq!(envelope.source, received.envelope.source);
    let delivered = |k: &SimulatedKernel| {
        k.trace()
            .count(|e| matches!(e, TraceEvent::Delivered { .. }))
    };
    assert_eq!(delivered(&kept), 1);
    assert_eq!(delivered(&dropping), 1);
    assert_eq!(kept.trace().render(), dropping.trace().render());
}

#[test]
fn receive_message_of_a_plain_message_changes_no_capability() {
    let mut kernel = SimulatedKernel::new();
    let ch = kernel.create_channel().unwrap();
    let before = root_handles(&kernel);
    let dropped_before = dropped(&kernel);
    let sent = message("plain");
    kernel.send_message(ch, sent.clone()).unwrap();
    let envelope = kernel.receive_message(ch, Some(Duration::ZERO)).unwrap();
    assert_eq!(envelope.id, sent.id);
    assert_eq!(root_handles(&kernel), before);
    assert_eq!(dropped(&kernel), dropped_before);
}
