//! The command line: global flags, commands, and what they share.

use std::process::ExitCode;

use antares_nats::{Nats, NatsError};
use antares_scheduler::admin::Admin;
use antares_schemas::Topology;
use antares_schemas::audit::{Actor, Via};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{GlobalArgs, Settings};

mod app;
mod audit;
mod cluster;
pub mod console;
mod cron;
mod instance;
mod job;
pub mod provision;
pub mod run;

/// Antares: a distributed job scheduler on NATS JetStream.
#[derive(Debug, Parser)]
#[command(
    name = "antares",
    version,
    about = "Antares: a distributed job scheduler on NATS JetStream",
    long_about = "Antares: a distributed job scheduler on NATS JetStream.\n\n\
        Try it out with `antares dev`, which runs NATS, a scheduler and a worker with demo jobs.\n\
        In production run `antares provision` once, then schedulers and workers against your NATS.\n\n\
        Every global flag is also an environment variable (ANTARES_ + the flag in upper snake case)\n\
        and a key of the --config TOML file (the flag in snake case); flag > env > file > default."
)]
pub struct Cli {
    /// Flags of every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything locally: a nats-server (unless --nats-url is given), a scheduler, a
    /// worker for app `demo` with demo jobs, and the console on 127.0.0.1:22111 (log in as
    /// admin / antares-dev); Ctrl-C stops it all
    Dev(crate::dev::DevArgs),
    /// Run one scheduler (it stands by until it holds the lease)
    Scheduler(run::SchedulerArgs),
    /// Run one worker of an app, with the built-in jobs noop, sleep and fail
    Worker(run::WorkerArgs),
    /// Run the web console: the HTTP API and the web app (log in as the admin whose
    /// password ANTARES_CONSOLE_PASSWORD gives)
    Console(console::ConsoleArgs),
    /// Create or update every stream and bucket Antares needs (safe to run again)
    Provision(provision::ProvisionArgs),
    /// Apps: groups of workers and jobs
    #[command(subcommand)]
    App(app::AppCommand),
    /// Jobs: apply from files, list, trigger, backfill, pause, versions, rollback, export
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Instances (runs of jobs): list, inspect, cancel, read logs
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Show the schedulers (and which one leads) and the live workers
    Cluster(cluster::ClusterArgs),
    /// Show the audit log: who changed what and when, newest first
    Audit(audit::AuditArgs),
    /// Cron expressions: preview fire times
    #[command(subcommand)]
    Cron(cron::CronCommand),
    /// Measure throughput against raw JetStream, and trigger-to-start latency, on the
    /// given NATS (or a local nats-server it starts when --nats-url is not given)
    Bench(crate::bench::BenchArgs),
}

impl Command {
    /// Whether it is a long-running process (which logs more).
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Self::Scheduler(_) | Self::Worker(_) | Self::Console(_)
        )
    }
}

/// What every command gets: the resolved settings.
#[derive(Debug)]
pub struct Ctx {
    /// Global settings, and the layers for a command's own.
    pub settings: Settings,
}

impl Ctx {
    /// Connects to NATS with the global settings.
    pub async fn connect(&self) -> anyhow::Result<Nats> {
        let ns = &self.settings.namespace;
        let topo = Topology::new(ns).with_context(|| format!("--namespace `{ns}`"))?;
        connect(&self.settings.connect, topo).await
    }

    /// Connects as a worker of `app`: replies arrive under the app's own inbox prefix,
    /// so per-app permissions can keep each app to its own replies.
    pub async fn connect_as_worker(&self, app: &str) -> anyhow::Result<Nats> {
        let ns = &self.settings.namespace;
        let topo = Topology::new(ns).with_context(|| format!("--namespace `{ns}`"))?;
        let mut opts = self.settings.connect.clone();
        opts.inbox_prefix = Some(topo.app_inbox_prefix(app));
        connect_with(&opts, topo, false).await
    }

    /// Connects and opens the control operations (which need a provisioned NATS),
    /// recording the changes as made by [`Self::actor`].
    pub async fn admin(&self) -> anyhow::Result<Admin> {
        let nats = self.connect().await?;
        Ok(Admin::open(&nats).await?.acting_as(self.actor()))
    }

    /// Who the CLI's changes are recorded as made by: the NATS user when `--user` is
    /// given, else the OS user, on this host.
    pub fn actor(&self) -> Actor {
        let name = self
            .settings
            .connect
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(os_user);
        Actor {
            name,
            via: Via::Cli,
            host: Some(antares_nats::process::hostname()),
        }
    }
}

/// The OS user: `$USER`, else the password database's name for our uid, else `uid N`.
fn os_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| {
            let uid = nix::unistd::getuid();
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// Connects, with an error that says what to do.
pub async fn connect(opts: &antares_nats::ConnectOptions, topo: Topology) -> anyhow::Result<Nats> {
    connect_with(opts, topo, true).await
}

/// Connects, reading the stored cluster settings unless `settings` is false (workers).
async fn connect_with(
    opts: &antares_nats::ConnectOptions,
    topo: Topology,
    settings: bool,
) -> anyhow::Result<Nats> {
    let connected = if settings {
        Nats::connect(opts, topo).await
    } else {
        Nats::connect_for_work(opts, topo).await
    };
    match connected {
        Ok(nats) => Ok(nats),
        Err(NatsError::Connect { url, message }) => {
            // The hints below replace the library's shorter ones.
            let message = message.split(" (").next().unwrap_or(&message);
            let lower = message.to_ascii_lowercase();
            let hint = if lower.contains("certificate") || lower.contains("tls") {
                if opts.tls_ca.is_some() {
                    "the server's certificate is not signed by the CA given with --tls-ca \
                     (ANTARES_TLS_CA), or not for this host name"
                } else {
                    "the server requires TLS with a certificate this machine does not trust: \
                     pass its CA certificate with --tls-ca FILE (ANTARES_TLS_CA)"
                }
            } else {
                "start a nats-server with JetStream there (or run `antares dev` for a local one), \
                 or point --nats-url (ANTARES_NATS_URL) at your server"
            };
            Err(anyhow::anyhow!(
                "cannot connect to NATS at {url}: {message}\n  {hint}"
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&cli.global)?;
    crate::init_tracing(cli.command.is_daemon(), settings.log_format);
    let ctx = Ctx { settings };
    match cli.command {
        Command::Dev(args) => crate::dev::run(&ctx, args).await,
        Command::Scheduler(args) => run::scheduler(&ctx, args).await,
        Command::Worker(args) => run::worker(&ctx, args).await,
        Command::Console(args) => console::run(&ctx, args).await,
        Command::Provision(args) => provision::run(&ctx, args).await,
        Command::App(cmd) => app::run(&ctx, cmd).await,
        Command::Job(cmd) => job::run(&ctx, cmd).await,
        Command::Instance(cmd) => instance::run(&ctx, cmd).await,
        Command::Cluster(args) => cluster::run(&ctx, args).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
        Command::Cron(cmd) => cron::run(cmd),
        Command::Bench(args) => {
            let s = &ctx.settings;
            let given = s.nats_url_given.then(|| s.connect.clone());
            crate::bench::run(args, given, &s.namespace).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--json` on listings and gets.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct JsonFlag {
    /// Print one JSON document on stdout instead of text
    #[arg(long)]
    pub json: bool,
}
