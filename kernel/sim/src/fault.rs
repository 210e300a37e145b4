//! Fault plans: what should go wrong in a simulation, declared up front.
//!
//! A [`FaultPlan`] is plain data: a seed and an ordered list of rules. The
//! [`FaultInjector`](crate::FaultInjector) evaluates it as messages flow, so
//! the same plan and seed always produce the same faults and the same
//! [`Trace`](crate::Trace).
//!
//! Message faults act on a message *after* a successful send: it is dropped
//! (its capabilities are invalidated and audited), delayed by virtual time,
//! or held back so that later messages on its channel overtake it
//! (reordering). A fault never duplicates a message. Lifecycle faults make a
//! `send_message` or `receive_message` fail with `InjectedFault`, or crash a
//! task once it has handled a number of messages.
//!
//! Rules are evaluated in the order they were added. For each sent message
//! the first message rule that matches — and whose chance roll succeeds —
//! applies, and uses up one unit of its budget.

use pandagen_abi::{Duration, TaskId};

/// A channel as the whole kernel knows it (slot index and generation),
/// independent of any task's handle for it. Obtain one with
/// [`SimulatedKernel::channel_key`](crate::SimulatedKernel::channel_key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelKey(pub(crate) u64);

impl ChannelKey {
    pub const fn as_raw(&self) -> u64 {
        self.0
    }
}

impl core::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ch{}g{}", self.0 as u32, self.0 >> 32)
    }
}

/// Which messages a rule applies to. Every field that is set must match;
/// the default filter matches every message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub channel: Option<ChannelKey>,
    pub action: Option<String>,
    pub sender: Option<TaskId>,
}

impl MessageFilter {
    pub fn any() -> Self {
        MessageFilter::default()
    }

    pub fn on_channel(channel: ChannelKey) -> Self {
        MessageFilter {
            channel: Some(channel),
            ..MessageFilter::default()
        }
    }

    pub fn with_action(action: impl Into<String>) -> Self {
        MessageFilter {
            action: Some(action.into()),
            ..MessageFilter::default()
        }
    }

    pub fn from_sender(mut self, sender: TaskId) -> Self {
        self.sender = Some(sender);
        self
    }

    pub fn matches(&self, channel: ChannelKey, action: &str, sender: TaskId) -> bool {
        self.channel.is_none_or(|c| c == channel)
            && self.action.as_deref().is_none_or(|a| a == action)
            && self.sender.is_none_or(|s| s == sender)
    }
}

/// What happens to a message a rule hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageFault {
    /// Silently discard it: the sender sees `Ok(())`, the receiver never
    /// sees it, and any capabilities it carried are invalidated.
    Drop,
    /// Deliver it once virtual time has advanced by this much.
    Delay(Duration),
    /// Hold it back until between 1 and `window - 1` later messages on the
    /// same channel (chosen by the seeded generator) have overtaken it, or
    /// until the receiver finds the queue empty. While one message is held
    /// on a channel, the next one hit on it is queued instead — it is the
    /// one overtaking. `window` below 2 has no effect.
    Reorder { window: u32 },
}

/// A message fault with its filter, budget and chance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRule {
    pub filter: MessageFilter,
    pub fault: MessageFault,
    /// How many messages the rule may still hit; `None` means no limit.
    pub budget: Option<u32>,
    /// Chance, in per-mille, that a matching message is hit (1000 = always).
    pub per_mille: u16,
}

impl MessageRule {
    pub fn new(filter: MessageFilter, fault: MessageFault) -> Self {
        MessageRule {
            filter,
            fault,
            budget: None,
            per_mille: 1000,
        }
    }

    pub fn times(mut self, budget: u32) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn with_chance(mut self, per_mille: u16) -> Self {
        self.per_mille = per_mille.min(1000);
        self
    }
}

/// A failure of a kernel operation or of a whole task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleFault {
    /// `send_message` fails with `SendFailed(InjectedFault)`; nothing is
    /// enqueued and the sender keeps its capabilities.
    CrashOnSend,
    /// `receive_message` fails with `ReceiveFailed(InjectedFault)`. With
    /// `consume`, the message at the head of the queue (if any) is lost with
    /// it ("may or may not be consumed", docs/interfaces.md) and its
    /// capabilities are invalidated; otherwise it stays queued.
    CrashOnReceive { consume: bool },
    /// The task is terminated with `ExitReason::Failure` right after it has
    /// completed `count` message operations (sends plus deliveries to it).
    CrashAfterMessages { count: u32 },
}

