//! `antares bench`: how fast Antares moves shard items compared with the JetStream
//! underneath it, and how soon a triggered shard starts; with `--scenario`, other
//! workloads: `catalog` (applying many jobs, a scheduler's memory, takeover:
//! [`catalog`]) and `listing` (a page of instances with a long history: [`listing`]),
//! each beside raw JetStream measured in the same run ([`rtt`]).
//!
//! The default scenario, `shards`: one run, against one nats-server (the given one, or a
//! local one started in a temp dir), measures three things in turn:
//!
//! 1. **raw JetStream** ([`raw`]): a work-queue stream of its own, with the storage and
//!    replicas of the Antares shard stream; N messages the size of a shard task published
//!    asynchronously with pipelined acks from one connection, consumed and acked at the
//!    same time by W pull consumers (a connection each) sharing one durable consumer.
//!    Timed from the first publish until the stream is empty (every ack processed).
//! 2. **Antares end to end** ([`e2e`]): one in-process scheduler and W in-process
//!    workers (a connection each, as separate processes would have); app `bench`, job
//!    `noop` with N shards run by the built-in `noop` plugin. Timed from the trigger's
//!    publish until its `instance_finished` event; then the stored instance is checked:
//!    N shards, all `success`, or the run fails.
//! 3. **start latency** ([`e2e`]): job `probe` (1 shard) triggered `--latency-samples`
//!    times, one at a time; each time from just before the trigger's publish until the
//!    probe plugin's `execute` starts in a worker (same process, monotonic clock).
//!
//! Everything the bench creates for itself is removed afterwards: the raw stream, and
//! (on a given server) the `bench` app and its jobs if the bench created them.

mod beside;
mod catalog;
mod e2e;
mod fires;
mod listing;
mod raw;
mod rtt;

use std::time::Duration;

use antares_nats::async_nats::jetstream::stream::StorageType;
use antares_nats::provision::{self, ProvisionOptions};
use antares_nats::server::LocalServer;
use antares_nats::{ConnectOptions, Nats};
use antares_schemas::Topology;
use anyhow::Context as _;
use serde::Serialize;

/// Messages of the unmeasured raw round.
const RAW_WARM_UP: u32 = 2_000;

/// What a bench run measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// Shard items per second end to end against raw JetStream, and start latency
    #[default]
    Shards,
    /// Fire lateness and fires per second: many jobs, bursts due at once, a steady rate
    Fires,
    /// Applying many jobs: apply time, scheduler memory, takeover time
    Catalog,
    /// A page of instances with a long history behind it
    Listing,
}

