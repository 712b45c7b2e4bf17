//! Folding worker reports (and cancels) into instances, in batches.
//!
//! The leader drains whatever reports are ready (up to a batch), applies each to its
//! instance through the pure state machine, writes every changed summary and shard
//! chunk in one pipelined round of revision-checked writes, and only then acks the
//! reports and carries out the effects (events, purging a cancelled instance's queued
//! items, moving ended instances to history). One KV round per batch instead of one per
//! report is what lets results keep up with thousands of shards per second.
//!
//! If a write is refused for a wrong revision, another scheduler has written: this one
//! naks the batch's reports for that instance (the new leader gets them) and stops
//! leading. If a write fails otherwise, the instance is dropped from memory and its
//! reports are nak'd: they apply again to the stored instance. A report about an instance that is already history is acked and dropped.
//!
//! A fold is awaited in the loop, so reports wait ([`Folds`]) when a slot of instances
//! made ahead is nearer than folds take lately, until just after it (see `quiet`);
//! never longer than [`PUT_OFF_MAX`] in all, so a stream of slots cannot starve them.

use std::collections::HashMap;
use std::time::Duration;

use antares_nats::queue::{self, Settle};
use antares_nats::{NatsError, codec, now};
use antares_schemas::machine::{self, Effect, Input};
use antares_schemas::messages::{Control, ShardReport};
use antares_schemas::topology::HEADER_REPORTS;
use antares_schemas::{InstanceId, Timestamp};
use async_nats::jetstream::Message;
use tokio::time::Instant;

use super::quiet::{self, Took};
use super::{Leading, Stop};
use crate::store::{Dirty, Place};

/// How a report that could not be applied now goes back: redelivered after a pause, so a
/// NATS hiccup does not turn into a hot loop.
const RETRY_LATER: Settle = Settle::Nak(Some(std::time::Duration::from_millis(500)));

/// How long the first report of a batch may wait for others before they are folded.
const LINGER: Duration = Duration::from_millis(3);
/// How long reports may wait in all for slots, from the first put-off.
const PUT_OFF_MAX: Duration = Duration::from_millis(250);

/// Reports pulled and not folded yet, and when they are.
pub(super) struct Folds<M = Message> {
    /// The reports, in the order they came.
    pub(super) msgs: Vec<M>,
    /// When they are folded (`None`: none wait).
    pub(super) at: Option<Instant>,
    /// Since when a fold has been put off for slots.
    put_off_since: Option<Instant>,
    /// How long folds take lately.
    took: Took,
}

impl<M> Default for Folds<M> {
    fn default() -> Self {
        Self {
            msgs: Vec::new(),
            at: None,
            put_off_since: None,
            took: Took::default(),
        }
    }
}

impl<M> Folds<M> {
    /// Takes reports pulled: folded at once when they fill a batch, else after
    /// [`LINGER`] from the first; a fold put off for a slot stays put off.
    pub(super) fn add(&mut self, msgs: impl IntoIterator<Item = M>, batch: usize) {
        self.msgs.extend(msgs);
        if self.put_off_since.is_some() {
            return;
        }
        if self.msgs.len() >= batch {
            self.at = Some(Instant::now());
        } else if !self.msgs.is_empty() && self.at.is_none() {
            self.at = Some(Instant::now() + LINGER);
        }
    }

    /// Puts the fold off until just after `slot`, unless reports have waited for
    /// slots long enough already.
    fn put_off(&mut self, slot: Timestamp) -> bool {
        let since = *self.put_off_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= PUT_OFF_MAX {
            return false;
        }
        self.at = Some(Instant::now() + antares_nats::until(slot) + quiet::AFTER_SLOT);
        true
    }

    /// The next batch to fold (at most `batch`); what is left is folded next.
    fn take(&mut self, batch: usize) -> Vec<M> {
        self.put_off_since = None;
        let rest = self.msgs.split_off(batch.min(self.msgs.len()));
        let msgs = std::mem::replace(&mut self.msgs, rest);
        self.at = (!self.msgs.is_empty()).then(Instant::now);
        msgs
    }
}

/// A decoded message of the results stream.
enum Item {
    Report(ShardReport),
    Control(Control),
}

impl Item {
    fn instance(&self) -> InstanceId {
        match self {
            Item::Report(r) => r.instance,
            Item::Control(Control::Cancel { instance, .. }) => *instance,
        }
    }
}

impl Leading {
    /// Folds the next batch of the reports waiting, unless a slot of instances made
    /// ahead comes before the fold would end: then it waits until just after it.
    pub(super) async fn fold(&mut self, folds: &mut Folds) {
        if let Some(slot) = self.next_slot()
            && folds.took.would_run_at(slot)
            && folds.put_off(slot)
        {
            return;
        }
        let msgs = folds.take(self.results_batch);
        if msgs.is_empty() {
            return;
        }
        let started = Instant::now();
        self.on_results(msgs, false).await;
        folds.took.note(started.elapsed());
    }

