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
pub mod process;
pub mod provision;
pub mod queue;
pub mod server;
pub mod wait;

pub use async_nats;
pub use connect::{ConnectOptions, Nats};
pub use error::NatsError;

/// The current time, as Antares records it.
pub fn now() -> antares_schemas::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    antares_schemas::Timestamp(ms)
}
