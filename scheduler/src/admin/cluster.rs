//! The cluster view (schedulers and workers) and cron previews.

use std::collections::BTreeMap;

use antares_nats::{codec, kv};
use antares_schemas::Timestamp;
use antares_schemas::cluster::{ClusterView, LeaseRecord, SchedulerInfo, WorkerInfo};
use antares_schemas::cron::CronExpr;

use super::Admin;
use crate::error::SchedulerError;

/// Most fire times one preview gives.
pub const MAX_PREVIEW: usize = 1000;

impl Admin {
    /// Live schedulers, each with the partitions whose lease it holds (`leader` when
    /// it holds any), and live workers.
    pub async fn cluster(&self) -> Result<ClusterView, SchedulerError> {
        let b = &self.buckets;
        let topo = &self.nats.topo;
        // Who holds each partition, as the leases say (a heartbeat may be a beat old).
        let mut held: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for hit in kv::scan(&self.nats, &b.leases, ">", false).await? {
            let partition = (0..topo.partitions()).find(|p| topo.lease_key(*p) == hit.key);
            if let (Some(p), Ok(r)) = (partition, codec::decode::<LeaseRecord>("lease", &hit.value))
            {
                held.entry(r.holder).or_default().push(p);
            }
        }
        let mut schedulers = Vec::new();
        for hit in kv::scan(&self.nats, &b.schedulers, ">", false).await? {
            match codec::decode::<SchedulerInfo>("scheduler heartbeat", &hit.value) {
                Ok(mut s) => {
                    s.partitions = held.remove(&s.id).unwrap_or_default();
                    s.partitions.sort_unstable();
                    s.leader = !s.partitions.is_empty();
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
            partitions: topo.partitions(),
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
