//! The block-device calls: the capability first (kind and rights, refusals
//! audited), then the transfer's geometry; a refused call reads or writes
//! nothing.

mod common;

use common::*;
use pandagen_abi::error::BlockError;
use pandagen_abi::syscall::BlockInfo;
use pandagen_abi::{CapKind, KernelError, Rights};
use pandagen_core::{Mintable, VecDisk};

const BLOCK: u32 = 512;

#[test]
fn a_holder_with_both_rights_writes_and_reads_back_whole_blocks() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k
        .mint(t, Mintable::BlockDevice, Rights::READ | Rights::WRITE, T0)
        .unwrap();
    let mut disk = VecDisk::new(BLOCK, 8);
    assert_eq!(
        k.block_info(t, h, &disk, T0),
        Ok(BlockInfo {
            block_size: BLOCK,
            block_count: 8
        })
    );
    let data: Vec<u8> = (0..2 * BLOCK).map(|i| i as u8).collect();
    k.block_write(t, h, &mut disk, 6, &data, T0).unwrap();
    assert_eq!(&disk.bytes()[6 * BLOCK as usize..], &data[..]);
    assert_eq!(k.block_read(t, h, &mut disk, 6, 2, T0), Ok(data.clone()));
    assert_eq!(
        k.block_read(t, h, &mut disk, 7, 1, T0),
        Ok(data[BLOCK as usize..].to_vec())
    );
    assert_eq!(invalid_uses(&k), 0);
}

#[test]
fn the_capability_is_checked_first_and_a_refusal_is_audited() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let read_only = k.mint(t, Mintable::BlockDevice, Rights::READ, T0).unwrap();
    let write_only = k.mint(t, Mintable::BlockDevice, Rights::WRITE, T0).unwrap();
    let info = k.mint(t, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    let mut disk = VecDisk::new(BLOCK, 4);
    let before = disk.clone();
    let block = vec![0xEE; BLOCK as usize];

    assert_eq!(
        k.block_write(t, read_only, &mut disk, 0, &block, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.block_read(t, write_only, &mut disk, 0, 1, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.block_info(t, write_only, &disk, T0),
        Err(KernelError::InsufficientAuthority)
    );
    let wrong = KernelError::WrongCapabilityKind {
        expected: CapKind::BlockDevice,
        found: CapKind::KernelInfo,
    };
    assert_eq!(k.block_read(t, info, &mut disk, 0, 1, T0), Err(wrong));
    assert_eq!(k.block_info(t, info, &disk, T0), Err(wrong));
    assert_eq!(k.block_write(t, info, &mut disk, 0, &block, T0), Err(wrong));
    assert_eq!(invalid_uses(&k), 6);
    assert_eq!(disk, before, "nothing was written");
    // The right ones work.
    k.block_write(t, write_only, &mut disk, 0, &block, T0)
        .unwrap();
    assert_eq!(k.block_read(t, read_only, &mut disk, 0, 1, T0), Ok(block));
}

#[test]
fn transfers_off_the_device_or_of_no_whole_block_are_refused() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k
        .mint(t, Mintable::BlockDevice, Rights::READ | Rights::WRITE, T0)
        .unwrap();
    let mut disk = VecDisk::new(BLOCK, 4);
    let before = disk.clone();
    assert_eq!(
        k.block_read(t, h, &mut disk, 3, 2, T0),
        Err(KernelError::Block(BlockError::OutOfRange {
            first: 3,
            count: 2,
            blocks: 4
        }))
    );
    assert!(matches!(
        k.block_read(t, h, &mut disk, 0, 0, T0),
        Err(KernelError::Block(BlockError::BadLength { len: 0, .. }))
    ));
    assert!(matches!(
        k.block_write(t, h, &mut disk, 4, &[1; BLOCK as usize], T0),
        Err(KernelError::Block(BlockError::OutOfRange { .. }))
    ));
    assert!(matches!(
        k.block_write(t, h, &mut disk, 0, &[1; 100], T0),
        Err(KernelError::Block(BlockError::BadLength { .. }))
    ));
    assert_eq!(disk, before);
    // The last block is on the device.
    k.block_write(t, h, &mut disk, 3, &[2; BLOCK as usize], T0)
        .unwrap();
    assert_eq!(
        k.block_read(t, h, &mut disk, 3, 1, T0).unwrap(),
        [2; BLOCK as usize]
    );
    assert_eq!(
        invalid_uses(&k),
        0,
        "geometry errors are not capability misuse"
    );
}
