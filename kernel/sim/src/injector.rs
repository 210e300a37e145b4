//! The stateful side of a [`FaultPlan`]: budgets, counters and the seeded
//! generator, consulted by the simulated kernel at each message operation.
//!
//! The injector only *decides*; the kernel carries the decision out (and
//! records it in the trace). Every decision depends only on the plan, its
//! seed and the sequence of operations so far, which makes a run
//! reproducible.

use std::collections::BTreeMap;

use pandagen_abi::TaskId;

use crate::fault::{ChannelKey, FaultPlan, LifecycleFault, MessageFault};
use crate::rng::SimRng;

/// Evaluates a [`FaultPlan`] as operations happen.
#[derive(Clone, Debug)]
pub struct FaultInjector {
    plan: FaultPlan,
    rng: SimRng,
    message_budgets: Vec<Option<u32>>,
    lifecycle_budgets: Vec<Option<u32>>,
    /// Message operations completed per task, for crash-after-messages.
    operations: BTreeMap<TaskId, u32>,
}

/// What a receive attempt should do instead of receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveCrash {
    /// The head of the queue is consumed (and lost) by the failed receive.
    pub consume: bool,
}

fn spend(budget: &mut Option<u32>) -> bool {
    match budget {
        None => true,
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
    }
}

fn has_budget(budget: &Option<u32>) -> bool {
    budget.is_none_or(|n| n > 0)
}

impl FaultInjector {
    pub fn new(plan: FaultPlan) -> Self {
        FaultInjector {
            rng: SimRng::new(plan.seed),
            message_budgets: plan.message_rules.iter().map(|r| r.budget).collect(),
            lifecycle_budgets: plan.lifecycle_rules.iter().map(|r| r.budget).collect(),
            operations: BTreeMap::new(),
            plan,
        }
    }

