//! The display service: the ring-3 owner of the framebuffer.
//!
//! It holds the framebuffer's device-memory capability (the only one that
//! maps it), takes the screen over from the kernel's early console
//! (`TakeOverScreen`), maps the framebuffer, and continues where the kernel
//! stopped: same cursor, nothing cleared. From then on the kernel sends it
//! everything written to the serial console (kernel log lines, every
//! task's console output) as `screen.output` messages on a channel only it
//! and the kernel know, in the order it went to the serial port; it draws
//! them with their colours. A restarted instance finds the screen as the
//! last one left it, which it cannot know, so it starts on a cleared
//! screen; output written meanwhile waited in the kernel.

use pandagen_abi::screen::{
    ScreenFormat, ScreenHandOver, ScreenLayout, ScreenOutput, SCREEN_OUTPUT_ACTION,
};
use pandagen_abi::{ChannelId, KernelApi, KernelError, MessageEnvelope};

use crate::{screen_colour, FormatError, FramebufferFormat, PixelLayout, TextScreen};

/// Why a message was not drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not from the kernel, or not screen output.
    NotScreenOutput,
    /// Its payload did not decode.
    Malformed,
}

/// The framebuffer format a hand-over describes.
pub fn framebuffer_format(format: &ScreenFormat) -> FramebufferFormat {
    FramebufferFormat {
        width: format.width as usize,
        height: format.height as usize,
        stride: format.stride as usize,
        bytes_per_pixel: format.bytes_per_pixel as usize,
        layout: match format.layout {
            ScreenLayout::Rgb => PixelLayout::Rgb,
            ScreenLayout::Bgr => PixelLayout::Bgr,
            ScreenLayout::Gray => PixelLayout::Gray,
        },
    }
}

/// The screen, drawn by its ring-3 owner.
pub struct Display<B> {
    screen: TextScreen<B>,
    /// Bytes the kernel reported dropped before they reached the screen.
    dropped: u64,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Display<B> {
    /// The screen on `framebuffer` (the mapped bytes `hand_over`
    /// describes): continued from the kernel's cursor on the first
    /// take-over, cleared on a later one.
    pub fn take_over(framebuffer: B, hand_over: &ScreenHandOver) -> Result<Self, FormatError> {
        let format = framebuffer_format(&hand_over.format);
        let screen = match hand_over.cursor {
            Some(cursor) => TextScreen::resume(
                framebuffer,
                format,
                cursor.column as usize,
                cursor.row as usize,
            )?,
            None => TextScreen::new(framebuffer, format)?,
        };
        Ok(Display { screen, dropped: 0 })
    }

    pub fn screen(&self) -> &TextScreen<B> {
        &self.screen
    }

    /// Bytes the kernel dropped before they were drawn, so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Draws a `screen.output` message from the kernel; anything else is
    /// ignored.
    pub fn handle(&mut self, message: &MessageEnvelope) -> Result<(), Ignored> {
        if message.source.is_some() || message.action != SCREEN_OUTPUT_ACTION {
            return Err(Ignored::NotScreenOutput);
        }
        let output: ScreenOutput = message.payload.decode().map_err(|_| Ignored::Malformed)?;
        self.dropped += output.dropped;
        self.screen.set_colour(screen_colour(output.colour));
        self.screen.write_bytes(&output.bytes);
        self.screen.reset_colour();
        Ok(())
    }

    /// Draws what arrives on `channel`, for good.
    pub fn run<K: KernelApi>(&mut self, kernel: &mut K, channel: ChannelId) -> KernelError {
        loop {
            match kernel.receive_message(channel, None) {
                // Nobody but the kernel can send here; a stray message is
                // dropped, not drawn.
                Ok(message) => {
                    let _ = self.handle(&message);
                }
                Err(e) => return e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use pandagen_abi::device::PhysRange;
    use pandagen_abi::screen::{ScreenColour, ScreenCursor};
    use pandagen_abi::{MessagePayload, SchemaVersion, ServiceId, TaskId};

    const FORMAT: ScreenFormat = ScreenFormat {
        width: 640,
        height: 480,
        stride: 640,
        bytes_per_pixel: 3,
        layout: ScreenLayout::Rgb,
    };

    fn hand_over(cursor: Option<ScreenCursor>) -> ScreenHandOver {
        ScreenHandOver {
            range: PhysRange::new(0xfd00_0000, 0x10_0000),
            offset: 0,
            format: FORMAT,
            cursor,
        }
    }

    fn output(colour: ScreenColour, text: &str) -> MessageEnvelope {
        let payload = MessagePayload::new(&ScreenOutput {
            colour,
            bytes: text.as_bytes().to_vec(),
            dropped: 0,
        })
        .unwrap();
        MessageEnvelope::new(
            ServiceId::from_raw(0),
            SCREEN_OUTPUT_ACTION,
            SchemaVersion::new(1, 0),
            payload,
        )
    }

    /// What the kernel's early console draws, for `text`.
    fn kernel_screen(text: &str) -> TextScreen<Vec<u8>> {
        let mut screen =
            TextScreen::new(vec![0; 640 * 480 * 3], framebuffer_format(&FORMAT)).unwrap();
        screen.write_str(text);
        screen
    }

    #[test]
    fn the_take_over_continues_the_kernels_screen_pixel_for_pixel() {
        // The kernel draws two lines, hands over, and the service draws a
        // third: the pixels are those of one screen that drew all three.
        let before = kernel_screen("banner\nboot log\n");
        let (column, row) = before.position();
        let cursor = ScreenCursor {
            column: column as u32,
            row: row as u32,
        };
        let mut display =
            Display::take_over(before.pixels().to_vec(), &hand_over(Some(cursor))).unwrap();
        display
            .handle(&output(ScreenColour::Warn, "after\n"))
            .unwrap();
        let mut whole = kernel_screen("banner\nboot log\n");
        whole.set_colour(crate::palette::WARN);
        whole.write_str("after\n");
        assert_eq!(display.screen().pixels(), whole.pixels());
        assert_eq!(display.screen().position(), (0, 3));
    }

    #[test]
    fn a_later_take_over_starts_on_a_cleared_screen() {
        let before = kernel_screen("left by a dead instance\n");
        let display = Display::take_over(before.pixels().to_vec(), &hand_over(None)).unwrap();
        assert_eq!(display.screen().position(), (0, 0));
        assert!(display.screen().pixels()[..640 * 3 * 8]
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn only_the_kernels_screen_output_is_drawn() {
        let blank = kernel_screen("");
        let mut display = Display::take_over(
            blank.pixels().to_vec(),
            &hand_over(Some(ScreenCursor { column: 0, row: 0 })),
        )
        .unwrap();
        let mut forged = output(ScreenColour::Text, "forged");
        forged.source = Some(TaskId::from_raw(7));
        assert_eq!(display.handle(&forged), Err(Ignored::NotScreenOutput));
        let mut other = output(ScreenColour::Text, "x");
        other.action = "console.input".into();
        assert_eq!(display.handle(&other), Err(Ignored::NotScreenOutput));
        assert_eq!(display.screen().row_text(0), "");
        display.handle(&output(ScreenColour::Text, "ok")).unwrap();
        assert_eq!(display.screen().row_text(0), "ok");
    }
}
