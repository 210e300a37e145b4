//! Message envelopes as a service receives them from any client, and the
//! storage protocol's request inside them. An envelope that decodes must
//! encode again to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pandagen_abi::MessageEnvelope;
use pandagen_storage::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = MessageEnvelope::decode(data) else {
        return;
    };
    let encoded = envelope.encode().expect("a decoded envelope encodes");
    assert_eq!(MessageEnvelope::decode(&encoded).as_ref(), Ok(&envelope));
    let _ = envelope.payload.decode::<Request>();
});
