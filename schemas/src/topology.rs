//! Every subject, stream, consumer, bucket and key name Antares uses, built from the
//! namespace in this one place.
//!
//! Layout (namespace `ats`):
//!
//! | what | name | notes |
//! | --- | --- | --- |
//! | trigger subject | `ats.trigger.<app>.<job>` | contract; stream `ATS_TRIGGERS` (work queue), stored as `ats.trigger.<app>.<job>.<partition>`; durable `scheduler-<partition>` per partition |
//! | shard items | `ats.shard.<app>.<job>.<instance>.<item>` | stream `ATS_SHARDS` (work queue); durable `app-<app>` filters `ats.shard.<app>.>` |
//! | per-worker delivery | `ats.direct.<app>.<worker>.<job>.<instance>.<item>` | same stream; durable `worker-<app>-<worker>` filters `ats.direct.<app>.<worker>.>` (disjoint from the app's) |
//! | worker ping | `ats.ping.<app>.<worker>` | core NATS request/reply: a worker answers (routing `failover`) |
//! | results | `ats.result.<app>.<job>.<instance>.<item>` | stream `ATS_RESULTS` (work queue), stored as `ats.result.<app>.<job>.<partition>.<instance>.<item>`; durable `scheduler-<partition>` per partition |
//! | urgent results | `ats.urgent.<app>.<job>.<instance>.<item>` | same stream, stored as `ats.urgent.<app>.<job>.<partition>.<instance>.<item>`; durable `scheduler-<partition>-urgent`, which the leader reads before the others: reports of jobs that fire again within seconds (a kind of their own, so a scheduler that predates them still reads `result` alone) |
//! | control | `ats.control.<app>.<job>.<instance>` | same stream as results (stored as `ats.control.<app>.<job>.<partition>.<instance>`), so a cancel is ordered with them |
//! | logs | `ats.log.<app>.<job>.<instance>.<item>` | stream `ATS_LOGS` (limits, kept for the log retention) |
//! | stop | `ats.stop.<app>.<job>.<instance>` | core NATS: workers stop running shards (cancel, timeout) |
//! | events | `ats.event.<app>.<job>` | contract; core NATS, JSON; also stored in stream `ATS_EVENTS` (limits, by age) when provisioned with an events retention |
//! | alarm deliveries | `ats.alarm.<app>.<job>` | stream `ATS_ALARMS` (work queue, bounded by bytes, discard new); durable `alarms` shared by every scheduler |
//! | audit | `ats.audit.<app>` (`ats.audit.-` for changes outside apps) | stream `ATS_AUDIT` (limits, kept for the audit retention) |
//! | cluster settings | `ats-settings`, key `cluster` | written by `antares provision` (the number of partitions), read at connect |
//! | buckets | `ats-apps`, `ats-jobs`, `ats-instances`, `ats-history`, `ats-leases`, `ats-workers`, `ats-schedulers`, `ats-cursors`, `ats-claims` | |
//! | history views | `ats-index` (pages of ended instances), `ats-jobstate` (each job's last run), `ats-stats` (counts per day) | written when an instance ends |
//! | console | `ats-versions` (job spec versions), `ats-users`, `ats-tokens`, `ats-sessions` | |
//!
//! Every subject names the app right after its kind, so NATS permissions can scope an
//! app's credentials to `ats.*.<app>.>` and the `$KV.ats-*.<app>.>` keys.
//!
//! Jobs are split into partitions by a stable hash of `app` and `job`; each partition
//! has its own lease key, so several schedulers can share the load and each job is still
//! scheduled by exactly one of them. Publishers never name the partition (the trigger
//! subject is the contract's): the trigger and results streams insert it as they store a
//! message, by a subject transform using NATS's `partition()` function, and each
//! partition's leader consumes only its own subjects. [`Topology::partition_of`]
//! computes the same hash (FNV-1a, 32 bits, over the app and job tokens one after the
//! other), so the scheduler knows which jobs are its own. The number of partitions is
//! stored at provision ([`Topology::settings_bucket`]) and read at connect, so every
//! process uses the same one.

use crate::ids::InstanceId;
use crate::instance::InstanceStatus;
use crate::names::{NameError, check_namespace};

/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "ats";

/// The kind token of an urgent report's subject (and of its consumers' names).
const URGENT: &str = "urgent";

