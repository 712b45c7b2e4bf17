//! Taking over: finishing what a previous leader left.
//!
//! Every instance still in the instances bucket is loaded. Ended ones are finished
//! (children, history). Waiting ones queue up again by job, oldest first. Running ones
//! (and pending ones that were being queued) get their retry timers back, and their
//! pending items that are neither in the work queue nor reported on are published: a
//! launch cut short completes, and nothing is queued twice however late the takeover.
//! Then every job's waiting instances that have room start.

use std::collections::BTreeSet;

use antares_nats::NatsError;
use antares_schemas::instance::{InstanceStatus, ShardStatus};

use crate::leading::Leading;

impl Leading {
    /// Loads and completes what a previous leader left.
    pub(crate) async fn recover(&mut self) -> Result<(), NatsError> {
        self.live.clear();
        self.runs.clear();
        self.retries.clear();
        let mut ended = Vec::new();
        let mut jobs = BTreeSet::new();
        for stored in self.store.running().await? {
            let s = &stored.instance.summary;
            let (id, app, job) = (s.id, s.app.clone(), s.job.clone());
            let status = s.status;
            jobs.insert((app.clone(), job.clone()));
            if status.is_final() {
                ended.push(id);
                self.live.insert(id, stored);
                continue;
            }
            if status == InstanceStatus::Pending && s.waiting {
                self.runs.wait(&app, &job, id);
                self.live.insert(id, stored);
                continue;
            }
            self.runs.start(&app, &job, id);
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
            let pending = status == InstanceStatus::Pending;
            self.live.insert(id, stored);
            let missing = self.missing_items(&app, &job, &id, &unqueued).await?;
            if !missing.is_empty() || pending {
                tracing::info!(%id, items = missing.len(), "completing the queueing of an instance");
                self.publish(id, missing, 0);
            }
        }
        for id in ended {
            self.finish(id).await;
        }
        for (app, job) in jobs {
            self.admit_waiting(&app, &job);
        }
        Ok(())
    }
}
