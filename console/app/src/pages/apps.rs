//! Apps: the list, creating one, pausing or resuming a whole app, deleting one.

use antares_schemas::access::Role;
use antares_schemas::app::App;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::confirm::ConfirmButton;
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::format;
use crate::session::use_session;

/// The apps page.
#[component]
pub fn Apps() -> impl IntoView {
    let session = use_session();
    let apps = LocalResource::new(|| api::get::<Vec<App>>("/api/apps"));
    let notice = RwSignal::new(None::<Notice>);
    let act = move |path: String, done: String| {
        spawn_local(async move {
            match api::post_empty(&path).await {
                Ok(()) => {
                    notice.set(Some(Notice::Done(done)));
                    apps.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };
    let remove = move |name: String| {
        spawn_local(async move {
            match api::delete(&format!("/api/apps/{}?with_jobs=true", api::enc(&name))).await {
                Ok(()) => {
                    notice.set(Some(Notice::Done(format!(
                        "App {name} and its jobs deleted."
                    ))));
                    apps.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };
    view! {
        <h1>"Apps"</h1>
        <NoticeLine notice/>
        <section class="card">
            {loaded(apps, move |list| {
                if list.is_empty() {
                    return view! {
                        <p class="empty" data-test="no-apps">
                            "No apps yet: create one below, or run "
                            <code>"antares app create APP"</code> "."
                        </p>
                    }
                    .into_any();
                }
                let now = format::now_ms();
                let rows = list
                    .into_iter()
                    .map(|app| {
                        let name = app.name.clone();
                        let href = format!("/apps/{}", app.name);
                        let toggle = {
                            let name = name.clone();
                            let enabled = app.enabled;
                            move |_| {
                                let verb = if enabled { "pause" } else { "resume" };
                                let done = if enabled { "paused" } else { "resumed" };
                                act(
                                    format!("/api/apps/{}/{verb}", api::enc(&name)),
                                    format!("App {name} {done}."),
                                );
                            }
                        };
                        let del = {
                            let name = name.clone();
                            Callback::new(move |()| remove(name.clone()))
                        };
                        let (row_name, question) = (name.clone(), format!("Delete app {name} and its jobs?"));
                        view! {
                            <tr data-test="app-row" data-app=row_name>
                                <td><a href=href data-test="app-link">{name}</a></td>
                                <td class="wrap">{app.description.clone()}</td>
                                <td>
                                    {if app.enabled {
                                        view! { <span class="badge status-success">"active"</span> }
                                    } else {
                                        view! { <span class="badge status-paused">"paused"</span> }
                                    }}
                                </td>
                                <td title=format::time(app.created_at)>
                                    {format::relative(app.created_at.millis(), now)}
                                </td>
                                <td class="actions">
                                    <Show when=move || session.can(Role::Operator)>
                                        <button type="button" class="btn quiet" data-test="app-toggle" on:click=toggle.clone()>
                                            {if app.enabled { "Pause" } else { "Resume" }}
                                        </button>
                                    </Show>
                                    <Show when=move || session.can(Role::Admin)>
                                        <ConfirmButton
                                            label="Delete"
                                            question=question.clone()
                                            test="app-delete"
                                            danger=true
                                            on_confirm=del
                                        />
                                    </Show>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="table-wrap">
                        <table data-test="apps">
                            <thead>
                                <tr>
                                    <th>"App"</th><th>"Description"</th><th>"State"</th>
                                    <th>"Created"</th><th></th>
                                </tr>
                            </thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
                .into_any()
            })}
        </section>
        <Show when=move || session.can(Role::Admin)>
            <NewApp on_created=Callback::new(move |name: String| {
                notice.set(Some(Notice::Done(format!("App {name} created."))));
                apps.refetch();
            })/>
        </Show>
    }
}

#[derive(serde::Serialize)]
struct NewAppBody {
    name: String,
    description: String,
}

#[component]
fn NewApp(on_created: Callback<String>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = NewAppBody {
            name: name.get_untracked().trim().to_string(),
            description: description.get_untracked(),
        };
        if body.name.is_empty() {
            error.set(Some(
                "Give the app a name: lower-case letters, digits, - and _.".into(),
            ));
            return;
        }
        spawn_local(async move {
            match api::post_unit("/api/apps", &body).await {
                Ok(()) => {
                    error.set(None);
                    name.set(String::new());
                    description.set(String::new());
                    on_created.run(body.name);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"New app"</h2>
            <form class="inline-form" on:submit=submit data-test="new-app">
                <label>
                    "Name"
                    <input
                        data-test="new-app-name"
                        placeholder="billing"
                        prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))
                    />
                </label>
                <label class="grow">
                    "Description"
                    <input
                        data-test="new-app-description"
                        prop:value=move || description.get()
                        on:input=move |ev| description.set(event_target_value(&ev))
                    />
                </label>
                <button type="submit" class="btn primary" data-test="new-app-submit">"Create app"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="field-error" data-test="new-app-error">{e}</p> })}
        </section>
    }
}
