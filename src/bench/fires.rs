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
//! scheduler start. The lateness of a fire is its `instance_started` event time (the
//! instance is created and its items are queued) minus its scheduled slot, which is the
//! time part of its id. Measured: the steady jobs for `--seconds` before the burst, the
//! burst (the first minute boundary after that), and the steady jobs whose slots fell
//! while the burst was being fired. Fires per second is the burst's size over the time
//! from its slot to its last start. Beside it, the raw JetStream round trip (one
//! publish and its ack, one at a time, to a stream of the Antares shard stream's storage)
//! measured in the same run: lateness is an absolute figure, and this says what one
//! round trip costs on the machine.

use std::collections::HashMap;
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

use super::{BenchArgs, Percentiles, Say, named, round};

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
}

/// One `instance_started` of the app: which job, its slot, and when it started.
#[derive(Clone, Debug)]
struct Started {
    job: String,
    slot: Timestamp,
    at: Timestamp,
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
        workers: args.workers,
    };
    let driver = Nats::connect(&named(opts, "antares-bench"), topo.clone()).await?;
    let version = driver.client.server_info().version;
    if local || driver.buckets().await.is_err() {
        provision::provision(&driver, &ProvisionOptions::default())
            .await
            .context("cannot provision the streams and buckets")?;
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
    let rtt = raw_round_trips(&driver, storage).await?;
    let rtt = Percentiles::of(&rtt);
    say.line(&format!(
        "raw JetStream: publish+ack p50 {:.3} ms, p99 {:.3} ms",
        rtt.p50, rtt.p99
    ));

    let admin = Admin::open(&driver).await?;
    if admin.get_app(APP).await.is_ok() {
        anyhow::bail!(
            "app `{APP}` exists in namespace `{}`: the scenario makes its own (delete it, or run in another namespace)",
            topo.namespace()
        );
    }
    admin.create_app(APP, "antares bench: fires").await?;
    let result = measure(&driver, opts, &s, say).await;
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
        burst_fires_per_s: round(m.burst_per_s, 1),
        steady_fires_per_s: round(m.steady_per_s, 1),
        leading_after_s: round(m.written_s, 3),
        process_peak_rss_mb: peak_rss_mb(),
        raw_rtt_p50_ms: round(rtt.p50, 3),
        raw_rtt_p99_ms: round(rtt.p99, 3),
        storage: storage_name,
        nats_server: version,
        server: if local { "local" } else { "given" },
    };
    let text = human(&report);
    Ok((serde_json::to_value(&report)?, text))
}

/// What [`measure`] found.
struct Measured {
    steady: Lateness,
    burst: Lateness,
    during: Lateness,
    burst_per_s: f64,
    steady_per_s: f64,
    written_s: f64,
}

fn job_names(s: &Settings) -> impl Iterator<Item = String> {
    let hourly = (0..s.jobs).map(|i| format!("hourly-{i}"));
    let tick = (0..s.rate).map(|i| format!("tick-{i}"));
    let burst = (0..s.burst).map(|i| format!("burst-{i}"));
    hourly.chain(tick).chain(burst)
}

