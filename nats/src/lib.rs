//! Everything Antares does with NATS itself.
//!
//! This is the only crate that speaks JetStream. Other crates get typed operations:
//! - [`connect`]: URLs, credentials, user/password, TLS;
//! - [`provision`]: every stream and bucket, idempotently, with the chosen replicas;
//! - [`codec`]: MessagePack with named fields for our own messages, JSON for people;
//! - [`kv`]: revision-checked writes (the fencing every scheduler write relies on),
//!   per-message TTLs, and scans of keys by subject filter;
//! - [`lease`]: the lease a scheduler holds to lead a partition;
//! - [`live_keys`]: a bucket's keys kept sorted in memory by a watcher, for listings by name;
//! - [`queue`]: pulling from work queues and settling messages (ack, nak, progress, term);
//! - [`server`]: a local nats-server process for `antares dev`, benchmarks and tests;
//! - [`process`]: host, default id and stop signals of an Antares process.

pub mod codec;
pub mod connect;
pub mod error;
pub mod kv;
pub mod lease;
pub mod live_keys;
pub mod permissions;
pub mod process;
pub mod provision;
pub mod queue;
pub mod server;
pub mod wait;

pub use async_nats;
pub use connect::{ConnectOptions, Denials, Nats};
pub use error::NatsError;

/// The current time, as Antares records it.
pub fn now() -> antares_schemas::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    antares_schemas::Timestamp(ms)
}

/// How long from now until `at` by this host's clock, finer than a millisecond (zero
/// once it has passed). A wait worked out from [`now`], which drops the fraction of the
/// current millisecond, would end up to a millisecond after `at`, before the timer's own
/// rounding adds another.
pub fn until(at: antares_schemas::Timestamp) -> std::time::Duration {
    let Ok(at_ms) = u64::try_from(at.0) else {
        return std::time::Duration::ZERO;
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms);
    at.duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{now, until};
    use antares_schemas::Timestamp;
    use std::time::Duration;

    #[test]
    fn a_wait_until_a_time_keeps_the_fraction_of_the_current_millisecond() {
        assert_eq!(until(Timestamp(now().0 - 5)), Duration::ZERO);
        assert_eq!(until(Timestamp(-1)), Duration::ZERO);
        // The next millisecond is less than a whole one away (a wait from `now` alone
        // would say a whole one).
        let next = until(Timestamp(now().0 + 1));
        assert!(next <= Duration::from_millis(1), "{next:?}");
        let later = until(Timestamp(now().0 + 1000));
        assert!(
            later > Duration::ZERO && later <= Duration::from_secs(1),
            "{later:?}"
        );
    }
}
