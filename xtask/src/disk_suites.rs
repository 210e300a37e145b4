//! Suites that boot more than once on one virtio-blk disk image.
//!
//! * **reboot**: the system (console included) on a fresh disk; the first
//!   boot puts values in the storage service's home map and shuts down;
//!   the second reads every value and every version back.
//! * **power-cut**: storage and `powercut_writer` on a fresh disk. Each
//!   boot the writer checks what the previous boots left (`POWERCUT
//!   PRESENT <n>`: `n` records, none torn) and then commits numbered
//!   records, printing `POWERCUT ACK <i>` after each acknowledgement.
//!   xtask SIGKILLs QEMU at a seeded random moment after the first
//!   acknowledgement, and boots again on the same image. Every
//!   acknowledged record must be present at the next boot, nothing may be
//!   torn, and the journal must open. When storage refuses a commit
//!   because its memory is full (`POWERCUT FULL <n>`), one more boot
//!   checks that image, and the run goes on with a fresh image until it
//!   has made all its cuts (storage keeps every version, so a long run
//!   fills an image about every 50 cuts). The seed is printed; `--seed`
//!   and `--cuts` (default [`DEFAULT_CUTS`]) repeat or lengthen a run.
//! * **driver crash**: storage and `drivercrash_suite` on a fresh disk, one
//!   boot. The suite program crashes the virtio-blk driver (through the
//!   process manager's control capability, which only it holds) while
//!   storage writes, and prints its checks as `[TEST]` lines; only lines
//!   of the task `drivercrash` count.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::disk;
use crate::fail;
use crate::process::TaskResult;
use crate::serial::Report;

/// Power cuts per `cargo xtask test` run.
pub const DEFAULT_CUTS: u64 = 25;
/// The disk of these suites, in MiB.
const DISK_MIB: u64 = 32;
/// How long one boot may take to reach the writer (or the prompt).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// The latest a cut comes after the first acknowledgement of a boot.
const MAX_CUT_DELAY_MS: u64 = 1500;

/// Which multi-boot suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskRun {
    Reboot,
    PowerCut,
    DriverCrash,
}

/// The task whose `[TEST]` lines are the driver-crash suite's verdicts.
const DRIVER_CRASH_TASK: &str = "drivercrash";
/// How long the driver-crash suite's one boot may take.
const DRIVER_CRASH_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of the power-cut suite.
#[derive(Clone, Copy, Debug, Default)]
pub struct CutOptions {
    pub cuts: Option<u64>,
    pub seed: Option<u64>,
}

/// Serial bytes as they arrived: the bytes, and for each read the host
/// time since QEMU started and how many bytes had arrived by then.
#[derive(Default)]
struct Serial {
    bytes: Vec<u8>,
    arrivals: Vec<(Duration, usize)>,
}

/// A running QEMU whose serial output is collected as it comes.
struct Machine {
    child: Child,
    serial: Arc<Mutex<Serial>>,
    started: Instant,
}

impl Machine {
    fn start(mut cmd: Command, disk_image: &Path) -> TaskResult<Machine> {
        cmd.args(disk::qemu_args(disk_image))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| fail!("cannot start QEMU: {e}"))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let serial = Arc::new(Mutex::new(Serial::default()));
        let sink = Arc::clone(&serial);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut serial = sink.lock().expect("reader");
                serial.bytes.extend_from_slice(&buf[..n]);
                let arrived = serial.bytes.len();
                serial.arrivals.push((started.elapsed(), arrived));
            }
        });
        Ok(Machine {
            child,
            serial,
            started,
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.serial.lock().expect("serial").bytes).into_owned()
    }

    /// When (host time since QEMU started) the serial output first held
    /// `needle`.
    fn first_seen(&self, needle: &str) -> Option<Duration> {
        let serial = self.serial.lock().expect("serial");
        let at = serial
            .bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())?;
        serial
            .arrivals
            .iter()
            .find(|(_, arrived)| *arrived >= at + needle.len())
            .map(|(when, _)| *when)
    }

    /// Wait until `done` holds for the serial text (`Some`), QEMU exits or
    /// `timeout` passes (`None`).
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = done(&self.text()) {
                return Some(found);
            }
            if Instant::now() >= deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return done(&self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, text: &str) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    /// The power cut: SIGKILL, no chance to flush anything.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        self.text()
    }

    /// Wait for QEMU to exit by itself (after `shutdown`), or kill it.
    fn finish(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(100));
                return self.text();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill()
    }
}

