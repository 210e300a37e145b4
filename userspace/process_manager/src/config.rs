//! Supervisor timings, all on the kernel clock.

use core::time::Duration;

/// How often and how long the supervisor waits for things it cannot be told
/// about directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Between registry lookups while a `Registered` service is starting.
    pub ready_poll: Duration,
    /// A `Registered` service that has not registered by then has failed.
    pub startup_timeout: Duration,
    /// Between checks that a running service is still registered. This is
    /// how the loss of an exit notification is detected: the kernel removes
    /// a dead task's registrations, so a vanished registration means the
    /// instance is gone even if its notification never arrived.
    pub liveness_interval: Duration,
    /// How long a stopping service has to exit before the supervisor checks
    /// its registration again.
    pub stop_timeout: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            ready_poll: Duration::from_millis(10),
            // Storage replays its journal before it registers; from a disk,
            // under emulation, a long journal takes seconds.
            startup_timeout: Duration::from_secs(30),
            liveness_interval: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(2),
        }
    }
}
