//! Preemption suite: two children spin without ever yielding; both must
//! make progress, and this root must still wake from its sleep.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec;
use pandagen_abi::{Cap, Duration, KernelApi, KernelError, Rights, TaskId};
use pandagen_rt::Kernel;
use pandagen_scenarios::{spawn, Tally};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut tally = Tally::default();
    let exits = kernel.create_channel()?;
    let progress = kernel.create_channel()?;
    let mut spinners = vec![];
    for name in ["spinner_a", "spinner_b"] {
        let send =
            kernel.clone_capability(&Cap::from(progress), Rights::SEND | Rights::TRANSFER)?;
        spinners.push(spawn(kernel, name, "spinner", vec![send], exits)?.task_id);
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

    let mut reports: BTreeMap<TaskId, u32> = BTreeMap::new();
    while let Ok(message) = kernel.receive_message(progress, Some(Duration::ZERO)) {
        if let Some(sender) = message.source {
            *reports.entry(sender).or_default() += 1;
        }
    }
    for (index, task) in spinners.iter().enumerate() {
        let count = reports.get(task).copied().unwrap_or(0);
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
