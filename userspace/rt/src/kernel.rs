//! `KernelApi` over system calls.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use pandagen_abi::api::ReceivedMessage;
use pandagen_abi::cap::kinds;
use pandagen_abi::error::SpawnError;
use pandagen_abi::info::{InfoReply, InfoRequest};
use pandagen_abi::syscall::{
    object_call_sent, BindConsoleInputRequest, BootFileReply, ConsoleWriteRequest,
    InfoRequestEnvelope, MintObjectCapRequest, MintRegistrationRequest, ObjectCallRegisters,
    ObjectSendRequest, ReadBootFileRequest, ShutdownRequest,
};
use pandagen_abi::syscall::{
    CapRequest, CloneRequest, ExchangeRegisters, ExitRequest, ReceiveReply, ReceiveRequest,
    RegisterRequest, SendRequest, ServiceRequest, SleepRequest, SpawnRequest, StartupInfo, Syscall,
    TransferRequest, MAX_MESSAGE_CAPS, MAX_REQUEST_BYTES, RESPONSE_BUFFER_BYTES,
};
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, EncodedEnvelope, EnvelopeRef, ExitReason, InPlace,
    Instant, KernelApi, KernelError, MessageEnvelope, ObjectCallError, ReceivedRef, Rights,
    ServiceId, TaskDescriptor, TaskHandle, TaskId,
};

use crate::syscall::{call, call_receiving, call_small, exchange};
use pandagen_abi::ids::KERNEL_TASK;

/// The most bytes one `ConsoleWrite` call carries (the request must fit
/// the kernel's request limit with room for its framing).
const MAX_CONSOLE_WRITE: usize = 4096;

/// The calling task's view of the kernel, made by [`entry!`](crate::entry)
/// for the program's `main`; it owns the request and response buffers so
/// that a system call allocates nothing. A program may make another
/// ([`Kernel::new`]) for code that must call the kernel while the first is
/// borrowed: the storage service's journal writes to the block device
/// from inside the server's request loop.
pub struct Kernel {
    scratch: Vec<u8>,
    response: Vec<u8>,
}

impl Default for Kernel {
    fn default() -> Self {
        Self::new()
    }
}

/// A received message as the API presents it.
fn received(reply: ReceiveReply<'_>) -> Result<ReceivedMessage, KernelError> {
    received_or_release(reply, release, None)
}

/// Drop a capability a received message carried to this task.
fn release(handle: CapHandle) {
    // The capability is in this task's space; a drop the kernel refuses
    // means it is already gone, which is the goal anyway.
    let _: Result<(), KernelError> = call_small(Syscall::Drop, &CapRequest { capability: handle });
}

/// `reply` offered to `read` in place, where it lies, if it carries no
/// capabilities and its envelope reads in place (`EnvelopeRef::decode`:
/// the bytes of this version): no allocation. Anything else, and a reply
/// `read` declines, is [`received_or_release`]'s.
///
/// With `expected`, an action the answer is expected to carry, the
/// envelope is read with [`EnvelopeRef::decode_expecting`] (the same
/// outcome, without checking that action's UTF-8).
fn in_place_or_received<T>(
    reply: ReceiveReply<'_>,
    read: impl FnOnce(&ReceivedRef<'_>) -> Option<T>,
    release: impl FnMut(CapHandle),
    expected: Option<&'static str>,
) -> Result<InPlace<T>, KernelError> {
    if reply.capabilities.is_empty() {
        let decoded = match expected {
            Some(action) => EnvelopeRef::decode_expecting(reply.message, action),
            None => EnvelopeRef::decode(reply.message),
        };
        if let Some(envelope) = decoded {
            let view = ReceivedRef {
                envelope: EnvelopeRef {
                    source: source_of(reply.sender),
                    ..envelope
                },
                badge: reply.badge,
            };
            if let Some(value) = read(&view) {
                return Ok(InPlace::Read(value));
            }
        }
    }
    received_or_release(reply, release, None).map(|answer| InPlace::Owned(Box::new(answer)))
}

/// The source a received envelope is stamped with: kernel-originated
/// messages (exit notifications) have no source task.
fn source_of(sender: TaskId) -> Option<TaskId> {
    (sender != KERNEL_TASK).then_some(sender)
}

/// `CallObject` of `message` through `object`, answered on `receive`: the
/// kernel's reply, in `kernel`'s response buffer. The envelope is encoded
/// into the scratch buffer, with no allocation.
fn object_call<'k>(
    kernel: &'k mut Kernel,
    object: &Cap<kinds::StorageObject>,
    message: &MessageEnvelope,
    receive: ChannelId,
    timeout: Option<Duration>,
) -> Result<ReceiveReply<'k>, ObjectCallError> {
    let bytes = message
        .encode_into(&mut kernel.scratch)
        .map_err(|e| ObjectCallError::NotSent(e.into()))?;
    object_call_bytes(&mut kernel.response, object, bytes, receive, timeout)
}

