//! Encoding of messages and stored values.
//!
//! Our own messages and records are MessagePack with named fields (rmp-serde's
//! `to_vec_named`), so a field added later does not break an older reader. What people
//! and other programs read is JSON.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{NatsError, Result};

/// MessagePack with named fields.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Bytes> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| NatsError::Encode {
            what,
            message: e.to_string(),
        })
}

/// Reads MessagePack written by [`encode`].
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| NatsError::Decode {
        what,
        message: e.to_string(),
    })
}

/// JSON, for events and other messages people read.
pub fn encode_json<T: Serialize>(what: &'static str, value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| NatsError::Encode {
            what,
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::messages::Control;
    use antares_schemas::{InstanceId, Timestamp};

    #[test]
    fn round_trip_and_garbage() {
        let c = Control::Cancel {
            instance: InstanceId::for_fire("a", "b", Timestamp(1)),
            at: Timestamp(2),
        };
        let bytes = encode("control", &c).expect("encode");
        assert_eq!(decode::<Control>("control", &bytes).expect("decode"), c);
        let err = decode::<Control>("control", b"\xc1garbage").expect_err("garbage");
        assert!(err.to_string().contains("cannot decode control"));
    }
}
