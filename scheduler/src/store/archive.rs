//! Moving ended instances to history, many at once, with what is kept beside history:
//! the index pages (`super::index`), each job's last state ([`super::jobstate`]) and
//! the daily counts ([`super::stats`]).
//!
//! One batch goes in three steps:
//! 1. every instance's summary and shard chunks are written to history (and its id's
//!    claim written again, so it lasts as long as the history entry);
//! 2. at once: one append per index scope the batch touches, one write per job (its
//!    newest instance), one read-modify-write per (day, app) of counts;
//! 3. only then are the instances removed from the instances bucket.
//!
//! An instance still in the instances bucket has not finished its move: a leader that
//! takes over loads it, sees it ended and moves it again, so an instance in history is
//! never left out of the index, its job's state or its day's counts. Doing a move again
//! lists it twice (readers drop duplicates), writes the same job state (no change), and
//! counts it again: after a crash mid-batch (or a counts write whose acknowledgement was
//! lost) the daily counts may be over by the instances of that batch.
//!
//! The caller keeps each instance's [`Progress`] between tries, so a batch that partly
//! failed is tried again for what is left only.

use std::collections::{HashMap, HashSet};

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::stats::DayCounts;
use antares_schemas::topology::IndexScope;
use futures::StreamExt;

use super::index::IndexEntry;
use super::index::append::append;
use super::index::bucket::BucketPages;
use super::{InstanceStore, Stored, chunk_slice, jobstate, stats};

/// Index scopes appended to at once.
const CONCURRENT_SCOPES: usize = 16;

/// How far the move of one ended instance to history got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Written to history.
    pub history: bool,
    /// Listed in each of its index scopes (as [`IndexScope::of_instance`] orders them).
    pub scopes: [bool; 6],
    /// Its job's last state written (or a newer one found there).
    pub job_state: bool,
    /// Counted in its day's counts.
    pub counted: bool,
}

impl Progress {
    /// Whether everything beside history is written: it may leave the instances bucket.
    pub fn recorded(&self) -> bool {
        self.history && self.scopes.iter().all(|s| *s) && self.job_state && self.counted
    }
}

/// Notes each item's first error.
struct Errors(Vec<Option<NatsError>>);

impl Errors {
    fn note(&mut self, i: usize, e: NatsError) {
        if let Some(slot) = self.0.get_mut(i)
            && slot.is_none()
        {
            *slot = Some(e);
        }
    }
}

/// An error shared by several instances, as each one's own.
fn shared(what: &str, e: &NatsError) -> NatsError {
    NatsError::op(what.to_string(), e.to_string())
}

impl InstanceStore {
    /// Moves one ended instance to history (see [`Self::archive_many`]).
    pub async fn archive(&self, stored: &Stored) -> Result<(), NatsError> {
        let mut batch = [(stored, Progress::default())];
        self.archive_many(&mut batch).await.pop().unwrap_or(Ok(()))
    }

    /// Moves ended instances to history with their index entries, job states and daily
    /// counts, skipping what each one's [`Progress`] says is done and noting what gets
    /// done; returns each one's outcome, in order (`Ok` once it has left the instances
    /// bucket).
    pub async fn archive_many(
        &self,
        batch: &mut [(&Stored, Progress)],
    ) -> Vec<Result<(), NatsError>> {
        let mut errors = Errors((0..batch.len()).map(|_| None).collect());
        self.write_history(batch, &mut errors).await;
        let (listed, states, counted) = futures::join!(
            self.list_batch(batch),
            self.state_batch(batch),
            self.count_batch(batch)
        );
        for (i, slot, res) in listed {
            match res {
                Ok(()) => {
                    if let Some((_, p)) = batch.get_mut(i)
                        && let Some(s) = p.scopes.get_mut(slot)
                    {
                        *s = true;
                    }
                }
                Err(e) => errors.note(i, e),
            }
        }
        for (i, res) in states {
            match res {
                Ok(()) => {
                    if let Some((_, p)) = batch.get_mut(i) {
                        p.job_state = true;
                    }
                }
                Err(e) => errors.note(i, e),
            }
        }
        for (i, res) in counted {
            match res {
                Ok(()) => {
                    if let Some((_, p)) = batch.get_mut(i) {
                        p.counted = true;
                    }
                }
                Err(e) => errors.note(i, e),
            }
        }
        self.leave_live(batch, &mut errors).await;
        errors
            .0
            .into_iter()
            .map(|e| e.map_or(Ok(()), Err))
            .collect()
    }

