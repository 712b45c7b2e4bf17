//! Where instances live: the instances bucket while they run, the history bucket once
//! they have ended.
//!
//! An instance is a summary at `<app>.<job>.<id>` plus its shard records in chunks at
//! `<app>.<job>.<id>.<n>` (see [`antares_schemas::topology::SHARD_CHUNK`]), so a 20,000
//! shard instance is 200 modest values rather than one oversized one, and a batch of
//! results rewrites only the chunks it touched. Every write of a running instance is
//! revision-checked: [`Stored`] remembers the revision of each key it read or wrote.
//!
//! Creating is claim-first ([`write`]): the id is claimed for as long as history keeps
//! instances and the summary is created with "must not exist", so a fire or a
//! redelivered trigger can never make two instances; the summary carries the shard
//! params while `pending`, so a scheduler that takes over can finish creating it from
//! the summary alone. Ended instances move to history in batches ([`archive`]), with
//! what is kept beside it so that nothing needs to scan history: the history index
//! (`index`), each job's last state ([`jobstate`]) and daily counts ([`stats`]).
//! `query` holds what operators ask (listings), reading the index.

use std::collections::BTreeSet;

use antares_nats::kv;
use antares_nats::{Nats, NatsError, codec};
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, InstanceSummary, ShardRecord};

pub mod archive;
mod import;
pub(crate) mod index;
pub mod jobstate;
mod query;
pub mod stats;
mod update;
mod write;

pub use archive::Progress;
use async_nats::jetstream::kv::Store;
use futures::future::join_all;
pub use import::HistoryImport;
pub use query::{ListCost, ListQuery};

/// A running instance with the revisions of its keys.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The instance.
    pub instance: Instance,
    /// Revision of the summary key.
    pub summary_rev: u64,
    /// Revision of each chunk key (0 = not written yet).
    pub chunk_revs: Vec<u64>,
}

/// What changed in a [`Stored`] since it was last written.
#[derive(Clone, Debug, Default)]
pub struct Dirty {
    /// The summary.
    pub summary: bool,
    /// The records of these shard items.
    pub changed: BTreeSet<u32>,
}

impl Dirty {
    /// Notes the shard items a step changed.
    pub fn items(&mut self, items: &[u32]) {
        self.changed.extend(items.iter().copied());
    }

    /// The chunks holding the changed records, in chunks of the instance's size.
    pub fn chunks(&self, summary: &InstanceSummary) -> BTreeSet<u32> {
        self.changed.iter().map(|i| summary.chunk_of(*i)).collect()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.summary && self.changed.is_empty()
    }
}

/// Where an instance was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Still running (instances bucket).
    Live,
    /// Ended (history bucket).
    History,
}

/// Access to instances in both buckets.
#[derive(Clone, Debug)]
pub struct InstanceStore {
    nats: Nats,
    live: Store,
    history: Store,
    claims: Store,
    index: Store,
    jobstate: Store,
    stats: Store,
    /// How often an index scope's head is written again (see [`index`]).
    touch_after_ms: i64,
}

/// Creating an instance found it already there.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Someone created it first (the same fire or trigger, handled before).
    #[error("instance already exists")]
    Exists,
    /// The trigger's `key` already made another instance within the key window.
    #[error("the trigger key was already used")]
    KeyUsed(Option<InstanceId>),
    /// NATS failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
}

/// The records chunk `chunk` of an instance holds.
fn chunk_slice(instance: &Instance, chunk: u32) -> &[ShardRecord] {
    let items = instance.summary.chunk_items(chunk);
    let end = items.end.min(instance.shards.len());
    instance
        .shards
        .get(items.start.min(end)..end)
        .unwrap_or(&[])
}

impl InstanceStore {
    /// Opens its buckets (all at once).
    pub async fn open(nats: &Nats) -> Result<Self, NatsError> {
        let t = &nats.topo;
        let names = [
            t.instances_bucket(),
            t.history_bucket(),
            t.claims_bucket(),
            t.index_bucket(),
            t.jobstate_bucket(),
            t.stats_bucket(),
        ];
        let opened = join_all(names.iter().map(|n| nats.bucket(n)))
            .await
            .into_iter()
            .collect::<Result<Vec<Store>, NatsError>>()?;
        let [live, history, claims, index, jobstate, stats]: [Store; 6] = opened
            .try_into()
            .map_err(|_| NatsError::Config("a bucket handle is missing".into()))?;
        let retention = index.stream.cached_info().config.max_age;
        Ok(Self {
            nats: nats.clone(),
            live,
            history,
            claims,
            index,
            jobstate,
            stats,
            touch_after_ms: index::touch_after_ms(retention),
        })
    }

