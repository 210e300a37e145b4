//! Scheduling and blocking: the bookkeeping both kernels share, so that
//! neither keeps its own list of who waits for what.
//!
//! The protocol for a blocking receive, in either kernel:
//!
//! 1. Call [`KernelCore::receive_or_block`] with the task's deadline.
//!    `Message` and `TimedOut` complete the call; `Blocked` means the task
//!    is now off the ready lists, in the channel's wait list and (with a
//!    deadline) in the deadline index.
//! 2. The task is woken by a send on that channel, by the channel becoming
//!    unable to deliver, or by [`KernelCore::expire_deadlines`] once the
//!    clock passes its deadline. It is then ready again, with a
//!    [`WakeReason`] to read with [`KernelCore::take_wake_reason`].
//! 3. When it runs again, call `receive_or_block` again with the *same*
//!    deadline. That delivers the message, reports the timeout, or — if
//!    another receiver took the message first — blocks again. No message is
//!    ever reserved for a sleeper, so none can be lost to one that dies.
//!
//! Sleeping is [`KernelCore::sleep_until`], woken by `expire_deadlines`.
//! The real kernel programs its timer for [`KernelCore::next_deadline`];
//! the simulator advances virtual time to it.

use pandagen_abi::{CapHandle, Instant, KernelError, Priority, TaskId};

use super::KernelCore;
use crate::channel::{ChannelRef, Delivered};
use crate::sched::{BlockedOn, SchedState};
use crate::task::WakeReason;

/// The result of [`KernelCore::receive_or_block`].
#[derive(Debug, PartialEq, Eq)]
pub enum RecvOutcome {
    /// A message was delivered.
    Message(Delivered),
    /// The queue was empty; the task is now blocked.
    Blocked,
    /// The queue was empty and the deadline has passed.
    TimedOut,
}

