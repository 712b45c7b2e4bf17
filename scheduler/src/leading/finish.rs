//! An instance that ended: its children fire (when it succeeded), it moves to history,
//! and the next instance of its job that waits its turn starts.
//!
//! Children are made before the move, with ids derived from the parent, so a leader that
//! stops half-way and a new one that finishes the job make each child once. A child
//! chain longer than [`MAX_CHILD_DEPTH`] is refused (a guard against cycles that slipped
//! past `job apply`), as is a child job that does not exist: both with a
//! `trigger_rejected` event saying so. If a step fails (NATS unreachable) the instance
//! stays where it is and the maintenance tick tries again.

use std::time::Duration;

use antares_nats::NatsError;
use antares_schemas::instance::{InstanceStatus, InstanceSummary, NewInstance, TriggerKind};
use antares_schemas::limits::MAX_CHILD_DEPTH;
use antares_schemas::messages::Event;
use antares_schemas::names::split_job_ref;
use antares_schemas::{InstanceId, Timestamp};
use tokio::time::Instant;

use super::Leading;
use super::launch::Created;
use crate::events;

impl Leading {
    /// Finishes an ended instance: children, history, the next waiting instance.
    pub(super) async fn finish(&mut self, id: InstanceId) {
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        let summary = stored.instance.summary.clone();
        if !summary.status.is_final() {
            return;
        }
        let (app, job) = (summary.app.clone(), summary.job.clone());
        // The room it held is free whatever happens next.
        self.runs.end(&app, &job, &id);
        self.admit_waiting(&app, &job);
        if summary.status == InstanceStatus::Success
            && let Err(e) = self.fire_children(&summary).await
        {
            self.finish_later(id, &format!("children not fired yet: {e}"));
            return;
        }
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        match self.store.archive(stored).await {
            Ok(()) => {
                self.live.remove(&id);
                self.unfinished.remove(&id);
            }
            Err(e) => self.finish_later(id, &format!("not moved to history yet: {e}")),
        }
    }

    /// Notes a finish that failed: the maintenance tick tries again after a backoff
    /// (doubling from 1 s to 30 s).
    fn finish_later(&mut self, id: InstanceId, why: &str) {
        let tries = self.unfinished.get(&id).map_or(0, |(n, _)| *n) + 1;
        let wait = Duration::from_secs(1 << tries.min(5)).min(Duration::from_secs(30));
        tracing::warn!(%id, tries, "ended instance: {why}; trying again in {wait:?}");
        self.unfinished.insert(id, (tries, Instant::now() + wait));
    }

    /// Whether a failed finish of this instance may be tried again now.
    pub(super) fn finish_due(&self, id: &InstanceId) -> bool {
        self.unfinished
            .get(id)
            .is_none_or(|(_, at)| *at <= Instant::now())
    }

    /// Starts the waiting instances of a job that now have room.
    pub(super) fn admit_waiting(&mut self, app: &str, job: &str) {
        let (overlap, max_parallel) = self
            .catalog
            .job(app, job)
            .map_or((Default::default(), 1), |e| {
                (e.spec.overlap, e.spec.max_parallel)
            });
        for next in self.runs.admit(app, job, overlap, max_parallel) {
            let items = self
                .live
                .get(&next)
                .map(|s| s.instance.shards.iter().map(|sh| sh.item).collect())
                .unwrap_or_default();
            tracing::debug!(%next, "its turn: queueing its shard items");
            self.publish(next, items, 0);
        }
    }

    async fn fire_children(&mut self, parent: &InstanceSummary) -> Result<(), NatsError> {
        let Some(entry) = self.catalog.job(&parent.app, &parent.job) else {
            return Ok(());
        };
        let children = entry.spec.children.clone();
        let at = parent.finished_at.unwrap_or_else(antares_nats::now);
        for child in children {
            match self.child_instance(parent, &child, at) {
                Ok(new) => {
                    if let Created::New(id) = self.create_instance(new).await? {
                        tracing::debug!(parent = %parent.id, %id, "child fired");
                    }
                }
                Err((app, job, reason)) => {
                    events::emit(&self.nats, &Event::rejected(&app, &job, at, reason)).await;
                }
            }
        }
        Ok(())
    }

    /// The instance `child` (`app/job`) of `parent` gets, or why it cannot have one (as
    /// app, job and reason of a `trigger_rejected` event).
    fn child_instance(
        &self,
        parent: &InstanceSummary,
        child: &str,
        at: Timestamp,
    ) -> Result<NewInstance, (String, String, String)> {
        let (app, job) = split_job_ref(child).map_err(|e| {
            (
                parent.app.clone(),
                parent.job.clone(),
                format!("child `{child}`: {e}"),
            )
        })?;
        if parent.depth + 1 > MAX_CHILD_DEPTH {
            let reason = format!(
                "child of instance {}: {MAX_CHILD_DEPTH} parents up the chain already (a cycle of children?); not fired",
                parent.id
            );
            return Err((app, job, reason));
        }
        let Some(spec) = self.catalog.job(&app, &job).map(|e| &e.spec) else {
            let reason = format!(
                "child of instance {} ({}/{}): job `{app}/{job}` does not exist",
                parent.id, parent.app, parent.job
            );
            return Err((app, job, reason));
        };
        let items = match spec.shard_items(&Default::default()) {
            Ok(items) => items,
            Err(e) => return Err((app, job, e.to_string())),
        };
        let mut new = spec.new_instance(
            child_id(parent, &app, &job, at),
            TriggerKind::Child,
            at,
            items,
        );
        new.parent = Some(parent.id);
        new.depth = parent.depth + 1;
        Ok(new)
    }
}

/// A child's id: one per parent instance and child job.
fn child_id(parent: &InstanceSummary, app: &str, job: &str, at: Timestamp) -> InstanceId {
    InstanceId::derive(at, &format!("child/{}/{app}/{job}", parent.id))
}
