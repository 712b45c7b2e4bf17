//! The jobs of one app (`GET /api/apps/{app}/job-rows`), a page at a time by name, with
//! a filter by the start of the name: schedule, next fire, last run; run or pause from
//! the list; a new job from here.

use std::time::Duration;

use antares_schemas::access::Role;
use antares_schemas::app::App;
use antares_schemas::messages::EventKind;
use antares_schemas::spec::JobSpec;
use antares_schemas::stats::JobRow;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;

use crate::api::{self, Triggered};
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::components::pager::{Cursor, Pager};
use crate::components::status::{StatusBadge, name};
use crate::events::on_event;
use crate::format;
use crate::session::use_session;

/// Jobs per page.
const PAGE: usize = 50;

/// How a job's schedule reads: `cron 0 2 * * * (Asia/Shanghai)`, `every 30s`, ...
pub fn schedule_text(spec: &JobSpec) -> String {
    match &spec.schedule {
        None => "manual".to_string(),
        Some(s) => match (&s.cron, &s.every, &s.at) {
            (Some(c), _, _) => match &s.tz {
                Some(tz) => format!("cron {c} ({tz})"),
                None => format!("cron {c}"),
            },
            (_, Some(e), _) => format!("every {e}"),
            (_, _, Some(at)) => format!("at {}", format::time(*at)),
            _ => "manual".to_string(),
        },
    }
}

