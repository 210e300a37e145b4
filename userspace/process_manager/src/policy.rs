//! Restart policies and the restart decision.
//!
//! Delays are measured on the kernel clock (`KernelApi::now`); the
//! supervisor waits for the next due restart with a receive timeout, never
//! by spinning, and keeps serving requests while it waits.
//!
//! * `Always` and `OnFailure` restart after a fixed [`RESTART_DELAY`]
//!   (100 ms), without limit. The delay is what keeps a crash loop from
//!   monopolising the process manager and the CPU: at most ten spawns a
//!   second per service.
//! * `ExponentialBackoff { max_attempts }` waits
//!   `BACKOFF_BASE * BACKOFF_MULTIPLIER^(attempt - 1)` before restart
//!   attempt `attempt` (1-based): 100 ms, 200 ms, 400 ms, 800 ms, ... capped at
//!   [`BACKOFF_CAP`] (60 s). After `max_attempts` consecutive restarts the
//!   next failure makes it give up: the service stays `Failed` and is
//!   reported as given up until an operator starts it again.
//!
//! "Consecutive" means without a stable run in between: an instance that
//! stays `Running` for [`STABLE_RUN`] (10 s) resets the count, so a service
//! that fails once a day is not given up on after `max_attempts` days.

use core::time::Duration;
use serde::{Deserialize, Serialize};

use pandagen_abi::ExitReason;

/// The restart policies (docs/interfaces.md, "Process manager").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never restart; a failure leaves the service `Failed`.
    Never,
    /// Restart after every exit the process manager did not ask for,
    /// clean ones included.
    Always,
    /// Restart after a failure (a `Failure` or `Timeout` exit, or a start
    /// that never became ready), not after a clean exit.
    OnFailure,
    /// Like `OnFailure`, with exponentially growing delays, giving up after
    /// `max_attempts` consecutive restarts.
    ExponentialBackoff { max_attempts: u32 },
}

/// The fixed delay before an `Always` / `OnFailure` restart.
pub const RESTART_DELAY: Duration = Duration::from_millis(100);
/// The delay before the first `ExponentialBackoff` restart.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Each further consecutive restart waits this many times longer.
pub const BACKOFF_MULTIPLIER: u32 = 2;
/// No single backoff delay is longer than this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A run at least this long resets the consecutive-restart count.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// How an instance ended, as far as restart policy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitClass {
    /// `Normal`, or `Cancelled` (an intentional stop).
    Clean,
    /// `Failure`, `Timeout`, or an instance that never became ready.
    Abnormal,
}

impl ExitClass {
    pub fn of(reason: &ExitReason) -> ExitClass {
        match reason {
            ExitReason::Normal | ExitReason::Cancelled { .. } => ExitClass::Clean,
            ExitReason::Failure { .. } | ExitReason::Timeout => ExitClass::Abnormal,
        }
    }
}

/// What to do after an instance ended unrequested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartDecision {
    /// Restart after `delay`; this will be consecutive restart `attempt`.
    Restart { delay: Duration, attempt: u32 },
    /// The policy does not restart after this kind of exit.
    DoNotRestart,
    /// `ExponentialBackoff` ran out of attempts.
    GiveUp { attempts: u32 },
}

/// The delay before consecutive restart `attempt` (1-based) under
/// `ExponentialBackoff`.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1);
    let mut delay = BACKOFF_BASE;
    for _ in 0..exponent {
        delay = delay.saturating_mul(BACKOFF_MULTIPLIER);
        if delay >= BACKOFF_CAP {
            return BACKOFF_CAP;
        }
    }
    delay
}

