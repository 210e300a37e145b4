//! `cargo xtask mutants`: mutation testing with cargo-mutants.
//!
//! cargo-mutants changes one thing in the code at a time (a comparison
//! flipped, a function body replaced by a default value, ...) and runs the
//! package's tests against each change. A change no test notices — a
//! *missed* mutant — marks behaviour the tests do not pin down. The score
//! is the share of viable mutants the tests catch (a mutant whose tests hang
//! past the timeout counts as caught).
//!
//! Mutants that cannot change behaviour (equivalent mutants) are skipped in
//! `.cargo/mutants.toml`, each with its reason. A run of the core takes
//! about 75 minutes and one of the journal about 40 (503 mutants in 39
//! minutes; both measured on two cores shared with other work; a driver,
//! minutes), so neither is part of `cargo xtask test`. The journal's
//! mutants cost 4.6 s each on average (2.4 s to rebuild; a caught mutant
//! 3.5 s in all, a missed one, which runs every test, 27 s), down from
//! about 45 s (a 34 s rebuild at opt-level 2 and every test run to the
//! end): see its target below.
//! Results land in `target/mutants/<target>/mutants.out/` (cargo-mutants'
//! own files: `missed.txt`, `caught.txt`, `outcomes.json`, logs) and a
//! summary in `target/mutants/<target>/summary.txt`.

use std::path::Path;
use std::process::Command;

use crate::fail;
use crate::layout::Layout;
use crate::process::{cargo, display, probe, run_checked, TaskResult};

/// The lowest score a target may have (percent of viable mutants caught).
pub const SCORE_FLOOR: f64 = 95.0;

/// Code held to the mutation score. Add new crates of the core's kind
/// (quotas, device capabilities, drivers) here as they appear. A driver's
/// ring-3 program (`src/bin`) is left out by `.cargo/mutants.toml`: it
/// builds only for ring 3, and the host tests never run it.
pub struct MutantTarget {
    /// What `--crate` names.
    pub name: &'static str,
    /// The cargo package whose tests judge the mutants.
    pub package: &'static str,
    /// The files mutated, as cargo-mutants `--file` globs from the
    /// workspace root; empty: the whole package.
    pub files: &'static [&'static str],
    /// The package's test targets that judge the mutants (`cargo test`
    /// arguments; each mutant's build compiles only these). Doctests are
    /// left out: they show usage, and building them for every mutant would
    /// double the run time.
    pub tests: &'static [&'static str],
    /// Tests left out of every mutant's run (libtest `--skip` filters),
    /// each for a reason given where the target is listed.
    pub skip_tests: &'static [&'static str],
    /// More cargo arguments for every build and test of this target's
    /// mutants (and its unmutated baseline), each for a reason given where
    /// the target is listed.
    pub cargo_args: &'static [&'static str],
    /// More cargo-mutants options for this target, each for a reason
    /// given where the target is listed.
    pub mutants_args: &'static [&'static str],
}

