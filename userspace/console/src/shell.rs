//! The shell: reads console input from its channel, edits lines, runs
//! commands against the kernel and the services, writes the answers.
//!
//! Input arrives on a channel only the console can receive on, from two
//! sources: the kernel's serial line (action [`CONSOLE_INPUT_ACTION`], sent
//! by the kernel) and the PS/2 keyboard driver (action
//! [`KEYBOARD_INPUT_ACTION`], sent by the task registered as the keyboard
//! service, to which the console gave a send-only capability to this
//! channel). Both carry a `Vec<u8>` of terminal bytes. Every byte of every
//! message goes through the line editor, in order; while a command runs,
//! further input waits in the kernel's buffer, the driver and the channel,
//! so typing ahead loses nothing. Output goes to the kernel's console,
//! which writes it to the serial line and draws it on the screen.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use pandagen_abi::info::{InfoReply, InfoRequest, MAX_AUDIT_ENTRIES};
use pandagen_abi::services::{CONSOLE, KEYBOARD};
use pandagen_abi::syscall::CONSOLE_INPUT_ACTION;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, KernelError, MessageEnvelope, MessagePayload, Rights, TaskId,
};
use pandagen_pipeline_executor::client::{ClientError as PipelineError, PipelineClient};
use pandagen_process_manager::{
    ClientError as PmClientError, LifecycleState, PmClient, PmError, ServiceInfo, ServiceRef,
};
use pandagen_ps2_keyboard::protocol::{
    INPUT_ACTION as KEYBOARD_INPUT_ACTION, SCHEMA as KEYBOARD_SCHEMA, SUBSCRIBE_ACTION,
};
use pandagen_storage::{ObjectCap, ObjectKind, Op, OpResult, StorageClient, StorageError};

use crate::command::{self, Command, PipelineCommand, StoreCommand, StoreObject};
use crate::editor::{Edit, LineEditor};
use crate::host::ConsoleHost;
use crate::render;

/// The prompt. Tests and the QEMU suite wait for it.
pub const PROMPT: &str = "pandagen> ";

/// How long the console waits for the other services before giving the
/// prompt anyway.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Between polls of the process manager while waiting for services.
const READY_POLL: Duration = Duration::from_millis(20);
/// How often an idle console checks that it is subscribed to the keyboard
/// driver now registered (a restarted driver knows no subscriber).
const KEYBOARD_CHECK: Duration = Duration::from_secs(1);

/// The console's capabilities, in the manifest's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleCaps {
    /// `SerialInput`: read typed bytes, write output.
    pub serial: CapHandle,
    /// `KernelInfo`: introspection, shutdown.
    pub info: CapHandle,
    /// The process manager's control capability, for `start`, `stop`,
    /// `restart` and `crash`. Without it the process manager refuses them.
    pub pm_control: Option<CapHandle>,
}

impl ConsoleCaps {
    /// From the start-up capabilities (`serial-input, kernel-info` and
    /// optionally `pm-control` in the manifest, in that order).
    pub fn from_startup(handles: &[CapHandle]) -> Option<Self> {
        match handles {
            [serial, info, rest @ ..] => Some(ConsoleCaps {
                serial: *serial,
                info: *info,
                pm_control: rest.first().copied(),
            }),
            _ => None,
        }
    }
}

/// Whether the shell goes on after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `shutdown` was refused or failed to stop the machine; the shell
    /// still ends.
    Ended,
}

/// How long `start`/`stop`/`restart`/`crash` wait for the outcome.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// An operator action on a service, through the process manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServiceOp {
    Start,
    Stop,
    Restart,
    Crash,
}

impl ServiceOp {
    /// Whether the action has run its course.
    fn settled(self, before: &ServiceInfo, now: &ServiceInfo) -> bool {
        let running = now.state == LifecycleState::Running;
        match self {
            ServiceOp::Start => running,
            ServiceOp::Stop => now.state == LifecycleState::Stopped,
            ServiceOp::Restart => running && now.execution_id != before.execution_id,
            ServiceOp::Crash => running && now.restart_count > before.restart_count,
        }
    }
}

/// The console's own storage objects, made on first use.
#[derive(Default)]
struct Store {
    client: Option<StorageClient>,
    map: Option<ObjectCap>,
    log: Option<ObjectCap>,
}

