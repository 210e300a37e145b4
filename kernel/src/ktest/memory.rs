//! Frame allocator, heap and page-table tests.

use super::{ensure, TestResult};
use crate::arch::x86_64::protection::with_user_access;
use crate::layout;
use crate::mem::{frame, heap, paging};
use crate::usermem::UserMemory;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_hal::frame::FrameError;
use pandagen_hal::x86_64::paging::{PageFlags, KERNEL_PML4_START};
use x86_64::instructions::interrupts;

pub fn layout_is_upper_half() -> TestResult {
    let space = paging::kernel_space();
    ensure!(
        space.user_half_entries() == 0,
        "kernel table still has {} lower-half entries",
        space.user_half_entries()
    );
    let code = layout_is_upper_half as *const () as u64;
    ensure!(
        layout::in_bootloader_range(code),
        "kernel code at {code:#x}"
    );
    let t = space.translate(code).ok_or("kernel code is not mapped")?;
    ensure!(
        t.flags.executable && !t.flags.user,
        "kernel code flags {:?}",
        t.flags
    );
    let heap = space
        .translate(layout::KERNEL_HEAP_START)
        .ok_or("heap not mapped")?;
    ensure!(
        heap.flags == PageFlags::KERNEL_DATA,
        "heap flags {:?} (want writable, supervisor, no-execute)",
        heap.flags
    );
    Ok(())
}

pub fn frames_are_unique() -> TestResult {
    const N: usize = 2000;
    let (_, free_before) = frame::counts();
    let mut frames: Vec<u64> = (0..N).filter_map(|_| frame::allocate()).collect();
    ensure!(
        frames.len() == N,
        "only {} of {N} frames allocated",
        frames.len()
    );
    ensure!(
        frame::counts().1 == free_before - N as u64,
        "free count did not drop by {N}"
    );
    ensure!(
        frames.iter().all(|&f| frame::is_allocated(f)),
        "a frame is not marked allocated"
    );
    ensure!(
        frames.iter().all(|&f| f % PAGE_SIZE == 0 && f != 0),
        "a frame is misaligned"
    );
    frames.sort_unstable();
    let before = frames.len();
    frames.dedup();
    ensure!(
        frames.len() == before,
        "{} frames handed out twice",
        before - frames.len()
    );
    for &f in &frames {
        frame::free(f).map_err(|e| alloc::format!("free {f:#x}: {e:?}"))?;
    }
    ensure!(frame::counts().1 == free_before, "free count not restored");
    ensure!(
        frame::free(frames[0]) == Err(FrameError::AlreadyFree),
        "double free was not rejected"
    );
    Ok(())
}

pub fn freed_frames_come_back() -> TestResult {
    let (_, free_before) = frame::counts();
    // Take every free frame, so the allocator has exactly one to give after
    // we return one.
    let mut all = Vec::with_capacity(free_before as usize);
    while let Some(f) = frame::allocate() {
        all.push(f);
    }
    ensure!(
        all.len() as u64 == free_before,
        "allocated {} of {free_before}",
        all.len()
    );
    let returned = all[all.len() / 2];
    frame::free(returned).map_err(|e| alloc::format!("{e:?}"))?;
    let again = frame::allocate();
    let exhausted = frame::allocate();
    for &f in &all {
        frame::free(f).map_err(|e| alloc::format!("free {f:#x}: {e:?}"))?;
    }
    ensure!(
        again == Some(returned),
        "freed {returned:#x}, got {again:x?} back"
    );
    ensure!(
        exhausted.is_none(),
        "allocator invented a frame {exhausted:x?}"
    );
    ensure!(frame::counts().1 == free_before, "free count not restored");
    Ok(())
}

pub fn heap_small_and_large() -> TestResult {
    const SMALL: u64 = 3000;
    const LARGE_WORDS: usize = (1 << 20) / 8;
    let (used_before, _) = heap::usage();
    {
        let small: Vec<Box<u64>> = (0..SMALL).map(|i| Box::new(i * 7)).collect();
        let large: Vec<Vec<u64>> = (0..3u64)
            .map(|i| alloc::vec![i + 0xA0; LARGE_WORDS + i as usize * 512])
            .collect();
        ensure!(
            small.iter().enumerate().all(|(i, b)| **b == i as u64 * 7),
            "small allocation corrupted"
        );
        for (i, block) in large.iter().enumerate() {
            ensure!(
                block.iter().all(|&w| w == i as u64 + 0xA0),
                "large block {i} corrupted"
            );
        }
        let (used_during, _) = heap::usage();
        ensure!(
            used_during >= used_before + 3 * (1 << 20),
            "heap usage did not grow"
        );
    }
    let (used_after, _) = heap::usage();
    ensure!(
        used_after == used_before,
        "heap leaked: {used_before} -> {used_after} bytes used"
    );
    Ok(())
}

