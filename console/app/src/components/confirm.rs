//! A button for something that cannot be undone (delete, rollback, cancel): the first
//! click asks, in place, and only "Yes" does it.

use leptos::prelude::*;

/// A button that asks `question` before it runs `on_confirm`.
#[component]
pub fn ConfirmButton(
    /// The button's text.
    label: &'static str,
    /// What the second step asks ("Delete app billing?").
    #[prop(into)]
    question: String,
    /// `data-test` of the button; its "Yes" is `<test>-yes`.
    test: &'static str,
    /// What "Yes" does.
    on_confirm: Callback<()>,
    /// Styled as dangerous.
    #[prop(optional)]
    danger: bool,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let class = if danger { "btn danger" } else { "btn" };
    let yes = format!("{test}-yes");
    view! {
        <span class="confirm">
            <Show
                when=move || asking.get()
                fallback=move || {
                    view! {
                        <button type="button" class=class data-test=test on:click=move |_| asking.set(true)>
                            {label}
                        </button>
                    }
                }
            >
                <span class="confirm-ask">{question.clone()}</span>
                <button
                    type="button"
                    class=class
                    data-test=yes.clone()
                    on:click=move |_| {
                        asking.set(false);
                        on_confirm.run(());
                    }
                >
                    "Yes"
                </button>
                <button type="button" class="btn quiet" on:click=move |_| asking.set(false)>
                    "No"
                </button>
            </Show>
        </span>
    }
}