    fn summary_key(&self, s: &InstanceSummary) -> String {
        self.nats.topo.instance_key(&s.app, &s.job, &s.id)
    }

    fn chunk_key(&self, s: &InstanceSummary, chunk: u32) -> String {
        self.nats.topo.shard_chunk_key(&s.app, &s.job, &s.id, chunk)
    }

    fn bucket(&self, place: Place) -> &Store {
        match place {
            Place::Live => &self.live,
            Place::History => &self.history,
        }
    }

    /// Loads an instance whole (summary and shards) from one bucket.
    pub async fn load(
        &self,
        place: Place,
        app: &str,
        job: &str,
        id: &InstanceId,
    ) -> Result<Option<Stored>, NatsError> {
        let store = self.bucket(place);
        let key = self.nats.topo.instance_key(app, job, id);
        let Some(summary) = kv::get::<InstanceSummary>(store, &key, "instance").await? else {
            return Ok(None);
        };
        self.load_shards(place, summary.value, summary.revision)
            .await
    }

    /// Reads an instance's shard chunks; `None` if an instance that is not `pending`
    /// lacks some (it is being moved to history).
    async fn load_shards(
        &self,
        place: Place,
        summary: InstanceSummary,
        summary_rev: u64,
    ) -> Result<Option<Stored>, NatsError> {
        let store = self.bucket(place);
        let n = summary.chunk_count();
        let reads = (0..n).map(|c| {
            let key = self.chunk_key(&summary, c);
            async move { kv::get::<Vec<ShardRecord>>(store, &key, "shards").await }
        });
        let mut shards = Vec::with_capacity(summary.shard_total as usize);
        let mut chunk_revs = Vec::with_capacity(n as usize);
        let mut missing = false;
        let mut corrupt = None;
        for (c, res) in join_all(reads).await.into_iter().enumerate() {
            let res = match res {
                Err(e @ NatsError::Decode { .. }) => {
                    corrupt = Some(e.to_string());
                    Ok(None)
                }
                other => other,
            };
            match res? {
                Some(v) => {
                    shards.extend(v.value);
                    chunk_revs.push(v.revision);
                }
                None => {
                    // Not written yet (a pending instance whose creator stopped): rebuild
                    // from the params the summary keeps while pending.
                    missing = true;
                    let c = u32::try_from(c).unwrap_or(u32::MAX);
                    for item in summary.chunk_items(c) {
                        let param = summary
                            .pending_params
                            .get(item)
                            .cloned()
                            .unwrap_or_default();
                        shards.push(ShardRecord::pending(
                            u32::try_from(item).unwrap_or(u32::MAX),
                            param,
                        ));
                    }
                    chunk_revs.push(0);
                }
            }
        }
        if let Some(why) = corrupt
            && place == Place::Live
            && !summary.status.is_final()
        {
            // A stored record is corrupt: the instance cannot go on; it fails saying so
            // rather than stopping whoever loads it.
            tracing::error!(instance = %summary.id, error = %why, "shard records of a running instance are corrupt");
            let mut instance = Instance { summary, shards };
            let _ = antares_schemas::machine::step(
                &mut instance,
                &antares_schemas::machine::Input::Fail {
                    reason: format!("its stored shard records are corrupt ({why})"),
                },
                antares_nats::now(),
            );
            return Ok(Some(Stored {
                instance,
                summary_rev,
                chunk_revs,
            }));
        }
        if missing && summary.status != InstanceStatus::Pending {
            // Caught in the middle of its move to history.
            return Ok(None);
        }
        Ok(Some(Stored {
            instance: Instance { summary, shards },
            summary_rev,
            chunk_revs,
        }))
    }

    /// Finds an instance by id alone, running or ended: its claim names its app and job
    /// (one read), then [`Self::find_in`]. Never a scan, however many instances there are.
    pub async fn find(&self, id: &InstanceId) -> Result<Option<(Place, Stored)>, NatsError> {
        match self.locate(id).await? {
            Some((app, job)) => self.find_in(&app, &job, id).await,
            None => Ok(None),
        }
    }

