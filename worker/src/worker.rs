//! Building and running a worker.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32};
use std::time::Duration;

use antares_nats::async_nats::jetstream::consumer::PullConsumer;
use antares_nats::queue::{self, ConsumerSpec};
use antares_nats::{ConnectOptions, Nats, now};
use antares_schemas::Topology;
use antares_schemas::names::{check_name, check_worker_id};
use antares_schemas::topology::DEFAULT_NAMESPACE;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::builtins;
use crate::error::{Result, WorkerError};
use crate::heartbeat::{self, Identity};
use crate::job::{Job, Registry};
use crate::logs::LogSink;
use crate::metrics::WorkerMetrics;
use crate::ping;
use crate::pull::{Phase, Puller, Source};
use crate::shard::Shared;
use crate::stop::{self, Stoppers};

/// Default NATS URL.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default number of shard items a worker runs at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Default heartbeat interval (a worker is gone after three missed beats).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default time a delivered shard item may go without an ack or in-progress ack.
pub const DEFAULT_ACK_WAIT: Duration = queue::DEFAULT_ACK_WAIT;
/// Default delay before a shard item that returned `Later` is delivered again.
pub const DEFAULT_LATER_DELAY: Duration = Duration::from_secs(5);
/// Default delay before a running shard's start is reported (see
/// [`WorkerBuilder::report_start_after`]).
pub const DEFAULT_REPORT_START_AFTER: Duration = Duration::from_millis(50);
/// Default time running shards get to finish at shutdown.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Default time a stopped shard gets to end before it is killed (see
/// [`WorkerBuilder::stop_grace`]).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(3);
/// Largest concurrency a worker takes.
pub const MAX_CONCURRENCY: usize = 100_000;
/// A worker's own consumer is deleted by the server after this long unused (its worker
/// is gone for good; the scheduler has moved its items long before).
const OWN_CONSUMER_INACTIVE: Duration = Duration::from_secs(3600);

