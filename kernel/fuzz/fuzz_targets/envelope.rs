//! Message envelopes as a service receives them from any client, and the
//! storage protocol's request inside them. The hand-written decoder gives
//! the outcome of the derived `Deserialize` (through the evolving decoder,
//! then the bounds), owned and in place; an envelope that decodes must
//! encode again, by hand, to postcard's bytes of the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pandagen_abi::envelope::{MAX_ACTION_LEN, MAX_MESSAGE_BYTES};
use pandagen_abi::{EnvelopeError, EnvelopeRef, MessageEnvelope};
use pandagen_storage::Request;

/// `MessageEnvelope::decode` as it was before it was written by hand.
fn decode_by_serde(data: &[u8]) -> Result<MessageEnvelope, EnvelopeError> {
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(EnvelopeError::MessageTooLarge {
            len: u32::try_from(data.len()).unwrap_or(u32::MAX),
            max: MAX_MESSAGE_BYTES as u32,
        });
    }
    let envelope: MessageEnvelope = pandagen_abi::evolve::from_bytes(data)?;
    if envelope.action.len() > MAX_ACTION_LEN {
        return Err(EnvelopeError::ActionTooLong {
            len: envelope.action.len() as u32,
            max: MAX_ACTION_LEN as u32,
        });
    }
    Ok(envelope)
}

fuzz_target!(|data: &[u8]| {
    let decoded = MessageEnvelope::decode(data);
    assert_eq!(decoded, decode_by_serde(data));
    assert_eq!(
        EnvelopeRef::decode(data),
        decoded.as_ref().ok().map(MessageEnvelope::borrowed)
    );
    let Ok(envelope) = decoded else {
        return;
    };
    let encoded = envelope.encode().expect("a decoded envelope encodes");
    assert_eq!(encoded, postcard::to_allocvec(&envelope).unwrap());
    assert_eq!(MessageEnvelope::decode(&encoded).as_ref(), Ok(&envelope));
    let _ = envelope.payload.decode::<Request>();
});
