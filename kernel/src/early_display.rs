//! The early display: the kernel's console on the framebuffer the
//! bootloader set up, so a PC without a serial port shows the boot log from
//! the banner on, and what the console prints after it.
//!
//! Everything written to the serial console is mirrored here, log lines in
//! their level's colour. The screen is a [`TextScreen`] over the
//! bootloader's mapping of the framebuffer; a ring-3 display service will
//! take the screen over from it once device-memory capabilities exist, and
//! [`release`] is where that hand-over stops the kernel from drawing.

use bootloader_api::info::{FrameBuffer, PixelFormat};
use log::Level;
use pandagen_display::{palette, FramebufferFormat, PixelLayout, Rgb, TextScreen};
use spin::Mutex;
use x86_64::instructions::interrupts;

static SCREEN: Mutex<Option<TextScreen<&'static mut [u8]>>> = Mutex::new(None);

/// What the early display found at boot, for the banner.
#[derive(Clone, Copy, Debug)]
pub enum Status {
    /// Drawing on a `width`x`height` framebuffer.
    Active { width: usize, height: usize },
    /// The bootloader set up no framebuffer.
    NoFramebuffer,
    /// The framebuffer's pixel format is not one the screen can draw.
    Unsupported,
}

/// Takes the framebuffer over. Needs the heap (the screen keeps its text).
pub fn init(framebuffer: Option<FrameBuffer>) -> Status {
    let Some(framebuffer) = framebuffer else {
        return Status::NoFramebuffer;
    };
    let info = framebuffer.info();
    let layout = match info.pixel_format {
        PixelFormat::Rgb => PixelLayout::Rgb,
        PixelFormat::Bgr => PixelLayout::Bgr,
        PixelFormat::U8 => PixelLayout::Gray,
        _ => return Status::Unsupported,
    };
    let format = FramebufferFormat {
        width: info.width,
        height: info.height,
        stride: info.stride,
        bytes_per_pixel: info.bytes_per_pixel,
        layout,
    };
    match TextScreen::new(framebuffer.into_buffer(), format) {
        Ok(screen) => {
            interrupts::without_interrupts(|| *SCREEN.lock() = Some(screen));
            Status::Active {
                width: info.width,
                height: info.height,
            }
        }
        Err(_) => Status::Unsupported,
    }
}

/// Stops drawing for good (the screen's new owner draws from now on).
#[allow(dead_code)]
pub fn release() {
    interrupts::without_interrupts(|| *SCREEN.lock() = None);
}

/// The colour of a log line of `level`.
pub fn level_colour(level: Level) -> Rgb {
    match level {
        Level::Error => palette::ERROR,
        Level::Warn => palette::WARN,
        Level::Info => palette::TEXT,
        Level::Debug | Level::Trace => palette::DEBUG,
    }
}

/// Draws `bytes` in `colour`. Called with the serial console's lock held,
/// so the two outputs keep one order.
pub fn write(bytes: &[u8], colour: Rgb) {
    interrupts::without_interrupts(|| {
        if let Some(screen) = SCREEN.lock().as_mut() {
            draw(screen, bytes, colour);
        }
    });
}

/// Draws on the fatal path: skips the screen if its lock is held (the
/// holder has failed and the screen may be mid-update).
pub fn emergency(bytes: &[u8]) {
    if let Some(mut guard) = SCREEN.try_lock() {
        if let Some(screen) = guard.as_mut() {
            draw(screen, bytes, palette::ERROR);
        }
    }
}

fn draw(screen: &mut TextScreen<&'static mut [u8]>, bytes: &[u8], colour: Rgb) {
    screen.set_colour(colour);
    screen.write_bytes(bytes);
    screen.reset_colour();
}
