//! A small seeded pseudo-random generator for fault decisions.
//!
//! SplitMix64: one 64-bit word of state, good statistical quality for this
//! purpose, and — what matters here — the same sequence for the same seed on
//! every platform and every run. The simulator never uses an unseeded source.

/// A deterministic generator seeded explicitly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    pub const fn new(seed: u64) -> Self {
        SimRng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` must be non-zero). The tiny modulo
    /// bias is irrelevant for fault selection.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound.max(1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u16) -> bool {
        if per_mille >= 1000 {
            return true;
        }
        if per_mille == 0 {
            return false;
        }
        self.below(1000) < u64::from(per_mille)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        let mut c = SimRng::new(43);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn chance_respects_its_extremes_and_rough_rate() {
        let mut rng = SimRng::new(1);
        assert!((0..100).all(|_| rng.chance(1000)));
        assert!((0..100).all(|_| !rng.chance(0)));
        let hits = (0..10_000).filter(|_| rng.chance(250)).count();
        assert!((2_000..3_000).contains(&hits), "{hits} hits for 25%");
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SimRng::new(9);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
