//! The driver against a model of the 8042 controller and its keyboard, and
//! its delivery to a subscriber over the SimulatedKernel.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use pandagen_abi::{
    Cap, KernelApi, KernelError, MessageEnvelope, MessagePayload, ReceivedMessage, Rights,
    ServiceId,
};
use pandagen_ps2_keyboard::controller::{
    Controller, InitError, KeyboardState, PortIo, Step, COMMAND_PORT, DATA_PORT,
};
use pandagen_ps2_keyboard::keymap::{Decoder, Layout};
use pandagen_ps2_keyboard::protocol::{INPUT_ACTION, SCHEMA, SUBSCRIBE_ACTION};
use pandagen_ps2_keyboard::service::{Driver, InterruptLine, PENDING_LIMIT};
use pandagen_sim::SimulatedKernel;

/// The controller as the driver sees it: an output queue (with a flag for
/// mouse bytes), the configuration byte, and a keyboard that answers.
#[derive(Default)]
struct Model {
    output: VecDeque<(u8, bool)>,
    config: u8,
    awaiting_config: bool,
    awaiting_set: bool,
    port1_enabled: bool,
    scanning: bool,
    scancode_set: Option<u8>,
    self_test_answer: u8,
    /// No controller at all: every read is 0xff.
    absent: bool,
    /// The keyboard answers nothing.
    keyboard_absent: bool,
    /// Bytes the keyboard received.
    to_keyboard: Vec<u8>,
}

impl Model {
    fn new() -> Self {
        Model {
            // What firmware typically leaves: IRQs on, translation on.
            config: 0x47,
            self_test_answer: 0x55,
            ..Model::default()
        }
    }

    fn key(&mut self, byte: u8) {
        self.output.push_back((byte, false));
    }
}

#[derive(Clone)]
struct Fake(Rc<RefCell<Model>>);

impl PortIo for Fake {
    type Error = KernelError;

    fn read(&mut self, port: u16) -> Result<u8, KernelError> {
        let mut m = self.0.borrow_mut();
        if m.absent {
            return Ok(0xff);
        }
        match port {
            COMMAND_PORT => Ok(match m.output.front() {
                Some((_, aux)) => 0x01 | if *aux { 0x20 } else { 0 },
                None => 0,
            }),
            DATA_PORT => Ok(m.output.pop_front().map_or(0, |(b, _)| b)),
            _ => Err(KernelError::InsufficientAuthority),
        }
    }

    fn write(&mut self, port: u16, value: u8) -> Result<(), KernelError> {
        let mut m = self.0.borrow_mut();
        match (port, value) {
            (COMMAND_PORT, 0x20) => {
                let c = m.config;
                m.output.push_back((c, false));
            }
            (COMMAND_PORT, 0x60) => m.awaiting_config = true,
            (COMMAND_PORT, 0xaa) => {
                let a = m.self_test_answer;
                m.output.push_back((a, false));
            }
            (COMMAND_PORT, 0xab) => m.output.push_back((0x00, false)),
            (COMMAND_PORT, 0xad) => m.port1_enabled = false,
            (COMMAND_PORT, 0xae) => m.port1_enabled = true,
            (COMMAND_PORT, 0xa7) => {}
            (COMMAND_PORT, _) => return Err(KernelError::InsufficientAuthority),
            (DATA_PORT, v) if m.awaiting_config => {
                m.config = v;
                m.awaiting_config = false;
            }
            (DATA_PORT, v) => {
                m.to_keyboard.push(v);
                if m.keyboard_absent {
                    return Ok(());
                }
                if m.awaiting_set {
                    m.scancode_set = Some(v);
                    m.awaiting_set = false;
                    m.output.push_back((0xfa, false));
                    return Ok(());
                }
                match v {
                    0xff => {
                        m.output.push_back((0xfa, false));
                        m.output.push_back((0xaa, false));
                    }
                    0xf0 => {
                        m.awaiting_set = true;
                        m.output.push_back((0xfa, false));
                    }
                    0xf4 => {
                        m.scanning = true;
                        m.output.push_back((0xfa, false));
                    }
                    _ => m.output.push_back((0xfe, false)),
                }
            }
            _ => return Err(KernelError::InsufficientAuthority),
        }
        Ok(())
    }
}

