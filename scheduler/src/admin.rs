//! What operators do: apps, jobs, triggers and backfills, cancels, queries, logs, the
//! cluster view, and the dashboard's numbers.
//!
//! [`Admin`] is what the CLI and the console's HTTP API call. It needs NATS and the
//! provisioned buckets, never a running scheduler: a trigger or a cancel is a durable
//! JetStream message that the leading scheduler picks up whenever it runs. Every
//! operation returns the records of [`antares_schemas`] (the JSON the API shows) or a
//! [`SchedulerError`] whose message says what to do about it.
//!
//! Writes are revision-checked: a pause that races with an `apply` is refused rather
//! than silently undoing it (and retried once re-read, where that is safe).

use antares_nats::Nats;
use antares_nats::connect::Buckets;
use antares_schemas::audit::{Actor, Via};
use std::collections::{BTreeSet, HashMap};

use antares_nats::kv;
use async_nats::jetstream::kv::{Operation, Store};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::SchedulerError;
use crate::store::InstanceStore;

mod apps;
mod audit;
mod backfill;
mod cluster;
mod instances;
mod job_pages;
mod jobs;
mod logs;
mod stats;
mod triggers;
mod versions;

pub use backfill::{BackfillAction, BackfillSlot, MAX_BACKFILL_SLOTS};
pub use cluster::{MAX_PREVIEW, cron_next};
pub use job_pages::{DEFAULT_JOB_PAGE, JobNames, JobPage, JobPageQuery, NamePage};
pub use logs::LogLines;
pub use stats::{MAX_STATS_DAYS, last_days};
pub use triggers::Triggered;

/// How many times a read-modify-write is retried when someone else wrote in between.
const RMW_ATTEMPTS: usize = 5;

/// The control operations, over one NATS connection.
#[derive(Clone, Debug)]
pub struct Admin {
    nats: Nats,
    buckets: std::sync::Arc<Buckets>,
    store: InstanceStore,
    actor: Actor,
}

/// What `apply_jobs` did to one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    /// The job did not exist.
    Created,
    /// The job existed with a different spec.
    Updated,
    /// The job existed with exactly this spec.
    Unchanged,
}

impl ApplyAction {
    /// `created`, `updated` or `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One job of an `apply`, and what happened to it (`job apply --json` items).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
    /// What was done.
    pub action: ApplyAction,
}

impl Admin {
    /// Opens every bucket; fails with a message to run `antares provision` when NATS has
    /// not been provisioned.
    pub async fn open(nats: &Nats) -> Result<Self, SchedulerError> {
        Ok(Self {
            nats: nats.clone(),
            buckets: nats.buckets().await?,
            store: InstanceStore::open(nats).await?,
            actor: Actor {
                name: "unknown".to_string(),
                via: Via::Cli,
                host: None,
            },
        })
    }

    /// The same operations, recorded (audit log, job versions) as made by `actor`.
    pub fn acting_as(&self, actor: Actor) -> Self {
        Self {
            actor,
            ..self.clone()
        }
    }

    /// Who the changes are recorded as made by.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The connection.
    pub fn nats(&self) -> &Nats {
        &self.nats
    }
}

/// A key's last entry: its value when it holds one, and the revision a write that
/// replaces it must expect (0 when it never existed; a delete marker's otherwise).
pub(crate) struct Current {
    /// The value, when the key holds one.
    pub value: Option<Bytes>,
    /// The revision to expect.
    pub revision: u64,
}

/// Reads a key's last entry.
pub(crate) async fn current(store: &Store, key: &str) -> Result<Current, SchedulerError> {
    let entry = store.entry(key).await.map_err(|e| {
        SchedulerError::Nats(antares_nats::NatsError::op(
            format!("read {}/{key}", store.name),
            e,
        ))
    })?;
    Ok(match entry {
        None => Current {
            value: None,
            revision: 0,
        },
        Some(e) if e.operation == Operation::Put => Current {
            revision: e.revision,
            value: Some(e.value),
        },
        Some(e) => Current {
            value: None,
            revision: e.revision,
        },
    })
}

/// Below this many keys, [`current_many`] reads key by key (pipelined).
const SCAN_FROM: usize = 256;
/// [`current_many`] scans when the apps' keys are at most this many times those asked
/// for: a scanned key costs a small fraction of a GET's round trip.
const SCAN_RATIO: u64 = 8;
/// GETs in flight at once.
const READ_WINDOW: usize = 512;
/// App scans in flight at once.
const SCAN_WINDOW: usize = 4;

/// The last entry of many job keys (`<app>.<job>`) of `store`, in order: for many keys,
/// one scan per app (when the bucket is not much bigger than what is asked), else
/// pipelined GETs. Never a round trip per key one after another.
pub(crate) async fn current_many(
    nats: &Nats,
    store: &Store,
    keys: &[String],
) -> Result<Vec<Current>, SchedulerError> {
    if keys.len() >= SCAN_FROM && worth_scanning(store, keys.len()).await {
        let apps: BTreeSet<&str> = keys
            .iter()
            .filter_map(|k| k.split_once('.').map(|(app, _)| app))
            .collect();
        // The futures are made first, so the stream holds no closure over borrowed
        // items (callers' futures must be `Send` for any lifetime).
        let scans: Vec<_> = apps
            .into_iter()
            .map(|app| {
                let filter = nats.topo.job_key(app, "*");
                async move { kv::scan_last(nats, store, &filter).await }
            })
            .collect();
        let scans: Vec<Vec<kv::Last>> = futures::stream::iter(scans)
            .buffer_unordered(SCAN_WINDOW)
            .try_collect()
            .await?;
        let mut found: HashMap<String, kv::Last> = scans
            .into_iter()
            .flatten()
            .map(|last| (last.key.clone(), last))
            .collect();
        return Ok(keys
            .iter()
            .map(|k| match found.remove(k) {
                Some(last) => Current {
                    value: last.value,
                    revision: last.revision,
                },
                None => Current {
                    value: None,
                    revision: 0,
                },
            })
            .collect());
    }
    let reads: Vec<_> = keys.iter().map(|key| current(store, key)).collect();
    futures::stream::iter(reads)
        .buffered(READ_WINDOW)
        .try_collect()
        .await
}

/// Whether the bucket holds few enough keys that scanning it beats reading `wanted`.
async fn worth_scanning(store: &Store, wanted: usize) -> bool {
    let mut stream = store.stream.clone();
    match stream.info().await {
        Ok(info) => info.state.subjects_count <= SCAN_RATIO.saturating_mul(wanted as u64),
        // Unknown: reading key by key is right whatever the size.
        Err(_) => false,
    }
}
