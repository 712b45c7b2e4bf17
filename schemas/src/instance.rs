//! Instances (one run of a job) and their shard records, as stored and as shown.
//!
//! A running instance lives in the instances bucket as a small [`InstanceSummary`] plus
//! its [`ShardRecord`]s in chunks of [`crate::topology::SHARD_CHUNK`] (each summary says
//! its own size), so an instance of 20,000 shards never needs one oversized value; when it finishes it moves, in the same
//! shape, to the history bucket. The JSON of `instance get` is [`Instance`]: the summary
//! with its `shards` array.
//!
//! Who moves what (see [`crate::machine`] for the rules):
//! - `pending`: the scheduler created the instance and is publishing its shard items;
//! - `running`: every shard item is in the work queue; workers report on them;
//! - `success`/`failed`: every shard ended, decided by the scheduler from the reports;
//! - `cancelled`: an operator cancelled it; its pending shards never start.

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::messages::Execution;
use crate::spec::Routing;
use crate::time::Timestamp;

/// What made an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// A cron schedule fired.
    Cron,
    /// An `every` schedule fired.
    Every,
    /// An `at` schedule fired.
    At,
    /// "Run now" from the CLI, console or HTTP API.
    Manual,
    /// A message published straight to the trigger subject.
    Event,
    /// A parent job succeeded.
    Child,
    /// A fire missed while no scheduler ran, made up afterwards.
    Misfire,
    /// Backfill of a time range.
    Backfill,
}

impl TriggerKind {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::Every => "every",
            Self::At => "at",
            Self::Manual => "manual",
            Self::Event => "event",
            Self::Child => "child",
            Self::Misfire => "misfire",
            Self::Backfill => "backfill",
        }
    }
}

/// Status of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Created; shard items are being published.
    Pending,
    /// Shard items are queued or running.
    Running,
    /// Every shard succeeded.
    Success,
    /// Every shard ended and at least one failed.
    Failed,
    /// Stopped by an operator.
    Cancelled,
    /// Stopped by its timeout.
    TimedOut,
    /// Not run (overlap policy `discard`).
    Skipped,
}

impl InstanceStatus {
    /// Every status, for exhaustive tests and filters.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Running,
        Self::Success,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
        Self::Skipped,
    ];

    /// Whether the instance has ended (it is history).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for InstanceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}`: use one of pending, running, success, failed, cancelled, timed_out, skipped"
                )
            })
    }
}

/// Status of one shard item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    /// Queued, not started yet.
    Pending,
    /// A worker runs it.
    Running,
    /// Succeeded.
    Success,
    /// Failed (with an error).
    Failed,
    /// The job said `Later`: it is queued again and will run again.
    Later,
    /// Its instance was cancelled before it ended.
    Cancelled,
    /// Stopped by the job's timeout.
    TimedOut,
}

impl ShardStatus {
    /// Every status, for exhaustive tests.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Running,
        Self::Success,
        Self::Failed,
        Self::Later,
        Self::Cancelled,
        Self::TimedOut,
    ];

    /// Whether the shard has ended for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }
}

/// One shard item of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// 0-based index.
    pub item: u32,
    /// Its shard param.
    pub param: String,
    /// Where it is.
    pub status: ShardStatus,
    /// The worker that ran it last.
    pub worker: Option<String>,
    /// How many times it started; 0 until it first starts.
    pub attempts: u32,
    /// When its last attempt started.
    pub started_at: Option<Timestamp>,
    /// When its last attempt ended.
    pub finished_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
    /// Which publication of the item is current (reports of older ones are stale).
    #[serde(default = "first_run", skip_serializing_if = "is_first_run")]
    pub run: u32,
    /// Retries used after failed or timed-out attempts (`retry.max` bounds them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Reruns after its worker was lost (bounded apart from `retry.max`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reruns: u32,
    /// `Later` answers so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub laters: u32,
    /// When it runs again after a failed attempt (it is `pending` until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
}

fn first_run() -> u32 {
    1
}

fn is_first_run(n: &u32) -> bool {
    *n == 1
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ShardRecord {
    /// A shard that has not started.
    pub fn pending(item: u32, param: String) -> Self {
        Self {
            item,
            param,
            status: ShardStatus::Pending,
            worker: None,
            attempts: 0,
            started_at: None,
            finished_at: None,
            error: None,
            run: 1,
            retries: 0,
            reruns: 0,
            laters: 0,
            retry_at: None,
        }
    }
}

/// How failed shards are retried: a snapshot of the job's `retry` in each instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = none).
    pub max: u32,
    /// Wait before the first retry, in milliseconds.
    pub backoff_ms: u64,
    /// Each further wait is the previous one times this.
    pub multiplier: f64,
    /// Longest wait, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Eq for RetryPolicy {}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 = the first retry), in milliseconds:
    /// `backoff * multiplier^(retry-1)`, at most `max_backoff`.
    pub fn delay_ms(&self, retry: u32) -> u64 {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exp);
        let cap = self.max_backoff_ms.max(self.backoff_ms);
        #[allow(clippy::cast_precision_loss)]
        let ms = self.backoff_ms as f64 * factor;
        if ms.is_finite() && ms < cap as f64 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let ms = ms as u64;
            ms
        } else {
            cap
        }
    }
}

