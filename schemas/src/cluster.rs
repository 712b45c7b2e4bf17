//! What schedulers and workers say about themselves (heartbeats), and leases.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A worker's heartbeat, stored under `<app>.<worker>` in the workers bucket. The entry
/// expires after three missed beats, so a listed worker is a live one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique worker id.
    pub id: String,
    /// The app it serves.
    pub app: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When the process started.
    pub started_at: Timestamp,
    /// When this beat was sent.
    pub last_seen: Timestamp,
    /// Shards running now.
    pub running: u32,
    /// Concurrency slots.
    pub capacity: u32,
    /// Whether it runs script jobs.
    pub allow_scripts: bool,
    /// Plugins it registered.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Whether it runs http jobs (absent: no).
    #[serde(default)]
    pub http: bool,
    /// Whether it holds a task until its `not_before` (absent: no, and the scheduler
    /// queues the app's fires only at their slot).
    #[serde(default)]
    pub holds: bool,
    /// Antares version.
    pub version: String,
}

impl WorkerInfo {
    /// Slots not running a shard by its last beat.
    pub fn free(&self) -> u32 {
        self.capacity.saturating_sub(self.running)
    }
}

/// A scheduler's heartbeat, stored under its id in the schedulers bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerInfo {
    /// Unique scheduler id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When the process started.
    pub started_at: Timestamp,
    /// When this beat was sent.
    pub last_seen: Timestamp,
    /// Whether it holds at least one partition lease.
    pub leader: bool,
    /// The partitions it leads.
    #[serde(default)]
    pub partitions: Vec<u32>,
    /// Antares version.
    pub version: String,
}

/// The value of a lease key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The scheduler holding it.
    pub holder: String,
    /// When this holder first took it.
    pub acquired_at: Timestamp,
    /// When it was last renewed.
    pub renewed_at: Timestamp,
}

/// `antares cluster --json` and `GET /api/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// How many partitions the jobs are split into.
    #[serde(default = "one")]
    pub partitions: u32,
    /// Live schedulers; `leader` marks a holder of partition leases, `partitions` says
    /// which.
    pub schedulers: Vec<SchedulerInfo>,
    /// Live workers.
    pub workers: Vec<WorkerInfo>,
}

impl WorkerInfo {
    /// Whether this worker runs shards of this kind: a plugin it registered, scripts if
    /// it allows them, http jobs if it says it runs them.
    pub fn can_run(&self, exec: &crate::messages::Execution) -> bool {
        use crate::messages::Execution;
        match exec {
            Execution::Plugin { handler } => self.plugins.iter().any(|p| p == handler),
            Execution::Command { .. } | Execution::Script { .. } => self.allow_scripts,
            Execution::Http { .. } => self.http,
        }
    }
}

fn one() -> u32 {
    1
}

/// Settings every process of a namespace must agree on, stored by `antares provision`
/// under [`crate::Topology::cluster_settings_key`] and read at connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// How many partitions the jobs are split into (1 to
    /// [`crate::limits::MAX_PARTITIONS`]).
    pub partitions: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self { partitions: 1 }
    }
}
