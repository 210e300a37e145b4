//! x86_64 4-level page tables, walked through a window onto physical memory.
//!
//! The virtual address space is split in two halves. The **user half**
//! `[0, 0x0000_8000_0000_0000)` belongs to one address space each; the
//! **kernel half** `[0xFFFF_8000_0000_0000, 2^64)` is shared by all of them:
//! every address space copies the kernel table's top-level entries 256..512,
//! and because the kernel fills all 256 of those entries once at boot
//! ([`AddressSpace::populate_kernel_half`]), every later kernel mapping is
//! made below a shared entry and so appears in every address space at once.
//!
//! Intermediate tables of the user half carry USER|WRITABLE; the leaf entry
//! decides the real permissions (hardware ANDs USER and WRITABLE and ORs NX
//! over the levels). Kernel-half tables never carry USER.
//!
//! The code here only edits memory. Flushing the TLB after an unmap or a
//! permission change in the *active* address space is the caller's job.

use crate::frame::{FrameBitmap, FrameError};
use crate::memory::MemoryError;
use pandagen_abi::memory::{PAGE_SIZE, USER_END};

/// First address of the shared kernel half.
pub const KERNEL_HALF_START: u64 = 0xFFFF_8000_0000_0000;
/// Index of the first kernel-half entry in the top-level table.
pub const KERNEL_PML4_START: usize = 256;

const ENTRIES: usize = 512;

/// Raw page-table entry bits.
pub mod bits {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    /// Write-through (PWT): with PCD, PAT entry 3 — uncached.
    pub const WRITE_THROUGH: u64 = 1 << 3;
    /// Cache disable (PCD).
    pub const NO_CACHE: u64 = 1 << 4;
    pub const HUGE: u64 = 1 << 7;
    pub const GLOBAL: u64 = 1 << 8;
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// Physical address bits 51..12.
    pub const ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;
}

/// Whether `addr` is canonical (bits 63..47 all equal).
pub fn is_canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_FFFF
}

/// Whether `addr` lies in the user half.
pub fn is_user_half(addr: u64) -> bool {
    addr < USER_END
}

/// The permissions of a 4 KiB mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFlags {
    pub writable: bool,
    pub user: bool,
    pub executable: bool,
    /// Uncached (PCD and PWT: PAT entry 3, strong uncacheable with the
    /// power-on PAT): for device memory, whose registers must see every
    /// access in order.
    pub uncached: bool,
}

impl PageFlags {
    pub const KERNEL_DATA: Self = Self {
        writable: true,
        user: false,
        executable: false,
        uncached: false,
    };
    pub const KERNEL_READ_ONLY: Self = Self {
        writable: false,
        user: false,
        executable: false,
        uncached: false,
    };
    pub const USER_DATA: Self = Self {
        writable: true,
        user: true,
        executable: false,
        uncached: false,
    };
    pub const USER_READ_ONLY: Self = Self {
        writable: false,
        user: true,
        executable: false,
        uncached: false,
    };
    /// A driver's device registers: user data, uncached.
    pub const USER_DEVICE: Self = Self {
        writable: true,
        user: true,
        executable: false,
        uncached: true,
    };
    pub const USER_CODE: Self = Self {
        writable: false,
        user: true,
        executable: true,
        uncached: false,
    };

    fn leaf_bits(self) -> u64 {
        let mut raw = bits::PRESENT;
        if self.writable {
            raw |= bits::WRITABLE;
        }
        if self.user {
            raw |= bits::USER;
        }
        if !self.executable {
            raw |= bits::NO_EXECUTE;
        }
        if self.uncached {
            raw |= bits::NO_CACHE | bits::WRITE_THROUGH;
        }
        raw
    }
}

/// Where a virtual address leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address maps to.
    pub phys: u64,
    /// The effective permissions, combined over every level.
    pub flags: PageFlags,
    /// Size of the page that maps it: 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
}