/// Header carrying the instance id a manual trigger asks for.
pub const HEADER_INSTANCE: &str = "Antares-Instance";
/// Header telling how a trigger was made (`manual` or `backfill`); absent for raw NATS
/// publishes.
pub const HEADER_TRIGGER: &str = "Antares-Trigger";
/// Header of a backfill trigger: the slot (milliseconds since the epoch) it fills.
pub const HEADER_SLOT: &str = "Antares-Slot";
/// Header of a child trigger (one sent to a job of another partition): the parent
/// instance.
pub const HEADER_PARENT: &str = "Antares-Parent";
/// Header of a child trigger: how deep in its chain of parents the child is.
pub const HEADER_DEPTH: &str = "Antares-Depth";
/// Header of a results message holding several finished reports of one instance: how
/// many (its body is a MessagePack array of them). Absent: the body is one report.
pub const HEADER_REPORTS: &str = "Antares-Reports";
/// JetStream's de-duplication header.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";

/// Names of everything in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    ns: String,
    partitions: u32,
}

impl Topology {
    /// A topology for a namespace with one partition.
    pub fn new(namespace: &str) -> Result<Self, NameError> {
        check_namespace(namespace)?;
        Ok(Self {
            ns: namespace.to_string(),
            partitions: 1,
        })
    }

    /// The same topology split into `n` partitions (at least 1).
    pub fn with_partitions(mut self, n: u32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// How many partitions the jobs are split into.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition a job belongs to: the one NATS's `{{partition(n, app, job)}}`
    /// subject transform gives its subjects (FNV-1a over the two tokens, concatenated).
    pub fn partition_of(&self, app: &str, job: &str) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in app.bytes().chain(job.bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h % self.partitions
    }

    /// The cluster settings (`ats-settings`): written by `antares provision`, read by
    /// every process at connect.
    pub fn settings_bucket(&self) -> String {
        self.bucket("settings")
    }
    /// The key of [`crate::cluster::ClusterSettings`] in [`Self::settings_bucket`].
    pub fn cluster_settings_key(&self) -> String {
        "cluster".to_string()
    }

    fn stream(&self, kind: &str) -> String {
        format!("{}_{kind}", self.ns.to_ascii_uppercase())
    }

    fn bucket(&self, kind: &str) -> String {
        format!("{}-{kind}", self.ns)
    }

    // ---- triggers ----

    /// Stream holding triggers until a scheduler takes them.
    pub fn triggers_stream(&self) -> String {
        self.stream("TRIGGERS")
    }
    /// Subjects of the trigger stream: exactly `<ns>.trigger.<app>.<job>`.
    pub fn triggers_stream_subjects(&self) -> Vec<String> {
        vec![format!("{}.trigger.*.*", self.ns)]
    }
    /// The trigger stream's subject transform (source, destination): appends the job's
    /// partition as the subject is stored.
    pub fn triggers_transform(&self) -> (String, String) {
        (
            format!("{}.trigger.*.*", self.ns),
            format!(
                "{}.trigger.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({},1,2)}}}}",
                self.ns, self.partitions
            ),
        )
    }
    /// The subject a trigger of `app/job` is stored under.
    pub fn stored_trigger_subject(&self, app: &str, job: &str) -> String {
        format!(
            "{}.trigger.{app}.{job}.{}",
            self.ns,
            self.partition_of(app, job)
        )
    }
    /// The stored triggers of one partition.
    pub fn partition_triggers_filter(&self, partition: u32) -> String {
        format!("{}.trigger.*.*.{partition}", self.ns)
    }
    /// `<ns>.trigger.<app>.<job>`.
    pub fn trigger_subject(&self, app: &str, job: &str) -> String {
        format!("{}.trigger.{app}.{job}", self.ns)
    }
    /// Splits a stored trigger subject into (app, job, partition) tokens, unchecked.
    pub fn parse_trigger_subject<'a>(&self, subject: &'a str) -> Option<(&'a str, &'a str, u32)> {
        let rest = subject
            .strip_prefix(self.ns.as_str())?
            .strip_prefix(".trigger.")?;
        let mut t = rest.split('.');
        let (app, job, partition) = (t.next()?, t.next()?, t.next()?.parse().ok()?);
        t.next().is_none().then_some((app, job, partition))
    }
    /// Durable consumer of one partition's triggers (and of its results: the two
    /// streams name consumers apart).
    pub fn triggers_consumer(&self, partition: u32) -> String {
        format!("scheduler-{partition}")
    }
    /// Whether a consumer of the trigger or results stream is a scheduler's: one of a
    /// partition (or of its urgent reports), or the single one of versions before
    /// partitions.
    pub fn is_scheduler_consumer(&self, name: &str) -> bool {
        name == "scheduler"
            || name.strip_prefix("scheduler-").is_some_and(|p| {
                let partition = p.strip_suffix(URGENT).and_then(|p| p.strip_suffix('-'));
                partition.unwrap_or(p).parse::<u32>().is_ok()
            })
    }

    // ---- shard items ----

