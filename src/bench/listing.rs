//! `antares bench --scenario listing`: a page of `instance list` with a long history
//! behind it.
//!
//! On a nats-server of its own: N ended instances (`--history`, app `bench`, 100 jobs,
//! every tenth `failed`, one every 100 ms of scheduled time) are loaded into history with
//! their index pages ([`antares_scheduler::store::HistoryImport`]: the pages the archive
//! would have written, whole pages at a time). Then each kind of page is read
//! `--samples` times, one after another, through [`Admin::list_instances`] (what
//! `antares instance list` and the console's API call): the newest 50, 50 from the
//! middle of history (`--before`), a job's newest, the failed ones, a job's failed ones,
//! and a job's page from the middle. Reported: p50, p99 and max per kind, with the
//! index pages and history summaries one read takes, beside raw JetStream's round trips
//! (a KV GET is one direct get) measured in the same run.

use std::time::Instant;

use antares_nats::provision::{self, ProvisionOptions};
use antares_nats::{ConnectOptions, Nats, now};
use antares_scheduler::admin::Admin;
use antares_scheduler::store::{InstanceStore, ListQuery};
use antares_schemas::instance::{Instance, InstanceStatus, NewInstance, TriggerKind};
use antares_schemas::messages::Execution;
use antares_schemas::{InstanceId, Timestamp, Topology};
use anyhow::Context as _;
use serde::Serialize;

use super::rtt::{self, Raw};
use super::{BenchArgs, Percentiles, Say, named, round};

/// The app of the loaded history.
const APP: &str = "bench";
/// Jobs the history is spread over.
const JOBS: u32 = 100;
/// Instances loaded per batch.
const BATCH: u32 = 20_000;
/// Scheduled time between two instances, ms.
const SPACING_MS: i64 = 100;
/// Instances per page read.
const PAGE: usize = 50;

/// One kind of page, as read.
#[derive(Clone, Debug, Serialize)]
struct Kind {
    /// What was asked.
    name: &'static str,
    /// The `instance list` flags that ask it.
    flags: String,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Index keys (heads and pages) one read takes.
    index_reads: usize,
    /// History summaries one read takes.
    history_reads: usize,
    /// Instances on the page.
    listed: usize,
}

/// What the scenario found (`--json`).
#[derive(Clone, Debug, Serialize)]
struct Report {
    scenario: &'static str,
    /// Ended instances in history.
    history: u32,
    /// Reads of each kind of page.
    samples: u32,
    /// Loading the history (summaries, shard records, claims, index pages), seconds.
    load_seconds: f64,
    pages: Vec<Kind>,
    /// Raw JetStream in the same run.
    raw: Raw,
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
    let (n, samples) = (args.history(), args.samples());
    let nats = Nats::connect(&named(opts, "antares-bench"), topo.clone()).await?;
    let version = nats.client.server_info().version;
    provision::provision(&nats, &ProvisionOptions::default())
        .await
        .context("cannot provision the streams and buckets")?;
    let store = InstanceStore::open(&nats).await?;
    let admin = Admin::open(&nats).await?;

    say.line(&format!(
        "nats-server {version}; loading {n} ended instances into history..."
    ));
    let first = now().millis() - i64::from(n) * SPACING_MS - 3_600_000;
    let at = |i: u32| Timestamp(first + i64::from(i) * SPACING_MS);
    let start = Instant::now();
    let mut import = store.import_history();
    let mut i = 0;
    while i < n {
        let batch: Vec<Instance> = (i..n.min(i + BATCH)).map(|k| ended(k, at(k))).collect();
        import.add(&batch).await?;
        i += BATCH;
        if i % 200_000 == 0 {
            say.line(&format!("  {i} loaded..."));
        }
    }
    import.finish().await?;
    let load_seconds = start.elapsed().as_secs_f64();
    say.line(&format!(
        "loaded in {load_seconds:.1} s; raw JetStream round trips..."
    ));
    let raw = rtt::measure(&nats, 0, 400).await?;

    let middle = id(n / 2, at(n / 2));
    let job = job_of(7);
    let kinds: [(&str, ListQuery); 6] = [
        ("newest", query(None, None, None)),
        ("middle", query(None, None, Some(middle))),
        ("job", query(Some(&job), None, None)),
        ("failed", query(None, Some(InstanceStatus::Failed), None)),
        (
            "job_failed",
            query(Some(&job), Some(InstanceStatus::Failed), None),
        ),
        ("job_middle", query(Some(&job), None, Some(middle))),
    ];
    let mut pages = Vec::new();
    for (name, q) in kinds {
        say.line(&format!("{name}: {samples} reads..."));
        let (listed, cost) = store.list_counted(&q).await?;
        check(name, &q, &listed, n, &at)?;
        let mut took = Vec::with_capacity(samples as usize);
        for _ in 0..samples {
            let start = Instant::now();
            let page = admin.list_instances(&q).await?;
            took.push(start.elapsed());
            anyhow::ensure!(page.len() == listed.len(), "{name}: pages differ");
        }
        let p = Percentiles::of(&took);
        pages.push(Kind {
            name,
            flags: flags(&q),
            p50_ms: round(p.p50, 3),
            p99_ms: round(p.p99, 3),
            max_ms: round(p.max, 3),
            index_reads: cost.index_reads,
            history_reads: cost.history_reads,
            listed: listed.len(),
        });
    }
    let report = Report {
        scenario: "listing",
        history: n,
        samples,
        load_seconds: round(load_seconds, 1),
        pages,
        raw,
        nats_server: version,
    };
    let text = human(&report);
    Ok((serde_json::to_value(&report)?, text))
}

