//! The shell over a fake host: the SimulatedKernel for `KernelApi`, canned
//! kernel-info replies, and a recording terminal. Some tests add a real
//! process manager (the supervisor library in a task of its own), which
//! runs whenever the shell waits for an answer.

use pandagen_abi::info::{CapSummary, InfoReply, InfoRequest, MemorySummary};
use pandagen_abi::services::KEYBOARD;
use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_abi::{
    Cap, CapHandle, CapKind, ChannelId, Duration, Instant, KernelApi, KernelError, MessageEnvelope,
    ReceivedMessage, Rights, ServiceId, TaskDescriptor, TaskHandle, TaskId,
};
use pandagen_console::{ConsoleCaps, ConsoleHost, Flow, Shell, PROMPT};
use pandagen_process_manager::protocol::CHILD_CONTROL_RIGHTS;
use pandagen_process_manager::{
    parse_manifest, Activity, BootCapabilities, LifecycleState, Supervisor, SupervisorConfig,
    SupervisorEvent,
};
use pandagen_ps2_keyboard::protocol::{INPUT_ACTION, SUBSCRIBE_ACTION};
use pandagen_sim::SimulatedKernel;

const SERIAL: CapHandle = CapHandle::new(0, 1);
const INFO: CapHandle = CapHandle::new(1, 1);

struct FakeHost {
    sim: SimulatedKernel,
    out: Vec<u8>,
    requests: Vec<(CapHandle, InfoRequest)>,
    bound: Option<ChannelId>,
    shutdown: Option<Result<(), KernelError>>,
    reboot: Option<Result<(), KernelError>>,
    /// A process manager and the task it runs as.
    pm: Option<(TaskId, Supervisor)>,
}

impl FakeHost {
    fn new() -> Self {
        FakeHost {
            sim: SimulatedKernel::new(),
            out: Vec::new(),
            requests: Vec::new(),
            bound: None,
            shutdown: None,
            reboot: None,
            pm: None,
        }
    }

    /// Start a process manager over `manifest` in a task of its own, with
    /// copies of the root capabilities.
    fn with_process_manager(manifest: &str) -> Self {
        let mut host = Self::new();
        let mut descriptor = TaskDescriptor::new("process-manager".into())
            .with_budget(pandagen_sim::SUPERVISOR_BUDGET);
        for kind in ROOT_CAPABILITIES {
            descriptor = descriptor.with_capability(host.sim.root_copy(kind, Rights::ALL).unwrap());
        }
        let task = host.sim.spawn_task(descriptor).unwrap().task_id;
        let manifest = parse_manifest(manifest.as_bytes()).unwrap();
        let supervisor = host.sim.as_task(task, |k| {
            let startup = k.startup().unwrap();
            let caps = BootCapabilities::from_root_handles(&startup.capabilities);
            let mut supervisor = Supervisor::new(manifest, caps, SupervisorConfig::default());
            supervisor.boot(k).unwrap();
            supervisor
        });
        host.pm = Some((task, supervisor));
        host.run_pm();
        host
    }

    /// Have the process manager mint its control capability and move it
    /// to the shell's task; returns its handle there.
    fn control_for_shell(&mut self) -> CapHandle {
        let shell = self.sim.current_task();
        let (task, supervisor) = self.pm.as_ref().unwrap();
        let task = *task;
        let minted = self
            .sim
            .as_task(task, |k| {
                supervisor.control_capability(k, CHILD_CONTROL_RIGHTS)
            })
            .unwrap();
        self.sim.delegate_capability(&minted, task, shell).unwrap()
    }

    /// Let the process manager handle everything it has been sent.
    fn run_pm(&mut self) {
        let sim = &mut self.sim;
        if let Some((task, supervisor)) = self.pm.as_mut() {
            sim.as_task(*task, |k| while supervisor.poll(k) == Activity::Handled {});
        }
    }

