//! Ten thousand request/reply round trips with the echo service, each reply
//! checked for its correlation id and value.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::{Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload};
use pandagen_rt::Kernel;
use pandagen_scenarios::{fail, open_echo_session, EchoValue, ECHO, ECHO_VERSION};

pandagen_rt::entry!(main);

const ROUND_TRIPS: u64 = 10_000;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let (echo, reply) = open_echo_session(kernel)?;
    for value in 0..ROUND_TRIPS {
        let request = MessageEnvelope::new(
            ECHO,
            "echo.add_one",
            ECHO_VERSION,
            MessagePayload::new(&value)?,
        );
        let request_id = request.id;
        // Alternate the two ways of making a call: one `SendReceive` (the
        // kernel's fast path), and a `Send` then a `Receive`.
        let timeout = Some(Duration::from_secs(10));
        let answer = if value % 2 == 0 {
            kernel
                .send_then_receive(echo, request, reply, timeout)?
                .envelope
        } else {
            kernel.send_message(echo, request)?;
            kernel.receive_message(reply, timeout)?
        };
        if answer.correlation_id != Some(request_id) {
            fail(
                kernel,
                alloc::format!(
                    "round trip {value}: reply correlated to {:?}, expected {request_id}",
                    answer.correlation_id
                ),
            );
        }
        let sum: EchoValue = answer.payload.decode()?;
        if sum != value + 1 {
            fail(
                kernel,
                alloc::format!("round trip {value}: got {sum}, expected {}", value + 1),
            );
        }
    }
    Ok(())
}
