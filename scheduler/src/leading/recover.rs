//! Taking over: finishing what a previous leader left.
//!
//! Every instance still in the instances bucket is loaded, its counts and finality
//! checked against its shard records (a summary written apart from its chunks may lag
//! behind them), and missing chunks of a pending one written. Ended ones are finished
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

use super::Leading;
use crate::events;
use crate::store::Dirty;

impl Leading {
    /// Loads and completes what a previous leader left.
    pub(super) async fn recover(&mut self) -> Result<(), NatsError> {
        self.live.clear();
        self.runs.clear();
        self.retries.clear();
        let mut ended = Vec::new();
        let mut jobs = BTreeSet::new();
        let mut loaded = Vec::new();
        for mut stored in self.store.running().await? {
            let s = &stored.instance.summary;
            if s.status == InstanceStatus::Pending {
                // Its creator may have stopped before writing every chunk.
                self.store.write_missing_chunks(&mut stored).await?;
            }
            // The shard records are the truth: counts and finality follow from them.
            let step = machine::step(&mut stored.instance, &Input::Recount, now());
            if step.ignored.is_none() {
                tracing::warn!(id = %stored.instance.summary.id, "instance summary lagged behind its shard records; corrected");
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
        for id in loaded {
            let Some(stored) = self.live.get(&id) else {
                continue;
            };
            let s = &stored.instance.summary;
            let (app, job) = (s.app.clone(), s.job.clone());
            let status = s.status;
            jobs.insert((app.clone(), job.clone()));
            if status.is_final() {
                ended.push(id);
                continue;
            }
            self.resume(id).await?;
        }
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
        let Some(stored) = self.live.get(&id) else {
            return Ok(());
        };
        let s = &stored.instance.summary;
        let (app, job) = (s.app.clone(), s.job.clone());
        let pending = s.status == InstanceStatus::Pending;
        let waiting = pending && s.waiting;
        let mut unqueued = Vec::new();
        for sh in &stored.instance.shards {
            match (sh.status, sh.retry_at) {
                (ShardStatus::Pending, Some(at)) => {
                    self.retries.insert((at, id, sh.item));
                }
                (ShardStatus::Pending, None) => unqueued.push(sh.item),
                _ => {}
            }
        }
        let all = unqueued.len();
        let missing = self.missing_items(&app, &job, &id, &unqueued).await?;
        if waiting && missing.len() == all {
            // Still waiting its turn: none of its items went out.
            self.runs.wait(&app, &job, id);
            return Ok(());
        }
        // Running, or admitted just before it was left.
        self.runs.start(&app, &job, id);
        if !missing.is_empty() || pending {
            tracing::info!(%id, items = missing.len(), "completing the queueing of an instance");
            self.publish(id, missing, 0);
        }
        Ok(())
    }
}
