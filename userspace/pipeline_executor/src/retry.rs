//! Retry policies for retryable stage failures.
//!
//! Attempt 0 is the first attempt; attempt `n >= 1` is the n-th retry. A
//! stage runs at most `max_retries + 1` times (max retries is inclusive).
//! Backoff happens *before* a retry, on kernel time (`KernelApi::sleep`), so
//! it is deterministic under the simulator.
//!
//! `backoff_duration(n) = initial_backoff_ms * backoff_multiplier^n`. The wait
//! before retry `n` is `backoff_duration(n - 1)`, which gives the
//! sequence for `exponential_backoff(3, 100)`: 100 ms, 200 ms, 400 ms.
//!
//! Execution is bounded: `validate` rejects policies with more than
//! [`RetryPolicy::MAX_RETRIES`] retries or a multiplier that is negative or
//! not finite, and a single backoff never exceeds [`RetryPolicy::MAX_BACKOFF_MS`].

use core::time::Duration;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 = no retries.
    pub max_retries: u32,
    pub initial_backoff_ms: u64,
    /// 1.0 is constant backoff; 2.0 doubles it each retry.
    pub backoff_multiplier: f64,
}

impl RetryPolicy {
    /// The most retries a stage may ask for.
    pub const MAX_RETRIES: u32 = 16;
    /// The longest single backoff, in milliseconds.
    pub const MAX_BACKOFF_MS: u64 = 60_000;

    /// No retries: any failure is final.
    pub const fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            initial_backoff_ms: 0,
            backoff_multiplier: 1.0,
        }
    }

    /// Up to `max_retries` retries, each after the same backoff.
    pub const fn fixed_retries(max_retries: u32, backoff_ms: u64) -> Self {
        RetryPolicy {
            max_retries,
            initial_backoff_ms: backoff_ms,
            backoff_multiplier: 1.0,
        }
    }

    /// Up to `max_retries` retries, the backoff doubling each time.
    pub const fn exponential_backoff(max_retries: u32, initial_backoff_ms: u64) -> Self {
        RetryPolicy {
            max_retries,
            initial_backoff_ms,
            backoff_multiplier: 2.0,
        }
    }

    /// True if the policy is within the executor's bounds.
    pub fn is_bounded(&self) -> bool {
        self.max_retries <= Self::MAX_RETRIES
            && self.backoff_multiplier.is_finite()
            && self.backoff_multiplier >= 0.0
    }

    /// How many attempts a stage gets, at most: `max_retries + 1`, with the
    /// retries clamped to [`RetryPolicy::MAX_RETRIES`].
    pub fn max_attempts(&self) -> u32 {
        self.max_retries.min(Self::MAX_RETRIES) + 1
    }

    /// `initial_backoff_ms * backoff_multiplier^attempt`, clamped to
    /// [`RetryPolicy::MAX_BACKOFF_MS`]. An out-of-bounds multiplier (negative,
    /// NaN, infinite) counts as 1.0.
    pub fn backoff_duration(&self, attempt: u32) -> Duration {
        let multiplier = if self.backoff_multiplier.is_finite() && self.backoff_multiplier >= 0.0 {
            self.backoff_multiplier
        } else {
            1.0
        };
        let cap = Self::MAX_BACKOFF_MS as f64;
        // Repeated multiplication instead of `powi`, which needs libm in
        // `no_std`; stopping at the cap also bounds the loop.
        let mut millis = self.initial_backoff_ms as f64;
        for _ in 0..attempt {
            if millis >= cap || millis == 0.0 {
                break;
            }
            millis *= multiplier;
        }
        let millis = if millis >= cap { cap } else { millis };
        // `as` saturates and turns NaN into 0; neither can occur here.
        Duration::from_millis(millis as u64)
    }

    /// The wait before `attempt`: none before the first attempt, and
    /// `backoff_duration(attempt - 1)` before retry `attempt`.
    pub fn backoff_before(&self, attempt: u32) -> Duration {
        match attempt {
            0 => Duration::ZERO,
            n => self.backoff_duration(n - 1),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn constructors_match_the_reference() {
        let none = RetryPolicy::none();
        assert_eq!(none.max_retries, 0);
        assert_eq!(none.max_attempts(), 1);
        assert_eq!(RetryPolicy::default(), none);

        let fixed = RetryPolicy::fixed_retries(3, 100);
        assert_eq!(
            (
                fixed.max_retries,
                fixed.initial_backoff_ms,
                fixed.backoff_multiplier
            ),
            (3, 100, 1.0)
        );
        assert_eq!(fixed.max_attempts(), 4);

        let exp = RetryPolicy::exponential_backoff(3, 100);
        assert_eq!(exp.backoff_multiplier, 2.0);
        assert_eq!(exp.max_attempts(), 4);
    }

    #[test]
    fn backoff_is_initial_times_multiplier_to_the_attempt() {
        let exp = RetryPolicy::exponential_backoff(3, 100);
        assert_eq!(ms(exp.backoff_duration(0)), 100);
        assert_eq!(ms(exp.backoff_duration(1)), 200);
        assert_eq!(ms(exp.backoff_duration(2)), 400);
        let fixed = RetryPolicy::fixed_retries(3, 50);
        assert_eq!(ms(fixed.backoff_duration(5)), 50);
        let third = RetryPolicy {
            max_retries: 2,
            initial_backoff_ms: 90,
            backoff_multiplier: 1.5,
        };
        assert_eq!(ms(third.backoff_duration(2)), 202);
    }

    #[test]
    fn the_wait_before_each_retry_is_the_reference_sequence() {
        let exp = RetryPolicy::exponential_backoff(3, 100);
        let waits: alloc::vec::Vec<u64> = (0..exp.max_attempts())
            .map(|a| ms(exp.backoff_before(a)))
            .collect();
        assert_eq!(waits, [0, 100, 200, 400]);
    }

    #[test]
    fn backoff_and_retries_are_bounded() {
        let huge = RetryPolicy {
            max_retries: 1_000,
            initial_backoff_ms: 1_000,
            backoff_multiplier: 10.0,
        };
        assert!(!huge.is_bounded());
        assert_eq!(huge.max_attempts(), RetryPolicy::MAX_RETRIES + 1);
        assert_eq!(
            ms(huge.backoff_duration(u32::MAX)),
            RetryPolicy::MAX_BACKOFF_MS
        );
        let nan = RetryPolicy {
            max_retries: 1,
            initial_backoff_ms: 10,
            backoff_multiplier: f64::NAN,
        };
        assert!(!nan.is_bounded());
        assert_eq!(ms(nan.backoff_duration(3)), 10);
        assert!(RetryPolicy::exponential_backoff(16, 1).is_bounded());
    }
}
