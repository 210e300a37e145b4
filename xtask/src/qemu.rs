//! QEMU invocation: argument profiles from `qemu/*.args`, and runs with a
//! timeout whose serial output is captured to a log.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fail;
use crate::layout::Layout;
use crate::process::TaskResult;
use crate::setup::QEMU_BINARY;

/// How long to keep collecting output after QEMU has exited.
const READER_GRACE: Duration = Duration::from_secs(2);

/// QEMU's exit status when the kernel wrote 0x10 to the exit device.
pub const EXIT_PASS: i32 = 33;
/// QEMU's exit status when the kernel wrote 0x11 to the exit device.
pub const EXIT_FAIL: i32 = 35;

/// Boot firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// How the guest CPU is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

/// Everything that selects a QEMU command line.
#[derive(Clone, Debug)]
pub struct Machine<'a> {
    pub firmware: Firmware,
    pub accel: Accel,
    pub image: &'a Path,
    pub ovmf: Option<&'a Path>,
    /// Extra profiles from `qemu/`, e.g. `bench` or `gdb`.
    pub extra_profiles: &'a [&'a str],
}

/// Expands one profile file: drops comments and blank lines, splits words,
/// substitutes `{name}` placeholders. An unknown placeholder is an error so a
/// typo in a profile cannot silently reach QEMU.
pub fn expand_profile(text: &str, vars: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            let mut out = String::new();
            let mut rest = word;
            while let Some(start) = rest.find('{') {
                out.push_str(&rest[..start]);
                let end = rest[start..]
                    .find('}')
                    .ok_or_else(|| format!("line {}: unclosed `{{` in `{word}`", lineno + 1))?
                    + start;
                let key = &rest[start + 1..end];
                let value = vars
                    .iter()
                    .find(|(k, _)| *k == key)
                    .ok_or_else(|| format!("line {}: unknown placeholder {{{key}}}", lineno + 1))?
                    .1;
                out.push_str(value);
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            args.push(out);
        }
    }
    Ok(args)
}

fn load_profile(layout: &Layout, name: &str, vars: &[(&str, &str)]) -> TaskResult<Vec<String>> {
    let path = layout.qemu_profiles().join(format!("{name}.args"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| fail!("reading QEMU profile {}: {e}", path.display()))?;
    expand_profile(&text, vars).map_err(|e| fail!("{}: {e}", path.display()))
}

/// The full QEMU argument list for `machine`.
pub fn args(layout: &Layout, machine: &Machine<'_>) -> TaskResult<Vec<String>> {
    let image = machine.image.to_string_lossy();
    let ovmf = machine.ovmf.map(|p| p.to_string_lossy().into_owned());
    if machine.firmware == Firmware::Uefi && ovmf.is_none() {
        return Err(fail!(
            "UEFI boot needs OVMF; none found (set PANDAGEN_OVMF)"
        ));
    }
    let ovmf = ovmf.unwrap_or_default();
    let vars = [("image", image.as_ref()), ("ovmf", ovmf.as_str())];
    let accel = match machine.accel {
        Accel::Tcg => "tcg",
        Accel::Kvm => "kvm",
    };
    let mut out = load_profile(layout, "common", &vars)?;
    out.extend(load_profile(layout, machine.firmware.name(), &vars)?);
    out.extend(load_profile(layout, accel, &vars)?);
    for extra in machine.extra_profiles {
        out.extend(load_profile(layout, extra, &vars)?);
    }
    Ok(out)
}

pub fn command(layout: &Layout, machine: &Machine<'_>) -> TaskResult<Command> {
    let mut cmd = Command::new(QEMU_BINARY);
    cmd.args(args(layout, machine)?);
    Ok(cmd)
}

/// QEMU's arguments less the exit device and `-no-reboot`: the machine as
/// a user has it, on which `reboot` reboots and `shutdown` can only end
/// the run by powering off through ACPI.
pub fn as_a_pc(args: Vec<String>) -> Vec<String> {
    let mut kept = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "-no-reboot" {
            continue;
        }
        if arg == "-device"
            && args
                .peek()
                .is_some_and(|device| device.starts_with("isa-debug-exit"))
        {
            args.next();
            continue;
        }
        kept.push(arg);
    }
    kept
}

/// How a QEMU run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// QEMU exited with this status.
    Code(i32),
    /// QEMU was killed by a signal it did not expect from us.
    Signal(i32),
    /// It ran past its timeout and xtask killed it.
    TimedOut,
}

