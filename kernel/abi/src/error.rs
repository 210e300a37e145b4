//! Kernel errors. Every failure a task can see is a variant, never a string:
//! a caller can match on it, and the kernel never has to format text on an
//! error path.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cap::{CapKind, Rights};
pub use crate::device::DeviceError;
use crate::envelope::EnvelopeError;
use crate::ids::{ExecutionId, ServiceId, TaskId};

/// The errors of the kernel API. Each carries a typed cause where the
/// interface description carried a message string (docs/interfaces.md,
/// "Deliberate differences").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KernelError {
    SpawnFailed(SpawnError),
    ChannelError(ChannelError),
    SendFailed(SendError),
    ReceiveFailed(ReceiveError),
    /// A receive (or other wait) reached its deadline.
    Timeout,
    ServiceNotFound(ServiceId),
    ServiceAlreadyRegistered(ServiceId),
    /// The capability is valid but lacks a right the operation needs.
    InsufficientAuthority,
    /// The handle names no valid capability of the caller: never issued,
    /// stale (generation mismatch), dropped, moved away, or invalidated.
    InvalidCapability,
    /// The capability designates an object of another kind.
    WrongCapabilityKind {
        expected: CapKind,
        found: CapKind,
    },
    ResourceExhausted(Resource),
    /// No such task (or it has already terminated).
    TaskNotFound(TaskId),
    /// The boot image holds no data file by that name.
    BootFileNotFound,
    /// The system call itself was malformed (see [`SyscallError`]).
    Syscall(SyscallError),
    /// A message could not be encoded or decoded.
    Envelope(EnvelopeError),
    /// A block-device request was refused (see [`BlockError`]).
    Block(BlockError),
    /// The execution id names no execution this kernel created (lineage
    /// given to `create_identity` or a spawn with explicit lineage must
    /// name executions the kernel issued).
    UnknownExecution(ExecutionId),
    /// A device request was refused (see [`DeviceError`]).
    Device(DeviceError),
}

/// Why a block-device request failed: the one error of every
/// [`BlockDevice`](crate::block::BlockDevice), and what the kernel's block
/// calls answer inside [`KernelError::Block`]. Except after `Device`,
/// nothing was read or written.
///
/// The kernel's block calls answer only the first three; the variants'
/// order is their wire encoding, so new ones go at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockError {
    /// Blocks `first .. first + count` are not all on the device, which
    /// has `blocks` blocks.
    OutOfRange { first: u64, count: u64, blocks: u64 },
    /// `len` bytes is not a positive whole number of `block_size`-byte
    /// blocks (a write's data, or a read of zero blocks).
    BadLength { len: u64, block_size: u32 },
    /// More than `max` bytes in one call
    /// ([`MAX_BLOCK_TRANSFER`](crate::syscall::MAX_BLOCK_TRANSFER)).
    TooLarge { len: u64, max: u32 },
    /// The holder may not do this, for example write through a read-only
    /// capability.
    NotPermitted,
    /// The device, or the way to it, failed: an I/O error, or a
    /// capability that no longer names the device. A failed write may have
    /// reached the device in part.
    Device,
    /// A ring-3 driver did not answer: it ended (crashed, or was
    /// restarted) while holding the request, or gave no answer in time. A
    /// write may or may not have reached the device; asking again reaches
    /// its next instance.
    Unavailable,
    /// A request to a ring-3 driver could not be decoded. Nothing was
    /// read or written.
    Malformed,
}

/// Why a task could not be spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpawnError {
    /// The boot image holds no program by that name.
    ImageNotFound,
    /// The program is not a loadable ELF for this machine.
    InvalidImage,
    /// The task name is empty or longer than [`limits::MAX_TASK_NAME`](crate::api::limits::MAX_TASK_NAME).
    InvalidName,
    /// More initial capabilities than a new task may receive.
    TooManyCapabilities,
}

/// Channel-level failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelError {
    /// The channel was closed: every endpoint holder dropped it or died.
    Closed,
    /// Only the kernel writes to this channel (it is bound to a service
    /// channel, see `Syscall::BindKernelChannel`): it cannot be registered
    /// as a service nor have a channel bound to it.
    KernelOnly,
    /// The service channel already has a kernel channel bound to it.
    AlreadyBound,
}

/// Why a send failed. A failed send never enqueues anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendError {
    /// The channel's bounded queue is full; try again later.
    QueueFull,
    /// The channel is closed.
    ChannelClosed,
    /// The encoded message is larger than the kernel accepts.
    MessageTooLarge { len: u32, max: u32 },
    /// More capabilities attached than one message may carry.
    TooManyCapabilities,
    /// The message would carry a `RECEIVE` capability for the channel it is
    /// sent on: a channel that only it could keep open.
    ReceiveRightOnOwnChannel,
    /// Fault injection made this send fail (simulation only).
    InjectedFault,
}

