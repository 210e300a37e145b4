//! A small in-process fake of `KernelApi` for the executor's logic tests,
//! used until (and beside) the SimulatedKernel scenarios.
//!
//! Tasks share one fake, each with its own capability space. A channel can
//! have a *handler*: a message sent to it is delivered at once by running
//! the handler as the handler's task, so a request/reply exchange completes
//! inside `send`. Faults: drop the next N messages with a given action, or
//! delay messages with a given action by virtual time (held messages are
//! delivered when a receive waits past their due time). Virtual time only
//! moves when a task sleeps or a receive waits.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use pandagen_abi::error::SendError;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, Instant, KernelApi, KernelError, MessageEnvelope,
    ReceivedMessage, Rights, ServiceId, TaskDescriptor, TaskHandle, TaskId,
};
use pandagen_pipeline_executor::stage::{handle_stage_request, StageHandler};
use pandagen_pipeline_executor::{PayloadSchemaId, StageCall, StageOutcome, TypedPayload};

pub type Task = u64;
pub const CLIENT: Task = 1;
/// The stage service the test pipelines call, and the task serving it.
pub const HANDLER: ServiceId = ServiceId::from_raw(100);
pub const HANDLER_TASK: Task = 2;

/// A fake kernel in which `HANDLER_TASK` serves `HANDLER` with a fresh
/// [`TestHandler`], returned so the test can script and inspect it.
pub fn kernel_with_handler() -> (FakeKernel, Rc<RefCell<TestHandler>>) {
    let mut kernel = FakeKernel::new();
    let handler = TestHandler::new();
    kernel.add_stage_service(HANDLER_TASK, HANDLER, handler.clone());
    (kernel, handler)
}

type Handler = Box<dyn FnMut(&mut FakeKernel, ReceivedMessage)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    owner: Task,
    channel: usize,
    rights: Rights,
}

struct Queued {
    envelope: MessageEnvelope,
    caps: Vec<(usize, Rights)>,
}

#[derive(Default)]
struct Channel {
    queue: VecDeque<Queued>,
}

#[derive(Default)]
pub struct Faults {
    /// action -> how many more messages with it to drop
    pub drop: BTreeMap<String, u32>,
    /// action -> (how many more to delay, by how long)
    pub delay: BTreeMap<String, (u32, Duration)>,
}

pub struct FakeKernel {
    now: Instant,
    current: Task,
    next_handle: u64,
    caps: BTreeMap<u64, Entry>,
    channels: Vec<Channel>,
    /// Each registered service's channel index and registrant.
    services: BTreeMap<ServiceId, (usize, Task)>,
    handlers: BTreeMap<usize, (Task, Option<Handler>)>,
    held: Vec<(Instant, usize, Queued)>,
    pub faults: Faults,
    /// Capabilities destroyed with dropped messages or closed queues.
    pub invalidated_in_flight: usize,
}

impl FakeKernel {
    pub fn new() -> Self {
        FakeKernel {
            now: Instant::ZERO,
            current: CLIENT,
            next_handle: 1,
            caps: BTreeMap::new(),
            channels: Vec::new(),
            services: BTreeMap::new(),
            handlers: BTreeMap::new(),
            held: Vec::new(),
            faults: Faults::default(),
            invalidated_in_flight: 0,
        }
    }

    fn install(&mut self, owner: Task, channel: usize, rights: Rights) -> CapHandle {
        let handle = self.next_handle;
        self.next_handle += 1;
        self.caps.insert(
            handle,
            Entry {
                owner,
                channel,
                rights,
            },
        );
        CapHandle::from_raw(handle)
    }

    fn entry(&self, handle: CapHandle) -> Result<Entry, KernelError> {
        match self.caps.get(&handle.as_raw()) {
            Some(e) if e.owner == self.current => Ok(*e),
            _ => Err(KernelError::InvalidCapability),
        }
    }

    /// Run `f` as `task`.
    pub fn as_task<R>(&mut self, task: Task, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = self.current;
        self.current = task;
        let result = f(self);
        self.current = saved;
        result
    }

