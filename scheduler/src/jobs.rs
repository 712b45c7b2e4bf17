//! The scheduler's view of apps and jobs, kept current from the KV buckets.
//!
//! One [`Catalog`] per scheduler process, read when the process starts (before it takes
//! any lease) and kept current by [`Catalog::follow_buckets`], which streams every later
//! change (create, edit, pause, delete) into it: a standby holds the catalog too, so a
//! takeover plans at once instead of reading every job first, and every partition's
//! work loop shares the one copy. A loop that leads a partition [`Catalog::follow`]s it
//! to learn which of its jobs changed, so edits apply at once without a restart. A
//! value that cannot be decoded is logged and ignored rather than stopping the
//! scheduler.
//!
//! Held compactly: jobs by app then name (lookups by `&str`, no key built), and each
//! distinct cron expression compiled once and shared by every job that uses it (most
//! jobs share a handful of expressions, and a compiled cron is the largest part of an
//! entry). The snapshot is decoded as it streams in, never buffered whole.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use antares_nats::kv;
use antares_nats::{Nats, NatsError, codec};
use antares_schemas::app::App;
use antares_schemas::schedule::Schedule;
use antares_schemas::spec::{JobSpec, SpecError};
use antares_schemas::{Timestamp, Topology};
use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use tokio::sync::watch;

/// A job as the scheduler uses it.
#[derive(Debug)]
pub struct JobEntry {
    /// The spec.
    pub spec: JobSpec,
    /// Its compiled schedule, if it has one (shared by the jobs with the same one).
    pub schedule: Option<Arc<Schedule>>,
    /// When this spec was stored: a job that never fired is due from then.
    pub written: Timestamp,
}

/// A change seen in the buckets.
#[derive(Clone, Debug)]
pub enum Change {
    /// An app was written (`Some`) or deleted (`None`).
    App(String, Option<App>),
    /// A job was written (with when) or deleted; key `<app>.<job>`.
    Job(String, Option<(Box<JobSpec>, Timestamp)>),
}

/// Apps and jobs by name, shared by the scheduler's work loops (clones are handles to
/// the same catalog).
#[derive(Clone, Debug)]
pub struct Catalog {
    inner: Arc<RwLock<Inner>>,
    topo: Topology,
}

#[derive(Debug, Default)]
struct Inner {
    apps: HashMap<String, App>,
    /// By app, then job name.
    jobs: HashMap<Box<str>, HashMap<Box<str>, Arc<JobEntry>>>,
    schedules: Schedules,
    /// The partitions followed, with the jobs of each that changed since last taken.
    followers: HashMap<u32, Follower>,
    next_follower: u64,
}

#[derive(Debug)]
struct Follower {
    id: u64,
    changed: HashSet<(String, String)>,
    tx: watch::Sender<u64>,
}

/// Compiled schedules by what they are made from, shared by the jobs that have the
/// same one; one no job uses any more is dropped when the cache has doubled since the
/// last pruning.
#[derive(Debug, Default)]
struct Schedules {
    compiled: HashMap<ScheduleKey, Arc<Schedule>>,
    pruned_at: usize,
}

/// A schedule as written: cron and tz, every, at.
type ScheduleKey = (
    Option<String>,
    Option<String>,
    Option<Duration>,
    Option<i64>,
);

impl Schedules {
    fn compile(&mut self, spec: &JobSpec) -> Result<Option<Arc<Schedule>>, SpecError> {
        let Some(s) = &spec.schedule else {
            return Ok(None);
        };
        let key = (
            s.cron.clone(),
            s.tz.clone(),
            s.every.map(|e| e.0),
            s.at.map(|a| a.0),
        );
        if let Some(found) = self.compiled.get(&key) {
            return Ok(Some(Arc::clone(found)));
        }
        let Some(compiled) = spec.schedule()?.map(Arc::new) else {
            return Ok(None);
        };
        self.compiled.insert(key, Arc::clone(&compiled));
        if self.compiled.len() > 2 * self.pruned_at + 1024 {
            self.compiled.retain(|_, c| Arc::strong_count(c) > 1);
            self.pruned_at = self.compiled.len();
        }
        Ok(Some(compiled))
    }
}

