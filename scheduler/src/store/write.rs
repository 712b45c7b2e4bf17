//! The leader's writes: claiming and creating instances, saving what changed (moving
//! ended ones to history is [`super::archive`]).

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{NatsError, codec};
use antares_schemas::instance::Instance;
use antares_schemas::limits::KEY_WINDOW;

use super::{CreateError, Dirty, InstanceStore, Place, Stored, chunk_slice};

impl InstanceStore {
    /// Claims and writes a new `pending` instance in one pipelined round: the id's claim
    /// and the trigger key's claim (both "must not exist", kept as long as history and
    /// for the key window), the summary ("must not exist") and the shard chunks.
    ///
    /// The summary decides between racing schedulers; the claim makes an id unique for
    /// as long as history keeps instances, so a slot that ended long ago is not made
    /// again. A claim without an instance in either bucket is an earlier attempt of ours
    /// that failed half-way: it is taken over.
    pub async fn create(&self, instance: Instance) -> Result<Stored, CreateError> {
        self.create_many(vec![instance])
            .await
            .pop()
            .unwrap_or_else(|| Err(NatsError::Config("instance not written".into()).into()))
    }

    /// [`InstanceStore::create`] for many instances in one pipelined round of writes
    /// (a burst of fires); each gets its own outcome, in order. Only the rare outcomes
    /// (an id made long ago, a trigger key already used, a chunk written by an earlier
    /// attempt) take another round, for their instance alone.
    pub async fn create_many(&self, instances: Vec<Instance>) -> Vec<Result<Stored, CreateError>> {
        let mut planned = Vec::with_capacity(instances.len());
        let mut writes = Vec::new();
        for instance in instances {
            match self.create_writes(instance) {
                Ok((stored, which, ws, has_key)) => {
                    planned.push(Ok((stored, which, ws.len(), has_key)));
                    writes.extend(ws);
                }
                Err(e) => planned.push(Err(e)),
            }
        }
        let mut results = kv::write_all(&self.nats, writes).await.into_iter();
        let mut out = Vec::with_capacity(planned.len());
        for p in planned {
            match p {
                Ok((stored, which, n, has_key)) => {
                    let mine: Vec<_> = results.by_ref().take(n).collect();
                    out.push(self.created(stored, which, mine, has_key).await);
                }
                Err(e) => out.push(Err(e.into())),
            }
        }
        out
    }

    /// The writes that create one instance: its claim, its trigger key's claim (if
    /// any), its summary, its chunks; with the chunks they write and whether a key
    /// claim is among them.
    #[allow(clippy::type_complexity)]
    fn create_writes(
        &self,
        instance: Instance,
    ) -> Result<(Stored, Vec<u32>, Vec<Write>, bool), NatsError> {
        let topo = &self.nats.topo;
        let s = &instance.summary;
        let id_text = bytes::Bytes::from(s.id.to_string());
        let (claim_key, claim_value) = self.claim(s);
        let key_claim = s
            .key
            .as_ref()
            .map(|k| topo.trigger_key_claim(&s.app, &s.job, k));
        let summary = codec::encode("instance", s)?;
        let key = self.summary_key(s);
        let stored = Stored {
            chunk_revs: vec![0; instance.summary.chunk_count() as usize],
            instance,
            summary_rev: 0,
        };
        let (which, chunks) = self.missing_chunk_writes(&stored)?;
        let claims = &self.claims.name;
        let mut writes = vec![Write::put(
            claims,
            claim_key,
            claim_value,
            Expect::Revision(0),
        )];
        let has_key = key_claim.is_some();
        if let Some(k) = key_claim {
            writes.push(Write::put(claims, k, id_text, Expect::Revision(0)).with_ttl(KEY_WINDOW));
        }
        writes.push(Write::put(
            &self.live.name,
            key,
            summary,
            Expect::Revision(0),
        ));
        writes.extend(chunks);
        Ok((stored, which, writes, has_key))
    }

