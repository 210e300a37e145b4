//! The system call ABI.
//!
//! A task enters the kernel with the `syscall` instruction:
//!
//! | register | meaning                                             |
//! |----------|-----------------------------------------------------|
//! | `rax`    | the [`Syscall`] number                              |
//! | `rdi`    | pointer to the postcard-encoded request              |
//! | `rsi`    | request length in bytes                             |
//! | `rdx`    | pointer to the response buffer                      |
//! | `r10`    | response buffer capacity in bytes                   |
//!
//! On return `rax` holds the number of response bytes written. The response
//! is the postcard encoding of `Result<Reply, KernelError>`, where `Reply`
//! is the call's reply type documented on each [`Syscall`] variant. Only
//! when the kernel cannot write a response at all does `rax` carry a
//! transport status instead (see [`decode_status`]).
//!
//! The kernel validates every pointer and length before use (the range
//! must lie in the user half, not wrap, and be mapped with the needed
//! permission), copies the request in, decodes it, and never panics on what
//! it reads: every malformed input is a typed [`KernelError`].

use serde::{Deserialize, Serialize};

use crate::api::{limits, Priority};
use crate::budget::Budget;
use crate::cap::{Badge, CapHandle, Rights};
use crate::error::{KernelError, SyscallError};
use crate::identity::{ExitReason, IdentityKind};
use crate::ids::{ServiceId, TaskId};
use crate::varint::{len as varint_len, put as put_varint, take_u64 as take_varint};

/// The most capabilities one message may carry.
pub const MAX_MESSAGE_CAPS: usize = 8;
/// The largest request the kernel copies in.
pub const MAX_REQUEST_BYTES: usize = crate::envelope::MAX_MESSAGE_BYTES + 512;
/// A response buffer this large always fits any reply.
pub const RESPONSE_BUFFER_BYTES: usize = crate::envelope::MAX_MESSAGE_BYTES + 512;
/// The longest text accepted by [`Syscall::DebugWrite`].
pub const MAX_DEBUG_WRITE: usize = 512;

/// Message bytes are written as one postcard byte string (length, then a
/// single copy). Serde's default for `&[u8]` is a sequence written byte by
/// byte: the same wire format, at several instructions per byte — which
/// dominated the IPC path.
fn as_bytes<S: serde::Serializer>(bytes: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// What the kernel must know about a call before running it, beyond its
/// number. Written once per call in the table below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallProperties {
    /// Creates kernel objects (a task, a channel, a capability, a
    /// registration): the kernel refuses the call with
    /// `ResourceExhausted(Memory)` before its heap runs low. Calls that
    /// queue a message check the heap against the message's size instead.
    pub allocates: bool,
    /// May block the caller (the call completes when the task runs again).
    /// The kernel checks, in debug builds, that no other call blocks.
    pub blocks: bool,
    /// Takes a message off a channel into the response buffer. The buffer
    /// is checked before anything else, since a dequeued message could not
    /// be put back: an unwritable buffer is `STATUS_BAD_RESPONSE_BUFFER`
    /// with nothing received.
    pub receives: bool,
}

