//! Adversary (issue 13, finding 6): a client sends the services messages
//! that are not envelopes, each carrying as many capabilities as a message
//! may. A service's runtime must release what such a message carried, or
//! every message leaks its slots until the service can receive nothing.
//! The suite checks the services' capability counts before and after.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use pandagen_abi::services::{PIPELINE_EXECUTOR, PROCESS_MANAGER, STORAGE, TRANSFORMER};
use pandagen_abi::syscall::{SendRequest, Syscall, MAX_MESSAGE_CAPS};
use pandagen_abi::{Cap, CapHandle, ChannelId, KernelApi, KernelError, Rights};
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

/// Garbage messages sent to each service.
const ROUNDS: usize = 24;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    let mut scratch = alloc::vec![0u8; 256];
    let mut response = alloc::vec![0u8; 256];
    for service in [PROCESS_MANAGER, STORAGE, PIPELINE_EXECUTOR, TRANSFORMER] {
        let target = kernel.lookup_service(service)?;
        for round in 0..ROUNDS {
            let mut carried = heapless::Vec::<CapHandle, MAX_MESSAGE_CAPS>::new();
            let mut made = Vec::new();
            for _ in 0..MAX_MESSAGE_CAPS {
                let channel = kernel.create_channel()?;
                let send = kernel
                    .clone_capability(&Cap::from(channel), Rights::SEND | Rights::TRANSFER)?;
                kernel.drop_capability(Cap::from(channel))?;
                let _ = carried.push(send.handle());
                made.push(send);
            }
            // Bytes that decode as no envelope: the raw send call, since
            // the runtime's own send only sends envelopes.
            let garbage = [0xFFu8, 0xFE, round as u8, 0x00, 0x13];
            let request = SendRequest {
                channel: target.handle(),
                message: &garbage,
                capabilities: carried,
            };
            let sent: Result<(), KernelError> =
                pandagen_rt::syscall::call(Syscall::Send, &request, &mut scratch, &mut response);
            match sent {
                Ok(()) => {}
                // The service is busy with the earlier ones: try the next.
                Err(KernelError::SendFailed(_)) => {
                    for cap in made {
                        kernel.drop_capability(cap)?;
                    }
                }
                Err(e) => breaches.record(alloc::format!("sending garbage to {service}: {e}")),
            }
        }
        kernel.drop_capability(Cap::from(target))?;
    }
    report(kernel, inbox, breaches, Vec::new())?;
    park(kernel)
}
