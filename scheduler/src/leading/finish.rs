//! An instance that ended: its children fire (when it succeeded), it moves to history,
//! and the next instance of its job that waits its turn starts.
//!
//! Children are made before the move, with ids derived from the parent, so a leader that
//! stops half-way and a new one that finishes the job make each child once. A child
//! chain longer than [`MAX_CHILD_DEPTH`] is refused (a guard against cycles that slipped
//! past `job apply`), as is a child job that does not exist: both with a
//! `trigger_rejected` event saying so. A child of a job in another partition is not
//! made here but sent to its leader as a trigger naming its id, parent and depth (the
//! instance claim makes it once however often it is sent). If a step fails (NATS unreachable) the instance
//! stays where it is and the maintenance tick tries again.
//!
//! The moves themselves go in batches ([`crate::store::archive`]): every instance that
//! ended since the last batch went, at most [`ARCHIVE_BATCH`], in one task beside the
//! loop, so the loop stays responsive while it writes history, the index, job states and
//! counts. One batch runs at a time; what ends meanwhile waits for the next. An instance
//! in a batch has left `live`; one whose move failed comes back with how far it got and
//! is tried again after a backoff. The instances waiting are live instances, so what
//! waits is bounded by what the leader holds anyway.

use std::time::Duration;

use antares_nats::NatsError;
use antares_schemas::instance::{InstanceStatus, InstanceSummary, NewInstance, TriggerKind};
use antares_schemas::limits::MAX_CHILD_DEPTH;
use antares_schemas::messages::Event;
use antares_schemas::names::split_job_ref;
use antares_schemas::topology::{
    HEADER_DEPTH, HEADER_INSTANCE, HEADER_MSG_ID, HEADER_PARENT, HEADER_TRIGGER,
};
use antares_schemas::{InstanceId, Timestamp};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::time::Instant;

use super::Leading;
use super::launch::Created;
use crate::events;
use crate::store::{Progress, Stored};

/// Ended instances moved to history in one batch, at most.
pub(super) const ARCHIVE_BATCH: usize = 512;
/// How long before instances made ahead are due at their slot no batch of moves to
/// history starts (ms).
const ARCHIVE_QUIET: i64 = 200;

/// The outcome of a batch: each instance, how far its move got, and whether it is done.
pub(super) type Archived = Vec<(Stored, Progress, Result<(), NatsError>)>;

impl Leading {
    /// Finishes an ended instance: children, history, the next waiting instance.
    pub(super) async fn finish(&mut self, id: InstanceId) {
        if self.ending.contains_key(&id) {
            // Done with but for its move, which a batch makes.
            return;
        }
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        let summary = stored.instance.summary.clone();
        if !summary.status.is_final() {
            return;
        }
        let (app, job) = (summary.app.clone(), summary.job.clone());
        self.alarm_on_end(id).await;
        // The room it held is free whatever happens next.
        self.runs.end(&app, &job, &id);
        self.admit_waiting(&app, &job);
        if summary.status == InstanceStatus::Success
            && let Err(e) = self.fire_children(&summary).await
        {
            self.finish_later(id, &format!("children not fired yet: {e}"));
            return;
        }
        if self.live.contains_key(&id) {
            self.unfinished.remove(&id);
            self.ending.insert(id, Progress::default());
        }
    }

