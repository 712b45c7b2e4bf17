//! Job versions: every change of a job spec (apply, pause, resume, delete, rollback) is
//! one [`JobVersion`] in the versions bucket, under the job's key, whose history keeps
//! the last [`MAX_JOB_VERSIONS`]. A version's number is the latest one's plus one.
//!
//! The version is written before the spec, and both writes are revision-checked: the
//! version write expects the latest version it numbered after (so two changes of one job
//! cannot both take a number: the second is refused before it writes anything), the spec
//! write expects the spec the change was made from. So every stored spec has its version,
//! and who made it is never lost. The price is the other way round: when the spec write
//! is refused (a change of the same job raced in between the two writes) or the process
//! dies between them, a version is kept whose spec never took effect. That is the lesser
//! harm: it is still a spec someone asked for, and the next change numbers after it. A
//! change of many jobs (a bulk apply) writes all its versions pipelined, then all its
//! specs.

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{NatsError, codec, now};
use antares_schemas::audit::{JobVersion, VersionAction};
use antares_schemas::limits::MAX_JOB_VERSIONS;
use antares_schemas::names::check_name;
use antares_schemas::spec::JobSpec;
use futures::StreamExt;

use super::audit::Change;
use super::{Admin, Current, current_many};
use crate::error::SchedulerError;

/// Writes whose acknowledgements are awaited at once (a sliding window).
const WRITE_WINDOW: usize = kv::MAX_PIPELINE;
/// Longest wait for the next kept version while reading them.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One change of a job spec, about to be written.
#[derive(Clone, Debug)]
pub(crate) struct JobChange {
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
    /// The stored spec the change is made from (none for a new or a deleted job).
    pub old: Option<JobSpec>,
    /// The revision of the stored spec the spec write expects.
    pub spec_revision: u64,
    /// The new spec; none for a delete.
    pub new: Option<JobSpec>,
    /// What makes the change.
    pub action: VersionAction,
    /// For a rollback, the version put back.
    pub from_version: Option<u64>,
}

impl JobChange {
    /// Its audit entry.
    pub fn audit(&self) -> Change {
        // `job.apply`, `job.rollback`, `job.pause`, `job.resume`, `job.delete`.
        let action = format!("job.{}", self.action.as_str());
        let mut change = Change::of_app(&action, format!("{}/{}", self.app, self.job), &self.app);
        if let Some(old) = &self.old {
            change = change.before(old);
        }
        if let Some(new) = &self.new {
            change = change.after(new);
        }
        change
    }
}

/// Why a change was not (wholly) written.
#[derive(Debug)]
pub(crate) enum Unwritten {
    /// Another change of the job took the version number first: nothing was written.
    Raced,
    /// The version was written, but the spec had changed since it was read: the spec
    /// write was refused.
    SpecRaced,
    /// NATS failed, or the latest version cannot be read.
    Failed(SchedulerError),
}

impl Unwritten {
    /// As an error, for `what` (`applying it`, `pausing it`, ...).
    pub fn into_error(self, app: &str, job: &str, what: &str) -> SchedulerError {
        match self {
            Self::Raced | Self::SpecRaced => SchedulerError::Conflict(format!(
                "job `{app}/{job}` changed while {what}: look at it again (`antares job get {app}/{job}`) and retry"
            )),
            Self::Failed(e) => e,
        }
    }
}

