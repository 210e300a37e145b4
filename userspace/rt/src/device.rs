//! Device capabilities for ring-3 drivers: typed handles over the device
//! system calls. A driver receives its capabilities from the process
//! manager (they arrive at start-up, in the order its manifest entry lists
//! them) and wraps each once:
//!
//! ```ignore
//! let ports = Ports::new(caps[0]);             // ports = 0x70-0x71
//! ports.write8(0x70, 0x0a)?;                   // select RTC register A
//! let status = ports.read8(0x71)?;
//!
//! let irq = Interrupt::new(caps[1], 8);        // irq = 8
//! irq.bind(&channel)?;                         // notifications arrive there
//! // ... on each INTERRUPT_ACTION message: service the device, then
//! irq.acknowledge()?;                          // unmask the line
//!
//! let dma = Dma::new(caps[2]).allocate(4096)?; // dma = 64K
//! // hand dma.physical to the device, use dma.as_mut_slice() yourself
//! ```
//!
//! Every call is checked by the kernel against the capability before any
//! hardware is touched; a refusal is a typed [`KernelError`] (mostly
//! `KernelError::Device(..)`), never a fault.

use pandagen_abi::device::{DeviceError, DeviceResource, PhysRange, PortRange};
use pandagen_abi::screen::{ScreenHandOver, TakeOverScreenRequest};
use pandagen_abi::syscall::{
    AllocateDmaRequest, BindInterruptRequest, CapRequest, DmaRegion, InterruptRequest,
    MapDeviceMemoryRequest, MintDeviceRequest, PortReadRequest, PortWriteRequest, ReceiveRequest,
    ReleaseDmaQuarantineRequest, Syscall,
};
use pandagen_abi::{CapHandle, KernelError, Rights};

use core::time::Duration;

use crate::syscall::{call_receiving, call_small};

/// Mint a narrower device capability from `parent` (which needs `GRANT`):
/// how the process manager cuts each driver's share from the root's.
pub fn mint(
    parent: CapHandle,
    resource: DeviceResource,
    rights: Rights,
) -> Result<CapHandle, KernelError> {
    call_small(
        Syscall::MintDevice,
        &MintDeviceRequest {
            parent,
            resource,
            rights,
        },
    )
}

/// An `IoPorts` capability.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    capability: CapHandle,
}

impl Ports {
    pub const fn new(capability: CapHandle) -> Self {
        Ports { capability }
    }

    fn read(&self, port: u16, width: u8) -> Result<u32, KernelError> {
        call_small(
            Syscall::PortRead,
            &PortReadRequest {
                capability: self.capability,
                port,
                width,
            },
        )
    }

    fn write(&self, port: u16, width: u8, value: u32) -> Result<(), KernelError> {
        call_small(
            Syscall::PortWrite,
            &PortWriteRequest {
                capability: self.capability,
                port,
                width,
                value,
            },
        )
    }

    pub fn read8(&self, port: u16) -> Result<u8, KernelError> {
        self.read(port, 1).map(|v| v as u8)
    }

    pub fn read16(&self, port: u16) -> Result<u16, KernelError> {
        self.read(port, 2).map(|v| v as u16)
    }

    pub fn read32(&self, port: u16) -> Result<u32, KernelError> {
        self.read(port, 4)
    }

    pub fn write8(&self, port: u16, value: u8) -> Result<(), KernelError> {
        self.write(port, 1, u32::from(value))
    }

    pub fn write16(&self, port: u16, value: u16) -> Result<(), KernelError> {
        self.write(port, 2, u32::from(value))
    }

    pub fn write32(&self, port: u16, value: u32) -> Result<(), KernelError> {
        self.write(port, 4, value)
    }

    /// Open these ports to this task's own `in` and `out` (the capability
    /// needs `READ` and `WRITE`): no system call per access from then on,
    /// until the task gives the capability up.
    pub fn open(&self) -> Result<PortWindow, KernelError> {
        let range = call_small(
            Syscall::OpenPorts,
            &CapRequest {
                capability: self.capability,
            },
        )?;
        Ok(PortWindow { range })
    }
}

/// Ports open to this task's `in` and `out` instructions ([`Ports::open`]).
/// Accesses outside the window are refused here with
/// `Device(OutsideGrant)`; the CPU would fault them anyway (the kernel's
/// I/O permission bitmap), which ends the task.
#[derive(Clone, Copy, Debug)]
pub struct PortWindow {
    range: PortRange,
}