/// `CallObject` of the encoded envelope `message` (see [`object_call`]),
/// the kernel's reply in `response`.
fn object_call_bytes<'r>(
    response: &'r mut [u8],
    object: &Cap<kinds::StorageObject>,
    message: &[u8],
    receive: ChannelId,
    timeout: Option<Duration>,
) -> Result<ReceiveReply<'r>, ObjectCallError> {
    let request = ObjectCallRegisters {
        object: object.handle(),
        receive: receive.handle(),
        timeout_nanos: timeout_nanos(timeout),
    };
    match crate::syscall::call_object(&request, message, response) {
        Ok(reply) => Ok(reply),
        Err(e) if object_call_sent(&e) => Err(ObjectCallError::Unanswered(e)),
        Err(e) => Err(ObjectCallError::NotSent(e)),
    }
}

/// [`received`], with `release` dropping a carried capability: a message
/// whose envelope cannot be decoded is an error to the caller, who never
/// sees its capabilities, so they are released here rather than left to
/// fill the task's capability space (any sender could otherwise leak the
/// receiver's slots with garbage bytes). With `spare`, an envelope the
/// caller is done with, the message is decoded into its allocations
/// ([`MessageEnvelope::decode_reusing`]).
fn received_or_release(
    reply: ReceiveReply<'_>,
    mut release: impl FnMut(CapHandle),
    spare: Option<MessageEnvelope>,
) -> Result<ReceivedMessage, KernelError> {
    let decoded = match spare {
        Some(spare) => MessageEnvelope::decode_reusing(reply.message, spare),
        None => MessageEnvelope::decode(reply.message),
    };
    let mut envelope = match decoded {
        Ok(envelope) => envelope,
        Err(error) => {
            for handle in &reply.capabilities {
                release(*handle);
            }
            return Err(error.into());
        }
    };
    let capabilities = reply
        .capabilities
        .iter()
        .map(|h| Cap::from_handle(*h))
        .collect();
    envelope.source = source_of(reply.sender);
    Ok(ReceivedMessage {
        envelope,
        capabilities,
        badge: reply.badge,
    })
}

/// The handles of capabilities to move in a message.
fn handles_of(
    capabilities: &[Cap<()>],
) -> Result<heapless::Vec<CapHandle, MAX_MESSAGE_CAPS>, KernelError> {
    let mut handles = heapless::Vec::new();
    for cap in capabilities {
        handles.push(cap.handle()).map_err(|_| too_many_caps())?;
    }
    Ok(handles)
}

/// A receive's timeout as the kernel takes it (`None`: no timeout).
fn timeout_nanos(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX))
}

fn too_many_caps() -> KernelError {
    KernelError::SendFailed(pandagen_abi::error::SendError::TooManyCapabilities)
}

/// One `Exchange` of the encoded message `bytes` (see
/// [`Kernel::send_receive`]), its answer in `response`, decoded into the
/// allocations of `spare`. Inlined into its two callers: out of line, it
/// cost each call about fifty instructions moving its arguments.
#[inline(always)]
fn exchange_encoded(
    response: &mut [u8],
    send: CapHandle,
    consume_send: bool,
    bytes: &[u8],
    spare: MessageEnvelope,
    receive: ChannelId,
    timeout: Option<Duration>,
) -> Result<ReceivedMessage, KernelError> {
    let request = ExchangeRegisters {
        send,
        receive: receive.handle(),
        timeout_nanos: timeout_nanos(timeout),
        consume_send,
    };
    let reply = exchange(&request, bytes, response)?;
    received_or_release(reply, release, Some(spare))
}

