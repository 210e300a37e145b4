//! # pandagen-ps2-keyboard — the PS/2 keyboard driver
//!
//! A ring-3 service that owns the 8042 keyboard controller through exactly
//! two device capabilities from its manifest entry: the ports `0x60-0x64`
//! and interrupt line 1. It
//!
//! * initialises the controller ([`controller`]): both ports disabled, the
//!   output buffer flushed, the controller and port self-tests, the
//!   keyboard reset and put in scancode set 2 (which the controller
//!   translates to set 1), IRQ 1 enabled, the mouse port left off;
//! * decodes scancodes with the `pc-keyboard` crate ([`keymap`]) in the US
//!   layout, or the one `boot.cfg` names (`keyboard=uk`, `keyboard=de`),
//!   into the bytes a terminal sends (UTF-8, CR for Enter, `ESC [ A` for
//!   the arrows);
//! * serves the console ([`service`], [`protocol`]): the console
//!   subscribes by sending a send-only capability to its input channel,
//!   and typed bytes arrive there in order.
//!
//! ## No key is lost
//!
//! The kernel masks IRQ 1 when it fires and sends a notification; the
//! driver reads every byte the controller holds, acknowledges (which
//! unmasks the line), then reads again, so a byte that arrived between the
//! last read and the acknowledgement is taken at once rather than waiting
//! for an edge that already happened. While the line is masked the
//! keyboard keeps further keys in its own buffer. Decoded bytes wait in the
//! driver (up to [`service::PENDING_LIMIT`]) while the console's queue is
//! full or no console has subscribed yet.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod controller;
pub mod keymap;
pub mod protocol;
pub mod service;