fn model() -> (Rc<RefCell<Model>>, Controller<Fake>) {
    let m = Rc::new(RefCell::new(Model::new()));
    (m.clone(), Controller::new(Fake(m)))
}

#[test]
fn initialisation_enables_irq1_with_translation_and_set_2() {
    let (m, mut controller) = model();
    // Stale bytes the firmware left, a mouse byte among them.
    m.borrow_mut().key(0x1e);
    m.borrow_mut().output.push_back((0x08, true));
    assert_eq!(controller.initialise(), Ok(KeyboardState::Ready));
    let m = m.borrow();
    assert_eq!(m.config & 0x01, 0x01, "IRQ 1 on");
    assert_eq!(m.config & 0x02, 0, "IRQ 12 off");
    assert_eq!(m.config & 0x10, 0, "port 1 clock on");
    assert_eq!(m.config & 0x40, 0x40, "translation on");
    assert!(m.port1_enabled && m.scanning);
    assert_eq!(m.scancode_set, Some(2));
    assert_eq!(m.to_keyboard, [0xff, 0xf0, 0x02, 0xf4]);
    assert!(m.output.is_empty(), "nothing left in the output buffer");
}

#[test]
fn a_failed_self_test_is_an_error() {
    let (m, mut controller) = model();
    m.borrow_mut().self_test_answer = 0xfc;
    assert_eq!(controller.initialise(), Err(InitError::SelfTest(0xfc)));
}

#[test]
fn no_controller_times_out_instead_of_hanging() {
    let (m, mut controller) = model();
    m.borrow_mut().absent = true;
    assert_eq!(
        controller.initialise(),
        Err(InitError::Timeout {
            step: Step::Command(0xad)
        })
    );
}

#[test]
fn a_missing_keyboard_is_reported_not_fatal() {
    let (m, mut controller) = model();
    m.borrow_mut().keyboard_absent = true;
    assert_eq!(
        controller.initialise(),
        Ok(KeyboardState::NoAnswer {
            command: 0xff,
            got: None
        })
    );
    assert_eq!(m.borrow().config & 0x01, 0x01, "IRQ 1 still on");
}

#[test]
fn refused_ports_are_typed_errors() {
    struct Refusing;
    impl PortIo for Refusing {
        type Error = KernelError;
        fn read(&mut self, _: u16) -> Result<u8, KernelError> {
            Err(KernelError::InsufficientAuthority)
        }
        fn write(&mut self, _: u16, _: u8) -> Result<(), KernelError> {
            Err(KernelError::InsufficientAuthority)
        }
    }
    assert_eq!(
        Controller::new(Refusing).initialise(),
        Err(InitError::Io(KernelError::InsufficientAuthority))
    );
}

/// Acknowledging lets one more key in (it arrived while the line was
/// masked), as on real hardware.
struct Line {
    model: Rc<RefCell<Model>>,
    on_ack: Vec<u8>,
    acks: usize,
}

impl InterruptLine for Line {
    fn acknowledge(&mut self) -> Result<(), KernelError> {
        self.acks += 1;
        for b in self.on_ack.drain(..) {
            self.model.borrow_mut().key(b);
        }
        Ok(())
    }
}

/// A US driver over a fresh model, and a line that acknowledges quietly.
fn us_driver() -> (Rc<RefCell<Model>>, Driver<Fake>, Line) {
    let (m, controller) = model();
    let line = Line {
        model: m.clone(),
        on_ack: Vec::new(),
        acks: 0,
    };
    (m, Driver::new(controller, Decoder::new(Layout::Us)), line)
}

