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
//! * [`policy`] — restart policies, backoff timings and the restart decision.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod descriptor;
pub mod lifecycle;
pub mod manifest;
pub mod policy;
pub mod validate;

pub use descriptor::{CapabilityName, Readiness, ServiceDescriptor};
pub use lifecycle::{IllegalTransition, Lifecycle, LifecycleState};
pub use manifest::{parse as parse_manifest, ManifestError, SyntaxError};
pub use policy::{RestartDecision, RestartPolicy};
pub use validate::{Manifest, ValidationError};
