//! [`DriverBlockClient`]: a ring-3 disk driver's block capability as a
//! [`BlockDevice`] for the journal. Each read or write becomes requests of
//! the block protocol ([`pandagen_abi::block_protocol`]) of at most
//! [`MAX_TRANSFER`] bytes, sent through the capability; `flush` waits for
//! the driver's flush, so a commit the journal acknowledges after it is on
//! the media.
//!
//! A driver that dies holding a request never answers: after
//! [`ANSWER_TIMEOUT`] the request fails with `BlockError::Unavailable`
//! (typed, never a hang), and the next request reaches the driver's
//! restarted instance through the same capability, which names the
//! driver's service rather than one instance of it. While the driver is
//! between instances (not registered), sends fail the same way.
//!
//! Reads smaller than a request read ahead: the journal's recovery walks
//! its frames one by one (a header block, then the body), and a driver
//! round trip for each would make every boot's recovery grow with the
//! journal. What was read ahead is kept until the next write, and only
//! this client writes the device (the block capability is storage's
//! alone), so it is never stale.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use pandagen_abi::block::{on_device, whole_blocks, BlockDevice};
use pandagen_abi::block_protocol::{
    BlockReply, BlockRequest, BlockResponse, MAX_TRANSFER, REQUEST_ACTION, RESPONSE_ACTION, SCHEMA,
};
use pandagen_abi::cap::kinds;
use pandagen_abi::{
    BlockError, Cap, ChannelId, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
    ServiceId,
};

use crate::device::for_each_piece;

/// How long a request may go unanswered before the driver is taken to be
/// gone. Generous: under emulation a 12 KiB transfer takes milliseconds.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

pub struct DriverBlockClient<K: KernelApi> {
    kernel: K,
    driver: ServiceId,
    capability: Cap<kinds::StorageObject>,
    reply: ChannelId,
    block_size: u32,
    block_count: u64,
    timeout: Duration,
    /// Blocks read ahead: the first one and their bytes.
    read_ahead: Option<(u64, Vec<u8>)>,
}

impl<K: KernelApi> core::fmt::Debug for DriverBlockClient<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DriverBlockClient")
            .field("driver", &self.driver)
            .field("block_size", &self.block_size)
            .field("block_count", &self.block_count)
            .finish()
    }
}

/// A failed send: the driver is between instances, or the capability is
/// no good.
fn send_error(error: KernelError) -> BlockError {
    match error {
        KernelError::ServiceNotFound(_) | KernelError::SendFailed(_) => BlockError::Unavailable,
        KernelError::InsufficientAuthority => BlockError::NotPermitted,
        _ => BlockError::Device,
    }
}

