//! Device capabilities: minting only narrower ranges, checks before any
//! work, interrupt bindings (one per line, coalescing, ended at death), the
//! DMA allowance.

mod common;

use common::*;
use pandagen_abi::device::{
    DeviceError, DeviceResource, InterruptLines, InterruptNotification, PhysRange, PortRange,
    INTERRUPT_ACTION,
};
use pandagen_abi::error::Resource;
use pandagen_abi::{
    Budget, CapHandle, CapKind, ExitReason, KernelError, MessageEnvelope, Rights, TaskId,
};
use pandagen_core::{
    binding_cost, InterruptOutcome, KernelCore, TaskSpec, DEVICE_RIGHTS, ROOT_DEVICE_CAPS,
};

const RAM: PhysRange = PhysRange::new(0, 0x800_0000);
const FRAMEBUFFER: PhysRange = PhysRange::new(0xfd00_0000, 0x30_0000);
const BAR: PhysRange = PhysRange::new(0xfe00_0000, 0x4000);

fn device_error(e: DeviceError) -> Result<(), KernelError> {
    Err(KernelError::Device(e))
}

/// A kernel whose root task holds the four root device capabilities, in
/// the order of `ROOT_DEVICE_CAPS` (ports, memory, interrupts, DMA).
fn with_root() -> (KernelCore, TaskId, [CapHandle; 4]) {
    let mut k = kernel();
    k.set_reserved_physical(vec![RAM, FRAMEBUFFER]);
    let root = spawn(&mut k, "root");
    let caps = ROOT_DEVICE_CAPS.map(|(object, rights)| k.mint(root, object, rights, T0).unwrap());
    (k, root, caps)
}

fn mint(
    k: &mut KernelCore,
    root: TaskId,
    parent: CapHandle,
    resource: DeviceResource,
) -> Result<CapHandle, KernelError> {
    k.mint_device(root, parent, resource, DEVICE_RIGHTS, T0)
}

