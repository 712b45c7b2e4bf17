//! Paging of newest-first lists with `limit` and `before`: "Older" goes on from the last
//! item shown, "Newer" goes back a page. Nothing ever loads a whole history.

use leptos::prelude::*;

/// The cursors of the pages seen: the last one is the current page's `before`.
#[derive(Clone, Copy, Debug)]
pub struct Cursor(RwSignal<Vec<String>>);

impl Default for Cursor {
    /// At the newest page.
    fn default() -> Self {
        Self(RwSignal::new(Vec::new()))
    }
}

impl Cursor {
    /// The current page's `before` (empty on the newest page); tracked.
    pub fn before(&self) -> String {
        self.0.with(|s| s.last().cloned().unwrap_or_default())
    }

    /// Back to the newest page.
    pub fn reset(&self) {
        self.0.set(Vec::new());
    }
}

/// "Newer" and "Older" buttons.
#[component]
pub fn Pager(
    /// The cursor.
    cursor: Cursor,
    /// The last item's cursor when the page was full (so more may follow).
    #[prop(into)]
    next: Signal<Option<String>>,
) -> impl IntoView {
    let stack = cursor.0;
    view! {
        <div class="pager">
            <button
                type="button"
                class="btn quiet"
                data-test="newer"
                disabled=move || stack.with(Vec::is_empty)
                on:click=move |_| stack.update(|s| {
                    s.pop();
                })
            >
                "← Newer"
            </button>
            <button
                type="button"
                class="btn quiet"
                data-test="older"
                disabled=move || next.with(Option::is_none)
                on:click=move |_| {
                    if let Some(n) = next.get_untracked() {
                        stack.update(|s| s.push(n));
                    }
                }
            >
                "Older →"
            </button>
        </div>
    }
}
