//! Creating and updating every stream and bucket.
//!
//! Idempotent: running it again with the same options changes nothing; with other
//! options (replicas, retention) it updates what the server allows to be updated.
//! Work queues (triggers, shard items, results) keep a message until it is acked, with
//! no age limit, so nothing is dropped while no one consumes. Logs and history expire
//! after their retention. Leases, worker and scheduler heartbeats use per-message TTLs
//! (server >= 2.11), so an entry disappears when its writer stops renewing it.

use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use antares_schemas::limits::MAX_JOB_VERSIONS;

use crate::connect::Nats;
use crate::error::{NatsError, Result};

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
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            log_retention: Duration::from_secs(7 * 24 * 3600),
            log_max_bytes: 0,
            memory: false,
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
/// Largest alarm delivery queue: a publisher past it gets an error (the alarm event
/// still goes out), nothing queued is dropped.
pub const ALARMS_MAX_BYTES: i64 = 64 << 20;
/// How long a day's counts are kept.
pub const STATS_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// What provisioning did, for the CLI to print.
#[derive(Clone, Debug, Default)]
pub struct ProvisionReport {
    /// Streams created or updated.
    pub streams: Vec<String>,
    /// Buckets created or updated.
    pub buckets: Vec<String>,
}

/// Creates or updates every stream and bucket.
pub async fn provision(nats: &Nats, opts: &ProvisionOptions) -> Result<ProvisionReport> {
    if opts.replicas == 0 || opts.replicas > 5 {
        return Err(NatsError::Config(format!(
            "--replicas {}: use 1 (single node) to 5",
            opts.replicas
        )));
    }
    let t = &nats.topo;
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
    let streams = vec![
        work_queue(t.triggers_stream(), t.triggers_stream_subjects()),
        work_queue(t.shards_stream(), t.shards_stream_subjects()),
        work_queue(t.results_stream(), t.results_stream_subjects()),
        stream::Config {
            max_bytes: ALARMS_MAX_BYTES,
            discard: DiscardPolicy::New,
            ..work_queue(t.alarms_stream(), t.alarms_stream_subjects())
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
    let bucket = |name: String, history: i64, max_age: Duration, ttl_markers: bool| kv::Config {
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
    Ok(report)
}
