//! The Antares side: a scheduler and workers in this process, the end-to-end run and
//! the start latency.
//!
//! Each component gets its own NATS connection, as separate processes would have: the
//! scheduler one, every worker one, and the bench itself (triggers, events, checks)
//! one. The end-to-end run reads its instance's status rather than listening to its
//! events (two a shard), which would add to what is measured. Triggers are published as `antares job trigger` publishes them (a `manual`
//! trigger carrying the instance id), straight to the trigger subject, so the clock
//! starts right before the publish.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use antares_nats::async_nats::HeaderMap;
use antares_nats::{ConnectOptions, Nats, NatsError, codec, kv, lease, now};
use antares_scheduler::admin::{Admin, ApplyAction};
use antares_scheduler::{SchedulerError, SchedulerOptions};
use antares_schemas::InstanceId;
use antares_schemas::instance::{InstanceStatus, ShardStatus};
use antares_schemas::messages::{Event, EventKind, TriggerRequest};
use antares_schemas::spec::{JobKind, JobSpec};
use antares_schemas::topology::{HEADER_INSTANCE, HEADER_MSG_ID, HEADER_TRIGGER};
use antares_worker::{Job, JobContext, JobResult, Worker, WorkerHandle};
use anyhow::Context as _;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Say, named, scheduler_apart};

/// The app the bench runs in.
pub(super) const APP: &str = "bench";
/// The throughput job: N shards of the built-in `noop`.
pub(super) const NOOP_JOB: &str = "noop";
/// The latency job: 1 shard of the bench's own `probe` plugin.
pub(super) const PROBE_JOB: &str = "probe";
/// Unmeasured probe runs before anything is timed (also proves the set-up works).
const WARM_UP: u32 = 3;
/// Pause between latency samples, so triggers come at a low rate (<= 50/s).
const SAMPLE_GAP: Duration = Duration::from_millis(20);
/// How long one probe may take to start and to finish.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first probe may take: the scheduler takes the lease and catches up.
const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the end-to-end run samples the queues, for its stages.
const MONITOR_EVERY: Duration = Duration::from_millis(10);
/// How often the end-to-end run reads its instance's status.
const STATUS_EVERY: Duration = Duration::from_millis(2);

/// What to start.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) shards: u32,
    pub(super) workers: u32,
    pub(super) concurrency: u32,
    /// Remove the app and jobs the bench created when done (a given server).
    pub(super) manage_app: bool,
}

/// When each stage of the end-to-end run was seen, in ms after the trigger's publish.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(super) struct Stages {
    /// The stored instance seen `running`: every shard queued.
    pub(super) instance_started_ms: f64,
    /// The shard stream found empty: every worker has acked every shard item (its
    /// result is stored in the results stream, not yet folded into the instance).
    pub(super) shards_acked_ms: f64,
    /// The stored instance seen ended: every result folded into it.
    pub(super) instance_finished_ms: f64,
    /// Most shard reports seen waiting in the results stream for the scheduler.
    pub(super) results_backlog_max: u64,
}

/// The end-to-end run's outcome.
#[derive(Clone, Copy, Debug)]
pub(super) struct EndToEnd {
    pub(super) seconds: f64,
    pub(super) stages: Stages,
}

/// Medians of the legs of a probe run, ms after the trigger's publish started.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(super) struct Legs {
    /// The trigger stream acknowledged the trigger.
    pub(super) trigger_acked: f64,
    /// The `instance_started` event arrived (sent after the shard item was queued and
    /// the instance marked running; often after the shard started).
    pub(super) started_event: f64,
    /// The probe's `execute` began in a worker (the start latency itself).
    pub(super) execute: f64,
}

/// The latency run's samples.
#[derive(Clone, Debug, Default)]
pub(super) struct Latency {
    /// Trigger publish to `execute`.
    pub(super) starts: Vec<Duration>,
    acked: Vec<Duration>,
    started_events: Vec<Duration>,
}

impl Latency {
    pub(super) fn legs_p50(&self) -> Legs {
        let p = |v: &[Duration]| super::round(super::Percentiles::of(v).p50, 3);
        Legs {
            trigger_acked: p(&self.acked),
            started_event: p(&self.started_events),
            execute: p(&self.starts),
        }
    }
}

/// The plugin behind the `probe` job: notes when `execute` starts.
struct Probe {
    started: mpsc::UnboundedSender<(InstanceId, Instant)>,
}

impl Job for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    async fn execute(&self, ctx: JobContext) -> JobResult {
        let at = Instant::now();
        let _ = self.started.send((ctx.instance_id(), at));
        JobResult::Success
    }
}

