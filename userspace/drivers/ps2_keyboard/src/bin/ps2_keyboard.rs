//! The PS/2 keyboard driver as a ring-3 program. Its capabilities, in the
//! manifest's order: `registry`, `boot-files` (to read `keyboard=` in
//! `boot.cfg`), then the ports `0x60` and `0x64` (one capability each:
//! the ports between belong to other devices) and interrupt line 1.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_ps2_keyboard::controller::{Controller, KeyboardState, PortIo, COMMAND_PORT};
use pandagen_ps2_keyboard::keymap::{Decoder, Layout};
use pandagen_ps2_keyboard::protocol::KEYBOARD;
use pandagen_ps2_keyboard::service::{Driver, InterruptLine};
use pandagen_rt::abi::{CapHandle, KernelApi, KernelError};
use pandagen_rt::device::{Interrupt, Ports};
use pandagen_rt::{println, Kernel};

pandagen_rt::entry!(main);

/// The controller's interrupt line.
const IRQ: u8 = 1;

/// The controller's two ports, each its own capability.
struct ControllerPorts {
    data: Ports,
    command: Ports,
}

impl ControllerPorts {
    fn of(&self, port: u16) -> &Ports {
        if port == COMMAND_PORT {
            &self.command
        } else {
            &self.data
        }
    }
}

impl PortIo for ControllerPorts {
    type Error = KernelError;
    fn read(&mut self, port: u16) -> Result<u8, KernelError> {
        self.of(port).read8(port)
    }
    fn write(&mut self, port: u16, value: u8) -> Result<(), KernelError> {
        self.of(port).write8(port, value)
    }
}

struct Line(Interrupt);

impl InterruptLine for Line {
    fn acknowledge(&mut self) -> Result<(), KernelError> {
        self.0.acknowledge().map(|_| ())
    }
}

/// The layout `boot.cfg` names (US without the file or the key).
fn layout(kernel: &mut Kernel, boot_files: CapHandle) -> Layout {
    let Ok(bytes) = kernel.read_boot_file(boot_files, "boot.cfg") else {
        return Layout::Us;
    };
    let text = core::str::from_utf8(&bytes).unwrap_or("");
    Layout::from_boot_config(text).unwrap_or_else(|unknown| {
        println!("keyboard: unknown layout `{unknown}` in boot.cfg (us, uk, de); using us");
        Layout::Us
    })
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let [_registration, boot_files, data, command, irq] = startup.capabilities[..] else {
        println!("keyboard: expected registry, boot-files, ports 0x60 and 0x64, irq 1");
        return Err(KernelError::InsufficientAuthority);
    };
    let layout = layout(kernel, boot_files);
    let mut controller = Controller::new(ControllerPorts {
        data: Ports::new(data),
        command: Ports::new(command),
    });
    match controller.initialise() {
        Ok(KeyboardState::Ready) => {
            println!("keyboard: PS/2 keyboard ready ({} layout)", layout.name())
        }
        Ok(KeyboardState::NoAnswer { command, got }) => println!(
            "keyboard: the keyboard did not acknowledge {command:#04x} (got {got:02x?}); \
             serving anyway"
        ),
        Err(e) => {
            println!("keyboard: no usable PS/2 controller: {e:?}");
            return Err(KernelError::Timeout);
        }
    }
    let channel = kernel.create_channel()?;
    let mut line = Line(Interrupt::new(irq, IRQ));
    line.0.bind(channel.handle())?;
    kernel.register_service(KEYBOARD, channel)?;
    let mut driver = Driver::new(controller, Decoder::new(layout));
    // Keys pressed before the line was bound raised no notification.
    driver.on_interrupt(&mut line)?;
    driver.run(kernel, &mut line, channel)
}
