//! A page allocator over one DMA region: the virtqueues and the bounce
//! buffers that requests' data pass through come from it.

use alloc::vec::Vec;

pub const PAGE: usize = 4096;

/// Pages of one physically contiguous region, mapped at `virt`, seen by
/// the device at `phys`.
#[derive(Debug)]
pub struct DmaPool {
    virt: u64,
    phys: u64,
    used: Vec<bool>,
}

impl DmaPool {
    pub fn new(virt: u64, phys: u64, bytes: u64) -> Self {
        DmaPool {
            virt,
            phys,
            used: alloc::vec![false; (bytes as usize) / PAGE],
        }
    }

    /// `pages` contiguous free pages: their (physical, virtual) addresses.
    pub fn allocate(&mut self, pages: usize) -> Option<(u64, u64)> {
        if pages == 0 || pages > self.used.len() {
            return None;
        }
        let first = (0..=self.used.len() - pages)
            .find(|&start| self.used[start..start + pages].iter().all(|u| !u))?;
        self.used[first..first + pages].fill(true);
        let offset = (first * PAGE) as u64;
        Some((self.phys + offset, self.virt + offset))
    }

    /// Give back what [`DmaPool::allocate`] returned at `phys`; `false`
    /// (and nothing freed) for an address or length it did not hand out.
    pub fn free(&mut self, phys: u64, pages: usize) -> bool {
        let Some(offset) = phys.checked_sub(self.phys) else {
            return false;
        };
        let first = offset as usize / PAGE;
        if !(offset as usize).is_multiple_of(PAGE) || first + pages > self.used.len() {
            return false;
        }
        if !self.used[first..first + pages].iter().all(|u| *u) {
            return false;
        }
        self.used[first..first + pages].fill(false);
        true
    }

    /// Where this task sees the region's physical address `phys`.
    pub fn virtual_of(&self, phys: u64) -> Option<u64> {
        let offset = phys.checked_sub(self.phys)?;
        (offset < (self.used.len() * PAGE) as u64).then_some(self.virt + offset)
    }

    pub fn free_pages(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_contiguous_disjoint_and_come_back() {
        let mut pool = DmaPool::new(0x1000_0000, 0x20_0000, 8 * PAGE as u64);
        let a = pool.allocate(3).unwrap();
        let b = pool.allocate(2).unwrap();
        assert_eq!(a, (0x20_0000, 0x1000_0000));
        assert_eq!(b, (0x20_3000, 0x1000_3000));
        assert_eq!(pool.allocate(4), None);
        assert!(pool.free(a.0, 3));
        assert!(!pool.free(a.0, 3), "freed twice");
        assert!(!pool.free(0x20_0800, 1), "unaligned");
        assert!(!pool.free(0x10_0000, 1), "below the region");
        assert_eq!(pool.allocate(4), None, "only 3 + 3 free, not contiguous");
        assert_eq!(pool.allocate(3), Some(a));
        assert_eq!(pool.free_pages(), 3);
    }

    #[test]
    fn the_whole_region_and_its_last_pages_can_be_had_but_no_more() {
        let mut pool = DmaPool::new(0x1000_0000, 0x20_0000, 8 * PAGE as u64);
        assert_eq!(pool.allocate(0), None, "no empty allocation");
        assert_eq!(pool.allocate(9), None, "more than the region");
        let all = pool.allocate(8).unwrap();
        assert_eq!(all, (0x20_0000, 0x1000_0000));
        assert!(pool.free(all.0, 8));
        let head = pool.allocate(5).unwrap();
        let tail = pool.allocate(3).unwrap();
        assert_eq!(tail, (0x20_5000, 0x1000_5000));
        assert_eq!(pool.free_pages(), 0);
        assert!(!pool.free(tail.0, 4), "past the region's end");
        assert!(
            !pool.free(tail.0 + 0x800, 1),
            "inside a page, not at its start"
        );
        assert!(pool.free(tail.0, 3), "the last pages");
        // Exactly the pages freed come back, not those of another holder.
        assert_eq!(pool.free_pages(), 3);
        assert_eq!(pool.allocate(4), None, "the head is still held");
        assert_eq!(pool.allocate(3), Some(tail));
        assert!(pool.free(head.0, 5));
    }

    #[test]
    fn physical_addresses_translate_only_inside_the_region() {
        let pool = DmaPool::new(0x1000_0000, 0x20_0000, 8 * PAGE as u64);
        assert_eq!(pool.virtual_of(0x20_0000), Some(0x1000_0000));
        assert_eq!(pool.virtual_of(0x20_1234), Some(0x1000_1234));
        assert_eq!(pool.virtual_of(0x20_7fff), Some(0x1000_7fff));
        assert_eq!(pool.virtual_of(0x20_8000), None, "one past the end");
        assert_eq!(pool.virtual_of(0x1f_ffff), None, "below");
    }
}
