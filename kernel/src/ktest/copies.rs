//! The direct `Exchange`'s own copies: the caller's registers into its
//! record and the message into the receiver's buffer.

use super::{ensure, TestResult};
use crate::arch::x86_64::trap::TrapFrame;
use crate::syscall::reply::{copy_message, short_header};
use pandagen_abi::syscall::{receive_reply_header_len, write_receive_reply_header};
use pandagen_abi::TaskId;

/// A frame whose every word differs from `Default`'s and from the others.
fn numbered_frame(base: u64) -> TrapFrame {
    TrapFrame {
        r15: base + 1,
        r14: base + 2,
        r13: base + 3,
        r12: base + 4,
        r11: base + 5,
        r10: base + 6,
        r9: base + 7,
        r8: base + 8,
        rbp: base + 9,
        rdi: base + 10,
        rsi: base + 11,
        rdx: base + 12,
        rcx: base + 13,
        rbx: base + 14,
        rax: base + 15,
        vector: base + 16,
        error_code: base + 17,
        rip: base + 18,
        cs: base + 19,
        rflags: base + 20,
        rsp: base + 21,
        ss: base + 22,
    }
}

/// A frame between two guard words, as a record's frame sits among the
/// record's other fields.
#[repr(C)]
struct Guarded {
    before: u64,
    frame: TrapFrame,
    after: u64,
}

pub fn trap_frame_copy_is_every_word_and_nothing_else() -> TestResult {
    let source = numbered_frame(0x1000);
    let mut record = Guarded {
        before: 0xdead,
        frame: numbered_frame(0x9000),
        after: 0xbeef,
    };
    source.copy_into(&mut record.frame);
    let copied = alloc::format!("{:?}", record.frame);
    let expected = alloc::format!("{:?}", source);
    ensure!(copied == expected, "copied {copied}, expected {expected}");
    ensure!(
        record.before == 0xdead && record.after == 0xbeef,
        "the copy wrote outside the frame"
    );
    Ok(())
}

pub fn message_copy_matches_copy_from_slice() -> TestResult {
    // Every length around the chunk boundaries, at every destination
    // alignment, with the bytes on either side left alone.
    let source: alloc::vec::Vec<u8> = (0..150u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    for len in 0..=source.len() {
        for offset in 0..8 {
            let mut buffer = [0xeeu8; 160];
            let src = &source[source.len() - len..];
            copy_message(&mut buffer[offset..offset + len], src);
            ensure!(
                &buffer[offset..offset + len] == src,
                "length {len} at offset {offset}: wrong bytes"
            );
            ensure!(
                buffer[..offset].iter().all(|&b| b == 0xee)
                    && buffer[offset + len..].iter().all(|&b| b == 0xee),
                "length {len} at offset {offset}: wrote outside the message"
            );
        }
    }
    Ok(())
}

/// The reply header the direct path writes itself (`short_header`) is the
/// ABI's (`write_receive_reply_header`) wherever it is given, and it is
/// given exactly where the ABI's header is three bytes.
pub fn short_reply_header_is_the_abis() -> TestResult {
    let senders = [
        0,
        1,
        5,
        0x7e,
        0x7f,
        0x80,
        0x81,
        0xff,
        0x100,
        1 << 20,
        u64::MAX,
    ];
    let lengths = [0, 1, 19, 84, 0x7f, 0x80, 0x81, 0xff, 0x100, 4000];
    for sender in senders {
        for len in lengths {
            let id = TaskId::from_raw(sender);
            let mut abi = [0u8; 32];
            let n = write_receive_reply_header(id, len, &mut abi);
            ensure!(
                n == receive_reply_header_len(id, len),
                "ABI header of {n} bytes for sender {sender:#x}, length {len:#x}"
            );
            match short_header(id, len) {
                Some(header) => ensure!(
                    abi[..n] == header,
                    "short header {header:x?}, the ABI's {:x?} (sender {sender:#x}, length {len:#x})",
                    &abi[..n]
                ),
                None => ensure!(
                    n > 3,
                    "no short header where the ABI's is {:x?} (sender {sender:#x}, length {len:#x})",
                    &abi[..n]
                ),
            }
        }
    }
    Ok(())
}
