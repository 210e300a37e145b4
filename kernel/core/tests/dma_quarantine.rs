//! DMA quarantine: a dead driver's DMA frames stay charged and out of the
//! free pool until a task that can reset its device releases them.

mod common;

use common::*;
use pandagen_abi::device::{
    DeviceError, DeviceResource, PhysRange, PortRange, MAX_RELEASE_REGISTERS,
};
use pandagen_abi::error::Resource;
use pandagen_abi::{Budget, CapHandle, CapKind, KernelError, Rights, TaskId};
use pandagen_core::{KernelCore, TaskSpec, DEVICE_RIGHTS, ROOT_DEVICE_CAPS};

const RAM: PhysRange = PhysRange::new(0, 0x800_0000);
const BAR: PhysRange = PhysRange::new(0xfe00_0000, 0x4000);
const OTHER_BAR: PhysRange = PhysRange::new(0xfe10_0000, 0x1000);
const PORTS: PortRange = PortRange::new(0xc000, 0xc03f);
/// Where the kernel put the dead driver's DMA frames (any RAM will do:
/// the core only records them).
const DMA_REGION: PhysRange = PhysRange::new(0x40_0000, 0x3000);
const DMA_FRAMES: u64 = 3;

/// A kernel and a supervisor holding the root device capabilities
/// (ports, memory, interrupts, DMA).
fn supervisor() -> (KernelCore, TaskId, [CapHandle; 4]) {
    let mut k = kernel();
    k.set_reserved_physical(vec![RAM]);
    let pm = spawn(&mut k, "pm");
    let caps = ROOT_DEVICE_CAPS.map(|(object, rights)| k.mint(pm, object, rights, T0).unwrap());
    (k, pm, caps)
}

/// Give `to` a capability for `resource`, minted from `parent` with
/// `rights`; its handle in `to`.
fn give(
    k: &mut KernelCore,
    pm: TaskId,
    parent: CapHandle,
    resource: DeviceResource,
    rights: Rights,
    to: TaskId,
) -> CapHandle {
    let cap = k.mint_device(pm, parent, resource, rights, T0).unwrap();
    let before: Vec<CapHandle> = held(k, to);
    k.grant(pm, cap, to, T0).unwrap();
    k.drop_cap(pm, cap, T0).unwrap();
    held(k, to)
        .into_iter()
        .find(|h| !before.contains(h))
        .expect("granted")
}

fn held(k: &KernelCore, task: TaskId) -> Vec<CapHandle> {
    k.list_caps(task)
        .map(|caps| caps.into_iter().map(|(h, _)| h).collect())
        .unwrap_or_default()
}

/// A driver started by `pm` with a frames budget of 16, `registers` (each
/// with every device right), and a DMA region of [`DMA_FRAMES`] frames
/// charged and allocated. Returns the driver and its register handles.
fn driver_with_dma(
    k: &mut KernelCore,
    pm: TaskId,
    [ports, memory, _, dma]: [CapHandle; 4],
    registers: &[DeviceResource],
) -> (TaskId, Vec<CapHandle>) {
    let mut spec = TaskSpec::new("virtio-blk");
    spec.budget = Some(Budget::new(64 << 10, 16));
    let (driver, _) = k.create_task(Some(pm), spec, T0).unwrap();
    authorise(k, pm, driver);
    let handles = registers
        .iter()
        .map(|r| {
            let parent = match r {
                DeviceResource::Ports(_) => ports,
                _ => memory,
            };
            give(k, pm, parent, *r, DEVICE_RIGHTS, driver)
        })
        .collect();
    let allowance = give(
        k,
        pm,
        dma,
        DeviceResource::Dma { bytes: 0x10000 },
        DEVICE_RIGHTS,
        driver,
    );
    k.charge_dma(driver, allowance, DMA_REGION.len, T0).unwrap();
    k.dma_allocated(driver, DMA_REGION);
    (driver, handles)
}

fn pm_frames(k: &KernelCore, pm: TaskId) -> u64 {
    k.budget(pm).unwrap().used.frames
}

