//! # pandagen-process-manager
//!
//! The first ring-3 task. It holds the initial authority the kernel mints at
//! boot, reads the service manifest from the boot image, starts the services
//! in dependency order, supervises them through exit notifications and
//! applies their restart policies.
//!
//! * [`manifest`] — the manifest text format and its parser;
//! * [`validate`] — whole-manifest checks and the deterministic start order;
//! * [`descriptor`] — `ServiceDescriptor` and named capabilities;
//! * [`lifecycle`] — lifecycle states and their legal transitions;
//! * [`policy`] — restart policies, backoff timings and the restart decision;
//! * [`supervisor`] — the event-driven supervisor (start order, exit
//!   notifications, restarts, lost-notification detection);
//! * [`protocol`] and [`client`] — the versioned IPC interface and its
//!   typed client;
//! * [`demo`] — demonstration services for the supervision scenarios.
//!
//! The ring-3 program is a few lines: parse the manifest bytes with
//! [`parse_manifest`], build [`BootCapabilities`] from the start-up
//! capabilities, then `Supervisor::new(..).boot(kernel)` and `serve(kernel)`.
//!
//! ## What a supervised service must do
//!
//! * Register its service id (with the `registry` capability it is given):
//!   that is when it counts as `Running` (unless the manifest says
//!   `ready = spawned`), and its registration is how the supervisor notices
//!   that it died when an exit notification is lost.
//! * Exit with `ExitReason::Normal` on a request with action
//!   [`protocol::SHUTDOWN_ACTION`]: the kernel API cannot terminate another
//!   task, so stopping is cooperative. An instance that ignores it stays
//!   `Stopping` (reported as `StopOverdue`, the request re-sent each
//!   `stop_timeout`).
//! * Find other services with `lookup_service` (no capability needed);
//!   after a dependency restarts, its old channel answers
//!   `SendFailed(ChannelClosed)` and a new lookup finds the new one.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot_caps;
pub mod client;
pub mod config;
pub mod demo;
pub mod descriptor;
mod device_requests;
pub mod devices;
pub mod events;
pub mod lifecycle;
pub mod manifest;
pub mod policy;
pub mod protocol;
mod record;
pub mod refusals;
mod server;
pub mod supervisor;
pub mod validate;

pub use boot_caps::BootCapabilities;
pub use client::{ClientError, PmClient};
pub use config::SupervisorConfig;
pub use events::SupervisorEvent;
pub use protocol::{
    InstanceEnd, PmError, PmReply, PmRequest, ServiceHandle, ServiceInfo, ServiceRef,
};
pub use supervisor::{Activity, BootError, Supervisor, Terminator};

pub use descriptor::{CapabilityName, Readiness, ServiceDescriptor};
pub use lifecycle::{IllegalTransition, Lifecycle, LifecycleState};
pub use manifest::{parse as parse_manifest, ManifestError, SyntaxError};
pub use policy::{RestartDecision, RestartPolicy};
pub use validate::{Manifest, ValidationError};
