//! The 8042 PS/2 controller: initialisation and reading what it holds.
//!
//! The controller has a data port (`0x60`) and a status/command port
//! (`0x64`). Everything here goes through [`PortIo`], so the sequence is
//! tested on the host against a model of the controller, and runs in ring 3
//! over the driver's `IoPorts` capability.
//!
//! Each wait is bounded by a number of status reads rather than a clock:
//! a controller that never answers ends initialisation with a typed error
//! instead of hanging the driver.

use alloc::vec::Vec;

/// The data port: bytes from the keyboard, commands' arguments to it.
pub const DATA_PORT: u16 = 0x60;
/// Reading: the status register. Writing: a controller command.
pub const COMMAND_PORT: u16 = 0x64;

/// Status: a byte waits in the output buffer (read it from `0x60`).
pub const STATUS_OUTPUT_FULL: u8 = 1 << 0;
/// Status: the input buffer is full (do not write yet).
pub const STATUS_INPUT_FULL: u8 = 1 << 1;
/// Status: the waiting byte came from the second (mouse) port.
pub const STATUS_AUX_DATA: u8 = 1 << 5;

/// Configuration byte: IRQ 1 on keyboard data.
const CONFIG_IRQ1: u8 = 1 << 0;
/// Configuration byte: IRQ 12 on mouse data.
const CONFIG_IRQ12: u8 = 1 << 1;
/// Configuration byte: the first port's clock is off.
const CONFIG_PORT1_CLOCK_OFF: u8 = 1 << 4;
/// Configuration byte: the controller translates set 2 into set 1.
const CONFIG_TRANSLATE: u8 = 1 << 6;

const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_DISABLE_PORT2: u8 = 0xa7;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_PORT1: u8 = 0xab;
const CMD_DISABLE_PORT1: u8 = 0xad;
const CMD_ENABLE_PORT1: u8 = 0xae;

const SELF_TEST_PASSED: u8 = 0x55;
const PORT_TEST_PASSED: u8 = 0x00;

const KBD_RESET: u8 = 0xff;
const KBD_SCANCODE_SET: u8 = 0xf0;
const KBD_ENABLE_SCANNING: u8 = 0xf4;
const KBD_ACK: u8 = 0xfa;
const KBD_RESEND: u8 = 0xfe;
const KBD_SELF_TEST_PASSED: u8 = 0xaa;

/// Status reads before a wait gives up. A port read is a system call of
/// some microseconds, so this is tens of milliseconds on hardware, and
/// more than QEMU ever needs.
pub const WAIT_READS: u32 = 20_000;
/// Bytes read and dropped when flushing stale output.
const FLUSH_LIMIT: usize = 64;
/// Times a keyboard command is sent again after a `RESEND` answer.
const RESENDS: usize = 3;

/// Port I/O on the controller's two ports.
pub trait PortIo {
    type Error;
    fn read(&mut self, port: u16) -> Result<u8, Self::Error>;
    fn write(&mut self, port: u16, value: u8) -> Result<(), Self::Error>;
}

/// Why initialisation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError<E> {
    /// A port access was refused (the driver's capability does not cover
    /// it).
    Io(E),
    /// The controller did not take or give a byte in time: there is no
    /// controller, or it is stuck.
    Timeout { step: Step },
    /// The controller's self-test answered this instead of `0x55`.
    SelfTest(u8),
    /// The first port's interface test answered this instead of `0x00`.
    PortTest(u8),
}

/// Where initialisation stopped waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Command(u8),
    Answer(u8),
}

/// What initialisation found about the keyboard itself (the controller
/// worked). A missing keyboard is not an error: the driver still serves,
/// and one that answers later is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyboardState {
    /// Reset, in scancode set 2 (translated), scanning.
    Ready,
    /// The keyboard did not acknowledge `command` (answered `got`, or
    /// nothing).
    NoAnswer { command: u8, got: Option<u8> },
}

/// The controller, over `io`.
pub struct Controller<P> {
    io: P,
}

impl<P: PortIo> Controller<P> {
    pub fn new(io: P) -> Self {
        Controller { io }
    }

    pub fn io(&mut self) -> &mut P {
        &mut self.io
    }

    pub fn status(&mut self) -> Result<u8, P::Error> {
        self.io.read(COMMAND_PORT)
    }

