//! The periodic tick and the monotonic clock.

/// A periodic timer plus a monotonic nanosecond clock.
pub trait TimerHal {
    /// Timer interrupts taken since the timer was started.
    fn ticks(&self) -> u64;
    /// How many ticks arrive per second.
    fn tick_frequency_hz(&self) -> u32;
    /// Nanoseconds since boot. Never decreases.
    fn now_ns(&self) -> u64;
}