pub const TARGETS: &[MutantTarget] = &[
    MutantTarget {
        name: "pandagen-core",
        package: "pandagen-core",
        files: &[],
        tests: &["--lib", "--tests"],
        skip_tests: &[],
        cargo_args: &[],
        mutants_args: &[],
    },
    MutantTarget {
        name: "journal",
        package: "pandagen-storage",
        files: &[
            "userspace/storage/src/journal.rs",
            "userspace/storage/src/journal/**/*.rs",
        ],
        // The journal's own tests, and the block-device tests that run the
        // storage service over it; the other storage tests use the memory
        // backend and never reach the journal.
        tests: &["--lib", "--test", "blockdev"],
        // Filling a 256 MiB disk takes 16 of the 20 seconds the journal's
        // tests need per mutant. It proves capacity; the same compaction and
        // placement code is judged by the small-disk tests, which fill their
        // disks the same way.
        skip_tests: &["a_256_mib_disk_holds_live_data_on_most_of_it"],
        // Storage is built at opt-level 2 for the ring-3 service and its
        // tests (see the workspace Cargo.toml); rebuilding it so for each
        // mutant took about 34 s of the 45 s a mutant cost on a loaded
        // machine. Unoptimised it rebuilds in about 4 s, and its tests run
        // almost as fast (postcard and serde, not rebuilt, stay optimised):
        // about 17 s a mutant.
        cargo_args: &[
            "--config",
            "profile.dev.package.pandagen-storage.opt-level=0",
            "--config",
            "profile.test.package.pandagen-storage.opt-level=0",
        ],
        // Then the tests are most of a mutant's time: libtest runs every
        // test even after one has failed, so a caught mutant still waited
        // for the slowest (two power-cut sweeps, about 10 s of CPU).
        // nextest stops at the first failure and ends the tests still
        // running.
        mutants_args: &[
            "--test-tool=nextest",
            "--cargo-test-arg=--max-fail=1:immediate",
        ],
    },
    MutantTarget {
        name: "pandagen-pci",
        package: "pandagen-pci",
        files: &[],
        tests: &["--lib", "--tests"],
        skip_tests: &[],
        cargo_args: &[],
        mutants_args: &[],
    },
    MutantTarget {
        name: "pandagen-virtio-blk",
        package: "pandagen-virtio-blk",
        files: &[],
        tests: &["--lib", "--tests"],
        skip_tests: &[],
        cargo_args: &[],
        mutants_args: &[],
    },
    MutantTarget {
        name: "pandagen-ps2-keyboard",
        package: "pandagen-ps2-keyboard",
        files: &[],
        tests: &["--lib", "--tests"],
        skip_tests: &[],
        cargo_args: &[],
        mutants_args: &[],
    },
];

/// How one target's mutants fared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub caught: usize,
    pub timeouts: usize,
    /// The surviving mutants, as cargo-mutants names them
    /// (`file:line:column: replace ... with ...`).
    pub missed: Vec<String>,
    pub unviable: usize,
}

impl Outcome {
    /// Reads cargo-mutants' `mutants.out` directory.
    pub fn read(dir: &Path) -> TaskResult<Self> {
        let lines = |name: &str| -> TaskResult<Vec<String>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect()),
                // cargo-mutants leaves out the files of outcomes that did
                // not occur in older versions.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(fail!("reading {}: {e}", path.display())),
            }
        };
        Ok(Outcome {
            caught: lines("caught.txt")?.len(),
            timeouts: lines("timeout.txt")?.len(),
            missed: lines("missed.txt")?,
            unviable: lines("unviable.txt")?.len(),
        })
    }

    pub fn viable(&self) -> usize {
        self.caught + self.timeouts + self.missed.len()
    }

    /// Percent of viable mutants caught; 100 when there are none.
    pub fn score(&self) -> f64 {
        match self.viable() {
            0 => 100.0,
            n => 100.0 * (self.caught + self.timeouts) as f64 / n as f64,
        }
    }

    pub fn summary(&self, name: &str) -> String {
        let mut s = format!(
            "{name}: mutation score {:.1}% ({} of {} viable mutants caught: {} failed a test, \
             {} timed out; {} missed; {} unviable)\n",
            self.score(),
            self.caught + self.timeouts,
            self.viable(),
            self.caught,
            self.timeouts,
            self.missed.len(),
            self.unviable,
        );
        for m in &self.missed {
            s.push_str("  missed: ");
            s.push_str(m);
            s.push('\n');
        }
        s
    }
}

/// Options of `cargo xtask mutants`.
pub struct Options {
    /// Target names (all if empty).
    pub only: Vec<String>,
    /// Files to mutate instead of the target's own (one target only).
    pub files: Vec<String>,
    /// Only the mutants whose names match these regexes (cargo-mutants
    /// `--re`; one target only).
    pub only_matching: Vec<String>,
}

