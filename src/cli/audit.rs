//! `antares audit`: the audit log, newest first.

use std::process::ExitCode;

use antares_schemas::limits::MAX_LIST_LIMIT;

use super::{Ctx, JsonFlag};
use crate::output::{self, Table, outln};

/// `antares audit` flags.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Every change made through the command line or the console is one entry: apps, jobs,\n\
    triggers, backfills, cancels, console users and tokens. Page back with --before and the\n\
    last ID of the previous page."
)]
pub struct AuditArgs {
    /// Only the changes of this app (repeat for several)
    #[arg(long, value_name = "APP")]
    pub app: Vec<String>,
    /// At most this many entries (1-1000)
    #[arg(long, short = 'n', default_value_t = 50, value_parser = parse_limit)]
    pub limit: usize,
    /// Only entries older than this one (the last ID of the previous page)
    #[arg(long, value_name = "ID")]
    pub before: Option<u64>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// A limit from 1 to [`MAX_LIST_LIMIT`].
fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a number from 1 to {MAX_LIST_LIMIT}"
        )),
    }
}

/// Runs `antares audit`.
pub async fn run(ctx: &Ctx, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let admin = ctx.admin().await?;
    let apps = (!args.app.is_empty()).then_some(args.app.as_slice());
    let entries = admin.audit_log(args.limit, args.before, apps).await?;
    if args.json.json {
        output::json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        outln!("no changes recorded");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["ID", "WHEN (UTC)", "WHO", "ACTION", "TARGET"]);
    for e in &entries {
        t.row(vec![
            e.id.to_string(),
            output::time(e.at),
            e.actor.to_string(),
            e.action.clone(),
            e.target.clone(),
        ]);
    }
    t.print()?;
    if entries.len() == args.limit
        && let Some(last) = entries.last()
    {
        let apps: String = args.app.iter().map(|a| format!(" --app {a}")).collect();
        outln!(
            "older entries: antares audit{apps} --limit {} --before {}",
            args.limit,
            last.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