    fn pm_state(&self, name: &str) -> LifecycleState {
        let (_, supervisor) = self.pm.as_ref().unwrap();
        supervisor
            .services()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .state
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

impl ConsoleHost for FakeHost {
    fn kernel_info(
        &mut self,
        capability: CapHandle,
        request: InfoRequest,
    ) -> Result<InfoReply, KernelError> {
        self.requests.push((capability, request));
        match request {
            InfoRequest::Capabilities { .. } => Ok(InfoReply::Capabilities(vec![CapSummary {
                handle: SERIAL,
                kind: CapKind::SerialInput,
                rights: Rights::READ | Rights::WRITE,
            }])),
            InfoRequest::Memory => Ok(InfoReply::Memory(MemorySummary {
                frames_total: 10,
                frames_free: 5,
                heap_bytes: 4096,
                heap_used: 1024,
            })),
            _ => Err(KernelError::InsufficientAuthority),
        }
    }

    fn console_write(&mut self, capability: CapHandle, bytes: &[u8]) -> Result<(), KernelError> {
        assert_eq!(capability, SERIAL, "output uses the serial capability");
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn bind_console_input(
        &mut self,
        capability: CapHandle,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        assert_eq!(capability, SERIAL);
        self.bound = Some(channel);
        Ok(())
    }

    fn shutdown(&mut self, capability: CapHandle) -> Result<(), KernelError> {
        assert_eq!(capability, INFO, "shutdown uses the kernel-info capability");
        self.shutdown.take().unwrap_or(Ok(()))
    }

    fn reboot(&mut self, capability: CapHandle) -> Result<(), KernelError> {
        assert_eq!(capability, INFO, "reboot uses the kernel-info capability");
        self.reboot.take().unwrap_or(Ok(()))
    }
}

impl KernelApi for FakeHost {
    fn spawn_task(&mut self, d: TaskDescriptor) -> Result<TaskHandle, KernelError> {
        self.sim.spawn_task(d)
    }
    fn create_channel(&mut self) -> Result<ChannelId, KernelError> {
        self.sim.create_channel()
    }
    fn send_with_capabilities(
        &mut self,
        c: ChannelId,
        m: MessageEnvelope,
        caps: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.sim.send_with_capabilities(c, m, caps)
    }
    fn receive_with_capabilities(
        &mut self,
        c: ChannelId,
        t: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.run_pm();
        self.sim.receive_with_capabilities(c, t)
    }
    fn now(&self) -> Instant {
        self.sim.now()
    }
    fn sleep(&mut self, d: Duration) -> Result<(), KernelError> {
        self.sim.sleep(d)
    }
    fn grant_capability(&mut self, t: TaskId, c: Cap<()>) -> Result<(), KernelError> {
        self.sim.grant_capability(t, c)
    }
    fn register_service(&mut self, s: ServiceId, c: ChannelId) -> Result<(), KernelError> {
        self.sim.register_service(s, c)
    }
    fn lookup_service(&mut self, s: ServiceId) -> Result<ChannelId, KernelError> {
        self.sim.lookup_service(s)
    }
    fn mint_registration_capability(
        &mut self,
        registry: &Cap<()>,
        s: ServiceId,
    ) -> Result<Cap<pandagen_abi::cap::kinds::ServiceRegistration>, KernelError> {
        self.sim.mint_registration_capability(registry, s)
    }
    fn service_registrant(&mut self, s: ServiceId) -> Result<TaskId, KernelError> {
        self.sim.service_registrant(s)
    }
    fn drop_capability(&mut self, c: Cap<()>) -> Result<(), KernelError> {
        KernelApi::drop_capability(&mut self.sim, c)
    }
    fn clone_capability(&mut self, c: &Cap<()>, r: Rights) -> Result<Cap<()>, KernelError> {
        self.sim.clone_capability(c, r)
    }
    fn send_to_object(
        &mut self,
        o: &Cap<pandagen_abi::cap::kinds::StorageObject>,
        m: MessageEnvelope,
        caps: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.sim.send_to_object(o, m, caps)
    }
}

fn shell() -> Shell {
    Shell::new(
        ConsoleCaps::from_startup(&[SERIAL, INFO]).unwrap(),
        TaskId::from_raw(5),
    )
}

#[test]
fn binding_routes_input_to_a_fresh_channel_with_the_serial_capability() {
    let mut host = FakeHost::new();
    let channel = shell().bind(&mut host).unwrap();
    assert_eq!(host.bound, Some(channel));
}

#[test]
fn a_burst_runs_every_line_in_order_with_a_prompt_after_each() {
    let mut host = FakeHost::new();
    let mut shell = shell();
    let flow = shell.input_bytes(&mut host, b"caps\r\nmem\rxyzzy\rcapz\x7fs 9\r");
    assert_eq!(flow, Flow::Continue);
    let text = host.text();
    assert_eq!(text.matches(PROMPT).count(), 4);
    let caps = text.find("capabilities of task 5").unwrap();
    let mem = text.find("frames: 5 used of 10").unwrap();
    let unknown = text.find("unknown command `xyzzy`").unwrap();
    let caps9 = text.find("capabilities of task 9").unwrap();
    assert!(caps < mem && mem < unknown && unknown < caps9);
    // Each kernel-info call names the kernel-info capability.
    assert!(host.requests.iter().all(|(cap, _)| *cap == INFO));
    assert_eq!(
        host.requests[0].1,
        InfoRequest::Capabilities {
            task: TaskId::from_raw(5)
        }
    );
    // Output lines end in CR LF for the terminal.
    assert!(text.contains("frames: 5 used of 10 (20 KiB free)\r\n"));
}

#[test]
fn kernel_refusals_and_unreachable_services_are_reported_not_fatal() {
    let mut host = FakeHost::new();
    let mut shell = shell();
    let (text, flow) = shell.execute(&mut host, "audit 3");
    assert_eq!(flow, Flow::Continue);
    assert!(text.starts_with("audit: "), "{text}");
    let (text, _) = shell.execute(&mut host, "restart storage");
    assert!(
        text.starts_with("storage: process manager unreachable"),
        "{text}"
    );
    let (text, _) = shell.execute(&mut host, "store get k");
    assert!(text.starts_with("store: "), "{text}");
}

#[test]
fn shutdown_ends_the_shell_unless_the_kernel_refuses() {
    let mut host = FakeHost::new();
    let mut shell = shell();
    host.shutdown = Some(Err(KernelError::InsufficientAuthority));
    let (text, flow) = shell.execute(&mut host, "shutdown");
    assert_eq!(flow, Flow::Continue);
    assert!(text.starts_with("shutdown refused"));
    assert_eq!(shell.input_bytes(&mut host, b"shutdown\rps\r"), Flow::Ended);
    assert!(host.text().ends_with("shutting down\r\n"));
}

#[test]
fn history_recalls_the_previous_command() {
    let mut host = FakeHost::new();
    let mut shell = shell();
    shell.input_bytes(&mut host, b"mem\r\x1b[A\r");
    assert_eq!(host.text().matches("kernel heap:").count(), 2);
}

#[test]
fn the_console_does_not_stop_itself() {
    let mut host = FakeHost::new();
    let (text, flow) = shell().execute(&mut host, "stop console");
    assert_eq!(flow, Flow::Continue);
    assert!(text.starts_with("refusing to stop the console"), "{text}");
}

/// A service the process manager considers running once spawned (the
/// simulator does not run its image).
const ONE_SERVICE: &str = "
[worker]
id = 70
ready = spawned
";

#[test]
fn service_actions_without_pm_control_are_refused_by_the_process_manager() {
    let mut host = FakeHost::with_process_manager(ONE_SERVICE);
    assert_eq!(host.pm_state("worker"), LifecycleState::Running);
    let mut shell = shell();
    for command in [
        "stop worker",
        "restart worker",
        "crash worker",
        "start worker",
    ] {
        let (text, flow) = shell.execute(&mut host, command);
        assert_eq!(flow, Flow::Continue);
        assert_eq!(
            text, "worker: refused: this console holds no pm-control capability\n",
            "{command}"
        );
    }
    assert_eq!(host.pm_state("worker"), LifecycleState::Running);
    let (_, supervisor) = host.pm.as_ref().unwrap();
    let refusals = supervisor
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, SupervisorEvent::ControlRefused { .. }))
        .count();
    assert_eq!(refusals, 4);
    // What anyone may ask (pm.list) still works.
    let pending = shell.wait_for_services(&mut host, Duration::from_secs(1));
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn with_pm_control_the_console_controls_services() {
    let mut host = FakeHost::with_process_manager(ONE_SERVICE);
    let control = host.control_for_shell();
    let caps = ConsoleCaps::from_startup(&[SERIAL, INFO, control]).unwrap();
    assert_eq!(caps.pm_control, Some(control));
    let mut shell = Shell::new(caps, TaskId::from_raw(5));
    // Authorized, so the process manager gets as far as the state check.
    let (text, _) = shell.execute(&mut host, "start worker");
    assert!(text.starts_with("worker: refused: "), "{text}");
    assert!(!text.contains("pm-control"), "{text}");
    // A stop is carried out (the simulated worker never exits, so the
    // shell reports it still stopping after its wait).
    let (text, _) = shell.execute(&mut host, "stop worker");
    assert!(text.starts_with("worker: still stopping"), "{text}");
    assert_eq!(host.pm_state("worker"), LifecycleState::Stopping);
}

#[test]
fn reboot_ends_the_shell_unless_the_kernel_refuses() {
    let mut host = FakeHost::new();
    let mut shell = shell();
    host.reboot = Some(Err(KernelError::InsufficientAuthority));
    let (text, flow) = shell.execute(&mut host, "reboot");
    assert_eq!(flow, Flow::Continue);
    assert!(text.starts_with("reboot refused"), "{text}");
    assert_eq!(shell.input_bytes(&mut host, b"reboot\rps\r"), Flow::Ended);
    assert!(host.text().ends_with("rebooting\r\n"));
}

fn typed(action: &str, bytes: &[u8]) -> MessageEnvelope {
    MessageEnvelope::new(
        KEYBOARD,
        action,
        pandagen_ps2_keyboard::protocol::SCHEMA,
        pandagen_abi::MessagePayload::new(&bytes.to_vec()).unwrap(),
    )
}

#[test]
fn keyboard_input_is_taken_from_the_subscribed_driver_only() {
    let mut host = FakeHost::new();
    let mut shell = shell();
    let input = shell.bind(&mut host).unwrap();
    // No keyboard driver yet: nothing to subscribe to.
    assert_eq!(shell.subscribe_keyboard(&mut host), None);
    let registry = host.sim.registry_capability_for_child().unwrap();
    let driver = host
        .sim
        .spawn_task(TaskDescriptor::new("keyboard".into()).with_capability(registry))
        .unwrap()
        .task_id;
    let inbox = host
        .sim
        .as_task(driver, |k| {
            let ch = k.create_channel()?;
            k.register_service(KEYBOARD, ch)?;
            Ok::<_, KernelError>(ch)
        })
        .unwrap();
    assert_eq!(shell.subscribe_keyboard(&mut host), Some(driver));
    // The driver received one capability: where to send typed bytes.
    let request = host
        .sim
        .as_task(driver, |k| {
            k.receive_with_capabilities(inbox, Some(Duration::ZERO))
        })
        .unwrap();
    assert_eq!(request.envelope.action, SUBSCRIBE_ACTION);
    assert_eq!(request.capabilities.len(), 1);
    let to_console = ChannelId::from_handle(request.capabilities[0].handle());
    host.sim
        .as_task(driver, |k| {
            k.send_message(to_console, typed(INPUT_ACTION, b"mem\r"))
        })
        .unwrap();
    // Another task sending keyboard input is ignored.
    host.sim
        .send_message(input, typed(INPUT_ACTION, b"xyzzy\r"))
        .unwrap();
    host.sim
        .as_task(driver, |k| {
            k.send_message(to_console, typed(INPUT_ACTION, b"shutdown\r"))
        })
        .unwrap();
    shell.run(&mut host).unwrap();
    let text = host.text();
    assert!(text.contains("frames: 5 used of 10"), "{text}");
    assert!(!text.contains("xyzzy"), "{text}");
    assert!(text.ends_with("shutting down\r\n"), "{text}");
    // Subscribing again to the same driver sends nothing new.
    assert_eq!(shell.subscribe_keyboard(&mut host), Some(driver));
    assert!(host
        .sim
        .as_task(driver, |k| k.receive_message(inbox, Some(Duration::ZERO)))
        .is_err());
}
