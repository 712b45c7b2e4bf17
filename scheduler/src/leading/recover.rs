//! Taking over: finishing what a previous leader of the partition left.
//!
//! Every instance of the partition's jobs still in the instances bucket is loaded, its counts and finality
//! checked against its shard records (a summary written apart from its chunks may lag
//! behind them), and missing chunks and id claims of pending ones written. Ended ones are finished
//! (children, history). Waiting ones queue up again by job, oldest first. Running ones
//! (and pending ones that were being queued) get their retry timers back, and their
//! pending items that are neither in the work queue nor reported on are published: a
//! launch cut short completes, and nothing is queued twice however late the takeover.
//! Then every job's waiting instances that have room start.

use std::collections::BTreeSet;

use antares_nats::{NatsError, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::{InstanceStatus, ShardStatus};
use antares_schemas::machine::{self, Effect, Input};
use futures::StreamExt;

use super::Leading;
use crate::events;
use crate::store::Dirty;

/// Presence checks of a takeover run this many at a time.
const PRESENCE_CHECKS: usize = 16;

impl Leading {
    /// Loads and completes what a previous leader left.
    pub(super) async fn recover(&mut self) -> Result<(), NatsError> {
        self.live.clear();
        self.runs.clear();
        self.retries.clear();
        self.ending.clear();
        let mut ended = Vec::new();
        let mut jobs = BTreeSet::new();
        let mut loaded = Vec::new();
        let topo = self.nats.topo.clone();
        let partition = self.partition;
        let ours = |app: &str, job: &str| topo.partition_of(app, job) == partition;
        for mut stored in self.store.running(ours).await? {
            let s = &stored.instance.summary;
            if s.status == InstanceStatus::Pending {
                // Its creator may have stopped before writing every chunk.
                self.store.write_missing_chunks(&mut stored).await?;
            }
            // The shard records are the truth: counts and finality follow from them.
            let step = machine::step(&mut stored.instance, &Input::Recount, now());
            if step.ignored.is_none() {
                tracing::warn!(instance = %stored.instance.summary.id, "instance summary lagged behind its shard records; corrected");
                let dirty = Dirty {
                    summary: true,
                    ..Dirty::default()
                };
                self.store.save(&mut stored, dirty).await?;
                for effect in step.effects {
                    if let Effect::Emit(e) = effect {
                        events::emit(&self.nats, &e).await;
                    }
                }
            }
            let id = stored.instance.summary.id;
            loaded.push(id);
            self.live.insert(id, stored);
        }
        // A pending one's claim may be what its creator did not get to write.
        let pending: Vec<_> = self
            .live
            .values()
            .filter(|s| s.instance.summary.status == InstanceStatus::Pending)
            .collect();
        self.store.confirm_claims(&pending).await?;
        let mut open = Vec::new();
        for id in loaded {
            let Some(stored) = self.live.get(&id) else {
                continue;
            };
            let s = &stored.instance.summary;
            jobs.insert((s.app.clone(), s.job.clone()));
            if s.status.is_final() {
                ended.push(id);
            } else {
                open.push(id);
            }
        }
        // Which pending items are already out: one look at the streams per instance,
        // several at a time rather than one after the other.
        let checks: Vec<_> = open
            .into_iter()
            .filter_map(|id| self.unqueued(id))
            .collect();
        let this = &*self;
        let found: Vec<_> = futures::stream::iter(checks)
            .map(|(id, app, job, items)| async move {
                let missing = this.missing_items(&app, &job, &id, &items).await;
                (id, items.len(), missing)
            })
            .buffered(PRESENCE_CHECKS)
            .collect()
            .await;
        for (id, all, missing) in found {
            self.resume_with(id, all, missing?);
        }
        // Which items wait on which worker's own subject (those of a worker that is
        // gone move on at the next scan).
        self.load_targets().await?;
        for id in ended {
            self.finish(id).await;
        }
        for (app, job) in jobs {
            self.admit_waiting(&app, &job);
        }
        Ok(())
    }

    /// Takes up a stored instance that is not final, already in `live`: its retry timers
    /// come back, and its pending items that are neither queued nor reported on are
    /// published (a launch cut short completes, nothing is queued twice); one that waits
    /// its turn and has nothing out waits again.
    pub(super) async fn resume(&mut self, id: InstanceId) -> Result<(), NatsError> {
        let Some((id, app, job, items)) = self.unqueued(id) else {
            return Ok(());
        };
        let missing = self.missing_items(&app, &job, &id, &items).await?;
        self.resume_with(id, items.len(), missing);
        Ok(())
    }

    /// Sets a live instance's retry timers back and returns its pending items that wait
    /// for no retry (with its app and job).
    fn unqueued(&mut self, id: InstanceId) -> Option<(InstanceId, String, String, Vec<u32>)> {
        let stored = self.live.get(&id)?;
        let s = &stored.instance.summary;
        let mut items = Vec::new();
        for sh in &stored.instance.shards {
            match (sh.status, sh.retry_at) {
                (ShardStatus::Pending, Some(at)) => {
                    self.retries.insert((at, id, sh.item));
                }
                (ShardStatus::Pending, None) => items.push(sh.item),
                _ => {}
            }
        }
        Some((id, s.app.clone(), s.job.clone(), items))
    }

    /// Resumes an instance of which `missing` of its `all` unqueued items are not out.
    fn resume_with(&mut self, id: InstanceId, all: usize, missing: Vec<u32>) {
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        let s = &stored.instance.summary;
        let (app, job) = (s.app.clone(), s.job.clone());
        let pending = s.status == InstanceStatus::Pending;
        if pending && s.armed && missing.len() == all {
            // Made ahead of its slot and not started: it starts at its slot.
            self.arm(id);
            return;
        }
        if pending && s.waiting && missing.len() == all {
            // Still waiting its turn: none of its items went out.
            self.runs.wait(&app, &job, id);
            return;
        }
        // Running, or admitted just before it was left.
        self.runs.start(&app, &job, id);
        if !missing.is_empty() || pending {
            tracing::info!(instance = %id, items = missing.len(), "completing the queueing of an instance");
            self.publish(id, missing, 0);
        }
    }
}
