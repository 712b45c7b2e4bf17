//! `antares job ...`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use antares_scheduler::admin::{BackfillAction, BackfillSlot, Triggered};
use antares_schemas::Timestamp;
use antares_schemas::audit::{JobVersion, changed_fields};
use antares_schemas::instance::{InstanceStatus, InstanceSummary};
use antares_schemas::messages::{ShardParams, TriggerRequest};
use antares_schemas::names::split_job_ref;
use antares_schemas::spec::{JobSpec, SpecFormat, export_toml, parse_jobs};
use anyhow::Context as _;
use clap::Subcommand;

use super::{Ctx, JsonFlag};
use crate::config::parse_duration;
use crate::output::{self, Table, outln};

/// `APP/JOB` on the command line.
#[derive(Clone, Debug)]
pub struct JobRef {
    /// App name.
    pub app: String,
    /// Job name.
    pub job: String,
}

impl FromStr for JobRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.contains('/') {
            return Err(format!(
                "`{s}` is not APP/JOB (like billing/nightly-report)"
            ));
        }
        split_job_ref(s)
            .map(|(app, job)| Self { app, job })
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.job)
    }
}

/// Job commands.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create or update the jobs of a file (TOML or JSON; one job or a `[[job]]` list)
    Apply {
        /// The file; `-` reads standard input
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List jobs
    List {
        /// Only the jobs of this app
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one job (as TOML that `job apply` takes, or JSON with --json)
    Get {
        /// The job, as APP/JOB
        job: JobRef,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a job (its running instances go on)
    Delete {
        /// The job, as APP/JOB
        job: JobRef,
    },
    /// Run a job once now (also a paused one) and print the instance id
    #[command(
        after_help = "With --key, a key this job's triggers used within the last 24 h starts nothing new:\n\
        the id of the instance that used it is printed (and --wait waits for that one)."
    )]
    Trigger {
        /// The job, as APP/JOB
        job: JobRef,
        /// Parameter string for this run instead of the job's `params`
        #[arg(long)]
        params: Option<String>,
        /// Shard params for this run: "a;b;c" or a JSON array like '["a","b"]'
        #[arg(long, value_name = "PARAMS")]
        shard_params: Option<String>,
        /// Number of shards for this run
        #[arg(long, value_name = "N")]
        shards: Option<u32>,
        /// Idempotency key (1-256 bytes): another trigger of this job with the same key
        /// within 24 h starts nothing and gives the first one's instance id
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Wait for the instance to end, print its status, and exit 0 only on success
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. 30s, 10m); no limit by default
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "wait")]
        timeout: Option<Duration>,
        /// Print JSON: {"instance": ID, "existing": false}, or with --wait the ended
        /// instance (without shards)
        #[arg(long)]
        json: bool,
    },
    /// Make the instances the schedule would have made in a past time range
    #[command(after_help = BACKFILL_HELP)]
    Backfill {
        /// The job, as APP/JOB (it must have a schedule)
        job: JobRef,
        /// The first time of the range, included (RFC 3339, e.g. 2026-11-01T00:00:00Z)
        #[arg(long, value_name = "RFC3339")]
        from: Timestamp,
        /// The last time of the range, included (RFC 3339; not in the future)
        #[arg(long, value_name = "RFC3339")]
        to: Timestamp,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Pause a job's schedule (explicit triggers still run)
    Pause {
        /// The job, as APP/JOB
        job: JobRef,
    },
    /// Resume a paused job's schedule
    Resume {
        /// The job, as APP/JOB
        job: JobRef,
    },
    /// Show the kept versions of a job's spec (the last 50): when, who, what changed;
    /// with --version N, that version's spec
    #[command(after_help = VERSIONS_HELP)]
    Versions {
        /// The job, as APP/JOB
        job: JobRef,
        /// Print this version's spec, as TOML that `job apply -f` takes (or the whole
        /// version as JSON with --json)
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Print JSON: the versions newest first (an array), or with --version the one
        #[arg(long)]
        json: bool,
    },
    /// Put a kept version's spec back as the job's newest (a deleted job is made again)
    Rollback {
        /// The job, as APP/JOB
        job: JobRef,
        /// The version to put back (see `antares job versions APP/JOB`)
        #[arg(long, value_name = "N")]
        version: u64,
        /// Print the new version as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print every job (of one app) as one TOML document that `job apply -f` takes back
    Export {
        /// Only the jobs of this app
        #[arg(long)]
        app: Option<String>,
    },
}

/// What `job backfill --help` adds.
const BACKFILL_HELP: &str = "Every slot of the job's schedule from --from to --to (both included) gets the instance\n\
the schedule would have made, with the same id and trigger `backfill`; a running scheduler\n\
makes them. A slot that already has an instance (it ran, or an earlier backfill queued it) is\n\
reported as `exists` and not run again. At most 1000 slots at a time: narrow the range for more.\n\
Slots are known to have run for as long as history is kept (7 days by default); an older slot\n\
without a record is queued.\n\n\
Example: antares job backfill billing/nightly-report --from 2026-11-01T00:00:00Z --to 2026-11-07T23:59:59Z";

/// What `job versions --help` adds.
const VERSIONS_HELP: &str = "Every apply that changes a job, every pause, resume, delete and rollback is a version,\n\
numbered from 1, with who made it. CHANGED names the top-level fields that differ from the\n\
version before.\n\n\
Example: antares job versions billing/report --version 3 > old.toml   (then `job apply -f old.toml`,\n\
or put it back at once with `antares job rollback billing/report --version 3`)";

/// Runs a job command.
pub async fn run(ctx: &Ctx, cmd: JobCommand) -> anyhow::Result<ExitCode> {
    // Read the file before connecting, so a wrong path is reported as such.
    let file = match &cmd {
        JobCommand::Apply { file, .. } => Some(read_jobs(file)?),
        _ => None,
    };
    let admin = ctx.admin().await?;
    match cmd {
        JobCommand::Apply { json, .. } => {
            let jobs = file.unwrap_or_default();
            let outcomes = admin.apply_jobs(jobs).await?;
            if json.json {
                output::json(&outcomes)?;
            } else if outcomes.is_empty() {
                outln!("no jobs in the file");
            } else {
                for o in outcomes {
                    outln!("{:<9}  {}/{}", o.action.as_str(), o.app, o.job);
                }
            }
        }
        JobCommand::List { app, json } => {
            let jobs = admin.list_jobs(app.as_deref()).await?;
            if json.json {
                output::json(&jobs)?;
            } else if jobs.is_empty() {
                outln!(
                    "no jobs yet: write them in a TOML file and run `antares job apply -f FILE`"
                );
            } else {
                // The state that decides whether the schedule fires: a job of a paused
                // app is paused whatever its own flag says.
                let paused_apps: std::collections::HashSet<String> = admin
                    .list_apps()
                    .await?
                    .into_iter()
                    .filter(|a| !a.enabled)
                    .map(|a| a.name)
                    .collect();
                let mut t =
                    Table::new(&["JOB", "KIND", "SCHEDULE", "SHARDS", "STATE", "DESCRIPTION"]);
                for j in &jobs {
                    let state = if j.enabled && paused_apps.contains(&j.app) {
                        "paused (app)".to_string()
                    } else {
                        super::app::enabled(j.enabled)
                    };
                    t.row(vec![
                        j.full_name(),
                        j.kind.as_str().to_string(),
                        schedule_text(j),
                        shard_count(j),
                        state,
                        output::clip(&j.description, 50),
                    ]);
                }
                t.print()?;
            }
        }
        JobCommand::Get { job, json } => {
            let spec = admin.get_job(&job.app, &job.job).await?;
            if json.json {
                output::json(&spec)?;
            } else {
                output::write_out(&export_toml(std::slice::from_ref(&spec))?);
            }
        }
        JobCommand::Delete { job } => {
            admin.delete_job(&job.app, &job.job).await?;
            outln!("deleted job {job}");
        }
        JobCommand::Trigger {
            job,
            params,
            shard_params,
            shards,
            key,
            wait,
            timeout,
            json,
        } => {
            let req = TriggerRequest {
                params,
                shard_params: shard_params.map(|s| parse_shard_params(&s)).transpose()?,
                shards,
                key,
            };
            let triggered = admin.trigger(&job.app, &job.job, &req).await?;
            let id = triggered.id();
            if let (Triggered::KeyUsed(_), Some(key)) = (triggered, &req.key) {
                eprintln!(
                    "key `{key}` was already used within 24 h by instance {id}: nothing new was started"
                );
            }
            if !wait {
                if json {
                    output::json(&serde_json::json!({
                        "instance": id,
                        "existing": !triggered.is_new(),
                    }))?;
                } else {
                    outln!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                outln!("{id}");
            }
            let done = admin
                .wait_instance(&job.app, &job.job, &id, timeout)
                .await?;
            if json {
                output::json(&done)?;
            } else {
                outln!("{}", ended_text(&done));
            }
            if done.status != InstanceStatus::Success {
                eprintln!("see `antares instance get {id}` and `antares instance logs {id}`");
                return Ok(ExitCode::FAILURE);
            }
        }
        JobCommand::Backfill {
            job,
            from,
            to,
            json,
        } => {
            let slots = admin.backfill(&job.app, &job.job, from, to).await?;
            if json.json {
                output::json(&slots)?;
            } else {
                print_backfill(&job, &slots)?;
            }
        }
        JobCommand::Pause { job } => {
            admin.set_job_enabled(&job.app, &job.job, false).await?;
            outln!("paused job {job}: its schedule does not fire until `antares job resume {job}`");
        }
        JobCommand::Resume { job } => {
            admin.set_job_enabled(&job.app, &job.job, true).await?;
            outln!("resumed job {job}");
        }
        JobCommand::Versions {
            job,
            version: None,
            json,
        } => {
            let versions = admin.job_versions(&job.app, &job.job).await?;
            if json {
                output::json(&versions)?;
            } else {
                print_versions(&versions)?;
            }
        }
        JobCommand::Versions {
            job,
            version: Some(n),
            json,
        } => {
            let v = admin.job_version(&job.app, &job.job, n).await?;
            if json {
                output::json(&v)?;
            } else {
                let Some(spec) = &v.spec else {
                    anyhow::bail!(
                        "version {n} of job {job} is its deletion (by {}, {}), which has no spec: see the version before it",
                        v.actor,
                        output::time(v.at)
                    );
                };
                outln!(
                    "# {job}, version {n}: {} by {} at {} UTC",
                    version_action(&v),
                    v.actor,
                    output::time(v.at)
                );
                output::write_out(&export_toml(std::slice::from_ref(spec))?);
            }
        }
        JobCommand::Rollback { job, version, json } => {
            let v = admin.rollback_job(&job.app, &job.job, version).await?;
            if json {
                output::json(&v)?;
            } else {
                outln!(
                    "rolled back job {job} to the spec of version {version}: it is now version {}",
                    v.version
                );
            }
        }
        JobCommand::Export { app } => {
            output::write_out(&admin.export_jobs(app.as_deref()).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The versions of a job, newest first, as a table.
fn print_versions(versions: &[JobVersion]) -> anyhow::Result<()> {
    let mut t = Table::new(&["VERSION", "WHEN (UTC)", "WHO", "ACTION", "CHANGED"]);
    for (i, v) in versions.iter().enumerate() {
        t.row(vec![
            v.version.to_string(),
            output::time(v.at),
            v.actor.to_string(),
            version_action(v),
            changed_text(v, versions.get(i + 1)),
        ]);
    }
    t.print()
}

/// `apply`, `rollback to 3`, ...
fn version_action(v: &JobVersion) -> String {
    let action = v.action.as_str();
    match v.from_version {
        Some(from) => format!("{action} to {from}"),
        None => action.to_string(),
    }
}

/// What a version changed from the one before it (`older`, when kept).
fn changed_text(v: &JobVersion, older: Option<&JobVersion>) -> String {
    let Some(new) = &v.spec else {
        return "(deleted)".to_string();
    };
    match older {
        None if v.version == 1 => "(created)".to_string(),
        None => "-".to_string(),
        Some(JobVersion { spec: None, .. }) => "(created again)".to_string(),
        Some(JobVersion {
            spec: Some(old), ..
        }) => {
            let fields = changed_fields(old, new);
            if fields.is_empty() {
                "(nothing)".to_string()
            } else {
                fields.join(", ")
            }
        }
    }
}

/// The slots of a backfill as a table, and a summary line.
fn print_backfill(job: &JobRef, slots: &[BackfillSlot]) -> anyhow::Result<()> {
    if slots.is_empty() {
        outln!("the schedule of {job} has no slots in that range: nothing to do");
        return Ok(());
    }
    let mut t = Table::new(&["SLOT", "INSTANCE", "ACTION"]);
    for s in slots {
        t.row(vec![
            output::time(s.slot),
            s.instance.to_string(),
            s.action.as_str().to_string(),
        ]);
    }
    t.print()?;
    let queued = slots
        .iter()
        .filter(|s| s.action == BackfillAction::Queued)
        .count();
    let exists = slots.len() - queued;
    outln!(
        "{} slot(s): {queued} queued, {exists} already had an instance (not run again)",
        slots.len()
    );
    Ok(())
}

/// Reads and checks the jobs of a file (`-` = standard input).
fn read_jobs(path: &std::path::Path) -> anyhow::Result<Vec<JobSpec>> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read jobs from standard input")?;
        ("-".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read job file `{}`: {e}", path.display()))?;
        (path.display().to_string(), text)
    };
    let format = SpecFormat::guess(&name, &text);
    parse_jobs(&text, format).map_err(|e| anyhow::anyhow!("job file `{name}`: {e}"))
}

/// `"a;b"` or a JSON array of strings.
fn parse_shard_params(text: &str) -> anyhow::Result<ShardParams> {
    if text.trim_start().starts_with('[') {
        let list: Vec<String> = serde_json::from_str(text).with_context(|| {
            format!("--shard-params `{text}` starts with `[` but is not a JSON array of strings")
        })?;
        Ok(ShardParams::List(list))
    } else {
        Ok(ShardParams::Text(text.to_string()))
    }
}

/// `cron 0 0 2 * * ? (Asia/Shanghai)`, `every 10s`, `at ...`, `manual`.
fn schedule_text(j: &JobSpec) -> String {
    match &j.schedule {
        None => "manual".to_string(),
        Some(s) => {
            if let Some(cron) = &s.cron {
                match s.tz.as_deref() {
                    Some(tz) if !tz.is_empty() && tz != "UTC" => format!("{cron} ({tz})"),
                    _ => cron.clone(),
                }
            } else if let Some(every) = &s.every {
                format!("every {every}")
            } else if let Some(at) = &s.at {
                format!("at {at}")
            } else {
                "manual".to_string()
            }
        }
    }
}

/// The number of shard items a plain trigger makes.
fn shard_count(j: &JobSpec) -> String {
    j.shard_items(&TriggerRequest::default())
        .map(|items| items.len().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// `status: success (3 of 3 shards succeeded, took 1.2s)`.
pub fn ended_text(s: &InstanceSummary) -> String {
    let c = &s.shard_counts;
    let mut parts = vec![format!(
        "{} of {} shards succeeded",
        c.success, s.shard_total
    )];
    for (n, what) in [
        (c.failed, "failed"),
        (c.timed_out, "timed out"),
        (c.cancelled, "cancelled"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let took = output::elapsed(s.started_at.or(Some(s.scheduled_at)), s.finished_at);
    format!(
        "status: {} ({}; took {took})",
        s.status.as_str(),
        parts.join(", ")
    )
}