pub fn heap_reuses_memory() -> TestResult {
    let (_, free) = heap::usage();
    // Each of these alone fits, two at once do not: the second succeeds
    // only because the first one's memory was reused.
    let layout = Layout::from_size_align(free * 3 / 5, 4096).map_err(|_| "bad layout")?;
    // SAFETY: non-zero size; freed below with the same layout.
    let first = unsafe { alloc::alloc::alloc(layout) };
    ensure!(!first.is_null(), "first large allocation failed");
    // SAFETY: `first` came from `alloc` with `layout`.
    unsafe { alloc::alloc::dealloc(first, layout) };
    // SAFETY: as above.
    let second = unsafe { alloc::alloc::alloc(layout) };
    ensure!(!second.is_null(), "freed memory was not reused");
    // SAFETY: as above.
    unsafe { alloc::alloc::dealloc(second, layout) };
    ensure!(
        first == second,
        "same-size allocation moved: {first:p} then {second:p}"
    );
    Ok(())
}

const USER_PAGE: u64 = 0x0000_0040_0000_0000;

pub fn map_unmap_new_space() -> TestResult {
    let (_, free_before) = frame::counts();
    let space = paging::new_user_space().map_err(|e| alloc::format!("{e:?}"))?;
    let data = frame::allocate().ok_or("no frame")?;
    space
        .map(
            &mut frame::GlobalFrames,
            USER_PAGE,
            data,
            PageFlags::USER_DATA,
        )
        .map_err(|e| alloc::format!("map: {e:?}"))?;
    let t = space
        .translate(USER_PAGE + 8)
        .ok_or("mapped page does not translate")?;
    ensure!(
        t.phys == data + 8,
        "translated to {:#x}, want {:#x}",
        t.phys,
        data + 8
    );
    ensure!(t.flags == PageFlags::USER_DATA, "flags {:?}", t.flags);
    ensure!(
        paging::kernel_space().translate(USER_PAGE).is_none(),
        "mapping leaked into kernel space"
    );

    // Write through the user mapping with the new space loaded...
    const PATTERN: u64 = 0x5A5A_0123_4567_89AB;
    interrupts::without_interrupts(|| {
        // SAFETY: the new space shares the kernel half, so this code and its
        // stack stay mapped; the old root is restored right after.
        let old = unsafe { paging::switch_to(&space) };
        // SAFETY: USER_PAGE is mapped writable to a frame this test owns.
        with_user_access(|| unsafe { core::ptr::write_volatile(USER_PAGE as *mut u64, PATTERN) });
        // SAFETY: `old` is the kernel root that was active before.
        unsafe { paging::switch_to(&kernel_root(old)) };
    });
    // ...and read it back through the physical-memory map.
    let through_phys = space.window().virt(data) as *const u64;
    // SAFETY: the window maps all RAM; the frame is ours.
    let seen = unsafe { core::ptr::read_volatile(through_phys) };
    ensure!(seen == PATTERN, "read {seen:#x} through the physical map");

    let unmapped = space
        .unmap(USER_PAGE)
        .map_err(|e| alloc::format!("unmap: {e:?}"))?;
    ensure!(unmapped == data, "unmap returned {unmapped:#x}");
    ensure!(
        space.translate(USER_PAGE).is_none(),
        "page still translates after unmap"
    );
    frame::free(data).map_err(|e| alloc::format!("{e:?}"))?;
    space
        .destroy(&mut frame::GlobalFrames, |_| {})
        .map_err(|e| alloc::format!("destroy: {e:?}"))?;
    ensure!(
        frame::counts().1 == free_before,
        "address space leaked frames"
    );
    Ok(())
}

