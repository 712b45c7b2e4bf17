//! `antares bench --scenario catalog`: what a large catalog of jobs costs.
//!
//! On a nats-server of its own, in order:
//!
//! 1. **raw JetStream** ([`super::rtt`]): write and read round trips, and as many
//!    pipelined writes as the apply makes (three per job: version, spec, audit entry), of
//!    the size of an encoded job spec. The floor the apply is compared with.
//! 2. **apply**: N hourly cron jobs (`--jobs`, app `bench`, all due at one minute of the
//!    hour half an hour away, so none fires during the run) plus one `probe` job every
//!    second, as one TOML file piped to `antares job apply -f -` run as a child process
//!    (the same binary): timed from spawn to exit. Then the same file again: every job
//!    unchanged, nothing written.
//! 3. **scheduler memory**: `antares scheduler` as a child process; once its log says it
//!    has planned every schedule (`schedules planned`), its resident memory (`VmRSS`, and
//!    the peak `VmHWM`, from `/proc/<pid>/status`).
//! 4. **takeover**: a second scheduler stands by (its heartbeat is seen); the first is
//!    killed with SIGKILL. Timed from the kill until the second's log says it took the
//!    lease, until it says it has planned every schedule (the takeover figure: it fires
//!    on time from then on), and until the probe's next instance (its first event).
//!    The lease TTL (the schedulers' default) bounds the first of these.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use antares_nats::provision::{self, ProvisionOptions};
use antares_nats::{ConnectOptions, Nats, codec, kv};
use antares_scheduler::SchedulerOptions;
use antares_scheduler::admin::Admin;
use antares_schemas::Topology;
use antares_schemas::messages::{Event, EventKind};
use antares_schemas::spec::{SpecFormat, parse_jobs};
use anyhow::Context as _;
use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::rtt::{self, Raw, STUCK};
use super::{BenchArgs, Say, named, round};

/// The app of the scenario's jobs.
const APP: &str = "bench";
/// The job that fires every second: its first fire after a takeover is timed.
const PROBE: &str = "probe";
/// What a scheduler logs once it leads.
const TOOK_LEASE: &str = "took the partition lease";
/// What a scheduler logs once every schedule is planned.
const PLANNED: &str = "schedules planned";

/// What the scenario found (`--json`).
#[derive(Clone, Debug, Serialize)]
struct Report {
    scenario: &'static str,
    /// Cron jobs applied (besides the probe).
    jobs: u32,
    /// `job apply` of every job (all created): spawn to exit, seconds.
    apply_seconds: f64,
    /// Jobs applied per second.
    apply_per_s: f64,
    /// The same file again (all unchanged), seconds.
    apply_unchanged_seconds: f64,
    /// A scheduler started until its log says every schedule is planned, seconds.
    scheduler_planned_seconds: f64,
    /// Its resident memory then, MB.
    scheduler_rss_mb: f64,
    /// Its peak resident memory until then, MB.
    scheduler_peak_rss_mb: f64,
    /// The schedulers' lease TTL, seconds.
    lease_ttl_seconds: f64,
    /// SIGKILL of the leader until the standby took the lease, seconds.
    takeover_lease_seconds: f64,
    /// SIGKILL of the leader until the standby has planned every schedule, seconds.
    takeover_planned_seconds: f64,
    /// ... of which planning (after taking the lease), seconds.
    takeover_planning_seconds: f64,
    /// SIGKILL of the leader until the probe's next instance (fires every second), seconds.
    takeover_probe_fire_seconds: f64,
    /// Raw JetStream in the same run.
    raw: Raw,
    /// The server's version.
    nats_server: String,
}