    /// Processes a batch of results-stream messages (urgent reports, written on the
    /// lane, when `lane`).
    pub(super) async fn on_results(&mut self, msgs: Vec<Message>, lane: bool) {
        // Decode; group by instance, keeping order.
        let mut groups: Vec<(InstanceId, Vec<Message>, Vec<Item>)> = Vec::new();
        let mut index: HashMap<InstanceId, usize> = HashMap::new();
        for msg in msgs {
            match self.decode(&msg) {
                Ok((id, items)) => {
                    let slot = *index.entry(id).or_insert_with(|| {
                        groups.push((id, Vec::new(), Vec::new()));
                        groups.len() - 1
                    });
                    if let Some(g) = groups.get_mut(slot) {
                        g.1.push(msg);
                        g.2.extend(items);
                    }
                }
                Err(e) => {
                    tracing::error!(subject = %msg.subject, error = %e, "unreadable message on the results stream dropped");
                    let _ = queue::settle(&msg, Settle::Term).await;
                }
            }
        }

        // Make sure every instance is loaded.
        let mut settled: Vec<(Message, Settle)> = Vec::new();
        let mut work: Vec<(InstanceId, Vec<Message>, Vec<Item>)> = Vec::new();
        for (id, msgs, items) in groups {
            if !self.live.contains_key(&id) {
                match self.load_live(&id, msgs.first()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(instance = %id, "results for an instance that is not running; dropped");
                        settled.extend(msgs.into_iter().map(|m| (m, Settle::Ack)));
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "cannot load instance; results retried");
                        settled.extend(msgs.into_iter().map(|m| (m, RETRY_LATER)));
                        continue;
                    }
                }
            }
            work.push((id, msgs, items));
        }

        // Apply.
        let at = now();
        let mut effects: HashMap<InstanceId, Vec<Effect>> = HashMap::new();
        let mut dirty: HashMap<InstanceId, Dirty> = HashMap::new();
        for (id, _, items) in &work {
            let Some(stored) = self.live.get_mut(id) else {
                continue;
            };
            let d = dirty.entry(*id).or_default();
            let e = effects.entry(*id).or_default();
            for item in items {
                let input = match item {
                    Item::Report(r) => Input::Report(r.clone()),
                    Item::Control(Control::Cancel { .. }) => Input::Cancel { reason: None },
                };
                let step = machine::step(&mut stored.instance, &input, at);
                if let Some(why) = step.ignored {
                    tracing::trace!(instance = %id, why, "input ignored");
                }
                d.summary |= step.summary_changed;
                d.items(&step.changed_items);
                e.extend(step.effects);
            }
        }

        // Persist in one round.
        if !self.leading() {
            for (_, msgs, _) in work {
                settled.extend(msgs.into_iter().map(|m| (m, Settle::Nak(None))));
            }
            settle_all(settled).await;
            return;
        }
        let ids: Vec<InstanceId> = work.iter().map(|w| w.0).collect();
        let outcomes = {
            let mut batch = Vec::new();
            let mut taken: Vec<(InstanceId, crate::store::Stored)> = Vec::new();
            for id in &ids {
                if let Some(s) = self.live.remove(id) {
                    taken.push((*id, s));
                }
            }
            for (id, s) in taken.iter_mut() {
                batch.push((s, dirty.remove(id).unwrap_or_default()));
            }
            let store = if lane { &self.lane_store } else { &self.store };
            let outcomes = store.save_many(&mut batch).await;
            drop(batch);
            let mut by_id = HashMap::new();
            for ((id, s), res) in taken.into_iter().zip(outcomes) {
                by_id.insert(id, res.is_ok());
                match res {
                    Ok(()) => {
                        self.live.insert(id, s);
                    }
                    Err(NatsError::WrongRevision { .. }) => {
                        tracing::warn!(instance = %id, "instance written by another scheduler");
                        self.stop(Stop::Conflict);
                    }
                    Err(e) => {
                        // Dropped from memory: the redelivered reports apply to the
                        // stored instance, read again.
                        tracing::warn!(instance = %id, error = %e, "instance not saved; results retried")
                    }
                }
            }
            by_id
        };
        for (id, msgs, _) in work {
            let ok = outcomes.get(&id).copied().unwrap_or(false);
            let how = if ok { Settle::Ack } else { RETRY_LATER };
            settled.extend(msgs.into_iter().map(|m| (m, how)));
            if ok && let Some(effects) = effects.remove(&id) {
                self.run_effects(id, effects).await;
            }
        }
        settle_all(settled).await;
    }

    /// The instance a results-stream message is about and what it says: a cancel, one
    /// report, or several reports of one instance (header `Antares-Reports`).
    fn decode(&self, msg: &Message) -> Result<(InstanceId, Vec<Item>), NatsError> {
        if self.nats.topo.is_control_subject(&msg.subject) {
            let item = Item::Control(codec::decode::<Control>("control", &msg.payload)?);
            return Ok((item.instance(), vec![item]));
        }
        let counted = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_REPORTS))
            .map(|n| n.as_str().to_string());
        let Some(counted) = counted else {
            let r = codec::decode::<ShardReport>("shard report", &msg.payload)?;
            return Ok((r.instance, vec![Item::Report(r)]));
        };
        let reports = codec::decode::<Vec<ShardReport>>("shard reports", &msg.payload)?;
        let bad = |why: String| NatsError::Config(format!("a message of reports {why}"));
        if counted.parse::<usize>().ok() != Some(reports.len()) {
            return Err(bad(format!(
                "says it holds {counted} but holds {}",
                reports.len()
            )));
        }
        let Some(id) = reports.first().map(|r| r.instance) else {
            return Err(bad("holds none".into()));
        };
        if reports.iter().any(|r| r.instance != id) {
            return Err(bad("holds reports of several instances".into()));
        }
        Ok((id, reports.into_iter().map(Item::Report).collect()))
    }

    /// The consumer of this partition's urgent reports (`spec`), when the results stream takes
    /// them (a stream provisioned before they existed does not: its reports all come
    /// the usual way until `antares provision` runs again and a round leads anew).
    pub(super) async fn urgent_results(
        &mut self,
        spec: queue::ConsumerSpec,
    ) -> Result<Option<async_nats::jetstream::consumer::PullConsumer>, NatsError> {
        let topo = &self.nats.topo;
        let subjects = match self.results_stream.info().await {
            Ok(info) => info.config.subjects.clone(),
            Err(e) => return Err(NatsError::op("read the results stream", e)),
        };
        let wanted = topo.results_stream_subjects();
        if !wanted.iter().all(|w| subjects.contains(w)) {
            tracing::warn!(
                "the results stream takes no urgent reports yet (run `antares provision`, then \
                 restart the schedulers): reports of jobs firing every few seconds wait \
                 behind the others"
            );
            return Ok(None);
        }
        let filters = vec![topo.partition_urgent_results_filter(self.partition)];
        // Pulled and acked on the lane: not behind the burst's traffic on the first
        // connection.
        Ok(Some(
            queue::durable_filtered(&self.lane, &spec, filters).await?,
        ))
    }

    /// Loads a running instance into the cache; `false` if it is not running.
    async fn load_live(
        &mut self,
        id: &InstanceId,
        msg: Option<&Message>,
    ) -> Result<bool, NatsError> {
        let named = msg.and_then(|m| self.nats.topo.app_job_of(&m.subject));
        let stored = match named {
            Some((app, job)) => self.store.load(Place::Live, app, job, id).await?,
            None => self
                .store
                .find(id)
                .await?
                .and_then(|(p, s)| (p == Place::Live).then_some(s)),
        };
        let Some(mut s) = stored.filter(|s| !s.instance.summary.status.is_final()) else {
            return Ok(false);
        };
        // The shard records are the truth: a summary whose write failed after its
        // chunks' catches up here (the reports that made it are already in the chunks).
        let step = machine::step(&mut s.instance, &Input::Recount, now());
        if step.ignored.is_some() {
            self.live.insert(*id, s);
            return Ok(true);
        }
        let dirty = Dirty {
            summary: true,
            ..Dirty::default()
        };
        self.store.save(&mut s, dirty).await?;
        let ended = s.instance.summary.status.is_final();
        self.live.insert(*id, s);
        self.run_effects(*id, step.effects).await;
        Ok(!ended)
    }
}

