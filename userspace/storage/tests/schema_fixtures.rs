//! Bytes written by earlier versions of the storage protocol and of its
//! on-disk journal, committed under `tests/fixtures/`, decoded by this
//! version. `v2.0/` and `journal-v2.0/` were written by the storage crate
//! as it was at schema v2.0 (before `Info`), `v2.1/` by v2.1. Fixtures are
//! written once (see `pandagen_sim::fixtures`); a change that makes any of
//! them undecodable, or decode to something else, breaks clients or
//! volumes in the field and needs a new major version (or, for the
//! journal, a migration).

use std::path::PathBuf;

use pandagen_abi::block::BlockDevice;
use pandagen_abi::envelope::MessagePayload;
use pandagen_abi::{EnvelopeError, MessageEnvelope, Rights, SchemaVersion, ServiceId};
use pandagen_core::VecDisk;
use pandagen_sim::fixtures::{assert_decodes_to, committed};
use pandagen_storage::cap::ObjectGrant;
use pandagen_storage::protocol::{Response, SCHEMA, VERSION_POLICY};
use pandagen_storage::record::{Change, CommitRecord};
use pandagen_storage::{
    CommitSeq, JournalBackend, ObjectId, ObjectKind, ObjectStore, ObjectToken, Op, OpResult, Reply,
    Request, StorageError, StorageInfo, TransactionalStorage, TxId, VersionId,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The versions fixtures were written at, oldest first.
const WRITTEN_AT: [(&str, SchemaVersion); 2] = [
    ("v2.0", SchemaVersion::new(2, 0)),
    ("v2.1", SchemaVersion::new(2, 1)),
];

fn dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
}

fn decodes_to<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    version: &str,
    name: &str,
    value: T,
) {
    assert_decodes_to(&dir(version), name, value);
}

fn object(n: u64) -> ObjectId {
    ObjectId::from_raw(n)
}

fn version(n: u64) -> VersionId {
    VersionId::from_raw(n)
}

#[test]
fn the_fixtures_are_inside_the_current_version_window() {
    for (_, version) in WRITTEN_AT {
        assert!(VERSION_POLICY
            .check(ServiceId::from_raw(0), version)
            .is_ok());
        assert!(SCHEMA.is_compatible_with(&version));
    }
}

#[test]
fn requests_written_at_v2_0_and_v2_1_decode() {
    let cases = [
        (
            "request-create.bin",
            Request::Create {
                kind: ObjectKind::Map,
            },
        ),
        ("request-begin.bin", Request::Begin),
        (
            "request-op-put.bin",
            Request::Op {
                tx: TxId::from_raw(0x1_0000_0002),
                op: Op::Put {
                    key: b"greeting".to_vec(),
                    value: b"hello".to_vec(),
                },
            },
        ),
        (
            "request-op-read-blob.bin",
            Request::Op {
                tx: TxId::from_raw(7),
                op: Op::ReadBlob {
                    at: Some(version(3)),
                    offset: 16,
                    max_len: 4096,
                },
            },
        ),
        (
            "request-commit.bin",
            Request::Commit {
                tx: TxId::from_raw(7),
            },
        ),
        (
            "request-transact.bin",
            Request::Transact {
                ops: vec![
                    Op::Expect {
                        version: version(2),
                    },
                    Op::Append {
                        record: b"entry".to_vec(),
                    },
                    Op::List {
                        at: None,
                        start_after: Some(b"a".to_vec()),
                        limit: 10,
                    },
                ],
            },
        ),
        (
            "request-versions.bin",
            Request::Versions {
                after: None,
                limit: 32,
            },
        ),
        (
            "request-import.bin",
            Request::Import {
                token: ObjectToken::from_parts(object(5), Rights::READ, 0xfeed_beef),
            },
        ),
    ];
    for (version, _) in WRITTEN_AT {
        for (name, request) in cases.clone() {
            decodes_to(version, name, request);
        }
    }
    // Added at v2.1.
    decodes_to("v2.1", "request-info.bin", Request::Info);
}

#[test]
fn responses_written_at_v2_0_and_v2_1_decode() {
    let grant = ObjectGrant {
        object: object(5),
        epoch: 1,
        rights: Rights::READ,
    };
    let cases: [(&str, Response); 5] = [
        (
            "response-created.bin",
            Ok(Reply::Created {
                grant,
                version: version(1),
            }),
        ),
        (
            "response-committed.bin",
            Ok(Reply::Committed {
                versions: vec![(object(5), version(9))],
            }),
        ),
        (
            "response-op-value.bin",
            Ok(Reply::Op(OpResult::Value {
                version: version(9),
                value: Some(b"hello".to_vec()),
            })),
        ),
        (
            "response-conflict.bin",
            Err(StorageError::Conflict { object: object(5) }),
        ),
        (
            "response-missing-rights.bin",
            Err(StorageError::MissingRights {
                object: object(5),
                required: Rights::WRITE,
                held: Rights::READ,
            }),
        ),
    ];
    for (version, _) in WRITTEN_AT {
        for (name, response) in cases.clone() {
            decodes_to(version, name, response);
        }
    }
    let info: Response = Ok(Reply::Info(StorageInfo {
        last_commit: CommitSeq::from_raw(41),
        compactions: 2,
    }));
    decodes_to("v2.1", "response-info.bin", info);
}

