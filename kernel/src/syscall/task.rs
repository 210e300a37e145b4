//! The caller's own life: `Null`, `Exit`, `Yield`, `Spawn`, `Now`,
//! `Sleep`, `Startup`, `Terminate`.

use pandagen_abi::api::TaskHandle;
use pandagen_abi::error::SpawnError;
use pandagen_abi::syscall::{ExitRequest, SleepRequest, SpawnRequest, TaskCall, TerminateRequest};
use pandagen_abi::{Duration, KernelError, TrustDomain};
use pandagen_core::{SpawnArgs, TaskSpec};

use super::{decode, Ctx, Handler, Step};
use crate::task::Pending;

pub(super) fn handler(call: TaskCall) -> Handler {
    match call {
        TaskCall::Null => null,
        TaskCall::Exit => exit,
        TaskCall::Yield => yield_now,
        TaskCall::Spawn => spawn,
        TaskCall::Now => now,
        TaskCall::Sleep => sleep,
        TaskCall::Startup => startup,
        TaskCall::Terminate => terminate,
    }
}

/// The entry answers `Null` before taking any lock; this is for a call
/// that reaches the dispatcher some other way.
fn null(cx: &mut Ctx<'_>, _request: &[u8]) -> Result<Step, KernelError> {
    cx.reply(())
}

fn exit(_cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ExitRequest = decode(request)?;
    Ok(Step::Exit(request.reason))
}

fn yield_now(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let len = cx.k.encode_response(&Ok(()));
    Ok(Step::ReplyThenYield(len))
}

/// Image spawns only: the program is `bin/<image>` in the boot ramdisk.
/// The image is loaded before the core creates the task, so a spawn that
/// fails for any reason moves no capability and leaves nothing behind.
fn spawn(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SpawnRequest<'_> = decode(request)?;
    let mut spec = TaskSpec::new(request.name)
        .kind(request.kind)
        .trust_domain(TrustDomain::new(request.trust_domain))
        .priority(request.priority);
    spec.budget = request.budget;
    let args = SpawnArgs {
        spec,
        with_image: true,
        capabilities: &request.capabilities,
        exit_channel: request.exit_channel,
        frames: 0,
    };
    let (caller, now) = (cx.caller, cx.now);
    // Authority and budget first: a refused spawn allocates, zeroes and
    // copies nothing. The budget check then takes the least the image
    // needs (read from its headers); the exact count is charged after
    // loading.
    cx.k.core_mut().authorize_spawn(caller, &args, now)?;
    let image = crate::boot_files::image(request.image)
        .ok_or(KernelError::SpawnFailed(SpawnError::ImageNotFound))?;
    let args = SpawnArgs {
        frames: crate::loader::frames_at_least(image)?,
        ..args
    };
    cx.k.core().authorize_child_budget(caller, &args)?;
    let spawned =
        cx.k.start(request.image, image, request.name, |core, frames| {
            core.spawn(caller, SpawnArgs { frames, ..args }, now)
        })?;
    cx.reply(TaskHandle {
        task_id: spawned.task,
        execution_id: spawned.execution,
    })
}

fn now(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let now = cx.now;
    cx.reply(now)
}

fn sleep(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SleepRequest = decode(request)?;
    let until = cx.now.saturating_add(Duration::from_nanos(request.nanos));
    if cx.k.core_mut().sleep_until(cx.caller, until, cx.now)? {
        Ok(Step::Block(Pending::Sleep {
            response: cx.response,
        }))
    } else {
        cx.reply(())
    }
}

fn startup(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let info =
        cx.k.startup(cx.caller)
            .cloned()
            .ok_or(KernelError::TaskNotFound(cx.caller))?;
    cx.reply(info)
}

/// Only the task's parent may end it, and not itself (that is `Exit`).
fn terminate(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TerminateRequest = decode(request)?;
    let core = cx.k.core();
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