/// Shard counts by status (`shard_counts` in listings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCounts {
    /// Not started.
    pub pending: u32,
    /// Running.
    pub running: u32,
    /// Succeeded.
    pub success: u32,
    /// Failed.
    pub failed: u32,
    /// Put back to run again.
    pub later: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Timed out.
    pub timed_out: u32,
}

impl ShardCounts {
    /// Counts of a list of shards.
    pub fn of(shards: &[ShardRecord]) -> Self {
        let mut c = Self::default();
        for s in shards {
            c.add(s.status, 1);
        }
        c
    }

    fn slot(&mut self, status: ShardStatus) -> &mut u32 {
        match status {
            ShardStatus::Pending => &mut self.pending,
            ShardStatus::Running => &mut self.running,
            ShardStatus::Success => &mut self.success,
            ShardStatus::Failed => &mut self.failed,
            ShardStatus::Later => &mut self.later,
            ShardStatus::Cancelled => &mut self.cancelled,
            ShardStatus::TimedOut => &mut self.timed_out,
        }
    }

    /// Adds `n` shards of a status.
    pub fn add(&mut self, status: ShardStatus, n: u32) {
        let slot = self.slot(status);
        *slot = slot.saturating_add(n);
    }

    /// Moves one shard from one status to another.
    pub fn shift(&mut self, from: ShardStatus, to: ShardStatus) {
        let slot = self.slot(from);
        *slot = slot.saturating_sub(1);
        self.add(to, 1);
    }

    /// Shards that have ended for good.
    pub fn finished(&self) -> u32 {
        self.success + self.failed + self.cancelled + self.timed_out
    }

    /// All shards.
    pub fn total(&self) -> u32 {
        self.finished() + self.pending + self.running + self.later
    }
}

/// An instance without its shards: what listings show and what the instances bucket
/// keeps at `<app>.<job>.<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// Unique, time-sorted id.
    pub id: InstanceId,
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
    /// What made it.
    pub trigger: TriggerKind,
    /// When it was due (the fire time, or the trigger's time).
    pub scheduled_at: Timestamp,
    /// When its shard items were queued.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Where it is.
    pub status: InstanceStatus,
    /// The job-level parameter string.
    pub params: String,
    /// Number of shard items.
    pub shard_total: u32,
    /// Shards by status.
    pub shard_counts: ShardCounts,
    /// What each shard runs (a snapshot of the job at creation).
    pub exec: Execution,
    /// Timeout of each shard attempt in milliseconds, 0 for none.
    #[serde(default)]
    pub timeout_ms: u64,
    /// The shard params, kept in the summary only while it is `pending`, so a scheduler
    /// that takes over can finish creating it (write its shard records, queue its items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_params: Vec<String>,
    /// How failed shards are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// `pending` and waiting for its turn (overlap policy), not queued yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
    /// `pending`, made shortly before its slot (`scheduled_at`): at its slot it is
    /// admitted by its job's overlap policy and its items are queued. A scheduler that
    /// takes over starts it then too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub armed: bool,
    /// Why it waits, was skipped, or ended as it did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The instance whose success fired this one (`trigger = "child"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<InstanceId>,
    /// How many parents it has up its chain (0 for an instance that is no child).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// The trigger `key` it was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Since when no live worker of its app can run its shards (it fails once that has
    /// lasted the scheduler's `no_worker_wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_worker_since: Option<Timestamp>,
    /// Which worker gets each shard item (a snapshot of the job's `routing`).
    #[serde(default, skip_serializing_if = "is_pull")]
    pub routing: Routing,
    /// The only workers its shards may go to (the job's `workers`; empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<String>,
    /// Shard records per chunk key ([`crate::topology::SHARD_CHUNK`] when it was made;
    /// absent from instances stored before it was recorded, whose chunks held
    /// [`crate::topology::LEGACY_SHARD_CHUNK`]).
    #[serde(default = "legacy_chunk", skip_serializing_if = "is_legacy_chunk")]
    pub shard_chunk: u32,
}

fn legacy_chunk() -> u32 {
    crate::topology::LEGACY_SHARD_CHUNK
}

fn is_legacy_chunk(n: &u32) -> bool {
    *n == crate::topology::LEGACY_SHARD_CHUNK
}

impl InstanceSummary {
    /// The chunk holding a shard item's record.
    pub fn chunk_of(&self, item: u32) -> u32 {
        crate::topology::chunk_of(item, self.shard_chunk)
    }

