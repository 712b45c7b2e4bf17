//! Where instances live: the instances bucket while they run, the history bucket once
//! they have ended.
//!
//! An instance is a summary at `<app>.<job>.<id>` plus its shard records in chunks at
//! `<app>.<job>.<id>.<n>` (see [`antares_schemas::topology::SHARD_CHUNK`]), so a 20,000
//! shard instance is 40 modest values rather than one oversized one, and a batch of
//! results rewrites only the chunks it touched. Every write of a running instance is
//! revision-checked: [`Stored`] remembers the revision of each key it read or wrote.
//!
//! Creating is claim-first: the summary is created with "must not exist" (so a fire or a
//! redelivered trigger can never make two instances) and carries the shard params while
//! `pending`; the chunks follow. A scheduler that takes over and finds a `pending`
//! instance can finish creating it from the summary alone.

use std::collections::{BTreeSet, HashMap};

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError, codec};
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, InstanceSummary, ShardRecord};
use antares_schemas::limits::KEY_WINDOW;
use antares_schemas::topology::{SHARD_CHUNK, chunk_count, chunk_of};
use async_nats::jetstream::kv::Store;
use futures::future::join_all;

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
    /// These chunks.
    pub chunks: BTreeSet<u32>,
}

impl Dirty {
    /// Notes the shard items a step changed.
    pub fn items(&mut self, items: &[u32]) {
        self.chunks.extend(items.iter().map(|i| chunk_of(*i)));
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.summary && self.chunks.is_empty()
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

fn chunk_slice(shards: &[ShardRecord], chunk: u32) -> &[ShardRecord] {
    let start = (chunk * SHARD_CHUNK) as usize;
    let end = (start + SHARD_CHUNK as usize).min(shards.len());
    shards.get(start..end).unwrap_or(&[])
}

impl InstanceStore {
    /// Opens both buckets.
    pub async fn open(nats: &Nats) -> Result<Self, NatsError> {
        Ok(Self {
            nats: nats.clone(),
            live: nats.bucket(&nats.topo.instances_bucket()).await?,
            history: nats.bucket(&nats.topo.history_bucket()).await?,
            claims: nats.bucket(&nats.topo.claims_bucket()).await?,
        })
    }

    fn summary_key(&self, s: &InstanceSummary) -> String {
        self.nats.topo.instance_key(&s.app, &s.job, &s.id)
    }

    fn chunk_key(&self, s: &InstanceSummary, chunk: u32) -> String {
        self.nats.topo.shard_chunk_key(&s.app, &s.job, &s.id, chunk)
    }

    /// Claims and writes a new `pending` instance in one pipelined round: the id's claim
    /// and the trigger key's claim (both "must not exist", kept as long as history and
    /// for the key window), the summary ("must not exist") and the shard chunks.
    ///
    /// The summary decides between racing schedulers; the claim makes an id unique for
    /// as long as history keeps instances, so a slot that ended long ago is not made
    /// again. A claim without an instance in either bucket is an earlier attempt of ours
    /// that failed half-way: it is taken over.
    pub async fn create(&self, instance: Instance) -> Result<Stored, CreateError> {
        let topo = &self.nats.topo;
        let s = &instance.summary;
        let id_text = bytes::Bytes::from(s.id.to_string());
        let claim_key = topo.instance_claim_key(&s.app, &s.job, &s.id);
        let key_claim = s
            .key
            .as_ref()
            .map(|k| topo.trigger_key_claim(&s.app, &s.job, k));
        let summary = codec::encode("instance", s)?;
        let key = self.summary_key(s);
        let mut stored = Stored {
            chunk_revs: vec![0; chunk_count(instance.summary.shard_total) as usize],
            instance,
            summary_rev: 0,
        };
        let (which, chunks) = self.missing_chunk_writes(&stored)?;
        let claims = &self.claims.name;
        let mut writes = vec![Write::put(
            claims,
            claim_key,
            id_text.clone(),
            Expect::Revision(0),
        )];
        if let Some(k) = &key_claim {
            writes.push(
                Write::put(claims, k.clone(), id_text, Expect::Revision(0)).with_ttl(KEY_WINDOW),
            );
        }
        writes.push(Write::put(
            &self.live.name,
            key,
            summary,
            Expect::Revision(0),
        ));
        writes.extend(chunks);
        let mut results = kv::write_all(&self.nats, writes).await.into_iter();
        let claim = results.next();
        let key_claimed = if key_claim.is_some() {
            results.next()
        } else {
            None
        };
        let written = results.next();
        let chunk_results: Vec<_> = results.collect();
        match written {
            Some(Ok(rev)) => stored.summary_rev = rev,
            Some(Err(NatsError::WrongRevision { .. })) => return Err(CreateError::Exists),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(NatsError::Config("instance not written".into()).into()),
        }
        match claim {
            Some(Ok(_)) => {}
            Some(Err(NatsError::WrongRevision { .. })) => {
                let id = stored.instance.summary.id;
                let (app, job) = (&stored.instance.summary.app, &stored.instance.summary.job);
                if self.load(Place::History, app, job, &id).await?.is_some() {
                    // Made and ended long ago: take back what we just wrote.
                    self.remove_live(&stored).await?;
                    return Err(CreateError::Exists);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(NatsError::Config("instance not claimed".into()).into()),
        }
        if let (Some(k), Some(Err(NatsError::WrongRevision { .. }))) = (&key_claim, &key_claimed) {
            let holder = kv::get_raw(&self.claims, k).await?;
            let holder = holder.and_then(|b| String::from_utf8(b.to_vec()).ok());
            let ours = stored.instance.summary.id.to_string();
            if holder.as_deref() != Some(ours.as_str()) {
                self.remove_live(&stored).await?;
                let first = holder.and_then(|h| h.parse().ok());
                return Err(CreateError::KeyUsed(first));
            }
        } else if let Some(Err(e)) = key_claimed {
            return Err(e.into());
        }
        self.record_chunk_writes(&mut stored, which, chunk_results.into_iter())
            .await?;
        Ok(stored)
    }

    /// Removes an instance's keys from the instances bucket (after a create that must not
    /// stand).
    async fn remove_live(&self, stored: &Stored) -> Result<(), NatsError> {
        let s = &stored.instance.summary;
        let live = &self.live.name;
        let ttl = std::time::Duration::from_secs(60);
        let mut purges: Vec<Write> = (0..chunk_count(s.shard_total))
            .map(|c| Write::purge(live, self.chunk_key(s, c)).with_ttl(ttl))
            .collect();
        purges.push(Write::purge(live, self.summary_key(s)).with_ttl(ttl));
        for r in kv::write_all(&self.nats, purges).await {
            r?;
        }
        Ok(())
    }

    /// Writes the chunks of a `pending` instance that are not there yet (after a
    /// takeover, some may be).
    pub async fn write_missing_chunks(&self, stored: &mut Stored) -> Result<(), NatsError> {
        let (which, writes) = self.missing_chunk_writes(stored)?;
        let results = kv::write_all(&self.nats, writes).await;
        self.record_chunk_writes(stored, which, results.into_iter())
            .await
    }

    fn missing_chunk_writes(&self, stored: &Stored) -> Result<(Vec<u32>, Vec<Write>), NatsError> {
        let bucket = &self.live.name;
        let s = &stored.instance.summary;
        let mut writes = Vec::new();
        let mut which = Vec::new();
        for c in 0..chunk_count(s.shard_total) {
            if stored.chunk_revs.get(c as usize).copied().unwrap_or(0) == 0 {
                let value = codec::encode("shards", &chunk_slice(&stored.instance.shards, c))?;
                writes.push(Write::put(
                    bucket,
                    self.chunk_key(s, c),
                    value,
                    Expect::Revision(0),
                ));
                which.push(c);
            }
        }
        Ok((which, writes))
    }

    async fn record_chunk_writes(
        &self,
        stored: &mut Stored,
        which: Vec<u32>,
        results: impl Iterator<Item = Result<u64, NatsError>>,
    ) -> Result<(), NatsError> {
        for (c, res) in which.into_iter().zip(results) {
            let rev = match res {
                Ok(rev) => rev,
                // Written by an earlier attempt: read its revision.
                Err(NatsError::WrongRevision { .. }) => {
                    kv::last_revision(&self.live, &self.chunk_key(&stored.instance.summary, c))
                        .await?
                        .0
                }
                Err(e) => return Err(e),
            };
            if let Some(slot) = stored.chunk_revs.get_mut(c as usize) {
                *slot = rev;
            }
        }
        Ok(())
    }

    /// The writes that persist what changed, revision-checked.
    pub fn writes(
        &self,
        stored: &Stored,
        dirty: &Dirty,
    ) -> Result<Vec<(Option<u32>, Write)>, NatsError> {
        let bucket = &self.live.name;
        let s = &stored.instance.summary;
        let mut out = Vec::new();
        for &c in &dirty.chunks {
            let rev = stored.chunk_revs.get(c as usize).copied().unwrap_or(0);
            let value = codec::encode("shards", &chunk_slice(&stored.instance.shards, c))?;
            out.push((
                Some(c),
                Write::put(bucket, self.chunk_key(s, c), value, Expect::Revision(rev)),
            ));
        }
        if dirty.summary {
            let value = codec::encode("instance", s)?;
            out.push((
                None,
                Write::put(
                    bucket,
                    self.summary_key(s),
                    value,
                    Expect::Revision(stored.summary_rev),
                ),
            ));
        }
        Ok(out)
    }

    /// Persists many instances' changes in one pipelined round; returns, per instance,
    /// `Ok` or the first error (a [`NatsError::WrongRevision`] means another scheduler
    /// wrote: stop leading and reload).
    pub async fn save_many(
        &self,
        batch: &mut [(&mut Stored, Dirty)],
    ) -> Vec<Result<(), NatsError>> {
        let mut all = Vec::new();
        let mut owners = Vec::new();
        let mut results: Vec<Result<(), NatsError>> = Vec::with_capacity(batch.len());
        for (i, (stored, dirty)) in batch.iter().enumerate() {
            match self.writes(stored, dirty) {
                Ok(ws) => {
                    for (slot, w) in ws {
                        owners.push((i, slot));
                        all.push(w);
                    }
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let outcomes = kv::write_all(&self.nats, all).await;
        for ((i, slot), res) in owners.into_iter().zip(outcomes) {
            let Some((stored, _)) = batch.get_mut(i) else {
                continue;
            };
            match res {
                Ok(rev) => match slot {
                    Some(c) => {
                        if let Some(r) = stored.chunk_revs.get_mut(c as usize) {
                            *r = rev;
                        }
                    }
                    None => stored.summary_rev = rev,
                },
                Err(e) => {
                    if let Some(r) = results.get_mut(i)
                        && r.is_ok()
                    {
                        *r = Err(e);
                    }
                }
            }
        }
        results
    }

    /// Persists one instance's changes.
    pub async fn save(&self, stored: &mut Stored, dirty: Dirty) -> Result<(), NatsError> {
        let mut batch = [(stored, dirty)];
        self.save_many(&mut batch).await.pop().unwrap_or(Ok(()))
    }

    /// Moves an ended instance to history: written there first, then purged here, so a
    /// crash in between leaves it in both places (and the next leader finishes the move)
    /// rather than in neither.
    pub async fn archive(&self, stored: &Stored) -> Result<(), NatsError> {
        let s = &stored.instance.summary;
        let hist = &self.history.name;
        let mut writes = Vec::new();
        for c in 0..chunk_count(s.shard_total) {
            let value = codec::encode("shards", &chunk_slice(&stored.instance.shards, c))?;
            writes.push(Write::put(hist, self.chunk_key(s, c), value, Expect::Any));
        }
        writes.push(Write::put(
            hist,
            self.summary_key(s),
            codec::encode("instance", s)?,
            Expect::Any,
        ));
        for r in kv::write_all(&self.nats, writes).await {
            r?;
        }
        let live = &self.live.name;
        let ttl = std::time::Duration::from_secs(60);
        // Chunks first, summary last: a reader that still finds the summary but not all
        // chunks knows to look in history.
        let mut purges = Vec::new();
        for c in 0..chunk_count(s.shard_total) {
            purges.push(Write::purge(live, self.chunk_key(s, c)).with_ttl(ttl));
        }
        purges.push(Write::purge(live, self.summary_key(s)).with_ttl(ttl));
        for r in kv::write_all(&self.nats, purges).await {
            r?;
        }
        Ok(())
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
        let n = chunk_count(summary.shard_total);
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
                    let start = c * SHARD_CHUNK as usize;
                    let end = (start + SHARD_CHUNK as usize).min(summary.shard_total as usize);
                    for item in start..end {
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
            tracing::error!(id = %summary.id, error = %why, "shard records of a running instance are corrupt");
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

    /// Finds an instance by id alone, running or ended.
    pub async fn find(&self, id: &InstanceId) -> Result<Option<(Place, Stored)>, NatsError> {
        let filter = self.nats.topo.instance_by_id_filter(id);
        for place in [Place::Live, Place::History] {
            let found = kv::scan(&self.nats, self.bucket(place), &filter, false).await?;
            if let Some(hit) = found.into_iter().next() {
                let summary: InstanceSummary = codec::decode("instance", &hit.value)?;
                if let Some(stored) = self.load_shards(place, summary, hit.revision).await? {
                    return Ok(Some((place, stored)));
                }
            }
        }
        Ok(None)
    }

    /// Every running instance (for a scheduler that just took over).
    pub async fn running(&self) -> Result<Vec<Stored>, NatsError> {
        let filter = self.nats.topo.instance_summaries_filter(None, None);
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.live, &filter, false).await? {
            match codec::decode::<InstanceSummary>("instance", &hit.value) {
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
                            None => tracing::error!(%id, "instance lost shard records"),
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

    /// Instance summaries, running and ended together, newest `scheduled_at` first.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<InstanceSummary>, NatsError> {
        let filter = self
            .nats
            .topo
            .instance_summaries_filter(q.app.as_deref(), q.job.as_deref());
        // Live first, then history: an instance caught mid-move is in both, and the
        // history entry replaces the live one.
        let mut found: HashMap<InstanceId, (Place, String)> = HashMap::new();
        for place in [Place::Live, Place::History] {
            for hit in kv::scan(&self.nats, self.bucket(place), &filter, true).await? {
                let Some(id) = hit
                    .key
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<InstanceId>().ok())
                else {
                    continue;
                };
                if q.before.is_none_or(|b| id < b) {
                    found.insert(id, (place, hit.key));
                }
            }
        }
        let mut keys: Vec<(InstanceId, Place, String)> = found
            .into_iter()
            .map(|(id, (place, key))| (id, place, key))
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.0));
        let mut out = Vec::new();
        for window in keys.chunks(64) {
            let reads = window.iter().map(|(_, place, key)| {
                let store = self.bucket(*place);
                async move { kv::get::<InstanceSummary>(store, key, "instance").await }
            });
            for res in join_all(reads).await {
                let Some(v) = res? else { continue };
                if q.status.is_some_and(|st| st != v.value.status) {
                    continue;
                }
                out.push(v.value);
                if out.len() >= q.limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// What `instance list` asks for.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Only this app.
    pub app: Option<String>,
    /// Only this job (needs `app`).
    pub job: Option<String>,
    /// Only this status.
    pub status: Option<InstanceStatus>,
    /// At most this many.
    pub limit: usize,
    /// Only instances older than this one (paging).
    pub before: Option<InstanceId>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            app: None,
            job: None,
            status: None,
            limit: 50,
            before: None,
        }
    }
}
