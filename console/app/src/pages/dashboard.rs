//! The dashboard: runs per day by status over two weeks, success rate, what runs now,
//! workers online, and the latest failures; refreshed as lifecycle events arrive.

use std::time::Duration;

use antares_schemas::instance::{InstanceStatus, InstanceSummary};
use antares_schemas::messages::EventKind;
use antares_schemas::stats::Stats;
use leptos::prelude::*;

use crate::api;
use crate::components::day_chart::DayChart;
use crate::components::loaded::loaded;
use crate::events::on_event;
use crate::format;

/// Days the chart covers.
const DAYS: u32 = 14;

/// The dashboard page.
#[component]
pub fn Dashboard() -> impl IntoView {
    let stats = LocalResource::new(|| async {
        api::get::<Stats>(&format!("/api/stats?days={DAYS}")).await
    });
    let failures = LocalResource::new(|| {
        api::get::<Vec<InstanceSummary>>("/api/instances?status=failed&limit=10")
    });
    on_event(
        |e| {
            matches!(
                e.kind,
                EventKind::InstanceStarted | EventKind::InstanceFinished
            )
        },
        Duration::from_secs(2),
        move || {
            stats.refetch();
            failures.refetch();
        },
    );
    view! {
        <h1>"Dashboard"</h1>
        {loaded(stats, |s| view! { <Summary stats=s/> })}
        <section class="card">
            <h2>"Recent failures"</h2>
            {loaded(failures, |list| view! { <Failures list/> })}
        </section>
    }
}

#[component]
fn Summary(stats: Stats) -> impl IntoView {
    let ended: u64 = stats.days.iter().map(|d| d.counts.total()).sum();
    let count = |st: InstanceStatus| -> u64 {
        stats
            .days
            .iter()
            .filter_map(|d| d.counts.by_status.get(&st))
            .sum()
    };
    let success = count(InstanceStatus::Success);
    let failed = count(InstanceStatus::Failed) + count(InstanceStatus::TimedOut);
    let duration_sum: u64 = stats.days.iter().map(|d| d.counts.duration_ms_sum).sum();
    let mean = duration_sum
        .checked_div(ended)
        .map_or_else(|| "—".to_string(), format::duration_ms);
    let chart = if ended == 0 {
        view! {
            <p class="empty" data-test="no-runs">
                "No runs in the last " {DAYS} " days. Run a job from its page ("
                <a href="/apps">"Apps"</a> "), or with " <code>"antares job trigger APP/JOB"</code> "."
            </p>
        }
        .into_any()
    } else {
        view! { <DayChart days=stats.days.clone()/> }.into_any()
    };
    view! {
        <div class="tiles">
            <div class="tile" data-test="tile-runs">
                <span class="tile-value">{ended}</span>
                <span class="tile-label">"runs in " {DAYS} " days"</span>
            </div>
            <div class="tile" data-test="tile-success-rate">
                <span class="tile-value">{format::percent(success, ended)}</span>
                <span class="tile-label">"succeeded (" {failed} " failed)"</span>
            </div>
            <a class="tile" href="/instances?status=running" data-test="tile-running">
                <span class="tile-value">{stats.running}</span>
                <span class="tile-label">"running now"</span>
            </a>
            <a class="tile" href="/cluster" data-test="tile-workers">
                <span class="tile-value">{stats.workers_online}</span>
                <span class="tile-label">"workers online"</span>
            </a>
            <div class="tile">
                <span class="tile-value">{mean}</span>
                <span class="tile-label">"mean run time"</span>
            </div>
        </div>
        <section class="card">
            <h2>"Runs per day"</h2>
            {chart}
        </section>
    }
}

#[component]
fn Failures(list: Vec<InstanceSummary>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="empty">"No failed runs kept in history. Good."</p> }.into_any();
    }
    let now = format::now_ms();
    let rows = list
        .into_iter()
        .map(|i| {
            let id = i.id.to_string();
            let href = format!("/instances/{id}");
            let job_href = format!("/apps/{}/jobs/{}", i.app, i.job);
            let when = i.finished_at.unwrap_or(i.scheduled_at);
            view! {
                <tr>
                    <td><a href=href class="mono">{id}</a></td>
                    <td><a href=job_href>{format!("{}/{}", i.app, i.job)}</a></td>
                    <td title=format::time(when)>{format::relative(when.millis(), now)}</td>
                    <td class="wrap">{i.reason.unwrap_or_default()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table data-test="failures">
                <thead>
                    <tr><th>"Instance"</th><th>"Job"</th><th>"When"</th><th>"Why"</th></tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <p><a href="/instances?status=failed">"All failed runs →"</a></p>
    }
    .into_any()
}