#[test]
fn only_narrower_ranges_of_the_same_kind_are_minted() {
    let (mut k, root, [ports, memory, irqs, dma]) = with_root();
    let keyboard = mint(
        &mut k,
        root,
        ports,
        DeviceResource::Ports(PortRange::new(0x60, 0x64)),
    )
    .unwrap();
    assert_eq!(k.inspect(root, keyboard).unwrap().kind(), CapKind::IoPorts);
    // From the narrower one: narrower still, never wider.
    mint(
        &mut k,
        root,
        keyboard,
        DeviceResource::Ports(PortRange::new(0x60, 0x60)),
    )
    .unwrap();
    assert_eq!(
        mint(
            &mut k,
            root,
            keyboard,
            DeviceResource::Ports(PortRange::new(0x60, 0x65))
        )
        .map(drop),
        device_error(DeviceError::OutsideGrant)
    );
    // Another kind through a port capability: refused as the wrong kind.
    assert!(matches!(
        mint(
            &mut k,
            root,
            keyboard,
            DeviceResource::Interrupts(InterruptLines::one(1))
        ),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::Interrupt,
            found: CapKind::IoPorts
        })
    ));
    // A narrower DMA allowance, not a larger one.
    let small = mint(&mut k, root, dma, DeviceResource::Dma { bytes: 0x10000 }).unwrap();
    assert_eq!(
        mint(&mut k, root, small, DeviceResource::Dma { bytes: 0x20000 }).map(drop),
        device_error(DeviceError::OutsideGrant)
    );
    let bar = mint(&mut k, root, memory, DeviceResource::Memory(BAR)).unwrap();
    assert_eq!(
        mint(
            &mut k,
            root,
            bar,
            DeviceResource::Memory(PhysRange::new(BAR.base, BAR.len * 2))
        )
        .map(drop),
        device_error(DeviceError::OutsideGrant)
    );
    mint(
        &mut k,
        root,
        irqs,
        DeviceResource::Interrupts(InterruptLines::one(8)),
    )
    .unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn minting_needs_grant_and_never_adds_rights() {
    let (mut k, root, [ports, ..]) = with_root();
    let read_only = k
        .mint_device(
            root,
            ports,
            DeviceResource::Ports(PortRange::new(0x70, 0x71)),
            Rights::READ | Rights::GRANT,
            T0,
        )
        .unwrap();
    let again = k
        .mint_device(
            root,
            read_only,
            DeviceResource::Ports(PortRange::new(0x70, 0x70)),
            Rights::ALL,
            T0,
        )
        .unwrap();
    assert_eq!(
        k.inspect(root, again).unwrap().rights,
        Rights::READ | Rights::GRANT
    );
    let no_grant = k
        .mint_device(
            root,
            ports,
            DeviceResource::Ports(PortRange::new(0x70, 0x71)),
            Rights::READ,
            T0,
        )
        .unwrap();
    let before = invalid_uses(&k);
    assert_eq!(
        mint(
            &mut k,
            root,
            no_grant,
            DeviceResource::Ports(PortRange::new(0x70, 0x70))
        ),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(invalid_uses(&k), before + 1, "the refusal is audited");
}

#[test]
fn what_the_kernel_keeps_is_never_minted() {
    let (mut k, root, [ports, memory, irqs, _]) = with_root();
    assert_eq!(
        mint(
            &mut k,
            root,
            memory,
            DeviceResource::Memory(PhysRange::new(0x10_0000, 0x1000))
        )
        .map(drop),
        device_error(DeviceError::NotDeviceMemory {
            base: 0x10_0000,
            len: 0x1000
        })
    );
    // A range that only touches the framebuffer's last page.
    let straddling = PhysRange::new(FRAMEBUFFER.end() - 0x1000, 0x2000);
    assert_eq!(
        mint(&mut k, root, memory, DeviceResource::Memory(straddling)).map(drop),
        device_error(DeviceError::NotDeviceMemory {
            base: straddling.base,
            len: straddling.len
        })
    );
    mint(
        &mut k,
        root,
        memory,
        DeviceResource::Memory(PhysRange::new(FRAMEBUFFER.end(), 0x1000)),
    )
    .unwrap();
    assert_eq!(
        mint(
            &mut k,
            root,
            ports,
            DeviceResource::Ports(PortRange::new(0x3f0, 0x3ff))
        )
        .map(drop),
        device_error(DeviceError::KernelPort { port: 0x3f8 })
    );
    assert_eq!(
        mint(
            &mut k,
            root,
            irqs,
            DeviceResource::Interrupts(InterruptLines::one(0))
        )
        .map(drop),
        device_error(DeviceError::KernelInterrupt { line: 0 })
    );
    assert_eq!(
        mint(
            &mut k,
            root,
            memory,
            DeviceResource::Memory(PhysRange::new(BAR.base + 1, 0x1000))
        )
        .map(drop),
        device_error(DeviceError::OutsideGrant)
    );
}

#[test]
fn port_access_is_checked_per_port_width_and_right() {
    let (mut k, root, [ports, ..]) = with_root();
    let rtc = k
        .mint_device(
            root,
            ports,
            DeviceResource::Ports(PortRange::new(0x70, 0x71)),
            Rights::READ | Rights::WRITE,
            T0,
        )
        .unwrap();
    k.check_port_access(root, rtc, 0x70, 1, true, T0).unwrap();
    k.check_port_access(root, rtc, 0x71, 1, false, T0).unwrap();
    k.check_port_access(root, rtc, 0x70, 2, false, T0).unwrap();
    assert_eq!(
        k.check_port_access(root, rtc, 0x71, 2, false, T0),
        device_error(DeviceError::OutsideGrant)
    );
    assert_eq!(
        k.check_port_access(root, rtc, 0x72, 1, false, T0),
        device_error(DeviceError::OutsideGrant)
    );
    assert_eq!(
        k.check_port_access(root, rtc, 0x70, 3, false, T0),
        device_error(DeviceError::BadWidth { width: 3 })
    );
    let read_only = k.clone_cap(root, rtc, Rights::READ, T0);
    // Cloning needs GRANT, which this capability lacks.
    assert_eq!(read_only, Err(KernelError::InsufficientAuthority));
    // The root's own capability covers every port but still not the kernel's.
    assert_eq!(
        k.check_port_access(root, ports, 0xf4, 1, true, T0),
        device_error(DeviceError::KernelPort { port: 0xf4 })
    );
    let channel = k.create_channel(root, T0).unwrap();
    assert!(matches!(
        k.check_port_access(root, channel, 0x70, 1, false, T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::IoPorts,
            found: CapKind::Channel
        })
    ));
}

#[test]
fn device_memory_outside_the_grant_or_in_ram_is_refused() {
    let (mut k, root, [_, memory, ..]) = with_root();
    let bar = mint(&mut k, root, memory, DeviceResource::Memory(BAR)).unwrap();
    k.check_device_mapping(root, bar, BAR, true, T0).unwrap();
    k.check_device_mapping(
        root,
        bar,
        PhysRange::new(BAR.base + 0x1000, 0x1000),
        false,
        T0,
    )
    .unwrap();
    assert_eq!(
        k.check_device_mapping(
            root,
            bar,
            PhysRange::new(BAR.base, BAR.len + 0x1000),
            false,
            T0
        ),
        device_error(DeviceError::OutsideGrant)
    );
    // The root's capability names all of physical memory, but RAM is
    // still refused at use.
    assert_eq!(
        k.check_device_mapping(root, memory, PhysRange::new(0x20_0000, 0x1000), true, T0),
        device_error(DeviceError::NotDeviceMemory {
            base: 0x20_0000,
            len: 0x1000
        })
    );
    assert_eq!(
        k.check_device_mapping(root, memory, FRAMEBUFFER, true, T0),
        device_error(DeviceError::NotDeviceMemory {
            base: FRAMEBUFFER.base,
            len: FRAMEBUFFER.len
        })
    );
}

