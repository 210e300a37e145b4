//! What a refused message may cost the process manager. Anyone may look
//! the process manager up and send to it, so a task can keep its public
//! channel full of messages it refuses: bytes that are no envelope,
//! requests without a reply capability, state-changing requests without
//! the control capability. Refusing one costs a decode; logging it costs
//! a boot-log line, which is a serial write of milliseconds. So in each
//! interval only the first few refusals are logged in full, and the rest
//! are only counted, per sender, and summarised in one event when the
//! interval ends: a flood costs a decode and a counter per message, and
//! at most a few log lines per interval.

use alloc::vec::Vec;
use core::time::Duration;

use pandagen_abi::{Instant, TaskId};

/// How long one interval lasts.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(1);
/// How many refusals each interval logs in full.
pub const REFUSALS_LOGGED_PER_INTERVAL: u32 = 8;
/// How many senders a summary names one by one; refusals from any further
/// sender are counted together.
pub const SENDERS_COUNTED: usize = 8;

/// Refusals counted but not logged during one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalSummary {
    /// When the interval began.
    pub since: Instant,
    /// Refusals per sender the kernel stamped (`None`: a message whose
    /// sender could not be read, such as bytes that are no envelope),
    /// in the order the senders were first seen.
    pub by_sender: Vec<(Option<TaskId>, u64)>,
    /// Refusals from senders past the first [`SENDERS_COUNTED`].
    pub other_senders: u64,
}

impl RefusalSummary {
    /// Every refusal the summary counts.
    pub fn total(&self) -> u64 {
        self.by_sender.iter().map(|(_, n)| n).sum::<u64>() + self.other_senders
    }
}

/// What to do with one refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalVerdict {
    /// Log it in full.
    Log,
    /// Counted; it appears in the interval's summary.
    Counted,
}

/// Decides which refusals are logged, and counts the others.
#[derive(Debug)]
pub struct RefusalLimiter {
    /// The interval under way: when it began and how many it logged.
    window: Option<(Instant, u32)>,
    counted: RefusalSummary,
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        RefusalLimiter {
            window: None,
            counted: RefusalSummary {
                since: Instant::ZERO,
                by_sender: Vec::new(),
                other_senders: 0,
            },
        }
    }
}

impl RefusalLimiter {
    /// A refusal of a message from `sender` at `now`. Returns the summary
    /// of the interval that ended before it, if that counted any (log it
    /// first), and whether to log this one.
    pub fn refuse(
        &mut self,
        now: Instant,
        sender: Option<TaskId>,
    ) -> (Option<RefusalSummary>, RefusalVerdict) {
        let ended = self.close_if_over(now);
        let (_, logged) = self.window.get_or_insert((now, 0));
        if *logged < REFUSALS_LOGGED_PER_INTERVAL {
            *logged += 1;
            return (ended, RefusalVerdict::Log);
        }
        let by_sender = &mut self.counted.by_sender;
        if let Some((_, count)) = by_sender.iter_mut().find(|(s, _)| *s == sender) {
            *count += 1;
        } else if by_sender.len() < SENDERS_COUNTED {
            by_sender.push((sender, 1));
        } else {
            self.counted.other_senders += 1;
        }
        (ended, RefusalVerdict::Counted)
    }

    /// The summary of the interval under way if it has ended by `now` and
    /// counted anything; a new interval begins with the next refusal.
    pub fn close_if_over(&mut self, now: Instant) -> Option<RefusalSummary> {
        let (since, _) = self.window?;
        if now < since.saturating_add(REFUSAL_INTERVAL) {
            return None;
        }
        self.window = None;
        let summary = core::mem::replace(
            &mut self.counted,
            RefusalSummary {
                since: Instant::ZERO,
                by_sender: Vec::new(),
                other_senders: 0,
            },
        );
        (summary.total() > 0).then_some(RefusalSummary { since, ..summary })
    }

    /// When the interval under way ends, if it has counted refusals that
    /// are still to be summarised.
    pub fn summary_due(&self) -> Option<Instant> {
        let (since, _) = self.window?;
        (self.counted.total() > 0).then_some(since.saturating_add(REFUSAL_INTERVAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_flood_logs_a_few_and_counts_the_rest_per_sender() {
        let mut limiter = RefusalLimiter::default();
        let attacker = Some(TaskId::from_raw(7));
        let mut logged = 0;
        for i in 0..10_000 {
            let sender = if i % 2 == 0 { attacker } else { None };
            let (ended, verdict) = limiter.refuse(at(i / 100), sender);
            assert_eq!(ended, None);
            logged += u32::from(verdict == RefusalVerdict::Log);
        }
        assert_eq!(logged, REFUSALS_LOGGED_PER_INTERVAL);
        assert_eq!(limiter.summary_due(), Some(at(1000)));
        assert_eq!(limiter.close_if_over(at(999)), None);
        let summary = limiter.close_if_over(at(1000)).expect("a summary");
        assert_eq!(summary.since, at(0));
        let half = u64::from(10_000 - REFUSALS_LOGGED_PER_INTERVAL) / 2;
        assert_eq!(summary.by_sender, [(attacker, half), (None, half)]);
        assert_eq!(summary.other_senders, 0);
        // Nothing counted since: nothing due, nothing to summarise.
        assert_eq!(limiter.summary_due(), None);
        assert_eq!(limiter.close_if_over(at(5000)), None);
    }

    #[test]
    fn the_next_interval_logs_again_after_the_summary() {
        let mut limiter = RefusalLimiter::default();
        for _ in 0..=REFUSALS_LOGGED_PER_INTERVAL {
            limiter.refuse(at(0), None);
        }
        let (ended, verdict) = limiter.refuse(at(1500), None);
        assert_eq!(verdict, RefusalVerdict::Log);
        let ended = ended.expect("the first interval's summary");
        assert_eq!((ended.since, ended.total()), (at(0), 1));
    }

    #[test]
    fn an_interval_within_its_allowance_needs_no_summary() {
        let mut limiter = RefusalLimiter::default();
        for _ in 0..REFUSALS_LOGGED_PER_INTERVAL {
            assert_eq!(limiter.refuse(at(0), None).1, RefusalVerdict::Log);
        }
        assert_eq!(limiter.summary_due(), None);
        assert_eq!(limiter.close_if_over(at(2000)), None);
    }

    #[test]
    fn senders_past_the_table_are_counted_together() {
        let mut limiter = RefusalLimiter::default();
        for _ in 0..REFUSALS_LOGGED_PER_INTERVAL {
            limiter.refuse(at(0), None);
        }
        for task in 1..=(SENDERS_COUNTED as u64 + 5) {
            limiter.refuse(at(0), Some(TaskId::from_raw(task)));
        }
        let summary = limiter.close_if_over(at(1000)).expect("a summary");
        assert_eq!(summary.by_sender.len(), SENDERS_COUNTED);
        assert_eq!(summary.other_senders, 5);
        assert_eq!(summary.total(), SENDERS_COUNTED as u64 + 5);
    }
}