#[test]
fn a_dead_drivers_frames_stay_charged_and_out_of_the_pool_until_released() {
    let (mut k, pm, caps) = supervisor();
    let before = pm_frames(&k, pm);
    let accounts_before = k.account_count();
    let (driver, _) = driver_with_dma(&mut k, pm, caps, &[DeviceResource::Memory(BAR)]);
    k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    // Kept from the free pool, and still on the supervisor's bill (through
    // the dead driver's closed account): not a frame returned.
    assert_eq!(k.quarantined_dma(driver), [DMA_REGION]);
    assert_eq!(k.quarantined_dma_frames(), DMA_FRAMES);
    assert_eq!(pm_frames(&k, pm), before + DMA_FRAMES);
    assert_eq!(k.account_count(), accounts_before + 1);
    k.check_invariants().unwrap();

    // The next instance, given the same BAR, resets the device and
    // releases: the frames come back to the kernel and the charge to the
    // supervisor.
    let (next, registers) = driver_with_dma(&mut k, pm, caps, &[DeviceResource::Memory(BAR)]);
    assert_eq!(
        k.release_dma_quarantine(next, &registers, T0).unwrap(),
        [DMA_REGION]
    );
    assert!(k.quarantined_dma(driver).is_empty());
    assert_eq!(k.quarantined_dma_frames(), 0);
    k.check_invariants().unwrap();
    k.terminate(next, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    // The second instance's own frames are quarantined in turn; the
    // supervisor releases them with its root register capability.
    assert_eq!(k.quarantined_dma_frames(), DMA_FRAMES);
    assert_eq!(
        k.release_dma_quarantine(pm, &[caps[1]], T0).unwrap(),
        [DMA_REGION]
    );
    assert_eq!(pm_frames(&k, pm), before);
    assert_eq!(k.account_count(), accounts_before, "closed accounts freed");
    k.check_invariants().unwrap();
}

#[test]
fn only_capabilities_covering_every_register_range_release() {
    let (mut k, pm, caps) = supervisor();
    let (driver, _) = driver_with_dma(
        &mut k,
        pm,
        caps,
        &[DeviceResource::Memory(BAR), DeviceResource::Ports(PORTS)],
    );
    k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    let (other, registers) = driver_with_dma(
        &mut k,
        pm,
        caps,
        &[
            DeviceResource::Memory(OTHER_BAR),
            DeviceResource::Memory(PhysRange::new(BAR.base, 0x1000)),
            DeviceResource::Ports(PORTS),
        ],
    );
    // Another device's BAR, part of this one's BAR, or its ports alone:
    // none can reset everything the dead driver could program.
    for named in [&registers[..1], &registers[1..2], &registers[1..], &[]] {
        assert!(k
            .release_dma_quarantine(other, named, T0)
            .unwrap()
            .is_empty());
        assert_eq!(k.quarantined_dma_frames(), DMA_FRAMES);
    }
    // Not the DMA allowance, not a capability without WRITE.
    let allowance = k
        .find_cap(other, CapKind::DmaMemory, Rights::WRITE)
        .unwrap();
    assert_eq!(
        k.release_dma_quarantine(other, &[allowance], T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::DeviceMemory,
            found: CapKind::DmaMemory
        })
    );
    let read_only = give(
        &mut k,
        pm,
        caps[1],
        DeviceResource::Memory(BAR),
        Rights::from_bits(DEVICE_RIGHTS.bits() & !Rights::WRITE.bits()),
        other,
    );
    assert_eq!(
        k.release_dma_quarantine(other, &[read_only, registers[2]], T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.release_dma_quarantine(other, &[registers[2]; 9], T0),
        Err(KernelError::Device(DeviceError::OutsideGrant))
    );
    assert_eq!(k.quarantined_dma_frames(), DMA_FRAMES, "nothing released");
    // Both ranges covered, by two capabilities: released.
    let whole_bar = give(
        &mut k,
        pm,
        caps[1],
        DeviceResource::Memory(BAR),
        DEVICE_RIGHTS,
        other,
    );
    assert_eq!(
        k.release_dma_quarantine(other, &[registers[2], whole_bar], T0)
            .unwrap(),
        [DMA_REGION]
    );
    k.check_invariants().unwrap();
}

#[test]
fn a_holder_that_could_program_no_device_frees_its_frames_at_death() {
    let (mut k, pm, caps) = supervisor();
    let before = pm_frames(&k, pm);
    let (driver, _) = driver_with_dma(&mut k, pm, caps, &[]);
    k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    assert!(k.quarantined_dma(driver).is_empty());
    assert_eq!(k.quarantined_dma_frames(), 0);
    assert_eq!(pm_frames(&k, pm), before);
    k.check_invariants().unwrap();
}

#[test]
fn quarantines_of_drivers_that_keep_dying_are_bounded_by_the_supervisors_budget() {
    let mut k = kernel();
    k.set_reserved_physical(vec![RAM]);
    // A supervisor with room for its own records and 40 frames to give.
    let mut spec = TaskSpec::new("pm");
    spec.budget = Some(Budget::new(1 << 20, 40));
    let (pm, _) = k.create_task(None, spec, T0).unwrap();
    let caps = ROOT_DEVICE_CAPS.map(|(object, rights)| k.mint(pm, object, rights, T0).unwrap());
    let mut deaths = 0;
    // Each instance takes a 16-frame budget and dies with 3 frames of DMA
    // unreleased: the supervisor can start instances while 16 frames are
    // left of its 40 (after 40 - 16 = 24 are quarantined, 8 deaths, it
    // cannot).
    while k.budget(pm).unwrap().available().frames >= 16 {
        let (driver, _) = driver_with_dma(&mut k, pm, caps, &[DeviceResource::Memory(BAR)]);
        k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
            .unwrap();
        deaths += 1;
        assert!(deaths <= 40, "quarantines cost the supervisor nothing");
    }
    assert_eq!(deaths, 9);
    assert_eq!(k.quarantined_dma_frames(), deaths * DMA_FRAMES);
    let mut spec = TaskSpec::new("virtio-blk");
    spec.budget = Some(Budget::new(64 << 10, 16));
    assert_eq!(
        k.create_task(Some(pm), spec, T0).map(drop),
        Err(KernelError::ResourceExhausted(Resource::FrameBudget))
    );
    k.check_invariants().unwrap();
}

#[test]
fn only_the_dma_frames_are_quarantined_the_drivers_other_frames_come_back() {
    let (mut k, pm, caps) = supervisor();
    let before = pm_frames(&k, pm);
    let (driver, _) = driver_with_dma(&mut k, pm, caps, &[DeviceResource::Memory(BAR)]);
    // The driver's stack and page tables: frames charged to it that no
    // device was ever told of.
    k.charge_frames(driver, 5).unwrap();
    k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    assert_eq!(k.quarantined_dma_frames(), DMA_FRAMES);
    assert_eq!(pm_frames(&k, pm), before + DMA_FRAMES);
    k.check_invariants().unwrap();
}

#[test]
fn a_holder_that_could_only_read_device_registers_frees_its_frames_at_death() {
    let (mut k, pm, caps) = supervisor();
    let before = pm_frames(&k, pm);
    let (driver, _) = driver_with_dma(&mut k, pm, caps, &[]);
    // Status registers it may read: it can start no DMA through them.
    for (parent, resource) in [
        (caps[0], DeviceResource::Ports(PORTS)),
        (caps[1], DeviceResource::Memory(BAR)),
    ] {
        give(
            &mut k,
            pm,
            parent,
            resource,
            Rights::from_bits(DEVICE_RIGHTS.bits() & !Rights::WRITE.bits()),
            driver,
        );
    }
    k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    assert!(k.quarantined_dma(driver).is_empty());
    assert_eq!(k.quarantined_dma_frames(), 0);
    assert_eq!(pm_frames(&k, pm), before);
    k.check_invariants().unwrap();
}

#[test]
fn a_release_may_name_as_many_register_capabilities_as_the_call_carries() {
    let (mut k, pm, caps) = supervisor();
    let (driver, _) = driver_with_dma(&mut k, pm, caps, &[DeviceResource::Memory(BAR)]);
    k.terminate(driver, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    // Seven capabilities that cover nothing of the dead driver's, and the
    // one that covers its BAR last: exactly the call's limit.
    let mut named: Vec<CapHandle> = (0..MAX_RELEASE_REGISTERS as u64 - 1)
        .map(|i| {
            give(
                &mut k,
                pm,
                caps[0],
                DeviceResource::Ports(PortRange::new(0xd000 + 8 * i as u16, 0xd007 + 8 * i as u16)),
                DEVICE_RIGHTS,
                pm,
            )
        })
        .collect();
    named.push(caps[1]);
    assert_eq!(named.len(), MAX_RELEASE_REGISTERS);
    assert_eq!(
        k.release_dma_quarantine(pm, &named, T0).unwrap(),
        [DMA_REGION]
    );
    assert_eq!(k.quarantined_dma_frames(), 0);
    k.check_invariants().unwrap();
}
