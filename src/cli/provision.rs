//! `antares provision`.

use std::process::ExitCode;
use std::time::Duration;

use antares_nats::provision::{ProvisionOptions, provision};
use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::config::{Section, format_duration};
use crate::output::outln;

/// `antares provision` flags (each also `ANTARES_*` and a config file key; see
/// [`ProvisionSettings`] for their types and defaults).
#[derive(Debug, clap::Args, Serialize)]
pub struct ProvisionArgs {
    /// Replicas of every stream and bucket: 1 on a single server, 3 on a cluster
    #[arg(long, value_name = "N")]
    replicas: Option<String>,
    /// How long ended instances are kept
    #[arg(long, value_name = "DURATION")]
    history_retention: Option<String>,
    /// How long log lines are kept
    #[arg(long, value_name = "DURATION")]
    log_retention: Option<String>,
    /// How many partitions the jobs are split into (each led by one scheduler; default:
    /// keep the stored number, 1 at first). Changing it needs every scheduler stopped
    /// and the trigger and result queues empty
    #[arg(long, value_name = "N")]
    partitions: Option<String>,
    /// Largest size in bytes of each work queue (triggers, shard items, results); a full
    /// queue refuses new messages and keeps what it holds
    #[arg(long, value_name = "BYTES")]
    queue_max_bytes: Option<String>,
    /// Largest size in bytes of each catalog bucket (apps, jobs, versions, cursors, job
    /// states, users, tokens); a full bucket refuses writes
    #[arg(long, value_name = "BYTES")]
    catalog_max_bytes: Option<String>,
    /// Largest size in bytes of the log stream, oldest lines dropped first (0: kept by
    /// age alone)
    #[arg(long, value_name = "BYTES")]
    log_max_bytes: Option<String>,
    /// Keep every event in stream ATS_EVENTS for this long (1 GiB at most, oldest
    /// first), for integrations that must not miss one; 0 deletes the stream (default:
    /// leave it as it is, none at first)
    #[arg(long, value_name = "DURATION")]
    events_retention: Option<String>,
}

/// `antares provision` settings, resolved.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisionSettings {
    /// `--replicas`.
    pub replicas: usize,
    /// `--history-retention`.
    #[serde(with = "crate::config::duration")]
    pub history_retention: Duration,
    /// `--log-retention`.
    #[serde(with = "crate::config::duration")]
    pub log_retention: Duration,
    /// `--partitions` (none: keep the stored number).
    pub partitions: Option<u32>,
    /// `--queue-max-bytes`.
    pub queue_max_bytes: i64,
    /// `--catalog-max-bytes`.
    pub catalog_max_bytes: i64,
    /// `--log-max-bytes`.
    pub log_max_bytes: i64,
    /// `--events-retention` (none: leave the events stream as it is).
    #[serde(default, with = "crate::config::optional_duration")]
    pub events_retention: Option<Duration>,
}

impl Default for ProvisionSettings {
    fn default() -> Self {
        let d = ProvisionOptions::default();
        Self {
            replicas: d.replicas,
            history_retention: d.history_retention,
            log_retention: d.log_retention,
            partitions: None,
            queue_max_bytes: d.queue_max_bytes,
            catalog_max_bytes: d.catalog_max_bytes,
            log_max_bytes: d.log_max_bytes,
            events_retention: None,
        }
    }
}

impl Section for ProvisionSettings {
    const COMMAND: Option<&'static str> = Some("provision");
}

/// Creates or updates every stream and bucket.
pub async fn run(ctx: &Ctx, args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    let s: ProvisionSettings = ctx.settings.section(&args)?;
    let opts = ProvisionOptions {
        replicas: s.replicas,
        history_retention: s.history_retention,
        log_retention: s.log_retention,
        partitions: s.partitions,
        queue_max_bytes: s.queue_max_bytes,
        catalog_max_bytes: s.catalog_max_bytes,
        log_max_bytes: s.log_max_bytes,
        events_retention: s.events_retention,
        ..ProvisionOptions::default()
    };
    let nats = ctx.connect().await?;
    let report = provision(&nats, &opts).await?;
    outln!(
        "provisioned namespace `{}` with {} replica(s), jobs split into {} partition(s): history kept {}, logs kept {}",
        nats.topo.namespace(),
        opts.replicas,
        report.partitions,
        format_duration(opts.history_retention),
        format_duration(opts.log_retention),
    );
    outln!("streams: {}", report.streams.join(", "));
    outln!(
        "limits: each work queue {} bytes, each catalog bucket {} bytes, logs {}",
        opts.queue_max_bytes,
        opts.catalog_max_bytes,
        if opts.log_max_bytes > 0 {
            format!("{} bytes", opts.log_max_bytes)
        } else {
            "by age".to_string()
        }
    );
    match s.events_retention {
        Some(age) if !age.is_zero() => outln!(
            "events: kept {} in stream {}",
            format_duration(age),
            nats.topo.events_stream()
        ),
        Some(_) => outln!(
            "events: not kept (stream {} deleted)",
            nats.topo.events_stream()
        ),
        None => {}
    }
    outln!("buckets: {}", report.buckets.join(", "));
    if !report.consumers.is_empty() {
        outln!("app consumers: {}", report.consumers.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