pub fn kernel_half_is_shared() -> TestResult {
    let kernel = paging::kernel_space();
    let space = paging::new_user_space().map_err(|e| alloc::format!("{e:?}"))?;
    // A kernel page mapped after the space was created must appear in it.
    let virt = layout::KERNEL_STACKS_START;
    let phys = frame::allocate().ok_or("no frame")?;
    paging::map_kernel_page(virt, phys, PageFlags::KERNEL_DATA)
        .map_err(|e| alloc::format!("{e:?}"))?;
    let seen = space.translate(virt).map(|t| t.phys);
    let code = kernel_half_is_shared as *const () as u64;
    let code_same = space.translate(code) == kernel.translate(code);
    paging::unmap_kernel_page(virt).map_err(|e| alloc::format!("{e:?}"))?;
    frame::free(phys).map_err(|e| alloc::format!("{e:?}"))?;
    space
        .destroy(&mut frame::GlobalFrames, |_| {})
        .map_err(|e| alloc::format!("{e:?}"))?;
    ensure!(
        seen == Some(phys),
        "late kernel mapping not visible: {seen:x?}"
    );
    ensure!(
        code_same,
        "kernel code translates differently in the new space"
    );
    ensure!(
        KERNEL_PML4_START == 256,
        "kernel half starts at PML4 {KERNEL_PML4_START}"
    );
    Ok(())
}

/// The kernel space handle for a root read back from CR3.
fn kernel_root(root: u64) -> pandagen_hal::x86_64::paging::AddressSpace {
    let kernel = paging::kernel_space();
    assert_eq!(
        root,
        kernel.root(),
        "test left a foreign address space active"
    );
    kernel
}

