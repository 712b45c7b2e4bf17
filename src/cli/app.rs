//! `antares app ...`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use antares_nats::permissions::worker_permissions;
use antares_schemas::names::{check_name, check_worker_id};
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
    /// Delete an app (it must have no jobs left, unless `--with-jobs`), with its consumer
    /// and every shard item still queued for it
    Delete {
        /// App name
        app: String,
        /// Delete the app's jobs too (each recorded as a `job delete`; running instances
        /// go on to their end)
        #[arg(long)]
        with_jobs: bool,
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
    /// Print the NATS permissions of an app's workers: a `users` entry of a nats-server
    /// configuration (see nats/config/README.md); connects to nothing
    Permissions {
        /// App name
        app: String,
        /// Id of each worker of the app (repeat or separate with commas): each has a
        /// consumer of its own, which a wildcard cannot name
        #[arg(
            long = "worker",
            value_name = "ID",
            value_delimiter = ',',
            required = true
        )]
        workers: Vec<String>,
        /// NATS user name of the app's workers (default `worker-<app>`)
        #[arg(long, value_name = "NAME")]
        nats_user: Option<String>,
    },
}

/// The permissions entry of `app`'s workers, the password read from the server's
/// environment variable `ATS_WORKER_<APP>_PASSWORD`.
fn permissions(
    ns: &str,
    app: &str,
    workers: &[String],
    user: Option<String>,
) -> anyhow::Result<String> {
    let topo = antares_schemas::Topology::new(ns)?;
    check_name("app", app)?;
    for w in workers {
        check_worker_id(w)?;
    }
    let ids: Vec<&str> = workers.iter().map(String::as_str).collect();
    let user = user.unwrap_or_else(|| format!("worker-{app}"));
    let var = format!(
        "$ATS_WORKER_{}_PASSWORD",
        app.to_ascii_uppercase().replace('-', "_")
    );
    Ok(worker_permissions(&topo, app, &ids).user_conf(&user, &var, 0))
}

/// Runs an app command.
pub async fn run(ctx: &Ctx, cmd: AppCommand) -> anyhow::Result<ExitCode> {
    // Every command but `permissions` works on the apps there are.
    let admin = async || ctx.admin().await;
    match cmd {
        AppCommand::Permissions {
            app,
            workers,
            nats_user,
        } => {
            let conf = permissions(&ctx.settings.namespace, &app, &workers, nats_user)?;
            outln!("{}", conf.trim_end());
        }
        AppCommand::Create {
            app,
            description,
            json,
        } => {
            let created = admin().await?.create_app(&app, &description).await?;
            if json.json {
                output::json(&created)?;
            } else {
                outln!("created app {app}");
            }
        }
        AppCommand::List { json } => {
            let admin = admin().await?;
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
            let admin = admin().await?;
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
        AppCommand::Delete { app, with_jobs } => {
            let admin = admin().await?;
            if with_jobs {
                let jobs = admin.delete_app_and_jobs(&app).await?;
                outln!("deleted app {app} and its {jobs} job(s)");
            } else {
                admin.delete_app(&app).await?;
                outln!("deleted app {app}");
            }
        }
        AppCommand::Pause { app } => {
            admin().await?.set_app_enabled(&app, false).await?;
            outln!("paused app {app}: its schedules do not fire until `antares app resume {app}`");
        }
        AppCommand::Resume { app } => {
            admin().await?.set_app_enabled(&app, true).await?;
            outln!("resumed app {app}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `enabled` / `paused`.
pub fn enabled(on: bool) -> String {
    if on { "enabled" } else { "paused" }.to_string()
}
