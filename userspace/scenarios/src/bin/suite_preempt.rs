//! Preemption suite: two children spin without ever yielding; both must
//! make progress, and this root must still wake from its sleep.
//!
//! Each spinner reports on a channel of its own, so one spinner filling a
//! bounded queue can never hide the other's progress.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::{Cap, ChannelId, Duration, KernelApi, KernelError, Rights, TaskId};
use pandagen_rt::Kernel;
use pandagen_scenarios::{spawn, Tally};

pandagen_rt::entry!(main);

/// Reports from `spinner` waiting on `progress`, without blocking.
fn drain(kernel: &mut Kernel, progress: ChannelId, spinner: TaskId) -> u32 {
    let mut count = 0;
    while let Ok(message) = kernel.receive_message(progress, Some(Duration::ZERO)) {
        if message.source == Some(spinner) {
            count += 1;
        }
    }
    count
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut tally = Tally::default();
    let exits = kernel.create_channel()?;
    let mut spinners = vec![];
    for name in ["spinner_a", "spinner_b"] {
        let progress = kernel.create_channel()?;
        let send =
            kernel.clone_capability(&Cap::from(progress), Rights::SEND | Rights::TRANSFER)?;
        let task = spawn(kernel, name, "spinner", vec![send], exits)?.task_id;
        spinners.push((task, progress));
    }
    let before = kernel.now();
    kernel.sleep(Duration::from_millis(300))?;
    let slept = kernel.now() - before;
    tally.check(
        "preempt/root_wakes_while_others_spin",
        if slept >= Duration::from_millis(300) {
            Ok(())
        } else {
            Err(alloc::format!("slept only {slept:?}"))
        },
    );

    for (index, (task, progress)) in spinners.into_iter().enumerate() {
        let count = drain(kernel, progress, task);
        let outcome = if count >= 2 {
            Ok(())
        } else {
            Err(alloc::format!("{task} reported progress {count} times"))
        };
        tally.check(
            &alloc::format!("preempt/spinner_{index}_makes_progress"),
            outcome,
        );
    }
    tally.finish(kernel)
}
