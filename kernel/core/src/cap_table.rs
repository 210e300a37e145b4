//! Capability records and per-task capability spaces.
//!
//! A [`Capability`] is the kernel's authoritative record of one piece of
//! authority: what it designates, which rights it carries, and who holds it.
//! It has no public constructor and is neither `Clone` nor `Copy`: only
//! this crate creates records (through [`KernelCore`](crate::KernelCore)'s
//! audited operations), and a record is always in exactly one place — one
//! task's capability-space slot, one queued message, or one parked message.
//!
//! A task names its capabilities by [`CapHandle`]: a slot index plus the
//! slot's generation. Freeing a slot bumps its generation, so a stale or
//! guessed handle never names a capability, even after the slot is reused.

use alloc::vec::Vec;
use core::fmt;
use pandagen_abi::device::DeviceResource;
use pandagen_abi::error::MissingRights;
use pandagen_abi::{CapHandle, CapKind, Rights, ServiceId, TaskId};

use crate::budget::AccountId;
use crate::channel::ChannelRef;

/// The identity of one capability record, for the audit trail. Unique for
/// the life of a [`KernelCore`](crate::KernelCore) and kept across moves
/// (delegation, message transfer); grants and clones make new ids.
/// Knowing an id confers nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapId(u64);

impl CapId {
    pub const fn from_raw(raw: u64) -> Self {
        CapId(raw)
    }

    pub const fn as_raw(&self) -> u64 {
        self.0
    }
}

impl fmt::Display for CapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cap#{}", self.0)
    }
}

/// An object that a service keeps and the kernel only names: the service
/// (by id, not by channel, so the name survives a restart of the service)
/// and a badge that is opaque to the kernel. See
/// [`KernelCore::mint_object_cap`](crate::KernelCore::mint_object_cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceObject {
    pub service: ServiceId,
    pub badge: u64,
}

impl ServiceObject {
    pub const fn new(service: ServiceId, badge: u64) -> Self {
        ServiceObject { service, badge }
    }
}

/// The kernel object a capability designates. The variant fixes the
/// [`CapKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectRef {
    Channel(ChannelRef),
    Task(TaskId),
    ServiceRegistry,
    /// An object of a service (the storage service's objects).
    StorageObject(ServiceObject),
    BootImage,
    SerialInput,
    KernelInfo,
    /// The kernel's block device (there is one; see [`crate::block`]).
    BlockDevice,
    /// The right to register this one service id.
    ServiceRegistration(ServiceId),
    /// A device resource: ports, device memory, interrupt lines or a DMA
    /// allowance (see [`pandagen_abi::device`]).
    Device(DeviceResource),
}

impl ObjectRef {
    pub const fn kind(&self) -> CapKind {
        match self {
            ObjectRef::Channel(_) => CapKind::Channel,
            ObjectRef::Task(_) => CapKind::Task,
            ObjectRef::ServiceRegistry => CapKind::ServiceRegistry,
            ObjectRef::StorageObject(_) => CapKind::StorageObject,
            ObjectRef::BootImage => CapKind::BootImage,
            ObjectRef::SerialInput => CapKind::SerialInput,
            ObjectRef::KernelInfo => CapKind::KernelInfo,
            ObjectRef::BlockDevice => CapKind::BlockDevice,
            ObjectRef::ServiceRegistration(_) => CapKind::ServiceRegistration,
            ObjectRef::Device(resource) => resource.kind(),
        }
    }
}

/// Objects the kernel may mint capabilities for out of nothing, with
/// [`KernelCore::mint`](crate::KernelCore::mint). Channels are not here:
/// a channel capability only comes from `create_channel`, from the service
/// registry, or from another channel capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mintable {
    ServiceRegistry,
    BootImage,
    SerialInput,
    KernelInfo,
    BlockDevice,
    Task(TaskId),
    StorageObject(ServiceObject),
    ServiceRegistration(ServiceId),
    /// The root task's device capabilities (the whole of each resource,
    /// see `kernel_core::device::ROOT_DEVICE_CAPS`), and the narrower
    /// ones minted from them.
    Device(DeviceResource),
}