    /// The initialisation sequence. On success IRQ 1 is enabled in the
    /// controller and keys are being reported.
    pub fn initialise(&mut self) -> Result<KeyboardState, InitError<P::Error>> {
        // Quiet both ports, then drop whatever the firmware left behind.
        self.command(CMD_DISABLE_PORT1)?;
        self.command(CMD_DISABLE_PORT2)?;
        self.flush().map_err(InitError::Io)?;

        // Interrupts and translation off while testing; set 1 translation
        // is turned on at the end, whatever the firmware chose.
        let mut config = self.query(CMD_READ_CONFIG)?;
        config &= !(CONFIG_IRQ1 | CONFIG_IRQ12 | CONFIG_TRANSLATE);
        self.command_with(CMD_WRITE_CONFIG, config)?;

        let answer = self.query(CMD_SELF_TEST)?;
        if answer != SELF_TEST_PASSED {
            return Err(InitError::SelfTest(answer));
        }
        // Some controllers reset their configuration in the self-test.
        self.command_with(CMD_WRITE_CONFIG, config)?;
        let answer = self.query(CMD_TEST_PORT1)?;
        if answer != PORT_TEST_PASSED {
            return Err(InitError::PortTest(answer));
        }

        self.command(CMD_ENABLE_PORT1)?;
        let keyboard = self.set_up_keyboard()?;
        self.flush().map_err(InitError::Io)?;

        config |= CONFIG_IRQ1 | CONFIG_TRANSLATE;
        config &= !(CONFIG_IRQ12 | CONFIG_PORT1_CLOCK_OFF);
        self.command_with(CMD_WRITE_CONFIG, config)?;
        Ok(keyboard)
    }

    /// Reset the keyboard, select scancode set 2 and start scanning.
    fn set_up_keyboard(&mut self) -> Result<KeyboardState, InitError<P::Error>> {
        if let Some(state) = self.keyboard_command(KBD_RESET)? {
            return Ok(state);
        }
        // The reset's self-test result follows the acknowledgement.
        match self.receive()? {
            Some(KBD_SELF_TEST_PASSED) => {}
            got => {
                return Ok(KeyboardState::NoAnswer {
                    command: KBD_RESET,
                    got,
                })
            }
        }
        for byte in [KBD_SCANCODE_SET, 2, KBD_ENABLE_SCANNING] {
            if let Some(state) = self.keyboard_command(byte)? {
                return Ok(state);
            }
        }
        Ok(KeyboardState::Ready)
    }

    /// Send `byte` to the keyboard; `None` once acknowledged.
    fn keyboard_command(&mut self, byte: u8) -> Result<Option<KeyboardState>, InitError<P::Error>> {
        let mut got = None;
        for _ in 0..=RESENDS {
            self.send(DATA_PORT, byte)?;
            got = self.receive()?;
            match got {
                Some(KBD_ACK) => return Ok(None),
                Some(KBD_RESEND) => continue,
                _ => break,
            }
        }
        Ok(Some(KeyboardState::NoAnswer { command: byte, got }))
    }

    /// Every byte waiting in the output buffer, in order: keyboard bytes
    /// go to `keys`, mouse bytes are dropped. Returns how many were read.
    pub fn drain(&mut self, keys: &mut Vec<u8>) -> Result<usize, P::Error> {
        let mut read = 0;
        loop {
            let status = self.io.read(COMMAND_PORT)?;
            if status & STATUS_OUTPUT_FULL == 0 {
                return Ok(read);
            }
            let byte = self.io.read(DATA_PORT)?;
            read += 1;
            if status & STATUS_AUX_DATA == 0 {
                keys.push(byte);
            }
        }
    }

    fn flush(&mut self) -> Result<(), P::Error> {
        for _ in 0..FLUSH_LIMIT {
            if self.io.read(COMMAND_PORT)? & STATUS_OUTPUT_FULL == 0 {
                break;
            }
            self.io.read(DATA_PORT)?;
        }
        Ok(())
    }

    /// A controller command without answer.
    pub fn command(&mut self, command: u8) -> Result<(), InitError<P::Error>> {
        self.send(COMMAND_PORT, command)
    }

    fn command_with(&mut self, command: u8, argument: u8) -> Result<(), InitError<P::Error>> {
        self.send(COMMAND_PORT, command)?;
        self.send(DATA_PORT, argument)
    }

    /// A controller command whose answer must come.
    fn query(&mut self, command: u8) -> Result<u8, InitError<P::Error>> {
        self.send(COMMAND_PORT, command)?;
        self.receive()?.ok_or(InitError::Timeout {
            step: Step::Answer(command),
        })
    }

    fn send(&mut self, port: u16, byte: u8) -> Result<(), InitError<P::Error>> {
        for _ in 0..WAIT_READS {
            if self.io.read(COMMAND_PORT).map_err(InitError::Io)? & STATUS_INPUT_FULL == 0 {
                return self.io.write(port, byte).map_err(InitError::Io);
            }
        }
        Err(InitError::Timeout {
            step: Step::Command(byte),
        })
    }

    /// The next byte, or `None` if nothing came in time.
    fn receive(&mut self) -> Result<Option<u8>, InitError<P::Error>> {
        for _ in 0..WAIT_READS {
            if self.io.read(COMMAND_PORT).map_err(InitError::Io)? & STATUS_OUTPUT_FULL != 0 {
                return self.io.read(DATA_PORT).map(Some).map_err(InitError::Io);
            }
        }
        Ok(None)
    }
}
