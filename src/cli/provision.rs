//! `antares provision`.

use std::process::ExitCode;
use std::time::Duration;

use antares_nats::provision::{ProvisionOptions, provision};

use super::Ctx;
use crate::config::{file_duration, parse_duration};
use crate::output::outln;

/// `antares provision` flags.
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// Replicas of every stream and bucket: 1 on a single server, 3 on a cluster
    /// [default: 1]
    #[arg(long, env = "ANTARES_REPLICAS", value_name = "N")]
    replicas: Option<usize>,
    /// How long ended instances are kept [default: 7d]
    #[arg(long, env = "ANTARES_HISTORY_RETENTION", value_name = "DURATION", value_parser = parse_duration)]
    history_retention: Option<Duration>,
    /// How long log lines are kept [default: 7d]
    #[arg(long, env = "ANTARES_LOG_RETENTION", value_name = "DURATION", value_parser = parse_duration)]
    log_retention: Option<Duration>,
}

/// Creates or updates every stream and bucket.
pub async fn run(ctx: &Ctx, args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    let file = &ctx.settings.file;
    let defaults = ProvisionOptions::default();
    let opts = ProvisionOptions {
        replicas: args.replicas.or(file.replicas).unwrap_or(defaults.replicas),
        history_retention: match args.history_retention {
            Some(d) => d,
            None => file_duration(
                "history_retention",
                file.history_retention.as_ref(),
                defaults.history_retention,
            )?,
        },
        log_retention: match args.log_retention {
            Some(d) => d,
            None => file_duration(
                "log_retention",
                file.log_retention.as_ref(),
                defaults.log_retention,
            )?,
        },
        ..defaults
    };
    let nats = ctx.connect().await?;
    let report = provision(&nats, &opts).await?;
    outln!(
        "provisioned namespace `{}` with {} replica(s): history kept {}, logs kept {}",
        nats.topo.namespace(),
        opts.replicas,
        short(opts.history_retention),
        short(opts.log_retention),
    );
    outln!("streams: {}", report.streams.join(", "));
    outln!("buckets: {}", report.buckets.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// `7d`, `36h`, `90m`, `45s`: the largest unit that divides it.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        humantime::format_duration(d).to_string()
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
