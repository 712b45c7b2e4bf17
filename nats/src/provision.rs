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

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::DeleteStreamErrorKind;
use async_nats::jetstream::kv as jskv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use antares_schemas::Topology;
use antares_schemas::cluster::ClusterSettings;
use antares_schemas::limits::{MAX_JOB_VERSIONS, MAX_PARTITIONS};
use futures::{StreamExt, TryStreamExt};

use crate::codec;
use crate::connect::Nats;
use crate::error::{NatsError, Result};
use crate::kv;
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
    /// How many partitions the jobs are split into; `None` keeps the stored number
    /// (1 on a first provisioning).
    pub partitions: Option<u32>,
    /// How long the events stream keeps events: `None` leaves it as it is (none on a
    /// first provisioning), zero deletes it.
    pub events_retention: Option<Duration>,
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
            partitions: None,
            events_retention: None,
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

/// Largest events stream (oldest events go first).
pub const EVENTS_MAX_BYTES: i64 = 1 << 30;

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
    /// How many partitions the jobs are split into.
    pub partitions: u32,
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
        max_bytes: opts.queue_max_bytes,
        discard: DiscardPolicy::New,
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
    let mut streams = streams;
    match opts.events_retention {
        Some(age) if !age.is_zero() => streams.push(stream::Config {
            name: t.events_stream(),
            subjects: vec![t.events_filter()],
            retention: RetentionPolicy::Limits,
            storage,
            num_replicas: opts.replicas,
            max_age: age,
            max_bytes: EVENTS_MAX_BYTES,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }),
        Some(_) => match nats.js.delete_stream(t.events_stream()).await {
            Ok(_) => {}
            Err(e)
                if matches!(e.kind(), DeleteStreamErrorKind::JetStream(ref j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {}
            Err(e) => return Err(refused(format!("delete stream {}", t.events_stream()), e)),
        },
        None => {}
    }
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
    let bucket = |name: String, history: i64, max_age: Duration, ttl_markers: bool| jskv::Config {
        bucket: name,
        history,
        max_age,
        storage: kv_storage,
        num_replicas: opts.replicas,
        limit_markers: ttl_markers.then_some(Duration::from_secs(60)),
        ..Default::default()
    };
    let catalog = |name: String, history: i64| jskv::Config {
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
        bucket(t.settings_bucket(), 1, forever, false),
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
    let settings = nats.bucket(&t.settings_bucket()).await?;
    let value = codec::encode("cluster settings", &ClusterSettings { partitions })?;
    settings
        .put(t.cluster_settings_key(), value)
        .await
        .map_err(|e| NatsError::op("store the cluster settings", e))?;
    drop_stale_consumers(nats, t).await?;
    report.partitions = partitions;
    report.consumers = app_consumers(nats).await?;
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
        let mut keep: Vec<String> = (0..t.partitions()).map(|p| current(t, p)).collect();
        if name == t.results_stream() {
            keep.extend((0..t.partitions()).map(|p| t.urgent_results_consumer(p)));
        }
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