/// Runs cargo-mutants on each chosen target; true if every score is at
/// least [`SCORE_FLOOR`].
pub fn run(layout: &Layout, opts: &Options) -> TaskResult<bool> {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    if let Some(unknown) = opts.only.iter().find(|o| !names.contains(&o.as_str())) {
        return Err(fail!(
            "no mutation target `{unknown}`; targets: {}",
            names.join(", ")
        ));
    }
    let targets: Vec<&MutantTarget> = TARGETS
        .iter()
        .filter(|t| opts.only.is_empty() || opts.only.iter().any(|o| o == t.name))
        .collect();
    let partial = !opts.files.is_empty() || !opts.only_matching.is_empty();
    if partial && targets.len() != 1 {
        return Err(fail!("--file and --re need exactly one --crate"));
    }
    ensure_cargo_mutants()?;
    if targets
        .iter()
        .any(|t| t.mutants_args.contains(&"--test-tool=nextest"))
    {
        ensure_cargo_tool("nextest", "cargo-nextest")?;
    }
    let mut all_pass = true;
    let mut report = String::new();
    for target in targets {
        let out = layout.target().join("mutants").join(target.name);
        std::fs::create_dir_all(&out)?;
        let files: Vec<&str> = if opts.files.is_empty() {
            target.files.to_vec()
        } else {
            opts.files.iter().map(String::as_str).collect()
        };
        let mut cmd = cargo();
        cmd.current_dir(&layout.root)
            .args(["mutants", "--package", target.package, "--jobs", "1"])
            // In random order: a run stopped early (they take an hour or
            // more) is then a fair sample of the whole target, not its
            // first files and functions only.
            .arg("--shuffle")
            .arg("--output")
            .arg(&out);
        cmd.args(target.mutants_args);
        for f in &files {
            cmd.args(["--file", f]);
        }
        for re in &opts.only_matching {
            cmd.args(["--re", re]);
        }
        // As cargo arguments (not after `--`), so that each mutant's build
        // compiles only these test targets, not every test of the package.
        for t in target.tests.iter().chain(target.cargo_args) {
            cmd.arg(format!("--cargo-arg={t}"));
        }
        if !target.skip_tests.is_empty() {
            // After `--` for cargo test, then after a second `--` for the
            // test binaries.
            cmd.args(["--", "--"]);
            for t in target.skip_tests {
                cmd.args(["--skip", t]);
            }
        }
        println!("\n== mutants: {} ==\n{}", target.name, display(&cmd));
        let status = cmd
            .status()
            .map_err(|e| fail!("cannot start `{}`: {e}", display(&cmd)))?;
        // cargo-mutants exits 2 when some mutant was missed and 3 on
        // timeouts; both still produce a result to score. Anything else
        // non-zero (the unmutated tests fail, bad options) does not.
        if !matches!(status.code(), Some(0 | 2 | 3)) {
            return Err(fail!("`{}` failed ({status})", display(&cmd)));
        }
        let outcome = Outcome::read(&out.join("mutants.out"))?;
        let mut summary = outcome.summary(target.name);
        if partial {
            summary.push_str(&format!(
                "  (only the mutants of {} matching {:?}: not the target's full score)\n",
                files.join(", "),
                opts.only_matching
            ));
        }
        std::fs::write(out.join("summary.txt"), &summary)?;
        all_pass &= outcome.score() >= SCORE_FLOOR;
        report.push_str(&summary);
    }
    println!("\n== mutation scores (floor {SCORE_FLOOR}%) ==\n{report}");
    Ok(all_pass)
}

fn ensure_cargo_mutants() -> TaskResult<()> {
    ensure_cargo_tool("mutants", "cargo-mutants")
}

