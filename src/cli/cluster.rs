//! `antares cluster`.

use std::process::ExitCode;

use super::{Ctx, JsonFlag};
use crate::output::{self, Table, outln};

/// `antares cluster` flags.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    json: JsonFlag,
}

/// Shows schedulers and workers.
pub async fn run(ctx: &Ctx, args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let view = ctx.admin().await?.cluster().await?;
    if args.json.json {
        output::json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "SCHEDULERS (jobs split into {} partition(s))",
        view.partitions
    );
    if view.schedulers.is_empty() {
        outln!("none running: start one with `antares scheduler`");
    } else {
        let mut t = Table::new(&[
            "ID",
            "ROLE",
            "PARTITIONS",
            "HOST",
            "PID",
            "STARTED (UTC)",
            "LAST SEEN (UTC)",
            "VERSION",
        ]);
        for s in &view.schedulers {
            t.row(vec![
                s.id.clone(),
                if s.leader { "leader" } else { "standby" }.to_string(),
                if s.partitions.is_empty() {
                    "-".to_string()
                } else {
                    let led: Vec<String> = s.partitions.iter().map(u32::to_string).collect();
                    led.join(",")
                },
                s.host.clone(),
                s.pid.to_string(),
                output::time(s.started_at),
                output::time(s.last_seen),
                s.version.clone(),
            ]);
        }
        t.print()?;
    }
    outln!();
    outln!("WORKERS");
    if view.workers.is_empty() {
        outln!("none running: start one with `antares worker --app APP`");
    } else {
        let mut t = Table::new(&[
            "APP",
            "ID",
            "HOST",
            "PID",
            "RUNNING",
            "SCRIPTS",
            "HTTP",
            "LAST SEEN (UTC)",
            "VERSION",
            "PLUGINS",
        ]);
        for w in &view.workers {
            t.row(vec![
                w.app.clone(),
                w.id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                format!("{}/{}", w.running, w.capacity),
                if w.allow_scripts { "yes" } else { "no" }.to_string(),
                if w.http { "yes" } else { "no" }.to_string(),
                output::time(w.last_seen),
                w.version.clone(),
                w.plugins.join(","),
            ]);
        }
        t.print()?;
    }
    Ok(ExitCode::SUCCESS)
}
