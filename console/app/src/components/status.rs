//! A status as a coloured badge (instances, shards, jobs).

use leptos::prelude::*;

/// `success`, `failed`, `running`, ... as a badge coloured by its class.
#[component]
pub fn StatusBadge(#[prop(into)] status: String) -> impl IntoView {
    let class = format!("badge status-{status}");
    view! { <span class=class data-test="status">{status}</span> }
}

/// The contract's name of a status value (its JSON string).
pub fn name<T: serde::Serialize>(status: &T) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}