/// Run `suite`'s boots on a fresh disk beside its image; `make` gives a
/// QEMU command for the suite's image (without the disk). Appends the
/// serial output of every boot to `log`.
pub fn run(
    which: DiskRun,
    make: &dyn Fn() -> TaskResult<Command>,
    disk_image: &Path,
    log: &Path,
    options: CutOptions,
    report: &mut Report,
) -> TaskResult<()> {
    disk::prepare(disk_image, DISK_MIB, true)?;
    if let Some(dir) = log.parent() {
        // Run alone (`--suite powercut-bios` in a fresh clone), no other
        // suite has made the log directory.
        std::fs::create_dir_all(dir)?;
    }
    let mut transcript = String::new();
    let result = match which {
        DiskRun::Reboot => reboot(make, disk_image, &mut transcript, report),
        DiskRun::PowerCut => power_cuts(make, disk_image, &mut transcript, options, report),
        DiskRun::DriverCrash => driver_crash(make, disk_image, &mut transcript, report),
    };
    std::fs::write(log, &transcript)?;
    result
}

/// Type `line` at the prompt and wait for the next prompt; the output
/// between them.
fn command(machine: &mut Machine, line: &str) -> Option<String> {
    let before = machine.text().len();
    machine.send(&format!("{line}\n"));
    machine.wait_for(Duration::from_secs(30), |text| {
        let fresh = text.get(before..)?;
        let echo = fresh.find(line)?;
        let after = &fresh[echo + line.len()..];
        let prompt = after.find("pandagen> ")?;
        Some(after[..prompt].to_string())
    })
}

const PROMPT: &str = "pandagen> ";

fn reboot(
    make: &dyn Fn() -> TaskResult<Command>,
    disk_image: &Path,
    transcript: &mut String,
    report: &mut Report,
) -> TaskResult<()> {
    let puts = [
        ("greeting", "hello"),
        ("greeting", "world"),
        ("colour", "blue"),
    ];
    let mut first = Machine::start(make()?, disk_image)?;
    if first
        .wait_for(BOOT_TIMEOUT, |t| t.contains(PROMPT).then_some(()))
        .is_none()
    {
        transcript.push_str(&first.kill());
        report.fail("reboot/first_boot", "no console prompt".into());
        return Ok(());
    }
    let mut stored = true;
    for (key, value) in puts {
        let out = command(&mut first, &format!("store put {key} {value}")).unwrap_or_default();
        stored &= out.contains(&format!("stored {key}"));
    }
    first.send("shutdown\n");
    transcript.push_str(&first.finish(Duration::from_secs(30)));
    if stored {
        report.pass("reboot/first_boot_stores");
    } else {
        report.fail(
            "reboot/first_boot_stores",
            "a put was not acknowledged".into(),
        );
    }
    let mut second = Machine::start(make()?, disk_image)?;
    if second
        .wait_for(BOOT_TIMEOUT, |t| t.contains(PROMPT).then_some(()))
        .is_none()
    {
        transcript.push_str("\n==== second boot ====\n");
        transcript.push_str(&second.kill());
        report.fail("reboot/second_boot", "no console prompt".into());
        return Ok(());
    }
    let greeting = command(&mut second, "store get greeting").unwrap_or_default();
    let colour = command(&mut second, "store get colour").unwrap_or_default();
    let versions = command(&mut second, "store versions").unwrap_or_default();
    second.send("shutdown\n");
    transcript.push_str("\n==== second boot ====\n");
    transcript.push_str(&second.finish(Duration::from_secs(30)));
    if greeting.contains("greeting = world") && colour.contains("colour = blue") {
        report.pass("reboot/objects_read_back");
    } else {
        report.fail(
            "reboot/objects_read_back",
            format!("got `{}` and `{}`", greeting.trim(), colour.trim()),
        );
    }
    // The home map's creation, then one version per put.
    if versions.contains("map versions (4): ver#1 ver#2 ver#3 ver#4") {
        report.pass("reboot/all_versions_read_back");
    } else {
        report.fail(
            "reboot/all_versions_read_back",
            format!("got `{}`", versions.trim()),
        );
    }
    Ok(())
}