/// Writes the call table out as the [`Syscall`] enum (with its numbers),
/// one enum per family (for the kernel's per-family handler tables),
/// [`Syscall::from_number`], [`Syscall::ALL`], [`Syscall::family`],
/// [`Syscall::properties`] and [`SYSCALL_COUNT`]. Numbers are dense from
/// 0 (checked at compile time below).
macro_rules! syscall_table {
    ($(
        $(#[$family_doc:meta])*
        family $family:ident($family_enum:ident) {
            $(
                $(#[$doc:meta])*
                $name:ident = $number:literal $([$($property:ident),*])?,
            )*
        }
    )*) => {
        /// System call numbers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[repr(u64)]
        pub enum Syscall {
            $($(
                $(#[$doc])*
                $name = $number,
            )*)*
        }

        $(
            $(#[$family_doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub enum $family_enum {
                $($name,)*
            }
        )*

        /// A call and the family it belongs to: the kernel's dispatcher
        /// hands each family's calls to that family's handler table, whose
        /// `match` the compiler checks for completeness.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Family {
            $($family($family_enum),)*
        }

        /// The first number that is not a system call.
        pub const SYSCALL_COUNT: u64 = Syscall::ALL.len() as u64;

        impl Syscall {
            /// Every call, in number order.
            pub const ALL: &'static [Syscall] = &{
                let mut all = [$($(Syscall::$name,)*)*];
                $($(all[$number] = Syscall::$name;)*)*
                all
            };

            pub const fn from_number(number: u64) -> Result<Syscall, SyscallError> {
                match number {
                    $($($number => Ok(Syscall::$name),)*)*
                    other => Err(SyscallError::UnknownSyscall(other)),
                }
            }

            /// The call's family (see [`Family`]).
            pub const fn family(self) -> Family {
                match self {
                    $($(Syscall::$name => Family::$family($family_enum::$name),)*)*
                }
            }

            /// What the kernel must know about the call before running it.
            pub const fn properties(self) -> CallProperties {
                match self {
                    $($(Syscall::$name => {
                        #[allow(unused_mut)]
                        let mut properties = CallProperties {
                            allocates: false,
                            blocks: false,
                            receives: false,
                        };
                        $($(properties.$property = true;)*)?
                        properties
                    })*)*
                }
            }
        }
    };
}

// The call table: one row per call, grouped by family. A row is
// `Name = number [properties],` with its request → reply documented above
// it; the request and reply types follow the table. A new call takes the
// next free number, in the family its kernel handler belongs to (the steps
// are in docs/architecture.md, "Adding a system call").
syscall_table! {
    /// The caller's own life: starting, time, ending.
    family Task(TaskCall) {
        /// Does nothing and returns 0 without touching any buffer. For
        /// measuring the cost of entering and leaving the kernel.
        Null = 0,
        /// [`ExitRequest`] → never returns.
        Exit = 1,
        /// No request → `()`. Gives up the rest of the time slice.
        Yield = 2,
        /// [`SpawnRequest`] → [`TaskHandle`](crate::api::TaskHandle).
        Spawn = 3 [allocates],
        /// No request → [`Instant`](crate::time::Instant).
        Now = 7,
        /// [`SleepRequest`] → `()`. Blocks.
        Sleep = 8 [blocks],
        /// No request → [`StartupInfo`]: who am I, and which capabilities was I
        /// born with.
        Startup = 16,
        /// [`TerminateRequest`] → `()`: end one of the caller's own children.
        /// Only a task's parent may do this.
        Terminate = 20,
    }

    /// Channels, messages and the service names of channels.
    family Ipc(IpcCall) {
        /// No request → `CapHandle` of the new channel.
        CreateChannel = 4 [allocates],
        /// [`SendRequest`] → `()`.
        Send = 5,
        /// [`ReceiveRequest`] → [`ReceiveReply`]. Blocks.
        Receive = 6 [blocks, receives],
        /// [`RegisterRequest`] → `()`.
        RegisterService = 13 [allocates],
        /// [`ServiceRequest`] → `CapHandle` (send-only channel capability).
        LookupService = 14,
        /// [`SendReceiveRequest`] → [`ReceiveReply`]: a send and then a
        /// receive, in one entry. The client's call (request out, wait for the
        /// reply) and the server's reply-and-wait (reply out, wait for the next
        /// request) are both this call, like seL4's `Call` and `ReplyRecv`.
        /// Both capabilities are checked before anything happens; a send error
        /// is returned with nothing sent or received, after a successful send
        /// the call behaves exactly as [`Syscall::Receive`].
        SendReceive = 23 [blocks, receives],
        /// [`ObjectSendRequest`] → `()`: send a request *through* an object
        /// capability. The kernel delivers it on the channel the object's
        /// service has registered now, stamped with the capability's badge and
        /// rights (see [`ReceiveReply::badge`]).
        SendToObject = 25,
        /// [`MintRegistrationRequest`] → `CapHandle`: a capability of kind
        /// `ServiceRegistration` naming one service id, with
        /// `REGISTER | TRANSFER`, minted from the `ServiceRegistry`
        /// capability (needs `REGISTER | GRANT` on it). This is how the process
        /// manager gives each service it starts the right to register its own
        /// id and no other.
        MintRegistration = 29 [allocates],
        /// [`ServiceRequest`] → `TaskId`: the task that holds the service's
        /// registration now (`ServiceNotFound` if nobody does). Needs no
        /// capability, like a lookup; it lets a supervisor check that the task
        /// serving an id is the instance it started.
        ServiceRegistrant = 30,
        /// [`SendReceive`](Syscall::SendReceive) with its request in
        /// registers, so that the kernel decodes nothing and copies the
        /// message once, straight from the caller's memory into the
        /// receiver's buffer: `rdi`/`rsi` the message (pointer, length),
        /// `rdx`/`r10` the response buffer as for every call, and the rest
        /// of the request as [`ExchangeRegisters`] in `r8`, `r9`, `r12`, `r13`. The
        /// response is [`Syscall::SendReceive`]'s: a [`ReceiveReply`].
        Exchange = 42 [blocks, receives],
        /// [`CapRequest`] (a channel capability with `RECEIVE`) →
        /// `CapHandle` of a new *kernel channel* bound to it, with
        /// `RECEIVE` only: nobody can ever send on it, so only the kernel
        /// queues there (exit notifications, interrupts, console input
        /// routed to it). A receive on the service channel also takes the
        /// kernel channel's messages, the older head first, and a kernel
        /// message wakes a task blocked receiving on the service channel,
        /// like seL4's bound notification. The caller pays for the
        /// channel. Errors: `ChannelError(KernelOnly | AlreadyBound)`.
        BindKernelChannel = 44 [allocates],
        /// A client's call to a service object in one entry:
        /// [`SendToObject`](Syscall::SendToObject) of a message without
        /// capabilities, then [`Receive`](Syscall::Receive) of the answer,
        /// with the request in registers as [`Syscall::Exchange`]'s:
        /// `rdi`/`rsi` the message, `rdx`/`r10` the response buffer, and
        /// [`ObjectCallRegisters`] in `r8`, `r9`, `r12`, `r13`. The response
        /// is `Receive`'s: a [`ReceiveReply`].
        ///
        /// The response buffer and the receive capability (a channel
        /// capability with `RECEIVE`) are checked before anything is sent;
        /// then the send makes every check of `SendToObject` (the object
        /// capability's kind and invoke right, the service registered,
        /// room, size and budget, the kernel heap) and stamps the message
        /// with the capability's badge and rights. A refused call has sent
        /// and received nothing. After the send the call is exactly
        /// `Receive` on that channel with that timeout, so its only errors
        /// then are `Timeout` and `ReceiveFailed` (and a response too large
        /// for the buffer), which the send half never returns: an error of
        /// any other kind means nothing was sent (see [`object_call_sent`]). A message that moves capabilities (a
        /// session's first request carrying its reply capability) takes
        /// `SendToObject` and `Receive`: this call has no room for them.
        CallObject = 46 [blocks, receives],
    }

    /// Moving, copying and dropping capabilities.
    family Caps(CapCall) {
        /// [`TransferRequest`] → `()`: copy a capability to another task.
        Grant = 9 [allocates],
        /// [`TransferRequest`] → `()`: move a capability to another task.
        Delegate = 10,
        /// [`CapRequest`] → `()`.
        Drop = 11,
        /// [`CloneRequest`] → `CapHandle` of the copy.
        Clone = 12 [allocates],
        /// [`MintObjectCapRequest`] → `CapHandle`: a service mints a capability
        /// for one of its own objects (kind `StorageObject`, object = the
        /// service and an opaque badge). Only the task that holds the
        /// service's registration may.
        MintObjectCap = 24 [allocates],
    }

    /// The operator's calls: reading the object model, the boot image,
    /// powering off.
    family Info(InfoCall) {
        /// [`InfoRequestEnvelope`] → [`InfoReply`](crate::info::InfoReply).
        KernelInfo = 17,
        /// [`ShutdownRequest`] → never returns: power off through ACPI S5
        /// (after QEMU's exit device, where attached). Needs the
        /// `KernelInfo` capability with `CONTROL`.
        Shutdown = 21,
        /// [`ReadBootFileRequest`] → [`BootFileReply`]: a file of the boot
        /// image that is not a program (the service manifest). Needs the
        /// `BootImage` capability with `READ`.
        ReadBootFile = 22,
        /// No request → [`RandomReply`]: fresh bytes from the kernel's
        /// entropy pool, and where the pool's seed came from.
        Random = 31,
        /// No request → [`ProgramSecretReply`]: a secret bound to the
        /// program image the caller runs and to this boot. Every task
        /// running the same image gets the same bytes; no task running
        /// another image can learn them (the storage service seals its
        /// capability key with it).
        ProgramSecret = 32,
        /// [`ShutdownRequest`] → never returns: reset the machine (the ACPI
        /// reset register, then the 8042's reset line, then a triple
        /// fault). Needs the `KernelInfo` capability with `CONTROL`.
        Reboot = 41,
    }

    /// The serial console and the kernel log.
    family Console(ConsoleCall) {
        /// [`DebugWriteRequest`] → `()`: a line for the kernel log.
        DebugWrite = 15,
        /// [`ConsoleWriteRequest`] → `()`: raw bytes to the serial console
        /// (needs the `SerialInput` capability with `WRITE`).
        ConsoleWrite = 18,
        /// [`BindConsoleInputRequest`] → `()`: from now on, bytes typed on
        /// the serial console arrive on that channel as kernel messages with
        /// action [`CONSOLE_INPUT_ACTION`] and a `Vec<u8>` payload (needs the
        /// `SerialInput` capability with `READ`, and `SEND` on the channel).
        BindConsoleInput = 19,
    }

    /// The kernel's block device.
    family Block(BlockCall) {
        /// [`BlockInfoRequest`] → [`BlockInfo`]: the geometry of the block
        /// device (needs the `BlockDevice` capability with `READ`).
        BlockInfo = 26,
        /// [`BlockReadRequest`] → [`BlockReadReply`]: `count` whole blocks
        /// from block `first` (needs `READ`; at most [`MAX_BLOCK_TRANSFER`]
        /// bytes per call).
        BlockRead = 27,
        /// [`BlockWriteRequest`] → `()`: whole blocks from block `first`
        /// (needs `WRITE`; at most [`MAX_BLOCK_TRANSFER`] bytes per call). A
        /// completed write is as durable as the device: the kernel's RAM disk
        /// keeps it until the machine stops.
        BlockWrite = 28,
    }

    /// Device capabilities: ports, device memory, interrupt lines, DMA
    /// memory (see [`crate::device`]). Each checks the capability before
    /// touching hardware.
    family Device(DeviceCall) {
        /// [`MintDeviceRequest`] → `CapHandle`: a narrower device
        /// capability, from one the caller holds with `GRANT`.
        MintDevice = 33 [allocates],
        /// [`PortReadRequest`] → `u32`: `in` of 1, 2 or 4 bytes (needs
        /// `READ` on an `IoPorts` capability covering them).
        PortRead = 34,
        /// [`PortWriteRequest`] → `()`: `out` (needs `WRITE`).
        PortWrite = 35,
        /// [`MapDeviceMemoryRequest`] → `u64`, the mapping's address:
        /// device memory mapped uncached into the caller.
        MapDeviceMemory = 36 [allocates],
        /// [`BindInterruptRequest`] → `()`: the line's notifications go to
        /// the channel from now on (needs `RECEIVE` on the `Interrupt`
        /// capability, `SEND` on the channel); then the line is unmasked.
        BindInterrupt = 37 [allocates],
        /// [`InterruptRequest`] → `u32`, fires coalesced since the last
        /// acknowledgement: the driver has handled the line; unmask it.
        AcknowledgeInterrupt = 38,
        /// [`AllocateDmaRequest`] → [`DmaRegion`]: physically contiguous
        /// zeroed frames, mapped into the caller (needs `WRITE` on a
        /// `DmaMemory` capability with allowance left).
        AllocateDma = 39 [allocates],
        /// [`CapRequest`] → [`PortRange`](crate::device::PortRange): open
        /// the ports of an `IoPorts` capability held with `READ` and
        /// `WRITE` to the caller's own `in` and `out` instructions, through
        /// the TSS I/O permission bitmap, for as long as it holds the
        /// capability (at most [`MAX_PORT_WINDOWS`](crate::device::MAX_PORT_WINDOWS)
        /// at a time). Opening one already open changes nothing.
        OpenPorts = 40,
        /// [`TakeOverScreenRequest`](crate::screen::TakeOverScreenRequest)
        /// → [`ScreenHandOver`](crate::screen::ScreenHandOver): the kernel
        /// stops drawing on the framebuffer and sends what it would have
        /// drawn to the channel instead (needs `READ | WRITE` on the
        /// `Framebuffer` device-memory capability, `SEND | RECEIVE` on the
        /// channel: the output goes to a channel the taker reads, never
        /// stamped by the kernel into another task's).
        /// A later take-over replaces the channel (a restarted display
        /// service); output written meanwhile waits for it. The caller
        /// pays for each output message until it reads it.
        TakeOverScreen = 43,
        /// [`ReleaseDmaQuarantineRequest`] → `u64`, frames released: the
        /// caller has reset its device, so the DMA frames of dead drivers
        /// whose register ranges the named capabilities (`IoPorts` or
        /// `DeviceMemory`, each with `WRITE`) cover go back to the kernel,
        /// and their charge to the dead drivers' spawners. Releasing
        /// nothing is not an error.
        ReleaseDmaQuarantine = 45,
    }
}

/// The numbers are dense from 0: `ALL[n]` is call `n`. (A number past the
/// end does not compile either: `ALL`'s construction indexes out of
/// bounds; nor does a duplicate: the enum would have two equal
/// discriminants.)
const _: () = {
    let mut n = 0;
    while n < Syscall::ALL.len() {
        assert!(
            Syscall::ALL[n] as u64 == n as u64,
            "call numbers must be dense from 0"
        );
        n += 1;
    }
};

/// A [`Syscall::MintDevice`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintDeviceRequest {
    pub parent: CapHandle,
    pub resource: crate::device::DeviceResource,
    /// Cut to the parent's rights.
    pub rights: crate::cap::Rights,
}