impl Admin {
    /// Writes changes: every version pipelined, then the spec of every change whose
    /// version went in. One result per change, in order.
    pub(crate) async fn write_changes(
        &self,
        changes: &[JobChange],
    ) -> Vec<Result<JobVersion, Unwritten>> {
        let topo = &self.nats.topo;
        let versions = &self.buckets.versions;
        let keys: Vec<String> = changes
            .iter()
            .map(|c| topo.job_key(&c.app, &c.job))
            .collect();
        let latest = match current_many(&self.nats, versions, &keys).await {
            Ok(latest) => latest,
            Err(e) => {
                let why = e.to_string();
                return changes
                    .iter()
                    .map(|_| {
                        Err(Unwritten::Failed(SchedulerError::Nats(NatsError::Config(
                            why.clone(),
                        ))))
                    })
                    .collect();
            }
        };

        // Each change's version, numbered after the latest one.
        let at = now();
        let mut out: Vec<Result<JobVersion, Unwritten>> = Vec::with_capacity(changes.len());
        let mut writes = Vec::new();
        for ((change, key), latest) in changes.iter().zip(&keys).zip(latest) {
            let numbered = self.next_version(change, latest, at);
            match numbered {
                Ok((version, body, revision)) => {
                    writes.push((
                        out.len(),
                        Write::put(
                            &versions.name,
                            key.clone(),
                            body,
                            Expect::Revision(revision),
                        ),
                    ));
                    out.push(Ok(version));
                }
                Err(e) => out.push(Err(Unwritten::Failed(e))),
            }
        }
        for (i, result) in self.write_windowed(writes).await {
            match result {
                Ok(_) => {}
                Err(NatsError::WrongRevision { .. }) => out[i] = Err(Unwritten::Raced),
                Err(e) => out[i] = Err(Unwritten::Failed(e.into())),
            }
        }

        // The specs of the changes whose version went in.
        let jobs = &self.buckets.jobs.name;
        let mut writes = Vec::new();
        for (i, (change, key)) in changes.iter().zip(keys).enumerate() {
            if out[i].is_err() {
                continue;
            }
            let expect = Expect::Revision(change.spec_revision);
            let write = match &change.new {
                Some(spec) => match codec::encode("job", spec) {
                    Ok(body) => Write::put(jobs, key, body, expect),
                    Err(e) => {
                        out[i] = Err(Unwritten::Failed(e.into()));
                        continue;
                    }
                },
                None => Write::delete(jobs, key, expect),
            };
            writes.push((i, write));
        }
        for (i, result) in self.write_windowed(writes).await {
            match result {
                Ok(_) => {}
                Err(NatsError::WrongRevision { .. }) => out[i] = Err(Unwritten::SpecRaced),
                Err(e) => out[i] = Err(Unwritten::Failed(e.into())),
            }
        }
        out
    }

    /// The version a change makes, numbered after the latest one, encoded, with the
    /// revision its write expects.
    fn next_version(
        &self,
        change: &JobChange,
        latest: Current,
        at: antares_schemas::Timestamp,
    ) -> Result<(JobVersion, bytes::Bytes, u64), SchedulerError> {
        let number = match &latest.value {
            None => 0,
            Some(value) => {
                codec::decode::<JobVersion>("job version", value)
                    .map_err(|e| {
                        SchedulerError::Invalid(format!(
                            "the latest version of job `{}/{}` cannot be read ({e}), so the next one cannot be numbered",
                            change.app, change.job
                        ))
                    })?
                    .version
            }
        };
        let version = JobVersion {
            version: number + 1,
            at,
            actor: self.actor.clone(),
            action: change.action,
            from_version: change.from_version,
            spec: change.new.clone(),
        };
        let body = codec::encode("job version", &version)?;
        Ok((version, body, latest.revision))
    }

