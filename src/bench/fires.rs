//! `antares bench --scenario fires`: how late schedules fire, and how many fires a
//! second one scheduler makes.
//!
//! App `bench-fires` gets three kinds of jobs (all `noop`, one shard):
//! - `--jobs N` on an hourly cron at a minute half an hour away, so they never fire
//!   during the run: the catalog the leader holds, plans and keeps timers for;
//! - `--rate R` with `every = "1s"`: R fires every second, the steady rate;
//! - `--burst M` with `every = "1m"`: all due in the same second, the burst.
//!
//! The jobs are written straight into the jobs bucket in pipelined windows (the bench
//! measures firing, not `job apply`); then W in-process workers and one in-process
//! scheduler start (the scheduler on a runtime of its own, as its own process would
//! have). The lateness of a fire is its `instance_started` event time (the
//! instance is created, its items are queued and it is marked running) minus its
//! scheduled slot, which is the time part of its id; beside it, when the job itself
//! began on its worker (the steady and burst jobs run the bench's own handler, which
//! notes it) minus its slot. Measured: the steady jobs for `--seconds` before the burst, the
//! burst (the first minute boundary after that), and the steady jobs whose slots fell
//! while the burst was being fired (the steady figure leaves out the first 3 s of any
//! minute before the burst's: the burst's jobs fire every minute once written, so a
//! steady window that spans a minute boundary holds an earlier, unmeasured burst). Fires
//! per second is the burst's size over the time
//! from its slot to its last start. With `--launch N`, one instance of N shards is
//! triggered in the same app after the steady window, and the steady fires whose slots
//! fall until it ends are measured apart (a large launch must not hold up a 1 s cron).
//! With `--schedulers S` (and `--partitions P`, provisioned), S schedulers share the
//! partitions, and the burst's fires/s is theirs together. Beside it, the raw
//! JetStream round trip (one publish and its ack, one at a time, to a stream of the
//! Antares shard stream's storage) measured in the same run: lateness is an absolute
//! figure, and this says what one round trip costs on the machine. And the raw floor:
//! the time to store, pipelined, as many messages as one second's steady fires need
//! acknowledged writes on their way to start; they all fall due in the same
//! millisecond, so the last of them cannot start sooner.

use std::time::{Duration, Instant};

use antares_nats::async_nats::jetstream::stream::{self, StorageType};
use antares_nats::kv::{self, Expect, Write};
use antares_nats::provision::{self, ProvisionOptions};
use antares_nats::{ConnectOptions, Nats, codec, now};
use antares_scheduler::SchedulerOptions;
use antares_scheduler::admin::Admin;
use antares_schemas::messages::{Event, EventKind};
use antares_schemas::spec::{Dur, JobKind, JobSpec, ScheduleSpec};
use antares_schemas::{InstanceId, Timestamp, Topology};
use antares_worker::Worker;
use anyhow::Context as _;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::beside::{self, Beside};
use super::{BenchArgs, Percentiles, Say, named, round, scheduler_apart};

/// The app the scenario runs in.
const APP: &str = "bench-fires";
/// Job specs written per pipelined window.
const WRITE_WINDOW: usize = 2048;
/// Publish round trips timed for the raw figure.
const RTT_SAMPLES: usize = 200;
/// Shard items each bench worker runs at once.
const WORKER_SLOTS: usize = 512;
/// How long the burst may take to start entirely before the run fails.
const BURST_DEADLINE: Duration = Duration::from_secs(300);
/// How long the launch may take to end before the run fails.
const LAUNCH_DEADLINE: Duration = Duration::from_secs(900);
/// How long the schedulers may take to share the partitions.
const SHARE_DEADLINE: Duration = Duration::from_secs(120);
/// The job of the launch.
const LAUNCH_JOB: &str = "launch";

