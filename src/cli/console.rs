//! `antares console`: the web console (HTTP API and single-page app).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use antares_console::{AdminSeed, Assets, Console, ConsoleOptions, SeedOutcome};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::config::Section;

/// `antares console` flags (each also `ANTARES_*` and a config file key; see
/// [`ConsoleSettings`] for their types and defaults).
#[derive(Debug, clap::Args, Serialize)]
#[command(
    after_help = "The first admin: at start, user `console_user` is created as an admin with the password\n\
    of ANTARES_CONSOLE_PASSWORD (or `console_password` in the --config file; never a flag), or\n\
    has its password reset to it. Without one, an admin must exist already."
)]
pub struct ConsoleArgs {
    /// Address to serve on (HOST:PORT)
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// How long a login lasts
    #[arg(long, value_name = "DURATION")]
    session_ttl: Option<String>,
    /// Mark the session cookie Secure (when the console is reached over HTTPS through a
    /// proxy; set anyway for requests the proxy marks X-Forwarded-Proto: https)
    #[arg(long)]
    secure_cookie: bool,
    /// Name of the first admin, made or reset at start from the configured password
    #[arg(long, value_name = "USER")]
    console_user: Option<String>,
    /// Folder of the web app's files (default: the files built into this binary, or
    /// console/dist of the source tree in a debug build)
    #[arg(long, value_name = "DIR")]
    assets: Option<PathBuf>,
}

/// `antares console` settings, resolved.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConsoleSettings {
    /// `--listen`.
    pub listen: String,
    /// `--session-ttl`.
    #[serde(with = "crate::config::duration")]
    pub session_ttl: Duration,
    /// `--secure-cookie`.
    pub secure_cookie: bool,
    /// `--console-user`.
    pub console_user: String,
    /// The first admin's password: environment or config file only.
    pub console_password: Option<String>,
    /// `--assets`.
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub assets: Option<PathBuf>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            listen: antares_console::DEFAULT_LISTEN.to_string(),
            session_ttl: antares_console::DEFAULT_SESSION_TTL,
            secure_cookie: false,
            console_user: antares_console::DEFAULT_ADMIN.to_string(),
            console_password: None,
            assets: None,
        }
    }
}

impl Section for ConsoleSettings {
    const COMMAND: Option<&'static str> = Some("console");
    const NO_FLAG: &'static [&'static str] = &["console_password"];
}

impl ConsoleSettings {
    /// The console's options.
    pub fn options(&self) -> ConsoleOptions {
        ConsoleOptions {
            session_ttl: self.session_ttl,
            secure_cookie: self.secure_cookie,
            admin: AdminSeed {
                user: self.console_user.clone(),
                password: self.console_password.clone().filter(|p| !p.is_empty()),
                reset: true,
            },
            assets: self.assets.clone().map_or(Assets::Embedded, Assets::Dir),
        }
    }
}

/// Binds the address, with an error that says what to do when it is taken.
pub async fn bind(addr: &str, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (taken by another process?): pick another with {flag}")
    })
}

/// Runs the console until Ctrl-C or SIGTERM.
pub async fn run(ctx: &Ctx, args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let s: ConsoleSettings = ctx.settings.section(&args)?;
    if let Some(dir) = &s.assets
        && !dir.is_dir()
    {
        anyhow::bail!("--assets `{}` is not a folder", dir.display());
    }
    let listener = bind(&s.listen, "--listen").await?;
    let nats = ctx.connect().await?;
    let console = Console::open(&nats, s.options()).await?;
    match console.seeded() {
        SeedOutcome::Created => tracing::info!(user = %s.console_user, "admin user created"),
        SeedOutcome::Updated => {
            tracing::info!(user = %s.console_user, "admin user's password reset to the configured one")
        }
        _ => {}
    }
    tracing::info!("console on http://{}", listener.local_addr()?);
    console
        .serve(listener, antares_nats::process::stop_signal())
        .await?;
    tracing::info!("console stopped");
    Ok(ExitCode::SUCCESS)
}
