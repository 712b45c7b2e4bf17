//! Creating and updating every stream and bucket.
//!
//! Idempotent: running it again with the same options changes nothing; with other
//! options (replicas, retention) it updates what the server allows to be updated.
//! Work queues (triggers, shard items, results) keep a message until it is acked, with
//! no age limit, so nothing is dropped while no one consumes. Logs and history expire
//! after their retention. Leases, worker and scheduler heartbeats use per-message TTLs
//! (server >= 2.11), so an entry disappears when its writer stops renewing it.
//!
//! The number of partitions is stored here, in the cluster settings, and nowhere else:
//! every process reads it at connect. The trigger and results streams insert each
//! message's partition into its stored subject (a subject transform), and each
//! partition's leader consumes only its own. Changing the number re-hashes every job,
//! so it is refused while a scheduler runs or a trigger or report waits in a queue
//! (those were stored under the old split); with everything stopped and drained it is
//! safe, since what a scheduler keeps (instances, cursors, claims) is keyed by app and
//! job, never by partition. Consumers of partitions that no longer exist are deleted.

use std::time::Duration;

use async_nats::jetstream::kv as jskv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use antares_schemas::Topology;
use antares_schemas::cluster::ClusterSettings;
use antares_schemas::limits::{MAX_JOB_VERSIONS, MAX_PARTITIONS};
use futures::TryStreamExt;

use crate::codec;
use crate::connect::Nats;
use crate::error::{NatsError, Result};
use crate::kv;

/// What to provision with.
#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// Replicas of every stream and bucket (1 for a single node, 3 on a cluster).
    pub replicas: usize,
    /// How long finished instances are kept.
    pub history_retention: Duration,
    /// How long log lines are kept.
    pub log_retention: Duration,
    /// Largest log stream in bytes (oldest lines go first), 0 for no limit.
    pub log_max_bytes: i64,
    /// Keep everything in memory instead of files (tests and benchmarks only).
    pub memory: bool,
    /// How many partitions the jobs are split into; `None` keeps the stored number
    /// (1 on a first provisioning).
    pub partitions: Option<u32>,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            log_retention: Duration::from_secs(7 * 24 * 3600),
            log_max_bytes: 0,
            memory: false,
            partitions: None,
        }
    }
}

/// De-duplication window of the work queues: long enough to cover a scheduler
/// republishing shard items after a takeover.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long the audit log keeps a change.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest audit log (oldest entries go first).
pub const AUDIT_MAX_BYTES: i64 = 1 << 30;
/// How long a day's counts are kept.
pub const STATS_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// What provisioning did, for the CLI to print.
#[derive(Clone, Debug, Default)]
pub struct ProvisionReport {
    /// Streams created or updated.
    pub streams: Vec<String>,
    /// Buckets created or updated.
    pub buckets: Vec<String>,
    /// How many partitions the jobs are split into.
    pub partitions: u32,
}