/// A lifecycle fault for one task, or for any task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleRule {
    pub task: Option<TaskId>,
    pub fault: LifecycleFault,
    /// How many times the fault may still fire; `None` means no limit.
    /// (A crash-after-messages rule fires at most once per task anyway.)
    pub budget: Option<u32>,
    /// Chance, in per-mille, that an eligible operation fails.
    pub per_mille: u16,
}

impl LifecycleRule {
    pub fn new(task: Option<TaskId>, fault: LifecycleFault) -> Self {
        LifecycleRule {
            task,
            fault,
            budget: None,
            per_mille: 1000,
        }
    }

    pub fn times(mut self, budget: u32) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn with_chance(mut self, per_mille: u16) -> Self {
        self.per_mille = per_mille.min(1000);
        self
    }

    pub fn applies_to(&self, task: TaskId) -> bool {
        self.task.is_none_or(|t| t == task)
    }
}

/// A complete, deterministic description of the faults to inject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub seed: u64,
    pub message_rules: Vec<MessageRule>,
    pub lifecycle_rules: Vec<LifecycleRule>,
}

impl FaultPlan {
    /// A plan that injects nothing.
    pub fn new() -> Self {
        FaultPlan::default()
    }

    /// Seed for the chance rolls and reorder choices.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_message_rule(mut self, rule: MessageRule) -> Self {
        self.message_rules.push(rule);
        self
    }

    pub fn with_lifecycle_rule(mut self, rule: LifecycleRule) -> Self {
        self.lifecycle_rules.push(rule);
        self
    }

    /// Drop the next `count` messages sent, on any channel.
    pub fn drop_next(self, count: u32) -> Self {
        self.with_message_rule(
            MessageRule::new(MessageFilter::any(), MessageFault::Drop).times(count),
        )
    }

    /// Drop every message sent on `channel`.
    pub fn drop_on_channel(self, channel: ChannelKey) -> Self {
        self.with_message_rule(MessageRule::new(
            MessageFilter::on_channel(channel),
            MessageFault::Drop,
        ))
    }

    /// Drop every message whose action is exactly `action`.
    pub fn drop_matching_action(self, action: impl Into<String>) -> Self {
        self.with_message_rule(MessageRule::new(
            MessageFilter::with_action(action),
            MessageFault::Drop,
        ))
    }

    /// Delay the next `count` messages by `delay` of virtual time.
    pub fn delay_next(self, count: u32, delay: Duration) -> Self {
        self.with_message_rule(
            MessageRule::new(MessageFilter::any(), MessageFault::Delay(delay)).times(count),
        )
    }

    /// Delay every message sent on `channel` by `delay`.
    pub fn delay_on_channel(self, channel: ChannelKey, delay: Duration) -> Self {
        self.with_message_rule(MessageRule::new(
            MessageFilter::on_channel(channel),
            MessageFault::Delay(delay),
        ))
    }

    /// Delay every message whose action is exactly `action` by `delay`.
    pub fn delay_matching_action(self, action: impl Into<String>, delay: Duration) -> Self {
        self.with_message_rule(MessageRule::new(
            MessageFilter::with_action(action),
            MessageFault::Delay(delay),
        ))
    }

    /// Reorder the next `count` messages within a window of `window`.
    pub fn reorder_next(self, count: u32, window: u32) -> Self {
        self.with_message_rule(
            MessageRule::new(MessageFilter::any(), MessageFault::Reorder { window }).times(count),
        )
    }

    /// Reorder every message on `channel` within a window of `window`.
    pub fn reorder_on_channel(self, channel: ChannelKey, window: u32) -> Self {
        self.with_message_rule(MessageRule::new(
            MessageFilter::on_channel(channel),
            MessageFault::Reorder { window },
        ))
    }

    /// Make the next `count` sends (by any task) fail.
    pub fn crash_on_send(self, count: u32) -> Self {
        self.with_lifecycle_rule(LifecycleRule::new(None, LifecycleFault::CrashOnSend).times(count))
    }

    /// Make the next `count` receives (by any task) fail, without consuming.
    pub fn crash_on_receive(self, count: u32) -> Self {
        self.with_lifecycle_rule(
            LifecycleRule::new(None, LifecycleFault::CrashOnReceive { consume: false })
                .times(count),
        )
    }

    /// Terminate `task` with a failure once it has handled `count` messages.
    pub fn crash_after_messages(self, task: TaskId, count: u32) -> Self {
        self.with_lifecycle_rule(
            LifecycleRule::new(Some(task), LifecycleFault::CrashAfterMessages { count }).times(1),
        )
    }

    /// A random mixture of every fault kind, derived from `seed` alone, for
    /// sweeps: probabilistic drops, delays and reorders on all messages,
    /// plus occasional failing sends and receives (some consuming). Task
    /// crashes are left out, since which task to crash depends on the
    /// scenario; add them with [`FaultPlan::crash_after_messages`].
    pub fn random(seed: u64) -> Self {
        let mut rng = crate::rng::SimRng::new(seed ^ 0xA5A5_5A5A_F00D_BEEF);
        let mut plan = FaultPlan::new().with_seed(seed);
        let chance = |rng: &mut crate::rng::SimRng, max: u64| rng.below(max + 1) as u16;
        let drop = chance(&mut rng, 300);
        let delay = chance(&mut rng, 300);
        let reorder = chance(&mut rng, 300);
        let delay_ms = 1 + rng.below(50);
        let window = 2 + rng.below(4) as u32;
        let mut rules = vec![
            MessageRule::new(MessageFilter::any(), MessageFault::Drop).with_chance(drop),
            MessageRule::new(
                MessageFilter::any(),
                MessageFault::Delay(Duration::from_millis(delay_ms)),
            )
            .with_chance(delay),
            MessageRule::new(MessageFilter::any(), MessageFault::Reorder { window })
                .with_chance(reorder),
        ];
        // The order of the rules matters (first match wins), so shuffle it.
        for i in (1..rules.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            rules.swap(i, j);
        }
        for rule in rules {
            plan = plan.with_message_rule(rule);
        }
        let send_crash = chance(&mut rng, 100);
        let recv_crash = chance(&mut rng, 100);
        let consume = rng.chance(500);
        plan.with_lifecycle_rule(
            LifecycleRule::new(None, LifecycleFault::CrashOnSend).with_chance(send_crash),
        )
        .with_lifecycle_rule(
            LifecycleRule::new(None, LifecycleFault::CrashOnReceive { consume })
                .with_chance(recv_crash),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.message_rules.is_empty() && self.lifecycle_rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_only_what_they_name() {
        let t1 = TaskId::from_raw(1);
        let t2 = TaskId::from_raw(2);
        let c1 = ChannelKey(1);
        let c2 = ChannelKey(2);
        assert!(MessageFilter::any().matches(c1, "x", t1));
        assert!(MessageFilter::on_channel(c1).matches(c1, "x", t1));
        assert!(!MessageFilter::on_channel(c1).matches(c2, "x", t1));
        assert!(MessageFilter::with_action("a").matches(c2, "a", t2));
        assert!(!MessageFilter::with_action("a").matches(c2, "ab", t2));
        let f = MessageFilter::with_action("a").from_sender(t1);
        assert!(f.matches(c1, "a", t1));
        assert!(!f.matches(c1, "a", t2));
    }

    #[test]
    fn random_plans_are_a_pure_function_of_the_seed() {
        assert_eq!(FaultPlan::random(5), FaultPlan::random(5));
        assert_ne!(FaultPlan::random(5), FaultPlan::random(6));
        assert!(!FaultPlan::random(5).is_empty());
    }

    #[test]
    fn builders_set_budgets() {
        let plan = FaultPlan::new().drop_next(3).crash_on_send(2);
        assert_eq!(plan.message_rules[0].budget, Some(3));
        assert_eq!(plan.message_rules[0].fault, MessageFault::Drop);
        assert_eq!(plan.lifecycle_rules[0].budget, Some(2));
        assert!(FaultPlan::new().is_empty());
    }
}