impl From<Mintable> for ObjectRef {
    fn from(m: Mintable) -> Self {
        match m {
            Mintable::ServiceRegistry => ObjectRef::ServiceRegistry,
            Mintable::BootImage => ObjectRef::BootImage,
            Mintable::SerialInput => ObjectRef::SerialInput,
            Mintable::KernelInfo => ObjectRef::KernelInfo,
            Mintable::BlockDevice => ObjectRef::BlockDevice,
            Mintable::Task(t) => ObjectRef::Task(t),
            Mintable::StorageObject(o) => ObjectRef::StorageObject(o),
            Mintable::ServiceRegistration(s) => ObjectRef::ServiceRegistration(s),
            Mintable::Device(d) => ObjectRef::Device(d),
        }
    }
}

/// Where a capability record currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// Installed in this task's capability space: usable by it.
    Task(TaskId),
    /// In kernel custody, inside a message queued on this channel.
    Queued(ChannelRef),
    /// In kernel custody, inside a message held back by fault injection
    /// (see [`KernelCore::prepare_send`](crate::KernelCore::prepare_send)).
    Parked,
}

/// The status of a record. Records that were dropped, moved away from a
/// slot or invalidated no longer exist anywhere (the audit log remembers
/// them), so a live record is either usable by its owner or in transit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapStatus {
    /// Installed in its owner's space; usable by that owner only.
    Valid,
    /// Carried by a message in kernel custody; usable by nobody until it
    /// is delivered.
    InTransit,
}

/// The authoritative record of one capability. See the module docs: no
/// constructor outside this crate, not `Clone`.
///
/// ```compile_fail,E0451
/// // A user crate cannot forge a capability record: the fields are private
/// // and there is no public constructor.
/// use pandagen_core::{Capability, CapId, Holder, ObjectRef};
/// use pandagen_abi::{Rights, TaskId};
/// let forged = Capability {
///     id: CapId::from_raw(1),
///     object: ObjectRef::ServiceRegistry,
///     rights: Rights::ALL,
///     holder: Holder::Task(TaskId::from_raw(1)),
/// };
/// ```
///
/// ```compile_fail,E0277
/// // Nor can it copy one it can see.
/// fn duplicate(c: &pandagen_core::Capability) -> pandagen_core::Capability {
///     Clone::clone(c)
/// }
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Capability {
    id: CapId,
    object: ObjectRef,
    rights: Rights,
    holder: Holder,
    /// The account charged for this record (see [`crate::budget`]): the
    /// task whose call made it, wherever the record has moved since.
    payer: AccountId,
}

impl Capability {
    pub(crate) fn new(
        id: CapId,
        object: ObjectRef,
        rights: Rights,
        holder: Holder,
        payer: AccountId,
    ) -> Self {
        Capability {
            id,
            object,
            rights,
            holder,
            payer,
        }
    }

    pub(crate) fn payer(&self) -> AccountId {
        self.payer
    }

    pub fn id(&self) -> CapId {
        self.id
    }

    #[inline]
    pub fn kind(&self) -> CapKind {
        self.object.kind()
    }

    pub fn object(&self) -> ObjectRef {
        self.object
    }

    pub fn rights(&self) -> Rights {
        self.rights
    }

    pub fn holder(&self) -> Holder {
        self.holder
    }

    pub fn status(&self) -> CapStatus {
        match self.holder {
            Holder::Task(_) => CapStatus::Valid,
            Holder::Queued(_) | Holder::Parked => CapStatus::InTransit,
        }
    }

    pub(crate) fn set_holder(&mut self, holder: Holder) {
        self.holder = holder;
    }

    pub(crate) fn info(&self) -> CapInfo {
        CapInfo {
            id: self.id,
            object: self.object,
            rights: self.rights,
        }
    }
}

/// A copy of what a record says, without the authority: what `lookup`
/// and `list_caps` return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapInfo {
    pub id: CapId,
    pub object: ObjectRef,
    pub rights: Rights,
}

impl CapInfo {
    pub fn kind(&self) -> CapKind {
        self.object.kind()
    }
}

/// Why a capability use was refused (recorded in `InvalidUseAttempt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidUse {
    /// The calling task does not exist or has terminated.
    CallerNotAlive,
    /// The handle's slot is out of range or empty.
    NoSuchCapability,
    /// The slot was freed (and perhaps reused) since the handle was issued.
    StaleHandle,
    /// The capability designates an object of another kind.
    WrongKind { expected: CapKind, found: CapKind },
    /// The capability lacks a right the operation needs.
    MissingRights(MissingRights),
    /// The same handle was named twice in one operation that moves
    /// capabilities (a message or a batch delegation).
    DuplicateHandle,
    /// A `ServiceRegistration` capability used for another service id than
    /// the one it names.
    NamesOtherService(ServiceId),
    /// The operation puts a capability into this task, and the caller holds
    /// no `Task` capability naming it with `SEND`.
    NoAuthorityOver(TaskId),
}