#[test]
fn an_envelope_written_at_v2_1_decodes_and_its_answer_reads() {
    let written = MessageEnvelope::new(
        pandagen_abi::services::STORAGE,
        "storage.reply",
        WRITTEN_AT[1].1,
        MessagePayload::new(&Response::Ok(Reply::RolledBack)).unwrap(),
    );
    let bytes = committed(&dir("v2.1"), "envelope-reply.bin", || {
        written.encode().unwrap()
    });
    let envelope = MessageEnvelope::decode(&bytes).unwrap();
    assert_eq!(envelope.action, "storage.reply");
    assert_eq!(envelope.schema_version, WRITTEN_AT[1].1);
    let answer: Result<Response, EnvelopeError> =
        envelope.decode_answer(&VERSION_POLICY, pandagen_abi::services::STORAGE);
    assert_eq!(answer, Ok(Ok(Reply::RolledBack)));
}

#[test]
fn an_error_this_version_does_not_know_is_unrecognized_not_malformed() {
    // A newer service's error: tag 1 (`Err`), then an error variant index
    // past the last one this version has, then its fields.
    let newer = [1u8, 60, 3, 9];
    let payload = MessagePayload::from_bytes(newer.to_vec()).unwrap();
    assert_eq!(
        payload.decode_answer::<Response>(),
        Ok(Err(StorageError::Unrecognized { variant: 60 }))
    );
    assert_eq!(
        payload.decode::<Response>(),
        Err(EnvelopeError::UnknownVariant { variant: 60 })
    );
}

#[test]
fn a_journal_record_written_at_v2_0_decodes() {
    let record = CommitRecord {
        seq: CommitSeq::from_raw(3),
        changes: vec![
            Change::Create {
                object: object(1),
                kind: ObjectKind::Blob,
                version: version(1),
            },
            Change::Blob {
                object: object(1),
                version: version(2),
                bytes: b"journal".to_vec(),
            },
            Change::Open { instance: 2 },
        ],
        origin: None,
    };
    let bytes = committed(&dir("journal-v2.0"), "record.bin", || {
        postcard::to_allocvec(&record).unwrap()
    });
    assert_eq!(pandagen_abi::evolve::from_bytes(&bytes), Ok(record));
}

const IMAGE_BLOCK: usize = 128;
const IMAGE_BLOCKS: usize = 96;
const IMAGE_KEY: [u8; 16] = *b"fixture-volume-k";

/// What the committed volume holds: a map, a blob with two versions and a
/// log, each made by its own transaction.
fn write_volume() -> Vec<u8> {
    let device = VecDisk::new(IMAGE_BLOCK as u32, IMAGE_BLOCKS as u64);
    let backend = JournalBackend::format(device, IMAGE_KEY).unwrap();
    let (mut store, _) = ObjectStore::open(backend).unwrap();
    let (map, _) = store.create(ObjectKind::Map).unwrap();
    let (blob, _) = store.create(ObjectKind::Blob).unwrap();
    let (log, _) = store.create(ObjectKind::Log).unwrap();
    let mut tx = store.begin_transaction().unwrap();
    store.put(&mut tx, map, b"greeting", b"hello").unwrap();
    store.commit(&mut tx).unwrap();
    for content in [&b"first"[..], b"second"] {
        let mut tx = store.begin_transaction().unwrap();
        store.write(&mut tx, blob, content).unwrap();
        store.commit(&mut tx).unwrap();
    }
    let mut tx = store.begin_transaction().unwrap();
    store.write(&mut tx, log, b"entry-0").unwrap();
    store.write(&mut tx, log, b"entry-1").unwrap();
    store.commit(&mut tx).unwrap();
    store.into_backend().into_device().bytes().to_vec()
}

#[test]
fn a_journal_volume_written_at_v2_0_opens_and_reads_back() {
    let image = committed(&dir("journal-v2.0"), "volume.img", write_volume);
    assert_eq!(image.len(), IMAGE_BLOCK * IMAGE_BLOCKS);
    let mut device = VecDisk::new(IMAGE_BLOCK as u32, IMAGE_BLOCKS as u64);
    device.write_blocks(0, &image).unwrap();
    let (backend, formatted) = JournalBackend::open_or_format(device, [0; 16]).unwrap();
    assert!(!formatted, "an old volume must be opened, never formatted");
    let (mut store, _) = ObjectStore::open(backend).unwrap();
    let (map, blob, log) = (object(1), object(2), object(3));
    assert_eq!(store.object(map).unwrap().kind(), ObjectKind::Map);
    let tx = store.begin_transaction().unwrap();
    let value = store.get(&tx, map, b"greeting", None).unwrap();
    assert_eq!(value.value.as_deref(), Some(&b"hello"[..]));
    let newest = store.read_blob(&tx, blob, None, 0, 64).unwrap();
    assert_eq!(newest.bytes, b"second");
    let history = store.versions(blob, None, 8).unwrap();
    assert_eq!(history.len(), 3, "creation and two writes: {history:?}");
    let first = store.read_blob(&tx, blob, Some(history[1]), 0, 64).unwrap();
    assert_eq!(first.bytes, b"first");
    let records = store.read_log(&tx, log, None, 0, 8).unwrap();
    assert_eq!(
        records.records,
        vec![b"entry-0".to_vec(), b"entry-1".to_vec()]
    );
    // The upgraded service keeps writing to the same volume.
    let mut tx = store.begin_transaction().unwrap();
    store.put(&mut tx, map, b"after", b"upgrade").unwrap();
    store.commit(&mut tx).unwrap();
}