/// Run `cmd` with `disk_image` attached until a task prints a complete
/// `[SUITE] DONE` line (`Some`) or `timeout` passes (`None`), then kill
/// it: for runs whose root, the process manager, never ends them. Returns
/// the serial output.
pub fn run_until_done(
    cmd: Command,
    disk_image: &Path,
    timeout: Duration,
) -> TaskResult<(String, Option<()>)> {
    let mut machine = Machine::start(cmd, disk_image)?;
    let finished = machine.wait_for(timeout, |text| {
        complete_lines(text)
            .any(|line| line.contains("[SUITE] DONE"))
            .then_some(())
    });
    Ok((machine.kill(), finished))
}

fn driver_crash(
    make: &dyn Fn() -> TaskResult<Command>,
    disk_image: &Path,
    transcript: &mut String,
    report: &mut Report,
) -> TaskResult<()> {
    let (text, finished) = run_until_done(make()?, disk_image, DRIVER_CRASH_TIMEOUT)?;
    let guest = crate::serial::parse_trusting(&text, Some(DRIVER_CRASH_TASK));
    transcript.push_str(&text);
    for name in &guest.passed {
        report.pass(name);
    }
    for (name, why) in &guest.failed {
        report.fail(name, why.clone());
    }
    match dma_quarantine_verdict(&text) {
        Ok(released) => {
            print!("({released} quarantined DMA frames released after resets) ");
            report.pass("drivercrash/dma_frames_quarantined_until_the_device_is_reset");
        }
        Err(why) => report.fail(
            "drivercrash/dma_frames_quarantined_until_the_device_is_reset",
            why,
        ),
    }
    let counted = (guest.passed.len() as u64, guest.failed.len() as u64);
    match (finished, guest.done) {
        (Some(()), Some(done)) if done == counted && done.0 > 0 => {}
        (Some(()), Some(done)) => report.fail(
            "drivercrash/done",
            format!("the tally {done:?} does not match the checks seen {counted:?}"),
        ),
        _ => report.fail(
            "drivercrash/done",
            format!(
                "no `[SUITE] DONE` from {DRIVER_CRASH_TASK} within {}s",
                DRIVER_CRASH_TIMEOUT.as_secs()
            ),
        ),
    }
    Ok(())
}

/// The kernel's account of the dead drivers' DMA frames: each death of a
/// DMA holder keeps its frames (`dma quarantine: N frames of task T kept`),
/// and a later instance, after resetting the device, releases all that is
/// kept (`dma quarantine: M frames released by task U`): `M` must be the
/// frames kept since the last release, every one of them still allocated
/// (the kernel logs `was free before its release` otherwise), and `U`
/// none of the dead tasks. At least one release must happen (the suite
/// crashes the driver while it runs). Returns the frames released.
fn dma_quarantine_verdict(text: &str) -> Result<u64, String> {
    const MARK: &str = "dma quarantine: ";
    let mut kept = 0u64;
    let mut dead: Vec<String> = Vec::new();
    let mut released = 0u64;
    let mut releases = 0u64;
    for line in complete_lines(text) {
        let Some(rest) = line.split(MARK).nth(1) else {
            continue;
        };
        if rest.contains("was free before its release") {
            return Err(line.trim().to_string());
        }
        let mut words = rest.split_whitespace();
        let frames: u64 = words
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unreadable: {line}"))?;
        let words: Vec<&str> = words.collect();
        match words.as_slice() {
            ["frames", "of", "task", task, "kept", ..] => {
                kept += frames;
                dead.push((*task).to_string());
            }
            ["frames", "released", "by", "task", task] => {
                if frames != kept {
                    return Err(format!(
                        "{frames} frames released, {kept} were kept since the last release"
                    ));
                }
                if dead.iter().any(|d| d == task) {
                    return Err(format!("{task} released its own quarantine"));
                }
                released += frames;
                releases += 1;
                kept = 0;
                dead.clear();
            }
            _ => return Err(format!("unexpected: {line}")),
        }
    }
    if releases == 0 {
        return Err(format!(
            "no quarantine was released ({kept} frames kept at the end)"
        ));
    }
    Ok(released)
}