/// `antares bench`. Each scenario has its own flags; one given to another scenario is
/// refused ([`BenchArgs::check`]).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure
    #[arg(long, value_enum, default_value_t = Scenario::Shards)]
    pub scenario: Scenario,

    /// shards: shard items of the end-to-end run, and messages of the raw JetStream run
    /// [default: 20000]
    #[arg(long, env = "ANTARES_SHARDS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub shards: Option<u32>,

    /// shards: workers of the end-to-end run, and pull consumers of the raw run (a NATS
    /// connection each) [default: 4]
    #[arg(long, env = "ANTARES_WORKERS", value_name = "W",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,

    /// shards: shard items each worker runs at once [default: 64]
    #[arg(long, env = "ANTARES_CONCURRENCY", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: Option<u32>,

    /// shards: 1-shard triggers timed for the trigger-to-start latency (one at a time)
    /// [default: 200]
    #[arg(long, env = "ANTARES_LATENCY_SAMPLES", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub latency_samples: Option<u32>,

    /// catalog: hourly cron jobs applied with `antares job apply` [default: 100000];
    /// fires: jobs on an hourly cron that do not fire during the run (the catalog the
    /// leader holds and plans) [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub jobs: Option<u32>,

    /// listing: ended instances loaded into history before the listings are timed
    /// [default: 1000000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub history: Option<u32>,

    /// listing: times each kind of page is read, for its percentiles [default: 200]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub samples: Option<u32>,

    /// fires: jobs with `every = "1m"`, all due in the same second (the burst)
    #[arg(long, value_name = "M",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub burst: Option<u32>,

    /// fires: jobs with `every = "1s"`, so this many fires every second (the steady rate)
    #[arg(long, value_name = "R",
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub rate: Option<u32>,

    /// fires: seconds of steady rate measured before the burst
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub seconds: Option<u32>,

    /// fires: after the steady window, one instance of this many shards is triggered in
    /// the same app and the steady fires are measured until it ends [default: none]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(antares_schemas::spec::MAX_SHARDS)))]
    pub launch: Option<u32>,

    /// fires: in-process schedulers sharing the partitions [default: 1]
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub schedulers: Option<u32>,

    /// fires: partitions the jobs are split into, stored by provisioning the bench's
    /// server (a local one, or a given one not provisioned yet) [default: the stored
    /// number; 1 on a new server]
    #[arg(long, value_name = "P",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(antares_schemas::limits::MAX_PARTITIONS)))]
    pub partitions: Option<u32>,

    /// Print one JSON object instead of the summary
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// `--shards`.
    fn shards(&self) -> u32 {
        self.shards.unwrap_or(20_000)
    }
    /// `--workers`.
    fn workers(&self) -> u32 {
        self.workers.unwrap_or(4)
    }
    /// `--concurrency`.
    fn concurrency(&self) -> u32 {
        self.concurrency.unwrap_or(64)
    }
    /// `--latency-samples`.
    fn latency_samples(&self) -> u32 {
        self.latency_samples.unwrap_or(200)
    }
    /// `--jobs`.
    fn jobs(&self) -> u32 {
        self.jobs.unwrap_or(100_000)
    }
    /// `--history`.
    fn history(&self) -> u32 {
        self.history.unwrap_or(1_000_000)
    }
    /// `--samples`.
    fn samples(&self) -> u32 {
        self.samples.unwrap_or(200)
    }

    /// Refuses a flag given to a scenario it does nothing in.
    pub fn check(&self) -> anyhow::Result<()> {
        use Scenario::{Catalog, Fires, Listing, Shards};
        let flags: [(&str, bool, &[Scenario]); 13] = [
            (
                "--shards (ANTARES_SHARDS)",
                self.shards.is_some(),
                &[Shards],
            ),
            (
                "--workers (ANTARES_WORKERS)",
                self.workers.is_some(),
                &[Shards, Fires],
            ),
            (
                "--concurrency (ANTARES_CONCURRENCY)",
                self.concurrency.is_some(),
                &[Shards],
            ),
            (
                "--latency-samples (ANTARES_LATENCY_SAMPLES)",
                self.latency_samples.is_some(),
                &[Shards],
            ),
            ("--jobs", self.jobs.is_some(), &[Catalog, Fires]),
            ("--burst", self.burst.is_some(), &[Fires]),
            ("--rate", self.rate.is_some(), &[Fires]),
            ("--seconds", self.seconds.is_some(), &[Fires]),
            ("--launch", self.launch.is_some(), &[Fires]),
            ("--schedulers", self.schedulers.is_some(), &[Fires]),
            ("--partitions", self.partitions.is_some(), &[Fires]),
            ("--history", self.history.is_some(), &[Listing]),
            ("--samples", self.samples.is_some(), &[Listing]),
        ];
        for (flag, given, scenarios) in flags {
            if given && !scenarios.contains(&self.scenario) {
                let names: Vec<&str> = scenarios.iter().map(|s| s.name()).collect();
                anyhow::bail!(
                    "{flag} is for --scenario {} only; it does nothing in --scenario {}",
                    names.join(", "),
                    self.scenario.name()
                );
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// Its name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Shards => "shards",
            Self::Fires => "fires",
            Self::Catalog => "catalog",
            Self::Listing => "listing",
        }
    }
}

