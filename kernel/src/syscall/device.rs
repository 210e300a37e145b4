//! Device capabilities: `MintDevice`, `PortRead`, `PortWrite`,
//! `MapDeviceMemory`, `BindInterrupt`, `AcknowledgeInterrupt`,
//! `AllocateDma`. The core checks the capability and the range first
//! (`pandagen_core`'s device module); only then is hardware touched here
//! or in `crate::device`.

use pandagen_abi::device::PhysRange;
use pandagen_abi::syscall::{
    AllocateDmaRequest, BindInterruptRequest, DeviceCall, DmaRegion, InterruptRequest,
    MapDeviceMemoryRequest, MintDeviceRequest, PortReadRequest, PortWriteRequest,
};
use pandagen_abi::KernelError;
use pandagen_hal::x86_64::port;

use super::{decode, Ctx, Handler, Step};
use crate::device;

pub(super) fn handler(call: DeviceCall) -> Handler {
    match call {
        DeviceCall::MintDevice => mint,
        DeviceCall::PortRead => port_read,
        DeviceCall::PortWrite => port_write,
        DeviceCall::MapDeviceMemory => map_memory,
        DeviceCall::BindInterrupt => bind_interrupt,
        DeviceCall::AcknowledgeInterrupt => acknowledge_interrupt,
        DeviceCall::AllocateDma => allocate_dma,
    }
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
    let caller = cx.caller;
    let memory =
        cx.k.memory_mut(caller)
            .ok_or(KernelError::TaskNotFound(caller))?;
    let address = device::map_device_memory(memory.space(), range, request.writable, request.at)?;
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

/// Charged first (the one place DMA is charged), then allocated and
/// mapped; a failed allocation gives the charge back.
fn allocate_dma(cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    let request: AllocateDmaRequest = decode(request)?;
    let caller = cx.caller;
    cx.k.core_mut()
        .charge_dma(caller, request.capability, request.bytes, cx.now)?;
    let allocated = match cx.k.memory_mut(caller) {
        Some(memory) => device::allocate_dma(memory.space(), request.bytes, None),
        None => Err(KernelError::TaskNotFound(caller)),
    };
    match allocated {
        Ok((address, physical)) => cx.reply(DmaRegion {
            address,
            physical,
            bytes: request.bytes,
        }),
        Err(e) => {
            cx.k.core_mut().uncharge_dma(caller, request.bytes);
            Err(e)
        }
    }
}
