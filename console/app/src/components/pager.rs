//! Paging with a cursor (`before` for newest-first lists, `after` for lists by name):
//! "Older" (or "Next") goes on from the cursor the page gave, "Newer" (or "Previous")
//! goes back a page. Nothing ever loads a whole history or catalog.

use leptos::prelude::*;

/// The cursors of the pages seen: the last one is the current page's `before` (or
/// `after`).
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

    /// The current page's `after` (empty on the first page); tracked.
    pub fn after(&self) -> String {
        self.before()
    }

    /// Back to the first page.
    pub fn reset(&self) {
        self.0.set(Vec::new());
    }
}

/// "Newer" and "Older" buttons (or others, named by `back` and `on`).
#[component]
pub fn Pager(
    /// The cursor.
    cursor: Cursor,
    /// The next page's cursor, when more may follow.
    #[prop(into)]
    next: Signal<Option<String>>,
    /// The label of the button back a page.
    #[prop(default = "← Newer")]
    back: &'static str,
    /// The label of the button on to the next page.
    #[prop(default = "Older →")]
    on: &'static str,
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
                {back}
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
                {on}
            </button>
        </div>
    }
}
