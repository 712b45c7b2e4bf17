//! The cluster: schedulers (the lease holder marked) and workers with their last
//! heartbeat, capacity and load. Heartbeats are not lifecycle events, so the page
//! reloads every few seconds while it is open.

use std::time::Duration;

use antares_schemas::cluster::{ClusterView, SchedulerInfo, WorkerInfo};
use leptos::prelude::*;

use crate::api;
use crate::components::loaded::loaded;
use crate::format;

/// The cluster page.
#[component]
pub fn Cluster() -> impl IntoView {
    let cluster = LocalResource::new(|| api::get::<ClusterView>("/api/cluster"));
    if let Ok(handle) = set_interval_with_handle(move || cluster.refetch(), Duration::from_secs(5))
    {
        on_cleanup(move || handle.clear());
    }
    view! {
        <h1>"Cluster"</h1>
        {loaded(cluster, |c| view! {
            <section class="card">
                <h2>"Schedulers"</h2>
                <Schedulers list=c.schedulers/>
            </section>
            <section class="card">
                <h2>"Workers"</h2>
                <Workers list=c.workers/>
            </section>
        })}
    }
}

#[component]
fn Schedulers(list: Vec<SchedulerInfo>) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p class="empty" data-test="no-schedulers">
                "No scheduler is running: nothing fires until one starts (" <code>"antares scheduler"</code> ")."
            </p>
        }
        .into_any();
    }
    let now = format::now_ms();
    let rows = list
        .into_iter()
        .map(|s| {
            let partitions = if s.partitions.is_empty() {
                "—".to_string()
            } else {
                s.partitions.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            };
            view! {
                <tr data-test="scheduler-row" class:leader=s.leader>
                    <td class="mono">{s.id.clone()}</td>
                    <td>
                        {if s.leader {
                            view! { <span class="badge status-success" data-test="leader">"★ lease holder"</span> }.into_any()
                        } else {
                            view! { <span class="badge">"standby"</span> }.into_any()
                        }}
                    </td>
                    <td>{partitions}</td>
                    <td>{format!("{} (pid {})", s.host, s.pid)}</td>
                    <td title=format::time(s.last_seen)>{format::relative(s.last_seen.millis(), now)}</td>
                    <td title=format::time(s.started_at)>{format::relative(s.started_at.millis(), now)}</td>
                    <td>{s.version.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table data-test="schedulers">
                <thead>
                    <tr>
                        <th>"Id"</th><th>"Role"</th><th>"Partitions"</th><th>"Host"</th>
                        <th>"Last seen"</th><th>"Up since"</th><th>"Version"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn Workers(list: Vec<WorkerInfo>) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <p class="empty" data-test="no-workers">
                "No worker is online: start one with " <code>"antares worker --app APP"</code>
                " (add " <code>"--allow-scripts"</code> " for script jobs)."
            </p>
        }
        .into_any();
    }
    let now = format::now_ms();
    let rows = list
        .into_iter()
        .map(|w| {
            #[allow(clippy::cast_precision_loss)]
            let load = if w.capacity == 0 { 0.0 } else { f64::from(w.running) * 100.0 / f64::from(w.capacity) };
            let plugins = if w.plugins.is_empty() { "—".to_string() } else { w.plugins.join(", ") };
            view! {
                <tr data-test="worker-row">
                    <td class="mono">{w.id.clone()}</td>
                    <td><a href=format!("/apps/{}", w.app)>{w.app.clone()}</a></td>
                    <td title=format::time(w.last_seen)>{format::relative(w.last_seen.millis(), now)}</td>
                    <td>
                        <div class="meter" title=format!("{} of {} slots busy", w.running, w.capacity)>
                            <span style=format!("width: {load:.0}%")></span>
                        </div>
                        {format!("{} / {}", w.running, w.capacity)}
                    </td>
                    <td>{if w.allow_scripts { "yes" } else { "no" }}</td>
                    <td>{if w.http { "yes" } else { "no" }}</td>
                    <td class="wrap">{plugins}</td>
                    <td>{format!("{} (pid {})", w.host, w.pid)}</td>
                    <td>{w.version.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table data-test="workers">
                <thead>
                    <tr>
                        <th>"Id"</th><th>"App"</th><th>"Heartbeat"</th><th>"Running / capacity"</th>
                        <th>"Scripts"</th><th>"HTTP"</th><th>"Plugins"</th><th>"Host"</th><th>"Version"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