/// A source of zero-initialised-on-demand physical frames for page tables.
pub trait FrameSource {
    /// A free frame's physical address, or `None` when memory is exhausted.
    fn allocate_frame(&mut self) -> Option<u64>;
    /// Returns a frame obtained from [`FrameSource::allocate_frame`].
    fn free_frame(&mut self, phys: u64) -> Result<(), FrameError>;
}

impl FrameSource for FrameBitmap<'_> {
    fn allocate_frame(&mut self) -> Option<u64> {
        self.allocate()
    }

    fn free_frame(&mut self, phys: u64) -> Result<(), FrameError> {
        self.free(phys)
    }
}

/// A view of all physical memory at a fixed virtual offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysWindow {
    offset: u64,
}

impl PhysWindow {
    /// # Safety
    /// Every physical frame that page tables handled through this window can
    /// reference must be mapped, readable and writable, at `phys + offset`.
    pub const unsafe fn new(offset: u64) -> Self {
        Self { offset }
    }

    /// The virtual offset of the window.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The virtual address through which `phys` is reached.
    pub fn virt(&self, phys: u64) -> u64 {
        phys + self.offset
    }

    fn table(&self, phys: u64) -> *mut [u64; ENTRIES] {
        self.virt(phys) as *mut [u64; ENTRIES]
    }

    /// Reads entry `index` of the table at `table_phys`.
    fn read(&self, table_phys: u64, index: usize) -> u64 {
        // SAFETY: by the window's contract the table frame is mapped; page
        // tables are plain u64 arrays, and a volatile read keeps the compiler
        // from caching values the CPU may update (accessed/dirty bits).
        unsafe { core::ptr::read_volatile(&(*self.table(table_phys))[index]) }
    }

    /// Writes entry `index` of the table at `table_phys`.
    fn write(&self, table_phys: u64, index: usize, value: u64) {
        // SAFETY: as in `read`; callers hold the address space exclusively.
        unsafe { core::ptr::write_volatile(&mut (*self.table(table_phys))[index], value) }
    }

    /// Fills the frame at `phys` with zeros.
    pub fn zero_frame(&self, phys: u64) {
        // SAFETY: the frame is mapped through the window (its contract) and
        // the caller owns it (it was just allocated).
        unsafe { core::ptr::write_bytes(self.virt(phys) as *mut u8, 0, PAGE_SIZE as usize) }
    }
}

fn index(addr: u64, level: u32) -> usize {
    ((addr >> (12 + 9 * (level - 1))) & 0x1FF) as usize
}

/// One address space: a top-level (PML4) table and everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpace {
    root: u64,
    window: PhysWindow,
}

impl AddressSpace {
    /// Wraps an existing top-level table.
    ///
    /// # Safety
    /// `root` must be the physical address of a valid PML4 whose tables are
    /// all reachable through `window`, and nothing else may edit them while
    /// this handle (or a copy) is used.
    pub unsafe fn from_root(root: u64, window: PhysWindow) -> Self {
        Self { root, window }
    }

    /// Physical address of the PML4 (the value for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The window this address space is edited through.
    pub fn window(&self) -> PhysWindow {
        self.window
    }

    /// A new address space with an empty user half and the kernel half of
    /// `kernel`.
    pub fn new_sharing_kernel_half(
        kernel: &AddressSpace,
        frames: &mut impl FrameSource,
    ) -> Result<Self, MemoryError> {
        let window = kernel.window;
        let root = frames.allocate_frame().ok_or(MemoryError::OutOfMemory)?;
        window.zero_frame(root);
        for i in KERNEL_PML4_START..ENTRIES {
            window.write(root, i, window.read(kernel.root, i));
        }
        Ok(Self { root, window })
    }

