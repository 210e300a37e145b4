//! Turning kernel and service answers into the text the operator reads.
//! Pure functions of their inputs (lines end in `\n`; the shell converts
//! them for the terminal), so every table is tested on the host.

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use pandagen_abi::info::{
    AuditEntry, CapSummary, MemorySummary, ServiceSummary, TaskRunState, TaskSummary,
};
use pandagen_abi::{IdentityKind, Instant, TaskId};
use pandagen_process_manager::{InstanceEnd, ServiceInfo};

use crate::command::COMMANDS;

pub fn help() -> String {
    let mut out = String::from("commands:\n");
    for (_, usage, what) in COMMANDS {
        if usage.len() > 22 {
            let _ = writeln!(out, "  {usage}\n  {:22}  {what}", "");
        } else {
            let _ = writeln!(out, "  {usage:22}  {what}");
        }
    }
    out.push_str("keys: backspace, up/down for history, ctrl-c to abandon a line\n");
    out
}

fn run_state(state: TaskRunState) -> &'static str {
    match state {
        TaskRunState::Running => "running",
        TaskRunState::Ready => "ready",
        TaskRunState::Blocked => "blocked",
    }
}

fn kind(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::System => "system",
        IdentityKind::Service => "service",
        IdentityKind::Component => "component",
        IdentityKind::PipelineStage => "stage",
    }
}

fn last_end(end: &Option<InstanceEnd>) -> String {
    match end {
        None => String::from("-"),
        Some(InstanceEnd::Exited(reason)) => format!("{reason:?}"),
        Some(InstanceEnd::Vanished) => String::from("vanished"),
        Some(InstanceEnd::NeverReady) => String::from("never ready"),
        Some(InstanceEnd::SpawnFailed(e)) => format!("spawn failed: {e}"),
    }
}

fn ps_services(services: &[ServiceInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "services ({}):", services.len());
    let _ = writeln!(
        out,
        "  {:<18} {:>3} {:<10} {:>8} {:>4} {:<10} LAST EXIT",
        "SERVICE", "ID", "STATE", "RESTARTS", "TASK", "DOMAIN"
    );
    for s in services {
        let task = s
            .task_id
            .map_or(String::from("-"), |t| format!("{}", t.as_raw()));
        let _ = writeln!(
            out,
            "  {:<18} {:>3} {:<10} {:>8} {:>4} {:<10} {}",
            s.name,
            s.service_id.as_raw(),
            s.state,
            s.restart_count,
            task,
            s.trust_domain.as_str(),
            last_end(&s.last_end)
        );
    }

    out
}

/// `ps`: the kernel's tasks, then the process manager's services (or why
/// they could not be listed).
pub fn ps(tasks: &[TaskSummary], services: Result<&[ServiceInfo], String>) -> String {
    let mut out = format!("tasks ({}):\n", tasks.len());
    let _ = writeln!(
        out,
        "  {:>4} {:>5} {:<20} {:<9} {:<8} {:<10} {:>3} {:>4}",
        "TASK", "EXEC", "NAME", "KIND", "STATE", "DOMAIN", "PRI", "CAPS"
    );
    for t in tasks {
        let _ = writeln!(
            out,
            "  {:>4} {:>5} {:<20} {:<9} {:<8} {:<10} {:>3} {:>4}",
            t.task.as_raw(),
            t.execution.as_raw(),
            t.name.as_str(),
            kind(t.kind),
            run_state(t.state),
            t.trust_domain.as_str(),
            t.priority.0,
            t.capabilities
        );
    }
    match services {
        Ok(services) if services.iter().any(|s| s.restart_count > 0) => {
            out.push_str(&ps_services(services));
            let restarted: alloc::vec::Vec<String> = services
                .iter()
                .filter(|s| s.restart_count > 0)
                .map(|s| format!("{} x{}", s.name, s.restart_count))
                .collect();
            let _ = writeln!(out, "restarted: {}", restarted.join(", "));
        }
        Ok(services) => out.push_str(&ps_services(services)),
        Err(why) => {
            let _ = writeln!(out, "services: unavailable ({why})");
        }
    }
    out
}

pub fn caps(task: TaskId, caps: &[CapSummary]) -> String {
    let mut out = format!("capabilities of task {} ({}):\n", task.as_raw(), caps.len());
    let _ = writeln!(out, "  {:<10} {:<16} RIGHTS", "HANDLE", "KIND");
    for c in caps {
        let _ = writeln!(
            out,
            "  {:<10} {:<16} {}",
            format!("{}", c.handle),
            format!("{}", c.kind),
            c.rights
        );
    }
    out.push_str("  rights: s=send r=receive g=grant t=transfer R=read W=write G=register P=spawn C=control\n");
    out
}