/// The notifications queued on `channel`, decoded.
fn notifications(k: &mut KernelCore, task: TaskId, channel: CapHandle) -> Vec<u8> {
    let mut lines = Vec::new();
    while let Some(m) = k.receive(task, channel, T0).unwrap() {
        let envelope = MessageEnvelope::decode(&m.bytes).unwrap();
        assert_eq!(envelope.action, INTERRUPT_ACTION);
        let n: InterruptNotification = envelope.payload.decode().unwrap();
        lines.push(n.line);
    }
    lines
}

#[test]
fn a_line_binds_once_and_fires_coalesce_until_acknowledged() {
    let (mut k, root, [_, _, irqs, _]) = with_root();
    let driver = spawn(&mut k, "driver");
    authorise(&mut k, root, driver);
    let keyboard = mint(
        &mut k,
        root,
        irqs,
        DeviceResource::Interrupts(InterruptLines::one(1)),
    )
    .unwrap();
    k.grant(root, keyboard, driver, T0).unwrap();
    let held = k
        .find_cap(driver, CapKind::Interrupt, Rights::RECEIVE)
        .unwrap();
    let channel = k.create_channel(driver, T0).unwrap();
    assert_eq!(k.interrupt_fired(1), InterruptOutcome::Unbound);
    k.bind_interrupt(driver, held, 1, channel, T0).unwrap();
    // A second binding, by anyone, is refused.
    assert_eq!(
        k.bind_interrupt(driver, held, 1, channel, T0),
        device_error(DeviceError::AlreadyBound { line: 1 })
    );
    let root_channel = k.create_channel(root, T0).unwrap();
    assert_eq!(
        k.bind_interrupt(root, irqs, 1, root_channel, T0),
        device_error(DeviceError::AlreadyBound { line: 1 })
    );
    // Lines outside the capability.
    assert_eq!(
        k.bind_interrupt(driver, held, 8, channel, T0),
        device_error(DeviceError::OutsideGrant)
    );
    // A storm: one notification, the rest counted.
    assert_eq!(k.interrupt_fired(1), InterruptOutcome::Notified);
    for _ in 0..10_000 {
        assert_eq!(k.interrupt_fired(1), InterruptOutcome::Coalesced);
    }
    assert_eq!(notifications(&mut k, driver, channel), vec![1]);
    // Only the binding's holder acknowledges.
    assert_eq!(
        k.acknowledge_interrupt(root, irqs, 1, T0),
        Err(KernelError::Device(DeviceError::NotBound { line: 1 }))
    );
    assert_eq!(k.acknowledge_interrupt(driver, held, 1, T0), Ok(10_000));
    assert_eq!(k.interrupt_fired(1), InterruptOutcome::Notified);
    assert_eq!(notifications(&mut k, driver, channel), vec![1]);
    k.check_invariants().unwrap();
}

#[test]
fn a_line_never_acknowledged_leaves_other_lines_working_and_the_queue_bounded() {
    let (mut k, root, [_, _, irqs, _]) = with_root();
    let stuck = k.create_channel_with_capacity(root, 1, T0).unwrap();
    let live = k.create_channel(root, T0).unwrap();
    k.bind_interrupt(root, irqs, 1, stuck, T0).unwrap();
    k.bind_interrupt(root, irqs, 8, live, T0).unwrap();
    assert_eq!(k.interrupt_fired(1), InterruptOutcome::Notified);
    for round in 0..100u32 {
        assert_eq!(k.interrupt_fired(1), InterruptOutcome::Coalesced);
        assert_eq!(
            k.interrupt_fired(8),
            InterruptOutcome::Notified,
            "round {round}"
        );
        assert_eq!(notifications(&mut k, root, live), vec![8]);
        assert_eq!(k.acknowledge_interrupt(root, irqs, 8, T0), Ok(0));
    }
    // The never-acknowledged line queued exactly one message.
    assert_eq!(notifications(&mut k, root, stuck), vec![1]);
}

#[test]
fn the_notification_fits_even_a_full_queue() {
    let (mut k, root, [_, _, irqs, _]) = with_root();
    let channel = k.create_channel_with_capacity(root, 1, T0).unwrap();
    k.bind_interrupt(root, irqs, 8, channel, T0).unwrap();
    let envelope = MessageEnvelope::new(
        pandagen_abi::ServiceId::from_raw(1),
        "filler",
        pandagen_abi::SchemaVersion::new(1, 0),
        pandagen_abi::MessagePayload::new(&0u8).unwrap(),
    )
    .encode()
    .unwrap();
    k.send(root, channel, envelope.clone(), &[], T0).unwrap();
    assert!(
        k.send(root, channel, envelope.clone(), &[], T0).is_err(),
        "the queue is full"
    );
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Notified);
}

