//! The deterministic scenario runner: several services, each its own task
//! with its own capabilities, stepped round-robin inside one
//! [`SimulatedKernel`] until the system is quiescent or a virtual deadline
//! passes.
//!
//! # Writing a service for the runner
//!
//! A service is anything implementing [`SimService`]: one `step` does a
//! bounded amount of work *as the service's task* and says what it is
//! waiting for. Closures `FnMut(&mut SimulatedKernel) -> StepOutcome`
//! implement it, so a service crate never has to implement a trait of this
//! crate for its own types. Because `SimulatedKernel` implements
//! [`KernelApi`], service logic written generically
//! (`fn handle<K: KernelApi>(&mut self, kernel: &mut K, request: ReceivedMessage)`)
//! runs here unchanged. [`ChannelServer`] covers the common shape — receive
//! on one channel, hand each message to a handler.
//!
//! Inside a step, poll (`receive_with_capabilities(ch, Some(Duration::ZERO))`)
//! and return [`StepOutcome::Idle`] when there is nothing to do: there is
//! only one thread, so a receive with a longer timeout cannot be satisfied
//! by another service while it waits — it simply moves the virtual clock.
//! Return [`StepOutcome::WaitUntil`] for timers; the runner advances the
//! clock when every service is waiting. For the same reason, do not call
//! `sleep` inside a step: it moves the one clock for everybody.
//!
//! Services are stepped in the order they were spawned, whatever their
//! priority: the runner models interleaving, not CPU time, and strict
//! priority would let one polling service starve the rest.
//!
//! # Rounds and termination
//!
//! Each round steps every live service once, in the order they were
//! spawned. After a round, tasks spawned with an image the runner knows
//! (see [`Scenario::register_image`]) are started. If nothing happened in a
//! round — no service reported progress and the kernel saw no message
//! activity — the runner advances virtual time to the earliest wake-up
//! (a service's `WaitUntil` or a delayed message). With no wake-up left the
//! scenario is [`StopReason::Quiescent`]; past the deadline it is
//! [`StopReason::Deadline`]. A step limit guards against services that
//! report progress forever.
//!
//! # Example
//!
//! An echo server and a client that sends three requests and counts the
//! answers, under a fault plan that drops the first message sent:
//!
//! ```
//! use pandagen_abi::{
//!     Cap, ChannelId, Duration, Instant, KernelApi, MessageEnvelope, MessagePayload, Rights,
//!     SchemaVersion, ServiceId, TaskDescriptor,
//! };
//! use pandagen_sim::{
//!     ChannelServer, FaultPlan, Scenario, SimulatedKernel, StepOutcome, StopReason,
//! };
//!
//! const ECHO: ServiceId = ServiceId::from_raw(100);
//!
//! let kernel = SimulatedKernel::with_fault_plan(FaultPlan::new().drop_next(1));
//! let mut scenario = Scenario::new(kernel);
//!
//! // The server: registers ECHO, then answers each request on the reply
//! // capability it carries, correlated to the request's id.
//! let registry = scenario.kernel_mut().registry_capability_for_child().unwrap();
//! let server = TaskDescriptor::new("echo".into()).with_capability(registry);
//! scenario
//!     .spawn(server, |k, _startup| {
//!         let channel = k.create_channel()?;
//!         k.register_service(ECHO, channel)?;
//!         Ok(ChannelServer::new(channel, |k: &mut SimulatedKernel, request| {
//!             let Some(reply_cap) = request.capabilities.into_iter().next() else {
//!                 return Ok(());
//!             };
//!             let payload = request.envelope.payload.clone();
//!             let reply = MessageEnvelope::reply_to(&request.envelope, "echo.reply", payload);
//!             let reply_channel = ChannelId::from_handle(reply_cap.handle());
//!             let sent = k.send_message(reply_channel, reply);
//!             KernelApi::drop_capability(k, reply_cap)?;
//!             sent
//!         }))
//!     })
//!     .unwrap();
//!
//! // The client: a small state machine that polls instead of blocking.
//! let mut sent = 0;
//! let mut answered = 0;
//! let mut replies = None;
//! let client = scenario
//!     .spawn(TaskDescriptor::new("client".into()), move |_, _| {
//!         Ok(move |k: &mut SimulatedKernel| {
//!             let replies = match replies {
//!                 Some(ch) => ch,
//!                 None => *replies.insert(k.create_channel().unwrap()),
//!             };
//!             if let Ok(reply) = k.receive_message(replies, Some(Duration::ZERO)) {
//!                 assert!(reply.correlation_id.is_some());
//!                 answered += 1;
//!                 return StepOutcome::Progress;
//!             }
//!             if sent == 3 {
//!                 return if answered == 2 {
//!                     StepOutcome::Exit(pandagen_abi::ExitReason::Normal)
//!                 } else {
//!                     StepOutcome::Idle
//!                 };
//!             }
//!             let to_echo = k.lookup_service(ECHO).unwrap();
//!             let rights = Rights::SEND | Rights::TRANSFER;
//!             let reply_cap = k.clone_capability(&Cap::from(replies), rights).unwrap();
//!             let request = MessageEnvelope::new(
//!                 ECHO, "echo", SchemaVersion::new(1, 0), MessagePayload::new(&sent).unwrap());
//!             k.send_with_capabilities(to_echo, request, vec![reply_cap]).unwrap();
//!             sent += 1;
//!             StepOutcome::Progress
//!         })
//!     })
//!     .unwrap();
//!
//! let report = scenario.run_until(Instant::ZERO + Duration::from_secs(1));
//! // The first request was dropped, so two answers came back, and the
//! // dropped request's reply capability was invalidated, not leaked.
//! assert_eq!(report.stop, StopReason::Quiescent);
//! assert!(!scenario.kernel().task_is_alive(client.task_id));
//! assert_eq!(scenario.kernel().trace().lost().len(), 1);
//! scenario.kernel().check_invariants().unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use pandagen_abi::error::ReceiveError;
use pandagen_abi::syscall::StartupInfo;
use pandagen_abi::{
    ChannelId, Duration, ExitReason, FailureCause, Instant, KernelApi, KernelError,
    ReceivedMessage, TaskDescriptor, TaskHandle, TaskId,
};