/// What the scenario found (`--json` prints this object).
#[derive(Clone, Debug, Serialize)]
struct Report {
    /// Hourly jobs that do not fire during the run.
    jobs: u32,
    /// Jobs due in the same second.
    burst: u32,
    /// Jobs firing every second.
    rate: u32,
    /// Seconds of steady rate measured.
    seconds: u32,
    /// In-process workers.
    workers: u32,
    /// Lateness of the steady fires before the burst, ms.
    steady: Lateness,
    /// Lateness of the burst's fires, ms.
    burst_lateness: Lateness,
    /// Lateness of the steady fires due while the burst was being fired, ms.
    steady_during_burst: Lateness,
    /// Shards of the launch (0: none).
    launch: u32,
    /// Lateness of the steady fires due from the launch's trigger to its end, ms.
    steady_during_launch: Lateness,
    /// When the job of each steady fire before the burst began on its worker, less its
    /// slot, ms (the `*_began` figures: what the job's own code sees).
    steady_began: Lateness,
    /// The same for the burst's fires.
    burst_began: Lateness,
    /// The same for the steady fires due while the burst was fired.
    steady_during_burst_began: Lateness,
    /// The same for the steady fires due while the launch ran.
    steady_during_launch_began: Lateness,
    /// From the launch's trigger to its `instance_started` (every item queued), ms.
    launch_started_ms: Option<f64>,
    /// From the launch's trigger to its `instance_finished`, ms.
    launch_finished_ms: Option<f64>,
    /// Schedulers sharing the partitions.
    schedulers: u32,
    /// Partitions the jobs are split into.
    partitions: u32,
    /// The burst's fires over the time from its slot to its last start.
    burst_fires_per_s: f64,
    /// Steady fires started per second (over the steady window).
    steady_fires_per_s: f64,
    /// Seconds from starting the scheduler until the last job's plan was made (its
    /// lease taken and every schedule planned): the first steady fire after it.
    leading_after_s: f64,
    /// Peak resident memory of the bench process (scheduler, workers and the bench
    /// itself), MB; `null` where `/proc` is not there.
    process_peak_rss_mb: Option<f64>,
    /// Raw JetStream: one publish and its ack, one at a time, ms.
    raw_rtt_p50_ms: f64,
    /// Raw JetStream: 99th percentile of the same.
    raw_rtt_p99_ms: f64,
    /// Messages in the raw floor: the acknowledged writes of one second's steady fires
    /// on their way to start (rate × [`WRITES_PER_FIRE`], at most the ack room).
    raw_floor_writes: usize,
    /// Raw JetStream: time to store `raw_floor_writes` messages pipelined (all sent,
    /// then every ack awaited), p50 of [`FLOOR_SAMPLES`] tries: the steady fires all fall
    /// due in the same millisecond, so the last of them cannot start sooner than this.
    raw_floor_p50_ms: f64,
    /// The same, 99th percentile.
    raw_floor_p99_ms: f64,
    /// Raw JetStream while the burst was fired (from its slot to a second after its
    /// last start): one publish and its ack, one at a time, on a connection of its
    /// own, ms; `null` without a burst.
    raw_rtt_during_burst_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    raw_rtt_during_burst_p99_ms: Option<f64>,
    /// The same while the launch ran (from its trigger to its end); `null` without one.
    raw_rtt_during_launch_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    raw_rtt_during_launch_p99_ms: Option<f64>,
    /// `file` or `memory`.
    storage: &'static str,
    /// The server's version.
    nats_server: String,
    /// `local` or `given`.
    server: &'static str,
}

/// Lateness figures of a set of fires, ms.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Lateness {
    fires: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Fires that came before their slot (counted as 0 ms in the percentiles).
    early: usize,
}

impl Lateness {
    fn of(late_ms: &[i64]) -> Self {
        let d: Vec<Duration> = late_ms
            .iter()
            .map(|ms| Duration::from_millis(u64::try_from(*ms).unwrap_or(0)))
            .collect();
        let p = Percentiles::of(&d);
        Self {
            fires: late_ms.len(),
            p50_ms: round(p.p50, 1),
            p99_ms: round(p.p99, 1),
            max_ms: round(p.max, 1),
            early: late_ms.iter().filter(|ms| **ms < 0).count(),
        }
    }
}

/// What the scenario runs.
#[derive(Clone, Copy, Debug)]
struct Settings {
    jobs: u32,
    burst: u32,
    rate: u32,
    seconds: u32,
    workers: u32,
    launch: u32,
    schedulers: u32,
}

/// One `instance_started` of the app (or the launch's `instance_finished`): which
/// job, its slot, and when it started (ended).
#[derive(Clone, Debug)]
struct Started {
    job: String,
    slot: Timestamp,
    at: Timestamp,
    id: InstanceId,
    finished: bool,
}

