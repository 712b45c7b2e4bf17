//! `antares dev`: everything on one machine, for trying Antares out.
//!
//! Starts a nats-server with JetStream (unless a NATS URL was given), provisions it,
//! creates the app `demo` with two jobs, and runs a scheduler, a worker of `demo` and the
//! console in this process. The console's login is a fixed dev one ([`DEV_USER`] /
//! [`DEV_PASSWORD`]), printed in the banner; against a NATS it did not start, an
//! existing user of that name keeps its password. Ctrl-C (or SIGTERM) stops the console,
//! the worker and the scheduler gracefully, then the nats-server.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use antares_console::{AdminSeed, Console, ConsoleOptions, SeedOutcome};
use antares_nats::provision::{ProvisionOptions, provision};
use antares_nats::server::{LocalServer, ServerOptions};
use antares_scheduler::admin::Admin;
use antares_scheduler::{SchedulerError, SchedulerOptions};
use antares_schemas::Topology;
use antares_schemas::spec::{SpecFormat, parse_jobs};
use antares_worker::Worker;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cli::Ctx;
use crate::config::{DEFAULT_NATS_URL, Section};
use antares_nats::process::stop_signal;

/// The port `antares dev` runs nats-server on.
pub const DEV_PORT: u16 = 4222;

/// The console login of `antares dev`.
pub const DEV_USER: &str = "admin";
/// Its password (dev only: outside `antares dev` there is no default password).
pub const DEV_PASSWORD: &str = "antares-dev";

/// The demo app.
pub const DEMO_APP: &str = "demo";

/// The demo jobs.
pub const DEMO_JOBS: &str = r#"
[[job]]
app = "demo"
name = "hello"
description = "A script in 3 shards, every 5 seconds"
schedule = { cron = "*/5 * * * * ?" }
kind = "script"
command = 'echo "hello from shard $ANTARES_SHARD_ITEM of $ANTARES_SHARD_TOTAL: param=$ANTARES_SHARD_PARAM params=$ANTARES_PARAMS"'
shards = 3
shard_params = "a;b;c"

[[job]]
app = "demo"
name = "tick"
description = "The built-in sleep plugin, every 10 seconds"
schedule = { every = "10s" }
kind = "plugin"
handler = "sleep"
params = "300ms"
"#;

/// `antares dev` flags (each also `ANTARES_*` and a config file key; see
/// [`DevSettings`] for their types and defaults).
#[derive(Debug, clap::Args, Serialize)]
pub struct DevArgs {
    /// Where the local nats-server keeps its data
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address of the web console (log in as admin / antares-dev)
    #[arg(long, value_name = "ADDR")]
    console_listen: Option<String>,
}

/// `antares dev` settings, resolved.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevSettings {
    /// `--data`.
    #[serde(deserialize_with = "crate::config::path")]
    pub data: PathBuf,
    /// `--console-listen`.
    pub console_listen: String,
}

impl Default for DevSettings {
    fn default() -> Self {
        Self {
            data: PathBuf::from(".antares-dev"),
            console_listen: antares_console::DEFAULT_LISTEN.to_string(),
        }
    }
}

impl Section for DevSettings {
    const COMMAND: Option<&'static str> = Some("dev");
}

/// Runs everything until Ctrl-C.
pub async fn run(ctx: &Ctx, args: DevArgs) -> anyhow::Result<ExitCode> {
    let settings = &ctx.settings;
    let DevSettings {
        data,
        console_listen,
    } = settings.section(&args)?;
    let listener = crate::cli::console::bind(&console_listen, "--console-listen").await?;

    let mut connect = settings.connect.clone();
    let mut server = None;
    if !settings.nats_url_given {
        let s = start_server(data.join("nats")).await?;
        connect.urls = s.url();
        server = Some(s);
    }
    let result = run_with(ctx, &connect, listener).await;
    if let Some(mut s) = server {
        let _ = tokio::task::spawn_blocking(move || s.stop()).await;
    }
    result
}

/// Starts nats-server on the dev port, with a clear error when the port is taken.
async fn start_server(store_dir: PathBuf) -> anyhow::Result<LocalServer> {
    if TcpListener::bind(("127.0.0.1", DEV_PORT)).is_err() {
        anyhow::bail!(
            "port {DEV_PORT} is taken (another nats-server, or an `antares dev` already running?): \
             stop it, or use it with `antares dev --nats-url nats://127.0.0.1:{DEV_PORT}`"
        );
    }
    let dir = store_dir.clone();
    let server = tokio::task::spawn_blocking(move || {
        LocalServer::start(&ServerOptions {
            store_dir: dir,
            port: Some(DEV_PORT),
            ..ServerOptions::default()
        })
    })
    .await
    .context("the nats-server start was interrupted")?
    .with_context(|| {
        format!(
            "cannot start nats-server with its data in `{}`",
            store_dir.display()
        )
    })?;
    Ok(server)
}

