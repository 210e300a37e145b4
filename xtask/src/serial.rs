//! The serial test protocol (the contract with the kernel; see
//! `qemu/README.md`):
//!
//! ```text
//! [TEST] PASS <name>
//! [TEST] FAIL <name>: <reason>
//! [SUITE] DONE passed=<n> failed=<m>
//! [BENCH] <name> <value> <unit>
//! ```
//!
//! Markers may be preceded by other output on the same line (firmware text
//! without a newline, a log prefix); everything from the marker on counts.
//! But nothing after [`TASK_OUTPUT_TAG`] is a marker: the kernel starts
//! every log line of a task other than the run's root task with it
//! (`kernel/src/debug_output.rs`), so a service cannot forge a verdict. A
//! suite whose verdicts come from a service (the adversary suite runs
//! under the process manager) names that service ([`parse_trusting`]); its
//! name is the one the process manager gave it from the manifest.

use crate::qemu::Exit;

/// One benchmark result.
#[derive(Clone, Debug, PartialEq)]
pub struct Bench {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// Everything the protocol lines of one run said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub passed: Vec<String>,
    /// `(name, reason)`.
    pub failed: Vec<(String, String)>,
    /// `(passed, failed)` from the `[SUITE] DONE` line.
    pub done: Option<(u64, u64)>,
    pub benches: Vec<Bench>,
    /// Lines with a marker that did not parse, kept for diagnostics.
    pub malformed: Vec<String>,
}

impl Report {
    /// A check xtask made itself (not a guest line); the DONE tally counts
    /// it like the guest's own.
    pub fn pass(&mut self, name: &str) {
        self.passed.push(name.to_string());
        if let Some((passed, _)) = self.done.as_mut() {
            *passed += 1;
        }
    }

    /// A failed check xtask made itself.
    pub fn fail(&mut self, name: &str, why: String) {
        self.failed.push((name.to_string(), why));
        if let Some((_, failed)) = self.done.as_mut() {
            *failed += 1;
        }
    }
}

const TEST: &str = "[TEST] ";
const SUITE: &str = "[SUITE] ";
const BENCH: &str = "[BENCH] ";
/// How the kernel begins a line written by a task other than the root.
pub const TASK_OUTPUT_TAG: &str = "[task ";

pub fn parse(serial: &str) -> Report {
    parse_trusting(serial, None)
}

/// [`parse`], also taking the markers of the task named `trusted`.
pub fn parse_trusting(serial: &str, trusted: Option<&str>) -> Report {
    let mut report = Report::default();
    for raw in serial.lines() {
        let line = raw.trim_end_matches('\r');
        let line = match trusted {
            Some(name) => untag(line, name),
            None => line,
        };
        let ok = if let Some(rest) = after(line, TEST) {
            parse_test(rest, &mut report)
        } else if let Some(rest) = after(line, SUITE) {
            parse_done(rest, &mut report)
        } else if let Some(rest) = after(line, BENCH) {
            parse_bench(rest, &mut report)
        } else {
            true
        };
        if !ok {
            report.malformed.push(line.to_string());
        }
    }
    report
}

/// The text of a line of task `name` (`[task <id> <name>] text`), or the
/// line unchanged if another task or the kernel wrote it.
fn untag<'a>(line: &'a str, name: &str) -> &'a str {
    let Some(tagged) = line.strip_prefix(TASK_OUTPUT_TAG) else {
        return line;
    };
    let Some((id, rest)) = tagged.split_once(' ') else {
        return line;
    };
    let from_it = rest.strip_prefix(name).and_then(|r| r.strip_prefix("] "));
    match from_it {
        Some(text) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => text,
        _ => line,
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let trusted = match line.find(TASK_OUTPUT_TAG) {
        Some(tag) => &line[..tag],
        None => line,
    };
    trusted.find(marker).map(|i| &line[i + marker.len()..])
}

fn parse_test(rest: &str, report: &mut Report) -> bool {
    if let Some(name) = rest.strip_prefix("PASS ") {
        let name = name.trim();
        if name.is_empty() {
            return false;
        }
        report.passed.push(name.to_string());
        true
    } else if let Some(body) = rest.strip_prefix("FAIL ") {
        let (name, reason) = match body.split_once(": ") {
            Some((n, r)) => (n.trim(), r.trim()),
            None => (body.trim_end_matches(':').trim(), ""),
        };
        if name.is_empty() {
            return false;
        }
        report.failed.push((name.to_string(), reason.to_string()));
        true
    } else {
        false
    }
}