/// Runs the scenario; returns its `--json` object and its summary.
pub(super) async fn run(
    args: &BenchArgs,
    opts: &ConnectOptions,
    topo: &Topology,
    local: bool,
    say: &Say,
) -> anyhow::Result<(serde_json::Value, String)> {
    let s = Settings {
        jobs: args.jobs.unwrap_or(10_000),
        burst: args.burst.unwrap_or(10_000),
        rate: args.rate.unwrap_or(200),
        seconds: args.seconds.unwrap_or(20),
        workers: args.workers(),
        launch: args.launch.unwrap_or(0),
        schedulers: args.schedulers.unwrap_or(1),
    };
    let driver = Nats::connect(&named(opts, "antares-bench"), topo.clone()).await?;
    let version = driver.client.server_info().version;
    if local || args.partitions.is_some() || driver.buckets().await.is_err() {
        let p = ProvisionOptions {
            partitions: args.partitions,
            ..ProvisionOptions::default()
        };
        provision::provision(&driver, &p)
            .await
            .context("cannot provision the streams and buckets")?;
    }
    // Connected again: the number of partitions is read on connecting.
    let driver = Nats::connect(&named(opts, "antares-bench"), topo.clone()).await?;
    let partitions = driver.topo.partitions();
    if s.schedulers > partitions {
        anyhow::bail!(
            "--schedulers {}: the jobs are split into {partitions} partition(s), so at most {partitions} scheduler(s) can share them (give --partitions)",
            s.schedulers
        );
    }
    super::e2e::preflight(&driver).await?;
    let storage = driver
        .stream(&topo.shards_stream())
        .await?
        .get_info()
        .await
        .context("cannot read the shard stream's settings")?
        .config
        .storage;
    let storage_name = match storage {
        StorageType::File => "file",
        StorageType::Memory => "memory",
    };
    say.line(&format!(
        "nats-server {version}, {storage_name} storage; {} hourly jobs, a burst of {}, {} fires/s steady, {} workers",
        s.jobs, s.burst, s.rate, s.workers
    ));
    say.line("raw JetStream: timing publish round trips...");
    let floor_writes = (s.rate as usize)
        .saturating_mul(WRITES_PER_FIRE)
        .clamp(1, antares_nats::connect::ACK_ROOM);
    let (rtt, floor) = raw_round_trips(&driver, storage, floor_writes).await?;
    let rtt = Percentiles::of(&rtt);
    let floor = Percentiles::of(&floor);
    say.line(&format!(
        "raw JetStream: publish+ack p50 {:.3} ms, p99 {:.3} ms; {floor_writes} pipelined p50 {:.3} ms, p99 {:.3} ms",
        rtt.p50, rtt.p99, floor.p50, floor.p99
    ));

    let admin = Admin::open(&driver).await?;
    if admin.get_app(APP).await.is_ok() {
        anyhow::bail!(
            "app `{APP}` exists in namespace `{}`: the scenario makes its own (delete it, or run in another namespace)",
            topo.namespace()
        );
    }
    admin.create_app(APP, "antares bench: fires").await?;
    let result = measure(&driver, opts, &s, storage, say).await;
    if !local {
        say.line("removing the bench jobs...");
        if let Err(e) = remove_jobs(&driver, &s).await {
            tracing::warn!("could not remove the bench jobs: {e}");
        }
        if let Err(e) = admin.delete_app(APP).await {
            tracing::warn!("could not delete the bench app: {e}");
        }
    }
    let m = result?;
    let report = Report {
        jobs: s.jobs,
        burst: s.burst,
        rate: s.rate,
        seconds: s.seconds,
        workers: s.workers,
        steady: m.steady,
        burst_lateness: m.burst,
        steady_during_burst: m.during,
        launch: s.launch,
        steady_during_launch: m.during_launch,
        steady_began: m.began.steady,
        burst_began: m.began.burst,
        steady_during_burst_began: m.began.during,
        steady_during_launch_began: m.began.during_launch,
        launch_started_ms: m.launch_started_ms,
        launch_finished_ms: m.launch_finished_ms,
        schedulers: s.schedulers,
        partitions,
        burst_fires_per_s: round(m.burst_per_s, 1),
        steady_fires_per_s: round(m.steady_per_s, 1),
        leading_after_s: round(m.written_s, 3),
        process_peak_rss_mb: peak_rss_mb(),
        raw_rtt_p50_ms: round(rtt.p50, 3),
        raw_rtt_p99_ms: round(rtt.p99, 3),
        raw_floor_writes: floor_writes,
        raw_floor_p50_ms: round(floor.p50, 3),
        raw_floor_p99_ms: round(floor.p99, 3),
        raw_rtt_during_burst_p50_ms: m.beside_burst.map(|p| round(p.p50, 3)),
        raw_rtt_during_burst_p99_ms: m.beside_burst.map(|p| round(p.p99, 3)),
        raw_rtt_during_launch_p50_ms: m.beside_launch.map(|p| round(p.p50, 3)),
        raw_rtt_during_launch_p99_ms: m.beside_launch.map(|p| round(p.p99, 3)),
        storage: storage_name,
        nats_server: version,
        server: if local { "local" } else { "given" },
    };
    let text = human(&report);
    Ok((serde_json::to_value(&report)?, text))
}

/// Whether a slot falls in the first seconds of a minute: the burst's jobs (every 1m)
/// fire then too, from the first minute after they were written, so a steady window
/// that spans a minute boundary holds an earlier burst; the steady figures leave those
/// seconds out.
fn after_a_minute(slot: Timestamp) -> bool {
    slot.0.rem_euclid(60_000) < 3000
}

/// When jobs began on their workers, less their slots, in the windows of [`Measured`].
#[derive(Default)]
struct Began {
    steady: Lateness,
    burst: Lateness,
    during: Lateness,
    during_launch: Lateness,
}

/// The slots each figure covers: `[from, to)`.
#[derive(Clone, Copy, Default)]
struct Windows {
    steady: (Timestamp, Timestamp),
    burst_slot: Option<Timestamp>,
    during: Option<(Timestamp, Timestamp)>,
    during_launch: Option<(Timestamp, Timestamp)>,
}