/// A [`Syscall::PortRead`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReadRequest {
    pub capability: CapHandle,
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub width: u8,
}

/// A [`Syscall::PortWrite`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortWriteRequest {
    pub capability: CapHandle,
    pub port: u16,
    pub width: u8,
    /// Its low `width` bytes are written.
    pub value: u32,
}

/// A [`Syscall::MapDeviceMemory`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapDeviceMemoryRequest {
    pub capability: CapHandle,
    pub range: crate::device::PhysRange,
    pub writable: bool,
    /// Where in the caller's user half (page-aligned, unmapped); `None`
    /// lets the kernel choose.
    pub at: Option<u64>,
}

/// A [`Syscall::BindInterrupt`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindInterruptRequest {
    pub capability: CapHandle,
    pub line: u8,
    pub channel: CapHandle,
}

/// A [`Syscall::AcknowledgeInterrupt`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptRequest {
    pub capability: CapHandle,
    pub line: u8,
}

/// A [`Syscall::AllocateDma`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateDmaRequest {
    pub capability: CapHandle,
    /// A positive multiple of the page size.
    pub bytes: u64,
}

/// A [`Syscall::ReleaseDmaQuarantine`] request: the caller's device-register
/// capabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDmaQuarantineRequest {
    pub registers: heapless::Vec<CapHandle, { crate::device::MAX_RELEASE_REGISTERS }>,
}

/// DMA memory: where the caller sees it and where devices do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaRegion {
    pub address: u64,
    pub physical: u64,
    pub bytes: u64,
}

/// The action of console-input messages.
pub const CONSOLE_INPUT_ACTION: &str = "console.input";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRequest {
    pub reason: ExitReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub capabilities: heapless::Vec<CapHandle, { limits::MAX_SPAWN_CAPS }>,
    pub priority: Priority,
    pub kind: IdentityKind,
    pub trust_domain: &'a str,
    pub exit_channel: Option<CapHandle>,
    /// The child's budget, carved out of the spawner's; `None` for the
    /// kernel's default (see [`crate::budget`]).
    pub budget: Option<Budget>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest<'a> {
    pub channel: CapHandle,
    /// An encoded [`MessageEnvelope`](crate::envelope::MessageEnvelope).
    /// The kernel does not decode it.
    #[serde(serialize_with = "as_bytes")]
    pub message: &'a [u8],
    pub capabilities: heapless::Vec<CapHandle, MAX_MESSAGE_CAPS>,
}

/// A [`Syscall::SendReceive`] request: a [`SendRequest`] on `send`
/// (without capabilities: moving capabilities takes [`Syscall::Send`]),
/// then a [`ReceiveRequest`] on `receive`. [`Syscall::Exchange`] is the
/// same request in registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceiveRequest<'a> {
    pub send: CapHandle,
    pub receive: CapHandle,
    /// As [`ReceiveRequest::timeout_nanos`].
    pub timeout_nanos: Option<u64>,
    /// Release `send` once the message is sent, before the receive: a
    /// server answering on a request's reply capability uses it once (as a
    /// one-shot reply), and the next request's reply capability then takes
    /// the slot it left, so the server's capability space does not creep.
    /// The capability is released in every outcome, a refused send or
    /// receive included: a reply capability is good for one answer.
    pub consume_send: bool,
    #[serde(serialize_with = "as_bytes")]
    pub message: &'a [u8],
}

/// The fields of a [`SendReceiveRequest`] before its message. Postcard
/// writes a struct as its fields one after the other, so the encoding of a
/// request is the encoding of this prefix followed by that of
/// [`MessageBytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SendReceivePrefix {
    pub send: CapHandle,
    pub receive: CapHandle,
    pub timeout_nanos: Option<u64>,
    pub consume_send: bool,
}

/// Message bytes encoded as in a request (one postcard byte string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageBytes<'a>(pub &'a [u8]);

