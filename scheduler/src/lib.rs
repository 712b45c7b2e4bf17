//! The Antares scheduler, and the control operations the CLI and console use.
//!
//! A scheduler process holds the lease of a partition of the jobs (standby until it can
//! take one), and for the jobs of the partitions it leads it:
//! - fires their schedules (cron, `every`, `at`) into instances ([`firing`]),
//! - turns durable triggers from `<ns>.trigger.<app>.<job>` into instances ([`triggers`]),
//! - publishes one work-queue message per shard item ([`launch`]),
//! - folds worker reports into instance state through the pure state machine and moves
//!   ended instances into history ([`results`]),
//! - emits lifecycle events ([`events`]).
//!
//! [`admin`] holds what operators do (apps, jobs, triggers, cancels, queries, logs,
//! cluster); it needs no running scheduler, only NATS.

pub mod admin;
mod effects;
pub mod error;
pub mod events;
mod finish;
pub mod firing;
pub mod jobs;
mod launch;
pub mod leader;
mod leading;
pub mod overlap;
mod recover;
mod rescue;
mod results;
pub mod runner;
mod schedules;
pub mod store;
mod triggers;

pub use error::SchedulerError;
pub use runner::{SchedulerOptions, run};