/// Which jobs of a partition changed, for the loop that leads it; it stops following
/// when dropped.
#[derive(Debug)]
pub struct Follow {
    catalog: Catalog,
    partition: u32,
    id: u64,
    rx: watch::Receiver<u64>,
}

impl Follow {
    /// Waits until a job of the partition may have changed (cancel-safe).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives as long as we follow: never ends.
            std::future::pending::<()>().await;
        }
    }

    /// The jobs of the partition whose schedule may have changed since the last take.
    pub fn take(&self) -> Vec<(String, String)> {
        let mut inner = self.catalog.write();
        match inner.followers.get_mut(&self.partition) {
            Some(f) if f.id == self.id => f.changed.drain().collect(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let mut inner = self.catalog.write();
        if inner
            .followers
            .get(&self.partition)
            .is_some_and(|f| f.id == self.id)
        {
            inner.followers.remove(&self.partition);
        }
    }
}

impl Catalog {
    /// An empty catalog for jobs split as `topo` says.
    pub fn new(topo: Topology) -> Self {
        Self {
            inner: Arc::default(),
            topo,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A job.
    pub fn job(&self, app: &str, job: &str) -> Option<Arc<JobEntry>> {
        self.read().jobs.get(app)?.get(job).cloned()
    }

    /// An app.
    pub fn app(&self, app: &str) -> Option<App> {
        self.read().apps.get(app).cloned()
    }

    /// Whether an app exists.
    pub fn has_app(&self, app: &str) -> bool {
        self.read().apps.contains_key(app)
    }

    /// Whether a job's schedule should fire: the job and its app are enabled.
    pub fn schedule_active(&self, app: &str, job: &str) -> bool {
        let inner = self.read();
        inner
            .jobs
            .get(app)
            .and_then(|jobs| jobs.get(job))
            .is_some_and(|j| j.spec.enabled)
            && inner.apps.get(app).is_some_and(|a| a.enabled)
    }

    /// How many jobs there are.
    pub fn len(&self) -> usize {
        self.read().jobs.values().map(HashMap::len).sum()
    }

    /// Whether there is no job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every job, as (app, job).
    pub fn job_names(&self) -> Vec<(String, String)> {
        self.jobs_where(|_, _| true)
    }

    /// The jobs of one partition, as (app, job).
    pub fn partition_jobs(&self, partition: u32) -> Vec<(String, String)> {
        self.jobs_where(|app, job| self.topo.partition_of(app, job) == partition)
    }

    fn jobs_where(&self, keep: impl Fn(&str, &str) -> bool) -> Vec<(String, String)> {
        let inner = self.read();
        let mut out = Vec::new();
        for (app, jobs) in &inner.jobs {
            for job in jobs.keys() {
                if keep(app, job) {
                    out.push((app.to_string(), job.to_string()));
                }
            }
        }
        out
    }

    /// Starts following the jobs of a partition: from now on, [`Follow::take`] returns
    /// those that changed. One follower per partition (a new one replaces the old).
    pub fn follow(&self, partition: u32) -> Follow {
        let mut inner = self.write();
        inner.next_follower += 1;
        let id = inner.next_follower;
        let (tx, rx) = watch::channel(0);
        inner.followers.insert(
            partition,
            Follower {
                id,
                changed: HashSet::new(),
                tx,
            },
        );
        Follow {
            catalog: self.clone(),
            partition,
            id,
            rx,
        }
    }

    /// Applies a change; returns the jobs whose schedule may have changed (and tells
    /// the followers of their partitions).
    pub fn apply(&self, change: Change) -> Vec<(String, String)> {
        let mut inner = self.write();
        let changed = apply_to(&mut inner, change);
        if !inner.followers.is_empty() {
            for (app, job) in &changed {
                let p = self.topo.partition_of(app, job);
                if let Some(f) = inner.followers.get_mut(&p) {
                    f.changed.insert((app.clone(), job.clone()));
                    f.tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
        changed
    }

    /// Reads every app and job now (decoded as they stream in); returns the catalog
    /// and where [`Self::follow_buckets`] goes on from.
    pub async fn load(
        nats: &Nats,
        apps: &Store,
        jobs: &Store,
    ) -> Result<(Self, [u64; 2]), NatsError> {
        let mut inner = Inner::default();
        let mut marks = [0u64; 2];
        for (i, (store, is_app)) in [(apps, true), (jobs, false)].into_iter().enumerate() {
            let last = store
                .status()
                .await
                .map(|st| st.info.state.last_sequence)
                .map_err(|e| NatsError::op("read bucket status", e))?;
            marks[i] = last;
            kv::scan_each(nats, store, ">", false, |hit| {
                if let Some(value) = &hit.value
                    && let Some(c) =
                        decode_change(is_app, &hit.key, Operation::Put, value, hit.written)
                {
                    apply_to(&mut inner, c);
                }
            })
            .await?;
        }
        let catalog = Self::new(nats.topo.clone());
        *catalog.write() = inner;
        Ok((catalog, marks))
    }

    /// Applies every change after the marks of [`Self::load`] until dropped. A watch
    /// that ends (a cluster failover) is recreated.
    pub async fn follow_buckets(self, apps: Store, jobs: Store, marks: [u64; 2]) {
        tokio::join!(
            self.follow_bucket(apps, true, marks[0]),
            self.follow_bucket(jobs, false, marks[1])
        );
    }

    async fn follow_bucket(&self, store: Store, is_app: bool, mark: u64) {
        let mut from = mark + 1;
        loop {
            match store.watch_all_from_revision(from).await {
                Ok(mut w) => {
                    while let Some(entry) = w.next().await {
                        match entry {
                            Ok(e) => {
                                from = e.revision + 1;
                                let written = Timestamp::from_datetime(&e.created);
                                if let Some(c) =
                                    decode_change(is_app, &e.key, e.operation, &e.value, written)
                                {
                                    self.apply(c);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, bucket = %store.name, "watch failed; recreating");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, bucket = %store.name, "cannot watch; retrying");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Applies a change; returns the jobs whose schedule may have changed.
fn apply_to(inner: &mut Inner, change: Change) -> Vec<(String, String)> {
    match change {
        Change::App(name, app) => {
            match app {
                Some(a) => inner.apps.insert(name.clone(), a),
                None => inner.apps.remove(&name),
            };
            inner.jobs.get(name.as_str()).map_or_else(Vec::new, |jobs| {
                jobs.keys()
                    .map(|job| (name.clone(), job.to_string()))
                    .collect()
            })
        }
        Change::Job(key, spec) => {
            let Some((app, job)) = key.split_once('.') else {
                return Vec::new();
            };
            let name = (app.to_string(), job.to_string());
            match spec {
                Some((spec, written)) => match inner.schedules.compile(&spec) {
                    Ok(schedule) => {
                        let entry = Arc::new(JobEntry {
                            spec: *spec,
                            schedule,
                            written,
                        });
                        match inner.jobs.get_mut(app) {
                            Some(jobs) => {
                                jobs.insert(job.into(), entry);
                            }
                            None => {
                                inner
                                    .jobs
                                    .insert(app.into(), HashMap::from([(job.into(), entry)]));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(job = %key, error = %e, "job has an invalid schedule; ignored");
                        remove_job(inner, app, job);
                    }
                },
                None => remove_job(inner, app, job),
            }
            vec![name]
        }
    }
}

fn remove_job(inner: &mut Inner, app: &str, job: &str) {
    if let Some(jobs) = inner.jobs.get_mut(app) {
        jobs.remove(job);
        if jobs.is_empty() {
            inner.jobs.remove(app);
        }
    }
}

fn decode_change(
    is_app: bool,
    key: &str,
    op: Operation,
    value: &[u8],
    written: Timestamp,
) -> Option<Change> {
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
            Ok(j) => Some(Change::Job(key.to_string(), Some((Box::new(j), written)))),
            Err(e) => {
                tracing::error!(job = %key, error = %e, "stored job spec is corrupt (it cannot be decoded): the job does not run until it is applied again");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antares_schemas::spec::{SpecFormat, parse_jobs};

    fn job(name: &str, schedule: &str) -> Change {
        let toml =
            format!("app = \"a\"\nname = \"{name}\"\nhandler = \"h\"\nschedule = {schedule}\n");
        let spec = parse_jobs(&toml, SpecFormat::Toml)
            .expect("spec")
            .pop()
            .expect("one");
        Change::Job(format!("a.{name}"), Some((Box::new(spec), Timestamp(0))))
    }

    fn app(enabled: bool) -> Change {
        let a = App {
            name: "a".into(),
            description: String::new(),
            enabled,
            created_at: antares_schemas::Timestamp(0),
        };
        Change::App("a".into(), Some(a))
    }

    #[test]
    fn jobs_with_the_same_schedule_share_it() {
        let c = Catalog::new(Topology::new("ats").expect("topology"));
        c.apply(app(true));
        c.apply(job("x", "{ cron = \"0 0 * * *\" }"));
        c.apply(job("y", "{ cron = \"0 0 * * *\" }"));
        c.apply(job("z", "{ cron = \"0 0 * * *\", tz = \"Europe/Berlin\" }"));
        let schedule = |j: &str| c.job("a", j).and_then(|e| e.schedule.clone());
        let (x, y, z) = (schedule("x"), schedule("y"), schedule("z"));
        assert!(x.is_some() && z.is_some());
        assert!(Arc::ptr_eq(x.as_ref().expect("x"), y.as_ref().expect("y")));
        assert!(!Arc::ptr_eq(x.as_ref().expect("x"), z.as_ref().expect("z")));
        assert_eq!(c.len(), 3);
        assert!(c.schedule_active("a", "x"));
    }

    #[test]
    fn a_follower_learns_which_jobs_of_its_partition_changed() {
        let topo = Topology::new("ats").expect("topology").with_partitions(4);
        let c = Catalog::new(topo.clone());
        c.apply(app(true));
        let names: Vec<String> = (0..40).map(|i| format!("j{i}")).collect();
        let p = topo.partition_of("a", &names[0]);
        let follow = c.follow(p);
        for n in &names {
            c.apply(job(n, "{ every = \"1s\" }"));
        }
        let mut changed = follow.take();
        changed.sort();
        let mut mine: Vec<(String, String)> = names
            .iter()
            .filter(|n| topo.partition_of("a", n) == p)
            .map(|n| ("a".to_string(), n.clone()))
            .collect();
        mine.sort();
        assert_eq!(changed, mine);
        assert!(follow.take().is_empty(), "taken once");
        assert_eq!(c.partition_jobs(p).len(), mine.len());

        // Pausing the app changes every job's schedule; deleting a job too.
        c.apply(app(false));
        assert_eq!(follow.take().len(), mine.len());
        assert!(!c.schedule_active("a", &mine[0].1));
        c.apply(Change::Job(format!("a.{}", mine[0].1), None));
        assert_eq!(follow.take(), vec![mine[0].clone()]);
        assert!(c.job("a", &mine[0].1).is_none());

        // A dropped follower stops collecting.
        drop(follow);
        c.apply(job(&mine[1].1, "{ every = \"2s\" }"));
        assert!(c.follow(p).take().is_empty());
    }
}