/// What a run found (`--json` prints this object).
#[derive(Clone, Debug, Serialize)]
struct Report {
    /// Raw JetStream: messages published and consumed+acked per second.
    raw_per_s: f64,
    /// Antares: shard items from trigger to recorded result per second.
    e2e_per_s: f64,
    /// `e2e_per_s / raw_per_s`.
    ratio: f64,
    /// Trigger publish to shard start, median, ms.
    start_p50_ms: f64,
    /// Trigger publish to shard start, 99th percentile, ms.
    start_p99_ms: f64,
    /// Slowest start, ms.
    start_max_ms: f64,
    /// N.
    shards: u32,
    /// W.
    workers: u32,
    /// Slots per worker.
    concurrency: u32,
    /// Latency samples taken.
    latency_samples: u32,
    /// `file` or `memory` (that of the Antares shard stream; the raw stream uses the same).
    storage: &'static str,
    /// Replicas of the streams.
    replicas: usize,
    /// The server's version.
    nats_server: String,
    /// `local` (started by the bench) or `given` (`--nats-url`).
    server: &'static str,
    /// Raw run: seconds from first publish to empty stream.
    raw_seconds: f64,
    /// Raw run: publish rate alone (first publish to last publish ack).
    raw_publish_per_s: f64,
    /// End-to-end run: seconds from trigger to `instance_finished`.
    e2e_seconds: f64,
    /// End-to-end run: when each stage was seen, ms after the trigger.
    e2e_stages: e2e::Stages,
    /// Start latency broken down: medians of each leg, ms.
    start_legs_p50_ms: e2e::Legs,
}