impl Serialize for MessageBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// The registers of a [`Syscall::Exchange`] beyond the message and the
/// response buffer: the channel to send on (`r8`), the channel to receive
/// on (`r9`), the receive's timeout in nanoseconds (`r12`,
/// [`ExchangeRegisters::WAIT_FOREVER`] for none) and
/// [`SendReceiveRequest::consume_send`] (`r13`: 0 or 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeRegisters {
    pub send: CapHandle,
    pub receive: CapHandle,
    /// As [`ReceiveRequest::timeout_nanos`].
    pub timeout_nanos: Option<u64>,
    /// As [`SendReceiveRequest::consume_send`].
    pub consume_send: bool,
}

impl ExchangeRegisters {
    /// The `r12` of a receive without a timeout. (A timeout of `u64::MAX`
    /// nanoseconds, some 584 years, is the same wait.)
    pub const WAIT_FOREVER: u64 = u64::MAX;

    /// The request a task put in `r8`, `r9`, `r12` and `r13`; an `r13`
    /// other than 0 or 1 is `MalformedRequest`.
    pub const fn from_registers(r8: u64, r9: u64, r12: u64, r13: u64) -> Result<Self, KernelError> {
        let consume_send = match r13 {
            0 => false,
            1 => true,
            _ => return Err(KernelError::Syscall(SyscallError::MalformedRequest)),
        };
        Ok(ExchangeRegisters {
            send: CapHandle::from_raw(r8),
            receive: CapHandle::from_raw(r9),
            timeout_nanos: if r12 == Self::WAIT_FOREVER {
                None
            } else {
                Some(r12)
            },
            consume_send,
        })
    }

    /// The values of `r8`, `r9`, `r12` and `r13`.
    pub const fn to_registers(&self) -> [u64; 4] {
        let timeout = match self.timeout_nanos {
            Some(nanos) => nanos,
            None => Self::WAIT_FOREVER,
        };
        [
            self.send.as_raw(),
            self.receive.as_raw(),
            timeout,
            self.consume_send as u64,
        ]
    }
}

/// The registers of a [`Syscall::CallObject`] beyond the message and the
/// response buffer: the object capability to send through (`r8`), the
/// channel to receive the answer on (`r9`), the receive's timeout in
/// nanoseconds (`r12`, [`ExchangeRegisters::WAIT_FOREVER`] for none), and
/// `r13`, reserved: it must be 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectCallRegisters {
    pub object: CapHandle,
    pub receive: CapHandle,
    /// As [`ReceiveRequest::timeout_nanos`].
    pub timeout_nanos: Option<u64>,
}

impl ObjectCallRegisters {
    /// The request a task put in `r8`, `r9`, `r12` and `r13`; an `r13`
    /// other than 0 is `MalformedRequest`.
    pub const fn from_registers(r8: u64, r9: u64, r12: u64, r13: u64) -> Result<Self, KernelError> {
        if r13 != 0 {
            return Err(KernelError::Syscall(SyscallError::MalformedRequest));
        }
        Ok(ObjectCallRegisters {
            object: CapHandle::from_raw(r8),
            receive: CapHandle::from_raw(r9),
            timeout_nanos: if r12 == ExchangeRegisters::WAIT_FOREVER {
                None
            } else {
                Some(r12)
            },
        })
    }

    /// The values of `r8`, `r9`, `r12` and `r13`.
    pub const fn to_registers(&self) -> [u64; 4] {
        let timeout = match self.timeout_nanos {
            Some(nanos) => nanos,
            None => ExchangeRegisters::WAIT_FOREVER,
        };
        [self.object.as_raw(), self.receive.as_raw(), timeout, 0]
    }
}

/// Whether a [`Syscall::CallObject`] that failed with `error` had sent its
/// message: only its receive half returns `Timeout` and `ReceiveFailed`,
/// and it runs only after the send. A response buffer too small for the
/// answer (the status [`decode_status`] reads as `ResponseTooLarge`) also
/// means it was sent and its answer lost, provided the buffer holds any
/// error response (the runtime's, of [`RESPONSE_BUFFER_BYTES`], does): a
/// smaller one may lose a refusal that way too.
pub const fn object_call_sent(error: &KernelError) -> bool {
    matches!(
        error,
        KernelError::Timeout
            | KernelError::ReceiveFailed(_)
            | KernelError::Syscall(SyscallError::ResponseTooLarge { .. })
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveRequest {
    pub channel: CapHandle,
    /// `None` waits forever; `Some(0)` polls.
    pub timeout_nanos: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveReply<'a> {
    /// The sending task, as the kernel knows it.
    pub sender: TaskId,
    #[serde(serialize_with = "as_bytes")]
    pub message: &'a [u8],
    /// The capabilities the message carried, now in the receiver's space.
    pub capabilities: heapless::Vec<CapHandle, MAX_MESSAGE_CAPS>,
    /// For a message sent through an object capability
    /// ([`Syscall::SendToObject`]): that capability's badge and rights, as
    /// the kernel saw them. `None` for a message sent on a channel.
    pub badge: Option<Badge>,
}

/// A [`Syscall::MintObjectCap`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintObjectCapRequest {
    /// The service the object belongs to; the caller must hold its
    /// registration.
    pub service: ServiceId,
    /// Opaque to the kernel: the service's name for the object.
    pub badge: u64,
    /// Restricted to [`OBJECT_CAP_RIGHTS`](crate::cap::OBJECT_CAP_RIGHTS).
    pub rights: Rights,
}

/// A [`Syscall::SendToObject`] request: as [`SendRequest`], through an
/// object capability instead of a channel capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSendRequest<'a> {
    pub object: CapHandle,
    #[serde(serialize_with = "as_bytes")]
    pub message: &'a [u8],
    pub capabilities: heapless::Vec<CapHandle, MAX_MESSAGE_CAPS>,
}

/// The bytes after the message in the response to a receive of a message
/// sent on a channel without capabilities: an empty capability list and no
/// badge.
pub const RECEIVE_REPLY_TRAILER: [u8; 2] = [0, 0];
// `decode_receive_response` tests the trailer as one zero 16-bit word.
const _: () = assert!(RECEIVE_REPLY_TRAILER[0] == 0 && RECEIVE_REPLY_TRAILER[1] == 0);

/// The longest trailer [`write_receive_reply_trailer`] writes: the empty
/// capability list, `Some`, and a badge's value and rights as varints.
pub const RECEIVE_REPLY_TRAILER_MAX: usize = 2 + 10 + 5;

/// Write the bytes after the message in the response to a receive of a
/// message without capabilities stamped `badge` (see [`ReceiveReply::badge`])
/// into `out`; returns their length. For `None` they are
/// [`RECEIVE_REPLY_TRAILER`].
pub fn write_receive_reply_trailer(
    badge: Option<Badge>,
    out: &mut [u8; RECEIVE_REPLY_TRAILER_MAX],
) -> usize {
    let Some(badge) = badge else {
        out[..RECEIVE_REPLY_TRAILER.len()].copy_from_slice(&RECEIVE_REPLY_TRAILER);
        return RECEIVE_REPLY_TRAILER.len();
    };
    out[0] = 0; // no capabilities
    out[1] = 1; // Some
    let at = put_varint(out, 2, badge.value);
    put_varint(out, at, u64::from(badge.rights.bits()))
}

/// The response to a receive of a `len`-byte message from `sender` that
/// carried no capabilities is a header, the message, then
/// [`RECEIVE_REPLY_TRAILER`]: the postcard encoding of
/// `Ok(ReceiveReply { sender, message, capabilities: [], badge: None })`,
/// written out so
/// that the kernel's IPC fast path can put the message bytes straight into
/// the receiver's buffer without staging the whole reply. This is the
/// header's length. (A test checks the framing against postcard.)
pub const fn receive_reply_header_len(sender: TaskId, len: usize) -> usize {
    if is_short_header(sender, len) {
        return 3;
    }
    1 + varint_len(sender.as_raw()) + varint_len(len as u64)
}

