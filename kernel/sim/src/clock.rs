//! The simulator's virtual clock.
//!
//! Time in the simulation moves only when something moves it: `sleep`, a
//! receive that waits out its timeout, or an explicit `advance_time`. Nothing
//! here reads the host's wall clock, so a scenario gives the same result on
//! any machine and at any speed.

use pandagen_abi::{Duration, Instant};

/// A monotonic virtual clock in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualClock {
    now: Instant,
}

impl VirtualClock {
    /// A clock at [`Instant::ZERO`].
    pub const fn new() -> Self {
        VirtualClock { now: Instant::ZERO }
    }

    pub const fn now(&self) -> Instant {
        self.now
    }

    /// Move the clock forward by `duration` (saturating at the end of time).
    pub fn advance(&mut self, duration: Duration) -> Instant {
        self.now = self.now.saturating_add(duration);
        self.now
    }

    /// Move the clock to `instant` if that is later than now; the clock
    /// never goes backwards.
    pub fn advance_to(&mut self, instant: Instant) -> Instant {
        if instant > self.now {
            self.now = instant;
        }
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_forward_and_never_back() {
        let mut clock = VirtualClock::new();
        assert_eq!(clock.now(), Instant::ZERO);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now().as_millis(), 5);
        clock.advance_to(Instant::from_nanos(1_000));
        assert_eq!(
            clock.now().as_millis(),
            5,
            "advance_to an earlier instant is a no-op"
        );
        clock.advance_to(Instant::from_nanos(7_000_000));
        assert_eq!(clock.now().as_millis(), 7);
    }

    #[test]
    fn advancing_past_the_end_saturates() {
        let mut clock = VirtualClock::new();
        clock.advance(Duration::MAX);
        assert_eq!(clock.now().as_nanos(), u64::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now().as_nanos(), u64::MAX);
    }
}
