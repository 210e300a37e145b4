//! The operator's system calls: `KernelInfo` (read the object model through
//! a `KernelInfo` capability with `READ`), `Terminate` (a parent ends its
//! own child) and `Shutdown` (`KernelInfo` with `CONTROL`). Everything they
//! report comes from the core; this file only converts it to the ABI's
//! bounded summaries.

use alloc::format;
use alloc::vec::Vec;
use pandagen_abi::info::{
    AuditEntry, CapSummary, InfoReply, InfoRequest, MemorySummary, ServiceSummary, TaskRunState,
    TaskSummary, MAX_AUDIT_ENTRIES, MAX_AUDIT_LINE,
};
use pandagen_abi::syscall::{InfoRequestEnvelope, ShutdownRequest, TerminateRequest};
use pandagen_abi::text::bounded;
use pandagen_abi::{CapKind, KernelError, Rights};
use pandagen_core::{InvariantViolation, KernelCore, SchedState};

use crate::syscall::{decode, Ctx, Step};

pub fn kernel_info(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: InfoRequestEnvelope = decode(request)?;
    cx.require(request.capability, CapKind::KernelInfo, Rights::READ)?;
    let core = &cx.k.core;
    let reply = match request.request {
        InfoRequest::Tasks => InfoReply::Tasks(tasks(core)),
        InfoRequest::Capabilities { task } => InfoReply::Capabilities(
            core.list_caps(task)?
                .into_iter()
                .map(|(handle, info)| CapSummary {
                    handle,
                    kind: info.kind(),
                    rights: info.rights,
                })
                .collect(),
        ),
        InfoRequest::Audit { last } => {
            let log = core.audit_log();
            let last = usize::from(last.min(MAX_AUDIT_ENTRIES));
            let skip = log.len().saturating_sub(last);
            let entries = log
                .records()
                .skip(skip)
                .map(|r| AuditEntry {
                    sequence: r.seq,
                    time_nanos: r.at.as_nanos(),
                    line: bounded::<MAX_AUDIT_LINE>(&format!("{:?}", r.event)),
                })
                .collect();
            InfoReply::Audit {
                entries,
                dropped: log.dropped(),
            }
        }
        InfoRequest::Memory => {
            let (frames_total, frames_free) = crate::mem::frame::counts();
            let (used, free) = crate::mem::heap::usage();
            InfoReply::Memory(MemorySummary {
                frames_total,
                frames_free,
                heap_bytes: (used + free) as u64,
                heap_used: used as u64,
            })
        }
        InfoRequest::Services => InfoReply::Services(
            core.services()
                .into_iter()
                .map(|r| ServiceSummary {
                    service: r.service,
                    task: r.owner,
                })
                .collect(),
        ),
        InfoRequest::CheckInvariants => {
            InfoReply::Invariants(core.check_invariants().map_err(|v| invariant_number(&v)))
        }
    };
    cx.reply(reply)
}

/// The violated invariant's position in the core's list (1-based).
fn invariant_number(violation: &InvariantViolation) -> u32 {
    match violation {
        InvariantViolation::DuplicateCapability(_) => 1,
        InvariantViolation::HolderMismatch(_) => 2,
        InvariantViolation::DanglingChannel(_) => 3,
        InvariantViolation::ChannelCounts(_) => 4,
        InvariantViolation::UnreferencedChannel(_) => 5,
        InvariantViolation::QueueOverCapacity(_) => 6,
        InvariantViolation::ClosedChannelNotEmpty(_) => 7,
        InvariantViolation::StaleRegistration(_) => 8,
        InvariantViolation::TaskState(_) => 9,
        InvariantViolation::Scheduler => 10,
        InvariantViolation::WaitList(_) => 11,
        InvariantViolation::Account(_) => 12,
    }
}

fn tasks(core: &KernelCore) -> Vec<TaskSummary> {
    let all = core.tasks();
    all.iter()
        .map(|t| TaskSummary {
            task: t.id,
            execution: t.execution,
            parent: t
                .parent
                .and_then(|p| all.iter().find(|o| o.execution == p).map(|o| o.id)),
            name: bounded(&t.name),
            kind: t.kind,
            trust_domain: bounded(t.trust_domain.as_str()),
            priority: t.priority,
            state: match t.state {
                SchedState::Running => TaskRunState::Running,
                SchedState::Ready => TaskRunState::Ready,
                SchedState::Blocked(_) | SchedState::Inactive => TaskRunState::Blocked,
            },
            capabilities: t.caps as u32,
        })
        .collect()
}

/// Only the task's parent may end it, and not itself (that is `Exit`).
pub fn terminate(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TerminateRequest = decode(request)?;
    let core = &cx.k.core;
    let target = core
        .task_info(request.task)
        .ok_or(KernelError::TaskNotFound(request.task))?;
    let caller = core.task_identity(cx.caller);
    if request.task == cx.caller || target.parent.is_none() || target.parent != caller {
        return Err(KernelError::InsufficientAuthority);
    }
    cx.k.kill(request.task, request.reason);
    cx.reply(())
}

/// Power off: QEMU's exit device reports a clean exit.
pub fn shutdown(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ShutdownRequest = decode(request)?;
    cx.require(request.capability, CapKind::KernelInfo, Rights::CONTROL)?;
    crate::println!("kernel: shutdown requested by {}", cx.caller);
    crate::qemu::exit(crate::qemu::ExitCode::Success)
}