use crate::kernel::SimulatedKernel;
use crate::trace::{StepSummary, TraceEvent};

/// What a service's step did, and what it waits for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// It did something; step it again next round.
    Progress,
    /// Nothing to do until a message arrives.
    Idle,
    /// Nothing to do until this instant (or until a message arrives).
    WaitUntil(Instant),
    /// It is finished: its task terminates with this reason.
    Exit(ExitReason),
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepOutcome::Progress => f.write_str("progress"),
            StepOutcome::Idle => f.write_str("idle"),
            StepOutcome::WaitUntil(t) => write!(f, "wait until {}ns", t.as_nanos()),
            StepOutcome::Exit(reason) => write!(f, "exit {reason:?}"),
        }
    }
}

/// A service the runner can drive. See the module docs.
pub trait SimService {
    /// Do a bounded amount of work as this service's task.
    fn step(&mut self, kernel: &mut SimulatedKernel) -> StepOutcome;
}

impl<F> SimService for F
where
    F: FnMut(&mut SimulatedKernel) -> StepOutcome,
{
    fn step(&mut self, kernel: &mut SimulatedKernel) -> StepOutcome {
        self(kernel)
    }
}

impl SimService for () {
    /// A task with no behaviour of its own (a passive holder of
    /// capabilities, or a client driven from the test itself).
    fn step(&mut self, _kernel: &mut SimulatedKernel) -> StepOutcome {
        StepOutcome::Idle
    }
}

/// A server over one channel: each step receives at most one message
/// (without waiting) and passes it, with the capabilities it carried, to
/// the handler. A handler error is recorded in the trace and the server
/// carries on, as a real server loop would after replying with an error.
pub struct ChannelServer<H> {
    channel: ChannelId,
    handler: H,
}

impl<H> ChannelServer<H>
where
    H: FnMut(&mut SimulatedKernel, ReceivedMessage) -> Result<(), KernelError>,
{
    pub fn new(channel: ChannelId, handler: H) -> Self {
        ChannelServer { channel, handler }
    }

    pub fn channel(&self) -> ChannelId {
        self.channel
    }
}

impl<H> SimService for ChannelServer<H>
where
    H: FnMut(&mut SimulatedKernel, ReceivedMessage) -> Result<(), KernelError>,
{
    fn step(&mut self, kernel: &mut SimulatedKernel) -> StepOutcome {
        match kernel.receive_with_capabilities(self.channel, Some(Duration::ZERO)) {
            Ok(message) => {
                if let Err(error) = (self.handler)(kernel, message) {
                    kernel.note_handler_error(error);
                }
                StepOutcome::Progress
            }
            Err(KernelError::Timeout) => StepOutcome::Idle,
            // An injected receive failure is transient: try again.
            Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault)) => StepOutcome::Progress,
            Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed)) => {
                StepOutcome::Exit(ExitReason::Normal)
            }
            Err(error) => StepOutcome::Exit(ExitReason::Failure {
                error: FailureCause::Described(format!("receive failed: {error}")),
            }),
        }
    }
}

