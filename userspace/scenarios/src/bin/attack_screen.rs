//! Adversary (screen calls): `TakeOverScreen` (call 43) is the one screen
//! call; after it, the kernel sends what it would have drawn (everything
//! written to the serial console) to the taker's channel. The suite lends
//! this attacker the framebuffer's capability, which the display service
//! holds in the full system.
//!
//! * Without the capability: the take-over through 256 guessed handles
//!   (not its own), a dropped one, its channels, and garbage requests,
//!   each refused with a typed error.
//! * With it, wrongly: its channel as the framebuffer and the framebuffer
//!   as the channel; a receive-only channel, a kernel channel (which
//!   nobody may send on), a dropped channel; a read-only copy of the
//!   framebuffer (if the kernel lets it make one); a narrower one (it
//!   holds no `GRANT`, so minting one is refused).
//! * With it, as the display service would: it takes the screen over,
//!   takes it over again (the second replaces the first, and no longer
//!   hands over the early console's cursor), maps the framebuffer, writes
//!   to the console and reads its own words back as screen output.
//! * Then it tries to send the screen's output to the process manager's
//!   public channel (it holds a send right to it, as anyone may). The
//!   kernel would stamp every console line into another service's channel
//!   as its own message, and the process manager's log line refusing each
//!   would come back as the next: the output channel must be one the
//!   taker reads (`RECEIVE`), so this is refused.
//!
//! It hands the framebuffer back with its report and parks holding the
//! screen; the suite kills it and checks that the kernel's heap and frames
//! come back and that every service answers.
//!
//! Capabilities: the suite's inbox (send), the framebuffer.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::device::{DeviceResource, PhysRange};
use pandagen_abi::screen::{
    ScreenOutput, TakeOverScreenRequest, MAX_SCREEN_OUTPUT, SCREEN_OUTPUT_ACTION,
};
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::syscall::Syscall;
use pandagen_abi::{Cap, CapHandle, ChannelId, Duration, KernelApi, KernelError, Rights};
use pandagen_rt::device::{self, Framebuffer};
use pandagen_rt::syscall::call_small;
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::adversary::{guessed_handles, no_capability, park, report, Breaches};

pandagen_rt::entry!(main);

/// What it writes to the console, to find it again in the screen output.
const MARK: &str = "attack_screen: this line must reach the screen's taker";

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let caps = &info.capabilities;
    let inbox = ChannelId::from_handle(caps[0]);
    let framebuffer = caps[1];
    let mut b = Breaches::default();
    let sink = kernel.create_channel()?;

    without_the_capability(kernel, &mut b, caps, sink)?;
    wrongly(kernel, &mut b, framebuffer, sink)?;
    as_the_display_service(kernel, &mut b, framebuffer, sink)?;
    to_the_process_manager(kernel, &mut b, framebuffer)?;

    report(kernel, inbox, b, vec![Cap::from_handle(framebuffer)])?;
    park(kernel)
}

/// Handles that are not a framebuffer capability of its own.
fn without_the_capability(
    kernel: &mut Kernel,
    b: &mut Breaches,
    own: &[CapHandle],
    sink: ChannelId,
) -> Result<(), KernelError> {
    for guess in guessed_handles(kernel, own)? {
        b.expect_refused(
            "take the screen over through a guessed handle",
            Framebuffer::new(guess).take_over(sink.handle()),
            no_capability,
        );
    }
    for channel in [sink.handle(), own[0]] {
        b.expect_refused(
            "take the screen over through a channel",
            Framebuffer::new(channel).take_over(sink.handle()),
            |e| matches!(e, KernelError::WrongCapabilityKind { .. }),
        );
    }
    // Garbage where the request should be: a typed refusal, not a fault.
    for garbage in [&[][..], &[0xff; 3][..], &[0x01; 64][..]] {
        let reply: Result<(), KernelError> = call_small(Syscall::TakeOverScreen, &garbage);
        // Bytes that happen to decode name handles it does not hold as
        // a framebuffer and a channel.
        b.expect_refused("a garbage take-over request", reply, |e| {
            matches!(e, KernelError::Syscall(_)) || no_capability(e)
        });
    }
    Ok(())
}