    /// Step 1: summaries, chunks and claims, for every instance not in history yet, in
    /// one pipelined round.
    async fn write_history(&self, batch: &mut [(&Stored, Progress)], errors: &mut Errors) {
        let hist = &self.history.name;
        let mut writes = Vec::new();
        let mut owners = Vec::new();
        for (i, (stored, progress)) in batch.iter().enumerate() {
            if progress.history {
                continue;
            }
            let s = &stored.instance.summary;
            let mut mine = Vec::new();
            let encoded = (0..s.chunk_count())
                .map(|c| {
                    codec::encode("shards", &chunk_slice(&stored.instance, c))
                        .map(|v| Write::put(hist, self.chunk_key(s, c), v, Expect::Any))
                })
                .chain(std::iter::once(codec::encode("instance", s).map(|v| {
                    Write::put(hist, self.summary_key(s), v, Expect::Any)
                })))
                .collect::<Result<Vec<_>, _>>();
            match encoded {
                Ok(ws) => mine.extend(ws),
                Err(e) => {
                    errors.note(i, e);
                    continue;
                }
            }
            // The id's claim lasts as long as the history entry (both expire after the
            // history retention from now), however long the instance ran.
            let (claim_key, claim_value) = self.claim(s);
            mine.push(Write::put(
                &self.claims.name,
                claim_key,
                claim_value,
                Expect::Any,
            ));
            owners.extend(std::iter::repeat_n(i, mine.len()));
            writes.extend(mine);
        }
        let mut failed = HashSet::new();
        for (i, res) in owners.iter().zip(kv::write_all(&self.nats, writes).await) {
            if let Err(e) = res {
                failed.insert(*i);
                errors.note(*i, e);
            }
        }
        let mut seen = HashSet::new();
        for i in owners {
            if seen.insert(i)
                && !failed.contains(&i)
                && let Some((_, p)) = batch.get_mut(i)
            {
                p.history = true;
            }
        }
    }

    /// Step 2, the index: one append per touched scope; each (item, scope slot)'s outcome.
    async fn list_batch(
        &self,
        batch: &[(&Stored, Progress)],
    ) -> Vec<(usize, usize, Result<(), NatsError>)> {
        type Scoped = (IndexScope, Vec<(usize, usize, InstanceId)>, Vec<IndexEntry>);
        let mut scopes: HashMap<String, Scoped> = HashMap::new();
        for (i, (stored, progress)) in batch.iter().enumerate() {
            if !progress.history {
                continue;
            }
            let s = &stored.instance.summary;
            for (slot, scope) in IndexScope::of_instance(&s.app, &s.job, s.status)
                .into_iter()
                .enumerate()
            {
                if progress.scopes.get(slot).copied().unwrap_or(true) {
                    continue;
                }
                let (_, owners, entries) = scopes
                    .entry(scope.key())
                    .or_insert_with(|| (scope, Vec::new(), Vec::new()));
                owners.push((i, slot, s.id));
                entries.push(IndexEntry {
                    id: s.id,
                    app: s.app.clone(),
                    job: s.job.clone(),
                    status: s.status,
                });
            }
        }
        let at = now();
        let appended: Vec<_> = futures::stream::iter(scopes.into_values())
            .map(|(scope, owners, entries)| async move {
                let pages = BucketPages::new(&self.nats, &self.index, scope);
                let name = super::index::PageStore::name(&pages);
                let res = append(&pages, entries, at, self.touch_after_ms).await;
                (name, owners, res)
            })
            .buffer_unordered(CONCURRENT_SCOPES)
            .collect()
            .await;
        let mut out = Vec::new();
        for (name, owners, res) in appended {
            let done: HashSet<InstanceId> = res.done.into_iter().collect();
            for (i, slot, id) in owners {
                let outcome = if done.contains(&id) {
                    Ok(())
                } else {
                    let why = match &res.error {
                        Some(e) => shared(&name, e),
                        None => NatsError::op(name.clone(), "entry not written".to_string()),
                    };
                    Err(why)
                };
                out.push((i, slot, outcome));
            }
        }
        out
    }