impl Windows {
    /// The lateness of the jobs begun, by the same windows as the starts.
    fn began(&self, seen: &[(String, Timestamp, Timestamp)]) -> Began {
        let ticks = |w: Option<(Timestamp, Timestamp)>, steady: bool| -> Vec<i64> {
            let Some((from, to)) = w else {
                return Vec::new();
            };
            let echo = steady && self.burst_slot.is_some();
            seen.iter()
                .filter(|(job, slot, _)| {
                    job.starts_with("tick-")
                        && *slot >= from
                        && *slot < to
                        && !(echo && after_a_minute(*slot))
                })
                .map(|(_, slot, at)| at.0 - slot.0)
                .collect()
        };
        let burst: Vec<i64> = seen
            .iter()
            .filter(|(job, slot, _)| job.starts_with("burst-") && Some(*slot) == self.burst_slot)
            .map(|(_, slot, at)| at.0 - slot.0)
            .collect();
        Began {
            steady: Lateness::of(&ticks(Some(self.steady), true)),
            burst: Lateness::of(&burst),
            during: Lateness::of(&ticks(self.during, false)),
            during_launch: Lateness::of(&ticks(self.during_launch, false)),
        }
    }
}

/// The bench's own job for steady and burst fires: notes when it began, and succeeds.
struct Noting(mpsc::UnboundedSender<(String, Timestamp, Timestamp)>);

/// Its handler name.
const NOTING: &str = "bench-noting";

impl antares_worker::Job for Noting {
    fn name(&self) -> &str {
        NOTING
    }

    async fn execute(&self, ctx: antares_worker::JobContext) -> antares_worker::JobResult {
        let _ = self
            .0
            .send((ctx.job().to_string(), ctx.scheduled_at(), now()));
        antares_worker::JobResult::Success
    }
}

/// What [`measure`] found.
struct Measured {
    /// The windows of the figures.
    windows: Windows,
    /// When jobs began on their workers.
    began: Began,
    steady: Lateness,
    burst: Lateness,
    during: Lateness,
    during_launch: Lateness,
    launch_started_ms: Option<f64>,
    launch_finished_ms: Option<f64>,
    burst_per_s: f64,
    steady_per_s: f64,
    written_s: f64,
    /// From the burst's slot to a second after its last start.
    burst_window: Option<(Timestamp, Timestamp)>,
    /// From the launch's trigger to its end.
    launch_window: Option<(Timestamp, Timestamp)>,
    /// Raw round trips timed beside the run, in those windows.
    beside_burst: Option<Percentiles>,
    beside_launch: Option<Percentiles>,
}

fn job_names(s: &Settings) -> impl Iterator<Item = String> {
    let hourly = (0..s.jobs).map(|i| format!("hourly-{i}"));
    let tick = (0..s.rate).map(|i| format!("tick-{i}"));
    let burst = (0..s.burst).map(|i| format!("burst-{i}"));
    let launch = (s.launch > 0).then(|| LAUNCH_JOB.to_string());
    hourly.chain(tick).chain(burst).chain(launch)
}

fn spec(name: &str, schedule: Option<ScheduleSpec>, shards: u32) -> JobSpec {
    let noted = name.starts_with("tick-") || name.starts_with("burst-");
    JobSpec {
        app: APP.into(),
        name: name.into(),
        kind: JobKind::Plugin,
        handler: Some(if noted { NOTING } else { "noop" }.into()),
        shards: Some(shards),
        schedule,
        ..JobSpec::default()
    }
}

/// Writes every job's spec, pipelined in windows.
async fn write_jobs(driver: &Nats, s: &Settings) -> anyhow::Result<()> {
    // An hourly cron at a minute half an hour from now: it does not fire in the run.
    let minute = (now().0 / 60_000 + 30) % 60;
    let hourly = ScheduleSpec {
        cron: Some(format!("0 {minute} * * * ?")),
        ..ScheduleSpec::default()
    };
    let every = |secs| ScheduleSpec {
        every: Some(Dur::from_secs(secs)),
        ..ScheduleSpec::default()
    };
    let bucket = driver.topo.jobs_bucket();
    let names: Vec<String> = job_names(s).collect();
    for window in names.chunks(WRITE_WINDOW) {
        let mut writes = Vec::with_capacity(window.len());
        for name in window {
            let spec = if name == LAUNCH_JOB {
                spec(name, None, s.launch)
            } else if name.starts_with("hourly-") {
                spec(name, Some(hourly.clone()), 1)
            } else if name.starts_with("tick-") {
                spec(name, Some(every(1)), 1)
            } else {
                spec(name, Some(every(60)), 1)
            };
            spec.validate()
                .map_err(|e| anyhow::anyhow!("bench job {name}: {e}"))?;
            let key = driver.topo.job_key(APP, name);
            writes.push(Write::put(
                &bucket,
                key,
                codec::encode("job", &spec)?,
                Expect::Any,
            ));
        }
        for r in kv::write_all(driver, writes).await {
            r.context("writing a bench job")?;
        }
    }
    Ok(())
}