/// `UserMemory::writable_where_checked`: a reply goes where the task's
/// last `check_writable` found its buffer's first page, up to the bytes
/// of the range in that page, and only for that range's pointer.
pub fn reply_goes_where_the_last_check_found_the_buffer() -> TestResult {
    let (_, free_before) = frame::counts();
    let space = paging::new_user_space().map_err(|e| alloc::format!("{e:?}"))?;
    let frames = [
        frame::allocate().ok_or("no frame")?,
        frame::allocate().ok_or("no frame")?,
    ];
    for (i, &data) in frames.iter().enumerate() {
        space
            .map(
                &mut frame::GlobalFrames,
                USER_PAGE + i as u64 * PAGE_SIZE,
                data,
                PageFlags::USER_DATA,
            )
            .map_err(|e| alloc::format!("map: {e:?}"))?;
    }
    let window = |frame: u64, offset: u64| space.window().virt(frame) + offset;
    let expected = [window(frames[0], 0xff0), window(frames[0], 0x100)];
    let mut memory = UserMemory::new(space);
    let result = (|| {
        // The direct path's read walks nothing: a mapped page not in the
        // cache is refused until a walk (here `copy_in`'s) keeps it.
        ensure!(
            memory
                .readable_in_cached_page(USER_PAGE + 8, 0x10)
                .is_none(),
            "a page never walked accepted from the cache"
        );
        ensure!(
            memory
                .readable_in_cached_page(USER_PAGE + 8, 0)
                .is_some_and(|s| s.is_empty()),
            "an empty message refused"
        );
        memory
            .copy_in(USER_PAGE + 8, &mut [0u8; 4])
            .map_err(|e| alloc::format!("{e:?}"))?;
        // A length that wraps the page offset's sum is refused even when
        // the page is in the cache (where no range walk would catch it).
        let at = memory
            .readable_in_cached_page(USER_PAGE + 8, 0x10)
            .ok_or("16 bytes in a walked page refused")?
            .as_ptr() as u64;
        ensure!(
            at == window(frames[0], 8),
            "read at {at:#x}, not {:#x}",
            window(frames[0], 8)
        );
        // Lengths at the page's end, to its end and one past it (the one
        // compare that also refuses an empty length, see `within_page_as`),
        // none there, and one that wraps: what the cache answers, as the
        // length read or `None` for a refusal.
        let cases: [(u64, usize, Option<usize>, &str); 5] = [
            (
                USER_PAGE + 0xff8,
                0x10,
                None,
                "a message past its page accepted",
            ),
            (
                USER_PAGE + 0xff8,
                8,
                Some(8),
                "a message ending its page refused",
            ),
            (
                USER_PAGE + 0xff8,
                9,
                None,
                "a message one byte past its page accepted",
            ),
            (
                USER_PAGE + 0xff8,
                0,
                Some(0),
                "an empty message in a cached page refused",
            ),
            (
                USER_PAGE + 8,
                usize::MAX - 7,
                None,
                "a length that wraps past the page accepted for reading",
            ),
        ];
        for (at, len, expected, failure) in cases {
            let read = memory.readable_in_cached_page(at, len).map(<[u8]>::len);
            ensure!(read == expected, "{failure} ({read:?})");
        }
        ensure!(
            memory
                .writable_in_page(USER_PAGE + 8, usize::MAX - 7)
                .is_none(),
            "a length that wraps past the page accepted for writing"
        );
        // A buffer across the page boundary: 16 bytes in its first page.
        // The direct path's check walks nothing: a range not checked
        // before is refused until a check keeps it.
        let across = USER_PAGE + 0xff0;
        ensure!(
            !memory.writable_as_checked_before(across, 0x40),
            "a range never checked accepted"
        );
        memory
            .check_writable(across, 0x40)
            .map_err(|e| alloc::format!("{e:?}"))?;
        let at = memory
            .writable_where_checked(across, 0x10)
            .ok_or("16 bytes in the first page refused")?
            .as_ptr() as u64;
        ensure!(
            at == expected[0],
            "written at {at:#x}, not {:#x}",
            expected[0]
        );
        ensure!(
            memory.writable_where_checked(across, 0x11).is_none(),
            "a reply past the first page accepted"
        );
        ensure!(
            memory.writable_where_checked(across + 1, 1).is_none(),
            "another pointer accepted"
        );
        // Another buffer checked: only it is the last.
        let inside = USER_PAGE + 0x100;
        memory
            .check_writable(inside, 0x20)
            .map_err(|e| alloc::format!("{e:?}"))?;
        ensure!(
            memory.writable_where_checked(across, 1).is_none(),
            "a range checked before the last accepted"
        );
        ensure!(
            memory.writable_where_checked(inside, 0x21).is_none(),
            "more than the range checked accepted"
        );
        let out = memory
            .writable_where_checked(inside, 0x20)
            .ok_or("the last range refused")?;
        ensure!(
            out.as_ptr() as u64 == expected[1],
            "written at {:p}, not {:#x}",
            out.as_ptr(),
            expected[1]
        );
        out.fill(0xa5);
        let mut back = [0u8; 0x20];
        memory
            .copy_in(inside, &mut back)
            .map_err(|e| alloc::format!("{e:?}"))?;
        ensure!(back == [0xa5; 0x20], "read back {back:x?}");
        // The first buffer again, found in the cache (not walked) by the
        // direct path's check, only as long as it was checked: the last
        // again.
        ensure!(
            !memory.writable_as_checked_before(across, 0x41),
            "more than the range checked before accepted"
        );
        ensure!(
            !memory.writable_as_checked_before(across + 1, 1),
            "another pointer accepted"
        );
        ensure!(
            memory.writable_as_checked_before(across, 0x40),
            "a range checked before refused"
        );
        ensure!(
            memory.writable_where_checked(inside, 1).is_none(),
            "the range checked before still accepted"
        );
        let at = memory
            .writable_where_checked(across, 0x10)
            .ok_or("a range found in the cache refused")?
            .as_ptr() as u64;
        ensure!(
            at == expected[0],
            "written at {at:#x}, not {:#x}",
            expected[0]
        );
        // A shorter check of the same buffer: its own length counts.
        memory
            .check_writable(across, 4)
            .map_err(|e| alloc::format!("{e:?}"))?;
        ensure!(
            memory.writable_where_checked(across, 0x10).is_some(),
            "the range cached for a longer check refused"
        );
        // An empty range: an empty slice only.
        memory
            .check_writable(USER_PAGE + 8, 0)
            .map_err(|e| alloc::format!("{e:?}"))?;
        ensure!(
            memory
                .writable_where_checked(USER_PAGE + 8, 0)
                .is_some_and(|s| s.is_empty()),
            "an empty reply into an empty range refused"
        );
        ensure!(
            memory.writable_where_checked(USER_PAGE + 8, 1).is_none(),
            "a byte into an empty range accepted"
        );
        Ok(())
    })();
    memory
        .into_space()
        .destroy(&mut frame::GlobalFrames, |_| {})
        .map_err(|e| alloc::format!("destroy: {e:?}"))?;
    for data in frames {
        frame::free(data).map_err(|e| alloc::format!("{e:?}"))?;
    }
    result?;
    ensure!(
        frame::counts().1 == free_before,
        "address space leaked frames"
    );
    Ok(())
}
