//! `antares app ...`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Ctx, JsonFlag};
use crate::output::{self, Table, outln};

/// App commands.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app
    Create {
        /// App name: 1-64 characters of a-z, 0-9, `_` and `-`
        app: String,
        /// What the app is for
        #[arg(long, short = 'd', default_value = "")]
        description: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List apps
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one app
    Get {
        /// App name
        app: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete an app (it must have no jobs left)
    Delete {
        /// App name
        app: String,
    },
    /// Pause every schedule of an app (explicit triggers still run)
    Pause {
        /// App name
        app: String,
    },
    /// Resume the schedules of a paused app
    Resume {
        /// App name
        app: String,
    },
}

/// Runs an app command.
pub async fn run(ctx: &Ctx, cmd: AppCommand) -> anyhow::Result<ExitCode> {
    let admin = ctx.admin().await?;
    match cmd {
        AppCommand::Create {
            app,
            description,
            json,
        } => {
            let created = admin.create_app(&app, &description).await?;
            if json.json {
                output::json(&created)?;
            } else {
                outln!("created app {app}");
            }
        }
        AppCommand::List { json } => {
            let apps = admin.list_apps().await?;
            if json.json {
                output::json(&apps)?;
            } else if apps.is_empty() {
                outln!("no apps yet: create one with `antares app create NAME`");
            } else {
                let mut jobs: BTreeMap<String, usize> = BTreeMap::new();
                for job in admin.list_jobs(None).await? {
                    *jobs.entry(job.app).or_default() += 1;
                }
                let mut t = Table::new(&["APP", "STATE", "JOBS", "CREATED (UTC)", "DESCRIPTION"]);
                for a in apps {
                    t.row(vec![
                        a.name.clone(),
                        enabled(a.enabled),
                        jobs.get(&a.name).copied().unwrap_or(0).to_string(),
                        output::time(a.created_at),
                        output::clip(&a.description, 60),
                    ]);
                }
                t.print()?;
            }
        }
        AppCommand::Get { app, json } => {
            let a = admin.get_app(&app).await?;
            if json.json {
                output::json(&a)?;
            } else {
                let jobs = admin.list_jobs(Some(&app)).await?;
                outln!("app:          {}", a.name);
                outln!("state:        {}", enabled(a.enabled));
                outln!("created:      {}", a.created_at);
                outln!("description:  {}", a.description);
                let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
                outln!(
                    "jobs:         {}",
                    if names.is_empty() {
                        "-".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
        AppCommand::Delete { app } => {
            admin.delete_app(&app).await?;
            outln!("deleted app {app}");
        }
        AppCommand::Pause { app } => {
            admin.set_app_enabled(&app, false).await?;
            outln!("paused app {app}: its schedules do not fire until `antares app resume {app}`");
        }
        AppCommand::Resume { app } => {
            admin.set_app_enabled(&app, true).await?;
            outln!("resumed app {app}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `enabled` / `paused`.
pub fn enabled(on: bool) -> String {
    if on { "enabled" } else { "paused" }.to_string()
}
