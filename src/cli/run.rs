//! The long-running processes: `antares scheduler` and `antares worker`.

use std::process::ExitCode;
use std::time::Duration;

use antares_scheduler::SchedulerOptions;
use antares_worker::Worker;

use super::Ctx;
use crate::config::{explicit, file_duration, parse_duration};

/// `antares scheduler` flags.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Scheduler id, unique in the cluster [default: <host>-<pid>-<random>]
    #[arg(long, env = "ANTARES_ID")]
    id: Option<String>,
    /// How long the lease lasts without renewal; use 10s or more on a 3-node NATS
    /// cluster [default: 3s]
    #[arg(long, env = "ANTARES_LEASE_TTL", value_name = "DURATION", value_parser = parse_duration)]
    lease_ttl: Option<Duration>,
    /// How often the lease is renewed, or a standby tries to take it [default: 1s]
    #[arg(long, env = "ANTARES_LEASE_RENEW", value_name = "DURATION", value_parser = parse_duration)]
    lease_renew: Option<Duration>,
}

/// `antares worker` flags.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The app whose shards this worker runs (required)
    #[arg(long, env = "ANTARES_APP")]
    app: Option<String>,
    /// Worker id, unique in the app [default: <host>-<pid>-<random>]
    #[arg(long, env = "ANTARES_ID")]
    id: Option<String>,
    /// How many shards run at once [default: 32]
    #[arg(long, env = "ANTARES_CONCURRENCY", value_name = "N")]
    concurrency: Option<usize>,
    /// Run script jobs (shell, python, node); refused unless given
    #[arg(long, env = "ANTARES_ALLOW_SCRIPTS")]
    allow_scripts: bool,
    /// Names of this worker's environment variables that scripts also get, besides
    /// PATH, HOME, LANG and TZ (comma-separated; nothing else of the worker's
    /// environment reaches a script)
    #[arg(
        long,
        env = "ANTARES_SCRIPT_ENV",
        value_name = "NAME,...",
        value_delimiter = ','
    )]
    script_env: Vec<String>,
}

/// Runs one scheduler until Ctrl-C or SIGTERM.
pub async fn scheduler(ctx: &Ctx, args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let file = &ctx.settings.file;
    let defaults = SchedulerOptions::default();
    let opts = SchedulerOptions {
        id: args.id.or_else(|| file.id.clone()),
        lease_ttl: match args.lease_ttl {
            Some(d) => d,
            None => file_duration("lease_ttl", file.lease_ttl.as_ref(), defaults.lease_ttl)?,
        },
        lease_renew: match args.lease_renew {
            Some(d) => d,
            None => file_duration(
                "lease_renew",
                file.lease_renew.as_ref(),
                defaults.lease_renew,
            )?,
        },
        ..defaults
    };
    let nats = ctx.connect().await?;
    antares_scheduler::run(nats, opts, antares_nats::process::stop_signal()).await?;
    tracing::info!("scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

/// Runs one worker until Ctrl-C or SIGTERM (a second signal stops running shards).
pub async fn worker(ctx: &Ctx, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let file = &ctx.settings.file;
    let app = args.app.or_else(|| file.app.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "which app? pass --app APP (or set ANTARES_APP, or `app` in the config file)"
        )
    })?;
    let allow_scripts = if explicit(&ctx.matches, "allow_scripts") {
        args.allow_scripts
    } else {
        file.allow_scripts.unwrap_or(false)
    };
    let nats = ctx.connect().await?;
    let mut builder = Worker::builder()
        .app(app)
        .nats(nats)
        .allow_scripts(allow_scripts)
        .with_builtins();
    if let Some(id) = args.id.or_else(|| file.id.clone()) {
        builder = builder.id(id);
    }
    if let Some(n) = args.concurrency.or(file.concurrency) {
        builder = builder.concurrency(n);
    }
    let script_env = if args.script_env.is_empty() {
        file.script_env.clone().unwrap_or_default()
    } else {
        args.script_env
    };
    builder = builder.script_env(script_env);
    let worker = builder.build().await?;
    worker.run().await?;
    Ok(ExitCode::SUCCESS)
}
