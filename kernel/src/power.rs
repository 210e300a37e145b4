//! Power off and reset: ACPI S5, the ACPI reset register, the 8042 reset
//! line, and a triple fault.
//!
//! At boot the kernel reads the FADT (through the `acpi` crate, from the
//! RSDP the bootloader found) for the PM1 control registers, the reset
//! register and the DSDT, and the S5 sleep types from the DSDT or an SSDT
//! ([`pandagen_hal::acpi_sleep`]). The `Shutdown` and `Reboot` system
//! calls use them, and only for a caller holding the `KernelInfo`
//! capability with `CONTROL`.
//!
//! Why the kernel and not a ring-3 power service with port capabilities:
//! the values live in ACPI tables in RAM, which ring 3 can never map as
//! device memory; the PM1 and reset ports differ per machine, so a
//! manifest cannot name them ahead; and powering off must also stop the
//! kernel's own activity (it is the last thing that runs). The authority
//! stays explicit: one capability, held by the console alone in the
//! system manifest.

use acpi::address::{AddressSpace, GenericAddress};
use acpi::fadt::Fadt;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;
use pandagen_hal::acpi_sleep::{self, S5Error, SleepTypes};
use spin::Once;
use x86_64::instructions::port::Port;

/// PM1 control: the sleep type field (bits 10-12).
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
/// PM1 control: enter the sleep state written to `SLP_TYP`.
const SLP_EN: u16 = 1 << 13;
/// PM1 control: the platform is in ACPI mode.
const SCI_EN: u16 = 1;
/// The 8042 controller's command port and its "pulse reset line" command.
const KBC_COMMAND: u16 = 0x64;
const KBC_PULSE_RESET: u8 = 0xfe;
const KBC_INPUT_FULL: u8 = 1 << 1;
/// Status reads while waiting for the firmware or the 8042.
const POLLS: u32 = 100_000;

/// What the firmware tables say about power.
#[derive(Clone, Copy, Debug)]
pub struct PowerInfo {
    pm1a_control: Option<u16>,
    pm1b_control: Option<u16>,
    s5: Result<SleepTypes, S5Error>,
    reset: Option<(GenericAddress, u8)>,
    /// `SMI_CMD` and `ACPI_ENABLE`: how to switch the platform into ACPI
    /// mode if the firmware left it in legacy mode.
    acpi_enable: Option<(u16, u8)>,
    phys_offset: u64,
}

static POWER: Once<PowerInfo> = Once::new();

/// Why ACPI power control is unavailable.
pub enum PowerError {
    NoRsdp,
    Tables(acpi::AcpiError),
}

impl core::fmt::Display for PowerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PowerError::NoRsdp => f.write_str("the bootloader found no RSDP"),
            PowerError::Tables(e) => write!(f, "ACPI tables: {e:?}"),
        }
    }
}

#[derive(Clone, Copy)]
struct Window {
    offset: u64,
}

impl AcpiHandler for Window {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = (self.offset + physical_address as u64) as *mut T;
        // SAFETY: all physical memory is mapped at `offset` for the
        // kernel's lifetime, so the region is already mapped; `virt` is not
        // null (the window lies in the higher half).
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new_unchecked(virt),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // The window stays; nothing was mapped for the region.
    }
}

/// Reads the tables. Called once at boot with the bootloader's RSDP and
/// physical-memory window.
pub fn init(rsdp: Option<u64>, phys_offset: u64) -> Result<&'static PowerInfo, PowerError> {
    let rsdp = rsdp.ok_or(PowerError::NoRsdp)?;
    let window = Window {
        offset: phys_offset,
    };
    // SAFETY: the bootloader found the RSDP at this physical address, and
    // every physical address is readable through the window.
    let tables =
        unsafe { AcpiTables::from_rsdp(window, rsdp as usize) }.map_err(PowerError::Tables)?;
    let fadt = tables.find_table::<Fadt>().map_err(PowerError::Tables)?;
    let io_port = |address: GenericAddress| {
        (address.address_space == AddressSpace::SystemIo)
            .then(|| u16::try_from(address.address).ok())
            .flatten()
    };
    let pm1a_control = fadt.pm1a_control_block().ok().and_then(io_port);
    let pm1b_control = fadt.pm1b_control_block().ok().flatten().and_then(io_port);
    let flags = fadt.flags;
    let reset = flags
        .supports_system_reset_via_fadt()
        .then(|| fadt.reset_register().ok())
        .flatten()
        .filter(|r| r.address != 0)
        .map(|r| (r, fadt.reset_value));
    let smi_command = fadt.smi_cmd_port;
    let acpi_enable_value = fadt.acpi_enable;
    let acpi_enable = (smi_command != 0 && acpi_enable_value != 0)
        .then(|| {
            u16::try_from(smi_command)
                .ok()
                .map(|p| (p, acpi_enable_value))
        })
        .flatten();

    let aml = |address: usize, length: u32| {
        // SAFETY: the table's AML stream, as its header gives it, in
        // firmware memory that stays mapped and unchanged.
        unsafe {
            core::slice::from_raw_parts(
                (phys_offset + address as u64) as *const u8,
                length as usize,
            )
        }
    };
    let mut s5 = match tables.dsdt() {
        Ok(dsdt) => acpi_sleep::find_s5(aml(dsdt.address, dsdt.length)),
        Err(_) => Err(S5Error::NotFound),
    };
    if s5 == Err(S5Error::NotFound) {
        for ssdt in tables.ssdts() {
            s5 = acpi_sleep::find_s5(aml(ssdt.address, ssdt.length));
            if s5 != Err(S5Error::NotFound) {
                break;
            }
        }
    }
    Ok(POWER.call_once(|| PowerInfo {
        pm1a_control,
        pm1b_control,
        s5,
        reset,
        acpi_enable,
        phys_offset,
    }))
}

