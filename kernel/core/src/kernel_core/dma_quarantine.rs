//! DMA quarantine: a dead driver's DMA frames stay out of the free pool
//! until its device is known to be quiet.
//!
//! Without an IOMMU a device keeps whatever physical addresses its driver
//! gave it. A driver that dies mid-request leaves requests in the device,
//! which may still write into the driver's DMA frames long after the
//! driver is gone. Were those frames freed at once, they could be handed
//! to another task (a page of its stack, a page table) and the device's
//! late write would corrupt it. So at a DMA holder's death its frames are
//! *quarantined*: unmapped with its address space, but neither freed nor
//! uncharged.
//!
//! **Who pays.** The quarantined frames stay charged to the dead holder's
//! (closed) account, so they come out of the limit its spawner granted it:
//! the spawner, normally the process manager, chose to run a DMA driver
//! and is the one that can restart it. No new account is made and no one
//! else's budget is touched, so a quarantine can never hold more than the
//! driver was allowed while alive; a driver that dies again and again
//! before releasing holds a quarantine per dead instance, each carved from
//! the spawner's budget, which therefore stops the restarts (the spawn is
//! refused) long before the kernel runs short.
//!
//! **Who may release.** Releasing says "the device is reset; nothing it
//! was told survives". Only a task that can reset the device can say it:
//! one that holds, with `WRITE`, device-register capabilities (`IoPorts`
//! or `DeviceMemory`, not the framebuffer) that together cover *every*
//! register range the dead holder held with `WRITE` at its death. The
//! caller names those capabilities in the call. That is the next instance
//! of the driver (it is given the same ranges) after it has reset the
//! device, or a supervisor holding the root register capabilities that
//! decides never to restart it (after clearing the device's bus-master
//! bit through the `pci` service). Without an IOMMU, such a holder can
//! already make the device write any RAM, so the release gives it nothing
//! it did not have: a DMA-capable driver is trusted (see the threat model
//! in [`pandagen_abi::device`]).
//!
//! **A holder with no register capability** could program no device
//! itself: its frames are freed at its death as before.
//!
//! **A device never restarted** keeps its holder's frames quarantined,
//! charged to the spawner, until someone with the authority above
//! releases them: never reused, never leaked to another task.

use alloc::vec::Vec;
use pandagen_abi::device::{DeviceError, DeviceResource, PhysRange, MAX_RELEASE_REGISTERS};
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_abi::{Budget, CapHandle, CapKind, Instant, KernelError, Rights, TaskId};

use super::KernelCore;
use crate::budget::AccountId;
use crate::cap_table::ObjectRef;
use crate::sorted_map::SortedMap;

/// One dead holder's frames, waiting for its device to be reset.
#[derive(Debug)]
struct Quarantined {
    holder: TaskId,
    /// The dead holder's (closed) account, still charged `frames`.
    account: AccountId,
    frames: u64,
    regions: Vec<PhysRange>,
    /// The register ranges the holder could program its device through.
    registers: Vec<DeviceResource>,
}

/// The DMA regions of live holders and the quarantined ones of dead
/// holders. Each region is at least one frame charged to a budget, so
/// these records are bounded by the frames budgets.
#[derive(Debug, Default)]
pub struct DmaFrames {
    live: SortedMap<TaskId, Vec<PhysRange>>,
    quarantined: Vec<Quarantined>,
}

fn frames_in(regions: &[PhysRange]) -> u64 {
    regions.iter().map(|r| r.len / PAGE_SIZE).sum()
}

/// A register range a capability with `rights` on `object` lets its
/// holder program a device through, if it is one.
fn register_range(object: ObjectRef, rights: Rights) -> Option<DeviceResource> {
    match object {
        ObjectRef::Device(r @ (DeviceResource::Ports(_) | DeviceResource::Memory(_)))
            if rights.contains(Rights::WRITE) =>
        {
            Some(r)
        }
        _ => None,
    }
}

impl KernelCore {
    /// Kernel only: the frames of `region` were allocated for `task`'s
    /// DMA (after [`KernelCore::charge_dma`] charged them) and mapped
    /// into it. They are quarantined at its death if it can program a
    /// device (see the module docs).
    pub fn dma_allocated(&mut self, task: TaskId, region: PhysRange) {
        match self.devices.dma.live.get_mut(&task) {
            Some(regions) => regions.push(region),
            None => {
                self.devices.dma.live.insert(task, alloc::vec![region]);
            }
        }
    }

