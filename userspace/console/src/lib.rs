//! # pandagen-console — the operator console
//!
//! A ring-3 service that gives the operator a shell on the serial line once
//! the process manager has started every service:
//!
//! * [`editor`] — line editing (backspace, history on the arrow keys, ANSI
//!   escape sequences), fed byte by byte;
//! * [`command`] — the command language and its parser, with helpful
//!   errors;
//! * [`render`] — the text of every answer (pure, host-tested);
//! * [`host`] — the system calls the console needs beyond `KernelApi`;
//! * [`shell`] — the loop: input messages → editor → command → answer.
//!
//! ## Authority
//!
//! The console holds exactly two capabilities, granted by the process
//! manager from the manifest: `SerialInput` (bind typed input to its own
//! channel, write output) and `KernelInfo` (tasks, capabilities, audit log,
//! memory, the registry; `CONTROL` for `shutdown`). It controls services
//! only by asking the process manager, and reaches storage and the pipeline
//! executor as any client does, by looking them up.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod command;
pub mod editor;
pub mod host;
pub mod render;
pub mod shell;

pub use host::ConsoleHost;
pub use shell::{ConsoleCaps, Flow, Shell, PROMPT};
