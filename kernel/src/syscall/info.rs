//! The operator's system calls: `KernelInfo` (read the object model through
//! a `KernelInfo` capability with `READ`), `Shutdown` (`KernelInfo` with
//! `CONTROL`) and `ReadBootFile` (a data file of the boot image, with the
//! `BootImage` capability's `READ`), and the entropy pool's `Random` and
//! `ProgramSecret` (see `entropy`). Everything `KernelInfo` reports comes
//! from the core; this file only converts it to the ABI's bounded
//! summaries.

use alloc::format;
use alloc::vec::Vec;
use pandagen_abi::info::{
    AuditEntry, CapSummary, InfoReply, InfoRequest, MemorySummary, ServiceSummary, TaskRunState,
    TaskSummary, MAX_AUDIT_ENTRIES, MAX_AUDIT_LINE,
};
use pandagen_abi::syscall::{
    BootFileReply, InfoCall, InfoRequestEnvelope, ProgramSecretReply, RandomReply,
    ReadBootFileRequest, ShutdownRequest,
};
use pandagen_abi::text::bounded;
use pandagen_abi::{CapKind, KernelError, Rights, TaskId};
use pandagen_core::{InvariantViolation, KernelCore, SchedState};

use super::{decode, Ctx, Handler, Step};

pub(super) fn handler(call: InfoCall) -> Handler {
    match call {
        InfoCall::KernelInfo => kernel_info,
        InfoCall::Shutdown => shutdown,
        InfoCall::Reboot => reboot,
        InfoCall::ReadBootFile => read_boot_file,
        InfoCall::Random => random,
        InfoCall::ProgramSecret => program_secret,
    }
}

/// `Random`: fresh bytes from the entropy pool, for anyone (they reveal
/// nothing about the pool).
fn random(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    cx.reply(RandomReply {
        bytes: crate::entropy::random_bytes(),
        source: crate::entropy::source(),
    })
}

/// `ProgramSecret`: the secret of the image the caller runs.
fn program_secret(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let image =
        cx.k.image(cx.caller)
            .ok_or(KernelError::TaskNotFound(cx.caller))?;
    cx.reply(ProgramSecretReply {
        secret: crate::entropy::program_secret(image),
        source: crate::entropy::source(),
    })
}

fn kernel_info(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: InfoRequestEnvelope = decode(request)?;
    cx.require(request.capability, CapKind::KernelInfo, Rights::READ)?;
    let core = cx.k.core();
    let reply = match request.request {
        InfoRequest::Tasks => InfoReply::Tasks(tasks(core)),
        InfoRequest::Capabilities { task } => InfoReply::Capabilities(capabilities(core, task)?),
        InfoRequest::Audit { last } => audit(core, last),
        InfoRequest::Memory => InfoReply::Memory(memory()),
        InfoRequest::Services => InfoReply::Services(services(core)),
        InfoRequest::CheckInvariants => {
            InfoReply::Invariants(core.check_invariants().map_err(|v| invariant_number(&v)))
        }
    };
    cx.reply(reply)
}

fn capabilities(core: &KernelCore, task: TaskId) -> Result<Vec<CapSummary>, KernelError> {
    Ok(core
        .list_caps(task)?
        .into_iter()
        .map(|(handle, info)| CapSummary {
            handle,
            kind: info.kind(),
            rights: info.rights,
        })
        .collect())
}

/// The newest `last` audit records (at most [`MAX_AUDIT_ENTRIES`]).
fn audit(core: &KernelCore, last: u16) -> InfoReply {
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

fn memory() -> MemorySummary {
    let (frames_total, frames_free) = crate::mem::frame::counts();
    let (used, free) = crate::mem::heap::usage();
    MemorySummary {
        frames_total,
        frames_free,
        heap_bytes: (used + free) as u64,
        heap_used: used as u64,
    }
}

fn services(core: &KernelCore) -> Vec<ServiceSummary> {
    core.services()
        .into_iter()
        .map(|r| ServiceSummary {
            service: r.service,
            task: r.owner,
        })
        .collect()
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
        InvariantViolation::Binding(_) => 13,
        InvariantViolation::UnpaidMessage(_) => 14,
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

/// Power off (see `crate::power`).
fn shutdown(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ShutdownRequest = decode(request)?;
    cx.require(request.capability, CapKind::KernelInfo, Rights::CONTROL)?;
    crate::println!("kernel: shutdown requested by {}", cx.caller);
    crate::power::power_off()
}

/// Reset the machine (see `crate::power`).
fn reboot(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ShutdownRequest = decode(request)?;
    cx.require(request.capability, CapKind::KernelInfo, Rights::CONTROL)?;
    crate::println!("kernel: reboot requested by {}", cx.caller);
    crate::power::reset()
}

/// A data file of the boot image (the service manifest), for a holder of
/// the `BootImage` capability with `READ`.
fn read_boot_file(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ReadBootFileRequest<'_> = decode(request)?;
    cx.require(request.capability, CapKind::BootImage, Rights::READ)?;
    let bytes = crate::boot_files::boot_file(request.name).ok_or(KernelError::BootFileNotFound)?;
    cx.reply(BootFileReply { bytes })
}
