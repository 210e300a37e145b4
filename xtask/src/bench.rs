//! `cargo xtask bench`: kernel benchmarks in QEMU (TCG with `-icount`, so
//! the guest TSC counts executed instructions) plus host benchmarks.
//!
//! Everything reports through `[BENCH] <name> <value> <unit>` lines, and
//! all results land in `target/bench/results.json`.

use std::process::Stdio;
use std::time::Duration;

use crate::bootcfg::BootConfig;
use crate::build::{self, ImageSpec};
use crate::fail;
use crate::layout::{KernelKind, Layout, Profile};
use crate::process::{cargo, display, TaskResult};
use crate::qemu::{self, Accel, Firmware, Machine, EXIT_PASS};
use crate::serial::{self, Bench};
use crate::setup::{self, Needs};
use pandagen_hal::boot_config::BootMode;

/// A host benchmark: `cargo bench -p <package> --bench <bench>`, whose
/// output must contain `[BENCH]` lines. Add host benchmarks here.
pub struct HostBench {
    pub package: &'static str,
    pub bench: &'static str,
}

pub const HOST_BENCHES: &[HostBench] = &[
    HostBench {
        package: "pandagen-core",
        bench: "core_bench",
    },
    HostBench {
        package: "pandagen-sim",
        bench: "sim_bench",
    },
    HostBench {
        package: "pandagen-storage",
        bench: "storage_bench",
    },
];

/// Ring-3 programs the kernel bench image carries (`bench` is the root
/// program; it measures IPC against `ipc_echo`, through the whole
/// `KernelApi` stack, and against `raw_echo`, through raw system calls).
const BENCH_PROGRAMS: &[&str] = &["bench", "ipc_echo", "raw_echo"];

const BENCH_TIMEOUT: Duration = Duration::from_secs(300);

/// One QEMU benchmark run: a bench-mode image whose root program prints
/// `[BENCH]` lines.
struct QemuBench {
    /// Names the image and the log (`target/qemu-logs/<name>.log`).
    name: &'static str,
    boot_cfg: BootConfig,
    programs: &'static [&'static str],
}

const QEMU_BENCHES: &[QemuBench] = &[
    QemuBench {
        name: "bench",
        boot_cfg: BootConfig::mode(BootMode::Bench),
        programs: BENCH_PROGRAMS,
    },
    // Storage Map put/get through ring-3 IPC: root `bench_storage`.
    QemuBench {
        name: "bench-storage",
        boot_cfg: BootConfig::bench("storage"),
        programs: &["bench_storage", "storage"],
    },
];

/// One row of `results.json`.
struct Row {
    source: &'static str,
    bench: Bench,
}