fn job_of(i: u32) -> String {
    format!("j{:02}", i % JOBS)
}

/// Every tenth run of each job failed.
fn status_of(i: u32) -> InstanceStatus {
    if (i / JOBS) % 10 == 3 {
        InstanceStatus::Failed
    } else {
        InstanceStatus::Success
    }
}

fn id(i: u32, at: Timestamp) -> InstanceId {
    InstanceId::for_fire(APP, &job_of(i), at)
}

/// Instance `i` of the history, ended.
fn ended(i: u32, at: Timestamp) -> Instance {
    let mut instance = Instance::create(NewInstance {
        id: id(i, at),
        app: APP.into(),
        job: job_of(i),
        trigger: TriggerKind::Cron,
        scheduled_at: at,
        params: String::new(),
        exec: Execution::Plugin {
            handler: "noop".into(),
        },
        timeout_ms: 0,
        shard_params: vec![String::new()],
        retry: Default::default(),
        parent: None,
        depth: 0,
        key: None,
    });
    let s = &mut instance.summary;
    s.status = status_of(i);
    s.started_at = Some(Timestamp(at.millis() + 5));
    s.finished_at = Some(Timestamp(at.millis() + 25));
    instance
}

fn query(
    job: Option<&str>,
    status: Option<InstanceStatus>,
    before: Option<InstanceId>,
) -> ListQuery {
    ListQuery {
        app: job.map(|_| APP.to_string()),
        job: job.map(str::to_string),
        status,
        limit: PAGE,
        before,
    }
}

/// The `instance list` flags of a query.
fn flags(q: &ListQuery) -> String {
    let mut out = format!("--limit {}", q.limit);
    if let Some(app) = &q.app {
        out.push_str(&format!(" --app {app}"));
    }
    if let Some(job) = &q.job {
        out.push_str(&format!(" --job {job}"));
    }
    if let Some(status) = q.status {
        out.push_str(&format!(" --status {}", status.as_str()));
    }
    if q.before.is_some() {
        out.push_str(" --before <middle>");
    }
    out
}

/// The page is what the loaded history holds: the right instances, newest first.
fn check(
    name: &str,
    q: &ListQuery,
    listed: &[antares_schemas::instance::InstanceSummary],
    n: u32,
    at: &impl Fn(u32) -> Timestamp,
) -> anyhow::Result<()> {
    let wanted: Vec<InstanceId> = (0..n)
        .rev()
        .filter(|i| q.job.as_ref().is_none_or(|j| *j == job_of(*i)))
        .filter(|i| q.status.is_none_or(|s| s == status_of(*i)))
        .map(|i| id(i, at(i)))
        .filter(|id| q.before.is_none_or(|b| *id < b))
        .take(q.limit)
        .collect();
    let got: Vec<InstanceId> = listed.iter().map(|s| s.id).collect();
    anyhow::ensure!(
        got == wanted,
        "the `{name}` page is not the loaded history's: {} listed, {} expected",
        got.len(),
        wanted.len()
    );
    Ok(())
}

fn human(r: &Report) -> String {
    let w = &r.raw;
    let mut out = format!(
        "\
antares bench --scenario listing: nats-server {ver} (local), file storage
  history {n} ended instances (100 jobs, every tenth failed), loaded in {load:.1} s; {samples} reads of each page

  raw JetStream   get round trip p50 {gp50:.3} ms (p99 {gp99:.3}); write round trip p50 {wp50:.3} ms (p99 {wp99:.3})
",
        ver = r.nats_server,
        n = r.history,
        load = r.load_seconds,
        samples = r.samples,
        gp50 = w.get_rtt_p50_ms,
        gp99 = w.get_rtt_p99_ms,
        wp50 = w.write_rtt_p50_ms,
        wp99 = w.write_rtt_p99_ms,
    );
    for k in &r.pages {
        out.push_str(&format!(
            "  {:<11} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  ({} index keys + {} summaries per read; {})\n",
            k.name, k.p50_ms, k.p99_ms, k.max_ms, k.index_reads, k.history_reads, k.flags
        ));
    }
    out
}
