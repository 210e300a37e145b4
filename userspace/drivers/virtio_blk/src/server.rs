//! Serving the block protocol ([`crate::protocol`]) for any
//! [`BlockDevice`]: authority from the kernel's badge, limits checked
//! before the device is touched.

use alloc::vec::Vec;

use pandagen_abi::block::{on_device, whole_blocks, BlockDevice};
use pandagen_abi::syscall::BlockInfo;
use pandagen_abi::{Badge, BlockError, Rights};

use crate::protocol::{
    BlockReply, BlockRequest, BlockResponse, BLOCK_BADGE, MAX_BATCH, MAX_TRANSFER,
};

/// Whether the sender may make `request`: it came through the block
/// capability (the kernel stamped [`BLOCK_BADGE`]) with `READ` for reads
/// and `WRITE` for writes and flushes.
pub fn authorize(badge: Option<Badge>, request: &BlockRequest) -> Result<(), BlockError> {
    let badge = badge.ok_or(BlockError::NotPermitted)?;
    if badge.value != BLOCK_BADGE {
        return Err(BlockError::NotPermitted);
    }
    let needed = if request.mutates() {
        Rights::WRITE
    } else {
        Rights::READ
    };
    if !badge.rights.contains(needed) {
        return Err(BlockError::NotPermitted);
    }
    Ok(())
}

/// Answer one authorized request from `device`.
pub fn serve<D: BlockDevice + ?Sized>(device: &mut D, request: &BlockRequest) -> BlockResponse {
    let max = MAX_TRANSFER as u32;
    let len = request.transfer_bytes(device.block_size());
    if len > u64::from(max) {
        return Err(BlockError::TooLarge { len, max });
    }
    match request {
        BlockRequest::Batch(requests) => {
            if requests.len() > MAX_BATCH {
                return Err(BlockError::TooLarge {
                    len: requests.len() as u64,
                    max: MAX_BATCH as u32,
                });
            }
            let mut answers = Vec::with_capacity(requests.len());
            for inner in requests {
                let answer = match inner {
                    // Batches do not nest: one level keeps the cost of a
                    // message bounded by MAX_BATCH.
                    BlockRequest::Batch(_) => Err(BlockError::NotPermitted),
                    other => serve_one(device, other),
                };
                let failed = answer.is_err();
                answers.push(answer);
                if failed {
                    break;
                }
            }
            Ok(BlockReply::Batch(answers))
        }
        other => serve_one(device, other),
    }
}

