//! API tokens (admins only): the secret is shown once, when the token is made.

use antares_schemas::access::{CreatedToken, NewToken, Role, Token};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::confirm::ConfirmButton;
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::format;
use crate::pages::users::{app_list, role_select};

/// The tokens page.
#[component]
pub fn Tokens() -> impl IntoView {
    let tokens = LocalResource::new(|| api::get::<Vec<Token>>("/api/tokens"));
    let notice = RwSignal::new(None::<Notice>);
    let secret = RwSignal::new(None::<CreatedToken>);
    let remove = move |id: String| {
        spawn_local(async move {
            match api::delete(&format!("/api/tokens/{}", api::enc(&id))).await {
                Ok(()) => {
                    notice.set(Some(Notice::Done(format!(
                        "Token {id} deleted: it no longer works."
                    ))));
                    tokens.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };

    let name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer);
    let apps = RwSignal::new(String::new());
    let days = RwSignal::new(String::new());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let days_text = days.get_untracked();
        let expires_in_days = match days_text.trim() {
            "" => None,
            d => match d.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    notice.set(Some(Notice::Failed(format!(
                        "Expires in: `{d}` is not a number of days (leave it empty for never)."
                    ))));
                    return;
                }
            },
        };
        let body = NewToken {
            name: name.get_untracked().trim().to_string(),
            role: role.get_untracked(),
            apps: app_list(&apps.get_untracked()),
            expires_in_days,
        };
        spawn_local(async move {
            match api::post::<_, CreatedToken>("/api/tokens", &body).await {
                Ok(created) => {
                    notice.set(None);
                    secret.set(Some(created));
                    name.set(String::new());
                    apps.set(String::new());
                    days.set(String::new());
                    tokens.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };

    view! {
        <h1>"API tokens"</h1>
        <p class="muted">"Programs call the API with " <code>"Authorization: Bearer SECRET"</code> "."</p>
        <NoticeLine notice/>
        {move || secret.get().map(|c| view! {
            <div class="card secret" data-test="token-secret" role="status">
                <p><strong>{format!("Token {} created. Copy its secret now: it is never shown again.", c.token.name)}</strong></p>
                <pre class="code mono" data-test="token-secret-value">{c.secret.clone()}</pre>
                <button type="button" class="btn quiet" on:click=move |_| secret.set(None)>"I have copied it"</button>
            </div>
        })}
        <section class="card">
            {loaded(tokens, move |list| {
                if list.is_empty() {
                    return view! { <p class="empty">"No tokens yet: make one below for scripts and CI."</p> }.into_any();
                }
                let now = format::now_ms();
                let rows = list
                    .into_iter()
                    .map(|t| {
                        let id = t.id.clone();
                        view! {
                            <tr data-test="token-row" data-token=t.name.clone()>
                                <td>{t.name.clone()}</td>
                                <td class="mono">{t.id.clone()}</td>
                                <td><span class="badge">{t.role.as_str()}</span></td>
                                <td>{if t.apps.is_empty() { "all".to_string() } else { t.apps.join(", ") }}</td>
                                <td>{t.created_by.clone()}</td>
                                <td title=format::time(t.created_at)>{format::relative(t.created_at.millis(), now)}</td>
                                <td>{t.expires_at.map_or_else(|| "never".to_string(), format::time)}</td>
                                <td class="actions">
                                    <ConfirmButton
                                        label="Delete"
                                        question=format!("Delete token {}?", t.name)
                                        test="token-delete"
                                        danger=true
                                        on_confirm=Callback::new(move |()| remove(id.clone()))
                                    />
                                </td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="table-wrap">
                        <table data-test="tokens">
                            <thead>
                                <tr>
                                    <th>"Name"</th><th>"Id"</th><th>"Role"</th><th>"Apps"</th>
                                    <th>"By"</th><th>"Created"</th><th>"Expires"</th><th></th>
                                </tr>
                            </thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
                .into_any()
            })}
        </section>
        <section class="card">
            <h2>"New token"</h2>
            <form class="inline-form" on:submit=create data-test="new-token">
                <label>"Name" <input data-test="new-token-name" placeholder="ci-deploy" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label>"Role" {role_select(role, "new-token-role")}</label>
                <label>"Apps (empty for all)" <input data-test="new-token-apps" prop:value=move || apps.get() on:input=move |ev| apps.set(event_target_value(&ev))/></label>
                <label>"Expires in days" <input data-test="new-token-days" inputmode="numeric" placeholder="never" prop:value=move || days.get() on:input=move |ev| days.set(event_target_value(&ev))/></label>
                <button type="submit" class="btn primary" data-test="new-token-submit">"Create token"</button>
            </form>
        </section>
    }
}
