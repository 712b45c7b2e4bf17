//! A script editor: a monospace text area with line numbers that scroll with it.

use leptos::html;
use leptos::prelude::*;

/// Edits `value`; `id` names the text area (for its label and the tests).
#[component]
pub fn CodeEditor(
    /// The text.
    value: Signal<String>,
    /// Called with the new text on every change.
    on_input: Callback<String>,
    /// The text area's id and `data-test`.
    id: &'static str,
    /// Read-only.
    #[prop(optional, into)]
    disabled: Signal<bool>,
) -> impl IntoView {
    let gutter = NodeRef::<html::Pre>::new();
    let numbers = move || {
        let n = value.with(|v| v.lines().count().max(1) + usize::from(v.ends_with('\n')));
        (1..=n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    view! {
        <div class="code-editor">
            <pre class="gutter" aria-hidden="true" node_ref=gutter>{numbers}</pre>
            <textarea
                id=id
                data-test=id
                spellcheck="false"
                autocomplete="off"
                rows="12"
                disabled=move || disabled.get()
                prop:value=move || value.get()
                on:input=move |ev| on_input.run(event_target_value(&ev))
                on:scroll=move |ev| {
                    let area: web_sys::HtmlTextAreaElement = event_target(&ev);
                    if let Some(g) = gutter.get_untracked() {
                        g.set_scroll_top(area.scroll_top());
                    }
                }
            ></textarea>
        </div>
    }
}