fn tap(code: u8) -> [u8; 2] {
    [code, code | 0x80]
}

#[test]
fn an_interrupt_takes_every_byte_including_those_during_the_acknowledgement() {
    let (m, controller) = model();
    let mut driver = Driver::new(controller, Decoder::new(Layout::Us));
    // `p`, a mouse byte, `s` waiting; Enter arrives during the ack.
    for b in tap(0x19) {
        m.borrow_mut().key(b);
    }
    m.borrow_mut().output.push_back((0x09, true));
    for b in tap(0x1f) {
        m.borrow_mut().key(b);
    }
    let mut line = Line {
        model: m.clone(),
        on_ack: tap(0x1c).to_vec(),
        acks: 0,
    };
    driver.on_interrupt(&mut line).unwrap();
    assert_eq!(line.acks, 1);
    assert_eq!(driver.pending(), b"ps\r");
    assert!(m.borrow().output.is_empty());
}

#[test]
fn bytes_beyond_the_limit_drop_the_oldest_and_are_counted() {
    let (m, mut driver, mut line) = us_driver();
    for _ in 0..PENDING_LIMIT + 10 {
        for b in tap(0x1e) {
            m.borrow_mut().key(b);
        }
    }
    driver.on_interrupt(&mut line).unwrap();
    assert_eq!(driver.pending().len(), PENDING_LIMIT);
    assert_eq!(driver.dropped(), 10);
}

fn subscription(sim: &mut SimulatedKernel, input: pandagen_abi::ChannelId) -> ReceivedMessage {
    let send = sim
        .clone_capability(&Cap::from(input), Rights::SEND)
        .unwrap();
    ReceivedMessage {
        envelope: MessageEnvelope::new(
            ServiceId::from_raw(6),
            SUBSCRIBE_ACTION,
            SCHEMA,
            MessagePayload::new(&()).unwrap(),
        ),
        capabilities: vec![send],
        badge: None,
    }
}

#[test]
fn typed_bytes_wait_for_a_subscriber_then_arrive_in_order() {
    let (m, mut driver, mut line) = us_driver();
    let mut sim = SimulatedKernel::new();
    let input = sim.create_channel().unwrap();
    // 300 characters (more than one message), typed before anyone listens.
    let mut expected = Vec::new();
    for i in 0..300 {
        let (code, ch) = if i % 2 == 0 {
            (0x1e, b'a')
        } else {
            (0x30, b'b')
        };
        for b in tap(code) {
            m.borrow_mut().key(b);
        }
        expected.push(ch);
    }
    driver.on_interrupt(&mut line).unwrap();
    driver.deliver(&mut sim);
    assert_eq!(driver.pending().len(), 300, "kept without a subscriber");

    let request = subscription(&mut sim, input);
    driver.subscribe(&mut sim, request);
    driver.deliver(&mut sim);
    assert!(driver.pending().is_empty());
    let mut got = Vec::new();
    while let Ok(message) = sim.receive_message(input, Some(pandagen_abi::Duration::ZERO)) {
        assert_eq!(message.action, INPUT_ACTION);
        got.extend(message.payload.decode::<Vec<u8>>().unwrap());
    }
    assert_eq!(got, expected);
}

#[test]
fn a_subscription_without_exactly_one_capability_is_ignored() {
    let (m, mut driver, mut line) = us_driver();
    let mut sim = SimulatedKernel::new();
    let input = sim.create_channel().unwrap();
    for b in tap(0x1e) {
        m.borrow_mut().key(b);
    }
    driver.on_interrupt(&mut line).unwrap();
    let mut request = subscription(&mut sim, input);
    request.capabilities.clear();
    driver.subscribe(&mut sim, request);
    driver.deliver(&mut sim);
    assert_eq!(driver.pending(), b"a", "nothing sent without a subscriber");
}