/// Settings of a worker; made by [`Worker::builder`].
pub struct WorkerBuilder {
    app: Option<String>,
    connect: ConnectOptions,
    url: Option<String>,
    nats: Option<Nats>,
    namespace: Option<String>,
    id: Option<String>,
    concurrency: usize,
    allow_scripts: bool,
    allow_http: bool,
    script_env: Vec<String>,
    heartbeat: Duration,
    ack_wait: Duration,
    later_delay: Duration,
    report_start_after: Duration,
    grace: Duration,
    stop_grace: Duration,
    registry: Registry,
    duplicates: Vec<String>,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("app", &self.app)
            .field("id", &self.id)
            .field("concurrency", &self.concurrency)
            .field("allow_scripts", &self.allow_scripts)
            .field("allow_http", &self.allow_http)
            .field("plugins", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Default for WorkerBuilder {
    fn default() -> Self {
        Self {
            app: None,
            connect: ConnectOptions::url(DEFAULT_NATS_URL),
            url: None,
            nats: None,
            namespace: None,
            id: None,
            concurrency: DEFAULT_CONCURRENCY,
            allow_scripts: false,
            allow_http: true,
            script_env: Vec::new(),
            heartbeat: DEFAULT_HEARTBEAT,
            ack_wait: DEFAULT_ACK_WAIT,
            later_delay: DEFAULT_LATER_DELAY,
            report_start_after: DEFAULT_REPORT_START_AFTER,
            grace: DEFAULT_GRACE,
            stop_grace: DEFAULT_STOP_GRACE,
            registry: Registry::default(),
            duplicates: Vec::new(),
        }
    }
}

impl WorkerBuilder {
    /// The app this worker serves (required).
    pub fn app(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    /// NATS URL, or several separated by commas (default `nats://127.0.0.1:4222`);
    /// overrides the URLs of [`connect_options`](Self::connect_options).
    pub fn nats_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// How to connect and authenticate (credentials, TLS).
    pub fn connect_options(mut self, opts: ConnectOptions) -> Self {
        self.connect = opts;
        self
    }

    /// Uses an existing connection instead of making one (its namespace applies).
    pub fn nats(mut self, nats: Nats) -> Self {
        self.nats = Some(nats);
        self
    }

    /// The Antares namespace (default `ats`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The worker id (default `<host>-<pid>-<random>`); unique among the app's workers,
    /// 1-128 characters of `A-Z a-z 0-9 _ -`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// How many shard items run at once (default 32).
    pub fn concurrency(mut self, slots: usize) -> Self {
        self.concurrency = slots;
        self
    }

    /// Whether script and command jobs run here (default `false`: they fail, saying so).
    pub fn allow_scripts(mut self, allow: bool) -> Self {
        self.allow_scripts = allow;
        self
    }

    /// Whether http jobs run here (default `true`; when `false` they fail, saying so, and
    /// the heartbeat says the worker runs none, so the scheduler does not count on it).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Names of the worker's environment variables that scripts also get, besides
    /// `PATH`, `HOME`, `LANG` and `TZ` (nothing else of the worker's environment reaches
    /// a script, so its NATS credentials never do).
    pub fn script_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.script_env = names.into_iter().map(Into::into).collect();
        self
    }

    /// Heartbeat interval (default 1 s); the worker counts as gone after three missed.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long a shard item may go without an ack before the queue hands it to another
    /// worker (default 5 s). Running shards send in-progress acks every second (or every
    /// half `ack_wait` if shorter). This is a setting of the app's shared consumer: the
    /// last worker to start sets it for all (a worker whose permissions forbid updating
    /// the consumer keeps the consumer's, and says so).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Delay before a shard item that returned [`Later`](crate::JobResult::Later) is
    /// delivered again (default 5 s).
    pub fn later_delay(mut self, delay: Duration) -> Self {
        self.later_delay = delay;
        self
    }

    /// How long a shard must have been running before its start is reported on its own
    /// (default 50 ms; zero reports every start at once). A shard that ends sooner is
    /// reported once, by its `Finished` report, which carries its start time: for short
    /// shards that halves the reports the scheduler has to fold, and a start still shows
    /// as `running` (and as a `shard_started` event) whenever it lasts long enough for
    /// anyone to see it.
    pub fn report_start_after(mut self, delay: Duration) -> Self {
        self.report_start_after = delay;
        self
    }

    /// How long running shards may take to finish at shutdown before they are cancelled
    /// and handed back to the queue (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a shard that must stop gets to end before it is killed (default 3 s).
    ///
    /// A shard stops when it runs past its job's `timeout`, when the scheduler stops it
    /// (its instance was cancelled, or it timed out there), or when the worker shuts
    /// down (after [`grace`](Self::grace)). A Rust job then sees
    /// [`JobContext::cancelled`](crate::JobContext::cancelled) resolve and is aborted
    /// when this is over; a script's whole process group gets `SIGTERM`, then `SIGKILL`
    /// when this is over (at once, should the group be gone sooner), so nothing the
    /// script started survives it. Zero kills at once.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Registers a job under its [`name`](Job::name).
    pub fn register(mut self, job: impl Job) -> Self {
        if let Err(name) = self.registry.insert(job) {
            self.duplicates.push(name);
        }
        self
    }

    /// Registers the built-in jobs `noop`, `sleep` and `fail` (see [`builtins`]).
    pub fn with_builtins(self) -> Self {
        self.register(builtins::Noop)
            .register(builtins::Sleep)
            .register(builtins::Fail)
    }

    fn check(&self) -> Result<(String, String)> {
        let app = self.app.clone().ok_or_else(|| {
            WorkerError::Config("the worker's app is not set (--app, or `.app(..)`)".into())
        })?;
        check_name("app", &app)?;
        let id = match &self.id {
            Some(id) => id.clone(),
            None => antares_nats::process::default_id(),
        };
        check_worker_id(&id)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(WorkerError::Config(format!(
                "--concurrency {}: use 1 to {MAX_CONCURRENCY}",
                self.concurrency
            )));
        }
        if self.heartbeat < Duration::from_millis(100) {
            return Err(WorkerError::Config(format!(
                "heartbeat {:?} is too short: use at least 100ms",
                self.heartbeat
            )));
        }
        if self.ack_wait < Duration::from_millis(200) {
            return Err(WorkerError::Config(format!(
                "ack_wait {:?} is too short: use at least 200ms",
                self.ack_wait
            )));
        }
        if let Some(name) = self.duplicates.first() {
            return Err(WorkerError::Config(format!(
                "two jobs are registered as `{name}`: job names must be unique in a worker"
            )));
        }
        Ok((app, id))
    }

    /// Checks the settings, connects, and binds the app's work queue.
    pub async fn build(self) -> Result<Worker> {
        let (app, id) = self.check()?;
        let http = if self.allow_http {
            Some(crate::http::client().map_err(WorkerError::Config)?)
        } else {
            None
        };
        let nats = match self.nats {
            Some(nats) => {
                if let Some(ns) = &self.namespace
                    && ns != nats.topo.namespace()
                {
                    return Err(WorkerError::Config(format!(
                        "namespace `{ns}` differs from the given connection's `{}`",
                        nats.topo.namespace()
                    )));
                }
                nats
            }
            None => {
                let topo = Topology::new(self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE))?;
                let mut opts = self.connect;
                if let Some(url) = self.url {
                    opts.urls = url;
                }
                if opts.inbox_prefix.is_none() {
                    opts.inbox_prefix = Some(topo.app_inbox_prefix(&app));
                }
                if opts.name.is_empty() || opts.name == "antares" {
                    opts.name = format!("antares-worker {id}");
                }
                Nats::connect_for_work(&opts, topo).await?
            }
        };
        let topo = &nats.topo;
        let spec = queue::app_consumer_spec(topo, &app, self.ack_wait);
        let consumer = bind_app_consumer(&nats, &spec).await?;
        let ack_wait = consumer.cached_info().config.ack_wait;
        let own_spec = queue::worker_consumer_spec(topo, &app, &id, ack_wait);
        let own = queue::durable_expiring(&nats, &own_spec, Some(OWN_CONSUMER_INACTIVE))
            .await
            .map_err(|e| {
                WorkerError::Config(format!(
                    "{e} (every worker makes a consumer of its own; with per-app permissions \
                     the worker's id must be listed in them)"
                ))
            })?;
        let sources = [
            Source {
                spec,
                consumer,
                inactive: None,
                own: false,
            },
            Source {
                spec: own_spec,
                consumer: own,
                inactive: Some(OWN_CONSUMER_INACTIVE),
                own: true,
            },
        ];
        let (logs, _log_task) = LogSink::start(nats.client.clone());
        let plugins = self.registry.names();
        let identity = Identity {
            host: antares_nats::process::hostname(),
            pid: std::process::id(),
            started_at: now(),
            capacity: u32::try_from(self.concurrency).unwrap_or(u32::MAX),
            plugins,
        };
        let shared = Arc::new(Shared {
            reports: crate::reports::Reports::start(nats.clone()),
            nats,
            id: Arc::from(id.as_str()),
            app,
            registry: self.registry,
            allow_scripts: self.allow_scripts,
            http,
            script_env: self.script_env,
            later_delay: self.later_delay,
            report_start_after: self.report_start_after,
            progress_every: (ack_wait / 2).min(Duration::from_secs(1)),
            stop_grace: self.stop_grace,
            logs,
            running: AtomicU32::new(0),
            metrics: Arc::new(WorkerMetrics::new(self.concurrency)),
            abort: CancellationToken::new(),
            stoppers: Stoppers::default(),
            urgent_off_until: AtomicI64::new(0),
        });
        let (phase, _) = watch::channel(Phase::Running);
        Ok(Worker {
            shared,
            sources,
            identity,
            concurrency: self.concurrency,
            heartbeat: self.heartbeat,
            grace: self.grace,
            phase: Arc::new(phase),
        })
    }
}

