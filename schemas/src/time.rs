//! Points in time as Antares stores and shows them.
//!
//! Internally a [`Timestamp`] is milliseconds since the Unix epoch (cheap to compare,
//! compact in MessagePack). In human-readable formats (JSON for the CLI and HTTP API)
//! it is RFC 3339 UTC with milliseconds, `2026-12-01T02:00:00.000Z`, as the contract says.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The same instant as a chrono value.
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Truncates a chrono value to milliseconds.
    pub fn from_datetime<Tz: TimeZone>(dt: &DateTime<Tz>) -> Self {
        Self(dt.timestamp_millis())
    }

    /// RFC 3339 with milliseconds and `Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// This instant plus a duration (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A time string that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 time (like 2026-12-01T02:00:00Z)")]
pub struct TimestampParseError(pub String);

impl FromStr for Timestamp {
    type Err = TimestampParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|dt| Self::from_datetime(&dt))
            .map_err(|_| TimestampParseError(s.to_string()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_rfc3339_with_millis() {
        let t: Timestamp = "2026-12-01T02:00:00Z".parse().expect("valid");
        assert_eq!(
            serde_json::to_string(&t).expect("json"),
            "\"2026-12-01T02:00:00.000Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2026-12-01T02:00:00.000Z\"").expect("json");
        assert_eq!(back, t);
    }

    #[test]
    fn msgpack_is_an_integer() {
        let t = Timestamp(1_700_000_000_123);
        let bytes = rmp_serde::to_vec_named(&t).expect("encode");
        let back: Timestamp = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, t);
        assert!(bytes.len() <= 9);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!("yesterday".parse::<Timestamp>().is_err());
    }
}
