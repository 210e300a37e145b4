//! # pandagen-abi — the contract between the kernel and ring 3
//!
//! Everything a task can name or receive lives here, so that ring-3
//! programs, the real kernel and the host-side `SimulatedKernel` agree on one
//! vocabulary:
//!
//! * [`ids`] — task, channel, service, message and execution identifiers;
//! * [`cap`] — capability handles, kinds and rights;
//! * [`error`] — [`KernelError`] and its typed causes;
//! * [`time`] — a `no_std` [`Instant`] (nanoseconds on the kernel clock);
//! * [`envelope`] — [`MessageEnvelope`] and postcard-encoded payloads;
//! * [`schema`] — [`SchemaVersion`] and the version window policy;
//! * [`evolve`] — decoding that lets a schema grow within a major version;
//! * [`identity`] — execution identity, trust domains and exit notifications;
//! * [`api`] — the [`KernelApi`] trait both kernels implement;
//! * [`block`] — [`BlockDevice`], the one interface of a block device;
//! * [`budget`] — [`Budget`], the kernel memory a task may hold;
//! * [`device`] — device capabilities: ports, device memory, interrupts, DMA;
//! * [`memory`] — the page size and the end of the user half;
//! * [`screen`] — handing the framebuffer to the ring-3 display service;
//! * [`text`] — cutting text to a bound on a character boundary.
//!
//! The crate is `no_std` + `alloc` and has no hardware access.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod api;
pub mod block;
pub mod block_protocol;
pub mod budget;
pub mod cap;
pub mod device;
pub mod envelope;
pub mod error;
pub mod evolve;
pub mod identity;
pub mod ids;
pub mod info;
pub mod memory;
pub mod schema;
pub mod screen;
pub mod services;
pub mod siphash;
pub mod syscall;
pub mod text;
pub mod time;
pub mod varint;

pub use api::{
    InPlace, KernelApi, ObjectCallError, Priority, ReceivedMessage, ReceivedRef, TaskDescriptor,
    TaskHandle,
};
pub use block::BlockDevice;
pub use budget::Budget;
pub use cap::{Badge, Cap, CapHandle, CapKind, Rights};
pub use envelope::{
    EncodedEnvelope, EnvelopeError, EnvelopeHead, EnvelopeRef, MessageEnvelope, MessagePayload,
};
pub use error::{BlockError, KernelError};
pub use evolve::{Answer, ExtensibleError};
pub use identity::{
    ExitNotification, ExitReason, FailureCause, IdentityKind, IdentityMetadata, TrustDomain,
};
pub use ids::{ChannelId, ExecutionId, MessageId, ServiceId, TaskId};
pub use schema::{Compatibility, SchemaMismatchError, SchemaVersion, VersionPolicy};
pub use time::{Duration, Instant};
