//! Apps: create, list, get, delete, pause and resume (each change recorded in the audit
//! log).

use antares_nats::kv::{self, Expect, Write};
use antares_nats::queue;
use antares_nats::{NatsError, codec, now};
use antares_schemas::app::App;
use antares_schemas::audit::VersionAction;
use antares_schemas::names::{check_name, closest};
use antares_schemas::spec::JobSpec;

use super::audit::Change;
use super::versions::JobChange;
use super::{Admin, RMW_ATTEMPTS, current};
use crate::error::SchedulerError;

/// The error for an app that is not there, with the closest existing name if one is a
/// likely typo.
fn no_such_app(name: &str, existing: &[String]) -> SchedulerError {
    let create = format!("create it with `antares app create {name}`");
    let hint = match closest(name, existing.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`? (or {create})"),
        None => create,
    };
    SchedulerError::NotFound(format!("app `{name}` does not exist: {hint}"))
}

impl Admin {
    /// [`no_such_app`] with the apps there are.
    pub(crate) async fn unknown_app(&self, name: &str) -> SchedulerError {
        let existing: Vec<String> = kv::scan(&self.nats, &self.buckets.apps, ">", true)
            .await
            .map(|found| found.into_iter().map(|k| k.key).collect())
            .unwrap_or_default();
        no_such_app(name, &existing)
    }

    /// Creates an app; a [`SchedulerError::Conflict`] if it exists.
    pub async fn create_app(&self, name: &str, description: &str) -> Result<App, SchedulerError> {
        check_name("app", name)?;
        let store = &self.buckets.apps;
        let cur = current(store, name).await?;
        if cur.value.is_some() {
            return Err(SchedulerError::Conflict(format!(
                "app `{name}` already exists"
            )));
        }
        let app = App {
            name: name.to_string(),
            description: description.to_string(),
            enabled: true,
            created_at: now(),
        };
        let written = kv::put(
            &self.nats,
            &store.name,
            name.to_string(),
            "app",
            &app,
            Expect::Revision(cur.revision),
        )
        .await;
        match written {
            Ok(_) => {}
            Err(NatsError::WrongRevision { .. }) => {
                return Err(SchedulerError::Conflict(format!(
                    "app `{name}` already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        // The app's consumer exists before its workers start, so workers need no right
        // to create consumers (a worker that may still updates its settings).
        let spec = queue::app_consumer_spec(&self.nats.topo, name, queue::DEFAULT_ACK_WAIT);
        queue::ensure(&self.nats, &spec).await?;
        self.record_all(vec![Change::of_app("app.create", name, name).after(&app)])
            .await?;
        Ok(app)
    }

    /// Every app, by name.
    pub async fn list_apps(&self) -> Result<Vec<App>, SchedulerError> {
        let store = &self.buckets.apps;
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, store, ">", false).await? {
            match codec::decode::<App>("app", &hit.value) {
                Ok(app) => out.push(app),
                Err(e) => {
                    tracing::warn!(key = %hit.key, error = %e, "unreadable app record skipped")
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One app.
    pub async fn get_app(&self, name: &str) -> Result<App, SchedulerError> {
        check_name("app", name)?;
        match kv::get::<App>(&self.buckets.apps, name, "app").await? {
            Some(v) => Ok(v.value),
            None => Err(self.unknown_app(name).await),
        }
    }

    /// Deletes an app that has no jobs left, with its consumer and every shard item still
    /// queued for it ([`Admin::delete_app_and_jobs`] deletes its jobs too).
    pub async fn delete_app(&self, name: &str) -> Result<(), SchedulerError> {
        check_name("app", name)?;
        let store = &self.buckets.apps;
        let cur = current(store, name).await?;
        let Some(entry) = &cur.value else {
            return Err(self.unknown_app(name).await);
        };
        let before = codec::decode::<App>("app", entry).ok();
        let jobs = self.job_names(Some(name)).await?;
        if !jobs.is_empty() {
            let shown: Vec<String> = jobs.iter().take(5).map(|(_, j)| j.clone()).collect();
            let more = if jobs.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            return Err(SchedulerError::Conflict(format!(
                "app `{name}` still has {} job(s) ({}{more}): delete them first with `antares job delete {name}/JOB`, or delete the app with its jobs: `antares app delete {name} --with-jobs`",
                jobs.len(),
                shown.join(", "),
            )));
        }
        let w = Write::delete(
            &store.name,
            name.to_string(),
            Expect::Revision(cur.revision),
        );
        match kv::write(&self.nats, w).await {
            Ok(_) => {}
            Err(NatsError::WrongRevision { .. }) => {
                return Err(SchedulerError::Conflict(format!(
                    "app `{name}` changed while deleting it: try again"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let removed = queue::remove_app_queue(&self.nats, name).await?;
        if removed.items > 0 {
            tracing::info!(
                app = name,
                items = removed.items,
                "queued shard items of a deleted app purged"
            );
        }
        let mut change = Change::of_app("app.delete", name, name);
        if let Some(app) = before {
            change = change.before(app);
        }
        self.record_all(vec![change]).await
    }

    /// Deletes an app with its jobs: every job is deleted as `antares job delete` does it
    /// (a version and an audit entry each, written pipelined; running instances go on),
    /// then the app as [`Admin::delete_app`] does it. Returns how many jobs were deleted.
    /// A job created meanwhile makes the app's deletion refuse, naming it.
    pub async fn delete_app_and_jobs(&self, name: &str) -> Result<usize, SchedulerError> {
        self.get_app(name).await?;
        let filter = self.nats.topo.job_key(name, "*");
        let hits = kv::scan(&self.nats, &self.buckets.jobs, &filter, false).await?;
        let changes: Vec<JobChange> = hits
            .into_iter()
            .filter_map(|hit| {
                let (_, job) = hit.key.split_once('.')?;
                Some(JobChange {
                    app: name.to_string(),
                    job: job.to_string(),
                    old: codec::decode::<JobSpec>("job", &hit.value).ok(),
                    spec_revision: hit.revision,
                    new: None,
                    action: VersionAction::Delete,
                    from_version: None,
                })
            })
            .collect();
        let results = self.write_changes(&changes).await;
        let mut deleted = Vec::with_capacity(changes.len());
        let mut failed = None;
        for (change, result) in changes.iter().zip(results) {
            match result {
                Ok(_) => deleted.push(change.audit()),
                Err(e) => {
                    failed.get_or_insert_with(|| {
                        e.into_error(&change.app, &change.job, "deleting it")
                    });
                }
            }
        }
        let count = deleted.len();
        self.record_all(deleted).await?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.delete_app(name).await?;
        Ok(count)
    }

    /// Pauses (`false`) or resumes (`true`) every schedule of an app.
    pub async fn set_app_enabled(&self, name: &str, enabled: bool) -> Result<App, SchedulerError> {
        check_name("app", name)?;
        let store = &self.buckets.apps;
        for _ in 0..RMW_ATTEMPTS {
            let Some(v) = kv::get::<App>(store, name, "app").await? else {
                return Err(self.unknown_app(name).await);
            };
            let before = v.value;
            if before.enabled == enabled {
                return Ok(before);
            }
            let mut app = before.clone();
            app.enabled = enabled;
            let written = kv::put(
                &self.nats,
                &store.name,
                name.to_string(),
                "app",
                &app,
                Expect::Revision(v.revision),
            )
            .await;
            match written {
                Ok(_) => {
                    let action = if enabled { "app.resume" } else { "app.pause" };
                    let change = Change::of_app(action, name, name)
                        .before(before)
                        .after(&app);
                    self.record_all(vec![change]).await?;
                    return Ok(app);
                }
                Err(NatsError::WrongRevision { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SchedulerError::Conflict(format!(
            "app `{name}` keeps changing under us: try again"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_app_names_the_likely_one() {
        let apps = vec!["billing".to_string(), "shop".to_string()];
        let e = no_such_app("biling", &apps).to_string();
        assert!(e.contains("did you mean `billing`?"), "{e}");
        let e = no_such_app("zzz", &apps).to_string();
        assert!(
            !e.contains("did you mean") && e.contains("antares app create zzz"),
            "{e}"
        );
    }
}