/// Purges every job the scenario wrote, pipelined in windows.
async fn remove_jobs(driver: &Nats, s: &Settings) -> anyhow::Result<()> {
    let bucket = driver.topo.jobs_bucket();
    let names: Vec<String> = job_names(s).collect();
    for window in names.chunks(WRITE_WINDOW) {
        let writes = window
            .iter()
            .map(|n| Write::purge(&bucket, driver.topo.job_key(APP, n)))
            .collect();
        for r in kv::write_all(driver, writes).await {
            r.context("removing a bench job")?;
        }
    }
    Ok(())
}

async fn measure(
    driver: &Nats,
    opts: &ConnectOptions,
    s: &Settings,
    storage: StorageType,
    say: &Say,
) -> anyhow::Result<Measured> {
    say.line(&format!(
        "writing {} job specs...",
        s.jobs + s.rate + s.burst + u32::from(s.launch > 0)
    ));
    write_jobs(driver, s).await?;

    // Every instance_started of the app, as it comes.
    let subject = driver.topo.event_subject(APP, "*");
    let mut sub = driver
        .client
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    driver.flush().await?;
    let (tx, mut started) = mpsc::unbounded_channel::<Started>();
    let collector = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let p = &msg.payload[..];
            let started = p.windows(16).any(|w| w == b"instance_started");
            if !started && !p.windows(17).any(|w| w == b"instance_finished") {
                continue;
            }
            let Ok(e) = serde_json::from_slice::<Event>(p) else {
                continue;
            };
            let finished = e.kind == EventKind::InstanceFinished;
            let wanted = e.kind == EventKind::InstanceStarted || (finished && e.job == LAUNCH_JOB);
            let Some(id) = e.instance.filter(|_| wanted) else {
                continue;
            };
            let seen = Started {
                job: e.job,
                slot: InstanceId::time(&id),
                at: e.at,
                id,
                finished,
            };
            if tx.send(seen).is_err() {
                break;
            }
        }
    });

    // The raw probe first (a failure to start it leaves nothing running), then
    // workers, then the scheduler.
    let topo = driver.topo.clone();
    let beside = Beside::start(opts, topo.clone(), storage).await?;
    let suffix = format!("{:06x}", rand::random::<u32>() % 0x100_0000);
    let (noted, mut began) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for i in 0..s.workers {
        let worker = Worker::builder()
            .register(Noting(noted.clone()))
            .app(APP)
            .connect_options(named(opts, &format!("antares-bench-worker-{i}")))
            .namespace(topo.namespace())
            .id(format!("bench-fires-{suffix}-{i}"))
            .concurrency(WORKER_SLOTS)
            .with_builtins()
            .build()
            .await
            .with_context(|| format!("cannot start bench worker {i}"))?;
        let handle = worker.handle();
        workers.push((
            handle,
            tokio::spawn(worker.run_until(std::future::pending())),
        ));
    }
    let t_start = Instant::now();
    let mut stops = Vec::new();
    let mut schedulers = Vec::new();
    let mut ids = Vec::new();
    for i in 0..s.schedulers {
        let name = format!("antares-bench-scheduler-{i}");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let id = format!("bench-scheduler-{suffix}-{i}");
        ids.push(id.clone());
        let sched_opts = SchedulerOptions {
            id: Some(id),
            ..SchedulerOptions::default()
        };
        let ended = scheduler_apart(named(opts, &name), topo.clone(), sched_opts, stop_rx);
        stops.push(stop_tx);
        schedulers.push(ended);
    }
    say.line(&format!(
        "{} scheduler(s) started; waiting for their first fires...",
        s.schedulers
    ));

    let result = async {
        if s.schedulers > 1 {
            share(driver, &ids).await?;
            say.line("the schedulers share the partitions");
        }
        observe(driver, &mut started, s, t_start, say).await
    }
    .await;

    for (handle, _) in &workers {
        handle.shutdown();
    }
    for stop_tx in stops {
        let _ = stop_tx.send(());
    }
    for scheduler in schedulers {
        match tokio::time::timeout(Duration::from_secs(30), scheduler).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("bench scheduler: {e:#}"),
            Ok(Err(e)) => tracing::warn!("bench scheduler: {e}"),
            Err(_) => tracing::warn!("bench scheduler did not stop in time"),
        }
    }
    for (handle, task) in workers {
        if tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .is_err()
        {
            tracing::warn!("bench worker {} did not stop in time", handle.id());
        }
    }
    collector.abort();
    drop(noted);
    let mut seen = Vec::new();
    while let Ok(one) = began.try_recv() {
        seen.push(one);
    }
    let samples = beside.finish().await;
    result.map(|mut m| {
        m.beside_burst = beside::within(&samples, m.burst_window);
        m.beside_launch = beside::within(&samples, m.launch_window);
        m.began = m.windows.began(&seen);
        m
    })
}

