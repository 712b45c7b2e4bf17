//! Running and finished instances together, newest first, filtered by app, job and
//! status (kept in the address, so a filtered list can be linked), a page at a time.

use std::time::Duration;

use antares_schemas::app::App;
use antares_schemas::instance::{InstanceStatus, InstanceSummary};
use antares_schemas::messages::EventKind;
use leptos::prelude::*;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api;
use crate::components::loaded::loaded;
use crate::components::pager::{Cursor, Pager};
use crate::events::on_event;
use crate::pages::job_detail::InstanceTable;

/// Instances per page.
const PAGE: usize = 50;

/// The instances page.
#[component]
pub fn Instances() -> impl IntoView {
    let query = use_query_map();
    let navigate = use_navigate();
    let get = move |k: &str| query.with(|q| q.get(k).unwrap_or_default());
    let cursor = Cursor::default();
    // A new filter starts from the newest page.
    Effect::new(move |_| {
        query.track();
        cursor.reset();
    });
    let apps = LocalResource::new(|| api::get::<Vec<App>>("/api/apps"));
    let list = LocalResource::new(move || {
        let limit = PAGE.to_string();
        let url = api::with_query(
            "/api/instances",
            &[
                ("app", &get("app")),
                ("job", &get("job")),
                ("status", &get("status")),
                ("limit", &limit),
                ("before", &cursor.before()),
            ],
        );
        async move { api::get::<Vec<InstanceSummary>>(&url).await }
    });
    on_event(
        move |e| {
            matches!(
                e.kind,
                EventKind::InstanceStarted | EventKind::InstanceFinished
            )
        },
        Duration::from_secs(2),
        move || {
            if cursor.before().is_empty() {
                list.refetch();
            }
        },
    );
    let next = Signal::derive(move || {
        list.get()
            .and_then(Result::ok)
            .filter(|l| l.len() >= PAGE)
            .and_then(|l| l.last().map(|i| i.id.to_string()))
    });

    let app = RwSignal::new(get("app"));
    let job = RwSignal::new(get("job"));
    let status = RwSignal::new(get("status"));
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let url = api::with_query(
            "/instances",
            &[
                ("app", &app.get_untracked()),
                ("job", job.get_untracked().trim()),
                ("status", &status.get_untracked()),
            ],
        );
        navigate(&url, NavigateOptions::default());
    };
    view! {
        <h1>"Instances"</h1>
        <form class="card filters" on:submit=apply data-test="instance-filters">
            <label>
                "App"
                <select data-test="filter-app" prop:value=move || app.get() on:change=move |ev| app.set(event_target_value(&ev))>
                    <option value="">"all"</option>
                    {move || apps.get().and_then(Result::ok).unwrap_or_default().into_iter().map(|a| {
                        let selected = a.name == app.get_untracked();
                        view! { <option value=a.name.clone() selected=selected>{a.name.clone()}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>
                "Job"
                <input data-test="filter-job" placeholder="any" prop:value=move || job.get() on:input=move |ev| job.set(event_target_value(&ev))/>
            </label>
            <label>
                "Status"
                <select data-test="filter-status" prop:value=move || status.get() on:change=move |ev| status.set(event_target_value(&ev))>
                    <option value="">"any"</option>
                    {InstanceStatus::ALL.iter().map(|s| {
                        let s = s.as_str();
                        view! { <option value=s selected=move || status.get_untracked() == s>{s}</option> }
                    }).collect_view()}
                </select>
            </label>
            <button type="submit" class="btn primary" data-test="filter-apply">"Show"</button>
        </form>
        <section class="card">
            {loaded(list, |items| view! { <InstanceTable items show_job=true/> })}
            <Pager cursor next/>
        </section>
    }
}
