//! Any path the app does not know.

use leptos::prelude::*;

/// The page for unknown paths.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <main class="page narrow">
            <h1>"Nothing here"</h1>
            <p>"This page does not exist. " <a href="/">"Go to the dashboard"</a> "."</p>
        </main>
    }
}
