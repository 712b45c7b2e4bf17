//! The cluster view (schedulers and workers) and cron previews.

use antares_nats::{codec, kv, lease};
use antares_schemas::Timestamp;
use antares_schemas::cluster::{ClusterView, SchedulerInfo, WorkerInfo};
use antares_schemas::cron::CronExpr;

use super::Admin;
use crate::error::SchedulerError;

/// Most fire times one preview gives.
pub const MAX_PREVIEW: usize = 1000;

impl Admin {
    /// Live schedulers (the holder of the first partition's lease marked `leader`) and
    /// live workers.
    pub async fn cluster(&self) -> Result<ClusterView, SchedulerError> {
        let b = &self.buckets;
        let holder = lease::holder(&b.leases, &self.nats.topo.lease_key(0))
            .await?
            .map(|h| h.record.holder);
        let mut schedulers = Vec::new();
        for hit in kv::scan(&self.nats, &b.schedulers, ">", false).await? {
            match codec::decode::<SchedulerInfo>("scheduler heartbeat", &hit.value) {
                Ok(mut s) => {
                    s.leader = holder.as_deref() == Some(s.id.as_str());
                    schedulers.push(s);
                }
                Err(e) => {
                    tracing::warn!(key = %hit.key, error = %e, "unreadable scheduler heartbeat skipped")
                }
            }
        }
        schedulers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut workers = Vec::new();
        for hit in kv::scan(&self.nats, &b.workers, ">", false).await? {
            match codec::decode::<WorkerInfo>("worker heartbeat", &hit.value) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    tracing::warn!(key = %hit.key, error = %e, "unreadable worker heartbeat skipped")
                }
            }
        }
        workers.sort_by(|a, b| (&a.app, &a.id).cmp(&(&b.app, &b.id)));
        Ok(ClusterView {
            schedulers,
            workers,
        })
    }
}

/// The next `n` (at most [`MAX_PREVIEW`]) fire times of a cron expression evaluated in
/// the IANA time zone `tz` (empty = UTC), strictly after `after` (default: now). Fewer
/// when the schedule ends; the parse error when it is not a valid expression.
pub fn cron_next(
    expr: &str,
    tz: &str,
    n: usize,
    after: Option<Timestamp>,
) -> Result<Vec<Timestamp>, SchedulerError> {
    if n > MAX_PREVIEW {
        return Err(SchedulerError::Invalid(format!(
            "asked for {n} fire times: at most {MAX_PREVIEW}"
        )));
    }
    let cron = CronExpr::parse(expr, tz).map_err(|e| SchedulerError::Invalid(e.to_string()))?;
    Ok(cron.upcoming(after.unwrap_or_else(antares_nats::now), n))
}