impl Exit {
    fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Signal(0),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Exit::Code(EXIT_PASS) => format!("QEMU exited {EXIT_PASS} (kernel reported pass)"),
            Exit::Code(EXIT_FAIL) => format!("QEMU exited {EXIT_FAIL} (kernel reported failure)"),
            Exit::Code(0) => "QEMU exited 0 (guest reset or triple fault; -no-reboot)".into(),
            Exit::Code(c) => format!("QEMU exited {c}"),
            Exit::Signal(s) => format!("QEMU killed by signal {s}"),
            Exit::TimedOut => "timed out; QEMU killed".into(),
        }
    }
}

/// One scripted serial interaction: once `wait_for` has appeared in the
/// output (after the previous step), `send` is written to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialStep {
    pub wait_for: &'static str,
    pub send: &'static str,
}

/// The result of a captured run.
pub struct Captured {
    pub exit: Exit,
    /// Serial output (QEMU's stdout), lossily decoded.
    pub serial: String,
    pub elapsed: Duration,
}

/// A running QEMU as an observer sees it: its serial output so far (an
/// observer types on the guest's keyboard, never on its serial line).
pub struct Session {
    serial: Arc<Mutex<Vec<u8>>>,
    deadline: Instant,
}

impl Session {
    /// The serial output so far.
    pub fn serial(&self) -> Vec<u8> {
        self.serial.lock().expect("reader holds it briefly").clone()
    }

    /// When the run's timeout ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Something that watches a run from its own thread while QEMU runs (for
/// example, takes screenshots), and returns what it found.
pub type Observer<T> = Box<dyn FnOnce(&Session) -> T + Send>;

/// Runs `cmd` until it exits or `timeout` passes. Serial output is streamed
/// into `log` as it arrives (so a killed run keeps its log), QEMU's own
/// stderr is appended at the end.
pub fn run_captured(
    cmd: Command,
    timeout: Duration,
    log: &Path,
    script: &'static [SerialStep],
) -> TaskResult<Captured> {
    run_observed::<()>(cmd, timeout, log, script, None).map(|(captured, _)| captured)
}

/// [`run_captured`], with `observer` running beside QEMU. Its result is
/// `None` if it had not finished shortly after QEMU exited.
pub fn run_observed<T: Send + 'static>(
    mut cmd: Command,
    timeout: Duration,
    log: &Path,
    script: &'static [SerialStep],
    observer: Option<Observer<T>>,
) -> TaskResult<(Captured, Option<T>)> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log_file =
        std::fs::File::create(log).map_err(|e| fail!("creating log {}: {e}", log.display()))?;
    cmd.stdin(if script.is_empty() && observer.is_none() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| fail!("cannot start {QEMU_BINARY}: {e}"))?;

    let serial = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stdin = Arc::new(Mutex::new(child.stdin.take()));
    let stderr_buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    spawn_serial_reader(
        &mut child,
        serial.clone(),
        stdin.clone(),
        log_file,
        script,
        done_tx.clone(),
    );
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_sink = stderr_buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            stderr_sink
                .lock()
                .expect("only this thread writes")
                .extend_from_slice(&chunk[..n]);
        }
        let _ = done_tx.send(());
    });
    let (observed_tx, observed_rx) = std::sync::mpsc::channel::<T>();
    if let Some(observer) = observer {
        let session = Session {
            serial: serial.clone(),
            deadline: start + timeout,
        };
        std::thread::spawn(move || {
            let _ = observed_tx.send(observer(&session));
        });
    }

    let exit = wait_with_timeout(&mut child, timeout)?;
    let elapsed = start.elapsed();
    // QEMU is gone; its pipes reach EOF at once unless something it started
    // still holds them. Collect what arrived, without waiting on orphans.
    let grace = Instant::now() + READER_GRACE;
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let observed = observed_rx
        .recv_timeout(grace.saturating_duration_since(Instant::now()))
        .ok();
    let stderr_bytes = stderr_buf.lock().expect("reader done or detached").clone();
    let serial =
        String::from_utf8_lossy(&serial.lock().expect("reader done or detached")).into_owned();
    let mut file = std::fs::OpenOptions::new().append(true).open(log)?;
    if !stderr_bytes.is_empty() {
        writeln!(file, "\n--- qemu stderr ---")?;
        file.write_all(&stderr_bytes)?;
    }
    writeln!(
        file,
        "\n--- xtask: {} after {:.1}s ---",
        exit.describe(),
        elapsed.as_secs_f64()
    )?;
    Ok((
        Captured {
            exit,
            serial,
            elapsed,
        },
        observed,
    ))
}

