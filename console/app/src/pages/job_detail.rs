//! One job: its spec at a glance, run now (with params), pause/resume, edit, delete; its
//! versions with diffs and rollback; its latest instances, paged.

use std::time::Duration;

use antares_schemas::access::Role;
use antares_schemas::instance::InstanceSummary;
use antares_schemas::messages::EventKind;
use antares_schemas::spec::JobSpec;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::{self, Triggered};
use crate::components::confirm::ConfirmButton;
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::components::pager::{Cursor, Pager};
use crate::components::status::{StatusBadge, name};
use crate::events::on_event;
use crate::format;
use crate::pages::job_versions::Versions;
use crate::pages::jobs::schedule_text;
use crate::session::use_session;

/// Instances per page.
const PAGE: usize = 20;

/// The job page.
#[component]
pub fn JobDetail() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let params = use_params_map();
    let app = move || params.with(|p| p.get("app").unwrap_or_default());
    let job = move || params.with(|p| p.get("job").unwrap_or_default());
    let base = move || format!("/api/apps/{}/jobs/{}", api::enc(&app()), api::enc(&job()));
    let spec = LocalResource::new(move || {
        let path = base();
        async move { api::get::<JobSpec>(&path).await }
    });
    // Bumped after a change, so the versions list reloads.
    let changed = RwSignal::new(0u32);
    let notice = RwSignal::new(None::<Notice>);
    let run_params = RwSignal::new(String::new());

    let run = {
        let navigate = navigate.clone();
        move |_| {
            let params = run_params.get_untracked();
            let body = if params.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({ "params": params })
            };
            let path = format!("{}/trigger", base());
            let navigate = navigate.clone();
            spawn_local(async move {
                match api::post::<_, Triggered>(&path, &body).await {
                    Ok(t) => navigate(
                        &format!("/instances/{}", t.instance),
                        NavigateOptions::default(),
                    ),
                    Err(e) => notice.set(Some(Notice::Failed(e.message))),
                }
            });
        }
    };
    let toggle = move |enabled: bool| {
        let path = format!("{}/{}", base(), if enabled { "pause" } else { "resume" });
        spawn_local(async move {
            match api::post_empty(&path).await {
                Ok(()) => {
                    notice.set(Some(Notice::Done(
                        if enabled {
                            "Paused: its schedule does not fire."
                        } else {
                            "Resumed."
                        }
                        .into(),
                    )));
                    spec.refetch();
                    changed.update(|n| *n += 1);
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };
    let delete = Callback::new(move |()| {
        let navigate = navigate.clone();
        let (path, app) = (base(), app());
        spawn_local(async move {
            match api::delete(&path).await {
                Ok(()) => navigate(&format!("/apps/{app}"), NavigateOptions::default()),
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    });

    view! {
        <p class="crumbs">
            <a href="/apps">"Apps"</a> " / " <a href=move || format!("/apps/{}", app())>{app}</a> " /"
        </p>
        <div class="title-row">
            <h1 data-test="job-title">{job}</h1>
            {move || spec.get().and_then(Result::ok).map(|s| {
                if s.enabled {
                    view! { <span class="badge status-success" data-test="job-state">"active"</span> }
                } else {
                    view! { <span class="badge status-paused" data-test="job-state">"paused"</span> }
                }
            })}
            <span class="spacer"></span>
            <Show when=move || session.can(Role::Operator)>
                {move || spec.get().and_then(Result::ok).map(|s| {
                    let enabled = s.enabled;
                    view! {
                        <button type="button" class="btn" data-test="job-pause" on:click=move |_| toggle(enabled)>
                            {if enabled { "Pause" } else { "Resume" }}
                        </button>
                    }
                })}
            </Show>
            <Show when=move || session.can(Role::Admin)>
                <a class="btn" data-test="job-edit" href=move || format!("/apps/{}/jobs/{}/edit", app(), job())>"Edit"</a>
                <ConfirmButton
                    label="Delete"
                    question=format!("Delete job {}?", job())
                    test="job-delete"
                    danger=true
                    on_confirm=delete
                />
            </Show>
        </div>
        <NoticeLine notice/>
        <Show when=move || session.can(Role::Operator)>
            <form class="card run-now" on:submit=move |ev| ev.prevent_default()>
                <label for="run-params">"Params for this run"</label>
                <input
                    id="run-params"
                    data-test="run-params"
                    placeholder=move || spec.get().and_then(Result::ok).map(|s| s.params).filter(|p| !p.is_empty()).unwrap_or_else(|| "(the job's params)".into())
                    prop:value=move || run_params.get()
                    on:input=move |ev| run_params.set(event_target_value(&ev))
                />
                <button type="submit" class="btn primary" data-test="run-now" on:click=run.clone()>"Run now"</button>
            </form>
        </Show>
        <section class="card">
            <h2>"Spec"</h2>
            {loaded(spec, |s| view! { <SpecSummary spec=s/> })}
        </section>
        <section class="card">
            <h2>"Latest runs"</h2>
            <JobInstances app=app() job=job()/>
        </section>
        <section class="card">
            <h2>"Versions"</h2>
            <Versions
                app=app()
                job=job()
                changed
                on_rollback=Callback::new(move |v: u64| {
                    notice.set(Some(Notice::Done(format!("Version {v} is back as the newest version."))));
                    spec.refetch();
                })
            />
        </section>
    }
}

#[component]
fn SpecSummary(spec: JobSpec) -> impl IntoView {
    let runs = match spec.kind.as_str() {
        "plugin" => format!("plugin {}", spec.handler_name()),
        "script" => match (&spec.script, &spec.command) {
            (Some(s), _) => format!(
                "{} script ({} lines)",
                name(&s.lang),
                s.source.lines().count()
            ),
            (None, Some(c)) => format!("command: {c}"),
            _ => "script".to_string(),
        },
        other => other.to_string(),
    };
    let shards = match spec.shards {
        Some(n) => n.to_string(),
        None => match spec.shard_params.items().len() {
            0 => "1".to_string(),
            n => n.to_string(),
        },
    };
    let rows: Vec<(&str, String)> = vec![
        ("Description", spec.description.clone()),
        ("Schedule", schedule_text(&spec)),
        ("Runs", runs),
        ("Params", spec.params.clone()),
        ("Shards", shards),
        ("Overlap", name(&spec.overlap)),
        ("Timeout", spec.timeout.to_string()),
        (
            "Retry",
            if spec.retry.max == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} times, {} × {} up to {}",
                    spec.retry.max,
                    spec.retry.backoff,
                    spec.retry.multiplier,
                    spec.retry.max_backoff
                )
            },
        ),
        ("Misfire", name(&spec.misfire)),
        ("Children", spec.children.join(", ")),
    ];
    let source = spec
        .script
        .map(|s| view! { <pre class="code" data-test="job-source">{s.source}</pre> });
    view! {
        <dl class="facts" data-test="job-spec">
            {rows
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> })
                .collect_view()}
        </dl>
        {source}
    }
}

/// The job's instances, newest first, a page at a time; refreshed as its runs end.
#[component]
pub fn JobInstances(app: String, job: String) -> impl IntoView {
    let cursor = Cursor::default();
    let list = {
        let (app, job) = (app.clone(), job.clone());
        LocalResource::new(move || {
            let limit = PAGE.to_string();
            let url = api::with_query(
                "/api/instances",
                &[
                    ("app", &app),
                    ("job", &job),
                    ("limit", &limit),
                    ("before", &cursor.before()),
                ],
            );
            async move { api::get::<Vec<InstanceSummary>>(&url).await }
        })
    };
    on_event(
        move |e| {
            e.app == app
                && e.job == job
                && matches!(
                    e.kind,
                    EventKind::InstanceStarted | EventKind::InstanceFinished
                )
        },
        Duration::from_secs(1),
        move || list.refetch(),
    );
    let next = Signal::derive(move || {
        list.get()
            .and_then(Result::ok)
            .filter(|l| l.len() >= PAGE)
            .and_then(|l| l.last().map(|i| i.id.to_string()))
    });
    view! {
        {loaded(list, |items| view! { <InstanceTable items show_job=false/> })}
        <Pager cursor next/>
    }
}

/// A table of instances (without their shards).
#[component]
pub fn InstanceTable(items: Vec<InstanceSummary>, show_job: bool) -> impl IntoView {
    if items.is_empty() {
        return view! {
            <p class="empty" data-test="no-instances">
                "No runs here yet. “Run now” starts one; scheduled runs appear when they fire."
            </p>
        }
        .into_any();
    }
    let now = format::now_ms();
    let rows = items
        .into_iter()
        .map(|i| {
            let id = i.id.to_string();
            let href = format!("/instances/{id}");
            let job = show_job.then(|| {
                let href = format!("/apps/{}/jobs/{}", i.app, i.job);
                view! { <td><a href=href>{format!("{}/{}", i.app, i.job)}</a></td> }
            });
            let shards = format!("{}/{}", i.shard_counts.success, i.shard_total);
            let row_id = id.clone();
            view! {
                <tr data-test="instance-row" data-id=row_id>
                    <td><a class="mono" href=href data-test="instance-link">{id}</a></td>
                    {job}
                    <td>{i.trigger.as_str()}</td>
                    <td><StatusBadge status=i.status.as_str()/></td>
                    <td title=format::time(i.scheduled_at)>{format::relative(i.scheduled_at.millis(), now)}</td>
                    <td>{format::elapsed(i.started_at, i.finished_at, now)}</td>
                    <td title="shards succeeded / all">{shards}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table data-test="instances">
                <thead>
                    <tr>
                        <th>"Instance"</th>
                        {show_job.then(|| view! { <th>"Job"</th> })}
                        <th>"Trigger"</th><th>"Status"</th><th>"Due"</th><th>"Took"</th><th>"Shards"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
