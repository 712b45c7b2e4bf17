//! Antares data: everything that crosses a process boundary or is stored, and the names
//! of where it goes.
//!
//! This crate is pure data (no I/O, no async runtime) so the console's WebAssembly app
//! shares it with the servers. It holds:
//! - [`topology`]: every subject, stream, consumer, bucket and key name;
//! - [`spec`], [`schedule`], [`cron`]: job specs as users write them, validated;
//! - [`instance`], [`app`], [`cluster`]: stored records and their JSON views;
//! - [`messages`]: what schedulers, workers and integrations send each other;
//! - [`machine`]: the instance/shard state machine as a pure function;
//! - [`alarm`]: alarms raised, what webhooks receive, what is queued for delivery;
//! - [`limits`]: the bounds on sizes, retries and waits;
//! - [`access`], [`audit`], [`stats`]: the console's users and tokens, the audit log and
//!   job versions, and the counts its dashboard shows.

pub mod access;
pub mod alarm;
pub mod app;
pub mod audit;
pub mod cluster;
pub mod cron;
pub mod ids;
pub mod instance;
pub mod limits;
pub mod machine;
pub mod messages;
pub mod names;
pub mod schedule;
pub mod spec;
pub mod stats;
pub mod time;
pub mod topology;

pub use ids::InstanceId;
pub use time::Timestamp;
pub use topology::Topology;