    /// Starts a batch of moves to history in the background, unless one runs: the ended
    /// instances whose backoff (after a failed move) is over.
    pub(super) fn start_archive(&mut self) {
        if !self.archiving.is_empty() || self.ending.is_empty() || !self.leading() {
            return;
        }
        // Its writes would slow down the marks of instances due at their slot now.
        if self.slot_at_hand() {
            return;
        }
        let due: Vec<(InstanceId, Progress)> = self
            .ending
            .iter()
            .filter(|(id, _)| self.finish_due(id))
            .take(ARCHIVE_BATCH)
            .map(|(id, p)| (*id, *p))
            .collect();
        let mut batch = Vec::with_capacity(due.len());
        for (id, progress) in due {
            match self.live.remove(&id) {
                Some(stored) => batch.push((stored, progress)),
                None => {
                    self.ending.remove(&id);
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let store = self.store.clone();
        self.archiving.spawn(async move {
            let mut refs: Vec<(&Stored, Progress)> = batch.iter().map(|(s, p)| (s, *p)).collect();
            let results = store.archive_many(&mut refs).await;
            let progress: Vec<Progress> = refs.into_iter().map(|(_, p)| p).collect();
            batch
                .into_iter()
                .zip(progress)
                .zip(results)
                .map(|(((stored, _), p), res)| (stored, p, res))
                .collect()
        });
    }

    /// Takes in a finished batch: moved instances are done with; the others come back to
    /// `live` with how far they got, and are tried again after a backoff.
    pub(super) fn on_archived(&mut self, done: Archived) {
        for (stored, progress, res) in done {
            let id = stored.instance.summary.id;
            match res {
                Ok(()) => {
                    self.ending.remove(&id);
                    self.unfinished.remove(&id);
                }
                Err(e) => {
                    self.ending.insert(id, progress);
                    self.live.insert(id, stored);
                    self.finish_later(id, &format!("not moved to history yet: {e}"));
                }
            }
        }
    }

    /// Notes a finish that failed: the maintenance tick tries again after a backoff
    /// (doubling from 1 s to 30 s).
    fn finish_later(&mut self, id: InstanceId, why: &str) {
        let tries = self.unfinished.get(&id).map_or(0, |(n, _)| *n) + 1;
        let wait = Duration::from_secs(1 << tries.min(5)).min(Duration::from_secs(30));
        tracing::warn!(instance = %id, tries, "ended instance: {why}; trying again in {wait:?}");
        self.unfinished.insert(id, (tries, Instant::now() + wait));
    }

    /// Whether instances made ahead are due at their slot within [`ARCHIVE_QUIET`]: a
    /// batch of moves to history waits until they are started, so that its writes do
    /// not slow down theirs.
    fn slot_at_hand(&self) -> bool {
        self.slot_within(ARCHIVE_QUIET).is_some()
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
        let live = &self.live;
        let admitted = self
            .runs
            .admit(app, job, overlap, max_parallel, |id| live.contains_key(id));
        for next in admitted {
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
                Ok(new) if !self.mine(&new.app, &new.job) => {
                    self.send_child(&new).await?;
                    tracing::debug!(parent = %parent.id, instance = %new.id, "child sent to its partition");
                }
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

    /// Sends a child of a job in another partition to that partition's leader: a
    /// trigger with the child's id (also its de-duplication id), parent and depth.
    async fn send_child(&self, new: &NewInstance) -> Result<(), NatsError> {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_TRIGGER, "child");
        headers.insert(HEADER_INSTANCE, new.id.to_string().as_str());
        headers.insert(HEADER_MSG_ID, new.id.to_string().as_str());
        if let Some(parent) = new.parent {
            headers.insert(HEADER_PARENT, parent.to_string().as_str());
        }
        headers.insert(HEADER_DEPTH, new.depth.to_string().as_str());
        let subject = self.nats.topo.trigger_subject(&new.app, &new.job);
        let op = || format!("send child to {subject}");
        self.nats
            .js
            .publish_with_headers(subject.clone(), headers, Bytes::new())
            .await
            .map_err(|e| NatsError::op(op(), e))?
            .await
            .map_err(|e| NatsError::op(op(), e))?;
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
        let Some(entry) = self.catalog.job(&app, &job) else {
            let reason = format!(
                "child of instance {} ({}/{}): job `{app}/{job}` does not exist",
                parent.id, parent.app, parent.job
            );
            return Err((app, job, reason));
        };
        let items = match entry.spec.shard_items(&Default::default()) {
            Ok(items) => items,
            Err(e) => return Err((app, job, e.to_string())),
        };
        let mut new = entry.spec.new_instance(
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
