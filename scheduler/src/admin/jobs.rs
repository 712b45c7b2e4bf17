//! Jobs: apply (create or update), list, get, delete, pause and resume, export. Every
//! change is written with its version (see [`super::versions`]) and recorded in the
//! audit log.

use std::collections::{BTreeMap, BTreeSet};

use antares_nats::kv;
use antares_nats::{codec, now};
use antares_schemas::Timestamp;
use antares_schemas::audit::{JobVersion, VersionAction};
use antares_schemas::names::check_name;
use antares_schemas::spec::{JobSpec, SpecError, child_cycle, export_toml};
use futures::future::join_all;

use super::versions::{JobChange, Unwritten};
use super::{Admin, ApplyAction, ApplyOutcome, RMW_ATTEMPTS, current, current_many};
use crate::error::SchedulerError;

/// The error for a job that is not there.
pub(crate) fn no_such_job(app: &str, job: &str) -> SchedulerError {
    SchedulerError::NotFound(format!(
        "job `{app}/{job}` does not exist (see `antares job list --app {app}`)"
    ))
}

/// Refuses a one-shot `at` that has passed: it would never fire. A stored job that
/// already has that same `at` (it fired, or was missed) may be applied again unchanged.
fn check_at(spec: &JobSpec, old: Option<&JobSpec>, now: Timestamp) -> Result<(), SchedulerError> {
    let at_of = |s: &JobSpec| s.schedule.as_ref().and_then(|s| s.at);
    let Some(at) = at_of(spec) else {
        return Ok(());
    };
    if at > now || old.and_then(at_of) == Some(at) {
        return Ok(());
    }
    let e = SpecError::new(
        "schedule.at",
        format!(
            "`schedule.at` is in the past ({at}; now is {now}), so it would never fire: give a later time, or leave `schedule` out and run it with `antares job trigger {}`",
            spec.full_name()
        ),
    )
    .in_job(spec.full_name());
    Err(SchedulerError::Spec(e))
}

impl Admin {
    /// Creates or updates jobs. All are validated, every app must exist, a one-shot
    /// `at` must lie ahead (unless the stored job has that same `at`), and no cycle of
    /// `children` may form with the stored jobs, before anything is written; a job
    /// stored with exactly the same spec is left alone. Each job written gets a version
    /// and an audit entry.
    pub async fn apply_jobs(
        &self,
        specs: Vec<JobSpec>,
    ) -> Result<Vec<ApplyOutcome>, SchedulerError> {
        let applied = self.apply_specs(specs, VersionAction::Apply, None).await?;
        Ok(applied.into_iter().map(|(outcome, _)| outcome).collect())
    }

