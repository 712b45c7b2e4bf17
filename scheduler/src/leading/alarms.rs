//! Where the leader raises alarms (see [`crate::alarm`]): at an instance's end (`fail`,
//! `timeout`, `recovered`), at missed fires (`misfire`) and from the maintenance tick
//! (`stuck`).

use std::time::Duration;

use antares_nats::{kv, now};
use antares_schemas::alarm::{AlarmKind, AlarmPayload};
use antares_schemas::instance::InstanceStatus;
use antares_schemas::spec::{AlarmOn, Dur};
use antares_schemas::stats::JobState;
use antares_schemas::{InstanceId, Timestamp};

use super::Leading;
use crate::alarm::raise::is_failure;

fn payload(kind: AlarmKind, app: &str, job: &str, at: Timestamp) -> AlarmPayload {
    AlarmPayload {
        kind,
        app: app.to_string(),
        job: job.to_string(),
        instance: None,
        at,
        status: None,
        error: None,
        url: None,
        suppressed: 0,
    }
}

impl Leading {
    /// An instance ended: `fail`, `timeout`, or `recovered` when it succeeded after its
    /// job's last end was a failure. Looked at once per instance.
    pub(super) async fn alarm_on_end(&mut self, id: InstanceId) {
        let Some(stored) = self.live.get(&id) else {
            return;
        };
        let s = &stored.instance.summary;
        if !self.alarms.first_end(id) {
            return;
        }
        let (app, job, status) = (s.app.clone(), s.job.clone(), s.status);
        let error = s.reason.clone().or_else(|| {
            stored
                .instance
                .shards
                .iter()
                .find_map(|sh| sh.error.clone())
        });
        let at = s.finished_at.unwrap_or_else(now);
        let Some(spec) = self.catalog.job(&app, &job).map(|e| e.spec.alarm.clone()) else {
            self.alarms.note_end(&app, &job, id, status);
            return;
        };
        let kind = match status {
            InstanceStatus::Failed => Some(AlarmKind::Fail),
            InstanceStatus::TimedOut => Some(AlarmKind::Timeout),
            InstanceStatus::Success if spec.on.contains(&AlarmOn::Recovered) => {
                let last = match self.alarms.last_end(&app, &job) {
                    Some(last) => Some(last),
                    None => self.stored_last_end(&app, &job).await,
                };
                last.filter(|(prev, st)| *prev < id && is_failure(*st))
                    .map(|_| AlarmKind::Recovered)
            }
            _ => None,
        };
        self.alarms.note_end(&app, &job, id, status);
        if let Some(kind) = kind {
            let mut p = payload(kind, &app, &job, at);
            p.instance = Some(id);
            p.status = Some(status.as_str().to_string());
            if kind != AlarmKind::Recovered {
                p.error = error;
            }
            self.alarms.raise(&spec, p).await;
        }
    }

    /// A job's last end as the job state bucket has it (after a takeover).
    async fn stored_last_end(&self, app: &str, job: &str) -> Option<(InstanceId, InstanceStatus)> {
        let key = self.nats.topo.jobstate_key(app, job);
        match kv::get::<JobState>(&self.buckets.jobstate, &key, "job state").await {
            Ok(v) => v.map(|v| (v.value.last_instance, v.value.last_status)),
            Err(e) => {
                tracing::warn!(app, job, error = %e, "job state unreadable: no `recovered` alarm");
                None
            }
        }
    }

    /// Fires of a job were missed (`reason` says which).
    pub(super) async fn alarm_misfire(&mut self, app: &str, job: &str, reason: Option<String>) {
        let Some(spec) = self.catalog.job(app, job).map(|e| e.spec.alarm.clone()) else {
            return;
        };
        let mut p = payload(AlarmKind::Misfire, app, job, now());
        p.error = reason;
        self.alarms.raise(&spec, p).await;
    }

    /// Instances still running, or waiting for a capable worker, `stuck_after` after
    /// they started: one `stuck` alarm each.
    pub(super) async fn alarm_stuck(&mut self) {
        let at = now();
        let live = &self.live;
        self.alarms.retain_stuck(|id| live.contains_key(id));
        let mut stuck = Vec::new();
        for (id, stored) in &self.live {
            let s = &stored.instance.summary;
            if s.status.is_final() || s.waiting {
                continue;
            }
            let Some(entry) = self.catalog.job(&s.app, &s.job) else {
                continue;
            };
            let alarm = &entry.spec.alarm;
            if alarm.stuck_after.is_zero() || !alarm.on.contains(&AlarmOn::Stuck) {
                continue;
            }
            let since = s.started_at.unwrap_or(s.scheduled_at);
            let after = i64::try_from(alarm.stuck_after.millis()).unwrap_or(i64::MAX);
            let age = at.since(since);
            if age < after {
                continue;
            }
            let age = Dur(Duration::from_millis(
                u64::try_from(age).unwrap_or(0) / 1000 * 1000,
            ));
            let error = match (&s.no_worker_since, &s.reason) {
                (Some(_), Some(reason)) => {
                    format!("waiting for a capable worker {age} after it started: {reason}")
                }
                _ => format!(
                    "still running {age} after it started (stuck_after = {})",
                    alarm.stuck_after
                ),
            };
            let mut p = payload(AlarmKind::Stuck, &s.app, &s.job, at);
            p.instance = Some(*id);
            p.status = Some(s.status.as_str().to_string());
            p.error = Some(error);
            stuck.push((entry.spec.alarm.clone(), p));
        }
        for (spec, p) in stuck {
            if let Some(id) = p.instance
                && self.alarms.first_stuck(id)
            {
                self.alarms.raise(&spec, p).await;
            }
        }
    }
}
