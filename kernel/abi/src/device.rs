//! Device capabilities: what a ring-3 driver may touch.
//!
//! A driver holds capabilities to exactly its device: a range of I/O ports,
//! a range of device memory (physical addresses outside RAM and outside
//! anything the kernel uses), a range of interrupt lines, and the right to
//! allocate DMA memory up to a number of bytes. The kernel gives the root
//! task the whole of each resource; narrower capabilities are minted from
//! those ([`MintDeviceRequest`](crate::syscall::MintDeviceRequest)), never
//! wider ones, like seL4's `IOPortControl` and `IRQControl`.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cap::CapKind;

/// The legacy PIC's interrupt lines (0..=15). Line 0 is the kernel's timer,
/// line 2 the cascade and line 4 the serial console: the kernel keeps
/// those.
pub const INTERRUPT_LINES: u8 = 16;
/// The lines the kernel keeps for itself: never bound to a driver.
pub const KERNEL_INTERRUPT_LINES: [u8; 3] = [0, 2, 4];
/// Ports the kernel keeps (the PIC pairs, the PIT, COM1 and QEMU's exit
/// device): a port range naming any of them is refused for I/O.
pub const KERNEL_PORTS: [PortRange; 5] = [
    PortRange::new(0x20, 0x21),
    PortRange::new(0x40, 0x43),
    PortRange::new(0xa0, 0xa1),
    PortRange::new(0x3f8, 0x3ff),
    PortRange::new(0xf4, 0xf7),
];
/// The top of the physical address space (52 bits on x86_64).
pub const PHYSICAL_LIMIT: u64 = 1 << 52;

/// An inclusive range of I/O ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Every port.
    pub const ALL: PortRange = PortRange::new(0, u16::MAX);

    pub const fn new(first: u16, last: u16) -> Self {
        PortRange { first, last }
    }

    /// Whether the range names at least one port.
    pub const fn is_valid(&self) -> bool {
        self.first <= self.last
    }

    /// Whether `width` bytes from `port` lie inside the range.
    pub const fn contains_access(&self, port: u16, width: u8) -> bool {
        let end = port as u32 + width as u32 - 1;
        port >= self.first && end <= self.last as u32
    }

    pub const fn contains(&self, other: &PortRange) -> bool {
        other.first >= self.first && other.last <= self.last
    }

    pub const fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// A page-aligned range of physical addresses, `[base, base + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PhysRange {
    pub base: u64,
    pub len: u64,
}

impl PhysRange {
    /// Every physical address.
    pub const ALL: PhysRange = PhysRange {
        base: 0,
        len: PHYSICAL_LIMIT,
    };

    pub const fn new(base: u64, len: u64) -> Self {
        PhysRange { base, len }
    }

    /// One past the last byte (saturating: an overflowing range is not
    /// valid anyway).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }

    /// Non-empty, page-aligned, below [`PHYSICAL_LIMIT`], not wrapping.
    pub const fn is_valid(&self) -> bool {
        let page = crate::memory::PAGE_SIZE;
        self.len > 0
            && self.base.is_multiple_of(page)
            && self.len.is_multiple_of(page)
            && self.base.checked_add(self.len).is_some()
            && self.base + self.len <= PHYSICAL_LIMIT
    }

    pub const fn contains(&self, other: &PhysRange) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// An inclusive range of interrupt lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InterruptLines {
    pub first: u8,
    pub last: u8,
}

impl InterruptLines {
    /// Every line of the legacy PIC.
    pub const ALL: InterruptLines = InterruptLines {
        first: 0,
        last: INTERRUPT_LINES - 1,
    };

    pub const fn one(line: u8) -> Self {
        InterruptLines {
            first: line,
            last: line,
        }
    }

    pub const fn is_valid(&self) -> bool {
        self.first <= self.last && self.last < INTERRUPT_LINES
    }

    pub const fn contains_line(&self, line: u8) -> bool {
        line >= self.first && line <= self.last
    }

    pub const fn contains(&self, other: &InterruptLines) -> bool {
        other.first >= self.first && other.last <= self.last
    }
}