    /// An injector that never injects anything.
    pub fn disabled() -> Self {
        FaultInjector::new(FaultPlan::new())
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Whether a send by `task` should fail before anything is enqueued.
    pub fn send_should_fail(&mut self, task: TaskId) -> bool {
        for (i, rule) in self.plan.lifecycle_rules.iter().enumerate() {
            if rule.fault == LifecycleFault::CrashOnSend
                && rule.applies_to(task)
                && has_budget(&self.lifecycle_budgets[i])
                && self.rng.chance(rule.per_mille)
            {
                spend(&mut self.lifecycle_budgets[i]);
                return true;
            }
        }
        false
    }

    /// Whether a receive by `task` should fail, and how.
    pub fn receive_should_fail(&mut self, task: TaskId) -> Option<ReceiveCrash> {
        for (i, rule) in self.plan.lifecycle_rules.iter().enumerate() {
            if let LifecycleFault::CrashOnReceive { consume } = rule.fault {
                if rule.applies_to(task)
                    && has_budget(&self.lifecycle_budgets[i])
                    && self.rng.chance(rule.per_mille)
                {
                    spend(&mut self.lifecycle_budgets[i]);
                    return Some(ReceiveCrash { consume });
                }
            }
        }
        None
    }

    /// The fault, if any, for a message `sender` just sent on `channel`.
    pub fn message_fault(
        &mut self,
        channel: ChannelKey,
        action: &str,
        sender: TaskId,
    ) -> Option<MessageFault> {
        for (i, rule) in self.plan.message_rules.iter().enumerate() {
            if rule.filter.matches(channel, action, sender)
                && has_budget(&self.message_budgets[i])
                && self.rng.chance(rule.per_mille)
            {
                spend(&mut self.message_budgets[i]);
                return Some(rule.fault);
            }
        }
        None
    }

    /// Count one completed message operation (a send, or a delivery) by
    /// `task`. Returns the operation count if the task must now crash.
    pub fn count_operation(&mut self, task: TaskId) -> Option<u32> {
        let done = self.operations.entry(task).or_insert(0);
        *done = done.saturating_add(1);
        let done = *done;
        for (i, rule) in self.plan.lifecycle_rules.iter().enumerate() {
            if let LifecycleFault::CrashAfterMessages { count } = rule.fault {
                if rule.applies_to(task)
                    && done == count
                    && has_budget(&self.lifecycle_budgets[i])
                    && self.rng.chance(rule.per_mille)
                {
                    spend(&mut self.lifecycle_budgets[i]);
                    return Some(done);
                }
            }
        }
        None
    }

    /// How many later messages a message hit by `Reorder { window }` lets
    /// overtake it: between 1 and `window - 1`, or 0 when the window is too
    /// small to reorder anything.
    pub fn overtakes(&mut self, window: u32) -> u32 {
        if window < 2 {
            return 0;
        }
        1 + self.rng.below(u64::from(window - 1)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{LifecycleRule, MessageFilter, MessageRule};
    use pandagen_abi::Duration;

    const T1: TaskId = TaskId::from_raw(1);
    const T2: TaskId = TaskId::from_raw(2);
    const C: ChannelKey = ChannelKey(1);

    #[test]
    fn drop_next_uses_up_its_budget() {
        let mut inj = FaultInjector::new(FaultPlan::new().drop_next(2));
        assert_eq!(inj.message_fault(C, "a", T1), Some(MessageFault::Drop));
        assert_eq!(inj.message_fault(C, "a", T1), Some(MessageFault::Drop));
        assert_eq!(inj.message_fault(C, "a", T1), None);
    }

    #[test]
    fn first_matching_rule_wins() {
        let plan = FaultPlan::new()
            .delay_matching_action("slow", Duration::from_millis(3))
            .drop_next(1);
        let mut inj = FaultInjector::new(plan);
        assert_eq!(
            inj.message_fault(C, "slow", T1),
            Some(MessageFault::Delay(Duration::from_millis(3)))
        );
        assert_eq!(inj.message_fault(C, "fast", T1), Some(MessageFault::Drop));
        assert_eq!(inj.message_fault(C, "fast", T1), None);
    }

    #[test]
    fn crash_on_send_targets_its_task() {
        let plan = FaultPlan::new().with_lifecycle_rule(
            LifecycleRule::new(Some(T2), LifecycleFault::CrashOnSend).times(1),
        );
        let mut inj = FaultInjector::new(plan);
        assert!(!inj.send_should_fail(T1));
        assert!(inj.send_should_fail(T2));
        assert!(!inj.send_should_fail(T2));
    }

    #[test]
    fn crash_after_messages_fires_once_at_the_count() {
        let mut inj = FaultInjector::new(FaultPlan::new().crash_after_messages(T1, 3));
        assert_eq!(inj.count_operation(T1), None);
        assert_eq!(inj.count_operation(T2), None);
        assert_eq!(inj.count_operation(T1), None);
        assert_eq!(inj.count_operation(T1), Some(3));
        assert_eq!(inj.count_operation(T1), None);
    }

    #[test]
    fn probabilistic_rules_are_reproducible() {
        let plan = FaultPlan::new().with_seed(77).with_message_rule(
            MessageRule::new(MessageFilter::any(), MessageFault::Drop).with_chance(400),
        );
        let run = |plan: &FaultPlan| {
            let mut inj = FaultInjector::new(plan.clone());
            (0..64)
                .map(|_| inj.message_fault(C, "a", T1).is_some())
                .collect::<Vec<_>>()
        };
        let a = run(&plan);
        assert_eq!(a, run(&plan));
        assert!(a.iter().any(|d| *d) && a.iter().any(|d| !*d));
        assert_ne!(a, run(&plan.clone().with_seed(78)));
    }

    #[test]
    fn overtakes_stay_inside_the_window() {
        let mut inj = FaultInjector::disabled();
        assert_eq!(inj.overtakes(1), 0);
        assert!((0..100).all(|_| (1..=3).contains(&inj.overtakes(4))));
    }
}