fn spec(name: &str, schedule: ScheduleSpec) -> JobSpec {
    JobSpec {
        app: APP.into(),
        name: name.into(),
        kind: JobKind::Plugin,
        handler: Some("noop".into()),
        shards: Some(1),
        schedule: Some(schedule),
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
            let schedule = if name.starts_with("hourly-") {
                hourly.clone()
            } else if name.starts_with("tick-") {
                every(1)
            } else {
                every(60)
            };
            let spec = spec(name, schedule);
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
    say: &Say,
) -> anyhow::Result<Measured> {
    say.line(&format!(
        "writing {} job specs...",
        s.jobs + s.rate + s.burst
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
            if !p.windows(16).any(|w| w == b"instance_started") {
                continue;
            }
            let Ok(e) = serde_json::from_slice::<Event>(p) else {
                continue;
            };
            let Some(id) = e.instance.filter(|_| e.kind == EventKind::InstanceStarted) else {
                continue;
            };
            let seen = Started {
                job: e.job,
                slot: InstanceId::time(&id),
                at: e.at,
            };
            if tx.send(seen).is_err() {
                break;
            }
        }
    });

    // Workers, then the scheduler.
    let topo = driver.topo.clone();
    let suffix = format!("{:06x}", rand::random::<u32>() % 0x100_0000);
    let mut workers = Vec::new();
    for i in 0..s.workers {
        let worker = Worker::builder()
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
    let sched_nats = Nats::connect(&named(opts, "antares-bench-scheduler"), topo.clone()).await?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sched_opts = SchedulerOptions {
        id: Some(format!("bench-scheduler-{suffix}")),
        ..SchedulerOptions::default()
    };
    let t_start = Instant::now();
    let scheduler = tokio::spawn(antares_scheduler::run(sched_nats, sched_opts, async move {
        let _ = stop_rx.await;
    }));
    say.line("scheduler started; waiting for its first fires...");

    let result = observe(&mut started, s, t_start, say).await;

    for (handle, _) in &workers {
        handle.shutdown();
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(30), scheduler).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("bench scheduler: {e}"),
        Ok(Err(e)) => tracing::warn!("bench scheduler: {e}"),
        Err(_) => tracing::warn!("bench scheduler did not stop in time"),
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
    result
}

/// Collects starts until the steady window and the burst are over.
async fn observe(
    started: &mut mpsc::UnboundedReceiver<Started>,
    s: &Settings,
    t_start: Instant,
    say: &Say,
) -> anyhow::Result<Measured> {
    let mut all: Vec<Started> = Vec::new();
    // The first fire says the scheduler leads and planned: the steady window starts
    // at the next whole second after it.
    let first_deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let first = tokio::time::timeout_at(first_deadline, started.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no fire within 600 s of starting the scheduler"))?
        .ok_or_else(|| anyhow::anyhow!("the event subscription ended"))?;
    let written_s = t_start.elapsed().as_secs_f64();
    let steady_from = Timestamp((first.at.0 / 1000 + 1) * 1000);
    all.push(first);
    let seconds = i64::from(s.seconds);
    // The burst: the first minute boundary after the steady window.
    let burst_slot = Timestamp(((steady_from.0 + seconds * 1000) / 60_000 + 1) * 60_000);
    let steady_to = if s.burst > 0 {
        burst_slot
    } else {
        Timestamp(steady_from.0 + seconds * 1000)
    };
    say.line(&format!(
        "leading after {written_s:.1} s; steady window {steady_from} .. {steady_to}, burst of {} at {burst_slot}",
        s.burst
    ));
    let mut burst_seen = 0u32;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(burst_slot.0 - now().0).unwrap_or(0))
        + BURST_DEADLINE;
    loop {
        let done_steady = now() > Timestamp(steady_to.0 + 2000);
        if done_steady && burst_seen >= s.burst {
            break;
        }
        let got = tokio::time::timeout_at(deadline, started.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "only {burst_seen} of the {} burst fires started within {BURST_DEADLINE:?} of their slot",
                    s.burst
                )
            })?;
        let Some(got) = got else {
            anyhow::bail!("the event subscription ended");
        };
        if got.job.starts_with("burst-") && got.slot == burst_slot {
            burst_seen += 1;
        }
        all.push(got);
    }
    let late = |f: &Started| f.at.0 - f.slot.0;
    let burst: Vec<&Started> = all
        .iter()
        .filter(|f| f.job.starts_with("burst-") && f.slot == burst_slot)
        .collect();
    let burst_end = burst.iter().map(|f| f.at).max().unwrap_or(burst_slot);
    let ticks = |from: Timestamp, to: Timestamp| -> Vec<i64> {
        all.iter()
            .filter(|f| f.job.starts_with("tick-") && f.slot >= from && f.slot < to)
            .map(late)
            .collect()
    };
    let steady = ticks(steady_from, steady_to);
    let during = if s.burst > 0 {
        ticks(burst_slot, Timestamp(burst_end.0 + 1000))
    } else {
        Vec::new()
    };
    let burst_late: Vec<i64> = burst.iter().map(|f| late(f)).collect();
    let span_ms = (burst_end.0 - burst_slot.0).max(1);
    #[allow(clippy::cast_precision_loss)]
    let burst_per_s = f64::from(s.burst) * 1000.0 / span_ms as f64;
    #[allow(clippy::cast_precision_loss)]
    let steady_per_s = steady.len() as f64 * 1000.0 / ((steady_to.0 - steady_from.0).max(1)) as f64;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for f in &all {
        let kind = f.job.split('-').next().unwrap_or_default();
        *counts.entry(kind).or_default() += 1;
    }
    if counts.get("hourly").copied().unwrap_or(0) > 0 {
        tracing::warn!("hourly jobs fired during the run");
    }
    Ok(Measured {
        steady: Lateness::of(&steady),
        burst: Lateness::of(&burst_late),
        during: Lateness::of(&during),
        burst_per_s,
        steady_per_s,
        written_s,
    })
}

/// Publish round trips to a stream of its own, one at a time.
async fn raw_round_trips(driver: &Nats, storage: StorageType) -> anyhow::Result<Vec<Duration>> {
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
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = driver.js.delete_stream(&name).await {
        tracing::warn!("could not delete the bench stream {name}: {e}");
    }
    timed?;
    Ok(out)
}

/// This process's peak resident memory (`VmHWM`), MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(round(kb / 1024.0, 1))
}

/// The summary people read.
fn human(r: &Report) -> String {
    let l = |x: &Lateness| {
        format!(
            "p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} fires)",
            x.p50_ms, x.p99_ms, x.max_ms, x.fires
        )
    };
    format!(
        "\
antares bench --scenario fires: nats-server {ver} ({server}), {storage} storage
  {jobs} hourly jobs, burst of {burst} (every 1m), {rate} jobs every 1s, {workers} workers

  raw JetStream publish+ack    p50 {rtt50:.3} ms, p99 {rtt99:.3} ms
  steady lateness              {steady}
  burst lateness               {burst_l}
  steady during the burst      {during}
  burst fires/s                {bps:.0}  (its fires over slot to last start)
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
        rtt50 = r.raw_rtt_p50_ms,
        rtt99 = r.raw_rtt_p99_ms,
        steady = l(&r.steady),
        burst_l = l(&r.burst_lateness),
        during = l(&r.steady_during_burst),
        bps = r.burst_fires_per_s,
        sps = r.steady_fires_per_s,
        written = r.leading_after_s,
        rss = r
            .process_peak_rss_mb
            .map_or_else(|| "unknown".to_string(), |m| format!("{m:.0} MB")),
    )
}
