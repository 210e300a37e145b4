use super::*;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;
use serde::{Deserialize, Serialize};

// The interface description's own example: v1.1 adds an optional field.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct RequestV1 {
    name: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct RequestV1_1 {
    name: String,
    #[serde(default)]
    timeout: Option<Duration>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

#[test]
fn v1_0_payload_decodes_as_v1_1_with_the_added_field_at_its_default() {
    let old = encode(&RequestV1 {
        name: "blob".to_string(),
    });
    assert_eq!(
        from_bytes::<RequestV1_1>(&old),
        Ok(RequestV1_1 {
            name: "blob".to_string(),
            timeout: None,
        })
    );
    // Plain postcard cannot do this: the reason for this module.
    assert!(postcard::from_bytes::<RequestV1_1>(&old).is_err());
}

#[test]
fn v1_1_payload_still_decodes_as_v1_1() {
    let new = RequestV1_1 {
        name: "blob".to_string(),
        timeout: Some(Duration::from_millis(250)),
    };
    assert_eq!(from_bytes::<RequestV1_1>(&encode(&new)), Ok(new));
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum OpV1 {
    Read { offset: u64 },
    Stop,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum OpV1_1 {
    Read {
        offset: u64,
        #[serde(default)]
        max_len: u32,
    },
    Stop,
    Flush,
}

#[test]
fn a_struct_variant_grows_too_and_an_added_variant_is_backward_compatible() {
    let old = encode(&OpV1::Read { offset: 9 });
    assert_eq!(
        from_bytes::<OpV1_1>(&old),
        Ok(OpV1_1::Read {
            offset: 9,
            max_len: 0
        })
    );
    assert_eq!(from_bytes::<OpV1_1>(&encode(&OpV1::Stop)), Ok(OpV1_1::Stop));
}

#[test]
fn an_unknown_variant_is_named_not_malformed() {
    let new = encode(&OpV1_1::Flush);
    assert_eq!(
        from_bytes::<OpV1>(&new),
        Err(DecodeFailure::UnknownVariant { variant: 2, end: 1 })
    );
}

#[test]
fn a_missing_required_field_still_fails() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Pair {
        a: u32,
        b: u32,
    }
    let bytes = encode(&Pair { a: 300, b: 7 });
    for cut in 0..bytes.len() {
        assert_eq!(
            from_bytes::<Pair>(&bytes[..cut]),
            Err(DecodeFailure::Malformed),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_truncated_list_never_decodes_as_a_shorter_one() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Records {
        #[serde(default)]
        items: Vec<u16>,
    }
    let bytes = encode(&Records {
        items: vec![1, 2, 3],
    });
    for cut in 1..bytes.len() {
        assert_eq!(
            from_bytes::<Records>(&bytes[..cut]),
            Err(DecodeFailure::Malformed),
            "cut at {cut}"
        );
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&RequestV1_1 {
        name: "x".to_string(),
        timeout: None,
    });
    bytes.push(0);
    assert_eq!(
        from_bytes::<RequestV1_1>(&bytes),
        Err(DecodeFailure::Malformed)
    );
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Inner {
    Io,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum InnerV2 {
    Io,
    Budget { left: u64 },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum ErrorV1 {
    NotFound,
    Wrapped(Inner),
    /// Never sent: how this version names an error it does not know.
    Unrecognized {
        variant: u32,
    },
}

impl ExtensibleError for ErrorV1 {
    fn unrecognized(variant: u32) -> Self {
        ErrorV1::Unrecognized { variant }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum ErrorV2 {
    NotFound,
    Wrapped(InnerV2),
    Unrecognized { variant: u32 },
    Quota { used: u64, limit: u64 },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum ReplyV2 {
    Value(u32),
    Listing(Vec<u32>),
}

#[test]
fn a_newer_peers_unknown_error_is_a_typed_answer() {
    let sent: Result<u32, ErrorV2> = Err(ErrorV2::Quota { used: 5, limit: 4 });
    let answer = answer_from_bytes::<Result<u32, ErrorV1>>(&encode(&sent));
    assert_eq!(answer, Ok(Err(ErrorV1::Unrecognized { variant: 3 })));
}

#[test]
fn an_unknown_variant_nested_in_an_error_names_the_outer_error() {
    let sent: Result<u32, ErrorV2> = Err(ErrorV2::Wrapped(InnerV2::Budget { left: 1 }));
    let answer = answer_from_bytes::<Result<u32, ErrorV1>>(&encode(&sent));
    assert_eq!(answer, Ok(Err(ErrorV1::Unrecognized { variant: 1 })));
}

#[test]
fn known_answers_decode_unchanged() {
    let ok: Result<u32, ErrorV2> = Ok(77);
    assert_eq!(
        answer_from_bytes::<Result<u32, ErrorV1>>(&encode(&ok)),
        Ok(Ok(77))
    );
    let err: Result<u32, ErrorV2> = Err(ErrorV2::Wrapped(InnerV2::Io));
    assert_eq!(
        answer_from_bytes::<Result<u32, ErrorV1>>(&encode(&err)),
        Ok(Err(ErrorV1::Wrapped(Inner::Io)))
    );
}

#[test]
fn an_unknown_variant_on_the_success_side_stays_a_failure() {
    let sent: Result<ReplyV2, ErrorV2> = Ok(ReplyV2::Listing(vec![1]));
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum ReplyV1 {
        Value(u32),
    }
    assert_eq!(
        answer_from_bytes::<Result<ReplyV1, ErrorV1>>(&encode(&sent)),
        Err(DecodeFailure::UnknownVariant { variant: 1, end: 2 })
    );
}

#[test]
fn a_truncated_unknown_error_is_still_unrecognized_but_garbage_is_malformed() {
    // The error side is the last thing encoded: what follows an unknown
    // tag is the unknown variant's own data, which this version skips.
    let sent: Result<u32, ErrorV2> = Err(ErrorV2::Quota { used: 5, limit: 4 });
    let bytes = encode(&sent);
    assert_eq!(
        answer_from_bytes::<Result<u32, ErrorV1>>(&bytes[..3]),
        Ok(Err(ErrorV1::Unrecognized { variant: 3 }))
    );
    assert_eq!(
        answer_from_bytes::<Result<u32, ErrorV1>>(&[1]),
        Err(DecodeFailure::Malformed)
    );
    assert_eq!(
        answer_from_bytes::<Result<u32, ErrorV1>>(&[7, 0]),
        Err(DecodeFailure::UnknownVariant { variant: 7, end: 1 })
    );
}

mod agrees_with_postcard {
    use super::*;
    use proptest::prelude::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Record {
        id: u64,
        name: String,
        tags: Vec<Option<u16>>,
        kind: OpKind,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum OpKind {
        A,
        B(i32),
        C { bytes: Vec<u8>, flag: bool },
    }

    fn kind() -> impl Strategy<Value = OpKind> {
        prop_oneof![
            Just(OpKind::A),
            any::<i32>().prop_map(OpKind::B),
            (proptest::collection::vec(any::<u8>(), 0..8), any::<bool>())
                .prop_map(|(bytes, flag)| OpKind::C { bytes, flag }),
        ]
    }

    proptest! {
        #[test]
        fn on_every_value_and_every_cut(
            id in any::<u64>(),
            name in "[a-z]{0,6}",
            tags in proptest::collection::vec(proptest::option::of(any::<u16>()), 0..4),
            kind in kind(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let record = Record { id, name, tags, kind };
            let bytes = encode(&record);
            prop_assert_eq!(tolerant_from_bytes::<Record>(&bytes), Ok(record.clone()));
            prop_assert_eq!(from_bytes::<Record>(&bytes), Ok(record));
            // Every proper prefix fails, as it does for plain postcard:
            // none of `Record`'s fields has a default.
            let cut = cut.index(bytes.len());
            prop_assert!(from_bytes::<Record>(&bytes[..cut]).is_err());
            prop_assert!(postcard::from_bytes::<Record>(&bytes[..cut]).is_err());
        }
    }
}
