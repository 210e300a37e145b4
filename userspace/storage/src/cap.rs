//! Object capabilities: *kernel* capabilities the storage service mints,
//! and a sealed token form for keeping one outside any task.
//!
//! # The access form: kernel capabilities
//!
//! Creating an object answers with an [`ObjectCap`], a kernel capability of
//! kind `StorageObject` that the storage task minted with
//! `mint_object_capability` (which the kernel allows only to the task
//! holding the `STORAGE` registration). Its badge is an [`ObjectBadge`]:
//! the object id and the object's *capability epoch*. A client uses it by
//! sending its request *through* it (`send_to_object`); the kernel delivers
//! the request to whichever storage task is registered now and stamps it
//! with the badge and with the rights of the capability used. The server
//! trusts that stamp and nothing in the payload: it checks that the object
//! exists, that the badge's epoch is the object's current one, and that
//! the rights include what the operation needs (`READ`, `WRITE`,
//! `CONTROL`; `GRANT` to export).
//!
//! Everything else is the kernel's: **delegation** moves the capability in
//! a message (it needs `TRANSFER`; the sender loses it; audited);
//! **attenuation** is `clone_capability` with fewer rights (needs `GRANT`);
//! a capability dies with its holder. **Revocation** is the service's: a
//! holder with `CONTROL` bumps the object's epoch (durably, in the
//! journal), after which every capability with an older badge is refused
//! with `InvalidCapability`, and gets a fresh capability back.
//! **Durability**: a badge is stateless — object and epoch live on the
//! storage backend — so after the storage task restarts on the same
//! backend and registers `STORAGE` again, the capabilities clients still
//! hold reach the new instance and work as before.
//!
//! # The sealed form: tokens
//!
//! A kernel capability lives in a task and dies with it. To keep authority
//! over an object *outside* any task (in a configuration file, in another
//! object), a holder with `GRANT` asks the service to **export** its
//! capability into an [`ObjectToken`]: `(object, rights, tag)` where `tag`
//! is SipHash-2-4, keyed with a 128-bit secret held by the backend, over
//! the object id, the rights and the epoch. A token cannot be forged or
//! amplified without the key, and a revocation voids it like the
//! capabilities. A token grants nothing by itself: no request accepts one
//! except **import**, which checks the tag and answers with a fresh kernel
//! capability carrying the token's rights plus `TRANSFER` (every capability
//! the service hands out travels attached to its answer, and attaching
//! needs `TRANSFER`; a holder that must not pass it on gets a clone
//! without it). Because a token is plain bytes that can be copied,
//! exporting needs `GRANT` — the right to make copies.

use pandagen_abi::cap::kinds;
use pandagen_abi::{Cap, Rights};
use serde::{Deserialize, Serialize};

use crate::ids::ObjectId;
use crate::siphash::{siphash24, tags_equal, SipKey};

pub use pandagen_abi::cap::OBJECT_CAP_RIGHTS;

/// The rights that mean something on a storage object: `READ` to read
/// contents and versions, `WRITE` to modify, `CONTROL` to revoke.
pub const OBJECT_RIGHTS: Rights =
    Rights::from_bits(Rights::READ.bits() | Rights::WRITE.bits() | Rights::CONTROL.bits());

/// A kernel capability for one storage object (see the module docs).
pub type ObjectCap = Cap<kinds::StorageObject>;

/// What the badge of an [`ObjectCap`] says: which object, under which
/// capability epoch. Packed into the kernel's 64-bit badge as
/// `object | epoch << 40`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectBadge {
    pub object: ObjectId,
    pub epoch: u32,
}

impl ObjectBadge {
    /// Object ids must fit in the low 40 bits (10^12 objects: far beyond
    /// what a journal holds).
    pub const MAX_OBJECT: u64 = (1 << 40) - 1;
    /// Epochs must fit in the high 24 bits: an object can be revoked this
    /// many times; further revocations are refused.
    pub const MAX_EPOCH: u32 = (1 << 24) - 1;