/// Runs the benchmark and prints its report.
pub async fn run(
    args: BenchArgs,
    connect: Option<ConnectOptions>,
    namespace: &str,
) -> anyhow::Result<()> {
    let topo = Topology::new(namespace).map_err(|e| anyhow::anyhow!("--namespace: {e}"))?;
    let say = Say { quiet: args.json };
    args.check()?;
    if connect.is_some() && matches!(args.scenario, Scenario::Catalog | Scenario::Listing) {
        anyhow::bail!(
            "--scenario {} fills NATS with what it measures (100,000 jobs, a million ended instances) and kills schedulers: it runs against a nats-server of its own; leave out --nats-url",
            args.scenario.name()
        );
    }

    // The server.
    let mut local = None;
    let opts = match connect {
        Some(opts) => opts,
        None => {
            say.line("starting a local nats-server (file storage in a temp dir)");
            // Starting waits for the server's log to say it is ready: off the runtime.
            let server = tokio::task::spawn_blocking(LocalServer::start_temp)
                .await
                .context("starting a local nats-server")?
                .context("cannot start a local nats-server")?;
            let opts = ConnectOptions::url(server.url());
            local = Some(server);
            opts
        }
    };
    let is_local = local.is_some();
    let result = match args.scenario {
        Scenario::Shards => bench(&args, &opts, &topo, is_local, &say)
            .await
            .and_then(|r| Ok((serde_json::to_value(&r)?, human(&r)))),
        Scenario::Fires => fires::run(&args, &opts, &topo, is_local, &say).await,
        Scenario::Catalog => catalog::run(&args, &opts, &topo, is_local, &say).await,
        Scenario::Listing => listing::run(&args, &opts, &topo, is_local, &say).await,
    };
    if let Some(mut server) = local {
        // Graceful stop (SIGTERM, waits up to 5 s); blocking, so off the runtime.
        let _ = tokio::task::spawn_blocking(move || server.stop()).await;
    }
    let (json, text) = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

async fn bench(
    args: &BenchArgs,
    opts: &ConnectOptions,
    topo: &Topology,
    local: bool,
    say: &Say,
) -> anyhow::Result<Report> {
    let driver = Nats::connect(&named(opts, "antares-bench"), topo.clone()).await?;
    let version = driver.client.server_info().version;
    // A fresh local server is provisioned with the defaults (file storage). A given
    // server is provisioned only if it has never been: re-provisioning it with other
    // options (replicas) than its operator chose could change it.
    if local || driver.buckets().await.is_err() {
        provision::provision(&driver, &ProvisionOptions::default())
            .await
            .context("cannot provision the streams and buckets")?;
    }
    let shards_info = driver
        .stream(&topo.shards_stream())
        .await?
        .get_info()
        .await
        .context("cannot read the shard stream's settings")?;
    let storage = shards_info.config.storage;
    let replicas = shards_info.config.num_replicas.max(1);
    let storage_name = match storage {
        StorageType::File => "file",
        StorageType::Memory => "memory",
    };
    say.line(&format!(
        "nats-server {version}, {storage_name} storage, {replicas} replica(s); {} shards, {} workers x {} slots",
        args.shards(), args.workers(), args.concurrency()
    ));

    e2e::preflight(&driver).await?;

    // 1. Raw JetStream, with nothing of Antares running.
    say.line("raw JetStream: publishing and consuming...");
    let mut settings = raw::Settings {
        connect: opts.clone(),
        topo: topo.clone(),
        messages: args.shards().min(RAW_WARM_UP),
        consumers: args.workers(),
        storage,
        replicas,
    };
    // A short unmeasured round first: a fresh server creates its first message blocks
    // and grows its buffers here, as the Antares side does in its warm-up probes.
    raw::run(&settings).await.context("raw JetStream warm-up")?;
    settings.messages = args.shards();
    let raw = raw::run(&settings).await.context("raw JetStream run")?;
    say.line(&format!(
        "raw JetStream: {} messages in {:.3} s = {:.0}/s",
        args.shards(),
        raw.seconds,
        raw.per_s()
    ));

    // 2 and 3. Antares.
    let cluster = e2e::Cluster::start(
        &driver,
        opts,
        &e2e::Settings {
            shards: args.shards(),
            workers: args.workers(),
            concurrency: args.concurrency(),
            manage_app: !local,
        },
        say,
    )
    .await;
    let mut cluster = match cluster {
        Ok(c) => c,
        Err(e) => return Err(e.context("starting the Antares side")),
    };
    let measured = measure(&mut cluster, args, say).await;
    cluster.stop().await;
    let (e2e, latency) = measured?;

    let e2e_per_s = f64::from(args.shards()) / e2e.seconds;
    let start = Percentiles::of(&latency.starts);
    Ok(Report {
        raw_per_s: round(raw.per_s(), 1),
        e2e_per_s: round(e2e_per_s, 1),
        ratio: round(e2e_per_s / raw.per_s(), 4),
        start_p50_ms: round(start.p50, 3),
        start_p99_ms: round(start.p99, 3),
        start_max_ms: round(start.max, 3),
        shards: args.shards(),
        workers: args.workers(),
        concurrency: args.concurrency(),
        latency_samples: args.latency_samples(),
        storage: storage_name,
        replicas,
        nats_server: version,
        server: if local { "local" } else { "given" },
        raw_seconds: round(raw.seconds, 4),
        raw_publish_per_s: round(f64::from(args.shards()) / raw.publish_seconds, 1),
        e2e_seconds: round(e2e.seconds, 4),
        e2e_stages: e2e.stages,
        start_legs_p50_ms: latency.legs_p50(),
    })
}

async fn measure(
    cluster: &mut e2e::Cluster,
    args: &BenchArgs,
    say: &Say,
) -> anyhow::Result<(e2e::EndToEnd, e2e::Latency)> {
    say.line(&format!(
        "Antares end to end: one trigger of {} noop shards...",
        args.shards()
    ));
    let e2e = cluster.end_to_end().await.context("end-to-end run")?;
    say.line(&format!(
        "Antares end to end: {} shards in {:.3} s = {:.0}/s (all {} checked: success)",
        args.shards(),
        e2e.seconds,
        f64::from(args.shards()) / e2e.seconds,
        args.shards()
    ));
    // Let the end-to-end run's tail (archiving, acks) settle before timing starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    say.line(&format!(
        "start latency: {} one-shard triggers, one at a time...",
        args.latency_samples()
    ));
    let latency = cluster
        .latency(args.latency_samples())
        .await
        .context("start latency run")?;
    Ok((e2e, latency))
}

