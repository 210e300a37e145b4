//! IPC suite: two clients in their own address spaces talk to the echo
//! service through real system calls — 10,000 correlated round trips, and a
//! capability moved inside a message.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use pandagen_abi::{
    Duration, ExitReason, KernelApi, KernelError, MessageEnvelope, MessagePayload, TaskId,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::{
    lookup_with_retry, spawn, startup_caps, wait_exit, Tally, ECHO, ECHO_VERSION,
};

pandagen_rt::entry!(main);

fn outcome(reasons: &BTreeMap<TaskId, ExitReason>, task: TaskId) -> Result<(), String> {
    match reasons.get(&task) {
        Some(ExitReason::Normal) => Ok(()),
        Some(other) => Err(alloc::format!("exited with {other:?}")),
        None => Err("did not exit".into()),
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let root_caps = startup_caps(&info);
    let mut tally = Tally::default();
    let exits = kernel.create_channel()?;

    let registry = kernel.mint_registration_capability(&root_caps[0], ECHO)?;
    let echo = spawn(
        kernel,
        "ipc_echo",
        "ipc_echo",
        vec![registry.erase()],
        exits,
    )?;
    let client = spawn(kernel, "ipc_client", "ipc_client", vec![], exits)?;
    let transfer = spawn(
        kernel,
        "cap_transfer_client",
        "cap_transfer_client",
        vec![],
        exits,
    )?;

    let mut reasons = BTreeMap::new();
    for _ in 0..2 {
        match wait_exit(kernel, exits, Duration::from_secs(300)) {
            Ok(notification) => {
                if let Some(task) = notification.task_id {
                    reasons.insert(task, notification.reason);
                }
            }
            Err(reason) => tally.check("ipc/clients_exit", Err(reason)),
        }
    }
    tally.check(
        "ipc/10000_round_trips_with_correlation",
        outcome(&reasons, client.task_id),
    );
    tally.check(
        "ipc/capability_moved_in_a_message",
        outcome(&reasons, transfer.task_id),
    );

    let quit = lookup_with_retry(kernel, ECHO).and_then(|echo_channel| {
        let quit = MessageEnvelope::new(ECHO, "echo.quit", ECHO_VERSION, MessagePayload::empty());
        kernel.send_message(echo_channel, quit)
    });
    let server = quit
        .map_err(|e| alloc::format!("could not ask the server to quit: {e}"))
        .and_then(|()| wait_exit(kernel, exits, Duration::from_secs(30)))
        .and_then(|n| {
            reasons.insert(echo.task_id, n.reason);
            outcome(&reasons, echo.task_id)
        });
    tally.check("ipc/server_exits_normally", server);
    tally.finish(kernel)
}
