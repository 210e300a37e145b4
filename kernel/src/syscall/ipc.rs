//! Channels, messages and the service names of channels: `CreateChannel`,
//! `Send`, `Receive`, `SendReceive` and `Exchange`, `SendToObject`,
//! `RegisterService`, `LookupService`.

use pandagen_abi::syscall::{
    CapRequest, ExchangeRegisters, IpcCall, MintRegistrationRequest, ObjectSendRequest,
    ReceiveRequest, RegisterRequest, SendReceiveRequest, SendRequest, ServiceRequest,
};
use pandagen_abi::{CapHandle, Duration, Instant, KernelError};
use pandagen_core::RecvOutcome;

use super::{decode, Ctx, Handler, Step};
use crate::task::Pending;

pub(super) fn handler(call: IpcCall) -> Handler {
    match call {
        IpcCall::CreateChannel => create_channel,
        IpcCall::Send => send,
        IpcCall::Receive => receive,
        IpcCall::SendReceive => send_receive,
        IpcCall::SendToObject => send_to_object,
        IpcCall::RegisterService => register_service,
        IpcCall::LookupService => lookup_service,
        IpcCall::MintRegistration => mint_registration,
        IpcCall::ServiceRegistrant => service_registrant,
        IpcCall::Exchange => exchange,
        IpcCall::BindKernelChannel => bind_kernel_channel,
        IpcCall::CallObject => super::object_call::call_object,
    }
}

fn bind_kernel_channel(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: CapRequest = decode(request)?;
    let handle =
        cx.k.core_mut()
            .bind_kernel_channel(cx.caller, request.capability, cx.now)?;
    cx.reply(handle)
}

fn create_channel(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    decode::<()>(request)?;
    let handle = cx.k.core_mut().create_channel(cx.caller, cx.now)?;
    cx.reply(handle)
}

/// Queued messages live on the kernel heap until received, so a send that
/// would leave too little free is refused (see [`Ctx::ensure_heap_room`]).
fn send(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: SendRequest<'_> = decode(request)?;
    send_message(cx, request.channel, request.message, &request.capabilities)?;
    cx.reply(())
}

fn receive(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ReceiveRequest = decode(request)?;
    receive_message(cx, request.channel, request.timeout_nanos)
}

/// A send, then a receive: first the core's fast path (a receiver is
/// waiting: hand it the message and switch straight to it), else the two
/// halves one after the other. The receive capability is checked before
/// sending, so that a call refused for it has sent nothing. With
/// `consume_send`, the send capability is released in every outcome,
/// after the send and before the receive (see [`SendReceiveRequest`]).
fn send_receive(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    send_receive_parts(cx, decode(request)?)
}

/// [`send_receive`] of a decoded request.
fn send_receive_parts(
    cx: &mut Ctx<'_>,
    request: SendReceiveRequest<'_>,
) -> Result<Step, KernelError> {
    let release = |cx: &mut Ctx<'_>| {
        if request.consume_send {
            // Already invalid if this fails, which is the goal anyway.
            let _ = cx.k.core_mut().drop_cap(cx.caller, request.send, cx.now);
        }
    };
    let deadline = deadline(cx, request.timeout_nanos);
    let switched = cx.k.send_receive_fast(
        cx.caller,
        request.send,
        request.message,
        request.receive,
        deadline,
        cx.now,
    );
    if let Some(switched) = switched {
        release(cx);
        return Ok(Step::SwitchTo {
            task: switched.receiver,
            pending: Pending::Receive {
                channel: request.receive,
                deadline,
                response: cx.response,
            },
        });
    }
    let sent =
        cx.k.core_mut()
            .check_receive(cx.caller, request.receive, cx.now)
            .and_then(|()| send_message(cx, request.send, request.message, &[]));
    release(cx);
    sent?;
    receive_message(cx, request.receive, request.timeout_nanos)
}

/// `SendReceive` with its request in registers, on the general path: the
/// dispatcher has copied the message in as the request (its length checked
/// like any request's). The direct path (`KernelState::direct_call`)
/// declined it first.
fn exchange(cx: &mut Ctx<'_>, message: &[u8]) -> Result<Step, KernelError> {
    let registers = cx.registers;
    let request = ExchangeRegisters::from_registers(
        registers.r8,
        registers.r9,
        registers.r12,
        registers.r13,
    )?;
    send_receive_parts(
        cx,
        SendReceiveRequest {
            send: request.send,
            receive: request.receive,
            timeout_nanos: request.timeout_nanos,
            consume_send: request.consume_send,
            message,
        },
    )
}

/// A send through an object capability; the same heap reserve as `send`.
fn send_to_object(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ObjectSendRequest<'_> = decode(request)?;
    cx.ensure_heap_room(request.message.len())?;
    cx.k.send_to_object_or_hand_off(
        cx.caller,
        request.object,
        request.message,
        &request.capabilities,
        cx.now,
    )?;
    cx.reply(())
}

/// Uses the caller's capability naming the id (see
/// `KernelCore::find_registration`).
fn register_service(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: RegisterRequest = decode(request)?;
    let authority =
        cx.k.core()
            .find_registration(cx.caller, request.service)
            .ok_or(KernelError::InsufficientAuthority)?;
    cx.k.core_mut().register_service(
        cx.caller,
        authority,
        request.service,
        request.channel,
        cx.now,
    )?;
    cx.reply(())
}

/// A supervisor mints, from its `ServiceRegistry` capability, the right to
/// register one id, for the service it starts.
fn mint_registration(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: MintRegistrationRequest = decode(request)?;
    let handle =
        cx.k.core_mut()
            .mint_registration(cx.caller, request.registry, request.service, cx.now)?;
    cx.reply(handle)
}

fn service_registrant(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ServiceRequest = decode(request)?;
    let task = cx.k.core().service_registrant(request.service)?;
    cx.reply(task)
}

fn lookup_service(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ServiceRequest = decode(request)?;
    let handle =
        cx.k.core_mut()
            .lookup_service(cx.caller, request.service, cx.now)?;
    cx.reply(handle)
}

/// The deadline of a receive with `timeout_nanos`.
pub(super) fn deadline(cx: &Ctx<'_>, timeout_nanos: Option<u64>) -> Option<Instant> {
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
    cx.ensure_heap_room(message.len())?;
    cx.k.send_or_hand_off(cx.caller, channel, message, capabilities, cx.now)
}

/// Receive from `channel`, or block the caller until a message arrives or
/// the timeout passes.
fn receive_message(
    cx: &mut Ctx<'_>,
    channel: CapHandle,
    timeout_nanos: Option<u64>,
) -> Result<Step, KernelError> {
    let deadline = deadline(cx, timeout_nanos);
    let outcome =
        cx.k.core_mut()
            .receive_or_block(cx.caller, channel, deadline, cx.now)?;
    received(cx, outcome, channel, deadline)
}

/// What a receive on `channel` until `deadline` that came to `outcome`
/// does to the caller.
pub(super) fn received(
    cx: &mut Ctx<'_>,
    outcome: RecvOutcome,
    channel: CapHandle,
    deadline: Option<Instant>,
) -> Result<Step, KernelError> {
    match outcome {
        RecvOutcome::Message(delivered) => Ok(Step::Reply(cx.k.encode_received(&delivered))),
        RecvOutcome::TimedOut => Err(KernelError::Timeout),
        RecvOutcome::Blocked => Ok(Step::Block(Pending::Receive {
            channel,
            deadline,
            response: cx.response,
        })),
    }
}