/// An instance-level event, and when it arrived.
#[derive(Debug)]
struct Seen {
    kind: EventKind,
    instance: Option<InstanceId>,
    reason: Option<String>,
    at: Instant,
}

/// Instance-level events of one job, as they arrive.
struct Events {
    rx: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
    /// Events that arrived while waiting for another.
    early: Vec<Seen>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Events {
    /// Subscribes to a job's events; only instance-level ones are kept (shard events
    /// are skipped without parsing them).
    async fn subscribe(nats: &Nats, job: &str) -> anyhow::Result<Self> {
        let subject = nats.topo.event_subject(APP, job);
        let mut sub = nats
            .client
            .subscribe(subject.clone())
            .await
            .with_context(|| format!("cannot subscribe to {subject}"))?;
        // Make sure the server has the subscription before anything is triggered.
        nats.flush().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let at = Instant::now();
                let p = &msg.payload[..];
                if !(contains(p, b"instance_started")
                    || contains(p, b"instance_finished")
                    || contains(p, b"trigger_rejected"))
                {
                    continue;
                }
                let Ok(e) = serde_json::from_slice::<Event>(p) else {
                    continue;
                };
                let seen = Seen {
                    kind: e.kind,
                    instance: e.instance,
                    reason: e.reason,
                    at,
                };
                if tx.send(seen).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            rx,
            task,
            early: Vec::new(),
        })
    }

    /// Waits for an event of `kind` about `id`; a rejected trigger of the job fails.
    async fn wait(
        &mut self,
        kind: EventKind,
        id: &InstanceId,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        if let Some(i) = self
            .early
            .iter()
            .position(|s| s.kind == kind && s.instance.as_ref() == Some(id))
        {
            return Ok(self.early.swap_remove(i).at);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no {} event for instance {id} within {timeout:?}",
                        kind_name(kind)
                    )
                })?
                .ok_or_else(|| anyhow::anyhow!("the event subscription ended"))?;
            if seen.kind == EventKind::TriggerRejected {
                anyhow::bail!(
                    "a bench trigger was rejected: {}",
                    seen.reason.unwrap_or_default()
                );
            }
            if seen.kind == kind && seen.instance.as_ref() == Some(id) {
                return Ok(seen.at);
            }
            if seen.instance.as_ref() == Some(id) {
                self.early.push(seen);
            }
        }
    }
}

