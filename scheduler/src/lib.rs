//! The Antares scheduler, and the control operations the CLI and console use.
//!
//! A scheduler process ([`runner`]) holds the leases of its fair share of the partitions
//! of the jobs (standby until it can take one, [`leader`]), and for each partition it
//! leads, one loop owns all of that partition's leader state (`leading`). For the jobs
//! of the partitions it leads it:
//! - plans and fires their schedules with their misfire policy ([`firing`], `schedules`);
//! - turns durable triggers from `<ns>.trigger.<app>.<job>` into instances (`triggers`);
//! - claims each instance and admits it by its overlap policy ([`overlap`]), then
//!   publishes one work-queue message per shard item in the background (`launch`);
//! - folds worker reports and cancels into instance state through the pure state
//!   machine, in batches (`results`), and carries out what it asks (`effects`);
//! - keeps every shard going: retries due, attempts past their timeout, shards of lost
//!   workers (`rescue`); finishes ended instances: children, history, the next waiting
//!   instance (`finish`); completes what a previous leader left (`recover`);
//! - emits lifecycle events ([`events`]) and raises alarms, which every scheduler
//!   process delivers ([`alarm`]).
//!
//! [`store`] is where instances live; [`admin`] holds what operators do (apps, jobs,
//! triggers, backfill, cancels, queries, logs, cluster); it needs no running scheduler,
//! only NATS.

pub mod admin;
pub mod alarm;
pub mod error;
pub mod events;
pub mod firing;
pub mod jobs;
pub mod leader;
mod leading;
pub mod metrics;
pub mod overlap;
pub mod routing;
pub mod runner;
pub mod store;

pub use error::SchedulerError;
pub use runner::{SchedulerOptions, run};