impl Kernel {
    /// One `Exchange` (a `SendReceive` with its request in registers);
    /// `consume_send` releases `send` in the kernel between the send and
    /// the receive. The message received is decoded into the sent one's
    /// allocations.
    fn send_receive(
        &mut self,
        send: CapHandle,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
        consume_send: bool,
    ) -> Result<ReceivedMessage, KernelError> {
        let bytes = message.encode_into(&mut self.scratch)?;
        exchange_encoded(
            &mut self.response,
            send,
            consume_send,
            bytes,
            message,
            receive,
            timeout,
        )
    }

    pub fn new() -> Self {
        Kernel {
            scratch: vec![0; MAX_REQUEST_BYTES],
            response: vec![0; RESPONSE_BUFFER_BYTES],
        }
    }

    /// Who this task is and the capabilities it was born with.
    pub fn startup(&mut self) -> Result<StartupInfo, KernelError> {
        call(Syscall::Startup, &(), &mut self.scratch, &mut self.response)
    }

    /// Write a line to the kernel log.
    pub fn debug(&mut self, text: &str) {
        crate::syscall::debug_write(text);
    }

    /// Give up the rest of this time slice.
    pub fn yield_now(&mut self) {
        let _: Result<(), KernelError> = call_small(Syscall::Yield, &());
    }

    /// End this task.
    pub fn exit(&mut self, reason: ExitReason) -> ! {
        let request = ExitRequest { reason };
        let _: Result<(), KernelError> = call(
            Syscall::Exit,
            &request,
            &mut self.scratch,
            &mut self.response,
        );
        // Exit never returns; if the kernel somehow refused, spin in place
        // rather than run on in an undefined state.
        loop {
            core::hint::spin_loop();
        }
    }

    /// A data file of the boot image, such as the service `manifest`
    /// (needs the `BootImage` capability with `READ`).
    pub fn read_boot_file(
        &mut self,
        capability: CapHandle,
        name: &str,
    ) -> Result<Vec<u8>, KernelError> {
        let request = ReadBootFileRequest { capability, name };
        let reply: BootFileReply<'_> = call(
            Syscall::ReadBootFile,
            &request,
            &mut self.scratch,
            &mut self.response,
        )?;
        Ok(reply.bytes.to_vec())
    }

    /// Kernel introspection ([`Syscall::KernelInfo`]); `capability` is a
    /// `KernelInfo` capability with `READ`.
    pub fn kernel_info(
        &mut self,
        capability: CapHandle,
        request: InfoRequest,
    ) -> Result<InfoReply, KernelError> {
        let request = InfoRequestEnvelope {
            capability,
            request,
        };
        call(
            Syscall::KernelInfo,
            &request,
            &mut self.scratch,
            &mut self.response,
        )
    }

    /// Raw bytes to the serial console; `capability` is the `SerialInput`
    /// capability with `WRITE`. Longer texts are written in pieces.
    pub fn console_write(
        &mut self,
        capability: CapHandle,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        for piece in bytes.chunks(MAX_CONSOLE_WRITE) {
            let request = ConsoleWriteRequest {
                capability,
                bytes: piece,
            };
            call::<_, ()>(
                Syscall::ConsoleWrite,
                &request,
                &mut self.scratch,
                &mut self.response,
            )?;
        }
        Ok(())
    }

    /// From now on, bytes typed on the serial console arrive on `channel`
    /// as kernel messages (action `CONSOLE_INPUT_ACTION`, payload
    /// `Vec<u8>`); `capability` is the `SerialInput` capability with `READ`.
    pub fn bind_console_input(
        &mut self,
        capability: CapHandle,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        call_small(
            Syscall::BindConsoleInput,
            &BindConsoleInputRequest {
                capability,
                channel: channel.handle(),
            },
        )
    }

    /// End one of this task's own children with `reason`.
    pub fn terminate(&mut self, task: TaskId, reason: ExitReason) -> Result<(), KernelError> {
        crate::syscall::terminate(task, reason)
    }

    /// Power the machine off (QEMU exits cleanly); `capability` is the
    /// `KernelInfo` capability with `CONTROL`. Returns only on refusal.
    pub fn shutdown(&mut self, capability: CapHandle) -> Result<(), KernelError> {
        call_small(Syscall::Shutdown, &ShutdownRequest { capability })
    }

    /// Reset the machine (needs the `KernelInfo` capability with
    /// `CONTROL`). Returns only if refused.
    pub fn reboot(&mut self, capability: CapHandle) -> Result<(), KernelError> {
        call_small(Syscall::Reboot, &ShutdownRequest { capability })
    }

    /// End this task with the outcome of its `main`.
    pub fn exit_with(&mut self, result: Result<(), KernelError>) -> ! {
        match result {
            Ok(()) => self.exit(ExitReason::Normal),
            Err(error) => {
                let error = alloc::format!("main returned {error}");
                self.exit(ExitReason::Failure {
                    error: error.into(),
                })
            }
        }
    }
}