/// The summary people read.
fn human(r: &Report) -> String {
    let s = &r.e2e_stages;
    let l = &r.start_legs_p50_ms;
    format!(
        "\
antares bench: nats-server {ver} ({server}), {storage} storage, {replicas} replica(s)
  shards {shards}, workers {workers} x {conc} slots, latency samples {samples}

  raw JetStream      {raw:>10.0} msg/s     ({shards} published + consumed/acked in {raw_s:.3} s; publish alone {pub_rate:.0}/s)
  Antares end to end {e2e:>10.0} shards/s  ({shards} noop shards, trigger to result recorded in {e2e_s:.3} s)
  ratio              {ratio:>10.1} %
    stages (ms after trigger): instance started {st:.1}, last shard acked by a worker {wd:.1}, instance finished {fin:.1}
  start latency      p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms
    legs (p50 ms): trigger stored {l_ack:.3}, instance started event {l_ev:.3}, shard execute {l_ex:.3}
",
        ver = r.nats_server,
        server = r.server,
        storage = r.storage,
        replicas = r.replicas,
        shards = r.shards,
        workers = r.workers,
        conc = r.concurrency,
        samples = r.latency_samples,
        raw = r.raw_per_s,
        raw_s = r.raw_seconds,
        pub_rate = r.raw_publish_per_s,
        e2e = r.e2e_per_s,
        e2e_s = r.e2e_seconds,
        ratio = r.ratio * 100.0,
        st = s.instance_started_ms,
        wd = s.shards_acked_ms,
        fin = s.instance_finished_ms,
        p50 = r.start_p50_ms,
        p99 = r.start_p99_ms,
        max = r.start_max_ms,
        l_ack = l.trigger_acked,
        l_ev = l.started_event,
        l_ex = l.execute,
    )
}

/// Progress lines on stderr (none with `--json`).
#[derive(Clone, Copy, Debug)]
struct Say {
    quiet: bool,
}

impl Say {
    fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}

/// Runs a bench scheduler on a runtime and threads of its own, as a scheduler process
/// would run: its loop is not queued behind the tasks of the in-process workers, which
/// begin the jobs it starts at the same instant.
fn scheduler_apart(
    opts: ConnectOptions,
    topo: Topology,
    sched_opts: antares_scheduler::SchedulerOptions,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("antares-bench-scheduler")
            .enable_all()
            .build()
            .context("cannot start a runtime for the bench scheduler")?;
        runtime.block_on(async move {
            let nats = Nats::connect(&opts, topo).await?;
            antares_scheduler::run(nats, sched_opts, async move {
                let _ = stop.await;
            })
            .await
            .context("the bench scheduler failed")
        })
    })
}

/// The same connection settings under another connection name (seen in monitoring).
fn named(opts: &ConnectOptions, name: &str) -> ConnectOptions {
    let mut o = opts.clone();
    o.name = name.to_string();
    o
}

fn round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Percentiles of durations, in ms.
#[derive(Clone, Copy, Debug, Default)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    fn of(samples: &[Duration]) -> Self {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            p50: rank(&ms, 0.50),
            p99: rank(&ms, 0.99),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    // ceil(p * n), 1-based; clamped.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let r = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(r - 1).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(rank(&v, 0.5), 100.0);
        assert_eq!(rank(&v, 0.99), 198.0);
        assert_eq!(rank(&[3.0], 0.99), 3.0);
        assert_eq!(rank(&[], 0.5), 0.0);
        let p = Percentiles::of(&[Duration::from_millis(2), Duration::from_millis(1)]);
        assert_eq!(p.p50, 1.0);
        assert_eq!(p.max, 2.0);
    }

    /// `antares bench` flags as parsed.
    fn parse(flags: &[&str]) -> BenchArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let argv = std::iter::once("bench").chain(flags.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .expect("flags parse")
            .bench
    }

    #[test]
    fn a_flag_of_another_scenario_is_refused() {
        let refused = parse(&["--scenario", "listing", "--jobs", "5"])
            .check()
            .expect_err("--jobs is catalog's");
        assert!(
            refused.to_string().contains(
                "--jobs is for --scenario catalog, fires only; it does nothing in --scenario listing"
            ),
            "{refused}"
        );
        let refused = parse(&["--scenario", "catalog", "--shards", "5"])
            .check()
            .expect_err("--shards is shards'");
        assert!(refused.to_string().contains("--shards"), "{refused}");
        assert!(
            parse(&["--scenario", "catalog", "--jobs", "5"])
                .check()
                .is_ok()
        );
        assert!(
            parse(&["--scenario", "listing", "--history", "9", "--samples", "3"])
                .check()
                .is_ok()
        );
        let args = parse(&["--shards", "7"]);
        assert!(args.check().is_ok());
        assert_eq!((args.shards(), args.workers()), (7, 4));
    }

    #[test]
    fn rounding() {
        assert_eq!(round(1.23456, 3), 1.235);
        assert_eq!(round(f64::NAN, 3), 0.0);
    }
}
