//! Kernel time. Time is explicit, never ambient: a task learns it from
//! `KernelApi::now`, and the simulator drives it from a virtual clock.

use core::ops::{Add, Sub};
use serde::{Deserialize, Serialize};

pub use core::time::Duration;

/// A point on the kernel's monotonic clock, in nanoseconds since boot (or
/// since the simulator was created). It never goes backwards.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant { nanos: 0 };

    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    pub const fn as_nanos(&self) -> u64 {
        self.nanos
    }

    pub const fn as_millis(&self) -> u64 {
        self.nanos / 1_000_000
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// `self + duration`, or `None` if that is past the end of the clock.
    #[inline]
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        let add = u64::try_from(duration.as_nanos()).ok()?;
        self.nanos.checked_add(add).map(Instant::from_nanos)
    }

    /// `self + duration`, clamped to the end of the clock. Deadlines computed
    /// from huge timeouts therefore mean "never" instead of wrapping.
    /// Inlined: a deadline from a timeout in nanoseconds
    /// (`now.saturating_add(Duration::from_nanos(n))`, every receive with
    /// a timeout) then folds to one saturating addition.
    #[inline]
    pub fn saturating_add(&self, duration: Duration) -> Instant {
        self.checked_add(duration)
            .unwrap_or(Instant { nanos: u64::MAX })
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_huge_duration_saturates_instead_of_wrapping() {
        let t = Instant::from_nanos(10);
        assert_eq!((t + Duration::MAX).as_nanos(), u64::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
    }

    #[test]
    fn durations_between_instants_never_go_negative() {
        let a = Instant::from_nanos(5_000);
        let b = Instant::from_nanos(2_000);
        assert_eq!(a - b, Duration::from_nanos(3_000));
        assert_eq!(b - a, Duration::ZERO);
    }
}