/// Whether both of the header's varints are one byte (a sender and a
/// length below 128): the common case of a small message, whose header
/// is three fixed bytes.
#[inline(always)]
const fn is_short_header(sender: TaskId, len: usize) -> bool {
    (sender.as_raw() | len as u64) < 0x80
}

/// Write the header (see [`receive_reply_header_len`]) at the start of
/// `out`; returns the bytes written, which are fewer than the header only
/// if `out` is too short for it.
pub fn write_receive_reply_header(sender: TaskId, len: usize, out: &mut [u8]) -> usize {
    if is_short_header(sender, len) {
        if let Some(head) = out.first_chunk_mut::<3>() {
            *head = [0, sender.as_raw() as u8, len as u8];
            return 3;
        }
    }
    let Some(tag) = out.first_mut() else {
        return 0;
    };
    *tag = 0; // Result::Ok
    let at = put_varint(out, 1, sender.as_raw());
    put_varint(out, at, len as u64)
}

/// Decode the response to a receive (`Result<ReceiveReply, KernelError>`)
/// — what the kernel writes, and what postcard decodes. The common reply,
/// a message without capabilities or badge, is read straight from its
/// framing (see [`receive_reply_header_len`]); anything else, an error
/// included, goes through postcard. Malformed bytes are
/// `MalformedRequest`, as in every response decode.
///
/// Inline, for the commonest reply only: the short header (sender and
/// length below 128, one varint byte each: what the kernel writes for a
/// small message), the message and the plain trailer, read without a
/// call, so that a caller that uses only some of the reply builds only
/// that; every other response is decoded out of line.
#[inline]
pub fn decode_receive_response(bytes: &[u8]) -> Result<ReceiveReply<'_>, KernelError> {
    if let Some(reply) = short_receive_reply(bytes) {
        return Ok(reply);
    }
    decode_receive_response_general(bytes)
}

/// The reply [`decode_receive_response`] reads inline, if `bytes` is one:
/// the short header (sender and length below 128), the message and the
/// plain trailer, nothing else. `None` for every other response, which
/// [`decode_receive_response`] decodes out of line (it may still be a
/// reply). For a loop that makes no call while its replies are short
/// (`raw_echo`'s), so that the registers it hands the kernel stay loaded.
#[inline(always)]
pub fn short_receive_reply(bytes: &[u8]) -> Option<ReceiveReply<'_>> {
    // The header `[0, sender, len]`, the message, the trailer: each test
    // a load or two (the header's three bytes' tested bits in one 32-bit
    // word, the trailer as a 16-bit one), so that the commonest reply
    // costs ring 3 about a dozen instructions.
    if let Some((&[_, sender, len], rest)) = bytes.split_first_chunk::<3>() {
        if let (Some((message, trailer)), Some(word)) =
            (rest.split_last_chunk::<2>(), bytes.first_chunk::<4>())
        {
            // A zero tag (`Result::Ok`), a sender and a length below
            // 0x80 (the first three bytes as one word: the tag's bits
            // and the other two's top bits); the length exactly the
            // message's; and the plain trailer `[0, 0]`
            // (`RECEIVE_REPLY_TRAILER`) to the end. (Five bytes at least
            // are here: the word's fourth is the message's first or the
            // trailer's.)
            if u32::from_le_bytes(*word) & 0x0080_80ff == 0
                && message.len() == usize::from(len)
                && u16::from_ne_bytes(*trailer) == 0
            {
                return Some(ReceiveReply {
                    sender: TaskId::from_raw(u64::from(sender)),
                    message,
                    capabilities: heapless::Vec::new(),
                    badge: None,
                });
            }
        }
    }
    None
}

/// [`decode_receive_response`] for any response.
#[inline(never)]
fn decode_receive_response_general(bytes: &[u8]) -> Result<ReceiveReply<'_>, KernelError> {
    if let Some(reply) = framed_receive_reply(bytes) {
        return Ok(reply);
    }
    postcard::from_bytes::<Result<ReceiveReply<'_>, KernelError>>(bytes)
        .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))?
}

/// The reply of a response framed as header, message, trailer (see
/// [`write_receive_reply_trailer`]), if `bytes` is exactly that.
fn framed_receive_reply(bytes: &[u8]) -> Option<ReceiveReply<'_>> {
    let (sender, len, at) = match bytes {
        // The short header (sender and length below 128, one varint byte
        // each), read without the varint loop: a small message with a
        // badge comes here (the inline reader takes only the plain
        // trailer).
        [0, sender @ 0..0x80, len @ 0..0x80, ..] => (u64::from(*sender), usize::from(*len), 3),
        [0, ..] => {
            let (sender, at) = take_varint(bytes, 1)?;
            let (len, at) = take_varint(bytes, at)?;
            (sender, usize::try_from(len).ok()?, at)
        }
        _ => return None,
    };
    let end = at.checked_add(len)?;
    let badge = match bytes.get(end..)? {
        trailer if trailer == RECEIVE_REPLY_TRAILER => None,
        // No capabilities, `Some` badge: its value and rights to the end.
        [0, 1, ..] => {
            let (value, at) = take_varint(bytes, end + 2)?;
            let (rights, at) = take_varint(bytes, at)?;
            if at != bytes.len() {
                return None;
            }
            Some(Badge {
                value,
                rights: Rights::from_bits(u32::try_from(rights).ok()?),
            })
        }
        _ => return None,
    };
    Some(ReceiveReply {
        sender: TaskId::from_raw(sender),
        message: &bytes[at..end],
        capabilities: heapless::Vec::new(),
        badge,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SleepRequest {
    pub nanos: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub capability: CapHandle,
    pub task: TaskId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapRequest {
    pub capability: CapHandle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRequest {
    pub capability: CapHandle,
    pub rights: Rights,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub service: ServiceId,
    pub channel: CapHandle,
}

/// A [`Syscall::MintRegistration`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintRegistrationRequest {
    /// The caller's `ServiceRegistry` capability.
    pub registry: CapHandle,
    /// The one id the new capability may register.
    pub service: ServiceId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub service: ServiceId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugWriteRequest<'a> {
    pub text: &'a str,
}

/// A [`Syscall::KernelInfo`] request: which capability authorises it and
/// what to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoRequestEnvelope {
    pub capability: CapHandle,
    pub request: crate::info::InfoRequest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleWriteRequest<'a> {
    pub capability: CapHandle,
    pub bytes: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindConsoleInputRequest {
    pub capability: CapHandle,
    pub channel: CapHandle,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminateRequest {
    pub task: TaskId,
    pub reason: ExitReason,
}

/// A [`Syscall::Shutdown`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownRequest {
    pub capability: CapHandle,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBootFileRequest<'a> {
    pub capability: CapHandle,
    /// The file's name in the boot image, e.g. `manifest`.
    pub name: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFileReply<'a> {
    #[serde(serialize_with = "as_bytes")]
    pub bytes: &'a [u8],
}

/// The most data bytes one [`Syscall::BlockRead`] or
/// [`Syscall::BlockWrite`] moves; with its framing it fits both the
/// request and the response limits.
pub const MAX_BLOCK_TRANSFER: usize = 16 * 1024;

/// A [`Syscall::BlockInfo`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfoRequest {
    pub capability: CapHandle,
}

/// The geometry of a block device: `block_count` blocks of `block_size`
/// bytes, numbered from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub block_size: u32,
    pub block_count: u64,
}

/// A [`Syscall::BlockRead`] request: `count` blocks from block `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockReadRequest {
    pub capability: CapHandle,
    pub first: u64,
    pub count: u32,
}