#[test]
fn the_notification_finds_room_however_many_messages_came_before_it() {
    // Whatever the queue buffer's fill when the line fires, the kernel's
    // interrupt path finds an entry kept free (it must not allocate).
    for queued in 0..=20usize {
        let (mut k, root, [_, _, irqs, _]) = with_root();
        let channel = k.create_channel(root, T0).unwrap();
        k.bind_interrupt(root, irqs, 8, channel, T0).unwrap();
        for _ in 0..queued {
            k.send(root, channel, &[7u8; 16], &[], T0).unwrap();
        }
        assert_eq!(
            k.interrupt_fired(8),
            InterruptOutcome::Notified,
            "{queued} queued"
        );
        for _ in 0..queued {
            assert_eq!(
                k.receive(root, channel, T0).unwrap().unwrap().bytes,
                [7u8; 16]
            );
        }
        assert_eq!(
            notifications(&mut k, root, channel),
            vec![8],
            "{queued} queued"
        );
        k.check_invariants().unwrap();
    }
}

#[test]
fn a_dead_holder_frees_its_lines_and_its_dma_charge() {
    let (mut k, root, [_, _, irqs, dma]) = with_root();
    let driver = spawn(&mut k, "driver");
    authorise(&mut k, root, driver);
    let line = mint(
        &mut k,
        root,
        irqs,
        DeviceResource::Interrupts(InterruptLines::one(8)),
    )
    .unwrap();
    let allowance = mint(&mut k, root, dma, DeviceResource::Dma { bytes: 0x10000 }).unwrap();
    k.grant(root, line, driver, T0).unwrap();
    k.grant(root, allowance, driver, T0).unwrap();
    let line = k
        .find_cap(driver, CapKind::Interrupt, Rights::RECEIVE)
        .unwrap();
    let allowance = k
        .find_cap(driver, CapKind::DmaMemory, Rights::WRITE)
        .unwrap();
    let channel = k.create_channel(driver, T0).unwrap();
    k.bind_interrupt(driver, line, 8, channel, T0).unwrap();
    k.charge_dma(driver, allowance, 0x8000, T0).unwrap();
    assert_eq!(k.dma_held(driver), 0x8000);
    assert_eq!(k.interrupt_holder(8), Some(driver));
    k.terminate(driver, ExitReason::Normal, T0).unwrap();
    assert_eq!(k.interrupt_holder(8), None);
    assert_eq!(k.dma_held(driver), 0);
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Unbound);
    // The line is free for the next driver.
    let next = k.create_channel(root, T0).unwrap();
    k.bind_interrupt(root, irqs, 8, next, T0).unwrap();
    assert_eq!(k.interrupt_holder(8), Some(root));
}

#[test]
fn a_closed_channel_ends_the_binding() {
    let (mut k, root, [_, _, irqs, _]) = with_root();
    let channel = k.create_channel(root, T0).unwrap();
    k.bind_interrupt(root, irqs, 8, channel, T0).unwrap();
    // Its only receive right gone, the channel closes: the line is free.
    k.drop_cap(root, channel, T0).unwrap();
    assert_eq!(k.interrupt_holder(8), None);
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Unbound);
}

#[test]
fn dma_is_charged_against_the_allowance() {
    let (mut k, root, [_, _, _, dma]) = with_root();
    let allowance = mint(&mut k, root, dma, DeviceResource::Dma { bytes: 0x10000 }).unwrap();
    k.charge_dma(root, allowance, 0x8000, T0).unwrap();
    k.charge_dma(root, allowance, 0x8000, T0).unwrap();
    assert_eq!(
        k.charge_dma(root, allowance, 0x1000, T0),
        device_error(DeviceError::DmaAllowance {
            held: 0x10000,
            allowed: 0x10000
        })
    );
    assert_eq!(
        k.charge_dma(root, allowance, 0x800, T0),
        device_error(DeviceError::OutsideGrant)
    );
    k.uncharge_dma(root, 0x8000);
    k.charge_dma(root, allowance, 0x1000, T0).unwrap();
    assert_eq!(k.dma_held(root), 0x9000);
    let ports = k.find_cap(root, CapKind::IoPorts, Rights::GRANT).unwrap();
    assert!(matches!(
        k.charge_dma(root, ports, 0x1000, T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::DmaMemory,
            found: CapKind::IoPorts
        })
    ));
}

