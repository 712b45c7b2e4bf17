//! Instance ids.
//!
//! An id is a ULID: 26 characters of Crockford base32, sorting by time, safe as a URL
//! path segment, a KV key token and a NATS subject token. Its time part is the instance's
//! `scheduled_at`, so listing keys newest-first lists instances newest-first. Its random
//! part is a hash of what caused the instance, which makes ids deterministic: the same
//! cron fire (job + scheduled time) or the same stored trigger message (stream sequence)
//! always yields the same id, and creating an instance is a KV create that fails when
//! the id exists. That is how a fire or a redelivered trigger never makes two instances.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::time::Timestamp;

/// The id of one instance (one run of a job).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(Ulid);

/// Text that is not an instance id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an instance id (26 characters like 01JD0Z8N6Y3K4B7R2T9QWXYZAB)")]
pub struct InstanceIdError(pub String);

impl InstanceId {
    /// A deterministic id from a scheduled time and a seed naming the cause.
    pub fn derive(scheduled_at: Timestamp, seed: &str) -> Self {
        let ms = u64::try_from(scheduled_at.millis()).unwrap_or(0);
        let hash = xxhash_rust::xxh3::xxh3_128(seed.as_bytes());
        Self(Ulid::from_parts(ms, hash))
    }

    /// The id of a scheduled fire: one per job and scheduled time.
    pub fn for_fire(app: &str, job: &str, scheduled_at: Timestamp) -> Self {
        Self::derive(
            scheduled_at,
            &format!("fire/{app}/{job}/{}", scheduled_at.millis()),
        )
    }

    /// The id of an instance made from a stored trigger message.
    pub fn for_trigger(app: &str, job: &str, stream_sequence: u64, stored_at: Timestamp) -> Self {
        Self::derive(stored_at, &format!("trigger/{app}/{job}/{stream_sequence}"))
    }

    /// A fresh id for a manual trigger (`nonce` must be random).
    pub fn for_manual(now: Timestamp, nonce: u128) -> Self {
        Self::derive(now, &format!("manual/{nonce:x}"))
    }

    /// The time part: the instance's scheduled time.
    pub fn time(&self) -> Timestamp {
        Timestamp(i64::try_from(self.0.timestamp_ms()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for InstanceId {
    type Err = InstanceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 26 {
            return Err(InstanceIdError(s.to_string()));
        }
        Ulid::from_string(s)
            .map(Self)
            .map_err(|_| InstanceIdError(s.to_string()))
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InstanceIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_are_deterministic_and_distinct() {
        let t = Timestamp(1_800_000_000_000);
        assert_eq!(
            InstanceId::for_fire("a", "j", t),
            InstanceId::for_fire("a", "j", t)
        );
        assert_ne!(
            InstanceId::for_fire("a", "j", t),
            InstanceId::for_fire("a", "k", t)
        );
        assert_ne!(
            InstanceId::for_fire("a", "j", t),
            InstanceId::for_fire("a", "j", Timestamp(t.0 + 1000))
        );
        assert_eq!(InstanceId::for_fire("a", "j", t).time(), t);
    }

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = InstanceId::for_trigger("a", "j", 9, Timestamp(1_000));
        let b = InstanceId::for_trigger("a", "j", 1, Timestamp(2_000));
        assert!(a.to_string() < b.to_string());
        let text = a.to_string();
        assert_eq!(text.len(), 26);
        assert!(text.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(text.parse::<InstanceId>().expect("parse"), a);
        assert!("nope".parse::<InstanceId>().is_err());
        assert!("a.b.c".parse::<InstanceId>().is_err());
        let json = serde_json::to_string(&a).expect("json");
        assert_eq!(json, format!("\"{a}\""));
    }
}
