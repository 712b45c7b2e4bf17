//! Stand-ins for `Admin` operations being added elsewhere (job states, stats, versions,
//! audit log). Inherent methods win over trait methods, so once the real ones exist
//! this trait is unused and goes.

#![allow(dead_code, unused_variables)]

use antares_scheduler::SchedulerError;
use antares_scheduler::admin::Admin;
use antares_schemas::audit::{AuditEntry, JobVersion};
use antares_schemas::stats::{JobState, Stats};

fn missing(what: &str) -> SchedulerError {
    SchedulerError::Invalid(format!("{what} is not part of this build yet"))
}

pub trait Pending {
    async fn job_states(&self, app: Option<&str>) -> Result<Vec<JobState>, SchedulerError> {
        Ok(Vec::new())
    }
    async fn stats(&self, days: u32, apps: Option<&[String]>) -> Result<Stats, SchedulerError> {
        Err(missing("stats"))
    }
    async fn job_versions(&self, app: &str, job: &str) -> Result<Vec<JobVersion>, SchedulerError> {
        Err(missing("job versions"))
    }
    async fn job_version(
        &self,
        app: &str,
        job: &str,
        version: u64,
    ) -> Result<JobVersion, SchedulerError> {
        Err(missing("job versions"))
    }
    async fn rollback_job(
        &self,
        app: &str,
        job: &str,
        version: u64,
    ) -> Result<JobVersion, SchedulerError> {
        Err(missing("job rollback"))
    }
    async fn record(
        &self,
        action: &str,
        target: &str,
        app: Option<&str>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), SchedulerError> {
        Ok(())
    }
    async fn audit_log(
        &self,
        limit: usize,
        before: Option<u64>,
        apps: Option<&[String]>,
    ) -> Result<Vec<AuditEntry>, SchedulerError> {
        Err(missing("the audit log"))
    }
}

impl Pending for Admin {}