/// Creates or updates every stream and bucket.
pub async fn provision(nats: &Nats, opts: &ProvisionOptions) -> Result<ProvisionReport> {
    if opts.replicas == 0 || opts.replicas > 5 {
        return Err(NatsError::Config(format!(
            "--replicas {}: use 1 (single node) to 5",
            opts.replicas
        )));
    }
    let stored = nats.cluster_settings().await?;
    let partitions = opts
        .partitions
        .or(stored.as_ref().map(|s| s.partitions))
        .unwrap_or(1);
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(NatsError::Config(format!(
            "--partitions {partitions}: use 1 to {MAX_PARTITIONS}"
        )));
    }
    if stored.as_ref().map(|s| s.partitions) != Some(partitions) {
        check_resplit(nats, stored.map_or(1, |s| s.partitions), partitions).await?;
    }
    let topo = nats.topo.clone().with_partitions(partitions);
    let t = &topo;
    let storage = if opts.memory {
        StorageType::Memory
    } else {
        StorageType::File
    };
    let work_queue = |name: String, subjects: Vec<String>| stream::Config {
        name,
        subjects,
        retention: RetentionPolicy::WorkQueue,
        storage,
        num_replicas: opts.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    let transform = |(source, destination): (String, String)| {
        Some(stream::SubjectTransform {
            source,
            destination,
        })
    };
    let streams = vec![
        stream::Config {
            subject_transform: transform(t.triggers_transform()),
            ..work_queue(t.triggers_stream(), t.triggers_stream_subjects())
        },
        work_queue(t.shards_stream(), t.shards_stream_subjects()),
        stream::Config {
            subject_transform: transform(t.results_transform()),
            ..work_queue(t.results_stream(), t.results_stream_subjects())
        },
        stream::Config {
            name: t.logs_stream(),
            subjects: t.logs_stream_subjects(),
            retention: RetentionPolicy::Limits,
            storage,
            num_replicas: opts.replicas,
            max_age: opts.log_retention,
            max_bytes: if opts.log_max_bytes > 0 {
                opts.log_max_bytes
            } else {
                -1
            },
            discard: DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(60).min(opts.log_retention),
            ..Default::default()
        },
        stream::Config {
            name: t.audit_stream(),
            subjects: t.audit_stream_subjects(),
            retention: RetentionPolicy::Limits,
            storage,
            num_replicas: opts.replicas,
            max_age: AUDIT_RETENTION,
            max_bytes: AUDIT_MAX_BYTES,
            discard: DiscardPolicy::Old,
            ..Default::default()
        },
    ];
    let mut report = ProvisionReport::default();
    for cfg in streams {
        let name = cfg.name.clone();
        nats.js
            .create_or_update_stream(cfg)
            .await
            .map_err(|e| NatsError::op(format!("provision stream {name}"), e))?;
        report.streams.push(name);
    }

    let kv_storage = storage;
    let bucket = |name: String, history: i64, max_age: Duration, ttl_markers: bool| jskv::Config {
        bucket: name,
        history,
        max_age,
        storage: kv_storage,
        num_replicas: opts.replicas,
        limit_markers: ttl_markers.then_some(Duration::from_secs(60)),
        ..Default::default()
    };
    let forever = Duration::ZERO;
    let buckets = vec![
        bucket(t.apps_bucket(), 1, forever, false),
        bucket(t.jobs_bucket(), 10, forever, false),
        bucket(t.instances_bucket(), 1, forever, true),
        bucket(t.history_bucket(), 1, opts.history_retention, false),
        bucket(t.leases_bucket(), 1, forever, true),
        bucket(t.workers_bucket(), 1, forever, true),
        bucket(t.schedulers_bucket(), 1, forever, true),
        bucket(t.cursors_bucket(), 1, forever, false),
        // Instance ids stay claimed as long as history keeps instances (trigger keys
        // carry their own shorter TTL), so no id is ever made twice.
        bucket(t.claims_bucket(), 1, opts.history_retention, true),
        bucket(t.versions_bucket(), MAX_JOB_VERSIONS, forever, false),
        // Index pages are rewritten while they fill, so a page lives as long as the
        // newest instance it lists.
        bucket(t.index_bucket(), 1, opts.history_retention, false),
        bucket(t.jobstate_bucket(), 1, forever, false),
        bucket(t.stats_bucket(), 1, STATS_RETENTION, false),
        bucket(t.users_bucket(), 1, forever, false),
        bucket(t.tokens_bucket(), 1, forever, false),
        bucket(t.sessions_bucket(), 1, forever, true),
        bucket(t.settings_bucket(), 1, forever, false),
    ];
    for cfg in buckets {
        let name = cfg.bucket.clone();
        nats.js.create_or_update_key_value(cfg).await.map_err(|e| {
            NatsError::op(
                format!("provision bucket {name} (needs nats-server >= 2.11 with JetStream)"),
                e,
            )
        })?;
        report.buckets.push(name);
    }
    let settings = nats.bucket(&t.settings_bucket()).await?;
    let value = codec::encode("cluster settings", &ClusterSettings { partitions })?;
    settings
        .put(t.cluster_settings_key(), value)
        .await
        .map_err(|e| NatsError::op("store the cluster settings", e))?;
    drop_stale_consumers(nats, t).await?;
    report.partitions = partitions;
    Ok(report)
}

/// Refuses to split the jobs anew while that could lose or double anything: a live
/// scheduler leads by the old split, and a queued trigger or report is stored under it.
async fn check_resplit(nats: &Nats, from: u32, to: u32) -> Result<()> {
    let t = &nats.topo;
    let what = format!("--partitions {to} (stored: {from})");
    if let Ok(schedulers) = nats.js.get_key_value(t.schedulers_bucket()).await {
        let live = kv::scan(nats, &schedulers, ">", true).await?;
        if !live.is_empty() {
            let ids: Vec<String> = live.into_iter().map(|s| s.key).collect();
            return Err(NatsError::Config(format!(
                "{what}: stop every scheduler first (running: {}); the jobs cannot be split anew while one leads",
                ids.join(", ")
            )));
        }
    }
    for name in [t.triggers_stream(), t.results_stream()] {
        let Ok(mut stream) = nats.js.get_stream(&name).await else {
            continue;
        };
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::op(format!("read stream {name}"), e))?;
        if info.state.messages > 0 {
            return Err(NatsError::Config(format!(
                "{what}: stream {name} still holds {} message(s) stored under the old split; run the schedulers until it is empty, stop them, then provision again",
                info.state.messages
            )));
        }
    }
    Ok(())
}

/// Deletes the scheduler consumers of partitions that no longer exist (and the single
/// consumer of versions before partitions): on a work queue they would overlap the
/// current ones.
async fn drop_stale_consumers(nats: &Nats, t: &Topology) -> Result<()> {
    for (name, current) in [
        (
            t.triggers_stream(),
            Topology::triggers_consumer as fn(&Topology, u32) -> String,
        ),
        (t.results_stream(), Topology::results_consumer),
    ] {
        let stream = nats.stream(&name).await?;
        let names: Vec<String> = stream
            .consumer_names()
            .try_collect()
            .await
            .map_err(|e| NatsError::op(format!("list consumers of {name}"), e))?;
        let keep: Vec<String> = (0..t.partitions()).map(|p| current(t, p)).collect();
        for c in names {
            if t.is_scheduler_consumer(&c) && !keep.contains(&c) {
                stream
                    .delete_consumer(&c)
                    .await
                    .map_err(|e| NatsError::op(format!("delete consumer {c} of {name}"), e))?;
            }
        }
    }
    Ok(())
}