/// A driver spawned by `root` with `budget`, holding a DMA allowance of
/// `allowance` bytes and the interrupt line 8 (the driver's handles, in
/// that order).
fn driver_with_budget(
    k: &mut KernelCore,
    root: TaskId,
    [_, _, irqs, dma]: [CapHandle; 4],
    budget: Budget,
    allowance: u64,
) -> (TaskId, CapHandle, CapHandle) {
    let mut spec = TaskSpec::new("driver");
    spec.budget = Some(budget);
    let (driver, _) = k.create_task(Some(root), spec, T0).unwrap();
    authorise(k, root, driver);
    for (parent, resource) in [
        (dma, DeviceResource::Dma { bytes: allowance }),
        (irqs, DeviceResource::Interrupts(InterruptLines::one(8))),
    ] {
        let cap = mint(k, root, parent, resource).unwrap();
        k.grant(root, cap, driver, T0).unwrap();
        k.drop_cap(root, cap, T0).unwrap();
    }
    let dma = k
        .find_cap(driver, CapKind::DmaMemory, Rights::WRITE)
        .unwrap();
    let line = k
        .find_cap(driver, CapKind::Interrupt, Rights::RECEIVE)
        .unwrap();
    (driver, dma, line)
}

#[test]
fn dma_frames_are_charged_to_the_holders_budget_and_refused_past_it() {
    let (mut k, root, caps) = with_root();
    let (driver, dma, _) =
        driver_with_budget(&mut k, root, caps, Budget::new(64 << 10, 8), 0x10_0000);
    let before = k.budget(driver).unwrap().used;
    k.charge_dma(driver, dma, 0x5000, T0).unwrap();
    assert_eq!(k.budget(driver).unwrap().used.frames, before.frames + 5);
    // Within the capability's allowance, past the budget: refused, typed,
    // with nothing charged.
    assert_eq!(
        k.charge_dma(driver, dma, 0x4000, T0),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget))
    );
    assert_eq!(k.dma_held(driver), 0x5000);
    assert_eq!(k.budget(driver).unwrap().used.frames, before.frames + 5);
    k.charge_dma(driver, dma, 0x3000, T0).unwrap();
    // A failed allocation gives back its frames too.
    k.uncharge_dma(driver, 0x3000);
    assert_eq!(k.budget(driver).unwrap().used.frames, before.frames + 5);
    k.check_invariants().unwrap();
}

#[test]
fn page_table_frames_charged_before_a_mapping_are_returned_if_unused() {
    let (mut k, root, caps) = with_root();
    let (driver, _, _) = driver_with_budget(&mut k, root, caps, Budget::new(64 << 10, 8), 0x1000);
    let before = k.budget(driver).unwrap().used.frames;
    assert_eq!(
        k.charge_frames(driver, 9),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget))
    );
    k.charge_frames(driver, 4).unwrap();
    k.release_frames(driver, 3);
    assert_eq!(k.budget(driver).unwrap().used.frames, before + 1);
    // Never more than was charged.
    k.release_frames(driver, 100);
    assert_eq!(k.budget(driver).unwrap().used.frames, 0);
    k.check_invariants().unwrap();
}

#[test]
fn a_binding_is_paid_by_its_holder_and_refused_past_its_budget() {
    let (mut k, root, caps) = with_root();
    let (driver, _, line) =
        driver_with_budget(&mut k, root, caps, Budget::new(64 << 10, 8), 0x1000);
    let channel = k.create_channel(driver, T0).unwrap();
    let before = k.budget(driver).unwrap().used.memory;
    k.bind_interrupt(driver, line, 8, channel, T0).unwrap();
    let cost = k.budget(driver).unwrap().used.memory - before;
    let notification = MessageEnvelope::new(
        pandagen_core::KERNEL_SERVICE,
        INTERRUPT_ACTION,
        pandagen_core::INTERRUPT_SCHEMA,
        pandagen_abi::MessagePayload::new(&InterruptNotification {
            line: 8,
            coalesced: 0,
        })
        .unwrap(),
    )
    .encode()
    .unwrap();
    assert_eq!(cost, binding_cost(notification.len()));
    k.check_invariants().unwrap();

    // A holder one byte short of the binding's cost cannot bind (the
    // same setup, with a budget cut to what it uses plus the cost - 1).
    let short = Budget::new(before + cost - 1, 8);
    let (mut k, root, caps) = with_root();
    let (poor, _, line) = driver_with_budget(&mut k, root, caps, short, 0x1000);
    let channel = k.create_channel(poor, T0).unwrap();
    assert_eq!(k.budget(poor).unwrap().used.memory, before);
    assert_eq!(
        k.bind_interrupt(poor, line, 8, channel, T0),
        Err(KernelError::ResourceExhausted(Resource::MemoryBudget))
    );
    assert_eq!(k.interrupt_holder(8), None);
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Unbound);
    k.check_invariants().unwrap();
}

