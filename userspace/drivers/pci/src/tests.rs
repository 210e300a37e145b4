//! Enumeration against a modelled bus: registers, BAR sizing (writable
//! address bits only), multi-function headers.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;

/// A function's configuration space with the BAR sizing behaviour of real
/// hardware: each BAR keeps only its writable address bits.
struct Function {
    registers: [u32; 64],
    /// Per BAR slot, the mask of bits software can write (0: unimplemented).
    bar_masks: [u32; 6],
}

#[derive(Default)]
struct Bus {
    functions: RefCell<BTreeMap<PciAddress, Function>>,
    writes: RefCell<Vec<(PciAddress, u8, u32)>>,
    reads: RefCell<Vec<PciAddress>>,
}

impl ConfigSpace for Bus {
    fn read32(&self, address: PciAddress, offset: u8) -> u32 {
        self.reads.borrow_mut().push(address);
        self.functions
            .borrow()
            .get(&address)
            .map_or(u32::MAX, |f| f.registers[usize::from(offset / 4)])
    }

    fn write32(&self, address: PciAddress, offset: u8, value: u32) {
        self.writes.borrow_mut().push((address, offset, value));
        if let Some(f) = self.functions.borrow_mut().get_mut(&address) {
            let slot = usize::from(offset / 4);
            if (4..10).contains(&slot) {
                let mask = f.bar_masks[slot - 4];
                let flags = f.registers[slot] & !mask;
                f.registers[slot] = (value & mask) | flags;
            } else {
                f.registers[slot] = value;
            }
        }
    }
}

fn at(bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress {
        bus,
        device,
        function,
    }
}

fn function(vendor: u16, device: u16, class: u32, header: u8) -> Function {
    let mut registers = [0u32; 64];
    registers[0] = u32::from(device) << 16 | u32::from(vendor);
    registers[1] = 0x0010_0007;
    registers[2] = class << 8;
    registers[3] = u32::from(header) << 16;
    Function {
        registers,
        bar_masks: [0; 6],
    }
}

/// A transitional virtio-blk: an I/O BAR of 0x80 ports, a 4 KiB memory
/// BAR, a 16 KiB 64-bit BAR in slots 4-5, interrupt pin A on line 11.
fn virtio_blk() -> Function {
    let mut f = function(0x1af4, 0x1001, 0x01_00_00, 0);
    f.registers[4] = 0xc081;
    f.bar_masks[0] = 0xffff_ff80;
    f.registers[5] = 0xfebd_1000;
    f.bar_masks[1] = 0xffff_f000;
    f.registers[8] = 0xfe00_000c;
    f.bar_masks[4] = 0xffff_c000;
    f.registers[9] = 0;
    f.bar_masks[5] = 0xffff_ffff;
    f.registers[15] = 0x0000_010b;
    f
}

fn bus() -> Bus {
    let bus = Bus::default();
    {
        let mut functions = bus.functions.borrow_mut();
        functions.insert(at(0, 0, 0), function(0x8086, 0x29c0, 0x06_00_00, 0));
        functions.insert(at(0, 3, 0), virtio_blk());
        // A multi-function device: functions 0 and 2 exist.
        functions.insert(at(0, 31, 0), function(0x8086, 0x2918, 0x06_01_00, 0x80));
        functions.insert(at(0, 31, 2), function(0x8086, 0x2922, 0x01_06_01, 0));
        // A bridge to bus 200, and a device there, which a scan of bus 0
        // alone would miss.
        let mut bridge = function(0x1b36, 0x000c, 0x06_04_00, 0x01);
        bridge.registers[6] = 0x00c8_c800;
        functions.insert(at(0, 28, 0), bridge);
        functions.insert(at(200, 1, 0), function(0x1234, 0x5678, 0x02_00_00, 0));
        // A device on a bus no bridge leads to: not reachable, not found.
        functions.insert(at(90, 0, 0), function(0x1234, 0x9999, 0x02_00_00, 0));
    }
    bus
}

#[test]
fn every_reachable_bus_and_function_is_found_in_address_order() {
    let found = enumerate(&bus());
    let addresses: Vec<PciAddress> = found.iter().map(|d| d.address).collect();
    assert_eq!(
        addresses,
        vec![
            at(0, 0, 0),
            at(0, 3, 0),
            at(0, 28, 0),
            at(0, 31, 0),
            at(0, 31, 2),
            at(200, 1, 0)
        ]
    );
    let sata = &found[4];
    assert_eq!((sata.vendor, sata.device), (0x8086, 0x2922));
    assert_eq!((sata.class, sata.subclass, sata.interface), (1, 6, 1));
}

#[test]
fn bars_are_sized_and_the_interrupt_line_read() {
    let space = bus();
    let blk = describe(&space, at(0, 3, 0)).unwrap();
    assert_eq!(
        blk.bars,
        vec![
            PciBar {
                index: 0,
                space: BarSpace::Io {
                    port: 0xc080,
                    size: 0x80
                }
            },
            PciBar {
                index: 1,
                space: BarSpace::Memory {
                    base: 0xfebd_1000,
                    size: 0x1000,
                    wide: false
                }
            },
            PciBar {
                index: 4,
                space: BarSpace::Memory {
                    base: 0xfe00_0000,
                    size: 0x4000,
                    wide: true
                }
            },
        ]
    );
    assert_eq!(blk.interrupt_line, Some(11));
    assert_eq!(blk.config.len(), CONFIG_BYTES);
    assert_eq!(blk.config_word(0), 0x1001_1af4);
    // Sizing left every BAR and the command register as they were.
    let functions = space.functions.borrow();
    let after = &functions[&at(0, 3, 0)];
    assert_eq!(after.registers[4], 0xc081);
    assert_eq!(after.registers[8], 0xfe00_000c);
    assert_eq!(after.registers[1] & 0x7, 0x7);
}