    /// [`Self::apply_jobs`] as `action` (an apply or a rollback): each outcome with the
    /// version written (none for an unchanged job).
    pub(crate) async fn apply_specs(
        &self,
        specs: Vec<JobSpec>,
        action: VersionAction,
        from_version: Option<u64>,
    ) -> Result<Vec<(ApplyOutcome, Option<JobVersion>)>, SchedulerError> {
        let mut seen = BTreeSet::new();
        for spec in &specs {
            spec.validate().map_err(SchedulerError::Spec)?;
            if !seen.insert((spec.app.clone(), spec.name.clone())) {
                return Err(SchedulerError::Invalid(format!(
                    "job {} is given twice",
                    spec.full_name()
                )));
            }
        }
        let apps: BTreeSet<&str> = specs.iter().map(|s| s.app.as_str()).collect();
        for found in join_all(apps.into_iter().map(|app| self.get_app(app))).await {
            found?;
        }

        // What is stored now, read all at once (one scan per app for many jobs).
        let keys: Vec<String> = specs
            .iter()
            .map(|s| self.nats.topo.job_key(&s.app, &s.name))
            .collect();
        let stored = current_many(&self.nats, &self.buckets.jobs, &keys).await?;
        let now = now();
        let mut plan = Vec::with_capacity(specs.len());
        for (spec, cur) in specs.into_iter().zip(stored) {
            let old = cur
                .value
                .as_ref()
                .and_then(|value| codec::decode::<JobSpec>("job", value).ok());
            check_at(&spec, old.as_ref(), now)?;
            let outcome = match (&cur.value, &old) {
                (None, _) => ApplyAction::Created,
                (Some(_), Some(old)) if *old == spec => ApplyAction::Unchanged,
                (Some(_), _) => ApplyAction::Updated,
            };
            plan.push((
                outcome,
                JobChange {
                    app: spec.app.clone(),
                    job: spec.name.clone(),
                    old,
                    spec_revision: cur.revision,
                    new: Some(spec),
                    action,
                    from_version,
                },
            ));
        }
        let applied: Vec<&JobSpec> = plan.iter().filter_map(|(_, c)| c.new.as_ref()).collect();
        self.check_child_cycles(&applied).await?;

        // Versions and specs of the changed jobs, all pipelined; then their audit.
        let changes: Vec<JobChange> = plan
            .iter()
            .filter(|(outcome, _)| *outcome != ApplyAction::Unchanged)
            .map(|(_, change)| change.clone())
            .collect();
        let mut written = self.write_changes(&changes).await.into_iter();
        let mut out = Vec::with_capacity(plan.len());
        let (mut audit, mut raced, mut failed) = (Vec::new(), Vec::new(), None);
        for (outcome, change) in plan {
            let version = if outcome == ApplyAction::Unchanged {
                None
            } else {
                match written.next() {
                    Some(Ok(version)) => {
                        audit.push(change.audit());
                        Some(version)
                    }
                    Some(Err(Unwritten::Failed(e))) => {
                        failed.get_or_insert(e);
                        continue;
                    }
                    Some(Err(_)) | None => {
                        raced.push(format!("{}/{}", change.app, change.job));
                        continue;
                    }
                }
            };
            let outcome = ApplyOutcome {
                app: change.app,
                job: change.job,
                action: outcome,
            };
            out.push((outcome, version));
        }
        let others = match audit.len() {
            0 => String::new(),
            n => format!(" ({n} other job(s) were written)"),
        };
        let recorded = self.record_all(audit).await;
        // Applying again is safe: what went in is unchanged the second time.
        if let Some(e) = failed {
            return Err(e);
        }
        if !raced.is_empty() {
            return Err(SchedulerError::Conflict(format!(
                "{} changed while being applied: look at them again and apply again{others}",
                raced.join(", ")
            )));
        }
        recorded?;
        Ok(out)
    }

    /// Refuses jobs whose `children` would close a cycle through them, over every stored
    /// job with the applied ones in place of theirs.
    async fn check_child_cycles(&self, applied: &[&JobSpec]) -> Result<(), SchedulerError> {
        let parents: Vec<String> = applied
            .iter()
            .filter(|s| !s.children.is_empty())
            .map(|s| s.full_name())
            .collect();
        if parents.is_empty() {
            return Ok(());
        }
        let mut graph: BTreeMap<String, Vec<String>> = self
            .list_jobs(None)
            .await?
            .into_iter()
            .map(|j| (j.full_name(), j.children))
            .collect();
        for spec in applied {
            graph.insert(spec.full_name(), spec.children.clone());
        }
        match child_cycle(&graph, parents.iter().map(String::as_str)) {
            None => Ok(()),
            Some(cycle) => Err(SchedulerError::Invalid(format!(
                "these jobs would make a cycle of children: {}; each would start the next one after it succeeds, forever. Remove one of these `children`",
                cycle.join(" -> ")
            ))),
        }
    }