    /// Register `service` as `task`, with `handler` run on every message.
    pub fn add_service(&mut self, task: Task, service: ServiceId, handler: Handler) {
        let channel = self.as_task(task, |k| k.create_channel().unwrap());
        let index = self.entry_of(task, channel).channel;
        self.services.insert(service, (index, task));
        self.handlers.insert(index, (task, Some(handler)));
    }

    /// Register a stage handler service.
    pub fn add_stage_service<H: StageHandler + 'static>(
        &mut self,
        task: Task,
        service: ServiceId,
        handler: Rc<RefCell<H>>,
    ) {
        self.add_service(
            task,
            service,
            Box::new(move |k, message| {
                handle_stage_request(k, service, &mut *handler.borrow_mut(), message);
            }),
        );
    }

    fn entry_of(&self, task: Task, channel: ChannelId) -> Entry {
        let e = self.caps[&channel.handle().as_raw()];
        assert_eq!(e.owner, task);
        e
    }

    /// Capabilities `task` holds.
    pub fn held_by(&self, task: Task) -> usize {
        self.caps.values().filter(|e| e.owner == task).count()
    }

    /// Capabilities queued or held in flight anywhere.
    pub fn in_flight(&self) -> usize {
        self.channels
            .iter()
            .flat_map(|c| c.queue.iter())
            .map(|q| q.caps.len())
            .sum::<usize>()
            + self
                .held
                .iter()
                .map(|(_, _, q)| q.caps.len())
                .sum::<usize>()
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Fresh capability to a new channel for `task`, to use as a token.
    pub fn mint_token(&mut self, task: Task) -> Cap<()> {
        self.as_task(task, |k| Cap::from(k.create_channel().unwrap()))
    }

    fn deliver(&mut self, channel: usize, queued: Queued) {
        self.channels[channel].queue.push_back(queued);
        self.pump(channel);
    }

    fn pump(&mut self, channel: usize) {
        let Some((task, slot)) = self.handlers.get_mut(&channel) else {
            return;
        };
        let task = *task;
        // Already running (a reentrant send to itself): it will see the
        // message when it returns to its queue.
        let Some(mut handler) = slot.take() else {
            return;
        };
        while let Some(queued) = self.channels[channel].queue.pop_front() {
            let message = self.as_task(task, |k| k.install_message(queued));
            self.as_task(task, |k| handler(k, message));
        }
        self.handlers.get_mut(&channel).unwrap().1 = Some(handler);
    }

    fn install_message(&mut self, queued: Queued) -> ReceivedMessage {
        let owner = self.current;
        let capabilities = queued
            .caps
            .into_iter()
            .map(|(channel, rights)| Cap::from_handle(self.install(owner, channel, rights)))
            .collect();
        ReceivedMessage {
            envelope: queued.envelope,
            capabilities,
            badge: None,
        }
    }

    fn release_due(&mut self, until: Instant) {
        let mut due: Vec<(Instant, usize, Queued)> = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].0 <= until {
                due.push(self.held.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(t, _, _)| *t);
        for (t, channel, queued) in due {
            if self.now < t {
                self.now = t;
            }
            self.deliver(channel, queued);
        }
    }
}

