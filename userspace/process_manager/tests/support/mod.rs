//! A simulated system for the process manager's scenario tests: the
//! process manager as a child of the root task (holding copies of the root
//! capabilities), test services started from images by the scenario
//! runner, and a passive client task the test acts as. The client holds
//! the process manager's control capability (minted by the process manager
//! and moved to it) unless a test asks for a plain request.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use pandagen_abi::cap::kinds;
use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_abi::{
    Cap, ChannelId, Duration, ExitReason, FailureCause, IdentityKind, Instant, KernelApi,
    KernelError, MessageEnvelope, MessagePayload, Rights, SchemaVersion, ServiceId, TaskDescriptor,
    TaskId, TrustDomain,
};
use pandagen_process_manager::protocol::{CHILD_CONTROL_RIGHTS, SHUTDOWN_ACTION};
use pandagen_process_manager::{
    parse_manifest, Activity, BootCapabilities, ClientError, PmClient, PmReply, PmRequest,
    ServiceInfo, Supervisor, SupervisorConfig, SupervisorEvent,
};
use pandagen_sim::{FaultPlan, Scenario, SimService, SimulatedKernel, StepOutcome};

pub const PING: &str = "test.ping";
pub const PONG: &str = "test.pong";

/// What one instance of a test service does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Register and answer pings until asked to shut down.
    Serve,
    /// Fail at its first step, before registering.
    CrashAtStart,
    /// Register, serve, and fail this long after starting.
    CrashAfter(Duration),
    /// Register, serve, and exit normally this long after starting.
    ExitAfter(Duration),
    /// Run but never register.
    NeverRegister,
    /// Never register, and fail this long after starting.
    NeverRegisterThenCrash(Duration),
    /// Register and ignore shutdown requests.
    IgnoreShutdown,
    /// Register only this long after starting, then serve.
    RegisterAfter(Duration),
}

/// Per-image behaviour scripts: each new instance takes the next entry;
/// when the script is empty it uses the image's default (or `Serve`).
#[derive(Default)]
pub struct Scripts {
    queues: BTreeMap<String, VecDeque<Behaviour>>,
    defaults: BTreeMap<String, Behaviour>,
    /// (image, start time) of every instance the runner started.
    pub starts: Vec<(String, Instant)>,
    /// Images left out of the boot image (spawning them fails).
    pub missing: Vec<String>,
}

impl Scripts {
    pub fn then(&mut self, image: &str, behaviour: Behaviour) -> &mut Self {
        self.queues
            .entry(image.into())
            .or_default()
            .push_back(behaviour);
        self
    }

    pub fn always(&mut self, image: &str, behaviour: Behaviour) -> &mut Self {
        self.defaults.insert(image.into(), behaviour);
        self
    }

    fn next(&mut self, image: &str) -> Behaviour {
        self.queues
            .get_mut(image)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.defaults.get(image).copied())
            .unwrap_or(Behaviour::Serve)
    }

    pub fn starts_of(&self, image: &str) -> Vec<Instant> {
        self.starts
            .iter()
            .filter(|(i, _)| i == image)
            .map(|(_, t)| *t)
            .collect()
    }
}

struct TestService {
    id: ServiceId,
    behaviour: Behaviour,
    started: Instant,
    channel: Option<ChannelId>,
}

fn failure() -> ExitReason {
    ExitReason::Failure {
        error: FailureCause::Panic,
    }
}

