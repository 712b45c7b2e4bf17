//! Showing data that loads: a line while it loads, the server's message when it fails
//! (saying what to do), the view when it is there.

use leptos::prelude::*;

use crate::api::ApiError;

/// What a failed load shows.
#[component]
pub fn ErrorBox(error: ApiError) -> impl IntoView {
    let hint = match error.status {
        0 => "Check that the console is running, then reload the page.",
        403 => "Your role does not allow this: ask an admin for access.",
        404 => "It may have been deleted, or the link is wrong.",
        500..=599 => "The console could not reach NATS or failed: try again in a moment.",
        _ => "",
    };
    view! {
        <div class="error-box" data-test="error" role="alert">
            <strong>{error.message}</strong>
            <span class="hint">{hint}</span>
        </div>
    }
}

/// Renders a resource: loading, error, or `f` of its value.
pub fn loaded<T, V>(
    res: LocalResource<Result<T, ApiError>>,
    f: impl Fn(T) -> V + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + 'static,
    V: IntoView + 'static,
{
    move || match res.get() {
        None => view! { <p class="loading">"Loading…"</p> }.into_any(),
        Some(Ok(v)) => f(v).into_any(),
        Some(Err(error)) => view! { <ErrorBox error/> }.into_any(),
    }
}

/// A one-line message after an action: an error, or what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// It worked.
    Done(String),
    /// It failed.
    Failed(String),
}

/// Shows the latest notice, if any.
#[component]
pub fn NoticeLine(notice: RwSignal<Option<Notice>>) -> impl IntoView {
    move || {
        notice.get().map(|n| match n {
            Notice::Done(m) => view! { <p class="notice ok" data-test="notice">{m}</p> }.into_any(),
            Notice::Failed(m) => {
                view! { <p class="notice bad" data-test="notice" role="alert">{m}</p> }.into_any()
            }
        })
    }
}
