//! Object capabilities: storage-issued, unforgeable, durable tokens.
//!
//! # Why tokens and not kernel capabilities
//!
//! The kernel's capability table has a `StorageObject` kind, but the kernel
//! core knows nothing about storage objects and offers a service no way to
//! mint or check a kernel capability for an object of its own. And kernel
//! capabilities die with their holder and with the kernel, whereas the
//! interface reference asks for object capabilities that are *durable*:
//! they outlive the storage task and the client that holds them, for as
//! long as the data does.
//!
//! So the storage service issues its own capabilities: an [`ObjectCap`] is
//! `(object, rights, tag)` where `tag` is SipHash-2-4, keyed with a 128-bit
//! secret held by the backend, over the object id, the rights and the
//! object's capability epoch. Without the key nobody can produce a tag that
//! verifies, so a token cannot be forged or have rights added to it; and
//! because the key lives with the data, a restarted service on the same
//! backend accepts the tokens it issued before, while another backend
//! accepts none of them.
//!
//! # What tokens do not give
//!
//! A token is a *bearer* token: plain bytes in a message payload. Sending it
//! to another task delegates it (that is how a client moves a capability
//! over IPC), but nothing stops the sender from keeping a copy — unlike a
//! kernel capability, whose move the kernel enforces. The service tracks
//! nothing per holder; that is exactly what makes the tokens survive
//! restarts of both sides. The Rust type is `Clone` but not `Copy`, so
//! well-behaved code moves tokens and copies them only explicitly.
//!
//! Two controls remain with the service: **attenuation** (a holder asks for
//! a new token with a subset of its rights — never more) and **revocation**
//! (a holder with `CONTROL` bumps the object's epoch, which voids every
//! token issued for it before, and gets a fresh full token back).
//!
//! # How kernel capabilities could carry them
//!
//! If the kernel core let a service mint *badged* capabilities of kind
//! `StorageObject` — a capability whose object is "service S, badge b",
//! with the badge opaque to the kernel, mintable only by the task that
//! registered S, and readable (badge and rights) by S when one arrives
//! attached to a request — then a session's object capabilities could be
//! real kernel capabilities: moved, not copied, invalidated with their
//! holder, audited. The badge would be `(object, epoch)`. Durability would
//! then be explicit: a client asks the service to *export* a kernel
//! capability into a token like this one (to store it) and to *import* a
//! token back into a kernel capability, so the bearer-token form only
//! exists where something must outlive a task.

use pandagen_abi::Rights;
use serde::{Deserialize, Serialize};

use crate::ids::ObjectId;
use crate::siphash::{siphash24, tags_equal, SipKey};

/// The rights that mean something on a storage object: `READ` to read
/// contents and versions, `WRITE` to modify, `CONTROL` to revoke.
pub const OBJECT_RIGHTS: Rights =
    Rights::from_bits(Rights::READ.bits() | Rights::WRITE.bits() | Rights::CONTROL.bits());

/// A capability for one storage object (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCap {
    object: ObjectId,
    rights: Rights,
    tag: u64,
}

impl ObjectCap {
    /// A token assembled from parts. This confers nothing by itself: the
    /// service verifies the tag. It exists so that clients can rebuild a
    /// token they stored, and so that tests can try forgeries.
    pub const fn from_parts(object: ObjectId, rights: Rights, tag: u64) -> Self {
        ObjectCap {
            object,
            rights,
            tag,
        }
    }

    pub const fn object(&self) -> ObjectId {
        self.object
    }

    pub const fn rights(&self) -> Rights {
        self.rights
    }

    pub const fn tag(&self) -> u64 {
        self.tag
    }
}

/// Mints and verifies tokens with the backend's key.
#[derive(Clone, Debug)]
pub struct CapAuthority {
    key: SipKey,
}

impl CapAuthority {
    pub fn new(key: SipKey) -> Self {
        CapAuthority { key }
    }

    fn tag(&self, object: ObjectId, rights: Rights, epoch: u32) -> u64 {
        let mut message = [0u8; 24];
        message[..8].copy_from_slice(b"pg-ocap1");
        message[8..16].copy_from_slice(&object.as_raw().to_le_bytes());
        message[16..20].copy_from_slice(&rights.bits().to_le_bytes());
        message[20..].copy_from_slice(&epoch.to_le_bytes());
        siphash24(&self.key, &message)
    }

    /// A token for `object` with `rights` (restricted to [`OBJECT_RIGHTS`])
    /// under capability epoch `epoch`.
    pub fn mint(&self, object: ObjectId, rights: Rights, epoch: u32) -> ObjectCap {
        let rights = rights.attenuate(OBJECT_RIGHTS);
        ObjectCap {
            object,
            rights,
            tag: self.tag(object, rights, epoch),
        }
    }

    /// True if `cap` was minted by this authority under `epoch`, unaltered.
    pub fn verify(&self, cap: &ObjectCap, epoch: u32) -> bool {
        tags_equal(cap.tag, self.tag(cap.object, cap.rights, epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(seed: u8) -> CapAuthority {
        CapAuthority::new(SipKey::from_bytes([seed; 16]))
    }

    #[test]
    fn minted_tokens_verify_and_altered_ones_do_not() {
        let a = authority(1);
        let object = ObjectId::from_raw(5);
        let cap = a.mint(object, Rights::READ, 0);
        assert!(a.verify(&cap, 0));
        let amplified = ObjectCap::from_parts(object, Rights::READ | Rights::WRITE, cap.tag());
        assert!(!a.verify(&amplified, 0));
        let moved = ObjectCap::from_parts(ObjectId::from_raw(6), Rights::READ, cap.tag());
        assert!(!a.verify(&moved, 0));
        let guessed = ObjectCap::from_parts(object, Rights::READ, cap.tag() ^ 1);
        assert!(!a.verify(&guessed, 0));
    }

    #[test]
    fn another_key_or_epoch_rejects_the_token() {
        let cap = authority(1).mint(ObjectId::from_raw(5), OBJECT_RIGHTS, 0);
        assert!(!authority(2).verify(&cap, 0));
        assert!(!authority(1).verify(&cap, 1));
    }

    #[test]
    fn only_object_rights_are_minted() {
        let cap = authority(1).mint(ObjectId::from_raw(1), Rights::ALL, 0);
        assert_eq!(cap.rights(), OBJECT_RIGHTS);
    }
}