/// The blocks a [`Syscall::BlockRead`] read, `count * block_size` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockReadReply<'a> {
    #[serde(serialize_with = "as_bytes")]
    pub bytes: &'a [u8],
}

/// A [`Syscall::BlockWrite`] request: `bytes` (a whole number of blocks)
/// written from block `first` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockWriteRequest<'a> {
    pub capability: CapHandle,
    pub first: u64,
    #[serde(serialize_with = "as_bytes")]
    pub bytes: &'a [u8],
}

/// What a task learns about itself at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupInfo {
    pub task: TaskId,
    pub execution: crate::ids::ExecutionId,
    /// The name it was spawned under (one image may run under many names).
    pub name: heapless::String<{ limits::MAX_TASK_NAME }>,
    /// The capabilities the task was spawned with, in descriptor order. The
    /// root task, which nobody spawned, receives [`ROOT_CAPABILITIES`].
    pub capabilities: heapless::Vec<CapHandle, { limits::MAX_SPAWN_CAPS }>,
}

impl StartupInfo {
    /// The start-up record of a task. A name longer than
    /// [`limits::MAX_TASK_NAME`] is cut at a character boundary; spawn
    /// refuses more than [`limits::MAX_SPAWN_CAPS`] capabilities, so none
    /// are lost in practice, but extra ones would be left out.
    pub fn new(
        task: TaskId,
        execution: crate::ids::ExecutionId,
        name: &str,
        caps: &[CapHandle],
    ) -> Self {
        let capabilities = caps.iter().copied().take(limits::MAX_SPAWN_CAPS).collect();
        StartupInfo {
            task,
            execution,
            name: crate::text::bounded(name),
            capabilities,
        }
    }
}

/// The kinds of the root task's capabilities, in order: what the kernel
/// mints at boot for the first task (the process manager, or a test suite's
/// root program).
///
/// The last four are the whole of each device resource (every port, all
/// physical memory outside RAM and the kernel, every interrupt line the
/// kernel does not keep, an unbounded DMA allowance), from which the root
/// mints each driver's narrower capabilities. On a machine with a
/// framebuffer a tenth follows: the framebuffer's own `DeviceMemory`
/// capability ([`DeviceResource::Framebuffer`](crate::device::DeviceResource::Framebuffer)),
/// the only one that maps it.
pub const ROOT_CAPABILITIES: [crate::cap::CapKind; 9] = [
    crate::cap::CapKind::ServiceRegistry,
    crate::cap::CapKind::BootImage,
    crate::cap::CapKind::KernelInfo,
    crate::cap::CapKind::SerialInput,
    crate::cap::CapKind::BlockDevice,
    crate::cap::CapKind::IoPorts,
    crate::cap::CapKind::DeviceMemory,
    crate::cap::CapKind::Interrupt,
    crate::cap::CapKind::DmaMemory,
];

/// `rax` values above this are transport statuses, not lengths.
const STATUS_BIT: u64 = 1 << 63;
/// The response buffer itself failed validation.
pub const STATUS_BAD_RESPONSE_BUFFER: u64 = STATUS_BIT | 1;

/// The kernel has no state to run the call with (no kernel state yet, or
/// no current task): nothing was done. Ring 3 never runs in that state,
/// so a task should never see this.
pub const STATUS_KERNEL_UNAVAILABLE: u64 = STATUS_BIT | 3;

/// The status for "the response needs `needed` bytes but the buffer is
/// smaller".
pub const fn status_response_too_large(needed: u32) -> u64 {
    STATUS_BIT | 2 << 32 | needed as u64
}