    /// One change: [`Self::write_changes`] of one.
    pub(crate) async fn write_change(&self, change: &JobChange) -> Result<JobVersion, Unwritten> {
        self.write_changes(std::slice::from_ref(change))
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(Unwritten::Failed(SchedulerError::Invalid(
                    "a change of a job gave no result".to_string(),
                )))
            })
    }

    /// Writes pipelined, up to [`WRITE_WINDOW`] unacknowledged at a time; each result
    /// with its tag.
    async fn write_windowed(
        &self,
        writes: Vec<(usize, Write)>,
    ) -> Vec<(usize, Result<u64, NatsError>)> {
        let (tags, writes): (Vec<usize>, Vec<Write>) = writes.into_iter().unzip();
        let results = kv::write_pipelined(&self.nats, writes, WRITE_WINDOW).await;
        tags.into_iter().zip(results).collect()
    }

    /// The kept versions of a job, oldest first (empty when it never had one).
    async fn kept_versions(&self, app: &str, job: &str) -> Result<Vec<JobVersion>, SchedulerError> {
        check_name("app", app)?;
        check_name("job", job)?;
        let store = &self.buckets.versions;
        let key = self.nats.topo.job_key(app, job);
        let op = || format!("read the versions of job {app}/{job}");
        let mut history = store
            .history(&key)
            .await
            .map_err(|e| NatsError::op(op(), e))?;
        let mut out = Vec::new();
        // The bucket keeps MAX_JOB_VERSIONS per key; the bound only guards against a
        // bucket provisioned otherwise.
        let bound = 4 * usize::try_from(MAX_JOB_VERSIONS).unwrap_or(50);
        while out.len() < bound {
            let next = tokio::time::timeout(READ_WAIT, history.next())
                .await
                .map_err(|_| {
                    SchedulerError::Timeout(format!(
                        "reading the versions of job {app}/{job} got nothing for {READ_WAIT:?}"
                    ))
                })?;
            let Some(entry) = next else { break };
            let entry = entry.map_err(|e| NatsError::op(op(), e))?;
            match codec::decode::<JobVersion>("job version", &entry.value) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(
                    job = %format!("{app}/{job}"),
                    revision = entry.revision,
                    error = %e,
                    "unreadable job version skipped"
                ),
            }
        }
        Ok(out)
    }

    /// The kept versions of a job (the last [`MAX_JOB_VERSIONS`]), newest first; a
    /// [`SchedulerError::NotFound`] when the job never had one.
    pub async fn job_versions(
        &self,
        app: &str,
        job: &str,
    ) -> Result<Vec<JobVersion>, SchedulerError> {
        let mut kept = self.kept_versions(app, job).await?;
        if kept.is_empty() {
            return Err(no_versions(app, job));
        }
        kept.reverse();
        Ok(kept)
    }

    /// One kept version of a job; a [`SchedulerError::NotFound`] naming the versions
    /// kept when it is not one of them.
    pub async fn job_version(
        &self,
        app: &str,
        job: &str,
        version: u64,
    ) -> Result<JobVersion, SchedulerError> {
        let kept = self.kept_versions(app, job).await?;
        let (Some(oldest), Some(newest)) = (kept.first(), kept.last()) else {
            return Err(no_versions(app, job));
        };
        let range = if oldest.version == newest.version {
            format!("only version {} is", newest.version)
        } else {
            format!("versions {} to {} are", oldest.version, newest.version)
        };
        let (oldest, newest) = (oldest.version, newest.version);
        kept.into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                let why = if version > newest {
                    "there is no such version yet"
                } else if version < oldest {
                    "it is too old to be kept"
                } else {
                    "it is not kept"
                };
                SchedulerError::NotFound(format!(
                    "job `{app}/{job}` has no version {version} ({why}): {range} kept (see `antares job versions {app}/{job}`)"
                ))
            })
    }

    /// Puts a kept version's spec back as the job's newest, through the same checks and
    /// writes as an apply (a deleted job is made again), and returns the new version.
    /// Refused for the version of a delete (it has no spec) and when the job already has
    /// exactly that spec.
    pub async fn rollback_job(
        &self,
        app: &str,
        job: &str,
        version: u64,
    ) -> Result<JobVersion, SchedulerError> {
        let kept = self.job_version(app, job, version).await?;
        let Some(spec) = kept.spec else {
            return Err(SchedulerError::Invalid(format!(
                "version {version} of job `{app}/{job}` is its deletion, which has no spec to put back: roll back to a version before it (see `antares job versions {app}/{job}`)"
            )));
        };
        if (spec.app.as_str(), spec.name.as_str()) != (app, job) {
            return Err(SchedulerError::Invalid(format!(
                "version {version} of job `{app}/{job}` holds the spec of another job ({}): it cannot be put back",
                spec.full_name()
            )));
        }
        let mut applied = self
            .apply_specs(vec![spec], VersionAction::Rollback, Some(version))
            .await?;
        match applied.pop() {
            Some((_, Some(new))) => Ok(new),
            _ => Err(SchedulerError::Conflict(format!(
                "job `{app}/{job}` already has the spec of version {version}: nothing to roll back"
            ))),
        }
    }
}

/// The error for a job without versions.
fn no_versions(app: &str, job: &str) -> SchedulerError {
    SchedulerError::NotFound(format!(
        "job `{app}/{job}` has no versions: it was never applied (see `antares job list --app {app}`)"
    ))
}