#[test]
fn a_dead_drivers_budget_returns_whole_to_its_parent() {
    let (mut k, root, caps) = with_root();
    let limit = Budget::new(64 << 10, 64);
    let (driver, dma, line) = driver_with_budget(&mut k, root, caps, limit, 0x10_0000);
    let channel = k.create_channel(driver, T0).unwrap();
    k.bind_interrupt(driver, line, 8, channel, T0).unwrap();
    k.charge_dma(driver, dma, 0x8000, T0).unwrap();
    k.charge_frames(driver, 3).unwrap();
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Notified);
    k.check_invariants().unwrap();
    let with_driver = k.budget(root).unwrap().used;
    k.terminate(driver, ExitReason::Normal, T0).unwrap();
    // The notification still queued on the dead driver's channel went
    // with it; the line, the DMA frames, the page tables and the
    // binding's memory are all back, with the two records the root paid
    // for when it granted the driver its capabilities.
    let granted = Budget::memory(2 * pandagen_core::budget::CAP_COST);
    assert_eq!(
        k.budget(root).unwrap().used,
        with_driver.saturating_sub(limit).saturating_sub(granted)
    );
    assert_eq!(k.account_count(), 1);
    assert_eq!(k.interrupt_holder(8), None);
    assert_eq!(k.dma_held(driver), 0);
    k.check_invariants().unwrap();
}

#[test]
fn a_stale_binding_is_replaced_and_its_charge_returned() {
    let (mut k, root, [_, _, irqs, _]) = with_root();
    let used = |k: &KernelCore| k.budget(root).unwrap().used.memory;
    let channel = k.create_channel(root, T0).unwrap();
    let before = used(&k);
    k.bind_interrupt(root, irqs, 8, channel, T0).unwrap();
    let cost = used(&k) - before;
    assert!(cost > 0);
    k.drop_cap(root, channel, T0).unwrap();
    let next = k.create_channel(root, T0).unwrap();
    let with_next = used(&k);
    k.bind_interrupt(root, irqs, 8, next, T0).unwrap();
    // The stale binding's charge went back as the new one was made.
    assert_eq!(used(&k), with_next);
    assert_eq!(k.interrupt_holder(8), Some(root));
    k.check_invariants().unwrap();
}

#[test]
fn the_ports_right_below_a_kernel_port_are_the_drivers() {
    // The command/status ports end where the kernel's 0xf4..=0xf7 begin:
    // every width that stays below them is allowed, one that reaches them
    // is refused at the kernel's first port.
    let (mut k, root, [ports, ..]) = with_root();
    k.check_port_access(root, ports, 0xf3, 1, true, T0).unwrap();
    k.check_port_access(root, ports, 0xf2, 2, false, T0)
        .unwrap();
    k.check_port_access(root, ports, 0xf0, 4, true, T0).unwrap();
    assert_eq!(
        k.check_port_access(root, ports, 0xf1, 4, true, T0),
        device_error(DeviceError::KernelPort { port: 0xf4 })
    );
    k.check_port_access(root, ports, 0x3f7, 1, false, T0)
        .unwrap();
}

#[test]
fn a_port_window_needs_both_rights_a_live_capability_and_no_kernel_port() {
    let (mut k, root, [ports, ..]) = with_root();
    let keyboard = PortRange::new(0x60, 0x64);
    let both = k
        .mint_device(
            root,
            ports,
            DeviceResource::Ports(keyboard),
            Rights::READ | Rights::WRITE,
            T0,
        )
        .unwrap();
    let read_only = k
        .mint_device(
            root,
            ports,
            DeviceResource::Ports(keyboard),
            Rights::READ,
            T0,
        )
        .unwrap();
    assert_eq!(k.port_window(root, both), Some(keyboard));
    assert_eq!(k.port_range(root, both, T0), Ok(keyboard));
    // `in` alone is not a window the task's instructions may use.
    assert_eq!(k.port_window(root, read_only), None);
    assert_eq!(
        k.port_range(root, read_only, T0),
        Err(KernelError::InsufficientAuthority)
    );
    // The root's capability spans the kernel's ports: never a window.
    assert_eq!(k.port_window(root, ports), None);
    assert_eq!(
        k.port_range(root, ports, T0),
        Err(KernelError::Device(DeviceError::KernelPort { port: 0x20 }))
    );
    // Gone, it opens nothing.
    k.drop_cap(root, both, T0).unwrap();
    assert_eq!(k.port_window(root, both), None);
}

#[test]
fn a_writable_mapping_needs_write() {
    let (mut k, root, [_, memory, ..]) = with_root();
    let read_only = k
        .mint_device(root, memory, DeviceResource::Memory(BAR), Rights::READ, T0)
        .unwrap();
    k.check_device_mapping(root, read_only, BAR, false, T0)
        .unwrap();
    assert_eq!(
        k.check_device_mapping(root, read_only, BAR, true, T0),
        Err(KernelError::InsufficientAuthority)
    );
}

