//! The driver against a model of the 8042 controller and its keyboard, and
//! its delivery to a subscriber over the SimulatedKernel.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use pandagen_abi::device::INTERRUPT_ACTION;
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
    /// Commands the keyboard answers with RESEND before acknowledging.
    resends: usize,
    /// The configuration byte when the controller ran its self-test.
    config_at_self_test: Option<u8>,
    /// Data-port reads with nothing waiting: on hardware they return a
    /// stale byte, which a driver would take for a key.
    stale_data_reads: usize,
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
            DATA_PORT => match m.output.pop_front() {
                Some((b, _)) => Ok(b),
                None => {
                    m.stale_data_reads += 1;
                    Ok(0)
                }
            },
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
                m.config_at_self_test = Some(m.config);
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
                if m.resends > 0 {
                    m.resends -= 1;
                    m.output.push_back((0xfe, false));
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
    assert_eq!(
        m.stale_data_reads, 0,
        "the data port is read only when full"
    );
}

#[test]
fn interrupts_and_translation_are_off_while_the_controller_tests_itself() {
    // Otherwise the self-test's answers would raise IRQ 1 (or 12) and
    // reach the keyboard decoder as keys.
    let (m, mut controller) = model();
    controller.initialise().unwrap();
    let during = m.borrow().config_at_self_test.unwrap();
    assert_eq!(during & 0x43, 0, "IRQ 1, IRQ 12 and translation off");
}

#[test]
fn the_final_configuration_is_exact_whatever_the_firmware_left() {
    // Firmware left port 1's clock off and translation off, with IRQs
    // and the system flag on: the driver turns the clock and translation
    // on, IRQ 12 off, and leaves the system flag alone.
    let (m, mut controller) = model();
    m.borrow_mut().config = 0x17;
    assert_eq!(controller.initialise(), Ok(KeyboardState::Ready));
    assert_eq!(m.borrow().config, 0x45);
}

#[test]
fn a_keyboard_asking_for_a_resend_gets_the_command_again() {
    let (m, mut controller) = model();
    m.borrow_mut().resends = 2;
    assert_eq!(controller.initialise(), Ok(KeyboardState::Ready));
    assert_eq!(m.borrow().to_keyboard, [0xff, 0xff, 0xff, 0xf0, 0x02, 0xf4]);
}

#[test]
fn a_keyboard_that_only_asks_for_resends_is_given_up_on() {
    let (m, mut controller) = model();
    m.borrow_mut().resends = usize::MAX;
    assert_eq!(
        controller.initialise(),
        Ok(KeyboardState::NoAnswer {
            command: 0xff,
            got: Some(0xfe)
        })
    );
    assert_eq!(
        m.borrow().to_keyboard,
        [0xff; 4],
        "the first try and three resends"
    );
}

