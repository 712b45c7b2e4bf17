//! Logging in: `POST /api/login`, then back to the page that sent the browser here.

use antares_schemas::access::{Login as LoginBody, Principal};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api;
use crate::session::use_session;

/// Where to go after logging in: a path of this app, else the dashboard.
fn next_page(next: Option<String>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/login") => n,
        _ => "/".to_string(),
    }
}

/// The login page.
#[component]
pub fn Login() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let query = use_query_map();
    let user = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let body = LoginBody {
            user: user.get_untracked().trim().to_string(),
            password: password.get_untracked(),
        };
        if body.user.is_empty() || body.password.is_empty() {
            error.set(Some("Enter your user name and password.".into()));
            return;
        }
        busy.set(true);
        let navigate = navigate.clone();
        let next = next_page(query.with_untracked(|q| q.get("next")));
        spawn_local(async move {
            match api::post::<_, Principal>("/api/login", &body).await {
                Ok(p) => {
                    session.0.set(Some(p));
                    navigate(&next, NavigateOptions::default());
                }
                Err(e) if e.status == 401 => {
                    error.set(Some("Wrong user name or password.".into()));
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };

    view! {
        <main class="login">
            <form class="card login-card" on:submit=submit data-test="login-form">
                <h1>
                    <span class="logo">"✦"</span>
                    " Antares"
                </h1>
                <label for="login-user">"User"</label>
                <input
                    id="login-user"
                    data-test="login-user"
                    autocomplete="username"
                    autofocus
                    prop:value=move || user.get()
                    on:input=move |ev| user.set(event_target_value(&ev))
                />
                <label for="login-password">"Password"</label>
                <input
                    id="login-password"
                    data-test="login-password"
                    type="password"
                    autocomplete="current-password"
                    prop:value=move || password.get()
                    on:input=move |ev| password.set(event_target_value(&ev))
                />
                {move || error.get().map(|e| view! { <p class="notice bad" data-test="login-error" role="alert">{e}</p> })}
                <button type="submit" class="btn primary" data-test="login-submit" disabled=move || busy.get()>
                    "Log in"
                </button>
                <p class="muted small">
                    "With " <code>"antares dev"</code> ", the login is printed in its banner."
                </p>
            </form>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn only_local_pages_are_gone_back_to() {
        assert_eq!(next_page(Some("/apps/billing".into())), "/apps/billing");
        assert_eq!(next_page(Some("//evil.example".into())), "/");
        assert_eq!(next_page(Some("https://evil.example".into())), "/");
        assert_eq!(next_page(Some("/login?next=/x".into())), "/");
        assert_eq!(next_page(None), "/");
    }
}
