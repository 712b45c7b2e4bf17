//! An app's jobs a page at a time, by name: what the console's jobs listings serve, so
//! that they stay fast with thousands of jobs.
//!
//! The names come from [`JobNames`], the jobs bucket's keys kept live in memory by one
//! watcher per process (names only, never specs). A page view then reads only that
//! page's specs (and, for rows, job states), a window of GETs at a time: never a scan.

use std::time::Duration;

use antares_nats::live_keys::LiveKeys;
use antares_nats::{NatsError, codec, now};
use antares_schemas::Topology;
use antares_schemas::limits::MAX_LIST_LIMIT;
use antares_schemas::names::check_name;
use antares_schemas::spec::JobSpec;
use antares_schemas::stats::{JobRow, JobState};
use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;

use super::Admin;
use crate::error::SchedulerError;

/// Jobs a page holds unless told.
pub const DEFAULT_JOB_PAGE: usize = 100;
/// Reads in flight at once for one page.
const CONCURRENT_READS: usize = 64;
/// How long a page view waits for the names to be whole (at start, or after the
/// watcher's consumer was made again) before it is refused saying so.
const READY_WAIT: Duration = Duration::from_secs(5);
/// How long [`JobNames::sync`] waits for a write to be seen.
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// The names of every job, sorted by app and name, kept live. Clones share one watcher.
#[derive(Clone, Debug)]
pub struct JobNames {
    keys: LiveKeys,
    topo: Topology,
}

/// Which jobs of an app a page holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPageQuery {
    /// Only names strictly after this one.
    pub after: Option<String>,
    /// Only names that start with this.
    pub prefix: Option<String>,
    /// At most this many (1 to [`MAX_LIST_LIMIT`]).
    pub limit: usize,
}

impl Default for JobPageQuery {
    fn default() -> Self {
        Self {
            after: None,
            prefix: None,
            limit: DEFAULT_JOB_PAGE,
        }
    }
}

impl JobPageQuery {
    /// Refuses a limit out of bounds, or a cursor or prefix that no job name can have.
    pub fn check(&self) -> Result<(), SchedulerError> {
        if self.limit == 0 || self.limit > MAX_LIST_LIMIT {
            return Err(SchedulerError::Invalid(format!(
                "`limit` is {}: give 1 to {MAX_LIST_LIMIT}",
                self.limit
            )));
        }
        if let Some(after) = &self.after {
            check_name("job", after).map_err(|_| {
                SchedulerError::Invalid(format!(
                    "`after` is `{after}`: give the job name the page starts after (1-64 characters of a-z, 0-9, `_` and `-`)"
                ))
            })?;
        }
        if let Some(prefix) = &self.prefix {
            let ok = prefix.len() <= 64
                && prefix.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(SchedulerError::Invalid(format!(
                    "`prefix` is `{prefix}`: give the start of a job name (up to 64 characters of a-z, 0-9, `_` and `-`)"
                )));
            }
        }
        Ok(())
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPage<T> {
    /// The jobs, by name.
    pub items: Vec<T>,
    /// The name to ask the next page `after`, when more jobs follow.
    pub next: Option<String>,
}

/// The names of one page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePage {
    /// Job names, sorted.
    pub names: Vec<String>,
    /// The last name, when more follow.
    pub next: Option<String>,
}

impl JobNames {
    /// Starts following the jobs bucket (on the current tokio runtime).
    pub fn watch(admin: &Admin) -> Self {
        Self {
            keys: LiveKeys::watch(&admin.nats, &admin.buckets.jobs),
            topo: admin.nats.topo.clone(),
        }
    }

    /// Whether the names are whole now.
    pub fn is_ready(&self) -> bool {
        self.keys.is_ready()
    }

    /// How many jobs there are, of every app.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no jobs at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Waits until the names hold every job write made before this call: what a process
    /// calls after its own writes, so that its next page shows them.
    pub async fn sync(&self) -> Result<(), SchedulerError> {
        Ok(self.keys.sync(SYNC_WAIT).await?)
    }

    /// The names of one page of `app`'s jobs (which are not checked to exist).
    pub async fn page(&self, app: &str, q: &JobPageQuery) -> Result<NamePage, SchedulerError> {
        check_name("app", app)?;
        q.check()?;
        self.keys.wait_ready(READY_WAIT).await?;
        let base = self.topo.job_key(app, "");
        let prefix = self.topo.job_key(app, q.prefix.as_deref().unwrap_or(""));
        let after = q.after.as_deref().map(|a| self.topo.job_key(app, a));
        let page = self.keys.page(&prefix, after.as_deref(), q.limit);
        let names: Vec<String> = page
            .keys
            .iter()
            .filter_map(|k| k.strip_prefix(base.as_str()).map(str::to_string))
            .collect();
        let next = if page.more {
            names.last().cloned()
        } else {
            None
        };
        Ok(NamePage { names, next })
    }
}