/// Binds to the app's shared consumer, which `antares app create` made. Creates it (or
/// updates its `ack_wait` to this worker's) only when missing (or different) and the
/// worker's permissions allow; otherwise keeps what is there.
async fn bind_app_consumer(nats: &Nats, spec: &ConsumerSpec) -> Result<PullConsumer> {
    match queue::bind(nats, spec).await? {
        Some(c) if queue::matches(&c, spec) => Ok(c),
        Some(c) => match queue::durable(nats, spec).await {
            Ok(updated) => Ok(updated),
            Err(e) => {
                tracing::warn!(
                    "keeping consumer {}'s ack_wait {:?} instead of {:?}: {e}",
                    spec.durable,
                    c.cached_info().config.ack_wait,
                    spec.ack_wait
                );
                Ok(c)
            }
        },
        None => queue::durable(nats, spec).await.map_err(|e| {
            WorkerError::Config(format!(
                "{e} (the app's consumer is made by `antares app create`; \
                 create the app first)"
            ))
        }),
    }
}

/// A worker of one app: pulls its shard items and runs them.
///
/// Made by [`Worker::builder`]; runs with [`run`](Self::run) (until SIGTERM or Ctrl-C)
/// or [`run_until`](Self::run_until); stopped from elsewhere with a [`WorkerHandle`].
pub struct Worker {
    shared: Arc<Shared>,
    sources: [Source; 2],
    identity: Identity,
    concurrency: usize,
    heartbeat: Duration,
    grace: Duration,
    phase: Arc<watch::Sender<Phase>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.id)
            .field("app", &self.shared.app)
            .field("concurrency", &self.concurrency)
            .field("plugins", &self.shared.registry)
            .finish_non_exhaustive()
    }
}