fn parse_done(rest: &str, report: &mut Report) -> bool {
    let Some(fields) = rest.strip_prefix("DONE") else {
        return false;
    };
    let mut passed = None;
    let mut failed = None;
    for field in fields.split_whitespace() {
        match field.split_once('=') {
            Some(("passed", v)) => passed = v.parse().ok(),
            Some(("failed", v)) => failed = v.parse().ok(),
            _ => {}
        }
    }
    match (passed, failed) {
        (Some(p), Some(f)) => {
            report.done = Some((p, f));
            true
        }
        _ => false,
    }
}

fn parse_bench(rest: &str, report: &mut Report) -> bool {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [name, value, unit] = words[..] else {
        return false;
    };
    match value.parse::<f64>() {
        Ok(value) if value.is_finite() => {
            report.benches.push(Bench {
                name: name.to_string(),
                value,
                unit: unit.to_string(),
            });
            true
        }
        _ => false,
    }
}

/// A report for a run that prints no protocol lines: each `(name, text)`
/// passes if `text` appears in `serial` after the previous one's match, and
/// fails otherwise; the DONE counts are the tally, so `judge` applies
/// unchanged (QEMU must still exit 33).
pub fn markers(serial: &str, expect: &[(&str, &str)]) -> Report {
    let mut report = Report::default();
    let mut from = 0;
    for (name, text) in expect {
        match serial[from..].find(text) {
            Some(at) => {
                from += at + text.len();
                report.passed.push(name.to_string());
            }
            None => report.failed.push((
                name.to_string(),
                format!("`{text}` not in the output after the previous check"),
            )),
        }
    }
    report.done = Some((report.passed.len() as u64, report.failed.len() as u64));
    report
}

/// A suite's verdict: per-test counts plus whether the suite as a whole passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub passed: usize,
    pub failed: usize,
    pub ok: bool,
    /// Why the suite failed beyond individual FAIL lines.
    pub problems: Vec<String>,
}

/// Judges one QEMU run. The suite passes only if QEMU exited 33, the DONE
/// line was seen with failed=0, and its counts agree with the per-test
/// lines. A suite that fails without any FAIL line still counts one failed
/// test, so a crash or hang can never read as "0 failed".
#[cfg(test)]
pub fn judge(report: &Report, exit: Exit) -> Verdict {
    judge_exit(report, exit, crate::qemu::EXIT_PASS)
}