/// What a device capability designates. Each variant is its own capability
/// kind ([`DeviceResource::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeviceResource {
    /// `in`/`out` on these ports (`READ`: in, `WRITE`: out).
    Ports(PortRange),
    /// Map this physical range, uncached (`READ`; `WRITE` for a writable
    /// mapping).
    Memory(PhysRange),
    /// Bind these interrupt lines to a channel and acknowledge them
    /// (`RECEIVE`).
    Interrupts(InterruptLines),
    /// Allocate physically contiguous DMA memory, at most this many bytes
    /// held at once by the holder (`WRITE`).
    Dma { bytes: u64 },
    /// The framebuffer the bootloader set up, at this physical range: mapped
    /// like `Memory` (`READ`; `WRITE` for a writable mapping), and taken
    /// over from the kernel's early console with
    /// [`TakeOverScreen`](crate::syscall::Syscall::TakeOverScreen). Only
    /// the kernel makes one, at boot, for the root task; a `Memory`
    /// capability never covers the framebuffer, so this is the one way to
    /// map it.
    Framebuffer(PhysRange),
}

impl DeviceResource {
    pub const fn kind(&self) -> CapKind {
        match self {
            DeviceResource::Ports(_) => CapKind::IoPorts,
            DeviceResource::Memory(_) => CapKind::DeviceMemory,
            DeviceResource::Interrupts(_) => CapKind::Interrupt,
            DeviceResource::Dma { .. } => CapKind::DmaMemory,
            DeviceResource::Framebuffer(_) => CapKind::DeviceMemory,
        }
    }

    /// Well formed: a non-empty range of its kind.
    pub const fn is_valid(&self) -> bool {
        match self {
            DeviceResource::Ports(r) => r.is_valid(),
            DeviceResource::Memory(r) => r.is_valid(),
            DeviceResource::Interrupts(r) => r.is_valid(),
            DeviceResource::Dma { bytes } => *bytes > 0,
            DeviceResource::Framebuffer(r) => r.is_valid(),
        }
    }

    /// Whether `narrower` is of the same kind and lies inside `self`.
    pub const fn contains(&self, narrower: &DeviceResource) -> bool {
        match (self, narrower) {
            (DeviceResource::Ports(a), DeviceResource::Ports(b)) => a.contains(b),
            (DeviceResource::Memory(a), DeviceResource::Memory(b)) => a.contains(b),
            (DeviceResource::Interrupts(a), DeviceResource::Interrupts(b)) => a.contains(b),
            (DeviceResource::Dma { bytes: a }, DeviceResource::Dma { bytes: b }) => *b <= *a,
            (DeviceResource::Framebuffer(a), DeviceResource::Framebuffer(b)) => a.contains(b),
            _ => false,
        }
    }
}

/// Why a device request was refused. Nothing was done.
///
/// The variants' order is their wire encoding: new ones go at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceError {
    /// The request names a range outside the capability's (or, for a mint,
    /// wider than the parent's), or an empty or misaligned range.
    OutsideGrant,
    /// The physical range overlaps RAM, the kernel's own memory or the
    /// framebuffer (which only its own capability maps): it is never
    /// device memory.
    NotDeviceMemory { base: u64, len: u64 },
    /// The port range includes a port the kernel drives itself.
    KernelPort { port: u16 },
    /// The interrupt line is the kernel's (timer, cascade, serial).
    KernelInterrupt { line: u8 },
    /// The interrupt line is already bound to a channel.
    AlreadyBound { line: u8 },
    /// The interrupt line is not bound by the caller (acknowledge without
    /// a binding).
    NotBound { line: u8 },
    /// The access width is not 1, 2 or 4 bytes.
    BadWidth { width: u8 },
    /// The holder's DMA allowance would be exceeded: `held` bytes are
    /// allocated, `allowed` may be.
    DmaAllowance { held: u64, allowed: u64 },
    /// No contiguous run of free frames that long.
    NoContiguousMemory { bytes: u64 },
    /// The address the caller named for the mapping is not free, not
    /// page-aligned or not in its user half.
    BadMappingAddress { address: u64 },
    /// The caller has [`MAX_PORT_WINDOWS`] port capabilities open to its
    /// `in` and `out` instructions already.
    TooManyPortWindows,
    /// The capability is device memory but not the framebuffer (taking the
    /// screen over needs the framebuffer's), or the machine has none.
    NotFramebuffer,
}