/// A small seeded generator (xorshift64*), so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The complete lines of `text`: a line the guest is still writing (no
/// newline yet) is not read, or `PRESENT 60` read as far as `PRESENT 6`
/// would look like lost records.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(str::trim_end)
}

/// The numbers after `prefix` on the complete lines of `text`.
fn numbers(text: &str, prefix: &str) -> Vec<u64> {
    complete_lines(text)
        .filter_map(|l| l.split(prefix).nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// What a boot said about the previous ones.
enum Verdict {
    Present(u64),
    Torn(String),
}

fn verdict(text: &str) -> Option<Verdict> {
    if let Some(line) = complete_lines(text).find(|l| l.contains("POWERCUT TORN")) {
        return Some(Verdict::Torn(line.trim().to_string()));
    }
    numbers(text, "POWERCUT PRESENT ")
        .first()
        .map(|n| Verdict::Present(*n))
}

/// The phases of a power-cut boot, each named with the serial text that
/// ends it (the first kernel log line; the process manager's start order;
/// the driver ready; storage opening the disk; storage running, its
/// journal replayed; the writer's check of what is present; the first
/// acknowledged commit).
const BOOT_PHASES: [(&str, &str); 7] = [
    ("firmware+loader", "pandagen_kernel"),
    ("kernel init", "process-manager: start order"),
    ("pci+driver", " ready: "),
    ("storage start", "the journal is on the virtio-blk disk"),
    ("journal replay", "storage: starting -> running"),
    ("writer check", "POWERCUT PRESENT"),
    ("first commit", "POWERCUT ACK"),
];

/// Host time spent in each of [`BOOT_PHASES`], then from the first
/// acknowledgement to the cut, summed over boots.
#[derive(Default)]
struct PhaseTimes {
    sums: [Duration; BOOT_PHASES.len() + 1],
    boots: u32,
}

impl PhaseTimes {
    /// Add `machine`'s boot, cut `total` after QEMU started; returns the
    /// boot's line for the transcript. A boot missing a phase's line
    /// (it died first) is not added.
    fn add(&mut self, machine: &Machine, total: Duration) -> String {
        let mut line = String::from("phases:");
        let mut previous = Duration::ZERO;
        let mut each = [Duration::ZERO; BOOT_PHASES.len() + 1];
        for (i, (name, marker)) in BOOT_PHASES.iter().enumerate() {
            let Some(at) = machine.first_seen(marker) else {
                line.push_str(&format!(" {name} -"));
                return line;
            };
            each[i] = at.saturating_sub(previous);
            line.push_str(&format!(" {name} {:.2}s", each[i].as_secs_f64()));
            previous = previous.max(at);
        }
        each[BOOT_PHASES.len()] = total.saturating_sub(previous);
        line.push_str(&format!(
            " writing {:.2}s total {:.2}s",
            each[BOOT_PHASES.len()].as_secs_f64(),
            total.as_secs_f64()
        ));
        for (sum, d) in self.sums.iter_mut().zip(each) {
            *sum += d;
        }
        self.boots += 1;
        line
    }

    /// The mean of each phase over the boots added.
    fn summary(&self) -> String {
        let n = self.boots.max(1);
        let names = BOOT_PHASES.iter().map(|(name, _)| *name).chain(["writing"]);
        let parts: Vec<String> = names
            .zip(self.sums)
            .map(|(name, sum)| format!("{name} {:.2}s", (sum / n).as_secs_f64()))
            .collect();
        let total: Duration = self.sums.iter().sum();
        format!(
            "mean wall time of a cut over {} boots: {} (total {:.2}s)",
            self.boots,
            parts.join(", "),
            (total / n).as_secs_f64()
        )
    }
}

fn power_cuts(
    make: &dyn Fn() -> TaskResult<Command>,
    disk_image: &Path,
    transcript: &mut String,
    options: CutOptions,
    report: &mut Report,
) -> TaskResult<()> {
    let seed = options.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    let cuts = options.cuts.unwrap_or(DEFAULT_CUTS);
    print!("(seed {seed}, {cuts} cuts) ");
    let _ = std::io::stdout().flush();
    let mut rng = Rng(seed);
    // Acknowledged so far on this image (the highest acknowledged record + 1).
    let mut acknowledged = 0u64;
    let mut problems: Vec<String> = Vec::new();
    let mut made = 0u64;
    // Storage refused a commit as full: no later boot on this image can add
    // a record, so the next boot only checks, and the run goes on on a
    // fresh image.
    let mut full = false;
    let mut images = 1u64;
    // Acknowledged (and checked) on the images already filled.
    let mut on_full_images = 0u64;
    let mut phase_times = PhaseTimes::default();
    let run_started = Instant::now();
    for boot in 0.. {
        let mut machine = Machine::start(make()?, disk_image)?;
        let seen = machine.wait_for(BOOT_TIMEOUT, verdict);
        // The boot after the last cut, or after the image filled up, only
        // checks what the earlier boots left.
        let check_only = made == cuts || full;
        let text = match seen {
            Some(Verdict::Present(n)) => {
                if n < acknowledged {
                    problems.push(format!(
                        "image {images}, boot {boot}: {n} records present, {acknowledged} were acknowledged"
                    ));
                }
                if check_only {
                    machine.kill()
                } else {
                    // Cut at a random moment after writing has begun.
                    let _ = machine.wait_for(Duration::from_secs(30), |t| {
                        let ack = numbers(t, "POWERCUT ACK ").first().copied();
                        ack.or_else(|| numbers(t, "POWERCUT FULL ").first().copied())
                    });
                    let delay = rng.next() % MAX_CUT_DELAY_MS;
                    std::thread::sleep(Duration::from_millis(delay));
                    let phases = phase_times.add(&machine, machine.started.elapsed());
                    let text = machine.kill();
                    made += 1;
                    format!("{text}\n{phases}\n")
                }
            }
            Some(Verdict::Torn(why)) => {
                problems.push(format!("image {images}, boot {boot}: {why}"));
                machine.kill()
            }
            None => {
                problems.push(format!(
                    "image {images}, boot {boot}: the writer did not report within {}s (the journal did not open?)",
                    machine.started.elapsed().as_secs()
                ));
                machine.kill()
            }
        };
        if let Some(max) = numbers(&text, "POWERCUT ACK ").into_iter().max() {
            acknowledged = acknowledged.max(max + 1);
        }
        full |= !numbers(&text, "POWERCUT FULL ").is_empty();
        transcript.push_str(&format!("\n==== image {images}, boot {boot} ====\n{text}"));
        if cuts > DEFAULT_CUTS && boot % 10 == 0 {
            // A long run reports as it goes (its log is written at the end).
            eprintln!(
                "powercut: seed {seed}, {made} of {cuts} cuts, image {images}, {acknowledged} acknowledged on it, {:.0}s",
                run_started.elapsed().as_secs_f64()
            );
        }
        if !problems.is_empty() || (check_only && made == cuts) {
            break;
        }
        if check_only {
            // Everything acknowledged on the full image is there: go on
            // with the same seed on a fresh one.
            disk::prepare(disk_image, DISK_MIB, true)?;
            images += 1;
            on_full_images += acknowledged;
            acknowledged = 0;
            full = false;
        }
    }
    let summary = phase_times.summary();
    transcript.push_str(&format!("\n{summary}\n"));
    println!();
    println!("  {:<20} {summary}", "");
    print!("  {:<20} ", "");
    if images > 1 {
        print!(
            "{made} cuts on {images} disk images (the first {} filled to storage's limit), {} acknowledged commits kept, ",
            images - 1,
            on_full_images + acknowledged
        );
    } else {
        print!("{made} cuts, {acknowledged} acknowledged commits kept, ");
    }
    print!("{:.0}s ", run_started.elapsed().as_secs_f64());
    if problems.is_empty() && made == cuts {
        report.pass("powercut/every_acknowledged_commit_survives");
    } else {
        let why = if problems.is_empty() {
            format!("only {made} of {cuts} cuts were made")
        } else {
            problems.join("; ")
        };
        report.fail("powercut/every_acknowledged_commit_survives", why);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_quarantine_releases_must_match_what_was_kept() {
        let kept = |n: u64, task: &str| {
            format!("[ 1.7] INFO  task: dma quarantine: {n} frames of task {task} kept until its device is reset\n")
        };
        let released = |n: u64, task: &str| {
            format!("[ 2.0] INFO  syscall: dma quarantine: {n} frames released by task {task}\n")
        };
        let good = [
            kept(32, "task#3"),
            kept(32, "task#4"),
            released(64, "task#5"),
        ]
        .concat();
        assert_eq!(dma_quarantine_verdict(&good), Ok(64));
        let short = [kept(32, "task#3"), released(16, "task#5")].concat();
        assert!(dma_quarantine_verdict(&short).is_err());
        let own = [kept(32, "task#3"), released(32, "task#3")].concat();
        assert!(dma_quarantine_verdict(&own).is_err());
        assert!(dma_quarantine_verdict(&kept(32, "task#3")).is_err());
        let freed = [
            kept(1, "task#3"),
            "dma quarantine: frame 0x1000 was free before its release\n".to_string(),
            released(0, "task#5"),
        ]
        .concat();
        assert!(dma_quarantine_verdict(&freed).is_err());
    }

    #[test]
    fn a_line_still_being_written_is_not_read() {
        let text = "POWERCUT ACK 5\nPOWERCUT PRESENT 6";
        assert!(verdict(text).is_none(), "PRESENT 6 may be PRESENT 60");
        assert_eq!(numbers(text, "POWERCUT ACK "), [5]);
        let text = "POWERCUT PRESENT 60\r\n";
        assert!(matches!(verdict(text), Some(Verdict::Present(60))));
    }

    #[test]
    fn writer_lines_are_read_by_number() {
        let text = "[task 9 w] POWERCUT ACK 3\r\nnoise\n[task 9 w] POWERCUT ACK 4\n";
        assert_eq!(numbers(text, "POWERCUT ACK "), vec![3, 4]);
        assert!(matches!(
            verdict("x POWERCUT PRESENT 17\n"),
            Some(Verdict::Present(17))
        ));
        assert!(matches!(
            verdict("POWERCUT PRESENT 3\nPOWERCUT TORN record 2 differs\n"),
            Some(Verdict::Torn(_))
        ));
        assert!(verdict("booting").is_none());
    }

    #[test]
    fn the_cut_moments_repeat_with_the_seed() {
        let a: Vec<u64> = {
            let mut r = Rng(42);
            (0..5).map(|_| r.next() % MAX_CUT_DELAY_MS).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng(42);
            (0..5).map(|_| r.next() % MAX_CUT_DELAY_MS).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|d| *d != a[0]));
    }
}
