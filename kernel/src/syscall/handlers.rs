//! One handler per system call, all of one shape: decode the request,
//! call the core as the caller, say what happens next.

use alloc::vec::Vec;
use pandagen_abi::api::TaskHandle;
use pandagen_abi::error::{Resource, SpawnError};
use pandagen_abi::syscall::{
    BootFileReply, CapRequest, CloneRequest, DebugWriteRequest, ExitRequest, MintObjectCapRequest,
    MintRegistrationRequest, ObjectSendRequest, ReadBootFileRequest, ReceiveRequest,
    RegisterRequest, SendReceiveRequest, SendRequest, ServiceRequest, SleepRequest, SpawnRequest,
    Syscall, TransferRequest, MAX_DEBUG_WRITE,
};
use pandagen_abi::{CapHandle, CapKind, Duration, KernelError, Rights, TrustDomain};
use pandagen_core::{RecvOutcome, SpawnArgs, TaskSpec};

use super::{decode, reply, Ctx, Step};
use crate::task::{Kernel, Pending};

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
            | Syscall::MintObjectCap
            | Syscall::MintRegistration
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
        Syscall::SendReceive => send_receive,
        Syscall::MintObjectCap => mint_object_cap,
        Syscall::SendToObject => send_to_object,
        Syscall::BlockInfo => crate::blockdev::info,
        Syscall::BlockRead => crate::blockdev::read,
        Syscall::BlockWrite => crate::blockdev::write,
        Syscall::MintRegistration => mint_registration,
        Syscall::ServiceRegistrant => service_registrant,
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
    cx.require(request.capability, CapKind::BootImage, Rights::READ)?;
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
    send_message(cx, request.channel, request.message, &request.capabilities)?;
    cx.reply(())
}

/// A service mints a capability for one of its objects (the core checks
/// that the caller holds the service's registration).
fn mint_object_cap(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: MintObjectCapRequest = decode(request)?;
    let handle = cx.k.core.mint_object_cap(
        cx.caller,
        request.service,
        request.badge,
        request.rights,
        cx.now,
    )?;
    cx.reply(handle)
}

/// A send through an object capability; the same heap reserve as `send`.
fn send_to_object(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ObjectSendRequest<'_> = decode(request)?;
    if !crate::mem::heap::has_room(request.message.len() + HEAP_RESERVE) {
        return Err(KernelError::ResourceExhausted(Resource::Memory));
    }
    cx.k.core.send_to_object(
        cx.caller,
        request.object,
        Vec::from(request.message),
        &request.capabilities,
        cx.now,
    )?;
    cx.reply(())
}

fn receive(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ReceiveRequest = decode(request)?;
    receive_message(cx, request.channel, request.timeout_nanos)
}

/// A send, then a receive: first the core's fast path (a receiver is
/// waiting: hand it the message and switch straight to it), else the two
/// halves one after the other. The receive capability is checked before
/// sending, so that a call refused for it has sent nothing.
fn send_receive(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SendReceiveRequest<'_> = decode(request)?;
    let deadline = deadline(cx, request.timeout_nanos);
    let Kernel { core, tasks, .. } = &mut *cx.k;
    let switched = core.send_receive_fast(
        cx.caller,
        request.send,
        request.message,
        request.receive,
        deadline,
        cx.now,
        |offer| crate::task::accept_offer(tasks, offer),
    );
    if let Some(switched) = switched {
        return Ok(Step::SwitchTo {
            task: switched.receiver,
            pending: Pending::Receive {
                channel: request.receive,
                deadline,
                response: cx.response,
            },
        });
    }
    cx.k.core
        .check_receive(cx.caller, request.receive, cx.now)?;
    send_message(cx, request.send, request.message, &[])?;
    receive_message(cx, request.receive, request.timeout_nanos)
}

/// The deadline of a receive with `timeout_nanos`.
fn deadline(cx: &Ctx<'_>, timeout_nanos: Option<u64>) -> Option<pandagen_abi::Instant> {
    timeout_nanos.map(|n| cx.now.saturating_add(Duration::from_nanos(n)))
}

/// Send `message` on `channel`: straight into the buffer of a receiver
/// blocked on it if there is one (see `KernelCore::send_or_hand_off`),
/// else onto the queue.
fn send_message(
    cx: &mut Ctx<'_>,
    channel: CapHandle,
    message: &[u8],
    capabilities: &[CapHandle],
) -> Result<(), KernelError> {
    if !crate::mem::heap::has_room(message.len() + HEAP_RESERVE) {
        return Err(KernelError::ResourceExhausted(Resource::Memory));
    }
    let Kernel { core, tasks, .. } = &mut *cx.k;
    core.send_or_hand_off(cx.caller, channel, message, capabilities, cx.now, |offer| {
        crate::task::accept_offer(tasks, offer)
    })?;
    Ok(())
}

/// Receive from `channel`, or block the caller until a message arrives or
/// the timeout passes.
fn receive_message(
    cx: &mut Ctx<'_>,
    channel: CapHandle,
    timeout_nanos: Option<u64>,
) -> Result<Step, KernelError> {
    let deadline = deadline(cx, timeout_nanos);
    match cx
        .k
        .core
        .receive_or_block(cx.caller, channel, deadline, cx.now)?
    {
        RecvOutcome::Message(delivered) => Ok(Step::Reply(reply::encode_receive(
            &mut cx.k.response,
            &delivered,
        ))),
        RecvOutcome::TimedOut => Err(KernelError::Timeout),
        RecvOutcome::Blocked => Ok(Step::Block(Pending::Receive {
            channel,
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

/// Uses the caller's capability naming the id (see
/// `KernelCore::find_registration`).
fn register_service(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: RegisterRequest = decode(request)?;
    let authority =
        cx.k.core
            .find_registration(cx.caller, request.service)
            .ok_or(KernelError::InsufficientAuthority)?;
    cx.k.core.register_service(
        cx.caller,
        authority,
        request.service,
        request.channel,
        cx.now,
    )?;
    cx.reply(())
}

fn mint_registration(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: MintRegistrationRequest = decode(request)?;
    let handle =
        cx.k.core
            .mint_registration(cx.caller, request.registry, request.service, cx.now)?;
    cx.reply(handle)
}

fn service_registrant(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ServiceRequest = decode(request)?;
    let task = cx.k.core.service_registrant(request.service)?;
    cx.reply(task)
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
