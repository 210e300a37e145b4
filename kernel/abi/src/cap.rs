//! Capabilities as ring 3 sees them.
//!
//! A task never holds a capability object; it holds a [`CapHandle`], a slot
//! index plus a generation into *its own* capability space. The kernel
//! (`pandagen-core`) owns the table behind it and checks every use: the slot
//! exists, the generation matches, the status is valid, the owner is alive
//! and is the caller, and the rights suffice. A guessed, stale or borrowed
//! number is therefore worthless, exactly like a CPtr in seL4. The
//! authoritative capability records have no constructor outside the kernel
//! core.
//!
//! [`Cap<T>`] adds a compile-time tag (`Cap<Channel>` is not a
//! `Cap<StorageObject>`); the kernel re-checks the kind at run time.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{BitAnd, BitOr, Not};
use serde::{Deserialize, Serialize};

use crate::ids::ChannelId;

/// A slot index and its generation, packed into one word for the syscall ABI.
///
/// On the wire (postcard) it is the pair `(index, generation)`: two
/// varints of one or two bytes each in practice, where the packed word —
/// generation in the high half — would be a five-to-ten-byte varint that
/// every send and receive request decodes byte by byte.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapHandle(u64);

impl Serialize for CapHandle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.index(), self.generation()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CapHandle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (index, generation) = <(u32, u32)>::deserialize(deserializer)?;
        Ok(CapHandle::new(index, generation))
    }
}

impl CapHandle {
    pub const fn new(index: u32, generation: u32) -> Self {
        CapHandle(((generation as u64) << 32) | index as u64)
    }

    pub const fn from_raw(raw: u64) -> Self {
        CapHandle(raw)
    }

    pub const fn as_raw(&self) -> u64 {
        self.0
    }

    pub const fn index(&self) -> u32 {
        self.0 as u32
    }

    pub const fn generation(&self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Debug for CapHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapHandle({}g{})", self.index(), self.generation())
    }
}

impl fmt::Display for CapHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}g{}", self.index(), self.generation())
    }
}

/// What a capability designates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CapKind {
    /// A message channel.
    Channel,
    /// A task (to supervise or terminate it).
    Task,
    /// The right to register services in the service registry.
    ServiceRegistry,
    /// An object held by the storage service.
    StorageObject,
    /// The boot image: the right to read service images and spawn them.
    BootImage,
    /// Input from the serial console.
    SerialInput,
    /// Kernel introspection (task list, audit log) for operators.
    KernelInfo,
    /// The kernel's block device (`READ`: info and reads, `WRITE`: writes).
    BlockDevice,
    /// The right to register one service id, which the capability names
    /// (`REGISTER`). Minted from the `ServiceRegistry` capability by its
    /// holder (the process manager, for each service it starts), so that no
    /// other task can take that id.
    ServiceRegistration,
    /// A range of I/O ports (`READ`: `in`, `WRITE`: `out`; `GRANT`: mint
    /// narrower ranges). See [`crate::device`].
    IoPorts,
    /// A physical range outside RAM, mapped uncached (`READ`, `WRITE`).
    DeviceMemory,
    /// A range of interrupt lines to bind to channels (`RECEIVE`).
    Interrupt,
    /// The right to allocate contiguous DMA memory up to a byte allowance
    /// (`WRITE`).
    DmaMemory,
}

impl fmt::Display for CapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            CapKind::Channel => "channel",
            CapKind::Task => "task",
            CapKind::ServiceRegistry => "service-registry",
            CapKind::StorageObject => "storage-object",
            CapKind::BootImage => "boot-image",
            CapKind::SerialInput => "serial-input",
            CapKind::KernelInfo => "kernel-info",
            CapKind::BlockDevice => "block-device",
            CapKind::ServiceRegistration => "registration",
            CapKind::IoPorts => "io-ports",
            CapKind::DeviceMemory => "device-memory",
            CapKind::Interrupt => "interrupt",
            CapKind::DmaMemory => "dma-memory",
        };
        f.write_str(name)
    }
}