    /// Work-queue stream of shard items.
    pub fn shards_stream(&self) -> String {
        self.stream("SHARDS")
    }
    /// Subjects of the shard stream: pull delivery and per-worker delivery.
    pub fn shards_stream_subjects(&self) -> Vec<String> {
        vec![
            format!("{}.shard.>", self.ns),
            format!("{}.direct.>", self.ns),
        ]
    }
    /// Subject of one shard item for pull delivery.
    pub fn shard_subject(&self, app: &str, job: &str, instance: &InstanceId, item: u32) -> String {
        format!("{}.shard.{app}.{job}.{instance}.{item}", self.ns)
    }
    /// Every shard item of one instance (for purging a cancelled instance).
    pub fn instance_shards_filter(&self, app: &str, job: &str, instance: &InstanceId) -> String {
        format!("{}.shard.{app}.{job}.{instance}.>", self.ns)
    }
    /// The filter of an app's shared pull consumer.
    pub fn app_shards_filter(&self, app: &str) -> String {
        format!("{}.shard.{app}.>", self.ns)
    }
    /// The durable pull consumer all workers of an app share.
    pub fn app_consumer(&self, app: &str) -> String {
        format!("app-{app}")
    }
    /// Subject of one shard item delivered to one worker.
    pub fn direct_subject(
        &self,
        app: &str,
        worker: &str,
        job: &str,
        instance: &InstanceId,
        item: u32,
    ) -> String {
        format!("{}.direct.{app}.{worker}.{job}.{instance}.{item}", self.ns)
    }
    /// The filter of one worker's own consumer.
    pub fn worker_direct_filter(&self, app: &str, worker: &str) -> String {
        format!("{}.direct.{app}.{worker}.>", self.ns)
    }
    /// The durable consumer of one worker's own deliveries.
    pub fn worker_consumer(&self, app: &str, worker: &str) -> String {
        format!("worker-{app}-{worker}")
    }
    /// Every per-worker shard item of one instance, whatever the worker.
    pub fn instance_direct_filter(&self, app: &str, job: &str, instance: &InstanceId) -> String {
        format!("{}.direct.{app}.*.{job}.{instance}.>", self.ns)
    }
    /// One per-worker shard item, whatever the worker.
    pub fn item_direct_filter(
        &self,
        app: &str,
        job: &str,
        instance: &InstanceId,
        item: u32,
    ) -> String {
        format!("{}.direct.{app}.*.{job}.{instance}.{item}", self.ns)
    }
    /// Every per-worker shard item of the namespace.
    pub fn direct_filter(&self) -> String {
        format!("{}.direct.>", self.ns)
    }
    /// Splits a per-worker subject into (app, worker, job, instance, item), unchecked
    /// but for the instance id and item.
    pub fn parse_direct_subject<'a>(
        &self,
        subject: &'a str,
    ) -> Option<(&'a str, &'a str, &'a str, InstanceId, u32)> {
        let rest = subject
            .strip_prefix(self.ns.as_str())?
            .strip_prefix(".direct.")?;
        let mut t = rest.split('.');
        let (app, worker, job) = (t.next()?, t.next()?, t.next()?);
        let instance = t.next()?.parse().ok()?;
        let item = t.next()?.parse().ok()?;
        t.next()
            .is_none()
            .then_some((app, worker, job, instance, item))
    }
    /// Where a worker answers pings (core NATS request/reply).
    pub fn worker_ping_subject(&self, app: &str, worker: &str) -> String {
        format!("{}.ping.{app}.{worker}", self.ns)
    }
    /// Every ping to an app's workers.
    pub fn app_ping_filter(&self, app: &str) -> String {
        format!("{}.ping.{app}.*", self.ns)
    }
    /// Every per-worker shard item of an app, whatever the worker.
    pub fn app_direct_filter(&self, app: &str) -> String {
        format!("{}.direct.{app}.>", self.ns)
    }

    /// Prefix of the reply subjects of an app's workers (`_INBOX_<ns>.<app>`), instead
    /// of the shared `_INBOX`: pulled shard items and API answers arrive there, so
    /// permissions can keep each app to its own replies.
    pub fn app_inbox_prefix(&self, app: &str) -> String {
        format!("_INBOX_{}.{app}", self.ns)
    }
    /// The `Nats-Msg-Id` of a shard item's publication.
    pub fn shard_msg_id(&self, instance: &InstanceId, item: u32, attempt: u32) -> String {
        format!("{instance}.{item}.{attempt}")
    }

    // ---- results and control ----

    /// Work-queue stream of shard reports and control commands.
    pub fn results_stream(&self) -> String {
        self.stream("RESULTS")
    }
    /// Subjects of the results stream: exactly the report (usual and urgent) and
    /// control subjects.
    pub fn results_stream_subjects(&self) -> Vec<String> {
        vec![
            format!("{}.result.*.*.*.*", self.ns),
            format!("{}.{URGENT}.*.*.*.*", self.ns),
            format!("{}.control.*.*.*", self.ns),
        ]
    }
    /// The results stream's subject transform (source, destination): inserts the job's
    /// partition after the job as a report or command is stored.
    pub fn results_transform(&self) -> (String, String) {
        (
            format!("{}.*.*.*.>", self.ns),
            format!(
                "{}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{{{{partition({},2,3)}}}}.>",
                self.ns, self.partitions
            ),
        )
    }
    /// The stored reports (but the urgent ones) and commands of one partition.
    pub fn partition_results_filters(&self, partition: u32) -> Vec<String> {
        vec![
            format!("{}.result.*.*.{partition}.>", self.ns),
            format!("{}.control.*.*.{partition}.>", self.ns),
        ]
    }
    /// The stored urgent reports of one partition.
    pub fn partition_urgent_results_filter(&self, partition: u32) -> String {
        format!("{}.{URGENT}.*.*.{partition}.>", self.ns)
    }
    /// Where a worker reports on one shard item.
    pub fn result_subject(&self, app: &str, job: &str, instance: &InstanceId, item: u32) -> String {
        format!("{}.result.{app}.{job}.{instance}.{item}", self.ns)
    }
    /// Where a worker reports on a shard item whose task says `urgent`.
    pub fn urgent_result_subject(
        &self,
        app: &str,
        job: &str,
        instance: &InstanceId,
        item: u32,
    ) -> String {
        format!("{}.{URGENT}.{app}.{job}.{instance}.{item}", self.ns)
    }
    /// Every report on an app's shard items.
    pub fn app_results_filter(&self, app: &str) -> String {
        format!("{}.result.{app}.>", self.ns)
    }
    /// Every urgent report on an app's shard items.
    pub fn app_urgent_results_filter(&self, app: &str) -> String {
        format!("{}.{URGENT}.{app}.>", self.ns)
    }
    /// Every report on one instance's shard items.
    pub fn instance_results_filter(&self, app: &str, job: &str, instance: &InstanceId) -> String {
        format!("{}.result.{app}.{job}.{instance}.>", self.ns)
    }
    /// Every report on one instance's shard items, as stored (whatever the partition).
    pub fn stored_instance_results_filter(
        &self,
        app: &str,
        job: &str,
        instance: &InstanceId,
    ) -> String {
        format!("{}.result.{app}.{job}.*.{instance}.>", self.ns)
    }
    /// Every urgent report on one instance's shard items, as stored.
    pub fn stored_instance_urgent_filter(
        &self,
        app: &str,
        job: &str,
        instance: &InstanceId,
    ) -> String {
        format!("{}.{URGENT}.{app}.{job}.*.{instance}.>", self.ns)
    }
    /// The shard item named by the last token of a shard or result subject.
    pub fn item_of(&self, subject: &str) -> Option<u32> {
        subject.rsplit('.').next()?.parse().ok()
    }
    /// Where commands about one instance (cancel) go.
    pub fn control_subject(&self, app: &str, job: &str, instance: &InstanceId) -> String {
        format!("{}.control.{app}.{job}.{instance}", self.ns)
    }
    /// The subject a command about one instance is stored under.
    pub fn stored_control_subject(&self, app: &str, job: &str, instance: &InstanceId) -> String {
        format!(
            "{}.control.{app}.{job}.{}.{instance}",
            self.ns,
            self.partition_of(app, job)
        )
    }
    /// Whether a subject of the results stream is a control command (not a report).
    pub fn is_control_subject(&self, subject: &str) -> bool {
        subject
            .strip_prefix(self.ns.as_str())
            .is_some_and(|rest| rest.starts_with(".control."))
    }
    /// The app and job named by a result, control, shard or log subject
    /// (`<ns>.<kind>.<app>.<job>...`), unchecked.
    pub fn app_job_of<'a>(&self, subject: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = subject.strip_prefix(self.ns.as_str())?.strip_prefix('.')?;
        let mut tokens = rest.split('.').skip(1);
        Some((tokens.next()?, tokens.next()?))
    }
    /// Durable consumer of one partition's reports and commands.
    pub fn results_consumer(&self, partition: u32) -> String {
        format!("scheduler-{partition}")
    }
    /// Durable consumer of one partition's urgent reports.
    pub fn urgent_results_consumer(&self, partition: u32) -> String {
        format!("scheduler-{partition}-{URGENT}")
    }

    // ---- stopping running shards ----

    /// Where the scheduler tells workers to stop shards of one instance.
    pub fn stop_subject(&self, app: &str, job: &str, instance: &InstanceId) -> String {
        format!("{}.stop.{app}.{job}.{instance}", self.ns)
    }
    /// What a worker of an app listens to for stops.
    pub fn app_stop_filter(&self, app: &str) -> String {
        format!("{}.stop.{app}.>", self.ns)
    }

    // ---- logs ----

    /// Stream of log lines, kept for the log retention.
    pub fn logs_stream(&self) -> String {
        self.stream("LOGS")
    }
    /// Subjects of the log stream.
    pub fn logs_stream_subjects(&self) -> Vec<String> {
        vec![format!("{}.log.>", self.ns)]
    }
    /// Where a shard's log lines go.
    pub fn log_subject(&self, app: &str, job: &str, instance: &InstanceId, item: u32) -> String {
        format!("{}.log.{app}.{job}.{instance}.{item}", self.ns)
    }
    /// Every log line of an app's shards.
    pub fn app_logs_filter(&self, app: &str) -> String {
        format!("{}.log.{app}.>", self.ns)
    }
    /// The log lines of one instance of `app/job`, or of one shard of it.
    pub fn instance_logs_filter(
        &self,
        app: &str,
        job: &str,
        instance: &InstanceId,
        item: Option<u32>,
    ) -> String {
        match item {
            Some(i) => self.log_subject(app, job, instance, i),
            None => format!("{}.log.{app}.{job}.{instance}.*", self.ns),
        }
    }

    // ---- events ----

    /// `<ns>.event.<app>.<job>` (contract §4).
    pub fn event_subject(&self, app: &str, job: &str) -> String {
        format!("{}.event.{app}.{job}", self.ns)
    }
    /// Stream that keeps events for integrations that must not miss one (optional).
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }
    /// Every event of the namespace.
    pub fn events_filter(&self) -> String {
        format!("{}.event.>", self.ns)
    }

    // ---- buckets ----

    /// App records, key `<app>`.
    pub fn apps_bucket(&self) -> String {
        self.bucket("apps")
    }
    /// Job specs, key `<app>.<job>`.
    pub fn jobs_bucket(&self) -> String {
        self.bucket("jobs")
    }
    /// Running instances: summary at `<app>.<job>.<id>`, shard chunks at `<app>.<job>.<id>.<chunk>`.
    pub fn instances_bucket(&self) -> String {
        self.bucket("instances")
    }
    /// Finished instances, same keys, expiring after the history retention.
    pub fn history_bucket(&self) -> String {
        self.bucket("history")
    }
    /// Scheduler leases, key `partition.<n>`; entries carry a per-message TTL.
    pub fn leases_bucket(&self) -> String {
        self.bucket("leases")
    }
    /// Worker heartbeats, key `<app>.<worker>`; entries expire after three missed beats.
    pub fn workers_bucket(&self) -> String {
        self.bucket("workers")
    }
    /// Scheduler heartbeats, key `<scheduler>`.
    pub fn schedulers_bucket(&self) -> String {
        self.bucket("schedulers")
    }
    /// The last fire each job's schedule made, key `<app>.<job>`.
    pub fn cursors_bucket(&self) -> String {
        self.bucket("cursors")
    }

    /// Claims: one key per instance id ever made (kept as long as history), and one per
    /// trigger `key` (kept for the key window). A claim is created "must not exist", so
    /// an id or a key is used once however often it is tried.
    pub fn claims_bucket(&self) -> String {
        self.bucket("claims")
    }
    /// Claim key of an instance id. The id alone names it (ids of different jobs never
    /// meet), and the claim's value is the instance's key (`<app>.<job>.<id>`), so an
    /// instance is found from its id with one read, never a scan.
    pub fn instance_claim_key(&self, id: &InstanceId) -> String {
        format!("i.{id}")
    }
    /// Claim key of a trigger `key` (hashed: a key is free text).
    pub fn trigger_key_claim(&self, app: &str, job: &str, key: &str) -> String {
        let h = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        format!("{app}.{job}.k.{h:032x}")
    }

    /// Kept versions of each job spec, key `<app>.<job>`: every version is one entry of
    /// the key's history (the bucket keeps [`crate::limits::MAX_JOB_VERSIONS`]).
    pub fn versions_bucket(&self) -> String {
        self.bucket("versions")
    }

    /// Alarm deliveries waiting to be sent (one message per alarm and target).
    pub fn alarms_stream(&self) -> String {
        self.stream("ALARMS")
    }
    /// Subjects of [`Self::alarms_stream`].
    pub fn alarms_stream_subjects(&self) -> Vec<String> {
        vec![format!("{}.alarm.>", self.ns)]
    }
    /// Where an alarm of `app/job` is queued for delivery.
    pub fn alarm_subject(&self, app: &str, job: &str) -> String {
        format!("{}.alarm.{app}.{job}", self.ns)
    }
    /// The durable consumer every scheduler process delivers alarms from (each message
    /// goes to one of them).
    pub fn alarms_consumer(&self) -> String {
        "alarms".to_string()
    }

    /// The audit log: who changed what, when, before and after.
    pub fn audit_stream(&self) -> String {
        self.stream("AUDIT")
    }
    /// Subjects of [`Self::audit_stream`].
    pub fn audit_stream_subjects(&self) -> Vec<String> {
        vec![format!("{}.audit.>", self.ns)]
    }
    /// Audit subject of a change to `app` (or to the console itself: users, tokens).
    pub fn audit_subject(&self, app: Option<&str>) -> String {
        format!("{}.audit.{}", self.ns, app.unwrap_or("-"))
    }

    /// Pages of ended instances, newest last, per scope (see [`IndexScope`]): key
    /// `<scope>.head` holds the number of the page being filled, `<scope>.<n>` page `n`,
    /// `<scope>.<n>.<m>` the late pages of page `n`.
    pub fn index_bucket(&self) -> String {
        self.bucket("index")
    }
    /// Key of the head of an index scope.
    pub fn index_head_key(&self, scope: &IndexScope) -> String {
        format!("{}.head", scope.key())
    }
    /// Key of page `n` of an index scope.
    pub fn index_page_key(&self, scope: &IndexScope, n: u64) -> String {
        format!("{}.{n}", scope.key())
    }
    /// Key of late page `m` (from 1) of page `n`: instances that ended after page `n`
    /// was full, whose ids fall in its range.
    pub fn index_late_key(&self, scope: &IndexScope, n: u64, m: u64) -> String {
        format!("{}.{n}.{m}", scope.key())
    }

    /// Each job's last ended instance, key `<app>.<job>`.
    pub fn jobstate_bucket(&self) -> String {
        self.bucket("jobstate")
    }
    /// Key of a job's last state (`*` in either part makes a filter).
    pub fn jobstate_key(&self, app: &str, job: &str) -> String {
        format!("{app}.{job}")
    }

    /// Instance counts per day (UTC) and app, key `<yyyymmdd>.<app>`.
    pub fn stats_bucket(&self) -> String {
        self.bucket("stats")
    }
    /// Key of one app's counts of one day (`day` as `yyyymmdd`; app `*` makes a filter of
    /// the day).
    pub fn stats_key(&self, day: u32, app: &str) -> String {
        format!("{day}.{app}")
    }

    /// Console users, key `<user>`.
    pub fn users_bucket(&self) -> String {
        self.bucket("users")
    }
    /// API tokens, key `<token id>`.
    pub fn tokens_bucket(&self) -> String {
        self.bucket("tokens")
    }
    /// Console sessions, key `<session id>`; entries carry a TTL.
    pub fn sessions_bucket(&self) -> String {
        self.bucket("sessions")
    }

    /// Key of a job spec.
    pub fn job_key(&self, app: &str, job: &str) -> String {
        format!("{app}.{job}")
    }
    /// Key of an instance summary.
    pub fn instance_key(&self, app: &str, job: &str, id: &InstanceId) -> String {
        format!("{app}.{job}.{id}")
    }
    /// Key of one chunk of an instance's shard records.
    pub fn shard_chunk_key(&self, app: &str, job: &str, id: &InstanceId, chunk: u32) -> String {
        format!("{app}.{job}.{id}.{chunk}")
    }
    /// Key filter of every instance summary of a job (or of an app with `job = None`).
    pub fn instance_summaries_filter(&self, app: Option<&str>, job: Option<&str>) -> String {
        format!("{}.{}.*", app.unwrap_or("*"), job.unwrap_or("*"))
    }
    /// Key of a worker's heartbeat.
    pub fn worker_key(&self, app: &str, worker: &str) -> String {
        format!("{app}.{worker}")
    }
    /// Key of a partition's lease.
    pub fn lease_key(&self, partition: u32) -> String {
        format!("partition.{partition}")
    }
    /// The stream `antares bench` measures raw JetStream with (deleted afterwards).
    pub fn bench_raw_stream(&self) -> String {
        self.stream("BENCH_RAW")
    }
    /// The subject prefix of [`Self::bench_raw_stream`].
    pub fn bench_raw_prefix(&self) -> String {
        format!("{}.bench.raw", self.ns)
    }
    /// The bench's stream of raw round trips timed while a scenario runs.
    pub fn bench_beside_stream(&self) -> String {
        self.stream("BENCH_BESIDE")
    }
    /// The subject of [`Self::bench_beside_stream`].
    pub fn bench_beside_subject(&self) -> String {
        format!("{}.bench.beside", self.ns)
    }
    /// Subject of a KV key, for writes with headers (TTL, expected revision).
    pub fn kv_subject(&self, bucket: &str, key: &str) -> String {
        format!("$KV.{bucket}.{key}")
    }
}

