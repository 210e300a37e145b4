//! Service lifecycle states and their legal transitions.
//!
//! docs/interfaces.md names five transitions:
//!
//! | from       | to         | why                                 |
//! |------------|------------|-------------------------------------|
//! | Starting   | Running    | startup succeeded                   |
//! | Running    | Stopping   | graceful shutdown initiated         |
//! | Stopping   | Stopped    | shutdown complete                   |
//! | Running    | Failed     | unexpected failure                  |
//! | Failed     | Restarting | the policy triggers a restart       |
//!
//! It is silent about how a service is first started, how a restart ends,
//! and what happens when an instance dies before it is ready or exits
//! cleanly on its own. PandaGen adds exactly these, and no others:
//!
//! | from       | to         | why                                              |
//! |------------|------------|--------------------------------------------------|
//! | Stopped    | Starting   | start (at boot, or by an operator)               |
//! | Restarting | Starting   | the restart delay passed; a new instance spawns  |
//! | Starting   | Failed     | the instance died or never became ready          |
//! | Starting   | Stopping   | stop requested while the instance was starting   |
//! | Running    | Stopped    | the instance exited cleanly on its own           |
//! | Stopped    | Restarting | `Always` after a clean exit; operator restart    |
//! | Restarting | Stopped    | stop requested while a restart was pending       |
//!
//! Every service record starts in `Stopped`. The state lives in a
//! [`Lifecycle`], whose only mutator checks the table, so an illegal
//! transition is rejected with [`IllegalTransition`] and leaves the state as
//! it was.

use core::fmt;
use serde::{Deserialize, Serialize};

/// The lifecycle states (docs/interfaces.md, "Process manager").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LifecycleState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
    Restarting,
}

impl LifecycleState {
    pub const ALL: [LifecycleState; 6] = [
        LifecycleState::Starting,
        LifecycleState::Running,
        LifecycleState::Stopping,
        LifecycleState::Stopped,
        LifecycleState::Failed,
        LifecycleState::Restarting,
    ];

    /// True if `self -> to` is in the transition table above.
    pub const fn can_transition_to(self, to: LifecycleState) -> bool {
        use LifecycleState::*;
        matches!(
            (self, to),
            (Starting, Running)
                | (Running, Stopping)
                | (Stopping, Stopped)
                | (Running, Failed)
                | (Failed, Restarting)
                | (Stopped, Starting)
                | (Restarting, Starting)
                | (Starting, Failed)
                | (Starting, Stopping)
                | (Running, Stopped)
                | (Stopped, Restarting)
                | (Restarting, Stopped)
        )
    }

    /// True if an instance of the service may be alive in this state.
    pub const fn has_instance(self) -> bool {
        matches!(
            self,
            LifecycleState::Starting | LifecycleState::Running | LifecycleState::Stopping
        )
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LifecycleState::Starting => "starting",
            LifecycleState::Running => "running",
            LifecycleState::Stopping => "stopping",
            LifecycleState::Stopped => "stopped",
            LifecycleState::Failed => "failed",
            LifecycleState::Restarting => "restarting",
        };
        // `pad`, not `write_str`: tables align states with `{:<10}`.
        f.pad(name)
    }
}

/// A transition that is not in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IllegalTransition {
    pub from: LifecycleState,
    pub to: LifecycleState,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a service cannot go from {} to {}", self.from, self.to)
    }
}

/// A lifecycle state that only changes along legal transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    state: LifecycleState,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

impl Lifecycle {
    /// A service that is not running yet.
    pub const fn new() -> Self {
        Lifecycle {
            state: LifecycleState::Stopped,
        }
    }

    pub const fn state(&self) -> LifecycleState {
        self.state
    }

    /// Move to `to`, or reject the transition and stay put.
    pub fn transition(&mut self, to: LifecycleState) -> Result<(), IllegalTransition> {
        if self.state.can_transition_to(to) {
            self.state = to;
            Ok(())
        } else {
            Err(IllegalTransition {
                from: self.state,
                to,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LifecycleState::*;
    use super::*;

    #[test]
    fn the_reference_transitions_are_legal() {
        for (from, to) in [
            (Starting, Running),
            (Running, Stopping),
            (Stopping, Stopped),
            (Running, Failed),
            (Failed, Restarting),
        ] {
            assert!(from.can_transition_to(to), "{from} -> {to}");
        }
    }

    #[test]
    fn exactly_twelve_transitions_exist() {
        let legal = LifecycleState::ALL
            .iter()
            .flat_map(|from| LifecycleState::ALL.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.can_transition_to(*to))
            .count();
        assert_eq!(legal, 12);
    }

    #[test]
    fn illegal_transitions_are_rejected_and_change_nothing() {
        for (from, to) in [
            (Stopped, Running),
            (Failed, Running),
            (Stopped, Failed),
            (Restarting, Running),
            (Stopping, Running),
            (Failed, Starting),
            (Running, Running),
        ] {
            assert!(!from.can_transition_to(to), "{from} -> {to}");
        }
        let mut lifecycle = Lifecycle::new();
        assert_eq!(
            lifecycle.transition(Running),
            Err(IllegalTransition {
                from: Stopped,
                to: Running
            })
        );
        assert_eq!(lifecycle.state(), Stopped);
    }

    #[test]
    fn a_crash_and_restart_walks_the_table() {
        let mut lifecycle = Lifecycle::new();
        for to in [
            Starting, Running, Failed, Restarting, Starting, Running, Stopping, Stopped,
        ] {
            lifecycle.transition(to).unwrap();
        }
        assert_eq!(lifecycle.state(), Stopped);
    }

    #[test]
    fn only_live_states_have_an_instance() {
        let live: alloc::vec::Vec<_> = LifecycleState::ALL
            .into_iter()
            .filter(|s| s.has_instance())
            .collect();
        assert_eq!(live, [Starting, Running, Stopping]);
    }
}