fn spawn_serial_reader(
    child: &mut Child,
    serial: Arc<Mutex<Vec<u8>>>,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    mut log_file: std::fs::File,
    script: &'static [SerialStep],
    done: std::sync::mpsc::Sender<()>,
) {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        let mut steps = script.iter();
        let mut next = steps.next();
        // Output position after which the next step's prompt must appear.
        let mut search_from = 0;
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let _ = log_file.write_all(&chunk[..n]);
            let mut buf = serial.lock().expect("only this thread writes");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(step) = next {
                let hay = &buf[search_from..];
                match find_bytes(hay, step.wait_for.as_bytes()) {
                    Some(pos) => {
                        search_from += pos + step.wait_for.len();
                        if let Some(stdin) = stdin.lock().expect("writers hold it briefly").as_mut()
                        {
                            let _ = stdin.write_all(step.send.as_bytes());
                            let _ = stdin.flush();
                        }
                        next = steps.next();
                    }
                    None => break,
                }
            }
        }
        let _ = done.send(());
    });
}

pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> TaskResult<Exit> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Exit::from_status(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Exit::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of `text`, for failure reports.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Path of a suite's serial log.
pub fn log_path(layout: &Layout, name: &str) -> PathBuf {
    layout.qemu_logs().join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_comments_words_and_placeholders() {
        let text =
            "# header\n-machine q35\n\n-drive format=raw,file={image}  # trailing\n-bios {ovmf}\n";
        let args = expand_profile(text, &[("image", "/t/a.img"), ("ovmf", "/o.fd")]).unwrap();
        assert_eq!(
            args,
            [
                "-machine",
                "q35",
                "-drive",
                "format=raw,file=/t/a.img",
                "-bios",
                "/o.fd"
            ]
        );
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        assert!(expand_profile("-x {imag}", &[("image", "a")]).is_err());
        assert!(expand_profile("-x {image", &[("image", "a")]).is_err());
    }

    #[test]
    fn shipped_profiles_expand() {
        let layout = Layout::from_xtask_manifest();
        for fw in [Firmware::Bios, Firmware::Uefi] {
            for accel in [Accel::Tcg, Accel::Kvm] {
                let machine = Machine {
                    firmware: fw,
                    accel,
                    image: Path::new("/img"),
                    ovmf: Some(Path::new("/ovmf.fd")),
                    extra_profiles: &["bench", "gdb"],
                };
                let args = args(&layout, &machine).unwrap();
                assert!(args
                    .iter()
                    .any(|a| a == "isa-debug-exit,iobase=0xf4,iosize=0x04"));
                assert!(args.iter().any(|a| a == "format=raw,file=/img"));
                assert_eq!(args.iter().any(|a| a == "/ovmf.fd"), fw == Firmware::Uefi);
                assert_eq!(args.iter().any(|a| a == "-enable-kvm"), accel == Accel::Kvm);
            }
        }
    }

    #[test]
    fn a_pc_has_no_exit_device_and_may_reboot() {
        let layout = Layout::from_xtask_manifest();
        let machine = Machine {
            firmware: Firmware::Bios,
            accel: Accel::Tcg,
            image: Path::new("/img"),
            ovmf: None,
            extra_profiles: &["display"],
        };
        let all = args(&layout, &machine).unwrap();
        let pc = as_a_pc(all.clone());
        assert!(!pc
            .iter()
            .any(|a| a == "-no-reboot" || a.contains("debug-exit")));
        // Only those went: three words.
        assert_eq!(pc.len() + 3, all.len());
        assert!(pc.iter().any(|a| a == "format=raw,file=/img"));
        assert!(pc.windows(2).any(|w| w == ["-vga", "std"]));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\nd", 2), "c\nd");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn captured_run_times_out_and_keeps_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello; sleep 30"]);
        let got = run_captured(cmd, Duration::from_millis(500), &log, &[]).unwrap();
        assert_eq!(got.exit, Exit::TimedOut);
        assert!(got.serial.contains("hello"));
        assert!(std::fs::read_to_string(&log).unwrap().contains("hello"));
    }

    #[test]
    fn captured_run_answers_scripted_prompts() {
        static SCRIPT: &[SerialStep] = &[SerialStep {
            wait_for: "name? ",
            send: "panda\n",
        }];
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf 'name? '; read n; echo \"hi $n\"; exit 33"]);
        let got = run_captured(cmd, Duration::from_secs(10), &log, SCRIPT).unwrap();
        assert_eq!(got.exit, Exit::Code(33));
        assert!(got.serial.contains("hi panda"), "{}", got.serial);
    }
}
