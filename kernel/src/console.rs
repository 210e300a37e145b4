//! The serial console (COM1): raw output lines and the `log` backend.
//! Everything written here is mirrored on the screen, log lines in their
//! level's colour: drawn by the early display ([`crate::early_display`])
//! until the display service takes the screen over, then sent to it
//! ([`crate::screen_output`]).
//!
//! Output is serialised by one lock taken with interrupts disabled, so an
//! interrupt handler that logs can never spin on a lock its own CPU holds.
//! Fatal paths (panics, unexpected exceptions) use [`emergency`], which
//! bypasses the lock if the failing code held it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use log::{Level, LevelFilter, Log, Metadata, Record};
use pandagen_abi::screen::ScreenColour;
use pandagen_hal::x86_64::{clock, Com1};
use spin::Mutex;
use x86_64::instructions::interrupts;

use crate::{early_display, screen_output};

static SERIAL: Mutex<Option<Com1>> = Mutex::new(None);

/// Whether the last byte on the serial line ended mid-line (a ring-3
/// console's prompt, written raw). The kernel's own lines, every task's
/// tagged output among them, then start on a line of their own: a
/// reader (the test harness, a person) finds the `[task N name]` tag at
/// the start of the line, never after `pandagen> `. Written only with
/// [`SERIAL`] held.
static MID_LINE: AtomicBool = AtomicBool::new(false);
static LOGGER: KernelLogger = KernelLogger;

/// Programs COM1 and installs the logger at `Info` level.
pub fn init() {
    // SAFETY: called once at boot in ring 0; the port is owned by SERIAL
    // from here on.
    let port = unsafe { Com1::init() };
    *SERIAL.lock() = Some(port);
    // Only fails if a logger was already set, which only this function does.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Changes the log verbosity.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Writes formatted text to the console.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    write_coloured(args, ScreenColour::Text);
}

/// Writes formatted text, drawn on the screen in `colour`.
fn write_coloured(args: fmt::Arguments<'_>, colour: ScreenColour) {
    interrupts::without_interrupts(|| {
        if let Some(port) = SERIAL.lock().as_mut() {
            let mut out = Mirror { port, colour };
            if MID_LINE.load(Ordering::Relaxed) {
                let _ = out.write_str("\n");
            }
            let _ = out.write_fmt(args);
        }
    });
    screen_output::deliver_if_free();
}

/// Writes raw bytes (a ring-3 console's output, escape sequences and all).
pub fn write_bytes(bytes: &[u8]) {
    use pandagen_hal::serial::SerialHal;
    interrupts::without_interrupts(|| {
        if let Some(port) = SERIAL.lock().as_mut() {
            port.write_bytes(bytes);
            early_display::write(bytes, ScreenColour::Text);
            if let Some(&last) = bytes.last() {
                MID_LINE.store(last != b'\n', Ordering::Relaxed);
            }
        }
    });
    screen_output::deliver_if_free();
}

/// Serial output that is also drawn on the early display.
struct Mirror<'a> {
    port: &'a mut Com1,
    colour: ScreenColour,
}

impl Write for Mirror<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let _ = self.port.write_str(s);
        early_display::write(s.as_bytes(), self.colour);
        if let Some(last) = s.as_bytes().last() {
            MID_LINE.store(*last != b'\n', Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What the fatal path writes on the screen besides the serial port.
struct EmergencyScreen;

impl Write for EmergencyScreen {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        early_display::emergency(s.as_bytes());
        Ok(())
    }
}

/// A received byte, if the UART holds one.
pub fn read_byte() -> Option<u8> {
    use pandagen_hal::serial::SerialHal;
    interrupts::without_interrupts(|| SERIAL.lock().as_mut()?.try_read_byte())
}

/// A console writer for fatal paths: it takes the lock if it is free and
/// otherwise writes around it (the lock holder has failed and will not
/// resume).
pub fn emergency(args: fmt::Arguments<'_>) {
    interrupts::without_interrupts(|| match SERIAL.try_lock() {
        Some(mut guard) => match guard.as_mut() {
            Some(port) => {
                let _ = port.write_fmt(args);
            }
            None => {
                // SAFETY: ring 0; the console was never initialised, so no
                // other handle exists.
                let mut port = unsafe { Com1::init() };
                let _ = port.write_fmt(args);
            }
        },
        None => {
            // SAFETY: ring 0; the lock holder cannot run again before we are
            // done (we are on the fatal path with interrupts off).
            let mut port = unsafe { Com1::steal() };
            let _ = port.write_fmt(args);
        }
    });
    let _ = EmergencyScreen.write_fmt(args);
}

/// Prints a line on the console, without log decoration.
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

struct KernelLogger;

impl Log for KernelLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // tar-no-std 0.3.5 reads the archive's terminating zero block as a
        // regular file and logs an "Unparsable size" error before ending
        // the iteration normally, so every lookup of a program that is not
        // in the ramdisk would print a 40-line header dump. Callers report
        // misses (ImageNotFound) and corrupt archives themselves.
        if metadata.target().starts_with("tar_no_std") {
            return false;
        }
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ns = clock::now_ns();
        let label = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        write_coloured(
            format_args!(
                "[{:>4}.{:06}] {} {}: {}\n",
                ns / 1_000_000_000,
                ns % 1_000_000_000 / 1000,
                label,
                record.target().trim_start_matches("pandagen_kernel::"),
                record.args()
            ),
            early_display::level_colour(record.level()),
        );
    }

    fn flush(&self) {}
}
