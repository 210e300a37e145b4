//! Device capabilities: minting narrower ones, checking each use, binding
//! interrupt lines to channels, and the DMA charge (see
//! [`pandagen_abi::device`]).
//!
//! The hardware side (the `in`/`out` instruction, the page tables, the PIC,
//! the frames) is the kernel's; this module decides, before any of it
//! happens, whether the caller may. Every refusal of a capability is
//! audited as any other; a range outside the grant is
//! `Device(OutsideGrant)` with nothing done.
//!
//! Interrupts: a line is bound to one channel at a time. When it fires the
//! kernel masks it and [`KernelCore::interrupt_fired`] queues the
//! notification the binding prepared when it was made (so the interrupt
//! path builds nothing), in the room the kernel keeps beside the queue
//! bound; fires until the holder acknowledges are counted, not queued. A
//! holder that never acknowledges leaves its own line masked and nothing
//! else: the other lines have their own state. The binding ends when its
//! holder dies.
//!
//! Accounting: a binding's notification is charged to its holder's memory
//! budget ([`binding_cost`]) while it is prepared; when the line fires the
//! charge moves to the queued message, which returns it when received or
//! discarded, and the acknowledgement that prepares the next one charges
//! again. So every notification that exists is paid for, whether its
//! binding still exists or not, and an acknowledgement cannot queue
//! notifications nobody pays for. A minted capability is charged like any
//! record, and
//! DMA memory to its holder's frames budget ([`KernelCore::charge_dma`]);
//! the page tables that device and DMA mappings need are charged by the
//! kernel through [`KernelCore::charge_frames`]. All of it returns when
//! the holder dies.

use alloc::vec::Vec;
use pandagen_abi::device::{
    DeviceError, DeviceResource, InterruptLines, InterruptNotification, PhysRange, PortRange,
    INTERRUPT_ACTION, INTERRUPT_LINES, KERNEL_INTERRUPT_LINES, KERNEL_PORTS,
};
use pandagen_abi::{
    CapHandle, CapKind, Instant, KernelError, MessageEnvelope, MessagePayload, Rights,
    SchemaVersion, TaskId,
};

use super::KernelCore;
use crate::audit::CapabilityEvent;
use crate::budget::{allocation, message_cost, AccountId};
use crate::cap_table::{Mintable, ObjectRef};
use crate::channel::ChannelRef;
use crate::sorted_map::SortedMap;
use crate::KERNEL_SERVICE;

/// The schema of interrupt notifications.
pub const INTERRUPT_SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);

/// The rights each device kind can carry (a mint never adds others).
pub const DEVICE_RIGHTS: Rights = Rights::from_bits(
    Rights::READ.bits()
        | Rights::WRITE.bits()
        | Rights::RECEIVE.bits()
        | Rights::GRANT.bits()
        | Rights::TRANSFER.bits(),
);

/// One interrupt line's binding.
#[derive(Debug)]
struct Binding {
    holder: TaskId,
    /// The holder's account, charged `cost` while the binding is armed.
    payer: AccountId,
    cost: u64,
    channel: ChannelRef,
    /// The notification, encoded (and charged) when the binding was made
    /// or last acknowledged; `None` once it fired (the queued message
    /// carries the charge) until the acknowledgement that re-arms it.
    armed: Option<Vec<u8>>,
    /// Fires seen while the line waited for acknowledgement.
    coalesced: u32,
}

/// The device side of the object model.
#[derive(Debug, Default)]
pub struct Devices {
    /// Physical ranges that are never device memory: RAM, the kernel's
    /// image and tables.
    reserved: Vec<PhysRange>,
    /// The framebuffer's pages: never `Memory`, only `Framebuffer`, whose
    /// one capability the kernel mints for the root task.
    framebuffer: Option<PhysRange>,
    lines: [Option<Binding>; INTERRUPT_LINES as usize],
    /// DMA bytes each task holds, against its capability's allowance (a
    /// map whose heap depends only on how many tasks hold DMA memory).
    dma_held: SortedMap<TaskId, u64>,
    /// Where each holder's DMA frames are, and the quarantined frames of
    /// dead holders (see `dma_quarantine`).
    pub(super) dma: super::dma_quarantine::DmaFrames,
}