impl PortWindow {
    pub const fn range(&self) -> PortRange {
        self.range
    }

    fn check(&self, port: u16, width: u8) -> Result<(), KernelError> {
        if self.range.contains_access(port, width) {
            Ok(())
        } else {
            Err(KernelError::Device(DeviceError::OutsideGrant))
        }
    }

    pub fn read8(&self, port: u16) -> Result<u8, KernelError> {
        self.check(port, 1)?;
        // SAFETY: the kernel opened this port to this task (a port it does
        // not drive); `in` touches no memory.
        Ok(unsafe { raw_in8(port) })
    }

    pub fn write8(&self, port: u16, value: u8) -> Result<(), KernelError> {
        self.check(port, 1)?;
        // SAFETY: as in `read8`.
        unsafe { raw_out8(port, value) };
        Ok(())
    }
}

/// `in al, dx` with no check: faults (#GP, ending the task) unless the
/// kernel opened `port` to this task.
///
/// # Safety
/// The port's device must tolerate the read (reads have side effects on
/// some devices).
pub unsafe fn raw_in8(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller's contract; the instruction touches no memory.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// `out dx, al` with no check (see [`raw_in8`]).
///
/// # Safety
/// As [`raw_in8`], for a write.
pub unsafe fn raw_out8(port: u16, value: u8) {
    // SAFETY: the caller's contract; the instruction touches no memory.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
    }
}

/// A `DeviceMemory` capability.
#[derive(Clone, Copy, Debug)]
pub struct DeviceMemory {
    capability: CapHandle,
}

/// Device memory mapped into this task: its registers, uncached. Access
/// it with volatile reads and writes (see [`Mapping::read32`]); the kernel
/// refuses it as a system-call buffer.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    pub address: u64,
    pub len: u64,
}

impl DeviceMemory {
    pub const fn new(capability: CapHandle) -> Self {
        DeviceMemory { capability }
    }

    /// Map `range` (page-aligned, inside the capability) where the kernel
    /// chooses, or at `at` in the user half.
    pub fn map(
        &self,
        range: PhysRange,
        writable: bool,
        at: Option<u64>,
    ) -> Result<Mapping, KernelError> {
        let address = call_small(
            Syscall::MapDeviceMemory,
            &MapDeviceMemoryRequest {
                capability: self.capability,
                range,
                writable,
                at,
            },
        )?;
        Ok(Mapping {
            address,
            len: range.len,
        })
    }
}

impl Mapping {
    /// The 32-bit register at byte `offset` (`None` past the end or
    /// unaligned).
    pub fn read32(&self, offset: u64) -> Option<u32> {
        let address = self.register(offset)?;
        // SAFETY: `address` is inside a live device mapping of this task
        // (checked by `register`), aligned for u32; device registers need
        // volatile access.
        Some(unsafe { core::ptr::read_volatile(address as *const u32) })
    }

    /// Write the 32-bit register at byte `offset`; `false` past the end or
    /// unaligned. Faults if the mapping is read-only.
    pub fn write32(&self, offset: u64, value: u32) -> bool {
        let Some(address) = self.register(offset) else {
            return false;
        };
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) };
        true
    }

    fn register(&self, offset: u64) -> Option<u64> {
        (offset.is_multiple_of(4) && offset.checked_add(4)? <= self.len)
            .then_some(self.address + offset)
    }
}

/// One interrupt line of an `Interrupt` capability.
#[derive(Clone, Copy, Debug)]
pub struct Interrupt {
    capability: CapHandle,
    line: u8,
}

impl Interrupt {
    pub const fn new(capability: CapHandle, line: u8) -> Self {
        Interrupt { capability, line }
    }

    pub const fn line(&self) -> u8 {
        self.line
    }

    /// Send the line's notifications (action
    /// [`INTERRUPT_ACTION`](pandagen_abi::device::INTERRUPT_ACTION)) to
    /// `channel` (a handle with `SEND`), and unmask it.
    pub fn bind(&self, channel: CapHandle) -> Result<(), KernelError> {
        call_small(
            Syscall::BindInterrupt,
            &BindInterruptRequest {
                capability: self.capability,
                line: self.line,
                channel,
            },
        )
    }

    /// The line is handled: unmask it. Returns how many fires were
    /// coalesced into the last notification.
    pub fn acknowledge(&self) -> Result<u32, KernelError> {
        call_small(
            Syscall::AcknowledgeInterrupt,
            &InterruptRequest {
                capability: self.capability,
                line: self.line,
            },
        )
    }
}