#[test]
fn status_and_drain_report_what_waits() {
    let (m, mut controller) = model();
    assert_eq!(controller.status(), Ok(0));
    m.borrow_mut().output.push_back((0x08, true));
    assert_eq!(controller.status(), Ok(0x21), "a mouse byte waits");
    m.borrow_mut().key(0x1e);
    m.borrow_mut().key(0x9e);
    let mut keys = Vec::new();
    assert_eq!(controller.drain(&mut keys), Ok(3), "every byte read");
    assert_eq!(keys, [0x1e, 0x9e], "the mouse byte dropped");
    assert_eq!(m.borrow().stale_data_reads, 0);
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

/// A kernel that hands out scripted messages and records what the driver
/// does: the timeout of each receive, the messages it sends, the
/// capabilities it releases. A receive with nothing scripted ends `run`
/// with `ChannelError(Closed)`.
#[derive(Default)]
struct Scripted {
    inbox: VecDeque<ReceivedMessage>,
    timeouts: Vec<Option<pandagen_abi::Duration>>,
    sent: Vec<MessageEnvelope>,
    dropped: Vec<pandagen_abi::CapHandle>,
    queue_full: bool,
}

impl KernelApi for Scripted {
    fn spawn_task(
        &mut self,
        _: pandagen_abi::TaskDescriptor,
    ) -> Result<pandagen_abi::TaskHandle, KernelError> {
        Err(KernelError::InsufficientAuthority)
    }
    fn create_channel(&mut self) -> Result<pandagen_abi::ChannelId, KernelError> {
        Err(KernelError::InsufficientAuthority)
    }
    fn send_with_capabilities(
        &mut self,
        _: pandagen_abi::ChannelId,
        message: MessageEnvelope,
        _: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        if self.queue_full {
            return Err(KernelError::SendFailed(
                pandagen_abi::error::SendError::QueueFull,
            ));
        }
        self.sent.push(message);
        Ok(())
    }
    fn receive_with_capabilities(
        &mut self,
        _: pandagen_abi::ChannelId,
        timeout: Option<pandagen_abi::Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.timeouts.push(timeout);
        self.inbox.pop_front().ok_or(KernelError::ChannelError(
            pandagen_abi::error::ChannelError::Closed,
        ))
    }
    fn now(&self) -> pandagen_abi::Instant {
        pandagen_abi::Instant::ZERO
    }
    fn sleep(&mut self, _: pandagen_abi::Duration) -> Result<(), KernelError> {
        Ok(())
    }
    fn grant_capability(&mut self, _: pandagen_abi::TaskId, _: Cap<()>) -> Result<(), KernelError> {
        Err(KernelError::InsufficientAuthority)
    }
    fn register_service(
        &mut self,
        _: ServiceId,
        _: pandagen_abi::ChannelId,
    ) -> Result<(), KernelError> {
        Err(KernelError::InsufficientAuthority)
    }
    fn lookup_service(
        &mut self,
        service: ServiceId,
    ) -> Result<pandagen_abi::ChannelId, KernelError> {
        Err(KernelError::ServiceNotFound(service))
    }
    fn drop_capability(&mut self, capability: Cap<()>) -> Result<(), KernelError> {
        self.dropped.push(capability.handle());
        Ok(())
    }
    fn clone_capability(&mut self, _: &Cap<()>, _: Rights) -> Result<Cap<()>, KernelError> {
        Err(KernelError::InsufficientAuthority)
    }
}

fn cap(index: u32) -> Cap<()> {
    Cap::from_handle(pandagen_abi::CapHandle::new(index, 1))
}

/// A message as the driver receives it: `source` None is the kernel.
fn received(source: Option<u64>, action: &str, capabilities: Vec<Cap<()>>) -> ReceivedMessage {
    let mut envelope = MessageEnvelope::new(
        ServiceId::from_raw(6),
        action,
        SCHEMA,
        MessagePayload::new(&()).unwrap(),
    );
    envelope.source = source.map(pandagen_abi::TaskId::from_raw);
    ReceivedMessage {
        envelope,
        capabilities,
        badge: None,
    }
}

const CONSOLE_TASK: u64 = 9;

#[test]
fn only_the_kernel_can_signal_an_interrupt() {
    let (m, mut driver, mut line) = us_driver();
    let mut kernel = Scripted::default();
    for b in tap(0x1e) {
        m.borrow_mut().key(b);
    }
    // A task sending "device.interrupt" neither reads the controller nor
    // unmasks the line; what it attached is released.
    driver
        .handle(
            &mut kernel,
            &mut line,
            received(Some(CONSOLE_TASK), INTERRUPT_ACTION, vec![cap(4)]),
        )
        .unwrap();
    assert_eq!((line.acks, driver.pending()), (0, &b""[..]));
    assert_eq!(kernel.dropped, [cap(4).handle()]);
    driver
        .handle(
            &mut kernel,
            &mut line,
            received(None, INTERRUPT_ACTION, vec![]),
        )
        .unwrap();
    assert_eq!((line.acks, driver.pending()), (1, &b"a"[..]));
}

#[test]
fn a_subscription_through_the_channel_receives_what_was_typed() {
    let (m, mut driver, mut line) = us_driver();
    let mut kernel = Scripted::default();
    for b in tap(0x30) {
        m.borrow_mut().key(b);
    }
    driver
        .handle(
            &mut kernel,
            &mut line,
            received(None, INTERRUPT_ACTION, vec![]),
        )
        .unwrap();
    // An unrelated request is not a subscription: bytes stay.
    driver
        .handle(
            &mut kernel,
            &mut line,
            received(Some(CONSOLE_TASK), "keyboard.other", vec![cap(5)]),
        )
        .unwrap();
    assert_eq!(driver.subscriber_task(), None);
    assert_eq!(driver.pending(), b"b");
    assert_eq!(kernel.dropped, [cap(5).handle()]);
    driver
        .handle(
            &mut kernel,
            &mut line,
            received(Some(CONSOLE_TASK), SUBSCRIBE_ACTION, vec![cap(6)]),
        )
        .unwrap();
    assert_eq!(
        driver.subscriber_task(),
        Some(pandagen_abi::TaskId::from_raw(CONSOLE_TASK))
    );
    assert!(driver.pending().is_empty());
    assert_eq!(kernel.sent.len(), 1);
    assert_eq!(
        kernel.sent[0].payload.decode::<Vec<u8>>().unwrap(),
        b"b".to_vec()
    );
}

/// The interrupt line refuses the acknowledgement (the capability was
/// revoked): the driver stops with that error instead of spinning.
struct RevokedLine;

impl InterruptLine for RevokedLine {
    fn acknowledge(&mut self) -> Result<(), KernelError> {
        Err(KernelError::InvalidCapability)
    }
}

#[test]
fn a_refused_acknowledgement_ends_the_driver_with_its_error() {
    let (_, mut driver, _) = us_driver();
    let mut kernel = Scripted::default();
    kernel
        .inbox
        .push_back(received(None, INTERRUPT_ACTION, vec![]));
    assert_eq!(
        driver.handle(
            &mut kernel,
            &mut RevokedLine,
            received(None, INTERRUPT_ACTION, vec![])
        ),
        Err(KernelError::InvalidCapability)
    );
    let channel = pandagen_abi::ChannelId::from_handle(cap(1).handle());
    assert_eq!(
        driver.run(&mut kernel, &mut RevokedLine, channel),
        Err(KernelError::InvalidCapability)
    );
}

#[test]
fn the_driver_sleeps_untimed_unless_bytes_wait_for_a_full_subscriber() {
    let channel = pandagen_abi::ChannelId::from_handle(cap(1).handle());
    let (m, mut driver, mut line) = us_driver();
    for b in tap(0x1e) {
        m.borrow_mut().key(b);
    }
    let mut kernel = Scripted {
        queue_full: true,
        ..Scripted::default()
    };
    // Idle, then a key with nobody subscribed, then a subscriber whose
    // queue is full: only the last wait is timed (to retry delivery).
    kernel
        .inbox
        .push_back(received(None, INTERRUPT_ACTION, vec![]));
    kernel
        .inbox
        .push_back(received(Some(CONSOLE_TASK), SUBSCRIBE_ACTION, vec![cap(6)]));
    assert_eq!(
        driver.run(&mut kernel, &mut line, channel),
        Err(KernelError::ChannelError(
            pandagen_abi::error::ChannelError::Closed
        )),
        "the failing receive ends the loop"
    );
    assert_eq!(
        kernel.timeouts,
        [None, None, Some(pandagen_abi::Duration::from_millis(10))]
    );
    assert_eq!(driver.pending(), b"a", "kept for the retry");
}