/// Builds the service for a task started from an image.
pub type ImageFactory =
    Box<dyn FnMut(&mut SimulatedKernel, &StartupInfo) -> Result<Box<dyn SimService>, KernelError>>;

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Every service is idle, nothing is in flight that could wake one, and
    /// no timer is pending.
    Quiescent,
    /// The virtual deadline was reached with work still pending.
    Deadline,
    /// The step limit was reached (a service reports progress forever).
    StepLimit,
    /// No service is alive.
    AllExited,
}

/// The summary of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunReport {
    pub stop: StopReason,
    pub rounds: u64,
    pub steps: u64,
    /// Virtual time when the run stopped.
    pub end: Instant,
}

enum SlotState {
    Live,
    Waiting(Instant),
    Exited,
}

struct Slot {
    name: Arc<str>,
    task: TaskId,
    service: Box<dyn SimService>,
    state: SlotState,
}

/// A set of services in one simulated kernel. See the module docs.
pub struct Scenario {
    kernel: SimulatedKernel,
    slots: Vec<Slot>,
    images: BTreeMap<String, ImageFactory>,
    step_limit: u64,
    steps: u64,
}

impl Scenario {
    /// The default bound on the steps of one run.
    pub const DEFAULT_STEP_LIMIT: u64 = 1_000_000;

    pub fn new(kernel: SimulatedKernel) -> Self {
        Scenario {
            kernel,
            slots: Vec::new(),
            images: BTreeMap::new(),
            step_limit: Self::DEFAULT_STEP_LIMIT,
            steps: 0,
        }
    }

    pub fn with_step_limit(mut self, limit: u64) -> Self {
        self.step_limit = limit;
        self
    }

    pub fn kernel(&self) -> &SimulatedKernel {
        &self.kernel
    }

    pub fn kernel_mut(&mut self) -> &mut SimulatedKernel {
        &mut self.kernel
    }

    pub fn into_kernel(self) -> SimulatedKernel {
        self.kernel
    }

    /// Spawn a task from `descriptor` (as the root task: its capabilities
    /// are moved out of the root task's space) and build its service by
    /// running `setup` as the new task, with the task's startup information
    /// (its id and the handles of the capabilities it was born with).
    pub fn spawn<S, F>(
        &mut self,
        descriptor: TaskDescriptor,
        setup: F,
    ) -> Result<TaskHandle, KernelError>
    where
        S: SimService + 'static,
        F: FnOnce(&mut SimulatedKernel, &StartupInfo) -> Result<S, KernelError>,
    {
        let root = self.kernel.root_task();
        let name: Arc<str> = Arc::from(descriptor.name.as_str());
        let handle = self.kernel.as_task(root, |k| k.spawn_task(descriptor))?;
        let service = self.kernel.as_task(handle.task_id, |k| {
            let startup = k.startup()?;
            setup(k, &startup)
        });
        match service {
            Ok(service) => {
                self.slots.push(Slot {
                    name,
                    task: handle.task_id,
                    service: Box::new(service),
                    state: SlotState::Live,
                });
                Ok(handle)
            }
            Err(error) => {
                self.kernel.terminate_task_with_reason(
                    handle.task_id,
                    ExitReason::Failure {
                        error: FailureCause::Described(format!("setup failed: {error}")),
                    },
                );
                Err(error)
            }
        }
    }

    /// Start tasks spawned (by any task) with `image` using `factory`, run
    /// as the new task. Spawning an image the runner does not know fails
    /// with `SpawnFailed(ImageNotFound)` once any image is registered.
    pub fn register_image<F>(&mut self, image: impl Into<String>, factory: F)
    where
        F: FnMut(&mut SimulatedKernel, &StartupInfo) -> Result<Box<dyn SimService>, KernelError>
            + 'static,
    {
        let image = image.into();
        self.kernel.add_known_image(image.clone());
        self.images.insert(image, Box::new(factory));
    }

    /// The task of the first live service spawned with `name`.
    pub fn task_of(&self, name: &str) -> Option<TaskId> {
        self.slots
            .iter()
            .find(|s| &*s.name == name && !matches!(s.state, SlotState::Exited))
            .map(|s| s.task)
    }