/// Benchmarks always use the release kernel: debug-build instruction
/// counts measure the compiler's unoptimised output, not the kernel.
pub fn run(layout: &Layout) -> TaskResult<bool> {
    let profile = Profile::Release;
    let host = setup::ensure(Needs {
        nightly: true,
        qemu: true,
    })?;
    let _lock = crate::lock::acquire(layout)?;
    let mut rows = Vec::new();
    let mut ok = true;

    let kernel = build::kernel(layout, profile, KernelKind::Test)?;
    println!("== kernel benchmarks (QEMU TCG, -icount shift=0: 1 TSC tick = 1 instruction) ==");
    for qb in QEMU_BENCHES {
        let spec = ImageSpec {
            boot_cfg: qb.boot_cfg,
            programs: qb.programs,
            manifest: None,
        };
        let image = layout.bench_dir().join(format!("{}.img", qb.name));
        build::images(
            layout,
            profile,
            &kernel,
            &spec,
            &layout.bench_dir().join(format!("{}.ramdisk.tar", qb.name)),
            &[(Firmware::Bios, image.clone())],
        )?;
        let machine = Machine {
            firmware: Firmware::Bios,
            accel: Accel::Tcg,
            image: &image,
            ovmf: host.ovmf.as_deref(),
            extra_profiles: &["bench"],
        };
        let log = qemu::log_path(layout, qb.name);
        let captured =
            qemu::run_captured(qemu::command(layout, &machine)?, BENCH_TIMEOUT, &log, &[])?;
        let report = serial::parse(&captured.serial);
        if captured.exit != qemu::Exit::Code(EXIT_PASS) {
            ok = false;
            println!(
                "{} run: {} (log: {})",
                qb.name,
                captured.exit.describe(),
                log.display()
            );
        }
        if report.benches.is_empty() {
            ok = false;
            println!(
                "{} printed no [BENCH] lines, so it has no numbers (log: {}).",
                qb.name,
                log.display()
            );
        }
        rows.extend(report.benches.into_iter().map(|bench| Row {
            source: "kernel",
            bench,
        }));
    }

    for hb in HOST_BENCHES {
        let mut cmd = cargo();
        cmd.current_dir(&layout.root)
            .args(["bench", "-p", hb.package, "--bench", hb.bench])
            .stderr(Stdio::inherit());
        println!("== host benchmark: {} ==", display(&cmd));
        let out = cmd
            .output()
            .map_err(|e| fail!("cannot run {}: {e}", display(&cmd)))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let found = serial::parse(&text).benches;
        if !out.status.success() || found.is_empty() {
            ok = false;
            println!("  {}: failed or printed no [BENCH] lines", hb.bench);
        }
        rows.extend(found.into_iter().map(|bench| Row {
            source: "host",
            bench,
        }));
    }

    let json_path = layout.bench_dir().join("results.json");
    std::fs::create_dir_all(layout.bench_dir())?;
    std::fs::write(&json_path, to_json(&rows))?;
    print_table(&rows);
    println!("results: {}", json_path.display());
    Ok(ok)
}

fn to_json(rows: &[Row]) -> String {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.bench.name,
                "value": number(r.bench.value),
                "unit": r.bench.unit,
                "source": r.source,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "machine": "qemu-system-x86_64 -accel tcg -cpu max -icount shift=0,align=off,sleep=off",
        "results": results,
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialize") + "\n"
}

/// Integers stay integers in the JSON (instruction counts), others stay floats.
fn number(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Value::from(v)
    }
}

fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let w = rows
        .iter()
        .map(|r| r.bench.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<6}  {:<w$}  {:>14}  unit", "source", "name", "value");
    for r in rows {
        println!(
            "{:<6}  {:<w$}  {:>14}  {}",
            r.source,
            r.bench.name,
            number(r.bench.value).to_string(),
            r.bench.unit
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_name_value_unit() {
        let rows = [Row {
            source: "kernel",
            bench: Bench {
                name: "ipc_call".into(),
                value: 189.0,
                unit: "instructions".into(),
            },
        }];
        let v: serde_json::Value = serde_json::from_str(&to_json(&rows)).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["name"], "ipc_call");
        assert_eq!(r["value"], 189);
        assert_eq!(r["unit"], "instructions");
    }

    #[test]
    fn qemu_benches_carry_their_root_program() {
        let all = crate::programs::discover(&Layout::from_xtask_manifest()).unwrap();
        for qb in QEMU_BENCHES {
            qb.boot_cfg.validate().unwrap();
            assert_eq!(qb.boot_cfg.mode, BootMode::Bench, "{}", qb.name);
            let root = qb
                .boot_cfg
                .suite
                .map_or_else(|| "bench".to_string(), |s| format!("bench_{s}"));
            assert!(
                qb.programs.contains(&root.as_str()),
                "{}: no {root}",
                qb.name
            );
            crate::programs::resolve(&all, qb.programs).unwrap();
        }
    }

    #[test]
    fn fractional_values_stay_fractional() {
        assert_eq!(number(1.5), serde_json::json!(1.5));
        assert_eq!(number(42.0), serde_json::json!(42));
    }
}
