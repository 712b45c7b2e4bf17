//! The app's routes, and the shell around every page but the login: it learns who is
//! logged in (`GET /api/me`; a 401 sends the browser to the login page), opens the live
//! event stream, and shows the navigation bar.

use antares_schemas::access::Principal;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{Outlet, ParentRoute, Route, Router, Routes};
use leptos_router::path;

use crate::api::{self, ApiError};
use crate::components::loaded::ErrorBox;
use crate::components::nav::Nav;
use crate::events::provide_events;
use crate::pages;
use crate::session::{Session, use_session};

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    provide_context(Session(RwSignal::new(None)));
    view! {
        <Router>
            <Routes fallback=pages::not_found::NotFound>
                <Route path=path!("/login") view=pages::login::Login/>
                <ParentRoute path=path!("") view=Shell>
                    <Route path=path!("") view=pages::dashboard::Dashboard/>
                    <Route path=path!("apps") view=pages::apps::Apps/>
                    <Route path=path!("apps/:app") view=pages::jobs::Jobs/>
                    <Route path=path!("apps/:app/new-job") view=pages::job_editor::JobEditor/>
                    <Route path=path!("apps/:app/jobs/:job") view=pages::job_detail::JobDetail/>
                    <Route path=path!("apps/:app/jobs/:job/edit") view=pages::job_editor::JobEditor/>
                    <Route path=path!("instances") view=pages::instances::Instances/>
                    <Route path=path!("instances/:id") view=pages::instance_detail::InstanceDetail/>
                    <Route path=path!("cluster") view=pages::cluster::Cluster/>
                    <Route path=path!("admin/users") view=pages::users::Users/>
                    <Route path=path!("admin/tokens") view=pages::tokens::Tokens/>
                    <Route path=path!("admin/audit") view=pages::audit::Audit/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Navigation and the page, once the principal is known.
#[component]
fn Shell() -> impl IntoView {
    let session = use_session();
    let failed = RwSignal::new(None::<ApiError>);
    if session.0.get_untracked().is_none() {
        spawn_local(async move {
            match api::get::<Principal>("/api/me").await {
                Ok(p) => session.0.set(Some(p)),
                // A 401 has sent the browser to the login page already.
                Err(e) if e.status == 401 => {}
                Err(e) => failed.set(Some(e)),
            }
        });
    }
    view! {
        <Show
            when=move || session.0.with(Option::is_some)
            fallback=move || match failed.get() {
                Some(error) => view! { <main class="page"><ErrorBox error/></main> }.into_any(),
                None => view! { <p class="loading">"Loading…"</p> }.into_any(),
            }
        >
            <Frame/>
        </Show>
    }
}

/// The logged-in frame: live events for every page below, the bar, the page.
#[component]
fn Frame() -> impl IntoView {
    provide_events();
    view! {
        <Nav/>
        <main class="page">
            <Outlet/>
        </main>
    }
}
