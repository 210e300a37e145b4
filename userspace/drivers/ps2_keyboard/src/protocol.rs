//! How the console reaches the keyboard driver.
//!
//! The driver registers [`KEYBOARD`] on its channel. A console subscribes
//! by sending [`SUBSCRIBE_ACTION`] carrying exactly one capability: a
//! send-only capability to the channel it reads input from. From then on
//! the driver sends [`INPUT_ACTION`] messages there, each a `Vec<u8>` of
//! terminal bytes in typing order (the same payload as the kernel's
//! serial-input messages). A new subscription replaces the old one (a
//! restarted console takes over); bytes typed before any subscription wait
//! in the driver and go to the first subscriber.

use pandagen_abi::SchemaVersion;

pub use pandagen_abi::services::KEYBOARD;

/// Request: deliver typed bytes on the attached channel capability.
pub const SUBSCRIBE_ACTION: &str = "keyboard.subscribe";
/// Typed bytes (`Vec<u8>`), driver to subscriber.
pub const INPUT_ACTION: &str = "keyboard.input";

pub const SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);
