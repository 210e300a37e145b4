//! The tick counter and the TSC-based monotonic clock.
//!
//! The periodic timer interrupt calls [`tick`]. Time in nanoseconds comes
//! from the TSC, whose frequency is measured once against the PIT at boot
//! ([`set_tsc_hz`]); [`now_ns`] never goes backwards even if the TSC were to
//! (non-invariant TSCs, or a future SMP kernel reading different CPUs).

use super::cpu::rdtsc;
use crate::timer::TimerHal;
use core::sync::atomic::{AtomicU64, Ordering};

static TICKS: AtomicU64 = AtomicU64::new(0);
static TICK_MILLIHERTZ: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
static LAST_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC cycle in 32.32 fixed point: `now_ns` multiplies
/// and shifts instead of dividing (a 128-bit division is a library call
/// of a hundred instructions, and every system call reads the clock).
static NS_PER_CYCLE_32_32: AtomicU64 = AtomicU64::new(0);

/// `ns_per_cycle` in 32.32 fixed point for a TSC at `hz`.
pub fn ns_per_cycle_fixed(hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    ((1_000_000_000u128 << 32) / u128::from(hz)) as u64
}

/// Nanoseconds in `cycles` at a rate given by [`ns_per_cycle_fixed`].
pub fn cycles_to_ns_fixed(cycles: u64, ns_per_cycle: u64) -> u64 {
    ((u128::from(cycles) * u128::from(ns_per_cycle)) >> 32) as u64
}

/// Nanoseconds in `cycles` TSC cycles at `hz`, without overflow.
pub fn cycles_to_ns(cycles: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    (u128::from(cycles) * 1_000_000_000 / u128::from(hz)) as u64
}

/// The TSC frequency implied by `cycles` elapsing over `pit_count` cycles of
/// a clock running at `pit_hz`.
pub fn tsc_hz_from(cycles: u64, pit_count: u64, pit_hz: u64) -> u64 {
    if pit_count == 0 {
        return 0;
    }
    (u128::from(cycles) * u128::from(pit_hz) / u128::from(pit_count)) as u64
}

/// Sets time zero to the TSC value `tsc` (the kernel passes the value it
/// read at entry, so `now_ns` counts from kernel entry).
pub fn set_base(tsc: u64) {
    TSC_BASE.store(tsc, Ordering::Relaxed);
}

/// Records the measured TSC frequency.
pub fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
    NS_PER_CYCLE_32_32.store(ns_per_cycle_fixed(hz), Ordering::Relaxed);
}

/// The measured TSC frequency (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Records the rate of the periodic tick.
pub fn set_tick_rate(millihertz: u64) {
    TICK_MILLIHERTZ.store(millihertz, Ordering::Relaxed);
}

/// The rate of the periodic tick in millihertz.
pub fn tick_millihertz() -> u64 {
    TICK_MILLIHERTZ.load(Ordering::Relaxed)
}

/// Counts one timer interrupt. Called from the timer interrupt only.
pub fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Timer interrupts so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Nanoseconds since [`set_base`]; 0 until the TSC is calibrated. Monotonic.
pub fn now_ns() -> u64 {
    let cycles = rdtsc().saturating_sub(TSC_BASE.load(Ordering::Relaxed));
    let ns = cycles_to_ns_fixed(cycles, NS_PER_CYCLE_32_32.load(Ordering::Relaxed));
    let previous = LAST_NS.fetch_max(ns, Ordering::Relaxed);
    ns.max(previous)
}

/// The x86_64 [`TimerHal`]: PIT ticks plus the TSC clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct X86Timer;

impl TimerHal for X86Timer {
    fn ticks(&self) -> u64 {
        ticks()
    }

    fn tick_frequency_hz(&self) -> u32 {
        ((tick_millihertz() + 500) / 1000) as u32
    }

    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_conversion_matches_division_closely() {
        for hz in [1_000_000_000u64, 2_499_979_000, 3_000_000_000, 1_193_182] {
            let fixed = ns_per_cycle_fixed(hz);
            for cycles in [0u64, 1, 999, 123_456_789, 10u64.pow(12), 10u64.pow(15)] {
                let exact = cycles_to_ns(cycles, hz);
                let approx = cycles_to_ns_fixed(cycles, fixed);
                // Truncating the rate to 32 fractional bits loses at most
                // one part in 2^32 of the result, plus one for rounding.
                assert!(
                    approx <= exact && exact - approx <= exact / (1 << 31) + 1,
                    "{cycles} cycles at {hz} Hz: {approx} vs {exact}"
                );
            }
        }
        assert_eq!(cycles_to_ns_fixed(5, ns_per_cycle_fixed(0)), 0);
    }

    #[test]
    fn conversions_are_exact_and_do_not_overflow() {
        assert_eq!(cycles_to_ns(3_000_000_000, 3_000_000_000), 1_000_000_000);
        assert_eq!(cycles_to_ns(1, 1_000_000_000), 1);
        assert_eq!(cycles_to_ns(u64::MAX, 1_000_000_000), u64::MAX);
        assert_eq!(cycles_to_ns(5, 0), 0);
        // 10 ms of PIT (11932 cycles) during which 30 million TSC cycles pass.
        assert_eq!(tsc_hz_from(30_000_000, 11_932, 1_193_182), 2_999_954_743);
        assert_eq!(tsc_hz_from(1, 0, 1), 0);
    }

    #[test]
    fn now_is_monotonic_on_the_host_tsc() {
        set_tsc_hz(1_000_000_000);
        let mut last = now_ns();
        for _ in 0..10_000 {
            let t = now_ns();
            assert!(t >= last);
            last = t;
        }
    }
}
