//! The display service as a ring-3 program. Its one capability, from the
//! manifest: `framebuffer` (the framebuffer's device memory, `READ |
//! WRITE`).
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_display::service::Display;
use pandagen_rt::abi::{KernelApi, KernelError};
use pandagen_rt::device::Framebuffer;
use pandagen_rt::{println, Kernel};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let [framebuffer] = startup.capabilities[..] else {
        println!("display: expected one capability, the framebuffer");
        return Err(KernelError::InsufficientAuthority);
    };
    let framebuffer = Framebuffer::new(framebuffer);
    let channel = kernel.create_channel()?;
    let hand_over = framebuffer.take_over(channel.handle())?;
    let bytes = framebuffer.map(&hand_over)?;
    let mut display = match Display::take_over(bytes, &hand_over) {
        Ok(display) => display,
        Err(e) => {
            println!("display: cannot draw on this framebuffer: {e:?}");
            return Err(KernelError::Device(
                pandagen_rt::abi::device::DeviceError::NotFramebuffer,
            ));
        }
    };
    let (columns, rows) = display.screen().size();
    let (column, row) = display.screen().position();
    match hand_over.cursor {
        Some(_) => println!(
            "display: took the screen over from the kernel ({columns}x{rows} text, at row {row} column {column})"
        ),
        None => println!("display: took the screen over again ({columns}x{rows} text, cleared)"),
    }
    Err(display.run(kernel, channel))
}
