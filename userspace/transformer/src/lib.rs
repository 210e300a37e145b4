//! # pandagen-transformer — a demo pipeline stage handler
//!
//! A service that pipelines call as stages: `create_blob` makes a named blob
//! (and its handle capability), `uppercase` / `reverse` transform a blob,
//! `checksum` reduces one to its Adler-32. The logic ([`transform`]) is pure;
//! the service ([`service`]) adapts it to the stage protocol, with an
//! optional [`FailureMode`] for retry tests. [`demo`] holds the demo
//! pipelines and their expected outcomes, shared by the simulator tests and
//! the ring-3 `suite_pipeline` program.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod demo;
pub mod schemas;
pub mod service;
pub mod transform;

pub use schemas::{blob_cap_label, Blob, BlobChecksum, BlobParams};
pub use service::{Execution, FailureMode, Transformer, FLAKY_TRANSFORMER};
pub use transform::{adler32, apply, blob_params_payload, blob_payload, Action, TransformError};