    /// Names and tasks of the live services, in stepping order.
    pub fn live_services(&self) -> Vec<(String, TaskId)> {
        self.slots
            .iter()
            .filter(|s| !matches!(s.state, SlotState::Exited))
            .map(|s| (s.name.to_string(), s.task))
            .collect()
    }

    /// Run until quiescent, or until virtual time reaches `deadline`.
    pub fn run_until(&mut self, deadline: Instant) -> RunReport {
        let start_steps = self.steps;
        let root = self.kernel.root_task();
        self.kernel.park(root);
        let mut rounds = 0;
        let stop = loop {
            if self.steps - start_steps >= self.step_limit {
                break StopReason::StepLimit;
            }
            rounds += 1;
            let activity_before = self.kernel.activity();
            let progressed = self.round();
            self.launch_pending();
            if self
                .slots
                .iter()
                .all(|s| matches!(s.state, SlotState::Exited))
            {
                break StopReason::AllExited;
            }
            if progressed || self.kernel.activity() != activity_before {
                if self.kernel.now() >= deadline {
                    break StopReason::Deadline;
                }
                continue;
            }
            // Nothing happened: sleep until the earliest wake-up.
            let timers = self.slots.iter().filter_map(|s| match s.state {
                SlotState::Waiting(t) => Some(t),
                _ => None,
            });
            let wake = timers.chain(self.kernel.next_delivery()).min();
            match wake {
                None => break StopReason::Quiescent,
                Some(t) if t > deadline => {
                    self.kernel.advance_time_to(deadline);
                    break StopReason::Deadline;
                }
                Some(t) => {
                    self.kernel.advance_time_to(t);
                }
            }
        };
        RunReport {
            stop,
            rounds,
            steps: self.steps - start_steps,
            end: self.kernel.now(),
        }
    }

    /// Run for `duration` of virtual time from now (or until quiescent).
    pub fn run_for(&mut self, duration: Duration) -> RunReport {
        let deadline = self.kernel.now().saturating_add(duration);
        self.run_until(deadline)
    }

    /// Step every live service once. Returns whether any made progress.
    fn round(&mut self) -> bool {
        let mut progressed = false;
        for slot in &mut self.slots {
            if matches!(slot.state, SlotState::Exited) {
                continue;
            }
            if !self.kernel.task_is_alive(slot.task) {
                slot.state = SlotState::Exited;
                continue;
            }
            let now = self.kernel.now();
            let outcome = self.kernel.as_task(slot.task, |k| slot.service.step(k));
            self.steps += 1;
            if self.kernel.trace.is_enabled() {
                let service = self.kernel.trace.intern(&slot.name);
                let outcome = StepSummary::of(&outcome, &mut self.kernel.trace);
                self.kernel.record(TraceEvent::Step {
                    service,
                    task: slot.task,
                    outcome,
                });
            }
            if !self.kernel.task_is_alive(slot.task) {
                // A fault (or another task) ended it during the step.
                slot.state = SlotState::Exited;
                progressed = true;
                continue;
            }
            match outcome {
                StepOutcome::Progress => {
                    slot.state = SlotState::Live;
                    progressed = true;
                }
                StepOutcome::Idle => slot.state = SlotState::Live,
                StepOutcome::WaitUntil(t) if t <= now => {
                    slot.state = SlotState::Live;
                    progressed = true;
                }
                StepOutcome::WaitUntil(t) => slot.state = SlotState::Waiting(t),
                StepOutcome::Exit(reason) => {
                    self.kernel.terminate_task_with_reason(slot.task, reason);
                    slot.state = SlotState::Exited;
                    progressed = true;
                }
            }
        }
        progressed
    }

    /// Start the services of tasks spawned with a registered image.
    fn launch_pending(&mut self) {
        for launch in self.kernel.take_pending_launches() {
            let Some(factory) = self.images.get_mut(&launch.image) else {
                continue;
            };
            let task = launch.startup.task;
            let built = self.kernel.as_task(task, |k| factory(k, &launch.startup));
            match built {
                Ok(service) => self.slots.push(Slot {
                    name: Arc::from(launch.name),
                    task,
                    service,
                    state: SlotState::Live,
                }),
                Err(error) => self.kernel.terminate_task_with_reason(
                    task,
                    ExitReason::Failure {
                        error: FailureCause::Described(format!("start failed: {error}")),
                    },
                ),
            }
        }
    }
}
