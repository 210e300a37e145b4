//! One handler per system call, all of one shape: decode the request,
//! call the core as the caller, say what happens next.

use alloc::vec::Vec;
use pandagen_abi::api::TaskHandle;
use pandagen_abi::error::{Resource, SpawnError};
use pandagen_abi::syscall::{
    BootFileReply, CapRequest, CloneRequest, DebugWriteRequest, ExitRequest, ReadBootFileRequest,
    ReceiveRequest, RegisterRequest, SendRequest, ServiceRequest, SleepRequest, SpawnRequest,
    Syscall, TransferRequest, MAX_DEBUG_WRITE,
};
use pandagen_abi::{CapKind, Duration, KernelError, Rights, TrustDomain};
use pandagen_core::{RecvOutcome, SpawnArgs, TaskSpec};

use super::{decode, reply, Ctx, Step};
use crate::task::Pending;

/// Heap the kernel keeps for its own bookkeeping whatever tasks queue.
const HEAP_RESERVE: usize = 512 * 1024;

type Handler = fn(&mut Ctx<'_>, &[u8]) -> Result<Step, KernelError>;

/// Run `call`.
pub fn handle(call: Syscall, cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    // Calls that create kernel objects are refused before the heap runs
    // low, like sends (see `send`); calls that free memory always run.
    let creates = matches!(
        call,
        Syscall::Spawn
            | Syscall::CreateChannel
            | Syscall::Clone
            | Syscall::Grant
            | Syscall::RegisterService
    );
    if creates && !crate::mem::heap::has_room(HEAP_RESERVE) {
        return Err(KernelError::ResourceExhausted(Resource::Memory));
    }
    let handler: Handler = match call {
        // The entry handles Null before taking any lock; here it is only
        // for completeness.
        Syscall::Null => |cx, _| cx.reply(()),
        Syscall::Exit => exit,
        Syscall::Yield => yield_now,
        Syscall::Spawn => spawn,
        Syscall::CreateChannel => create_channel,
        Syscall::Send => send,
        Syscall::Receive => receive,
        Syscall::Now => now,
        Syscall::Sleep => sleep,
        Syscall::Grant => grant,
        Syscall::Delegate => delegate,
        Syscall::Drop => drop_cap,
        Syscall::Clone => clone_cap,
        Syscall::RegisterService => register_service,
        Syscall::LookupService => lookup_service,
        Syscall::DebugWrite => debug_write,
        Syscall::Startup => startup,
        Syscall::KernelInfo => crate::introspect::kernel_info,
        Syscall::ConsoleWrite => crate::console_input::write,
        Syscall::BindConsoleInput => crate::console_input::bind,
        Syscall::Terminate => crate::introspect::terminate,
        Syscall::Shutdown => crate::introspect::shutdown,
        Syscall::ReadBootFile => read_boot_file,
        Syscall::BlockInfo => crate::blockdev::info,
        Syscall::BlockRead => crate::blockdev::read,
        Syscall::BlockWrite => crate::blockdev::write,
        // Calls this kernel does not implement yet answer as unknown ones.
        #[allow(unreachable_patterns)]
        _ => unsupported,
    };
    handler(cx, request)
}

fn exit(_cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ExitRequest = decode(request)?;
    Ok(Step::Exit(request.reason))
}

fn yield_now(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let len = reply::encode(&mut cx.k.response, &Ok(()));
    Ok(Step::ReplyThenYield(len))
}

/// Image spawns only: the program is `bin/<image>` in the boot ramdisk.
/// The image is loaded before the core creates the task, so a spawn that
/// fails for any reason moves no capability and leaves nothing behind.
fn spawn(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SpawnRequest<'_> = decode(request)?;
    let image = crate::runner::image(request.image)
        .ok_or(KernelError::SpawnFailed(SpawnError::ImageNotFound))?;
    let spec = TaskSpec::new(request.name)
        .kind(request.kind)
        .trust_domain(TrustDomain::new(request.trust_domain))
        .priority(request.priority);
    let (caller, now) = (cx.caller, cx.now);
    let spawned = cx.k.start(image, request.name, |core| {
        core.spawn(
            caller,
            SpawnArgs {
                spec,
                with_image: true,
                capabilities: &request.capabilities,
                exit_channel: request.exit_channel,
            },
            now,
        )
    })?;
    cx.reply(TaskHandle {
        task_id: spawned.task,
        execution_id: spawned.execution,
    })
}

/// A data file of the boot image (the service manifest), for a holder of
/// the `BootImage` capability with `READ`.
fn read_boot_file(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ReadBootFileRequest<'_> = decode(request)?;
    let (caller, now) = (cx.caller, cx.now);
    cx.k.core.lookup(
        caller,
        request.capability,
        CapKind::BootImage,
        Rights::READ,
        now,
    )?;
    let bytes = crate::runner::boot_file(request.name).ok_or(KernelError::BootFileNotFound)?;
    cx.reply(BootFileReply { bytes })
}

fn create_channel(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let handle = cx.k.core.create_channel(cx.caller, cx.now)?;
    cx.reply(handle)
}

/// Queued messages live on the kernel heap until received, so a send that
/// would leave less than [`HEAP_RESERVE`] free is refused with
/// `ResourceExhausted(Memory)`: tasks filling channels nobody drains must
/// not run the kernel out of memory.
fn send(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SendRequest<'_> = decode(request)?;
    if !crate::mem::heap::has_room(request.message.len() + HEAP_RESERVE) {
        return Err(KernelError::ResourceExhausted(Resource::Memory));
    }
    cx.k.core.send(
        cx.caller,
        request.channel,
        Vec::from(request.message),
        &request.capabilities,
        cx.now,
    )?;
    cx.reply(())
}

fn receive(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ReceiveRequest = decode(request)?;
    let deadline = request
        .timeout_nanos
        .map(|n| cx.now.saturating_add(Duration::from_nanos(n)));
    match cx
        .k
        .core
        .receive_or_block(cx.caller, request.channel, deadline, cx.now)?
    {
        RecvOutcome::Message(delivered) => Ok(Step::Reply(reply::encode_receive(
            &mut cx.k.response,
            &delivered,
        ))),
        RecvOutcome::TimedOut => Err(KernelError::Timeout),
        RecvOutcome::Blocked => Ok(Step::Block(Pending::Receive {
            channel: request.channel,
            deadline,
            response: cx.response,
        })),
    }
}

fn now(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let now = cx.now;
    cx.reply(now)
}

fn sleep(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SleepRequest = decode(request)?;
    let until = cx.now.saturating_add(Duration::from_nanos(request.nanos));
    if cx.k.core.sleep_until(cx.caller, until, cx.now)? {
        Ok(Step::Block(Pending::Sleep {
            response: cx.response,
        }))
    } else {
        cx.reply(())
    }
}

fn grant(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TransferRequest = decode(request)?;
    cx.k.core
        .grant(cx.caller, request.capability, request.task, cx.now)?;
    cx.reply(())
}

fn delegate(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TransferRequest = decode(request)?;
    cx.k.core
        .delegate(cx.caller, request.capability, request.task, cx.now)?;
    cx.reply(())
}

fn drop_cap(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: CapRequest = decode(request)?;
    cx.k.core.drop_cap(cx.caller, request.capability, cx.now)?;
    cx.reply(())
}

fn clone_cap(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: CloneRequest = decode(request)?;
    let handle =
        cx.k.core
            .clone_cap(cx.caller, request.capability, request.rights, cx.now)?;
    cx.reply(handle)
}

/// Uses the caller's first `ServiceRegistry` capability with `REGISTER`.
fn register_service(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: RegisterRequest = decode(request)?;
    let registry =
        cx.k.core
            .find_cap(cx.caller, CapKind::ServiceRegistry, Rights::REGISTER)
            .ok_or(KernelError::InsufficientAuthority)?;
    cx.k.core.register_service(
        cx.caller,
        registry,
        request.service,
        request.channel,
        cx.now,
    )?;
    cx.reply(())
}

fn lookup_service(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ServiceRequest = decode(request)?;
    let handle =
        cx.k.core
            .lookup_service(cx.caller, request.service, cx.now)?;
    cx.reply(handle)
}

/// The text goes to the serial log verbatim, as one line. Longer than
/// `MAX_DEBUG_WRITE` is `MalformedRequest` (the runtime truncates first).
fn debug_write(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: DebugWriteRequest<'_> = decode(request)?;
    if request.text.len() > MAX_DEBUG_WRITE {
        return Err(KernelError::Syscall(
            pandagen_abi::error::SyscallError::MalformedRequest,
        ));
    }
    crate::println!("{}", request.text);
    cx.reply(())
}

fn startup(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let info =
        cx.k.tasks
            .get(&cx.caller)
            .map(|t| t.startup.clone())
            .ok_or(KernelError::TaskNotFound(cx.caller))?;
    cx.reply(info)
}

fn unsupported(cx: &mut Ctx<'_>, _request: &[u8]) -> Result<Step, KernelError> {
    Err(KernelError::Syscall(
        pandagen_abi::error::SyscallError::UnknownSyscall(cx.number),
    ))
}
