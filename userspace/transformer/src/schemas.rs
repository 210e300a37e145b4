//! The payload schemas the transformer reads and writes, and the labels of
//! the blob handles it issues.

use alloc::string::String;
use alloc::vec::Vec;
use pandagen_pipeline_executor::PayloadSchemaId;
use serde::{Deserialize, Serialize};

/// `blob_params@v1`: what `create_blob` needs.
pub fn blob_params() -> PayloadSchemaId {
    PayloadSchemaId::new("blob_params@v1")
}

/// `blob@v1`: a named blob.
pub fn blob() -> PayloadSchemaId {
    PayloadSchemaId::new("blob@v1")
}

/// `checksum@v1`: a blob's Adler-32 checksum.
pub fn checksum() -> PayloadSchemaId {
    PayloadSchemaId::new("checksum@v1")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobParams {
    pub name: String,
    pub content: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub name: String,
    pub content: Vec<u8>,
    /// Set for blobs made by `create_blob`: the label of the handle
    /// capability a stage must be lent to transform this blob.
    pub handle_label: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChecksum {
    pub name: String,
    pub adler32: u32,
}

/// The label under which `create_blob` returns the handle of the blob
/// called `name`: FNV-1a (64-bit) of the name, so a pipeline's author can
/// name the capability before it exists.
pub fn blob_cap_label(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(blob_cap_label(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(blob_cap_label("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(blob_cap_label("greeting"), blob_cap_label("greetings"));
    }
}