    /// Gives every empty kernel-half top-level entry its own (empty) table,
    /// so that all kernel mappings made later are shared by every address
    /// space created from this one. Returns how many tables were added.
    pub fn populate_kernel_half(
        &self,
        frames: &mut impl FrameSource,
    ) -> Result<usize, MemoryError> {
        let mut added = 0;
        for i in KERNEL_PML4_START..ENTRIES {
            if self.window.read(self.root, i) & bits::PRESENT == 0 {
                let table = frames.allocate_frame().ok_or(MemoryError::OutOfMemory)?;
                self.window.zero_frame(table);
                self.window
                    .write(self.root, i, table | bits::PRESENT | bits::WRITABLE);
                added += 1;
            }
        }
        Ok(added)
    }

    /// How many user-half top-level entries are present.
    pub fn user_half_entries(&self) -> usize {
        (0..KERNEL_PML4_START)
            .filter(|&i| self.window.read(self.root, i) & bits::PRESENT != 0)
            .count()
    }

    /// Clears the user-half top-level entries without freeing what they
    /// point to (for tables the kernel does not own, such as the boot
    /// loader's identity mappings). The caller flushes the TLB.
    pub fn forget_user_half(&self) {
        for i in 0..KERNEL_PML4_START {
            self.window.write(self.root, i, 0);
        }
    }

    /// Maps the 4 KiB page at `virt` to the frame at `phys`.
    pub fn map(
        &self,
        frames: &mut impl FrameSource,
        virt: u64,
        phys: u64,
        flags: PageFlags,
    ) -> Result<(), MemoryError> {
        if !virt.is_multiple_of(PAGE_SIZE) || !phys.is_multiple_of(PAGE_SIZE) {
            return Err(MemoryError::NotAligned);
        }
        if !is_canonical(virt) {
            return Err(MemoryError::NotCanonical);
        }
        if flags.user && !is_user_half(virt) {
            return Err(MemoryError::UserMappingInKernelHalf);
        }
        let table_bits = if is_user_half(virt) {
            bits::PRESENT | bits::WRITABLE | bits::USER
        } else {
            bits::PRESENT | bits::WRITABLE
        };
        let mut table = self.root;
        for level in [4, 3, 2] {
            let i = index(virt, level);
            let entry = self.window.read(table, i);
            table = if entry & bits::PRESENT == 0 {
                let next = frames.allocate_frame().ok_or(MemoryError::OutOfMemory)?;
                self.window.zero_frame(next);
                self.window.write(table, i, next | table_bits);
                next
            } else if entry & bits::HUGE != 0 {
                return Err(MemoryError::HugePage);
            } else {
                if entry & table_bits != table_bits {
                    self.window.write(table, i, entry | table_bits);
                }
                entry & bits::ADDRESS
            };
        }
        let i = index(virt, 1);
        if self.window.read(table, i) & bits::PRESENT != 0 {
            return Err(MemoryError::AlreadyMapped);
        }
        self.window.write(table, i, phys | flags.leaf_bits());
        Ok(())
    }

    /// Removes the 4 KiB mapping at `virt` and returns the frame it mapped.
    /// Emptied intermediate tables are kept until the address space is torn
    /// down. The caller flushes the TLB if this space is active.
    pub fn unmap(&self, virt: u64) -> Result<u64, MemoryError> {
        if !virt.is_multiple_of(PAGE_SIZE) {
            return Err(MemoryError::NotAligned);
        }
        if !is_canonical(virt) {
            return Err(MemoryError::NotCanonical);
        }
        let mut table = self.root;
        for level in [4, 3, 2] {
            let entry = self.window.read(table, index(virt, level));
            if entry & bits::PRESENT == 0 {
                return Err(MemoryError::NotMapped);
            }
            if entry & bits::HUGE != 0 {
                return Err(MemoryError::HugePage);
            }
            table = entry & bits::ADDRESS;
        }
        let i = index(virt, 1);
        let entry = self.window.read(table, i);
        if entry & bits::PRESENT == 0 {
            return Err(MemoryError::NotMapped);
        }
        self.window.write(table, i, 0);
        Ok(entry & bits::ADDRESS)
    }

