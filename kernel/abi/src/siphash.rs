//! SipHash-2-4 (Aumasson & Bernstein), the keyed MAC behind the storage
//! service's capability tags and journal checksums, and the keyed mixing
//! of the kernel's entropy pool (here, in the crate both depend on).
//!
//! Written here rather than taken from `core::hash` because core's SipHasher
//! is deprecated and unstable to name, and because both users need a
//! one-shot MAC with a 128-bit secret key, nothing more.

/// A 128-bit SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            k0[i] = bytes[i];
            k1[i] = bytes[i + 8];
            i += 1;
        }
        SipKey {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    pub const fn to_bytes(&self) -> [u8; 16] {
        let a = self.k0.to_le_bytes();
        let b = self.k1.to_le_bytes();
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 8 {
            out[i] = a[i];
            out[i + 8] = b[i];
            i += 1;
        }
        out
    }
}

impl core::fmt::Debug for SipKey {
    // Never print key material.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SipKey(..)")
    }
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }
}

/// SipHash-2-4 of `message` under `key`.
pub fn siphash24(key: &SipKey, message: &[u8]) -> u64 {
    let mut s = State {
        v0: key.k0 ^ 0x736f_6d65_7073_6575,
        v1: key.k1 ^ 0x646f_7261_6e64_6f6d,
        v2: key.k0 ^ 0x6c79_6765_6e65_7261,
        v3: key.k1 ^ 0x7465_6462_7974_6573,
    };
    let mut words = message.chunks_exact(8);
    for word in &mut words {
        let mut m = [0u8; 8];
        m.copy_from_slice(word);
        s.compress(u64::from_le_bytes(m));
    }
    let tail = words.remainder();
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = message.len() as u8;
    s.compress(u64::from_le_bytes(last));
    s.v2 ^= 0xff;
    for _ in 0..4 {
        s.round();
    }
    s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

/// Compare two tags without an early exit, so timing does not reveal how
/// many leading bits of a guessed tag were right.
pub fn tags_equal(a: u64, b: u64) -> bool {
    let diff = a ^ b;
    // Fold the difference into one bit without branching on it.
    let folded = diff | diff.wrapping_neg();
    (folded >> 63) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_key() -> SipKey {
        let mut key = [0u8; 16];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        SipKey::from_bytes(key)
    }

    fn message(len: usize) -> alloc::vec::Vec<u8> {
        (0..len as u8).collect()
    }

    /// Vectors from the SipHash paper's reference implementation
    /// (key 00..0f, message 00..len-1).
    #[test]
    fn matches_published_vectors() {
        let key = reference_key();
        assert_eq!(siphash24(&key, &message(0)), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&key, &message(1)), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&key, &message(15)), 0xa129_ca61_49be_45e5);
    }

    proptest! {
        /// std's (deprecated) SipHasher is SipHash-2-4 over the raw bytes
        /// written to it; ours must agree on every input.
        #[test]
        fn agrees_with_std(key in any::<[u8; 16]>(), msg in proptest::collection::vec(any::<u8>(), 0..80)) {
            #[allow(deprecated)]
            let expected = {
                use core::hash::Hasher;
                let k = SipKey::from_bytes(key);
                let mut h = core::hash::SipHasher::new_with_keys(k.k0, k.k1);
                h.write(&msg);
                h.finish()
            };
            prop_assert_eq!(siphash24(&SipKey::from_bytes(key), &msg), expected);
        }

        #[test]
        fn key_round_trips(key in any::<[u8; 16]>()) {
            prop_assert_eq!(SipKey::from_bytes(key).to_bytes(), key);
        }

        #[test]
        fn tag_comparison_is_equality(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(tags_equal(a, b), a == b);
            prop_assert!(tags_equal(a, a));
        }
    }
}
