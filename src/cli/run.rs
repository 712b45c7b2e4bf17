//! The long-running processes: `antares scheduler` and `antares worker`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use antares_scheduler::SchedulerOptions;
use antares_scheduler::alarm::AlarmOptions;
use antares_scheduler::metrics::SchedulerMetrics;
use antares_worker::Worker;
use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::config::Section;

/// `antares scheduler` flags (each also `ANTARES_*` and a config file key; see
/// [`SchedulerSettings`] for their types and defaults).
#[derive(Debug, clap::Args, Serialize)]
#[command(
    after_help = "Alarms: webhooks are signed (X-Antares-Signature: sha256=<hex HMAC-SHA256 of the body>) with\n\
    ANTARES_ALARM_WEBHOOK_SECRET (or `alarm_webhook_secret` in the --config file; never a flag).\n\
    Alarm emails need --smtp-url and --smtp-from; prefer giving a password in the URL through\n\
    ANTARES_SMTP_URL or the --config file."
)]
pub struct SchedulerArgs {
    /// Scheduler id, unique in the cluster [default: <host>-<pid>-<random>]
    #[arg(long)]
    id: Option<String>,
    /// How long the lease lasts without renewal; use 10s or more on a 3-node NATS
    /// cluster
    #[arg(long, value_name = "DURATION")]
    lease_ttl: Option<String>,
    /// How often the lease is renewed, or a standby tries to take it
    #[arg(long, value_name = "DURATION")]
    lease_renew: Option<String>,
    /// How long an instance waits for a live worker that can run its shards (its
    /// plugin, or scripts) before it fails saying so
    #[arg(long, value_name = "DURATION")]
    no_worker_wait: Option<String>,
    /// How long before its slot a scheduled fire is made (its id claimed, its instance
    /// stored `pending`), so that at the slot only its items are queued; at most 10s,
    /// 0s makes each fire at its slot
    #[arg(long, value_name = "DURATION")]
    fire_ahead: Option<String>,
    /// Mail server for alarm emails: smtp://host:port (plain; add ?tls=required for
    /// STARTTLS) or smtps://user:pass@host:port (TLS)
    #[arg(long, value_name = "URL")]
    smtp_url: Option<String>,
    /// Sender address of alarm emails (needed with --smtp-url)
    #[arg(long, value_name = "ADDRESS")]
    smtp_from: Option<String>,
    /// Serve Prometheus metrics on this address (HOST:PORT): GET /metrics
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

/// `antares scheduler` settings, resolved.
#[derive(Serialize, Deserialize)]
pub struct SchedulerSettings {
    /// `--id`.
    pub id: Option<String>,
    /// `--lease-ttl`.
    #[serde(with = "crate::config::duration")]
    pub lease_ttl: Duration,
    /// `--lease-renew`.
    #[serde(with = "crate::config::duration")]
    pub lease_renew: Duration,
    /// `--no-worker-wait`.
    #[serde(with = "crate::config::duration")]
    pub no_worker_wait: Duration,
    /// `--fire-ahead`.
    #[serde(with = "crate::config::duration")]
    pub fire_ahead: Duration,
    /// `--smtp-url`.
    pub smtp_url: Option<String>,
    /// `--smtp-from`.
    pub smtp_from: Option<String>,
    /// Key of the alarm webhooks' signature: environment or config file only.
    pub alarm_webhook_secret: Option<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        let d = SchedulerOptions::default();
        Self {
            id: d.id,
            lease_ttl: d.lease_ttl,
            lease_renew: d.lease_renew,
            no_worker_wait: d.no_worker_wait,
            fire_ahead: d.fire_ahead,
            smtp_url: d.alarms.smtp_url,
            smtp_from: d.alarms.smtp_from,
            alarm_webhook_secret: d.alarms.webhook_secret,
            metrics_listen: None,
        }
    }
}

impl Section for SchedulerSettings {
    const COMMAND: Option<&'static str> = Some("scheduler");
    const NO_FLAG: &'static [&'static str] = &["alarm_webhook_secret"];
}

impl SchedulerSettings {
    /// The scheduler's options.
    pub fn options(self) -> SchedulerOptions {
        let empty_none = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        SchedulerOptions {
            id: self.id,
            lease_ttl: self.lease_ttl,
            lease_renew: self.lease_renew,
            no_worker_wait: self.no_worker_wait,
            fire_ahead: self.fire_ahead,
            alarms: AlarmOptions {
                webhook_secret: empty_none(self.alarm_webhook_secret),
                smtp_url: empty_none(self.smtp_url),
                smtp_from: empty_none(self.smtp_from),
                ..AlarmOptions::default()
            },
            ..SchedulerOptions::default()
        }
    }
}