impl KernelApi for Kernel {
    fn spawn_task(&mut self, descriptor: TaskDescriptor) -> Result<TaskHandle, KernelError> {
        let image = descriptor
            .image
            .as_deref()
            .ok_or(KernelError::SpawnFailed(SpawnError::ImageNotFound))?;
        let mut capabilities = heapless::Vec::new();
        for cap in &descriptor.capabilities {
            capabilities
                .push(cap.handle())
                .map_err(|_| KernelError::SpawnFailed(SpawnError::TooManyCapabilities))?;
        }
        let request = SpawnRequest {
            name: &descriptor.name,
            image,
            capabilities,
            priority: descriptor.priority,
            kind: descriptor.kind,
            trust_domain: descriptor.trust_domain.as_str(),
            exit_channel: descriptor.exit_channel.map(|c| c.handle()),
            budget: descriptor.budget,
        };
        call(
            Syscall::Spawn,
            &request,
            &mut self.scratch,
            &mut self.response,
        )
    }

    fn create_channel(&mut self) -> Result<ChannelId, KernelError> {
        call_small::<_, CapHandle>(Syscall::CreateChannel, &()).map(ChannelId::from_handle)
    }

    fn send_with_capabilities(
        &mut self,
        channel: ChannelId,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        let bytes = message.encode()?;
        let handles = handles_of(&capabilities)?;
        let request = SendRequest {
            channel: channel.handle(),
            message: &bytes,
            capabilities: handles,
        };
        call(
            Syscall::Send,
            &request,
            &mut self.scratch,
            &mut self.response,
        )
    }

    fn receive_with_capabilities(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        let timeout_nanos = timeout_nanos(timeout);
        let request = ReceiveRequest {
            channel: channel.handle(),
            timeout_nanos,
        };
        let reply = call_receiving(
            Syscall::Receive,
            &request,
            &mut self.scratch,
            &mut self.response,
        )?;
        received(reply)
    }

    fn send_then_receive(
        &mut self,
        send: ChannelId,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.send_receive(send.handle(), message, receive, timeout, false)
    }

    fn reply_then_receive(
        &mut self,
        reply: Cap<()>,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.send_receive(reply.handle(), message, receive, timeout, true)
    }

    fn send_encoded_then_receive(
        &mut self,
        send: CapHandle,
        consume_send: bool,
        bytes: &[u8],
        spare: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        // Sent from where the caller framed it: no copy into the scratch
        // buffer (which is only needed to encode an envelope).
        exchange_encoded(
            &mut self.response,
            send,
            consume_send,
            bytes,
            spare,
            receive,
            timeout,
        )
    }

    fn now(&self) -> Instant {
        // The clock cannot fail; a kernel that refused would be broken, and
        // the origin is the only safe answer then.
        call_small(Syscall::Now, &()).unwrap_or(Instant::ZERO)
    }