/// Why a receive failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiveError {
    /// The channel is closed and its queue is empty.
    ChannelClosed,
    /// Fault injection made this receive fail (simulation only).
    InjectedFault,
    /// The next message carried more capabilities than the receiver's
    /// capability space has room for. It was discarded (its capabilities
    /// invalidated and audited), so the queue moves on: a full space can
    /// cost the receiver that message, never the channel.
    NoRoomForCapabilities { carried: u8 },
}

/// A kernel resource that ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resource {
    /// The kernel as a whole is out of memory.
    Memory,
    Tasks,
    Channels,
    CapabilitySlots,
    ServiceSlots,
    /// The calling task's kernel-memory budget
    /// ([`Budget::memory`](crate::budget::Budget::memory)) is used up: the
    /// task (or the children it granted budgets to) holds as many kernel
    /// objects and queued bytes as it was given. Others are unaffected.
    MemoryBudget,
    /// The spawner's frame budget ([`Budget::frames`](crate::budget::Budget::frames))
    /// cannot cover the new task's address space and grant.
    FrameBudget,
}

/// Errors in the form of a system call, before any object is touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyscallError {
    /// No system call has this number.
    UnknownSyscall(u64),
    /// The request bytes are not a valid postcard encoding of the request.
    MalformedRequest,
    /// A user pointer failed validation.
    BadUserMemory(UserMemoryError),
    /// The response does not fit in the caller's buffer; `needed` bytes would.
    ResponseTooLarge { needed: u32 },
    /// The request or buffer is longer than the kernel will copy.
    RequestTooLarge { len: u64, max: u32 },
    /// The kernel had no state to run the call with; nothing was done.
    KernelUnavailable,
}

/// Why a user memory range was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserMemoryError {
    /// `ptr + len` overflows.
    Overflow,
    /// Some byte lies outside the user half of the address space.
    NotUserAddress,
    /// Some page is not mapped for user access.
    Unmapped,
    /// Some page is mapped read-only but the kernel must write it.
    NotWritable,
}

/// The reason a required right was missing, for audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRights {
    pub required: Rights,
    pub held: Rights,
}

impl KernelError {
    /// Whether a receive that failed with this error can never succeed on
    /// the same channel: it closed, or the capability is not one to
    /// receive with. Any other failure (a message that is not an
    /// envelope, one whose capabilities did not fit, a timeout, an
    /// injected fault) costs at most that message, and a server goes on
    /// to the next one: what a client sends must never end a server.
    pub fn ends_receiving(&self) -> bool {
        matches!(
            self,
            KernelError::ReceiveFailed(ReceiveError::ChannelClosed)
                | KernelError::ChannelError(_)
                | KernelError::InvalidCapability
                | KernelError::InsufficientAuthority
                | KernelError::WrongCapabilityKind { .. }
        )
    }
}

impl From<EnvelopeError> for KernelError {
    fn from(e: EnvelopeError) -> Self {
        KernelError::Envelope(e)
    }
}

impl From<SyscallError> for KernelError {
    fn from(e: SyscallError) -> Self {
        KernelError::Syscall(e)
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::SpawnFailed(e) => write!(f, "spawn failed: {e:?}"),
            KernelError::ChannelError(e) => write!(f, "channel error: {e:?}"),
            KernelError::SendFailed(e) => write!(f, "send failed: {e:?}"),
            KernelError::ReceiveFailed(e) => write!(f, "receive failed: {e:?}"),
            KernelError::Timeout => f.write_str("timed out"),
            KernelError::ServiceNotFound(s) => write!(f, "service {s} not found"),
            KernelError::ServiceAlreadyRegistered(s) => {
                write!(f, "service {s} is already registered")
            }
            KernelError::InsufficientAuthority => {
                f.write_str("the capability lacks a required right")
            }
            KernelError::InvalidCapability => f.write_str("invalid capability"),
            KernelError::WrongCapabilityKind { expected, found } => {
                write!(
                    f,
                    "expected a {expected} capability, found a {found} capability"
                )
            }
            KernelError::ResourceExhausted(r) => write!(f, "out of {r:?}"),
            KernelError::TaskNotFound(t) => write!(f, "{t} not found"),
            KernelError::BootFileNotFound => f.write_str("no such file in the boot image"),
            KernelError::Syscall(e) => write!(f, "bad system call: {e:?}"),
            KernelError::Envelope(e) => write!(f, "message error: {e}"),
            KernelError::Block(e) => write!(f, "block device: {e:?}"),
            KernelError::UnknownExecution(e) => write!(f, "{e} was not issued by this kernel"),
            KernelError::Device(e) => write!(f, "device: {e}"),
        }
    }
}

impl core::error::Error for KernelError {}
