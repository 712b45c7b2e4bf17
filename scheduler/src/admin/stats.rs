//! The dashboard's numbers and the jobs page's last statuses, read from what is kept
//! beside history when instances end (daily counts, job states), never from history.

use std::collections::HashSet;

use antares_nats::{codec, kv, now};
use antares_schemas::Timestamp;
use antares_schemas::names::check_name;
use antares_schemas::stats::{DayCounts, DayStats, JobState, Stats};
use futures::StreamExt;

use super::Admin;
use crate::error::SchedulerError;
use crate::store::stats::{DAY_MS, day_label, day_of, merge};

/// Most days one `stats` call covers.
pub const MAX_STATS_DAYS: u32 = 366;
/// Days read at once.
const CONCURRENT_DAYS: usize = 16;

impl Admin {
    /// Each job's last ended instance, of one app or of all, by app and job.
    pub async fn job_states(&self, app: Option<&str>) -> Result<Vec<JobState>, SchedulerError> {
        if let Some(app) = app {
            check_name("app", app)?;
        }
        let filter = self.nats.topo.jobstate_key(app.unwrap_or("*"), "*");
        let mut out = Vec::new();
        for hit in kv::scan(&self.nats, &self.buckets.jobstate, &filter, false).await? {
            match codec::decode::<JobState>("job state", &hit.value) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::warn!(key = %hit.key, error = %e, "unreadable job state skipped")
                }
            }
        }
        out.sort_by(|a, b| (&a.app, &a.job).cmp(&(&b.app, &b.job)));
        Ok(out)
    }

    /// The last `days` days (UTC, today included), oldest first, every day present:
    /// ended instances by status and their run times, summed over `apps` (all apps when
    /// `None`); with the instances not ended yet and the live workers of those apps.
    /// (`running` counts what the instances bucket holds: an instance that ended a moment
    /// ago is counted until its move to history.)
    pub async fn stats(&self, days: u32, apps: Option<&[String]>) -> Result<Stats, SchedulerError> {
        if days == 0 || days > MAX_STATS_DAYS {
            return Err(SchedulerError::Invalid(format!(
                "days = {days}: ask for 1 to {MAX_STATS_DAYS} days"
            )));
        }
        let allowed: Option<HashSet<&str>> = apps.map(|a| a.iter().map(String::as_str).collect());
        let wanted = |app: &str| allowed.as_ref().is_none_or(|a| a.contains(app));
        let topo = &self.nats.topo;
        let b = &self.buckets;
        let calendar = last_days(now(), days);
        // The filters are collected first: a lazy iterator over the borrowed calendar held
        // across the awaits makes this future not provably `Send` (a rustc limit with
        // higher-ranked lifetimes), and the console's handlers need it to be.
        let filters: Vec<String> = calendar
            .iter()
            .map(|(day, _)| topo.stats_key(*day, "*"))
            .collect();
        let reads = futures::stream::iter(filters)
            .map(|filter| async move { kv::scan(&self.nats, &b.stats, &filter, false).await })
            .buffered(CONCURRENT_DAYS)
            .collect::<Vec<_>>();
        let summaries = topo.instance_summaries_filter(None, None);
        let running = kv::scan(&self.nats, &b.instances, &summaries, true);
        let workers = kv::scan(&self.nats, &b.workers, ">", true);
        let (day_hits, running, workers) = futures::join!(reads, running, workers);
        let mut out = Stats::default();
        for ((_, label), hits) in calendar.into_iter().zip(day_hits) {
            let mut counts = DayCounts::default();
            for hit in hits? {
                let Some((_, app)) = hit.key.split_once('.') else {
                    continue;
                };
                if !wanted(app) {
                    continue;
                }
                match codec::decode::<DayCounts>("day counts", &hit.value) {
                    Ok(c) => merge(&mut counts, &c),
                    Err(e) => {
                        tracing::warn!(key = %hit.key, error = %e, "unreadable day counts skipped")
                    }
                }
            }
            out.days.push(DayStats { day: label, counts });
        }
        let app_of = |key: &str| key.split('.').next().map(str::to_string);
        out.running = count_of(running?.iter().filter_map(|h| app_of(&h.key)), &wanted);
        out.workers_online = count_of(workers?.iter().filter_map(|h| app_of(&h.key)), &wanted);
        Ok(out)
    }
}

fn count_of(apps: impl Iterator<Item = String>, wanted: &impl Fn(&str) -> bool) -> u64 {
    apps.filter(|a| wanted(a)).count() as u64
}

/// The last `days` days (UTC) up to the one `now` falls on, oldest first: each as
/// `yyyymmdd` and as `YYYY-MM-DD`.
pub fn last_days(now: Timestamp, days: u32) -> Vec<(u32, String)> {
    (0..i64::from(days))
        .rev()
        .map(|back| {
            let day = day_of(Timestamp(now.millis().saturating_sub(back * DAY_MS)));
            (day, day_label(day))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_run_oldest_first_to_today() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().expect("time");
        let days = last_days(now, 3);
        let labels: Vec<&str> = days.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, vec!["2026-02-27", "2026-02-28", "2026-03-01"]);
        assert_eq!(days[2].0, 20_260_301);
        assert_eq!(last_days(now, 366).len(), 366);
        assert_eq!(last_days(now, 366)[0].1, "2025-03-01");
    }
}
