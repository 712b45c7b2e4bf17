//! The leader's side of schedules: planning each job from its cursor and handing the
//! slots that are due to the fire pipeline ([`super::fires`]).
//!
//! After a takeover every cursor is read in one scan of the cursors bucket and every job
//! planned from memory, so planning 100,000 jobs takes no round trip per job. A fire that
//! cannot be made (NATS unreachable, for instance) does not hold up the other jobs or end
//! leading: the job is planned again from its cursor after a backoff, so its slots fire
//! late or by its misfire policy once NATS answers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use antares_nats::kv;
use antares_nats::{NatsError, codec, now};
use antares_schemas::Timestamp;
use antares_schemas::messages::{Event, EventKind};
use antares_schemas::schedule::Schedule;
use antares_schemas::spec::Misfire;

use super::Leading;
use super::fires::JobFires;
use crate::firing::{self, Missed};

/// Plans worked out in one planning pass, by schedule (its address: jobs with the same
/// schedule share it), misfire policy and cursor; each holds its schedule, so that no
/// other takes its address during the pass.
type Plans = HashMap<(usize, Misfire, Option<Timestamp>), (Arc<Schedule>, firing::Plan)>;

/// Longest wait before a job whose fire failed is planned again.
const MAX_FIRE_BACKOFF: Duration = Duration::from_secs(5);

impl Leading {
    async fn load_cursor(&mut self, app: &str, job: &str) -> Option<Timestamp> {
        let key = (app.to_string(), job.to_string());
        if let Some(c) = self.cursors.get(&key) {
            return Some(*c);
        }
        let stored = kv::get::<Timestamp>(
            &self.buckets.cursors,
            &self.nats.topo.job_key(app, job),
            "cursor",
        )
        .await;
        match stored {
            Ok(v) => {
                let c = v.map(|v| v.value);
                if let Some(c) = c {
                    self.cursors.insert(key, c);
                }
                c
            }
            Err(e) => {
                tracing::error!(app, job, error = %e, "stored cursor unreadable; planning from now");
                None
            }
        }
    }

    /// Every stored cursor, in one scan of the cursors bucket; a value that cannot be
    /// read is logged and its job planned from now.
    async fn scan_cursors(&mut self) -> Result<(), NatsError> {
        self.cursors.clear();
        let by_key: HashMap<String, (String, String)> = self
            .catalog
            .partition_jobs(self.partition)
            .into_iter()
            .map(|(app, job)| (self.nats.topo.job_key(&app, &job), (app, job)))
            .collect();
        for hit in kv::scan(&self.nats, &self.buckets.cursors, ">", false).await? {
            let Some(name) = by_key.get(&hit.key) else {
                continue;
            };
            match codec::decode::<Timestamp>("cursor", &hit.value) {
                Ok(c) => {
                    self.cursors.insert(name.clone(), c);
                }
                Err(e) => {
                    tracing::error!(key = %hit.key, error = %e, "stored cursor unreadable; planning from now");
                }
            }
        }
        Ok(())
    }

    /// Plans every job after a takeover, from cursors read in one scan.
    pub(super) async fn plan_all(&mut self) -> Result<(), NatsError> {
        self.timers.clear();
        self.backlog.clear();
        self.scan_cursors().await?;
        let at = now();
        let mut missed = Vec::new();
        // Jobs with the same schedule, policy and cursor have the same plan: it is
        // worked out once (most jobs share a few schedules and fired at the same slot).
        let mut plans = Plans::new();
        for (app, job) in self.catalog.partition_jobs(self.partition) {
            if let Some(e) = self.plan_from(&app, &job, at, &mut plans) {
                missed.push(e);
            }
        }
        for e in missed {
            super::fires::report_missed(&self.nats, &e).await;
            self.alarm_misfire(&e.app, &e.job, e.reason.clone()).await;
        }
        Ok(())
    }

    /// Plans one job from its cursor and misfire policy; what is due now goes to the
    /// fire pipeline.
    pub(super) async fn plan_job(&mut self, app: &str, job: &str) {
        // A cursor not in memory is read (only for a job planned again after a failure).
        let _ = self.load_cursor(app, job).await;
        if let Some(e) = self.plan_from(app, job, now(), &mut Plans::new()) {
            super::fires::report_missed(&self.nats, &e).await;
            self.alarm_misfire(&e.app, &e.job, e.reason.clone()).await;
        }
    }