/// Which instances one index lists: all, an app\'s or a job\'s, optionally of one status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexScope {
    /// Only this app.
    pub app: Option<String>,
    /// Only this job (with `app`).
    pub job: Option<String>,
    /// Only this status.
    pub status: Option<InstanceStatus>,
}

impl IndexScope {
    /// The scope's key prefix: `all`, `a.<app>` or `j.<app>.<job>`, then the status or `any`.
    pub fn key(&self) -> String {
        let status = self.status.map_or("any", InstanceStatus::as_str);
        match (&self.app, &self.job) {
            (Some(app), Some(job)) => format!("j.{app}.{job}.{status}"),
            (Some(app), None) => format!("a.{app}.{status}"),
            _ => format!("all.{status}"),
        }
    }

    /// The six scopes an ended instance of `app/job` with `status` is listed in.
    pub fn of_instance(app: &str, job: &str, status: InstanceStatus) -> [IndexScope; 6] {
        let scope = |a: bool, j: bool, s: bool| IndexScope {
            app: a.then(|| app.to_string()),
            job: j.then(|| job.to_string()),
            status: s.then_some(status),
        };
        [
            scope(false, false, false),
            scope(false, false, true),
            scope(true, false, false),
            scope(true, false, true),
            scope(true, true, false),
            scope(true, true, true),
        ]
    }
}

