//! # pandagen-sim — the simulated kernel
//!
//! [`SimulatedKernel`] runs PandaGen's kernel object model (`pandagen-core`,
//! the same code the bare-metal kernel uses) on the host, behind the
//! [`KernelApi`](pandagen_abi::KernelApi) trait services are written
//! against. Time is virtual ([`clock`]); faults are declared in a
//! [`FaultPlan`] and applied deterministically by the [`FaultInjector`];
//! everything that happens is recorded in a [`Trace`]. The [`runner`]
//! steps several services, each its own task, in one kernel.
//!
//! Nothing here reads the wall clock or an unseeded random source: the
//! same scenario with the same plan and seed gives the same trace.
//!
//! ## Testing a service
//!
//! * Single actor: call `KernelApi` methods on a `SimulatedKernel`; they act
//!   as the root task (which holds the root capabilities). Switch actors
//!   with [`SimulatedKernel::as_task`] or [`SimulatedKernel::set_current_task`].
//! * Several services: put each in a [`Scenario`] with [`Scenario::spawn`]
//!   (or [`Scenario::register_image`] for tasks your service spawns), give
//!   it a [`FaultPlan`], and [`Scenario::run_until`] a virtual deadline; see
//!   the [`runner`] docs for how a step should poll.
//! * Check outcomes with [`SimulatedKernel::trace`], `audit_log`,
//!   `exit_notifications` and [`SimulatedKernel::check_invariants`].
//!
//! ```
//! use pandagen_abi::{KernelApi, MessageEnvelope, MessagePayload, SchemaVersion, ServiceId};
//! use pandagen_sim::SimulatedKernel;
//!
//! let mut kernel = SimulatedKernel::new();
//! let channel = kernel.create_channel().unwrap();
//! let service = ServiceId::new();
//! kernel.register_service(service, channel).unwrap();
//! let message = MessageEnvelope::new(service, "ping", SchemaVersion::new(1, 0), MessagePayload::empty());
//! kernel.send_message(channel, message.clone()).unwrap();
//! assert_eq!(kernel.receive_message(channel, None).unwrap().id, message.id);
//! ```
#![forbid(unsafe_code)]

mod api;
pub mod blockdev;
pub mod clock;
pub mod fault;
pub mod fixtures;
mod held;
pub mod injector;
mod kernel;
mod lifecycle;
mod messaging;
mod mirror;
pub mod rng;
pub mod runner;
pub mod trace;
pub mod transfer;

pub use fault::{
    ChannelKey, FaultPlan, LifecycleFault, LifecycleRule, MessageFault, MessageFilter, MessageRule,
};
pub use injector::FaultInjector;
pub use kernel::{CapRef, IpcCounts, Launch, SimInvariantViolation, SimulatedKernel};
pub use transfer::CapabilityTransfer;

/// The simulated kernel under the short name the interface description's
/// examples use.
pub type SimKernel = SimulatedKernel;
pub use pandagen_core::{EXIT_NOTIFICATION_SCHEMA, KERNEL_SERVICE};
pub use runner::{ChannelServer, RunReport, Scenario, SimService, StepOutcome, StopReason};
pub use trace::{
    LossReason, Name, StepSummary, Trace, TraceEvent, TraceRecord, DEFAULT_TRACE_CAPACITY,
};

/// The budget a host harness grants the task that plays the process
/// manager (the real kernel's root task gets the kernel heap and frames
/// less the kernel's own reserve, about this much): enough for the
/// per-service budgets of a manifest.
pub const SUPERVISOR_BUDGET: pandagen_abi::Budget = pandagen_abi::Budget::new(8 << 20, 1 << 16);