/// Stops a running worker from elsewhere. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    id: Arc<str>,
    phase: Arc<watch::Sender<Phase>>,
}

impl WorkerHandle {
    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Graceful shutdown: stop pulling at once, let running shards finish within the
    /// grace period, then cancel the rest and hand them back to the queue.
    pub fn shutdown(&self) {
        advance(&self.phase, Phase::Draining);
    }

    /// Forced shutdown: stop pulling, cancel running shards now and hand them back.
    pub fn shutdown_now(&self) {
        advance(&self.phase, Phase::Abort);
    }
}

fn advance(phase: &watch::Sender<Phase>, to: Phase) {
    phase.send_if_modified(|p| {
        let later = *p < to;
        if later {
            *p = to;
        }
        later
    });
}

impl Worker {
    /// Settings with the defaults of the contract (§8).
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The app it serves.
    pub fn app(&self) -> &str {
        &self.shared.app
    }

    /// Its Prometheus metrics (slots, slots in use, shards by outcome, durations), for
    /// serving on an HTTP endpoint of your choice (`antares worker --metrics-listen`).
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// A handle to stop it once it runs.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            id: self.shared.id.clone(),
            phase: self.phase.clone(),
        }
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully; a second signal cuts
    /// the grace period short.
    pub async fn run(self) -> Result<()> {
        let phase = self.phase.clone();
        let id = self.shared.id.clone();
        let signals = tokio::spawn(async move {
            antares_nats::process::stop_signal().await;
            tracing::info!(
                "worker {id} shutting down: finishing running shards (signal again to stop now)"
            );
            advance(&phase, Phase::Draining);
            antares_nats::process::stop_signal().await;
            tracing::info!("worker {id} stopping now");
            advance(&phase, Phase::Abort);
        });
        let result = self.run_until(std::future::pending()).await;
        signals.abort();
        result
    }

    /// Runs until `shutdown` resolves (or a [`WorkerHandle`] asks), then shuts down
    /// gracefully. For embedding the worker in a larger program, and for tests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Worker {
            shared,
            sources,
            identity,
            concurrency,
            heartbeat,
            grace,
            phase,
        } = self;
        // Listen for stops before pulling anything, so no running shard misses one.
        let stops = stop::subscribe(&shared.nats, &shared.app).await?;
        let pings = ping::subscribe(&shared.nats, &shared.app, &shared.id).await?;
        heartbeat::beat(&shared, &identity, heartbeat).await?;
        tracing::info!(
            "worker {} of app {} running {} slot(s), plugins: {:?}",
            shared.id,
            shared.app,
            concurrency,
            identity.plugins
        );
        let puller = Puller {
            shared: shared.clone(),
            sources,
            concurrency,
            grace,
        };
        let pulling = puller.run(phase.subscribe());
        let beats = heartbeat::run(&shared, &identity, heartbeat);
        let stops = stop::listen(&shared, stops);
        let pings = ping::answer(&shared.nats, pings);
        tokio::pin!(pulling, beats, stops, pings, shutdown);
        let mut asked = false;
        let result = loop {
            tokio::select! {
                result = &mut pulling => break result,
                () = &mut beats => {}
                () = &mut stops => {}
                () = &mut pings => {}
                () = &mut shutdown, if !asked => {
                    asked = true;
                    advance(&phase, Phase::Draining);
                }
            }
        };
        shared.logs.flush(Duration::from_secs(2)).await;
        if let Err(e) = shared.nats.flush().await {
            tracing::warn!("worker {}: {e}", shared.id);
        }
        heartbeat::remove(&shared.nats, &shared.app, &shared.id, heartbeat).await;
        tracing::info!("worker {} stopped", shared.id);
        result
    }
}