/// The operations a capability permits. A set of bits; combine with `|`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Rights(u32);

impl Rights {
    pub const NONE: Rights = Rights(0);
    /// Send on a channel.
    pub const SEND: Rights = Rights(1 << 0);
    /// Receive from a channel.
    pub const RECEIVE: Rights = Rights(1 << 1);
    /// Issue a copy of this capability to another task.
    pub const GRANT: Rights = Rights(1 << 2);
    /// Move this capability to another task (delegate) or into a message.
    pub const TRANSFER: Rights = Rights(1 << 3);
    /// Read the designated object.
    pub const READ: Rights = Rights(1 << 4);
    /// Modify the designated object.
    pub const WRITE: Rights = Rights(1 << 5);
    /// Register a service (on a `ServiceRegistry` capability: any id, and
    /// mint registrations; on a `ServiceRegistration`: the id it names).
    pub const REGISTER: Rights = Rights(1 << 6);
    /// Spawn tasks from images (on a `BootImage` capability).
    pub const SPAWN: Rights = Rights(1 << 7);
    /// Terminate or supervise (on a `Task` capability). On a `Task`
    /// capability, `SEND` is the right to put capabilities into that task
    /// (`grant_capability`, `delegate_capability`).
    pub const CONTROL: Rights = Rights(1 << 8);
    pub const ALL: Rights = Rights((1 << 9) - 1);

    pub const fn from_bits(bits: u32) -> Rights {
        Rights(bits & Rights::ALL.0)
    }

    pub const fn bits(&self) -> u32 {
        self.0
    }

    /// True if every right in `required` is present.
    pub const fn contains(&self, required: Rights) -> bool {
        self.0 & required.0 == required.0
    }

    /// The rights of `self` restricted to `mask`: attenuation can only
    /// remove rights, never add them.
    pub const fn attenuate(&self, mask: Rights) -> Rights {
        Rights(self.0 & mask.0)
    }
}

impl BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl BitAnd for Rights {
    type Output = Rights;
    fn bitand(self, rhs: Rights) -> Rights {
        Rights(self.0 & rhs.0)
    }
}

impl Not for Rights {
    type Output = Rights;
    fn not(self) -> Rights {
        Rights(!self.0 & Rights::ALL.0)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Rights, char); 9] = [
            (Rights::SEND, 's'),
            (Rights::RECEIVE, 'r'),
            (Rights::GRANT, 'g'),
            (Rights::TRANSFER, 't'),
            (Rights::READ, 'R'),
            (Rights::WRITE, 'W'),
            (Rights::REGISTER, 'G'),
            (Rights::SPAWN, 'P'),
            (Rights::CONTROL, 'C'),
        ];
        for (right, letter) in NAMES {
            let shown = if self.contains(right) { letter } else { '-' };
            write!(f, "{shown}")?;
        }
        Ok(())
    }
}

/// The rights a service may put on an object capability it mints
/// (`MintObjectCap`): the object rights plus the two transfer rights.
pub const OBJECT_CAP_RIGHTS: Rights = Rights::from_bits(
    Rights::READ.bits()
        | Rights::WRITE.bits()
        | Rights::CONTROL.bits()
        | Rights::GRANT.bits()
        | Rights::TRANSFER.bits(),
);

/// The rights that let a holder *invoke* an object capability (send a
/// request through it): a capability holding none of them (only `GRANT`
/// or `TRANSFER`) can be moved or copied but not used.
pub const INVOKE_RIGHTS: Rights =
    Rights::from_bits(Rights::READ.bits() | Rights::WRITE.bits() | Rights::CONTROL.bits());

/// What the kernel stamps on a message sent through an object capability
/// (a `StorageObject` capability minted by a service): the capability's
/// badge — opaque to the kernel, chosen by the service when it minted the
/// capability — and the rights of the capability the sender used. A
/// receiver can trust both: no task can send a message carrying a badge
/// except through a capability the service minted with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Badge {
    pub value: u64,
    pub rights: Rights,
}