pub struct Shell {
    caps: ConsoleCaps,
    me: TaskId,
    editor: LineEditor,
    pm: Option<PmClient>,
    store: Store,
    input: Option<ChannelId>,
    /// The keyboard driver's task this console subscribed to.
    keyboard: Option<TaskId>,
    /// This console is a restarted instance (the boot announcement is
    /// not repeated).
    restarted: bool,
}

/// Text for the terminal: `\n` becomes `\r\n`.
fn terminal_text(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    for byte in text.bytes() {
        if byte == b'\n' {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

fn pm_error(error: &PmClientError) -> String {
    match error {
        PmClientError::Rejected(PmError::UnknownService(ServiceRef::Name(name))) => {
            format!("no service named `{name}` (see `ps`)")
        }
        PmClientError::Rejected(PmError::IllegalTransition(t)) => format!("refused: {t}"),
        PmClientError::Rejected(PmError::NotRunning) => "it is not running".into(),
        PmClientError::Rejected(PmError::CannotTerminate(Some(e))) => {
            format!("the kernel refused to terminate it: {e}")
        }
        PmClientError::Rejected(PmError::CannotTerminate(None)) => {
            "the process manager cannot terminate tasks".into()
        }
        PmClientError::Rejected(PmError::ControlCapabilityRequired) => {
            "refused: this console holds no pm-control capability".into()
        }
        PmClientError::Rejected(PmError::MissingRights { required, held }) => {
            format!("refused: the pm-control capability has rights {held}, not {required}")
        }
        PmClientError::Rejected(PmError::UnknownBadge(_)) => {
            "refused: that capability is not the process manager's control capability".into()
        }
        PmClientError::Kernel(KernelError::Timeout) => "the process manager did not answer".into(),
        PmClientError::Kernel(e) => format!("process manager unreachable: {e}"),
        other => format!("process manager: {other:?}"),
    }
}

impl Shell {
    pub fn new(caps: ConsoleCaps, me: TaskId) -> Self {
        Shell {
            caps,
            me,
            editor: LineEditor::new(),
            pm: None,
            store: Store::default(),
            input: None,
            keyboard: None,
            restarted: false,
        }
    }

    pub fn editor(&self) -> &LineEditor {
        &self.editor
    }

    /// Make the input channel and have the kernel deliver typed bytes
    /// there.
    pub fn bind<H: ConsoleHost>(&mut self, host: &mut H) -> Result<ChannelId, KernelError> {
        let channel = host.create_channel()?;
        host.bind_console_input(self.caps.serial, channel)?;
        self.input = Some(channel);
        Ok(channel)
    }

    /// Write `text` (with `\n` line ends) to the terminal. Output that
    /// cannot be written has nowhere else to go, so failures are ignored.
    pub fn write<H: ConsoleHost>(&self, host: &mut H, text: &str) {
        let _ = host.console_write(self.caps.serial, &terminal_text(text));
    }

    fn pm<H: ConsoleHost>(&mut self, host: &mut H) -> Result<&PmClient, PmClientError> {
        if self.pm.is_none() {
            let mut pm = PmClient::connect(host)?.with_timeout(Some(Duration::from_secs(5)));
            if let Some(control) = self.caps.pm_control {
                pm = pm.with_control(Cap::from_handle(control).assume_kind());
            }
            self.pm = Some(pm);
        }
        self.pm.as_ref().ok_or(PmClientError::UnexpectedReply)
    }

    fn services<H: ConsoleHost>(&mut self, host: &mut H) -> Result<Vec<ServiceInfo>, String> {
        let result = match self.pm(host) {
            Ok(pm) => pm.list(host),
            Err(e) => Err(e),
        };
        result.map_err(|e| pm_error(&e))
    }

    /// Wait until the process manager reports every other service running
    /// (or `timeout` passes). Returns the services still not running.
    pub fn wait_for_services<H: ConsoleHost>(
        &mut self,
        host: &mut H,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = host.now().saturating_add(timeout);
        loop {
            let pending: Vec<String> = match self.services(host) {
                Ok(services) => {
                    self.restarted = services
                        .iter()
                        .any(|s| s.service_id == CONSOLE && s.restart_count > 0);
                    services
                        .iter()
                        .filter(|s| {
                            // A driver with no device is not wanted and never runs.
                            s.service_id != CONSOLE
                                && s.wanted
                                && s.state != LifecycleState::Running
                        })
                        .map(|s| format!("{} ({})", s.name, s.state))
                        .collect()
                }
                Err(why) => vec![why],
            };
            if pending.is_empty() || host.now() >= deadline {
                return pending;
            }
            let _ = host.sleep(READY_POLL);
        }
    }

    /// The boot log's last line and the first prompt.
    pub fn announce<H: ConsoleHost>(&mut self, host: &mut H, pending: &[String]) {
        let ms = host.now().as_millis();
        let text = if self.restarted {
            format!("\nconsole: restarted by its supervisor at {ms} ms; type `help`\n")
        } else if pending.is_empty() {
            format!("\nconsole: system ready in {ms} ms (boot to prompt); type `help`\n")
        } else {
            format!(
                "\nconsole: system up after {ms} ms, still waiting for: {}; type `help`\n",
                pending.join(", ")
            )
        };
        self.write(host, &text);
        self.write(host, PROMPT);
    }

    /// Have the keyboard driver, if one is registered and it is not the
    /// one already subscribed to, send typed bytes to the input channel.
    /// Returns the driver's task once subscribed.
    pub fn subscribe_keyboard<H: ConsoleHost>(&mut self, host: &mut H) -> Option<TaskId> {
        let input = self.input?;
        let driver = host.service_registrant(KEYBOARD).ok()?;
        if self.keyboard == Some(driver) {
            return self.keyboard;
        }
        let keyboard = host.lookup_service(KEYBOARD).ok()?;
        let subscribed = (|| {
            let reply_to =
                host.clone_capability(&Cap::from(input), Rights::SEND | Rights::TRANSFER)?;
            let handle = reply_to.handle();
            let payload = MessagePayload::new(&()).map_err(KernelError::Envelope)?;
            let request =
                MessageEnvelope::new(KEYBOARD, SUBSCRIBE_ACTION, KEYBOARD_SCHEMA, payload);
            host.send_with_capabilities(keyboard, request, vec![reply_to])
                .inspect_err(|_| {
                    // Not sent: the copy is still ours.
                    let _ = host.drop_capability(Cap::from_handle(handle));
                })
        })();
        let _ = host.drop_capability(Cap::from(keyboard));
        self.keyboard = subscribed.ok().map(|()| driver);
        self.keyboard
    }

    /// Serve input until `shutdown`.
    pub fn run<H: ConsoleHost>(&mut self, host: &mut H) -> Result<(), KernelError> {
        let input = match self.input {
            Some(channel) => channel,
            None => self.bind(host)?,
        };
        self.subscribe_keyboard(host);
        loop {
            // Re-checked only while subscribed (to follow a restarted
            // driver): without a keyboard the console sleeps untimed, so
            // its kernel footprint does not change with the clock.
            let timeout = self.keyboard.is_some().then_some(KEYBOARD_CHECK);
            let message = match host.receive_message(input, timeout) {
                Ok(message) => message,
                Err(KernelError::Timeout) => {
                    self.subscribe_keyboard(host);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Typed bytes come from the kernel (serial) or from the
            // keyboard driver subscribed to; anything else is noise.
            let from_serial = message.action == CONSOLE_INPUT_ACTION && message.source.is_none();
            let from_keyboard = message.action == KEYBOARD_INPUT_ACTION
                && message.source.is_some()
                && message.source == self.keyboard;
            if !(from_serial || from_keyboard) {
                continue;
            }
            let Ok(bytes) = message.payload.decode::<Vec<u8>>() else {
                continue;
            };
            if self.input_bytes(host, &bytes) == Flow::Ended {
                return Ok(());
            }
        }
    }

    /// Feed typed bytes through the editor, running each completed line.
    pub fn input_bytes<H: ConsoleHost>(&mut self, host: &mut H, bytes: &[u8]) -> Flow {
        let mut echo = Vec::new();
        for &byte in bytes {
            let Some(edit) = self.editor.feed(byte, &mut echo) else {
                continue;
            };
            let _ = host.console_write(self.caps.serial, &echo);
            echo.clear();
            if let Edit::Line(line) = edit {
                let (text, flow) = self.execute(host, &line);
                self.write(host, &text);
                if flow == Flow::Ended {
                    return flow;
                }
            }
            self.write(host, PROMPT);
        }
        if !echo.is_empty() {
            let _ = host.console_write(self.caps.serial, &echo);
        }
        Flow::Continue
    }

    /// Run one line; returns what to print.
    pub fn execute<H: ConsoleHost>(&mut self, host: &mut H, line: &str) -> (String, Flow) {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(e) => return (format!("{e}\n"), Flow::Continue),
        };
        let text = match command {
            Command::Nothing => String::new(),
            Command::Help => render::help(),
            Command::Ps => self.ps(host),
            Command::Devices => self.devices(host),
            Command::Caps(task) => {
                let task = task.unwrap_or(self.me);
                match self.info(host, InfoRequest::Capabilities { task }) {
                    Ok(InfoReply::Capabilities(caps)) => render::caps(task, &caps),
                    Ok(_) => "kernel-info: unexpected reply\n".into(),
                    Err(e) => format!("caps: {e}\n"),
                }
            }
            Command::Audit(n) => {
                let last = n.min(MAX_AUDIT_ENTRIES);
                match self.info(host, InfoRequest::Audit { last }) {
                    Ok(InfoReply::Audit { entries, dropped }) => render::audit(&entries, dropped),
                    Ok(_) => "kernel-info: unexpected reply\n".into(),
                    Err(e) => format!("audit: {e}\n"),
                }
            }
            Command::Services => match self.info(host, InfoRequest::Services) {
                Ok(InfoReply::Services(registry)) => {
                    let known = self.services(host).unwrap_or_default();
                    render::services(&registry, &known)
                }
                Ok(_) => "kernel-info: unexpected reply\n".into(),
                Err(e) => format!("services: {e}\n"),
            },
            Command::Start(name) => self.control(host, ServiceOp::Start, &name),
            Command::Stop(name) => self.control(host, ServiceOp::Stop, &name),
            Command::Restart(name) => self.control(host, ServiceOp::Restart, &name),
            Command::Crash(name) => self.control(host, ServiceOp::Crash, &name),
            Command::Store(store) => self.store(host, store),
            Command::Pipeline(pipeline) => self.pipeline(host, pipeline),
            Command::Uptime => render::uptime(host.now()),
            Command::Mem => match self.info(host, InfoRequest::Memory) {
                Ok(InfoReply::Memory(memory)) => render::mem(&memory),
                Ok(_) => "kernel-info: unexpected reply\n".into(),
                Err(e) => format!("mem: {e}\n"),
            },
            Command::Shutdown => {
                self.write(host, "shutting down\n");
                return match host.shutdown(self.caps.info) {
                    Ok(()) => (String::new(), Flow::Ended),
                    Err(e) => (format!("shutdown refused: {e}\n"), Flow::Continue),
                };
            }
            Command::Reboot => {
                self.write(host, "rebooting\n");
                return match host.reboot(self.caps.info) {
                    Ok(()) => (String::new(), Flow::Ended),
                    Err(e) => (format!("reboot refused: {e}\n"), Flow::Continue),
                };
            }
        };
        (text, Flow::Continue)
    }

    fn info<H: ConsoleHost>(
        &mut self,
        host: &mut H,
        request: InfoRequest,
    ) -> Result<InfoReply, KernelError> {
        host.kernel_info(self.caps.info, request)
    }

    fn devices<H: ConsoleHost>(&mut self, host: &mut H) -> String {
        let result = match self.pm(host) {
            Ok(pm) => pm.devices(host),
            Err(e) => Err(e),
        };
        match result {
            Ok(devices) => render::devices(&devices),
            Err(e) => format!(
                "devices: {}
",
                pm_error(&e)
            ),
        }
    }

    fn ps<H: ConsoleHost>(&mut self, host: &mut H) -> String {
        let tasks = match self.info(host, InfoRequest::Tasks) {
            Ok(InfoReply::Tasks(tasks)) => tasks,
            Ok(_) => return "kernel-info: unexpected reply\n".into(),
            Err(e) => return format!("ps: {e}\n"),
        };
        let services = self.services(host);
        render::ps(&tasks, services.as_deref().map_err(Clone::clone))
    }

    /// Ask the process manager to act on a service, then wait (briefly)
    /// for the outcome, so the answer says how it ended.
    fn control<H: ConsoleHost>(&mut self, host: &mut H, op: ServiceOp, name: &str) -> String {
        if op == ServiceOp::Stop && name == "console" {
            // Nothing would be left to type `start` into.
            return "refusing to stop the console you are typing into; `restart console` \
                    or `crash console` bring up a new one\n"
                .into();
        }
        let target = || ServiceRef::Name(name.to_string());
        if let Err(e) = self.pm(host) {
            return format!("{name}: {}\n", pm_error(&e));
        }
        let Some(pm) = self.pm.take() else {
            return format!("{name}: the process manager is not connected\n");
        };
        let result = (|| {
            let before = pm.status(host, target())?;
            let call = match op {
                ServiceOp::Start => PmClient::start,
                ServiceOp::Stop => PmClient::stop,
                ServiceOp::Restart => PmClient::restart,
                ServiceOp::Crash => PmClient::crash,
            };
            call(&pm, host, target())?;
            let deadline = host.now().saturating_add(SETTLE_TIMEOUT);
            loop {
                let now = pm.status(host, target())?;
                if op.settled(&before, &now) || host.now() >= deadline {
                    return Ok((before, now));
                }
                let _ = host.sleep(READY_POLL);
            }
        })();
        self.pm = Some(pm);
        match result {
            Ok((before, after)) => {
                let settled = op.settled(&before, &after);
                let task = |i: &ServiceInfo| {
                    i.task_id
                        .map_or(String::from("-"), |t| format!("{}", t.as_raw()))
                };
                match (op, settled) {
                    (ServiceOp::Crash, true) => format!(
                        "crashed {name} (task {}); its supervisor restarted it as task {} (restarts {})\n",
                        task(&before),
                        task(&after),
                        after.restart_count
                    ),
                    (_, true) => render::service_change(&after),
                    (_, false) => format!(
                        "{name}: still {} after {} s (restarts {})\n",
                        after.state,
                        SETTLE_TIMEOUT.as_secs(),
                        after.restart_count
                    ),
                }
            }
            Err(e) => format!("{name}: {}\n", pm_error(&e)),
        }
    }

    fn store<H: ConsoleHost>(&mut self, host: &mut H, command: StoreCommand) -> String {
        match self.store_inner(host, command) {
            Ok(text) => text,
            Err(e) => {
                // A restarted storage service that lost its data (one
                // without a block device) no longer knows our objects:
                // make new ones next time.
                if matches!(
                    e,
                    pandagen_storage::ClientError::Storage(
                        StorageError::UnknownObject(_) | StorageError::InvalidCapability(_)
                    )
                ) {
                    let stale = [self.store.map.take(), self.store.log.take()];
                    for cap in stale.into_iter().flatten() {
                        let _ = host.drop_capability(cap.erase());
                    }
                }
                format!("store: {e}\n")
            }
        }
    }

    /// The client and the capability for `which`, made on first use. Both
    /// are taken out of `self.store`; `store_inner` puts them back.
    fn object<H: ConsoleHost>(
        &mut self,
        host: &mut H,
        which: StoreObject,
    ) -> Result<(StorageClient, ObjectCap), pandagen_storage::ClientError> {
        let mut client = match self.store.client.take() {
            Some(client) => client,
            None => StorageClient::connect(host)?.with_retry(Duration::from_secs(2), 2),
        };
        let held = match which {
            StoreObject::Map => self.store.map.take(),
            StoreObject::Log => self.store.log.take(),
        };
        let cap = match held {
            Some(cap) => cap,
            None => {
                // The map is the volume's home map, so that what was put
                // before a reboot is found after it; the log is private.
                let made = match which {
                    StoreObject::Map => client.home(host),
                    StoreObject::Log => client.create(host, ObjectKind::Log).map(|(cap, _)| cap),
                };
                match made {
                    Ok(cap) => cap,
                    Err(e) => {
                        self.store.client = Some(client);
                        return Err(e);
                    }
                }
            }
        };
        Ok((client, cap))
    }

    fn store_inner<H: ConsoleHost>(
        &mut self,
        host: &mut H,
        command: StoreCommand,
    ) -> Result<String, pandagen_storage::ClientError> {
        let which = match &command {
            StoreCommand::Put { .. } | StoreCommand::Get { .. } => StoreObject::Map,
            StoreCommand::LogAppend { .. } | StoreCommand::LogRead => StoreObject::Log,
            StoreCommand::Versions(which) => *which,
        };
        let (mut client, cap) = self.object(host, which)?;
        let result = (|| match command {
            StoreCommand::Put { key, value } => {
                let version = client.put(host, &cap, key.as_bytes(), value.as_bytes())?;
                Ok(format!("stored {key} (map version {version})\n"))
            }
            StoreCommand::Get { key } => match client.get(host, &cap, key.as_bytes())? {
                Some(value) => Ok(format!("{key} = {}\n", String::from_utf8_lossy(&value))),
                None => Ok(format!("{key} is not set\n")),
            },
            StoreCommand::LogAppend { text } => {
                let index = client.append(host, &cap, text.as_bytes())?;
                Ok(format!("appended log record #{index}\n"))
            }
            StoreCommand::LogRead => {
                let op = Op::ReadLog {
                    at: None,
                    start: 0,
                    max: 64,
                };
                let (results, _) = client.transact(host, &cap, vec![op])?;
                match results.into_iter().next() {
                    Some(OpResult::Records { total, records, .. }) => {
                        let mut out = format!("log: {total} records\n");
                        for (i, record) in records.iter().enumerate() {
                            out.push_str(&format!("  #{i} {}\n", String::from_utf8_lossy(record)));
                        }
                        Ok(out)
                    }
                    _ => Err(pandagen_storage::ClientError::UnexpectedReply),
                }
            }
            StoreCommand::Versions(which) => {
                let versions = client.versions(host, &cap)?;
                let name = match which {
                    StoreObject::Map => "map",
                    StoreObject::Log => "log",
                };
                let list: Vec<String> = versions.iter().map(ToString::to_string).collect();
                Ok(format!(
                    "{name} versions ({}): {}\n",
                    versions.len(),
                    list.join(" ")
                ))
            }
        })();
        self.store.client = Some(client);
        match which {
            StoreObject::Map => self.store.map = Some(cap),
            StoreObject::Log => self.store.log = Some(cap),
        }
        result
    }

    fn pipeline<H: ConsoleHost>(&mut self, host: &mut H, command: PipelineCommand) -> String {
        let scenarios = pandagen_transformer::demo::scenarios();
        let short = |name: &'static str| name.trim_start_matches("pipeline/");
        let wanted = match command {
            PipelineCommand::List => {
                let names: Vec<&str> = scenarios.iter().map(|s| short(s.name)).collect();
                return format!("demo pipelines: {}\n", names.join(", "));
            }
            PipelineCommand::Run(name) => name,
        };
        let Some(scenario) = scenarios
            .iter()
            .find(|s| short(s.name) == wanted || short(s.name).starts_with(wanted.as_str()))
        else {
            let names: Vec<&str> = scenarios.iter().map(|s| short(s.name)).collect();
            return format!(
                "no demo pipeline `{wanted}`; try one of: {}\n",
                names.join(", ")
            );
        };
        let client = match PipelineClient::connect(host) {
            Ok(client) => client.with_timeout(Duration::from_secs(20)),
            Err(e) => return format!("pipeline executor unreachable: {e}\n"),
        };
        let result = client.submit(host, &scenario.pipeline, scenario.input.clone(), Vec::new());
        let text = match result {
            Ok(submission) => {
                let trace = &submission.trace;
                let mut out = format!(
                    "pipeline {} ({}): {:?}\n",
                    short(scenario.name),
                    scenario.pipeline.name,
                    trace.final_result
                );
                for e in &trace.entries {
                    out.push_str(&format!(
                        "  stage {} attempt {}: {:?} ({} ms)\n",
                        e.stage_name,
                        e.attempt,
                        e.result,
                        e.end_time_ms.saturating_sub(e.start_time_ms)
                    ));
                }
                match (scenario.check)(&scenario.pipeline, &submission) {
                    Ok(()) => out.push_str("  outcome: as the demo expects\n"),
                    Err(why) => out.push_str(&format!("  outcome: NOT as expected: {why}\n")),
                }
                for (_, cap) in submission.capabilities {
                    let _ = host.drop_capability(cap);
                }
                out
            }
            Err(PipelineError::TimedOut) => "pipeline: no result in time\n".into(),
            Err(e) => format!("pipeline: {e:?}\n"),
        };
        client.close(host);
        text
    }
}