/// A kernel told where the framebuffer is, and its root task.
fn with_framebuffer() -> (KernelCore, TaskId, Vec<CapHandle>) {
    let mut k = kernel();
    k.set_reserved_physical(vec![RAM]);
    k.set_framebuffer(FRAMEBUFFER);
    let root = k.create_root_task("root", T0).unwrap();
    (k, root.task, root.capabilities)
}

#[test]
fn the_root_task_alone_receives_the_framebuffer_capability() {
    let (k, root, caps) = with_framebuffer();
    assert_eq!(
        caps.len(),
        pandagen_abi::syscall::ROOT_CAPABILITIES.len() + 1
    );
    let screen = *caps.last().unwrap();
    assert_eq!(
        k.inspect(root, screen).unwrap().kind(),
        CapKind::DeviceMemory
    );
    // Without a framebuffer, the root's capabilities are the nine.
    let mut plain = kernel();
    let root = plain.create_root_task("root", T0).unwrap();
    assert_eq!(
        root.capabilities.len(),
        pandagen_abi::syscall::ROOT_CAPABILITIES.len()
    );
}

#[test]
fn only_the_framebuffer_capability_maps_the_framebuffer() {
    let (mut k, root, caps) = with_framebuffer();
    let memory = caps[6];
    let screen = *caps.last().unwrap();
    // The root's all-of-device-memory capability does not reach it, to
    // map or to mint, even though the kernel's reserved list omits it.
    assert_eq!(
        k.check_device_mapping(root, memory, FRAMEBUFFER, true, T0),
        device_error(DeviceError::NotDeviceMemory {
            base: FRAMEBUFFER.base,
            len: FRAMEBUFFER.len
        })
    );
    assert!(mint(&mut k, root, memory, DeviceResource::Memory(FRAMEBUFFER)).is_err());
    assert!(mint(
        &mut k,
        root,
        memory,
        DeviceResource::Framebuffer(FRAMEBUFFER)
    )
    .is_err());
    // Its own capability maps it, and no page beyond.
    k.check_device_mapping(root, screen, FRAMEBUFFER, true, T0)
        .unwrap();
    assert_eq!(
        k.check_device_mapping(
            root,
            screen,
            PhysRange::new(FRAMEBUFFER.base, FRAMEBUFFER.len + 0x1000),
            true,
            T0
        ),
        device_error(DeviceError::OutsideGrant)
    );
    // A copy without GRANT, as a display service gets, maps it too.
    let copy = mint(
        &mut k,
        root,
        screen,
        DeviceResource::Framebuffer(FRAMEBUFFER),
    )
    .unwrap();
    k.check_device_mapping(root, copy, FRAMEBUFFER, false, T0)
        .unwrap();
}

#[test]
fn taking_the_screen_over_needs_the_framebuffer_capability() {
    let (mut k, root, caps) = with_framebuffer();
    let screen = *caps.last().unwrap();
    let channel = k.create_channel(root, T0).unwrap();
    let (range, _) = k.check_screen_takeover(root, screen, channel, T0).unwrap();
    assert_eq!(range, FRAMEBUFFER);
    // Other device memory, even all of it, is not the screen.
    let bar = mint(&mut k, root, caps[6], DeviceResource::Memory(BAR)).unwrap();
    for other in [caps[6], bar] {
        assert_eq!(
            k.check_screen_takeover(root, other, channel, T0).map(drop),
            device_error(DeviceError::NotFramebuffer)
        );
    }
    // Part of the screen is not the screen: the display owns all of it.
    let part = mint(
        &mut k,
        root,
        screen,
        DeviceResource::Framebuffer(PhysRange::new(FRAMEBUFFER.base, 0x1000)),
    )
    .unwrap();
    assert_eq!(
        k.check_screen_takeover(root, part, channel, T0).map(drop),
        device_error(DeviceError::NotFramebuffer)
    );
    // A read-only copy cannot draw.
    let read_only = k
        .mint_device(
            root,
            screen,
            DeviceResource::Framebuffer(FRAMEBUFFER),
            Rights::READ,
            T0,
        )
        .unwrap();
    assert_eq!(
        k.check_screen_takeover(root, read_only, channel, T0)
            .map(drop),
        Err(KernelError::InsufficientAuthority)
    );
    // The output goes to a channel the taker reads: not one it may only
    // send on (another service's), nor one it may only receive on.
    for rights in [Rights::SEND, Rights::RECEIVE] {
        let narrowed = k.clone_cap(root, channel, rights, T0).unwrap();
        assert_eq!(
            k.check_screen_takeover(root, screen, narrowed, T0)
                .map(drop),
            Err(KernelError::InsufficientAuthority)
        );
    }
    // Another task holding nothing cannot name the root's capability.
    let stranger = spawn(&mut k, "stranger");
    assert!(k
        .check_screen_takeover(stranger, screen, channel, T0)
        .is_err());
}