impl Interrupt {
    /// Wait up to `timeout` on `channel` (bound to this line with
    /// [`Interrupt::bind`]) for the line's notification. `Ok(true)`: it
    /// fired (service the device, then [`Interrupt::acknowledge`]);
    /// `Ok(false)`: the time passed first.
    pub fn wait(&self, channel: CapHandle, timeout: Duration) -> Result<bool, KernelError> {
        let request = ReceiveRequest {
            channel,
            timeout_nanos: Some(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)),
        };
        let mut scratch = [0u8; 32];
        let mut response = [0u8; 256];
        match call_receiving(Syscall::Receive, &request, &mut scratch, &mut response) {
            Ok(_) => Ok(true),
            Err(KernelError::Timeout) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// A `DmaMemory` capability.
#[derive(Clone, Copy, Debug)]
pub struct Dma {
    capability: CapHandle,
}

impl Dma {
    pub const fn new(capability: CapHandle) -> Self {
        Dma { capability }
    }

    /// `bytes` (a multiple of 4096) of zeroed, physically contiguous
    /// memory, mapped into this task; [`DmaRegion::physical`] is what the
    /// device is told. Freed when the task ends.
    pub fn allocate(&self, bytes: u64) -> Result<DmaRegion, KernelError> {
        call_small(
            Syscall::AllocateDma,
            &AllocateDmaRequest {
                capability: self.capability,
                bytes,
            },
        )
    }
}

/// Tell the kernel the device behind `registers` (this task's `IoPorts`
/// and `DeviceMemory` capabilities, each with `WRITE`) has been reset, so
/// that the DMA frames a dead driver of it left quarantined can be reused.
/// Returns the frames released (0 on a first start). Call it only after
/// the reset: until then the device may still write into those frames.
pub fn release_dma_quarantine(registers: &[CapHandle]) -> Result<u64, KernelError> {
    let registers = heapless::Vec::from_slice(registers)
        .map_err(|_| KernelError::Device(DeviceError::OutsideGrant))?;
    call_small(
        Syscall::ReleaseDmaQuarantine,
        &ReleaseDmaQuarantineRequest { registers },
    )
}

/// The framebuffer's `DeviceMemory` capability (the one the kernel mints
/// for the root task, and the manifest hands to the display service).
#[derive(Clone, Copy, Debug)]
pub struct Framebuffer {
    capability: CapHandle,
}

impl Framebuffer {
    pub const fn new(capability: CapHandle) -> Self {
        Framebuffer { capability }
    }

    /// Take the screen over from the kernel's early console: the kernel
    /// draws no more and sends its screen output on `channel` (a channel
    /// capability with `SEND`) from now on.
    pub fn take_over(&self, channel: CapHandle) -> Result<ScreenHandOver, KernelError> {
        call_small(
            Syscall::TakeOverScreen,
            &TakeOverScreenRequest {
                framebuffer: self.capability,
                channel,
            },
        )
    }

    /// Map the framebuffer `hand_over` describes, writable, and return its
    /// bytes (`stride * height * bytes_per_pixel` of them). Each call maps
    /// it anew, so call it once.
    pub fn map(&self, hand_over: &ScreenHandOver) -> Result<&'static mut [u8], KernelError> {
        let format = &hand_over.format;
        let len = u64::from(format.stride)
            .checked_mul(u64::from(format.height))
            .and_then(|n| n.checked_mul(u64::from(format.bytes_per_pixel)))
            .filter(|len| {
                hand_over
                    .offset
                    .checked_add(*len)
                    .is_some_and(|end| end <= hand_over.range.len)
            })
            .ok_or(KernelError::Device(DeviceError::OutsideGrant))?;
        let mapping = DeviceMemory::new(self.capability).map(hand_over.range, true, None)?;
        // SAFETY: the kernel just mapped `hand_over.range` writable at
        // `mapping.address` in this task, and device mappings are never
        // unmapped while the task lives, so the bytes stay valid for
        // 'static; `offset + len` lies inside the mapping (checked above);
        // the mapping is new, so no other reference to it exists. A
        // framebuffer's reads and writes have no side effects, so plain
        // (non-volatile) accesses are sound on it.
        Ok(unsafe {
            core::slice::from_raw_parts_mut(
                (mapping.address + hand_over.offset) as *mut u8,
                len as usize,
            )
        })
    }
}