/// The jobs page.
#[component]
pub fn Jobs() -> impl IntoView {
    let session = use_session();
    let params = use_params_map();
    let app = move || params.with(|p| p.get("app").unwrap_or_default());
    let info = LocalResource::new(move || {
        let path = format!("/api/apps/{}", api::enc(&app()));
        async move { api::get::<App>(&path).await }
    });
    let cursor = Cursor::default();
    // Job names are lower case: so is what the filter matches.
    let filter = RwSignal::new(String::new());
    let prefix = move || filter.with(|f| f.trim().to_lowercase());
    // Another app or another filter starts from the first page.
    Effect::new(move |_| {
        app();
        filter.track();
        cursor.reset();
    });
    let rows = LocalResource::new(move || {
        let limit = PAGE.to_string();
        let url = api::with_query(
            &format!("/api/apps/{}/job-rows", api::enc(&app())),
            &[
                ("limit", &limit),
                ("after", &cursor.after()),
                ("prefix", &prefix()),
            ],
        );
        async move { api::get_page::<Vec<JobRow>>(&url).await }
    });
    let next = Signal::derive(move || rows.get().and_then(Result::ok).and_then(|(_, next)| next));
    let notice = RwSignal::new(None::<Notice>);
    on_event(
        move |e| e.app == app() && e.kind == EventKind::InstanceFinished,
        Duration::from_secs(2),
        move || rows.refetch(),
    );
    let post = move |path: String, done: String, trigger: bool| {
        spawn_local(async move {
            let result = if trigger {
                api::post::<_, Triggered>(&path, &serde_json::json!({}))
                    .await
                    .map(|t| format!("{done}: instance {}", t.instance))
            } else {
                api::post_empty(&path).await.map(|()| done)
            };
            match result {
                Ok(m) => {
                    notice.set(Some(Notice::Done(m)));
                    rows.refetch();
                    info.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };
    view! {
        <p class="crumbs"><a href="/apps">"Apps"</a> " / "</p>
        <div class="title-row">
            <h1 data-test="app-title">{app}</h1>
            {move || {
                info.get().and_then(Result::ok).map(|a| {
                    if a.enabled {
                        view! { <span class="badge status-success">"active"</span> }.into_any()
                    } else {
                        view! {
                            <span class="badge status-paused" title="No schedule of this app fires">"app paused"</span>
                        }
                        .into_any()
                    }
                })
            }}
            <span class="spacer"></span>
            <a class="btn quiet" href=move || format!("/instances?app={}", app())>"Instances"</a>
            <Show when=move || session.can(Role::Admin)>
                <a class="btn primary" data-test="new-job" href=move || format!("/apps/{}/new-job", app())>
                    "New job"
                </a>
            </Show>
        </div>
        {move || info.get().and_then(Result::ok).map(|a| view! { <p class="muted">{a.description}</p> })}
        <NoticeLine notice/>
        <section class="card">
            <div class="filters">
                <label>
                    "Name starts with"
                    <input
                        data-test="job-filter"
                        type="search"
                        placeholder="any"
                        autocomplete="off"
                        prop:value=move || filter.get()
                        on:input=move |ev| filter.set(event_target_value(&ev))
                    />
                </label>
            </div>
            {loaded(rows, move |(rows, _)| {
                if rows.is_empty() && !prefix().is_empty() {
                    return view! {
                        <p class="empty" data-test="no-jobs-match">
                            "No job here has a name that starts with “" {prefix()} "”."
                        </p>
                    }
                    .into_any();
                }
                if rows.is_empty() && cursor.after().is_empty() {
                    return view! {
                        <p class="empty" data-test="no-jobs">
                            "No jobs yet: create one with “New job”, or "
                            <code>"antares job apply -f jobs.toml"</code> "."
                        </p>
                    }
                    .into_any();
                }
                let now = format::now_ms();
                let list = rows
                    .into_iter()
                    .map(|row| {
                        let spec = row.spec;
                        let job = spec.name.clone();
                        let base = format!("/api/apps/{}/jobs/{}", api::enc(&spec.app), api::enc(&job));
                        let href = format!("/apps/{}/jobs/{}", spec.app, job);
                        let last = row.state.map(|s| {
                            let href = format!("/instances/{}", s.last_instance);
                            let when = s.last_finished_at.unwrap_or(s.last_scheduled_at);
                            view! {
                                <a href=href title=format::time(when)>
                                    <StatusBadge status=name(&s.last_status)/>
                                    " " {format::relative(when.millis(), now)}
                                </a>
                            }
                        });
                        let next = row.next_fire.map_or_else(
                            || "—".to_string(),
                            |t| format!("{} ({})", format::time(t), format::relative(t.millis(), now)),
                        );
                        let enabled = spec.enabled;
                        let run = {
                            let (base, job) = (base.clone(), job.clone());
                            move |_| post(format!("{base}/trigger"), format!("{job} started"), true)
                        };
                        let toggle = {
                            let (base, job) = (base.clone(), job.clone());
                            move |_| {
                                let (verb, done) = if enabled { ("pause", "paused") } else { ("resume", "resumed") };
                                post(format!("{base}/{verb}"), format!("{job} {done}"), false);
                            }
                        };
                        view! {
                            <tr data-test="job-row" data-job=job.clone()>
                                <td><a href=href data-test="job-link">{job.clone()}</a></td>
                                <td>{spec.kind.as_str()}</td>
                                <td class="mono">{schedule_text(&spec)}</td>
                                <td>{next}</td>
                                <td data-test="last-run">{match last {
                                    Some(v) => v.into_any(),
                                    None => "—".into_any(),
                                }}</td>
                                <td>
                                    {if !enabled {
                                        view! { <span class="badge status-paused">"paused"</span> }.into_any()
                                    } else if !row.active {
                                        view! { <span class="badge status-paused" title="Its app is paused">"app paused"</span> }.into_any()
                                    } else {
                                        view! { <span class="badge status-success">"active"</span> }.into_any()
                                    }}
                                </td>
                                <td class="actions">
                                    <Show when=move || session.can(Role::Operator)>
                                        <button type="button" class="btn quiet" data-test="job-run" on:click=run.clone()>"Run"</button>
                                        <button type="button" class="btn quiet" data-test="job-toggle" on:click=toggle.clone()>
                                            {if enabled { "Pause" } else { "Resume" }}
                                        </button>
                                    </Show>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="table-wrap">
                        <table data-test="jobs">
                            <thead>
                                <tr>
                                    <th>"Job"</th><th>"Kind"</th><th>"Schedule"</th><th>"Next fire"</th>
                                    <th>"Last run"</th><th>"State"</th><th></th>
                                </tr>
                            </thead>
                            <tbody>{list}</tbody>
                        </table>
                    </div>
                }
                .into_any()
            })}
            <Pager cursor next back="← Previous" on="Next →"/>
        </section>
    }
}
