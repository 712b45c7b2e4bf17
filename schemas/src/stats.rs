//! What the dashboard and the jobs page show without reading history: counts per day,
//! and each job's last run. Both are written when an instance ends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::instance::InstanceStatus;
use crate::time::Timestamp;

/// Ended instances of one app on one day (UTC).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    /// Ended instances by status (`success`, `failed`, ...).
    #[serde(default)]
    pub by_status: BTreeMap<InstanceStatus, u64>,
    /// Sum of their run times (`started_at` to `finished_at`) in milliseconds.
    #[serde(default)]
    pub duration_ms_sum: u64,
    /// Longest run time in milliseconds.
    #[serde(default)]
    pub duration_ms_max: u64,
}

impl DayCounts {
    /// How many ended.
    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }
}

/// One day of `GET /api/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Counts over the apps the asker may see.
    #[serde(flatten)]
    pub counts: DayCounts,
}

/// `GET /api/stats?days=N`: the last N days, oldest first, and what runs now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// One entry per day, including days with nothing.
    pub days: Vec<DayStats>,
    /// Instances not ended yet.
    pub running: u64,
    /// Live workers.
    pub workers_online: u64,
}

/// A job's last ended instance (the jobs page's "last status").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// App.
    pub app: String,
    /// Job.
    pub job: String,
    /// The instance.
    pub last_instance: InstanceId,
    /// How it ended.
    pub last_status: InstanceStatus,
    /// When it was due.
    pub last_scheduled_at: Timestamp,
    /// When it ended.
    pub last_finished_at: Option<Timestamp>,
}

/// One row of the jobs page (`GET /api/apps/{app}/job-rows`): the spec, whether its
/// schedule runs, its last run and its next fire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// The job.
    pub spec: crate::spec::JobSpec,
    /// Whether its schedule fires: the job is enabled and its app is not paused.
    pub active: bool,
    /// Its last ended instance, if any is known.
    #[serde(default)]
    pub state: Option<JobState>,
    /// When its schedule fires next (none for jobs without a schedule, paused ones, or
    /// an `at` in the past).
    #[serde(default)]
    pub next_fire: Option<Timestamp>,
}