/// How many shard records one KV value holds, for instances created now. A batch of
/// results rewrites every chunk it touches whole, so the chunk size is the bytes
/// rewritten per report when reports come in one by one: small chunks keep that low
/// (an instance of 20,000 shards is 200 values). Each instance records its own size
/// ([`crate::instance::InstanceSummary::shard_chunk`]).
pub const SHARD_CHUNK: u32 = 100;

/// The chunk size of instances stored before summaries recorded it.
pub const LEGACY_SHARD_CHUNK: u32 = 500;

/// The chunk a shard item's record lives in, with chunks of `size` records.
pub fn chunk_of(item: u32, size: u32) -> u32 {
    item / size.max(1)
}

/// How many chunks of `size` records an instance of `total` shards has.
pub fn chunk_count(total: u32, size: u32) -> u32 {
    total.div_ceil(size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn names_follow_the_contract() {
        let t = Topology::new("ats").expect("ns");
        assert_eq!(
            t.trigger_subject("billing", "report"),
            "ats.trigger.billing.report"
        );
        assert_eq!(
            t.event_subject("billing", "report"),
            "ats.event.billing.report"
        );
        assert_eq!(
            t.parse_trigger_subject(&t.stored_trigger_subject("billing", "report")),
            Some(("billing", "report", 0))
        );
        assert_eq!(t.parse_trigger_subject("ats.trigger.billing.report"), None);
        assert_eq!(t.parse_trigger_subject("ats.trigger.a.b.c"), None);
        assert_eq!(t.parse_trigger_subject("ats.trigger.a.b.1.2"), None);
        assert_eq!(t.parse_trigger_subject("other.trigger.a.b.0"), None);
        let id = InstanceId::for_fire("a", "j", Timestamp(1));
        let control = t.control_subject("shop", "sweep", &id);
        assert!(t.is_control_subject(&control));
        assert!(!t.is_control_subject(&t.result_subject("shop", "sweep", &id, 0)));
        assert_eq!(t.app_job_of(&control), Some(("shop", "sweep")));
        assert_eq!(
            t.app_job_of(&t.result_subject("shop", "sweep", &id, 0)),
            Some(("shop", "sweep"))
        );
        assert_eq!(t.app_job_of("other.result.a.b"), None);
    }

    #[test]
    fn app_and_worker_filters_do_not_overlap() {
        let t = Topology::new("ats").expect("ns");
        let id = InstanceId::for_fire("a", "j", Timestamp(1));
        let shard = t.shard_subject("a", "j", &id, 3);
        assert!(shard.starts_with(&t.app_shards_filter("a").replace('>', "")));
        assert!(!shard.starts_with(&t.app_shards_filter("b").replace('>', "")));
        let direct = t.direct_subject("a", "w1", "j", &id, 3);
        assert!(direct.starts_with(&t.worker_direct_filter("a", "w1").replace('>', "")));
        assert!(!direct.starts_with(&t.app_shards_filter("a").replace('>', "")));
        assert_eq!(
            t.parse_direct_subject(&direct),
            Some(("a", "w1", "j", id, 3))
        );
        assert_eq!(t.parse_direct_subject(&shard), None);
        assert_eq!(t.worker_ping_subject("a", "w1"), "ats.ping.a.w1");
        assert_eq!(t.app_inbox_prefix("a"), "_INBOX_ats.a");
        assert!(direct.starts_with(&t.app_direct_filter("a").replace('>', "")));
        assert!(!direct.starts_with(&t.app_direct_filter("b").replace('>', "")));
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        let t = Topology::new("ats").expect("ns").with_partitions(4);
        let p = t.partition_of("billing", "report");
        assert!(p < 4);
        assert_eq!(p, t.partition_of("billing", "report"));
        assert_eq!(Topology::new("ats").expect("ns").partition_of("x", "y"), 0);
        // What nats-server's `partition(4,1,2)` gives these subjects.
        for (app, job, p) in [
            ("billing", "report", 2),
            ("a", "b", 2),
            ("shop", "sweep", 3),
            ("x", "y", 2),
        ] {
            assert_eq!(t.partition_of(app, job), p, "{app}/{job}");
        }
        assert!(t.is_scheduler_consumer("scheduler-3"));
        assert!(t.is_scheduler_consumer("scheduler"));
        assert!(!t.is_scheduler_consumer("scheduler-x"));
        assert!(!t.is_scheduler_consumer("app-shop"));
    }

    /// Whether a subject matches a NATS filter (`*` one token, `>` the rest).
    fn matches(filter: &str, subject: &str) -> bool {
        let (mut f, mut s) = (filter.split('.'), subject.split('.'));
        loop {
            match (f.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some(a), Some(b)) if a == "*" || a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn urgent_reports_are_read_apart() {
        let t = Topology::new("ats").expect("ns").with_partitions(4);
        let id = InstanceId::for_fire("shop", "tick", Timestamp(1));
        let usual = t.result_subject("shop", "tick", &id, 7);
        let urgent = t.urgent_result_subject("shop", "tick", &id, 7);
        assert_eq!(t.item_of(&urgent), Some(7));
        assert_eq!(t.app_job_of(&urgent), Some(("shop", "tick")));
        assert!(!t.is_control_subject(&urgent));
        for subject in [&usual, &urgent] {
            assert!(
                t.results_stream_subjects()
                    .iter()
                    .any(|f| matches(f, subject))
            );
        }
        assert!(matches(&t.app_urgent_results_filter("shop"), &urgent));
        assert!(!matches(&t.app_urgent_results_filter("shop"), &usual));
        // As stored (the partition inserted after the job), each consumer reads its own,
        // and the usual one's filters are what they always were.
        let p = t.partition_of("shop", "tick");
        let stored = |s: &str| s.replacen(".tick.", &format!(".tick.{p}."), 1);
        let (usual, urgent) = (stored(&usual), stored(&urgent));
        let filters = t.partition_results_filters(p);
        assert!(filters.iter().any(|f| matches(f, &usual)));
        assert!(!filters.iter().any(|f| matches(f, &urgent)));
        assert!(matches(&t.partition_urgent_results_filter(p), &urgent));
        assert!(!matches(&t.partition_urgent_results_filter(p), &usual));
        assert!(matches(
            &t.stored_instance_results_filter("shop", "tick", &id),
            &usual
        ));
        assert!(matches(
            &t.stored_instance_urgent_filter("shop", "tick", &id),
            &urgent
        ));
        assert!(t.is_scheduler_consumer(&t.urgent_results_consumer(3)));
        assert!(!t.is_scheduler_consumer("scheduler--urgent"));
    }

    #[test]
    fn chunks() {
        assert_eq!(chunk_count(0, SHARD_CHUNK), 0);
        assert_eq!(chunk_count(1, SHARD_CHUNK), 1);
        assert_eq!(chunk_count(SHARD_CHUNK, SHARD_CHUNK), 1);
        assert_eq!(chunk_count(SHARD_CHUNK + 1, SHARD_CHUNK), 2);
        assert_eq!(chunk_of(SHARD_CHUNK, SHARD_CHUNK), 1);
        assert_eq!(chunk_count(1000, LEGACY_SHARD_CHUNK), 2);
        assert_eq!(chunk_of(499, LEGACY_SHARD_CHUNK), 0);
        assert_eq!(chunk_count(7, 0), 7, "a size of 0 counts as 1");
    }

    #[test]
    fn bad_namespace_is_refused() {
        assert!(Topology::new("a.b").is_err());
        assert!(Topology::new("").is_err());
    }
}
