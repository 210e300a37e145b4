//! Receives another task's capability handle as a plain number and tries to
//! use it. The kernel must refuse: a handle means something only in the
//! capability space of the task it was issued to.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::{
    CapHandle, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    SchemaVersion, ServiceId,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::fail;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let message = kernel.receive_message(inbox, Some(Duration::from_secs(10)))?;
    let stolen: u64 = message.payload.decode()?;
    let target = ChannelId::from_handle(CapHandle::from_raw(stolen));
    let probe = MessageEnvelope::new(
        ServiceId::from_raw(0),
        "thief.probe",
        SchemaVersion::new(1, 0),
        MessagePayload::empty(),
    );
    match kernel.send_message(target, probe) {
        Err(KernelError::InvalidCapability) => Ok(()),
        other => fail(
            kernel,
            alloc::format!("a stolen handle was accepted: {other:?}"),
        ),
    }
}
