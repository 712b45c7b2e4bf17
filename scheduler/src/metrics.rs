//! Prometheus metrics of a scheduler: fires and how late they were, instances by
//! outcome, shard durations, the depth of the shard work queue and of the results
//! backlog, and which partitions it leads.
//!
//! The leader's loop only bumps counters and observes histograms (atomic operations, no
//! I/O). Queue depth and backlog are sampled by [`sample`] on its own task from the
//! streams' state, so reading them never costs the loop a round trip. Labels are fixed
//! sets (trigger kinds, statuses, partition numbers): no job names or ids.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use antares_nats::Nats;
use antares_schemas::Timestamp;
use antares_schemas::instance::{InstanceStatus, TriggerKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How often queue depth and results backlog are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: u32,
}

fn lateness_histogram() -> Histogram {
    // 0.5 ms to about 70 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 9 hours.
    Histogram::new(exponential_buckets(0.001, 2.5, 19))
}

/// A scheduler's metrics. Cheap to share: every field is an `Arc` inside.
#[derive(Debug)]
pub struct SchedulerMetrics {
    registry: Registry,
    fires: Family<TriggerLabels, Counter>,
    lateness: Histogram,
    instances: Family<StatusLabels, Counter>,
    shard_durations: Histogram,
    queue_depth: Gauge<i64, AtomicI64>,
    results_backlog: Gauge<i64, AtomicI64>,
    leading: Family<PartitionLabels, Gauge<i64, AtomicI64>>,
}

impl SchedulerMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("antares_scheduler");
        let fires = Family::<TriggerLabels, Counter>::default();
        let lateness = lateness_histogram();
        let instances = Family::<StatusLabels, Counter>::default();
        let shard_durations = duration_histogram();
        let queue_depth = Gauge::<i64, AtomicI64>::default();
        let results_backlog = Gauge::<i64, AtomicI64>::default();
        let leading = Family::<PartitionLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "fires",
            "Scheduled slots fired (an instance created for each), by trigger",
            fires.clone(),
        );
        registry.register(
            "fire_lateness_seconds",
            "How late a scheduled slot's instance was created, after its slot time",
            lateness.clone(),
        );
        registry.register(
            "instances_ended",
            "Instances that reached a final status, by status",
            instances.clone(),
        );
        registry.register(
            "shard_duration_seconds",
            "How long shards ran on their worker, from start to outcome",
            shard_durations.clone(),
        );
        registry.register(
            "shard_queue_depth",
            "Shard items queued for workers and not yet acknowledged (all apps)",
            queue_depth.clone(),
        );
        registry.register(
            "results_backlog",
            "Worker reports stored and not yet folded into their instances",
            results_backlog.clone(),
        );
        registry.register(
            "leading",
            "1 for each partition this scheduler leads now, 0 for one it led before",
            leading.clone(),
        );
        Self {
            registry,
            fires,
            lateness,
            instances,
            shard_durations,
            queue_depth,
            results_backlog,
            leading,
        }
    }

    /// A scheduled slot fired at `at`.
    pub fn fired(&self, trigger: TriggerKind, slot: Timestamp, at: Timestamp) {
        self.fires
            .get_or_create(&TriggerLabels {
                trigger: trigger_name(trigger),
            })
            .inc();
        #[allow(clippy::cast_precision_loss)]
        let late = at.since(slot).max(0) as f64 / 1000.0;
        self.lateness.observe(late);
    }

    /// An instance reached a final status.
    pub fn ended(&self, status: InstanceStatus) {
        self.instances
            .get_or_create(&StatusLabels {
                status: status_name(status),
            })
            .inc();
    }

    /// A shard ran from `started` to `finished`.
    pub fn shard_ran(&self, started: Timestamp, finished: Timestamp) {
        #[allow(clippy::cast_precision_loss)]
        let took = finished.since(started).max(0) as f64 / 1000.0;
        self.shard_durations.observe(took);
    }

    /// Whether this scheduler leads `partition` now.
    pub fn set_leading(&self, partition: u32, leads: bool) {
        self.leading
            .get_or_create(&PartitionLabels { partition })
            .set(i64::from(leads));
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn trigger_name(t: TriggerKind) -> &'static str {
    match t {
        TriggerKind::Cron => "cron",
        TriggerKind::Every => "every",
        TriggerKind::At => "at",
        TriggerKind::Manual => "manual",
        TriggerKind::Event => "event",
        TriggerKind::Child => "child",
        TriggerKind::Misfire => "misfire",
        TriggerKind::Backfill => "backfill",
    }
}

fn status_name(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Pending => "pending",
        InstanceStatus::Running => "running",
        InstanceStatus::Success => "success",
        InstanceStatus::Failed => "failed",
        InstanceStatus::Cancelled => "cancelled",
        InstanceStatus::TimedOut => "timed_out",
        InstanceStatus::Skipped => "skipped",
    }
}

/// Samples the shard queue's depth and the results backlog every [`SAMPLE_EVERY`]
/// until dropped (run it on its own task). A stream that cannot be read keeps its last
/// value and is tried again at the next sample.
pub async fn sample(nats: Nats, metrics: Arc<SchedulerMetrics>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shards = nats.topo.shards_stream();
    let results = nats.topo.results_stream();
    loop {
        tick.tick().await;
        if let Some(n) = stream_messages(&nats, &shards).await {
            metrics.queue_depth.set(n);
        }
        if let Some(n) = stream_messages(&nats, &results).await {
            metrics.results_backlog.set(n);
        }
    }
}

async fn stream_messages(nats: &Nats, name: &str) -> Option<i64> {
    let mut stream = nats.stream(name).await.ok()?;
    let info = stream.info().await.ok()?;
    i64::try_from(info.state.messages).ok()
}