/// A driver whose line 8 is bound to a channel `root` receives on (the
/// driver holds only its send right), and the root's receive handle.
fn driver_bound_to_roots_channel(
    budget: Budget,
) -> (KernelCore, TaskId, TaskId, CapHandle, CapHandle) {
    let (mut k, root, caps) = with_root();
    let (driver, _, line) = driver_with_budget(&mut k, root, caps, budget, 0x1000);
    let inbox = k.create_channel(root, T0).unwrap();
    let send = k
        .clone_cap(root, inbox, Rights::SEND | Rights::GRANT, T0)
        .unwrap();
    k.grant(root, send, driver, T0).unwrap();
    k.drop_cap(root, send, T0).unwrap();
    let to_root = k.find_cap(driver, CapKind::Channel, Rights::SEND).unwrap();
    k.bind_interrupt(driver, line, 8, to_root, T0).unwrap();
    (k, root, driver, line, inbox)
}

#[test]
fn acknowledging_before_reading_queues_only_notifications_the_holder_pays_for() {
    // The holder acknowledges each notification without anyone reading
    // it: each acknowledgement prepares (and pays for) the next one, so
    // the notifications beside the queue bound stop at its budget instead
    // of growing the kernel heap without limit.
    let budget = Budget::new(16 << 10, 8);
    let (mut k, root, driver, line, inbox) = driver_bound_to_roots_channel(budget);
    let mut queued = 1;
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Notified);
    let refusal = loop {
        match k.acknowledge_interrupt(driver, line, 8, T0) {
            Ok(_) => {}
            Err(e) => break e,
        }
        assert_eq!(k.interrupt_fired(8), InterruptOutcome::Notified);
        queued += 1;
        k.check_invariants().unwrap();
        assert!(queued < 10_000, "acknowledgements never ran out of budget");
    };
    assert_eq!(
        refusal,
        KernelError::ResourceExhausted(Resource::MemoryBudget)
    );
    assert!(k.budget(driver).unwrap().used.memory <= budget.memory);
    // Refused, the line stays as it was: further fires are only counted.
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Coalesced);
    // Reading them gives the charges back, and the line re-arms.
    let used_before_reading = k.budget(driver).unwrap().used.memory;
    assert_eq!(notifications(&mut k, root, inbox).len(), queued);
    assert!(k.budget(driver).unwrap().used.memory < used_before_reading);
    assert_eq!(k.acknowledge_interrupt(driver, line, 8, T0), Ok(1));
    k.check_invariants().unwrap();
}

#[test]
fn a_notification_queued_when_its_holder_dies_stays_paid_for() {
    // The driver's line fired into the root's channel and the driver
    // died: the queued notification outlives the binding. Its charge
    // stays on the dead driver's account until the root reads it; then
    // the root has back exactly what it had before it spawned the
    // driver.
    let (mut k, root, driver, _, inbox) = driver_bound_to_roots_channel(Budget::new(64 << 10, 8));
    assert_eq!(k.interrupt_fired(8), InterruptOutcome::Notified);
    k.terminate(driver, ExitReason::Normal, T0).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.interrupt_holder(8), None);
    assert_eq!(k.account_count(), 2, "the dead driver's account still pays");
    assert_eq!(notifications(&mut k, root, inbox), vec![8]);
    assert_eq!(k.account_count(), 1, "everything it paid for is back");
    k.check_invariants().unwrap();
}

#[test]
fn an_access_to_the_last_port_is_checked_without_overflow() {
    // Found by the core fuzz target: a one-byte access to port 0xffff
    // through a grant ending there computed 0xffff + 1 and overflowed (a
    // panic in a kernel built with overflow checks).
    let (mut k, root, [ports, ..]) = with_root();
    let top = mint(
        &mut k,
        root,
        ports,
        DeviceResource::Ports(PortRange::new(0xfff0, 0xffff)),
    )
    .unwrap();
    for write in [false, true] {
        assert_eq!(k.check_port_access(root, top, 0xffff, 1, write, T0), Ok(()));
        assert_eq!(
            k.check_port_access(root, ports, 0xffff, 1, write, T0),
            Ok(())
        );
        assert_eq!(k.check_port_access(root, top, 0xfffe, 2, write, T0), Ok(()));
        assert_eq!(k.check_port_access(root, top, 0xfffc, 4, write, T0), Ok(()));
        assert_eq!(
            k.check_port_access(root, top, 0xffff, 2, write, T0),
            device_error(DeviceError::OutsideGrant)
        );
        assert_eq!(
            k.check_port_access(root, top, 0xfffe, 4, write, T0),
            device_error(DeviceError::OutsideGrant)
        );
    }
}
