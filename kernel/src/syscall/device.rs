//! Device capabilities: `MintDevice`, `PortRead`, `PortWrite`,
//! `MapDeviceMemory`, `BindInterrupt`, `AcknowledgeInterrupt`,
//! `AllocateDma`. The core checks the capability and the range first
//! (`pandagen_core`'s device module); only then is hardware touched here
//! or in `crate::device`.

use pandagen_abi::device::{DeviceError, PhysRange};
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_abi::screen::TakeOverScreenRequest;
use pandagen_abi::syscall::{
    AllocateDmaRequest, BindInterruptRequest, CapRequest, DeviceCall, DmaRegion, InterruptRequest,
    MapDeviceMemoryRequest, MintDeviceRequest, PortReadRequest, PortWriteRequest,
    ReleaseDmaQuarantineRequest,
};
use pandagen_abi::KernelError;
use pandagen_hal::x86_64::paging::AddressSpace;
use pandagen_hal::x86_64::port;

use super::{decode, Ctx, Handler, Step};
use crate::device::{self, CountedFrames};

pub(super) fn handler(call: DeviceCall) -> Handler {
    match call {
        DeviceCall::MintDevice => mint,
        DeviceCall::PortRead => port_read,
        DeviceCall::PortWrite => port_write,
        DeviceCall::MapDeviceMemory => map_memory,
        DeviceCall::BindInterrupt => bind_interrupt,
        DeviceCall::AcknowledgeInterrupt => acknowledge_interrupt,
        DeviceCall::AllocateDma => allocate_dma,
        DeviceCall::OpenPorts => open_ports,
        DeviceCall::TakeOverScreen => take_over_screen,
        DeviceCall::ReleaseDmaQuarantine => release_dma_quarantine,
    }
}

/// The capability checks are the core's; then the early display stops for
/// good and the output it would have drawn goes to the channel.
fn take_over_screen(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: TakeOverScreenRequest = decode(request)?;
    let (pages, channel) = cx.k.core_mut().check_screen_takeover(
        cx.caller,
        request.framebuffer,
        request.channel,
        cx.now,
    )?;
    let hand_over = crate::early_display::hand_over()
        .filter(|h| h.range == pages)
        .ok_or(KernelError::Device(DeviceError::NotFramebuffer))?;
    if hand_over.cursor.is_some() {
        log::info!(
            "screen: {} takes the framebuffer over; the kernel draws no more",
            cx.caller
        );
    }
    crate::screen_output::bind(cx.k, channel, cx.caller);
    cx.reply(hand_over)
}

fn open_ports(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: CapRequest = decode(request)?;
    let range = cx.k.open_ports(cx.caller, request.capability, cx.now)?;
    cx.reply(range)
}

fn mint(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: MintDeviceRequest = decode(request)?;
    let handle = cx.k.core_mut().mint_device(
        cx.caller,
        request.parent,
        request.resource,
        request.rights,
        cx.now,
    )?;
    cx.reply(handle)
}

fn port_read(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: PortReadRequest = decode(request)?;
    cx.k.core_mut().check_port_access(
        cx.caller,
        request.capability,
        request.port,
        request.width,
        false,
        cx.now,
    )?;
    // SAFETY: ring 0; the caller's capability covers these ports, none of
    // which the kernel drives (checked above).
    let value = unsafe { port::read(request.port, request.width) };
    cx.reply(value)
}

fn port_write(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: PortWriteRequest = decode(request)?;
    cx.k.core_mut().check_port_access(
        cx.caller,
        request.capability,
        request.port,
        request.width,
        true,
        cx.now,
    )?;
    // SAFETY: as in `port_read`.
    unsafe { port::write(request.port, request.width, request.value) };
    cx.reply(())
}

/// Run `map`, which adds at most `pages` pages to the caller's address
/// space, with the page tables it may make charged to the caller's frames
/// budget first (`ResourceExhausted(FrameBudget)` before any work), and
/// what it did not make given back after. The tables stay in the address
/// space, charged, until the task dies, whether `map` succeeded or not.
fn with_charged_tables<T>(
    cx: &mut Ctx<'_>,
    pages: u64,
    map: impl FnOnce((&AddressSpace, &mut u64), &mut CountedFrames) -> Result<T, KernelError>,
) -> Result<T, KernelError> {
    let caller = cx.caller;
    let bound = device::table_frames_bound(pages);
    cx.k.core_mut().charge_frames(caller, bound)?;
    let mut tables = CountedFrames::default();
    let mapped = match cx.k.memory_mut(caller) {
        Some(memory) => map(memory.space_and_placement(), &mut tables),
        None => Err(KernelError::TaskNotFound(caller)),
    };
    cx.k.core_mut()
        .release_frames(caller, bound.saturating_sub(tables.taken));
    mapped
}

fn map_memory(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: MapDeviceMemoryRequest = decode(request)?;
    let range: PhysRange = request.range;
    cx.k.core_mut().check_device_mapping(
        cx.caller,
        request.capability,
        range,
        request.writable,
        cx.now,
    )?;
    let address = with_charged_tables(cx, range.len / PAGE_SIZE, |space, tables| {
        device::map_device_memory(space, range, request.writable, request.at, tables)
    })?;
    cx.reply(address)
}

fn bind_interrupt(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: BindInterruptRequest = decode(request)?;
    cx.k.core_mut().bind_interrupt(
        cx.caller,
        request.capability,
        request.line,
        request.channel,
        cx.now,
    )?;
    device::unmask(request.line);
    cx.reply(())
}

fn acknowledge_interrupt(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: InterruptRequest = decode(request)?;
    let coalesced = cx.k.core_mut().acknowledge_interrupt(
        cx.caller,
        request.capability,
        request.line,
        cx.now,
    )?;
    device::unmask(request.line);
    cx.reply(coalesced)
}

/// Charged first (the one place DMA is charged: the allowance, and the
/// frames and their page tables to the caller's budget), then allocated
/// and mapped; a failed allocation gives the frames' charge back.
fn allocate_dma(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: AllocateDmaRequest = decode(request)?;
    let caller = cx.caller;
    cx.k.core_mut()
        .charge_dma(caller, request.capability, request.bytes, cx.now)?;
    let allocated = with_charged_tables(cx, request.bytes / PAGE_SIZE, |space, tables| {
        device::allocate_dma(space, request.bytes, None, tables)
    });
    match allocated {
        Ok((address, physical)) => {
            cx.k.core_mut().dma_allocated(
                caller,
                PhysRange {
                    base: physical,
                    len: request.bytes,
                },
            );
            cx.reply(DmaRegion {
                address,
                physical,
                bytes: request.bytes,
            })
        }
        Err(e) => {
            cx.k.core_mut().uncharge_dma(caller, request.bytes);
            Err(e)
        }
    }
}

/// The core decides which quarantines the caller's register capabilities
/// release; their frames go back to the free pool here.
fn release_dma_quarantine(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: ReleaseDmaQuarantineRequest = decode(request)?;
    let released =
        cx.k.core_mut()
            .release_dma_quarantine(cx.caller, &request.registers, cx.now)?;
    let frames = device::free_dma_regions(&released);
    if frames > 0 {
        log::info!(
            "dma quarantine: {frames} frames released by task {}",
            cx.caller
        );
    }
    cx.reply(frames)
}