    fn sleep(&mut self, duration: Duration) -> Result<(), KernelError> {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        call_small(Syscall::Sleep, &SleepRequest { nanos })
    }

    fn grant_capability(&mut self, task: TaskId, capability: Cap<()>) -> Result<(), KernelError> {
        call_small(
            Syscall::Grant,
            &TransferRequest {
                capability: capability.handle(),
                task,
            },
        )
    }

    fn register_service(
        &mut self,
        service: ServiceId,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        call_small(
            Syscall::RegisterService,
            &RegisterRequest {
                service,
                channel: channel.handle(),
            },
        )
    }

    fn lookup_service(&mut self, service: ServiceId) -> Result<ChannelId, KernelError> {
        call_small::<_, CapHandle>(Syscall::LookupService, &ServiceRequest { service })
            .map(ChannelId::from_handle)
    }

    fn mint_device_capability(
        &mut self,
        parent: &Cap<()>,
        resource: pandagen_abi::device::DeviceResource,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError> {
        crate::device::mint(parent.handle(), resource, rights).map(Cap::from_handle)
    }

    fn mint_registration_capability(
        &mut self,
        registry: &Cap<()>,
        service: ServiceId,
    ) -> Result<Cap<kinds::ServiceRegistration>, KernelError> {
        call_small::<_, CapHandle>(
            Syscall::MintRegistration,
            &MintRegistrationRequest {
                registry: registry.handle(),
                service,
            },
        )
        .map(|h| Cap::from_handle(h).assume_kind())
    }

    fn bind_kernel_channel(&mut self, channel: ChannelId) -> Result<ChannelId, KernelError> {
        let request = CapRequest {
            capability: channel.handle(),
        };
        call_small::<_, CapHandle>(Syscall::BindKernelChannel, &request).map(ChannelId::from_handle)
    }

    fn service_registrant(&mut self, service: ServiceId) -> Result<TaskId, KernelError> {
        call_small(Syscall::ServiceRegistrant, &ServiceRequest { service })
    }

    fn delegate_capability(&mut self, capability: Cap<()>, to: TaskId) -> Result<(), KernelError> {
        call_small(
            Syscall::Delegate,
            &TransferRequest {
                capability: capability.handle(),
                task: to,
            },
        )
    }

    fn drop_capability(&mut self, capability: Cap<()>) -> Result<(), KernelError> {
        call_small(
            Syscall::Drop,
            &CapRequest {
                capability: capability.handle(),
            },
        )
    }

    fn clone_capability(
        &mut self,
        capability: &Cap<()>,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError> {
        call_small::<_, CapHandle>(
            Syscall::Clone,
            &CloneRequest {
                capability: capability.handle(),
                rights,
            },
        )
        .map(Cap::from_handle)
    }

    fn mint_object_capability(
        &mut self,
        service: ServiceId,
        badge: u64,
        rights: Rights,
    ) -> Result<Cap<kinds::StorageObject>, KernelError> {
        call_small::<_, CapHandle>(
            Syscall::MintObjectCap,
            &MintObjectCapRequest {
                service,
                badge,
                rights,
            },
        )
        .map(|h| Cap::from_handle(h).assume_kind())
    }

    fn send_to_object(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_to_object_ref(object, &message, capabilities)
    }

    fn send_to_object_ref(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        let handles = handles_of(&capabilities)?;
        // The envelope is encoded into the response buffer and the request,
        // which copies it, into the scratch buffer: no allocation. The
        // kernel reads the whole request before it writes its response.
        let message_len = message.encode_into(&mut self.response)?.len();
        let request = ObjectSendRequest {
            object: object.handle(),
            message: &self.response[..message_len],
            capabilities: handles,
        };
        let request_len = crate::syscall::encode_request(&request, &mut self.scratch)?;
        crate::syscall::call_encoded(
            Syscall::SendToObject,
            &self.scratch[..request_len],
            &mut self.response,
        )
    }

    fn call_object(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, ObjectCallError> {
        let reply = object_call(self, object, message, receive, timeout)?;
        received(reply).map_err(ObjectCallError::Unanswered)
    }

    /// The answer is read where the kernel wrote it, in the response
    /// buffer: an answer without capabilities that decodes in place
    /// (`EnvelopeRef::decode`) is offered to `read` with no allocation;
    /// anything else, and an answer `read` declines, is decoded as
    /// `call_object` decodes it.
    fn call_object_in_place<T>(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
        read: impl FnOnce(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<InPlace<T>, ObjectCallError> {
        let reply = object_call(self, object, message, receive, timeout)?;
        in_place_or_received(reply, read, release, None).map_err(ObjectCallError::Unanswered)
    }

    /// The request's bytes are sent as they are, from the caller's buffer
    /// (not copied into the scratch buffer, nor encoded); the answer is
    /// read as `call_object_in_place` reads it, its action expected to be
    /// `answer`.
    fn call_object_encoded<T>(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: &EncodedEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
        answer: &'static str,
        read: impl FnOnce(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<InPlace<T>, ObjectCallError> {
        let reply = object_call_bytes(
            &mut self.response,
            object,
            message.as_bytes(),
            receive,
            timeout,
        )?;
        in_place_or_received(reply, read, release, Some(answer))
            .map_err(ObjectCallError::Unanswered)
    }

    fn block_info(
        &mut self,
        device: CapHandle,
    ) -> Result<pandagen_abi::syscall::BlockInfo, KernelError> {
        crate::block::info(&mut self.scratch, &mut self.response, device)
    }

    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError> {
        crate::block::read(&mut self.scratch, &mut self.response, device, first, count)
    }

    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        crate::block::write(&mut self.scratch, &mut self.response, device, first, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecodable_message_releases_every_carried_capability() {
        let carried: heapless::Vec<CapHandle, MAX_MESSAGE_CAPS> = (1..=MAX_MESSAGE_CAPS as u32)
            .map(|i| CapHandle::new(i, 1))
            .collect();
        let reply = ReceiveReply {
            sender: TaskId::from_raw(9),
            message: b"not an envelope",
            capabilities: carried.clone(),
            badge: None,
        };
        let spare = MessageEnvelope::new(
            ServiceId::from_raw(1),
            "sent",
            pandagen_abi::SchemaVersion::new(1, 0),
            pandagen_abi::MessagePayload::empty(),
        );
        for spare in [None, Some(spare)] {
            let mut released = Vec::new();
            let reply = ReceiveReply {
                capabilities: carried.clone(),
                ..reply
            };
            let result = received_or_release(reply, |h| released.push(h), spare);
            assert!(matches!(result, Err(KernelError::Envelope(_))));
            assert_eq!(released, carried.to_vec());
        }
    }

    /// A message decoded into a sent envelope's allocations is the
    /// message the general decode gives, stamped with its sender.
    #[test]
    fn a_message_received_into_a_spare_envelope_is_the_message_sent() {
        let sent = MessageEnvelope::new(
            ServiceId::from_raw(2),
            "storage.reply",
            pandagen_abi::SchemaVersion::new(1, 0),
            pandagen_abi::MessagePayload::from_bytes(vec![5; 40]).unwrap(),
        );
        let action = sent.action.as_ptr();
        let request = MessageEnvelope::new(
            ServiceId::from_raw(2),
            "storage.tx",
            pandagen_abi::SchemaVersion::new(1, 0),
            pandagen_abi::MessagePayload::from_bytes(vec![7; 12]).unwrap(),
        );
        let bytes = request.encode().unwrap();
        let reply = ReceiveReply {
            sender: TaskId::from_raw(9),
            message: &bytes,
            capabilities: heapless::Vec::new(),
            badge: None,
        };
        let message =
            received_or_release(reply, |_| panic!("nothing to release"), Some(sent)).unwrap();
        assert_eq!(message.envelope.action.as_ptr(), action);
        assert_eq!(
            message.envelope,
            MessageEnvelope {
                source: Some(TaskId::from_raw(9)),
                ..request
            }
        );
    }

    /// An answer without capabilities is read where it lies, with the
    /// fields `received_or_release` gives it; one with capabilities, one
    /// the reader declines and one only the general decode reads are
    /// that decode's.
    #[test]
    fn an_answer_is_read_in_place_or_received_as_before() {
        // Expecting the answer's action, another, or none: the same.
        for expected in [None, Some("answer"), Some("answe"), Some("")] {
            let envelope = MessageEnvelope::new(
                ServiceId::from_raw(1),
                "answer",
                pandagen_abi::SchemaVersion::new(2, 0),
                pandagen_abi::MessagePayload::from_bytes(vec![5; 40]).unwrap(),
            )
            .with_correlation(pandagen_abi::MessageId::from_raw(12));
            let bytes = envelope.encode().unwrap();
            let badge = Some(pandagen_abi::Badge {
                value: 3,
                rights: Rights::READ,
            });
            let reply = |message, capabilities| ReceiveReply {
                sender: TaskId::from_raw(9),
                message,
                capabilities,
                badge,
            };
            let whole =
                received_or_release(reply(&bytes, heapless::Vec::new()), |_| {}, None).unwrap();
            let mut seen = None;
            let read = in_place_or_received(
                reply(&bytes, heapless::Vec::new()),
                |r| {
                    // What it saw, field for field (the view borrows the reply).
                    seen = Some(alloc::format!("{:?}", (r.envelope, r.badge)));
                    Some(r.envelope.payload.len())
                },
                |_| panic!("released"),
                expected,
            );
            assert_eq!(read, Ok(InPlace::Read(40)));
            assert_eq!(
                seen,
                Some(alloc::format!(
                    "{:?}",
                    (whole.envelope.borrowed(), whole.badge)
                ))
            );
            // Declined: the message as `received_or_release` gives it.
            let declined = in_place_or_received(
                reply(&bytes, heapless::Vec::new()),
                |_| None::<()>,
                |_| panic!("released"),
                expected,
            );
            assert_eq!(declined, Ok(InPlace::Owned(Box::new(whole))));
            // With a capability: never offered, and kept.
            let mut carried = heapless::Vec::new();
            carried.push(CapHandle::new(3, 1)).unwrap();
            let with_cap = in_place_or_received(
                reply(&bytes, carried.clone()),
                |_| -> Option<()> { panic!("offered") },
                |_| panic!("released"),
                expected,
            );
            match with_cap {
                Ok(InPlace::Owned(m)) => assert_eq!(m.capabilities.len(), 1),
                other => panic!("{other:?}"),
            }
            // Undecodable: the general decode's error, its capability released.
            let mut released = Vec::new();
            let bad = in_place_or_received(
                reply(b"not an envelope", carried.clone()),
                |_| -> Option<()> { panic!("offered") },
                |h| released.push(h),
                expected,
            );
            assert!(matches!(bad, Err(KernelError::Envelope(_))));
            assert_eq!(released, carried.to_vec());
            let bad = in_place_or_received(
                reply(&bytes[..bytes.len() - 1], heapless::Vec::new()),
                |_| -> Option<()> { panic!("offered") },
                |_| panic!("released"),
                expected,
            );
            assert!(bad.is_err(), "a cut envelope is refused as before");
        }
    }

    #[test]
    fn a_decodable_message_keeps_its_capabilities() {
        let envelope = MessageEnvelope::new(
            ServiceId::from_raw(1),
            "ping",
            pandagen_abi::SchemaVersion::new(1, 0),
            pandagen_abi::MessagePayload::empty(),
        );
        let bytes = envelope.encode().unwrap();
        let mut carried = heapless::Vec::new();
        carried.push(CapHandle::new(3, 1)).unwrap();
        let reply = ReceiveReply {
            sender: TaskId::from_raw(9),
            message: &bytes,
            capabilities: carried,
            badge: None,
        };
        let mut released = Vec::new();
        let message = received_or_release(reply, |h| released.push(h), None).unwrap();
        assert!(released.is_empty());
        assert_eq!(message.capabilities.len(), 1);
        assert_eq!(message.envelope.source, Some(TaskId::from_raw(9)));
    }
}