/// Type tags for [`Cap`]. They have no values; they only keep capability
/// kinds apart at compile time.
pub mod kinds {
    pub enum Channel {}
    pub enum Task {}
    pub enum ServiceRegistry {}
    pub enum StorageObject {}
    pub enum BootImage {}
    pub enum SerialInput {}
    pub enum KernelInfo {}
    pub enum ServiceRegistration {}
}

/// A typed capability handle. Move-only: it is neither `Clone` nor `Copy`, so
/// handing it to `grant_capability` or `delegate_capability` gives it up in
/// the type system as well as in the kernel.
///
/// `Cap<()>` is the untyped form used by the `KernelApi` transfer calls.
#[derive(PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cap<T> {
    handle: CapHandle,
    #[serde(skip)]
    _kind: PhantomData<fn() -> T>,
}

impl<T> Cap<T> {
    /// The handle, for auditing and display. Knowing it confers nothing.
    pub const fn handle(&self) -> CapHandle {
        self.handle
    }

    /// The capability's traceable id (docs/interfaces.md): the packed handle.
    pub const fn id(&self) -> u64 {
        self.handle.as_raw()
    }

    /// Forget the compile-time kind (the kernel still knows it).
    pub fn erase(self) -> Cap<()> {
        Cap {
            handle: self.handle,
            _kind: PhantomData,
        }
    }

    pub(crate) const fn wrap(handle: CapHandle) -> Self {
        Cap {
            handle,
            _kind: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Cap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cap({})", self.handle)
    }
}

impl From<ChannelId> for Cap<kinds::Channel> {
    fn from(channel: ChannelId) -> Self {
        Cap::wrap(channel.handle())
    }
}

impl From<ChannelId> for Cap<()> {
    fn from(channel: ChannelId) -> Self {
        Cap::wrap(channel.handle())
    }
}

impl Cap<()> {
    /// Name a capability held in the caller's own space by its handle, for
    /// the transfer calls. The kernel checks the handle against the caller's
    /// table, so this grants nothing by itself.
    pub const fn from_handle(handle: CapHandle) -> Self {
        Cap::wrap(handle)
    }

    /// Give an untyped capability (one received in a message) its
    /// compile-time kind. This asserts nothing to the kernel, which checks
    /// the real kind at every use (`WrongCapabilityKind`).
    pub fn assume_kind<T>(self) -> Cap<T> {
        Cap::wrap(self.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_packs_index_and_generation() {
        let h = CapHandle::new(7, 3);
        assert_eq!(h.index(), 7);
        assert_eq!(h.generation(), 3);
        assert_eq!(CapHandle::from_raw(h.as_raw()), h);
    }

    #[test]
    fn handle_is_two_short_varints_on_the_wire() {
        let h = CapHandle::new(7, 3);
        let bytes = postcard::to_allocvec(&h).unwrap();
        assert_eq!(bytes, [7, 3]);
        assert_eq!(postcard::from_bytes::<CapHandle>(&bytes).unwrap(), h);
        let wide = CapHandle::new(u32::MAX, u32::MAX);
        let bytes = postcard::to_allocvec(&wide).unwrap();
        assert_eq!(postcard::from_bytes::<CapHandle>(&bytes).unwrap(), wide);
    }

    #[test]
    fn attenuation_only_removes_rights() {
        let rw = Rights::READ | Rights::WRITE;
        let r = rw.attenuate(Rights::READ | Rights::SEND);
        assert_eq!(r, Rights::READ);
        assert!(!r.contains(Rights::SEND));
        assert!(rw.contains(Rights::READ));
        assert!(!Rights::READ.contains(rw));
    }

    #[test]
    fn rights_display_shows_each_bit() {
        assert_eq!(
            (Rights::SEND | Rights::RECEIVE).to_string_for_test(),
            "sr-------"
        );
    }

    impl Rights {
        fn to_string_for_test(self) -> alloc::string::String {
            alloc::format!("{self}")
        }
    }
}