    /// The packed badge, or `None` if the object or epoch is out of range.
    pub fn encode(&self) -> Option<u64> {
        let object = self.object.as_raw();
        if object > Self::MAX_OBJECT || self.epoch > Self::MAX_EPOCH {
            return None;
        }
        Some(object | u64::from(self.epoch) << 40)
    }

    /// Unpack a badge (every value unpacks; the store decides whether the
    /// object exists and the epoch is current).
    pub fn decode(badge: u64) -> Self {
        ObjectBadge {
            object: ObjectId::from_raw(badge & Self::MAX_OBJECT),
            epoch: (badge >> 40) as u32,
        }
    }
}

/// The capability an answer carries: the server mints it when it sends
/// the answer (again, identically, if a retried request is answered from
/// memory or from the journal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectGrant {
    pub object: ObjectId,
    pub epoch: u32,
    pub rights: Rights,
}

impl ObjectGrant {
    pub fn badge(&self) -> ObjectBadge {
        ObjectBadge {
            object: self.object,
            epoch: self.epoch,
        }
    }
}

/// A sealed, storable form of an object capability (see the module docs):
/// it names an object and rights, and confers nothing until imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectToken {
    object: ObjectId,
    rights: Rights,
    tag: u64,
}

impl ObjectToken {
    /// A token assembled from parts. This confers nothing by itself: the
    /// service verifies the tag on import. It exists so that clients can
    /// rebuild a token they stored, and so that tests can try forgeries.
    pub const fn from_parts(object: ObjectId, rights: Rights, tag: u64) -> Self {
        ObjectToken {
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

    /// A token for `object` with `rights` (restricted to
    /// [`OBJECT_CAP_RIGHTS`]) under capability epoch `epoch`.
    pub fn mint(&self, object: ObjectId, rights: Rights, epoch: u32) -> ObjectToken {
        let rights = rights.attenuate(OBJECT_CAP_RIGHTS);
        ObjectToken {
            object,
            rights,
            tag: self.tag(object, rights, epoch),
        }
    }

    /// True if `cap` was minted by this authority under `epoch`, unaltered.
    pub fn verify(&self, cap: &ObjectToken, epoch: u32) -> bool {
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
        let amplified = ObjectToken::from_parts(object, Rights::READ | Rights::WRITE, cap.tag());
        assert!(!a.verify(&amplified, 0));
        let moved = ObjectToken::from_parts(ObjectId::from_raw(6), Rights::READ, cap.tag());
        assert!(!a.verify(&moved, 0));
        let guessed = ObjectToken::from_parts(object, Rights::READ, cap.tag() ^ 1);
        assert!(!a.verify(&guessed, 0));
    }

    #[test]
    fn another_key_or_epoch_rejects_the_token() {
        let cap = authority(1).mint(ObjectId::from_raw(5), OBJECT_RIGHTS, 0);
        assert!(!authority(2).verify(&cap, 0));
        assert!(!authority(1).verify(&cap, 1));
    }

    #[test]
    fn only_object_capability_rights_are_minted() {
        let cap = authority(1).mint(ObjectId::from_raw(1), Rights::ALL, 0);
        assert_eq!(cap.rights(), OBJECT_CAP_RIGHTS);
    }

    #[test]
    fn badges_round_trip_and_out_of_range_ones_are_refused() {
        let badge = ObjectBadge {
            object: ObjectId::from_raw(ObjectBadge::MAX_OBJECT),
            epoch: ObjectBadge::MAX_EPOCH,
        };
        assert_eq!(ObjectBadge::decode(badge.encode().unwrap()), badge);
        let small = ObjectBadge {
            object: ObjectId::from_raw(7),
            epoch: 3,
        };
        assert_eq!(ObjectBadge::decode(small.encode().unwrap()), small);
        let too_far = ObjectBadge {
            object: ObjectId::from_raw(ObjectBadge::MAX_OBJECT + 1),
            epoch: 0,
        };
        assert_eq!(too_far.encode(), None);
        let too_late = ObjectBadge {
            object: ObjectId::from_raw(1),
            epoch: ObjectBadge::MAX_EPOCH + 1,
        };
        assert_eq!(too_late.encode(), None);
    }
}