    /// `(app, job)` of every job (of one app).
    pub(crate) async fn job_names(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<(String, String)>, SchedulerError> {
        let filter = match app {
            Some(a) => self.nats.topo.job_key(a, "*"),
            None => ">".to_string(),
        };
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.buckets.jobs, &filter, true).await? {
            if let Some((a, j)) = hit.key.split_once('.') {
                out.push((a.to_string(), j.to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every job, or those of one app (which must exist), by app and name.
    pub async fn list_jobs(&self, app: Option<&str>) -> Result<Vec<JobSpec>, SchedulerError> {
        let filter = match app {
            Some(a) => {
                self.get_app(a).await?;
                self.nats.topo.job_key(a, "*")
            }
            None => ">".to_string(),
        };
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.buckets.jobs, &filter, false).await? {
            match codec::decode::<JobSpec>("job", &hit.value) {
                Ok(spec) => out.push(spec),
                Err(e) => {
                    tracing::warn!(key = %hit.key, error = %e, "stored job spec is corrupt (it cannot be decoded): skipped; apply the job again")
                }
            }
        }
        out.sort_by(|a, b| a.key().cmp(&b.key()));
        Ok(out)
    }

    /// One job.
    pub async fn get_job(&self, app: &str, job: &str) -> Result<JobSpec, SchedulerError> {
        check_name("app", app)?;
        check_name("job", job)?;
        let key = self.nats.topo.job_key(app, job);
        kv::get::<JobSpec>(&self.buckets.jobs, &key, "job")
            .await?
            .map(|v| v.value)
            .ok_or_else(|| no_such_job(app, job))
    }

    /// Deletes a job (a version without a spec records it). Its running instances go
    /// on; its schedule stops.
    pub async fn delete_job(&self, app: &str, job: &str) -> Result<(), SchedulerError> {
        check_name("app", app)?;
        check_name("job", job)?;
        let key = self.nats.topo.job_key(app, job);
        let cur = current(&self.buckets.jobs, &key).await?;
        let Some(entry) = &cur.value else {
            return Err(no_such_job(app, job));
        };
        let change = JobChange {
            app: app.to_string(),
            job: job.to_string(),
            old: codec::decode::<JobSpec>("job", entry).ok(),
            spec_revision: cur.revision,
            new: None,
            action: VersionAction::Delete,
            from_version: None,
        };
        self.write_change(&change)
            .await
            .map_err(|e| e.into_error(app, job, "deleting it"))?;
        self.record_all(vec![change.audit()]).await
    }

    /// Pauses (`false`) or resumes (`true`) a job's schedule; explicit triggers still run.
    pub async fn set_job_enabled(
        &self,
        app: &str,
        job: &str,
        enabled: bool,
    ) -> Result<JobSpec, SchedulerError> {
        check_name("app", app)?;
        check_name("job", job)?;
        let store = &self.buckets.jobs;
        let key = self.nats.topo.job_key(app, job);
        let (action, doing) = if enabled {
            (VersionAction::Resume, "resuming it")
        } else {
            (VersionAction::Pause, "pausing it")
        };
        for _ in 0..RMW_ATTEMPTS {
            let Some(v) = kv::get::<JobSpec>(store, &key, "job").await? else {
                return Err(no_such_job(app, job));
            };
            if v.value.enabled == enabled {
                return Ok(v.value);
            }
            let mut spec = v.value.clone();
            spec.enabled = enabled;
            let change = JobChange {
                app: app.to_string(),
                job: job.to_string(),
                old: Some(v.value),
                spec_revision: v.revision,
                new: Some(spec.clone()),
                action,
                from_version: None,
            };
            match self.write_change(&change).await {
                Ok(_) => {
                    self.record_all(vec![change.audit()]).await?;
                    return Ok(spec);
                }
                // Nothing was written: read again and retry.
                Err(Unwritten::Raced) => continue,
                Err(e) => return Err(e.into_error(app, job, doing)),
            }
        }
        Err(SchedulerError::Conflict(format!(
            "job `{app}/{job}` keeps changing under us: try again"
        )))
    }

    /// Every job (of one app) as one TOML document that `apply_jobs` takes back unchanged.
    pub async fn export_jobs(&self, app: Option<&str>) -> Result<String, SchedulerError> {
        let jobs = self.list_jobs(app).await?;
        export_toml(&jobs).map_err(|e| SchedulerError::Invalid(e.to_string()))
    }
}