    /// Finds an instance of `app/job`, running or ended: read directly in the instances
    /// bucket, then in history.
    pub async fn find_in(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
    ) -> Result<Option<(Place, Stored)>, NatsError> {
        for place in [Place::Live, Place::History] {
            if let Some(stored) = self.load(place, app, job, id).await? {
                return Ok(Some((place, stored)));
            }
        }
        Ok(None)
    }

    /// The summary of an instance of `app/job` (no shard records: one read, however
    /// many shards it has), running or ended.
    pub async fn find_summary(
        &self,
        app: &str,
        job: &str,
        id: &InstanceId,
    ) -> Result<Option<InstanceSummary>, NatsError> {
        let key = self.nats.topo.instance_key(app, job, id);
        for place in [Place::Live, Place::History] {
            if let Some(v) =
                kv::get::<InstanceSummary>(self.bucket(place), &key, "instance").await?
            {
                return Ok(Some(v.value));
            }
        }
        Ok(None)
    }

    /// The app and job of an instance, from its id's claim; `None` when the id was never
    /// claimed (or its claim expired with its history).
    pub async fn locate(&self, id: &InstanceId) -> Result<Option<(String, String)>, NatsError> {
        let key = self.nats.topo.instance_claim_key(id);
        let Some(raw) = kv::get_raw(&self.claims, &key).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&raw);
        let mut parts = text.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(app), Some(job), Some(named)) if named == id.to_string() => {
                Ok(Some((app.to_string(), job.to_string())))
            }
            _ => Err(NatsError::Decode {
                what: "instance claim",
                message: format!(
                    "the claim {}/{key} holds `{text}`, not the key of instance {id}",
                    self.claims.name
                ),
            }),
        }
    }

    /// The claim of an instance's id: its key, and its value naming where it lives.
    fn claim(&self, s: &InstanceSummary) -> (String, bytes::Bytes) {
        (
            self.nats.topo.instance_claim_key(&s.id),
            bytes::Bytes::from(self.summary_key(s)),
        )
    }

    /// Every running instance of the jobs `wanted(app, job)` accepts (for a scheduler
    /// that just took over a partition).
    pub async fn running(
        &self,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Result<Vec<Stored>, NatsError> {
        let filter = self.nats.topo.instance_summaries_filter(None, None);
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.live, &filter, false).await? {
            match codec::decode::<InstanceSummary>("instance", &hit.value) {
                Ok(summary) if !wanted(&summary.app, &summary.job) => {}
                Ok(summary) => {
                    let id = summary.id;
                    match self
                        .load_shards(Place::Live, summary.clone(), hit.revision)
                        .await?
                    {
                        Some(stored) => out.push(stored),
                        // Ended, and its move to history was cut short: finish it.
                        None => match self.load_shards(Place::History, summary, 0).await? {
                            Some(done) => out.push(done),
                            None => tracing::error!(instance = %id, "instance lost shard records"),
                        },
                    }
                }
                Err(e) => {
                    tracing::error!(key = %hit.key, error = %e, "unreadable instance summary skipped")
                }
            }
        }
        Ok(out)
    }
}

/// What unit tests of the store's pure parts build on.
#[cfg(test)]
pub(crate) mod tests_support {
    use antares_schemas::instance::{
        Instance, InstanceStatus, InstanceSummary, NewInstance, TriggerKind,
    };
    use antares_schemas::messages::Execution;
    use antares_schemas::{InstanceId, Timestamp};

    /// A summary of `shop/sweep` with this status.
    pub fn summary(status: InstanceStatus) -> InstanceSummary {
        let at = Timestamp(1_800_000_000_000);
        let mut s = Instance::create(NewInstance {
            id: InstanceId::for_fire("shop", "sweep", at),
            app: "shop".into(),
            job: "sweep".into(),
            trigger: TriggerKind::Cron,
            scheduled_at: at,
            params: String::new(),
            exec: Execution::Plugin {
                handler: "noop".into(),
            },
            timeout_ms: 0,
            shard_params: vec![String::new()],
            retry: Default::default(),
            parent: None,
            depth: 0,
            key: None,
        })
        .summary;
        s.status = status;
        s
    }
}
