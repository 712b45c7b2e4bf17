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
use async_nats::jetstream::kv::{Entry, Operation, Store};
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
    pub value: Option<Entry>,
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
            value: Some(e),
        },
        Some(e) => Current {
            value: None,
            revision: e.revision,
        },
    })
}