/// Installs `cargo SUBCOMMAND` (crate `krate`) if it is missing.
fn ensure_cargo_tool(subcommand: &str, krate: &str) -> TaskResult<()> {
    if probe(cargo().args([subcommand, "--version"])).is_some() {
        return Ok(());
    }
    println!("xtask: {krate} is missing; installing it with `cargo install --locked {krate}`");
    run_checked(Command::new("cargo").args(["install", "--locked", krate]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_count_timeouts_as_caught_and_ignore_unviable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("caught.txt"), "a\nb\nc\n").unwrap();
        std::fs::write(dir.path().join("timeout.txt"), "d\n").unwrap();
        std::fs::write(
            dir.path().join("missed.txt"),
            "src/x.rs:1:1: replace f -> bool with true\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("unviable.txt"), "e\nf\n").unwrap();
        let o = Outcome::read(dir.path()).unwrap();
        assert_eq!(o.viable(), 5);
        assert_eq!(o.score(), 80.0);
        let summary = o.summary("t");
        assert!(
            summary.starts_with("t: mutation score 80.0% (4 of 5"),
            "{summary}"
        );
        assert!(summary.contains("missed: src/x.rs:1:1: replace f -> bool with true"));
    }

    #[test]
    fn missing_outcome_files_count_as_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("caught.txt"), "a\n").unwrap();
        let o = Outcome::read(dir.path()).unwrap();
        assert_eq!((o.viable(), o.score()), (1, 100.0));
        assert_eq!(Outcome::default().score(), 100.0);
    }

    #[test]
    fn every_target_names_a_package_of_the_workspace() {
        // A renamed package would otherwise fail only when the slow run
        // starts.
        fn manifests(dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name();
                if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                    manifests(&path, found);
                } else if name == "Cargo.toml" {
                    found.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut found = Vec::new();
        manifests(root, &mut found);
        for t in TARGETS {
            let line = format!("name = \"{}\"", t.package);
            assert!(
                found.iter().any(|m| m.lines().any(|l| l.trim() == line)),
                "{}: no package {}",
                t.name,
                t.package
            );
        }
    }

    /// The `exclude_re` entries of `.cargo/mutants.toml`, unescaped from
    /// TOML.
    fn exclusions(root: &Path) -> Vec<String> {
        let config = std::fs::read_to_string(root.join(".cargo/mutants.toml")).unwrap();
        let start = config.find("exclude_re = [").expect("exclude_re");
        config[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.trim() != "]")
            .map(str::trim)
            .filter(|l| l.starts_with('"'))
            .map(|l| {
                l.trim_end_matches(',')
                    .trim_matches('"')
                    .replace("\\\\", "\\")
            })
            .collect()
    }

    /// Source files of the workspace whose path ends with `suffix`.
    fn sources_ending_with(dir: &Path, suffix: &str, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    sources_ending_with(&path, suffix, found);
                }
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }

    #[test]
    fn every_skip_by_position_still_points_at_its_operator() {
        // A skip naming `file:line:column` goes stale when lines move
        // above it: it then skips nothing, and the equivalent mutant it was
        // written for counts as missed (or, worse, it skips another one).
        // Each such skip must find the operator it names at that place.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let by_position = regex::Regex::new(
            r"^(?P<file>[^:]+\.rs):(?P<line>[^:]+):(?P<col>[0-9]+|\((?:[0-9]+\|)*[0-9]+\)):(?:\.\*|(?: replace (?P<op>\S+) with))",
        )
        .unwrap();
        let mut checked = 0;
        for skip in exclusions(root) {
            let Some(m) = by_position.captures(&skip) else {
                continue;
            };
            let mut files = Vec::new();
            sources_ending_with(root, &m["file"], &mut files);
            let line_re = regex::Regex::new(&format!("^(?:{})$", &m["line"])).unwrap();
            // A column is a number or an alternation of them, `(48|53)`:
            // each named column must hold the operator.
            let cols: Vec<usize> = m["col"]
                .trim_matches(|c| c == '(' || c == ')')
                .split('|')
                .map(|c| c.parse().unwrap())
                .collect();
            let op = m.name("op").map(|o| o.as_str().replace('\\', ""));
            // The skip is right if it names the operator in one of the
            // files it can match (cargo-mutants matches names anywhere).
            let points_at_op = |file: &std::path::PathBuf| {
                let source = std::fs::read_to_string(file).unwrap();
                let holds_op = |n: &usize| {
                    let line = source.lines().nth(n - 1).unwrap();
                    cols.iter().all(|col| {
                        let at: String = line.chars().skip(col - 1).collect();
                        op.as_ref().is_none_or(|op| at.starts_with(op.as_str()))
                    })
                };
                let places: Vec<usize> = (1..=source.lines().count())
                    .filter(|n| line_re.is_match(&n.to_string()))
                    .collect();
                // Named lines must all hold it; a pattern for any line (the
                // column and function pin the mutant) needs one that does.
                match places.len() {
                    0 => false,
                    1..=4 => places.iter().all(holds_op),
                    _ => places.iter().any(holds_op),
                }
            };
            assert!(
                files.iter().any(points_at_op),
                "{skip}: no `{op:?}` at columns {cols:?} of those lines in {files:?}"
            );
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} skips by position found");
    }

    #[test]
    fn every_target_file_exists() {
        // A renamed file would otherwise silently drop out of the run.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for t in TARGETS {
            for f in t.files.iter().filter(|f| !f.contains('*')) {
                assert!(root.join(f).is_file(), "{}: {f}", t.name);
            }
        }
    }
}