/// Waits until every one of the schedulers `ids` leads some of the partitions, and
/// between them all.
async fn share(driver: &Nats, ids: &[String]) -> anyhow::Result<()> {
    let admin = Admin::open(driver).await?;
    let admin = &admin;
    let partitions = driver.topo.partitions();
    antares_nats::wait::wait_for(
        "the bench schedulers to share the partitions",
        SHARE_DEADLINE,
        || async move {
            let view = admin.cluster().await.ok()?;
            let mut led: Vec<u32> = Vec::new();
            for id in ids {
                let s = view.schedulers.iter().find(|s| &s.id == id)?;
                if s.partitions.is_empty() {
                    return None;
                }
                led.extend(&s.partitions);
            }
            led.sort_unstable();
            (led == (0..partitions).collect::<Vec<_>>()).then_some(())
        },
    )
    .await
    .map_err(anyhow::Error::msg)
}

/// The next start (or the launch's end), or an error naming `what` after `deadline`.
async fn next_seen(
    started: &mut mpsc::UnboundedReceiver<Started>,
    deadline: tokio::time::Instant,
    what: impl FnOnce() -> String,
) -> anyhow::Result<Started> {
    match tokio::time::timeout_at(deadline, started.recv()).await {
        Ok(Some(got)) => Ok(got),
        Ok(None) => anyhow::bail!("the event subscription ended"),
        Err(_) => anyhow::bail!("{}", what()),
    }
}

/// The first minute boundary at least a second from now.
fn next_minute() -> Timestamp {
    Timestamp(((now().0 + 1000) / 60_000 + 1) * 60_000)
}

/// What the launch came to: its trigger time, start and end.
struct Launched {
    at: Timestamp,
    started: Option<Timestamp>,
    finished: Timestamp,
}

/// Triggers the launch and collects starts until it ended.
async fn launch(
    driver: &Nats,
    started: &mut mpsc::UnboundedReceiver<Started>,
    all: &mut Vec<Started>,
    say: &Say,
) -> anyhow::Result<Launched> {
    let admin = Admin::open(driver).await?;
    let at = now();
    let id = admin
        .trigger(APP, LAUNCH_JOB, &Default::default())
        .await?
        .id();
    say.line(&format!("launch {id} triggered"));
    let deadline = tokio::time::Instant::now() + LAUNCH_DEADLINE;
    let mut begun = None;
    loop {
        let got = next_seen(started, deadline, || {
            format!("the launch {id} did not end within {LAUNCH_DEADLINE:?}")
        })
        .await?;
        if got.id == id {
            if got.finished {
                return Ok(Launched {
                    at,
                    started: begun,
                    finished: got.at,
                });
            }
            begun = Some(got.at);
        }
        all.push(got);
    }
}