fn take_budget(map: &mut BTreeMap<String, u32>, action: &str) -> bool {
    match map.get_mut(action) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

impl KernelApi for FakeKernel {
    fn spawn_task(&mut self, _: TaskDescriptor) -> Result<TaskHandle, KernelError> {
        Err(KernelError::InsufficientAuthority)
    }

    fn create_channel(&mut self) -> Result<ChannelId, KernelError> {
        self.channels.push(Channel::default());
        let index = self.channels.len() - 1;
        Ok(ChannelId::from_handle(self.install(
            self.current,
            index,
            Rights::ALL,
        )))
    }

    fn send_with_capabilities(
        &mut self,
        channel: ChannelId,
        mut message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        let target = self.entry(channel.handle())?;
        if !target.rights.contains(Rights::SEND) {
            return Err(KernelError::InsufficientAuthority);
        }
        for c in &capabilities {
            // As in the kernel: moving a capability needs TRANSFER.
            if !self.entry(c.handle())?.rights.contains(Rights::TRANSFER) {
                return Err(KernelError::InsufficientAuthority);
            }
        }
        if capabilities.len() > 16 {
            return Err(KernelError::SendFailed(SendError::TooManyCapabilities));
        }
        let caps = capabilities
            .iter()
            .map(|c| {
                let e = self.caps.remove(&c.handle().as_raw()).unwrap();
                (e.channel, e.rights)
            })
            .collect::<Vec<_>>();
        message.source = Some(TaskId::from_raw(self.current));
        let queued = Queued {
            envelope: message,
            caps,
        };
        let action = queued.envelope.action.clone();
        if take_budget(&mut self.faults.drop, &action) {
            self.invalidated_in_flight += queued.caps.len();
            return Ok(());
        }
        if let Some((n, by)) = self.faults.delay.get_mut(&action) {
            if *n > 0 {
                *n -= 1;
                let due = self.now + *by;
                self.held.push((due, target.channel, queued));
                return Ok(());
            }
        }
        self.deliver(target.channel, queued);
        Ok(())
    }

    fn receive_with_capabilities(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        let target = self.entry(channel.handle())?;
        if !target.rights.contains(Rights::RECEIVE) {
            return Err(KernelError::InsufficientAuthority);
        }
        let deadline = self.now + timeout.unwrap_or(Duration::from_secs(3600));
        loop {
            if let Some(queued) = self.channels[target.channel].queue.pop_front() {
                return Ok(self.install_message(queued));
            }
            let next = self
                .held
                .iter()
                .map(|(t, _, _)| *t)
                .filter(|t| *t <= deadline)
                .min();
            match next {
                Some(t) => self.release_due(t),
                None => {
                    self.now = deadline;
                    return Err(KernelError::Timeout);
                }
            }
        }
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn sleep(&mut self, duration: Duration) -> Result<(), KernelError> {
        let until = self.now + duration;
        self.release_due(until);
        self.now = until;
        Ok(())
    }

    fn grant_capability(&mut self, _: TaskId, _: Cap<()>) -> Result<(), KernelError> {
        Err(KernelError::InsufficientAuthority)
    }

    fn register_service(
        &mut self,
        service: ServiceId,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        let e = self.entry(channel.handle())?;
        if self
            .services
            .insert(service, (e.channel, e.owner))
            .is_some()
        {
            return Err(KernelError::ServiceAlreadyRegistered(service));
        }
        Ok(())
    }

    fn lookup_service(&mut self, service: ServiceId) -> Result<ChannelId, KernelError> {
        // As in the kernel: a new capability on every lookup.
        let (channel, _) = *self
            .services
            .get(&service)
            .ok_or(KernelError::ServiceNotFound(service))?;
        Ok(ChannelId::from_handle(self.install(
            self.current,
            channel,
            Rights::SEND,
        )))
    }

    fn service_registrant(&mut self, service: ServiceId) -> Result<TaskId, KernelError> {
        self.services
            .get(&service)
            .map(|(_, owner)| TaskId::from_raw(*owner))
            .ok_or(KernelError::ServiceNotFound(service))
    }

    fn drop_capability(&mut self, capability: Cap<()>) -> Result<(), KernelError> {
        let e = self.entry(capability.handle())?;
        self.caps.remove(&capability.handle().as_raw());
        // The last capability to a channel closes it; what is queued dies.
        if !self.caps.values().any(|o| o.channel == e.channel)
            && !self.handlers.contains_key(&e.channel)
        {
            let queue = std::mem::take(&mut self.channels[e.channel].queue);
            self.invalidated_in_flight += queue.iter().map(|q| q.caps.len()).sum::<usize>();
            let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|(_, channel, _)| *channel == e.channel);
            self.held = live;
            self.invalidated_in_flight += dead.iter().map(|(_, _, q)| q.caps.len()).sum::<usize>();
        }
        Ok(())
    }

    fn clone_capability(
        &mut self,
        capability: &Cap<()>,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError> {
        let e = self.entry(capability.handle())?;
        // As in the kernel: a copy needs GRANT.
        if !e.rights.contains(Rights::GRANT) {
            return Err(KernelError::InsufficientAuthority);
        }
        let owner = self.current;
        Ok(Cap::from_handle(self.install(
            owner,
            e.channel,
            e.rights.attenuate(rights),
        )))
    }
}

/// A stage handler for tests. Actions on `text@v1` (a `String`):
/// `upper`, `exclaim` (appends "!"), `count` (-> `count@v1`, a `u32`),
/// `mint` (as `upper`, and returns a fresh capability labelled
/// `mint_label`), `fail` (permanent), `flaky` (retryable for the first
/// `flaky_failures` calls, then `upper`), `bad_schema` (declares nothing,
/// returns `count@v1`), `needs_cap` (fails unless lent `mint_label`).
pub struct TestHandler {
    pub calls: Vec<Call>,
    pub flaky_failures: u32,
    pub mint_label: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub action: String,
    pub stage: pandagen_pipeline_executor::StageId,
    pub attempt: u32,
    pub labels: Vec<u64>,
}

impl TestHandler {
    pub fn new() -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(TestHandler {
            calls: Vec::new(),
            flaky_failures: 0,
            mint_label: 42,
        }))
    }

    pub fn calls_of(&self, action: &str) -> usize {
        self.calls.iter().filter(|c| c.action == action).count()
    }
}