/// The most port capabilities one task may open to its own `in` and `out`
/// instructions (`OpenPorts`) at a time.
pub const MAX_PORT_WINDOWS: usize = 4;

/// The most register capabilities one
/// [`ReleaseDmaQuarantine`](crate::syscall::Syscall::ReleaseDmaQuarantine)
/// names (a PCI function has six BARs; the rest is slack for narrower
/// capabilities).
pub const MAX_RELEASE_REGISTERS: usize = 8;

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The action of interrupt notifications the kernel sends on a bound
/// channel. The payload is an [`InterruptNotification`].
pub const INTERRUPT_ACTION: &str = "device.interrupt";

/// The payload of an interrupt notification: the line fired (at least
/// once) since the driver's last acknowledgement. The line stays masked
/// until the driver acknowledges it; fires while masked are counted here,
/// not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptNotification {
    pub line: u8,
    /// Fires the kernel saw while the line waited for acknowledgement
    /// (they were coalesced into this notification).
    pub coalesced: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_is_per_kind_and_inclusive() {
        let keyboard = DeviceResource::Ports(PortRange::new(0x60, 0x64));
        assert!(DeviceResource::Ports(PortRange::ALL).contains(&keyboard));
        assert!(keyboard.contains(&DeviceResource::Ports(PortRange::new(0x60, 0x60))));
        assert!(keyboard.contains(&DeviceResource::Ports(PortRange::new(0x64, 0x64))));
        assert!(!keyboard.contains(&DeviceResource::Ports(PortRange::new(0x60, 0x65))));
        assert!(!keyboard.contains(&DeviceResource::Ports(PortRange::new(0x5f, 0x60))));
        assert!(!DeviceResource::Interrupts(InterruptLines::ALL)
            .contains(&DeviceResource::Ports(PortRange::new(1, 1))));
        assert!(DeviceResource::Dma { bytes: 65536 }.contains(&DeviceResource::Dma { bytes: 4096 }));
        assert!(!DeviceResource::Dma { bytes: 4096 }.contains(&DeviceResource::Dma { bytes: 8192 }));
    }

    #[test]
    fn all_device_memory_does_not_cover_the_framebuffer() {
        let screen = PhysRange::new(0xfd00_0000, 0x40_0000);
        let framebuffer = DeviceResource::Framebuffer(screen);
        assert!(!DeviceResource::Memory(PhysRange::ALL).contains(&framebuffer));
        assert!(!framebuffer.contains(&DeviceResource::Memory(screen)));
        assert!(
            framebuffer.contains(&DeviceResource::Framebuffer(PhysRange::new(
                0xfd00_0000,
                0x1000
            )))
        );
        assert_eq!(framebuffer.kind(), CapKind::DeviceMemory);
    }

    #[test]
    fn port_access_must_fit_the_range() {
        let r = PortRange::new(0x70, 0x71);
        assert!(r.contains_access(0x70, 2));
        assert!(!r.contains_access(0x71, 2));
        assert!(!r.contains_access(0x6f, 1));
        assert!(PortRange::new(0xfffc, 0xffff).contains_access(0xfffc, 4));
    }

    #[test]
    fn physical_ranges_must_be_page_aligned_and_bounded() {
        assert!(PhysRange::new(0xfd00_0000, 0x1000).is_valid());
        assert!(!PhysRange::new(0xfd00_0001, 0x1000).is_valid());
        assert!(!PhysRange::new(0xfd00_0000, 0).is_valid());
        assert!(!PhysRange::new(!0xfff, 0x2000).is_valid());
        assert!(!PhysRange::new(PHYSICAL_LIMIT, 0x1000).is_valid());
        let a = PhysRange::new(0x1000, 0x2000);
        assert!(a.overlaps(&PhysRange::new(0x2000, 0x1000)));
        assert!(!a.overlaps(&PhysRange::new(0x3000, 0x1000)));
    }
}
