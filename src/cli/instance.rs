//! `antares instance ...`.

use std::process::ExitCode;

use antares_scheduler::store::ListQuery;
use antares_schemas::InstanceId;
use antares_schemas::instance::{Instance, InstanceStatus, InstanceSummary};
use antares_schemas::messages::{LogLine, LogStream};
use clap::Subcommand;
use futures::StreamExt;

use super::{Ctx, JsonFlag};
use crate::output::{self, Table, outln};

/// Instance commands.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List instances, running and ended, newest first
    List {
        /// Only this app
        #[arg(long)]
        app: Option<String>,
        /// Only this job (of any app, unless --app is given too)
        #[arg(long)]
        job: Option<String>,
        /// Only this status: pending, running, success, failed, cancelled, timed_out, skipped
        #[arg(long)]
        status: Option<InstanceStatus>,
        /// At most this many (1 to 1000; page on with --before)
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Only instances older than this one (the last id of the previous page)
        #[arg(long, value_name = "ID")]
        before: Option<InstanceId>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one instance with its shards
    Get {
        /// Instance id
        id: InstanceId,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Stop a running instance: pending shards never start, running ones are told to stop
    Cancel {
        /// Instance id
        id: InstanceId,
    },
    /// Print an instance's log lines
    Logs {
        /// Instance id
        id: InstanceId,
        /// Only this shard item
        #[arg(long, value_name = "N")]
        shard: Option<u32>,
        /// Keep printing new lines until the instance ends
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// Runs an instance command.
pub async fn run(ctx: &Ctx, cmd: InstanceCommand) -> anyhow::Result<ExitCode> {
    let admin = ctx.admin().await?;
    match cmd {
        InstanceCommand::List {
            app,
            job,
            status,
            limit,
            before,
            json,
        } => {
            let q = ListQuery {
                app,
                job,
                status,
                limit,
                before,
            };
            let list = admin.list_instances(&q).await?;
            if json.json {
                output::json(&list)?;
            } else if list.is_empty() {
                outln!("no instances");
            } else {
                print_list(&list)?;
            }
        }
        InstanceCommand::Get { id, json } => {
            let instance = admin.get_instance(&id).await?;
            if json.json {
                output::json(&instance)?;
            } else {
                print_instance(&instance)?;
            }
        }
        InstanceCommand::Cancel { id } => {
            let was = admin.cancel_instance(&id).await?;
            outln!(
                "asked to cancel instance {id} of {}/{} (it was {})",
                was.app,
                was.job,
                was.status.as_str()
            );
        }
        InstanceCommand::Logs { id, shard, follow } => {
            let mut lines = admin.logs(&id, shard, follow).await?;
            while let Some(line) = lines.next().await {
                outln!("{}", log_text(&line?));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(list: &[InstanceSummary]) -> anyhow::Result<()> {
    let mut t = Table::new(&[
        "ID",
        "JOB",
        "TRIGGER",
        "STATUS",
        "SCHEDULED (UTC)",
        "TOOK",
        "SHARDS OK",
    ]);
    for s in list {
        let c = &s.shard_counts;
        let mut shards = format!("{}/{}", c.success, s.shard_total);
        if c.failed + c.timed_out > 0 {
            shards.push_str(&format!(" ({} failed)", c.failed + c.timed_out));
        }
        t.row(vec![
            s.id.to_string(),
            format!("{}/{}", s.app, s.job),
            s.trigger.as_str().to_string(),
            s.status.as_str().to_string(),
            output::time(s.scheduled_at),
            output::elapsed(s.started_at, s.finished_at),
            shards,
        ]);
    }
    t.print()
}

fn print_instance(i: &Instance) -> anyhow::Result<()> {
    let s = &i.summary;
    let opt = |t: Option<antares_schemas::Timestamp>| {
        t.map_or_else(|| "-".to_string(), |t| t.to_string())
    };
    outln!("id:            {}", s.id);
    outln!("job:           {}/{}", s.app, s.job);
    outln!("trigger:       {}", s.trigger.as_str());
    outln!("status:        {}", s.status.as_str());
    outln!("scheduled at:  {}", s.scheduled_at);
    outln!("started at:    {}", opt(s.started_at));
    outln!("finished at:   {}", opt(s.finished_at));
    outln!(
        "took:          {}",
        output::elapsed(s.started_at, s.finished_at)
    );
    outln!(
        "params:        {}",
        if s.params.is_empty() { "-" } else { &s.params }
    );
    outln!("shards:        {}", s.shard_total);
    outln!();
    let mut t = Table::new(&[
        "ITEM",
        "STATUS",
        "WORKER",
        "ATTEMPTS",
        "STARTED (UTC)",
        "TOOK",
        "PARAM",
        "ERROR",
    ]);
    for sh in &i.shards {
        let status = serde_json::to_value(sh.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        t.row(vec![
            sh.item.to_string(),
            status,
            sh.worker.clone().unwrap_or_else(|| "-".to_string()),
            sh.attempts.to_string(),
            output::opt_time(sh.started_at),
            output::elapsed(sh.started_at, sh.finished_at),
            output::clip(&sh.param, 30),
            sh.error
                .as_deref()
                .map_or_else(|| "-".to_string(), |e| output::clip(e, 80)),
        ]);
    }
    t.print()
}

/// `2026-01-12T12:00:00.123Z [shard 0] line`.
fn log_text(l: &LogLine) -> String {
    let mut tag = format!("shard {}", l.item);
    if l.attempt > 1 {
        tag.push_str(&format!(", attempt {}", l.attempt));
    }
    if l.stream == LogStream::Stderr {
        tag.push_str(", stderr");
    }
    format!("{} [{tag}] {}", l.at, l.line)
}