pub(crate) struct Slot {
    generation: u32,
    /// The IPC fast path's view of the record ([`CapSpace::live_channel`]):
    /// [`ChannelView::of`] the record in `cap`, written with it and
    /// cleared when it leaves, so that the fast path finds a channel and
    /// tests the rights without matching the record's `Option` and object
    /// (see `invariants`: every slot's view is its record's).
    view: ChannelView,
    cap: Option<Capability>,
}

/// A channel capability's channel and rights, outside the record's enums,
/// or [`ChannelView::NONE`] for an empty slot or any other capability.
///
/// The rights are kept as two keys, one per right the fast path asks for:
/// the raw handle of the slot's record (its index and generation) if the
/// record is a channel capability with that right, [`ChannelView::NO_KEY`]
/// otherwise. `NO_KEY`'s index, `u32::MAX`, is no slot's (a space holds
/// fewer than `u32::MAX` slots: see [`CapSpace::install`]), so it equals no
/// handle that finds the slot, and the fast path's test of a handle (its
/// generation and the right at once) is one compare of the key with the
/// handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChannelView {
    send: u64,
    receive: u64,
    channel: ChannelRef,
}

/// The right a fast-path lookup ([`CapSpace::live_channel`]) asks of a
/// channel capability: each has its own key in the slot's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyedRight {
    Send,
    Receive,
}

impl ChannelView {
    /// The key of a slot whose record lacks the right: an index no slot has.
    const NO_KEY: u64 = u64::MAX;

    pub(crate) const NONE: ChannelView = ChannelView {
        send: Self::NO_KEY,
        receive: Self::NO_KEY,
        channel: ChannelRef::from_parts(0, 0),
    };

    /// The view of `cap` (of an empty slot for `None`) held in slot
    /// `index` at `generation`.
    pub(crate) fn of(index: u32, generation: u32, cap: Option<&Capability>) -> ChannelView {
        match cap.map(|c| (c.object(), c.rights())) {
            Some((ObjectRef::Channel(channel), rights)) => {
                let key = |right: Rights| {
                    if rights.contains(right) {
                        CapHandle::new(index, generation).as_raw()
                    } else {
                        Self::NO_KEY
                    }
                };
                ChannelView {
                    send: key(Rights::SEND),
                    receive: key(Rights::RECEIVE),
                    channel,
                }
            }
            _ => ChannelView::NONE,
        }
    }
}

/// One task's capability space: slots addressed by [`CapHandle`].
///
/// `get` is O(1); `install` is O(1) amortized (a LIFO free list, so a
/// freed slot is reused first — its bumped generation keeps old handles
/// dead); `remove` is O(1).
pub(crate) struct CapSpace {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: u32,
    limit: u32,
    /// The generation new slots start at: above every generation of the
    /// trailing slots dropped so far (see [`crate::slab`]).
    generation_floor: u32,
}

