//! `antares cron ...`: cron previews, no NATS needed.

use std::process::ExitCode;

use antares_scheduler::admin::cron_next;
use antares_schemas::Timestamp;
use antares_schemas::cron::parse_tz;
use chrono_tz::Tz;
use clap::Subcommand;

use super::JsonFlag;
use crate::output::{self, outln};

/// Cron commands.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Print the next fire times of a cron expression, or why it is not valid
    #[command(
        after_help = "Dialects: 5 fields are Unix cron (minute hour day-of-month month day-of-week);\n\
        6 or 7 fields are Quartz (second first, optional year; `?`, `L`, `W`, `#` allowed).\n\
        Examples: '*/15 * * * *', '0 0 2 * * ?', '0 0 12 ? * MON#2', '@daily'"
    )]
    Next {
        /// The expression (quote it)
        expr: String,
        /// IANA time zone the expression is read in, e.g. Europe/Berlin
        #[arg(long, default_value = "UTC", value_parser = time_zone)]
        tz: Tz,
        /// How many fire times (1 to 1000)
        #[arg(short = 'n', long = "count", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        n: u16,
        /// Start after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z) instead of now
        #[arg(long, value_name = "RFC3339")]
        after: Option<Timestamp>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Checks a time zone name.
fn time_zone(name: &str) -> Result<Tz, String> {
    parse_tz(name).map_err(|e| e.to_string())
}

/// Runs a cron command.
pub fn run(cmd: CronCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CronCommand::Next {
            expr,
            tz,
            n,
            after,
            json,
        } => {
            let times = cron_next(&expr, tz.name(), usize::from(n), after)?;
            if json.json {
                output::json(&times)?;
            } else if times.is_empty() {
                outln!("no fire times after that: the schedule has ended");
            } else {
                for t in times {
                    let local = t.to_datetime().with_timezone(&tz);
                    if tz == Tz::UTC {
                        outln!("{t}  {}", local.format("%a"));
                    } else {
                        outln!("{t}  {}", local.format("%Y-%m-%d %H:%M:%S %Z (%a)"));
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