async fn run_with(
    ctx: &Ctx,
    connect: &antares_nats::ConnectOptions,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<ExitCode> {
    let ns = &ctx.settings.namespace;
    let topo = Topology::new(ns).with_context(|| format!("--namespace `{ns}`"))?;
    let nats = crate::cli::connect(connect, topo).await?;
    provision(&nats, &ProvisionOptions::default()).await?;
    let admin = Admin::open(&nats).await?.acting_as(ctx.actor());
    match admin
        .create_app(DEMO_APP, "Demo jobs of `antares dev`")
        .await
    {
        Ok(_) | Err(SchedulerError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let jobs = parse_jobs(DEMO_JOBS, SpecFormat::Toml).context("the demo jobs")?;
    admin.apply_jobs(jobs).await?;
    let console = Console::open(
        &nats,
        ConsoleOptions {
            admin: AdminSeed {
                user: DEV_USER.to_string(),
                password: Some(DEV_PASSWORD.to_string()),
                reset: !ctx.settings.nats_url_given,
            },
            ..ConsoleOptions::default()
        },
    )
    .await?;
    let login = if console.seeded() == SeedOutcome::Kept {
        format!("{DEV_USER} (its password was kept)")
    } else {
        format!("{DEV_USER} / {DEV_PASSWORD}")
    };
    let console_url = format!("http://{}", listener.local_addr()?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut scheduler = tokio::spawn(antares_scheduler::run(
        nats.clone(),
        SchedulerOptions::default(),
        stopped(stop_rx.clone()),
    ));
    let worker = Worker::builder()
        .app(DEMO_APP)
        .nats(nats.clone())
        .allow_scripts(true)
        .grace(Duration::from_secs(5))
        .with_builtins()
        .build()
        .await;
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = scheduler.await;
            return Err(e.into());
        }
    };
    let mut worker = tokio::spawn(worker.run_until(stopped(stop_rx.clone())));
    let mut console = tokio::spawn(console.serve(listener, stopped(stop_rx)));

    print_banner(ctx, connect, &nats.topo, &console_url, &login);

    let (early, scheduler_done, worker_done, console_done) = tokio::select! {
        _ = stop_signal() => (None, false, false, false),
        r = &mut scheduler => (Some(ended("scheduler", r.map(|r| r.map_err(anyhow::Error::from)))), true, false, false),
        r = &mut worker => (Some(ended("worker", r.map(|r| r.map_err(anyhow::Error::from)))), false, true, false),
        r = &mut console => (Some(ended("console", r.map(|r| r.map_err(anyhow::Error::from)))), false, false, true),
    };
    eprintln!("stopping: console, worker, scheduler, then NATS ...");
    let _ = stop_tx.send(true);
    let wait = Duration::from_secs(15);
    let mut problems = Vec::new();
    if !console_done && let Ok(Ok(Err(e))) = tokio::time::timeout(wait, &mut console).await {
        problems.push(format!("console: {e}"));
    }
    if !worker_done && let Ok(Ok(Err(e))) = tokio::time::timeout(wait, &mut worker).await {
        problems.push(format!("worker: {e}"));
    }
    if !scheduler_done && let Ok(Ok(Err(e))) = tokio::time::timeout(wait, &mut scheduler).await {
        problems.push(format!("scheduler: {e}"));
    }
    let _ = nats.flush().await;
    if let Some(e) = early {
        return Err(e);
    }
    for p in problems {
        tracing::warn!("{p}");
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The error for a task that ended before Ctrl-C.
fn ended(what: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Ok(())) => anyhow::anyhow!("the {what} stopped unexpectedly"),
        Ok(Err(e)) => e.context(format!("the {what} failed")),
        Err(e) => anyhow::anyhow!("the {what} crashed: {e}"),
    }
}

/// How a person in another terminal runs this binary: `antares` when it is on `PATH`,
/// `cargo run -q --` from a build in a cargo target folder, else its full path.
fn how_to_call_me() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "antares".into();
    };
    let on_path = exe.parent().is_some_and(|dir| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == dir))
    });
    if on_path {
        "antares".into()
    } else if exe.components().any(|c| c.as_os_str() == "target") {
        "cargo run -q --".into()
    } else {
        exe.display().to_string()
    }
}

fn print_banner(
    ctx: &Ctx,
    connect: &antares_nats::ConnectOptions,
    topo: &Topology,
    console_url: &str,
    login: &str,
) {
    let mut flags = String::new();
    if connect.urls != DEFAULT_NATS_URL {
        flags.push_str(&format!(" --nats-url {}", connect.urls));
    }
    if ctx.settings.namespace != antares_schemas::topology::DEFAULT_NAMESPACE {
        flags.push_str(&format!(" --namespace {}", ctx.settings.namespace));
    }
    let url = &connect.urls;
    let server = if url == DEFAULT_NATS_URL {
        String::new()
    } else {
        format!(" --server {url}")
    };
    let subject = topo.trigger_subject(DEMO_APP, "hello");
    let me = how_to_call_me();
    // Not through `outln!`: a closed stdout must not end `dev` before it stops NATS.
    let _ = writeln!(
        std::io::stdout(),
        "\nAntares is running\n\
         \n  console:    {console_url}  (log in as {login})\
         \n  NATS:       {url}\
         \n  scheduler:  1 (in this process)\
         \n  worker:     1 for app `{DEMO_APP}`, scripts allowed\
         \n  demo jobs:  {DEMO_APP}/hello (script, 3 shards, every 5s), {DEMO_APP}/tick (sleep plugin, every 10s)\n\
         \nTry, in another terminal:\
         \n  {me}{flags} instance list\
         \n  {me}{flags} job trigger {DEMO_APP}/hello --wait\
         \n  nats{server} pub {subject} '{{\"params\":\"x\"}}'\
         \n  {me}{flags} instance logs ID\
         \n  {me}{flags} cluster\n\
         \nCtrl-C stops everything.\n"
    );
}