impl SimService for TestService {
    fn step(&mut self, k: &mut SimulatedKernel) -> StepOutcome {
        let deadline = match self.behaviour {
            Behaviour::CrashAfter(d)
            | Behaviour::ExitAfter(d)
            | Behaviour::NeverRegisterThenCrash(d) => Some(self.started + d),
            _ => None,
        };
        if deadline.is_some_and(|d| k.now() >= d) {
            return StepOutcome::Exit(match self.behaviour {
                Behaviour::ExitAfter(_) => ExitReason::Normal,
                _ => failure(),
            });
        }
        let channel = match (self.behaviour, self.channel) {
            (Behaviour::CrashAtStart, _) => return StepOutcome::Exit(failure()),
            (Behaviour::NeverRegister, _) => return StepOutcome::Idle,
            (Behaviour::RegisterAfter(d), None) if k.now() < self.started + d => {
                return StepOutcome::WaitUntil(self.started + d)
            }
            (Behaviour::NeverRegisterThenCrash(_), _) => {
                return StepOutcome::WaitUntil(deadline.expect("has a deadline"))
            }
            (_, Some(channel)) => channel,
            (_, None) => {
                // Under fault injection these can fail; a real service
                // would exit with a failure, and so does this one.
                let registered = k
                    .create_channel()
                    .and_then(|channel| k.register_service(self.id, channel).map(|()| channel));
                return match registered {
                    Ok(channel) => {
                        self.channel = Some(channel);
                        StepOutcome::Progress
                    }
                    Err(_) => StepOutcome::Exit(failure()),
                };
            }
        };
        match k.receive_with_capabilities(channel, Some(Duration::ZERO)) {
            Ok(message) => {
                let mut caps = message.capabilities.into_iter();
                let shutdown = message.envelope.action == SHUTDOWN_ACTION;
                if shutdown && self.behaviour != Behaviour::IgnoreShutdown {
                    return StepOutcome::Exit(ExitReason::Normal);
                }
                if let Some(reply) = caps.next() {
                    let answer =
                        MessageEnvelope::reply_to(&message.envelope, PONG, MessagePayload::empty());
                    let _ = k.send_message(ChannelId::from_handle(reply.handle()), answer);
                    let _ = KernelApi::drop_capability(k, reply);
                }
                StepOutcome::Progress
            }
            Err(_) => match deadline {
                Some(deadline) => StepOutcome::WaitUntil(deadline),
                None => StepOutcome::Idle,
            },
        }
    }
}

/// A fast configuration so scenarios stay short in virtual time.
pub fn config() -> SupervisorConfig {
    SupervisorConfig {
        ready_poll: Duration::from_millis(1),
        startup_timeout: Duration::from_millis(50),
        liveness_interval: Duration::from_millis(100),
        stop_timeout: Duration::from_millis(20),
    }
}

type SharedSupervisor = Rc<RefCell<Option<Supervisor>>>;

/// The process manager and its test services in one simulated kernel.
pub struct World {
    pub scenario: Scenario,
    pm: SharedSupervisor,
    pub pm_task: TaskId,
    pub scripts: Rc<RefCell<Scripts>>,
    pub client_task: TaskId,
    /// The client's process manager client, with the control capability.
    client: Option<PmClient>,
    /// The client's process manager client without it.
    plain_client: Option<PmClient>,
}

impl World {
    pub fn new(manifest: &str) -> World {
        Self::build(manifest, config(), FaultPlan::new(), |_| {})
    }

    pub fn scripted(manifest: &str, script: impl FnOnce(&mut Scripts)) -> World {
        Self::build(manifest, config(), FaultPlan::new(), script)
    }