pub fn text() -> PayloadSchemaId {
    PayloadSchemaId::new("text")
}

pub fn count() -> PayloadSchemaId {
    PayloadSchemaId::new("count")
}

pub fn text_payload(s: &str) -> TypedPayload {
    TypedPayload::new(text(), &String::from(s)).unwrap()
}

impl StageHandler for TestHandler {
    fn run_stage<K: KernelApi>(&mut self, kernel: &mut K, call: &StageCall) -> StageOutcome {
        self.calls.push(Call {
            action: call.action.clone(),
            stage: call.stage_id,
            attempt: call.attempt,
            labels: call.capabilities.iter().map(|(l, _)| *l).collect(),
        });
        let input: String = match call.input.decode_as(&text()) {
            Ok(s) => s,
            Err(e) => {
                return StageOutcome::Failure {
                    error: format!("{e}"),
                }
            }
        };
        let ok = |s: String| StageOutcome::Success {
            output: TypedPayload::new(text(), &s).unwrap(),
            capabilities: Vec::new(),
        };
        match call.action.as_str() {
            "upper" => ok(input.to_uppercase()),
            "exclaim" => ok(format!("{input}!")),
            "count" => StageOutcome::Success {
                output: TypedPayload::new(count(), &(input.len() as u32)).unwrap(),
                capabilities: Vec::new(),
            },
            "mint" => {
                let token = Cap::from(kernel.create_channel().unwrap());
                StageOutcome::Success {
                    output: TypedPayload::new(text(), &input.to_uppercase()).unwrap(),
                    capabilities: vec![(self.mint_label, token)],
                }
            }
            "fail" => StageOutcome::Failure {
                error: "disk on fire".into(),
            },
            "flaky" => {
                if self.flaky_failures > 0 {
                    self.flaky_failures -= 1;
                    StageOutcome::Retryable {
                        error: "busy".into(),
                    }
                } else {
                    ok(input.to_uppercase())
                }
            }
            "bad_schema" => StageOutcome::Success {
                output: TypedPayload::new(count(), &1u32).unwrap(),
                capabilities: Vec::new(),
            },
            "needs_cap" => {
                if call.capabilities.iter().any(|(l, _)| *l == self.mint_label) {
                    ok(format!("{input} (authorised)"))
                } else {
                    StageOutcome::Failure {
                        error: "no capability".into(),
                    }
                }
            }
            _ => StageOutcome::UnknownAction,
        }
    }
}
