//! What the end-to-end tests share: a real nats-server per test, provisioned, with an
//! admin handle, in-process schedulers and workers, and a recording plugin.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::LocalServer;
use antares_nats::wait::wait_for;
use antares_nats::{ConnectOptions, Nats};
use antares_scheduler::SchedulerOptions;
use antares_scheduler::admin::Admin;
use antares_scheduler::store::ListQuery;
use antares_schemas::instance::{Instance, InstanceSummary};
use antares_schemas::spec::{JobSpec, SpecFormat, parse_jobs};
use antares_schemas::{InstanceId, Topology};
use antares_worker::{Job, JobContext, JobResult, Worker, WorkerBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long before its slot a scheduled fire is admitted and its items queued (held by
/// the workers until the slot): a change that reaches the scheduler later applies from
/// the next slot.
pub const QUEUE_AHEAD: Duration = Duration::from_millis(100);

/// A nats-server with everything provisioned.
pub struct Env {
    pub server: LocalServer,
    pub nats: Nats,
    pub admin: Admin,
    tasks: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Env {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_partitioned(1).await
    }

    /// A server provisioned with the jobs split into `partitions`.
    pub async fn start_partitioned(partitions: u32) -> anyhow::Result<Self> {
        let server = LocalServer::start_temp()?;
        let nats = Nats::connect(&ConnectOptions::url(server.url()), Topology::new("ats")?).await?;
        let opts = ProvisionOptions {
            partitions: Some(partitions),
            ..ProvisionOptions::default()
        };
        provision(&nats, &opts).await?;
        let nats = nats.with_stored_settings().await?;
        let admin = Admin::open(&nats).await?;
        Ok(Self {
            server,
            nats,
            admin,
            tasks: Vec::new(),
        })
    }

    /// A fresh connection (each scheduler and worker gets its own, like real processes).
    pub async fn connect(&self) -> anyhow::Result<Nats> {
        Ok(Nats::connect(
            &ConnectOptions::url(self.server.url()),
            Topology::new("ats")?,
        )
        .await?)
    }

    /// Creates an app and applies jobs written as TOML.
    pub async fn apply(&self, app: &str, toml: &str) -> anyhow::Result<Vec<JobSpec>> {
        if self.admin.get_app(app).await.is_err() {
            self.admin.create_app(app, "").await?;
        }
        let jobs = parse_jobs(toml, SpecFormat::Toml)?;
        self.admin.apply_jobs(jobs.clone()).await?;
        Ok(jobs)
    }

    /// Runs a scheduler in this process until the test ends.
    pub async fn scheduler(&mut self, id: &str) -> anyhow::Result<()> {
        self.scheduler_with(id, |o| o).await
    }

    /// Runs a scheduler in this process until the test ends, with options changed by
    /// `change` from the test defaults.
    pub async fn scheduler_with(
        &mut self,
        id: &str,
        change: impl FnOnce(SchedulerOptions) -> SchedulerOptions,
    ) -> anyhow::Result<()> {
        let nats = self.connect().await?;
        let opts = change(SchedulerOptions {
            id: Some(id.to_string()),
            lease_ttl: Duration::from_secs(2),
            lease_renew: Duration::from_millis(500),
            ..SchedulerOptions::default()
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = antares_scheduler::run(nats, opts, stop).await {
                eprintln!("scheduler failed: {e}");
            }
        });
        self.tasks.push((tx, task));
        Ok(())
    }

    /// A worker builder for `app` on this server, with test-friendly timings.
    pub fn worker(&self, app: &str) -> WorkerBuilder {
        Worker::builder()
            .app(app)
            .nats_url(self.server.url())
            .namespace("ats")
            .later_delay(Duration::from_millis(100))
            .grace(Duration::from_secs(2))
            .with_builtins()
    }

    /// Builds and runs a worker in this process until the test ends.
    pub async fn run_worker(&mut self, builder: WorkerBuilder) -> anyhow::Result<String> {
        let worker = builder.build().await?;
        let id = worker.id().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = worker.run_until(stop).await {
                eprintln!("worker failed: {e}");
            }
        });
        self.tasks.push((tx, task));
        Ok(id)
    }

    /// Waits until an instance has ended and returns it whole.
    pub async fn finished(&self, id: &InstanceId) -> anyhow::Result<Instance> {
        let admin = &self.admin;
        wait_for(&format!("instance {id} to end"), WAIT, || async move {
            admin
                .get_instance(id)
                .await
                .ok()
                .filter(|i| i.summary.status.is_final())
        })
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Waits until a job has at least `n` instances matching `pred` and returns them
    /// (newest first).
    pub async fn instances_where(
        &self,
        app: &str,
        job: &str,
        n: usize,
        pred: impl Fn(&InstanceSummary) -> bool,
    ) -> anyhow::Result<Vec<InstanceSummary>> {
        let admin = &self.admin;
        let pred = &pred;
        wait_for(
            &format!("{n} matching instances of {app}/{job}"),
            WAIT,
            || async move {
                let q = ListQuery {
                    app: Some(app.to_string()),
                    job: Some(job.to_string()),
                    limit: 1000,
                    ..ListQuery::default()
                };
                let list = admin.list_instances(&q).await.ok()?;
                let hits: Vec<_> = list.into_iter().filter(|s| pred(s)).collect();
                (hits.len() >= n).then_some(hits)
            },
        )
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Runs a job once now and returns the id its instance will have.
    pub async fn trigger(
        &self,
        app: &str,
        job: &str,
        req: &antares_schemas::messages::TriggerRequest,
    ) -> anyhow::Result<InstanceId> {
        Ok(self.admin.trigger(app, job, req).await?.id())
    }

    /// Subscribes to a job's lifecycle events.
    pub async fn events(&self, app: &str, job: &str) -> anyhow::Result<async_nats::Subscriber> {
        Ok(self
            .nats
            .client
            .subscribe(self.nats.topo.event_subject(app, job))
            .await?)
    }

    /// Waits for an event of a job matching `pred`.
    pub async fn event_where(
        events: &mut async_nats::Subscriber,
        what: &str,
        pred: impl Fn(&antares_schemas::messages::Event) -> bool,
    ) -> anyhow::Result<antares_schemas::messages::Event> {
        use futures::StreamExt;
        let found = tokio::time::timeout(WAIT, async {
            while let Some(msg) = events.next().await {
                if let Ok(e) =
                    serde_json::from_slice::<antares_schemas::messages::Event>(&msg.payload)
                    && pred(&e)
                {
                    return Some(e);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(e)) => Ok(e),
            _ => Err(anyhow::anyhow!("no event: {what}")),
        }
    }

    /// A server with a job `shop/tick` firing every second, a worker and a scheduler,
    /// once the job has fired.
    pub async fn ticking() -> anyhow::Result<Self> {
        let mut env = Self::start().await?;
        env.tick().await?;
        Ok(env)
    }

    /// Adds a job `shop/tick` firing every second, a worker and a scheduler `s1`, and
    /// waits until the job has fired.
    pub async fn tick(&mut self) -> anyhow::Result<()> {
        self.apply(
            "shop",
            "app = \"shop\"\nname = \"tick\"\nhandler = \"noop\"\nschedule = { every = \"1s\" }\n",
        )
        .await?;
        self.run_worker(self.worker("shop")).await?;
        self.scheduler("s1").await?;
        self.instances_where("shop", "tick", 1, |s| {
            s.trigger == antares_schemas::instance::TriggerKind::Every
        })
        .await?;
        Ok(())
    }

    /// The app's shared queue of shard items, for a test that plays a worker by hand.
    pub async fn app_queue(
        &self,
        app: &str,
        ack_wait: Duration,
    ) -> anyhow::Result<async_nats::jetstream::consumer::PullConsumer> {
        let topo = &self.nats.topo;
        Ok(antares_nats::queue::durable(
            &self.nats,
            &antares_nats::queue::ConsumerSpec {
                stream: topo.shards_stream(),
                durable: topo.app_consumer(app),
                filter: Some(topo.app_shards_filter(app)),
                ack_wait,
                max_ack_pending: 100,
            },
        )
        .await?)
    }

    /// Writes the heartbeat of a worker the test plays: it runs `noop`, `running` of
    /// `capacity` slots busy, and holds tasks until their `not_before` or not (as workers
    /// before it did not); the key lives `ttl`.
    pub async fn hand_worker_beat(
        &self,
        app: &str,
        id: &str,
        (running, capacity): (u32, u32),
        ttl: Duration,
        holds: bool,
    ) -> anyhow::Result<()> {
        use antares_nats::kv::{self, Expect, Write};
        let beat = antares_schemas::cluster::WorkerInfo {
            id: id.into(),
            app: app.into(),
            host: "h".into(),
            pid: 1,
            started_at: antares_nats::now(),
            last_seen: antares_nats::now(),
            running,
            capacity,
            allow_scripts: false,
            plugins: vec!["noop".into()],
            http: false,
            holds,
            version: "0".into(),
        };
        let topo = &self.nats.topo;
        kv::write(
            &self.nats,
            Write::put(
                &topo.workers_bucket(),
                topo.worker_key(app, id),
                antares_nats::codec::encode("worker", &beat)?,
                Expect::Any,
            )
            .with_ttl(ttl),
        )
        .await?;
        Ok(())
    }

    /// Messages left in the shard work queue.
    pub async fn queued_shards(&self) -> anyhow::Result<u64> {
        let mut s = self.nats.stream(&self.nats.topo.shards_stream()).await?;
        Ok(s.info().await?.state.messages)
    }

    /// Stops every in-process scheduler and worker.
    pub async fn stop(&mut self) {
        for (tx, task) in self.tasks.drain(..) {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// One execution a [`Recorder`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub instance: InstanceId,
    pub item: u32,
    pub param: String,
    pub params: String,
    pub attempt: u32,
    pub worker: String,
    /// When it started.
    pub at: std::time::Instant,
}

/// A plugin that records every execution and answers with a rule.
#[derive(Clone)]
pub struct Recorder {
    name: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    rule: Arc<dyn Fn(&JobContext) -> JobResult + Send + Sync>,
}

impl Recorder {
    pub fn new(
        name: &str,
        rule: impl Fn(&JobContext) -> JobResult + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.to_string(),
            seen: Arc::new(Mutex::new(Vec::new())),
            rule: Arc::new(rule),
        }
    }

    pub fn succeeding(name: &str) -> Self {
        Self::new(name, |_| JobResult::Success)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn seen_for(&self, id: &InstanceId) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| &s.instance == id)
            .collect()
    }
}

impl Job for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    fn execute(&self, ctx: JobContext) -> impl Future<Output = JobResult> + Send {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Seen {
                instance: ctx.instance_id(),
                item: ctx.shard_item(),
                param: ctx.shard_param().to_string(),
                params: ctx.params().to_string(),
                attempt: ctx.attempt(),
                worker: ctx.worker_id().to_string(),
                at: std::time::Instant::now(),
            });
        }
        let result = (self.rule)(&ctx);
        async move { result }
    }
}

// ---------------------------------------------------------------------------------
// Real processes: `antares scheduler` and `antares worker` children, signals, and what
// the kill and chaos tests read back.

/// Runs the `antares` binary against `url` with these arguments; killed on drop. Its
/// stderr (warnings only, or `$ANTARES_TEST_LOG` as its `RUST_LOG`) goes to the test's
/// output, so a failure shows what it said.
pub fn antares_process(url: &str, args: &[&str]) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_antares"))
        .arg("--nats-url")
        .arg(url)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("ANTARES_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

/// An `antares scheduler` process with a short lease (2 s, renewed every 500 ms).
pub fn scheduler_process(url: &str, id: &str) -> anyhow::Result<tokio::process::Child> {
    scheduler_process_with(url, id, &[])
}

/// [`scheduler_process`] with more flags.
pub fn scheduler_process_with(
    url: &str,
    id: &str,
    more: &[&str],
) -> anyhow::Result<tokio::process::Child> {
    let mut args = vec![
        "scheduler",
        "--id",
        id,
        "--lease-ttl",
        "2s",
        "--lease-renew",
        "500ms",
    ];
    args.extend_from_slice(more);
    antares_process(url, &args)
}

/// An `antares worker` process of `app`.
pub fn worker_process(
    url: &str,
    app: &str,
    id: &str,
    concurrency: u32,
    allow_scripts: bool,
) -> anyhow::Result<tokio::process::Child> {
    let concurrency = concurrency.to_string();
    let mut args = vec![
        "worker",
        "--app",
        app,
        "--id",
        id,
        "--concurrency",
        &concurrency,
    ];
    if allow_scripts {
        args.push("--allow-scripts");
    }
    antares_process(url, &args)
}

/// Sends a signal (`KILL`, `STOP`, `CONT`, ...) to a child process.
pub async fn signal(child: &tokio::process::Child, sig: &str) -> anyhow::Result<()> {
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("the process has already exited"))?;
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed: {status}");
    Ok(())
}

impl Env {
    /// Which partitions each live scheduler leads, by the leases (only schedulers that
    /// lead some).
    pub async fn partition_leaders(&self) -> Option<std::collections::BTreeMap<String, Vec<u32>>> {
        let view = self.admin.cluster().await.ok()?;
        Some(
            view.schedulers
                .into_iter()
                .filter(|s| !s.partitions.is_empty())
                .map(|s| (s.id, s.partitions))
                .collect(),
        )
    }

    /// The scheduler holding the (first) lease, if any.
    pub async fn lease_holder(&self) -> Option<String> {
        let store = self.nats.buckets().await.ok()?.leases.clone();
        antares_nats::lease::holder(&store, &self.nats.topo.lease_key(0))
            .await
            .ok()
            .flatten()
            .map(|h| h.record.holder)
    }

    /// Waits until the scheduler `id` holds the (first) lease.
    pub async fn wait_lease(&self, id: &str) -> anyhow::Result<()> {
        wait_for(
            &format!("{id} to lead"),
            Duration::from_secs(20),
            || async move { self.lease_holder().await.filter(|h| h == id).map(|_| ()) },
        )
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Waits until these workers of `app` beat.
    pub async fn workers_alive(&self, app: &str, ids: &[&str]) -> anyhow::Result<()> {
        let admin = &self.admin;
        wait_for(
            &format!("workers {ids:?} of {app} to beat"),
            WAIT,
            || async move {
                let view = admin.cluster().await.ok()?;
                ids.iter()
                    .all(|id| view.workers.iter().any(|w| w.app == app && w.id == *id))
                    .then_some(())
            },
        )
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Every instance of a job, newest first (page after page).
    pub async fn all_instances(
        &self,
        app: &str,
        job: &str,
    ) -> anyhow::Result<Vec<InstanceSummary>> {
        let mut all: Vec<InstanceSummary> = Vec::new();
        loop {
            let q = ListQuery {
                app: Some(app.to_string()),
                job: Some(job.to_string()),
                limit: antares_schemas::limits::MAX_LIST_LIMIT,
                before: all.last().map(|s| s.id),
                ..ListQuery::default()
            };
            let page = self.admin.list_instances(&q).await?;
            let done = page.len() < q.limit;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Waits until the results stream is empty (every report stored so far has been
    /// folded in and acked by the leader) and holds a message past `after_seq`.
    pub async fn results_settled_after(&self, after_seq: u64) -> anyhow::Result<u64> {
        let nats = &self.nats;
        wait_for(
            &format!("the leader to take every report (stream sequence > {after_seq})"),
            WAIT,
            || async move {
                let mut stream = nats.stream(&nats.topo.results_stream()).await.ok()?;
                let info = stream.info().await.ok()?;
                (info.state.messages == 0 && info.state.last_sequence > after_seq)
                    .then_some(info.state.last_sequence)
            },
        )
        .await
        .map_err(anyhow::Error::msg)
    }

    /// The results stream's last sequence now.
    pub async fn results_last_seq(&self) -> anyhow::Result<u64> {
        let mut stream = self.nats.stream(&self.nats.topo.results_stream()).await?;
        Ok(stream.info().await?.state.last_sequence)
    }
}

/// One line per instance, for failure messages.
pub fn describe(list: &[InstanceSummary]) -> String {
    let mut lines: Vec<String> = list
        .iter()
        .map(|s| {
            format!(
                "  {} {} {:<9} trigger={} started={} finished={} reason={}",
                s.scheduled_at,
                s.id,
                s.status.as_str(),
                s.trigger.as_str(),
                s.started_at.map_or("-".into(), |t| t.to_string()),
                s.finished_at.map_or("-".into(), |t| t.to_string()),
                s.reason.as_deref().unwrap_or("-"),
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}