/// The framebuffer with the wrong channel, or in the wrong place.
fn wrongly(
    kernel: &mut Kernel,
    b: &mut Breaches,
    framebuffer: CapHandle,
    sink: ChannelId,
) -> Result<(), KernelError> {
    let screen = Framebuffer::new(framebuffer);
    b.expect_refused(
        "the framebuffer as the output channel",
        screen.take_over(framebuffer),
        |e| matches!(e, KernelError::WrongCapabilityKind { .. }),
    );
    b.expect_refused(
        "the channel as the framebuffer, the framebuffer as the channel",
        call_small::<_, ()>(
            Syscall::TakeOverScreen,
            &TakeOverScreenRequest {
                framebuffer: sink.handle(),
                channel: framebuffer,
            },
        ),
        |e| matches!(e, KernelError::WrongCapabilityKind { .. }),
    );
    let receive_only = kernel.clone_capability(&Cap::from(sink), Rights::RECEIVE)?;
    b.expect_refused(
        "output to a channel it may not send on",
        screen.take_over(receive_only.handle()),
        |e| *e == KernelError::InsufficientAuthority,
    );
    kernel.drop_capability(receive_only)?;
    let own = kernel.create_channel()?;
    let kernel_only = kernel.bind_kernel_channel(own)?;
    b.expect_refused(
        "output to a kernel channel",
        screen.take_over(kernel_only.handle()),
        |e| *e == KernelError::InsufficientAuthority,
    );
    let gone = kernel.create_channel()?;
    kernel.drop_capability(Cap::<()>::from_handle(gone.handle()))?;
    b.expect_refused(
        "output to a dropped channel",
        screen.take_over(gone.handle()),
        no_capability,
    );
    // A read-only copy, if one can be made at all, takes nothing over.
    if let Ok(read_only) = kernel.clone_capability(&Cap::from_handle(framebuffer), Rights::READ) {
        b.expect_refused(
            "take the screen over read-only",
            Framebuffer::new(read_only.handle()).take_over(sink.handle()),
            |e| *e == KernelError::InsufficientAuthority,
        );
        kernel.drop_capability(read_only)?;
    }
    b.expect_refused(
        "mint a narrower framebuffer",
        device::mint(
            framebuffer,
            DeviceResource::Framebuffer(PhysRange::new(0, 4096)),
            Rights::ALL,
        ),
        |e| *e == KernelError::InsufficientAuthority,
    );
    Ok(())
}

/// Take the screen over twice, map it, and read its output back.
fn as_the_display_service(
    kernel: &mut Kernel,
    b: &mut Breaches,
    framebuffer: CapHandle,
    sink: ChannelId,
) -> Result<(), KernelError> {
    let screen = Framebuffer::new(framebuffer);
    let first = match screen.take_over(sink.handle()) {
        Ok(hand_over) => hand_over,
        Err(e) => {
            b.record(alloc::format!(
                "the lent framebuffer did not take over: {e}"
            ));
            return Ok(());
        }
    };
    match screen.take_over(sink.handle()) {
        Ok(again) if again.cursor.is_none() && again.range == first.range => {}
        other => b.record(alloc::format!("a second take-over answered {other:?}")),
    }
    if let Err(e) = screen.map(&first) {
        b.record(alloc::format!("the framebuffer does not map: {e}"));
    }
    println!("{MARK}");
    let deadline = kernel.now() + Duration::from_secs(2);
    // The output comes in runs of at most `MAX_SCREEN_OUTPUT` bytes, after
    // whatever waited before it: look in what arrived lately, not in one
    // message.
    let mut recent: Vec<u8> = Vec::new();
    let mut found = false;
    while !found && kernel.now() < deadline {
        let Ok(message) = kernel.receive_message(sink, Some(Duration::from_millis(100))) else {
            continue;
        };
        if message.source.is_some() || message.action != SCREEN_OUTPUT_ACTION {
            b.record(alloc::format!(
                "screen output from {:?}: {}",
                message.source,
                message.action
            ));
            continue;
        }
        let output: ScreenOutput = message.payload.decode().map_err(KernelError::from)?;
        recent.extend_from_slice(&output.bytes);
        let keep = recent.len().saturating_sub(2 * MAX_SCREEN_OUTPUT);
        recent.drain(..keep);
        found = recent.windows(MARK.len()).any(|w| w == MARK.as_bytes());
    }
    if !found {
        b.record("its own console line never reached it as screen output".into());
    }
    Ok(())
}

/// Point the screen's output at the process manager's public channel, a
/// channel it may send on but not read.
fn to_the_process_manager(
    kernel: &mut Kernel,
    b: &mut Breaches,
    framebuffer: CapHandle,
) -> Result<(), KernelError> {
    let pm = kernel.lookup_service(PROCESS_MANAGER)?;
    b.expect_refused(
        "screen output into the process manager's channel",
        Framebuffer::new(framebuffer).take_over(pm.handle()),
        |e| *e == KernelError::InsufficientAuthority,
    );
    Ok(())
}
