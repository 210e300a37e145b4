//! Typed payloads: bytes tagged with the schema they follow.
//!
//! A [`PayloadSchemaId`] is a name plus a version tag, written `name@vN`
//! (`PayloadSchemaId::new("blob")` is `blob@v1`). Two schema ids match only
//! if both the name and the version are equal: a stage that emits `blob@v2`
//! does not feed one that reads `blob@v1`. Stage handlers and the executor
//! compare schema ids before decoding the bytes.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version a schema id gets when its name carries no `@vN` tag.
pub const DEFAULT_SCHEMA_VERSION: u32 = 1;

/// A payload schema: a string name with a version tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PayloadSchemaId {
    name: String,
    version: u32,
}

impl PayloadSchemaId {
    /// Parse `name` or `name@vN`. Without a tag the version is
    /// [`DEFAULT_SCHEMA_VERSION`]; a malformed tag is kept as part of the name.
    pub fn new(id: &str) -> Self {
        if let Some((name, tag)) = id.rsplit_once("@v") {
            if let Ok(version) = tag.parse::<u32>() {
                if !name.is_empty() {
                    return PayloadSchemaId::versioned(name, version);
                }
            }
        }
        PayloadSchemaId::versioned(id, DEFAULT_SCHEMA_VERSION)
    }

    pub fn versioned(name: &str, version: u32) -> Self {
        PayloadSchemaId {
            name: name.to_string(),
            version,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Display for PayloadSchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@v{}", self.name, self.version)
    }
}

/// Why a payload could not be built or read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadError {
    /// The value could not be serialized.
    EncodeFailed,
    /// The bytes are not a valid encoding of the requested type.
    Malformed,
    /// The payload follows another schema than the reader expects.
    WrongSchema {
        expected: PayloadSchemaId,
        found: PayloadSchemaId,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::EncodeFailed => f.write_str("payload could not be encoded"),
            PayloadError::Malformed => f.write_str("payload bytes are malformed"),
            PayloadError::WrongSchema { expected, found } => {
                write!(f, "expected a {expected} payload, found {found}")
            }
        }
    }
}

/// Data flowing between stages: postcard bytes plus their schema id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedPayload {
    pub schema: PayloadSchemaId,
    pub data: Vec<u8>,
}

impl TypedPayload {
    /// Encode `value` with postcard under `schema`.
    pub fn new<T: Serialize + ?Sized>(
        schema: PayloadSchemaId,
        value: &T,
    ) -> Result<Self, PayloadError> {
        let data = postcard::to_allocvec(value).map_err(|_| PayloadError::EncodeFailed)?;
        Ok(TypedPayload { schema, data })
    }

    /// Wrap bytes that are already encoded.
    pub fn from_bytes(schema: PayloadSchemaId, data: Vec<u8>) -> Self {
        TypedPayload { schema, data }
    }

    /// Decode as `T` if the payload follows `expected`; trailing bytes are
    /// rejected.
    pub fn decode_as<T: DeserializeOwned>(
        &self,
        expected: &PayloadSchemaId,
    ) -> Result<T, PayloadError> {
        if &self.schema != expected {
            return Err(PayloadError::WrongSchema {
                expected: expected.clone(),
                found: self.schema.clone(),
            });
        }
        match postcard::take_from_bytes::<T>(&self.data) {
            Ok((value, [])) => Ok(value),
            _ => Err(PayloadError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_ids_carry_a_version_tag() {
        assert_eq!(PayloadSchemaId::new("blob").to_string(), "blob@v1");
        assert_eq!(
            PayloadSchemaId::new("blob@v3"),
            PayloadSchemaId::versioned("blob", 3)
        );
        assert_ne!(
            PayloadSchemaId::new("blob@v2"),
            PayloadSchemaId::new("blob")
        );
        assert_eq!(PayloadSchemaId::new("a@vx").name(), "a@vx");
        assert_eq!(PayloadSchemaId::new("@v2").name(), "@v2");
    }

    #[test]
    fn payloads_decode_only_under_their_schema() {
        let schema = PayloadSchemaId::new("pair");
        let payload = TypedPayload::new(schema.clone(), &(7u32, 9u32)).unwrap();
        assert_eq!(payload.decode_as::<(u32, u32)>(&schema), Ok((7, 9)));
        assert!(matches!(
            payload.decode_as::<(u32, u32)>(&PayloadSchemaId::new("pair@v2")),
            Err(PayloadError::WrongSchema { .. })
        ));
        assert_eq!(
            payload.decode_as::<u8>(&schema),
            Err(PayloadError::Malformed)
        );
    }
}