    /// Plans one job from the cursor in memory at `at`: sets its timer, or queues its due
    /// slots in the backlog. Returns the `misfired` event to send now when nothing fires
    /// (otherwise it goes once the fires are made).
    fn plan_from(
        &mut self,
        app: &str,
        job: &str,
        at: Timestamp,
        plans: &mut Plans,
    ) -> Option<Event> {
        let key = (app.to_string(), job.to_string());
        if !self.catalog.schedule_active(app, job) {
            self.timers.set(app, job, None);
            self.replan.remove(&key);
            return None;
        }
        let entry = self.catalog.job(app, job)?;
        let schedule = entry.schedule.as_ref()?;
        let misfire = entry.spec.misfire;
        // A job that never fired is due from when it was written: a slot that fell due
        // while no scheduler led (a takeover, a partition moving) fires late, or by the
        // misfire policy, rather than never.
        let cursor = self
            .cursors
            .get(&key)
            .copied()
            .or(Some(entry.written).filter(|w| w.0 > 0));
        let plan = plans
            .entry((Arc::as_ptr(schedule) as usize, misfire, cursor))
            .or_insert_with(|| {
                let plan = firing::plan(schedule, misfire, cursor, at);
                (Arc::clone(schedule), plan)
            })
            .1
            .clone();
        if let Some(why) = &plan.bad_cursor {
            tracing::error!(app, job, "{why}");
        }
        let missed = plan.missed.map(|m| {
            let mut e = Event::new(EventKind::Misfired, app, job, None, at);
            e.reason = Some(missed_reason(&m, misfire));
            e
        });
        if plan.fire.is_empty() {
            self.replan.remove(&key);
            self.timers.set(app, job, plan.next);
            return missed;
        }
        // The timer is set when the fires are made (or the job is planned again).
        self.timers.set(app, job, None);
        self.backlog.push(JobFires {
            app: key.0,
            job: key.1,
            fires: plan.fire,
            missed,
            next: plan.next,
        });
        None
    }

    /// A job's spec or its app changed: its next slot from now on, no catching up.
    pub(super) fn replan_after_edit(&mut self, app: &str, job: &str) {
        let next = if self.catalog.schedule_active(app, job) {
            self.catalog
                .job(app, job)
                .and_then(|e| e.schedule.as_ref()?.next_after(Timestamp(now().0 - 1)))
        } else {
            None
        };
        self.timers.set(app, job, next);
    }

    /// Starts the armed instances whose slot has come, and hands every slot due within
    /// the fire-ahead time to the fire pipeline.
    pub(super) async fn fire_due(&mut self) {
        self.release_held().await;
        self.start_armed().await;
        let by = Timestamp(now().0.saturating_add(self.fire_ahead));
        for (slot, app, job) in self.timers.take_due(by) {
            if !self.leading() {
                return;
            }
            if self.replan.contains_key(&(app.clone(), job.clone())) {
                self.plan_job(&app, &job).await;
                continue;
            }
            if !self.catalog.schedule_active(&app, &job) {
                continue;
            }
            let Some(schedule) = self
                .catalog
                .job(&app, &job)
                .and_then(|e| e.schedule.clone())
            else {
                continue;
            };
            let fire = JobFires {
                fires: vec![(slot, schedule.trigger_kind())],
                missed: None,
                next: schedule.next_after(slot),
                app,
                job,
            };
            self.backlog.push(fire);
        }
        self.start_fires();
    }

    /// A job's fire failed: it is planned again from its cursor after a backoff.
    pub(super) fn fire_failed(&mut self, app: &str, job: &str, e: &NatsError) {
        let failures = self
            .replan
            .entry((app.to_string(), job.to_string()))
            .or_insert(0);
        *failures += 1;
        let wait = Duration::from_millis(250)
            .saturating_mul(1 << (*failures).min(5))
            .min(MAX_FIRE_BACKOFF);
        tracing::warn!(app, job, error = %e, "fire failed; planning the job again in {wait:?}");
        let at = Timestamp(now().0 + i64::try_from(wait.as_millis()).unwrap_or(5000));
        self.timers.set(app, job, Some(at));
    }
}

fn missed_reason(m: &Missed, misfire: antares_schemas::spec::Misfire) -> String {
    let policy = match misfire {
        antares_schemas::spec::Misfire::Skip => "skip",
        antares_schemas::spec::Misfire::FireOnce => "fire_once",
        antares_schemas::spec::Misfire::CatchUp => "catch_up",
    };
    let count = if m.at_least {
        format!("at least {}", m.count)
    } else {
        m.count.to_string()
    };
    format!(
        "{count} fire(s) due from {} to {} were missed while no scheduler ran and were not run (misfire = \"{policy}\")",
        m.first, m.last
    )
}