/// Collects starts until the steady window, the launch and the burst are over.
async fn observe(
    driver: &Nats,
    started: &mut mpsc::UnboundedReceiver<Started>,
    s: &Settings,
    t_start: Instant,
    say: &Say,
) -> anyhow::Result<Measured> {
    let mut all: Vec<Started> = Vec::new();
    // The first fire says the scheduler leads and planned: the steady window starts
    // at the next whole second after it.
    let first_deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let first = next_seen(started, first_deadline, || {
        "no fire within 600 s of starting the scheduler".into()
    })
    .await?;
    let written_s = t_start.elapsed().as_secs_f64();
    let steady_from = Timestamp((first.at.0 / 1000 + 1) * 1000);
    all.push(first);
    let seconds = i64::from(s.seconds);
    let mut steady_to = Timestamp(steady_from.0 + seconds * 1000);
    let launched = if s.launch > 0 {
        say.line(&format!(
            "leading after {written_s:.1} s; steady window {steady_from} .. {steady_to}, then a launch of {} shards",
            s.launch
        ));
        while now() < steady_to {
            let wait = tokio::time::Instant::now() + Duration::from_secs(30);
            let got = next_seen(started, wait, || "no fire for 30 s".into()).await?;
            all.push(got);
        }
        Some(launch(driver, started, &mut all, say).await?)
    } else {
        None
    };
    // The burst: the first minute boundary after the steady window (or the launch).
    let burst_slot = if launched.is_some() {
        next_minute()
    } else {
        Timestamp((steady_to.0 / 60_000 + 1) * 60_000).max(next_minute())
    };
    if s.burst > 0 && launched.is_none() {
        steady_to = burst_slot;
    }
    say.line(&format!(
        "leading after {written_s:.1} s; steady window {steady_from} .. {steady_to}, burst of {} at {burst_slot}",
        s.burst
    ));
    let mut burst_seen = 0u32;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(burst_slot.0 - now().0).unwrap_or(0))
        + BURST_DEADLINE;
    let after = if s.burst > 0 { burst_slot } else { steady_to };
    loop {
        if now() > Timestamp(after.0 + 2000) && burst_seen >= s.burst {
            break;
        }
        let got = next_seen(started, deadline, || {
            format!(
                "only {burst_seen} of the {} burst fires started within {BURST_DEADLINE:?} of their slot",
                s.burst
            )
        })
        .await?;
        if got.job.starts_with("burst-") && got.slot == burst_slot {
            burst_seen += 1;
        }
        all.push(got);
    }
    let burst_end = all
        .iter()
        .filter(|f| f.job.starts_with("burst-") && f.slot == burst_slot)
        .map(|f| f.at)
        .max()
        .unwrap_or(burst_slot);
    if s.burst > 0 && s.rate > 0 {
        // The steady fires due while the burst was fired may start after its last one:
        // they are waited for until steady fires two seconds later start (a job's fires
        // are made in order, the most urgent first; one whose job still runs is skipped
        // by its overlap policy and never starts), and a second more.
        let past = Timestamp(burst_end.0 + 2000);
        let deadline = tokio::time::Instant::now() + BURST_DEADLINE;
        while !all
            .iter()
            .any(|f| f.job.starts_with("tick-") && f.slot >= past)
        {
            let got = next_seen(started, deadline, || {
                format!("no steady fire started within {BURST_DEADLINE:?} after the burst")
            })
            .await?;
            all.push(got);
        }
        let more = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(got)) = tokio::time::timeout_at(more, started.recv()).await {
            all.push(got);
        }
    }
    let late = |f: &Started| f.at.0 - f.slot.0;
    let burst: Vec<&Started> = all
        .iter()
        .filter(|f| f.job.starts_with("burst-") && f.slot == burst_slot)
        .collect();
    let ticks = |from: Timestamp, to: Timestamp| -> Vec<i64> {
        all.iter()
            .filter(|f| f.job.starts_with("tick-") && f.slot >= from && f.slot < to)
            .map(late)
            .collect()
    };
    let echo = s.burst > 0;
    let steady: Vec<i64> = all
        .iter()
        .filter(|f| {
            f.job.starts_with("tick-")
                && f.slot >= steady_from
                && f.slot < steady_to
                && !(echo && after_a_minute(f.slot))
        })
        .map(late)
        .collect();
    let during = if s.burst > 0 {
        ticks(burst_slot, Timestamp(burst_end.0 + 1000))
    } else {
        Vec::new()
    };
    let during_launch = launched
        .as_ref()
        .map_or_else(Vec::new, |l| ticks(l.at, l.finished));
    let burst_late: Vec<i64> = burst.iter().map(|f| late(f)).collect();
    let span_ms = (burst_end.0 - burst_slot.0).max(1);
    #[allow(clippy::cast_precision_loss)]
    let burst_per_s = f64::from(s.burst) * 1000.0 / span_ms as f64;
    #[allow(clippy::cast_precision_loss)]
    let steady_per_s = ticks(steady_from, steady_to).len() as f64 * 1000.0
        / ((steady_to.0 - steady_from.0).max(1)) as f64;
    if all.iter().any(|f| f.job.starts_with("hourly-")) {
        tracing::warn!("hourly jobs fired during the run");
    }
    #[allow(clippy::cast_precision_loss)]
    let ms = |from: Timestamp, to: Timestamp| round((to.0 - from.0) as f64, 1);
    let during_window = (s.burst > 0).then_some((burst_slot, Timestamp(burst_end.0 + 1000)));
    Ok(Measured {
        windows: Windows {
            steady: (steady_from, steady_to),
            burst_slot: (s.burst > 0).then_some(burst_slot),
            during: during_window,
            during_launch: launched.as_ref().map(|l| (l.at, l.finished)),
        },
        began: Began::default(),
        steady: Lateness::of(&steady),
        burst: Lateness::of(&burst_late),
        during: Lateness::of(&during),
        during_launch: Lateness::of(&during_launch),
        launch_started_ms: launched
            .as_ref()
            .and_then(|l| l.started.map(|t| ms(l.at, t))),
        launch_finished_ms: launched.as_ref().map(|l| ms(l.at, l.finished)),
        burst_per_s,
        steady_per_s,
        written_s,
        burst_window: (s.burst > 0).then_some((burst_slot, Timestamp(burst_end.0 + 1000))),
        launch_window: launched.as_ref().map(|l| (l.at, l.finished)),
        beside_burst: None,
        beside_launch: None,
    })
}

/// Publish round trips to a stream of its own, one at a time.
/// Acknowledged writes on the way from a fire to its start: the id's claim, the
/// summary, the shard chunk, the shard item, the summary marked `running`.
const WRITES_PER_FIRE: usize = 5;
/// Tries of the raw floor (see [`Report::raw_floor_p50_ms`]).
const FLOOR_SAMPLES: usize = 20;

