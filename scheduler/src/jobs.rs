//! The scheduler's view of apps and jobs, kept current from the KV buckets.
//!
//! A snapshot is read when leading starts; a watcher then streams every later change
//! (create, edit, pause, delete) into the work loop, so edits apply at once without a
//! restart. A value that cannot be decoded is logged and ignored rather than stopping
//! the scheduler.

use std::collections::HashMap;
use std::time::Duration;

use antares_nats::kv;
use antares_nats::{Nats, NatsError, codec};
use antares_schemas::app::App;
use antares_schemas::schedule::Schedule;
use antares_schemas::spec::JobSpec;
use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use tokio::sync::mpsc;

/// A job as the scheduler uses it.
#[derive(Clone, Debug)]
pub struct JobEntry {
    /// The spec.
    pub spec: JobSpec,
    /// Its parsed schedule, if it has one.
    pub schedule: Option<Schedule>,
}

/// A change seen in the buckets.
#[derive(Clone, Debug)]
pub enum Change {
    /// An app was written (`Some`) or deleted (`None`).
    App(String, Option<App>),
    /// A job was written or deleted; key `<app>.<job>`.
    Job(String, Option<Box<JobSpec>>),
}

/// Apps and jobs by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    apps: HashMap<String, App>,
    jobs: HashMap<(String, String), JobEntry>,
}

impl Catalog {
    /// A job.
    pub fn job(&self, app: &str, job: &str) -> Option<&JobEntry> {
        self.jobs.get(&(app.to_string(), job.to_string()))
    }

    /// An app.
    pub fn app(&self, app: &str) -> Option<&App> {
        self.apps.get(app)
    }

    /// Whether a job's schedule should fire: the job and its app are enabled.
    pub fn schedule_active(&self, app: &str, job: &str) -> bool {
        self.job(app, job).is_some_and(|j| j.spec.enabled)
            && self.apps.get(app).is_some_and(|a| a.enabled)
    }

    /// Every job, as (app, job).
    pub fn job_names(&self) -> Vec<(String, String)> {
        self.jobs.keys().cloned().collect()
    }

    /// Applies a change; returns the jobs whose schedule may have changed.
    pub fn apply(&mut self, change: Change) -> Vec<(String, String)> {
        match change {
            Change::App(name, app) => {
                match app {
                    Some(a) => self.apps.insert(name.clone(), a),
                    None => self.apps.remove(&name),
                };
                self.jobs
                    .keys()
                    .filter(|(a, _)| *a == name)
                    .cloned()
                    .collect()
            }
            Change::Job(key, spec) => {
                let Some((app, job)) = key.split_once('.') else {
                    return Vec::new();
                };
                let name = (app.to_string(), job.to_string());
                match spec {
                    Some(spec) => match spec.schedule() {
                        Ok(schedule) => {
                            self.jobs.insert(
                                name.clone(),
                                JobEntry {
                                    spec: *spec,
                                    schedule,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::error!(job = %key, error = %e, "job has an invalid schedule; ignored");
                            self.jobs.remove(&name);
                        }
                    },
                    None => {
                        self.jobs.remove(&name);
                    }
                }
                vec![name]
            }
        }
    }
}

fn decode_change(is_app: bool, key: &str, op: Operation, value: &[u8]) -> Option<Change> {
    let deleted = op != Operation::Put;
    if is_app {
        if deleted {
            return Some(Change::App(key.to_string(), None));
        }
        match codec::decode::<App>("app", value) {
            Ok(a) => Some(Change::App(key.to_string(), Some(a))),
            Err(e) => {
                tracing::error!(app = %key, error = %e, "stored app record is corrupt (it cannot be decoded): ignored until the app is written again");
                None
            }
        }
    } else {
        if deleted {
            return Some(Change::Job(key.to_string(), None));
        }
        match codec::decode::<JobSpec>("job", value) {
            Ok(j) => Some(Change::Job(key.to_string(), Some(Box::new(j)))),
            Err(e) => {
                tracing::error!(job = %key, error = %e, "stored job spec is corrupt (it cannot be decoded): the job does not run until it is applied again");
                None
            }
        }
    }
}

/// Reads every app and job now.
pub async fn snapshot(
    nats: &Nats,
    apps: &Store,
    jobs: &Store,
) -> Result<(Catalog, [u64; 2]), NatsError> {
    let mut catalog = Catalog::default();
    let mut marks = [0u64; 2];
    for (i, (store, is_app)) in [(apps, true), (jobs, false)].into_iter().enumerate() {
        let last = store
            .status()
            .await
            .map(|st| st.info.state.last_sequence)
            .map_err(|e| NatsError::op("read bucket status", e))?;
        marks[i] = last;
        for hit in kv::scan(nats, store, ">", false).await? {
            if let Some(c) = decode_change(is_app, &hit.key, Operation::Put, &hit.value) {
                catalog.apply(c);
            }
        }
    }
    Ok((catalog, marks))
}

/// Streams changes after the snapshot marks into `tx` until the receiver is gone.
/// A watch that ends (a cluster failover) is recreated.
pub async fn watch(apps: Store, jobs: Store, marks: [u64; 2], tx: mpsc::Sender<Change>) {
    // Joined, not spawned: when the caller drops or aborts this future, both go.
    tokio::join!(
        watch_one(apps, true, marks[0], tx.clone()),
        watch_one(jobs, false, marks[1], tx)
    );
}

async fn watch_one(store: Store, is_app: bool, mark: u64, tx: mpsc::Sender<Change>) {
    let mut from = mark + 1;
    loop {
        match store.watch_all_from_revision(from).await {
            Ok(mut w) => {
                while let Some(entry) = w.next().await {
                    match entry {
                        Ok(e) => {
                            from = e.revision + 1;
                            if let Some(c) = decode_change(is_app, &e.key, e.operation, &e.value)
                                && tx.send(c).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, bucket = %store.name, "watch failed; recreating");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, bucket = %store.name, "cannot watch; retrying"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
