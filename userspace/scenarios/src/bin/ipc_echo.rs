//! The echo service: answers `echo.add_one` with the value plus one, over
//! per-client sessions opened with `echo.open` (which carries a send-only
//! capability for the client's reply channel).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use pandagen_abi::{
    ChannelId, KernelApi, KernelError, MessageEnvelope, MessagePayload, ServiceId, TaskId,
    VersionPolicy,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::{EchoValue, ECHO};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let requests = kernel.create_channel()?;
    kernel.register_service(ECHO, requests)?;
    let policy = VersionPolicy::current(1, 0);
    let mut sessions: BTreeMap<TaskId, ChannelId> = BTreeMap::new();
    // The answer to the last request goes out with the wait for the next
    // one, in one system call (reply-and-wait).
    let mut answer_due: Option<(ChannelId, MessageEnvelope)> = None;
    loop {
        let mut received = match answer_due.take() {
            Some((reply, answer)) => kernel.send_then_receive(reply, answer, requests, None)?,
            None => kernel.receive_with_capabilities(requests, None)?,
        };
        let request = received.envelope;
        let Some(sender) = request.source else {
            continue;
        };
        match request.action.as_str() {
            "echo.open" => {
                let Some(reply_cap) = received.capabilities.pop() else {
                    continue;
                };
                let reply = ChannelId::from_handle(reply_cap.handle());
                if let Some(old) = sessions.insert(sender, reply) {
                    kernel.drop_capability(pandagen_abi::Cap::from(old))?;
                }
                let answer =
                    MessageEnvelope::reply_to(&request, "echo.opened", MessagePayload::empty());
                answer_due = Some((reply, answer));
            }
            "echo.add_one" => {
                let Some(&reply) = sessions.get(&sender) else {
                    continue;
                };
                let Ok(value) = request.decode_payload::<EchoValue>(&policy, ECHO) else {
                    continue;
                };
                let answer = MessageEnvelope::reply_to(
                    &request,
                    "echo.sum",
                    MessagePayload::new(&(value + 1))?,
                );
                answer_due = Some((reply, answer));
            }
            "echo.raw" => {
                // Benchmark path: answer with the same payload bytes.
                let Some(&reply) = sessions.get(&sender) else {
                    continue;
                };
                let answer =
                    MessageEnvelope::reply_to(&request, "echo.raw", request.payload.clone());
                answer_due = Some((reply, answer));
            }
            "echo.transfer" => {
                // Prove the moved capability works here: say hello on it.
                let Some(&reply) = sessions.get(&sender) else {
                    continue;
                };
                let Some(moved) = received.capabilities.pop() else {
                    continue;
                };
                let moved = ChannelId::from_handle(moved.handle());
                let hello = MessageEnvelope::new(
                    ServiceId::from_raw(0),
                    "echo.hello",
                    request.schema_version,
                    MessagePayload::empty(),
                );
                let outcome = kernel.send_message(moved, hello);
                let answer = MessageEnvelope::reply_to(
                    &request,
                    "echo.transferred",
                    MessagePayload::new(&outcome.is_ok())?,
                );
                answer_due = Some((reply, answer));
            }
            "echo.quit" => return Ok(()),
            _ => {}
        }
    }
}