/// Raw JetStream in the same run: single publish round trips, and the time to store
/// `floor` messages pipelined (each try).
async fn raw_round_trips(
    driver: &Nats,
    storage: StorageType,
    floor: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    // The raw run's stream (the shards scenario's), by itself here.
    let name = driver.topo.bench_raw_stream();
    let prefix = driver.topo.bench_raw_prefix();
    let subject = format!("{prefix}.rtt");
    let _ = driver.js.delete_stream(&name).await;
    driver
        .js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage,
            max_messages: 10_000,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create stream {name}"))?;
    let payload = super::raw::shard_sized_payload(1)?;
    let mut out = Vec::with_capacity(RTT_SAMPLES);
    let mut floors = Vec::with_capacity(FLOOR_SAMPLES);
    let timed = async {
        for _ in 0..RTT_SAMPLES {
            let t = Instant::now();
            driver
                .js
                .publish(subject.clone(), payload.clone())
                .await
                .context("raw publish")?
                .await
                .context("raw publish ack")?;
            out.push(t.elapsed());
        }
        for _ in 0..FLOOR_SAMPLES {
            let _room = driver.ack_room(floor).await;
            let t = Instant::now();
            let mut acks = Vec::with_capacity(floor);
            for _ in 0..floor {
                acks.push(
                    driver
                        .js
                        .publish(subject.clone(), payload.clone())
                        .await
                        .context("raw publish")?,
                );
            }
            for ack in acks {
                ack.await.context("raw publish ack")?;
            }
            floors.push(t.elapsed());
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = driver.js.delete_stream(&name).await {
        tracing::warn!("could not delete the bench stream {name}: {e}");
    }
    timed?;
    Ok((out, floors))
}

/// This process's peak resident memory (`VmHWM`), MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round(kb / 1024.0, 1))
}

/// Raw round trips timed beside the run, for the summary.
fn beside_line(p50: Option<f64>, p99: Option<f64>) -> String {
    match (p50, p99) {
        (Some(p50), Some(p99)) => {
            format!("p50 {p50:.3} ms, p99 {p99:.3} ms (one at a time, a connection of its own)")
        }
        _ => "-".to_string(),
    }
}

/// The summary people read.
fn human(r: &Report) -> String {
    let l = |x: &Lateness| {
        let early = if x.early > 0 {
            format!(", {} before their slot", x.early)
        } else {
            String::new()
        };
        format!(
            "p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} fires{early})",
            x.p50_ms, x.p99_ms, x.max_ms, x.fires
        )
    };
    format!(
        "\
antares bench --scenario fires: nats-server {ver} ({server}), {storage} storage
  {jobs} hourly jobs, burst of {burst} (every 1m), {rate} jobs every 1s, {workers} workers,
  {schedulers} scheduler(s) sharing {partitions} partition(s)

  raw JetStream publish+ack    p50 {rtt50:.3} ms, p99 {rtt99:.3} ms
  raw, {fw} writes pipelined  p50 {f50:.3} ms, p99 {f99:.3} ms  (a second's steady fires: the floor of their lateness)
  steady lateness              {steady}
    job began on its worker    {steady_b}
  burst lateness               {burst_l}
    job began on its worker    {burst_b}
  steady during the burst      {during}
    job began on its worker    {during_b}
  raw publish+ack meanwhile    {raw_burst}
  steady during the launch     {during_launch}
    job began on its worker    {during_launch_b}
  raw publish+ack meanwhile    {raw_launch}
  launch of {launch} shards      started after {launch_started}, ended after {launch_finished}
  burst fires/s                {bps:.0}  (its fires over slot to last start, all schedulers)
  steady fires/s               {sps:.0}
  leading and planned after    {written:.1} s (first fire after starting the scheduler)
  peak RSS of the bench process {rss} (scheduler, workers and bench together)
",
        ver = r.nats_server,
        server = r.server,
        storage = r.storage,
        jobs = r.jobs,
        burst = r.burst,
        rate = r.rate,
        workers = r.workers,
        schedulers = r.schedulers,
        partitions = r.partitions,
        rtt50 = r.raw_rtt_p50_ms,
        rtt99 = r.raw_rtt_p99_ms,
        fw = r.raw_floor_writes,
        f50 = r.raw_floor_p50_ms,
        f99 = r.raw_floor_p99_ms,
        steady = l(&r.steady),
        steady_b = l(&r.steady_began),
        burst_l = l(&r.burst_lateness),
        burst_b = l(&r.burst_began),
        during = l(&r.steady_during_burst),
        during_b = l(&r.steady_during_burst_began),
        during_launch = l(&r.steady_during_launch),
        during_launch_b = l(&r.steady_during_launch_began),
        raw_burst = beside_line(r.raw_rtt_during_burst_p50_ms, r.raw_rtt_during_burst_p99_ms),
        raw_launch = beside_line(r.raw_rtt_during_launch_p50_ms, r.raw_rtt_during_launch_p99_ms),
        launch = r.launch,
        launch_started = r
            .launch_started_ms
            .map_or_else(|| "-".to_string(), |m| format!("{m:.0} ms")),
        launch_finished = r
            .launch_finished_ms
            .map_or_else(|| "-".to_string(), |m| format!("{m:.0} ms")),
        bps = r.burst_fires_per_s,
        sps = r.steady_fires_per_s,
        written = r.leading_after_s,
        rss = r
            .process_peak_rss_mb
            .map_or_else(|| "unknown".to_string(), |m| format!("{m:.0} MB")),
    )
}