    /// Everything configurable. The process manager boots during the
    /// first run.
    pub fn build(
        manifest: &str,
        config: SupervisorConfig,
        plan: FaultPlan,
        script: impl FnOnce(&mut Scripts),
    ) -> World {
        let manifest = parse_manifest(manifest.as_bytes()).expect("valid manifest");
        let scripts = Rc::new(RefCell::new(Scripts::default()));
        script(&mut scripts.borrow_mut());
        let mut scenario = Scenario::new(SimulatedKernel::with_fault_plan(plan));
        for service in manifest.start_order() {
            if scripts.borrow().missing.contains(&service.image) {
                continue;
            }
            let id = service.service_id;
            let image = service.image.clone();
            let scripts = scripts.clone();
            scenario.register_image(image.clone(), move |k, _startup| {
                let behaviour = scripts.borrow_mut().next(&image);
                let started = k.now();
                scripts.borrow_mut().starts.push((image.clone(), started));
                Ok(Box::new(TestService {
                    id,
                    behaviour,
                    started,
                    channel: None,
                }) as Box<dyn SimService>)
            });
        }
        // The process manager gets copies of the root capabilities, in the
        // order the real kernel gives them to the root task.
        let mut descriptor = TaskDescriptor::new("process-manager".into())
            .with_identity(IdentityKind::System, TrustDomain::core())
            .with_budget(pandagen_sim::SUPERVISOR_BUDGET);
        for kind in ROOT_CAPABILITIES {
            let copy = scenario
                .kernel_mut()
                .root_copy(kind, Rights::ALL)
                .expect("root capability");
            descriptor = descriptor.with_capability(copy);
        }
        let pm: SharedSupervisor = Rc::new(RefCell::new(None));
        let slot = pm.clone();
        let pm_task = scenario
            .spawn(descriptor, move |k, startup| {
                let caps = BootCapabilities::from_root_handles(&startup.capabilities);
                let mut supervisor = Supervisor::new(manifest, caps, config);
                supervisor.boot(k)?;
                *slot.borrow_mut() = Some(supervisor);
                Ok(move |k: &mut SimulatedKernel| {
                    let mut guard = slot.borrow_mut();
                    let supervisor = guard.as_mut().expect("booted");
                    match supervisor.poll(k) {
                        Activity::Handled => StepOutcome::Progress,
                        Activity::Waiting(Some(at)) => StepOutcome::WaitUntil(at),
                        Activity::Waiting(None) => StepOutcome::Idle,
                    }
                })
            })
            .map_err(|e| format!("{e:?}"))
            .expect("spawn the process manager")
            .task_id;
        let client_task = scenario
            .spawn(TaskDescriptor::new("client".into()), |_, _| Ok(()))
            .expect("client")
            .task_id;
        World {
            scenario,
            pm,
            pm_task,
            scripts,
            client_task,
            client: None,
            plain_client: None,
        }
    }

    pub fn kernel(&mut self) -> &mut SimulatedKernel {
        self.scenario.kernel_mut()
    }

    pub fn now(&self) -> Instant {
        self.scenario.kernel().now()
    }