impl KernelCore {
    /// Receive from the channel `handle` names, or block the caller until
    /// a message arrives or `deadline` (`None`: no deadline) passes. See
    /// the module docs for the protocol. Errors as for
    /// [`KernelCore::receive`]. Cost: O(1), or O(log n) when a deadline is
    /// recorded.
    #[inline]
    pub fn receive_or_block(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<RecvOutcome, KernelError> {
        // The capability check clears the caller's wake reason on the task
        // entry it found (no second lookup).
        let ch = self.receivable_awake(caller, handle, now)?;
        self.take_or_block(caller, ch, deadline, now)
    }

    /// [`KernelCore::receive_or_block`] on the channel `ch` that `caller`
    /// has been found able to receive on, with nothing changed since that
    /// could have taken the capability away (an object call's receive
    /// after its send).
    #[inline(always)]
    pub(super) fn receive_or_block_on(
        &mut self,
        caller: TaskId,
        ch: ChannelRef,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<RecvOutcome, KernelError> {
        if let Some(slot) = self.tasks.slot_of(caller) {
            self.sched.set_wake(slot, None);
        }
        self.take_or_block(caller, ch, deadline, now)
    }

    /// The receive itself, once the caller's capability for `ch` is
    /// checked and its wake reason cleared: the next message, or the
    /// caller blocked on `ch`.
    #[inline(always)]
    fn take_or_block(
        &mut self,
        caller: TaskId,
        ch: ChannelRef,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<RecvOutcome, KernelError> {
        if let Some(delivered) = self.take(caller, ch, now)? {
            return Ok(RecvOutcome::Message(delivered));
        }
        if deadline.is_some_and(|d| d <= now) {
            return Ok(RecvOutcome::TimedOut);
        }
        let slot = self.tasks.slot_of(caller).expect("caller validated");
        self.cancel_block(slot);
        let on = BlockedOn::Receive {
            channel: ch,
            deadline,
        };
        let waiters = self.channels.get_mut(ch).map(|c| c.waiters.get_mut());
        self.sched.block(slot, on, waiters);
        Ok(RecvOutcome::Blocked)
    }

    /// Block the caller until `until`. Returns `Ok(false)` without blocking
    /// if `until` is not in the future. Errors: `TaskNotFound`. Cost:
    /// O(log n).
    pub fn sleep_until(
        &mut self,
        caller: TaskId,
        until: Instant,
        now: Instant,
    ) -> Result<bool, KernelError> {
        let slot = self
            .tasks
            .slot_of(caller)
            .ok_or(KernelError::TaskNotFound(caller))?;
        self.sched.set_wake(slot, None);
        if until <= now {
            return Ok(false);
        }
        self.cancel_block(slot);
        self.sched.block(slot, BlockedOn::Sleep { until }, None);
        Ok(true)
    }

    /// Wake every task whose deadline is at or before `now` (their wake
    /// reason is `DeadlineReached`). Returns how many woke. Cost: O(log n)
    /// per task woken.
    pub fn expire_deadlines(&mut self, now: Instant) -> usize {
        let mut woken = 0;
        while let Some(slot) = self.sched.first_expired(now) {
            match self.sched.state(slot) {
                SchedState::Blocked(BlockedOn::Receive { channel, .. }) => {
                    let waiters = self.channels.get_mut(channel).map(|c| c.waiters.get_mut());
                    self.sched.wake(slot, waiters);
                }
                _ => self.sched.wake(slot, None),
            }
            self.sched.set_wake(slot, Some(WakeReason::DeadlineReached));
            woken += 1;
        }
        woken
    }

    /// If the task is still blocked (a kernel re-issued a wait without the
    /// task having been woken), take it out of its wait list and deadline
    /// index first, so it is never recorded as waiting twice.
    fn cancel_block(&mut self, slot: u32) {
        match self.sched.state(slot) {
            SchedState::Blocked(BlockedOn::Receive { channel, .. }) => {
                let waiters = self.channels.get_mut(channel).map(|c| c.waiters.get_mut());
                self.sched.wake(slot, waiters);
            }
            SchedState::Blocked(BlockedOn::Sleep { .. }) => self.sched.wake(slot, None),
            _ => {}
        }
    }

    /// The earliest deadline of any blocked task. O(log n).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sched.next_deadline()
    }

    /// Why `task` was last woken, clearing it. `None` if it has not been
    /// woken since it last blocked.
    pub fn take_wake_reason(&mut self, task: TaskId) -> Option<WakeReason> {
        self.sched.take_wake(self.tasks.slot_of(task)?)
    }

    /// The highest-priority ready task, now marked running; FIFO within a
    /// priority. O(1).
    pub fn pick_next(&mut self) -> Option<TaskId> {
        let slot = self.sched.pick_next()?;
        self.tasks.by_slot(slot).map(|t| t.id)
    }

    /// Make `task` the running task because the embedder's own scheduler
    /// chose it, not [`KernelCore::pick_next`] (the simulator steps tasks in
    /// its own order). A blocked task stops waiting with no wake reason:
    /// nothing arrived for it. Put the task that was running back first
    /// ([`KernelCore::yield_task`]). Returns false if `task` is not alive.
    /// O(1), or O(log n) if a deadline is removed.
    pub fn run_task(&mut self, task: TaskId) -> bool {
        let Some(slot) = self.tasks.slot_of(task) else {
            return false;
        };
        let waiters = match self.sched.state(slot) {
            SchedState::Blocked(BlockedOn::Receive { channel, .. }) => {
                self.channels.get_mut(channel).map(|c| c.waiters.get_mut())
            }
            _ => None,
        };
        self.sched.run(slot, waiters);
        true
    }

    /// A running task gives up the CPU (its time slice ended or it
    /// yielded): it goes to the back of its priority's ready list, which
    /// makes equal priorities round-robin. Returns false if it was not
    /// running. O(1).
    pub fn yield_task(&mut self, task: TaskId) -> bool {
        match self.tasks.slot_of(task) {
            Some(slot) => self.sched.yield_running(slot),
            None => false,
        }
    }

    /// Change a task's priority (clamped to `Priority::LEVELS - 1`). O(1).
    pub fn set_priority(&mut self, task: TaskId, priority: Priority) -> Result<(), KernelError> {
        let slot = self
            .tasks
            .slot_of(task)
            .ok_or(KernelError::TaskNotFound(task))?;
        self.sched.set_priority(slot, priority);
        Ok(())
    }

    /// The scheduling state of a live task.
    pub fn task_state(&self, task: TaskId) -> Option<SchedState> {
        self.tasks.slot_of(task).map(|slot| self.sched.state(slot))
    }

    /// Number of ready tasks.
    pub fn ready_count(&self) -> usize {
        self.sched.ready_len()
    }
}