/// Runs the scenario; returns its `--json` object and its summary.
pub(super) async fn run(
    args: &BenchArgs,
    opts: &ConnectOptions,
    topo: &Topology,
    _local: bool,
    say: &Say,
) -> anyhow::Result<(serde_json::Value, String)> {
    let n = args.jobs();
    let nats = Nats::connect(&named(opts, "antares-bench"), topo.clone()).await?;
    let version = nats.client.server_info().version;
    provision::provision(&nats, &ProvisionOptions::default())
        .await
        .context("cannot provision the streams and buckets")?;
    let admin = Admin::open(&nats).await?;
    admin
        .create_app(APP, "antares bench --scenario catalog")
        .await?;
    let file = jobs_file(n);
    let spec_size = {
        let first = parse_jobs(&jobs_file(1), SpecFormat::Toml)?;
        codec::encode("job", &first)?.len()
    };

    say.line(&format!(
        "nats-server {version}; raw JetStream: round trips, and {} pipelined writes of {spec_size} bytes...",
        3 * u64::from(n)
    ));
    let raw = rtt::measure(&nats, 3 * u64::from(n), spec_size).await?;
    say.line(&format!(
        "raw JetStream: write round trip p50 {:.3} ms, {} pipelined writes in {:.3} s",
        raw.write_rtt_p50_ms, raw.pipelined_writes, raw.pipelined_seconds
    ));

    let child = Children::new(opts, topo)?;
    say.line(&format!("job apply of {n} cron jobs and a probe..."));
    let apply_seconds = child.apply(&file).await.context("the first apply")?;
    let stored = bucket_keys(&nats, &topo.jobs_bucket()).await?;
    anyhow::ensure!(
        stored == u64::from(n) + 1,
        "after the apply {stored} jobs are stored, not {}",
        n + 1
    );
    say.line(&format!(
        "job apply: {apply_seconds:.3} s; again, unchanged..."
    ));
    let versions = bucket_messages(&nats, &topo.versions_bucket()).await?;
    let apply_unchanged_seconds = child.apply(&file).await.context("the second apply")?;
    anyhow::ensure!(
        bucket_messages(&nats, &topo.versions_bucket()).await? == versions,
        "the unchanged apply wrote versions"
    );
    say.line(&format!(
        "job apply (unchanged): {apply_unchanged_seconds:.3} s; starting a scheduler..."
    ));

    let (took, took_over) = child.schedulers(&nats, say).await?;
    let report = Report {
        scenario: "catalog",
        jobs: n,
        apply_seconds: round(apply_seconds, 3),
        apply_per_s: round(f64::from(n) / apply_seconds, 1),
        apply_unchanged_seconds: round(apply_unchanged_seconds, 3),
        scheduler_planned_seconds: round(took.planned, 3),
        scheduler_rss_mb: round(took.rss_mb, 1),
        scheduler_peak_rss_mb: round(took.peak_rss_mb, 1),
        lease_ttl_seconds: SchedulerOptions::default().lease_ttl.as_secs_f64(),
        takeover_lease_seconds: round(took_over.lease, 3),
        takeover_planned_seconds: round(took_over.planned, 3),
        takeover_planning_seconds: round(took_over.planned - took_over.lease, 3),
        takeover_probe_fire_seconds: round(took_over.probe_fire, 3),
        raw,
        nats_server: version,
    };
    let text = human(&report);
    Ok((serde_json::to_value(&report)?, text))
}

/// N hourly cron jobs, all at one minute half an hour from now, and the probe (side by
/// side: with no worker in the run, each of its slots still starts an instance, instead
/// of queueing behind the first one until it gives up waiting for a worker).
fn jobs_file(n: u32) -> String {
    let minute = (chrono::Utc::now().timestamp() / 60 + 30) % 60;
    let mut text = String::with_capacity(n as usize * 100 + 200);
    for i in 0..n {
        let _ = writeln!(
            text,
            "[[job]]\napp = \"{APP}\"\nname = \"c{i:07}\"\nhandler = \"noop\"\nschedule = {{ cron = \"0 {minute} * * * ?\" }}\n"
        );
    }
    let _ = writeln!(
        text,
        "[[job]]\napp = \"{APP}\"\nname = \"{PROBE}\"\nhandler = \"noop\"\nschedule = {{ every = \"1s\" }}\noverlap = \"parallel\"\nmax_parallel = 1000"
    );
    text
}

/// Keys of a bucket (its stream's subjects).
async fn bucket_keys(nats: &Nats, bucket: &str) -> anyhow::Result<u64> {
    let store = nats.bucket(bucket).await?;
    let mut stream = store.stream.clone();
    Ok(stream.info().await?.state.subjects_count)
}

