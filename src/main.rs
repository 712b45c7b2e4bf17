//! `antares`: the one binary of Antares, a distributed job scheduler on NATS JetStream.
//!
//! It runs the long-lived processes (`scheduler`, `worker`, `dev`) and is the command
//! line for operators (apps, jobs, instances, logs, the cluster, cron previews).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod bench;
mod cli;
mod config;
mod dev;
mod output;

fn main() -> ExitCode {
    let matches = config::document(cli::Cli::command()).get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.command.is_daemon());
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
/// get plain lines.
fn init_tracing(daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if daemon {
        "info,async_nats=warn"
    } else {
        "warn,async_nats=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// `error: what went wrong`, then each cause that adds something.
fn print_error(e: &anyhow::Error) {
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
