//! Move a channel capability to the echo server inside a message, check
//! that the server can use it and that this task no longer can.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::{
    Cap, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::{fail, open_echo_session, ECHO, ECHO_VERSION};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let (echo, reply) = open_echo_session(kernel)?;
    let inbox = kernel.create_channel()?;
    let send_only = kernel.clone_capability(&Cap::from(inbox), Rights::SEND | Rights::TRANSFER)?;
    let moved_handle = send_only.handle();
    let request =
        MessageEnvelope::new(ECHO, "echo.transfer", ECHO_VERSION, MessagePayload::empty());
    kernel.send_with_capabilities(echo, request, alloc::vec![send_only])?;

    let answer = kernel.receive_message(reply, Some(Duration::from_secs(10)))?;
    let server_could_send: bool = answer.payload.decode()?;
    if !server_could_send {
        fail(
            kernel,
            "the server could not send on the transferred capability".into(),
        );
    }
    let hello = kernel.receive_message(inbox, Some(Duration::from_secs(10)))?;
    if hello.action != "echo.hello" {
        fail(
            kernel,
            alloc::format!("expected echo.hello on the inbox, got {}", hello.action),
        );
    }
    let stale = ChannelId::from_handle(moved_handle);
    let reuse = MessageEnvelope::new(ECHO, "echo.hello", ECHO_VERSION, MessagePayload::empty());
    match kernel.send_message(stale, reuse) {
        Err(KernelError::InvalidCapability) => Ok(()),
        other => fail(
            kernel,
            alloc::format!("the moved capability still worked here: {other:?}"),
        ),
    }
}