/// What the kernel does with a line that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptOutcome {
    /// The notification was queued; keep the line masked until the
    /// holder acknowledges.
    Notified,
    /// The line was already waiting for acknowledgement: counted.
    Coalesced,
    /// Nobody holds the line (or its channel closed): keep it masked.
    Unbound,
}

fn refuse(e: DeviceError) -> KernelError {
    KernelError::Device(e)
}

/// The first kernel port in `range`, if any.
fn kernel_port_in(range: &PortRange) -> Option<u16> {
    KERNEL_PORTS
        .iter()
        .find(|k| k.overlaps(range))
        .map(|k| k.first.max(range.first))
}

fn kernel_line_in(lines: &InterruptLines) -> Option<u8> {
    KERNEL_INTERRUPT_LINES
        .iter()
        .copied()
        .find(|&l| lines.contains_line(l))
}

/// Kernel memory an armed binding whose notification is `len` bytes
/// holds: the prepared notification and the two queue-buffer entries its
/// kept room can grow the channel's buffer by (see `slab::fit_queue`).
/// This is exactly what the notification costs once queued
/// ([`message_cost`]), so that firing moves the charge to the message
/// without charging anything in the interrupt path.
pub const fn binding_cost(len: usize) -> u64 {
    allocation(len) + 2 * core::mem::size_of::<crate::channel::Message>() as u64
}

const _: () = assert!(binding_cost(40) == message_cost(40, 0));
const _: () = assert!(binding_cost(200) == message_cost(200, 0));

fn notification_bytes(line: u8) -> Result<Vec<u8>, KernelError> {
    let payload = MessagePayload::new(&InterruptNotification { line, coalesced: 0 })?;
    Ok(
        MessageEnvelope::new(KERNEL_SERVICE, INTERRUPT_ACTION, INTERRUPT_SCHEMA, payload)
            .encode()?,
    )
}

impl KernelCore {
    /// Kernel only, at boot: the physical ranges that are never device
    /// memory (every RAM region of the firmware's map, whatever its use,
    /// the kernel's own ranges, the framebuffer the kernel draws on).
    pub fn set_reserved_physical(&mut self, ranges: Vec<PhysRange>) {
        self.devices.reserved = ranges;
    }

    /// Kernel only, at boot, before the root task: the framebuffer's
    /// pages. From then on no `Memory` capability can name them; the root
    /// task receives the one `Framebuffer` capability for them (see
    /// [`KernelCore::create_root_task`]).
    pub fn set_framebuffer(&mut self, range: PhysRange) {
        self.devices.framebuffer = Some(range);
    }

    /// The framebuffer's pages, if the machine has one.
    pub fn framebuffer(&self) -> Option<PhysRange> {
        self.devices.framebuffer
    }

    /// The first reserved range `range` overlaps (the framebuffer
    /// included: it is not ordinary device memory).
    fn reserved_overlap(&self, range: &PhysRange) -> Option<PhysRange> {
        self.devices
            .reserved
            .iter()
            .chain(self.devices.framebuffer.as_ref())
            .copied()
            .find(|r| r.overlaps(range))
    }

