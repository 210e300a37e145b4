//! The kernel's screen colours (log levels) as drawn.

use pandagen_abi::screen::ScreenColour;

use crate::{palette, Rgb};

/// The colour text of `colour` is drawn in: errors red, warnings yellow,
/// debug grey, the rest ordinary text.
pub fn screen_colour(colour: ScreenColour) -> Rgb {
    match colour {
        ScreenColour::Text => palette::TEXT,
        ScreenColour::Error => palette::ERROR,
        ScreenColour::Warn => palette::WARN,
        ScreenColour::Debug => palette::DEBUG,
    }
}