    /// Step 2, job states: the newest instance of each touched job.
    async fn state_batch(
        &self,
        batch: &[(&Stored, Progress)],
    ) -> Vec<(usize, Result<(), NatsError>)> {
        let states = batch
            .iter()
            .enumerate()
            .filter(|(_, (_, p))| p.history && !p.job_state)
            .map(|(i, (s, _))| (i, jobstate::state_of(&s.instance.summary)))
            .collect();
        let (newest, owners): (Vec<_>, Vec<_>) =
            jobstate::newest_per_job(states).into_iter().unzip();
        let results = self.record_job_states(newest).await;
        spread(owners, results, "job state")
    }

    /// Step 2, daily counts: one update per touched (day, app).
    async fn count_batch(
        &self,
        batch: &[(&Stored, Progress)],
    ) -> Vec<(usize, Result<(), NatsError>)> {
        let at = now();
        let mut keys: HashMap<String, (DayCounts, Vec<usize>)> = HashMap::new();
        for (i, (stored, progress)) in batch.iter().enumerate() {
            if !progress.history || progress.counted {
                continue;
            }
            let s = &stored.instance.summary;
            let key = self.nats.topo.stats_key(stats::day_of_end(s, at), &s.app);
            let (counts, owners) = keys.entry(key).or_default();
            stats::count(counts, s);
            owners.push(i);
        }
        let (deltas, owners): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .map(|(key, (counts, owners))| ((key, counts), owners))
            .unzip();
        let results = self.add_counts(deltas).await;
        spread(owners, results, "day counts")
    }

    /// Step 3: the instances whose records are all written leave the instances bucket,
    /// in one pipelined round (chunks first, summary last: a reader that still finds the
    /// summary but not all chunks knows to look in history).
    async fn leave_live(&self, batch: &[(&Stored, Progress)], errors: &mut Errors) {
        let live = &self.live.name;
        let ttl = std::time::Duration::from_secs(60);
        let mut purges = Vec::new();
        let mut owners = Vec::new();
        for (i, (stored, progress)) in batch.iter().enumerate() {
            if !progress.recorded() {
                // (Its error is noted already, unless this says more than nothing.)
                errors.note(
                    i,
                    NatsError::op("move to history", "not recorded".to_string()),
                );
                continue;
            }
            let s = &stored.instance.summary;
            for c in 0..s.chunk_count() {
                purges.push(Write::purge(live, self.chunk_key(s, c)).with_ttl(ttl));
                owners.push(i);
            }
            purges.push(Write::purge(live, self.summary_key(s)).with_ttl(ttl));
            owners.push(i);
        }
        for (i, res) in owners
            .into_iter()
            .zip(kv::write_all(&self.nats, purges).await)
        {
            if let Err(e) = res {
                errors.note(i, e);
            }
        }
    }
}

/// Gives each owner of a shared write its outcome.
fn spread(
    owners: Vec<Vec<usize>>,
    results: Vec<Result<(), NatsError>>,
    what: &str,
) -> Vec<(usize, Result<(), NatsError>)> {
    let mut out = Vec::new();
    for (owners, res) in owners.into_iter().zip(results) {
        for i in owners {
            out.push((
                i,
                match &res {
                    Ok(()) => Ok(()),
                    Err(e) => Err(shared(what, e)),
                },
            ));
        }
    }
    out
}