/// Messages a bucket's stream holds.
async fn bucket_messages(nats: &Nats, bucket: &str) -> anyhow::Result<u64> {
    let store = nats.bucket(bucket).await?;
    let mut stream = store.stream.clone();
    Ok(stream.info().await?.state.messages)
}

/// Starting a scheduler until it planned.
struct Started {
    planned: f64,
    rss_mb: f64,
    peak_rss_mb: f64,
}

/// The takeover, in seconds from the kill.
struct TakenOver {
    lease: f64,
    planned: f64,
    probe_fire: f64,
}

/// Runs this binary's commands as child processes against the bench's server.
struct Children {
    exe: std::path::PathBuf,
    url: String,
    namespace: String,
}

impl Children {
    fn new(opts: &ConnectOptions, topo: &Topology) -> anyhow::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe().context("cannot find the antares binary")?,
            url: opts.urls.clone(),
            namespace: topo.namespace().to_string(),
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--nats-url")
            .arg(&self.url)
            .arg("--namespace")
            .arg(&self.namespace)
            .env_remove("ANTARES_CONFIG")
            .kill_on_drop(true);
        c
    }

    /// `antares job apply -f -` of `file`: seconds from spawn to exit.
    async fn apply(&self, file: &str) -> anyhow::Result<f64> {
        let start = Instant::now();
        let mut child = self
            .command()
            .args(["job", "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run antares job apply")?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let text = file.to_string();
        let feed = tokio::spawn(async move {
            let res = stdin.write_all(text.as_bytes()).await;
            drop(stdin);
            res
        });
        let out = tokio::time::timeout(STUCK, child.wait_with_output())
            .await
            .context("job apply did not end")??;
        let seconds = start.elapsed().as_secs_f64();
        feed.await?.context("cannot write the jobs to job apply")?;
        anyhow::ensure!(
            out.status.success(),
            "job apply failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(seconds)
    }

    /// `antares scheduler`, its log lines of interest sent on, stamped.
    fn scheduler(&self, id: &str) -> anyhow::Result<(Child, mpsc::Receiver<(Instant, String)>)> {
        let mut child = self
            .command()
            .args(["scheduler", "--id", id])
            .env("RUST_LOG", "info,async_nats=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run antares scheduler")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if (line.contains(TOOK_LEASE) || line.contains(PLANNED) || line.contains("ERROR"))
                    && tx.send((Instant::now(), line)).await.is_err()
                {
                    break;
                }
            }
        });
        Ok((child, rx))
    }

    /// The memory and takeover steps.
    async fn schedulers(&self, nats: &Nats, say: &Say) -> anyhow::Result<(Started, TakenOver)> {
        let start = Instant::now();
        let (mut first, mut first_log) = self.scheduler("bench-catalog-1")?;
        let planned_at = wait_line(&mut first_log, PLANNED).await?;
        let pid = first.id().context("the first scheduler has no pid")?;
        let (rss_mb, peak_rss_mb) = memory_mb(pid)?;
        let started = Started {
            planned: planned_at.duration_since(start).as_secs_f64(),
            rss_mb,
            peak_rss_mb,
        };
        say.line(&format!(
            "scheduler: planned in {:.3} s, {rss_mb:.1} MB resident (peak {peak_rss_mb:.1} MB); a second one stands by...",
            started.planned
        ));

        let (mut second, mut second_log) = self.scheduler("bench-catalog-2")?;
        let schedulers = nats.bucket(&nats.topo.schedulers_bucket()).await?;
        antares_nats::wait::wait_for("the standby's heartbeat", Duration::from_secs(30), || {
            let schedulers = &schedulers;
            async move {
                let keys = kv::scan(nats, schedulers, ">", true).await.ok()?;
                keys.iter()
                    .any(|k| k.key == "bench-catalog-2")
                    .then_some(())
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
        let mut events = nats
            .client
            .subscribe(nats.topo.event_subject(APP, PROBE))
            .await?;
        nats.client.flush().await?;

        say.line("SIGKILL to the leader...");
        let killed = Instant::now();
        first
            .kill()
            .await
            .context("cannot kill the first scheduler")?;
        let probe = async {
            while let Some(msg) = events.next().await {
                if let Ok(e) = serde_json::from_slice::<Event>(&msg.payload)
                    && matches!(e.kind, EventKind::InstanceStarted | EventKind::NoWorker)
                {
                    return Ok(Instant::now());
                }
            }
            anyhow::bail!("the event subscription ended")
        };
        let lines = async {
            let lease = wait_line(&mut second_log, TOOK_LEASE).await?;
            let planned = wait_line(&mut second_log, PLANNED).await?;
            anyhow::Ok((lease, planned))
        };
        let (lines, fired) = tokio::join!(lines, tokio::time::timeout(STUCK, probe));
        let (lease, planned) = lines?;
        let fired = fired.context("the probe did not fire after the takeover")??;
        let since = |t: Instant| t.duration_since(killed).as_secs_f64();
        let taken = TakenOver {
            lease: since(lease),
            planned: since(planned),
            probe_fire: since(fired),
        };
        stop(&mut second).await;
        Ok((started, taken))
    }
}

/// Waits for a log line containing `what`; an ERROR line before it fails.
async fn wait_line(
    log: &mut mpsc::Receiver<(Instant, String)>,
    what: &str,
) -> anyhow::Result<Instant> {
    let found = tokio::time::timeout(STUCK, async {
        while let Some((at, line)) = log.recv().await {
            if line.contains(what) {
                return Ok(at);
            }
            if line.contains("ERROR") {
                anyhow::bail!("the scheduler logged an error: {line}");
            }
        }
        anyhow::bail!("the scheduler ended before logging `{what}`")
    })
    .await;
    found.with_context(|| format!("the scheduler did not log `{what}` within {STUCK:?}"))?
}

/// Resident and peak resident memory of a process, MB.
fn memory_mb(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kb = |field: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .with_context(|| format!("/proc/{pid}/status has no {field}"))?;
        let value = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("unreadable {line}"))?;
        Ok(value.parse::<f64>()?)
    };
    Ok((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}

/// SIGTERM, then SIGKILL if it has not stopped within 10 s.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn human(r: &Report) -> String {
    let w = &r.raw;
    format!(
        "\
antares bench --scenario catalog: nats-server {ver} (local), file storage
  jobs {jobs} hourly cron + 1 probe every second

  raw JetStream        write round trip p50 {wp50:.3} ms (p99 {wp99:.3}), get p50 {gp50:.3} ms (p99 {gp99:.3})
                       {pw} pipelined writes of {pb} bytes in {ps:.3} s = {prate:.0}/s (3 per job: what an apply writes)
  job apply            {apply:.3} s = {rate:.0} jobs/s (all created)
  job apply again      {again:.3} s (all unchanged)
  scheduler            planned in {planned:.3} s; {rss:.1} MB resident (peak {peak:.1} MB)
  takeover (SIGKILL)   lease taken after {tl:.3} s (lease TTL {ttl:.0} s), planned after {tp:.3} s ({plan:.3} s planning), probe fired after {tf:.3} s
",
        ver = r.nats_server,
        jobs = r.jobs,
        wp50 = w.write_rtt_p50_ms,
        wp99 = w.write_rtt_p99_ms,
        gp50 = w.get_rtt_p50_ms,
        gp99 = w.get_rtt_p99_ms,
        pw = w.pipelined_writes,
        pb = w.pipelined_bytes,
        ps = w.pipelined_seconds,
        prate = w.pipelined_per_s,
        apply = r.apply_seconds,
        rate = r.apply_per_s,
        again = r.apply_unchanged_seconds,
        planned = r.scheduler_planned_seconds,
        rss = r.scheduler_rss_mb,
        peak = r.scheduler_peak_rss_mb,
        tl = r.takeover_lease_seconds,
        ttl = r.lease_ttl_seconds,
        tp = r.takeover_planned_seconds,
        plan = r.takeover_planning_seconds,
        tf = r.takeover_probe_fire_seconds,
    )
}