/// Says whether the secret is set, never what it is (settings are debug-logged).
impl std::fmt::Debug for SchedulerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerSettings")
            .field("id", &self.id)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_renew", &self.lease_renew)
            .field("no_worker_wait", &self.no_worker_wait)
            .field("fire_ahead", &self.fire_ahead)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "smtp_url",
                &self
                    .smtp_url
                    .as_deref()
                    .map(antares_scheduler::alarm::email::redact_url),
            )
            .field("smtp_from", &self.smtp_from)
            .field(
                "alarm_webhook_secret",
                &self.alarm_webhook_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// `antares worker` flags (each also `ANTARES_*` and a config file key; see
/// [`WorkerSettings`] for their types and defaults).
#[derive(Debug, clap::Args, Serialize)]
pub struct WorkerArgs {
    /// The app whose shards this worker runs (required)
    #[arg(long)]
    app: Option<String>,
    /// Worker id, unique in the app [default: <host>-<pid>-<random>]
    #[arg(long)]
    id: Option<String>,
    /// How many shards run at once
    #[arg(long, value_name = "N")]
    concurrency: Option<String>,
    /// Run script jobs (shell, python, node); refused unless given
    #[arg(long)]
    allow_scripts: bool,
    /// Names of this worker's environment variables that scripts also get, besides
    /// PATH, HOME, LANG and TZ (comma-separated; nothing else of the worker's
    /// environment reaches a script)
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    script_env: Vec<String>,
    /// Serve Prometheus metrics on this address (HOST:PORT): GET /metrics
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

/// `antares worker` settings, resolved.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerSettings {
    /// `--app`.
    pub app: Option<String>,
    /// `--id`.
    pub id: Option<String>,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--allow-scripts`.
    pub allow_scripts: bool,
    /// `--script-env`: a list in the file, comma-separated as a flag or variable.
    #[serde(deserialize_with = "crate::config::list::deserialize")]
    pub script_env: Vec<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            app: None,
            id: None,
            concurrency: antares_worker::DEFAULT_CONCURRENCY,
            allow_scripts: false,
            script_env: Vec::new(),
            metrics_listen: None,
        }
    }
}

impl Section for WorkerSettings {
    const COMMAND: Option<&'static str> = Some("worker");
}

/// Runs one scheduler until Ctrl-C or SIGTERM.
pub async fn scheduler(ctx: &Ctx, args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let s: SchedulerSettings = ctx.settings.section(&args)?;
    if s.fire_ahead > antares_scheduler::runner::MAX_FIRE_AHEAD {
        anyhow::bail!(
            "--fire-ahead {:?} is too long: at most {:?} (a fire made ahead holds its slot as `pending` until then)",
            s.fire_ahead,
            antares_scheduler::runner::MAX_FIRE_AHEAD
        );
    }
    let metrics = Arc::new(SchedulerMetrics::new());
    if let Some(addr) = &s.metrics_listen {
        let listener = crate::metrics_http::bind(addr).await?;
        let m = Arc::clone(&metrics);
        crate::metrics_http::serve(listener, Arc::new(move || m.render()))?;
    }
    let opts = SchedulerOptions {
        metrics,
        ..s.options()
    };
    let nats = ctx.connect().await?;
    antares_scheduler::run(nats, opts, antares_nats::process::stop_signal()).await?;
    tracing::info!("scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

/// Runs one worker until Ctrl-C or SIGTERM (a second signal stops running shards).
pub async fn worker(ctx: &Ctx, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let s: WorkerSettings = ctx.settings.section(&args)?;
    let app = s.app.ok_or_else(|| {
        anyhow::anyhow!(
            "which app? pass --app APP (or set ANTARES_APP, or `app` in the config file)"
        )
    })?;
    antares_schemas::names::check_name("app", &app)?;
    let listener = match &s.metrics_listen {
        Some(addr) => Some(crate::metrics_http::bind(addr).await?),
        None => None,
    };
    let nats = ctx.connect_as_worker(&app).await?;
    let mut builder = Worker::builder()
        .app(app)
        .nats(nats)
        .allow_scripts(s.allow_scripts)
        .concurrency(s.concurrency)
        .script_env(s.script_env)
        .with_builtins();
    if let Some(id) = s.id {
        builder = builder.id(id);
    }
    let worker = builder.build().await?;
    if let Some(listener) = listener {
        let m = worker.metrics();
        crate::metrics_http::serve(listener, Arc::new(move || m.render()))?;
    }
    worker.run().await?;
    Ok(ExitCode::SUCCESS)
}
