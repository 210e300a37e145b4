//! Adversary (issue 13, finding 9): another task tries to read the
//! storage service's capability key. The key lies on the block device
//! sealed with a secret only `bin/storage` instances receive, and the
//! device itself is reachable only through a `BlockDevice` capability,
//! which the process manager gives storage alone. So every block call
//! through every handle the attacker could guess must be refused.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::{CapHandle, ChannelId, KernelApi, KernelError};
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    for index in 0..64 {
        for generation in 0..4 {
            let guess = CapHandle::new(index, generation);
            if let Ok(device) = kernel.block_info(guess) {
                breaches.record(alloc::format!("block info through {guess:?}: {device:?}"));
            }
            if kernel.block_read(guess, 0, 1).is_ok() {
                breaches.record(alloc::format!("read block 0 (the key) through {guess:?}"));
            }
        }
    }
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