/// Interpret the `rax` a syscall returned: the response length, or the
/// transport error that prevented writing any response.
pub const fn decode_status(rax: u64) -> Result<usize, KernelError> {
    if rax & STATUS_BIT == 0 {
        return Ok(rax as usize);
    }
    if rax == STATUS_BAD_RESPONSE_BUFFER {
        return Err(KernelError::Syscall(SyscallError::BadUserMemory(
            crate::error::UserMemoryError::Unmapped,
        )));
    }
    if rax == STATUS_KERNEL_UNAVAILABLE {
        return Err(KernelError::Syscall(SyscallError::KernelUnavailable));
    }
    if (rax >> 32) & 0x7fff_ffff == 2 {
        return Err(KernelError::Syscall(SyscallError::ResponseTooLarge {
            needed: rax as u32,
        }));
    }
    Err(KernelError::Syscall(SyscallError::MalformedRequest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips_and_unknown_numbers_are_typed_errors() {
        for n in 0..SYSCALL_COUNT {
            let call = Syscall::from_number(n).unwrap();
            assert_eq!(call as u64, n);
        }
        assert_eq!(
            Syscall::from_number(SYSCALL_COUNT),
            Err(SyscallError::UnknownSyscall(SYSCALL_COUNT))
        );
        assert_eq!(
            Syscall::from_number(u64::MAX),
            Err(SyscallError::UnknownSyscall(u64::MAX))
        );
    }

    #[test]
    fn all_lists_every_call_once_in_number_order() {
        assert_eq!(Syscall::ALL.len() as u64, SYSCALL_COUNT);
        for (n, call) in Syscall::ALL.iter().enumerate() {
            assert_eq!(*call as u64, n as u64);
            assert_eq!(Syscall::from_number(n as u64), Ok(*call));
        }
    }

    #[test]
    fn properties_name_the_calls_the_kernel_treats_specially() {
        let with = |property: fn(CallProperties) -> bool| -> alloc::vec::Vec<Syscall> {
            Syscall::ALL
                .iter()
                .copied()
                .filter(|call| property(call.properties()))
                .collect()
        };
        assert_eq!(
            with(|p| p.allocates),
            [
                Syscall::Spawn,
                Syscall::CreateChannel,
                Syscall::Grant,
                Syscall::Clone,
                Syscall::RegisterService,
                Syscall::MintObjectCap,
                Syscall::MintRegistration,
                Syscall::MintDevice,
                Syscall::MapDeviceMemory,
                Syscall::BindInterrupt,
                Syscall::AllocateDma,
                Syscall::BindKernelChannel,
            ]
        );
        assert_eq!(
            with(|p| p.blocks),
            [
                Syscall::Receive,
                Syscall::Sleep,
                Syscall::SendReceive,
                Syscall::Exchange,
                Syscall::CallObject,
            ]
        );
        assert_eq!(
            with(|p| p.receives),
            [
                Syscall::Receive,
                Syscall::SendReceive,
                Syscall::Exchange,
                Syscall::CallObject
            ]
        );
    }

    #[test]
    fn every_call_is_in_the_family_named_for_it() {
        assert_eq!(Syscall::Send.family(), Family::Ipc(IpcCall::Send));
        assert_eq!(Syscall::Grant.family(), Family::Caps(CapCall::Grant));
        assert_eq!(Syscall::Spawn.family(), Family::Task(TaskCall::Spawn));
        assert_eq!(
            Syscall::KernelInfo.family(),
            Family::Info(InfoCall::KernelInfo)
        );
        assert_eq!(
            Syscall::BindConsoleInput.family(),
            Family::Console(ConsoleCall::BindConsoleInput)
        );
        assert_eq!(
            Syscall::BlockWrite.family(),
            Family::Block(BlockCall::BlockWrite)
        );
    }

    #[test]
    fn receive_reply_framing_is_postcards() {
        let message = [7u8; 300];
        for sender in [0u64, 1, 127, 128, 1 << 20, u64::MAX] {
            for len in [0usize, 1, 127, 128, 300] {
                let reply: Result<ReceiveReply<'_>, KernelError> = Ok(ReceiveReply {
                    sender: TaskId::from_raw(sender),
                    message: &message[..len],
                    capabilities: heapless::Vec::new(),
                    badge: None,
                });
                let expected = postcard::to_allocvec(&reply).unwrap();
                let sender = TaskId::from_raw(sender);
                let mut header = [0u8; 21];
                let n = write_receive_reply_header(sender, len, &mut header);
                assert_eq!(n, receive_reply_header_len(sender, len));
                let mut framed = header[..n].to_vec();
                framed.extend_from_slice(&message[..len]);
                framed.extend_from_slice(&RECEIVE_REPLY_TRAILER);
                assert_eq!(framed, expected, "sender {sender}, len {len}");
                // Read back from its framing, without postcard.
                let read = framed_receive_reply(&framed).expect("a framed reply");
                assert_eq!((read.sender, read.message), (sender, &message[..len]));
                assert_eq!(read.badge, None);
            }
        }
    }

    #[test]
    fn badged_receive_reply_framing_is_postcards() {
        let message = [5u8; 40];
        let badges = [
            None,
            Some(Badge {
                value: 0,
                rights: Rights::NONE,
            }),
            Some(Badge {
                value: 127,
                rights: Rights::READ,
            }),
            Some(Badge {
                value: 1 << 40,
                rights: Rights::from_bits(u32::MAX),
            }),
            Some(Badge {
                value: u64::MAX,
                rights: Rights::READ,
            }),
            Some(Badge {
                value: u64::MAX,
                rights: Rights::from_bits(u32::MAX),
            }),
        ];
        for badge in badges {
            let sender = TaskId::from_raw(300);
            let reply: Result<ReceiveReply<'_>, KernelError> = Ok(ReceiveReply {
                sender,
                message: &message,
                capabilities: heapless::Vec::new(),
                badge,
            });
            let expected = postcard::to_allocvec(&reply).unwrap();
            let mut header = [0u8; 21];
            let n = write_receive_reply_header(sender, message.len(), &mut header);
            let mut trailer = [0u8; RECEIVE_REPLY_TRAILER_MAX];
            let t = write_receive_reply_trailer(badge, &mut trailer);
            let mut framed = header[..n].to_vec();
            framed.extend_from_slice(&message);
            framed.extend_from_slice(&trailer[..t]);
            assert_eq!(framed, expected, "badge {badge:?}");
            assert_eq!(decode_receive_response(&framed).unwrap().badge, badge);
            // A badged reply is read from its framing too, not by postcard.
            let read = framed_receive_reply(&framed).expect("a framed reply");
            assert_eq!(
                (read.sender, read.message, read.badge),
                (sender, &message[..], badge)
            );
        }
    }

    #[test]
    fn the_inline_reader_takes_no_other_header() {
        // Shaped as the commonest reply (three header bytes, a message as
        // long as the third, a zero trailer) but with a tag, a sender or a
        // length byte the short header does not have: each read as
        // postcard reads it, never as the short reply.
        fn by_postcard(bytes: &[u8]) -> Result<ReceiveReply<'_>, KernelError> {
            postcard::from_bytes::<Result<ReceiveReply<'_>, KernelError>>(bytes)
                .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))?
        }
        let mut responses = alloc::vec::Vec::new();
        for (tag, sender, fill) in [(1u8, 5u8, 7u8), (2, 5, 7), (0, 0x85, 1), (0, 0x80, 0)] {
            let mut bytes = alloc::vec![tag, sender, 2, fill, fill];
            bytes.extend_from_slice(&RECEIVE_REPLY_TRAILER);
            responses.push(bytes);
        }
        for fill in [0u8, 1, 0x7f] {
            // A length byte of 0x80 or more with as many bytes after it.
            for len in [0x80u8, 0x81, 0xff] {
                let mut bytes = alloc::vec![0, 5, len];
                bytes.extend(core::iter::repeat_n(fill, usize::from(len)));
                bytes.extend_from_slice(&RECEIVE_REPLY_TRAILER);
                responses.push(bytes);
            }
        }
        for bytes in &responses {
            let inline = decode_receive_response(bytes);
            assert_eq!(inline, by_postcard(bytes), "{bytes:?}");
            assert!(
                !matches!(&inline, Ok(reply) if reply.message.len() + 5 == bytes.len()),
                "{bytes:?} read as a short reply"
            );
            assert_eq!(short_receive_reply(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn receive_responses_decode_as_postcard_does() {
        let message = [7u8; 300];
        let mut caps = heapless::Vec::new();
        caps.push(CapHandle::new(4, 2)).unwrap();
        let badge = Some(Badge {
            value: 9,
            rights: Rights::READ,
        });
        let wide_badge = Some(Badge {
            value: u64::MAX,
            rights: Rights::from_bits(u32::MAX),
        });
        let mut responses = alloc::vec::Vec::new();
        for sender in [0u64, 1, 127, 128, 1 << 20, u64::MAX] {
            for len in [0usize, 1, 127, 128, 300] {
                for (capabilities, badge) in [
                    (heapless::Vec::new(), None),
                    (caps.clone(), None),
                    (heapless::Vec::new(), badge),
                    (heapless::Vec::new(), wide_badge),
                    (caps.clone(), badge),
                ] {
                    let reply: Result<ReceiveReply<'_>, KernelError> = Ok(ReceiveReply {
                        sender: TaskId::from_raw(sender),
                        message: &message[..len],
                        capabilities,
                        badge,
                    });
                    responses.push(postcard::to_allocvec(&reply).unwrap());
                }
            }
        }
        let error: Result<ReceiveReply<'_>, KernelError> = Err(KernelError::Timeout);
        responses.push(postcard::to_allocvec(&error).unwrap());
        fn by_postcard(bytes: &[u8]) -> Result<ReceiveReply<'_>, KernelError> {
            postcard::from_bytes::<Result<ReceiveReply<'_>, KernelError>>(bytes)
                .map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))?
        }
        for bytes in &responses {
            // Whole, cut short anywhere, or with a byte too many.
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_receive_response(&longer), by_postcard(&longer));
            for cut in 0..=bytes.len() {
                let bytes = &bytes[..cut];
                assert_eq!(
                    decode_receive_response(bytes),
                    by_postcard(bytes),
                    "{bytes:?}"
                );
                // The short reader takes only what postcard reads as a
                // short reply: sender and length below 128, nothing after
                // the message but the plain trailer.
                let short = matches!(
                    by_postcard(bytes),
                    Ok(ReceiveReply { sender, message, ref capabilities, badge: None })
                        if sender.as_raw() < 128
                            && message.len() < 128
                            && capabilities.is_empty()
                            && message.len() + 5 == bytes.len()
                );
                assert_eq!(short_receive_reply(bytes).is_some(), short, "{bytes:?}");
                if let Some(reply) = short_receive_reply(bytes) {
                    assert_eq!(Ok(reply), by_postcard(bytes), "{bytes:?}");
                }
            }
        }
        // Rights wider than a u32 are malformed.
        let wide_rights = [0u8, 1, 1, 7, 0, 1, 9, 0xff, 0xff, 0xff, 0xff, 0x10];
        assert_eq!(
            decode_receive_response(&wide_rights),
            by_postcard(&wide_rights)
        );
        assert!(decode_receive_response(&wide_rights).is_err());
        // A varint longer than a u64 is malformed.
        let overlong = [
            0u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0,
        ];
        assert_eq!(
            decode_receive_response(&overlong),
            Err(KernelError::Syscall(SyscallError::MalformedRequest))
        );
    }

    #[test]
    fn a_full_block_transfer_fits_the_request_and_response_limits() {
        let data = alloc::vec![0xA5u8; MAX_BLOCK_TRANSFER];
        let write = BlockWriteRequest {
            capability: CapHandle::new(u32::MAX, u32::MAX),
            first: u64::MAX,
            bytes: &data,
        };
        assert!(postcard::to_allocvec(&write).unwrap().len() <= MAX_REQUEST_BYTES);
        let reply: Result<BlockReadReply<'_>, KernelError> = Ok(BlockReadReply { bytes: &data });
        assert!(postcard::to_allocvec(&reply).unwrap().len() <= RESPONSE_BUFFER_BYTES);
    }

    #[test]
    fn exchange_registers_round_trip() {
        for timeout_nanos in [None, Some(0), Some(1_000_000), Some(u64::MAX - 1)] {
            for consume_send in [false, true] {
                let request = ExchangeRegisters {
                    send: CapHandle::new(3, 1),
                    receive: CapHandle::new(u32::MAX, 7),
                    timeout_nanos,
                    consume_send,
                };
                let [r8, r9, r12, r13] = request.to_registers();
                assert_eq!(
                    ExchangeRegisters::from_registers(r8, r9, r12, r13),
                    Ok(request)
                );
            }
        }
        assert_eq!(
            ExchangeRegisters::from_registers(0, 0, u64::MAX, 0).map(|r| r.timeout_nanos),
            Ok(None)
        );
        assert_eq!(
            ExchangeRegisters::from_registers(0, 0, 0, 2),
            Err(KernelError::Syscall(SyscallError::MalformedRequest))
        );
    }

    #[test]
    fn object_call_registers_round_trip() {
        for timeout_nanos in [None, Some(0), Some(1_000_000), Some(u64::MAX - 1)] {
            let request = ObjectCallRegisters {
                object: CapHandle::new(3, 1),
                receive: CapHandle::new(u32::MAX, 7),
                timeout_nanos,
            };
            let [r8, r9, r12, r13] = request.to_registers();
            assert_eq!(r13, 0);
            assert_eq!(
                ObjectCallRegisters::from_registers(r8, r9, r12, r13),
                Ok(request)
            );
        }
        assert_eq!(
            ObjectCallRegisters::from_registers(0, 0, u64::MAX, 0).map(|r| r.timeout_nanos),
            Ok(None)
        );
        for r13 in [1, 2, u64::MAX] {
            assert_eq!(
                ObjectCallRegisters::from_registers(0, 0, 0, r13),
                Err(KernelError::Syscall(SyscallError::MalformedRequest))
            );
        }
    }

    #[test]
    fn only_the_receive_half_of_an_object_call_answers_timeout_or_receive_failed() {
        use crate::error::{ReceiveError, SendError};
        assert!(object_call_sent(&KernelError::Timeout));
        assert!(object_call_sent(&KernelError::ReceiveFailed(
            ReceiveError::ChannelClosed
        )));
        assert!(object_call_sent(&KernelError::Syscall(
            SyscallError::ResponseTooLarge { needed: 9000 }
        )));
        // A buffer the kernel refused before anything was sent.
        assert_eq!(
            decode_status(STATUS_BAD_RESPONSE_BUFFER).map_err(|e| object_call_sent(&e)),
            Err(false)
        );
        for refused in [
            KernelError::InvalidCapability,
            KernelError::InsufficientAuthority,
            KernelError::ServiceNotFound(crate::ServiceId::from_raw(1)),
            KernelError::SendFailed(SendError::ChannelClosed),
            KernelError::ResourceExhausted(crate::error::Resource::Memory),
            KernelError::Syscall(SyscallError::MalformedRequest),
        ] {
            assert!(!object_call_sent(&refused), "{refused:?}");
        }
    }

    #[test]
    fn a_send_receive_request_is_its_prefix_then_its_message() {
        let request = SendReceiveRequest {
            send: CapHandle::new(3, 1),
            receive: CapHandle::new(300, 7),
            timeout_nanos: Some(1_000_000),
            consume_send: true,
            message: &[9; 200],
        };
        let mut split = postcard::to_allocvec(&SendReceivePrefix {
            send: request.send,
            receive: request.receive,
            timeout_nanos: request.timeout_nanos,
            consume_send: request.consume_send,
        })
        .unwrap();
        split.extend(postcard::to_allocvec(&MessageBytes(request.message)).unwrap());
        assert_eq!(split, postcard::to_allocvec(&request).unwrap());
        assert_eq!(
            postcard::from_bytes::<SendReceiveRequest<'_>>(&split).unwrap(),
            request
        );
    }

    #[test]
    fn statuses_are_distinct_from_lengths() {
        assert_eq!(decode_status(42), Ok(42));
        assert!(matches!(
            decode_status(status_response_too_large(9000)),
            Err(KernelError::Syscall(SyscallError::ResponseTooLarge {
                needed: 9000
            }))
        ));
        assert_eq!(
            decode_status(STATUS_BAD_RESPONSE_BUFFER),
            Err(KernelError::Syscall(SyscallError::BadUserMemory(
                crate::error::UserMemoryError::Unmapped
            )))
        );
        assert_eq!(
            decode_status(STATUS_KERNEL_UNAVAILABLE),
            Err(KernelError::Syscall(SyscallError::KernelUnavailable))
        );
    }

    #[test]
    fn send_request_borrows_the_message_bytes() {
        let mut caps = heapless::Vec::new();
        caps.push(CapHandle::new(1, 2)).unwrap();
        let request = SendRequest {
            channel: CapHandle::new(3, 0),
            message: b"hello",
            capabilities: caps,
        };
        let bytes = postcard::to_allocvec(&request).unwrap();
        let decoded: SendRequest<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn too_many_capabilities_fail_to_decode() {
        let caps: alloc::vec::Vec<CapHandle> = (0..9).map(|i| CapHandle::new(i, 0)).collect();
        #[derive(Serialize)]
        struct Wide<'a> {
            channel: CapHandle,
            message: &'a [u8],
            capabilities: alloc::vec::Vec<CapHandle>,
        }
        let bytes = postcard::to_allocvec(&Wide {
            channel: CapHandle::new(0, 0),
            message: b"",
            capabilities: caps,
        })
        .unwrap();
        assert!(postcard::from_bytes::<SendRequest<'_>>(&bytes).is_err());
    }
}

/// Where the kernel's entropy pool was seeded from at boot, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntropySource {
    /// The CPU's RDSEED (a conditioned hardware noise source).
    Rdseed,
    /// The CPU's RDRAND (a DRBG reseeded from hardware noise).
    Rdrand,
    /// No hardware generator: the jitter of the TSC against the PIT's
    /// timer interrupts, with the boot TSC. Weaker; the kernel says so at
    /// boot.
    TimerJitter,
}

/// The reply of [`Syscall::Random`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomReply {
    pub bytes: [u8; 32],
    pub source: EntropySource,
}

/// The reply of [`Syscall::ProgramSecret`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSecretReply {
    pub secret: [u8; 16],
    pub source: EntropySource,
}