    /// Run the system for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now() + duration;
        self.scenario.run_until(deadline);
        // A quiescent system stops early; time still passes.
        if self.now() < deadline {
            self.scenario.kernel_mut().advance_time_to(deadline);
        }
    }

    /// Give the booted supervisor a way to terminate its children.
    pub fn set_terminator(&mut self, terminate: pandagen_process_manager::Terminator) {
        let supervisor = self.pm.borrow_mut().take().expect("booted");
        *self.pm.borrow_mut() = Some(supervisor.with_terminator(terminate));
    }

    pub fn pm<R>(&self, f: impl FnOnce(&Supervisor) -> R) -> R {
        f(self.pm.borrow().as_ref().expect("booted"))
    }

    pub fn info(&self, name: &str) -> ServiceInfo {
        self.pm(|pm| {
            pm.services()
                .into_iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no service {name}"))
        })
    }

    pub fn events(&self) -> Vec<(Instant, SupervisorEvent)> {
        self.pm(|pm| pm.events().iter().cloned().collect())
    }

    /// Act as the client task.
    pub fn as_client<R>(&mut self, f: impl FnOnce(&mut SimulatedKernel) -> R) -> R {
        let task = self.client_task;
        self.scenario.kernel_mut().as_task(task, f)
    }

    /// Have the process manager mint a control capability with `rights`
    /// (as the task holding its registration) and move it to `task`.
    /// Returns it as a handle in `task`'s space. `rights` must include
    /// `TRANSFER` for the move.
    pub fn give_control(
        &mut self,
        task: TaskId,
        rights: Rights,
    ) -> Result<Cap<kinds::StorageObject>, KernelError> {
        let pm_task = self.pm_task;
        let pm = self.pm.clone();
        let kernel = self.scenario.kernel_mut();
        let minted = kernel.as_task(pm_task, |k| {
            pm.borrow()
                .as_ref()
                .expect("booted")
                .control_capability(k, rights)
        })?;
        let moved = kernel.delegate_capability(&minted, pm_task, task)?;
        Ok(Cap::from_handle(moved).assume_kind())
    }

    /// Send a request to the process manager as the client, through the
    /// control capability the process manager gave it, let the system run
    /// briefly, and collect the answer.
    pub fn request(&mut self, request: PmRequest) -> Result<PmReply, ClientError> {
        if self.client.is_none() {
            let client = self.as_client(PmClient::connect).expect("connect");
            let task = self.client_task;
            let control = self
                .give_control(task, CHILD_CONTROL_RIGHTS)
                .expect("a control capability");
            self.client = Some(client.with_control(control));
        }
        let client = self.client.take().expect("client");
        let result = self.request_with(self.client_task, &client, request);
        self.client = Some(client);
        result
    }

    /// As [`World::request`], but from a client without the control
    /// capability: every request goes on the process manager's channel.
    pub fn plain_request(&mut self, request: PmRequest) -> Result<PmReply, ClientError> {
        if self.plain_client.is_none() {
            let client = self.as_client(PmClient::connect).expect("connect");
            self.plain_client = Some(client);
        }
        let client = self.plain_client.take().expect("client");
        let result = self.request_with(self.client_task, &client, request);
        self.plain_client = Some(client);
        result
    }

    /// Send `request` with `client` acting as `task`, let the system run
    /// briefly, and collect the answer.
    pub fn request_with(
        &mut self,
        task: TaskId,
        client: &PmClient,
        request: PmRequest,
    ) -> Result<PmReply, ClientError> {
        let kernel = self.scenario.kernel_mut();
        let sent = kernel.as_task(task, |k| client.send(k, &request));
        match sent {
            Ok(id) => {
                self.run_for(Duration::from_millis(1));
                let kernel = self.scenario.kernel_mut();
                kernel.as_task(task, |k| client.receive(k, id, Some(Duration::ZERO)))
            }
            Err(error) => Err(error),
        }
    }

    /// Ping `service` as the client over `channel` (a channel the client
    /// holds), letting the system run so the service can answer.
    pub fn ping_over(&mut self, channel: ChannelId) -> Result<(), KernelError> {
        let (reply, id) = self.as_client(|k| -> Result<_, KernelError> {
            let reply = k.create_channel()?;
            let cap = k.clone_capability(
                &pandagen_abi::Cap::from(reply),
                Rights::SEND | Rights::TRANSFER,
            )?;
            let request = MessageEnvelope::new(
                ServiceId::from_raw(0),
                PING,
                SchemaVersion::new(1, 0),
                MessagePayload::empty(),
            );
            let id = request.id;
            k.send_with_capabilities(channel, request, vec![cap])?;
            Ok((reply, id))
        })?;
        self.run_for(Duration::from_millis(1));
        self.as_client(|k| {
            let answer = k.receive_message(reply, Some(Duration::ZERO));
            let _ = KernelApi::drop_capability(k, pandagen_abi::Cap::from(reply));
            let answer = answer?;
            assert_eq!(answer.correlation_id, Some(id));
            Ok(())
        })
    }

    /// Look `service` up and ping it, as the client.
    pub fn ping(&mut self, service: ServiceId) -> Result<(), KernelError> {
        let channel = self.as_client(|k| k.lookup_service(service))?;
        self.ping_over(channel)
    }
}

/// The timestamps of `Spawned` events for `service`.
pub fn spawn_times(events: &[(Instant, SupervisorEvent)], service: ServiceId) -> Vec<Instant> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            SupervisorEvent::Spawned { service: s, .. } if *s == service => Some(*at),
            _ => None,
        })
        .collect()
}