impl RestartPolicy {
    /// Decide after an exit of class `class`, given how many consecutive
    /// restarts already happened.
    pub fn decide(&self, class: ExitClass, consecutive_restarts: u32) -> RestartDecision {
        let attempt = consecutive_restarts.saturating_add(1);
        match (self, class) {
            (RestartPolicy::Never, _) => RestartDecision::DoNotRestart,
            (RestartPolicy::Always, _) | (RestartPolicy::OnFailure, ExitClass::Abnormal) => {
                RestartDecision::Restart {
                    delay: RESTART_DELAY,
                    attempt,
                }
            }
            (RestartPolicy::OnFailure, ExitClass::Clean) => RestartDecision::DoNotRestart,
            (RestartPolicy::ExponentialBackoff { .. }, ExitClass::Clean) => {
                RestartDecision::DoNotRestart
            }
            (RestartPolicy::ExponentialBackoff { max_attempts }, ExitClass::Abnormal) => {
                if consecutive_restarts >= *max_attempts {
                    RestartDecision::GiveUp {
                        attempts: consecutive_restarts,
                    }
                } else {
                    RestartDecision::Restart {
                        delay: backoff_delay(attempt),
                        attempt,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pandagen_abi::FailureCause;

    fn failure() -> ExitReason {
        ExitReason::Failure {
            error: FailureCause::Panic,
        }
    }

    #[test]
    fn exit_reasons_are_classified() {
        assert_eq!(ExitClass::of(&ExitReason::Normal), ExitClass::Clean);
        assert_eq!(
            ExitClass::of(&ExitReason::Cancelled {
                reason: "op".into()
            }),
            ExitClass::Clean
        );
        assert_eq!(ExitClass::of(&failure()), ExitClass::Abnormal);
        assert_eq!(ExitClass::of(&ExitReason::Timeout), ExitClass::Abnormal);
    }

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        assert_eq!(backoff_delay(1), Duration::from_millis(100));
        assert_eq!(backoff_delay(2), Duration::from_millis(200));
        assert_eq!(backoff_delay(3), Duration::from_millis(400));
        assert_eq!(backoff_delay(4), Duration::from_millis(800));
        assert_eq!(backoff_delay(10), Duration::from_millis(51_200));
        assert_eq!(backoff_delay(11), BACKOFF_CAP);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn never_never_restarts() {
        for class in [ExitClass::Clean, ExitClass::Abnormal] {
            assert_eq!(
                RestartPolicy::Never.decide(class, 0),
                RestartDecision::DoNotRestart
            );
        }
    }

    #[test]
    fn always_restarts_after_any_exit_without_limit() {
        for class in [ExitClass::Clean, ExitClass::Abnormal] {
            assert_eq!(
                RestartPolicy::Always.decide(class, 1_000),
                RestartDecision::Restart {
                    delay: RESTART_DELAY,
                    attempt: 1_001
                }
            );
        }
    }

    #[test]
    fn on_failure_restarts_only_after_a_failure() {
        assert_eq!(
            RestartPolicy::OnFailure.decide(ExitClass::Clean, 0),
            RestartDecision::DoNotRestart
        );
        assert_eq!(
            RestartPolicy::OnFailure.decide(ExitClass::Abnormal, 0),
            RestartDecision::Restart {
                delay: RESTART_DELAY,
                attempt: 1
            }
        );
    }

    #[test]
    fn backoff_gives_up_after_max_attempts() {
        let policy = RestartPolicy::ExponentialBackoff { max_attempts: 3 };
        let delays: alloc::vec::Vec<_> = (0..3)
            .map(|done| match policy.decide(ExitClass::Abnormal, done) {
                RestartDecision::Restart { delay, attempt } => {
                    assert_eq!(attempt, done + 1);
                    delay.as_millis()
                }
                other => panic!("expected a restart, got {other:?}"),
            })
            .collect();
        assert_eq!(delays, [100, 200, 400]);
        assert_eq!(
            policy.decide(ExitClass::Abnormal, 3),
            RestartDecision::GiveUp { attempts: 3 }
        );
        assert_eq!(
            policy.decide(ExitClass::Clean, 0),
            RestartDecision::DoNotRestart
        );
    }

    #[test]
    fn zero_attempts_gives_up_at_the_first_failure() {
        let policy = RestartPolicy::ExponentialBackoff { max_attempts: 0 };
        assert_eq!(
            policy.decide(ExitClass::Abnormal, 0),
            RestartDecision::GiveUp { attempts: 0 }
        );
    }
}