    /// At `task`'s death, before its capabilities go: quarantine its DMA
    /// regions if it held a device-register capability with `WRITE`.
    /// Returns the frames that stay charged to its account (the caller
    /// releases the rest of its own charge).
    pub(super) fn quarantine_dma(&mut self, task: TaskId) -> Budget {
        let Some(regions) = self.devices.dma.live.remove(&task) else {
            return Budget::ZERO;
        };
        let Some(t) = self.tasks.get(task) else {
            return Budget::ZERO;
        };
        let registers: Vec<DeviceResource> = t
            .space
            .iter()
            .filter_map(|(_, cap)| register_range(cap.object(), cap.rights()))
            .collect();
        if registers.is_empty() {
            return Budget::ZERO;
        }
        let frames = frames_in(&regions).min(t.own_charge.frames);
        self.devices.dma.quarantined.push(Quarantined {
            holder: task,
            account: t.account,
            frames,
            regions,
            registers,
        });
        Budget::new(0, frames)
    }

    /// The regions of dead `task`'s quarantined DMA frames: the kernel
    /// frees its address space without them.
    pub fn quarantined_dma(&self, task: TaskId) -> Vec<PhysRange> {
        self.devices
            .dma
            .quarantined
            .iter()
            .filter(|q| q.holder == task)
            .flat_map(|q| q.regions.iter().copied())
            .collect()
    }

    /// Frames quarantined now, over every dead holder.
    pub fn quarantined_dma_frames(&self) -> u64 {
        self.devices.dma.quarantined.iter().map(|q| q.frames).sum()
    }

    /// The caller has reset its device: release every quarantine whose
    /// dead holder's register ranges are each inside one of `registers`
    /// (the caller's `IoPorts` or `DeviceMemory` capabilities, each with
    /// `WRITE`). Their frames' charge returns up the dead holders'
    /// accounts to their spawners; the regions are returned for the kernel
    /// to free. Releasing nothing is not an error (a driver's first start
    /// finds no quarantine).
    ///
    /// Errors, with nothing released: `Device(OutsideGrant)` for more
    /// than [`MAX_RELEASE_REGISTERS`] capabilities; each capability's
    /// refusal (`InvalidCapability`, `InsufficientAuthority` without
    /// `WRITE`, `WrongCapabilityKind` for anything but device registers,
    /// the framebuffer included). Cost: O(registers × quarantined ranges).
    pub fn release_dma_quarantine(
        &mut self,
        caller: TaskId,
        registers: &[CapHandle],
        now: Instant,
    ) -> Result<Vec<PhysRange>, KernelError> {
        if registers.len() > MAX_RELEASE_REGISTERS {
            return Err(KernelError::Device(DeviceError::OutsideGrant));
        }
        let mut held: Vec<DeviceResource> = Vec::with_capacity(registers.len());
        for &handle in registers {
            let info = self.validate(caller, handle, None, Rights::WRITE, now)?;
            match register_range(info.object, info.rights) {
                Some(range) => held.push(range),
                None => {
                    return Err(KernelError::WrongCapabilityKind {
                        expected: CapKind::DeviceMemory,
                        found: info.kind(),
                    })
                }
            }
        }
        let covered = |q: &Quarantined| {
            q.registers
                .iter()
                .all(|r| held.iter().any(|h| h.contains(r)))
        };
        let mut released = Vec::new();
        let mut kept = Vec::with_capacity(self.devices.dma.quarantined.len());
        for q in core::mem::take(&mut self.devices.dma.quarantined) {
            if covered(&q) {
                self.accounts.release(q.account, Budget::new(0, q.frames));
                released.extend(q.regions);
            } else {
                kept.push(q);
            }
        }
        self.devices.dma.quarantined = kept;
        Ok(released)
    }

    /// Each quarantine's account and frames, for the account invariant.
    pub(super) fn quarantine_charges(&self) -> impl Iterator<Item = (AccountId, u64)> + '_ {
        self.devices
            .dma
            .quarantined
            .iter()
            .map(|q| (q.account, q.frames))
    }
}
