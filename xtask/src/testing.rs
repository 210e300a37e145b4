//! `cargo xtask test`: host tests, a short smoke run of every fuzz target
//! (one test each), then every QEMU suite, then the plain summary line
//! `N passed, M failed`.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::build::{self, ImageSpec};
use crate::cargo_test;
use crate::fail;
use crate::keyboard;
use crate::layout::{KernelKind, Layout, Profile};
use crate::process::{cargo, TaskResult};
use crate::qemu::{self, Accel, Machine};
use crate::screen;
use crate::serial;
use crate::setup::{self, Needs};
use crate::suites::{Suite, SUITES};

/// Lines of serial log shown when a suite fails.
const TAIL_LINES: usize = 30;

pub struct Options {
    pub profile: Profile,
    pub host: bool,
    pub qemu: bool,
    /// Run only suites with these names (all if empty).
    pub only: Vec<String>,
    /// The power-cut suite's cuts and seed.
    pub cuts: crate::disk_suites::CutOptions,
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

/// Returns whether everything passed.
pub fn run(layout: &Layout, opts: &Options) -> TaskResult<bool> {
    let suites: Vec<&Suite> = SUITES
        .iter()
        .filter(|s| opts.only.is_empty() || opts.only.iter().any(|o| o == s.name))
        .collect();
    if let Some(unknown) = opts
        .only
        .iter()
        .find(|o| !SUITES.iter().any(|s| s.name == *o))
    {
        let names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
        return Err(fail!("no suite `{unknown}`; suites: {}", names.join(", ")));
    }
    let host = setup::ensure(Needs {
        nightly: opts.qemu,
        qemu: opts.qemu,
    })?;

    let _lock = crate::lock::acquire(layout)?;
    let mut tally = Tally::default();
    if opts.host {
        host_tests(layout, &mut tally)?;
        let (passed, failed) = crate::fuzz::smoke(layout);
        tally.passed += passed;
        tally.failed += failed;
    }
    if opts.qemu && !suites.is_empty() {
        println!("\n== QEMU suites ==");
        // A build error fails the affected suites but not the whole run, so
        // the summary line still accounts for every suite.
        let kernels = [KernelKind::System, KernelKind::Test]
            .into_iter()
            .filter(|kind| {
                suites
                    .iter()
                    .any(|s| KernelKind::for_mode(s.boot_cfg.mode) == *kind)
            })
            .map(|kind| build::kernel(layout, opts.profile, kind).map(|elf| (kind, elf)))
            .collect::<TaskResult<Vec<_>>>();
        match kernels {
            Ok(kernels) => {
                for suite in suites {
                    let ovmf = host.ovmf.as_deref();
                    let kind = KernelKind::for_mode(suite.boot_cfg.mode);
                    let kernel = kernels
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .map(|(_, elf)| elf.as_path())
                        .expect("every kind a suite needs was built");
                    if let Err(e) = run_suite(layout, opts, kernel, suite, ovmf, &mut tally) {
                        println!("  {:<20} FAILED  {e}", suite.name);
                        tally.failed += 1;
                    }
                }
            }
            Err(e) => {
                println!("  kernel build failed: {e}");
                for suite in suites {
                    println!("  {:<20} FAILED  (kernel did not build)", suite.name);
                    tally.failed += 1;
                }
            }
        }
    }
    println!("\n{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally.failed == 0)
}

fn host_tests(layout: &Layout, tally: &mut Tally) -> TaskResult<()> {
    println!("== host tests (cargo test) ==");
    let log_path = layout.host_test_log();
    std::fs::create_dir_all(log_path.parent().expect("log has a directory"))?;
    let mut log = std::fs::File::create(&log_path)?;
    let mut child = cargo()
        .current_dir(&layout.root)
        .args(["test", "--no-fail-fast"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail!("cannot start cargo test: {e}"))?;
    let mut output = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        writeln!(log, "{line}")?;
        // Echo per-binary results that ran something; the many empty
        // ones (doc-tests of crates without examples) are noise.
        if line.starts_with("test result:") {
            let totals = cargo_test::parse(&line);
            if totals.passed + totals.failed > 0 {
                println!("  {line}");
            }
        }
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait()?;
    let totals = cargo_test::parse(&output);
    let mut failed = totals.failed;
    if !status.success() && failed == 0 {
        // Nothing reported a failing test, yet cargo failed: a build error.
        failed = 1;
        println!("  cargo test failed before running all tests ({status}); see errors above");
    }
    for name in cargo_test::failed_names(&output) {
        println!("  FAILED host test: {name}");
    }
    println!(
        "host tests: {} passed, {} failed (log: {})",
        totals.passed,
        failed,
        log_path.display()
    );
    tally.passed += totals.passed;
    tally.failed += failed;
    Ok(())
}

/// The machine reset once (the `reboot`) and then powered off through
/// ACPI: QMP's `RESET` with reason `guest-reset`, then `SHUTDOWN` with
/// reason `guest-shutdown` (what QEMU reports for an S5 request; a
/// triple fault or the exit device would say otherwise).
fn check_power_events(events: &[serde_json::Value], report: &mut serial::Report) {
    let reasons: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| {
            let name = e.get("event")?.as_str()?.to_string();
            let reason = e
                .pointer("/data/reason")
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string();
            Some((name, reason))
        })
        .filter(|(name, _)| name == "RESET" || name == "SHUTDOWN")
        .collect();
    let seen = || format!("QMP events: {reasons:?}");
    match reasons
        .iter()
        .position(|(n, r)| n == "RESET" && r == "guest-reset")
    {
        Some(_) => report.pass("power/reset_by_guest"),
        None => report.fail("power/reset_by_guest", seen()),
    }
    match reasons.last() {
        Some((n, r)) if n == "SHUTDOWN" && r == "guest-shutdown" => {
            report.pass("power/acpi_power_off")
        }
        _ => report.fail("power/acpi_power_off", seen()),
    }
}

/// Adds the screenshot's checks to `report`: it was taken, and it shows
/// exactly the console's text. On a mismatch the expected image is kept
/// beside the screenshot (`<suite>.expected.png`).
fn check_screen(
    taken: Option<Result<screen::Taken, String>>,
    log: &std::path::Path,
    report: &mut serial::Report,
) {
    let taken = match taken {
        Some(Ok(taken)) => taken,
        Some(Err(why)) => return report.fail("screen/screenshot", why),
        None => return report.fail("screen/screenshot", "not taken before QEMU exited".into()),
    };
    report.pass("screen/screenshot");
    // What the screenshot shows after this line, the ring-3 display
    // service drew (the kernel's early console drew what is above it).
    match crate::qemu::find_bytes(&taken.serial, screen::TAKE_OVER_LINE.as_bytes()) {
        Some(_) => report.pass("screen/drawn_by_the_display_service"),
        None => report.fail(
            "screen/drawn_by_the_display_service",
            format!(
                "`{}` is not in the output before the screenshot",
                screen::TAKE_OVER_LINE
            ),
        ),
    }
    let (width, height) = (taken.shot.width, taken.shot.height);
    let verdict = screen::expected_screen(&taken.serial, width, height).and_then(|expected| {
        screen::compare(&taken.shot, &expected).inspect_err(|_| {
            let _ = screen::write_png(
                &log.with_extension("expected.png"),
                width,
                height,
                expected.pixels(),
            );
        })
    });
    match verdict {
        Ok(()) => report.pass("screen/matches_console_text"),
        Err(why) => report.fail("screen/matches_console_text", why),
    }
}

fn run_suite(
    layout: &Layout,
    opts: &Options,
    kernel: &std::path::Path,
    suite: &Suite,
    ovmf: Option<&std::path::Path>,
    tally: &mut Tally,
) -> TaskResult<()> {
    let manifest = suite.manifest.map(|m| layout.root.join(m));
    let spec = ImageSpec {
        boot_cfg: suite.boot_cfg,
        programs: suite.programs,
        manifest: manifest.as_deref(),
    };
    let image = layout.suite_dir().join(format!("{}.img", suite.name));
    let ramdisk = layout
        .suite_dir()
        .join(format!("{}.ramdisk.tar", suite.name));
    build::images(
        layout,
        opts.profile,
        kernel,
        &spec,
        &ramdisk,
        &[(suite.firmware, image.clone())],
    )?;
    let machine = Machine {
        firmware: suite.firmware,
        accel: Accel::Tcg,
        image: &image,
        ovmf,
        extra_profiles: &[],
    };
    let log = qemu::log_path(layout, suite.name);
    if let Some(run) = suite.disk {
        print!("  {:<20} ", suite.name);
        std::io::stdout().flush()?;
        let started = std::time::Instant::now();
        let mut report = serial::Report::default();
        let disk_image = layout.suite_dir().join(format!("{}.disk.img", suite.name));
        crate::disk_suites::run(
            run,
            &|| qemu::command(layout, &machine),
            &disk_image,
            &log,
            opts.cuts,
            &mut report,
        )?;
        let secs = started.elapsed().as_secs_f64();
        if report.failed.is_empty() {
            println!("ok      {} tests, {secs:.1}s", report.passed.len());
        } else {
            println!(
                "FAILED  {} passed, {} failed, {secs:.1}s (log: {})",
                report.passed.len(),
                report.failed.len(),
                log.display()
            );
            for (name, reason) in &report.failed {
                println!("      FAIL {name}: {reason}");
            }
            let transcript = std::fs::read_to_string(&log).unwrap_or_default();
            print_tail(&transcript);
            keep_failed_run(layout, suite.name, &log, Some(&disk_image));
        }
        tally.passed += report.passed.len();
        tally.failed += report.failed.len();
        return Ok(());
    }
    let mut args = qemu::args(layout, &machine)?;
    if suite.power_off {
        args = qemu::as_a_pc(args);
    }
    let mut cmd = std::process::Command::new(crate::setup::QEMU_BINARY);
    cmd.args(args);
    let observer = (suite.screen.is_some() || !suite.keys.is_empty()).then(|| {
        let qmp = layout.suite_dir().join(format!("{}.qmp", suite.name));
        let _ = std::fs::remove_file(&qmp);
        if suite.screen.is_some() {
            cmd.args(["-vga", "std"]);
        }
        cmd.arg("-qmp")
            .arg(format!("unix:{},server,nowait", qmp.display()));
        keyboard::observer(keyboard::Plan {
            qmp,
            steps: suite.keys,
            screen: suite
                .screen
                .map(|check| (check, log.with_extension("ppm"), log.with_extension("png"))),
            layout: suite
                .boot_cfg
                .keyboard
                .unwrap_or(pandagen_ps2_keyboard::keymap::Layout::Us),
        })
    });
    print!("  {:<20} ", suite.name);
    std::io::stdout().flush()?;
    let (captured, observed) = qemu::run_observed(
        cmd,
        Duration::from_secs(suite.timeout_secs),
        &log,
        suite.input,
        observer,
    )?;
    let mut report = if suite.expect.is_empty() {
        serial::parse_trusting(&captured.serial, suite.verdicts_from)
    } else {
        serial::markers(&captured.serial, suite.expect)
    };
    let mut observed = observed.unwrap_or_default();
    if !suite.keys.is_empty() {
        match observed.error.take() {
            None => report.pass("keys/typed"),
            Some(why) => report.fail("keys/typed", why),
        }
    }
    if suite.screen.is_some() {
        check_screen(observed.taken.take(), &log, &mut report);
    }
    let expected_exit = if suite.power_off {
        check_power_events(&observed.events, &mut report);
        0
    } else {
        qemu::EXIT_PASS
    };
    let verdict = serial::judge_exit(&report, captured.exit, expected_exit);
    let secs = captured.elapsed.as_secs_f64();
    if verdict.ok {
        println!("ok      {} tests, {secs:.1}s", verdict.passed);
        if let (chars @ 1.., took) = observed.longest {
            println!(
                "      typed {chars} characters on the keyboard in {:.1}s",
                took.as_secs_f64()
            );
        }
    } else {
        println!(
            "FAILED  {} passed, {} failed, {secs:.1}s (log: {})",
            verdict.passed,
            verdict.failed,
            log.display()
        );
        for (name, reason) in &report.failed {
            println!("      FAIL {name}: {reason}");
        }
        for problem in &verdict.problems {
            println!("      {problem}");
        }
        for line in &report.malformed {
            println!("      malformed protocol line: {line}");
        }
        print_tail(&captured.serial);
        keep_failed_run(layout, suite.name, &log, None);
    }
    tally.passed += verdict.passed;
    tally.failed += verdict.failed;
    Ok(())
}

fn print_tail(serial: &str) {
    println!("      --- last {TAIL_LINES} lines of serial output ---");
    for line in qemu::tail(serial, TAIL_LINES).lines() {
        println!("      | {}", line.trim_end_matches('\r'));
    }
}

/// Keep a failed run's log (and disk image) where the next run does not
/// overwrite it, and say where.
fn keep_failed_run(
    layout: &Layout,
    suite: &str,
    log: &std::path::Path,
    disk: Option<&std::path::Path>,
) {
    let dir = layout.qemu_logs().join("failed");
    match crate::failed_runs::keep(&dir, suite, log, disk) {
        Ok(kept) => println!(
            "      kept this run's log (and disk image) as {}",
            kept.display()
        ),
        Err(e) => println!(
            "      could not keep this run's log in {}: {e}",
            dir.display()
        ),
    }
}
