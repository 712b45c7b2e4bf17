//! The maintenance tick: what makes every shard end even when machines die.
//!
//! Every tick the leader
//! - publishes shard items whose retry time has come;
//! - ends attempts running past their timeout plus [`EXPIRE_GRACE`] that no worker
//!   reported on (the worker may be hung or gone): they end `timed_out`, are told to
//!   stop, and are retried like a failure;
//! - every [`LOST_CHECK_TICKS`] ticks, reruns the shards of workers whose heartbeat is
//!   gone (three missed beats), so they run elsewhere within seconds whatever the ack
//!   wait: the old publication is purged and the item is published again as a new run,
//!   which also fences the old worker should it wake up;
//! - says stops again (a worker reconnecting at that moment would miss one);
//! - tries again what failed before: publications, moves to history, cursors.

use std::collections::HashSet;
use std::time::Duration;

use antares_nats::{kv, now};
use antares_schemas::instance::ShardStatus;
use antares_schemas::machine::Input;
use antares_schemas::{InstanceId, Timestamp};

use super::Leading;

/// How long past its timeout an attempt may go unreported before the scheduler ends it
/// (the worker's own timeout, its stop grace and the report should come first).
pub const EXPIRE_GRACE: Duration = Duration::from_secs(10);
/// Lost workers are looked for every this many ticks.
const LOST_CHECK_TICKS: u64 = 4;

impl Leading {
    /// One maintenance tick.
    pub(super) async fn maintain(&mut self) {
        self.ticks += 1;
        self.retries_due().await;
        self.expire_attempts().await;
        if self.ticks.is_multiple_of(LOST_CHECK_TICKS) {
            self.rerun_lost().await;
        }
        self.republish_due().await;
        self.repeat_stops().await;
        let ended: Vec<InstanceId> = self
            .live
            .iter()
            .filter(|(id, s)| s.instance.summary.status.is_final() && self.finish_due(id))
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            self.finish(id).await;
        }
        self.save_unsaved_cursors().await;
    }

    async fn retries_due(&mut self) {
        let at = now();
        while let Some(&(due, id, item)) = self.retries.first() {
            if due > at || !self.leading() {
                break;
            }
            self.retries.pop_first();
            self.apply(id, Input::RetryDue { item }).await;
        }
    }

    async fn expire_attempts(&mut self) {
        let at = now();
        let grace = i64::try_from(EXPIRE_GRACE.as_millis()).unwrap_or(10_000);
        let mut expired = Vec::new();
        for (id, s) in &self.live {
            let timeout = i64::try_from(s.instance.summary.timeout_ms).unwrap_or(i64::MAX);
            if timeout == 0 {
                continue;
            }
            for sh in &s.instance.shards {
                if sh.status == ShardStatus::Running
                    && let Some(started) = sh.started_at
                    && at.since(started) > timeout.saturating_add(grace)
                {
                    expired.push((*id, sh.item));
                }
            }
        }
        for (id, item) in expired {
            tracing::warn!(%id, item, "attempt past its timeout and not reported on: ending it");
            self.apply(id, Input::Expired { item }).await;
        }
    }

    async fn rerun_lost(&mut self) {
        let topo = &self.nats.topo;
        let alive: HashSet<String> =
            match kv::scan(&self.nats, &self.buckets.workers, ">", true).await {
                Ok(found) => found.into_iter().map(|k| k.key).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read worker heartbeats");
                    return;
                }
            };
        // A start reported just now may come from a worker whose first beat is on its way.
        let young = Timestamp(now().0 - 2000);
        let mut lost = Vec::new();
        for (id, s) in &self.live {
            let app = &s.instance.summary.app;
            for sh in &s.instance.shards {
                if sh.status != ShardStatus::Running {
                    continue;
                }
                let Some(worker) = &sh.worker else { continue };
                if sh.started_at.is_some_and(|t| t > young) {
                    continue;
                }
                if !alive.contains(&topo.worker_key(app, worker)) {
                    lost.push((*id, sh.item, worker.clone()));
                }
            }
        }
        for (id, item, worker) in lost {
            tracing::warn!(%id, item, %worker, "worker gone (no heartbeat): running its shard again");
            self.apply(id, Input::Lost { item, worker }).await;
        }
    }
}
