//! A text console on a linear framebuffer.
//!
//! [`TextScreen`] is a small terminal: it keeps a cursor, wraps and scrolls,
//! colours text, and understands the few escape sequences PandaGen's console
//! emits (colour, cursor left/right, erase to end of line). It draws
//! straight into a framebuffer described by a [`FramebufferFormat`] (width,
//! height, stride and pixel layout, as the bootloader reports them), with
//! the Noto Sans Mono bitmap font at 16 pixels.
//!
//! The same code draws the kernel's early display, the ring-3 display
//! service that takes the screen over from it ([`service`], program
//! `display`), and, on the host, the image a test expects to find in a
//! QEMU screenshot, so the three can be compared pixel for pixel.
#![no_std]
#![forbid(unsafe_code)]

mod colour;
mod font;
mod format;
pub mod service;
mod terminal;

pub use colour::screen_colour;
pub use font::{CELL_HEIGHT, CELL_WIDTH};
pub use format::{FormatError, FramebufferFormat, PixelLayout, Rgb};
pub use terminal::{palette, TextScreen};
