//! The bar on top of every page: where to go, who is logged in, whether live updates
//! arrive, and logging out.

use antares_schemas::access::Role;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use crate::api;
use crate::events::Events;
use crate::session::use_session;

/// The navigation bar.
#[component]
pub fn Nav() -> impl IntoView {
    let session = use_session();
    let live = use_context::<Events>().map(|e| e.live);
    let is_live = move || live.is_some_and(|l| l.get());
    let who = move || {
        session
            .0
            .with(|p| p.as_ref().map(|p| p.name.clone()).unwrap_or_default())
    };
    let role = move || {
        session
            .0
            .with(|p| p.as_ref().map(|p| p.role.as_str()).unwrap_or_default())
    };
    let logout = move |_| {
        spawn_local(async {
            let _ = api::post_empty("/api/logout").await;
            let _ = window().location().set_href("/login");
        });
    };
    view! {
        <header class="topbar">
            <a class="brand" href="/">
                <span class="logo">"✦"</span>
                " Antares"
            </a>
            <nav class="links" aria-label="Main">
                <A href="/" exact=true attr:data-test="nav-dashboard">"Dashboard"</A>
                <A href="/apps" attr:data-test="nav-apps">"Apps"</A>
                <A href="/instances" attr:data-test="nav-instances">"Instances"</A>
                <A href="/cluster" attr:data-test="nav-cluster">"Cluster"</A>
                <Show when=move || session.can(Role::Admin)>
                    <A href="/admin/users" attr:data-test="nav-users">"Users"</A>
                    <A href="/admin/tokens" attr:data-test="nav-tokens">"Tokens"</A>
                    <A href="/admin/audit" attr:data-test="nav-audit">"Audit"</A>
                </Show>
            </nav>
            <div class="me">
                <span
                    class="live"
                    class:on=is_live
                    title=move || if is_live() { "Live updates on" } else { "Live updates off" }
                ></span>
                <span data-test="me">{who}</span>
                <span class="role" data-test="role">{role}</span>
                <button type="button" class="btn quiet" data-test="logout" on:click=logout>
                    "Log out"
                </button>
            </div>
        </header>
    }
}
