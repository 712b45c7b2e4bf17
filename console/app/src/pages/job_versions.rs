//! A job's kept versions (newest first): who changed what and when, the diff of any
//! version against the one before it, and putting an old version back.

use antares_schemas::access::Role;
use antares_schemas::audit::{JobVersion, VersionAction};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::confirm::ConfirmButton;
use crate::components::diff_view::DiffView;
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::components::status::name;
use crate::diff;
use crate::format;
use crate::session::use_session;

/// The versions panel of a job page; `changed` reloads it, `on_rollback` is told of a
/// rollback.
#[component]
pub fn Versions(
    app: String,
    job: String,
    changed: RwSignal<u32>,
    on_rollback: Callback<u64>,
) -> impl IntoView {
    let session = use_session();
    let base = format!(
        "/api/apps/{}/jobs/{}/versions",
        api::enc(&app),
        api::enc(&job)
    );
    let list = {
        let base = base.clone();
        LocalResource::new(move || {
            changed.track();
            let base = base.clone();
            async move {
                let mut list = api::get::<Vec<JobVersion>>(&base).await?;
                list.sort_by_key(|v| std::cmp::Reverse(v.version));
                Ok(list)
            }
        })
    };
    let selected = RwSignal::new(None::<u64>);
    let notice = RwSignal::new(None::<Notice>);
    let rollback = Callback::new(move |version: u64| {
        let path = format!("{base}/{version}/rollback");
        spawn_local(async move {
            match api::post_empty(&path).await {
                Ok(()) => {
                    selected.set(None);
                    changed.update(|n| *n += 1);
                    on_rollback.run(version);
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    });
    view! {
        <NoticeLine notice/>
        {loaded(list, move |versions| {
            if versions.is_empty() {
                return view! { <p class="empty">"No versions kept for this job."</p> }.into_any();
            }
            let now = format::now_ms();
            let newest = versions.first().map(|v| v.version);
            let rows = versions
                .iter()
                .map(|v| {
                    let version = v.version;
                    let action = match (v.action, v.from_version) {
                        (VersionAction::Rollback, Some(from)) => format!("rollback to v{from}"),
                        (a, _) => name(&a),
                    };
                    let can_roll_back = v.spec.is_some() && Some(version) != newest;
                    view! {
                        <tr data-test="version-row" data-version=version class:picked=move || selected.get() == Some(version)>
                            <td>{format!("v{version}")}</td>
                            <td title=format::time(v.at)>{format::relative(v.at.millis(), now)}</td>
                            <td>{v.actor.to_string()}</td>
                            <td>{action}</td>
                            <td class="actions">
                                <button
                                    type="button"
                                    class="btn quiet"
                                    data-test="version-diff"
                                    on:click=move |_| selected.set(Some(version))
                                >
                                    "Diff"
                                </button>
                                <Show when=move || can_roll_back && session.can(Role::Admin)>
                                    <ConfirmButton
                                        label="Roll back"
                                        question=format!("Make v{version} the newest version again?")
                                        test="version-rollback"
                                        on_confirm=Callback::new(move |()| rollback.run(version))
                                    />
                                </Show>
                            </td>
                        </tr>
                    }
                })
                .collect_view();
            let diff_panel = move || {
                let v = selected.get()?;
                let this = versions.iter().find(|x| x.version == v)?;
                let before = versions.iter().find(|x| x.version < v);
                let json = |s: &JobVersion| {
                    s.spec
                        .as_ref()
                        .and_then(|spec| serde_json::to_value(spec).ok())
                        .unwrap_or(serde_json::Value::Null)
                };
                Some(match before {
                    Some(prev) => view! {
                        <h3>{format!("v{} → v{v}", prev.version)}</h3>
                        <DiffView changes=diff::specs(&json(prev), &json(this))/>
                    }
                    .into_any(),
                    None => view! {
                        <h3>{format!("v{v}: the oldest version kept")}</h3>
                        <pre class="code" data-test="diff">
                            {serde_json::to_string_pretty(&json(this)).unwrap_or_default()}
                        </pre>
                    }
                    .into_any(),
                })
            };
            view! {
                <div class="table-wrap">
                    <table data-test="versions">
                        <thead>
                            <tr><th>"Version"</th><th>"When"</th><th>"Who"</th><th>"What"</th><th></th></tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
                <div class="diff-panel">{diff_panel}</div>
            }
            .into_any()
        })}
    }
}