fn kind_name(kind: EventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Refuses to run where the bench would mix with a running Antares: another scheduler
/// leading the namespace (it would run the bench's triggers, or the bench's scheduler
/// would run its jobs) or workers of app `bench` (they would take the bench's shards).
pub(super) async fn preflight(driver: &Nats) -> anyhow::Result<()> {
    let topo = &driver.topo;
    let ns = topo.namespace();
    let leases = driver.bucket(&topo.leases_bucket()).await?;
    let keys: Vec<String> = (0..topo.partitions()).map(|p| topo.lease_key(p)).collect();
    let holders = futures::future::join_all(keys.iter().map(|k| lease::holder(&leases, k))).await;
    if let Some(h) = holders
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .next()
    {
        anyhow::bail!(
            "scheduler `{}` is running in namespace `{ns}`; the bench needs a namespace where \
             no scheduler runs (e.g. --namespace bench)",
            h.record.holder
        );
    }
    let workers = driver.bucket(&topo.workers_bucket()).await?;
    let live = kv::scan(driver, &workers, &topo.worker_key(APP, "*"), true).await?;
    if let Some(w) = live.first() {
        anyhow::bail!(
            "worker `{}` of app `{APP}` is running in namespace `{ns}`; the bench needs a \
             namespace where no worker of app `{APP}` runs (e.g. --namespace bench)",
            w.key.split_once('.').map_or(w.key.as_str(), |(_, id)| id)
        );
    }
    Ok(())
}

/// The running scheduler: how to stop it, and its task.
type SchedulerTask = (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>);

/// A scheduler and W workers running in this process.
pub(super) struct Cluster {
    driver: Nats,
    admin: Admin,
    settings: Settings,
    scheduler: Option<SchedulerTask>,
    workers: Vec<(WorkerHandle, JoinHandle<antares_worker::Result<()>>)>,
    probes: mpsc::UnboundedReceiver<(InstanceId, Instant)>,
    early_probes: HashMap<InstanceId, Instant>,
    created_app: bool,
    created_jobs: Vec<&'static str>,
}

impl Cluster {
    /// Creates the app and jobs, starts the scheduler and the workers, waits until the
    /// scheduler leads, and runs a few unmeasured probes.
    pub(super) async fn start(
        driver: &Nats,
        opts: &ConnectOptions,
        settings: &Settings,
        say: &Say,
    ) -> anyhow::Result<Self> {
        let admin = Admin::open(driver).await?;
        let created_app = match admin.create_app(APP, "antares bench").await {
            Ok(_) => true,
            Err(SchedulerError::Conflict(_)) => false,
            Err(e) => return Err(e.into()),
        };
        let (probe_tx, probes) = mpsc::unbounded_channel();
        let mut cluster = Self {
            driver: driver.clone(),
            admin,
            settings: settings.clone(),
            scheduler: None,
            workers: Vec::new(),
            probes,
            early_probes: HashMap::new(),
            created_app,
            created_jobs: Vec::new(),
        };
        if let Err(e) = cluster.launch(opts, probe_tx, say).await {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    /// The bench's two jobs.
    fn specs(&self) -> Vec<JobSpec> {
        let noop = JobSpec {
            app: APP.into(),
            name: NOOP_JOB.into(),
            description: "antares bench: end-to-end throughput".into(),
            kind: JobKind::Plugin,
            handler: Some("noop".into()),
            shards: Some(self.settings.shards),
            ..JobSpec::default()
        };
        let probe = JobSpec {
            app: APP.into(),
            name: PROBE_JOB.into(),
            description: "antares bench: trigger-to-start latency".into(),
            kind: JobKind::Plugin,
            handler: Some("probe".into()),
            shards: Some(1),
            ..JobSpec::default()
        };
        vec![noop, probe]
    }

    async fn launch(
        &mut self,
        opts: &ConnectOptions,
        probe_tx: mpsc::UnboundedSender<(InstanceId, Instant)>,
        say: &Say,
    ) -> anyhow::Result<()> {
        for outcome in self.admin.apply_jobs(self.specs()).await? {
            if outcome.action == ApplyAction::Created {
                match outcome.job.as_str() {
                    NOOP_JOB => self.created_jobs.push(NOOP_JOB),
                    PROBE_JOB => self.created_jobs.push(PROBE_JOB),
                    _ => {}
                }
            }
        }
        let topo = self.driver.topo.clone();
        let suffix = format!("{:06x}", rand::random::<u32>() % 0x100_0000);

        // The scheduler.
        let scheduler_id = format!("bench-scheduler-{suffix}");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let sched_opts = SchedulerOptions {
            id: Some(scheduler_id.clone()),
            ..SchedulerOptions::default()
        };
        let task = scheduler_apart(
            named(opts, "antares-bench-scheduler"),
            topo.clone(),
            sched_opts,
            stop_rx,
        );
        self.scheduler = Some((stop_tx, task));
        say.line("waiting for the bench scheduler to lead...");
        self.wait_leading(&scheduler_id).await?;

        // The workers, once nothing else can hand them work.
        for i in 0..self.settings.workers {
            let worker = Worker::builder()
                .app(APP)
                .connect_options(named(opts, &format!("antares-bench-worker-{i}")))
                .namespace(topo.namespace())
                .id(format!("bench-{suffix}-{i}"))
                .concurrency(self.settings.concurrency as usize)
                .with_builtins()
                .register(Probe {
                    started: probe_tx.clone(),
                })
                .build()
                .await
                .with_context(|| format!("cannot start bench worker {i}"))?;
            let handle = worker.handle();
            let task = tokio::spawn(worker.run_until(std::future::pending()));
            self.workers.push((handle, task));
        }
        drop(probe_tx);

        // Everything runs: a few probes, unmeasured.
        let mut events = Events::subscribe(&self.driver, PROBE_JOB).await?;
        for i in 0..WARM_UP {
            let timeout = if i == 0 {
                FIRST_PROBE_TIMEOUT
            } else {
                PROBE_TIMEOUT
            };
            self.probe_once(&mut events, timeout)
                .await
                .context("warm-up probe")?;
        }
        Ok(())
    }

    /// Waits until our scheduler holds the lease; fails if another one keeps it.
    async fn wait_leading(&mut self, id: &str) -> anyhow::Result<()> {
        let leases = self
            .driver
            .bucket(&self.driver.topo.leases_bucket())
            .await?;
        let key = self.driver.topo.lease_key(0);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut other = None;
        loop {
            if let Some((_, task)) = &self.scheduler
                && task.is_finished()
            {
                let (_, task) = self.scheduler.take().context("scheduler")?;
                return match task.await {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the bench scheduler stopped at once")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("the bench scheduler panicked: {e}")),
                };
            }
            match lease::holder(&leases, &key).await? {
                Some(h) if h.record.holder == id => return Ok(()),
                Some(h) => other = Some(h.record.holder),
                None => {}
            }
            if Instant::now() > deadline {
                return Err(match other {
                    Some(o) => anyhow::anyhow!(
                        "scheduler `{o}` leads namespace `{}`, so the bench's own scheduler cannot: \
                         run the bench in a namespace of its own (--namespace bench)",
                        self.driver.topo.namespace()
                    ),
                    None => {
                        anyhow::anyhow!("the bench scheduler did not take the lease within 15 s")
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes a manual trigger the way `antares job trigger` does; returns the
    /// instance id and when the trigger stream acknowledged it.
    async fn trigger(&self, job: &str) -> anyhow::Result<(InstanceId, Instant)> {
        let id = InstanceId::for_manual(now(), rand::random::<u128>());
        let body = codec::encode_json("trigger", &TriggerRequest::default())?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_TRIGGER, "manual");
        headers.insert(HEADER_INSTANCE, id.to_string().as_str());
        headers.insert(HEADER_MSG_ID, id.to_string().as_str());
        let subject = self.driver.topo.trigger_subject(APP, job);
        self.driver
            .js
            .publish_with_headers(subject.clone(), headers, body)
            .await
            .map_err(|e| NatsError::op(format!("publish trigger to {subject}"), e))?
            .await
            .map_err(|e| NatsError::op(format!("publish trigger to {subject}"), e))?;
        Ok((id, Instant::now()))
    }

    /// One probe: trigger, its start, its end. Returns (trigger acked, instance_started
    /// event, execute start), each after `t0`.
    async fn probe_once(
        &mut self,
        events: &mut Events,
        timeout: Duration,
    ) -> anyhow::Result<(Duration, Duration, Duration)> {
        let t0 = Instant::now();
        let (id, acked) = self.trigger(PROBE_JOB).await?;
        let executed = self.probe_started(&id, timeout).await?;
        let started = events
            .wait(EventKind::InstanceStarted, &id, timeout)
            .await?;
        events
            .wait(EventKind::InstanceFinished, &id, timeout)
            .await?;
        Ok((acked - t0, started - t0, executed - t0))
    }

    /// Waits until the probe of instance `id` started executing.
    async fn probe_started(
        &mut self,
        id: &InstanceId,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        if let Some(at) = self.early_probes.remove(id) {
            return Ok(at);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (got, at) = tokio::time::timeout_at(deadline, self.probes.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the probe shard of instance {id} did not start within {timeout:?} \
                         (is the scheduler leading and are the workers pulling?)"
                    )
                })?
                .ok_or_else(|| anyhow::anyhow!("every bench worker stopped"))?;
            if got == *id {
                return Ok(at);
            }
            self.early_probes.insert(got, at);
        }
    }

    /// The end-to-end run: one trigger of N noop shards, until `instance_finished`;
    /// then every shard is checked.
    pub(super) async fn end_to_end(&mut self) -> anyhow::Result<EndToEnd> {
        let n = self.settings.shards;
        let shards = self
            .driver
            .stream(&self.driver.topo.shards_stream())
            .await?;
        let results = self
            .driver
            .stream(&self.driver.topo.results_stream())
            .await?;
        // Generous: 60 s, or 2 ms a shard.
        let timeout = Duration::from_secs(60).max(Duration::from_millis(2 * u64::from(n)));

        let (stop_tx, mut stop_rx) = watch::channel(false);
        let monitor = tokio::spawn(async move {
            let mut samples: Vec<(Instant, u64, u64)> = Vec::new();
            let mut tick = tokio::time::interval(MONITOR_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    _ = tick.tick() => {
                        let (s, r) = tokio::join!(shards.get_info(), results.get_info());
                        if let (Ok(s), Ok(r)) = (s, r) {
                            samples.push((Instant::now(), s.state.messages, r.state.messages));
                        }
                    }
                }
            }
            samples
        });

        let t0 = Instant::now();
        let run = async {
            let (id, _) = self.trigger(NOOP_JOB).await?;
            let deadline = tokio::time::Instant::now() + timeout;
            let started = self
                .watch_status(&id, deadline, "started", |s| s != InstanceStatus::Pending)
                .await?;
            let finished = self
                .watch_status(&id, deadline, "ended", InstanceStatus::is_final)
                .await?;
            anyhow::Ok((id, started, finished))
        };
        let outcome = run.await;
        let _ = stop_tx.send(true);
        let samples = monitor.await.unwrap_or_default();
        let (id, started, finished) = outcome?;
        let seconds = (finished - t0).as_secs_f64();

        let ms =
            |at: Instant| super::round(at.saturating_duration_since(t0).as_secs_f64() * 1000.0, 1);
        let shards_acked = samples
            .iter()
            .find(|(at, s, _)| *at >= started && *s == 0)
            .map(|(at, _, _)| *at)
            .unwrap_or(finished);
        let stages = Stages {
            instance_started_ms: ms(started),
            shards_acked_ms: ms(shards_acked.min(finished)),
            instance_finished_ms: ms(finished),
            results_backlog_max: samples.iter().map(|s| s.2).max().unwrap_or(0),
        };

        self.check(&id, n).await?;
        Ok(EndToEnd { seconds, stages })
    }

    /// When the stored instance's status first passed `reached`, read every
    /// [`STATUS_EVERY`] (its summary only, one read). The run's events are not
    /// subscribed to: that would add two deliveries per shard (`shard_started`,
    /// `shard_finished`) to what is measured, which a deployment pays only when
    /// something listens.
    async fn watch_status(
        &self,
        id: &InstanceId,
        deadline: tokio::time::Instant,
        what: &str,
        reached: impl Fn(InstanceStatus) -> bool,
    ) -> anyhow::Result<Instant> {
        let mut tick = tokio::time::interval(STATUS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let summary = self.admin.instance_summary(APP, NOOP_JOB, id).await?;
            if summary.is_some_and(|s| reached(s.status)) {
                return Ok(Instant::now());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "instance {id} has not {what} in time (a rejected trigger is logged by the scheduler)"
                );
            }
        }
    }

    /// Fails unless the stored instance has `n` shards, all `success`.
    async fn check(&self, id: &InstanceId, n: u32) -> anyhow::Result<()> {
        let inst = self.admin.get_instance(id).await?;
        let total = inst.shards.len();
        let ok = inst
            .shards
            .iter()
            .filter(|s| s.status == ShardStatus::Success)
            .count();
        if inst.summary.status != InstanceStatus::Success || total != n as usize || ok != total {
            let first_bad = inst
                .shards
                .iter()
                .find(|s| s.status != ShardStatus::Success)
                .map(|s| {
                    format!(
                        "; e.g. shard {} is {:?}{}",
                        s.item,
                        s.status,
                        s.error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            anyhow::bail!(
                "instance {id} ended {:?} with {ok} of {total} shards successful (expected {n}){first_bad}",
                inst.summary.status
            );
        }
        Ok(())
    }

    /// The latency run.
    pub(super) async fn latency(&mut self, samples: u32) -> anyhow::Result<Latency> {
        let mut events = Events::subscribe(&self.driver, PROBE_JOB).await?;
        let mut out = Latency::default();
        for _ in 0..samples {
            tokio::time::sleep(SAMPLE_GAP).await;
            let (acked, started, executed) = self.probe_once(&mut events, PROBE_TIMEOUT).await?;
            out.acked.push(acked);
            out.started_events.push(started);
            out.starts.push(executed);
        }
        Ok(out)
    }

    /// Stops the workers and the scheduler, and removes what the bench created on a
    /// given server.
    pub(super) async fn stop(&mut self) {
        for (handle, _) in &self.workers {
            handle.shutdown();
        }
        for (handle, task) in self.workers.drain(..) {
            match tokio::time::timeout(Duration::from_secs(40), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("bench worker {}: {e}", handle.id()),
                Ok(Err(e)) => tracing::warn!("bench worker {}: {e}", handle.id()),
                Err(_) => tracing::warn!("bench worker {} did not stop in time", handle.id()),
            }
        }
        if let Some((stop, task)) = self.scheduler.take() {
            let _ = stop.send(());
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("bench scheduler: {e:#}"),
                Ok(Err(e)) => tracing::warn!("bench scheduler: {e}"),
                Err(_) => tracing::warn!("bench scheduler did not stop in time"),
            }
        }
        if self.settings.manage_app {
            for job in self.created_jobs.drain(..) {
                if let Err(e) = self.admin.delete_job(APP, job).await {
                    tracing::warn!("could not delete bench job {APP}/{job}: {e}");
                }
            }
            if self.created_app
                && let Err(e) = self.admin.delete_app(APP).await
            {
                tracing::warn!("could not delete the bench app: {e}");
            }
        }
        let _ = self.driver.flush().await;
    }
}
