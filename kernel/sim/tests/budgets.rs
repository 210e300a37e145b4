//! Kernel-memory budgets through the `KernelApi`, as ring-3 code sees
//! them: the heap-cycle attack stops at the attacker's own budget, the
//! others keep working, and the attacker's death returns everything.

use pandagen_abi::error::Resource;
use pandagen_abi::{
    Budget, Cap, ChannelId, ExitReason, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    Rights, SchemaVersion, ServiceId, TaskDescriptor,
};
use pandagen_sim::SimulatedKernel;

fn filler(bytes: usize) -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(0),
        "attack.filler",
        SchemaVersion::new(1, 0),
        MessagePayload::new(&vec![0xA5u8; bytes]).unwrap(),
    )
}

/// What `attack_heap_cycles` does: channel pairs full of large messages,
/// each holding the other's only receive right, no handle kept.
fn build_pair(k: &mut SimulatedKernel) -> Result<(), KernelError> {
    let a = k.create_channel()?;
    let b = k.create_channel()?;
    let a_send = ChannelId::from_handle(k.clone_capability(&Cap::from(a), Rights::SEND)?.handle());
    let b_send = ChannelId::from_handle(k.clone_capability(&Cap::from(b), Rights::SEND)?.handle());
    for _ in 0..8 {
        k.send_message(a_send, filler(3000))?;
        k.send_message(b_send, filler(3000))?;
    }
    k.send_with_capabilities(a_send, filler(10), vec![Cap::from(b)])?;
    k.send_with_capabilities(b_send, filler(10), vec![Cap::from(a)])?;
    KernelApi::drop_capability(k, Cap::from(a_send))?;
    KernelApi::drop_capability(k, Cap::from(b_send))
}

#[test]
fn the_heap_cycle_attack_is_contained_and_fully_undone_by_the_attackers_death() {
    let mut k = SimulatedKernel::new();
    let root = k.root_task();
    let inbox = k.create_channel().unwrap();
    let channels_before = k.core().channel_count();
    let root_before = k.core().budget(root).unwrap().used;

    let attacker = k
        .spawn_task(TaskDescriptor::new("attacker".into()).with_budget(Budget::memory(128 << 10)))
        .unwrap()
        .task_id;
    let mut pairs = 0;
    let error = k.as_task(attacker, |k| loop {
        match build_pair(k) {
            Ok(()) => pairs += 1,
            Err(error) => break error,
        }
    });
    assert_eq!(
        error,
        KernelError::ResourceExhausted(Resource::MemoryBudget)
    );
    assert!(pairs >= 1, "the budget allowed {pairs} pairs");
    // Without collection the cycles would stay; they exist now.
    assert!(k.core().channel_count() >= channels_before + 2 * pairs);

    // The root (and anyone else) is unaffected.
    let spare = k.create_channel().unwrap();
    k.send_message(inbox, filler(3000)).unwrap();
    k.receive_message(inbox, None).unwrap();
    KernelApi::drop_capability(&mut k, Cap::from(spare)).unwrap();

    k.terminate_task_with_reason(attacker, ExitReason::Timeout);
    assert_eq!(k.core().channel_count(), channels_before);
    assert_eq!(k.core().budget(root).unwrap().used, root_before);
    k.check_invariants().unwrap();
}