#[test]
fn decoding_is_off_while_a_bar_is_probed() {
    let space = bus();
    describe(&space, at(0, 3, 0)).unwrap();
    let writes = space.writes.borrow();
    let mut decoding = true;
    for &(_, offset, value) in writes.iter() {
        if offset == 4 {
            decoding = value & 0x3 != 0;
        } else if (0x10..0x28).contains(&offset) && value == u32::MAX {
            assert!(!decoding, "a BAR was probed with decoding on");
        }
    }
}

#[test]
fn only_the_bound_device_is_given_bus_mastering() {
    let space = bus();
    {
        let mut functions = space.functions.borrow_mut();
        functions.get_mut(&at(0, 3, 0)).unwrap().registers[1] = 0x0010_0000;
    }
    enable_driver_access(&space, at(0, 3, 0));
    let functions = space.functions.borrow();
    assert_eq!(functions[&at(0, 3, 0)].registers[1] & 0x7, 0x7);
    let writes = space.writes.borrow();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].0, at(0, 3, 0));
}

#[test]
fn an_empty_slot_is_not_a_device() {
    assert!(describe(&bus(), at(0, 4, 0)).is_none());
}

#[test]
fn a_single_function_host_bridge_roots_bus_0_only() {
    // Probing buses nothing leads to costs boot time under emulation (and
    // on real hardware can find functions firmware left unconfigured).
    let space = bus();
    enumerate(&space);
    let probed: std::collections::BTreeSet<u8> =
        space.reads.borrow().iter().map(|a| a.bus).collect();
    assert_eq!(probed, [0, 200].into_iter().collect());
}

#[test]
fn a_multi_function_host_bridge_roots_a_bus_per_function() {
    let space = bus();
    {
        let mut functions = space.functions.borrow_mut();
        functions.get_mut(&at(0, 0, 0)).unwrap().registers[3] = 0x80 << 16;
        functions.insert(at(0, 0, 1), function(0x8086, 0x29c1, 0x06_00_00, 0));
        functions.insert(at(5, 2, 0), function(0x1234, 0x4321, 0x02_00_00, 0));
    }
    let found = enumerate(&space);
    assert!(found.iter().any(|d| d.address == at(5, 2, 0)));
    assert!(!found.iter().any(|d| d.address.bus == 90));
}

#[test]
fn no_interrupt_line_without_a_pin_or_a_routed_line() {
    let space = bus();
    // The host bridge has no interrupt pin (its line register reads 0).
    assert_eq!(describe(&space, at(0, 0, 0)).unwrap().interrupt_line, None);
    // Pin A wired, but firmware routed it nowhere (line 0xff).
    space
        .functions
        .borrow_mut()
        .get_mut(&at(0, 3, 0))
        .unwrap()
        .registers[15] = 0x0000_01ff;
    assert_eq!(describe(&space, at(0, 3, 0)).unwrap().interrupt_line, None);
}

#[test]
fn an_io_bar_in_a_later_slot_is_sized_at_its_own_register() {
    // An AHCI-like function: a memory BAR in slot 0, a 32-port I/O BAR in
    // slot 4; a driver given the wrong size could reach another device's
    // ports.
    let space = bus();
    {
        let mut f = function(0x8086, 0x2922, 0x01_06_01, 0);
        f.registers[4] = 0xfebd_2000;
        f.bar_masks[0] = 0xffff_f000;
        f.registers[8] = 0xd001;
        f.bar_masks[4] = 0xffff_ffe0;
        space.functions.borrow_mut().insert(at(0, 5, 0), f);
    }
    let sata = describe(&space, at(0, 5, 0)).unwrap();
    assert_eq!(
        sata.bars,
        vec![
            PciBar {
                index: 0,
                space: BarSpace::Memory {
                    base: 0xfebd_2000,
                    size: 0x1000,
                    wide: false
                }
            },
            PciBar {
                index: 4,
                space: BarSpace::Io {
                    port: 0xd000,
                    size: 0x20
                }
            },
        ]
    );
    let functions = space.functions.borrow();
    assert_eq!(functions[&at(0, 5, 0)].registers[2], 0x01_06_01 << 8);
}

#[test]
fn decoding_firmware_already_enabled_stays_enabled() {
    let space = bus();
    enable_driver_access(&space, at(0, 3, 0));
    let functions = space.functions.borrow();
    assert_eq!(functions[&at(0, 3, 0)].registers[1] & 0x7, 0x7);
}

#[test]
fn an_io_bar_with_no_port_bits_is_left_out() {
    // Writable bits only above the 16-bit port space: no size a driver
    // could be given.
    let space = bus();
    {
        let mut f = function(0x1234, 0x0001, 0x02_00_00, 0);
        f.registers[4] = 0x0001;
        f.bar_masks[0] = 0xffff_0000;
        space.functions.borrow_mut().insert(at(0, 6, 0), f);
    }
    assert_eq!(describe(&space, at(0, 6, 0)).unwrap().bars, vec![]);
}
