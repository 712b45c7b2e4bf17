//! `antares`: the one binary of Antares, a distributed job scheduler on NATS JetStream.
//!
//! It runs the long-lived processes (`scheduler`, `worker`, `dev`) and is the command
//! line for operators (apps, jobs, instances, logs, the cluster, cron previews).

// Doc comments of the command line are its `--help`, where `<placeholders>` are meant.
#![allow(rustdoc::invalid_html_tags)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod bench;
mod cli;
mod config;
mod dev;
mod metrics_http;
mod output;

/// Every process of Antares allocates many small, short-lived buffers on several threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = config::document(cli::Cli::command()).get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `info` for the long-running commands, only warnings for the others;
/// `RUST_LOG` overrides. Colour only when stderr is a terminal, so files and collectors
/// get plain lines; `--log-format json` writes one JSON object per line.
pub fn init_tracing(daemon: bool, format: config::LogFormat) {
    let _ = LOG_FORMAT.set(format);
    use tracing_subscriber::EnvFilter;
    let default = if daemon {
        "info,async_nats=warn"
    } else {
        "warn,async_nats=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        config::LogFormat::Json => builder.json().with_current_span(true).try_init(),
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// The log format chosen, once settings are read (text until then).
static LOG_FORMAT: std::sync::OnceLock<config::LogFormat> = std::sync::OnceLock::new();

/// `error: what went wrong`, then each cause that adds something; with `--log-format
/// json`, one JSON log line instead, so a collector reads the reason a process ended.
fn print_error(e: &anyhow::Error) {
    if LOG_FORMAT.get() == Some(&config::LogFormat::Json) {
        tracing::error!(error = format!("{e:#}"), "exiting");
        return;
    }
    let mut shown = e.to_string();
    eprintln!("error: {shown}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown = text;
        }
    }
}