    /// Decides what the writes of one create came to.
    async fn created(
        &self,
        mut stored: Stored,
        which: Vec<u32>,
        results: Vec<Result<u64, NatsError>>,
        has_key: bool,
    ) -> Result<Stored, CreateError> {
        let topo = &self.nats.topo;
        let mut results = results.into_iter();
        let claim = results.next();
        let key_claimed = if has_key { results.next() } else { None };
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
        if has_key {
            let s = &stored.instance.summary;
            let k = s
                .key
                .as_ref()
                .map(|k| topo.trigger_key_claim(&s.app, &s.job, k))
                .unwrap_or_default();
            match key_claimed {
                Some(Err(NatsError::WrongRevision { .. })) => {
                    let holder = kv::get_raw(&self.claims, &k).await?;
                    let holder = holder.and_then(|b| String::from_utf8(b.to_vec()).ok());
                    let ours = s.id.to_string();
                    if holder.as_deref() != Some(ours.as_str()) {
                        self.remove_live(&stored).await?;
                        let first = holder.and_then(|h| h.parse().ok());
                        return Err(CreateError::KeyUsed(first));
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                _ => {}
            }
        }
        self.record_chunk_writes(&mut stored, which, chunk_results.into_iter())
            .await?;
        Ok(stored)
    }

    /// Writes the id claims of instances found in the store whose creation may have been
    /// cut short (a claim lost while its summary was written), in one round; a claim
    /// that is there already is left as it is.
    pub async fn confirm_claims(&self, stored: &[&Stored]) -> Result<(), NatsError> {
        let claims = &self.claims.name;
        let writes = stored
            .iter()
            .map(|st| {
                let (key, value) = self.claim(&st.instance.summary);
                Write::put(claims, key, value, Expect::Revision(0))
            })
            .collect();
        for r in kv::write_all(&self.nats, writes).await {
            match r {
                Ok(_) | Err(NatsError::WrongRevision { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes an instance's keys from the instances bucket (after a create that must not
    /// stand).
    async fn remove_live(&self, stored: &Stored) -> Result<(), NatsError> {
        self.remove_live_many(&[stored])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Takes instances out of the instances bucket (chunks first, then the summary)
    /// in one pipelined round; their claims stay. Each gets its own outcome, in order.
    pub async fn remove_live_many(&self, stored: &[&Stored]) -> Vec<Result<(), NatsError>> {
        let live = &self.live.name;
        let ttl = std::time::Duration::from_secs(60);
        let mut purges = Vec::new();
        let mut counts = Vec::with_capacity(stored.len());
        for one in stored {
            let s = &one.instance.summary;
            let before = purges.len();
            purges.extend(
                (0..s.chunk_count())
                    .map(|c| Write::purge(live, self.chunk_key(s, c)).with_ttl(ttl)),
            );
            purges.push(Write::purge(live, self.summary_key(s)).with_ttl(ttl));
            counts.push(purges.len() - before);
        }
        let mut results = kv::write_all(&self.nats, purges).await.into_iter();
        counts
            .into_iter()
            .map(|n| {
                results
                    .by_ref()
                    .take(n)
                    .find_map(Result::err)
                    .map_or(Ok(()), Err)
            })
            .collect()
    }

    /// Replaces `pending` instances none of whose items went out by others made for the
    /// same ids (their job was edited after they were made), in one round: each summary
    /// and every chunk written again, revision-checked; then chunks they no longer have
    /// are purged. Each pair's `Stored` holds the new instance afterwards.
    pub async fn replace_many(&self, pairs: &mut [(Stored, Instance)]) -> Result<(), NatsError> {
        let live = &self.live.name;
        let ttl = std::time::Duration::from_secs(60);
        let mut gone = Vec::new();
        let mut batch = Vec::with_capacity(pairs.len());
        for (stored, fresh) in pairs.iter_mut() {
            let (old, new) = (
                stored.instance.summary.chunk_count(),
                fresh.summary.chunk_count(),
            );
            gone.extend((new..old).map(|c| {
                Write::purge(live, self.chunk_key(&stored.instance.summary, c)).with_ttl(ttl)
            }));
            stored.chunk_revs.resize(new as usize, 0);
            let mut dirty = Dirty {
                summary: true,
                ..Dirty::default()
            };
            dirty.changed = (0..fresh.summary.shard_total).collect();
            stored.instance = fresh.clone();
            batch.push((stored, dirty));
        }
        for r in self.save_many(&mut batch).await {
            r?;
        }
        for r in kv::write_all(&self.nats, gone).await {
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
        for c in 0..s.chunk_count() {
            if stored.chunk_revs.get(c as usize).copied().unwrap_or(0) == 0 {
                let value = codec::encode("shards", &chunk_slice(&stored.instance, c))?;
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
        for c in dirty.chunks(s) {
            let rev = stored.chunk_revs.get(c as usize).copied().unwrap_or(0);
            let value = codec::encode("shards", &chunk_slice(&stored.instance, c))?;
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
}
