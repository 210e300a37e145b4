//! The screen: handing the framebuffer over from the kernel's early
//! console to a ring-3 display service.
//!
//! The kernel draws the boot log on the framebuffer from its banner on.
//! The display service, holding the framebuffer's device-memory capability
//! ([`DeviceResource::Framebuffer`](crate::device::DeviceResource::Framebuffer)),
//! calls [`TakeOverScreen`](crate::syscall::Syscall::TakeOverScreen): the
//! kernel stops drawing for good, answers with the framebuffer's geometry
//! and where its cursor stood, and from then on delivers what it would have
//! drawn (everything written to the serial console: kernel log lines, and
//! every task's `ConsoleWrite`) as [`ScreenOutput`] messages on the channel
//! the service named, in the order it went to the serial port.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::cap::CapHandle;
use crate::device::PhysRange;

/// The action of [`ScreenOutput`] messages.
pub const SCREEN_OUTPUT_ACTION: &str = "screen.output";

/// The most bytes one [`ScreenOutput`] message carries.
pub const MAX_SCREEN_OUTPUT: usize = 1024;

/// The order of the colour bytes in one pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScreenLayout {
    Rgb,
    Bgr,
    /// One grey byte per pixel.
    Gray,
}

/// A framebuffer's geometry, as the bootloader reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenFormat {
    pub width: u32,
    pub height: u32,
    /// Pixels from the start of one row to the start of the next.
    pub stride: u32,
    pub bytes_per_pixel: u32,
    pub layout: ScreenLayout,
}

/// A [`TakeOverScreen`](crate::syscall::Syscall::TakeOverScreen) request:
/// the framebuffer capability (`READ | WRITE`) and the channel (`SEND |
/// RECEIVE`: one the taker reads) the screen's output goes to from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeOverScreenRequest {
    pub framebuffer: CapHandle,
    pub channel: CapHandle,
}

/// Where the kernel's early console left the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenCursor {
    /// May equal the number of columns: the next character wraps first.
    pub column: u32,
    pub row: u32,
}

/// The answer to a take-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenHandOver {
    /// The framebuffer's pages (map them with the same capability).
    pub range: PhysRange,
    /// The framebuffer's first byte is this far into `range`'s first page.
    pub offset: u64,
    pub format: ScreenFormat,
    /// The early console's cursor, on the first take-over of the boot:
    /// the screen shows the boot log and the new owner continues below it.
    /// `None` on a later take-over (the previous owner ended): what the
    /// screen shows is the previous owner's, and the new one starts afresh.
    pub cursor: Option<ScreenCursor>,
}

/// How a run of screen output is coloured: the kernel's log levels, and
/// plain console text (which carries its own colour escape sequences).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScreenColour {
    Text,
    Error,
    Warn,
    Debug,
}

/// Bytes written to the serial console, to be drawn in `colour` (the
/// payload of a [`SCREEN_OUTPUT_ACTION`] message from the kernel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenOutput {
    pub colour: ScreenColour,
    pub bytes: Vec<u8>,
    /// Bytes the kernel dropped before these because nobody drew them in
    /// time (its buffer was full).
    pub dropped: u64,
}