pub fn audit(entries: &[AuditEntry], dropped: u64) -> String {
    let mut out = format!("audit: newest {} entries", entries.len());
    if dropped > 0 {
        let _ = write!(out, " ({dropped} older entries no longer kept)");
    }
    out.push('\n');
    for e in entries {
        let ms = e.time_nanos / 1_000_000;
        let _ = writeln!(
            out,
            "  #{:<6} {:>8} ms  {}",
            e.sequence,
            ms,
            e.line.as_str()
        );
    }
    out
}

/// `services`: the kernel's registry, with the manifest's names when the
/// process manager could say them.
pub fn services(registry: &[ServiceSummary], known: &[ServiceInfo]) -> String {
    let mut out = format!("registered services ({}):\n", registry.len());
    let _ = writeln!(out, "  {:>3} {:<18} {:>4}", "ID", "NAME", "TASK");
    for r in registry {
        let name = if r.service == pandagen_abi::services::PROCESS_MANAGER {
            "process-manager"
        } else {
            known
                .iter()
                .find(|s| s.service_id == r.service)
                .map_or("-", |s| s.name.as_str())
        };
        let _ = writeln!(
            out,
            "  {:>3} {:<18} {:>4}",
            r.service.as_raw(),
            name,
            r.task.as_raw()
        );
    }
    out
}

pub fn uptime(now: Instant) -> String {
    let ms = now.as_millis();
    let (s, ms) = (ms / 1000, ms % 1000);
    let (m, s) = (s / 60, s % 60);
    let (h, m) = (m / 60, m % 60);
    format!("up {h}:{m:02}:{s:02}.{ms:03} (h:mm:ss.ms since boot)\n")
}

fn kib(bytes: u64) -> u64 {
    bytes / 1024
}

pub fn mem(m: &MemorySummary) -> String {
    let used = m.frames_total.saturating_sub(m.frames_free);
    format!(
        "frames: {used} used of {} ({} KiB free)\nkernel heap: {} KiB used of {} KiB\n",
        m.frames_total,
        kib(m.frames_free.saturating_mul(4096)),
        kib(m.heap_used),
        kib(m.heap_bytes)
    )
}

/// A service after `start`/`stop`/`restart` settled.
pub fn service_change(s: &ServiceInfo) -> String {
    format!("{}: {} (restarts {})\n", s.name, s.state, s.restart_count)
}

