//! The leader's side of schedules: planning each job from its cursor, firing due slots,
//! and keeping the cursors.
//!
//! A fire that cannot be made (NATS unreachable, for instance) does not hold up the other
//! jobs or end leading: the job is planned again from its cursor after a backoff, so its
//! slots fire late or by its misfire policy once NATS answers again.

use std::time::Duration;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{NatsError, codec, now};
use antares_schemas::instance::TriggerKind;
use antares_schemas::messages::{Event, EventKind};
use antares_schemas::{InstanceId, Timestamp};

use super::Leading;
use super::launch::Created;
use crate::events;
use crate::firing::{self, Missed};

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

    /// Plans every job after a takeover.
    pub(super) async fn plan_all(&mut self) {
        self.timers.clear();
        for (app, job) in self.catalog.job_names() {
            self.plan_job(&app, &job).await;
        }
    }

    /// Plans one job from its cursor and misfire policy, firing what is due now.
    pub(super) async fn plan_job(&mut self, app: &str, job: &str) {
        let key = (app.to_string(), job.to_string());
        if !self.catalog.schedule_active(app, job) {
            self.timers.set(app, job, None);
            self.replan.remove(&key);
            return;
        }
        let Some(entry) = self.catalog.job(app, job) else {
            return;
        };
        let Some(schedule) = entry.schedule.clone() else {
            return;
        };
        let misfire = entry.spec.misfire;
        let cursor = self.load_cursor(app, job).await;
        let at = now();
        let plan = firing::plan(&schedule, misfire, cursor, at);
        if let Some(why) = &plan.bad_cursor {
            tracing::error!(app, job, "{why}");
        }
        for (slot, kind) in plan.fire {
            if let Err(e) = self.fire(app, job, slot, kind).await {
                self.fire_failed(app, job, &e);
                return;
            }
        }
        // Reported once the fires went out: a plan that failed is made again.
        if let Some(missed) = plan.missed {
            let mut e = Event::new(EventKind::Misfired, app, job, None, at);
            e.reason = Some(missed_reason(&missed, misfire));
            tracing::warn!(app, job, "{}", e.reason.as_deref().unwrap_or_default());
            events::emit(&self.nats, &e).await;
            self.alarm_misfire(app, job, e.reason.clone()).await;
        }
        self.replan.remove(&key);
        self.timers.set(app, job, plan.next);
    }

    /// A job's spec or its app changed: its next slot from now on, no catching up.
    pub(super) fn replan_after_edit(&mut self, app: &str, job: &str) {
        let next = if self.catalog.schedule_active(app, job) {
            self.catalog
                .job(app, job)
                .and_then(|e| e.schedule.as_ref())
                .and_then(|s| s.next_after(Timestamp(now().0 - 1)))
        } else {
            None
        };
        self.timers.set(app, job, next);
    }

    /// Fires every slot that is due.
    pub(super) async fn fire_due(&mut self) {
        for (slot, app, job) in self.timers.take_due(now()) {
            if !self.leading() {
                return;
            }
            if self.replan.contains_key(&(app.clone(), job.clone())) {
                self.plan_job(&app, &job).await;
                continue;
            }
            let Some(schedule) = self
                .catalog
                .job(&app, &job)
                .and_then(|e| e.schedule.clone())
            else {
                continue;
            };
            if !self.catalog.schedule_active(&app, &job) {
                continue;
            }
            match self.fire(&app, &job, slot, schedule.trigger_kind()).await {
                Ok(()) => self.timers.set(&app, &job, schedule.next_after(slot)),
                Err(e) => self.fire_failed(&app, &job, &e),
            }
        }
    }

    fn fire_failed(&mut self, app: &str, job: &str, e: &NatsError) {
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

    /// Creates the instance of one scheduled slot (once, whoever tries) and moves the
    /// cursor.
    pub(super) async fn fire(
        &mut self,
        app: &str,
        job: &str,
        slot: Timestamp,
        kind: TriggerKind,
    ) -> Result<(), NatsError> {
        if !self.leading() {
            return Ok(());
        }
        let Some(entry) = self.catalog.job(app, job) else {
            return Ok(());
        };
        let items = match entry.spec.shard_items(&Default::default()) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(app, job, error = %e, "job cannot fire");
                return Ok(());
            }
        };
        let new = entry
            .spec
            .new_instance(InstanceId::for_fire(app, job, slot), kind, slot, items);
        match self.create_instance(new).await? {
            Created::New(id) => tracing::debug!(app, job, %id, %slot, "fired"),
            Created::Exists | Created::KeyUsed(_) => {
                tracing::debug!(app, job, %slot, "already fired");
            }
        }
        self.save_cursor(app, job, slot).await;
        Ok(())
    }

    async fn save_cursor(&mut self, app: &str, job: &str, slot: Timestamp) {
        let key = (app.to_string(), job.to_string());
        if self.cursors.get(&key).is_some_and(|c| *c >= slot) {
            return;
        }
        self.cursors.insert(key.clone(), slot);
        if let Err(e) = self.write_cursor(app, job, slot).await {
            tracing::warn!(app, job, error = %e, "cursor not saved yet; retrying");
            self.cursors_unsaved.insert(key, slot);
        }
    }

    async fn write_cursor(&self, app: &str, job: &str, slot: Timestamp) -> Result<(), NatsError> {
        let value = codec::encode("cursor", &slot)?;
        let key = self.nats.topo.job_key(app, job);
        kv::write(
            &self.nats,
            Write::put(&self.buckets.cursors.name, key, value, Expect::Any),
        )
        .await
        .map(|_| ())
    }

    /// Writes the cursors whose write failed.
    pub(super) async fn save_unsaved_cursors(&mut self) {
        for ((app, job), slot) in std::mem::take(&mut self.cursors_unsaved) {
            if self.write_cursor(&app, &job, slot).await.is_err() {
                self.cursors_unsaved.insert((app, job), slot);
            }
        }
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
