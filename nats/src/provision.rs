//! Creating and updating every stream and bucket.
//!
//! Idempotent: running it again with the same options changes nothing; with other
//! options (replicas, retention, limits) it updates what the server allows to be
//! updated, keeping every message.
//!
//! Everything is bounded, so garbage or a runaway publisher cannot fill the disk:
//! - work queues (triggers, shard items, results) keep a message until it is acked,
//!   with no age limit, up to `queue_max_bytes` each, beyond which the server refuses
//!   new messages (discard-new: the publisher gets an error, nothing queued is dropped);
//! - logs and history expire after their retention (logs also by bytes if asked);
//! - the catalog buckets (apps, jobs, versions, cursors, job states, users, tokens)
//!   by `catalog_max_bytes`, beyond which writes are refused;
//! - leases, worker and scheduler heartbeats and sessions use per-message TTLs (nats-server
//!   2.11 or newer), so an entry disappears when its writer stops renewing it; claims,
//!   index pages and daily counts expire with their age limit.
//!
//! Existing apps get their shared consumer (see [`crate::queue::app_consumer_spec`]), so
//! workers never need the right to create it.

use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use antares_schemas::limits::MAX_JOB_VERSIONS;

use futures::StreamExt;

use crate::connect::Nats;
use crate::error::{NatsError, Result};
use crate::queue;

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
    /// Largest size of each work queue (triggers, shard items, results) in bytes.
    pub queue_max_bytes: i64,
    /// Largest size of each catalog bucket in bytes.
    pub catalog_max_bytes: i64,
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
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            catalog_max_bytes: DEFAULT_CATALOG_MAX_BYTES,
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
/// How long a day's counts are kept.
pub const STATS_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Default largest size of each work queue: 512 MiB (about a million shard items).
pub const DEFAULT_QUEUE_MAX_BYTES: i64 = 512 << 20;
/// Default largest size of each catalog bucket: 256 MiB.
pub const DEFAULT_CATALOG_MAX_BYTES: i64 = 256 << 20;
/// Smallest byte limit taken (a stream needs room for at least a few messages).
pub const MIN_MAX_BYTES: i64 = 64 << 10;

/// What provisioning did, for the CLI to print.
#[derive(Clone, Debug, Default)]
pub struct ProvisionReport {
    /// Streams created or updated.
    pub streams: Vec<String>,
    /// Buckets created or updated.
    pub buckets: Vec<String>,
    /// Apps whose shared consumer was made.
    pub consumers: Vec<String>,
}

/// Creates or updates every stream and bucket.
pub async fn provision(nats: &Nats, opts: &ProvisionOptions) -> Result<ProvisionReport> {
    if opts.replicas == 0 || opts.replicas > 5 {
        return Err(NatsError::Config(format!(
            "--replicas {}: use 1 (single node) to 5",
            opts.replicas
        )));
    }
    for (flag, v) in [
        ("--queue-max-bytes", opts.queue_max_bytes),
        ("--catalog-max-bytes", opts.catalog_max_bytes),
    ] {
        if v < MIN_MAX_BYTES {
            return Err(NatsError::Config(format!(
                "{flag} {v}: use at least {MIN_MAX_BYTES} bytes"
            )));
        }
    }
    if opts.log_max_bytes != 0 && opts.log_max_bytes < MIN_MAX_BYTES {
        return Err(NatsError::Config(format!(
            "--log-max-bytes {}: use 0 (no limit) or at least {MIN_MAX_BYTES} bytes",
            opts.log_max_bytes
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
        max_bytes: opts.queue_max_bytes,
        discard: DiscardPolicy::New,
        ..Default::default()
    };
    let streams = vec![
        work_queue(t.triggers_stream(), t.triggers_stream_subjects()),
        work_queue(t.shards_stream(), t.shards_stream_subjects()),
        work_queue(t.results_stream(), t.results_stream_subjects()),
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
            .map_err(|e| refused(format!("provision stream {name}"), e))?;
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
    let catalog = |name: String, history: i64| kv::Config {
        max_bytes: opts.catalog_max_bytes,
        ..bucket(name, history, Duration::ZERO, false)
    };
    let forever = Duration::ZERO;
    let buckets = vec![
        catalog(t.apps_bucket(), 1),
        catalog(t.jobs_bucket(), 10),
        bucket(t.instances_bucket(), 1, forever, true),
        bucket(t.history_bucket(), 1, opts.history_retention, false),
        bucket(t.leases_bucket(), 1, forever, true),
        bucket(t.workers_bucket(), 1, forever, true),
        bucket(t.schedulers_bucket(), 1, forever, true),
        catalog(t.cursors_bucket(), 1),
        // Instance ids stay claimed as long as history keeps instances (trigger keys
        // carry their own shorter TTL), so no id is ever made twice.
        bucket(t.claims_bucket(), 1, opts.history_retention, true),
        catalog(t.versions_bucket(), MAX_JOB_VERSIONS),
        // Index pages are rewritten while they fill, so a page lives as long as the
        // newest instance it lists.
        bucket(t.index_bucket(), 1, opts.history_retention, false),
        catalog(t.jobstate_bucket(), 1),
        bucket(t.stats_bucket(), 1, STATS_RETENTION, false),
        catalog(t.users_bucket(), 1),
        catalog(t.tokens_bucket(), 1),
        bucket(t.sessions_bucket(), 1, forever, true),
    ];
    for cfg in buckets {
        let name = cfg.bucket.clone();
        nats.js.create_or_update_key_value(cfg).await.map_err(|e| {
            refused(
                format!("provision bucket {name} (needs nats-server >= 2.11 with JetStream)"),
                e,
            )
        })?;
        report.buckets.push(name);
    }
    report.consumers = app_consumers(nats).await?;
    Ok(report)
}

/// A create refused; when for lack of room, says which limits to change (every byte
/// limit reserves its size in the server's JetStream store).
fn refused(op: String, e: impl Into<async_nats::Error>) -> NatsError {
    let e = e.into();
    if e.to_string().to_ascii_lowercase().contains("insufficient") {
        NatsError::Config(format!(
            "{op}: {e}: the byte limits reserve their size in the server's JetStream store; \
             lower --queue-max-bytes / --catalog-max-bytes or raise the server's \
             max_file_store (max_memory_store)"
        ))
    } else {
        NatsError::op(op, e)
    }
}

/// Makes the shared consumer of every existing app that lacks one (all at once).
async fn app_consumers(nats: &Nats) -> Result<Vec<String>> {
    let apps = nats.bucket(&nats.topo.apps_bucket()).await?;
    let names: Vec<String> = apps
        .keys()
        .await
        .map_err(|e| NatsError::op("list apps", e))?
        .filter_map(|k| async move { k.ok() })
        .collect()
        .await;
    let specs: Vec<_> = names
        .iter()
        .map(|app| queue::app_consumer_spec(&nats.topo, app, queue::DEFAULT_ACK_WAIT))
        .collect();
    futures::stream::iter(specs.iter().map(|s| queue::ensure(nats, s)))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok(names)
}
