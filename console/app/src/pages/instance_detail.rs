//! One instance: its summary, its shards (item, param, status, worker, attempts, times,
//! error), cancelling it, and its live logs. Refreshed by its lifecycle events; while
//! live events are off and it runs, every few seconds.

use std::time::Duration;

use antares_schemas::access::Role;
use antares_schemas::instance::{Instance, ShardRecord};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;

use crate::api;
use crate::components::confirm::ConfirmButton;
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::components::status::{StatusBadge, name};
use crate::events::{Events, on_event};
use crate::format;
use crate::pages::logs::Logs;
use crate::session::use_session;

/// Shards per page of the table.
const SHARD_PAGE: usize = 100;

/// The instance page.
#[component]
pub fn InstanceDetail() -> impl IntoView {
    let session = use_session();
    let params = use_params_map();
    let id = params.with_untracked(|p| p.get("id").unwrap_or_default());
    let instance = {
        let path = format!("/api/instances/{}", api::enc(&id));
        LocalResource::new(move || {
            let path = path.clone();
            async move { api::get::<Instance>(&path).await }
        })
    };
    let notice = RwSignal::new(None::<Notice>);
    let finished = Signal::derive(move || {
        instance
            .get()
            .and_then(Result::ok)
            .is_some_and(|i| i.summary.status.is_final())
    });
    let shard_total = Signal::derive(move || {
        instance
            .get()
            .and_then(Result::ok)
            .map_or(0, |i| i.summary.shard_total)
    });
    {
        let id = id.clone();
        on_event(
            move |e| e.instance.is_some_and(|i| i.to_string() == id),
            Duration::from_millis(500),
            move || instance.refetch(),
        );
    }
    // Without live events, poll while it runs.
    let live = use_context::<Events>().map(|e| e.live);
    if let Ok(handle) = set_interval_with_handle(
        move || {
            if !finished.get_untracked() && !live.is_some_and(|l| l.get_untracked()) {
                instance.refetch();
            }
        },
        Duration::from_secs(3),
    ) {
        on_cleanup(move || handle.clear());
    }

    let cancel = {
        let path = format!("/api/instances/{}/cancel", api::enc(&id));
        Callback::new(move |()| {
            let path = path.clone();
            spawn_local(async move {
                match api::post_empty(&path).await {
                    Ok(()) => {
                        notice.set(Some(Notice::Done(
                            "Cancelling: pending shards will not run.".into(),
                        )));
                        instance.refetch();
                    }
                    Err(e) => notice.set(Some(Notice::Failed(e.message))),
                }
            });
        })
    };

    view! {
        <p class="crumbs"><a href="/instances">"Instances"</a> " /"</p>
        <div class="title-row">
            <h1 class="mono" data-test="instance-title">{id.clone()}</h1>
            {move || instance.get().and_then(Result::ok).map(|i| view! {
                <span data-test="instance-status" data-status=i.summary.status.as_str()>
                    <StatusBadge status=i.summary.status.as_str()/>
                </span>
            })}
            <span class="spacer"></span>
            <Show when=move || !finished.get() && session.can(Role::Operator) && instance.get().is_some()>
                <ConfirmButton
                    label="Cancel run"
                    question="Stop this run?"
                    test="instance-cancel"
                    danger=true
                    on_confirm=cancel
                />
            </Show>
        </div>
        <NoticeLine notice/>
        <section class="card">
            {loaded(instance, |i| view! { <Summary instance=i/> })}
        </section>
        <section class="card">
            <h2>"Shards"</h2>
            {loaded(instance, |i| view! { <Shards shards=i.shards/> })}
        </section>
        <section class="card">
            <h2>"Logs"</h2>
            <Logs id=id.clone() shards=shard_total finished on_end=Callback::new(move |()| instance.refetch())/>
        </section>
    }
}

#[component]
fn Summary(instance: Instance) -> impl IntoView {
    let s = instance.summary;
    let now = format::now_ms();
    let job_href = format!("/apps/{}/jobs/{}", s.app, s.job);
    let counts = s.shard_counts;
    let shard_text = format!(
        "{} in all: {} succeeded, {} failed, {} running, {} pending",
        s.shard_total,
        counts.success,
        counts.failed + counts.timed_out,
        counts.running,
        counts.pending + counts.later
    );
    view! {
        <dl class="facts" data-test="instance-summary">
            <dt>"Job"</dt>
            <dd><a href=job_href>{format!("{}/{}", s.app, s.job)}</a></dd>
            <dt>"Trigger"</dt>
            <dd>{s.trigger.as_str()}</dd>
            <dt>"Due"</dt>
            <dd>{format::time(s.scheduled_at)}</dd>
            <dt>"Started"</dt>
            <dd>{format::time_opt(s.started_at)}</dd>
            <dt>"Finished"</dt>
            <dd>{format::time_opt(s.finished_at)}</dd>
            <dt>"Took"</dt>
            <dd>{format::elapsed(s.started_at, s.finished_at, now)}</dd>
            <dt>"Shards"</dt>
            <dd>{shard_text}</dd>
            {(!s.params.is_empty()).then(|| view! { <dt>"Params"</dt><dd class="mono">{s.params.clone()}</dd> })}
            {s.reason.map(|r| view! { <dt>"Why"</dt><dd data-test="instance-reason">{r}</dd> })}
            {s.parent.map(|p| {
                let href = format!("/instances/{p}");
                view! { <dt>"Parent"</dt><dd><a class="mono" href=href>{p.to_string()}</a></dd> }
            })}
        </dl>
    }
}

#[component]
fn Shards(shards: Vec<ShardRecord>) -> impl IntoView {
    let total = shards.len();
    let page = RwSignal::new(0usize);
    let pages = total.div_ceil(SHARD_PAGE).max(1);
    let rows = move || {
        let start = page.get() * SHARD_PAGE;
        shards
            .iter()
            .skip(start)
            .take(SHARD_PAGE)
            .map(|s| {
                let status = name(&s.status);
                view! {
                    <tr data-test="shard-row" data-item=s.item>
                        <td>{s.item}</td>
                        <td class="mono wrap">{s.param.clone()}</td>
                        <td><StatusBadge status=status/></td>
                        <td class="mono">{s.worker.clone().unwrap_or_else(|| "—".into())}</td>
                        <td>{s.attempts}</td>
                        <td>{format::time_opt(s.started_at)}</td>
                        <td>{format::time_opt(s.finished_at)}</td>
                        <td class="wrap error-text">{s.error.clone().unwrap_or_default()}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <div class="table-wrap">
            <table data-test="shards">
                <thead>
                    <tr>
                        <th>"Item"</th><th>"Param"</th><th>"Status"</th><th>"Worker"</th>
                        <th>"Attempts"</th><th>"Started"</th><th>"Finished"</th><th>"Error"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <Show when=move || { pages > 1 }>
            <div class="pager">
                <button type="button" class="btn quiet" disabled=move || page.get() == 0 on:click=move |_| page.update(|p| *p -= 1)>
                    "← Previous"
                </button>
                <span class="muted">{move || format!("shards {}–{} of {total}", page.get() * SHARD_PAGE, ((page.get() + 1) * SHARD_PAGE).min(total) - 1)}</span>
                <button type="button" class="btn quiet" disabled=move || page.get() + 1 >= pages on:click=move |_| page.update(|p| *p += 1)>
                    "Next →"
                </button>
            </div>
        </Show>
    }
}