fn serve_one<D: BlockDevice + ?Sized>(device: &mut D, request: &BlockRequest) -> BlockResponse {
    let block_size = device.block_size();
    match request {
        BlockRequest::Info => Ok(BlockReply::Info(BlockInfo {
            block_size,
            block_count: device.block_count(),
        })),
        BlockRequest::Read { first, count } => {
            let bytes = u64::from(*count) * u64::from(block_size);
            whole_blocks(bytes, block_size)?;
            on_device(*first, u64::from(*count), device.block_count())?;
            let mut data = alloc::vec![0u8; bytes as usize];
            device.read_blocks(*first, &mut data)?;
            Ok(BlockReply::Data(data))
        }
        BlockRequest::Write { first, bytes } => {
            let count = whole_blocks(bytes.len() as u64, block_size)?;
            on_device(*first, count, device.block_count())?;
            device.write_blocks(*first, bytes)?;
            Ok(BlockReply::Done)
        }
        BlockRequest::Flush => {
            device.flush()?;
            Ok(BlockReply::Done)
        }
        BlockRequest::Batch(_) => Err(BlockError::NotPermitted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A RAM disk that counts flushes and writes since the last flush.
    struct Ram {
        bytes: Vec<u8>,
        unflushed: usize,
        flushes: usize,
    }

    impl BlockDevice for Ram {
        fn block_size(&self) -> u32 {
            512
        }
        fn block_count(&self) -> u64 {
            (self.bytes.len() / 512) as u64
        }
        fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            let at = first as usize * 512;
            buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
            Ok(())
        }
        fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
            let at = first as usize * 512;
            self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
            self.unflushed += 1;
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            self.unflushed = 0;
            self.flushes += 1;
            Ok(())
        }
    }

    fn ram() -> Ram {
        Ram {
            bytes: vec![0; 64 * 512],
            unflushed: 0,
            flushes: 0,
        }
    }

    fn badge(rights: Rights) -> Option<Badge> {
        Some(Badge {
            value: BLOCK_BADGE,
            rights,
        })
    }

    #[test]
    fn only_the_block_capability_with_the_right_right_is_served() {
        let read = BlockRequest::Read { first: 0, count: 1 };
        let write = BlockRequest::Write {
            first: 0,
            bytes: vec![1; 512],
        };
        assert_eq!(authorize(None, &read), Err(BlockError::NotPermitted));
        let foreign = Some(Badge {
            value: 7,
            rights: Rights::ALL,
        });
        assert_eq!(authorize(foreign, &read), Err(BlockError::NotPermitted));
        assert_eq!(authorize(badge(Rights::READ), &read), Ok(()));
        assert_eq!(
            authorize(badge(Rights::READ), &write),
            Err(BlockError::NotPermitted)
        );
        let batch = BlockRequest::Batch(vec![read, BlockRequest::Flush]);
        assert_eq!(
            authorize(badge(Rights::READ), &batch),
            Err(BlockError::NotPermitted)
        );
        assert_eq!(authorize(badge(Rights::WRITE), &batch), Ok(()));
    }

    #[test]
    fn reads_writes_and_flushes_reach_the_device() {
        let mut disk = ram();
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        let write = BlockRequest::Write {
            first: 3,
            bytes: data.clone(),
        };
        assert_eq!(serve(&mut disk, &write), Ok(BlockReply::Done));
        assert_eq!(disk.unflushed, 1);
        assert_eq!(serve(&mut disk, &BlockRequest::Flush), Ok(BlockReply::Done));
        assert_eq!((disk.unflushed, disk.flushes), (0, 1));
        assert_eq!(
            serve(&mut disk, &BlockRequest::Read { first: 3, count: 2 }),
            Ok(BlockReply::Data(data))
        );
        assert_eq!(
            serve(&mut disk, &BlockRequest::Info),
            Ok(BlockReply::Info(BlockInfo {
                block_size: 512,
                block_count: 64
            }))
        );
    }

    #[test]
    fn bad_requests_get_typed_errors_and_touch_nothing() {
        let mut disk = ram();
        assert_eq!(
            serve(
                &mut disk,
                &BlockRequest::Read {
                    first: 63,
                    count: 2
                }
            ),
            Err(BlockError::OutOfRange {
                first: 63,
                count: 2,
                blocks: 64
            })
        );
        assert_eq!(
            serve(
                &mut disk,
                &BlockRequest::Write {
                    first: 0,
                    bytes: vec![1; 100]
                }
            ),
            Err(BlockError::BadLength {
                len: 100,
                block_size: 512
            })
        );
        assert!(matches!(
            serve(
                &mut disk,
                &BlockRequest::Read {
                    first: 0,
                    count: 40
                }
            ),
            Err(BlockError::TooLarge { .. })
        ));
        assert_eq!(
            serve(&mut disk, &BlockRequest::Read { first: 0, count: 0 }),
            Err(BlockError::BadLength {
                len: 0,
                block_size: 512
            })
        );
        assert_eq!(disk.unflushed, 0);
        assert!(disk.bytes.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_batch_runs_in_order_and_stops_at_the_first_failure() {
        let mut disk = ram();
        let batch = BlockRequest::Batch(vec![
            BlockRequest::Write {
                first: 0,
                bytes: vec![7; 512],
            },
            BlockRequest::Read {
                first: 64,
                count: 1,
            },
            BlockRequest::Write {
                first: 1,
                bytes: vec![8; 512],
            },
        ]);
        let Ok(BlockReply::Batch(answers)) = serve(&mut disk, &batch) else {
            panic!("the batch was refused whole");
        };
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0], Ok(BlockReply::Done));
        assert!(matches!(answers[1], Err(BlockError::OutOfRange { .. })));
        assert_eq!(disk.bytes[0], 7);
        assert_eq!(disk.bytes[512], 0, "ran past the failure");
        let nested = BlockRequest::Batch(vec![BlockRequest::Batch(vec![])]);
        assert_eq!(
            serve(&mut disk, &nested),
            Ok(BlockReply::Batch(vec![Err(BlockError::NotPermitted)]))
        );
    }

    #[test]
    fn the_largest_transfer_and_batch_are_served_and_one_more_is_refused() {
        let mut disk = ram();
        let blocks = (MAX_TRANSFER / 512) as u32;
        let largest = BlockRequest::Read {
            first: 0,
            count: blocks,
        };
        assert!(
            matches!(serve(&mut disk, &largest), Ok(BlockReply::Data(d)) if d.len() == MAX_TRANSFER)
        );
        let over = BlockRequest::Read {
            first: 0,
            count: blocks + 1,
        };
        assert_eq!(
            serve(&mut disk, &over),
            Err(BlockError::TooLarge {
                len: MAX_TRANSFER as u64 + 512,
                max: MAX_TRANSFER as u32
            })
        );
        let full = BlockRequest::Batch(vec![BlockRequest::Info; MAX_BATCH]);
        assert!(
            matches!(serve(&mut disk, &full), Ok(BlockReply::Batch(a)) if a.len() == MAX_BATCH)
        );
        let over = BlockRequest::Batch(vec![BlockRequest::Info; MAX_BATCH + 1]);
        assert_eq!(
            serve(&mut disk, &over),
            Err(BlockError::TooLarge {
                len: MAX_BATCH as u64 + 1,
                max: MAX_BATCH as u32
            })
        );
    }
}
