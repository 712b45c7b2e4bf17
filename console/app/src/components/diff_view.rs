//! A diff between two spec versions: one row per changed field, with a line diff for
//! changed multi-line text.

use leptos::prelude::*;

use crate::diff::{Change, Line};

/// Shows `changes` (or that there are none).
#[component]
pub fn DiffView(changes: Vec<Change>) -> impl IntoView {
    if changes.is_empty() {
        return view! {
            <p class="muted" data-test="diff">"No field changed (only who or when)."</p>
        }
        .into_any();
    }
    let rows = changes
        .into_iter()
        .map(|c| {
            let body = match c.lines {
                Some(lines) => {
                    let lines = lines
                        .into_iter()
                        .map(|l| match l {
                            Line::Same(t) => view! { <div class="ln same">{format!("  {t}")}</div> },
                            Line::Del(t) => view! { <div class="ln del">{format!("- {t}")}</div> },
                            Line::Add(t) => view! { <div class="ln add">{format!("+ {t}")}</div> },
                            Line::Folded(n) => {
                                view! { <div class="ln fold">{format!("  … {n} unchanged lines")}</div> }
                            }
                        })
                        .collect_view();
                    view! { <pre class="line-diff">{lines}</pre> }.into_any()
                }
                None => view! {
                    <span class="old">{c.old.unwrap_or_else(|| "(not set)".into())}</span>
                    " → "
                    <span class="new">{c.new.unwrap_or_else(|| "(not set)".into())}</span>
                }
                .into_any(),
            };
            view! {
                <tr>
                    <th scope="row"><code>{c.path}</code></th>
                    <td>{body}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="diff" data-test="diff">
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
