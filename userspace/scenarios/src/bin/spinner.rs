//! Spins forever without yielding, reporting progress now and then on the
//! channel it was given. Only timer preemption lets anyone else run.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::{
    ChannelId, KernelApi, KernelError, MessageEnvelope, MessagePayload, SchemaVersion, ServiceId,
};
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let progress = ChannelId::from_handle(info.capabilities[0]);
    let mut rounds: u64 = 0;
    loop {
        let mut x = rounds;
        for _ in 0..50_000 {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        rounds += 1;
        let report = MessageEnvelope::new(
            ServiceId::from_raw(0),
            "spin.progress",
            SchemaVersion::new(1, 0),
            MessagePayload::new(&rounds)?,
        );
        // A full queue only means the root has not drained it yet.
        let _ = kernel.send_message(progress, report);
    }
}