/// `devices`: each PCI function the `pci` service found, its resources
/// and its driver; then where the storage journal lives, which follows
/// from whether a disk driver runs (storage uses the disk when there is
/// one and fails rather than fall back).
pub fn devices(devices: &[pandagen_process_manager::devices::DeviceEntry]) -> String {
    use pandagen_process_manager::devices::BarSpace;
    use pandagen_process_manager::LifecycleState;
    let mut out = String::new();
    if devices.is_empty() {
        out.push_str("no devices reported (is the pci service running?)\n");
    }
    let mut disk = None;
    for d in devices {
        let _ = write!(
            out,
            "{} {:04x}:{:04x} class {:02x}:{:02x}",
            d.address, d.vendor, d.device, d.class, d.subclass
        );
        if let Some(line) = d.interrupt_line {
            let _ = write!(out, " irq {line}");
        }
        for bar in &d.bars {
            match bar.space {
                BarSpace::Memory { base, size, .. } => {
                    let _ = write!(out, " bar{} mem {base:#x}+{size:#x}", bar.index);
                }
                BarSpace::Io { port, size } => {
                    let _ = write!(out, " bar{} io {port:#x}+{size:#x}", bar.index);
                }
            }
        }
        match &d.driver {
            Some((_, name, state)) => {
                let _ = writeln!(out, "\n    driver {name} ({state})");
                if d.class == 1 && *state == LifecycleState::Running {
                    disk = Some((d.address, name.clone()));
                }
            }
            None => out.push_str("\n    no driver\n"),
        }
    }
    match disk {
        Some((address, name)) => {
            let _ = writeln!(out, "storage journal: on the {name} disk at {address}");
        }
        None => {
            out.push_str("storage journal: on the kernel's RAM disk (no disk driver running)\n")
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use pandagen_abi::info::MAX_INFO_NAME;
    use pandagen_abi::{
        CapHandle, CapKind, ExecutionId, ExitReason, Priority, Rights, ServiceId, TrustDomain,
    };
    use pandagen_process_manager::LifecycleState;
    use pandagen_process_manager::RestartPolicy;

    fn name(s: &str) -> heapless::String<MAX_INFO_NAME> {
        heapless::String::try_from(s).unwrap()
    }

    fn task(id: u64, n: &str, domain: &str, state: TaskRunState) -> TaskSummary {
        TaskSummary {
            task: TaskId::from_raw(id),
            execution: ExecutionId::from_raw(id + 10),
            parent: None,
            name: name(n),
            kind: IdentityKind::Service,
            trust_domain: name(domain),
            priority: Priority::NORMAL,
            state,
            capabilities: 3,
        }
    }

    pub(crate) fn service(n: &str, id: u64, state: LifecycleState, restarts: u32) -> ServiceInfo {
        ServiceInfo {
            service_id: ServiceId::from_raw(id),
            name: n.into(),
            image: n.into(),
            state,
            restart_policy: RestartPolicy::OnFailure,
            restart_count: restarts,
            consecutive_restarts: restarts,
            gave_up: false,
            wanted: true,
            execution_id: None,
            task_id: Some(TaskId::from_raw(id + 1)),
            trust_domain: TrustDomain::new("core"),
            last_end: None,
            next_restart_at: None,
        }
    }

    #[test]
    fn ps_shows_tasks_and_services_with_state_restarts_and_domain() {
        let tasks = vec![
            task(1, "process-manager", "system", TaskRunState::Blocked),
            task(2, "storage", "core", TaskRunState::Ready),
        ];
        let mut crashed = service("transformer", 4, LifecycleState::Running, 1);
        crashed.last_end = Some(InstanceEnd::Exited(ExitReason::Failure {
            error: "crashed by operator".into(),
        }));
        let services = vec![service("storage", 2, LifecycleState::Running, 0), crashed];
        let text = ps(&tasks, Ok(&services));
        assert!(text.starts_with("tasks (2):\n"));
        assert!(text.contains("process-manager"));
        assert!(text.contains("blocked"));
        let line = text.lines().find(|l| l.contains("transformer")).unwrap();
        let words: alloc::vec::Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &words[..6],
            ["transformer", "4", "running", "1", "5", "core"]
        );
        assert!(line.contains("crashed by operator"));
        assert!(text.ends_with("restarted: transformer x1\n"));
    }

    #[test]
    fn ps_says_why_services_are_missing() {
        let text = ps(&[], Err("process manager not reachable".into()));
        assert!(text.contains("services: unavailable (process manager not reachable)"));
        assert!(!text.contains("restarted:"));
    }

    #[test]
    fn caps_lists_kind_and_rights() {
        let text = caps(
            TaskId::from_raw(7),
            &[CapSummary {
                handle: CapHandle::new(2, 1),
                kind: CapKind::SerialInput,
                rights: Rights::READ | Rights::WRITE,
            }],
        );
        assert!(text.starts_with("capabilities of task 7 (1):"));
        assert!(text.contains("2g1"));
        assert!(text.contains("serial-input"));
        assert!(text.contains("----RW---"));
    }

    #[test]
    fn audit_shows_sequence_time_and_line_and_notes_drops() {
        let entry = AuditEntry {
            sequence: 41,
            time_nanos: 2_500_000_000,
            line: heapless::String::try_from("cloned cap 9 by task 1").unwrap(),
        };
        let text = audit(&[entry], 3);
        assert!(text.contains("newest 1 entries (3 older"));
        assert!(text.contains("#41"));
        assert!(text.contains("2500 ms"));
        assert!(text.contains("cloned cap 9 by task 1"));
    }

    #[test]
    fn services_name_registered_ids_when_known() {
        let reg = [
            ServiceSummary {
                service: ServiceId::from_raw(2),
                task: TaskId::from_raw(3),
            },
            ServiceSummary {
                service: ServiceId::from_raw(99),
                task: TaskId::from_raw(8),
            },
        ];
        let known = [service("storage", 2, LifecycleState::Running, 0)];
        let text = services(&reg, &known);
        assert!(text.contains("registered services (2)"));
        let storage = text.lines().find(|l| l.contains("storage")).unwrap();
        assert_eq!(
            storage.split_whitespace().collect::<alloc::vec::Vec<_>>(),
            ["2", "storage", "3"]
        );
        assert!(text
            .lines()
            .any(|l| l.split_whitespace().eq(["99", "-", "8"])));
    }

    #[test]
    fn uptime_and_mem() {
        assert_eq!(
            uptime(Instant::from_nanos(3_723_004_000_000)),
            "up 1:02:03.004 (h:mm:ss.ms since boot)\n"
        );
        let text = mem(&MemorySummary {
            frames_total: 100,
            frames_free: 40,
            heap_bytes: 1 << 20,
            heap_used: 1 << 19,
        });
        assert!(text.contains("frames: 60 used of 100 (160 KiB free)"));
        assert!(text.contains("kernel heap: 512 KiB used of 1024 KiB"));
    }

    #[test]
    fn help_lists_every_command() {
        let text = help();
        for (word, _, _) in COMMANDS {
            assert!(text.contains(word), "{word}");
        }
    }
}