    /// How many chunks hold its shard records.
    pub fn chunk_count(&self) -> u32 {
        crate::topology::chunk_count(self.shard_total, self.shard_chunk)
    }

    /// The items whose records chunk `chunk` holds.
    pub fn chunk_items(&self, chunk: u32) -> std::ops::Range<usize> {
        let size = self.shard_chunk.max(1) as usize;
        let start = (chunk as usize).saturating_mul(size);
        let end = start.saturating_add(size).min(self.shard_total as usize);
        start.min(end)..end
    }
}

fn is_pull(r: &Routing) -> bool {
    *r == Routing::Pull
}

/// An instance with its shards: `instance get` and `GET /api/instances/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Everything but the shards.
    #[serde(flatten)]
    pub summary: InstanceSummary,
    /// One record per shard item, by item.
    pub shards: Vec<ShardRecord>,
}

/// What a new instance is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInstance {
    /// Its id.
    pub id: InstanceId,
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
    /// What made it.
    pub trigger: TriggerKind,
    /// When it was due.
    pub scheduled_at: Timestamp,
    /// The job-level parameter string.
    pub params: String,
    /// What each shard runs.
    pub exec: Execution,
    /// Timeout in milliseconds, 0 for none.
    pub timeout_ms: u64,
    /// One param per shard item.
    pub shard_params: Vec<String>,
    /// How failed shards are retried.
    pub retry: RetryPolicy,
    /// The parent instance of a child.
    pub parent: Option<InstanceId>,
    /// Parents up the chain.
    pub depth: u32,
    /// The trigger key.
    pub key: Option<String>,
}

impl Instance {
    /// A `pending` instance whose shards have not started.
    pub fn create(new: NewInstance) -> Self {
        let pending_params = new.shard_params.clone();
        let shards: Vec<ShardRecord> = new
            .shard_params
            .into_iter()
            .enumerate()
            .map(|(i, p)| ShardRecord::pending(u32::try_from(i).unwrap_or(u32::MAX), p))
            .collect();
        let shard_total = u32::try_from(shards.len()).unwrap_or(u32::MAX);
        Self {
            summary: InstanceSummary {
                id: new.id,
                app: new.app,
                job: new.job,
                trigger: new.trigger,
                scheduled_at: new.scheduled_at,
                started_at: None,
                finished_at: None,
                status: InstanceStatus::Pending,
                params: new.params,
                shard_total,
                shard_counts: ShardCounts::of(&shards),
                exec: new.exec,
                timeout_ms: new.timeout_ms,
                pending_params,
                retry: new.retry,
                waiting: false,
                armed: false,
                reason: None,
                parent: new.parent,
                depth: new.depth,
                key: new.key,
                no_worker_since: None,
                routing: Routing::Pull,
                workers: Vec::new(),
                shard_chunk: crate::topology::SHARD_CHUNK,
            },
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{LEGACY_SHARD_CHUNK, SHARD_CHUNK};

    fn made(shards: usize) -> Instance {
        let at = Timestamp(1_800_000_000_000);
        Instance::create(NewInstance {
            id: InstanceId::for_fire("shop", "sweep", at),
            app: "shop".into(),
            job: "sweep".into(),
            trigger: TriggerKind::Cron,
            scheduled_at: at,
            params: String::new(),
            exec: Execution::Plugin {
                handler: "noop".into(),
            },
            timeout_ms: 0,
            shard_params: vec![String::new(); shards],
            retry: RetryPolicy::default(),
            parent: None,
            depth: 0,
            key: None,
        })
    }

    #[test]
    fn new_instances_record_their_chunk_size_and_old_ones_read_as_legacy() {
        let s = made(SHARD_CHUNK as usize * 2 + 7).summary;
        assert_eq!(s.shard_chunk, SHARD_CHUNK);
        assert_eq!(s.chunk_count(), 3);
        assert_eq!(s.chunk_of(SHARD_CHUNK * 2), 2);
        let last = SHARD_CHUNK as usize * 2;
        assert_eq!(s.chunk_items(2), last..last + 7);
        assert_eq!(s.chunk_items(3), last + 7..last + 7, "past the end: empty");

        let bytes = rmp_serde::to_vec_named(&s).expect("encodes");
        let back: InstanceSummary = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, s);

        // Stored before the size was recorded: chunks of the old size.
        let mut json = serde_json::to_value(&s).expect("json");
        json.as_object_mut().map(|o| o.remove("shard_chunk"));
        let old: InstanceSummary = serde_json::from_value(json).expect("old summary");
        assert_eq!(old.shard_chunk, LEGACY_SHARD_CHUNK);
        assert_eq!(old.chunk_count(), 1);
        let old_json = serde_json::to_string(&old).expect("json");
        assert!(!old_json.contains("shard_chunk"), "{old_json}");
    }
}