/// [`judge`] for a run that must end with QEMU's status `expected` (0 for
/// a machine without the exit device that powers itself off).
pub fn judge_exit(report: &Report, exit: Exit, expected: i32) -> Verdict {
    let mut problems = Vec::new();
    if exit != Exit::Code(expected) {
        problems.push(exit.describe());
    }
    match report.done {
        None => problems.push("no `[SUITE] DONE` line".into()),
        Some((p, f)) => {
            if f != 0 {
                problems.push(format!("kernel reported failed={f}"));
            }
            if (p, f) != (report.passed.len() as u64, report.failed.len() as u64) {
                problems.push(format!(
                    "DONE says passed={p} failed={f} but the log has {} PASS and {} FAIL lines",
                    report.passed.len(),
                    report.failed.len()
                ));
            }
        }
    }
    if report.passed.is_empty() && report.failed.is_empty() && report.benches.is_empty() {
        problems.push("no `[TEST]` lines".into());
    }
    let ok = problems.is_empty() && report.failed.is_empty();
    let mut failed = report.failed.len();
    if !ok && failed == 0 {
        failed = 1;
    }
    Verdict {
        passed: report.passed.len(),
        failed,
        ok,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{EXIT_FAIL, EXIT_PASS};

    const GOOD: &str = "\
SeaBIOS (version 1.16)\r
PandaGen 0.1.0 (bios)\r
[TEST] PASS frames::no_double_alloc\r
[TEST] PASS heap::reuse\r
[SUITE] DONE passed=2 failed=0\r
";

    #[test]
    fn markers_must_appear_in_order() {
        let serial = "boot\nready in 5 ms\n> ps\ntasks (3)\n> bye\n";
        let r = markers(
            serial,
            &[("ready", "ready in"), ("ps", "tasks ("), ("bye", "bye")],
        );
        assert_eq!(r.passed, ["ready", "ps", "bye"]);
        assert!(judge(&r, Exit::Code(EXIT_PASS)).ok);
        let r = markers(serial, &[("ps", "tasks ("), ("ready", "ready in")]);
        assert_eq!(r.passed, ["ps"]);
        assert_eq!(r.failed.len(), 1);
        assert!(!judge(&r, Exit::Code(EXIT_PASS)).ok);
        let r = markers(serial, &[("ready", "ready in")]);
        assert!(!judge(&r, Exit::Code(EXIT_FAIL)).ok);
    }

    #[test]
    fn parses_pass_fail_done_and_bench_lines() {
        let r = parse(
            "boot\n[TEST] PASS a\n[TEST] FAIL b: expected 1, got 2\n\
             [SUITE] DONE passed=1 failed=1\n[BENCH] ipc_call 189 instructions\n",
        );
        assert_eq!(r.passed, ["a"]);
        assert_eq!(
            r.failed,
            [("b".to_string(), "expected 1, got 2".to_string())]
        );
        assert_eq!(r.done, Some((1, 1)));
        assert_eq!(
            r.benches,
            [Bench {
                name: "ipc_call".into(),
                value: 189.0,
                unit: "instructions".into()
            }]
        );
        assert!(r.malformed.is_empty());
    }

    #[test]
    fn marker_after_other_output_on_the_line_counts() {
        let r = parse("\x1b[2J garbage[TEST] PASS late\n INFO [BENCH] x 1.5 ns\n");
        assert_eq!(r.passed, ["late"]);
        assert_eq!(r.benches[0].value, 1.5);
    }

    #[test]
    fn a_task_other_than_the_root_cannot_print_a_verdict() {
        let r = parse(
            "[task 7 transformer] [TEST] PASS forged\n\
             [task 7 x] [SUITE] DONE passed=9 failed=0\n\
             [task 7 [TEST] PASS x] y\n\
             [TEST] PASS real\n",
        );
        assert_eq!(r.passed, ["real"]);
        assert!(r.done.is_none() && r.malformed.is_empty());
    }

    #[test]
    fn a_suite_trusts_only_the_task_it_names() {
        let log = "[task 6 adversary] [TEST] PASS real\n\
                   [task 9 attacker] [TEST] PASS forged\n\
                   [task 9 adversary-x] [TEST] PASS forged_too\n\
                   [task 6 adversary] [SUITE] DONE passed=1 failed=0\n";
        let r = parse_trusting(log, Some("adversary"));
        assert_eq!(r.passed, ["real"]);
        assert_eq!(r.done, Some((1, 0)));
        assert!(parse(log).passed.is_empty());
    }

    #[test]
    fn malformed_marker_lines_are_kept() {
        let r = parse("[TEST] MAYBE x\n[SUITE] DONE passed=x\n[BENCH] a b c\n[TEST] PASS \n");
        assert_eq!(r.malformed.len(), 4);
        assert!(r.passed.is_empty() && r.done.is_none() && r.benches.is_empty());
    }

    #[test]
    fn clean_run_passes() {
        let v = judge(&parse(GOOD), Exit::Code(EXIT_PASS));
        assert_eq!(
            v,
            Verdict {
                passed: 2,
                failed: 0,
                ok: true,
                problems: vec![]
            }
        );
    }

    #[test]
    fn timeout_fails_even_after_passes() {
        let log = "[TEST] PASS a\n[TEST] PASS b\n";
        let v = judge(&parse(log), Exit::TimedOut);
        assert!(!v.ok);
        assert_eq!((v.passed, v.failed), (2, 1));
    }

    #[test]
    fn crash_without_output_counts_one_failure() {
        let v = judge(&parse("SeaBIOS\n"), Exit::Code(0));
        assert!(!v.ok);
        assert_eq!((v.passed, v.failed), (0, 1));
    }

    #[test]
    fn exit_33_without_done_line_fails() {
        let v = judge(&parse("[TEST] PASS a\n"), Exit::Code(EXIT_PASS));
        assert!(!v.ok);
        assert_eq!(v.failed, 1);
    }

    #[test]
    fn reported_failures_are_counted_per_test() {
        let log =
            "[TEST] PASS a\n[TEST] FAIL b: x\n[TEST] FAIL c: y\n[SUITE] DONE passed=1 failed=2\n";
        let v = judge(&parse(log), Exit::Code(EXIT_FAIL));
        assert!(!v.ok);
        assert_eq!((v.passed, v.failed), (1, 2));
    }

    #[test]
    fn done_counts_must_match_test_lines() {
        let log = "[TEST] PASS a\n[SUITE] DONE passed=3 failed=0\n";
        let v = judge(&parse(log), Exit::Code(EXIT_PASS));
        assert!(!v.ok, "lost serial output must not pass");
    }

    #[test]
    fn exit_33_with_failed_nonzero_fails() {
        let log = "[TEST] FAIL a: b\n[SUITE] DONE passed=0 failed=1\n";
        assert!(!judge(&parse(log), Exit::Code(EXIT_PASS)).ok);
    }

    #[test]
    fn a_power_off_run_must_exit_0_and_nothing_else() {
        let report = markers(
            "hello\nshutting down\n",
            &[("a", "hello"), ("b", "shutting down")],
        );
        assert!(judge_exit(&report, Exit::Code(0), 0).ok);
        // The exit device (33) or a timeout is not a power-off.
        assert!(!judge_exit(&report, Exit::Code(EXIT_PASS), 0).ok);
        assert!(!judge_exit(&report, Exit::TimedOut, 0).ok);
    }
}