impl<K: KernelApi> DriverBlockClient<K> {
    /// Ask the driver `driver` for its geometry through `capability`.
    pub fn open(
        mut kernel: K,
        driver: ServiceId,
        capability: Cap<kinds::StorageObject>,
    ) -> Result<Self, BlockError> {
        let reply = kernel.create_channel().map_err(|_| BlockError::Device)?;
        let mut client = DriverBlockClient {
            kernel,
            driver,
            capability,
            reply,
            block_size: 0,
            block_count: 0,
            timeout: ANSWER_TIMEOUT,
            read_ahead: None,
        };
        match client.call(&BlockRequest::Info)? {
            BlockReply::Info(info) if info.block_size > 0 => {
                client.block_size = info.block_size;
                client.block_count = info.block_count;
                Ok(client)
            }
            _ => Err(BlockError::Device),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One request and its answer.
    pub fn call(&mut self, request: &BlockRequest) -> Result<BlockReply, BlockError> {
        let payload = MessagePayload::new(request).map_err(|_| BlockError::Malformed)?;
        let envelope = MessageEnvelope::new(self.driver, REQUEST_ACTION, SCHEMA, payload);
        let id = envelope.id;
        let reply = self
            .kernel
            .clone_capability(&Cap::from(self.reply), Rights::SEND | Rights::TRANSFER)
            .map_err(|_| BlockError::Device)?;
        let handle = reply.handle();
        if let Err(error) = self
            .kernel
            .send_to_object(&self.capability, envelope, vec![reply])
        {
            let _ = self.kernel.drop_capability(Cap::from_handle(handle));
            return Err(send_error(error));
        }
        loop {
            let answer = match self.kernel.receive_message(self.reply, Some(self.timeout)) {
                Ok(answer) => answer,
                Err(KernelError::Timeout) => return Err(BlockError::Unavailable),
                Err(_) => return Err(BlockError::Device),
            };
            // An answer to an earlier request that timed out: not ours.
            if answer.correlation_id != Some(id) || answer.action != RESPONSE_ACTION {
                continue;
            }
            let response: BlockResponse =
                answer.payload.decode().map_err(|_| BlockError::Malformed)?;
            return response;
        }
    }

    fn check(&self, first: u64, len: usize) -> Result<(), BlockError> {
        let count = whole_blocks(len as u64, self.block_size)?;
        on_device(first, count, self.block_count)
    }

    fn piece_bytes(&self) -> usize {
        let block_size = self.block_size as usize;
        (MAX_TRANSFER / block_size).max(1) * block_size
    }

    /// Read `count` blocks from `first` in one request.
    fn read_piece(&mut self, first: u64, count: u32, into: &mut [u8]) -> Result<(), BlockError> {
        match self.call(&BlockRequest::Read { first, count })? {
            BlockReply::Data(bytes) if bytes.len() == into.len() => {
                into.copy_from_slice(&bytes);
                Ok(())
            }
            _ => Err(BlockError::Device),
        }
    }

    /// `buf` from the blocks read ahead, if they hold all of it.
    fn copy_read_ahead(&self, first: u64, buf: &mut [u8]) -> bool {
        let Some((start, bytes)) = &self.read_ahead else {
            return false;
        };
        let Some(offset) = first
            .checked_sub(*start)
            .and_then(|blocks| usize::try_from(blocks).ok())
            .and_then(|blocks| blocks.checked_mul(self.block_size as usize))
        else {
            return false;
        };
        match bytes.get(offset..offset.saturating_add(buf.len())) {
            Some(held) => {
                buf.copy_from_slice(held);
                true
            }
            None => false,
        }
    }
}

impl<K: KernelApi> BlockDevice for DriverBlockClient<K> {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(first, buf.len())?;
        let piece = self.piece_bytes();
        let block_size = self.block_size as usize;
        if buf.len() < piece {
            if !self.copy_read_ahead(first, buf) {
                let blocks = (piece / block_size) as u64;
                let count = blocks.min(self.block_count - first) as u32;
                let mut ahead = vec![0u8; count as usize * block_size];
                self.read_ahead = None;
                self.read_piece(first, count, &mut ahead)?;
                self.read_ahead = Some((first, ahead));
                if !self.copy_read_ahead(first, buf) {
                    return Err(BlockError::Device);
                }
            }
            return Ok(());
        }
        for_each_piece(first, buf.len(), self.block_size, piece, |block, range| {
            let count = (range.len() / block_size) as u32;
            self.read_piece(block, count, &mut buf[range])
        })
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        self.check(first, bytes.len())?;
        // Whatever part of it reaches the device, the blocks read ahead
        // may no longer be what the device holds.
        self.read_ahead = None;
        for_each_piece(
            first,
            bytes.len(),
            self.block_size,
            MAX_TRANSFER,
            |block, range| match self.call(&BlockRequest::Write {
                first: block,
                bytes: bytes[range].to_vec(),
            })? {
                BlockReply::Done => Ok(()),
                _ => Err(BlockError::Device),
            },
        )
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        match self.call(&BlockRequest::Flush)? {
            BlockReply::Done => Ok(()),
            _ => Err(BlockError::Device),
        }
    }
}
