//! Jobs: apply (create or update), list, get, delete, pause and resume, export.

use std::collections::{BTreeMap, BTreeSet};

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{NatsError, codec, now};
use antares_schemas::Timestamp;
use antares_schemas::names::check_name;
use antares_schemas::spec::{JobSpec, SpecError, child_cycle, export_toml};
use futures::future::join_all;

use super::{Admin, ApplyAction, ApplyOutcome, RMW_ATTEMPTS, current};
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
    /// stored with exactly the same spec is left alone.
    pub async fn apply_jobs(
        &self,
        specs: Vec<JobSpec>,
    ) -> Result<Vec<ApplyOutcome>, SchedulerError> {
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
        for app in apps {
            self.get_app(app).await?;
        }

        // What is stored now, read all at once.
        let store = &self.buckets.jobs;
        let keys: Vec<String> = specs
            .iter()
            .map(|s| self.nats.topo.job_key(&s.app, &s.name))
            .collect();
        let stored = join_all(keys.iter().map(|key| current(store, key))).await;
        let now = now();
        let mut plan = Vec::with_capacity(specs.len());
        for ((spec, key), cur) in specs.into_iter().zip(keys).zip(stored) {
            let cur = cur?;
            let old = cur
                .value
                .as_ref()
                .and_then(|entry| codec::decode::<JobSpec>("job", &entry.value).ok());
            check_at(&spec, old.as_ref(), now)?;
            let action = match (&cur.value, old) {
                (None, _) => ApplyAction::Created,
                (Some(_), Some(old)) if old == spec => ApplyAction::Unchanged,
                (Some(_), _) => ApplyAction::Updated,
            };
            plan.push((spec, key, cur.revision, action));
        }
        let applied: Vec<&JobSpec> = plan.iter().map(|(spec, ..)| spec).collect();
        self.check_child_cycles(&applied).await?;

        let mut out = Vec::with_capacity(plan.len());
        for (spec, key, revision, action) in plan {
            if action != ApplyAction::Unchanged {
                let written = kv::put(
                    &self.nats,
                    &store.name,
                    key,
                    "job",
                    &spec,
                    Expect::Revision(revision),
                )
                .await;
                match written {
                    Ok(_) => {}
                    Err(NatsError::WrongRevision { .. }) => {
                        return Err(SchedulerError::Conflict(format!(
                            "job {} changed while applying it: apply again",
                            spec.full_name()
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            out.push(ApplyOutcome {
                app: spec.app,
                job: spec.name,
                action,
            });
        }
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

    /// Deletes a job. Its running instances go on; its schedule stops.
    pub async fn delete_job(&self, app: &str, job: &str) -> Result<(), SchedulerError> {
        check_name("app", app)?;
        check_name("job", job)?;
        let store = &self.buckets.jobs;
        let key = self.nats.topo.job_key(app, job);
        let cur = current(store, &key).await?;
        if cur.value.is_none() {
            return Err(no_such_job(app, job));
        }
        let w = Write::delete(&store.name, key, Expect::Revision(cur.revision));
        match kv::write(&self.nats, w).await {
            Ok(_) => Ok(()),
            Err(NatsError::WrongRevision { .. }) => Err(SchedulerError::Conflict(format!(
                "job `{app}/{job}` changed while deleting it: try again"
            ))),
            Err(e) => Err(e.into()),
        }
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
        for _ in 0..RMW_ATTEMPTS {
            let Some(v) = kv::get::<JobSpec>(store, &key, "job").await? else {
                return Err(no_such_job(app, job));
            };
            let mut spec = v.value;
            if spec.enabled == enabled {
                return Ok(spec);
            }
            spec.enabled = enabled;
            let written = kv::put(
                &self.nats,
                &store.name,
                key.clone(),
                "job",
                &spec,
                Expect::Revision(v.revision),
            )
            .await;
            match written {
                Ok(_) => return Ok(spec),
                Err(NatsError::WrongRevision { .. }) => continue,
                Err(e) => return Err(e.into()),
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
