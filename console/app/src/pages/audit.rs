//! The audit log (admins only): every change, who made it and through what, newest
//! first, a page at a time; the before/after of a change on demand.

use antares_schemas::audit::AuditEntry;
use leptos::prelude::*;

use crate::api;
use crate::components::loaded::loaded;
use crate::components::pager::{Cursor, Pager};
use crate::format;

/// Entries per page.
const PAGE: usize = 50;

/// The audit page.
#[component]
pub fn Audit() -> impl IntoView {
    let cursor = Cursor::default();
    let entries = LocalResource::new(move || {
        let limit = PAGE.to_string();
        let url = api::with_query(
            "/api/audit",
            &[("limit", &limit), ("before", &cursor.before())],
        );
        async move { api::get::<Vec<AuditEntry>>(&url).await }
    });
    let next = Signal::derive(move || {
        entries
            .get()
            .and_then(Result::ok)
            .filter(|l| l.len() >= PAGE)
            .and_then(|l| l.last().map(|e| e.id.to_string()))
    });
    view! {
        <h1>"Audit log"</h1>
        <section class="card">
            {loaded(entries, |list| {
                if list.is_empty() {
                    return view! { <p class="empty">"No changes recorded yet."</p> }.into_any();
                }
                let now = format::now_ms();
                let rows = list
                    .into_iter()
                    .map(|e| {
                        let pretty = |v: &Option<serde_json::Value>| {
                            v.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
                        };
                        let (before, after) = (pretty(&e.before), pretty(&e.after));
                        let details = (before.is_some() || after.is_some()).then(|| view! {
                            <details>
                                <summary>"before / after"</summary>
                                <div class="before-after">
                                    <pre class="code">{before.unwrap_or_else(|| "(nothing)".into())}</pre>
                                    <pre class="code">{after.unwrap_or_else(|| "(nothing)".into())}</pre>
                                </div>
                            </details>
                        });
                        view! {
                            <tr data-test="audit-row">
                                <td title=format::time(e.at)>{format::relative(e.at.millis(), now)}</td>
                                <td>{e.actor.to_string()}</td>
                                <td class="mono">{e.action.clone()}</td>
                                <td class="wrap">{e.target.clone()}</td>
                                <td>{details}</td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="table-wrap">
                        <table data-test="audit">
                            <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"On"</th><th></th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
                .into_any()
            })}
            <Pager cursor next/>
        </section>
    }
}
