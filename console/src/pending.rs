//! Stand-ins for `Admin` operations being added elsewhere (job states, stats). Inherent
//! methods win over trait methods, so once the real ones exist this trait is unused and
//! goes.

#![allow(dead_code, unused_variables)]

use antares_scheduler::SchedulerError;
use antares_scheduler::admin::Admin;
use antares_schemas::stats::{JobState, Stats};

pub trait Pending {
    async fn job_states(&self, app: Option<&str>) -> Result<Vec<JobState>, SchedulerError> {
        Ok(Vec::new())
    }
    async fn stats(&self, days: u32, apps: Option<&[String]>) -> Result<Stats, SchedulerError> {
        Err(SchedulerError::Invalid(
            "stats are not part of this build yet".into(),
        ))
    }
}

impl Pending for Admin {}
