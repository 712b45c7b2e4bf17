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

use antares_nats::{codec, kv, now};
use antares_schemas::cluster::WorkerInfo;
use antares_schemas::instance::ShardStatus;
use antares_schemas::machine::Input;
use antares_schemas::messages::Execution;
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
            self.alarm_stuck().await;
            // An urgent fire's instance that ended before its turn came.
            let live = &self.live;
            self.lane_ids.retain(|id| live.contains_key(id));
        }
        self.republish_due().await;
        self.settle_unsettled().await;
        self.repeat_stops().await;
        let ended: Vec<InstanceId> = self
            .live
            .iter()
            .filter(|(id, s)| {
                s.instance.summary.status.is_final()
                    && !self.ending.contains_key(*id)
                    && self.finish_due(id)
            })
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
            tracing::warn!(instance = %id, item, "attempt past its timeout and not reported on: ending it");
            self.apply(id, Input::Expired { item }).await;
        }
    }

    /// Reads every worker's heartbeat into the registry routing decisions use; `None`
    /// when the bucket cannot be read (the registry stays as it was).
    pub(super) async fn scan_workers(&mut self) -> Option<(HashSet<String>, Vec<WorkerInfo>)> {
        let workers = match kv::scan(&self.nats, &self.buckets.workers, ">", false).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read worker heartbeats");
                return None;
            }
        };
        let infos: Vec<WorkerInfo> = workers
            .iter()
            .filter_map(|k| codec::decode::<WorkerInfo>("worker heartbeat", &k.value).ok())
            .collect();
        self.workers.refresh(infos.clone());
        let alive = workers.into_iter().map(|k| k.key).collect();
        Some((alive, infos))
    }

    async fn rerun_lost(&mut self) {
        let Some((alive, infos)) = self.scan_workers().await else {
            return;
        };
        self.check_capable(&infos).await;
        self.count_busy();
        self.route_again().await;
        let topo = &self.nats.topo;
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
            tracing::warn!(instance = %id, item, %worker, "worker gone (no heartbeat): running its shard again");
            self.apply(id, Input::Lost { item, worker }).await;
        }
    }

    /// Instances with shards waiting to run and no live worker of their app that can run
    /// them say so (`no_worker`), and fail once that has lasted `no_worker_wait`.
    async fn check_capable(&mut self, workers: &[WorkerInfo]) {
        let at = now();
        let wait = i64::try_from(self.no_worker_wait.as_millis()).unwrap_or(i64::MAX);
        let mut inputs = Vec::new();
        for (id, s) in &self.live {
            let summary = &s.instance.summary;
            if summary.status.is_final() || summary.waiting {
                continue;
            }
            let waiting_shards = s.instance.shards.iter().any(|sh| {
                matches!(sh.status, ShardStatus::Pending | ShardStatus::Later)
                    && sh.retry_at.is_none()
            });
            let of_app: Vec<&WorkerInfo> =
                workers.iter().filter(|w| w.app == summary.app).collect();
            let capable = of_app.iter().any(|w| {
                w.can_run(&summary.exec)
                    && (summary.workers.is_empty() || summary.workers.contains(&w.id))
            });
            match (waiting_shards && !capable, summary.no_worker_since) {
                (true, None) => {
                    let reason = if summary.workers.is_empty() {
                        missing_worker(&summary.app, &summary.exec, !of_app.is_empty())
                    } else {
                        format!(
                            "none of the workers it is pinned to ({}) is live and able to run it",
                            summary.workers.join(", ")
                        )
                    };
                    inputs.push((*id, Input::NoWorker { reason }));
                }
                (true, Some(since)) if at.since(since) > wait => {
                    let reason = format!(
                        "{} for {}: it fails",
                        summary
                            .reason
                            .clone()
                            .unwrap_or_else(|| "no live worker can run it".into()),
                        humanize(self.no_worker_wait)
                    );
                    inputs.push((*id, Input::Fail { reason }));
                }
                (false, Some(_)) => inputs.push((*id, Input::WorkerBack)),
                _ => {}
            }
        }
        for (id, input) in inputs {
            if let Input::NoWorker { reason } = &input {
                tracing::warn!(instance = %id, %reason, "no live worker can run this instance's shards");
            }
            self.apply(id, input).await;
        }
    }
}

/// What is missing for an instance's shards to run, in words.
fn missing_worker(app: &str, exec: &Execution, any_worker: bool) -> String {
    if !any_worker {
        return format!("no live worker of app `{app}`: start one (`antares worker --app {app}`)");
    }
    match exec {
        Execution::Plugin { handler } => format!(
            "no live worker of app `{app}` has the plugin `{handler}`: start a worker that registers it"
        ),
        Execution::Command { .. } | Execution::Script { .. } => {
            format!("no live worker of app `{app}` runs scripts: start one with --allow-scripts")
        }
        Execution::Http { .. } => format!("no live worker of app `{app}` runs http jobs"),
    }
}

fn humanize(d: Duration) -> String {
    antares_schemas::spec::Dur(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing_is_said() {
        let plugin = Execution::Plugin {
            handler: "report".into(),
        };
        assert!(missing_worker("shop", &plugin, false).contains("no live worker of app `shop`"));
        assert!(missing_worker("shop", &plugin, true).contains("the plugin `report`"));
        let script = Execution::Command {
            command: "true".into(),
        };
        assert!(missing_worker("shop", &script, true).contains("--allow-scripts"));
    }
}
