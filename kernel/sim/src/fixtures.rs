//! Committed wire fixtures: bytes one version of a protocol wrote, kept in
//! the repository so that every later version is tested against them.
//!
//! A fixture is written once, by the version whose bytes it records, and
//! never regenerated: regenerating would test the new version against
//! itself. A missing fixture fails the test unless
//! `PANDAGEN_WRITE_FIXTURES=1` is set, in which case the current encoding
//! is written (to add a fixture for a new message or a new version).

use std::fmt::Debug;
use std::path::Path;

use pandagen_abi::MessagePayload;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The environment variable that lets [`committed`] write missing fixtures.
pub const WRITE_FIXTURES: &str = "PANDAGEN_WRITE_FIXTURES";

/// The committed bytes of fixture `name` under `dir`. If the file does not
/// exist and [`WRITE_FIXTURES`] is `1`, `encode()` is written there first;
/// otherwise a missing fixture panics with how to create it.
pub fn committed(dir: &Path, name: &str, encode: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(_) if std::env::var(WRITE_FIXTURES).as_deref() == Ok("1") => {
            let bytes = encode();
            std::fs::create_dir_all(dir).expect("create the fixture directory");
            std::fs::write(&path, &bytes).expect("write the fixture");
            bytes
        }
        Err(e) => panic!(
            "fixture {} is missing ({e}); write it once with {WRITE_FIXTURES}=1",
            path.display()
        ),
    }
}

/// Assert that the committed payload fixture `name` under `dir` decodes,
/// as a message payload of this version, to `value`. A missing fixture is
/// handled as by [`committed`] (written as `value`'s current encoding).
pub fn assert_decodes_to<T>(dir: &Path, name: &str, value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = committed(dir, name, || {
        MessagePayload::new(&value)
            .expect("the value encodes")
            .as_bytes()
            .to_vec()
    });
    let payload = MessagePayload::from_bytes(bytes).expect("a fixture fits in a payload");
    assert_eq!(
        payload.decode::<T>(),
        Ok(value),
        "fixture {}",
        dir.join(name).display()
    );
}