    /// Where `virt` leads, with the effective permissions, or `None` if it
    /// is not mapped (or not canonical).
    pub fn translate(&self, virt: u64) -> Option<Translation> {
        if !is_canonical(virt) {
            return None;
        }
        let mut table = self.root;
        let mut writable = true;
        let mut user = true;
        let mut executable = true;
        let mut uncached = false;
        for level in [4, 3, 2, 1] {
            let entry = self.window.read(table, index(virt, level));
            if entry & bits::PRESENT == 0 {
                return None;
            }
            writable &= entry & bits::WRITABLE != 0;
            user &= entry & bits::USER != 0;
            executable &= entry & bits::NO_EXECUTE == 0;
            uncached |= entry & bits::NO_CACHE != 0;
            let page_size = PAGE_SIZE << (9 * (level - 1));
            if level == 1 || (entry & bits::HUGE != 0 && level <= 3) {
                let base = entry & bits::ADDRESS & !(page_size - 1);
                return Some(Translation {
                    phys: base + (virt & (page_size - 1)),
                    flags: PageFlags {
                        writable,
                        user,
                        executable,
                        uncached,
                    },
                    page_size,
                });
            }
            table = entry & bits::ADDRESS;
        }
        None
    }

    /// Frees every page table of the user half and calls `leaf` with the
    /// frame of every 4 KiB page still mapped there (the caller decides
    /// whether that frame is freed). Huge user mappings are dropped without
    /// a `leaf` call: this kernel never creates them. The caller flushes the
    /// TLB if this space is active.
    pub fn free_user_half(
        &self,
        frames: &mut impl FrameSource,
        mut leaf: impl FnMut(u64),
    ) -> Result<(), FrameError> {
        for i in 0..KERNEL_PML4_START {
            let entry = self.window.read(self.root, i);
            if entry & bits::PRESENT != 0 {
                self.free_table(entry & bits::ADDRESS, 3, frames, &mut leaf)?;
                self.window.write(self.root, i, 0);
            }
        }
        Ok(())
    }

    /// Frees the user half (see [`AddressSpace::free_user_half`]) and the
    /// top-level table itself. The space must not be the active one.
    pub fn destroy(
        self,
        frames: &mut impl FrameSource,
        leaf: impl FnMut(u64),
    ) -> Result<(), FrameError> {
        self.free_user_half(frames, leaf)?;
        frames.free_frame(self.root)
    }