impl PowerInfo {
    /// One line for the boot log.
    pub fn describe(&self) -> alloc::string::String {
        let off = match (self.pm1a_control, self.s5) {
            (Some(port), Ok(t)) => {
                alloc::format!("S5 via PM1a {port:#x} (SLP_TYP {}/{})", t.a, t.b)
            }
            (None, _) => "no PM1a I/O port".into(),
            (_, Err(e)) => alloc::format!("no S5 ({e:?})"),
        };
        let reset = match self.reset {
            Some((r, value)) => {
                alloc::format!("reset {:?} {:#x} <- {value:#x}", r.address_space, r.address)
            }
            None => "no reset register".into(),
        };
        alloc::format!("{off}; {reset}")
    }
}

/// Power off: QEMU's exit device first (it reports a clean exit where the
/// test profiles attach it, and is an unused port elsewhere), then ACPI
/// S5. Halts if neither took effect.
pub fn power_off() -> ! {
    // SAFETY: port 0xf4 is the debug-exit device in our QEMU test
    // profiles and unassigned on PC hardware.
    unsafe { Port::<u32>::new(0xf4).write(crate::qemu::ExitCode::Success as u32) };
    if let Some(info) = POWER.get() {
        acpi_sleep_s5(info);
        log::error!("ACPI S5 did not power off");
    } else {
        log::error!("no ACPI tables: cannot power off");
    }
    crate::arch::halt_forever()
}

fn acpi_sleep_s5(info: &PowerInfo) {
    let (Some(pm1a), Ok(types)) = (info.pm1a_control, info.s5) else {
        return;
    };
    // SAFETY: PM1a/PM1b control and SMI_CMD are the ports the FADT names
    // for exactly this; the kernel is about to stop.
    unsafe {
        let mut control = Port::<u16>::new(pm1a);
        if control.read() & SCI_EN == 0 {
            if let Some((smi, value)) = info.acpi_enable {
                Port::<u8>::new(smi).write(value);
                for _ in 0..POLLS {
                    if control.read() & SCI_EN != 0 {
                        break;
                    }
                }
            }
        }
        if let Some(pm1b) = info.pm1b_control {
            let mut b = Port::<u16>::new(pm1b);
            let value = (b.read() & !SLP_TYP_MASK) | (u16::from(types.b) << SLP_TYP_SHIFT);
            b.write(value | SLP_EN);
        }
        let value = (control.read() & !SLP_TYP_MASK) | (u16::from(types.a) << SLP_TYP_SHIFT);
        control.write(value | SLP_EN);
    }
    // Power goes within microseconds; give the chipset a moment.
    for _ in 0..POLLS {
        core::hint::spin_loop();
    }
}

/// Reset the machine: the ACPI reset register, then the 8042's reset
/// line, then a triple fault (which resets every x86 machine).
pub fn reset() -> ! {
    x86_64::instructions::interrupts::disable();
    if let Some(info) = POWER.get() {
        if let Some((register, value)) = info.reset {
            acpi_reset(info, register, value);
        }
    }
    // SAFETY: the 8042 command port; 0xfe pulses the CPU reset line. The
    // keyboard driver's hold on the port no longer matters: the machine
    // is going down.
    unsafe {
        let mut status = Port::<u8>::new(KBC_COMMAND);
        for _ in 0..POLLS {
            if status.read() & KBC_INPUT_FULL == 0 {
                break;
            }
        }
        Port::<u8>::new(KBC_COMMAND).write(KBC_PULSE_RESET);
    }
    for _ in 0..POLLS {
        core::hint::spin_loop();
    }
    crate::arch::x86_64::idt::triple_fault()
}

fn acpi_reset(info: &PowerInfo, register: GenericAddress, value: u8) {
    match register.address_space {
        AddressSpace::SystemIo => {
            if let Ok(port) = u16::try_from(register.address) {
                // SAFETY: the FADT's reset register, written with its reset
                // value.
                unsafe { Port::<u8>::new(port).write(value) };
            }
        }
        AddressSpace::SystemMemory => {
            let virt = info.phys_offset + register.address;
            // SAFETY: the FADT's memory-mapped reset register, reachable
            // through the physical-memory window.
            unsafe { core::ptr::write_volatile(virt as *mut u8, value) };
        }
        AddressSpace::PciConfigSpace => {
            // Segment 0, bus 0: device in bits 32-47, function in 16-31,
            // register offset in 0-15.
            let device = ((register.address >> 32) & 0x1f) as u32;
            let function = ((register.address >> 16) & 0x7) as u32;
            let offset = (register.address & 0xff) as u32;
            let select = 0x8000_0000 | (device << 11) | (function << 8) | (offset & 0xfc);
            // SAFETY: the legacy PCI configuration mechanism, used once to
            // write the reset register the FADT names.
            unsafe {
                Port::<u32>::new(0xcf8).write(select);
                Port::<u8>::new(0xcfc + (offset & 3) as u16).write(value);
            }
        }
        _ => {}
    }
    for _ in 0..POLLS {
        core::hint::spin_loop();
    }
}
