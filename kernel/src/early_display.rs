//! The early display: the kernel's console on the framebuffer the
//! bootloader set up, so a PC without a serial port shows the boot log from
//! the banner on.
//!
//! Everything written to the serial console is drawn here, log lines in
//! their level's colour, until the ring-3 display service takes the screen
//! over ([`hand_over`], system call `TakeOverScreen`). From then on the
//! kernel never touches the framebuffer again: what it would have drawn
//! goes, in the same order, to the display service
//! ([`crate::screen_output`]), which continues from the cursor the kernel
//! left.

use bootloader_api::info::{FrameBuffer, PixelFormat};
use log::Level;
use pandagen_abi::device::PhysRange;
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_abi::screen::{
    ScreenColour, ScreenCursor, ScreenFormat, ScreenHandOver, ScreenLayout,
};
use pandagen_display::{FramebufferFormat, PixelLayout, TextScreen};
use spin::{Mutex, Once};
use x86_64::instructions::interrupts;

use crate::screen_output;

static SCREEN: Mutex<Option<TextScreen<&'static mut [u8]>>> = Mutex::new(None);

/// Where the framebuffer is and how it is laid out, set once at boot.
static GEOMETRY: Once<Geometry> = Once::new();

#[derive(Clone, Copy, Debug)]
struct Geometry {
    /// The framebuffer's pages.
    pages: PhysRange,
    /// Its first byte, from the start of `pages`.
    offset: u64,
    format: ScreenFormat,
}

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

/// Takes the framebuffer over; `physical` is its first byte's physical
/// address. Needs the heap (the screen keeps its text).
pub fn init(framebuffer: Option<FrameBuffer>, physical: Option<u64>) -> Status {
    let Some(framebuffer) = framebuffer else {
        return Status::NoFramebuffer;
    };
    let info = framebuffer.info();
    let (layout, screen_layout) = match info.pixel_format {
        PixelFormat::Rgb => (PixelLayout::Rgb, ScreenLayout::Rgb),
        PixelFormat::Bgr => (PixelLayout::Bgr, ScreenLayout::Bgr),
        PixelFormat::U8 => (PixelLayout::Gray, ScreenLayout::Gray),
        _ => return Status::Unsupported,
    };
    let format = FramebufferFormat {
        width: info.width,
        height: info.height,
        stride: info.stride,
        bytes_per_pixel: info.bytes_per_pixel,
        layout,
    };
    let len = framebuffer.buffer().len() as u64;
    match TextScreen::new(framebuffer.into_buffer(), format) {
        Ok(screen) => {
            if let Some(physical) = physical {
                let base = physical & !(PAGE_SIZE - 1);
                let end = (physical + len).div_ceil(PAGE_SIZE) * PAGE_SIZE;
                GEOMETRY.call_once(|| Geometry {
                    pages: PhysRange::new(base, end - base),
                    offset: physical - base,
                    format: ScreenFormat {
                        width: info.width as u32,
                        height: info.height as u32,
                        stride: info.stride as u32,
                        bytes_per_pixel: info.bytes_per_pixel as u32,
                        layout: screen_layout,
                    },
                });
            }
            interrupts::without_interrupts(|| *SCREEN.lock() = Some(screen));
            Status::Active {
                width: info.width,
                height: info.height,
            }
        }
        Err(_) => Status::Unsupported,
    }
}

/// The framebuffer's pages, if the early display draws on one (the range
/// only its own device capability maps).
pub fn framebuffer_pages() -> Option<PhysRange> {
    GEOMETRY.get().map(|g| g.pages)
}

/// Stops drawing for good and says where the screen's new owner finds the
/// framebuffer and, the first time, where the kernel's cursor stood.
/// `None` if the kernel has no framebuffer it could hand over.
pub fn hand_over() -> Option<ScreenHandOver> {
    let geometry = *GEOMETRY.get()?;
    let cursor = interrupts::without_interrupts(|| {
        let screen = SCREEN.lock().take()?;
        let (column, row) = screen.position();
        Some(ScreenCursor {
            column: column as u32,
            row: row as u32,
        })
    });
    Some(ScreenHandOver {
        range: geometry.pages,
        offset: geometry.offset,
        format: geometry.format,
        cursor,
    })
}

/// The colour of a log line of `level`.
pub fn level_colour(level: Level) -> ScreenColour {
    match level {
        Level::Error => ScreenColour::Error,
        Level::Warn => ScreenColour::Warn,
        Level::Info => ScreenColour::Text,
        Level::Debug | Level::Trace => ScreenColour::Debug,
    }
}

/// Draws `bytes` in `colour`, or, once the screen is handed over, queues
/// them for its owner. Called with the serial console's lock held, so the
/// two outputs keep one order.
pub fn write(bytes: &[u8], colour: ScreenColour) {
    interrupts::without_interrupts(|| match SCREEN.lock().as_mut() {
        Some(screen) => draw(screen, bytes, colour),
        None if GEOMETRY.get().is_some() => screen_output::push(bytes, colour),
        None => {}
    });
}

/// Draws on the fatal path: skips the screen if its lock is held (the
/// holder has failed and the screen may be mid-update). After the hand-over
/// the display service may never run again, so the fatal text stays on
/// serial.
pub fn emergency(bytes: &[u8]) {
    if let Some(mut guard) = SCREEN.try_lock() {
        if let Some(screen) = guard.as_mut() {
            draw(screen, bytes, ScreenColour::Error);
        }
    }
}

fn draw(screen: &mut TextScreen<&'static mut [u8]>, bytes: &[u8], colour: ScreenColour) {
    screen.set_colour(pandagen_display::screen_colour(colour));
    screen.write_bytes(bytes);
    screen.reset_colour();
}