    /// Whether `resource` names only what a driver may hold: no kernel
    /// port, no kernel line, no RAM or kernel memory.
    fn check_device_resource(&self, resource: &DeviceResource) -> Result<(), KernelError> {
        if !resource.is_valid() {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        match resource {
            DeviceResource::Ports(r) => match kernel_port_in(r) {
                Some(port) => Err(refuse(DeviceError::KernelPort { port })),
                None => Ok(()),
            },
            DeviceResource::Memory(r) => match self.reserved_overlap(r) {
                Some(_) => Err(refuse(DeviceError::NotDeviceMemory {
                    base: r.base,
                    len: r.len,
                })),
                None => Ok(()),
            },
            DeviceResource::Interrupts(l) => match kernel_line_in(l) {
                Some(line) => Err(refuse(DeviceError::KernelInterrupt { line })),
                None => Ok(()),
            },
            DeviceResource::Dma { .. } => Ok(()),
            DeviceResource::Framebuffer(r) => match self.devices.framebuffer {
                Some(screen) if screen.contains(r) => Ok(()),
                _ => Err(refuse(DeviceError::NotDeviceMemory {
                    base: r.base,
                    len: r.len,
                })),
            },
        }
    }

    /// Mint, from the caller's device capability `parent` (needing
    /// `GRANT`), a capability for `narrower` — of the same kind and inside
    /// the parent's range — with `rights` cut to the parent's. The new
    /// capability is in the caller's space, ready to hand to a driver.
    /// Audited as `Granted { from: Some(caller), source: parent }`.
    ///
    /// Errors, in order: the parent's refusal (`InvalidCapability`,
    /// `WrongCapabilityKind`, `InsufficientAuthority`); `Device(OutsideGrant)`
    /// for a range not inside the parent's; `Device(KernelPort |
    /// KernelInterrupt | NotDeviceMemory)` for what the kernel keeps;
    /// `ResourceExhausted(CapabilitySlots)`. Cost: O(reserved ranges).
    pub fn mint_device(
        &mut self,
        caller: TaskId,
        parent: CapHandle,
        narrower: DeviceResource,
        rights: Rights,
        now: Instant,
    ) -> Result<CapHandle, KernelError> {
        let info = self.validate(caller, parent, Some(narrower.kind()), Rights::GRANT, now)?;
        let ObjectRef::Device(granted) = info.object else {
            return Err(KernelError::InvalidCapability);
        };
        if !granted.contains(&narrower) {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        self.check_device_resource(&narrower)?;
        self.require_room(caller, 1)?;
        let payer = self.pay(caller, crate::budget::CAP_COST)?;
        let rights = info.rights.attenuate(rights).attenuate(DEVICE_RIGHTS);
        let cap = self.new_record(ObjectRef::Device(narrower), rights, caller, payer);
        self.audit.record(
            now,
            CapabilityEvent::Granted {
                cap: cap.id(),
                kind: narrower.kind(),
                rights,
                from: Some(caller),
                to: caller,
                source: Some(info.id),
            },
        );
        Ok(self.install(caller, cap))
    }

    /// The resource `handle` designates, for a use needing `required`.
    fn device_use(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        kind: CapKind,
        required: Rights,
        now: Instant,
    ) -> Result<DeviceResource, KernelError> {
        let info = self.validate(caller, handle, Some(kind), required, now)?;
        match info.object {
            ObjectRef::Device(resource) => Ok(resource),
            _ => Err(KernelError::InvalidCapability),
        }
    }

    /// May `caller` do a `width`-byte `in` (`write == false`, needs
    /// `READ`) or `out` (needs `WRITE`) on `port` through `handle`?
    /// Errors: the capability's refusal; `Device(BadWidth)`;
    /// `Device(OutsideGrant)`; `Device(KernelPort)`. O(1).
    pub fn check_port_access(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        port: u16,
        width: u8,
        write: bool,
        now: Instant,
    ) -> Result<(), KernelError> {
        let required = if write { Rights::WRITE } else { Rights::READ };
        let resource = self.device_use(caller, handle, CapKind::IoPorts, required, now)?;
        if !matches!(width, 1 | 2 | 4) {
            return Err(refuse(DeviceError::BadWidth { width }));
        }
        let DeviceResource::Ports(range) = resource else {
            return Err(KernelError::InvalidCapability);
        };
        if !range.contains_access(port, width) {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        // `port + width - 1` fits a port (the grant contains the access),
        // but `port + width` does not for an access ending at 0xffff.
        let access = PortRange::new(port, port + (u16::from(width) - 1));
        match kernel_port_in(&access) {
            Some(port) => Err(refuse(DeviceError::KernelPort { port })),
            None => Ok(()),
        }
    }

    /// The port range `handle` designates, for a holder with `READ` and
    /// `WRITE` (for a kernel that grants ports in the TSS bitmap rather
    /// than per access). Errors: the capability's refusal;
    /// `Device(KernelPort)`.
    pub fn port_range(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: Instant,
    ) -> Result<PortRange, KernelError> {
        let resource = self.device_use(
            caller,
            handle,
            CapKind::IoPorts,
            Rights::READ | Rights::WRITE,
            now,
        )?;
        let DeviceResource::Ports(range) = resource else {
            return Err(KernelError::InvalidCapability);
        };
        match kernel_port_in(&range) {
            Some(port) => Err(refuse(DeviceError::KernelPort { port })),
            None => Ok(range),
        }
    }

    /// The port range `task`'s capability `handle` opens to its own `in`
    /// and `out` instructions, if it still does: an `IoPorts` capability
    /// with `READ` and `WRITE`, in `task`'s space now. Audits nothing (the
    /// kernel asks this after each call and at each switch to `task`, to
    /// close the ports of a capability that is gone). O(1).
    pub fn port_window(&self, task: TaskId, handle: CapHandle) -> Option<PortRange> {
        let cap = self
            .check(
                task,
                handle,
                Some(CapKind::IoPorts),
                Rights::READ | Rights::WRITE,
            )
            .ok()?;
        match cap.info().object {
            ObjectRef::Device(DeviceResource::Ports(range)) if kernel_port_in(&range).is_none() => {
                Some(range)
            }
            _ => None,
        }
    }

    /// May `caller` map `range` through `handle` (`READ`; `WRITE` too for
    /// a writable mapping)? Errors: the capability's refusal;
    /// `Device(OutsideGrant)` for a range not inside the capability's (or
    /// empty, misaligned); `Device(NotDeviceMemory)` for RAM or kernel
    /// memory. O(reserved ranges).
    pub fn check_device_mapping(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        range: PhysRange,
        writable: bool,
        now: Instant,
    ) -> Result<(), KernelError> {
        let required = if writable {
            Rights::READ | Rights::WRITE
        } else {
            Rights::READ
        };
        let granted = self.device_use(caller, handle, CapKind::DeviceMemory, required, now)?;
        let wanted = match granted {
            DeviceResource::Framebuffer(_) => DeviceResource::Framebuffer(range),
            _ => DeviceResource::Memory(range),
        };
        if !range.is_valid() || !granted.contains(&wanted) {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        self.check_device_resource(&wanted)
    }

    /// May `caller` take the screen over from the kernel's early console
    /// with its capability `framebuffer` (`READ | WRITE`, the framebuffer's
    /// own) and have the screen's output sent on the channel `channel`
    /// names (`SEND | RECEIVE`: one it reads)? Returns the framebuffer's pages and the channel.
    /// Errors: the capabilities' refusals; `Device(NotFramebuffer)` for
    /// other device memory. O(1).
    pub fn check_screen_takeover(
        &mut self,
        caller: TaskId,
        framebuffer: CapHandle,
        channel: CapHandle,
        now: Instant,
    ) -> Result<(PhysRange, ChannelRef), KernelError> {
        let granted = self.device_use(
            caller,
            framebuffer,
            CapKind::DeviceMemory,
            Rights::READ | Rights::WRITE,
            now,
        )?;
        let range = match (granted, self.devices.framebuffer) {
            (DeviceResource::Framebuffer(r), Some(screen)) if r == screen => r,
            _ => return Err(refuse(DeviceError::NotFramebuffer)),
        };
        // The output goes to a channel the taker reads: the kernel stamps
        // its messages as its own, so it must never queue them, on a
        // task's behalf, in a channel that task may only send on (another
        // service's, such as the process manager's public channel).
        let channel = self.channel_with(caller, channel, Rights::SEND | Rights::RECEIVE, now)?;
        Ok((range, channel))
    }

    /// Bind interrupt `line` to the channel `channel` names (needing
    /// `SEND`), through the caller's `Interrupt` capability `handle`
    /// (needing `RECEIVE`). The notification is encoded now, so that the
    /// interrupt path only moves it into the queue. The kernel unmasks the
    /// line after this returns `Ok`.
    ///
    /// Errors: the capabilities' refusals; `Device(OutsideGrant)`,
    /// `Device(KernelInterrupt)`; `Device(AlreadyBound)` if any task holds
    /// the line (a second binding is refused, not a replacement).
    pub fn bind_interrupt(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        line: u8,
        channel: CapHandle,
        now: Instant,
    ) -> Result<(), KernelError> {
        let granted = self.device_use(caller, handle, CapKind::Interrupt, Rights::RECEIVE, now)?;
        let channel = self.channel_with(caller, channel, Rights::SEND, now)?;
        let wanted = DeviceResource::Interrupts(InterruptLines::one(line));
        if !wanted.is_valid() || !granted.contains(&wanted) {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        self.check_device_resource(&wanted)?;
        if let Some(existing) = &self.devices.lines[line as usize] {
            if self.channel_open(existing.channel) {
                return Err(refuse(DeviceError::AlreadyBound { line }));
            }
            // Nobody can be told of this line any more: the binding goes.
            self.end_binding(line);
        }
        let armed = notification_bytes(line)?;
        let cost = binding_cost(armed.len());
        let payer = self.pay(caller, cost)?;
        self.adjust_kernel_room(channel, 1);
        self.devices.lines[line as usize] = Some(Binding {
            holder: caller,
            payer,
            cost,
            channel,
            armed: Some(armed),
            coalesced: 0,
        });
        Ok(())
    }

    fn channel_open(&self, channel: ChannelRef) -> bool {
        self.channels.get(channel).is_some_and(|c| !c.is_closed())
    }

    /// End `line`'s binding: the charge of its prepared notification
    /// returns to the holder (a queued one keeps its charge until it is
    /// received or discarded), its channel stops keeping room for it.
    fn end_binding(&mut self, line: u8) {
        if let Some(binding) = self.devices.lines[line as usize].take() {
            if binding.armed.is_some() {
                self.accounts.release_memory(binding.payer, binding.cost);
            }
            self.adjust_kernel_room(binding.channel, -1);
        }
    }

    /// The line fired (the kernel has masked it). Queues the prepared
    /// notification unless one is outstanding, in which case the fire is
    /// counted. Neither allocates nor frees nor charges: the notification
    /// was encoded and charged at bind or acknowledgement time (the charge
    /// moves to the queued message) and the queue keeps an entry free for
    /// it. If the channel has closed, nobody can be told: the line stays
    /// masked, and a new binding may replace this one.
    pub fn interrupt_fired(&mut self, line: u8) -> InterruptOutcome {
        let Some(channel) = self
            .devices
            .lines
            .get(line as usize)
            .and_then(Option::as_ref)
            .map(|b| b.channel)
        else {
            return InterruptOutcome::Unbound;
        };
        if !self.channel_open(channel) {
            return InterruptOutcome::Unbound;
        }
        let binding = self.devices.lines[line as usize]
            .as_mut()
            .expect("found above");
        let Some(bytes) = binding.armed.take() else {
            binding.coalesced = binding.coalesced.saturating_add(1);
            return InterruptOutcome::Coalesced;
        };
        let payer = binding.payer;
        match self.send_into_kernel_room(channel, bytes, payer) {
            Ok(_) => InterruptOutcome::Notified,
            Err(_) => unreachable!("the channel is open (checked above)"),
        }
    }

    /// The holder of `line`'s binding acknowledges it (through its
    /// `Interrupt` capability with `RECEIVE`): the notification is
    /// re-armed, charged to the holder again, and the kernel unmasks the
    /// line. Returns the fires coalesced since the last acknowledgement.
    ///
    /// Errors, with nothing changed (the line stays masked): the
    /// capability's refusal; `Device(OutsideGrant)` for a line outside it;
    /// `Device(NotBound)` if the caller does not hold the line's binding;
    /// `ResourceExhausted(MemoryBudget)` if the holder cannot pay for the
    /// next notification (its earlier ones are still queued, unread).
    pub fn acknowledge_interrupt(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        line: u8,
        now: Instant,
    ) -> Result<u32, KernelError> {
        let granted = self.device_use(caller, handle, CapKind::Interrupt, Rights::RECEIVE, now)?;
        if !granted.contains(&DeviceResource::Interrupts(InterruptLines::one(line))) {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        let binding = self
            .devices
            .lines
            .get_mut(line as usize)
            .and_then(Option::as_mut)
            .filter(|b| b.holder == caller)
            .ok_or(refuse(DeviceError::NotBound { line }))?;
        if binding.armed.is_none() {
            let (payer, cost) = (binding.payer, binding.cost);
            let bytes = notification_bytes(line)?;
            self.accounts.charge_memory(payer, cost)?;
            let binding = self.devices.lines[line as usize]
                .as_mut()
                .expect("found above");
            binding.armed = Some(bytes);
        }
        let binding = self.devices.lines[line as usize]
            .as_mut()
            .expect("found above");
        let coalesced = core::mem::take(&mut binding.coalesced);
        let channel = binding.channel;
        // Re-armed: its queue entry must be free again.
        self.adjust_kernel_room(channel, 0);
        Ok(coalesced)
    }

    /// The task bound to `line`, if any (a binding whose channel has
    /// closed binds nothing: the next binding replaces it).
    pub fn interrupt_holder(&self, line: u8) -> Option<TaskId> {
        self.devices
            .lines
            .get(line as usize)?
            .as_ref()
            .filter(|b| self.channel_open(b.channel))
            .map(|b| b.holder)
    }

    /// Charge `bytes` of DMA memory to `caller` through its `DmaMemory`
    /// capability `handle` (needing `WRITE`): refused past the
    /// capability's allowance, counting what the caller holds already, and
    /// past the caller's frames budget (the frames are charged to it like
    /// those of its address space). The kernel then allocates the frames;
    /// if that fails it calls [`KernelCore::uncharge_dma`]. This is the
    /// one place DMA memory is charged, and the holder's death returns the
    /// charge ([`KernelCore::terminate`]).
    ///
    /// Errors, with nothing charged: the capability's refusal;
    /// `Device(OutsideGrant)` for zero or unaligned bytes;
    /// `Device(DmaAllowance)`; `ResourceExhausted(FrameBudget)`.
    pub fn charge_dma(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        bytes: u64,
        now: Instant,
    ) -> Result<(), KernelError> {
        let granted = self.device_use(caller, handle, CapKind::DmaMemory, Rights::WRITE, now)?;
        let DeviceResource::Dma { bytes: allowed } = granted else {
            return Err(KernelError::InvalidCapability);
        };
        if bytes == 0 || !bytes.is_multiple_of(pandagen_abi::memory::PAGE_SIZE) {
            return Err(refuse(DeviceError::OutsideGrant));
        }
        let held = self.dma_held(caller);
        if held.checked_add(bytes).is_none_or(|total| total > allowed) {
            return Err(refuse(DeviceError::DmaAllowance { held, allowed }));
        }
        self.charge_frames(caller, bytes / pandagen_abi::memory::PAGE_SIZE)?;
        self.devices.dma_held.insert(caller, held + bytes);
        Ok(())
    }

    /// Give back a charge whose allocation failed (allowance and frames).
    pub fn uncharge_dma(&mut self, task: TaskId, bytes: u64) {
        let Some(held) = self.devices.dma_held.get_mut(&task) else {
            return;
        };
        let returned = bytes.min(*held);
        *held -= returned;
        if *held == 0 {
            self.devices.dma_held.remove(&task);
        }
        self.release_frames(task, returned / pandagen_abi::memory::PAGE_SIZE);
    }

    /// DMA bytes `task` holds.
    pub fn dma_held(&self, task: TaskId) -> u64 {
        self.devices.dma_held.get(&task).copied().unwrap_or(0)
    }

    /// At `task`'s death: its interrupt bindings end (their lines stay
    /// masked until a new binding; their charges return), and its DMA
    /// allowance use is forgotten (the frames charged for it return with
    /// the rest of its own charge and the kernel frees them with its
    /// address space, unless they were quarantined: see
    /// `dma_quarantine`).
    pub(super) fn release_devices(&mut self, task: TaskId) {
        for line in 0..INTERRUPT_LINES {
            let held = self.devices.lines[line as usize]
                .as_ref()
                .is_some_and(|b| b.holder == task);
            if held {
                self.end_binding(line);
            }
        }
        self.devices.dma_held.remove(&task);
    }

    /// Each armed binding's payer and cost, for the account invariant (a
    /// fired one's charge is its queued message's).
    pub(super) fn binding_charges(&self) -> impl Iterator<Item = (AccountId, u64)> + '_ {
        self.devices
            .lines
            .iter()
            .flatten()
            .filter(|b| b.armed.is_some())
            .map(|b| (b.payer, b.cost))
    }
}

/// The kernel's root device capabilities: the whole of each resource.
pub const ROOT_DEVICE_CAPS: [(Mintable, Rights); 4] = [
    (
        Mintable::Device(DeviceResource::Ports(PortRange::ALL)),
        DEVICE_RIGHTS,
    ),
    (
        Mintable::Device(DeviceResource::Memory(PhysRange::ALL)),
        DEVICE_RIGHTS,
    ),
    (
        Mintable::Device(DeviceResource::Interrupts(InterruptLines::ALL)),
        DEVICE_RIGHTS,
    ),
    (
        Mintable::Device(DeviceResource::Dma { bytes: u64::MAX }),
        DEVICE_RIGHTS,
    ),
];
