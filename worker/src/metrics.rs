//! Prometheus metrics of a worker: its slots (how many, how many in use), the shards it
//! ran by outcome and kind of job, and how long they ran.
//!
//! Labels are bounded: outcomes and job kinds are fixed sets (no job names or ids), so a
//! worker running a hundred thousand jobs still has a handful of series.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use antares_schemas::messages::{Execution, ShardOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    outcome: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 9 hours.
    Histogram::new(exponential_buckets(0.001, 2.5, 19))
}

/// A worker's metrics; [`crate::Worker::metrics`] gives them, rendered as text.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    shards: Family<ShardLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    slots: Gauge,
    slots_in_use: Gauge<i64, AtomicI64>,
}

impl WorkerMetrics {
    pub(crate) fn new(slots: usize) -> Self {
        let mut registry = Registry::with_prefix("antares_worker");
        let shards = Family::<ShardLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let slot_gauge = Gauge::default();
        slot_gauge.set(i64::try_from(slots).unwrap_or(i64::MAX));
        let slots_in_use = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "shards",
            "Shards this worker ran to an end, by outcome and kind of job",
            shards.clone(),
        );
        registry.register(
            "shard_duration_seconds",
            "How long shards ran, from start to outcome, by kind of job",
            durations.clone(),
        );
        registry.register(
            "slots",
            "Shards this worker runs at once at most (--concurrency)",
            slot_gauge.clone(),
        );
        registry.register(
            "slots_in_use",
            "Shards running on this worker now",
            slots_in_use.clone(),
        );
        Self {
            registry,
            shards,
            durations,
            slots: slot_gauge,
            slots_in_use,
        }
    }

    /// A shard started running.
    pub(crate) fn started(&self) {
        self.slots_in_use.inc();
    }

    /// A shard stopped running (whatever happened to it).
    pub(crate) fn stopped(&self) {
        self.slots_in_use.dec();
    }

    /// A shard ran to an outcome.
    pub(crate) fn ended(&self, exec: &Execution, outcome: &ShardOutcome, took: Duration) {
        let kind = kind_of(exec);
        let outcome = match outcome {
            ShardOutcome::Success => "success",
            ShardOutcome::Failed { .. } => "failed",
            ShardOutcome::TimedOut { .. } => "timed_out",
            ShardOutcome::Cancelled => "cancelled",
            ShardOutcome::Later => "later",
        };
        self.shards
            .get_or_create(&ShardLabels { outcome, kind })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// The slots this worker has.
    pub fn slots(&self) -> i64 {
        self.slots.get()
    }

    /// Shards running now.
    pub fn slots_in_use(&self) -> i64 {
        self.slots_in_use.get()
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn kind_of(exec: &Execution) -> &'static str {
    match exec {
        Execution::Plugin { .. } => "plugin",
        Execution::Command { .. } | Execution::Script { .. } => "script",
        Execution::Http { .. } => "http",
    }
}
