//! # pandagen-console — the operator console
//!
//! A ring-3 service that gives the operator a shell on the serial line and
//! the PS/2 keyboard (output on serial and, through the kernel, on the
//! screen) once the process manager has started every service:
//!
//! * [`editor`] — line editing (backspace, history on the arrow keys, ANSI
//!   escape sequences), fed byte by byte;
//! * [`command`] — the command language and its parser, with helpful
//!   errors;
//! * [`render`] — the text of every answer (pure, host-tested);
//! * [`host`] — the system calls the console needs beyond `KernelApi`;
//! * [`shell`] — the loop: input messages → editor → command → answer.
//!
//! ## Using it
//!
//! `cargo xtask run` boots to the `pandagen>` prompt (the line before it
//! says how long boot took: `console: system ready in N ms`). `help` lists
//! the commands: `ps`, `caps [task]`, `audit [n]`, `services`,
//! `start|stop|restart|crash <service>`, `store put|get|log append|log
//! read|versions`, `pipeline list|run <demo>`, `uptime`, `mem`,
//! `shutdown` (ACPI power-off), `reboot`. Service actions wait (up to 10 s) for the outcome and say it;
//! `crash` shows the supervisor bringing the service back.
//!
//! Input typed while a command runs is kept (in the kernel's buffer and the
//! console's channel) and runs afterwards, in order. Bytes that reach the
//! UART before the kernel has initialised it (during firmware boot) are
//! lost: the kernel resets the UART's FIFO when it takes the port.
//!
//! ## Authority
//!
//! The console holds exactly three capabilities, granted by the process
//! manager from the manifest: `SerialInput` (bind typed input to its own
//! channel, write output), `KernelInfo` (tasks, capabilities, audit log,
//! memory, the registry; `CONTROL` for `shutdown` and `reboot`) and `pm-control`, the
//! process manager's control capability (`CONTROL | TRANSFER`), through
//! which it sends `start`, `stop`, `restart` and `crash`; `ps` and
//! `services` ask the process manager on its channel, which anyone may. A
//! console started without `pm-control` gets the process manager's
//! refusal for the service actions. It reaches storage and the pipeline
//! executor as any client does, by looking them up.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod command;
pub mod editor;
pub mod host;
pub mod render;
pub mod shell;

pub use host::ConsoleHost;
pub use shell::{ConsoleCaps, Flow, Shell, PROMPT};
