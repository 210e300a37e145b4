//! Task for the supervision suite that holds no capability at all: it
//! looks the process manager up (which needs no authority) and asks it to
//! stop, start, restart and crash the demo services. Each must be refused
//! with `ControlCapabilityRequired`, while `pm.status` is answered. Exits
//! `Normal` if so, else with the first deviation as its failure.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use core::time::Duration;

use pandagen_process_manager::demo::{CRASHER, STEADY};
use pandagen_process_manager::{ClientError, PmClient, PmError, PmRequest, ServiceRef};
use pandagen_rt::abi::{ExitReason, FailureCause, KernelError};
use pandagen_rt::Kernel;

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    match intrude(kernel) {
        Ok(()) => kernel.exit(ExitReason::Normal),
        Err(deviation) => kernel.exit(ExitReason::Failure {
            error: FailureCause::Described(deviation),
        }),
    }
}

fn intrude(kernel: &mut Kernel) -> Result<(), String> {
    let pm = PmClient::connect(kernel)
        .map_err(|e| alloc::format!("lookup: {e}"))?
        .with_timeout(Some(Duration::from_secs(10)));
    let requests = [
        PmRequest::Stop(STEADY.into()),
        PmRequest::Restart(STEADY.into()),
        PmRequest::Crash(CRASHER.into()),
        PmRequest::Start(CRASHER.into()),
        PmRequest::Stop(ServiceRef::Name("no-such-service".into())),
    ];
    for request in &requests {
        match pm.call(kernel, request) {
            Err(ClientError::Rejected(PmError::ControlCapabilityRequired)) => {}
            other => {
                return Err(alloc::format!(
                    "{} was answered {other:?}",
                    request.action()
                ))
            }
        }
    }
    pm.status(kernel, STEADY)
        .map(|_| ())
        .map_err(|e| alloc::format!("pm.status: {e:?}"))
}