async fn settle_all(settled: Vec<(Message, Settle)>) {
    for (msg, how) in settled {
        if let Err(e) = queue::settle(&msg, how).await {
            tracing::debug!(error = %e, "result not settled; it will be redelivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_wait_a_little_for_a_batch_and_a_full_one_is_folded_at_once() {
        let mut f = Folds::<u32>::default();
        let t0 = Instant::now();
        f.add([1, 2], 4);
        assert_eq!(f.at, Some(t0 + LINGER));
        f.add([3, 4, 5], 4);
        assert_eq!(f.at, Some(t0), "a full batch is folded at once");
        assert_eq!(f.take(4), vec![1, 2, 3, 4]);
        assert_eq!(f.at, Some(t0), "what is left over is folded next");
        assert_eq!(f.take(4), vec![5]);
        assert_eq!(f.at, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fold_put_off_for_a_slot_runs_after_it_and_reports_wait_so_only_so_long() {
        let mut f = Folds::<u32>::default();
        f.add([1], 10);
        let slot = Timestamp(now().0 + 50);
        assert!(f.put_off(slot));
        let put_off_to = f.at.expect("a fold is due");
        let after = Instant::now() + quiet::AFTER_SLOT + Duration::from_millis(45);
        assert!(put_off_to >= after, "folded after the slot");
        f.add([2; 20], 10);
        assert_eq!(
            f.at,
            Some(put_off_to),
            "more reports do not undo the put-off"
        );
        tokio::time::advance(PUT_OFF_MAX).await;
        assert!(!f.put_off(slot), "reports wait for slots only so long");
        assert_eq!(f.take(10).len(), 10);
        assert!(f.put_off(slot), "a fold starts the bound again");
    }
}
