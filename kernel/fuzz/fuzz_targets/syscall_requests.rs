//! Every system call's request decoder, on the bytes ring 3 passes: the
//! first byte picks the call number, the rest is the request. A request
//! that decodes must encode again to a request that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pandagen_abi::syscall::*;

/// Decode `$bytes` as `$t`; if that works, encode it and decode the
/// encoding: it must decode, and encode to the same bytes again.
macro_rules! round_trip {
    ($t:ty, $bytes:expr) => {
        if let Ok(request) = postcard::from_bytes::<$t>($bytes) {
            let encoded = postcard::to_allocvec(&request).expect("a decoded request encodes");
            let again = postcard::from_bytes::<$t>(&encoded).expect("an encoded request decodes");
            assert_eq!(again, request);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&number, bytes)) = data.split_first() else {
        return;
    };
    let Ok(call) = Syscall::from_number(u64::from(number)) else {
        return;
    };
    match call {
        Syscall::Exit => round_trip!(ExitRequest, bytes),
        Syscall::Spawn => round_trip!(SpawnRequest<'_>, bytes),
        Syscall::Send => round_trip!(SendRequest<'_>, bytes),
        Syscall::Receive => round_trip!(ReceiveRequest, bytes),
        Syscall::Sleep => round_trip!(SleepRequest, bytes),
        Syscall::Grant | Syscall::Delegate => round_trip!(TransferRequest, bytes),
        Syscall::Drop => round_trip!(CapRequest, bytes),
        Syscall::Clone => round_trip!(CloneRequest, bytes),
        Syscall::RegisterService => round_trip!(RegisterRequest, bytes),
        Syscall::LookupService => round_trip!(ServiceRequest, bytes),
        Syscall::DebugWrite => round_trip!(DebugWriteRequest<'_>, bytes),
        Syscall::KernelInfo => round_trip!(InfoRequestEnvelope, bytes),
        Syscall::ConsoleWrite => round_trip!(ConsoleWriteRequest<'_>, bytes),
        Syscall::BindConsoleInput => round_trip!(BindConsoleInputRequest, bytes),
        Syscall::Terminate => round_trip!(TerminateRequest, bytes),
        Syscall::Shutdown | Syscall::Reboot => round_trip!(ShutdownRequest, bytes),
        Syscall::ReadBootFile => round_trip!(ReadBootFileRequest<'_>, bytes),
        Syscall::SendReceive => round_trip!(SendReceiveRequest<'_>, bytes),
        Syscall::MintObjectCap => round_trip!(MintObjectCapRequest, bytes),
        Syscall::SendToObject => round_trip!(ObjectSendRequest<'_>, bytes),
        Syscall::BlockInfo => round_trip!(BlockInfoRequest, bytes),
        Syscall::BlockRead => round_trip!(BlockReadRequest, bytes),
        Syscall::BlockWrite => round_trip!(BlockWriteRequest<'_>, bytes),
        Syscall::MintRegistration => round_trip!(MintRegistrationRequest, bytes),
        Syscall::ServiceRegistrant => round_trip!(ServiceRequest, bytes),
        Syscall::MintDevice => round_trip!(MintDeviceRequest, bytes),
        Syscall::PortRead => round_trip!(PortReadRequest, bytes),
        Syscall::PortWrite => round_trip!(PortWriteRequest, bytes),
        Syscall::MapDeviceMemory => round_trip!(MapDeviceMemoryRequest, bytes),
        Syscall::BindInterrupt => round_trip!(BindInterruptRequest, bytes),
        Syscall::AcknowledgeInterrupt => round_trip!(InterruptRequest, bytes),
        Syscall::AllocateDma => round_trip!(AllocateDmaRequest, bytes),
        Syscall::OpenPorts => round_trip!(CapRequest, bytes),
        Syscall::TakeOverScreen => {
            round_trip!(pandagen_abi::screen::TakeOverScreenRequest, bytes)
        }
        _ => round_trip!((), bytes),
    }
});