impl Admin {
    /// A page of `app`'s job specs (the app must exist). A job deleted since its name was
    /// listed, or whose stored spec cannot be decoded, is left out.
    pub async fn job_page(
        &self,
        names: &JobNames,
        app: &str,
        q: &JobPageQuery,
    ) -> Result<JobPage<JobSpec>, SchedulerError> {
        let (found, page) = tokio::join!(self.get_app(app), names.page(app, q));
        found?;
        let page = page?;
        let specs = self.specs_of(app, &page.names).await?;
        Ok(JobPage {
            items: specs.into_iter().flatten().collect(),
            next: page.next,
        })
    }

    /// A page of the jobs page's rows of `app`: each job with whether its schedule runs,
    /// its last run and its next fire.
    pub async fn job_row_page(
        &self,
        names: &JobNames,
        app: &str,
        q: &JobPageQuery,
    ) -> Result<JobPage<JobRow>, SchedulerError> {
        let (found, page) = tokio::join!(self.get_app(app), names.page(app, q));
        let app_enabled = found?.enabled;
        let page = page?;
        let (specs, states) = tokio::join!(
            self.specs_of(app, &page.names),
            self.states_of(app, &page.names)
        );
        let now = now();
        let items = specs?
            .into_iter()
            .zip(states?)
            .filter_map(|(spec, state)| {
                let spec = spec?;
                let active = spec.enabled && app_enabled;
                let next_fire = if active {
                    spec.schedule()
                        .ok()
                        .flatten()
                        .and_then(|s| s.next_after(now))
                } else {
                    None
                };
                Some(JobRow {
                    spec,
                    active,
                    state,
                    next_fire,
                })
            })
            .collect();
        Ok(JobPage {
            items,
            next: page.next,
        })
    }

    /// The specs of `jobs` of `app`, in order (`None` for one that is gone or corrupt).
    async fn specs_of(
        &self,
        app: &str,
        jobs: &[String],
    ) -> Result<Vec<Option<JobSpec>>, SchedulerError> {
        let keys = jobs
            .iter()
            .map(|j| self.nats.topo.job_key(app, j))
            .collect();
        read_all(&self.buckets.jobs, keys, "job").await
    }

    /// The last states of `jobs` of `app`, in order (`None` for one that never ended).
    async fn states_of(
        &self,
        app: &str,
        jobs: &[String],
    ) -> Result<Vec<Option<JobState>>, SchedulerError> {
        let keys = jobs
            .iter()
            .map(|j| self.nats.topo.jobstate_key(app, j))
            .collect();
        read_all(&self.buckets.jobstate, keys, "job state").await
    }
}

/// Reads and decodes `keys`, [`CONCURRENT_READS`] at a time, in order; a key absent or
/// deleted is `None`, and so is one that cannot be decoded (logged).
async fn read_all<T: serde::de::DeserializeOwned>(
    store: &Store,
    keys: Vec<String>,
    what: &'static str,
) -> Result<Vec<Option<T>>, SchedulerError> {
    let read = |key: String| async move {
        let entry = store
            .entry(&key)
            .await
            .map_err(|e| NatsError::op(format!("read {}/{key}", store.name), e))?;
        Ok::<_, NatsError>(match entry {
            Some(e) if e.operation == Operation::Put => match codec::decode::<T>(what, &e.value) {
                Ok(v) => Some(v),
                Err(err) => {
                    tracing::warn!(%key, error = %err, "stored {what} cannot be decoded: left out");
                    None
                }
            },
            _ => None,
        })
    };
    let results: Vec<Result<Option<T>, NatsError>> = futures::stream::iter(keys)
        .map(read)
        .buffered(CONCURRENT_READS)
        .collect()
        .await;
    results
        .into_iter()
        .map(|r| r.map_err(SchedulerError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(after: Option<&str>, prefix: Option<&str>, limit: usize) -> JobPageQuery {
        JobPageQuery {
            after: after.map(String::from),
            prefix: prefix.map(String::from),
            limit,
        }
    }

    fn refused(q: JobPageQuery) -> String {
        q.check().expect_err("refused").to_string()
    }

    #[test]
    fn a_query_names_what_is_wrong() {
        assert!(query(None, None, 1).check().is_ok());
        assert!(
            query(Some("report-1"), Some("rep"), MAX_LIST_LIMIT)
                .check()
                .is_ok()
        );
        assert!(refused(query(None, None, 0)).contains("`limit` is 0"));
        assert!(refused(query(None, None, MAX_LIST_LIMIT + 1)).contains("`limit`"));
        assert!(refused(query(Some("Bad Name"), None, 5)).contains("`after`"));
        assert!(refused(query(None, Some("a.b"), 5)).contains("`prefix`"));
    }
}