    fn free_table(
        &self,
        table: u64,
        level: u32,
        frames: &mut impl FrameSource,
        leaf: &mut impl FnMut(u64),
    ) -> Result<(), FrameError> {
        for i in 0..ENTRIES {
            let entry = self.window.read(table, i);
            if entry & bits::PRESENT == 0 {
                continue;
            }
            if level == 1 {
                leaf(entry & bits::ADDRESS);
            } else if entry & bits::HUGE == 0 {
                self.free_table(entry & bits::ADDRESS, level - 1, frames, leaf)?;
            }
        }
        frames.free_frame(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PhysRange;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::vec::Vec;

    /// Fake physical memory: a host buffer whose byte `n` plays physical
    /// address `n`.
    struct FakeRam {
        base: *mut u8,
        layout: Layout,
    }

    impl FakeRam {
        fn new(bytes: usize) -> Self {
            let layout = Layout::from_size_align(bytes, 4096).unwrap();
            // SAFETY: non-zero size.
            let base = unsafe { alloc_zeroed(layout) };
            assert!(!base.is_null());
            Self { base, layout }
        }
        fn window(&self) -> PhysWindow {
            // SAFETY: every physical address below `layout.size()` is backed.
            unsafe { PhysWindow::new(self.base as u64) }
        }
    }

    impl Drop for FakeRam {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.base, self.layout) }
        }
    }

    const RAM: usize = 8 << 20;

    fn setup(ram: &FakeRam, storage: &mut Vec<u64>) -> (FrameBitmap<'static>, AddressSpace) {
        let usable = [PhysRange {
            start: 0,
            end: RAM as u64,
        }];
        storage.resize(FrameBitmap::storage_words(usable), 0);
        // SAFETY: (test only) the storage outlives every use in the test.
        let storage: &'static mut [u64] = unsafe { &mut *(storage.as_mut_slice() as *mut [u64]) };
        let mut frames = FrameBitmap::new(usable, storage).unwrap();
        let root = frames.allocate().unwrap();
        ram.window().zero_frame(root);
        // SAFETY: fresh zeroed table inside the fake RAM.
        let kernel = unsafe { AddressSpace::from_root(root, ram.window()) };
        assert_eq!(kernel.populate_kernel_half(&mut frames), Ok(256));
        (frames, kernel)
    }

    const KERNEL_PAGE: u64 = 0xFFFF_C000_0000_0000;
    const USER_PAGE: u64 = 0x40_0000;

    #[test]
    fn user_space_shares_the_kernel_half_including_later_mappings() {
        let ram = FakeRam::new(RAM);
        let mut storage = Vec::new();
        let (mut frames, kernel) = setup(&ram, &mut storage);
        let k1 = frames.allocate().unwrap();
        kernel
            .map(&mut frames, KERNEL_PAGE, k1, PageFlags::KERNEL_DATA)
            .unwrap();
        let user = AddressSpace::new_sharing_kernel_half(&kernel, &mut frames).unwrap();
        assert_eq!(user.translate(KERNEL_PAGE).unwrap().phys, k1);
        // A kernel mapping made after the user space exists is visible too.
        let k2 = frames.allocate().unwrap();
        kernel
            .map(
                &mut frames,
                KERNEL_PAGE + 0x1000_0000_0000,
                k2,
                PageFlags::KERNEL_DATA,
            )
            .unwrap();
        let seen = user.translate(KERNEL_PAGE + 0x1000_0000_0000).unwrap();
        assert_eq!(seen.phys, k2);
        assert!(!seen.flags.user && seen.flags.writable && !seen.flags.executable);
        assert_eq!(user.user_half_entries(), 0);
    }

    #[test]
    fn map_write_translate_unmap_in_a_user_space() {
        let ram = FakeRam::new(RAM);
        let mut storage = Vec::new();
        let (mut frames, kernel) = setup(&ram, &mut storage);
        let user = AddressSpace::new_sharing_kernel_half(&kernel, &mut frames).unwrap();
        let frame = frames.allocate().unwrap();
        user.map(&mut frames, USER_PAGE, frame, PageFlags::USER_DATA)
            .unwrap();
        let t = user.translate(USER_PAGE + 0x123).unwrap();
        assert_eq!(t.phys, frame + 0x123);
        assert_eq!(t.flags, PageFlags::USER_DATA);
        assert_eq!(t.page_size, 4096);
        // The mapping is private to this space.
        assert_eq!(kernel.translate(USER_PAGE), None);
        assert_eq!(
            user.map(&mut frames, USER_PAGE, frame, PageFlags::USER_DATA),
            Err(MemoryError::AlreadyMapped)
        );
        assert_eq!(user.unmap(USER_PAGE), Ok(frame));
        assert_eq!(user.translate(USER_PAGE), None);
        assert_eq!(user.unmap(USER_PAGE), Err(MemoryError::NotMapped));
    }

    #[test]
    fn rejects_bad_mappings() {
        let ram = FakeRam::new(RAM);
        let mut storage = Vec::new();
        let (mut frames, kernel) = setup(&ram, &mut storage);
        let f = frames.allocate().unwrap();
        assert_eq!(
            kernel.map(&mut frames, USER_PAGE + 1, f, PageFlags::USER_DATA),
            Err(MemoryError::NotAligned)
        );
        assert_eq!(
            kernel.map(
                &mut frames,
                0x0000_8000_0000_0000,
                f,
                PageFlags::KERNEL_DATA
            ),
            Err(MemoryError::NotCanonical)
        );
        assert_eq!(
            kernel.map(&mut frames, KERNEL_PAGE, f, PageFlags::USER_DATA),
            Err(MemoryError::UserMappingInKernelHalf)
        );
        assert_eq!(kernel.translate(0x0000_8000_0000_0000), None);
    }

    #[test]
    fn read_only_and_code_permissions_are_reported() {
        let ram = FakeRam::new(RAM);
        let mut storage = Vec::new();
        let (mut frames, kernel) = setup(&ram, &mut storage);
        let user = AddressSpace::new_sharing_kernel_half(&kernel, &mut frames).unwrap();
        let (a, b) = (frames.allocate().unwrap(), frames.allocate().unwrap());
        user.map(&mut frames, USER_PAGE, a, PageFlags::USER_CODE)
            .unwrap();
        user.map(&mut frames, USER_PAGE + 4096, b, PageFlags::USER_READ_ONLY)
            .unwrap();
        assert_eq!(
            user.translate(USER_PAGE).unwrap().flags,
            PageFlags::USER_CODE
        );
        assert_eq!(
            user.translate(USER_PAGE + 4096).unwrap().flags,
            PageFlags::USER_READ_ONLY
        );
    }

    #[test]
    fn tearing_down_returns_every_table_frame() {
        let ram = FakeRam::new(RAM);
        let mut storage = Vec::new();
        let (mut frames, kernel) = setup(&ram, &mut storage);
        let before = frames.free_frames();
        let user = AddressSpace::new_sharing_kernel_half(&kernel, &mut frames).unwrap();
        let mut leaves = Vec::new();
        for n in 0..20u64 {
            // Spread pages over several tables at every level.
            let virt = USER_PAGE + n * (1 << 30) + n * 4096;
            let f = frames.allocate().unwrap();
            leaves.push(f);
            user.map(&mut frames, virt, f, PageFlags::USER_DATA)
                .unwrap();
        }
        let mut seen = Vec::new();
        user.destroy(&mut frames, |f| seen.push(f)).unwrap();
        seen.sort();
        leaves.sort();
        assert_eq!(seen, leaves);
        for f in leaves {
            frames.free(f).unwrap();
        }
        assert_eq!(frames.free_frames(), before);
        // The kernel half was untouched.
        assert_eq!(kernel.user_half_entries(), 0);
        assert!(kernel.populate_kernel_half(&mut frames).unwrap() == 0);
    }

    #[test]
    fn huge_pages_translate_and_refuse_4k_edits() {
        let ram = FakeRam::new(RAM);
        let mut storage = Vec::new();
        let (mut frames, kernel) = setup(&ram, &mut storage);
        // Build a 2 MiB mapping by hand at 0xFFFF_C000_0020_0000 -> 4 MiB.
        let virt = KERNEL_PAGE + (2 << 20);
        let w = ram.window();
        let l3 = w.read(kernel.root(), index(virt, 4)) & bits::ADDRESS;
        let l2 = frames.allocate().unwrap();
        w.zero_frame(l2);
        w.write(l3, index(virt, 3), l2 | bits::PRESENT | bits::WRITABLE);
        w.write(l2, index(virt, 2), (4 << 20) | bits::PRESENT | bits::HUGE);
        let t = kernel.translate(virt + 0x1234).unwrap();
        assert_eq!(t.phys, (4 << 20) + 0x1234);
        assert_eq!(t.page_size, 2 << 20);
        assert!(!t.flags.writable);
        let f = frames.allocate().unwrap();
        assert_eq!(
            kernel.map(&mut frames, virt, f, PageFlags::KERNEL_DATA),
            Err(MemoryError::HugePage)
        );
        assert_eq!(kernel.unmap(virt), Err(MemoryError::HugePage));
    }
}