impl CapSpace {
    pub(crate) fn new(limit: u32) -> Self {
        CapSpace {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            limit,
            generation_floor: 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live as usize
    }

    /// How many more capabilities fit.
    pub(crate) fn room(&self) -> usize {
        (self.limit - self.live) as usize
    }

    pub(crate) fn get(&self, handle: CapHandle) -> Result<&Capability, InvalidUse> {
        let Some(slot) = self.slots.get(handle.index() as usize) else {
            // Beyond the table: a slot that was dropped (its handles are
            // below the floor) or one that never existed.
            return Err(if handle.generation() < self.generation_floor {
                InvalidUse::StaleHandle
            } else {
                InvalidUse::NoSuchCapability
            });
        };
        match &slot.cap {
            Some(cap) if slot.generation == handle.generation() => Ok(cap),
            Some(_) => Err(InvalidUse::StaleHandle),
            None if handle.generation() < slot.generation => Err(InvalidUse::StaleHandle),
            None => Err(InvalidUse::NoSuchCapability),
        }
    }

    /// The live record `handle` names, or `None` for any handle
    /// [`CapSpace::get`] refuses, without telling why (the IPC fast path,
    /// which leaves refusals to the general path).
    #[inline]
    pub(crate) fn live(&self, handle: CapHandle) -> Option<&Capability> {
        let slot = self.slots.get(handle.index() as usize)?;
        if slot.generation != handle.generation() {
            return None;
        }
        slot.cap.as_ref()
    }

    /// The channel of the live channel capability `handle` names, if it
    /// has `right`, or `None` for anything [`CapSpace::live`] refuses, any
    /// other capability, or the right missing, without telling why (the
    /// IPC fast path). One compare of the handle with the slot's key for
    /// the right (see [`ChannelView`]).
    #[inline(always)]
    pub(crate) fn live_channel(&self, handle: CapHandle, right: KeyedRight) -> Option<ChannelRef> {
        let slot = self.slots.get(handle.index() as usize)?;
        let key = match right {
            KeyedRight::Send => slot.view.send,
            KeyedRight::Receive => slot.view.receive,
        };
        (key == handle.as_raw()).then_some(slot.view.channel)
    }

    /// Whether every slot's channel view is its record's (for
    /// `check_invariants`).
    pub(crate) fn views_agree(&self) -> bool {
        self.slots
            .iter()
            .enumerate()
            .all(|(i, s)| s.view == ChannelView::of(i as u32, s.generation, s.cap.as_ref()))
    }

    /// Install a record; `None` if the space is full.
    pub(crate) fn install(&mut self, cap: Capability) -> Result<CapHandle, Capability> {
        if self.live >= self.limit {
            return Err(cap);
        }
        let index = match self.free.pop() {
            Some(i) => {
                crate::slab::fit_free_list(&mut self.free);
                i
            }
            // Index `u32::MAX` is kept for no slot: it marks a view's
            // missing right (`ChannelView::NO_KEY`).
            None if self.slots.len() >= u32::MAX as usize => return Err(cap),
            None => {
                self.slots.push(Slot {
                    generation: self.generation_floor,
                    view: ChannelView::NONE,
                    cap: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.view = ChannelView::of(index, slot.generation, Some(&cap));
        slot.cap = Some(cap);
        self.live += 1;
        Ok(CapHandle::new(index, slot.generation))
    }

    /// Take the record out of a valid handle's slot and retire the handle.
    pub(crate) fn remove(&mut self, handle: CapHandle) -> Option<Capability> {
        self.get(handle).ok()?;
        let index = handle.index();
        let slot = &mut self.slots[index as usize];
        let cap = slot.cap.take();
        slot.view = ChannelView::NONE;
        self.live -= 1;
        // A slot whose generation would wrap is retired for good, so a
        // handle can never come back to life.
        if slot.generation < u32::MAX {
            slot.generation += 1;
            self.free.push(index);
        }
        // A retired slot (at the last generation) is never trimmed: a new
        // slot would start at that generation and revive the retired
        // slot's last handle.
        let dropped = crate::slab::trim(
            &mut self.slots,
            &mut self.free,
            |s| s.cap.is_none() && s.generation < u32::MAX,
            |s| s.generation,
        );
        self.generation_floor = self.generation_floor.max(dropped);
        cap
    }

    /// Take every record out (task termination).
    pub(crate) fn drain(&mut self) -> Vec<Capability> {
        let mut out = Vec::with_capacity(self.live as usize);
        // `remove` trims trailing free slots, so the length is re-read.
        let mut index = 0;
        while index < self.slots.len() {
            let generation = self.slots[index].generation;
            if self.slots[index].cap.is_some() {
                if let Some(cap) = self.remove(CapHandle::new(index as u32, generation)) {
                    out.push(cap);
                }
            }
            index += 1;
        }
        out
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (CapHandle, &Capability)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.cap
                .as_ref()
                .map(|c| (CapHandle::new(i as u32, s.generation), c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> Capability {
        Capability::new(
            CapId(id),
            ObjectRef::KernelInfo,
            Rights::READ,
            Holder::Task(TaskId::from_raw(1)),
            AccountId::from_raw(0),
        )
    }

    #[test]
    fn stale_handles_fail_after_removal_and_after_reuse() {
        let mut space = CapSpace::new(8);
        let a = space.install(record(1)).unwrap();
        assert_eq!(space.get(a).unwrap().id(), CapId(1));
        assert!(space.remove(a).is_some());
        assert_eq!(space.get(a).unwrap_err(), InvalidUse::StaleHandle);
        let b = space.install(record(2)).unwrap();
        assert_eq!(b.index(), a.index(), "LIFO free list reuses the slot");
        assert_ne!(b, a);
        assert_eq!(space.get(a).unwrap_err(), InvalidUse::StaleHandle);
        assert_eq!(space.get(b).unwrap().id(), CapId(2));
        assert!(space.remove(a).is_none());
    }

    #[test]
    fn a_live_channel_needs_a_live_channel_capability_with_the_rights() {
        let channel = ChannelRef::from_parts(3, 7);
        let send_only = Capability::new(
            CapId(1),
            ObjectRef::Channel(channel),
            Rights::SEND,
            Holder::Task(TaskId::from_raw(1)),
            AccountId::from_raw(0),
        );
        let everything = Capability::new(
            CapId(2),
            ObjectRef::KernelInfo,
            Rights::ALL,
            Holder::Task(TaskId::from_raw(1)),
            AccountId::from_raw(0),
        );
        let channel_cap = |rights| {
            Capability::new(
                CapId(4),
                ObjectRef::Channel(channel),
                rights,
                Holder::Task(TaskId::from_raw(1)),
                AccountId::from_raw(0),
            )
        };
        let mut space = CapSpace::new(8);
        let s = space.install(send_only).unwrap();
        let k = space.install(everything).unwrap();
        assert!(space.views_agree());
        assert_eq!(space.live_channel(s, KeyedRight::Send), Some(channel));
        assert_eq!(
            space.live_channel(s, KeyedRight::Receive),
            None,
            "a right missing"
        );
        assert_eq!(
            space.live_channel(k, KeyedRight::Send),
            None,
            "not a channel"
        );
        assert_eq!(space.live_channel(k, KeyedRight::Receive), None);
        let stale = CapHandle::new(s.index(), s.generation() + 1);
        assert_eq!(space.live_channel(stale, KeyedRight::Send), None);
        let older = CapHandle::new(s.index(), s.generation() - 1);
        assert_eq!(space.live_channel(older, KeyedRight::Send), None);
        let beyond = CapHandle::new(7, s.generation());
        assert_eq!(space.live_channel(beyond, KeyedRight::Send), None);
        // No handle matches a missing right's key, however it is made.
        let no_key = CapHandle::from_raw(ChannelView::NO_KEY);
        assert_eq!(space.live_channel(no_key, KeyedRight::Receive), None);
        // Both rights: both keys are the handle.
        let both = space
            .install(channel_cap(Rights::SEND | Rights::RECEIVE))
            .unwrap();
        let receive_only = space.install(channel_cap(Rights::RECEIVE)).unwrap();
        assert!(space.views_agree());
        assert_eq!(space.live_channel(both, KeyedRight::Send), Some(channel));
        assert_eq!(space.live_channel(both, KeyedRight::Receive), Some(channel));
        assert_eq!(space.live_channel(receive_only, KeyedRight::Send), None);
        assert_eq!(
            space.live_channel(receive_only, KeyedRight::Receive),
            Some(channel)
        );
        // Removed: the slot's next generation names an empty slot, whose
        // view is no channel's.
        space.remove(s).unwrap();
        assert!(space.views_agree());
        assert_eq!(space.live_channel(s, KeyedRight::Send), None);
        let emptied = CapHandle::new(s.index(), s.generation() + 1);
        assert_eq!(space.live_channel(emptied, KeyedRight::Send), None);
        assert_eq!(space.live_channel(emptied, KeyedRight::Receive), None);
        // Reused by another kind of record: no channel either.
        let other = space.install(record(3)).unwrap();
        assert_eq!(other.index(), s.index());
        assert!(space.views_agree());
        assert_eq!(space.live_channel(other, KeyedRight::Send), None);
        // Reused by a channel capability again: the key is the new handle's,
        // not the old one's.
        space.remove(other).unwrap();
        let again = space.install(channel_cap(Rights::SEND)).unwrap();
        assert_eq!(again.index(), s.index());
        assert!(space.views_agree());
        assert_eq!(space.live_channel(s, KeyedRight::Send), None);
        assert_eq!(space.live_channel(again, KeyedRight::Send), Some(channel));
        // A view that is not its record's is found: another record's
        // rights, or a key of another generation (a writer that forgot
        // the generation).
        let kept = space.slots[k.index() as usize].view;
        space.slots[k.index() as usize].view = ChannelView {
            send: k.as_raw(),
            receive: ChannelView::NO_KEY,
            channel,
        };
        assert!(!space.views_agree());
        space.slots[k.index() as usize].view = kept;
        assert!(space.views_agree());
        let slot = &mut space.slots[again.index() as usize];
        slot.view.send = CapHandle::new(again.index(), again.generation() - 1).as_raw();
        assert!(!space.views_agree());
        assert!(!space.views_agree());
    }

    #[test]
    fn only_a_live_handle_names_a_live_record() {
        let mut space = CapSpace::new(8);
        let a = space.install(record(1)).unwrap();
        let b = space.install(record(2)).unwrap();
        assert_eq!(space.live(a).map(Capability::id), Some(CapId(1)));
        assert_eq!(space.live(b).map(Capability::id), Some(CapId(2)));
        let other_generation = CapHandle::new(b.index(), b.generation() + 1);
        assert!(space.live(other_generation).is_none());
        assert!(
            space.live(CapHandle::new(7, b.generation())).is_none(),
            "beyond the table"
        );
        assert!(space.remove(a).is_some());
        // Slot 0 is kept free (slot 1 is live): its old generation names nothing.
        assert!(space.live(a).is_none());
        for handle in [a, other_generation, CapHandle::new(7, 1)] {
            assert!(space.get(handle).is_err(), "live agrees with get");
        }
    }

    #[test]
    fn a_free_slot_between_live_ones_tells_stale_handles_from_guesses() {
        let mut space = CapSpace::new(8);
        let a = space.install(record(1)).unwrap();
        let _b = space.install(record(2)).unwrap();
        assert!(space.remove(a).is_some());
        // Slot 0 is free and kept (slot 1 is live): the dropped handle is
        // stale, a handle of a generation the slot never had is a guess.
        assert_eq!(space.get(a).unwrap_err(), InvalidUse::StaleHandle);
        let future = CapHandle::new(a.index(), a.generation() + 5);
        assert_eq!(space.get(future).unwrap_err(), InvalidUse::NoSuchCapability);
    }

    #[test]
    fn dropping_the_last_records_returns_their_slots() {
        let mut space = CapSpace::new(8);
        let handles: Vec<_> = (0..6).map(|i| space.install(record(i)).unwrap()).collect();
        for &h in handles.iter().rev().take(4) {
            assert!(space.remove(h).is_some());
        }
        assert_eq!(space.slots.len(), 2, "the four trailing free slots go");
        for &h in handles.iter().take(2) {
            assert!(space.remove(h).is_some());
        }
        assert!(space.slots.is_empty());
        assert!(space.free.is_empty());
    }

    #[test]
    fn a_slot_at_the_last_generation_is_retired_not_wrapped() {
        let mut space = CapSpace::new(8);
        let a = space.install(record(1)).unwrap();
        space.slots[a.index() as usize].generation = u32::MAX;
        let last = CapHandle::new(a.index(), u32::MAX);
        assert!(space.remove(last).is_some());
        // The slot never comes back: a new record goes elsewhere, and no
        // handle for the old slot is valid again.
        let b = space.install(record(2)).unwrap();
        assert_ne!(b.index(), a.index());
        assert_eq!(space.get(last).unwrap_err(), InvalidUse::NoSuchCapability);
        assert_eq!(space.len(), 1);
        // One below the maximum still advances and reuses the slot.
        space.slots[b.index() as usize].generation = u32::MAX - 1;
        assert!(space
            .remove(CapHandle::new(b.index(), u32::MAX - 1))
            .is_some());
        let c = space.install(record(3)).unwrap();
        assert_eq!((c.index(), c.generation()), (b.index(), u32::MAX));
    }

    #[test]
    fn guessed_handles_fail() {
        let mut space = CapSpace::new(8);
        let a = space.install(record(1)).unwrap();
        assert_eq!(
            space.get(CapHandle::new(5, 1)).unwrap_err(),
            InvalidUse::NoSuchCapability
        );
        assert_eq!(
            space.get(CapHandle::new(a.index(), 0)).unwrap_err(),
            InvalidUse::StaleHandle
        );
        assert_eq!(
            space.get(CapHandle::new(a.index(), 7)).unwrap_err(),
            InvalidUse::StaleHandle
        );
    }

    #[test]
    fn the_space_is_bounded() {
        let mut space = CapSpace::new(2);
        space.install(record(1)).unwrap();
        space.install(record(2)).unwrap();
        assert_eq!(space.room(), 0);
        assert!(space.install(record(3)).is_err());
        assert_eq!(space.drain().len(), 2);
        assert_eq!(space.len(), 0);
    }
}
