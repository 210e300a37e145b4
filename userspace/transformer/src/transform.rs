//! The transformations themselves: pure functions of the input payload.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use pandagen_pipeline_executor::{PayloadError, TypedPayload};

use crate::schemas::{self, Blob, BlobChecksum, BlobParams};

/// What the transformer can do. The action names are the pipeline stage
/// actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `blob_params@v1` -> `blob@v1`, plus a handle capability.
    CreateBlob,
    /// `blob@v1` -> `blob@v1`, ASCII letters upper-cased.
    Uppercase,
    /// `blob@v1` -> `blob@v1`, bytes reversed.
    Reverse,
    /// `blob@v1` -> `checksum@v1` (Adler-32).
    Checksum,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::CreateBlob,
        Action::Uppercase,
        Action::Reverse,
        Action::Checksum,
    ];

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    pub const fn name(&self) -> &'static str {
        match self {
            Action::CreateBlob => "create_blob",
            Action::Uppercase => "uppercase",
            Action::Reverse => "reverse",
            Action::Checksum => "checksum",
        }
    }
}

/// Why a transformation failed. All are permanent: the same input would
/// fail again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransformError {
    /// The input is not the schema the action reads, or does not decode.
    BadInput(PayloadError),
    /// The blob was created in this pipeline and its handle was not lent.
    HandleNotLent { label: u64 },
    /// The output could not be encoded.
    Encode(PayloadError),
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransformError::BadInput(e) => write!(f, "bad input: {e}"),
            TransformError::HandleNotLent { label } => {
                write!(f, "the blob's handle capability ({label:#x}) was not lent")
            }
            TransformError::Encode(e) => write!(f, "output: {e}"),
        }
    }
}

/// Adler-32 (RFC 1950) of `data`.
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5_552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// The result of an action: the output, and for `CreateBlob` the label of
/// the handle the caller must issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transformed {
    pub output: TypedPayload,
    pub issue_handle: Option<u64>,
}

/// Apply `action` to `input`. `lent` are the labels of the capabilities the
/// stage was lent.
pub fn apply(
    action: Action,
    input: &TypedPayload,
    lent: &[u64],
) -> Result<Transformed, TransformError> {
    if action == Action::CreateBlob {
        let params: BlobParams = input
            .decode_as(&schemas::blob_params())
            .map_err(TransformError::BadInput)?;
        let label = schemas::blob_cap_label(&params.name);
        let blob = Blob {
            name: params.name,
            content: params.content,
            handle_label: Some(label),
        };
        return Ok(Transformed {
            output: encode(schemas::blob(), &blob)?,
            issue_handle: Some(label),
        });
    }
    let mut blob: Blob = input
        .decode_as(&schemas::blob())
        .map_err(TransformError::BadInput)?;
    if let Some(label) = blob.handle_label {
        if !lent.contains(&label) {
            return Err(TransformError::HandleNotLent { label });
        }
    }
    let output = match action {
        Action::Uppercase => {
            blob.content.make_ascii_uppercase();
            encode(schemas::blob(), &blob)?
        }
        Action::Reverse => {
            blob.content.reverse();
            encode(schemas::blob(), &blob)?
        }
        Action::Checksum => {
            let sum = BlobChecksum {
                adler32: adler32(&blob.content),
                name: blob.name,
            };
            encode(schemas::checksum(), &sum)?
        }
        Action::CreateBlob => return Err(TransformError::BadInput(PayloadError::Malformed)),
    };
    Ok(Transformed {
        output,
        issue_handle: None,
    })
}

fn encode<T: serde::Serialize>(
    schema: pandagen_pipeline_executor::PayloadSchemaId,
    value: &T,
) -> Result<TypedPayload, TransformError> {
    TypedPayload::new(schema, value).map_err(TransformError::Encode)
}

/// A blob payload (with no handle), for clients and tests.
pub fn blob_payload(name: &str, content: &[u8]) -> Result<TypedPayload, PayloadError> {
    let blob = Blob {
        name: String::from(name),
        content: Vec::from(content),
        handle_label: None,
    };
    TypedPayload::new(schemas::blob(), &blob)
}

/// A `blob_params@v1` payload for `create_blob`.
pub fn blob_params_payload(name: &str, content: &[u8]) -> Result<TypedPayload, PayloadError> {
    let params = BlobParams {
        name: String::from(name),
        content: Vec::from(content),
    };
    TypedPayload::new(schemas::blob_params(), &params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn blob_of(payload: &TypedPayload) -> Blob {
        payload.decode_as(&schemas::blob()).unwrap()
    }

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Long enough to exercise the modulo between chunks.
        let long = vec![0xffu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&long), ((b << 16) | a) as u32);
    }

    #[test]
    fn actions_round_trip_their_names() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
        assert_eq!(Action::parse("explode"), None);
    }

    #[test]
    fn uppercase_reverse_and_checksum_transform_the_blob() {
        let input = blob_payload("n", b"abc-1").unwrap();
        let up = apply(Action::Uppercase, &input, &[]).unwrap();
        assert_eq!(blob_of(&up.output).content, b"ABC-1");
        let rev = apply(Action::Reverse, &input, &[]).unwrap();
        assert_eq!(blob_of(&rev.output).content, b"1-cba");
        let sum = apply(Action::Checksum, &input, &[]).unwrap();
        assert_eq!(sum.output.schema, schemas::checksum());
        let sum: BlobChecksum = sum.output.decode_as(&schemas::checksum()).unwrap();
        assert_eq!(sum.adler32, adler32(b"abc-1"));
        assert_eq!(sum.name, "n");
    }

    #[test]
    fn created_blobs_need_their_handle_lent() {
        let input = blob_params_payload("greeting", b"hi").unwrap();
        let created = apply(Action::CreateBlob, &input, &[]).unwrap();
        let label = schemas::blob_cap_label("greeting");
        assert_eq!(created.issue_handle, Some(label));
        assert_eq!(
            apply(Action::Uppercase, &created.output, &[]),
            Err(TransformError::HandleNotLent { label })
        );
        let up = apply(Action::Uppercase, &created.output, &[label]).unwrap();
        assert_eq!(blob_of(&up.output).content, b"HI");
    }

    #[test]
    fn wrong_input_schema_is_a_typed_error() {
        let input = blob_payload("n", b"x").unwrap();
        assert!(matches!(
            apply(Action::CreateBlob, &input, &[]),
            Err(TransformError::BadInput(PayloadError::WrongSchema { .. }))
        ));
    }
}
